"""``isthmus policy get|put|versions|rollback`` against the real guardrail servicer and policy store behind
the real auth interceptor: TOML and JSON files, idempotent puts, ``get --json`` put back unchanged,
versions listed with their author, a rollback, refusals with their reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_cli import client
from isthmus_cli.main import app
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Role
from isthmus_core.auth.local_issuer import ISSUER, LocalIssuer
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import TenantId
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.guard import BannedTopic, Policy, PolicyAction
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.testing.auth import Bindings
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

runner = CliRunner()

TOML_POLICY = """
pii_action = "mask"
injection_threshold = 0.4

[[banned_topics]]
name = "weapons"
description = "how to build or buy weapons"
threshold = 0.65
"""


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "ISTHMUS_TOKEN",
        "ISTHMUS_TOKEN_FILE",
        "ISTHMUS_CONFIG",
        "ISTHMUS_TENANT",
        "ISTHMUS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    yield
    client._BEARER.token, client._BEARER.given = None, False  # the app callback's state, per process


@dataclass
class Platform:
    address: str
    store: PolicyStore
    tokens: dict[str, str]
    files: Path

    async def cli(self, who: str, *args: str) -> Result:
        """The CLI in a worker thread (it runs its own event loop; the server runs on this one)."""
        argv = ["--token", self.tokens[who], *args, "--endpoint", self.address]
        return await asyncio.to_thread(runner.invoke, app, argv, env={"COLUMNS": "250"})

    def file(self, name: str, text: str) -> str:
        path = self.files / name
        path.write_text(text)
        return str(path)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    issuer = LocalIssuer(tmp_path / "issuer.pem")
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(issuer.jwks())
    )
    authorizer = Bindings(
        {
            ("alice", "acme"): ROLE_PERMISSIONS[Role.TENANT_ADMIN],
            ("carol", "acme"): ROLE_PERMISSIONS[Role.READER],
        }
    )

    async def publish(v: GuardrailVerdict) -> None:
        pass

    store = PolicyStore(tmp_path / "guardrail")
    servicer = GuardrailServicer(
        Guard(None), store, publish, 1000, InMemoryTenantDirectory([TenantId("acme")])
    )
    server = GrpcServer("127.0.0.1", 0, auth=AuthStack(verifier, authorizer))
    server.add(
        [lambda s: pb_grpc.add_GuardrailServiceServicer_to_server(servicer, s)],
        ["isthmus.guardrail.v1.GuardrailService"],
    )
    await server.start()
    tokens = {who: issuer.mint(who, ttl_s=600, audience="isthmus") for who in ("alice", "carol")}
    files = tmp_path / "files"
    files.mkdir()
    try:
        yield Platform(server.address, store, tokens, files)
    finally:
        await server.stop(0)


def flat(result: Result) -> str:
    return " ".join(result.output.replace("│", "").split())


async def test_put_get_versions_rollback(platform: Platform) -> None:
    none = await platform.cli("carol", "policy", "versions", "-t", "acme")
    assert none.exit_code == 0, none.output
    assert "never stored a policy" in none.stdout and "'default'" in none.stdout

    put = await platform.cli("alice", "policy", "put", platform.file("p.toml", TOML_POLICY), "-t", "acme")
    assert put.exit_code == 0, put.output
    assert "policy v1 of tenant acme is current (put by alice" in flat(put)
    # what the file left out took the built-in defaults (injection blocking stays on)
    assert platform.store.get(TenantId("acme")) == Policy(
        injection_threshold=0.4,
        pii_action=PolicyAction.MASK,
        banned_topics=(BannedTopic("weapons", "how to build or buy weapons", 0.65),),
    )
    again = await platform.cli("alice", "policy", "put", platform.file("p.toml", TOML_POLICY), "-t", "acme")
    assert again.exit_code == 0 and "policy v1 of tenant acme" in flat(again)  # same content: no v2

    shown = await platform.cli("carol", "policy", "get", "-t", "acme")
    assert shown.exit_code == 0, shown.output
    text = flat(shown)
    assert "version: v1 (current)" in text and "weapons (>= 0.65): how to build or buy weapons" in text
    assert "input PII: mask >= 0.50" in text and "injection: block >= 0.40" in text

    as_json = await platform.cli("alice", "policy", "get", "-t", "acme", "--json")
    data = json.loads(as_json.stdout)
    assert (data["label"], data["block_injection"], data["created_by"]) == ("v1", True, "alice")
    back = await platform.cli(
        "alice", "policy", "put", platform.file("v1.json", as_json.stdout), "-t", "acme"
    )
    assert back.exit_code == 0 and "policy v1 of tenant acme" in flat(back)  # read back, put back: unchanged

    data |= {"block_injection": False, "output_pii_entities": []}
    changed = await platform.cli(
        "alice", "policy", "put", platform.file("v2.json", json.dumps(data)), "-t", "acme"
    )
    assert changed.exit_code == 0 and "policy v2 of tenant acme" in flat(changed)
    v2 = platform.store.get(TenantId("acme"))
    assert not v2.block_injection and v2.output_pii_entities is None  # the JSON said "not set"

    listed = await platform.cli("carol", "policy", "versions", "-t", "acme")
    rows = [[c for c in line.split() if c != "│"] for line in listed.stdout.splitlines()]
    rows = [r for r in rows if r and r[0].startswith("v")]
    v1_at = platform.store.version(TenantId("acme"), 1).created_at
    assert v1_at is not None
    assert [r[:4] for r in rows] == [
        ["v2", "*", "put", "alice"],
        ["v1", "put", "alice", v1_at.isoformat("T", "seconds")],
    ]

    rolled = await platform.cli("alice", "policy", "rollback", "v1", "-t", "acme")
    assert rolled.exit_code == 0, rolled.output
    assert "policy v1 of tenant acme is current again (put by alice" in flat(rolled)
    assert platform.store.current(TenantId("acme")).label == "v1"
    old = await platform.cli("carol", "policy", "get", "-t", "acme", "--version", "2", "--json")
    assert (json.loads(old.stdout)["label"], json.loads(old.stdout)["current"]) == ("v2", False)


async def test_refusals_say_why(platform: Platform) -> None:
    denied = await platform.cli("carol", "policy", "put", platform.file("p.toml", TOML_POLICY), "-t", "acme")
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in flat(denied)
    denied = await platform.cli("carol", "policy", "rollback", "1", "-t", "acme")
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in flat(denied)

    unknown = await platform.cli(
        "alice", "policy", "put", platform.file("u.toml", "pii_actions = 'mask'"), "-t", "acme"
    )
    assert unknown.exit_code == 2 and "unknown policy fields ['pii_actions']" in flat(unknown)
    broken = await platform.cli(
        "alice", "policy", "put", platform.file("b.toml", "pii_action = "), "-t", "acme"
    )
    assert broken.exit_code == 2 and "cannot read the policy file" in flat(broken)
    bad = "pii_action = 'shred'\ningest_scope = 'tenant'\npii_threshold = 2.0\n"
    invalid = await platform.cli("alice", "policy", "put", platform.file("bad.toml", bad), "-t", "acme")
    assert invalid.exit_code == 1
    for expected in (
        "INVALID_ARGUMENT",
        "pii_action must be one of",
        "ingest_scope must be one of",
        "pii_threshold",
    ):
        assert expected in flat(invalid), flat(invalid)
    missing = await platform.cli("alice", "policy", "rollback", "v4", "-t", "acme")
    assert missing.exit_code == 1 and "NOT_FOUND" in flat(missing)
    wrong = await platform.cli("alice", "policy", "rollback", "latest", "-t", "acme")
    assert wrong.exit_code == 2 and "expected a version such as v3" in flat(wrong)
    assert platform.store.history(TenantId("acme")).versions == ()
