"""``isthmus auth token|jwks``: the local development issuer (``[common] auth = "local"``).

``isthmus auth token --subject alice --group analysts --ttl 8h`` prints a token signed with this
machine's local issuer key (``<data_dir>/auth/local-issuer.pem``, created on first use), which the
platform started with the same data dir verifies; ``isthmus auth jwks`` prints its public keys (to
configure another verifier, e.g. ``grpcurl`` tests against a copy of the platform).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from isthmus_cli.options import ConfigFile
from isthmus_cli.output import err, fail

if TYPE_CHECKING:
    from isthmus_core.auth.local_issuer import LocalIssuer

app = typer.Typer(help="Local development tokens (auth = 'local').", no_args_is_help=True)

_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="the platform's data dir (default: [common] data_dir of the settings)"),
]


def parse_ttl(value: str) -> float:
    """``90``, ``90s``, ``15m``, ``8h``, ``7d`` → seconds."""
    m = _TTL.match(value)
    if m is None:
        raise typer.BadParameter(f"{value!r} is not a duration such as 90s, 15m, 8h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _principal(value: str) -> str:
    from isthmus_core.contracts.ids import PRINCIPAL_PATTERN, PRINCIPAL_RULE

    if re.fullmatch(PRINCIPAL_PATTERN, value) is None:
        raise typer.BadParameter(f"{value!r}: {PRINCIPAL_RULE}")
    return value


def _groups(values: list[str] | None) -> list[str]:
    return [_principal(v) for v in values or []]


def _issuer(config: Path | None, data_dir: Path | None) -> tuple[LocalIssuer, str]:
    """The local issuer of these settings, and the ``auth`` mode they set."""
    from isthmus_core.auth.wiring import local_issuer
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import CommonSettings, load_all

    overrides = {"common": {"data_dir": str(data_dir)}} if data_dir is not None else None
    try:
        common = load_all([CommonSettings], config, overrides)["common"]
    except ConfigurationError as exc:
        fail(str(exc), 2)
    assert isinstance(common, CommonSettings)
    return local_issuer(common), common.auth


@app.command("token")
def auth_token(
    subject: Annotated[
        str, typer.Option("--subject", "-s", help="who the token names (its sub)", callback=_principal)
    ],
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="a group of the subject (repeatable)", callback=_groups),
    ] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="lifetime: 90s, 15m, 8h, 7d (at most 30d)")] = "1h",
    audience: Annotated[
        str | None, typer.Option("--audience", help="its aud (default: [common] auth_audience)")
    ] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Print a token of the local development issuer (only for a platform running with auth = 'local')."""
    from isthmus_core.errors import ConfigurationError

    seconds = parse_ttl(ttl)
    issuer, mode = _issuer(config, data_dir)
    try:
        token = issuer.mint(subject, group or [], seconds, audience)
    except (ValueError, ConfigurationError) as exc:
        fail(str(exc), 2)
    if mode != "local":
        note = f"note: [common] auth is {mode!r} in these settings; this token is for auth = 'local'"
        err.print(note, markup=False, highlight=False)
    typer.echo(token)


@app.command("jwks")
def auth_jwks(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Print the local issuer's public keys (a JWKS)."""
    from isthmus_core.errors import ConfigurationError

    issuer, _ = _issuer(config, data_dir)
    try:
        jwks = issuer.jwks()
    except ConfigurationError as exc:
        fail(str(exc), 2)
    typer.echo(json.dumps(jwks, indent=2))
