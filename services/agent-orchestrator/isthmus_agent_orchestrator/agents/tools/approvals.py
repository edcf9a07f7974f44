"""Approvals of sensitive tool calls, kept in SQLite and shared between replicas over the bus.

A run that wants to call a sensitive tool asks :meth:`SqliteApprovalBook.request` (published as
``ApprovalRequested``), pauses, and :meth:`~SqliteApprovalBook.wait`\\ s for the decision: ``Approve`` /
``Reject`` (:meth:`~SqliteApprovalBook.decide`, published as ``ApprovalDecided``) in any replica, or the
expiry ``approval_timeout_s`` after the request (published as decided ``"expired"`` by the replica that
notices it first; every replica computes the same deadline). Every replica applies every request and
decision it hears to its own SQLite view (:meth:`~SqliteApprovalBook.subscriptions`: a consumer group of
its own, like :mod:`isthmus_core.bus.purge`), so the pending list is the same everywhere and the replica
holding the paused run wakes on a decision made in another one. The file survives a restart: a run
resumed afterwards finds its approval, and its decision if one was made meanwhile.

``request`` is idempotent per (tenant, run, tool, arguments): while a run's identical call has an
approval — pending or already decided — that approval is returned, so a graph node re-executed on resume
gets the decision rather than a fresh request.

Races between replicas: two people deciding one approval at the same moment in two replicas each
succeed locally; each replica keeps the first decision it applied (the waiting run acts on the one its
replica saw first).

Retention: a decided or expired approval is deleted ``keep_decided_s`` (default 7 days) after its
decision, and a pending one nobody met ``keep_decided_s`` after its deadline, by the sweep each
:meth:`~SqliteApprovalBook.request` makes. A decision is needed as long as its run may resume (the
runtime waits by approval id, and the node re-executed on resume gets the decision of its identical
call), so ``keep_decided_s`` must exceed ``timeout_s``; a paused run whose approval was decided more than
``keep_decided_s`` ago can no longer be resumed (its approval is unknown: ``NotFound``).

Purge: an approval's ``arguments_json`` may name anyone (a URL with a person's name), and an erasure
cannot tell which calls touched the erased documents or data subject, so every ``ErasureRequested`` of a
tenant (here or mirrored from a peer region) — once per erasure event id (recorded, so a consumer group
that starts over does not stop newer runs) — and every ``TenantDeleted`` (approvals requested before it):

* expire each *pending* approval of the tenant (state ``expired``, reason ``"erasure"`` or ``"tenant
  deleted"``) with its arguments blanked, and wake its waiter, so the paused run stops rather than hangs.
  Nothing is published: every replica hears the erasure itself and expires its own copy (as with the
  deadline). The blanked approval stays until the retention sweep so the waiting run — or one resumed
  after a restart, whose node asks again with the original arguments: it gets this expiry — learns why
  it stopped;
* delete every other approval of the tenant (decided, expired, or a decision still waiting for its
  request).

A request or decision of the tenant heard on the bus afterwards but made before the purge (the topics are
consumed independently of the erasure topic) is dropped, so it cannot bring the arguments back; one made
within the clock skew between replicas of a purge may be dropped too.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

import structlog
from pydantic import ValidationError

from isthmus_agent_orchestrator.agents.types import Approval, ApprovalOutcome
from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions, replica_topics
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    AGENT_ID_PATTERN,
    ApprovalDecided,
    ApprovalRequested,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.regions import REPLICATED_TOPICS

log = structlog.get_logger("isthmus.agents.approvals")

PublishRequested = Callable[[ApprovalRequested], Awaitable[None]]
PublishDecided = Callable[[ApprovalDecided], Awaitable[None]]
State = Literal["pending", "approved", "rejected", "expired"]

_ID = re.compile(AGENT_ID_PATTERN)
_MAX_ARGUMENTS_CHARS = 16_384
#: how long decided approvals are kept by default (7 days)
DEFAULT_KEEP_DECIDED_S = 7 * 24 * 3600.0
#: the reasons of the approvals a purge expired
ERASED = "erasure"
TENANT_DELETED = "tenant deleted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    graph TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_json TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    decided_at_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS approvals_by_call ON approvals (tenant_id, run_id, tool);
CREATE INDEX IF NOT EXISTS approvals_pending ON approvals (tenant_id, state);
CREATE TABLE IF NOT EXISTS approval_erasures (event_id TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS approval_purges (tenant_id TEXT PRIMARY KEY, before_ms INTEGER NOT NULL);
"""
_COLS = (
    "approval_id, tenant_id, run_id, graph, tool, arguments_json, requested_by, state, requested_at_ms, "
    "expires_at_ms, decided_by, reason, decided_at_ms"
)
_Row = tuple[str, str, str, str, str, str, str, str, int, int, str, str, int]


