"""One SQLite database file shared by a store's threads (agent conversations, memories, prompt versions,
guardrail policies): one connection, one lock, WAL journal, a transaction per call."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from isthmus_core.errors import ConfigurationError, Unavailable

_T = TypeVar("_T")


class SqliteFile:
    """One SQLite database file shared by a store's threads: one connection, one lock, WAL journal.

    The file's directory is created 0700 (it holds tenants' questions and answers). Opening failures
    raise :class:`ConfigurationError` (at startup), later SQLite failures :class:`Unavailable`."""

    def __init__(self, path: Path, schema: str, what: str) -> None:
        self._what = what
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
            self._conn.executescript(schema)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"{what}: cannot open {path}: {exc}") from exc
        self._lock = threading.Lock()

    def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` in one transaction (rolled back when it raises)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise Unavailable(f"{self._what}: {exc}") from exc

    def purge(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn`` (a deletion) in one transaction, then the write-ahead log truncated: erased rows leave
        no copy in it either."""
        result = self.run(fn)
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise Unavailable(f"{self._what}: {exc}") from exc
        return result

    def close(self) -> None:
        with self._lock:
            self._conn.close()
