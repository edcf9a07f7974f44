"""The embedded :class:`~isthmus_core.store.port.VectorStore`: no server, one directory per tenant.

Layout under ``root``::

    <tenant>/chunks.sqlite3    the source of truth: chunk rows, metadata, BM25 terms and the vectors
    <tenant>/vectors.usearch   usearch HNSW index (cosine, f16) keyed by the rows' integer keys
    <tenant>/vectors.json      which write generation that index file reflects
    <tenant>/bm25/             bm25s index (+ row → key array and its generation stamp)

Every write bumps the tenant's *generation* inside the same sqlite transaction as the rows. The
usearch and bm25s files are caches derived from sqlite: one whose stamp does not match the current
generation (a crash before ``close()``, say) is rebuilt from sqlite on first use, so a reopened store
always answers from exactly the committed rows.

* Vectors: kept in memory and updated in place on every write (usearch supports add/remove); written
  to disk on :meth:`EmbeddedStore.close`. Small tenants are searched exactly, large ones through HNSW.
  The index stores f16 (sqlite keeps the f32 originals): half the memory of f32 (usearch reports
  ~1.4 instead of ~2.7 GB at a million 384-d vectors) for a recall@10 loss of ~0.0002 on the scale
  bench (:mod:`isthmus_bench.scale`; i8 lost 5 points). ``HNSW_EXPANSION_SEARCH`` is 256,
  not usearch's 64: on that bench at a million chunks dense recall@10 is 0.89 at 64, 0.94 at 128,
  0.96 at 200 and 0.97 at 256, at about 1-2 ms a search. A hybrid search's dense side asks for
  ``candidates`` hits, and usearch searches at least that wide.
* BM25: bm25s builds an immutable index (its scores are precomputed per term and document, with the
  corpus-wide IDF and average length baked in) and has no incremental add or delete. So a write only
  bumps the generation; the next BM25 or hybrid search rebuilds the index from the stored term lists
  (analysed once, at upsert) and caches it in memory and on disk. Bursts of writes thus cost one
  rebuild, but a workload that interleaves writes and searches pays a rebuild per search — fine for
  the development / single-node store this is; the Weaviate adapter is the one for heavy traffic.
  The rebuild streams the rows in blocks straight into bm25s's score matrix (:func:`_build_bm25`:
  the same index ``bm25s.BM25.index`` makes, without its Python list of strings per chunk, which
  took the 100k-chunk bench to 1.1 GB and grows linearly); a query adds up only its terms' columns
  (:func:`_bm25_scores`) and ranks only the rows that can make the top ``n``.
* Filters run inside the query: the matching keys come from sqlite first, then BM25 scores are masked
  to them and the dense side searches exactly over just those vectors, so a filtered search returns
  ``top_k`` hits whenever that many match.

Each tenant is guarded by an ``asyncio.Lock``; the work itself runs in a worker thread
(``asyncio.to_thread``) so index rebuilds and large adds never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import numpy.typing as npt
from usearch.index import Index
from usearch.index import search as exact_search

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.store.port import ChunkRecord, Fusion, Hit, SearchMode, SearchQuery, acl_of
from isthmus_retrieval.analyzer import Analyzer
from isthmus_retrieval.fusion import RRF_K, reciprocal_rank_fusion, relative_score_fusion
from isthmus_retrieval.store_common import (
    IndexShape,
    as_vector,
    check_against,
    check_query,
    check_query_vector,
    validate_record,
    validate_tenant_id,
)

_DB = "chunks.sqlite3"
_VECTORS = "vectors.usearch"
_VECTORS_STAMP = "vectors.json"
_BM25 = "bm25"
_BM25_KEYS = "keys.npy"
_BM25_STAMP = "stamp.json"
#: bm25s's defaults (Lucene variant), the parameters behind its published figures
BM25_K1 = 1.5
BM25_B = 0.75
_METRIC = "cos"  # usearch cosine distance = 1 - cosine similarity
#: tenants with at most this many vectors are searched exactly (brute force is fast and deterministic)
EXACT_SEARCH_MAX = 4096
#: rows read from sqlite at a time when an index is rebuilt
_BM25_BLOCK = 20_000
_VECTOR_BLOCK = 20_000
#: HNSW storage and graph parameters (see the module docstring for the measurements behind them)
VECTOR_DTYPE = "f16"
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 256
#: keys per ``IN (...)`` clause, well under sqlite's bound-variable limit
_SQL_BATCH = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- the usearch key; never reused
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    version INTEGER NOT NULL,
    metadata TEXT NOT NULL,                 -- JSON object of str → str
    model_id TEXT NOT NULL,
    terms TEXT NOT NULL,                    -- BM25 terms from the analyser, space-separated
    vector BLOB NOT NULL                    -- float32, so the vector index can be rebuilt
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS chunk_meta (
    key INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, name)
);
CREATE INDEX IF NOT EXISTS chunk_meta_by_value ON chunk_meta(name, value);
CREATE TABLE IF NOT EXISTS chunk_acl (      -- document ACL principals (metadata key "acl")
    key INTEGER NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (key, principal)
);
CREATE INDEX IF NOT EXISTS chunk_acl_by_principal ON chunk_acl(principal);
"""

