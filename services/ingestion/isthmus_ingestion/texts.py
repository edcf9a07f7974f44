"""The parsed text of each document's current version (sqlite, ``<data_dir>/ingestion/texts.sqlite``): what
chunk and citation offsets point into, served by ``GetDocumentText`` for highlighting.

One row per document (a new version replaces the text of the previous one). The database runs with
``secure_delete`` on, like the registry: a deleted text is overwritten with zeros, not left in free
pages; :meth:`TextStore.scrub` folds the write-ahead log back and truncates it after an erasure, so no
older copy stays in ``texts.sqlite-wal``. Erase, DeleteDocument and a deleted tenant remove the texts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("isthmus.ingestion")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
  tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, version INTEGER NOT NULL, content_type TEXT NOT NULL,
  title TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (tenant_id, document_id));
"""


@dataclass(frozen=True, slots=True)
class StoredText:
    document_id: str
    version: int
    content_type: str
    title: str
    text: str


class TextStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")  # deleted texts are zeroed, not left in free pages
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(
        self, tenant_id: str, document_id: str, version: int, content_type: str, title: str, text: str
    ) -> None:
        """The text of ``version``; an older version's text is replaced (a newer one is kept)."""
        self._db.execute(
            "INSERT INTO texts VALUES (?,?,?,?,?,?) ON CONFLICT (tenant_id, document_id) DO UPDATE SET "
            "version=excluded.version, content_type=excluded.content_type, title=excluded.title, "
            "text=excluded.text WHERE excluded.version >= texts.version",
            (tenant_id, document_id, version, content_type, title, text),
        )

    def get(self, tenant_id: str, document_id: str) -> StoredText | None:
        r = self._db.execute(
            "SELECT document_id, version, content_type, title, text FROM texts "
            "WHERE tenant_id=? AND document_id=?",
            (tenant_id, document_id),
        ).fetchone()
        return None if r is None else StoredText(str(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]))

    def delete(self, tenant_id: str, document_id: str) -> bool:
        """Remove the document's text; True if there was one."""
        cur = self._db.execute(
            "DELETE FROM texts WHERE tenant_id=? AND document_id=?", (tenant_id, document_id)
        )
        return cur.rowcount > 0

    def delete_many(self, tenant_id: str, document_ids: Sequence[str]) -> int:
        return sum(self.delete(tenant_id, d) for d in document_ids)

    def delete_tenant(self, tenant_id: str) -> int:
        """Remove every text of the tenant; how many there were."""
        return self._db.execute("DELETE FROM texts WHERE tenant_id=?", (tenant_id,)).rowcount

    def scrub(self) -> bool:
        """Copy the write-ahead log into the database and truncate it (see the registry's ``scrub``)."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("text store write-ahead log not truncated: a reader is active")
        return not busy
