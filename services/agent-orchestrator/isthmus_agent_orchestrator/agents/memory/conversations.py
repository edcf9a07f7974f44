"""Conversations: the turns of each session, so a follow-up question can be condensed with the earlier ones.

One SQLite file (``<data_dir>/agent-orchestrator/memory.sqlite`` in the service; its directory is made
0700): a ``sessions`` row per (tenant, session id) naming the principal that began it, and its ``turns``.

* Ownership: session ids are per principal — each principal's ``session_id`` names a session of its own
  (stored under the key ``<principal> U+001F <session id>``), so two principals using the same id never
  share turns, and nothing tells one principal whether another used an id. ``history`` of a session
  that does not exist (never begun, expired or purged) is empty; ``append`` begins it.
* Time to live: a session expires ``ttl_s`` after its last turn; expired sessions are deleted when they
  are next touched and by the sweep each ``append`` makes. A session keeps its newest ``max_turns`` turns.
* Purge: turns hold answers made of the tenant's documents, and an erasure cannot tell which turns came
  from the erased documents, so every ``ErasureRequested`` of a tenant (here or mirrored from a peer
  region) deletes all the tenant's conversations; each erasure is applied once per file (its event id is
  recorded, so a consumer group that starts over does not wipe newer sessions again). ``TenantDeleted``
  deletes the tenant's sessions begun before the deletion. :meth:`SqliteConversationStore.subscriptions`
  gives both, in a consumer group of this process's own (every replica purges its own file).

Methods of the Protocol are async and run the SQLite work in a thread; SQLite failures raise
:class:`~isthmus_core.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, TypeVar

import structlog

from isthmus_agent_orchestrator.agents.types import SESSION_ID_PATTERN, Turn
from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ErasureRequested, TenantDeleted
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.sqlite import SqliteFile

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")

_SESSION: Final = re.compile(SESSION_ID_PATTERN)
#: turns a session keeps (settings.session_turns is at most 50)
DEFAULT_MAX_TURNS: Final = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  tenant_id TEXT NOT NULL, session_id TEXT NOT NULL, principal TEXT NOT NULL,
  created REAL NOT NULL, touched REAL NOT NULL, PRIMARY KEY (tenant_id, session_id));
CREATE INDEX IF NOT EXISTS sessions_touched ON sessions (touched);
CREATE TABLE IF NOT EXISTS turns (
  tenant_id TEXT NOT NULL, session_id TEXT NOT NULL, seq INTEGER NOT NULL,
  question TEXT NOT NULL, answer TEXT NOT NULL, standalone TEXT NOT NULL, question_id TEXT NOT NULL,
  at REAL NOT NULL, PRIMARY KEY (tenant_id, session_id, seq));
CREATE TABLE IF NOT EXISTS conversation_erasures (event_id TEXT PRIMARY KEY, applied REAL NOT NULL);
"""


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not _SESSION.fullmatch(session_id):
        raise InvalidArgument("session ids are 1-64 characters of letters, digits and '.', '_', '-'")
    return session_id


def check_principal(principal: str) -> str:
    if not isinstance(principal, str) or not principal:
        raise InvalidArgument("a principal is required")
    return principal


def _key(session_id: str, principal: str) -> str:
    """The stored session key: the principal's own namespace of session ids."""
    return f"{principal}\x1f{session_id}"


