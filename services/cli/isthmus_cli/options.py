"""The options several commands share (same flags, environment variables and defaults everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Endpoint = Annotated[
    str, typer.Option("--endpoint", "-e", envvar="ISTHMUS_ENDPOINT", help="gRPC address of the platform")
]
DEFAULT_ENDPOINT = "127.0.0.1:50051"
#: the regions file ``make regions-up`` (tests/infra/regions.sh up) writes, relative to the repository
LOCAL_REGIONS = Path(".tools/regions/regions.toml")

RegionsFile = Annotated[
    Path | None,
    typer.Option(
        "--regions",
        envvar="ISTHMUS_REGIONS_FILE",
        help="a regions file (TOML) instead of --endpoint: writes go to the tenant's primary region, "
        "reads to the primary or, when it does not answer, another healthy region",
    ),
]


def tenant_id(value: str) -> str:
    """A ``--tenant`` / ``TENANT_ID`` value through the one tenant id parser, before anything uses it."""
    from isthmus_core.contracts.ids import parse_tenant_id
    from isthmus_core.errors import InvalidArgument

    try:
        return parse_tenant_id(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None


def optional_tenant_id(value: str) -> str:
    return tenant_id(value) if value else value


Tenant = Annotated[
    str, typer.Option("--tenant", "-t", envvar="ISTHMUS_TENANT", help="tenant id", callback=tenant_id)
]
TenantArg = Annotated[str, typer.Argument(help="tenant id", callback=tenant_id)]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="ISTHMUS_CONFIG", help="TOML settings file")
]
Bootstrap = Annotated[
    str,
    typer.Option("--bootstrap", envvar="ISTHMUS_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers"),
]
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
Target = Annotated[str, typer.Option("--target")]
AsJson = Annotated[bool, typer.Option("--json")]
