"""Playwright fixtures for the browser tests: Debian's Chromium, one browser per session, contexts that record problems.

Chromium is never downloaded by Playwright here: it is the system's (`CHROMIUM_PATH`, default /usr/bin/chromium).
When it (or Playwright) is missing the tests skip locally, and fail when CI=true.
"""

from __future__ import annotations

import os

import pytest

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

from tests.support.apps import LiveServer, start_live_portal, stop_live_portal
from tests.support.chromium import CHROMIUM_ARGS, PHONE, Problems, chromium_path, unavailable
from tests.support.sandbox import SandboxProcess


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the whole session (contexts keep the tests apart)."""
    if sync_playwright is None:
        unavailable("Playwright for Python is not installed")
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        unavailable(f"Chromium not found at {path} (set CHROMIUM_PATH)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def live_server(tmp_path):
    """As production runs: the portal on one port, the sandbox as its own OS process on another (another origin)."""
    listener = LiveServer()  # bound first: the sandbox is told its address
    sandbox = SandboxProcess(tmp_path / "sandbox.db", portal_url=listener.url).start()
    server = start_live_portal(tmp_path, sandbox, listener)
    yield server
    stop_live_portal(server)


@pytest.fixture
def new_context(chromium, live_server):
    """Make a browser context (its own cookies) against the live server; checks at teardown that nothing went wrong."""
    made = []

    def make(viewport=PHONE, java_script_enabled=True, locale="zh-TW"):
        context = chromium.new_context(
            viewport=viewport,
            locale=locale,
            timezone_id="Asia/Taipei",
            java_script_enabled=java_script_enabled,
            base_url=live_server.url,
        )
        context.set_default_timeout(15_000)
        context.problems = Problems()
        context.problems.watch(context)
        made.append(context)
        return context

    yield make
    problems = [p for context in made for p in context.problems]
    for context in made:
        context.close()
    assert problems == [], "the browser reported problems:\n" + "\n".join(problems)