_UPSERT = """
INSERT INTO chunks (chunk_id, document_id, chunk_index, text, start_offset, end_offset, version,
                    metadata, model_id, terms, vector)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(chunk_id) DO UPDATE SET
    document_id = excluded.document_id, chunk_index = excluded.chunk_index, text = excluded.text,
    start_offset = excluded.start_offset, end_offset = excluded.end_offset, version = excluded.version,
    metadata = excluded.metadata, model_id = excluded.model_id, terms = excluded.terms,
    vector = excluded.vector
RETURNING key
"""

_HIT_COLUMNS = "key, chunk_id, document_id, chunk_index, text, start_offset, end_offset, metadata"

Keys = npt.NDArray[np.uint64]
Ranked = list[tuple[int, float]]  # (row key, score), best first


def _write_json_atomic(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _batches(keys: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(keys), _SQL_BATCH):
        yield keys[i : i + _SQL_BATCH]


@dataclass
class _Bm25:
    generation: int
    retriever: bm25s.BM25 | None  # None when no chunk has any term
    keys: npt.NDArray[np.int64]  # row position in the bm25s index → chunk key


@dataclass
class _Tenant:
    tenant_id: str
    path: Path
    db: sqlite3.Connection
    dimension: int | None
    model_id: str | None
    generation: int
    vectors: Index | None = None  # loaded lazily; always current once loaded
    vectors_saved_generation: int = -1  # what vectors.usearch on disk reflects
    bm25: _Bm25 | None = None


@dataclass(frozen=True)
class _Prepared:
    """An upsert batch that passed validation: unique by chunk id (the last one wins)."""

    records: list[ChunkRecord]
    vectors: npt.NDArray[np.float32]
    dimension: int
    model_id: str


class EmbeddedStore:
    """VectorStore on local disk: sqlite3 rows, usearch vectors, bm25s BM25 — one directory per tenant.

    ``root`` is created if missing; nothing else happens until a tenant is used. Raises NotFound,
    AlreadyExists and InvalidArgument as the port describes, and FailedPrecondition after :meth:`close`.
    """

    def __init__(self, root: Path) -> None:
        # bm25s sets its own logger to DEBUG when imported; keep its chatter out of our logs
        logging.getLogger("bm25s").setLevel(max(logging.getLogger().level, logging.WARNING))
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._real_root = self._root.resolve()
        self._analyzer = Analyzer()
        self._tenants: dict[str, _Tenant] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    @property
    def root(self) -> Path:
        return self._root

    # -- tenants ------------------------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str) -> None:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            self._check_open()
            if self._exists(tenant_id):
                raise AlreadyExists(f"tenant {tenant_id!r} already exists")
            await asyncio.to_thread(self._create_files, tenant_id)

    async def delete_tenant(self, tenant_id: str) -> None:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            self._check_open()
            if not self._exists(tenant_id):
                raise NotFound(f"tenant {tenant_id!r} does not exist")
            tenant = self._tenants.pop(tenant_id, None)
            if tenant is not None:
                tenant.db.close()
            # rename first, so the tenant disappears at once even if removing the files takes a while
            trash = self._root / f".deleted-{uuid.uuid4().hex}"
            os.replace(self._dir(tenant_id), trash)
            await asyncio.to_thread(shutil.rmtree, trash, True)

    async def list_tenants(self) -> list[str]:
        self._check_open()
        return sorted(p.name for p in self._root.iterdir() if is_tenant_id(p.name) and (p / _DB).is_file())

    async def has_tenant(self, tenant_id: str) -> bool:
        self._check_open()
        validate_tenant_id(tenant_id)
        return self._exists(tenant_id)

    # -- writes -------------------------------------------------------------------------------------

    async def upsert(self, tenant_id: str, records: Sequence[ChunkRecord]) -> None:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            if not records:
                return
            # validation converts every vector too: off the event loop with the write itself
            await asyncio.to_thread(lambda: self._upsert_sync(tenant, self._prepare(tenant, records)))

    async def delete_document(self, tenant_id: str, document_id: str) -> int:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            return await asyncio.to_thread(self._delete_document_sync, tenant, document_id)

    async def scrub(self, tenant_id: str) -> None:
        """Leave nothing of deleted chunks on disk (an erasure): the rows are zeroed as they are deleted
        (``secure_delete``); this truncates the write-ahead log after copying it back, and removes the
        derived BM25 and vector index files of an older generation (their vocabulary and vectors would
        still hold deleted chunks; they are rebuilt from sqlite on next use)."""
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            await asyncio.to_thread(self._scrub_sync, tenant)

    async def document_version(self, tenant_id: str, document_id: str) -> int | None:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            found = tenant.db.execute("SELECT MAX(version) FROM chunks WHERE document_id = ?", (document_id,))
            (v,) = found.fetchone()
            return None if v is None else int(v)

    async def count(self, tenant_id: str) -> int:
        self._check_open()
        validate_tenant_id(tenant_id)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            (n,) = tenant.db.execute("SELECT COUNT(*) FROM chunks").fetchone()
            return int(n)

    # -- search -------------------------------------------------------------------------------------

    async def search(self, tenant_id: str, query: SearchQuery) -> list[Hit]:
        self._check_open()
        validate_tenant_id(tenant_id)
        mode, fusion = check_query(query)
        async with self._lock(tenant_id):
            tenant = await self._open_tenant(tenant_id)
            vector = self._query_vector(tenant, query, mode)
            return await asyncio.to_thread(self._search_sync, tenant, query, mode, fusion, vector)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def close(self) -> None:
        """Write unsaved vector indexes to disk and close every tenant. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for tenant_id in list(self._tenants):
            async with self._lock(tenant_id):
                tenant = self._tenants.pop(tenant_id, None)
                if tenant is not None:
                    try:
                        await asyncio.to_thread(self._save_vectors, tenant)
                    finally:
                        tenant.db.close()

    # -- helpers (event loop side) ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"the embedded store at {self._root} is closed")

    def _lock(self, tenant_id: str) -> asyncio.Lock:
        lock = self._locks.get(tenant_id)
        if lock is None:
            lock = self._locks[tenant_id] = asyncio.Lock()
        return lock

    def _dir(self, tenant_id: str) -> Path:
        """The tenant's directory: a valid name whose resolved path is a direct child of the root
        (defence in depth behind the id parser: a symlinked or otherwise escaping directory is refused)."""
        validate_tenant_id(tenant_id)
        path = self._root / tenant_id
        if path.resolve().parent != self._real_root:
            raise InvalidArgument(f"tenant {tenant_id!r} does not name a directory inside {self._root}")
        return path

    def _exists(self, tenant_id: str) -> bool:
        return (self._dir(tenant_id) / _DB).is_file()

    async def _open_tenant(self, tenant_id: str) -> _Tenant:
        """The tenant's state, opening its files on first use. Call with the tenant's lock held."""
        self._check_open()  # close() may have run while we waited for the lock
        tenant = self._tenants.get(tenant_id)
        if tenant is not None:
            return tenant
        if not self._exists(tenant_id):
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        tenant = await asyncio.to_thread(self._open_files, tenant_id)
        self._tenants[tenant_id] = tenant
        return tenant

    def _prepare(self, tenant: _Tenant, records: Sequence[ChunkRecord]) -> _Prepared:
        """Validate a whole batch before anything is written: a rejected batch writes nothing."""
        unique: dict[str, ChunkRecord] = {}
        for r in records:
            validate_record(r)
            unique[r.chunk_id] = r
        batch = list(unique.values())
        first = batch[0]
        dimension = tenant.dimension if tenant.dimension is not None else len(first.vector)
        model_id = tenant.model_id if tenant.model_id is not None else first.model_id
        # what fixed the expected values, for the error message
        origin = (
            f"tenant {tenant.tenant_id!r} holds"
            if tenant.dimension is not None
            else f"chunk {first.chunk_id!r} (first in this batch, tenant {tenant.tenant_id!r} is empty) has"
        )
        vectors = np.empty((len(batch), dimension), dtype=np.float32)
        shape = IndexShape(dimension, model_id)
        for i, r in enumerate(batch):
            check_against(r, shape, origin)
            vectors[i] = as_vector(r.vector, f"chunk {r.chunk_id!r}")
        return _Prepared(batch, vectors, dimension, model_id)

    @staticmethod
    def _query_vector(
        tenant: _Tenant, query: SearchQuery, mode: SearchMode
    ) -> npt.NDArray[np.float32] | None:
        if mode is SearchMode.BM25 or query.vector is None:
            return None
        shape = (
            IndexShape(tenant.dimension, tenant.model_id)
            if tenant.dimension is not None and tenant.model_id is not None
            else None
        )
        check_query_vector(tenant.tenant_id, query, shape)
        return as_vector(query.vector, "the query")

    # -- helpers (worker thread side; the tenant's lock is held by the caller) ------------------------

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path / _DB, check_same_thread=False)
        db.execute("PRAGMA secure_delete=ON")  # deleted chunks are zeroed, not left in free pages
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def _create_files(self, tenant_id: str) -> None:
        # build in a hidden directory and rename: a half-created tenant is never listed
        tmp = self._root / f".creating-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            db = self._connect(tmp)
            with db:
                db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("generation", "0"), ("analyzer", self._analyzer.name)],
                )
            db.close()
            os.replace(tmp, self._dir(tenant_id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _open_files(self, tenant_id: str) -> _Tenant:
        path = self._dir(tenant_id)
        db = self._connect(path)
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        tenant = _Tenant(
            tenant_id=tenant_id,
            path=path,
            db=db,
            dimension=int(meta["dimension"]) if "dimension" in meta else None,
            model_id=meta.get("model_id"),
            generation=int(meta.get("generation", "0")),
        )
        if meta.get("analyzer") != self._analyzer.name:
            self._reanalyze(tenant)
        stamp = _read_json(path / _VECTORS_STAMP)
        if stamp is not None:
            tenant.vectors_saved_generation = int(stamp.get("generation", -1))
        return tenant

    def _reanalyze(self, tenant: _Tenant) -> None:
        """The analyser changed since these terms were stored: recompute them all (BM25 only)."""
        rows = tenant.db.execute("SELECT key, text FROM chunks").fetchall()
        terms = self._analyzer.terms([text for _, text in rows])
        with tenant.db:
            tenant.db.executemany(
                "UPDATE chunks SET terms = ? WHERE key = ?",
                [(" ".join(t), k) for (k, _), t in zip(rows, terms, strict=True)],
            )
            tenant.db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('analyzer', ?)", (self._analyzer.name,)
            )
            tenant.generation = self._bump_generation(tenant)

    @staticmethod
    def _bump_generation(tenant: _Tenant) -> int:
        generation = tenant.generation + 1
        tenant.db.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('generation', ?)", (str(generation),)
        )
        return generation

    def _vector_index(self, tenant: _Tenant) -> Index | None:
        """The tenant's usearch index, loading or rebuilding it on first use; None before any vector."""
        if tenant.vectors is not None or tenant.dimension is None:
            return tenant.vectors
        path = tenant.path / _VECTORS
        index: Index | None = None
        if tenant.vectors_saved_generation == tenant.generation and path.is_file():
            with contextlib.suppress(Exception):  # unreadable → rebuild below
                index = Index.restore(str(path))
            if index is not None and index.ndim != tenant.dimension:
                index = None
        if index is None:
            tenant.vectors_saved_generation = -1  # the file on disk is stale or unreadable: rewrite it
            index = self._new_index(tenant.dimension)
            # in blocks: a million float32 vectors as Python bytes and then one matrix would need
            # several times the index's own memory
            cursor = tenant.db.execute("SELECT key, vector FROM chunks")
            while rows := cursor.fetchmany(_VECTOR_BLOCK):
                keys = np.fromiter((k for k, _ in rows), dtype=np.uint64, count=len(rows))
                matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32)
                index.add(keys, matrix.reshape(len(rows), tenant.dimension))
        else:
            _tune(index)
        tenant.vectors = index
        return index

    @staticmethod
    def _new_index(dimension: int) -> Index:
        # dtype must be explicit: usearch's default storage is bf16
        return _tune(
            Index(
                ndim=dimension,
                metric=_METRIC,
                dtype=VECTOR_DTYPE,
                connectivity=HNSW_CONNECTIVITY,
                expansion_add=HNSW_EXPANSION_ADD,
                expansion_search=HNSW_EXPANSION_SEARCH,
            )
        )

    def _save_vectors(self, tenant: _Tenant) -> None:
        if tenant.vectors is None or tenant.vectors_saved_generation == tenant.generation:
            return
        path = tenant.path / _VECTORS
        tmp = path.with_name(path.name + ".tmp")
        tenant.vectors.save(str(tmp))
        os.replace(tmp, path)
        _write_json_atomic(tenant.path / _VECTORS_STAMP, {"generation": tenant.generation})
        tenant.vectors_saved_generation = tenant.generation

    def _upsert_sync(self, tenant: _Tenant, batch: _Prepared) -> None:
        index = self._vector_index(tenant)  # load the current index before the generation moves on
        terms = self._analyzer.terms([r.text for r in batch.records])
        keys: list[int] = []
        with tenant.db:
            if tenant.dimension is None:
                tenant.db.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    [("dimension", str(batch.dimension)), ("model_id", batch.model_id)],
                )
            for r, vector, t in zip(batch.records, batch.vectors, terms, strict=True):
                (key,) = tenant.db.execute(
                    _UPSERT,
                    (
                        r.chunk_id,
                        r.document_id,
                        r.chunk_index,
                        r.text,
                        r.start,
                        r.end,
                        r.version,
                        json.dumps(dict(r.metadata), sort_keys=True),
                        r.model_id,
                        " ".join(t),
                        vector.tobytes(),
                    ),
                ).fetchone()
                keys.append(int(key))
                tenant.db.execute("DELETE FROM chunk_meta WHERE key = ?", (key,))
                tenant.db.executemany(
                    "INSERT INTO chunk_meta (key, name, value) VALUES (?, ?, ?)",
                    [(key, name, value) for name, value in r.metadata.items()],
                )
                tenant.db.execute("DELETE FROM chunk_acl WHERE key = ?", (key,))
                tenant.db.executemany(
                    "INSERT INTO chunk_acl (key, principal) VALUES (?, ?)",
                    [(key, p) for p in acl_of(r.metadata)],
                )
            generation = self._bump_generation(tenant)
        tenant.dimension, tenant.model_id, tenant.generation = batch.dimension, batch.model_id, generation
        if index is None:
            index = tenant.vectors = self._new_index(batch.dimension)
        try:
            key_array = np.array(keys, dtype=np.uint64)
            present = key_array[np.asarray(index.contains(key_array), dtype=bool)]
            if present.size:
                index.remove(present)
            index.add(key_array, batch.vectors)
        except Exception:
            tenant.vectors = None  # rows are committed: rebuild the index from them on next use
            raise

    def _delete_document_sync(self, tenant: _Tenant, document_id: str) -> int:
        index = self._vector_index(tenant)
        found = tenant.db.execute("SELECT key FROM chunks WHERE document_id = ?", (document_id,))
        keys = [int(k) for (k,) in found]
        if not keys:
            return 0
        with tenant.db:
            tenant.db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            for part in _batches(keys):
                marks = ",".join("?" * len(part))
                tenant.db.execute(f"DELETE FROM chunk_meta WHERE key IN ({marks})", tuple(part))
                tenant.db.execute(f"DELETE FROM chunk_acl WHERE key IN ({marks})", tuple(part))
            tenant.generation = self._bump_generation(tenant)
        if index is not None:
            try:
                index.remove(np.array(keys, dtype=np.uint64))
            except Exception:
                tenant.vectors = None
                raise
        return len(keys)

    def _scrub_sync(self, tenant: _Tenant) -> None:
        (busy, _, _) = tenant.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise FailedPrecondition(f"tenant {tenant.tenant_id!r}: its write-ahead log is in use; retry")
        stamp = _read_json(tenant.path / _BM25 / _BM25_STAMP)
        if stamp is None or stamp.get("generation") != tenant.generation:
            shutil.rmtree(tenant.path / _BM25, ignore_errors=True)
        if tenant.bm25 is not None and tenant.bm25.generation != tenant.generation:
            tenant.bm25 = None  # its vocabulary still holds the deleted chunks' terms
        shutil.rmtree(tenant.path / f"{_BM25}.tmp", ignore_errors=True)
        if tenant.vectors_saved_generation != tenant.generation:
            for name in (_VECTORS, _VECTORS_STAMP, _VECTORS + ".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    (tenant.path / name).unlink()
            tenant.vectors_saved_generation = -1

    def _search_sync(
        self,
        tenant: _Tenant,
        query: SearchQuery,
        mode: SearchMode,
        fusion: Fusion,
        vector: npt.NDArray[np.float32] | None,
    ) -> list[Hit]:
        allowed = self._filtered_keys(tenant, query.filters, query.principals)
        if allowed is not None and allowed.size == 0:
            return []
        # fetch more than top_k so that equal scores at the cut are resolved by chunk id (in _hits),
        # not by insertion order: a rebuilt or replayed index then ranks exactly as the original
        wanted = 2 * query.top_k
        if mode is SearchMode.BM25:
            ranked = self._bm25_search(tenant, query.text, allowed, wanted)
        elif mode is SearchMode.DENSE:
            assert vector is not None
            ranked = self._dense_search(tenant, vector, allowed, wanted)
        else:
            assert vector is not None
            per_side = max(query.candidates, query.top_k)
            # a side with weight 0 cannot change the order: skip it (as Weaviate does for alpha 0 or 1)
            dense = self._dense_search(tenant, vector, allowed, per_side) if query.alpha > 0 else []
            sparse = self._bm25_search(tenant, query.text, allowed, per_side) if query.alpha < 1 else []
            weights = [query.alpha, 1.0 - query.alpha]
            if fusion is Fusion.RANKED:
                fused = reciprocal_rank_fusion(
                    [[k for k, _ in dense], [k for k, _ in sparse]], k=RRF_K, weights=weights
                )
            else:
                fused = relative_score_fusion([dense, sparse], weights)
            ranked = fused[:wanted]
        return self._hits(tenant, ranked)[: query.top_k]

    def _filtered_keys(
        self, tenant: _Tenant, filters: Mapping[str, str], principals: Sequence[str]
    ) -> Keys | None:
        """Keys of the chunks matching every filter and the ACL, or None when nothing is excluded."""
        # the ACL excludes nothing in a tenant without ACL'd chunks: keep the unfiltered (ANN) path
        has_acl = tenant.db.execute("SELECT 1 FROM chunk_acl LIMIT 1").fetchone() is not None
        if not filters and not has_acl:
            return None
        clauses: list[str] = []
        params: list[str] = []
        for name, value in filters.items():
            if name == "document_id":
                clauses.append("document_id = ?")
                params.append(value)
            else:
                clauses.append("key IN (SELECT key FROM chunk_meta WHERE name = ? AND value = ?)")
                params.extend((name, value))
        if has_acl:
            # visible: no ACL rows at all, or one naming a principal of the caller
            acl = "key NOT IN (SELECT key FROM chunk_acl)"
            wanted = sorted(set(principals))
            if wanted:
                marks = ",".join("?" * len(wanted))
                acl += f" OR key IN (SELECT key FROM chunk_acl WHERE principal IN ({marks}))"
                params.extend(wanted)
            clauses.append(f"({acl})")
        rows = tenant.db.execute(f"SELECT key FROM chunks WHERE {' AND '.join(clauses)}", params).fetchall()
        return np.fromiter((k for (k,) in rows), dtype=np.uint64, count=len(rows))

    def _dense_search(
        self, tenant: _Tenant, vector: npt.NDArray[np.float32], allowed: Keys | None, n: int
    ) -> Ranked:
        index = self._vector_index(tenant)
        if index is None or len(index) == 0:
            return []
        if allowed is None:
            count = min(n, len(index))
            matches = index.search(vector, count, exact=len(index) <= EXACT_SEARCH_MAX)
            keys, distances = matches.keys, matches.distances
        else:
            # exact search over just the allowed vectors: the filter never costs recall
            stored = index.get(allowed)
            rows = stored if isinstance(stored, tuple) else (stored,)
            if any(row is None for row in rows):  # rows and index out of step: never expected
                raise FailedPrecondition(f"tenant {tenant.tenant_id!r}: the vector index lacks stored chunks")
            matrix = np.vstack([row for row in rows if row is not None])
            matches = exact_search(matrix, vector, min(n, len(allowed)), _METRIC, exact=True)
            keys, distances = allowed[matches.keys], matches.distances
        # equal distances (duplicate vectors) in key order, as BM25 does: otherwise their order depends
        # on the search's threads, and a hybrid search's fused ranks would change from run to run
        order = np.lexsort((keys, distances))
        return [(int(keys[i]), 1.0 - float(distances[i])) for i in order]

    def _bm25_search(self, tenant: _Tenant, text: str, allowed: Keys | None, n: int) -> Ranked:
        terms = self._analyzer.query_terms(text)
        if not terms:
            return []
        bm25 = self._bm25_index(tenant)
        if bm25.retriever is None:
            return []
        scored = _bm25_scores(bm25.retriever, terms)
        if scored is None:
            return []
        scores, rarest = scored
        sample: npt.NDArray[np.int32] | None = rarest
        if allowed is not None:
            scores = np.where(np.isin(bm25.keys, allowed.astype(np.int64)), scores, np.float32(0.0))
            sample = None
        # BM25 returns only chunks that contain a query term. At a million rows, selecting among every
        # row with a score would cost more than the scoring: rows scoring at least the n-th best of a
        # sample of n or more rows are a superset of the top n, and usually only a handful.
        floor = np.float32(0.0)
        if sample is not None and sample.size >= n:
            cut = np.partition(scores[sample], sample.size - n)[sample.size - n]
            floor = max(floor, np.nextafter(cut, np.float32(0.0)))
        rows = np.flatnonzero(scores > floor)
        if rows.size > n:  # keep every row tied with the n-th best, so that the cut is by row order
            found = scores[rows]
            rows = rows[found >= np.partition(found, rows.size - n)[rows.size - n]]
        rows = rows[np.lexsort((rows, -scores[rows]))][:n]  # score descending, then insertion order
        return [(int(bm25.keys[i]), float(scores[i])) for i in rows]

    def _bm25_index(self, tenant: _Tenant) -> _Bm25:
        """The BM25 index for the current generation: cached, else loaded from disk, else rebuilt."""
        if tenant.bm25 is not None and tenant.bm25.generation == tenant.generation:
            return tenant.bm25
        tenant.bm25 = self._load_bm25(tenant) or self._rebuild_bm25(tenant)
        return tenant.bm25

    def _load_bm25(self, tenant: _Tenant) -> _Bm25 | None:
        directory = tenant.path / _BM25
        stamp = _read_json(directory / _BM25_STAMP)
        if stamp is None or stamp.get("generation") != tenant.generation:
            return None
        try:
            keys = np.load(directory / _BM25_KEYS)
            retriever = None if stamp.get("empty") else bm25s.BM25.load(str(directory), show_progress=False)
        except Exception:  # unreadable cache: rebuild it
            return None
        return _Bm25(tenant.generation, retriever, keys)

    def _rebuild_bm25(self, tenant: _Tenant) -> _Bm25:
        retriever, keys = _build_bm25(tenant.db)
        bm25 = _Bm25(tenant.generation, retriever, keys)
        with contextlib.suppress(OSError):  # persisting is an optimisation; the index is usable anyway
            self._save_bm25(tenant, bm25)
        return bm25

    @staticmethod
    def _save_bm25(tenant: _Tenant, bm25: _Bm25) -> None:
        directory = tenant.path / _BM25
        tmp = tenant.path / f"{_BM25}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if bm25.retriever is not None:
            bm25.retriever.save(str(tmp), show_progress=False)
        np.save(tmp / _BM25_KEYS, bm25.keys)
        _write_json_atomic(
            tmp / _BM25_STAMP, {"generation": bm25.generation, "empty": bm25.retriever is None}
        )
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)

    @staticmethod
    def _hits(tenant: _Tenant, ranked: Sequence[tuple[int, float]]) -> list[Hit]:
        keys = [k for k, _ in ranked]
        rows: dict[int, tuple[Any, ...]] = {}
        for part in _batches(keys):
            marks = ",".join("?" * len(part))
            sql = f"SELECT {_HIT_COLUMNS} FROM chunks WHERE key IN ({marks})"
            found = tenant.db.execute(sql, tuple(part))
            for row in found:
                rows[int(row[0])] = row
        hits: list[Hit] = []
        for key, score in ranked:
            row = rows.get(key)
            if row is None:  # cannot happen while indexes and rows move together; never return a ghost
                continue
            _, chunk_id, document_id, chunk_index, text, start, end, metadata = row
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    document_id=document_id,
                    chunk_index=chunk_index,
                    text=text,
                    score=score,
                    start=start,
                    end=end,
                    metadata=json.loads(metadata),
                )
            )
        # equal scores (to float noise) by chunk id: a rebuilt or replayed index ranks like the original
        return sorted(hits, key=lambda h: (-round(h.score, 6), h.chunk_id))


