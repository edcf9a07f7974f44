"""Online metrics, kept durably: the series of ``answers.produced`` and ``guardrail.verdicts`` events and
the scores of the sampled answers, in SQLite (``<data_dir>/evaluation/online.sqlite``).

Tables (every row names its tenant and its time, in microseconds since the epoch):

* ``answers`` — one row per answer (tenant, answer id): model bundle, latency, blocked, number of
  citations. A redelivered event changes nothing (the answer id is the idempotency key);
* ``verdicts`` — one row per guardrail verdict event id (redeliveries count once): stage and action;
* ``samples`` — the sampled answers (``AnswerProduced.sample``): ``pending`` until the judge scores
  them (then ``scored``, or ``failed`` with the judge's failure code and detail), or ``unjudged`` when
  online evaluation has no judge (``online_judge = "none"``). The content (question, answer, contexts)
  is kept only while the sample is pending: the worker reads it back after a restart, and it is
  dropped once judged;
* ``sample_documents`` — the documents a sample used (its contexts and citations, the answer's retrieved
  and cited chunks): an erasure of one of them forgets the sample;
* ``scores`` — per sample and metric, its value (0..1): the judge's metrics, and ``ndcg_at_10`` for
  answers to questions of the tenant's evaluation set (no judge needed);
* ``drops`` — the quality drops raised and not recovered (:mod:`isthmus_evaluation.drops`), with the
  ``QualityDropped`` event raised, so a restart neither raises one again nor loses one unpublished.

``guardrail_redactions`` counts redactions that happened: REDACT verdicts of the stages whose verdicts
the platform applies (:data:`APPLIED_REDACTION_STAGES`). The orchestrator searches and generates with the
redacted question (stage ``input``) and returns each REDACTed answer sentence redacted (stage ``output``,
one verdict event per sentence of a streamed output check); ingestion indexes a REDACTed chunk's
redacted text (stage ``chunk``, one verdict event per chunk not allowed). A FLAG (chunks indexed with a
flag) is no redaction; it still counts in ``guardrail_verdicts``. Verdict events name no model bundle:
with a bundle filter the verdict counts are the tenant's (every bundle's); the block rate is the
answers' own (blocked answers / answers), which the filter applies to.

Methods are synchronous (one connection, one lock: :class:`~isthmus_core.sqlite.SqliteFile`); the async
edges call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from isthmus_core.contracts.events import AnswerProduced, AnswerSample, GuardrailVerdict, QualityDropped
from isthmus_core.sqlite import SqliteFile
from isthmus_evaluation.rag_metrics import RAG_METRICS, SampleScores

#: ``GetOnlineMetricsRequest.model_bundle`` naming the bundled models (answers whose
#: ``provenance.model_bundle`` is ""): never a bundle reference, which always holds "@"
BUNDLED_MODELS = "none"

#: stages whose REDACT verdicts are applied to what the caller gets (see the module docstring)
APPLIED_REDACTION_STAGES: Final = frozenset({"input", "output", "chunk"})
#: samples handed to the scoring worker at once (the rest waits in the database)
DEFAULT_PENDING_BATCH: Final = 64

SampleStatus = Literal["pending", "scored", "failed", "unjudged"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
  tenant_id TEXT NOT NULL, answer_id TEXT NOT NULL, at_us INTEGER NOT NULL, model_bundle TEXT NOT NULL,
  latency_ms REAL NOT NULL, blocked INTEGER NOT NULL, citations INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, answer_id));
CREATE INDEX IF NOT EXISTS answers_time ON answers (at_us);
CREATE INDEX IF NOT EXISTS answers_tenant_time ON answers (tenant_id, at_us);
CREATE TABLE IF NOT EXISTS verdicts (
  event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, at_us INTEGER NOT NULL, stage TEXT NOT NULL,
  action TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_time ON verdicts (at_us);
CREATE INDEX IF NOT EXISTS verdicts_tenant_time ON verdicts (tenant_id, at_us);
CREATE TABLE IF NOT EXISTS samples (
  tenant_id TEXT NOT NULL, answer_id TEXT NOT NULL, at_us INTEGER NOT NULL, model_bundle TEXT NOT NULL,
  status TEXT NOT NULL, failure TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '', body TEXT,
  PRIMARY KEY (tenant_id, answer_id));
CREATE INDEX IF NOT EXISTS samples_status ON samples (status, at_us);
CREATE INDEX IF NOT EXISTS samples_time ON samples (at_us);
CREATE INDEX IF NOT EXISTS samples_tenant_time ON samples (tenant_id, at_us);
CREATE TABLE IF NOT EXISTS sample_documents (
  tenant_id TEXT NOT NULL, answer_id TEXT NOT NULL, document_id TEXT NOT NULL,
  PRIMARY KEY (tenant_id, answer_id, document_id));
CREATE INDEX IF NOT EXISTS sample_documents_document ON sample_documents (tenant_id, document_id);
CREATE TABLE IF NOT EXISTS scores (
  tenant_id TEXT NOT NULL, answer_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
  PRIMARY KEY (tenant_id, answer_id, metric));
CREATE TABLE IF NOT EXISTS drops (
  tenant_id TEXT NOT NULL, metric TEXT NOT NULL, model_bundle TEXT NOT NULL, raised_us INTEGER NOT NULL,
  published INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (tenant_id, metric, model_bundle));
"""


