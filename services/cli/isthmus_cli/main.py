"""``isthmus`` — run the platform, ingest, ask, evaluate, manage tenants and configuration.

A thin typer app: each command lives in :mod:`isthmus_cli.commands` (one module per command or group),
over the typed client helpers of :mod:`isthmus_cli.client`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isthmus_cli.commands import (
    agents,
    ask,
    audit,
    auth,
    config,
    delete,
    dlq,
    drill,
    erase,
    ingest,
    metrics,
    policy,
    provenance,
    regions,
    reindex,
    run,
    status,
    submit,
    tenant,
)
from isthmus_cli.commands import eval as eval_command

app = typer.Typer(
    help="Isthmus — an enterprise GenAI platform you can run on a laptop.", no_args_is_help=True
)


@app.callback()
def main(
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="ISTHMUS_TOKEN",
            help="bearer token sent with every call to the platform (needed when its auth is on)",
            show_envvar=True,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", envvar="ISTHMUS_TOKEN_FILE", help="... read from this file instead"),
    ] = None,
) -> None:
    """Isthmus — an enterprise GenAI platform you can run on a laptop."""
    from isthmus_cli.client import use_token
    from isthmus_cli.output import fail
    from isthmus_core.errors import ConfigurationError

    try:
        use_token(token, token_file)
    except ConfigurationError as exc:
        fail(str(exc), 2)


app.add_typer(auth.app, name="auth")
app.add_typer(tenant.app, name="tenant")
app.add_typer(config.app, name="config")
app.add_typer(dlq.app, name="dlq")
app.add_typer(drill.app, name="drill")
app.add_typer(regions.app, name="regions")
app.add_typer(agents.prompt_app, name="prompt")
app.add_typer(policy.app, name="policy")
app.command()(run.run)
app.command()(ingest.ingest)
app.command()(submit.submit)
app.command()(ask.ask)
app.command()(agents.approvals)
app.command()(agents.approve)
app.command()(agents.reject)
app.command()(agents.graphs)
app.command()(agents.tools)
app.command("eval")(eval_command.eval_)
app.command()(reindex.reindex)
app.command()(status.status)
app.command()(metrics.metrics)
app.command()(audit.audit)
app.command()(provenance.provenance)
app.command()(erase.erase)
app.command()(erase.erasure)
app.command()(delete.delete)


if __name__ == "__main__":
    app()
