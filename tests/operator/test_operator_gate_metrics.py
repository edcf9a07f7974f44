"""The gate metrics read from the evaluation service: which answers each entry counts (bundles, windows,
tenant), the mapping of the figures, the minimum samples, and each wave's appliedAt in the status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus_core.errors import InvalidArgument
from isthmus_core.model_bundles import BUNDLED_MODELS
from isthmus_operator.evaluation import figures_of
from isthmus_operator.gate_metrics import Figures, Query, gate_metrics, merge, plan_queries
from isthmus_operator.rollout import Observed, RolloutStatus, Tick, Wait, judge, step
from isthmus_operator.specs import parse_rollout

REF = "edge-en@2"
T0, T1 = "2026-12-07T03:00:00Z", "2026-12-07T04:00:00Z"
AT0 = datetime(2026, 12, 7, 3, tzinfo=UTC)
AT1 = datetime(2026, 12, 7, 4, tzinfo=UTC)


def spec(**over: Any):
    raw: dict[str, Any] = {
        "bundle": {"name": "edge-en", "version": "2"},
        "nodePool": {"matchLabels": {"pool": "eu"}},
        "waves": [50, 100],
        "gates": {"maxGuardrailBlockRateIncrease": 0.05, "maxFaithfulnessDrop": 0.1},
    }
    raw.update(over)
    return parse_rollout("r", raw)


def status(current: int, baseline: dict[str, str], *applied: str) -> RolloutStatus:
    waves = [
        {"number": i + 1, "percent": p, "workloads": ["a"], "state": "Applied" if i < current else "Pending"}
        | ({"appliedAt": applied[i]} if i < len(applied) else {})
        for i, p in enumerate((50, 100))
    ]
    return RolloutStatus.from_dict({"currentWave": current, "baseline": baseline, "waves": waves})


def test_the_wave_counts_its_bundle_since_it_was_applied_and_the_baseline_the_previous_bundles() -> None:
    plan = plan_queries(spec(), status(2, {"a": "", "b": "edge-en@1", "c": ""}, T0, T1), 3600)
    assert plan == {
        "wave-2": [Query("", REF, AT1)],
        # "" (the bundled models) is asked for with the sentinel; the window opens an hour before wave 1
        "baseline": [
            Query("", "edge-en@1", AT0 - timedelta(hours=1)),
            Query("", BUNDLED_MODELS, AT0 - timedelta(hours=1)),
        ],
    }


def test_the_tenant_of_the_spec_and_no_plan_before_the_first_wave() -> None:
    plan = plan_queries(spec(evaluation={"tenant": "acme"}), status(1, {"a": ""}, T0), 60)
    assert {q.tenant for qs in plan.values() for q in qs} == {"acme"}
    assert plan_queries(spec(), status(0, {}), 60) == {}


def test_the_rollouts_own_bundle_is_never_its_baseline_and_a_wave_without_applied_at_counts_all() -> None:
    plan = plan_queries(spec(), status(1, {"a": REF, "b": "edge-en@1"}), 60)
    assert plan == {"wave-1": [Query("", REF, None)], "baseline": [Query("", "edge-en@1", None)]}
    assert "baseline" not in plan_queries(spec(), status(1, {"a": REF}, T0), 60)


def test_a_tenant_that_is_not_a_tenant_id_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"spec\.evaluation\.tenant"):
        spec(evaluation={"tenant": "../x"})


def test_figures_map_to_the_gate_metrics_and_thin_ones_count_as_missing() -> None:
    reply = pb.OnlineMetrics(
        answers=40,
        blocked_answers=4,
        guardrail_block_rate=0.1,
        quality=[
            pb.MetricValue(name="faithfulness", mean=0.8, n=25),
            pb.MetricValue(name="ndcg_at_10", mean=0.6, n=5),
            pb.MetricValue(name="answer_relevance", mean=0.9, n=30),
        ],
    )
    assert gate_metrics(figures_of(reply), min_samples=20) == {
        "guardrail_block_rate": 0.1,
        "faithfulness": 0.8,
    }
    assert gate_metrics(figures_of(reply), min_samples=5) == {
        "guardrail_block_rate": 0.1,
        "faithfulness": 0.8,
        "ndcg_at_10": 0.6,
    }
    assert gate_metrics(figures_of(reply), min_samples=41) == {}
    assert gate_metrics(Figures(), min_samples=1) == {}  # no answer: no block rate of 0


def test_several_baseline_bundles_merge_weighted_by_their_counts() -> None:
    merged = merge(
        [
            Figures(answers=10, blocked_answers=0, quality={"faithfulness": (1.0, 10)}),
            Figures(
                answers=30, blocked_answers=6, quality={"faithfulness": (0.6, 30), "ndcg_at_10": (0.5, 4)}
            ),
        ]
    )
    assert (merged.answers, merged.blocked_answers) == (40, 6)
    assert merged.quality["faithfulness"] == (pytest.approx(0.7), 40)
    assert merged.quality["ndcg_at_10"] == (0.5, 4)


def test_a_thin_metric_holds_the_rollout_on_its_gate() -> None:
    """What the state machine does with a metric left out: it waits (AwaitingMetrics), never decides."""
    s = status(1, {"a": ""}, T0)
    entries = {
        "baseline": json.dumps(
            gate_metrics(Figures(answers=50, blocked_answers=1, quality={"faithfulness": (0.9, 30)}), 20)
        ),
        "wave-1": json.dumps(
            gate_metrics(Figures(answers=50, blocked_answers=20, quality={"faithfulness": (0.9, 3)}), 20)
        ),
    }
    verdict = judge(Tick(spec(), s, Observed({"a": REF}, entries, "the evaluation service"), 1, T1))
    assert isinstance(verdict, Wait) and verdict.reason == "AwaitingMetrics"
    assert "wave-1 lacks 'faithfulness' (needed by maxFaithfulnessDrop)" in verdict.message


def test_each_wave_records_when_it_was_applied() -> None:
    pool: dict[str, str | None] = {"a": None, "b": None}
    first = step(spec(), {}, Observed(pool, {}, "src"), 1, T0).status
    assert [w.get("appliedAt") for w in first["waves"]] == [T0, None]
    good = json.dumps({"guardrail_block_rate": 0.01, "faithfulness": 0.9})
    second = step(
        spec(), first, Observed({"a": REF, "b": None}, {"baseline": good, "wave-1": good}, "src"), 1, T1
    )
    assert [w.get("appliedAt") for w in second.status["waves"]] == [T0, T1]
    assert RolloutStatus.from_dict(second.status).waves[1].applied_at == T1


def test_an_unreachable_evaluation_is_unavailable_naming_it() -> None:
    """The step is then retried with the status left as it was (reconcile_rollout)."""
    import asyncio

    from isthmus_core.errors import Unavailable
    from isthmus_operator.evaluation import EvaluationMetricsSource
    from isthmus_operator.kube import MetricsRequest

    async def read() -> dict[str, str]:
        src = EvaluationMetricsSource("127.0.0.1:1", timeout_s=2.0)
        try:
            return await src.read(MetricsRequest("ns", "r", spec(), status(1, {"a": ""}, T0)))
        finally:
            await src.close()

    with pytest.raises(
        Unavailable, match=r"evaluation at 127\.0\.0\.1:1: GetOnlineMetrics of edge-en@2 failed"
    ):
        asyncio.run(read())
    with pytest.raises(InvalidArgument, match="host:port"):
        EvaluationMetricsSource("no-port")