def _tune(index: Index) -> Index:
    """Apply the search-time HNSW settings, which an index file does not carry."""
    # both are settable properties; usearch's annotations make mypy read them as read-only
    index.expansion_add = HNSW_EXPANSION_ADD  # type: ignore[misc]
    index.expansion_search = HNSW_EXPANSION_SEARCH  # type: ignore[misc]
    return index


def _bm25_scores(
    retriever: bm25s.BM25, terms: Sequence[str]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]] | None:
    """BM25 score of every row for the query terms (a repeated term counts again), exactly as bm25s's
    ``get_scores`` computes them, and the rows of the query's rarest term (a sample of rows that have a
    score); None when no term is in the vocabulary.

    The columns of the CSC score matrix hold each row at most once, so a plain fancy-indexed add is
    exact and several times faster than the ``np.add.at`` bm25s uses."""
    vocab: dict[str, int] = retriever.vocab_dict
    matrix = retriever.scores
    indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
    columns = len(indptr) - 1
    ids = [i for i in (vocab.get(t) for t in terms) if i is not None and i < columns]
    if not ids:
        return None
    scores = np.zeros(int(matrix["num_docs"]), dtype=np.float32)
    rarest: tuple[int, int] | None = None
    for i in ids:
        start, end = int(indptr[i]), int(indptr[i + 1])
        scores[indices[start:end]] += data[start:end]
        if end > start and (rarest is None or end - start < rarest[1] - rarest[0]):
            rarest = (start, end)
    sample = indices[rarest[0] : rarest[1]] if rarest is not None else indices[:0]
    return scores, sample


