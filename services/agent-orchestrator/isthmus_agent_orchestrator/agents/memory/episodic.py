"""Episodic memory: a principal's earlier questions and answers, recalled by embedding similarity.

Opt-in per tenant (``episodic_tenants``; ``'*'`` = every tenant): for a tenant that has not opted in,
``remember`` stores nothing and ``recall`` finds nothing. A memory is (tenant, principal, question, answer,
vector of the question); ``recall`` embeds the new question and returns the ``k`` memories of that same
principal in that same tenant whose cosine similarity (numpy, over unit vectors) is at least
``min_similarity``, most similar first — never another principal's, never another tenant's. The same
question remembered again replaces the older memory; a principal keeps its newest ``max_per_principal``.

Vectors come from an injected ``embed`` callable (the embedding service in production); a memory whose
vector has another dimension (the embedding model changed) is never recalled.

Purge, as for conversations (:mod:`.conversations`): answers are made of the tenant's documents, so every
erasure of a tenant deletes all its memories (once per erasure event), and a deleted tenant's memories
written before the deletion go. One SQLite file (it may be the conversations' file: the tables differ).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np

from isthmus_agent_orchestrator.agents.memory.conversations import (
    check_principal,
    tenant_purge_subscriptions,
)
from isthmus_agent_orchestrator.agents.types import Turn
from isthmus_core.bus.port import Subscription
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import ConfigurationError, Unavailable
from isthmus_core.sqlite import SqliteFile

#: what turns texts into vectors (one per text, in order)
Embed = Callable[[Sequence[str]], Awaitable[list[list[float]]]]

DEFAULT_MIN_SIMILARITY: Final = 0.8
DEFAULT_MAX_PER_PRINCIPAL: Final = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS episodes (
  tenant_id TEXT NOT NULL, principal TEXT NOT NULL, question_key TEXT NOT NULL,
  question TEXT NOT NULL, answer TEXT NOT NULL, standalone TEXT NOT NULL, question_id TEXT NOT NULL,
  at REAL NOT NULL, written REAL NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
  PRIMARY KEY (tenant_id, principal, question_key));
CREATE INDEX IF NOT EXISTS episodes_age ON episodes (tenant_id, principal, written);
CREATE TABLE IF NOT EXISTS episode_erasures (event_id TEXT PRIMARY KEY, applied REAL NOT NULL);
"""


def _key(question: str) -> str:
    return " ".join(question.lower().split())


def _unit(vector: Sequence[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise Unavailable("episodic memory: the embedder returned an unusable vector")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise Unavailable("episodic memory: the embedder returned a zero vector")
    return v / norm


class SqliteEpisodicMemory:
    """:class:`~isthmus_agent_orchestrator.agents.types.EpisodicMemory` over one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        embed: Embed,
        tenants: Sequence[str],
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        max_per_principal: int = DEFAULT_MAX_PER_PRINCIPAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not -1.0 <= min_similarity <= 1.0:
            raise ConfigurationError("episodic memory: min_similarity must be within [-1, 1]")
        if max_per_principal < 1:
            raise ConfigurationError("episodic memory: max_per_principal must be at least 1")
        self._all = "*" in tenants
        self._tenants = frozenset(tenants)
        self._embed = embed
        self._min = min_similarity
        self._max = max_per_principal
        self._clock = clock
        self._db = SqliteFile(path, _SCHEMA, "episodic memory")

    def enabled(self, tenant_id: str) -> bool:
        return self._all or tenant_id in self._tenants

    async def remember(self, tenant_id: str, principal: str, turn: Turn) -> None:
        tenant = parse_tenant_id(tenant_id)
        check_principal(principal)
        if not self.enabled(tenant):
            return
        question = turn.standalone or turn.question
        vector = await self._vector(question)
        await asyncio.to_thread(self._store, tenant, principal, turn, question, vector)

    async def recall(self, tenant_id: str, principal: str, question: str, k: int = 3) -> list[Turn]:
        tenant = parse_tenant_id(tenant_id)
        check_principal(principal)
        if not self.enabled(tenant) or k < 1 or not question.strip():
            return []
        rows = await asyncio.to_thread(self._memories, tenant, principal)
        if not rows:  # no embedding call for a principal with nothing to recall
            return []
        query = await self._vector(question)
        usable = [(turn, vec) for turn, vec in rows if vec.shape == query.shape]
        if not usable:
            return []
        scores = np.stack([vec for _, vec in usable]) @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [usable[i][0] for i in order if float(scores[i]) >= self._min]

    async def _vector(self, text: str) -> np.ndarray:
        vectors = await self._embed([text])
        if len(vectors) != 1:
            raise Unavailable(f"episodic memory: the embedder returned {len(vectors)} vectors for 1 text")
        return _unit(vectors[0])

    # ---- synchronous core ----------------------------------------------------------------------------

    def _store(self, tenant: TenantId, principal: str, turn: Turn, question: str, vector: np.ndarray) -> None:
        now = self._clock()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO episodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    principal,
                    _key(question),
                    turn.question,
                    turn.answer,
                    turn.standalone,
                    turn.question_id,
                    turn.at,
                    now,
                    int(vector.size),
                    vector.astype(np.float32).tobytes(),
                ),
            )
            conn.execute(
                "DELETE FROM episodes WHERE tenant_id = ? AND principal = ? AND question_key NOT IN "
                "(SELECT question_key FROM episodes WHERE tenant_id = ? AND principal = ? "
                "ORDER BY written DESC LIMIT ?)",
                (tenant, principal, tenant, principal, self._max),
            )

        self._db.run(write)

    def _memories(self, tenant: TenantId, principal: str) -> list[tuple[Turn, np.ndarray]]:
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT question, answer, standalone, question_id, at, vector FROM episodes "
                "WHERE tenant_id = ? AND principal = ? ORDER BY written DESC",
                (tenant, principal),
            ).fetchall()
        )
        return [
            (Turn(q, a, s, qid, at), np.frombuffer(blob, dtype=np.float32)) for q, a, s, qid, at, blob in rows
        ]

    # ---- purge ------------------------------------------------------------------------------------------

    def erase_tenant(self, tenant: TenantId, erasure_event_id: str) -> bool:
        """Delete every memory of ``tenant`` for one erasure, once per event id (False: already)."""

        def erase(conn: sqlite3.Connection) -> bool:
            seen = conn.execute(
                "INSERT OR IGNORE INTO episode_erasures VALUES (?, ?)", (erasure_event_id, self._clock())
            ).rowcount
            if seen == 0:
                return False
            conn.execute("DELETE FROM episodes WHERE tenant_id = ?", (tenant,))
            return True

        return self._db.purge(erase)

    def delete_tenant(self, tenant: TenantId, written_before: datetime) -> None:
        cutoff = written_before.timestamp()
        self._db.purge(
            lambda conn: conn.execute(
                "DELETE FROM episodes WHERE tenant_id = ? AND written < ?", (tenant, cutoff)
            )
        )

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """Erasures (local and mirrored) and tenant deletions, in a consumer group of this process's own."""
        return tenant_purge_subscriptions(module, "episodic", peers, self.erase_tenant, self.delete_tenant)

    def close(self) -> None:
        self._db.close()
