"""A platform started in the test's own process: the given modules (the composition root's, in the tests)
as the ``all`` target — in-process bus, embedded store, bundled models, free ports, a throwaway data dir.

``sections`` override settings per section (``agent_orchestrator`` names ``[agent-orchestrator]``); the
console, when among the modules, gets a free port unless a section says otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from isthmus_core.runtime.module import AnyModule
from isthmus_core.runtime.runtime import Runtime


def platform_overrides(data_dir: Path | str, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
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
    for section, values in sections.items():
        overrides.setdefault(section.replace("_", "-"), {}).update(values)
    return overrides


@contextlib.asynccontextmanager
async def in_process_platform(
    modules: Sequence[AnyModule], data_dir: Path | str, **sections: dict[str, Any]
) -> AsyncIterator[Runtime]:
    rt = Runtime.from_settings("all", modules, None, platform_overrides(data_dir, **sections))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
