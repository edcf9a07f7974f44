"""Document registry (sqlite): status per document, content-hash dedup index, batch progress."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Status(StrEnum):
    RECEIVED = "received"
    CHUNKED = "chunked"
    EMBEDDED = "embedded"
    INDEXED = "indexed"
    FAILED = "failed"


_ORDER = [Status.RECEIVED, Status.CHUNKED, Status.EMBEDDED, Status.INDEXED]


@dataclass
class DocumentRecord:
    tenant_id: str
    document_id: str
    filename: str
    content_type: str
    content_hash: str
    status: Status
    version: int = 1
    chunk_count: int = 0
    batch_count: int = 0
    failure_reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    #: the parsed title (Markdown first heading, HTML <title>, PDF metadata title); "" if none
    title: str = ""
    #: the uploaded file's size (what the tenant's ``max_bytes`` quota counts); 0 when unknown
    size_bytes: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
  tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, filename TEXT NOT NULL, content_type TEXT NOT NULL,
  content_hash TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL, chunk_count INTEGER NOT NULL,
  batch_count INTEGER NOT NULL, failure_reason TEXT NOT NULL, metadata TEXT NOT NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (tenant_id, document_id));
CREATE INDEX IF NOT EXISTS documents_hash ON documents (tenant_id, content_hash);
CREATE TABLE IF NOT EXISTS batches (
  tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, version INTEGER NOT NULL, stage TEXT NOT NULL,
  batch_index INTEGER NOT NULL, PRIMARY KEY (tenant_id, document_id, version, stage, batch_index));
"""

_COLS = (
    "tenant_id, document_id, filename, content_type, content_hash, status, version, chunk_count, "
    "batch_count, failure_reason, metadata, created_at, updated_at, title, size_bytes"
)
#: a ``documents`` row in ``_COLS`` order, as sqlite returns it (every column NOT NULL; TEXT, INTEGER, REAL)
_Row = tuple[str, str, str, str, str, str, int, int, int, str, str, float, float, str, int]
#: columns added after the first release: (name, definition), added to older databases at open
_ADDED_COLUMNS = (("title", "TEXT NOT NULL DEFAULT ''"), ("size_bytes", "INTEGER NOT NULL DEFAULT 0"))


class DocumentRegistry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        present = {str(r[1]) for r in self._db.execute("PRAGMA table_info(documents)").fetchall()}
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                self._db.execute(f"ALTER TABLE documents ADD COLUMN {name} {definition}")

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _row(r: _Row) -> DocumentRecord:
        return DocumentRecord(
            tenant_id=str(r[0]),
            document_id=str(r[1]),
            filename=str(r[2]),
            content_type=str(r[3]),
            content_hash=str(r[4]),
            status=Status(str(r[5])),
            version=int(r[6]),
            chunk_count=int(r[7]),
            batch_count=int(r[8]),
            failure_reason=str(r[9]),
            metadata=json.loads(str(r[10])),
            created_at=float(r[11]),
            updated_at=float(r[12]),
            title=str(r[13]),
            size_bytes=int(r[14]),
        )

    def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        r = self._db.execute(
            f"SELECT {_COLS} FROM documents WHERE tenant_id=? AND document_id=?", (tenant_id, document_id)
        ).fetchone()
        return self._row(r) if r else None

    def find_by_hash(self, tenant_id: str, content_hash: str) -> DocumentRecord | None:
        r = self._db.execute(
            f"SELECT {_COLS} FROM documents WHERE tenant_id=? AND content_hash=? AND status != 'failed' "
            "ORDER BY created_at LIMIT 1",
            (tenant_id, content_hash),
        ).fetchone()
        return self._row(r) if r else None

    def list(self, tenant_id: str, status: Status | None = None) -> list[DocumentRecord]:
        q = f"SELECT {_COLS} FROM documents WHERE tenant_id=?"
        args: tuple[object, ...] = (tenant_id,)
        if status is not None:
            q += " AND status=?"
            args = (tenant_id, status.value)
        return [self._row(r) for r in self._db.execute(q + " ORDER BY created_at", args).fetchall()]

    def usage(self, tenant_id: str) -> tuple[int, int]:
        """What a tenant stores, for its storage quota: (documents, bytes), failed documents left out."""
        documents, stored = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM documents WHERE tenant_id=? AND status != ?",
            (tenant_id, Status.FAILED.value),
        ).fetchone()
        return int(documents), int(stored)

    def save(self, d: DocumentRecord) -> None:
        now = time.time()
        d.created_at = d.created_at or now
        d.updated_at = now
        self._db.execute(
            f"INSERT OR REPLACE INTO documents ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                d.tenant_id,
                d.document_id,
                d.filename,
                d.content_type,
                d.content_hash,
                d.status.value,
                d.version,
                d.chunk_count,
                d.batch_count,
                d.failure_reason,
                json.dumps(d.metadata),
                d.created_at,
                d.updated_at,
                d.title,
                d.size_bytes,
            ),
        )

    def mark_batch(
        self, tenant_id: str, document_id: str, version: int, stage: Status, batch_index: int
    ) -> None:
        """Record one batch reaching ``stage``; advance the document when every batch has (idempotent).

        A batch of a version the registry does not hold yet is remembered too: a document mirrored from
        another region may be indexed here before its record arrives (:meth:`advance` then counts it)."""
        doc = self.get(tenant_id, document_id)
        if doc is not None and (doc.version > version or doc.status == Status.FAILED):
            return  # an older version, or a failed document: nothing to advance
        self._db.execute(
            "INSERT OR IGNORE INTO batches VALUES (?,?,?,?,?)",
            (tenant_id, document_id, version, stage.value, batch_index),
        )
        if doc is not None and doc.version == version:
            self.advance(doc)

    def advance(self, doc: DocumentRecord) -> None:
        """Move ``doc`` to the furthest stage every one of its batches has reached (never backwards)."""
        if doc.status == Status.FAILED:
            return
        for stage in reversed(_ORDER):
            if _ORDER.index(stage) <= _ORDER.index(doc.status):
                return
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM batches WHERE tenant_id=? AND document_id=? AND version=? AND stage=?",
                (doc.tenant_id, doc.document_id, doc.version, stage.value),
            ).fetchone()
            if n >= doc.batch_count and n > 0:
                doc.status = stage
                self.save(doc)
                return

    def fail(self, tenant_id: str, document_id: str, reason: str) -> None:
        doc = self.get(tenant_id, document_id)
        if doc is not None:
            doc.status = Status.FAILED
            doc.failure_reason = reason
            self.save(doc)

    def delete_tenant(self, tenant_id: str) -> int:
        cur = self._db.execute("DELETE FROM documents WHERE tenant_id=?", (tenant_id,))
        self._db.execute("DELETE FROM batches WHERE tenant_id=?", (tenant_id,))
        return cur.rowcount