def _approval(r: _Row) -> Approval:
    return Approval(
        approval_id=r[0],
        tenant_id=r[1],
        run_id=r[2],
        graph=r[3],
        tool=r[4],
        arguments_json=r[5],
        requested_by=r[6],
        state=cast(State, r[7]),
        requested_at_ms=int(r[8]),
        expires_at_ms=int(r[9]),
        decided_by=r[10],
        reason=r[11],
        decided_at_ms=int(r[12]),
    )


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _crossing(peers: Sequence[str], spec: AnyTopic) -> Sequence[str]:
    """The peers whose mirrored copy of ``spec`` exists: none unless the topic crosses regions (a
    tenant's agent runs and approvals live in its region; see ``isthmus_core.regions``)."""
    return peers if spec in REPLICATED_TOPICS else ()


def approval_topics(peers: Sequence[str]) -> list[AnyTopic]:
    """The topics the book publishes and consumes (with mirrored copies, should they cross regions; the
    erasures mirrored from ``peers``), for ``Offer.topics``."""
    specs: list[AnyTopic] = [topics.APPROVALS_REQUESTED, topics.APPROVALS_DECIDED]
    return [
        *specs,
        *(t for s in specs for t in replica_topics([s], _crossing(peers, s))),
        topics.ERASURES_REQUESTED,
        topics.TENANTS_DELETED,
        *replica_topics([topics.ERASURES_REQUESTED], peers),
    ]


