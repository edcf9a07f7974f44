"""``isthmus run``: start services in this process."""

from __future__ import annotations

from typing import Annotated

import typer

from isthmus_cli.client import run as run_command
from isthmus_cli.options import ConfigFile


def run(
    target: Annotated[str, typer.Option("--target", help="all, or comma-separated service names")] = "all",
    config: ConfigFile = None,
) -> None:
    """Start services: `all` in one process (in-process bus, embedded store), or one service on Kafka."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    async def main() -> None:
        rt = Runtime.from_settings(target, MODULES, config)
        await rt.serve_forever()

    run_command(main())
