"""Asyncio tests still run after a browser module (pytest-asyncio's auto mode beside Playwright's sync
API): the ``playwright`` fixture is module-scoped, and a started sync Playwright keeps its loop marked as
the thread's running loop, which would make every later ``async def`` test fail. Collected after
test_browser_fixtures.py (alphabetical order), so in a run of this folder it follows a browser module."""

from __future__ import annotations

import asyncio


async def test_an_asyncio_test_runs_after_a_browser_module() -> None:
    await asyncio.sleep(0)
    assert asyncio.get_running_loop().is_running()
