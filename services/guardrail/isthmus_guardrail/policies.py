"""Per-tenant guardrail policies, versioned, in one SQLite file (``<data_dir>/guardrail/policies.sqlite``).

* A tenant's policy is a list of **immutable versions** ``v1``, ``v2``… and a **current pointer**. Every
  check applies the current version and its verdict names it (:attr:`PolicyVersion.label`); a tenant that
  never stored a policy gets the built-in :class:`~isthmus_core.ports.guard.Policy` (version 0, label
  ``default``, never stored).
* :meth:`PolicyStore.put` stores a new version ``N+1`` (the highest number so far + 1) and makes it
  current — unless the current version already has that content (same :attr:`Policy.digest`): then
  nothing is stored and the current version is returned (a retried call, an operator reconciling again).
  :meth:`PolicyStore.rollback` moves the pointer to an earlier version (its number, author and source
  stay); :meth:`PolicyStore.apply_ref` does what a Tenant resource's ``guardrailPolicyRef`` asks (a preset
  by name, or a stored version by number).
* Files of the former store (one ``<tenant>.json`` per tenant in ``<data_dir>/guardrail/policies/``) are
  migrated when the store opens: each becomes version 1 (source ``migrated``, created at the file's
  modification time) of a tenant that has no version yet, and the file is removed once that is committed.
* Deleting a tenant (``tenants.deleted``) deletes its versions; with ``written_before`` (the event's
  time) only versions created before it go: a tenant deleted, created again and given a policy before a
  late or replayed deletion event is handled keeps the new one.
* Policies hold settings, never personal data: an erasure has nothing to purge here.

Every check reads its tenant's current version, so it is kept in memory once read; this store is the
only writer of its file (the guardrail runs one replica, its data on its own volume) and updates what is
kept on every write. A tenant id is parsed (:func:`~isthmus_core.contracts.ids.parse_tenant_id`) before
it reaches SQL or a path.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import structlog

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import (
    ConfigurationError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from isthmus_core.ports.guard import BannedTopic, IngestScope, Policy, PolicyAction
from isthmus_core.sqlite import SqliteFile
from isthmus_guardrail.presets import preset

log = structlog.get_logger("isthmus.guardrail.policies")

_T = TypeVar("_T")

#: the label of the built-in policy of a tenant that never stored one
DEFAULT_LABEL: Final = "default"
#: versions a tenant may store
MAX_VERSIONS: Final = 1000
DB_NAME: Final = "policies.sqlite"
#: the former store's directory (one ``<tenant>.json`` per tenant), migrated on open
LEGACY_DIR: Final = "policies"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_versions (
  tenant_id TEXT NOT NULL, number INTEGER NOT NULL, content TEXT NOT NULL, digest TEXT NOT NULL,
  created_at_us INTEGER NOT NULL, created_by TEXT NOT NULL, source TEXT NOT NULL,
  PRIMARY KEY (tenant_id, number));
CREATE TABLE IF NOT EXISTS policy_current (
  tenant_id TEXT PRIMARY KEY NOT NULL, number INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of a tenant's policy (number 0: the built-in default, never stored)."""

    tenant_id: TenantId
    number: int
    policy: Policy
    created_at: datetime | None = None
    created_by: str = ""
    #: what made it: ``put``, ``preset:<name>``, ``migrated``; "" for the built-in default
    source: str = ""

    @property
    def label(self) -> str:
        """``v3``; ``default`` for the built-in policy. Verdicts carry it."""
        return f"v{self.number}" if self.number else DEFAULT_LABEL


@dataclass(frozen=True, slots=True)
class PolicyHistory:
    #: newest first; empty when the tenant never stored a policy
    versions: tuple[PolicyVersion, ...]
    #: the current version's number (0: the built-in default)
    current: int


def builtin(tenant_id: TenantId) -> PolicyVersion:
    return PolicyVersion(tenant_id, 0, Policy())


# ---- (de)serialisation ------------------------------------------------------------------------------------


def policy_to_json(policy: Policy) -> str:
    """The stored form of a policy (keys sorted: one content, one text)."""
    return json.dumps(dataclasses.asdict(policy), sort_keys=True, separators=(",", ":"))