class SqliteConversationStore:
    """:class:`~isthmus_agent_orchestrator.agents.types.ConversationStore` over one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        ttl_s: float,
        max_turns: int = DEFAULT_MAX_TURNS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ConfigurationError("session ttl must be positive")
        if max_turns < 1:
            raise ConfigurationError("a session must keep at least one turn")
        self._db = SqliteFile(path, _SCHEMA, "conversations")
        self._ttl_s = ttl_s
        self._max_turns = max_turns
        self._clock = clock

    # ---- the Protocol ------------------------------------------------------------------------------

    async def history(self, tenant_id: str, session_id: str, principal: str, limit: int = 6) -> list[Turn]:
        """The session's newest ``limit`` turns, oldest first (newest last)."""
        tenant = parse_tenant_id(tenant_id)
        check_session_id(session_id)
        check_principal(principal)
        return await asyncio.to_thread(self.history_sync, tenant, session_id, principal, limit)

    async def append(self, tenant_id: str, session_id: str, principal: str, turn: Turn) -> None:
        tenant = parse_tenant_id(tenant_id)
        check_session_id(session_id)
        check_principal(principal)
        await asyncio.to_thread(self.append_sync, tenant, session_id, principal, turn)

    # ---- synchronous core ----------------------------------------------------------------------------

    def history_sync(self, tenant: TenantId, session_id: str, principal: str, limit: int) -> list[Turn]:
        now = self._clock()

        session_id = _key(session_id, principal)

        def read(conn: sqlite3.Connection) -> list[Turn]:
            if not self._owned(conn, tenant, session_id, principal, now):
                return []
            rows = conn.execute(
                "SELECT question, answer, standalone, question_id, at FROM turns "
                "WHERE tenant_id = ? AND session_id = ? ORDER BY seq DESC LIMIT ?",
                (tenant, session_id, max(limit, 0)),
            ).fetchall()
            return [Turn(q, a, s, qid, at) for q, a, s, qid, at in reversed(rows)]

        return self._db.run(read)

    def append_sync(self, tenant: TenantId, session_id: str, principal: str, turn: Turn) -> None:
        now = self._clock()
        session_id = _key(session_id, principal)

        def write(conn: sqlite3.Connection) -> bool:
            _delete_sessions(conn, "touched < ?", (now - self._ttl_s,))  # the sweep of expired sessions
            row = conn.execute(
                "SELECT principal FROM sessions WHERE tenant_id = ? AND session_id = ?", (tenant, session_id)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (tenant, session_id, principal, now, now)
                )
            else:
                conn.execute(
                    "UPDATE sessions SET touched = ? WHERE tenant_id = ? AND session_id = ?",
                    (now, tenant, session_id),
                )
            (seq,) = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE tenant_id = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    session_id,
                    seq,
                    turn.question,
                    turn.answer,
                    turn.standalone,
                    turn.question_id,
                    turn.at,
                ),
            )
            conn.execute(
                "DELETE FROM turns WHERE tenant_id = ? AND session_id = ? AND seq <= ?",
                (tenant, session_id, seq - self._max_turns),
            )
            return True

        self._db.run(write)

    def _owned(
        self, conn: sqlite3.Connection, tenant: TenantId, session_id: str, principal: str, now: float
    ) -> bool:
        row = conn.execute(
            "SELECT principal, touched FROM sessions WHERE tenant_id = ? AND session_id = ?",
            (tenant, session_id),
        ).fetchone()
        if row is None:
            return False
        if row[1] < now - self._ttl_s:
            _delete_sessions(conn, "tenant_id = ? AND session_id = ?", (tenant, session_id))
            return False
        return bool(row[0] == principal)

    # ---- purge -------------------------------------------------------------------------------------------

    def erase_tenant(self, tenant: TenantId, erasure_event_id: str) -> bool:
        """Delete every conversation of ``tenant`` for one erasure, once per event id (False: already)."""

        def erase(conn: sqlite3.Connection) -> bool:
            seen = conn.execute(
                "INSERT OR IGNORE INTO conversation_erasures VALUES (?, ?)", (erasure_event_id, self._clock())
            ).rowcount
            if seen == 0:
                return False
            _delete_sessions(conn, "tenant_id = ?", (tenant,))
            return True

        return self._db.purge(erase)

    def delete_tenant(self, tenant: TenantId, begun_before: datetime) -> None:
        """Delete ``tenant``'s sessions begun before ``begun_before`` (a tenant deleted, maybe re-created)."""
        cutoff = begun_before.timestamp()
        self._db.purge(lambda conn: _delete_sessions(conn, "tenant_id = ? AND created < ?", (tenant, cutoff)))

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """Erasures (local and mirrored from ``peers``) and tenant deletions, in a consumer group of this
        process's own: every replica purges its own file."""
        return tenant_purge_subscriptions(
            module, "conversations", peers, self.erase_tenant, self.delete_tenant
        )

    def close(self) -> None:
        self._db.close()


def _delete_sessions(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
    conn.execute(
        f"DELETE FROM turns WHERE (tenant_id, session_id) IN (SELECT tenant_id, session_id FROM sessions "
        f"WHERE {where})",
        args,
    )
    conn.execute(f"DELETE FROM sessions WHERE {where}", args)


def tenant_purge_subscriptions(
    module: str,
    what: str,
    peers: Sequence[str],
    erase_tenant: Callable[[TenantId, str], bool],
    delete_tenant: Callable[[TenantId, datetime], None],
) -> list[Subscription]:
    """Subscriptions calling ``erase_tenant(tenant, event_id)`` on every erasure (requested here or
    mirrored from one of ``peers``) and ``delete_tenant(tenant, occurred_at)`` on every tenant deletion,
    in a consumer group of this process's own (``<module>-<what>-<random>``): each replica holds its own
    SQLite file, so each must hear every event (like :func:`isthmus_core.bus.purge.purge_on_erasure`)."""
    group = f"{module}-{what}-{uuid.uuid4().hex[:12]}"

    async def erased(ev: ErasureRequested) -> Literal["applied"]:
        tenant = parse_tenant_id(ev.tenant_id)
        if await asyncio.to_thread(erase_tenant, tenant, ev.event_id):
            _log.info("agent memory erased", what=what, tenant=tenant, erasure=ev.erasure_id)
        return "applied"

    async def local_erasure(ev: ErasureRequested) -> None:
        await erased(ev)

    async def tenant_deleted(ev: TenantDeleted) -> None:
        tenant = parse_tenant_id(ev.tenant_id)
        await asyncio.to_thread(delete_tenant, tenant, ev.occurred_at)
        _log.info("agent memory of a deleted tenant deleted", what=what, tenant=tenant)

    return [
        subscribe(topics.ERASURES_REQUESTED, group, local_erasure),
        *replica_subscriptions(topics.ERASURES_REQUESTED, group, peers, erased, service=module),
        subscribe(topics.TENANTS_DELETED, group, tenant_deleted),
    ]
