"""Playwright on Debian's Chromium (never `playwright install`): skipped off CI when absent, a failure in CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import IN_CI
from tests.web.conftest import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def screenshot(page: Any, name: str, tmp: Path) -> Path:
    """docs/NAME with REASONGEN_SCREENSHOTS=1 (to refresh the README's pictures), else a temporary file, so a
    test run leaves the working tree alone."""
    path = (DOCS if os.environ.get("REASONGEN_SCREENSHOTS") == "1" else tmp) / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a real picture, not a blank page
    return path


def _missing(what: str) -> None:
    message = f"{what}; install Debian's chromium (apt-get install chromium) and pip install playwright"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def launch() -> Iterator[Any]:
    """The session's one browser (the fixture `browser` in conftest.py: Playwright allows one sync instance)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def sign_in(browser: Any, base: str, name: str, start: str = "/desk") -> Any:
    """A fresh browser context signed in as ``name``; returns its page (on ``start``)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}{start}")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{start}")
    return page
