"""Document registry (sqlite): status per document with its history (every status change, kept after a
deletion, removed by an erasure), content-hash dedup index, batch progress, and the receipts of erasures
(:mod:`isthmus_ingestion.erasure`).

The database runs with ``secure_delete`` on: a deleted row's bytes are overwritten with zeros, not left
in free pages; after an erasure :meth:`DocumentRegistry.scrub` also folds the write-ahead log back into
the database and truncates it, so no older copy of an erased row stays in ``documents.sqlite-wal``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from isthmus_ingestion.erasure import Receipt, Step

log = structlog.get_logger("isthmus.ingestion")


class Status(StrEnum):
    RECEIVED = "received"
    CHUNKED = "chunked"
    EMBEDDED = "embedded"
    INDEXED = "indexed"
    FAILED = "failed"
    #: the guardrail's ingest scan blocked it (scope ``document``, or every chunk blocked): nothing of it
    #: is indexed; its chunks went to ``chunks.quarantined`` with the reasons
    QUARANTINED = "quarantined"
    #: ``DeleteDocument`` or a deletion requested on the bus: gone from search and answers; the record
    #: and its history stay (an upload of it afterwards is a new version)
    DELETED = "deleted"


#: documents that hold no indexed content of their version: a re-upload of the same bytes is processed
#: again (not a duplicate), and they do not count against the storage quota
NOT_STORED = (Status.FAILED, Status.QUARANTINED, Status.DELETED)
_NOT_STORED_SQL = ", ".join("?" * len(NOT_STORED))


#: documents recorded but not indexed yet: their chunks are on their way (or were lost with the process
#: that carried them: an in-process bus lives in memory). Ingestion re-drives them at start, and when the
#: same bytes are uploaded again (``Ingestion.resume_pending``)
PENDING = (Status.RECEIVED, Status.CHUNKED, Status.EMBEDDED)

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
    #: the guardrail's ingest scan: chunks withheld from the index (sent to ``chunks.quarantined``),
    #: chunks indexed with a flag (finding codes in their ``guardrail_flags`` metadata) and chunks indexed
    #: redacted; ``quarantine_reason`` says which chunks were blocked, why, under which policy version
    quarantined_chunks: int = 0
    flagged_chunks: int = 0
    redacted_chunks: int = 0
    quarantine_reason: str = ""
    #: the chunking strategy its chunks were made with (token, sentence, markdown, semantic, parent-child;
    #: "" when unknown: recorded before strategies, or mirrored from another region)
    chunking: str = ""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One row of a document's history: the status it moved to, when, for which version, and why."""

    status: Status
    at: float
    version: int
    detail: str = ""


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
CREATE TABLE IF NOT EXISTS erasures (
  tenant_id TEXT NOT NULL, erasure_id TEXT NOT NULL, requested_by TEXT NOT NULL, requested_at REAL NOT NULL,
  target TEXT NOT NULL, reason TEXT NOT NULL, document_ids TEXT NOT NULL, steps TEXT NOT NULL,
  PRIMARY KEY (tenant_id, erasure_id));
CREATE TABLE IF NOT EXISTS erased (
  tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, version INTEGER NOT NULL, erasure_id TEXT NOT NULL,
  PRIMARY KEY (tenant_id, document_id));
CREATE TABLE IF NOT EXISTS history (
  tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, status TEXT NOT NULL, at REAL NOT NULL,
  version INTEGER NOT NULL, detail TEXT NOT NULL, written REAL NOT NULL);
