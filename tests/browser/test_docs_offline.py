"""``/docs`` and ``/redoc`` render in headless chromium with no network beyond 127.0.0.1
(issue 16, "Done when" 5): MedBridge serves as ``medbridge run`` does (uvicorn, on a free
port); every request the page makes to another host is aborted and fails the test, as does
any console error or failed request. Each test saves a screenshot under its tmp_path."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

from medbridge.app import MedBridge
from medbridge.runtime.processes import http_config

pytestmark = [pytest.mark.db, pytest.mark.browser]

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
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        yield page, problems
        browser.close()


def test_swagger_ui_renders_offline(
    served: str, page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    browser_page, problems = page
    browser_page.goto(f"{served}/docs")
    browser_page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "MedBridge" in browser_page.inner_text(".swagger-ui .info .title")
    browser_page.wait_for_selector("text=Post Stock Movements", timeout=30_000)
    browser_page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    print(f"screenshot: {tmp_path / 'docs.png'}")
    assert problems == []


def test_redoc_renders_offline(served: str, page: tuple[Page, list[str]], tmp_path: Path) -> None:
    browser_page, problems = page
    browser_page.goto(f"{served}/redoc")
    browser_page.wait_for_selector("h1", timeout=30_000)
    assert "MedBridge" in browser_page.inner_text("h1")
    operations = browser_page.locator("text=Post Stock Movements")
    operations.first.wait_for(state="attached", timeout=30_000)
    assert operations.count() == 2  # in the menu and as the operation's heading
    browser_page.screenshot(path=str(tmp_path / "redoc.png"), full_page=False)
    print(f"screenshot: {tmp_path / 'redoc.png'}")
    assert problems == []
