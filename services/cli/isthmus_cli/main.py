"""``isthmus`` — run the platform, ingest, ask, evaluate, manage tenants and configuration.

A thin typer app: each command lives in :mod:`isthmus_cli.commands` (one module per command or group),
over the typed client helpers of :mod:`isthmus_cli.client`.
"""

from __future__ import annotations

import typer

from isthmus_cli.commands import ask, config, dlq, drill, erase, ingest, regions, reindex, run, status, tenant
from isthmus_cli.commands import eval as eval_command

app = typer.Typer(
    help="Isthmus — an enterprise GenAI platform you can run on a laptop.", no_args_is_help=True
)
app.add_typer(tenant.app, name="tenant")
app.add_typer(config.app, name="config")
app.add_typer(dlq.app, name="dlq")
app.add_typer(drill.app, name="drill")
app.add_typer(regions.app, name="regions")
app.command()(run.run)
app.command()(ingest.ingest)
app.command()(ask.ask)
app.command("eval")(eval_command.eval_)
app.command()(reindex.reindex)
app.command()(status.status)
app.command()(erase.erase)
app.command()(erase.erasure)


if __name__ == "__main__":
    app()
