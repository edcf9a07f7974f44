from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import upload, wait_indexed
from isthmus_core.testing.in_process import in_process_platform

__all__ = ["platform", "upload", "wait_indexed"]


@contextlib.asynccontextmanager
async def platform(data_dir: Path, **section_overrides: dict[str, Any]) -> AsyncIterator[Runtime]:
    """The real `all` target in this process: in-process bus, embedded store, bundled models."""
    async with in_process_platform(MODULES, data_dir, **section_overrides) as rt:
        yield rt


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
