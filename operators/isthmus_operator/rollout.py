"""Edge rollouts as pure functions: wave planning, quality gates, and one reconcile step.

A rollout moves a model bundle onto the workloads of an edge node pool (one DaemonSet or Deployment per
node group) in cumulative waves (e.g. 10 %, 50 %, 100 % of the workloads). After each wave the quality
gates compare that wave's evaluation metrics with the baseline; all gates pass → next wave (or done),
any gate fails → every workload touched is put back on the bundle it ran before (rollback).

:func:`step` takes the rollout's spec and status, the pool's workloads and the metrics, and returns what
to do (workloads to patch) and the new status. It never does I/O; the kopf handler executes the result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from isthmus_core.errors import InvalidArgument
from isthmus_operator.builders import build_condition, merge_conditions
from isthmus_operator.specs import EdgeRolloutSpec, Gates

TERMINAL_PHASES = ("Succeeded", "RolledBack")
BASELINE_KEY = "baseline"


def wave_key(number: int) -> str:
    """The metrics key of wave ``number`` (1-based): ``wave-1``, ``wave-2`` …"""
    return f"wave-{number}"


# -- wave planning -----------------------------------------------------------------------------------


def plan_waves(percents: Sequence[int], workloads: Sequence[str]) -> list[list[str]]:
    """Cumulative workload lists per wave: wave p% covers the first ceil(p·n/100) workloads by name.

    Raises InvalidArgument when the pool is empty or two waves would cover the same workloads (waves
    finer than the pool: the second wave would roll nothing new and its gates would judge nothing new).
    """
    names = sorted(set(workloads))
    if not names:
        raise InvalidArgument("the node pool has no workloads to roll out to")
    counts = [max(1, math.ceil(p * len(names) / 100)) for p in percents]
    for i in range(1, len(counts)):
        if counts[i] == counts[i - 1]:
            raise InvalidArgument(
                f"waves {percents[i - 1]}% and {percents[i]}% both cover {counts[i]} of the pool's "
                f"{len(names)} workloads: use fewer waves or more node groups"
            )
    return [names[:c] for c in counts]


# -- metrics and gates -------------------------------------------------------------------------------


def parse_metrics(raw: str, where: str) -> dict[str, float]:
    """One metrics entry: a JSON object of metric name → number (unknown names are kept, ignored)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidArgument(
            f"{where}: expected a JSON object of metric → number, got {type(value).__name__}"
        )
    out: dict[str, float] = {}
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise InvalidArgument(f"{where}: metric {key!r} must be a finite number, got {number!r}")
        out[str(key)] = float(number)
    return out


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str
    metric: str
    baseline: float
    observed: float
    threshold: float
    #: how far the metric moved in the bad direction (drop for quality, rise for block rate)
    regression: float
    passed: bool

    @property
    def message(self) -> str:
        verb = "rose" if self.metric == "guardrail_block_rate" else "dropped"
        return (
            f"{self.metric} {verb} by {self.regression:.4f} ({self.baseline:.4f} → {self.observed:.4f}); "
            f"{self.gate} allows {self.threshold:.4f}"
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "metric": self.metric,
            "baseline": self.baseline,
            "observed": self.observed,
            "threshold": self.threshold,
            "regression": round(self.regression, 6),
            "passed": self.passed,
        }


def configured_gates(gates: Gates) -> list[tuple[str, str, float, int]]:
    """(gate name, metric, threshold, direction) for each gate set; direction -1 = must not drop."""
    out: list[tuple[str, str, float, int]] = []
    if gates.max_ndcg_drop is not None:
        out.append(("maxNdcgDrop", "ndcg_at_10", gates.max_ndcg_drop, -1))
    if gates.max_faithfulness_drop is not None:
        out.append(("maxFaithfulnessDrop", "faithfulness", gates.max_faithfulness_drop, -1))
    if gates.max_block_rate_increase is not None:
        out.append(
            ("maxGuardrailBlockRateIncrease", "guardrail_block_rate", gates.max_block_rate_increase, 1)
        )
    return out


def missing_metrics(
    gates: Gates, baseline: Mapping[str, float], observed: Mapping[str, float], wave: str = "wave"
) -> list[str]:
    """Human descriptions of the metrics a configured gate needs but the entries lack."""
    missing = []
    for gate, metric, _, _ in configured_gates(gates):
        for label, entry in ((BASELINE_KEY, baseline), (wave, observed)):
            if metric not in entry:
                missing.append(f"{label} lacks {metric!r} (needed by {gate})")
    return missing


