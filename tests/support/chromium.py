"""Helpers for the browser tests in Chromium through Playwright: screen sizes, logging in, screenshots, checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.constants import PASSWORD

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
