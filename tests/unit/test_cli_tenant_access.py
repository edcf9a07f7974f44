"""``isthmus tenant grant|revoke|bindings|quota`` edit and print the access file: the path from
``--access-file``, else the settings' ``access_file``, else ``<data_dir>/access.toml``; bad principals,
roles, tenants and families are refused (exit 2) without touching the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus_cli.main import app
from isthmus_core.auth.access_file import AccessFile, Quota, load, save
from isthmus_core.auth.identity import Role

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": "300", **(env or {})})
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "access.toml"


def test_grant_revoke_and_bindings(path: Path) -> None:
    f = ("--access-file", str(path))
    assert invoke("tenant", "grant", "acme", "--principal", "client-abc", "--role", "writer", *f)[0] == 0
    assert invoke("tenant", "grant", "acme", "-p", "group:analysts", "-r", "reader", *f)[0] == 0
    assert invoke("tenant", "grant", "*", "-p", "ops-admin", "-r", "platform-admin", *f)[0] == 0
    code, out, _ = invoke("tenant", "grant", "acme", "-p", "client-abc", "-r", "writer", *f)
    assert code == 0 and "already holds" in out
    assert load(path) == AccessFile().granted("acme", "client-abc", Role.WRITER).granted(
        "acme", "group:analysts", Role.READER
    ).granted("*", "ops-admin", Role.PLATFORM_ADMIN)

    code, out, _ = invoke("tenant", "bindings", *f, "--json")
    assert code == 0
    assert json.loads(out) == [
        {"tenant": "*", "principal": "ops-admin", "role": "platform-admin"},
        {"tenant": "acme", "principal": "client-abc", "role": "writer"},
        {"tenant": "acme", "principal": "group:analysts", "role": "reader"},
    ]
    code, out, _ = invoke("tenant", "bindings", "*", *f, "--json")
    assert [r["principal"] for r in json.loads(out)] == ["ops-admin"]
    code, out, _ = invoke("tenant", "bindings", "acme", *f)
    assert code == 0 and "group:analysts" in out and "ops-admin" not in out

    code, out, _ = invoke("tenant", "revoke", "acme", "-p", "client-abc", *f)
    assert code == 0 and "revoked 1" in out
    code, _, err = invoke("tenant", "revoke", "acme", "-p", "client-abc", *f)
    assert code == 1 and "holds no role" in err
    assert [b.principal for _, b in load(path).bindings()] == ["ops-admin", "group:analysts"]


@pytest.mark.parametrize(
    "args",
    [
        ("grant", "Acme", "-p", "x", "-r", "reader"),  # not a tenant id
        ("grant", "acme", "-p", "-x", "-r", "reader"),  # not a principal
        ("grant", "acme", "-p", "group:", "-r", "reader"),  # a group without a name
        ("grant", "acme", "-p", "x", "-r", "emperor"),  # not a role
        ("quota", "acme", "--requests-per-s", "asks=5"),  # not a family
        ("quota", "acme", "--requests-per-s", "ask"),  # not family=N
        ("quota", "acme", "--requests-per-s", "ask=0"),  # at least 1
        ("quota", "acme", "--max-bytes", "-1"),
        ("quota", "*", "--max-bytes", "1"),  # quotas are per tenant
    ],
)
def test_bad_input_is_refused_and_the_file_untouched(path: Path, args: tuple[str, ...]) -> None:
    before = AccessFile().granted("acme", "keep", Role.READER)
    save(path, before)
    code, _, _ = invoke("tenant", *args, "--access-file", str(path))
    assert code == 2
    assert load(path) == before


def test_quota_sets_merges_shows_and_clears(path: Path) -> None:
    f = ("--access-file", str(path))
    code, _, _ = invoke(
        "tenant", "quota", "acme", "--requests-per-s", "ask=5", "--requests-per-s", "search=50", *f
    )
    assert code == 0
    code, _, _ = invoke("tenant", "quota", "acme", "--requests-per-s", "ask=7", "--max-documents", "1000", *f)
    assert code == 0
    assert load(path).quota("acme") == Quota(requests_per_s={"ask": 7, "search": 50}, max_documents=1000)

    code, out, _ = invoke("tenant", "quota", "acme", *f, "--json")  # no change: shown
    assert code == 0
    assert json.loads(out) == {
        "tenant": "acme",
        "requests_per_s": {"ask": 7, "search": 50},
        "max_documents": 1000,
    }
    code, out, _ = invoke("tenant", "quota", "acme", *f)
    assert code == 0 and "requests_per_s.ask" in out and "unlimited" in out

    code, _, _ = invoke("tenant", "quota", "acme", "--clear", "--llm-tokens-per-day", "200000", *f)
    assert code == 0
    assert load(path).quota("acme") == Quota(llm_tokens_per_day=200_000)
    assert invoke("tenant", "quota", "acme", "--clear", *f)[0] == 0
    assert load(path).quota("acme") is None


def test_the_file_comes_from_the_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, _, _ = invoke(
        "tenant", "grant", "acme", "-p", "bob", "-r", "auditor", env={"ISTHMUS_DATA_DIR": str(data)}
    )
    assert code == 0
    assert load(data / "access.toml") == AccessFile().granted("acme", "bob", Role.AUDITOR)

    configured = tmp_path / "conf" / "policy.toml"
    config = tmp_path / "isthmus.toml"
    config.write_text(f'[common]\naccess_file = "{configured}"\n')
    code, _, _ = invoke("tenant", "grant", "acme", "-p", "carol", "-r", "reader", "--config", str(config))
    assert code == 0
    assert [b.principal for _, b in load(configured).bindings()] == ["carol"]


def test_a_broken_access_file_is_reported_not_overwritten(path: Path) -> None:
    path.write_text('[tenants.acme]\nbindings = [{ principal = "x", role = "emperor" }]\n')
    code, _, err = invoke("tenant", "grant", "acme", "-p", "y", "-r", "reader", "--access-file", str(path))
    assert code == 2 and "emperor" in err
    assert "emperor" in path.read_text()