def evaluate_gates(
    gates: Gates, baseline: Mapping[str, float], observed: Mapping[str, float]
) -> list[GateResult]:
    """Every configured gate against the baseline. Callers check :func:`missing_metrics` first."""
    results = []
    for gate, metric, threshold, direction in configured_gates(gates):
        base, seen = baseline[metric], observed[metric]
        regression = (seen - base) * direction
        # a tiny epsilon so a regression exactly at the threshold passes despite float rounding
        results.append(
            GateResult(gate, metric, base, seen, threshold, regression, regression <= threshold + 1e-12)
        )
    return results


# -- one reconcile step ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """What the handler does: patch ``apply`` to the rollout's bundle, patch ``revert`` back to their
    baseline bundle (None = remove the bundle), then merge ``status`` into the object's status."""

    status: dict[str, Any]
    apply: tuple[str, ...] = ()
    revert: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the handler read this time."""

    #: current bundle reference of each workload matching the pool selector (None = no bundle yet)
    workloads: Mapping[str, str | None]
    #: the rollout's metrics entries by key (``baseline``, ``wave-1`` …), raw JSON text
    metrics: Mapping[str, str]
    #: where metrics come from, for messages (e.g. "ConfigMap ns/isthmus-rollout-metrics-x")
    metrics_source: str


def _stale(names: Sequence[str], observed: Observed, bundle: str | None) -> tuple[str, ...]:
    """The workloads among ``names`` that exist and do not carry ``bundle`` yet (patch only those)."""
    return tuple(n for n in names if n in observed.workloads and observed.workloads[n] != bundle)


def _conditions(
    status: Mapping[str, Any], generation: int, now: str, *conds: tuple[str, bool | None, str, str]
) -> list[dict[str, Any]]:
    return merge_conditions(
        status.get("conditions") or [],
        [build_condition(t, s, r, m, generation, now) for t, s, r, m in conds],
    )


def invalid(status: Mapping[str, Any], message: str, generation: int, now: str) -> Step:
    """The status of a rollout whose spec cannot be acted on (nothing is patched)."""
    return Step(
        status={
            "phase": "Failed",
            "message": message,
            "observedGeneration": generation,
            "conditions": _conditions(
                status,
                generation,
                now,
                ("Valid", False, "InvalidSpec", message),
                ("Ready", False, "InvalidSpec", message),
            ),
        }
    )


def step(
    spec: EdgeRolloutSpec, status: Mapping[str, Any], observed: Observed, generation: int, now: str
) -> Step:
    """Decide the next move of a rollout. Idempotent: re-running a step re-applies the same patches."""
    phase = status.get("phase")
    current = int(status.get("currentWave") or 0)
    if phase in TERMINAL_PHASES:
        return Step(status={})
    base: dict[str, Any] = {"observedGeneration": generation}
    valid = ("Valid", True, "SpecAccepted", "spec and node pool are usable")
    bundle = spec.bundle.ref

    if spec.paused:
        message = f"paused at wave {current} of {len(spec.waves)}; set spec.paused=false to resume"
        return Step(
            status=base
            | {
                "phase": "Paused",
                "message": message,
                "conditions": _conditions(
                    status,
                    generation,
                    now,
                    valid,
                    ("Paused", True, "PausedBySpec", message),
                    ("Ready", False, "Paused", message),
                ),
            }
        )
    not_paused = ("Paused", False, "Running", "the rollout is not paused")

    if current == 0:
        try:
            plan = plan_waves(spec.waves, list(observed.workloads))
        except InvalidArgument as exc:
            return invalid(
                status, f"{exc.reason} (selector {spec.node_pool.label_selector})", generation, now
            )
        baseline = {name: observed.workloads.get(name) or "" for name in plan[-1]}
        planned: list[dict[str, Any]] = [
            {"number": i + 1, "percent": p, "workloads": names, "state": "Pending", "gates": []}
            for i, (p, names) in enumerate(zip(spec.waves, plan, strict=True))
        ]
        planned[0]["state"] = "Applied"
        message = f"wave 1 ({spec.waves[0]}%): {bundle} on {len(plan[0])} of {len(plan[-1])} workloads"
        return Step(
            apply=_stale(plan[0], observed, bundle),
            status=base
            | {
                "phase": "Progressing",
                "currentWave": 1,
                "currentPercent": spec.waves[0],
                "baseline": baseline,
                "waves": planned,
                "message": message,
                "conditions": _conditions(
                    status,
                    generation,
                    now,
                    valid,
                    not_paused,
                    ("GatesPassed", None, "AwaitingMetrics", f"waiting for {wave_key(1)} metrics"),
                    ("Ready", False, "Progressing", message),
                ),
            },
        )

    waves: list[dict[str, Any]] = [dict(w) for w in status.get("waves") or []]
    baseline_bundles: dict[str, str] = dict(status.get("baseline") or {})
    if not 1 <= current <= len(waves):
        return invalid(status, f"status.currentWave {current} is outside the planned waves", generation, now)
    wave = waves[current - 1]
    key = wave_key(current)

    # gates of the current wave
    def hold(reason: str, message: str) -> Step:
        return Step(
            # re-applying the current wave is idempotent and heals a patch lost to a crash
            apply=_stale(wave["workloads"], observed, bundle),
            status=base
            | {
                "phase": "Progressing",
                "message": message,
                "conditions": _conditions(
                    status,
                    generation,
                    now,
                    valid,
                    not_paused,
                    ("GatesPassed", None, reason, message),
                    ("Ready", False, "Progressing", message),
                ),
            },
        )

    raw_base, raw_wave = observed.metrics.get(BASELINE_KEY), observed.metrics.get(key)
    if raw_base is None or raw_wave is None:
        lacking = " and ".join(k for k, v in ((BASELINE_KEY, raw_base), (key, raw_wave)) if v is None)
        return hold(
            "AwaitingMetrics",
            f"wave {current} ({wave['percent']}%) applied; "
            f"waiting for {lacking} in {observed.metrics_source}",
        )
    try:
        base_metrics = parse_metrics(raw_base, f"{observed.metrics_source} key {BASELINE_KEY!r}")
        wave_metrics = parse_metrics(raw_wave, f"{observed.metrics_source} key {key!r}")
    except InvalidArgument as exc:
        return hold("InvalidMetrics", exc.reason)
    lacking_metrics = missing_metrics(spec.gates, base_metrics, wave_metrics, key)
    if lacking_metrics:
        return hold("AwaitingMetrics", f"{observed.metrics_source}: " + "; ".join(lacking_metrics))

    results = evaluate_gates(spec.gates, base_metrics, wave_metrics)
    wave["gates"] = [r.to_status() for r in results]
    failed = [r for r in results if not r.passed]

    if failed:
        wave["state"] = "Failed"
        touched = sorted({n for w in waves[:current] for n in w["workloads"]})
        detail = "; ".join(r.message for r in failed)
        message = (
            f"wave {current} ({wave['percent']}%) failed its gates, "
            f"rolled back {len(touched)} workloads: {detail}"
        )
        for w in waves[:current]:
            w["state"] = "RolledBack" if w is not wave else "Failed"
        return Step(
            revert={
                n: baseline_bundles.get(n) or None
                for n in touched
                if n in observed.workloads and observed.workloads[n] != (baseline_bundles.get(n) or None)
            },
            status=base
            | {
                "phase": "RolledBack",
                "waves": waves,
                "failedGates": [r.to_status() for r in failed],
                "message": message,
                "conditions": _conditions(
                    status,
                    generation,
                    now,
                    valid,
                    not_paused,
                    ("GatesPassed", False, "GateFailed", message),
                    ("Ready", False, "RolledBack", message),
                ),
            },
        )

    wave["state"] = "Passed"
    gates_ok = ("GatesPassed", True, "GatesPassed", f"wave {current} ({wave['percent']}%) passed every gate")
    if current == len(waves):
        message = f"{bundle} is on all {len(wave['workloads'])} workloads; every wave passed its gates"
        return Step(
            status=base
            | {
                "phase": "Succeeded",
                "waves": waves,
                "message": message,
                "conditions": _conditions(
                    status,
                    generation,
                    now,
                    valid,
                    not_paused,
                    gates_ok,
                    ("Ready", True, "Succeeded", message),
                ),
            }
        )
    nxt = waves[current]
    nxt["state"] = "Applied"
    message = (
        f"wave {current + 1} ({nxt['percent']}%): {bundle} on {len(nxt['workloads'])} of "
        f"{len(waves[-1]['workloads'])} workloads"
    )
    return Step(
        apply=_stale(nxt["workloads"], observed, bundle),
        status=base
        | {
            "phase": "Progressing",
            "currentWave": current + 1,
            "currentPercent": nxt["percent"],
            "waves": waves,
            "message": message,
            "conditions": _conditions(
                status,
                generation,
                now,
                valid,
                not_paused,
                (
                    "GatesPassed",
                    None,
                    "AwaitingMetrics",
                    f"wave {current} passed every gate; waiting for {wave_key(current + 1)} metrics",
                ),
                ("Ready", False, "Progressing", message),
            ),
        },
    )