def micros(t: datetime) -> int:
    """Microseconds since the epoch (a naive datetime is read as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in microseconds since the epoch; ``None`` = unbounded on that side."""

    start_us: int | None = None
    end_us: int | None = None

    @classmethod
    def between(cls, start: datetime | None, end: datetime | None) -> Window:
        return cls(None if start is None else micros(start), None if end is None else micros(end))


@dataclass(frozen=True, slots=True)
class QualityValue:
    """One metric over the samples of a window."""

    mean: float
    #: samples scored on this metric (the mean is over them)
    n: int
    #: samples the judge failed on (counted for every judge metric; 0 for ``ndcg_at_10``)
    failures: int


@dataclass(frozen=True)
class OnlineSummary:
    """The figures of one scope (a tenant, or ``None`` = every tenant) over one window."""

    tenant_id: str | None
    window: Window
    model_bundle: str
    answers: int
    blocked_answers: int
    #: over the window's answers; ``None`` without any
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    #: mean number of citations per answer (0.0 without answers)
    citations_per_answer: float
    answers_with_citations: int
    guardrail_verdicts: int
    guardrail_blocks: int
    #: REDACT verdicts that were applied (stages in :data:`APPLIED_REDACTION_STAGES`)
    guardrail_redactions: int
    #: stage -> number of block verdicts at that stage
    blocks_by_stage: dict[str, int] = field(default_factory=dict)
    #: sampled answers in the window (whatever their state) and those still waiting for the judge
    samples: int = 0
    pending_samples: int = 0
    judge_failures: int = 0
    #: judge failure code -> samples
    failure_reasons: dict[str, int] = field(default_factory=dict)
    #: metric -> its value over the window's scored samples (metrics with at least one score)
    quality: dict[str, QualityValue] = field(default_factory=dict)

    @property
    def block_rate(self) -> float:
        """Blocked answers / answers (0.0 without answers)."""
        return self.blocked_answers / self.answers if self.answers else 0.0


@dataclass(frozen=True, slots=True)
class PendingSample:
    tenant_id: str
    answer_id: str
    sample: AnswerSample


@dataclass(frozen=True, slots=True)
class MetricWindow:
    """A metric's mean over a window for one (tenant, metric) — what drop detection compares."""

    mean: float
    n: int


def documents_of(ev: AnswerProduced) -> set[str]:
    """Every document an answer used: its citations, its chunks retrieved and cited, its sample's."""
    p = ev.provenance
    docs = {c.document_id for c in ev.citations} | {c.document_id for c in (*p.retrieved, *p.cited)}
    if ev.sample is not None:
        docs |= {c.document_id for c in ev.sample.contexts}
        docs |= {c.document_id for s in ev.sample.sentences for c in s.citations}
    return docs