def policy_from_dict(data: Mapping[str, object]) -> Policy:
    """A policy from its JSON form (``dataclasses.asdict``); fields it lacks take the defaults, fields it
    does not know (an older or newer release's) are ignored. A bad value is :class:`InvalidArgument`."""
    known = {f.name for f in dataclasses.fields(Policy)}
    fields: dict[str, object] = {k: v for k, v in data.items() if k in known}
    try:
        for name in ("pii_entities", "ingest_pii_entities"):
            if name in fields:
                fields[name] = tuple(fields[name])  # type: ignore[arg-type]
        if fields.get("output_pii_entities") is not None:
            fields["output_pii_entities"] = tuple(fields["output_pii_entities"])  # type: ignore[arg-type]
        for name in ("pii_action", "output_pii_action", "ingest_injection_action", "ingest_pii_action"):
            if name in fields:
                fields[name] = PolicyAction(str(fields[name]))
        if "ingest_scope" in fields:
            fields["ingest_scope"] = IngestScope(str(fields["ingest_scope"]))
        if "banned_topics" in fields:
            fields["banned_topics"] = tuple(BannedTopic(**t) for t in fields["banned_topics"])  # type: ignore[attr-defined]
        return Policy(**fields)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"not a policy: {exc}") from None


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime) -> int:
    """``at`` in whole microseconds since the epoch (exact: no float in between)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ---- the store --------------------------------------------------------------------------------------------


class PolicyStore:
    """The versioned policies of every tenant, in ``<root>/policies.sqlite`` (``root``: the guardrail's
    data directory). Opening failures are :class:`ConfigurationError`, later SQLite failures
    :class:`Unavailable`."""

    def __init__(self, root: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._kept: dict[TenantId, PolicyVersion] = {}
        path = root / DB_NAME
        self._db = SqliteFile(path, _SCHEMA, "guardrail policies")
        self.path = path
        self._migrate(root / LEGACY_DIR)

    def close(self) -> None:
        self._db.close()

    def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` in one transaction (rolled back when it raises)."""
        return self._db.run(fn)

    # ---- reads

    def current(self, tenant_id: TenantId) -> PolicyVersion:
        """The version every check of the tenant applies (the built-in default when none is stored)."""
        tenant = parse_tenant_id(tenant_id)
        kept = self._kept.get(tenant)
        if kept is not None:
            return kept

        def read(conn: sqlite3.Connection) -> PolicyVersion:
            row = conn.execute("SELECT number FROM policy_current WHERE tenant_id = ?", (tenant,)).fetchone()
            return builtin(tenant) if row is None else _version(conn, tenant, int(row[0]))

        found = self._run(read)
        self._kept[tenant] = found
        return found

    def get(self, tenant_id: TenantId) -> Policy:
        """The current policy's content."""
        return self.current(tenant_id).policy

    def version(self, tenant_id: TenantId, number: int) -> PolicyVersion:
        """Version ``number`` (0: the current one), or :class:`NotFound`."""
        tenant = parse_tenant_id(tenant_id)
        if number == 0:
            return self.current(tenant)
        _check_number(number)
        return self._run(lambda conn: _version(conn, tenant, number))

    def history(self, tenant_id: TenantId) -> PolicyHistory:
        tenant = parse_tenant_id(tenant_id)

        def read(conn: sqlite3.Connection) -> PolicyHistory:
            rows = conn.execute(
                "SELECT number, content, created_at_us, created_by, source FROM policy_versions"
                " WHERE tenant_id = ? ORDER BY number DESC",
                (tenant,),
            ).fetchall()
            row = conn.execute("SELECT number FROM policy_current WHERE tenant_id = ?", (tenant,)).fetchone()
            return PolicyHistory(tuple(_row(tenant, r) for r in rows), 0 if row is None else int(row[0]))

        return self._run(read)

    # ---- writes

    def put(
        self, tenant_id: TenantId, policy: Policy, *, created_by: str = "", source: str = "put"
    ) -> PolicyVersion:
        """Store ``policy`` as the tenant's next version and make it current; nothing is stored when the
        current version already has this content (that version is returned)."""
        tenant = parse_tenant_id(tenant_id)
        current = self.current(tenant)
        if current.policy.digest == policy.digest:
            return current
        at = self._clock()

        def write(conn: sqlite3.Connection) -> PolicyVersion:
            count, highest = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(number), 0) FROM policy_versions WHERE tenant_id = ?",
                (tenant,),
            ).fetchone()
            if count >= MAX_VERSIONS:
                raise ResourceExhausted(f"a tenant's policy has at most {MAX_VERSIONS} versions")
            number = int(highest) + 1
            conn.execute(
                "INSERT INTO policy_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, number, policy_to_json(policy), policy.digest, _us(at), created_by, source),
            )
            _point(conn, tenant, number)
            return PolicyVersion(tenant, number, policy, at, created_by, source)

        stored = self._run(write)
        self._kept[tenant] = stored
        log.info("guardrail policy stored", tenant_id=tenant, version=stored.label, source=source)
        return stored

    def rollback(self, tenant_id: TenantId, number: int) -> PolicyVersion:
        """Make stored version ``number`` current again (:class:`NotFound` if there is none)."""
        tenant = parse_tenant_id(tenant_id)
        _check_number(number)

        def write(conn: sqlite3.Connection) -> PolicyVersion:
            found = _version(conn, tenant, number)
            _point(conn, tenant, number)
            return found

        found = self._run(write)
        self._kept[tenant] = found
        log.info("guardrail policy rolled back", tenant_id=tenant, version=found.label)
        return found

    def apply_ref(
        self,
        tenant_id: TenantId,
        *,
        name: str = "",
        version: int = 0,
        created_by: str = "",
        validate: Callable[[Policy], Policy] = lambda p: p,
    ) -> PolicyVersion:
        """A ``guardrailPolicyRef``: stored ``version`` made current (when > 0), else the preset ``name``
        stored as a new version (source ``preset:<name>``) unless the current version has its content.
        Idempotent. ``validate`` checks a preset against the guard that will apply it."""
        if version < 0:
            raise InvalidArgument(f"version must be a stored version's number (1, 2…), got {version}")
        if version > 0:
            current = self.current(tenant_id)
            return current if current.number == version else self.rollback(tenant_id, version)
        if not name:
            raise InvalidArgument("a policy reference names a preset or a version")
        return self.put(tenant_id, validate(preset(name)), created_by=created_by, source=f"preset:{name}")

    def delete(self, tenant_id: TenantId, written_before: datetime | None = None) -> bool:
        """Remove the tenant's versions (its tenant was deleted); True if there were any.

        With ``written_before`` (the deletion event's time) versions created later are kept: they belong
        to a tenant created again since, and a replayed or late deletion event must not remove them (the
        current pointer then names the newest kept version if its own was removed)."""
        tenant = parse_tenant_id(tenant_id)
        before = None if written_before is None else _us(written_before)

        def write(conn: sqlite3.Connection) -> bool:
            if before is None:
                gone = conn.execute("DELETE FROM policy_versions WHERE tenant_id = ?", (tenant,)).rowcount
            else:
                gone = conn.execute(
                    "DELETE FROM policy_versions WHERE tenant_id = ? AND created_at_us < ?", (tenant, before)
                ).rowcount
            row = conn.execute(
                "SELECT MAX(number) FROM policy_versions WHERE tenant_id = ?", (tenant,)
            ).fetchone()
            if row[0] is None:
                conn.execute("DELETE FROM policy_current WHERE tenant_id = ?", (tenant,))
            else:
                conn.execute(
                    "UPDATE policy_current SET number = ? WHERE tenant_id = ? AND number NOT IN"
                    " (SELECT number FROM policy_versions WHERE tenant_id = ?)",
                    (int(row[0]), tenant, tenant),
                )
            return bool(gone)

        self._kept.pop(tenant, None)
        try:
            return self._run(write)
        finally:
            self._kept.pop(tenant, None)

    # ---- migration of the former one-file-per-tenant store

    def _migrate(self, legacy: Path) -> None:
        if not legacy.is_dir():
            return
        resolved = legacy.resolve()
        for path in sorted(legacy.glob("*.json")):
            try:
                tenant = parse_tenant_id(path.stem)
            except InvalidArgument:
                log.warning("guardrail policy file skipped: not a tenant id", path=str(path))
                continue
            if path.resolve().parent != resolved:
                log.warning("guardrail policy file skipped: it lies outside its directory", path=str(path))
                continue
            try:
                policy = policy_from_dict(json.loads(path.read_text()))
                at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except (OSError, ValueError, InvalidArgument) as exc:
                raise ConfigurationError(f"guardrail policies: cannot migrate {path}: {exc}") from exc

            if self._run(partial(_migrate_one, tenant=tenant, policy=policy, at=at)):
                log.info("guardrail policy migrated", tenant_id=tenant, version="v1", path=str(path))
            try:
                path.unlink()
            except OSError as exc:
                raise ConfigurationError(f"guardrail policies: cannot remove {path}: {exc}") from exc