def _read_terms(
    rows: list[tuple[int, str]], vocab: dict[str, int], *, grow: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """A block of ``(key, terms)`` rows as (keys, every term's vocabulary id in row order, row lengths).

    ``grow`` adds unseen terms to ``vocab``; otherwise every term must be known already."""
    keys = np.fromiter((k for k, _ in rows), dtype=np.int64, count=len(rows))
    # terms are stored space-separated and contain no whitespace (the analyser emits \w+ tokens)
    lengths = np.fromiter((t.count(" ") + 1 if t else 0 for _, t in rows), dtype=np.int64, count=len(rows))
    tokens = " ".join(t for _, t in rows if t).split(" ")
    total = int(lengths.sum())
    if total == 0:
        return keys, np.zeros(0, dtype=np.int32), lengths
    if len(tokens) != total:
        raise FailedPrecondition("malformed stored BM25 terms; expected single-space separated tokens")
    if grow:
        add = vocab.setdefault
        ids = np.fromiter((add(t, len(vocab)) for t in tokens), dtype=np.int32, count=total)
    else:
        ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int32, count=total)
    return keys, ids, lengths


def _term_counts(
    ids: npt.NDArray[np.int32], lengths: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(term id, row within the block, term frequency) of every distinct term of every row, sorted by
    term then row."""
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    pairs, tf = np.unique(ids.astype(np.int64) * len(lengths) + rows, return_counts=True)
    return pairs // len(lengths), pairs % len(lengths), tf


def _build_bm25(db: sqlite3.Connection) -> tuple[bm25s.BM25 | None, npt.NDArray[np.int64]]:
    """The bm25s index of every stored row (in key order) and its row → key array.

    Builds the same index as ``bm25s.BM25(k1, b).index(corpus)`` (Lucene BM25: idf
    ``ln(1 + (N - df + 0.5) / (df + 0.5))``, scores precomputed per term and row in a CSC matrix), but
    streams the rows from sqlite in blocks, twice (document frequencies and lengths first, then the
    scores, written straight into their place in the matrix), so memory stays at the size of the
    index itself instead of one Python list of strings per row — many GB at a million chunks.
    """
    query = "SELECT key, terms FROM chunks ORDER BY key"
    vocab: dict[str, int] = {}
    key_blocks: list[npt.NDArray[np.int64]] = []
    length_blocks: list[npt.NDArray[np.int64]] = []
    df = np.zeros(0, dtype=np.int64)
    cursor = db.execute(query)
    while rows := cursor.fetchmany(_BM25_BLOCK):
        keys, ids, lengths = _read_terms(rows, vocab, grow=True)
        key_blocks.append(keys)
        length_blocks.append(lengths)
        if ids.size:
            terms, _, _ = _term_counts(ids, lengths)
            if len(df) < len(vocab):
                df = np.concatenate([df, np.zeros(len(vocab) - len(df), dtype=np.int64)])
            df += np.bincount(terms, minlength=len(vocab))
    all_keys = np.concatenate(key_blocks) if key_blocks else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate(length_blocks) if length_blocks else np.zeros(0, dtype=np.int64)
    del key_blocks, length_blocks
    n_docs, n_vocab = len(all_keys), len(vocab)
    if n_vocab == 0:
        return None, all_keys
    avg_len = float(lengths.sum()) / n_docs
    # computed in float64 and stored as float32, like bm25s
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    heads = indptr[:-1].copy()  # next free slot of every column
    first_row = 0
    cursor = db.execute(query)
    while rows := cursor.fetchmany(_BM25_BLOCK):
        keys, ids, block_lengths = _read_terms(rows, vocab, grow=False)
        if not np.array_equal(keys, all_keys[first_row : first_row + len(keys)]):
            raise FailedPrecondition("the chunks changed while the BM25 index was being built")
        if ids.size:
            terms, block_rows, tf = _term_counts(ids, block_lengths)
            doc_len = block_lengths[block_rows]
            tfc = tf / (BM25_K1 * ((1 - BM25_B) + BM25_B * doc_len / avg_len) + tf)
            counts = np.bincount(terms, minlength=n_vocab)
            starts = np.cumsum(counts) - counts  # where each term's run begins in this block
            slots = heads[terms] + (np.arange(len(terms)) - starts[terms])
            data[slots] = idf[terms] * tfc
            indices[slots] = first_row + block_rows
            heads += counts
        first_row += len(keys)
    if first_row != n_docs:
        raise FailedPrecondition("the chunks changed while the BM25 index was being built")
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(vocab.values())
    retriever.nonoccurrence_array = None
    return retriever, all_keys
