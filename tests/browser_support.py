"""Test support for the console's browser tests: sign in through the page, save a
screenshot."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from medbridge.app import MedBridge
from medbridge.governance.clients import Role


def sign_in(page: Page, served: str, medbridge: MedBridge, client: str, role: Role) -> None:
    """Sign in to the console as a new client ``client`` of ``role``, from ``/console/``
    (signed out: the sign-in page, which leads back there)."""
    key = medbridge.clients.register(client, role)
    page.goto(f"{served}/console/")
    page.fill("input[name=client]", client)
    page.fill("input[name=key]", key)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("h1:has-text('Dashboard')")


def shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
