"""The browser tests' MedBridge, served as ``medbridge run`` serves it (uvicorn on a free
port), and a headless chromium page (Debian's, through Playwright) that may reach 127.0.0.1 and
nothing else: every request elsewhere is aborted and recorded, as is every console error,
page error, failed request and answer of 400 or more. A test asserts ``problems == []``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from playwright.sync_api import Page, Request, sync_playwright

from medbridge.app import MedBridge
from medbridge.runtime.processes import http_config

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(medbridge: MedBridge) -> Iterator[str]:
    port = free_port()
    settings = medbridge.settings.model_copy(update={"http_host": "127.0.0.1", "http_port": port})
    server = uvicorn.Server(http_config(settings, medbridge.api()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where a test saves its screenshots: ``var/screenshots/<test>/`` of the checkout, kept
    after the run (CI's record of what each page looked like)."""
    folder = Path(__file__).resolve().parents[2] / "var" / "screenshots" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def failed(request: Request, problems: list[str]) -> None:
    """A request that failed. ``net::ERR_ABORTED`` is chromium cancelling what a page still
    loads when the page navigates away (a favicon, say) and is no failure: a request off the
    machine aborted by the route is recorded there, and an error answer by ``response``."""
    if request.failure != "net::ERR_ABORTED":
        problems.append(f"failed: {request.url} {request.failure}")


@pytest.fixture
def page() -> Iterator[tuple[Page, list[str]]]:
    """A chromium page that may only reach 127.0.0.1; ``problems`` collects every console
    error, failed request and request elsewhere."""
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context()

        def route(handle: object) -> None:
            request = handle.request  # type: ignore[attr-defined]
            host = urlparse(request.url).hostname
            if request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                handle.continue_()  # type: ignore[attr-defined]
            else:
                problems.append(f"request off the machine: {request.url}")
                handle.abort()  # type: ignore[attr-defined]

        context.route("**/*", route)
        page = context.new_page()
        page.on(
            "console",
            lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("requestfailed", lambda r: failed(r, problems))
        page.on(
            "response",
            lambda r: problems.append(f"answered {r.status}: {r.url}") if r.status >= 400 else None,
        )
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        yield page, problems
        browser.close()
