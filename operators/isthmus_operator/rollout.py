"""Edge rollouts as pure functions: wave planning, quality gates, and one reconcile step.

A rollout puts a model bundle reference (annotation ``isthmus.dev/model-bundle``) on the workloads of an
edge node pool (one DaemonSet or Deployment per node group) in cumulative waves (e.g. 10 %, 50 %, 100 %
of the workloads). After each wave the quality gates compare that wave's metrics with the baseline; all
gates pass → next wave (or done), any gate fails → every workload touched is put back on the bundle it
carried before (rollback).

The status is typed (:class:`RolloutStatus`, :class:`WaveStatus`, :class:`Phase`); dicts exist only at
the edge (:meth:`RolloutStatus.from_dict`, :meth:`StatusPatch.to_dict`). :func:`step` reads the
rollout's spec and status, the pool's workloads and the metrics, picks one transition — :func:`pause`,
:func:`start`, :func:`hold_on_gate`, :func:`roll_back`, :func:`complete`, :func:`advance_wave`, or
:func:`invalid` — and returns what to do (workloads to patch) and the status patch. It never does I/O;
the kopf handler executes the result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from isthmus_core.errors import InvalidArgument
from isthmus_operator.builders import build_condition, merge_conditions
from isthmus_operator.specs import EdgeRolloutSpec, Gates

BASELINE_KEY = "baseline"


class Phase(StrEnum):
    """``status.phase`` of an EdgeRollout (the CRD's enum)."""

    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class WaveState(StrEnum):
    """``status.waves[].state`` (the CRD's enum)."""

    PENDING = "Pending"
    APPLIED = "Applied"
    PASSED = "Passed"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


#: final phases: nothing happens any more (roll out again with a new EdgeRollout)
TERMINAL_PHASES: tuple[str, ...] = (Phase.SUCCEEDED.value, Phase.ROLLED_BACK.value)


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

    @classmethod
    def from_status(cls, raw: Mapping[str, Any]) -> GateResult:
        return cls(
            gate=str(raw["gate"]),
            metric=str(raw["metric"]),
            baseline=float(raw["baseline"]),
            observed=float(raw["observed"]),
            threshold=float(raw["threshold"]),
            regression=float(raw["regression"]),
            passed=bool(raw["passed"]),
        )


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


# -- the typed status --------------------------------------------------------------------------------

#: a ``metav1.Condition`` as :func:`~isthmus_operator.builders.build_condition` builds it
Condition = dict[str, Any]


def _corrupt(what: str, exc: Exception) -> InvalidArgument:
    return InvalidArgument(f"status.{what} is not what the operator wrote ({type(exc).__name__}: {exc})")


@dataclass(frozen=True, slots=True)
class WaveStatus:
    """One entry of ``status.waves``: the cumulative workloads of a wave and what became of it."""

    number: int
    percent: int
    workloads: tuple[str, ...]
    state: WaveState
    gates: tuple[GateResult, ...] = ()
    #: when the wave was applied (RFC 3339, the operator's clock); "" = not yet (or by an older operator).
    #: Its metrics count the answers served with the bundle from then on.
    applied_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "percent": self.percent,
            "workloads": list(self.workloads),
            "state": self.state.value,
            "gates": [g.to_status() for g in self.gates],
        }
        if self.applied_at:
            out["appliedAt"] = self.applied_at
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WaveStatus:
        return cls(
            number=int(raw["number"]),
            percent=int(raw["percent"]),
            workloads=tuple(str(n) for n in raw["workloads"]),
            state=WaveState(raw["state"]),
            gates=tuple(GateResult.from_status(g) for g in raw.get("gates") or ()),
            applied_at=str(raw.get("appliedAt") or ""),
        )


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """An EdgeRollout's ``status`` as the operator reads it (every field optional on a new object)."""

    phase: Phase | None = None
    message: str = ""
    observed_generation: int = 0
    #: the wave (1-based) whose workloads carry the bundle; 0 before the first
    current_wave: int = 0
    current_percent: int = 0
    #: each workload's bundle before the rollout ("" = none), recorded when the first wave is applied
    baseline: Mapping[str, str] = field(default_factory=dict)
    waves: tuple[WaveStatus, ...] = ()
    failed_gates: tuple[GateResult, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RolloutStatus:
        """Parse the object's status. Raises InvalidArgument naming the field when it is corrupt."""
        phase = raw.get("phase")
        parsed: dict[str, Any] = {}
        readers: dict[str, Callable[[Any], Any]] = {
            "observedGeneration": lambda v: int(v or 0),
            "currentWave": lambda v: int(v or 0),
            "currentPercent": lambda v: int(v or 0),
            "baseline": lambda v: {str(k): str(b) for k, b in (v or {}).items()},
            "waves": lambda v: tuple(WaveStatus.from_dict(w) for w in v or ()),
            "failedGates": lambda v: tuple(GateResult.from_status(g) for g in v or ()),
            "conditions": lambda v: tuple(dict(c) for c in v or ()),
        }
        for key, read in readers.items():
            try:
                parsed[key] = read(raw.get(key))
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise _corrupt(key, exc) from exc
        return cls(
            phase=Phase(phase) if phase in {p.value for p in Phase} else None,
            message=str(raw.get("message") or ""),
            observed_generation=parsed["observedGeneration"],
            current_wave=parsed["currentWave"],
            current_percent=parsed["currentPercent"],
            baseline=parsed["baseline"],
            waves=parsed["waves"],
            failed_gates=parsed["failedGates"],
            conditions=parsed["conditions"],
        )


@dataclass(frozen=True, slots=True)
class StatusPatch:
    """What a transition writes into ``status``: the phase, message and conditions always, the other
    fields only when the transition changes them (None = left as it is)."""

    phase: Phase
    message: str
    observed_generation: int
    conditions: tuple[Condition, ...]
    current_wave: int | None = None
    current_percent: int | None = None
    baseline: Mapping[str, str] | None = None
    waves: tuple[WaveStatus, ...] | None = None
    failed_gates: tuple[GateResult, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "observedGeneration": self.observed_generation,
            "phase": self.phase.value,
            "message": self.message,
            "conditions": [dict(c) for c in self.conditions],
        }
        if self.current_wave is not None:
            out["currentWave"] = self.current_wave
        if self.current_percent is not None:
            out["currentPercent"] = self.current_percent
        if self.baseline is not None:
            out["baseline"] = dict(self.baseline)
        if self.waves is not None:
            out["waves"] = [w.to_dict() for w in self.waves]
        if self.failed_gates is not None:
            out["failedGates"] = [g.to_status() for g in self.failed_gates]
        return out


# -- one reconcile step ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """What the handler does: patch ``apply`` to the rollout's bundle, patch ``revert`` back to their
    baseline bundle (None = remove the bundle), then merge ``status`` into the object's status."""

    #: None = nothing to write (a final rollout)
    patch: StatusPatch | None
    apply: tuple[str, ...] = ()
    revert: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def status(self) -> dict[str, Any]:
        """The status patch as the API takes it (``{}`` = nothing to write)."""
        return {} if self.patch is None else self.patch.to_dict()


@dataclass(frozen=True, slots=True)
class Observed:
    """What the handler read this time."""

    #: current bundle reference of each workload matching the pool selector (None = no bundle yet)
    workloads: Mapping[str, str | None]
    #: the rollout's metrics entries by key (``baseline``, ``wave-1`` …), raw JSON text
    metrics: Mapping[str, str]
    #: where metrics come from, for messages (e.g. "ConfigMap ns/isthmus-rollout-metrics-x")
    metrics_source: str


#: the conditions of a rollout that runs: its spec is usable, it is not paused
VALID = ("Valid", True, "SpecAccepted", "spec and node pool are usable")
NOT_PAUSED = ("Paused", False, "Running", "the rollout is not paused")


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything a transition decides from: the spec, the typed status, what was read, and when."""

    spec: EdgeRolloutSpec
    status: RolloutStatus
    observed: Observed
    generation: int
    now: str

    def stale(self, names: Sequence[str], bundle: str | None) -> tuple[str, ...]:
        """The workloads among ``names`` that exist and do not carry ``bundle`` yet (patch only those)."""
        have = self.observed.workloads
        return tuple(n for n in names if n in have and have[n] != bundle)

    def conditions(self, *conds: tuple[str, bool | None, str, str]) -> tuple[Condition, ...]:
        """The status's conditions with ``conds`` (type, status, reason, message) merged in."""
        updates = [build_condition(t, s, r, m, self.generation, self.now) for t, s, r, m in conds]
        return tuple(merge_conditions(self.status.conditions, updates))

    def progressing(self, message: str, gates: tuple[str, bool | None, str, str]) -> tuple[Condition, ...]:
        """Conditions of a running rollout: valid, not paused, ``gates``, not ready yet."""
        return self.conditions(VALID, NOT_PAUSED, gates, ("Ready", False, "Progressing", message))


def _invalid(conditions: Sequence[Condition], message: str, generation: int, now: str) -> Step:
    updates = [
        build_condition("Valid", False, "InvalidSpec", message, generation, now),
        build_condition("Ready", False, "InvalidSpec", message, generation, now),
    ]
    return Step(
        StatusPatch(
            phase=Phase.FAILED,
            message=message,
            observed_generation=generation,
            conditions=tuple(merge_conditions(conditions, updates)),
        )
    )


def invalid(status: Mapping[str, Any], message: str, generation: int, now: str) -> Step:
    """The status of a rollout whose spec cannot be acted on (nothing is patched)."""
    return _invalid(status.get("conditions") or [], message, generation, now)


# -- transitions: one pure function each -------------------------------------------------------------


def pause(t: Tick) -> Step:
    """``spec.paused``: hold everything — no wave, no gate decision, no rollback."""
    message = (
        f"paused at wave {t.status.current_wave} of {len(t.spec.waves)}; set spec.paused=false to resume"
    )
    return Step(
        StatusPatch(
            phase=Phase.PAUSED,
            message=message,
            observed_generation=t.generation,
            conditions=t.conditions(
                VALID, ("Paused", True, "PausedBySpec", message), ("Ready", False, "Paused", message)
            ),
        )
    )


def start(t: Tick) -> Step:
    """No wave yet: plan the waves over the pool, record each workload's bundle, apply wave 1."""
    try:
        plan = plan_waves(t.spec.waves, list(t.observed.workloads))
    except InvalidArgument as exc:
        message = f"{exc.reason} (selector {t.spec.node_pool.label_selector})"
        return _invalid(t.status.conditions, message, t.generation, t.now)
    bundle = t.spec.bundle.ref
    waves = [
        WaveStatus(number=i + 1, percent=p, workloads=tuple(names), state=WaveState.PENDING)
        for i, (p, names) in enumerate(zip(t.spec.waves, plan, strict=True))
    ]
    waves[0] = replace(waves[0], state=WaveState.APPLIED, applied_at=t.now)
    message = f"wave 1 ({t.spec.waves[0]}%): {bundle} on {len(plan[0])} of {len(plan[-1])} workloads"
    return Step(
        apply=t.stale(plan[0], bundle),
        patch=StatusPatch(
            phase=Phase.PROGRESSING,
            message=message,
            observed_generation=t.generation,
            conditions=t.progressing(
                message, ("GatesPassed", None, "AwaitingMetrics", f"waiting for {wave_key(1)} metrics")
            ),
            current_wave=1,
            current_percent=t.spec.waves[0],
            baseline={name: t.observed.workloads.get(name) or "" for name in plan[-1]},
            waves=tuple(waves),
        ),
    )


def hold_on_gate(t: Tick, reason: str, message: str) -> Step:
    """The current wave cannot be judged yet (metrics missing or unparsable): wait, never roll back.

    Re-applying the current wave is idempotent and heals a patch lost to a crash or a manual edit."""
    wave = t.status.waves[t.status.current_wave - 1]
    return Step(
        apply=t.stale(wave.workloads, t.spec.bundle.ref),
        patch=StatusPatch(
            phase=Phase.PROGRESSING,
            message=message,
            observed_generation=t.generation,
            conditions=t.progressing(message, ("GatesPassed", None, reason, message)),
        ),
    )


def roll_back(t: Tick, results: Sequence[GateResult]) -> Step:
    """A gate failed: every workload touched so far goes back to its baseline bundle (final)."""
    current = t.status.current_wave
    failed = tuple(r for r in results if not r.passed)
    waves = list(t.status.waves)
    for i in range(current - 1):
        waves[i] = replace(waves[i], state=WaveState.ROLLED_BACK)
    waves[current - 1] = replace(waves[current - 1], state=WaveState.FAILED, gates=tuple(results))
    touched = sorted({n for w in waves[:current] for n in w.workloads})
    detail = "; ".join(r.message for r in failed)
    message = (
        f"wave {current} ({waves[current - 1].percent}%) failed its gates, "
        f"rolled back {len(touched)} workloads: {detail}"
    )
    before = {n: t.status.baseline.get(n) or None for n in touched}
    return Step(
        revert={
            n: bundle
            for n, bundle in before.items()
            if n in t.observed.workloads and t.observed.workloads[n] != bundle
        },
        patch=StatusPatch(
            phase=Phase.ROLLED_BACK,
            message=message,
            observed_generation=t.generation,
            conditions=t.conditions(
                VALID,
                NOT_PAUSED,
                ("GatesPassed", False, "GateFailed", message),
                ("Ready", False, "RolledBack", message),
            ),
            waves=tuple(waves),
            failed_gates=failed,
        ),
    )


def _passed(t: Tick, results: Sequence[GateResult]) -> list[WaveStatus]:
    waves = list(t.status.waves)
    i = t.status.current_wave - 1
    waves[i] = replace(waves[i], state=WaveState.PASSED, gates=tuple(results))
    return waves


def complete(t: Tick, results: Sequence[GateResult]) -> Step:
    """The last wave passed its gates: the bundle is on the whole pool (final)."""
    current = t.status.current_wave
    waves = _passed(t, results)
    last = waves[current - 1]
    message = f"{t.spec.bundle.ref} is on all {len(last.workloads)} workloads; every wave passed its gates"
    gates_ok = ("GatesPassed", True, "GatesPassed", f"wave {current} ({last.percent}%) passed every gate")
    return Step(
        StatusPatch(
            phase=Phase.SUCCEEDED,
            message=message,
            observed_generation=t.generation,
            conditions=t.conditions(VALID, NOT_PAUSED, gates_ok, ("Ready", True, "Succeeded", message)),
            waves=tuple(waves),
        )
    )


def advance_wave(t: Tick, results: Sequence[GateResult]) -> Step:
    """The current wave passed its gates: apply the next one."""
    current = t.status.current_wave
    waves = _passed(t, results)
    nxt = waves[current] = replace(waves[current], state=WaveState.APPLIED, applied_at=t.now)
    bundle = t.spec.bundle.ref
    message = (
        f"wave {current + 1} ({nxt.percent}%): {bundle} on {len(nxt.workloads)} of "
        f"{len(waves[-1].workloads)} workloads"
    )
    awaiting = f"wave {current} passed every gate; waiting for {wave_key(current + 1)} metrics"
    return Step(
        apply=t.stale(nxt.workloads, bundle),
        patch=StatusPatch(
            phase=Phase.PROGRESSING,
            message=message,
            observed_generation=t.generation,
            conditions=t.progressing(message, ("GatesPassed", None, "AwaitingMetrics", awaiting)),
            current_wave=current + 1,
            current_percent=nxt.percent,
            waves=tuple(waves),
        ),
    )


# -- the decision --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    """The current wave's gates cannot be judged yet: the GatesPassed reason and the message."""

    reason: str
    message: str


def judge(t: Tick) -> list[GateResult] | Wait:
    """The current wave's gate results, or why they cannot be computed yet."""
    current = t.status.current_wave
    wave, key, source = t.status.waves[current - 1], wave_key(current), t.observed.metrics_source
    raw_base, raw_wave = t.observed.metrics.get(BASELINE_KEY), t.observed.metrics.get(key)
    if raw_base is None or raw_wave is None:
        lacking = " and ".join(k for k, v in ((BASELINE_KEY, raw_base), (key, raw_wave)) if v is None)
        return Wait(
            "AwaitingMetrics",
            f"wave {current} ({wave.percent}%) applied; waiting for {lacking} in {source}",
        )
    try:
        base_metrics = parse_metrics(raw_base, f"{source} key {BASELINE_KEY!r}")
        wave_metrics = parse_metrics(raw_wave, f"{source} key {key!r}")
    except InvalidArgument as exc:
        return Wait("InvalidMetrics", exc.reason)
    lacking_metrics = missing_metrics(t.spec.gates, base_metrics, wave_metrics, key)
    if lacking_metrics:
        return Wait("AwaitingMetrics", f"{source}: " + "; ".join(lacking_metrics))
    return evaluate_gates(t.spec.gates, base_metrics, wave_metrics)


def decide(t: Tick) -> Step:
    """Pick the one transition that applies to a rollout that is not final."""
    if t.spec.paused:
        return pause(t)
    current = t.status.current_wave
    if current == 0:
        return start(t)
    if not 1 <= current <= len(t.status.waves):
        message = f"status.currentWave {current} is outside the planned waves"
        return _invalid(t.status.conditions, message, t.generation, t.now)
    verdict = judge(t)
    if isinstance(verdict, Wait):
        return hold_on_gate(t, verdict.reason, verdict.message)
    if any(not r.passed for r in verdict):
        return roll_back(t, verdict)
    if current == len(t.status.waves):
        return complete(t, verdict)
    return advance_wave(t, verdict)


def step(
    spec: EdgeRolloutSpec, status: Mapping[str, Any], observed: Observed, generation: int, now: str
) -> Step:
    """Decide the next move of a rollout from its raw status (the kopf edge's dict).

    Idempotent: re-running a step re-applies the same patches. A final rollout gets no patch; a status
    the operator cannot read makes the rollout ``Failed`` with the field named."""
    if status.get("phase") in TERMINAL_PHASES:
        return Step(None)
    try:
        typed = RolloutStatus.from_dict(status)
    except InvalidArgument as exc:
        return invalid(status, exc.reason, generation, now)
    return decide(Tick(spec, typed, observed, generation, now))
