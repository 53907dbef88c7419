"""Headless Debian Chromium driven by Playwright (no browser download), one fresh profile per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture()
def console_errors() -> list[str]:
    """Errors the page reported (script errors, CSP violations, failed loads); tests assert it stays empty."""
    return []


@pytest.fixture()
def browser_page(tmp_path: Path, console_errors: list[str]) -> Iterator[object]:
    """A Playwright page in a fresh Chromium profile; fails (never skips) when Chromium is missing."""
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: apt-get install -y chromium"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(15_000)
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda m: console_errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
        try:
            yield page
        finally:
            context.close()


@pytest.fixture()
def screenshot() -> object:
    """screenshot(page, "03-scanners") saves artifacts/screenshots/03-scanners.png (full page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: object, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path

    return take
