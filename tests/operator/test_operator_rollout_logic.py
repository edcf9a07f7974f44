"""Wave planning, gate evaluation and the rollout state machine (pure functions, no fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_operator.rollout import Observed, evaluate_gates, parse_metrics, plan_waves, step
from isthmus_operator.specs import Gates, parse_rollout

BUNDLE = "bge-small-en@1.6.0"
BASE = {"ndcg_at_10": 0.50, "faithfulness": 0.90, "guardrail_block_rate": 0.02}


def spec(**over: Any):
    raw: dict[str, Any] = {
        "bundle": {"name": "bge-small-en", "version": "1.6.0"},
        "nodePool": {"matchLabels": {"pool": "eu"}},
        "waves": [25, 50, 100],
        "gates": {"maxNdcgDrop": 0.02, "maxGuardrailBlockRateIncrease": 0.01},
    }
    raw.update(over)
    return parse_rollout("r", raw)


def observed(workloads: dict[str, str | None], **metrics: dict[str, float] | str) -> Observed:
    raw = {k.replace("_", "-"): v if isinstance(v, str) else json.dumps(v) for k, v in metrics.items()}
    return Observed(workloads=workloads, metrics=raw, metrics_source="ConfigMap ns/m")


POOL: dict[str, str | None] = {"d": None, "a": "bge-small-en@1.5.0", "c": None, "b": None}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# -- plan_waves ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percents", "n", "counts"),
    [([10, 50, 100], 10, [1, 5, 10]), ([10, 50, 100], 4, [1, 2, 4]), ([1, 100], 3, [1, 3]), ([100], 1, [1])],
)
def test_plan_waves_is_cumulative_and_rounds_up(percents: list[int], n: int, counts: list[int]) -> None:
    names = [f"w{i:02d}" for i in range(n)]
    plan = plan_waves(percents, list(reversed(names)))
    assert [len(w) for w in plan] == counts
    assert all(plan[i] == plan[i + 1][: len(plan[i])] for i in range(len(plan) - 1))
    assert plan[-1] == names


def test_plan_waves_rejects_an_empty_pool_and_waves_finer_than_the_pool() -> None:
    with pytest.raises(InvalidArgument, match="the node pool has no workloads"):
        plan_waves([50, 100], [])
    with pytest.raises(InvalidArgument, match=r"waves 10% and 20% both cover 1 of the pool's 3 workloads"):
        plan_waves([10, 20, 100], ["a", "b", "c"])


# -- metrics and gates ---------------------------------------------------------------------------------


def test_parse_metrics_accepts_numbers_and_explains_bad_input() -> None:
    assert parse_metrics('{"ndcg_at_10": 1, "x": 0.5}', "w") == {"ndcg_at_10": 1.0, "x": 0.5}
    with pytest.raises(InvalidArgument, match=r"^src: not JSON \(Expecting value at line 1 column 1\)"):
        parse_metrics("nope", "src")
    with pytest.raises(InvalidArgument, match="expected a JSON object of metric → number, got list"):
        parse_metrics("[1]", "src")
    with pytest.raises(InvalidArgument, match="metric 'ndcg_at_10' must be a finite number, got 'high'"):
        parse_metrics('{"ndcg_at_10": "high"}', "src")
    with pytest.raises(InvalidArgument, match="must be a finite number, got True"):
        parse_metrics('{"ndcg_at_10": true}', "src")


@pytest.mark.parametrize(
    ("observed_value", "passed"),
    [(0.48, True), (0.479, False), (0.55, True), (0.4799999, False)],
)
def test_quality_gate_threshold_is_inclusive(observed_value: float, passed: bool) -> None:
    (result,) = evaluate_gates(Gates(maxNdcgDrop=0.02), BASE, BASE | {"ndcg_at_10": observed_value})
    assert result.passed is passed
    assert result.regression == pytest.approx(0.50 - observed_value)


def test_block_rate_gate_fails_on_a_rise_and_ignores_a_fall() -> None:
    gates = Gates(maxGuardrailBlockRateIncrease=0.01)
    (rise,) = evaluate_gates(gates, BASE, BASE | {"guardrail_block_rate": 0.04})
    assert not rise.passed and rise.regression == pytest.approx(0.02)
    assert rise.message == (
        "guardrail_block_rate rose by 0.0200 (0.0200 → 0.0400); maxGuardrailBlockRateIncrease allows 0.0100"
    )
    (fall,) = evaluate_gates(gates, BASE, BASE | {"guardrail_block_rate": 0.0})
    assert fall.passed


def test_only_configured_gates_are_evaluated() -> None:
    results = evaluate_gates(Gates(maxFaithfulnessDrop=0.05), BASE, BASE | {"ndcg_at_10": 0.0})
    assert [(r.gate, r.metric, r.passed) for r in results] == [("maxFaithfulnessDrop", "faithfulness", True)]


# -- step ----------------------------------------------------------------------------------------------


def test_first_step_records_the_baseline_plans_and_applies_wave_one() -> None:
    out = step(spec(), {}, observed(POOL), 1, "t0")
    assert out.apply == ("a",)
    assert out.status["phase"] == "Progressing"
    assert (out.status["currentWave"], out.status["currentPercent"]) == (1, 25)
    assert out.status["baseline"] == {"a": "bge-small-en@1.5.0", "b": "", "c": "", "d": ""}
    assert [(w["percent"], w["workloads"], w["state"]) for w in out.status["waves"]] == [
        (25, ["a"], "Applied"),
        (50, ["a", "b"], "Pending"),
        (100, ["a", "b", "c", "d"], "Pending"),
    ]
    assert cond(out.status, "GatesPassed")["status"] == "Unknown"


def test_empty_pool_is_a_failed_rollout_that_names_the_selector() -> None:
    out = step(spec(), {}, observed({}), 1, "t0")
    assert out.apply == () and out.status["phase"] == "Failed"
    assert out.status["message"] == "the node pool has no workloads to roll out to (selector pool=eu)"
    assert cond(out.status, "Valid")["status"] == "False"


def started(**over: Any) -> dict[str, Any]:
    return step(spec(**over), {}, observed(POOL), 1, "t0").status


def test_waits_for_metrics_and_heals_lost_patches_only() -> None:
    status = started()
    # "a" lost its patch (e.g. someone reverted it): the hold re-applies it, nothing else
    out = step(spec(), status, observed(POOL), 1, "t1")
    assert out.apply == ("a",)
    assert out.status["phase"] == "Progressing"
    gate = cond(out.status, "GatesPassed")
    assert gate["reason"] == "AwaitingMetrics"
    assert gate["message"] == "wave 1 (25%) applied; waiting for baseline and wave-1 in ConfigMap ns/m"
    healed = POOL | {"a": BUNDLE}
    assert step(spec(), status, observed(healed, baseline=BASE), 1, "t1").apply == ()


def test_invalid_or_incomplete_metrics_hold_the_wave_with_a_reason() -> None:
    status = started()
    bad = step(spec(), status, observed(POOL | {"a": BUNDLE}, baseline=BASE, wave_1="{oops"), 1, "t1")
    assert cond(bad.status, "GatesPassed")["reason"] == "InvalidMetrics"
    assert "ConfigMap ns/m key 'wave-1': not JSON" in bad.status["message"]
    partial = step(
        spec(), status, observed(POOL | {"a": BUNDLE}, baseline=BASE, wave_1={"ndcg_at_10": 0.5}), 1, "t"
    )
    assert partial.status["message"] == (
        "ConfigMap ns/m: wave-1 lacks 'guardrail_block_rate' (needed by maxGuardrailBlockRateIncrease)"
    )
    assert "currentWave" not in partial.status


def test_passing_gates_advance_to_the_next_wave() -> None:
    status = started()
    pool = POOL | {"a": BUNDLE}
    out = step(spec(), status, observed(pool, baseline=BASE, wave_1=BASE | {"ndcg_at_10": 0.49}), 2, "t1")
    assert out.apply == ("b",)
    assert (out.status["currentWave"], out.status["currentPercent"]) == (2, 50)
    assert [w["state"] for w in out.status["waves"]] == ["Passed", "Applied", "Pending"]
    assert {g["metric"]: g["passed"] for g in out.status["waves"][0]["gates"]} == {
        "ndcg_at_10": True,
        "guardrail_block_rate": True,
    }
    assert out.status["observedGeneration"] == 2


def test_last_wave_passing_succeeds_and_then_nothing_happens() -> None:
    status = started(waves=[100])
    pool = {n: BUNDLE for n in POOL}
    out = step(spec(waves=[100]), status, observed(pool, baseline=BASE, wave_1=BASE), 1, "t1")
    assert out.status["phase"] == "Succeeded" and out.apply == ()
    assert cond(out.status, "Ready")["status"] == "True"
    final = status | out.status
    assert step(spec(waves=[100]), final, observed(pool), 1, "t2").status == {}


def test_a_failed_gate_reverts_every_touched_workload_to_its_baseline() -> None:
    status = started()
    status = (
        status
        | step(spec(), status, observed(POOL | {"a": BUNDLE}, baseline=BASE, wave_1=BASE), 1, "t").status
    )
    pool = POOL | {"a": BUNDLE, "b": BUNDLE}
    worse = BASE | {"ndcg_at_10": 0.40}
    out = step(spec(), status, observed(pool, baseline=BASE, wave_1=BASE, wave_2=worse), 1, "t2")
    assert out.status["phase"] == "RolledBack"
    assert dict(out.revert) == {"a": "bge-small-en@1.5.0", "b": None}
    assert out.apply == ()
    assert [w["state"] for w in out.status["waves"]] == ["RolledBack", "Failed", "Pending"]
    (failed,) = out.status["failedGates"]
    assert (failed["metric"], failed["baseline"], failed["observed"], failed["passed"]) == (
        "ndcg_at_10",
        0.5,
        0.4,
        False,
    )
    assert cond(out.status, "GatesPassed")["message"] == (
        "wave 2 (50%) failed its gates, rolled back 2 workloads: "
        "ndcg_at_10 dropped by 0.1000 (0.5000 → 0.4000); maxNdcgDrop allows 0.0200"
    )


def test_paused_holds_without_patching_or_deciding() -> None:
    status = started()
    out = step(spec(paused=True), status, observed(POOL, baseline=BASE, wave_1=BASE), 3, "t1")
    assert out.apply == () and not out.revert
    assert out.status["phase"] == "Paused"
    assert "currentWave" not in out.status and "waves" not in out.status
    assert out.status["message"] == "paused at wave 1 of 3; set spec.paused=false to resume"
    assert cond(out.status, "Paused")["status"] == "True"


def test_a_corrupt_status_is_reported_not_crashed_on() -> None:
    out = step(spec(), {"currentWave": 7, "waves": []}, observed(POOL), 1, "t")
    assert out.status["phase"] == "Failed"
    assert "status.currentWave 7 is outside the planned waves" in out.status["message"]
