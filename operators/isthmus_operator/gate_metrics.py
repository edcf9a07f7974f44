"""What an EdgeRollout's gates read from the evaluation service's online metrics (pure: no I/O).

:func:`plan_queries` says which answers each metrics entry counts: entry ``wave-N`` = the answers served
with the rollout's bundle since wave N was applied (``status.waves[N-1].appliedAt``); entry ``baseline``
= the answers served with the bundle(s) the workloads carried before the rollout (``status.baseline``;
``""`` = the bundled models, asked for as :data:`~isthmus_core.model_bundles.BUNDLED_MODELS`) from
``baseline_window_s`` before wave 1 was applied until now — the workloads not yet in a wave keep serving
them, so the baseline grows alongside the waves. Both are the answers of ``spec.evaluation.tenant``, or of
every tenant when it is absent.

:func:`gate_metrics` maps the evaluation's figures to the gate metrics (``ndcg_at_10`` and
``faithfulness`` from the judged samples' quality, ``guardrail_block_rate`` = blocked answers / answers),
leaving out a metric computed over fewer than ``min_samples`` answers or samples: the rollout then holds
on its gate (``AwaitingMetrics``) as for any missing metric, never passing or failing on a handful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from isthmus_core.model_bundles import BUNDLED_MODELS
from isthmus_operator.rollout import BASELINE_KEY, RolloutStatus, wave_key
from isthmus_operator.specs import EdgeRolloutSpec

#: the quality metrics (``OnlineMetrics.quality[].name``) a gate reads, by gate metric name
QUALITY_METRICS = ("ndcg_at_10", "faithfulness")
BLOCK_RATE = "guardrail_block_rate"


@dataclass(frozen=True, slots=True)
class Query:
    """One ``GetOnlineMetrics`` call: the answers of ``tenant`` ("" = all) served with ``model_bundle``
    from ``start`` (None = everything kept) until now."""

    tenant: str
    model_bundle: str
    start: datetime | None


@dataclass(frozen=True, slots=True)
class Figures:
    """What one call returned (or several merged): answers, blocked answers, quality name → (mean, n)."""

    answers: int = 0
    blocked_answers: int = 0
    quality: Mapping[str, tuple[float, int]] = field(default_factory=dict)


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as the operator writes it (``2026-12-07T03:15:56Z``); None when empty/unreadable."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC) if text else None
    except ValueError:
        return None


def plan_queries(
    spec: EdgeRolloutSpec, status: RolloutStatus, baseline_window_s: float
) -> dict[str, list[Query]]:
    """The calls behind the current wave's entry and the baseline entry ({} before the first wave).

    A wave without ``appliedAt`` (applied by an operator older than this field) counts every answer kept
    with the bundle. The rollout's own bundle is never part of the baseline, even when some workloads
    already carried it."""
    current = status.current_wave
    if not 1 <= current <= len(status.waves):
        return {}
    tenant = spec.evaluation.tenant or ""
    ref = spec.bundle.ref
    wave_start = parse_time(status.waves[current - 1].applied_at)
    first = parse_time(status.waves[0].applied_at)
    base_start = first - timedelta(seconds=baseline_window_s) if first is not None else None
    before = sorted({b or BUNDLED_MODELS for b in status.baseline.values()} - {ref})
    plan = {wave_key(current): [Query(tenant, ref, wave_start)]}
    if before:
        plan[BASELINE_KEY] = [Query(tenant, b, base_start) for b in before]
    return plan


def merge(parts: Sequence[Figures]) -> Figures:
    """Several bundles' figures as one: counts added, quality means weighted by their n."""
    sums: dict[str, tuple[float, int]] = {}
    for part in parts:
        for name, (mean, n) in part.quality.items():
            total, count = sums.get(name, (0.0, 0))
            sums[name] = (total + mean * n, count + n)
    return Figures(
        answers=sum(p.answers for p in parts),
        blocked_answers=sum(p.blocked_answers for p in parts),
        quality={name: (total / n if n else 0.0, n) for name, (total, n) in sums.items()},
    )


def gate_metrics(figures: Figures, min_samples: int) -> dict[str, float]:
    """The gate metrics of one entry; a metric over fewer than ``min_samples`` is left out (missing)."""
    out: dict[str, float] = {}
    if figures.answers >= max(min_samples, 1):
        out[BLOCK_RATE] = figures.blocked_answers / figures.answers
    for name in QUALITY_METRICS:
        mean, n = figures.quality.get(name, (0.0, 0))
        if n >= max(min_samples, 1):
            out[name] = mean
    return out
