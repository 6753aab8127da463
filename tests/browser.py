"""Headless Chromium for report tests: Debian's /usr/bin/chromium driven by playwright.

``open_report(path)`` loads an HTML file from disk with the network blocked and returns a
:class:`PageCheck` with the script errors seen, and the live page for more checks. One browser
serves the whole test session (started at the first call, closed at the session's end by
conftest.py); each call gets a fresh context of its own (no storage, cookies or scripts carried
over) and a new page in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@dataclass
class PageCheck:
    page: object
    errors: list = field(default_factory=list)  # uncaught exceptions and console errors
    requests: list = field(default_factory=list)  # any non-file request the page tried


_SHARED: dict = {}  # "playwright" and "browser", while the session's browser runs


def shared_browser():
    """The test session's headless Chromium, started on first use."""
    if "browser" not in _SHARED:
        from playwright.sync_api import sync_playwright

        executable = chromium_path()
        if executable is None:
            raise RuntimeError("Chromium not found: install Debian's chromium (tests/run.sh does)")
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except BaseException:
            playwright.stop()
            raise
        _SHARED.update(playwright=playwright, browser=browser)
    return _SHARED["browser"]


def close_shared_browser() -> None:
    """Close the session's browser, if it runs (a test whose code under test starts playwright's sync
    API itself needs it closed: that API cannot run twice at once in one thread)."""
    browser, playwright = _SHARED.pop("browser", None), _SHARED.pop("playwright", None)
    try:
        if browser is not None:
            browser.close()
    finally:
        if playwright is not None:
            playwright.stop()


@contextlib.contextmanager
def open_report(path, width: int = 1400, height: int = 1000, init_script: str | None = None,
                color_scheme: str | None = None):
    """Open ``path`` in headless Chromium; yields a :class:`PageCheck` once the page has loaded
    and unpacked plotly.js. ``init_script`` runs before the page's own scripts; ``color_scheme``
    ("light" or "dark") is the system setting the page sees (prefers-color-scheme) from the start."""
    context = shared_browser().new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
    try:
        page = context.new_page()
        check = PageCheck(page=page)
        page.on("pageerror", lambda error: check.errors.append(str(error)))
        page.on("console", lambda msg: check.errors.append(msg.text) if msg.type == "error" else None)

        def route(route_):
            url = route_.request.url
            if url.startswith(("file:", "data:", "blob:")):
                route_.continue_()
            else:
                check.requests.append(url)
                route_.abort()

        page.route("**/*", route)
        if init_script:
            page.add_init_script(init_script)
        page.goto("file://" + os.path.abspath(path), wait_until="load")
        # plotly.js is unpacked after the load event (_plotly_loader.html.j2): wait for it
        page.wait_for_function("() => window.dqnvizPageReady !== undefined", timeout=30_000)
        yield check
    finally:
        context.close()


def all_plots_drawn(page) -> tuple[int, int]:
    """``(plots, drawn)``: plotly plot divs on the page, and how many have drawn SVG content."""
    return page.evaluate(
        """() => {
            const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
            const drawn = plots.filter(p => p.querySelector('svg.main-svg') && p._fullLayout);
            return [plots.length, drawn.length];
        }"""
    )
