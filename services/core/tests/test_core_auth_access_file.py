"""The access file: its TOML format, validation listing every problem, atomic 0600 saves, the pure edits
the CLI makes, and the reloader (at most one look a second; a broken edit keeps the last good file)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from isthmus_core.auth.access_file import (
    FAMILIES,
    AccessFile,
    AccessFileError,
    AccessFileReloader,
    Binding,
    Quota,
    access_file_path,
    dumps,
    load,
    parse,
    save,
)
from isthmus_core.auth.identity import Role
from isthmus_core.auth.methods import METHOD_RULES
from isthmus_core.settings import CommonSettings

DESIGN_EXAMPLE = """
[platform]                      # bindings for every tenant ("*")
bindings = [{ principal = "ops-admin", role = "platform-admin" }]
[tenants.acme]
bindings = [
  { principal = "client-abc", role = "writer" },
  { principal = "group:analysts", role = "reader" },
]
[tenants.acme.quota]            # every key optional; absent = unlimited
requests_per_s = { ask = 5, search = 50, ingest = 10 }   # per RPC family (MethodRule.family)
max_documents = 1000
max_bytes = 100_000_000
llm_tokens_per_day = 200_000
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_design_example_parses() -> None:
    model = parse(DESIGN_EXAMPLE)
    assert model.platform.bindings == [Binding(principal="ops-admin", role=Role.PLATFORM_ADMIN)]
    acme = model.tenants["acme"]
    assert [(b.principal, b.role) for b in acme.bindings] == [
        ("client-abc", Role.WRITER),
        ("group:analysts", Role.READER),
    ]
    assert acme.quota == Quota(
        requests_per_s={"ask": 5, "search": 50, "ingest": 10},
        max_documents=1000,
        max_bytes=100_000_000,
        llm_tokens_per_day=200_000,
    )
    assert list(model.bindings()) == [
        ("*", model.platform.bindings[0]),
        ("acme", acme.bindings[0]),
        ("acme", acme.bindings[1]),
    ]
    assert model.quota("acme") == acme.quota
    assert model.quota("other") is None


def test_families_are_the_method_table_s() -> None:
    assert {r.family for r in METHOD_RULES.values()} == FAMILIES
    assert {"ask", "search", "ingest"} <= FAMILIES


def test_every_problem_is_listed_together() -> None:
    text = """
[platform]
bindings = [{ principal = "-dash-first", role = "king" }, { principal = "group:", role = "reader" }]
[tenants.Acme]
bindings = []
[tenants."*"]
[tenants.ok]
bindings = [{ principal = "a b", role = "writer" }, { principal = "x", role = "reader", extra = 1 }]
[tenants.ok.quota]
requests_per_s = { asks = 5, ask = 0, search = 1.5 }
max_bytes = -1
max_documents = "10"
"""
    with pytest.raises(AccessFileError) as info:
        parse(text, "access.toml")
    problems = info.value.problems
    expected_places = [
        "platform.bindings.0.principal",
        "platform.bindings.0.role",
        "platform.bindings.1.principal",
        "tenants.Acme",
        "tenants.*",
        "tenants.ok.bindings.0.principal",
        "tenants.ok.bindings.1.extra",
        "tenants.ok.quota.requests_per_s.asks",
        "tenants.ok.quota.requests_per_s.ask",
        "tenants.ok.quota.requests_per_s.search",
        "tenants.ok.quota.max_bytes",
        "tenants.ok.quota.max_documents",
    ]
    for place in expected_places:
        assert any(p.startswith(place + ":") for p in problems), (place, problems)
    assert len(problems) == len(expected_places)
    text_of = "\n".join(problems)
    assert "put bindings for every tenant under [platform]" in text_of
    assert "unknown RPC family 'asks'" in text_of
    assert "access.toml" in str(info.value)


def test_not_toml_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text("[platform\n")
    with pytest.raises(AccessFileError, match="not valid TOML"):
        load(path)


def test_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path / "nope.toml") == AccessFile()


def test_save_round_trips_atomically_and_owner_only(tmp_path: Path) -> None:
    model = parse(DESIGN_EXAMPLE)
    path = tmp_path / "sub" / "access.toml"
    save(path, model)
    assert load(path) == model
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino
    save(path, model.granted("acme", "bob", Role.AUDITOR))
    assert path.stat().st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert [p.name for p in path.parent.iterdir()] == ["access.toml"]  # no temporary file left
    assert parse(dumps(AccessFile())) == AccessFile()


def test_edits_grant_revoke_and_quota() -> None:
    model = AccessFile()
    model = model.granted("*", "ops", Role.PLATFORM_ADMIN).granted("acme", "alice", Role.WRITER)
    assert model.granted("acme", "alice", Role.WRITER) == model  # idempotent
    model = model.granted("acme", "alice", Role.AUDITOR)
    assert [b.role for b in model.tenants["acme"].bindings] == [Role.WRITER, Role.AUDITOR]

    one, n = model.revoked("acme", "alice", Role.WRITER)
    assert n == 1 and [b.role for b in one.tenants["acme"].bindings] == [Role.AUDITOR]
    none, n = model.revoked("acme", "alice")
    assert n == 2 and "acme" not in none.tenants  # nothing left: the table goes
    same, n = model.revoked("beta", "alice")
    assert n == 0 and same == model
    platform, n = model.revoked("*", "ops")
    assert n == 1 and platform.platform.bindings == []

    limited = none.with_quota("acme", Quota(max_documents=3))
    assert limited.quota("acme") == Quota(max_documents=3)  # a quota alone keeps the tenant's table
    assert "acme" not in limited.with_quota("acme", Quota()).tenants
    with pytest.raises(ValueError):
        AccessFile().granted("Not A Tenant", "x", Role.READER)


def test_default_path_is_in_the_data_dir(tmp_path: Path) -> None:
    assert access_file_path(CommonSettings(data_dir=tmp_path)) == tmp_path / "access.toml"
    assert access_file_path(CommonSettings(access_file=tmp_path / "a.toml")) == tmp_path / "a.toml"


def test_reloader_looks_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    clock = Clock()
    reloader = AccessFileReloader(path, clock=clock)
    assert reloader.current() == AccessFile()

    granted = AccessFile().granted("acme", "alice", Role.READER)
    save(path, granted)
    clock.now += 0.5
    assert reloader.current() == AccessFile()  # not looked at yet
    clock.now += 0.6
    assert reloader.current() == granted
    assert reloader.generation == 1

    path.unlink()
    clock.now += 1.1
    assert reloader.current() == AccessFile()  # removed: no bindings


def test_a_broken_edit_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    good = AccessFile().granted("acme", "alice", Role.READER)
    save(path, good)
    clock = Clock()
    reloader = AccessFileReloader(path, clock=clock)
    assert reloader.current() == good

    path.write_text('[tenants.acme]\nbindings = [{ principal = "alice", role = "emperor" }]\n')
    clock.now += 1.1
    with capture_logs() as logs:
        assert reloader.current() == good
    [refused] = logs
    assert refused["log_level"] == "error"
    assert any("emperor" in p for p in refused["problems"])
    assert reloader.generation == 0

    fixed = good.granted("acme", "bob", Role.WRITER)
    save(path, fixed)
    clock.now += 1.1
    assert reloader.current() == fixed


def test_a_broken_file_at_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    path.write_text("[tenants.acme]\nbindings = 3\n")
    with pytest.raises(AccessFileError, match=r"tenants\.acme\.bindings"):
        AccessFileReloader(path)
