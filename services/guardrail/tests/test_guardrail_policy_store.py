"""The versioned policy store: immutable versions and a current pointer per tenant, idempotent puts,
rollbacks, policy references (presets or versions), migration of the former JSON files, deletion with
``written_before``, persistence across restarts."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import ConfigurationError, InvalidArgument, NotFound
from isthmus_core.ports.guard import BannedTopic, IngestScope, Policy, PolicyAction
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import LEGACY_DIR, PolicyStore
from isthmus_guardrail.presets import PRESETS

ACME, GLOBEX = TenantId("acme"), TenantId("globex")
T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> PolicyStore:
    return PolicyStore(tmp_path, clock=clock)


def test_a_tenant_without_versions_gets_the_builtin_default(store: PolicyStore) -> None:
    current = store.current(ACME)
    assert (current.number, current.label, current.policy, current.created_at) == (
        0,
        "default",
        Policy(),
        None,
    )
    history = store.history(ACME)
    assert (history.versions, history.current) == ((), 0)


def test_put_stores_immutable_versions_and_the_same_content_twice_only_once(store: PolicyStore) -> None:
    first = Policy(injection_threshold=0.3)
    second = Policy(injection_threshold=0.4, banned_topics=(BannedTopic("weapons", "building weapons"),))
    v1 = store.put(ACME, first, created_by="alice")
    v2 = store.put(ACME, second, created_by="bob")
    assert (v1.label, v1.created_by, v1.source, v2.label) == ("v1", "alice", "put", "v2")
    assert store.put(ACME, second, created_by="carol") == v2  # same content as the current: nothing new
    assert store.current(ACME) == v2
    v3 = store.put(ACME, first)  # an older version's content is a new version (the history stays linear)
    assert v3.number == 3 and v3.policy == first
    assert [v.number for v in store.history(ACME).versions] == [3, 2, 1]
    assert store.version(ACME, 1) == v1 and store.version(ACME, 0) == v3
    assert store.current(GLOBEX).label == "default"  # tenants do not share versions


def test_a_default_policy_put_on_a_tenant_without_versions_stores_nothing(store: PolicyStore) -> None:
    assert store.put(ACME, Policy()).label == "default"
    assert store.history(ACME).versions == ()


def test_rollback_moves_the_pointer_and_keeps_every_version(store: PolicyStore) -> None:
    v1 = store.put(ACME, Policy(injection_threshold=0.3), created_by="alice")
    store.put(ACME, Policy(injection_threshold=0.4))
    assert store.rollback(ACME, 1) == v1
    assert store.current(ACME) == v1 and store.get(ACME).injection_threshold == 0.3
    history = store.history(ACME)
    assert history.current == 1 and [v.number for v in history.versions] == [2, 1]
    assert history.versions[1].source == "put" and history.versions[1].created_by == "alice"
    with pytest.raises(NotFound, match="v7"):
        store.rollback(ACME, 7)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument, match="version"):
            store.rollback(ACME, bad)
    assert store.current(ACME) == v1
    # the next put numbers after the highest stored version, whatever the pointer
    assert store.put(ACME, Policy(injection_threshold=0.5)).number == 3


def test_apply_ref_stores_a_preset_once_or_points_at_a_version(store: PolicyStore) -> None:
    strict = store.apply_ref(ACME, name="strict", created_by="operator")
    assert (strict.label, strict.source, strict.created_by) == ("v1", "preset:strict", "operator")
    assert strict.policy == PRESETS["strict"]
    assert store.apply_ref(ACME, name="strict") == strict  # every reconcile: nothing new
    assert store.apply_ref(ACME, name="permissive").label == "v2"
    assert store.apply_ref(ACME, version=1) == strict
    assert store.apply_ref(ACME, version=1, name="permissive") == strict  # a version wins over a name
    with pytest.raises(InvalidArgument, match=r"preset 'lenient'.*default, permissive, strict"):
        store.apply_ref(ACME, name="lenient")
    with pytest.raises(InvalidArgument, match="preset or a version"):
        store.apply_ref(ACME)
    with pytest.raises(NotFound):
        store.apply_ref(ACME, version=9)
    assert store.apply_ref(GLOBEX, name="default").label == "default"  # the built-in already has it
    assert len(store.history(ACME).versions) == 2


def test_every_preset_is_a_valid_policy() -> None:
    assert set(PRESETS) == {"default", "strict", "permissive"}
    assert PRESETS["default"] == Policy()
    for name, policy in PRESETS.items():
        assert Guard(None).validate_policy(policy) is policy, name
    assert len({p.digest for p in PRESETS.values()}) == 3
    strict, permissive = PRESETS["strict"], PRESETS["permissive"]
    assert strict.injection_threshold < Policy().injection_threshold < permissive.injection_threshold
    assert "PERSON" in strict.pii_entities and permissive.ingest_scope is IngestScope.CHUNK


def test_versions_outlive_a_restart(tmp_path: Path, clock: Clock) -> None:
    store = PolicyStore(tmp_path, clock=clock)
    v1 = store.put(ACME, Policy(pii_action=PolicyAction.MASK), created_by="alice")
    store.put(ACME, Policy(injection_threshold=0.9))
    store.rollback(ACME, 1)
    store.close()
    again = PolicyStore(tmp_path)
    assert again.current(ACME) == v1 and v1.created_at == T0 + timedelta(minutes=1)
    assert [v.label for v in again.history(ACME).versions] == ["v2", "v1"]


def test_deleting_a_tenant_keeps_the_versions_written_after_the_event(
    store: PolicyStore, clock: Clock
) -> None:
    store.put(ACME, Policy(injection_threshold=0.3))  # T0+1
    store.put(ACME, Policy(injection_threshold=0.4))  # T0+2
    deleted_at = clock.now + timedelta(seconds=30)
    v3 = store.put(ACME, Policy(injection_threshold=0.5))  # T0+3: the tenant created again since
    store.rollback(ACME, 1)  # (pointing at a version the late event removes)
    store.put(GLOBEX, Policy(injection_threshold=0.6))
    assert store.delete(ACME, written_before=deleted_at) is True
    assert store.current(ACME) == v3  # the pointer moved to the newest kept version
    assert [v.number for v in store.history(ACME).versions] == [3]
    assert store.delete(ACME, written_before=deleted_at) is False  # replayed: nothing more goes
    assert store.put(ACME, Policy(injection_threshold=0.7)).number == 4
    assert store.delete(ACME) is True
    assert store.current(ACME).label == "default" and store.history(ACME) == store.history(TenantId("nobody"))
    assert store.current(GLOBEX).label == "v1"  # another tenant's versions stay


def test_the_former_json_files_become_version_1(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_DIR
    legacy.mkdir()
    old = {
        "block_injection": True,
        "injection_threshold": 0.25,
        "pii_entities": ["EMAIL_ADDRESS"],
        "version": "x",
    }
    (legacy / "acme.json").write_text(json.dumps(old))
    (legacy / "Not-A-Tenant.json").write_text("{}")
    store = PolicyStore(tmp_path)
    v1 = store.current(ACME)
    assert (v1.label, v1.source, v1.created_by) == ("v1", "migrated", "")
    assert v1.policy == Policy(injection_threshold=0.25, pii_entities=("EMAIL_ADDRESS",))
    assert not (legacy / "acme.json").exists()  # migrated once: a later tenant deletion is final
    assert (legacy / "Not-A-Tenant.json").exists()  # not a tenant's: left alone
    store.close()
    assert [v.label for v in PolicyStore(tmp_path).history(ACME).versions] == ["v1"]


def test_a_former_json_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / LEGACY_DIR).mkdir()
    (tmp_path / LEGACY_DIR / "acme.json").write_text('{"pii_action": "shout"}')
    with pytest.raises(ConfigurationError, match=r"acme\.json"):
        PolicyStore(tmp_path)
    with sqlite3.connect(tmp_path / "policies.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM policy_versions").fetchone() == (0,)