def _migrate_one(conn: sqlite3.Connection, *, tenant: TenantId, policy: Policy, at: datetime) -> bool:
    if conn.execute("SELECT 1 FROM policy_versions WHERE tenant_id = ?", (tenant,)).fetchone():
        return False  # migrated already (the file outlived a crash)
    conn.execute(
        "INSERT INTO policy_versions VALUES (?, 1, ?, ?, ?, '', 'migrated')",
        (tenant, policy_to_json(policy), policy.digest, _us(at)),
    )
    _point(conn, tenant, 1)
    return True


def _check_number(number: int) -> None:
    if number <= 0:
        raise InvalidArgument(f"version must be a stored version's number (1, 2…), got {number}")


def _point(conn: sqlite3.Connection, tenant: TenantId, number: int) -> None:
    conn.execute(
        "INSERT INTO policy_current VALUES (?, ?)"
        " ON CONFLICT (tenant_id) DO UPDATE SET number = excluded.number",
        (tenant, number),
    )


def _row(tenant: TenantId, row: tuple[int, str, int, str, str]) -> PolicyVersion:
    number, content, at_us, created_by, source = row
    return PolicyVersion(
        tenant,
        int(number),
        policy_from_dict(json.loads(content)),
        _EPOCH + timedelta(microseconds=at_us),
        created_by,
        source,
    )


def _version(conn: sqlite3.Connection, tenant: TenantId, number: int) -> PolicyVersion:
    row = conn.execute(
        "SELECT number, content, created_at_us, created_by, source FROM policy_versions"
        " WHERE tenant_id = ? AND number = ?",
        (tenant, number),
    ).fetchone()
    if row is None:
        raise NotFound(f"tenant {tenant!r} has no policy version v{number}")
    return _row(tenant, row)
