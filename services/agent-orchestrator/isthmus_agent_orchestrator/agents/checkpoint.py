"""Durable agent runs: LangGraph's SQLite checkpointer at ``<data_dir>/agent-orchestrator/runs.sqlite``.

A run of ``react``, ``plan-execute`` or ``reflect`` is checkpointed after every node (thread id = run
id), so one paused on an approval survives a restart: a new runtime over the same file resumes it by its
run id. ``rag`` has nothing to resume and runs without one. The directory is created owner-only (0700)
and the file 0600: checkpoints hold questions and retrieved passages. Runs are deleted from it when they
end (:meth:`AgentRuntime.execute`), so only paused runs stay. The file runs with ``secure_delete`` on
(deleted checkpoints are zeroed, not left in free pages).

Purge (:class:`CheckpointPurger`): a paused run's checkpoints hold passages retrieved before an erasure,
and the erasure cannot tell which, so every ``ErasureRequested`` of a tenant (here or mirrored from a
peer region), once per erasure event id, deletes the checkpoints of all the tenant's runs (a run's tenant
is read from its saved state, ``tenant_id``); ``TenantDeleted`` deletes those of the tenant's runs begun
before the deletion. Runs live in this process (``live``) are left alone: the erasure expires the
approval such a run waits for (:mod:`.tools.approvals`), so it stops and deletes its own checkpoints as
it ends — deleting them under it would make it resume from nothing. A purged run cannot be resumed
(``NotFound``, as for an unknown run).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ErasureRequested, TenantDeleted
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import FailedPrecondition

_log = structlog.get_logger(__name__)
_LEDGER = "CREATE TABLE IF NOT EXISTS run_erasures (event_id TEXT PRIMARY KEY, applied REAL NOT NULL)"


def runs_path(data_dir: Path) -> Path:
    return data_dir / "agent-orchestrator" / "runs.sqlite"


async def open_sqlite_checkpointer(path: Path) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """An ``AsyncSqliteSaver`` over ``path`` (tables created) and the hook that closes it."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
    except OSError as e:
        raise FailedPrecondition(f"cannot open the agent run store {path}: {e.strerror}") from e
    conn = await aiosqlite.connect(str(path))
    await conn.execute("PRAGMA secure_delete=ON")
    saver = AsyncSqliteSaver(conn)
    await saver.setup()

    async def close() -> None:
        await conn.close()

    return saver, close


def _no_live_runs() -> Collection[str]:
    return ()


class CheckpointPurger:
    """Deletes the checkpoints of a tenant's runs on erasure and tenant deletion (module docstring).

    ``saver``: the ``AsyncSqliteSaver`` of :func:`open_sqlite_checkpointer` (its erasure ledger, the
    ``run_erasures`` table, lives in the same file). ``live``: the run ids running in this process now,
    left alone. ``clock``: seconds since the epoch."""

    def __init__(
        self,
        saver: Any,
        *,
        live: Callable[[], Collection[str]] = _no_live_runs,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._saver = saver
        self._live = live
        self._clock = clock
        self._ready = False

    async def _ledger(self) -> Any:
        conn = self._saver.conn
        if not self._ready:
            async with self._saver.lock:
                await conn.execute(_LEDGER)
                await conn.commit()
            self._ready = True
        return conn

    async def runs_of(self, tenant: TenantId) -> dict[str, str]:
        """The checkpointed runs of ``tenant``: run id → the time of its first checkpoint (ISO 8601)."""
        runs: dict[str, str] = {}
        async for tup in self._saver.alist(None):
            values = tup.checkpoint.get("channel_values") or {}
            run_id = str(tup.config["configurable"]["thread_id"])
            if values.get("tenant_id") == tenant or run_id in runs:
                ts = str(tup.checkpoint.get("ts", ""))
                runs[run_id] = min(runs.get(run_id, ts), ts)
        # newest first: a run's first checkpoint (its input not read yet, no tenant) comes after the ones
        # that name its tenant, and gives the time the run began
        return runs

    async def _delete(self, run_ids: Collection[str]) -> int:
        live = set(self._live())
        deleted = 0
        for run_id in run_ids:
            if run_id in live:
                continue
            await self._saver.adelete_thread(run_id)
            deleted += 1
        if deleted:  # the write-ahead log still holds copies of the zeroed pages
            async with self._saver.lock:
                await self._saver.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    async def erase_tenant(self, tenant: TenantId, erasure_event_id: str) -> int | None:
        """Delete the checkpoints of ``tenant``'s runs for one erasure; how many runs (None: this
        erasure was applied before — a consumer group starting over — and nothing was done)."""
        conn = await self._ledger()
        async with self._saver.lock:
            async with conn.execute(
                "SELECT 1 FROM run_erasures WHERE event_id = ?", (erasure_event_id,)
            ) as cur:
                if await cur.fetchone() is not None:
                    return None
        deleted = await self._delete(list(await self.runs_of(tenant)))
        async with self._saver.lock:  # recorded once done: a crash before it purges again on replay
            await conn.execute(
                "INSERT OR IGNORE INTO run_erasures VALUES (?, ?)", (erasure_event_id, self._clock())
            )
            await conn.commit()
        return deleted

    async def delete_tenant(self, tenant: TenantId, deleted_at: datetime) -> int:
        """Delete the checkpoints of ``tenant``'s runs begun before ``deleted_at``; how many runs."""
        runs = await self.runs_of(tenant)
        return await self._delete(
            [r for r, ts in runs.items() if not ts or datetime.fromisoformat(ts) < deleted_at]
        )

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """Erasures (local and mirrored from ``peers``) and tenant deletions, in a consumer group of this
        process's own: every replica purges its own file."""
        group = f"{module}-runs-{uuid.uuid4().hex[:12]}"

        async def erased(ev: ErasureRequested) -> Literal["applied"]:
            tenant = parse_tenant_id(ev.tenant_id)
            deleted = await self.erase_tenant(tenant, ev.event_id)
            if deleted is not None:
                _log.info("paused runs erased", tenant=tenant, erasure=ev.erasure_id, runs=deleted)
            return "applied"

        async def local_erasure(ev: ErasureRequested) -> None:
            await erased(ev)

        async def tenant_deleted(ev: TenantDeleted) -> None:
            tenant = parse_tenant_id(ev.tenant_id)
            deleted = await self.delete_tenant(tenant, ev.occurred_at)
            _log.info("paused runs of a deleted tenant deleted", tenant=tenant, runs=deleted)

        return [
            subscribe(topics.ERASURES_REQUESTED, group, local_erasure),
            *replica_subscriptions(topics.ERASURES_REQUESTED, group, peers, erased, service=module),
            subscribe(topics.TENANTS_DELETED, group, tenant_deleted),
        ]
