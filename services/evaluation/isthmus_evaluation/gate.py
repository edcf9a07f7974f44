"""The regression gate: compare an evaluation report with a baseline report, metric by metric.

``isthmus eval DATASET --baseline base.json --max-drop ndcg_at_10=0.01 --max-drop hybrid:recall_at_100=0.02``
parses each ``--max-drop`` with :func:`parse_spec` and decides with :func:`check`. A spec is
``[MODE:]METRIC=ALLOWANCE``:

* retrieval metrics (``ndcg_at_10``, ``recall_at_100``, ``mrr_at_10``, ``map_at_100``), per search mode:
  without a mode the spec applies to every mode of the baseline report; ``hybrid:ndcg_at_10=0.02`` to
  one (a mode's own spec wins over the spec for all modes). The drop is ``baseline - current``;
* search latency (``latency_p50_ms``, ``latency_p95_ms``), per mode as above, where the allowance is a
  **rise** in milliseconds: ``current - baseline``;
* answer metrics (``faithfulness``, ``answer_relevance``, ``context_precision``, ``context_recall``),
  over the answers the run asked and judged (``--answers``); they take no mode.

``ALLOWANCE`` is a number in the metric's unit (``0.01``: one point of nDCG; ``25``: 25 ms), or a share of
the baseline's value (``2%``). A metric fails when it moved the wrong way by more than its allowance
(a float's rounding apart). A metric or mode that a spec names but that either report lacks is an
**error**, not a pass, and so is a comparison of reports of different datasets (unless allowed): a gate
that cannot measure must not let a change through. Pure: values in, values out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.rag_metrics import RAG_METRICS
from isthmus_evaluation.report import EvalReport, ModeReport

RETRIEVAL_METRICS: Final = ("ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_100")
#: higher is worse: their allowance is a rise, in milliseconds
LATENCY_METRICS: Final = ("latency_p50_ms", "latency_p95_ms")
MODE_METRICS: Final = RETRIEVAL_METRICS + LATENCY_METRICS
ANSWER_METRICS: Final = RAG_METRICS
METRICS: Final = MODE_METRICS + ANSWER_METRICS
#: a change within this of the allowance passes (0.57 - 0.56 is 0.010000000000000009)
EPSILON: Final = 1e-9

_SPEC = re.compile(r"^(?:(?P<mode>[A-Za-z0-9+_.-]+):)?(?P<metric>[a-z0-9_]+)=(?P<value>[^=]+)$")
SPEC_SYNTAX: Final = (
    "[MODE:]METRIC=ALLOWANCE, e.g. ndcg_at_10=0.01, hybrid:recall_at_100=0.02, latency_p95_ms=25 "
    "or faithfulness=5%"
)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    #: the gate could not compare (a metric or mode missing, a value not a number...): not a pass
    ERROR = "error"


@dataclass(frozen=True)
class DropSpec:
    """One ``--max-drop``: the metric, the mode it is limited to (``None``: every mode), the allowance."""

    metric: str
    allowance: float
    mode: str | None = None
    #: the allowance is a share of the baseline's value (``2%`` → ``relative=True, allowance=0.02``)
    relative: bool = False

    @property
    def text(self) -> str:
        value = f"{self.allowance * 100:g}%" if self.relative else f"{self.allowance:g}"
        return f"{self.mode + ':' if self.mode else ''}{self.metric}={value}"

    @property
    def rise(self) -> bool:
        """The metric gets worse as it grows (latency)."""
        return self.metric in LATENCY_METRICS


def parse_spec(text: str) -> DropSpec:
    """``[MODE:]METRIC=ALLOWANCE`` → :class:`DropSpec`; :class:`InvalidArgument` saying what is wrong."""
    m = _SPEC.match(text.strip())
    if m is None:
        raise InvalidArgument(f"bad --max-drop {text!r}: expected {SPEC_SYNTAX}")
    metric, mode, value = m["metric"], m["mode"], m["value"].strip()
    if metric not in METRICS:
        raise InvalidArgument(
            f"bad --max-drop {text!r}: unknown metric {metric!r}; choose from {list(METRICS)}"
        )
    if mode is not None and metric in ANSWER_METRICS:
        raise InvalidArgument(
            f"bad --max-drop {text!r}: {metric} is an answer metric, it has no search mode (drop {mode!r}:)"
        )
    relative = value.endswith("%")
    try:
        allowance = float(value[:-1] if relative else value)
    except ValueError:
        raise InvalidArgument(f"bad --max-drop {text!r}: {value!r} is not a number") from None
    if not math.isfinite(allowance) or allowance < 0:
        raise InvalidArgument(f"bad --max-drop {text!r}: the allowance must be a number >= 0")
    return DropSpec(
        metric=metric, allowance=allowance / 100 if relative else allowance, mode=mode, relative=relative
    )


def parse_specs(texts: Sequence[str]) -> list[DropSpec]:
    """Every spec parsed; the same metric (and mode) given twice is refused, whatever the allowances."""
    specs = [parse_spec(t) for t in texts]
    seen: dict[tuple[str | None, str], DropSpec] = {}
    for s in specs:
        if (prior := seen.get((s.mode, s.metric))) is not None:
            raise InvalidArgument(f"--max-drop {prior.text} and {s.text} limit the same metric: give it once")
        seen[(s.mode, s.metric)] = s
    return specs


@dataclass(frozen=True)
class Check:
    """One metric of one mode (``mode`` is ``None`` for answer metrics) compared with the baseline."""

    spec: DropSpec
    metric: str
    mode: str | None
    verdict: Verdict
    message: str
    baseline: float | None = None
    current: float | None = None
    #: the allowance in the metric's unit (a relative spec resolved against the baseline's value)
    allowed: float | None = None

    @property
    def worsening(self) -> float | None:
        """How much worse the current value is (> 0: worse; a drop, or a rise for latency)."""
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline if self.spec.rise else self.baseline - self.current


@dataclass(frozen=True)
class GateResult:
    checks: list[Check] = field(default_factory=list)
    #: what made the reports incomparable as a whole (another dataset...): each is an error
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict is Verdict.FAIL]

    @property
    def errors(self) -> list[str]:
        return self.problems + [c.message for c in self.checks if c.verdict is Verdict.ERROR]

    @property
    def ok(self) -> bool:
        """Every check passed and nothing kept the gate from comparing."""
        return not self.problems and all(c.verdict is Verdict.PASS for c in self.checks)

    def failed_keys(self) -> set[tuple[str | None, str]]:
        """(mode, metric) of every failed or unmeasurable check (the HTML report highlights them)."""
        return {(c.mode, c.metric) for c in self.checks if c.verdict is not Verdict.PASS}


def _fmt(metric: str, value: float) -> str:
    return f"{value:.1f} ms" if metric in LATENCY_METRICS else f"{value:.4f}"


def _compare(spec: DropSpec, mode: str | None, baseline: float, current: float) -> Check:
    label = f"{mode} {spec.metric}" if mode else spec.metric
    unit = spec.metric
    if not (math.isfinite(baseline) and math.isfinite(current)):
        message = f"{label}: not a number ({baseline} → {current})"
        return Check(spec, spec.metric, mode, Verdict.ERROR, message, baseline, current)
    allowed = spec.allowance * abs(baseline) if spec.relative else spec.allowance
    share = f" ({spec.allowance * 100:g}% of {_fmt(unit, baseline)})" if spec.relative else ""
    worse = current - baseline if spec.rise else baseline - current
    span = f"({_fmt(unit, baseline)} → {_fmt(unit, current)})"
    if worse > allowed + EPSILON:
        moved = "rose" if spec.rise else "dropped"
        message = f"{label} {moved} by {_fmt(unit, worse)} {span}; allowed {_fmt(unit, allowed)}{share}"
        return Check(spec, spec.metric, mode, Verdict.FAIL, message, baseline, current, allowed)
    delta = current - baseline
    change = f"{'+' if delta >= 0 else '-'}{_fmt(unit, abs(delta))}"
    kind = "rise" if spec.rise else "drop"
    message = f"{label} {span}, {change}; allowed {kind} {_fmt(unit, allowed)}{share}"
    return Check(spec, spec.metric, mode, Verdict.PASS, message, baseline, current, allowed)


def _modes(report: EvalReport) -> dict[str, ModeReport]:
    return {m.mode: m for m in report.modes}


def _measured(mode: ModeReport, metric: str) -> bool:
    """False for a MAP@100 the report never computed: reports from before MAP read as 0.0, a value MAP
    cannot take when recall@100 is above 0 (a relevant document in the top 100 gives MAP > 0)."""
    return not (metric == "map_at_100" and mode.map_at_100 == 0.0 and mode.recall_at_100 > 0.0)


def _answer_means(report: EvalReport) -> dict[str, tuple[float, int]] | None:
    if report.answers is None:
        return None
    return {m.name: (m.mean, m.n) for m in report.answers.metrics}


def _answer_check(spec: DropSpec, current: EvalReport, baseline: EvalReport) -> Check:
    def error(message: str) -> Check:
        return Check(spec, spec.metric, None, Verdict.ERROR, message)

    values: list[float] = []
    for name, report in (("baseline", baseline), ("current", current)):
        means = _answer_means(report)
        if means is None:
            return error(f"{spec.metric}: the {name} report has no answer metrics (run it with --answers N)")
        if spec.metric not in means:
            return error(f"{spec.metric}: not in the {name} report's answer metrics {sorted(means)}")
        mean, n = means[spec.metric]
        if n == 0:
            return error(f"{spec.metric}: no answer of the {name} report was scored on it (n = 0)")
        values.append(mean)
    return _compare(spec, None, values[0], values[1])


def check(
    current: EvalReport, baseline: EvalReport, specs: Sequence[DropSpec], *, allow_mismatch: bool = False
) -> GateResult:
    """Compare ``current`` with ``baseline`` for every spec (see the module docstring)."""
    problems: list[str] = []
    if not allow_mismatch:
        for what, in_base, in_current in (
            ("dataset", baseline.dataset, current.dataset),
            ("documents", baseline.documents, current.documents),
            ("queries", baseline.queries, current.queries),
        ):
            if in_base != in_current:
                problems.append(
                    f"the baseline has {what} {in_base!r}, this report {in_current!r}: the reports "
                    "measure different things (allow the mismatch to compare them anyway)"
                )
        if any(s.metric in ANSWER_METRICS for s in specs) and current.answers and baseline.answers:
            if current.answers.judge != baseline.answers.judge:
                problems.append(
                    f"the baseline's answers were judged by {baseline.answers.judge!r}, this report's by "
                    f"{current.answers.judge!r} (allow the mismatch to compare them anyway)"
                )
    base_modes, cur_modes = _modes(baseline), _modes(current)
    own_mode = {(s.mode, s.metric) for s in specs if s.mode is not None}
    checks: list[Check] = []
    for spec in specs:
        if spec.metric in ANSWER_METRICS:
            checks.append(_answer_check(spec, current, baseline))
            continue
        if spec.mode is not None:
            modes = [spec.mode]
        else:
            modes = [m for m in base_modes if (m, spec.metric) not in own_mode]
            if not base_modes:
                checks.append(
                    Check(
                        spec,
                        spec.metric,
                        None,
                        Verdict.ERROR,
                        f"{spec.metric}: the baseline report has no search modes",
                    )
                )
        for mode in modes:
            missing = [
                name for name, have in (("baseline", base_modes), ("current", cur_modes)) if mode not in have
            ]
            if missing:
                message = (
                    f"{mode} {spec.metric}: mode {mode!r} is not in the {' nor the '.join(missing)} report"
                )
                checks.append(Check(spec, spec.metric, mode, Verdict.ERROR, message))
                continue
            unmeasured = [
                name
                for name, have in (("baseline", base_modes), ("current", cur_modes))
                if not _measured(have[mode], spec.metric)
            ]
            if unmeasured:
                message = (
                    f"{mode} {spec.metric}: not measured in the {' nor the '.join(unmeasured)} report "
                    "(a report from a version that did not compute it)"
                )
                checks.append(Check(spec, spec.metric, mode, Verdict.ERROR, message))
                continue
            b = float(getattr(base_modes[mode], spec.metric))
            c = float(getattr(cur_modes[mode], spec.metric))
            checks.append(_compare(spec, mode, b, c))
    return GateResult(checks=checks, problems=problems)
