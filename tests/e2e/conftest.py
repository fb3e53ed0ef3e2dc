"""Playwright fixtures for the browser tests: Debian's Chromium, one browser per session, contexts that record problems.

Chromium is never downloaded by Playwright here: it is the system's (`CHROMIUM_PATH`, default /usr/bin/chromium).
When it (or Playwright) is missing the tests skip locally, and fail when CI=true.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

from tests.conftest import PASSWORD, start_live_portal, stop_live_portal
from tests.support.sandbox import SandboxProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# Records every CSP refusal in the console, including ones Chromium reports only as an event.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                " on " + document.location.pathname);
});
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(why: str):
    """Skip locally; fail in CI, where the browser tests must run."""
    if in_ci():
        pytest.fail(f"{why} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(why)


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


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


class Problems(list):
    """Script errors, CSP refusals and failed loads seen in one browser context."""

    def watch(self, context) -> None:
        context.add_init_script(CSP_LISTENER)
        context.on("console", self._console)
        context.on("weberror", lambda error: self.append(f"page error: {error.error}"))
        context.on("response", self._response)

    def _console(self, msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and url.endswith("/favicon.ico"):
            return
        self.append(f"console error: {msg.text} ({url})")

    def _response(self, response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.append(f"HTTP {response.status}: {response.request.method} {response.url}")


@pytest.fixture
def live_server(tmp_path):
    """As production runs: the portal on one port, the sandbox as its own OS process on another (another origin)."""
    port = free_port()
    sandbox = SandboxProcess(tmp_path / "sandbox.db", portal_url=f"http://127.0.0.1:{port}").start()
    server = start_live_portal(tmp_path, sandbox, port)
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


def login(page, email: str = "admin@a.example", name: str | None = None) -> None:
    """Log in through the form (optionally keeping a screenshot of the login page)."""
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    if name:
        shot(page, name)
    page.click("form button[type=submit].primary")
    page.wait_for_url("**/orders")


def shot(page, name: str) -> Path:
    """A full-page screenshot under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    page.screenshot(path=str(path), full_page=True)
    # After a full-page screenshot Chromium leaves the page scrolled elsewhere and jumps back on the next input:
    # a click's mousedown and mouseup then land on different elements (no click). Put the scroll back first.
    page.evaluate("([x, y]) => window.scrollTo(x, y)", scroll)
    return path


def assert_fits_width(page, what: str) -> None:
    """Nothing on the page is wider than the screen (no sideways scrolling)."""
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner + 1:
        culprits = page.evaluate(
            """() => Array.from(document.querySelectorAll('body *'))
                 .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                 .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''))"""
        )
        raise AssertionError(f"{what}: page is {scroll}px wide on a {inner}px screen; too wide: {culprits}")


def wait_for_state(page, state: str, timeout: float = 20, reload: bool = True) -> None:
    """Wait until the page's data-order-state is `state`, reloading it while waiting (the order page does not poll)."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        seen = page.get_attribute("[data-order-state]", "data-order-state")
        if seen == state:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.url}: order state is {seen!r}, expected {state!r}")
        time.sleep(0.25)
        if reload:
            page.reload()
