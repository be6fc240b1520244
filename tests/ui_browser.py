"""A real headless Chromium (Debian's ``chromium``, installed by ``make browser-deps``) driven by
Playwright, for the web UI's browser tests. No browser is downloaded: Playwright only drives the
system binary, with a fresh profile per test."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator

import pytest

CHROMIUM = os.environ.get("LLAMASWAP_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def browser_page(width: int = 1280, height: int = 900) -> AsyncIterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run 'make browser-deps' (Debian's chromium package)")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="llamaswap-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=ARGS,
                headless=True,
                viewport={"width": width, "height": height},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.set_default_timeout(30_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.js_errors = errors  # type: ignore[attr-defined]
                yield page
            finally:
                await context.close()
