"""Browser fixtures: one headless Chromium (Debian's, ``/usr/bin/chromium``) per session,
driven by Playwright; pages watched for console errors, failed requests and dialogs."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("BILLING_OSS_CHROMIUM", "/usr/bin/chromium")
README_SHOTS = {"home", "suspense-inspect", "account"}


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing; ./run.sh test installs Debian's chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each page's screenshot goes (the test's output folder)."""
    return tmp_path_factory.mktemp("console-screenshots")


class Watched:
    """A page and every problem it showed: console errors, uncaught exceptions, failed or
    refused requests, and dialogs (an ``alert`` would mean injected script ran)."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page, self.shots = page, shots
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # Chromium's own PDF viewer (an inline invoice) fetches from its extension, and those
        # requests are aborted when the test moves on: the browser's, not the page's.
        page.on("requestfailed",
                lambda r: self.problems.append(f"failed {r.method} {r.url}: {r.failure}")
                if not r.url.startswith("chrome-extension://") else None)
        page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}")
                if r.status >= 400 else None)
        page.on("dialog", self._dialog)

    async def _dialog(self, dialog: object) -> None:
        self.problems.append(f"dialog: {getattr(dialog, 'message', '')}")
        await dialog.dismiss()  # type: ignore[attr-defined]

    def clean(self) -> None:
        problems, self.problems = self.problems, []
        assert not problems, problems

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        # BILLING_OSS_SCREENSHOTS_DOCS=docs/console refreshes the README's screenshots.
        docs = os.environ.get("BILLING_OSS_SCREENSHOTS_DOCS")
        if docs and name in README_SHOTS:
            await asyncio.to_thread(_copy, path, Path(docs))
        return path


def _copy(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / path.name)


@pytest.fixture
async def watched(browser: Browser, screenshots: Path) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900},
                                        timezone_id="Europe/Paris")
    page = await context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield Watched(page, screenshots)
    finally:
        await context.close()
