"""Offline evaluation report: one dataset, one row of metrics per retrieval mode."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from isthmus_core.errors import InvalidArgument

#: nDCG@10 measured on a 2-core machine, from the shared datasets README (bm25s + Snowball stemming;
#: bge-small-en-v1.5 int8 ONNX with the query prefix; reciprocal-rank fusion k=60 of the two top-100 lists)
REFERENCE_NDCG10: dict[str, dict[str, float]] = {
    "cranfield": {"bm25": 0.528, "dense": 0.535, "hybrid": 0.562},
    "cisi": {"bm25": 0.386, "dense": 0.430, "hybrid": 0.449},
    "scifact": {"bm25": 0.686, "dense": 0.713, "hybrid": 0.726},
}


@dataclass(frozen=True)
class ModeReport:
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    documents: int
    queries: int
    ingest_seconds: float
    tenant_id: str
    modes: list[ModeReport] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> EvalReport:
        """Parse :meth:`to_json` output; :class:`InvalidArgument` when it is not such a report."""
        try:
            data: dict[str, Any] = json.loads(text)
            modes = [ModeReport(**mode) for mode in data.pop("modes", [])]
            return cls(**data, modes=modes)
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"not an evaluation report: {exc}") from exc


def render_table(report: EvalReport, reference: dict[str, float] | None = None) -> Table:
    """A table with one row per mode; with ``reference`` (mode -> nDCG@10) a reference column is added."""
    table = Table(
        title=(
            f"{report.dataset}: {report.documents} documents, {report.queries} queries, "
            f"ingested in {report.ingest_seconds:.1f} s (tenant {report.tenant_id})"
        )
    )
    table.add_column("mode")
    table.add_column("nDCG@10", justify="right")
    if reference is not None:
        table.add_column("ref nDCG@10", justify="right")
    table.add_column("recall@100", justify="right")
    table.add_column("MRR@10", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    for mode in report.modes:
        cells = [mode.mode, f"{mode.ndcg_at_10:.3f}"]
        if reference is not None:
            ref = reference.get(mode.mode)
            cells.append("-" if ref is None else f"{ref:.3f}")
        cells += [
            f"{mode.recall_at_100:.3f}",
            f"{mode.mrr_at_10:.3f}",
            f"{mode.latency_p50_ms:.1f}",
            f"{mode.latency_p95_ms:.1f}",
        ]
        table.add_row(*cells)
    return table
