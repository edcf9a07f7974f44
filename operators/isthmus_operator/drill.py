"""FailoverDrills as pure functions: what each scenario step does through the Kubernetes API, the patches,
the status transitions (timeline, measurements) and the report.

The scenarios are :data:`isthmus_core.drills.scenarios.SCENARIOS`, the ones ``isthmus drill run`` runs
locally; here each step becomes a :data:`Plan` (:func:`plan_step`):

- ``kill-region`` / ``restore-region``: scale every Deployment and StatefulSet of the region (its
  ``regionWorkloads`` selector) to 0 / back, the previous replicas kept in annotation
  ``isthmus.dev/drill-replicas`` of the workload;
- ``stop-link`` / ``start-link``: the same for the region's MirrorMaker 2 workloads (its selector plus
  label ``isthmus.dev/component=mirrormaker2``);
- ``kill-broker``: delete one pod of the region's brokers (its selector plus
  ``isthmus.dev/component=kafka``); ``restore-broker``: nothing to do, the StatefulSet recreates it;
- ``move-primary``: patch each drill tenant's Tenant: ``primaryRegion`` := the region, the former
  primary becomes a replica;
- ``observe``: wait; ``await-recovery`` / ``await-catch-up``: bounded waits on the regions' gRPC health
  and documents (skipped, with a note, when the operator has no endpoint for the region).

The kopf timer advances a drill by at most one step per tick (:mod:`.reconcile`); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from isthmus_core.drills.scenarios import FAULTS, Action, Step, bind
from isthmus_operator.builders import build_condition, merge_conditions
from isthmus_operator.measure import seconds_between
from isthmus_operator.specs import FailoverDrillSpec

ScalableKind = Literal["Deployment", "StatefulSet"]
#: what a region's workloads are: scaled to 0 and back
SCALABLE_KINDS: tuple[ScalableKind, ...] = ("Deployment", "StatefulSet")
#: on a workload a drill scaled down: its replicas before, and the drill that did it
ANNOTATION_DRILL_REPLICAS = "isthmus.dev/drill-replicas"
ANNOTATION_DRILL = "isthmus.dev/drill"
#: the label telling a region's MirrorMaker 2 and broker workloads from the rest
LABEL_COMPONENT = "isthmus.dev/component"
COMPONENT_MIRRORMAKER = "mirrormaker2"
COMPONENT_BROKER = "kafka"


class Phase(StrEnum):
    """``status.phase`` of a FailoverDrill (the CRD's enum)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


TERMINAL_PHASES: tuple[str, ...] = (Phase.SUCCEEDED.value, Phase.FAILED.value)


# -- plans: what one step does ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScaleDown:
    """Scale every Deployment/StatefulSet matching ``selector`` in ``namespace`` to 0. ``lost`` names the
    region when it is lost whole (kill-region: RPO is measured against ``survivor``)."""

    namespace: str
    selector: str
    lost: str = ""
    survivor: str = ""


@dataclass(frozen=True, slots=True)
class ScaleBack:
    """Scale the workloads this drill scaled down (matching ``selector``) back to their replicas."""

    namespace: str
    selector: str


@dataclass(frozen=True, slots=True)
class DeletePod:
    """Delete one pod matching ``selector`` (the first by name)."""

    namespace: str
    selector: str


@dataclass(frozen=True, slots=True)
class MovePrimary:
    tenants: tuple[str, ...]
    region: str


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class AwaitServing:
    """Until ``region`` answers its health check and holds every drill tenant (≤ ``seconds``)."""

    region: str
    seconds: float


@dataclass(frozen=True, slots=True)
class AwaitCatchUp:
    """Until both regions hold the same documents of every drill tenant (≤ ``seconds``)."""

    regions: tuple[str, str]
    seconds: float


@dataclass(frozen=True, slots=True)
class Note:
    """Nothing to call: the step only lands on the timeline."""

    detail: str


Plan = ScaleDown | ScaleBack | DeletePod | MovePrimary | Wait | AwaitServing | AwaitCatchUp | Note


def plan_step(step: Step, spec: FailoverDrillSpec, drill_namespace: str) -> Plan:
    """The API calls (as data) of one scenario step, bound to the drill's regions."""
    region = bind(step, spec.regions.primary, spec.regions.secondary)
    seconds = round(step.seconds * spec.pace, 3)
    if step.action == Action.OBSERVE:
        return Wait(seconds)
    if step.action == Action.AWAIT_RECOVERY:
        return AwaitServing(region, seconds)
    if step.action == Action.AWAIT_CATCH_UP:
        return AwaitCatchUp((spec.regions.primary, spec.regions.secondary), seconds)
    if step.action == Action.MOVE_PRIMARY:
        return MovePrimary(spec.tenants, region)
    if step.action == Action.RESTORE_BROKER:
        return Note("the broker's StatefulSet recreates the deleted pod")
    workloads = spec.region_workloads[region]  # the spec requires it for these actions
    namespace = workloads.namespace or drill_namespace
    if step.action == Action.KILL_REGION:
        other = spec.regions.secondary if region == spec.regions.primary else spec.regions.primary
        return ScaleDown(namespace, workloads.selector(), lost=region, survivor=other)
    if step.action == Action.RESTORE_REGION:
        return ScaleBack(namespace, workloads.selector())
    if step.action == Action.STOP_LINK:
        return ScaleDown(namespace, workloads.selector((LABEL_COMPONENT, COMPONENT_MIRRORMAKER)))
    if step.action == Action.START_LINK:
        return ScaleBack(namespace, workloads.selector((LABEL_COMPONENT, COMPONENT_MIRRORMAKER)))
    if step.action == Action.KILL_BROKER:
        return DeletePod(namespace, workloads.selector((LABEL_COMPONENT, COMPONENT_BROKER)))
    raise AssertionError(f"no plan for action {step.action!r}")  # pragma: no cover - every Action above


# -- patches --------------------------------------------------------------------------------------------


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def replicas_of(workload: Mapping[str, Any]) -> int:
    """``spec.replicas`` (the API server defaults it to 1)."""
    value = (workload.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def build_scale_down_patch(workload: Mapping[str, Any], drill: str) -> dict[str, Any] | None:
    """Patch scaling ``workload`` to 0, remembering its replicas (None: already at 0 by a drill).

    Idempotent: a workload that carries the annotation keeps the replicas recorded first, so a step
    replayed after a crash never records 0 as the replicas to restore."""
    if ANNOTATION_DRILL_REPLICAS in _annotations(workload):
        return None if replicas_of(workload) == 0 else {"spec": {"replicas": 0}}
    return {
        "metadata": {
            "annotations": {ANNOTATION_DRILL_REPLICAS: str(replicas_of(workload)), ANNOTATION_DRILL: drill}
        },
        "spec": {"replicas": 0},
    }


def build_scale_back_patch(workload: Mapping[str, Any], drill: str) -> dict[str, Any] | None:
    """Patch restoring the replicas ``drill`` recorded, and removing the annotations (None: not scaled
    down by this drill)."""
    annotations = _annotations(workload)
    recorded = annotations.get(ANNOTATION_DRILL_REPLICAS)
    if recorded is None or annotations.get(ANNOTATION_DRILL) != drill:
        return None
    return {
        "metadata": {"annotations": {ANNOTATION_DRILL_REPLICAS: None, ANNOTATION_DRILL: None}},
        "spec": {"replicas": int(recorded)},
    }


def build_primary_move(tenant_spec: Mapping[str, Any], region: str) -> dict[str, Any] | None:
    """Merge patch of a Tenant making ``region`` its primary; the former primary becomes a replica, so no
    region stops holding the tenant (None: ``region`` is the primary already)."""
    primary = str(tenant_spec.get("primaryRegion") or "")
    replicas = [str(r) for r in tenant_spec.get("replicaRegions") or []]
    if primary == region:
        return None
    moved = ([primary] if primary and primary not in replicas else []) + [r for r in replicas if r != region]
    return {"spec": {"primaryRegion": region, "replicaRegions": moved}}


def pick_pod(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The pod to kill: the first by name among those not being deleted already."""
    alive = sorted(
        str(p["metadata"]["name"]) for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
    )
    return alive[0] if alive else None


# -- checks against the cluster -----------------------------------------------------------------------


def check_context(
    spec: FailoverDrillSpec,
    namespace: str,
    known_regions: Collection[str],
    tenants: Mapping[str, Mapping[str, Any] | None],
) -> list[str]:
    """What the schema cannot know: the regions the operator reaches, and the drill's Tenants (their
    ``spec`` by name, None when absent). Each problem names the field."""
    problems = []
    if known_regions:
        known = ", ".join(repr(r) for r in sorted(known_regions))
        for role in ("primary", "secondary"):
            region = getattr(spec.regions, role)
            if region not in known_regions:
                problems.append(
                    f"spec.regions.{role}: unknown region {region!r}; the operator's regions are {known} "
                    "(ISTHMUS_OPERATOR_REGIONS)"
                )
    drill_regions = [spec.regions.primary, spec.regions.secondary]
    for name in spec.tenants:
        tenant = tenants.get(name)
        if tenant is None:
            problems.append(f"spec.tenants: no Tenant {name!r} in namespace {namespace!r}")
            continue
        primary = tenant.get("primaryRegion")
        replicas = list(tenant.get("replicaRegions") or [])
        missing = [r for r in drill_regions if r != primary and r not in replicas]
        if missing:
            problems.append(
                f"spec.tenants: Tenant {name!r} is not in region(s) {missing} (primaryRegion {primary!r}, "
                f"replicaRegions {replicas}): a drill moves a tenant between regions that both hold it"
            )
    return problems


# -- status transitions -------------------------------------------------------------------------------


def timeline_entry(now: str, action: str, region: str, detail: str) -> dict[str, str]:
    return {"time": now, "action": action, "region": region, "detail": detail}


def _conditions(
    status: Mapping[str, Any], generation: int, now: str, *conds: tuple[str, bool | None, str, str]
) -> list[dict[str, Any]]:
    updates = [build_condition(t, s, r, m, generation, now) for t, s, r, m in conds]
    return merge_conditions(status.get("conditions") or [], updates)


def invalid(status: Mapping[str, Any], message: str, generation: int, now: str) -> dict[str, Any]:
    """A drill that cannot run: Failed, ``Valid=False`` naming the field; nothing was touched."""
    return {
        "phase": Phase.FAILED.value,
        "message": message,
        "observedGeneration": generation,
        "conditions": _conditions(
            status,
            generation,
            now,
            ("Valid", False, "InvalidSpec", message),
            ("Complete", False, "InvalidSpec", message),
        ),
    }


def start(spec: FailoverDrillSpec, status: Mapping[str, Any], generation: int, now: str) -> dict[str, Any]:
    steps = spec.definition.steps
    message = (
        f"running {spec.scenario} ({len(steps)} steps): {spec.regions.primary} → {spec.regions.secondary}, "
        f"tenants {', '.join(spec.tenants)}, pace {spec.pace:g}"
    )
    return {
        "phase": Phase.RUNNING.value,
        "message": message,
        "observedGeneration": generation,
        "startedAt": now,
        "step": 0,
        "stepStartedAt": None,
        "timeline": [timeline_entry(now, "start", spec.regions.primary, message)],
        "rpoSeconds": None,
        "rpoDocuments": None,
        "rtoSeconds": None,
        "notes": [],
        "conditions": _conditions(
            status,
            generation,
            now,
            ("Valid", True, "SpecAccepted", "the drill's scenario, regions and tenants are usable"),
            ("Complete", False, "Running", message),
        ),
    }


def step_label(spec: FailoverDrillSpec, index: int) -> str:
    steps = spec.definition.steps
    step = steps[index]
    region = bind(step, spec.regions.primary, spec.regions.secondary)
    return f"step {index + 1}/{len(steps)} {step.action.value} {region}"


def advance(
    spec: FailoverDrillSpec,
    status: Mapping[str, Any],
    detail: str,
    now: str,
    *,
    notes: Sequence[str] = (),
    **measured: Any,
) -> dict[str, Any]:
    """The current step is done: timeline entry, next step; ``measured`` status fields are set as given
    (``faultAt``, ``recoveredAt``, ``rpoSeconds`` …)."""
    index = int(status.get("step") or 0)
    step = spec.definition.steps[index]
    region = bind(step, spec.regions.primary, spec.regions.secondary)
    out: dict[str, Any] = {
        "step": index + 1,
        "stepStartedAt": None,
        "message": f"{step_label(spec, index)}: {detail}",
        "timeline": [*(status.get("timeline") or []), timeline_entry(now, step.action.value, region, detail)],
        **measured,
    }
    if step.action in FAULTS and not status.get("faultAt"):
        out.setdefault("faultAt", now)
    if notes:
        out["notes"] = [*(status.get("notes") or []), *notes]
    return out


def waiting(spec: FailoverDrillSpec, status: Mapping[str, Any], detail: str, now: str) -> dict[str, Any]:
    """The current step waits: its start time is recorded once (the bound counts from it)."""
    out: dict[str, Any] = {"message": f"{step_label(spec, int(status.get('step') or 0))}: {detail}"}
    if not status.get("stepStartedAt"):
        out["stepStartedAt"] = now
    return out


def elapsed(status: Mapping[str, Any], now: str) -> float:
    """Seconds since the current step started waiting (0 on its first tick)."""
    started = status.get("stepStartedAt")
    return seconds_between(str(started), now) if started else 0.0


def fail(
    spec: FailoverDrillSpec, status: Mapping[str, Any], reason: str, message: str, generation: int, now: str
) -> dict[str, Any]:
    """The drill stops: phase Failed with the reason (the handler heals the regions it scaled down)."""
    index = int(status.get("step") or 0)
    steps = spec.definition.steps
    where = step_label(spec, index) if index < len(steps) else "report"
    full = f"{where}: {message}"
    merged = {**status, "message": full}
    summary = build_report(spec, merged, failed=full)
    return {
        "phase": Phase.FAILED.value,
        "message": full,
        "finishedAt": now,
        "timeline": [*(status.get("timeline") or []), timeline_entry(now, "fail", "", full)],
        "report": summary,
        "conditions": _conditions(status, generation, now, ("Complete", False, reason, full)),
    }


def objectives_missed(spec: FailoverDrillSpec, status: Mapping[str, Any]) -> list[str]:
    missed = []
    rpo, rto = status.get("rpoSeconds"), status.get("rtoSeconds")
    if rpo is not None and float(rpo) > spec.objectives.rpo_max_seconds:
        missed.append(f"RPO {float(rpo):g} s > rpoMaxSeconds {spec.objectives.rpo_max_seconds:g}")
    if rto is not None and float(rto) > spec.objectives.rto_max_seconds:
        missed.append(f"RTO {float(rto):g} s > rtoMaxSeconds {spec.objectives.rto_max_seconds:g}")
    return missed


def build_report(
    spec: FailoverDrillSpec, status: Mapping[str, Any], failed: str | None = None
) -> dict[str, Any]:
    """``status.report``: one summary line, whether the objectives were met (None: not measured), and
    the notes (what could not be measured, and why)."""
    rpo, rto, docs = status.get("rpoSeconds"), status.get("rtoSeconds"), status.get("rpoDocuments")
    missed = objectives_missed(spec, status)
    measured = rpo is not None or rto is not None
    met: bool | None = (not missed) if measured else None
    rpo_text = "not measured" if rpo is None else f"{float(rpo):g} s ({int(docs or 0)} documents)"
    rto_text = "not measured" if rto is None else f"{float(rto):g} s"
    verdict = (
        f"failed: {failed}"
        if failed
        else (
            "objectives missed: " + "; ".join(missed)
            if missed
            else ("objectives met" if met else "objectives not checked (nothing measured)")
        )
    )
    summary = (
        f"{spec.scenario} {spec.regions.primary} → {spec.regions.secondary}: RPO {rpo_text} "
        f"(max {spec.objectives.rpo_max_seconds:g} s), RTO {rto_text} "
        f"(max {spec.objectives.rto_max_seconds:g} s); {verdict}"
    )
    return {"summary": summary, "objectivesMet": met, "notes": list(status.get("notes") or [])}


def finish(spec: FailoverDrillSpec, status: Mapping[str, Any], generation: int, now: str) -> dict[str, Any]:
    """Every step ran: Succeeded when no measured objective is missed, else Failed."""
    report = build_report(spec, status)
    missed = objectives_missed(spec, status)
    phase = Phase.FAILED if missed else Phase.SUCCEEDED
    reason = "ObjectivesMissed" if missed else "Succeeded"
    return {
        "phase": phase.value,
        "message": report["summary"],
        "finishedAt": now,
        "timeline": [*(status.get("timeline") or []), timeline_entry(now, "finish", "", report["summary"])],
        "report": report,
        "conditions": _conditions(
            status, generation, now, ("Complete", not missed, reason, report["summary"])
        ),
    }
