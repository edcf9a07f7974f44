"""``isthmus auth token|jwks`` and the bearer token on every CLI call (``--token``, ``--token-file``,
``ISTHMUS_TOKEN``), against the real retrieval servicer behind the real auth interceptor."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner, Result

from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from isthmus_cli import client
from isthmus_cli.main import app
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Role
from isthmus_core.auth.local_issuer import ISSUER
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.testing.auth import Bindings
from isthmus_retrieval.api import RetrievalServicer
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.store_embedded import EmbeddedStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ISTHMUS_TOKEN", raising=False)
    monkeypatch.delenv("ISTHMUS_TOKEN_FILE", raising=False)
    monkeypatch.delenv("ISTHMUS_CONFIG", raising=False)
    yield
    client._BEARER.token, client._BEARER.given = None, False  # the app callback's state, per process


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def jwks(data_dir: Path) -> dict[str, Any]:
    result = invoke("auth", "jwks", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def token(data_dir: Path, *args: str) -> str:
    result = invoke("auth", "token", "--data-dir", str(data_dir), *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_auth_token_is_verified_with_auth_jwks(tmp_path: Path) -> None:
    minted = token(tmp_path, "--subject", "alice", "--group", "analysts", "-g", "ops", "--ttl", "2h")
    keys = jwks(tmp_path)
    assert all("d" not in k for k in keys["keys"])  # public only
    verifier = JwtVerifier(issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(keys))
    p = await verifier.verify(minted)
    assert (p.subject, p.groups) == ("alice", ("analysts", "ops"))
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7200
    other = token(tmp_path, "--subject", "svc", "--audience", "elsewhere", "--ttl", "90")
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == "elsewhere"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", "alice", "--ttl", "soon"], "not a duration"),
        (["--subject", "alice", "--ttl", "31d"], "ttl must be between"),
        (["--subject", "no spaces"], "principals are"),
        (["--subject", "alice", "--group", "../x"], "principals are"),
    ],
)
def test_auth_token_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("auth", "token", "--data-dir", str(tmp_path), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()).replace("│", "")


# --- the bearer on every call ----------------------------------------------------------------------------


async def _nothing(*_: Any, **__: Any) -> Any:
    return None


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[str]:
    """A retrieval server with auth = local over the key ``isthmus auth token --data-dir tmp_path`` uses."""
    keys = jwks(tmp_path)
    verifier = JwtVerifier(issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(keys))
    authorizer = Bindings({("alice", "acme"): ROLE_PERMISSIONS[Role.READER]})
    core = Retrieval(EmbeddedStore(tmp_path / "store"), _nothing, _nothing, _nothing)
    for tenant in ("acme", "globex"):
        await core.create_tenant(tenant)
    servicer = RetrievalServicer(core, default_top_k=10, default_alpha=0.5)
    server = GrpcServer("127.0.0.1", 0, auth=AuthStack(verifier, authorizer))
    server.add(
        [lambda s: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, s)],
        ["isthmus.retrieval.v1.RetrievalService"],
    )
    await server.start()
    try:
        yield server.address
    finally:
        await server.stop(0)


async def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in a worker thread (it runs its own event loop; the server runs on this one)."""
    return await asyncio.to_thread(invoke, *args, env=env)


async def test_cli_calls_carry_the_token(platform: str, tmp_path: Path) -> None:
    alice = token(tmp_path, "--subject", "alice")
    listing = ["tenant", "list", "--json", "--endpoint", platform]

    refused = await cli(*listing)
    assert refused.exit_code == 1
    assert "UNAUTHENTICATED" in refused.output

    with_flag = await cli("--token", alice, *listing)
    assert with_flag.exit_code == 0, with_flag.output
    assert [t["tenant_id"] for t in json.loads(with_flag.stdout)] == ["acme"]  # only what alice may read

    with_env = await cli(*listing, env={"ISTHMUS_TOKEN": alice})
    assert with_env.exit_code == 0, with_env.output

    token_file = tmp_path / "token"
    token_file.write_text(alice + "\n")
    with_file = await cli("--token-file", str(token_file), *listing)
    assert with_file.exit_code == 0, with_file.output

    missing = await cli("--token-file", str(tmp_path / "nowhere"), *listing)
    assert missing.exit_code == 2 and "cannot read the token file" in missing.output
