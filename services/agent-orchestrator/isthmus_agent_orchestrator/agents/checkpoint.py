"""Durable agent runs: LangGraph's SQLite checkpointer at ``<data_dir>/agent-orchestrator/runs.sqlite``.

A run of ``react``, ``plan-execute`` or ``reflect`` is checkpointed after every node (thread id = run
id), so one paused on an approval survives a restart: a new runtime over the same file resumes it by its
run id. ``rag`` has nothing to resume and runs without one. The directory is created owner-only (0700)
and the file 0600: checkpoints hold questions and retrieved passages. Runs are deleted from it when they
end (:meth:`AgentRuntime.execute`), so only paused runs stay.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from isthmus_core.errors import FailedPrecondition


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
    saver = AsyncSqliteSaver(conn)
    await saver.setup()

    async def close() -> None:
        await conn.close()

    return saver, close