class SqliteApprovalBook:
    """The approvals of this replica's view (implements ``ApprovalBook``); see the module docstring.

    ``path``: the SQLite file (its directory is made 0700, the file 0600). ``timeout_s``: how long an
    approval stays pending (``approval_timeout_s``). ``publish_requested``/``publish_decided``: typed bus
    publishers of the two topics (None: nothing published, a single process). ``clock``: seconds since
    the epoch. ``poll_s``: how often a waiter re-reads the file (decisions arrive by event otherwise).
    ``keep_decided_s``: how long decided approvals are kept (more than ``timeout_s``; module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float = 3600.0,
        publish_requested: PublishRequested | None = None,
        publish_decided: PublishDecided | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 5.0,
        keep_decided_s: float = DEFAULT_KEEP_DECIDED_S,
    ) -> None:
        if keep_decided_s <= timeout_s:
            raise ConfigurationError(
                f"decided approvals must be kept longer ({keep_decided_s:g} s) than an approval may wait "
                f"({timeout_s:g} s): a run resumes with its decision"
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        self._timeout_ms = int(timeout_s * 1000)
        self._keep_ms = int(keep_decided_s * 1000)
        self._publish_requested = publish_requested
        self._publish_decided = publish_decided
        self._clock = clock
        self._poll_s = poll_s
        #: one waiter event per approval awaited in this process, set when its decision is applied
        self._decided: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._db.close()

    async def aclose(self) -> None:
        """:meth:`close` as a module stop hook."""
        self.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ---- reads --------------------------------------------------------------------------------------------

    def _get(self, approval_id: str) -> Approval | None:
        r = self._db.execute(f"SELECT {_COLS} FROM approvals WHERE approval_id=?", (approval_id,)).fetchone()
        return _approval(r) if r else None

    def _of_call(self, tenant_id: str, run_id: str, tool: str, arguments_json: str) -> Approval | None:
        r = self._db.execute(
            f"SELECT {_COLS} FROM approvals WHERE tenant_id=? AND run_id=? AND tool=? AND arguments_json=? "
            "ORDER BY requested_at_ms DESC LIMIT 1",
            (tenant_id, run_id, tool, arguments_json),
        ).fetchone()
        return _approval(r) if r else None

    def _purged_call(self, tenant_id: str, run_id: str, tool: str) -> Approval | None:
        """The approval of the run's call of ``tool`` that a purge expired (its arguments are blank)."""
        r = self._db.execute(
            f"SELECT {_COLS} FROM approvals WHERE tenant_id=? AND run_id=? AND tool=? AND arguments_json='' "
            "AND state='expired' AND reason IN (?, ?) LIMIT 1",
            (tenant_id, run_id, tool, ERASED, TENANT_DELETED),
        ).fetchone()
        return _approval(r) if r else None

    def _purged_before_ms(self, tenant_id: str) -> int:
        """Events of ``tenant_id`` that occurred at or before this were purged (-1: never purged)."""
        r = self._db.execute(
            "SELECT before_ms FROM approval_purges WHERE tenant_id=?", (tenant_id,)
        ).fetchone()
        return int(r[0]) if r else -1

    def get(self, tenant_id: str, approval_id: str) -> Approval:
        """The approval, or ``NotFound`` (also for another tenant's)."""
        found = self._get(approval_id) if _ID.match(approval_id) else None
        if found is None or found.tenant_id != tenant_id:
            raise NotFound(f"approval {approval_id!r} not found")
        return found

    def list_pending(self, tenant_id: str) -> list[Approval]:
        """The tenant's pending approvals, oldest first (those past their deadline are left out: they
        are published as expired by the next wait, request or decision that meets them)."""
        rows = self._db.execute(
            f"SELECT {_COLS} FROM approvals WHERE tenant_id=? AND state='pending' AND expires_at_ms>? "
            "ORDER BY requested_at_ms, approval_id",
            (tenant_id, self._now_ms()),
        ).fetchall()
        return [_approval(r) for r in rows]

    # ---- writes (local view; the bus handlers use the same two) -------------------------------------------

    def _apply_requested(self, ev: ApprovalRequested, *, local: bool = False) -> bool:
        """Record a request (a placeholder left by an earlier-arriving decision gets its details); one
        heard on the bus that was made before a purge of its tenant is dropped (``local``: made here,
        now)."""
        if not local and _ms(ev.occurred_at) <= self._purged_before_ms(ev.tenant_id):
            return False
        cur = self._db.execute(
            f"INSERT INTO approvals ({_COLS}) VALUES (?,?,?,?,?,?,?,'pending',?,?,'','',0) "
            "ON CONFLICT(approval_id) DO UPDATE SET graph=excluded.graph, tool=excluded.tool, "
            "arguments_json=excluded.arguments_json, requested_by=excluded.requested_by, "
            "requested_at_ms=excluded.requested_at_ms, expires_at_ms=excluded.expires_at_ms "
            "WHERE approvals.tool='' AND approvals.tenant_id=excluded.tenant_id",
            (
                ev.approval_id,
                ev.tenant_id,
                ev.run_id,
                ev.graph,
                ev.tool,
                ev.arguments_json,
                ev.requested_by,
                _ms(ev.occurred_at),
                ev.expires_at_ms,
            ),
        )
        return cur.rowcount > 0

    def _apply_decided(self, ev: ApprovalDecided) -> bool:
        """Record a decision on a pending approval (the first decision applied wins); wake its waiters."""
        at = _ms(ev.occurred_at)
        cur = self._db.execute(
            "UPDATE approvals SET state=?, decided_by=?, reason=?, decided_at_ms=? "
            "WHERE approval_id=? AND tenant_id=? AND state='pending'",
            (ev.state, ev.decided_by, ev.reason, at, ev.approval_id, ev.tenant_id),
        )
        applied = cur.rowcount > 0
        if not applied and self._get(ev.approval_id) is None and at > self._purged_before_ms(ev.tenant_id):
            # the decision came before its request (two topics): keep it; the request fills in the rest
            self._db.execute(
                f"INSERT OR IGNORE INTO approvals ({_COLS}) VALUES (?,?,?,'','','','',?,0,0,?,?,?)",
                (ev.approval_id, ev.tenant_id, ev.run_id, ev.state, ev.decided_by, ev.reason, at),
            )
            applied = True
        waiter = self._decided.pop(ev.approval_id, None)
        if waiter is not None:
            waiter.set()
        return applied

    async def _publish(self, ev: ApprovalDecided) -> None:
        if self._publish_decided is not None:
            await self._publish_decided(ev)

    async def _expire(self, a: Approval) -> Approval:
        """Mark an overdue approval expired (here, and on the bus: best effort, since every replica
        reaches the same verdict from the same deadline)."""
        ev = ApprovalDecided(
            tenant_id=a.tenant_id,
            idempotency_key=f"approval-decided:{a.approval_id}",
            approval_id=a.approval_id,
            run_id=a.run_id,
            state="expired",
            decided_by="",
            reason=f"not decided within {self._timeout_ms / 1000:g} s",
        )
        try:
            await self._publish(ev)
        except Exception as exc:  # the local view expires it anyway
            log.warning("approval expiry not published", approval=a.approval_id, error=repr(exc))
        self._apply_decided(ev)
        log.info("approval expired", tenant=a.tenant_id, approval=a.approval_id, run=a.run_id, tool=a.tool)
        found = self._get(a.approval_id)
        assert found is not None
        return found

    async def _current(self, a: Approval) -> Approval:
        """``a``, expired first if it is pending past its deadline."""
        if a.state == "pending" and a.expires_at_ms and self._now_ms() >= a.expires_at_ms:
            return await self._expire(a)
        return a

    # ---- ApprovalBook -------------------------------------------------------------------------------------

    async def request(
        self, tenant_id: str, run_id: str, graph: str, tool: str, arguments_json: str, requested_by: str
    ) -> Approval:
        if not _ID.match(run_id):
            raise InvalidArgument(f"run id {run_id!r} must be 32 lowercase hex digits")
        if len(arguments_json) > _MAX_ARGUMENTS_CHARS:
            raise InvalidArgument(
                f"the arguments of a call needing approval are limited to {_MAX_ARGUMENTS_CHARS} characters"
            )
        async with self._lock:
            self._sweep()
            known = self._of_call(tenant_id, run_id, tool, arguments_json) or self._purged_call(
                tenant_id, run_id, tool
            )
            if known is not None:
                return await self._current(known)
            approval_id = uuid.uuid4().hex
            try:
                ev = ApprovalRequested(
                    tenant_id=tenant_id,
                    idempotency_key=f"approval-requested:{approval_id}",
                    occurred_at=datetime.fromtimestamp(self._clock(), UTC),
                    approval_id=approval_id,
                    run_id=run_id,
                    graph=graph,
                    tool=tool,
                    arguments_json=arguments_json,
                    requested_by=requested_by,
                    expires_at_ms=self._now_ms() + self._timeout_ms,
                )
            except ValidationError as exc:
                raise InvalidArgument(f"cannot request an approval: {exc.errors()[0]['msg']}") from None
            # published first: a failed publish leaves nothing behind, and a retry asks again
            if self._publish_requested is not None:
                await self._publish_requested(ev)
            self._apply_requested(ev, local=True)
        log.info("approval requested", tenant=tenant_id, approval=ev.approval_id, run=run_id, tool=tool)
        found = self._get(ev.approval_id)
        assert found is not None
        return found

    async def wait(self, approval_id: str) -> Approval:
        while True:
            found = self._get(approval_id)
            if found is None:
                raise NotFound(f"approval {approval_id!r} not found")
            current = await self._current(found)
            if current.state != "pending":
                return current
            waiter = self._decided.setdefault(approval_id, asyncio.Event())
            left_s = (current.expires_at_ms - self._now_ms()) / 1000
            try:
                async with asyncio.timeout(max(0.0, min(left_s, self._poll_s))):
                    await waiter.wait()
            except TimeoutError:
                pass

    async def decide(
        self, tenant_id: str, approval_id: str, approve: bool, decided_by: str, reason: str
    ) -> Approval:
        async with self._lock:
            current = await self._current(self.get(tenant_id, approval_id))
            if current.state != "pending":
                raise FailedPrecondition(f"approval {approval_id} is already {current.state}")
            state: ApprovalOutcome = "approved" if approve else "rejected"
            try:
                ev = ApprovalDecided(
                    tenant_id=tenant_id,
                    idempotency_key=f"approval-decided:{approval_id}",
                    approval_id=approval_id,
                    run_id=current.run_id,
                    state=state,
                    decided_by=decided_by,
                    reason=reason,
                    occurred_at=datetime.fromtimestamp(self._clock(), UTC),
                )
            except ValidationError as exc:
                raise InvalidArgument(f"cannot decide: {exc.errors()[0]['msg']}") from None
            # published first: a failed publish decides nothing (the caller may retry)
            await self._publish(ev)
            self._apply_decided(ev)
        log.info("approval decided", tenant=tenant_id, approval=approval_id, state=state, by=decided_by)
        return self.get(tenant_id, approval_id)

    # ---- retention and purge ------------------------------------------------------------------------------

    def _sweep(self) -> int:
        """Delete the approvals decided more than ``keep_decided_s`` ago, and the pending ones whose
        deadline passed that long ago unnoticed; how many."""
        cutoff = self._now_ms() - self._keep_ms
        cur = self._db.execute(
            "DELETE FROM approvals WHERE (state!='pending' AND decided_at_ms<?) "
            "OR (state='pending' AND expires_at_ms<?)",
            (cutoff, cutoff),
        )
        return cur.rowcount

    def _purge(self, tenant: TenantId, reason: str, before_ms: int, erasure_event_id: str = "") -> list[str]:
        """Expire (arguments blanked) the tenant's pending approvals requested at or before ``before_ms``
        and delete its other ones; with ``erasure_event_id``, once per id. The expired approval ids."""
        now = self._now_ms()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if erasure_event_id:
                seen = self._db.execute(
                    "INSERT OR IGNORE INTO approval_erasures VALUES (?, ?)", (erasure_event_id, now)
                ).rowcount
                if seen == 0:
                    self._db.execute("COMMIT")
                    return []
            expired = [
                r[0]
                for r in self._db.execute(
                    "SELECT approval_id FROM approvals WHERE tenant_id=? AND state='pending' "
                    "AND requested_at_ms<=?",
                    (tenant, before_ms),
                ).fetchall()
            ]
            self._db.execute(
                "UPDATE approvals SET state='expired', arguments_json='', decided_by='', reason=?, "
                "decided_at_ms=? WHERE tenant_id=? AND state='pending' AND requested_at_ms<=?",
                (reason, now, tenant, before_ms),
            )
            self._db.execute(
                "DELETE FROM approvals WHERE tenant_id=? AND requested_at_ms<=? AND NOT (state='expired' "
                "AND arguments_json='' AND reason IN (?, ?))",
                (tenant, before_ms, ERASED, TENANT_DELETED),
            )
            self._db.execute(
                "INSERT INTO approval_purges VALUES (?, ?) ON CONFLICT(tenant_id) "
                "DO UPDATE SET before_ms=max(before_ms, excluded.before_ms)",
                (tenant, before_ms),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        # the deleted rows are zeroed (secure_delete); the write-ahead log still holds copies of the pages
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for approval_id in expired:  # the paused runs stop (their wait returns the expiry)
            waiter = self._decided.pop(approval_id, None)
            if waiter is not None:
                waiter.set()
        return expired

    def erase_tenant(self, tenant: TenantId, erasure_event_id: str) -> int:
        """Purge ``tenant``'s approvals for one erasure (module docstring), once per event id; how many
        pending approvals it expired."""
        return len(self._purge(tenant, ERASED, self._now_ms(), erasure_event_id))

    def delete_tenant(self, tenant: TenantId, deleted_at: datetime) -> int:
        """Purge ``tenant``'s approvals requested before its deletion; how many pending ones it expired."""
        return len(self._purge(tenant, TENANT_DELETED, _ms(deleted_at)))

    # ---- the bus ------------------------------------------------------------------------------------------

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """This replica's subscriptions to requests and decisions, in a consumer group of its own so that
        every replica hears every event (and each peer's mirrored copies, should the topics ever cross
        regions: today they do not, so ``peers`` adds nothing); and to erasures (local and mirrored from
        ``peers``) and tenant deletions, which purge this replica's file (module docstring)."""
        group = f"{module}-approvals-{uuid.uuid4().hex[:12]}"

        async def requested(ev: ApprovalRequested) -> None:
            self._apply_requested(ev)

        async def decided(ev: ApprovalDecided) -> None:
            self._apply_decided(ev)

        async def mirrored_requested(ev: ApprovalRequested) -> Literal["applied", "stale"]:
            return "applied" if self._apply_requested(ev) else "stale"

        async def mirrored_decided(ev: ApprovalDecided) -> Literal["applied", "stale"]:
            return "applied" if self._apply_decided(ev) else "stale"

        async def erased(ev: ErasureRequested) -> Literal["applied"]:
            tenant = parse_tenant_id(ev.tenant_id)
            expired = self.erase_tenant(tenant, ev.event_id)
            log.info("approvals erased", tenant=tenant, erasure=ev.erasure_id, expired=expired)
            return "applied"

        async def local_erasure(ev: ErasureRequested) -> None:
            await erased(ev)

        async def tenant_deleted(ev: TenantDeleted) -> None:
            tenant = parse_tenant_id(ev.tenant_id)
            expired = self.delete_tenant(tenant, ev.occurred_at)
            log.info("approvals of a deleted tenant deleted", tenant=tenant, expired=expired)

        return [
            subscribe(topics.ERASURES_REQUESTED, group, local_erasure),
            *replica_subscriptions(topics.ERASURES_REQUESTED, group, peers, erased, service=module),
            subscribe(topics.TENANTS_DELETED, group, tenant_deleted),
            subscribe(topics.APPROVALS_REQUESTED, group, requested),
            subscribe(topics.APPROVALS_DECIDED, group, decided),
            *replica_subscriptions(
                topics.APPROVALS_REQUESTED,
                group,
                _crossing(peers, topics.APPROVALS_REQUESTED),
                mirrored_requested,
                service=module,
            ),
            *replica_subscriptions(
                topics.APPROVALS_DECIDED,
                group,
                _crossing(peers, topics.APPROVALS_DECIDED),
                mirrored_decided,
                service=module,
            ),
        ]
