"""What evaluation keeps of the platform's events: the audit log and the provenance of every answer.

One SQLite database under the evaluation data dir (``<data_dir>/evaluation/records.sqlite``), two tables:

* ``audit``: every :class:`~isthmus_core.contracts.events.AuditRecorded` (from the audit topic), one row
  per event id (a redelivered record is stored once), indexed by tenant, principal and time; listed
  newest first by :meth:`RecordStore.list_audit` with filters and opaque page tokens;
* ``provenance``: the :class:`~isthmus_core.contracts.events.AnswerProduced` event of each answer, one
  row per (tenant, answer id) (the first event of an answer wins: redeliveries change nothing); read
  back by :meth:`RecordStore.provenance` only within the tenant it belongs to.

Rows keep the whole event as JSON, so what is returned is what was published. Methods are synchronous
(one connection, one lock); the async edges call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, get_args

from isthmus_core.contracts.events import AnswerProduced, AuditKind, AuditRecorded
from isthmus_core.errors import InvalidArgument

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 10_000
AUDIT_KINDS: Final = frozenset(get_args(AuditKind))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
  event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, principal TEXT NOT NULL, kind TEXT NOT NULL,
  occurred_us INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_time ON audit (occurred_us, event_id);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant_id, occurred_us, event_id);
CREATE INDEX IF NOT EXISTS audit_principal ON audit (principal, occurred_us, event_id);
CREATE TABLE IF NOT EXISTS provenance (
  tenant_id TEXT NOT NULL, answer_id TEXT NOT NULL, event_id TEXT NOT NULL, answered_us INTEGER NOT NULL,
  body TEXT NOT NULL, PRIMARY KEY (tenant_id, answer_id));
"""


def _us(t: datetime) -> int:
    """Microseconds since the epoch (a naive datetime is read as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log (all optional) and one page of it. Build it with :meth:`checked`."""

    tenant_id: str | None = None  # None: every tenant (and records about no tenant)
    principal: str | None = None
    kinds: frozenset[str] = field(default_factory=frozenset)
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = DEFAULT_LIMIT
    page_token: str = ""

    @classmethod
    def checked(
        cls,
        *,
        tenant_id: str | None = None,
        principal: str | None = None,
        kinds: frozenset[str] = frozenset(),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 0,
        page_token: str = "",
    ) -> AuditQuery:
        """The query, or :class:`InvalidArgument` saying which filter is wrong. ``limit`` 0 = the default."""
        unknown = sorted(kinds - AUDIT_KINDS)
        if unknown:
            raise InvalidArgument(f"unknown audit kinds {unknown}; the kinds are {sorted(AUDIT_KINDS)}")
        if limit == 0:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(
                f"limit must be between 1 and {MAX_LIMIT} (0 = {DEFAULT_LIMIT}), got {limit}"
            )
        if since is not None and until is not None and since >= until:
            raise InvalidArgument(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        if page_token:
            _cursor(page_token)
        return cls(tenant_id or None, principal or None, kinds, since, until, limit, page_token)


def _token(occurred_us: int, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([occurred_us, event_id]).encode()).decode()


def _cursor(token: str) -> tuple[int, str]:
    """The position a page token names; InvalidArgument for a token this store did not give."""
    try:
        when, event_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(when, int) and isinstance(event_id, str):
            return when, event_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise InvalidArgument("page_token is not one this service gave: pass a response's next_page_token")


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditRecorded]
    next_page_token: str = ""  # "" = nothing more


class RecordStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # an erased answer's rows are zeroed, not left in free pages (erasure, docs/security.md)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- audit ----------------------------------------------------------------------------------------

    def add_audit(self, ev: AuditRecorded) -> bool:
        """Keep a record; False (nothing changed) if a record with its event id is already kept."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO audit (event_id, tenant_id, principal, kind, occurred_us, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ev.event_id, ev.tenant_id, ev.principal, ev.kind, _us(ev.occurred_at), ev.model_dump_json()),
            )
            return cur.rowcount == 1

    def list_audit(self, q: AuditQuery) -> AuditPage:
        """Newest first (ties by event id), at most ``q.limit`` records after ``q.page_token``."""
        where: list[str] = []
        args: list[object] = []
        if q.tenant_id is not None:
            where.append("tenant_id = ?")
            args.append(q.tenant_id)
        if q.principal is not None:
            where.append("principal = ?")
            args.append(q.principal)
        if q.kinds:
            where.append(f"kind IN ({', '.join('?' * len(q.kinds))})")
            args.extend(sorted(q.kinds))
        if q.since is not None:
            where.append("occurred_us >= ?")
            args.append(_us(q.since))
        if q.until is not None:
            where.append("occurred_us < ?")
            args.append(_us(q.until))
        if q.page_token:
            when, event_id = _cursor(q.page_token)
            where.append("(occurred_us < ? OR (occurred_us = ? AND event_id < ?))")
            args.extend([when, when, event_id])
        sql = "SELECT occurred_us, event_id, body FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY occurred_us DESC, event_id DESC LIMIT ?"
        args.append(q.limit + 1)  # one more: is there a next page?
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        page = rows[: q.limit]
        events = [AuditRecorded.model_validate_json(str(body)) for _, _, body in page]
        more = len(rows) > q.limit
        return AuditPage(events, _token(int(page[-1][0]), str(page[-1][1])) if more else "")

    # -- provenance -----------------------------------------------------------------------------------

    def add_answer(self, ev: AnswerProduced) -> bool:
        """Keep an answer's provenance; False if that tenant's answer is already kept (a redelivery)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO provenance (tenant_id, answer_id, event_id, answered_us, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (ev.tenant_id, ev.question_id, ev.event_id, _us(ev.occurred_at), ev.model_dump_json()),
            )
            return cur.rowcount == 1

    def provenance(self, tenant_id: str, answer_id: str) -> AnswerProduced | None:
        """The answer of that tenant; None if the tenant has no such answer (whoever else may)."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM provenance WHERE tenant_id = ? AND answer_id = ?", (tenant_id, answer_id)
            ).fetchone()
        return None if row is None else AnswerProduced.model_validate_json(str(row[0]))

    def drop_tenant_answers(self, tenant_id: str, answered_before: datetime) -> int:
        """Forget a deleted tenant's answers given before it was deleted (a tenant created again since
        keeps its new ones); how many were forgotten. Audit records are kept."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM provenance WHERE tenant_id = ? AND answered_us <= ?",
                (tenant_id, _us(answered_before)),
            )
            return cur.rowcount

    def erase_answers(self, tenant_id: str, document_ids: Collection[str], whole_tenant: bool) -> int:
        """Forget the tenant's answers that retrieved or cited any of ``document_ids`` (every answer of
        the tenant with ``whole_tenant``), leaving no copy in the database files; how many. Audit
        records are kept: they name principals and methods, never document content."""
        erased = set(document_ids)
        with self._lock:
            if whole_tenant:
                cur = self._db.execute("DELETE FROM provenance WHERE tenant_id = ?", (tenant_id,))
                count = cur.rowcount
            else:
                rows = self._db.execute(
                    "SELECT answer_id, body FROM provenance WHERE tenant_id = ?", (tenant_id,)
                ).fetchall()
                doomed = [
                    (tenant_id, str(answer_id))
                    for answer_id, body in rows
                    if _documents_of(AnswerProduced.model_validate_json(str(body))) & erased
                ]
                self._db.executemany("DELETE FROM provenance WHERE tenant_id = ? AND answer_id = ?", doomed)
                count = len(doomed)
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL holds copies of the pages
            return count


def _documents_of(ev: AnswerProduced) -> set[str]:
    """Every document an answer used: its citations, and the chunks retrieved and cited for it."""
    p = ev.provenance
    return {c.document_id for c in ev.citations} | {c.document_id for c in (*p.retrieved, *p.cited)}