CREATE INDEX IF NOT EXISTS history_document ON history (tenant_id, document_id);
"""

_COLS = (
    "tenant_id, document_id, filename, content_type, content_hash, status, version, chunk_count, "
    "batch_count, failure_reason, metadata, created_at, updated_at, title, size_bytes, quarantined_chunks, "
    "flagged_chunks, redacted_chunks, quarantine_reason, chunking"
)
#: a ``documents`` row in ``_COLS`` order, as sqlite returns it (every column NOT NULL; TEXT, INTEGER, REAL)
_Row = tuple[
    str, str, str, str, str, str, int, int, int, str, str, float, float, str, int, int, int, int, str, str
]
#: columns added after the first release: (name, definition), added to older databases at open
_ADDED_COLUMNS = (
    ("title", "TEXT NOT NULL DEFAULT ''"),
    ("size_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("quarantined_chunks", "INTEGER NOT NULL DEFAULT 0"),
    ("flagged_chunks", "INTEGER NOT NULL DEFAULT 0"),
    ("redacted_chunks", "INTEGER NOT NULL DEFAULT 0"),
    ("quarantine_reason", "TEXT NOT NULL DEFAULT ''"),
    ("chunking", "TEXT NOT NULL DEFAULT ''"),
)


class DocumentRegistry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left in free pages
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
            quarantined_chunks=int(r[15]),
            flagged_chunks=int(r[16]),
            redacted_chunks=int(r[17]),
            quarantine_reason=str(r[18]),
            chunking=str(r[19]),
        )

    def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        r = self._db.execute(
            f"SELECT {_COLS} FROM documents WHERE tenant_id=? AND document_id=?", (tenant_id, document_id)
        ).fetchone()
        return self._row(r) if r else None

    def find_by_hash(self, tenant_id: str, content_hash: str) -> DocumentRecord | None:
        r = self._db.execute(
            f"SELECT {_COLS} FROM documents WHERE tenant_id=? AND content_hash=? "
            f"AND status NOT IN ({_NOT_STORED_SQL}) "
            "ORDER BY created_at LIMIT 1",
            (tenant_id, content_hash, *NOT_STORED),
        ).fetchone()
        return self._row(r) if r else None

    def pending(self, statuses: Sequence[Status] = PENDING) -> list[DocumentRecord]:
        """Every tenant's documents in one of ``statuses`` (default: not indexed yet, :data:`PENDING`),
        oldest first: one query."""
        marks = ", ".join("?" * len(statuses))
        rows = self._db.execute(
            f"SELECT {_COLS} FROM documents WHERE status IN ({marks}) ORDER BY created_at",
            tuple(s.value for s in statuses),
        ).fetchall()
        return [self._row(r) for r in rows]

    def list(self, tenant_id: str, status: Status | None = None) -> list[DocumentRecord]:
        q = f"SELECT {_COLS} FROM documents WHERE tenant_id=?"
        args: tuple[object, ...] = (tenant_id,)
        if status is not None:
            q += " AND status=?"
            args = (tenant_id, status.value)
        return [self._row(r) for r in self._db.execute(q + " ORDER BY created_at", args).fetchall()]

    def usage(self, tenant_id: str) -> tuple[int, int]:
        """What a tenant stores, for its storage quota: (documents, bytes), failed and quarantined documents
        left out."""
        documents, stored = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM documents "
            f"WHERE tenant_id=? AND status NOT IN ({_NOT_STORED_SQL})",
            (tenant_id, *NOT_STORED),
        ).fetchone()
        return int(documents), int(stored)

    def save(self, d: DocumentRecord, detail: str | None = None, written_at: float | None = None) -> None:
        """Store ``d``; a new status (or version) appends a row to its history, with ``detail`` (default:
        the failure or quarantine reason of a failed or quarantined document) and ``written_at``: when
        the request behind the change was written (a bus event's ``occurred_at``; default: now), which
        orders an upload and a deletion as their senders made them, however late they are consumed."""
        now = time.time()
        d.created_at = d.created_at or now
        d.updated_at = now
        before = self._db.execute(
            "SELECT status, version FROM documents WHERE tenant_id=? AND document_id=?",
            (d.tenant_id, d.document_id),
        ).fetchone()
        if before is None or (str(before[0]), int(before[1])) != (d.status.value, d.version):
            if detail is None:
                detail = {Status.FAILED: d.failure_reason, Status.QUARANTINED: d.quarantine_reason}.get(
                    d.status, ""
                )
            self._db.execute(
                "INSERT INTO history VALUES (?,?,?,?,?,?,?)",
                (d.tenant_id, d.document_id, d.status.value, now, d.version, detail, written_at or now),
            )
        self._db.execute(
            f"INSERT OR REPLACE INTO documents ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                d.quarantined_chunks,
                d.flagged_chunks,
                d.redacted_chunks,
                d.quarantine_reason,
                d.chunking,
            ),
        )

    def mark_batch(
        self, tenant_id: str, document_id: str, version: int, stage: Status, batch_index: int
    ) -> None:
        """Record one batch reaching ``stage``; advance the document when every batch has (idempotent).

        A batch of a version the registry does not hold yet is remembered too: a document mirrored from
        another region may be indexed here before its record arrives (:meth:`advance` then counts it)."""
        doc = self.get(tenant_id, document_id)
        if doc is not None and (doc.version > version or doc.status in NOT_STORED):
            return  # an older version, or a failed or quarantined document: nothing to advance
        self._db.execute(
            "INSERT OR IGNORE INTO batches VALUES (?,?,?,?,?)",
            (tenant_id, document_id, version, stage.value, batch_index),
        )
        if doc is not None and doc.version == version:
            self.advance(doc)

    def advance(self, doc: DocumentRecord) -> None:
        """Move ``doc`` to the furthest stage every one of its batches has reached (never backwards)."""
        if doc.status in NOT_STORED:
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

    def history(self, tenant_id: str, document_id: str) -> tuple[StatusChange, ...]:
        """Every status change of the document, oldest first (empty for one stored before the history
        was kept)."""
        rows = self._db.execute(
            "SELECT status, at, version, detail FROM history WHERE tenant_id=? AND document_id=? "
            "ORDER BY rowid",
            (tenant_id, document_id),
        ).fetchall()
        return tuple(StatusChange(Status(str(r[0])), float(r[1]), int(r[2]), str(r[3])) for r in rows)

    def changed_at(self, tenant_id: str, document_id: str, status: Status, version: int) -> float | None:
        """When the request that last moved the document's ``version`` to ``status`` was written (its
        history); None if it never reached it."""
        (at,) = self._db.execute(
            "SELECT MAX(written) FROM history WHERE tenant_id=? AND document_id=? AND status=? AND version=?",
            (tenant_id, document_id, status.value, version),
        ).fetchone()
        return None if at is None else float(at)

    def version_since(self, tenant_id: str, document_id: str, version: int) -> float | None:
        """When the request that made the document's ``version`` was written (its history); None if never."""
        (at,) = self._db.execute(
            "SELECT MIN(written) FROM history WHERE tenant_id=? AND document_id=? AND version=?",
            (tenant_id, document_id, version),
        ).fetchone()
        return None if at is None else float(at)

    def delete_tenant(self, tenant_id: str) -> int:
        """Forget the tenant's documents (its erasure receipts are kept: they prove the erasure)."""
        cur = self._db.execute("DELETE FROM documents WHERE tenant_id=?", (tenant_id,))
        self._db.execute("DELETE FROM history WHERE tenant_id=?", (tenant_id,))
        self._db.execute("DELETE FROM batches WHERE tenant_id=?", (tenant_id,))
        self._db.execute("DELETE FROM erased WHERE tenant_id=?", (tenant_id,))
        return cur.rowcount

    def delete_documents(
        self,
        tenant_id: str,
        document_ids: Sequence[str],
        erasure_id: str = "",
        known_versions: Mapping[str, int] | None = None,
    ) -> int:
        """Remove these documents, their history and batch progress; returns how many documents there were.

        With ``erasure_id``, each document known here (or in ``known_versions``: what the erasure's
        origin knew) leaves a tombstone: its id and the highest version seen (no content), so chunks of
        those versions still in flight are erased again when they land, a mirrored copy does not bring
        the document back, and a new upload continues above it."""
        seen = self.versions_of(tenant_id, document_ids) if erasure_id else {}
        if erasure_id and known_versions:
            named = set(document_ids)
            for doc, version in known_versions.items():
                if doc in named:
                    seen[doc] = max(seen.get(doc, 0), version)
        removed = 0
        for doc in document_ids:
            if doc in seen:
                self._db.execute(
                    "INSERT OR REPLACE INTO erased VALUES (?,?,?,?)", (tenant_id, doc, seen[doc], erasure_id)
                )
            cur = self._db.execute(
                "DELETE FROM documents WHERE tenant_id=? AND document_id=?", (tenant_id, doc)
            )
            self._db.execute("DELETE FROM batches WHERE tenant_id=? AND document_id=?", (tenant_id, doc))
            self._db.execute("DELETE FROM history WHERE tenant_id=? AND document_id=?", (tenant_id, doc))
            removed += cur.rowcount
        return removed

    def versions_of(self, tenant_id: str, document_ids: Sequence[str]) -> dict[str, int]:
        """The highest version this registry has seen of each document (its record, batches of a mirrored
        version not recorded yet, an earlier erasure); documents never seen are left out."""
        out: dict[str, int] = {}
        for doc in document_ids:
            (v,) = self._db.execute(
                "SELECT MAX(v) FROM ("
                "SELECT version AS v FROM documents WHERE tenant_id=? AND document_id=? "
                "UNION ALL SELECT version FROM batches WHERE tenant_id=? AND document_id=? "
                "UNION ALL SELECT version FROM erased WHERE tenant_id=? AND document_id=?)",
                (tenant_id, doc) * 3,
            ).fetchone()
            if v is not None:
                out[doc] = int(v)
        return out

    def scrub(self) -> bool:
        """Copy the write-ahead log into the database and truncate it to zero bytes, so deleted rows
        (zeroed in the database by ``secure_delete``) leave no older copy in the log. False if a reader
        kept the log from being truncated (it is truncated at a later scrub)."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("registry write-ahead log not truncated: a reader is active")
        return not busy

    def erased(self, tenant_id: str, document_id: str) -> tuple[int, str] | None:
        """The tombstone of an erased document: (highest version erased, erasure id); None if none."""
        r = self._db.execute(
            "SELECT version, erasure_id FROM erased WHERE tenant_id=? AND document_id=?",
            (tenant_id, document_id),
        ).fetchone()
        return None if r is None else (int(r[0]), str(r[1]))

    # --- erasure receipts -------------------------------------------------------------------------------

    def save_receipt(self, r: Receipt) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO erasures VALUES (?,?,?,?,?,?,?,?)",
            (
                r.tenant_id,
                r.erasure_id,
                r.requested_by,
                r.requested_at,
                r.target,
                r.reason,
                json.dumps(list(r.document_ids)),
                json.dumps([_step_json(s) for s in r.steps]),
            ),
        )

    def get_receipt(self, tenant_id: str, erasure_id: str) -> Receipt | None:
        row = self._db.execute(
            "SELECT tenant_id, erasure_id, requested_by, requested_at, target, reason, document_ids, steps "
            "FROM erasures WHERE tenant_id=? AND erasure_id=?",
            (tenant_id, erasure_id),
        ).fetchone()
        if row is None:
            return None
        return Receipt(
            erasure_id=str(row[1]),
            tenant_id=str(row[0]),
            requested_by=str(row[2]),
            requested_at=float(row[3]),
            target=row[4],
            reason=str(row[5]),
            document_ids=tuple(json.loads(str(row[6]))),
            steps=tuple(_step_of(s) for s in json.loads(str(row[7]))),
        )


def _step_json(s: Step) -> dict[str, Any]:
    return {
        "place": s.place,
        "region": s.region,
        "status": s.status,
        "count": s.count,
        "detail": s.detail,
        "completed_at": s.completed_at,
    }


def _step_of(d: dict[str, Any]) -> Step:
    at = d.get("completed_at")
    return Step(
        place=str(d["place"]),
        region=str(d["region"]),
        status=d["status"],
        count=int(d["count"]),
        detail=str(d["detail"]),
        completed_at=None if at is None else float(at),
    )
