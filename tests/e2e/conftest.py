from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import upload, wait_indexed

__all__ = ["platform", "upload", "wait_indexed"]


@contextlib.asynccontextmanager
async def platform(data_dir: Path, **section_overrides: dict[str, Any]) -> AsyncIterator[Runtime]:
    """The real `all` target in this process: in-process bus, embedded store, bundled models."""
    overrides: dict[str, dict[str, Any]] = {
        "common": {
            "data_dir": str(data_dir),
            "grpc_port": 0,
            "metrics_port": 0,
            "bus": "auto",
            "shutdown_grace_s": 2.0,
        },
        # the console (part of `all`) on a free port: tests start platforms side by side
        "console": {"port": 0},
    }
    for section, values in section_overrides.items():
        overrides.setdefault(section.replace("_", "-"), {}).update(values)
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
