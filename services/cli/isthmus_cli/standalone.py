"""A throwaway all-in-one platform inside the CLI's own process (``isthmus eval --standalone``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


@contextlib.asynccontextmanager
async def standalone_platform(
    config: Path | None = None, retrieval: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    """Boot the whole platform in this process on a free port with a throwaway data dir
    (``retrieval``: overrides of the retrieval section, e.g. the store); yields its address."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="isthmus-") as tmp:
        overrides = {
            "common": {
                "data_dir": tmp,
                "grpc_port": 0,
                "metrics_port": 0,
                "bus": "inprocess",
                "log_level": "warning",
            },
            **({"retrieval": retrieval} if retrieval else {}),
        }
        rt = Runtime.from_settings("all", MODULES, config, overrides)
        await rt.start()
        try:
            yield rt.address
        finally:
            await rt.stop()