def _where(
    tenant_id: str | None, window: Window, model_bundle: str = "", prefix: str = ""
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if tenant_id:
        clauses.append(f"{prefix}tenant_id = ?")
        args.append(tenant_id)
    if window.start_us is not None:
        clauses.append(f"{prefix}at_us >= ?")
        args.append(window.start_us)
    if window.end_us is not None:
        clauses.append(f"{prefix}at_us < ?")
        args.append(window.end_us)
    if model_bundle:
        clauses.append(f"{prefix}model_bundle = ?")
        # "none" (BUNDLED_MODELS): the answers of workloads on the bundled models, recorded with ""
        args.append("" if model_bundle == BUNDLED_MODELS else model_bundle)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _percentile(db: sqlite3.Connection, where: str, args: list[object], n: int, q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as numpy's default) of the latencies ``where``
    selects, read two rows at the rank instead of loading the window."""
    rank = q / 100.0 * (n - 1)
    low = int(rank)
    rows = db.execute(
        f"SELECT latency_ms FROM answers{where} ORDER BY latency_ms LIMIT 2 OFFSET ?", [*args, low]
    ).fetchall()
    lo = float(rows[0][0])
    hi = float(rows[1][0]) if len(rows) > 1 else lo
    return lo + (hi - lo) * (rank - low)


class OnlineStore:
    """The durable online series (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, _SCHEMA, "online metrics")

    def close(self) -> None:
        self._db.close()

    # -- writes ---------------------------------------------------------------------------------------

    def add_answer(
        self, ev: AnswerProduced, *, judged: bool = True, scores: Mapping[str, float] | None = None
    ) -> bool:
        """Count an answer, and keep its sample (when it carries one and is not blocked): ``pending`` for
        the judge when ``judged``, else ``unjudged``; ``scores`` are scores already known (nDCG of an
        evaluation-set question). False (nothing changed) if the tenant's answer is already counted."""
        at = micros(ev.occurred_at)
        bundle = ev.provenance.model_bundle

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO answers (tenant_id, answer_id, at_us, model_bundle, latency_ms, "
                "blocked, citations) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ev.tenant_id, ev.question_id, at, bundle, ev.latency_ms, int(ev.blocked), len(ev.citations)),
            )
            if cur.rowcount != 1:
                return False
            if ev.sample is None or ev.blocked:
                return True
            db.execute(
                "INSERT OR IGNORE INTO samples (tenant_id, answer_id, at_us, model_bundle, status, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    ev.tenant_id,
                    ev.question_id,
                    at,
                    bundle,
                    "pending" if judged else "unjudged",
                    ev.sample.model_dump_json() if judged else None,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO sample_documents (tenant_id, answer_id, document_id) VALUES (?, ?, ?)",
                [(ev.tenant_id, ev.question_id, d) for d in sorted(documents_of(ev))],
            )
            db.executemany(
                "INSERT OR REPLACE INTO scores (tenant_id, answer_id, metric, value) VALUES (?, ?, ?, ?)",
                [(ev.tenant_id, ev.question_id, m, float(v)) for m, v in sorted((scores or {}).items())],
            )
            return True

        return self._db.run(write)

    def add_verdict(self, ev: GuardrailVerdict) -> bool:
        """Count a guardrail verdict; False (nothing counted) if its event id is already counted."""

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO verdicts (event_id, tenant_id, at_us, stage, action) "
                "VALUES (?, ?, ?, ?, ?)",
                (ev.event_id, ev.tenant_id, micros(ev.occurred_at), ev.stage, ev.action),
            )
            return cur.rowcount == 1

        return self._db.run(write)

    def pending(self, limit: int = DEFAULT_PENDING_BATCH) -> list[PendingSample]:
        """The oldest samples waiting for the judge, at most ``limit``."""

        def read(db: sqlite3.Connection) -> list[PendingSample]:
            rows = db.execute(
                "SELECT tenant_id, answer_id, body FROM samples WHERE status = 'pending' "
                "ORDER BY at_us, tenant_id, answer_id LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                PendingSample(str(t), str(a), AnswerSample.model_validate_json(str(b))) for t, a, b in rows
            ]

        return self._db.run(read)

    def record_scores(self, tenant_id: str, answer_id: str, result: SampleScores) -> bool:
        """A pending sample judged: ``scored`` with its metrics, or ``failed`` with the judge's code; its
        content is dropped. False if it was not pending (erased meanwhile, or judged already)."""

        def write(db: sqlite3.Connection) -> bool:
            status = "failed" if result.failure is not None else "scored"
            cur = db.execute(
                "UPDATE samples SET status = ?, failure = ?, detail = ?, body = NULL "
                "WHERE tenant_id = ? AND answer_id = ? AND status = 'pending'",
                (status, result.failure or "", result.detail[:2048], tenant_id, answer_id),
            )
            if cur.rowcount != 1:
                return False
            if result.failure is None:
                db.executemany(
                    "INSERT OR REPLACE INTO scores (tenant_id, answer_id, metric, value) VALUES (?, ?, ?, ?)",
                    [(tenant_id, answer_id, m, float(v)) for m, v in sorted(result.scores.items())],
                )
            return True

        return self._db.run(write)

    # -- reads ----------------------------------------------------------------------------------------

    def summary(self, tenant_id: str | None, window: Window, model_bundle: str = "") -> OnlineSummary:
        """The figures of ``tenant_id`` (None or "" = every tenant) over ``window``, of the answers served
        with ``model_bundle`` ("" = any)."""

        def read(db: sqlite3.Connection) -> OnlineSummary:
            where, args = _where(tenant_id, window, model_bundle)
            n, blocked, citations, with_citations = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(blocked), 0), COALESCE(SUM(citations), 0), "
                f"COALESCE(SUM(citations > 0), 0) FROM answers{where}",
                args,
            ).fetchone()
            p50 = _percentile(db, where, args, n, 50) if n else None
            p95 = _percentile(db, where, args, n, 95) if n else None
            vwhere, vargs = _where(tenant_id, window)
            stages = ", ".join("?" * len(APPLIED_REDACTION_STAGES))
            verdicts, redactions = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(action = 'redact' AND stage IN "
                f"({stages})), 0) FROM verdicts{vwhere}",
                [*sorted(APPLIED_REDACTION_STAGES), *vargs],
            ).fetchone()
            blocks = dict(
                db.execute(
                    f"SELECT stage, COUNT(*) FROM verdicts{vwhere}"
                    + (" AND" if vwhere else " WHERE")
                    + " action = 'block' GROUP BY stage",
                    vargs,
                ).fetchall()
            )
            swhere, sargs = _where(tenant_id, window, model_bundle, prefix="s.")
            by_status = dict(
                db.execute(
                    f"SELECT status, COUNT(*) FROM samples s{swhere} GROUP BY status", sargs
                ).fetchall()
            )
            reasons = dict(
                db.execute(
                    f"SELECT failure, COUNT(*) FROM samples s{swhere}"
                    + (" AND" if swhere else " WHERE")
                    + " status = 'failed' GROUP BY failure",
                    sargs,
                ).fetchall()
            )
            failures = int(by_status.get("failed", 0))
            quality = {
                str(metric): QualityValue(float(mean), int(count), failures if metric in RAG_METRICS else 0)
                for metric, mean, count in db.execute(
                    "SELECT c.metric, AVG(c.value), COUNT(*) FROM scores c JOIN samples s "
                    f"ON s.tenant_id = c.tenant_id AND s.answer_id = c.answer_id{swhere} "
                    "GROUP BY c.metric ORDER BY c.metric",
                    sargs,
                ).fetchall()
            }
            return OnlineSummary(
                tenant_id=tenant_id or None,
                window=window,
                model_bundle=model_bundle,
                answers=int(n),
                blocked_answers=int(blocked),
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                citations_per_answer=int(citations) / n if n else 0.0,
                answers_with_citations=int(with_citations),
                guardrail_verdicts=int(verdicts),
                guardrail_blocks=sum(int(v) for v in blocks.values()),
                guardrail_redactions=int(redactions),
                blocks_by_stage={str(k): int(v) for k, v in blocks.items()},
                samples=sum(int(v) for v in by_status.values()),
                pending_samples=int(by_status.get("pending", 0)),
                judge_failures=failures,
                failure_reasons={str(k): int(v) for k, v in reasons.items()},
                quality=quality,
            )

        return self._db.run(read)

    def quality_by_tenant(
        self, window: Window, model_bundle: str = ""
    ) -> dict[tuple[str, str], MetricWindow]:
        """(tenant, metric) -> the metric's mean and samples over ``window`` (bundle "" = every bundle)."""

        def read(db: sqlite3.Connection) -> dict[tuple[str, str], MetricWindow]:
            swhere, sargs = _where(None, window, model_bundle, prefix="s.")
            rows = db.execute(
                "SELECT c.tenant_id, c.metric, AVG(c.value), COUNT(*) FROM scores c JOIN samples s "
                f"ON s.tenant_id = c.tenant_id AND s.answer_id = c.answer_id{swhere} "
                "GROUP BY c.tenant_id, c.metric",
                sargs,
            ).fetchall()
            return {(str(t), str(m)): MetricWindow(float(mean), int(n)) for t, m, mean, n in rows}

        return self._db.run(read)

    def samples_by_tenant(self, window: Window) -> dict[str, tuple[int, dict[str, int]]]:
        """tenant -> (samples in ``window``, judge failure code -> samples) — for the Prometheus gauges."""

        def read(db: sqlite3.Connection) -> dict[str, tuple[int, dict[str, int]]]:
            where, args = _where(None, window)
            out: dict[str, tuple[int, dict[str, int]]] = {}
            for tenant, status, failure, count in db.execute(
                f"SELECT tenant_id, status, failure, COUNT(*) FROM samples{where} "
                "GROUP BY tenant_id, status, failure",
                args,
            ).fetchall():
                total, reasons = out.get(str(tenant), (0, {}))
                if status == "failed":
                    reasons[str(failure)] = reasons.get(str(failure), 0) + int(count)
                out[str(tenant)] = (total + int(count), reasons)
            return out

        return self._db.run(read)

    def pending_count(self) -> int:
        return int(
            self._db.run(
                lambda db: db.execute("SELECT COUNT(*) FROM samples WHERE status = 'pending'").fetchone()[0]
            )
        )

    # -- drops ----------------------------------------------------------------------------------------

    def raised_drops(self) -> dict[tuple[str, str, str], tuple[QualityDropped, bool]]:
        """(tenant, metric, bundle) -> the drop raised and not recovered, and whether it was published."""

        def read(db: sqlite3.Connection) -> dict[tuple[str, str, str], tuple[QualityDropped, bool]]:
            rows = db.execute("SELECT tenant_id, metric, model_bundle, body, published FROM drops").fetchall()
            return {
                (str(t), str(m), str(b)): (QualityDropped.model_validate_json(str(body)), bool(pub))
                for t, m, b, body, pub in rows
            }

        return self._db.run(read)

    def raise_drop(self, ev: QualityDropped) -> bool:
        """Remember a drop as raised (not yet published); False if one is already raised for its key."""

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "INSERT OR IGNORE INTO drops (tenant_id, metric, model_bundle, raised_us, published, body) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                (ev.tenant_id, ev.metric, ev.model_bundle, micros(ev.occurred_at), ev.model_dump_json()),
            )
            return cur.rowcount == 1

        return self._db.run(write)

    def drop_published(self, tenant_id: str, metric: str, model_bundle: str) -> None:
        self._db.run(
            lambda db: db.execute(
                "UPDATE drops SET published = 1 WHERE tenant_id = ? AND metric = ? AND model_bundle = ?",
                (tenant_id, metric, model_bundle),
            )
        )

    def drop_recovered(self, tenant_id: str, metric: str, model_bundle: str) -> bool:
        """Forget a raised drop: the metric recovered (a new drop may be raised again)."""
        return bool(
            self._db.run(
                lambda db: (
                    db.execute(
                        "DELETE FROM drops WHERE tenant_id = ? AND metric = ? AND model_bundle = ?",
                        (tenant_id, metric, model_bundle),
                    ).rowcount
                )
            )
        )

    # -- forgetting -----------------------------------------------------------------------------------

    def purge_before(self, cutoff: datetime) -> int:
        """Forget every row older than ``cutoff`` (retention); how many answers, verdicts and samples."""
        before = micros(cutoff)

        def purge(db: sqlite3.Connection) -> int:
            _delete_samples(db, "at_us < ?", (before,))
            count = db.execute("DELETE FROM samples WHERE at_us < ?", (before,)).rowcount
            count += db.execute("DELETE FROM answers WHERE at_us < ?", (before,)).rowcount
            count += db.execute("DELETE FROM verdicts WHERE at_us < ?", (before,)).rowcount
            return int(count)

        return self._db.purge(purge)

    def drop_tenant(self, tenant_id: str, before: datetime) -> int:
        """Forget a deleted tenant's rows from before its deletion (a tenant created again since keeps its
        new ones), its raised drops too; how many answers, verdicts and samples."""
        at = micros(before)

        def purge(db: sqlite3.Connection) -> int:
            cond = "tenant_id = ? AND at_us <= ?"
            _delete_samples(db, cond, (tenant_id, at))
            count = db.execute(f"DELETE FROM samples WHERE {cond}", (tenant_id, at)).rowcount
            count += db.execute(f"DELETE FROM answers WHERE {cond}", (tenant_id, at)).rowcount
            count += db.execute(f"DELETE FROM verdicts WHERE {cond}", (tenant_id, at)).rowcount
            db.execute("DELETE FROM drops WHERE tenant_id = ?", (tenant_id,))
            return int(count)

        return self._db.purge(purge)

    def erase(self, tenant_id: str, document_ids: Collection[str], whole_tenant: bool) -> int:
        """Forget the tenant's samples that used any of ``document_ids`` (their content, scores and
        documents), or with ``whole_tenant`` every row of the tenant; how many samples. An answer's
        counts (time, latency, citations, blocked) name no document and stay, unless the whole tenant
        is erased."""

        def purge(db: sqlite3.Connection) -> int:
            if whole_tenant:
                count = db.execute("DELETE FROM samples WHERE tenant_id = ?", (tenant_id,)).rowcount
                for table in ("sample_documents", "scores", "answers", "verdicts", "drops"):
                    db.execute(f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,))
                return int(count)
            docs = sorted(set(document_ids))
            if not docs:
                return 0
            marks = ", ".join("?" * len(docs))
            doomed = [
                str(a)
                for (a,) in db.execute(
                    "SELECT DISTINCT answer_id FROM sample_documents "
                    f"WHERE tenant_id = ? AND document_id IN ({marks})",
                    (tenant_id, *docs),
                ).fetchall()
            ]
            for table in ("samples", "sample_documents", "scores"):
                db.executemany(
                    f"DELETE FROM {table} WHERE tenant_id = ? AND answer_id = ?",
                    [(tenant_id, a) for a in doomed],
                )
            return len(doomed)

        return self._db.purge(purge)


def _delete_samples(db: sqlite3.Connection, cond: str, args: tuple[object, ...]) -> None:
    """The documents and scores of the samples ``cond`` selects (the samples themselves go after)."""
    for table in ("sample_documents", "scores"):
        db.execute(
            f"DELETE FROM {table} WHERE (tenant_id, answer_id) IN "
            f"(SELECT tenant_id, answer_id FROM samples WHERE {cond})",
            args,
        )
