"""The rollout's typed status and the transitions test_operator_rollout_logic.py does not walk through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from isthmus_operator.rollout import (
    Observed,
    Phase,
    RolloutStatus,
    Tick,
    WaveState,
    advance_wave,
    complete,
    evaluate_gates,
    hold_on_gate,
    step,
)
from isthmus_operator.specs import parse_rollout

BUNDLE = "bge-small-en@1.6.0"
BASE = {"ndcg_at_10": 0.50, "guardrail_block_rate": 0.02}
POOL: dict[str, str | None] = {"a": "bge-small-en@1.5.0", "b": None, "c": None, "d": None}


def spec(**over: Any):
    raw: dict[str, Any] = {
        "bundle": {"name": "bge-small-en", "version": "1.6.0"},
        "nodePool": {"matchLabels": {"pool": "eu"}},
        "waves": [25, 50, 100],
        "gates": {"maxNdcgDrop": 0.02, "maxGuardrailBlockRateIncrease": 0.01},
    }
    raw.update(over)
    return parse_rollout("r", raw)


def observed(workloads: dict[str, str | None], **metrics: dict[str, float]) -> Observed:
    raw = {k.replace("_", "-"): json.dumps(v) for k, v in metrics.items()}
    return Observed(workloads=workloads, metrics=raw, metrics_source="ConfigMap ns/m")


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_a_rollout_runs_every_wave_to_success_through_the_typed_status() -> None:
    """start → advance → advance → complete, each status merged as the API would, read back typed."""
    status: dict[str, Any] = {}
    pool = dict(POOL)
    metrics: dict[str, dict[str, float]] = {"baseline": BASE}
    applied: list[tuple[str, ...]] = []
    for tick in range(4):
        out = step(spec(), status, observed(pool, **metrics), 1, f"t{tick}")
        applied.append(out.apply)
        for name in out.apply:
            pool[name] = BUNDLE
        status = status | out.status
        typed = RolloutStatus.from_dict(status)
        if typed.phase is Phase.PROGRESSING:
            metrics[f"wave_{typed.current_wave}"] = BASE  # the wave was measured: no regression
    assert applied == [("a",), ("b",), ("c", "d"), ()]
    typed = RolloutStatus.from_dict(status)
    assert typed.phase is Phase.SUCCEEDED
    assert [w.state for w in typed.waves] == [WaveState.PASSED] * 3
    assert all(g.passed for w in typed.waves for g in w.gates)
    assert status["message"] == f"{BUNDLE} is on all 4 workloads; every wave passed its gates"
    assert cond(status, "GatesPassed")["message"] == "wave 3 (100%) passed every gate"
    assert step(spec(), status, observed(pool), 1, "t9").status == {}


def test_the_typed_status_round_trips_what_the_operator_writes() -> None:
    first = step(spec(), {}, observed(POOL), 7, "t0").status
    typed = RolloutStatus.from_dict(first)
    assert (typed.phase, typed.current_wave, typed.current_percent, typed.observed_generation) == (
        Phase.PROGRESSING,
        1,
        25,
        7,
    )
    assert typed.baseline == {"a": "bge-small-en@1.5.0", "b": "", "c": "", "d": ""}
    assert [(w.number, w.percent, w.workloads, w.state) for w in typed.waves] == [
        (1, 25, ("a",), WaveState.APPLIED),
        (2, 50, ("a", "b"), WaveState.PENDING),
        (3, 100, ("a", "b", "c", "d"), WaveState.PENDING),
    ]
    assert [w.to_dict() for w in typed.waves] == first["waves"]


@pytest.mark.parametrize(
    ("corrupt", "field"),
    [
        ({"currentWave": 1, "waves": [{"number": 1, "percent": 25}]}, "waves"),
        (
            {"currentWave": 1, "waves": [{"number": 1, "percent": 25, "workloads": ["a"], "state": "Odd"}]},
            "waves",
        ),
        ({"currentWave": "two"}, "currentWave"),
        ({"currentWave": 1, "baseline": ["a"]}, "baseline"),
    ],
)
def test_a_status_the_operator_did_not_write_fails_the_rollout_naming_the_field(
    corrupt: dict[str, Any], field: str
) -> None:
    out = step(spec(), corrupt, observed(POOL, baseline=BASE, wave_1=BASE), 1, "t")
    assert out.apply == () and not out.revert
    assert out.status["phase"] == "Failed"
    assert out.status["message"].startswith(f"status.{field} is not what the operator wrote")
    assert cond(out.status, "Valid")["status"] == "False"


def test_paused_before_the_first_wave_plans_and_patches_nothing() -> None:
    out = step(spec(paused=True), {}, observed(POOL), 1, "t0")
    assert out.apply == () and out.status["phase"] == "Paused"
    assert "waves" not in out.status and "baseline" not in out.status
    assert out.status["message"] == "paused at wave 0 of 3; set spec.paused=false to resume"


def test_resuming_after_a_pause_continues_where_the_rollout_stood() -> None:
    status = step(spec(), {}, observed(POOL), 1, "t0").status
    status |= step(spec(paused=True), status, observed(POOL), 2, "t1").status
    assert cond(status, "Paused")["status"] == "True"
    pool = POOL | {"a": BUNDLE}
    out = step(spec(), status, observed(pool, baseline=BASE, wave_1=BASE), 3, "t2")
    assert out.status["phase"] == "Progressing" and out.status["currentWave"] == 2
    assert out.apply == ("b",)
    assert cond(out.status, "Paused")["status"] == "False"


def test_rollback_reverts_only_workloads_still_in_the_pool_and_not_already_back() -> None:
    status = step(spec(), {}, observed(POOL), 1, "t0").status
    status |= step(spec(), status, observed(POOL | {"a": BUNDLE}, baseline=BASE, wave_1=BASE), 1, "t1").status
    # "a" was put back by hand already, "b" left the pool: only nothing else is left to revert
    pool = {"a": "bge-small-en@1.5.0", "c": None, "d": None}
    worse = BASE | {"guardrail_block_rate": 0.05}
    out = step(spec(), status, observed(pool, baseline=BASE, wave_1=BASE, wave_2=worse), 1, "t2")
    assert out.status["phase"] == "RolledBack"
    assert dict(out.revert) == {}
    assert [g["gate"] for g in out.status["failedGates"]] == ["maxGuardrailBlockRateIncrease"]
    # every gate of the failing wave is recorded, the passing one too
    assert [(g["gate"], g["passed"]) for g in out.status["waves"][1]["gates"]] == [
        ("maxNdcgDrop", True),
        ("maxGuardrailBlockRateIncrease", False),
    ]


def tick_at_wave(wave: int, pool: dict[str, str | None], **metrics: dict[str, float]) -> Tick:
    status: dict[str, Any] = step(spec(), {}, observed(POOL), 1, "t0").status
    status["currentWave"] = wave
    return Tick(spec(), RolloutStatus.from_dict(status), observed(pool, **metrics), 2, "t1")


def test_transitions_are_plain_functions_of_a_tick() -> None:
    pool = {n: BUNDLE for n in POOL}
    results = evaluate_gates(spec().gates, BASE, BASE)
    held = hold_on_gate(tick_at_wave(2, POOL), "AwaitingMetrics", "waiting")
    assert held.apply == ("a", "b") and held.patch is not None and held.patch.waves is None
    advanced = advance_wave(tick_at_wave(2, pool), results)
    assert advanced.patch is not None and advanced.patch.current_wave == 3 and advanced.apply == ()
    assert [w.state for w in advanced.patch.waves or ()] == ["Applied", "Passed", "Applied"]
    done = complete(tick_at_wave(3, pool), results)
    assert done.patch is not None and done.patch.phase is Phase.SUCCEEDED
    assert done.patch.current_wave is None  # the last wave stays the current one
