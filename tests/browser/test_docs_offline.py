"""``/docs`` and ``/redoc`` render in headless chromium with no network beyond 127.0.0.1
(issue 16, "Done when" 5): MedBridge serves as ``medbridge run`` does (uvicorn, on a free
port); every request the page makes to another host is aborted and fails the test, as does
any console error or failed request (``conftest.py``). Each test saves a screenshot under
var/screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

pytestmark = [pytest.mark.db, pytest.mark.browser]


def test_swagger_ui_renders_offline(
    served: str, page: tuple[Page, list[str]], screenshots: Path
) -> None:
    browser_page, problems = page
    browser_page.goto(f"{served}/docs")
    browser_page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "MedBridge" in browser_page.inner_text(".swagger-ui .info .title")
    browser_page.wait_for_selector("text=Post Stock Movements", timeout=30_000)
    browser_page.screenshot(path=str(screenshots / "docs.png"), full_page=False)
    print(f"screenshot: {screenshots / 'docs.png'}")
    assert problems == []


def test_redoc_renders_offline(
    served: str, page: tuple[Page, list[str]], screenshots: Path
) -> None:
    browser_page, problems = page
    browser_page.goto(f"{served}/redoc")
    browser_page.wait_for_selector("h1", timeout=30_000)
    assert "MedBridge" in browser_page.inner_text("h1")
    operations = browser_page.locator("text=Post Stock Movements")
    operations.first.wait_for(state="attached", timeout=30_000)
    assert operations.count() == 2  # in the menu and as the operation's heading
    browser_page.screenshot(path=str(screenshots / "redoc.png"), full_page=False)
    print(f"screenshot: {screenshots / 'redoc.png'}")
    assert problems == []
