"""What the handlers do, without kopf: read, decide (pure functions), write; return the new status.

Each function takes the injected :class:`Dependencies` and plain values, and returns an
:class:`Outcome`: the status to merge, and — for a transient failure — the reason to retry. Invalid
specs never raise: they become a ``Valid=False`` condition and phase ``Failed`` with a precise message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument, IsthmusError, Unavailable
from isthmus_operator import drill
from isthmus_operator.builders import (
    GUARDRAIL_POLICY_READY,
    build_access_configmap,
    build_access_file,
    build_bundle_patch,
    build_condition,
    build_policy_condition,
    build_region_status,
    build_tenant_configmap,
    merge_conditions,
    plan_tenant_regions,
    summarise,
    tenant_access,
    tenant_phase,
    workload_bundle,
)
from isthmus_operator.guardrail import PolicyApplier
from isthmus_operator.kube import Kube, MetricsRequest, MetricsSource
from isthmus_operator.measure import (
    DocumentState,
    documents_behind,
    iso,
    parse_iso,
    seconds_between,
    seconds_of_writes,
)
from isthmus_operator.names import tenant_configmap_name
from isthmus_operator.regional import RegionClients
from isthmus_operator.retrieval import TenantRegistry
from isthmus_operator.rollout import TERMINAL_PHASES, Observed, RolloutStatus, invalid, step
from isthmus_operator.specs import (
    Binding,
    FailoverDrillSpec,
    TenantSpec,
    parse_drill,
    parse_rollout,
    parse_tenant,
)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_moment() -> datetime:
    return datetime.now(UTC)


@dataclass
class AccessConfig:
    """Where the operator writes the access file of each namespace's Tenants (operator settings
    ``access_configmap``, ``access_platform_bindings``)."""

    configmap: str
    platform_bindings: Sequence[Binding] = ()
    #: one render at a time: each reads every Tenant after the previous one wrote, so the last write
    #: holds the latest state (the operator runs as one replica)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Dependencies:
    kube: Kube
    metrics: MetricsSource
    #: None = the operator does not manage vector-store tenants (no retrieval endpoint configured)
    tenants: TenantRegistry | None
    clock: Callable[[], str] = utc_now
    #: region name -> its clients (ISTHMUS_OPERATOR_REGIONS); empty = one region (``tenants``)
    regions: Mapping[str, RegionClients] = field(default_factory=dict)
    #: the drills' clock (timeline, waits, RPO/RTO)
    moment: Callable[[], datetime] = utc_moment
    #: None = the operator writes no access file
    access: AccessConfig | None = None
    #: the guardrail where Tenants' guardrailPolicyRef is applied (ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT);
    #: None = not applied (with regions: each region's ``RegionClients.policies`` instead)
    policies: PolicyApplier | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes event to post on the object: type Normal or Warning, a CamelCase reason."""

    type: str
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict[str, Any]
    #: set when a transient failure should be retried later (the status already says what failed)
    retry: str | None = None
    events: list[Event] = field(default_factory=list)


WARNING_PHASES = ("Failed", "RolledBack")


def phase_event(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Event]:
    """One event when the phase changes (not on every reconcile: a timer re-runs every few seconds)."""
    phase = after.get("phase")
    if not phase or phase == before.get("phase"):
        return []
    kind = "Warning" if phase in WARNING_PHASES else "Normal"
    return [Event(kind, str(phase), str(after.get("message") or phase))]


# -- Tenant ------------------------------------------------------------------------------------------


async def reconcile_tenant(
    deps: Dependencies,
    name: str,
    namespace: str,
    uid: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int,
) -> Outcome:
    now = deps.clock()
    old = status.get("conditions") or []

    def finish(
        parts: list[dict[str, Any]],
        retry: str | None = None,
        events: list[Event] | None = None,
        regions: list[dict[str, Any]] | None = None,
    ) -> Outcome:
        conditions = merge_conditions(old, parts)
        conditions = merge_conditions(conditions, [summarise(conditions, generation, now)])
        ready = next(c for c in conditions if c["type"] == "Ready")
        new_status = {
            "phase": tenant_phase(conditions),
            "message": ready["message"],
            "observedGeneration": generation,
            "configMap": tenant_configmap_name(name),
            "conditions": conditions,
        }
        if regions is not None:
            new_status["regions"] = regions
        return Outcome(
            status=new_status, retry=retry, events=[*(events or []), *phase_event(status, new_status)]
        )

    try:
        parsed = parse_tenant(name, spec)
    except InvalidArgument as exc:
        return finish([build_condition("Valid", False, "InvalidSpec", exc.reason, generation, now)])
    parts = [build_condition("Valid", True, "SpecAccepted", "the spec is valid", generation, now)]
    events: list[Event] = []
    retry: str | None = None

    cm_name = f"{namespace}/{tenant_configmap_name(name)}"
    try:
        await deps.kube.apply_configmap(build_tenant_configmap(name, namespace, uid, parsed))
        parts.append(
            build_condition(
                "ConfigReady", True, "Applied", f"ConfigMap {cm_name} holds the settings", generation, now
            )
        )
    except IsthmusError as exc:
        parts.append(build_condition("ConfigReady", False, "ApplyFailed", exc.reason, generation, now))
        retry = exc.reason

    policy_retry = await _apply_policy(deps, name, parsed, status, generation, now, parts, events)
    retry = retry or policy_retry
    if deps.regions:
        regions, region_retry = await _reconcile_regions(
            deps, name, parsed, status, generation, now, parts, events
        )
        return finish(parts, retry or region_retry, events, regions)
    if deps.tenants is None:
        parts.append(
            build_condition(
                "VectorStoreReady",
                None,
                "NotManaged",
                "ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT is not set: the vector-store tenant is not managed",
                generation,
                now,
            )
        )
    else:
        try:
            created = await deps.tenants.ensure_tenant(name)
            message = "tenant created in the vector store" if created else "tenant exists in the vector store"
            parts.append(build_condition("VectorStoreReady", True, "Registered", message, generation, now))
            if created:
                events.append(
                    Event(
                        "Normal", "VectorStoreTenantCreated", f"created tenant {name!r} in the vector store"
                    )
                )
        except Unavailable as exc:
            parts.append(
                build_condition(
                    "VectorStoreReady", False, "RetrievalUnavailable", exc.reason, generation, now
                )
            )
            retry = retry or exc.reason
        except IsthmusError as exc:  # refused (InvalidArgument …): retrying cannot help
            parts.append(build_condition("VectorStoreReady", False, "Rejected", exc.reason, generation, now))
    return finish(parts, retry, events)


def _policy_targets(deps: Dependencies, spec: TenantSpec) -> dict[str, PolicyApplier]:
    """Where the tenant's policy lives: ``""`` = the one guardrail endpoint; with regions, each listed
    region the operator knows whose clients apply policies."""
    if deps.regions:
        listed = (spec.primary_region, *spec.replica_regions)
        return {
            r: clients.policies
            for r in listed
            if (clients := deps.regions.get(r)) is not None and clients.policies is not None
        }
    return {"": deps.policies} if deps.policies is not None else {}


async def _apply_policy(
    deps: Dependencies,
    name: str,
    spec: TenantSpec,
    status: Mapping[str, Any],
    generation: int,
    now: str,
    parts: list[dict[str, Any]],
    events: list[Event],
) -> str | None:
    """``ApplyPolicyRef`` of ``spec.guardrailPolicyRef`` where the tenant's policy lives; appends the
    ``GuardrailPolicyReady`` condition (and an event when it changes); returns the reason to retry (a
    guardrail unreachable)."""
    ref = spec.guardrail_policy_ref
    targets = _policy_targets(deps, spec)
    if not targets:
        parts.append(
            build_condition(
                GUARDRAIL_POLICY_READY,
                None,
                "NotManaged",
                "no guardrail endpoint is configured (ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT): "
                f"guardrailPolicyRef ({ref.text}) is not applied",
                generation,
                now,
            )
        )
        return None
    labels: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    refused: dict[str, str] = {}
    for where, applier in sorted(targets.items()):
        try:
            labels[where] = (await applier.apply(name, ref.name, ref.version)).label
        except Unavailable as exc:
            unavailable[where] = exc.reason
        except IsthmusError as exc:  # refused (unknown preset, version never stored): retrying cannot help
            refused[where] = exc.reason
    condition = build_policy_condition(ref, labels, unavailable, refused, generation, now)
    parts.append(condition)
    before = {c.get("type"): c for c in status.get("conditions") or []}.get(GUARDRAIL_POLICY_READY) or {}
    if before.get("message") != condition["message"]:  # once per change, not on every timer tick
        if condition["status"] == "True":
            events.append(Event("Normal", "GuardrailPolicyApplied", condition["message"]))
        elif refused:
            events.append(Event("Warning", "GuardrailPolicyRejected", condition["message"]))
    return next(iter(unavailable.values()), None)


async def render_access(deps: Dependencies, namespace: str) -> str:
    """Re-render the namespace's access ConfigMap from all its Tenants (on any Tenant's create, update
    or delete). Idempotent: the same Tenants give the same ConfigMap (server-side apply). Raises what
    the API raised (the handler retries). Returns a note of what the file holds."""
    access = deps.access
    if access is None:
        return "the operator writes no access file"
    async with access.lock:
        tenants = await deps.kube.list_tenants(namespace)
        text = build_access_file(tenants, access.platform_bindings)
        await deps.kube.apply_configmap(build_access_configmap(access.configmap, namespace, text))
    kept, skipped = tenant_access(tenants)
    note = f"ConfigMap {namespace}/{access.configmap}: bindings of {len(kept)} tenant(s)"
    if skipped:
        note += "; left out: " + "; ".join(f"{n or '?'} ({why})" for n, why in sorted(skipped.items()))
    return note


def _known(deps: Dependencies) -> str:
    return ", ".join(repr(r) for r in sorted(deps.regions))


async def _indexed(clients: RegionClients, name: str) -> dict[str, DocumentState] | str:
    """The tenant's indexed documents in a region, or why they cannot be read."""
    if clients.documents is None:
        return "no document index for the region"
    try:
        return await clients.documents.indexed(name)
    except IsthmusError as exc:
        return exc.reason


async def _reconcile_regions(
    deps: Dependencies,
    name: str,
    spec: TenantSpec,
    status: Mapping[str, Any],
    generation: int,
    now: str,
    parts: list[dict[str, Any]],
    events: list[Event],
) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant in each listed region (ensured), out of a region no longer listed (per the plan);
    returns ``status.regions`` and the reason to retry (a region unreachable)."""
    plan = plan_tenant_regions(spec, deps.regions, status.get("regions") or [])
    entries: list[dict[str, Any]] = []
    retry: str | None = None
    ready: dict[str, bool] = {}
    for region, role in plan.ensure:
        try:
            created = await deps.regions[region].tenants.ensure_tenant(name)
            ready[region] = True
            message = "tenant created" if created else "tenant exists"
            if created:
                events.append(
                    Event("Normal", "RegionTenantCreated", f"created tenant {name!r} in region {region!r}")
                )
        except Unavailable as exc:
            ready[region], message = False, f"unavailable: {exc.reason}"
            retry = retry or exc.reason
        except IsthmusError as exc:
            ready[region], message = False, f"refused: {exc.reason}"
        entries.append(build_region_status(region, role, ready[region], message))
    # replication lag: the primary's indexed documents each replica lacks (when both can be read)
    primary = spec.primary_region
    if primary in ready:
        source = await _indexed(deps.regions[primary], name)
        for entry in entries:
            if entry["region"] == primary:
                if isinstance(source, dict):
                    entry["lagDocuments"], entry["lagSeconds"] = 0, 0.0
                continue
            if isinstance(source, str):
                entry["message"] += f"; lag unknown: primary {primary!r}: {source}"
                continue
            target = await _indexed(deps.regions[entry["region"]], name)
            if isinstance(target, str):
                entry["message"] += f"; lag unknown: {target}"
            else:
                behind = documents_behind(source, target)
                entry["lagDocuments"] = len(behind)
                entry["lagSeconds"] = seconds_of_writes(behind, source, deps.moment().timestamp())
    for region in plan.unknown:
        role = "primary" if region == primary else "replica"
        field_name = "primaryRegion" if role == "primary" else "replicaRegions"
        message = (
            f"spec.{field_name}: unknown region {region!r}; the operator's regions are {_known(deps)} "
            "(ISTHMUS_OPERATOR_REGIONS)"
        )
        entries.append(build_region_status(region, role, False, message))
    for region in plan.remove:
        try:
            if await deps.regions[region].tenants.remove_tenant(name):
                events.append(
                    Event(
                        "Normal",
                        "RegionTenantRemoved",
                        f"deleted tenant {name!r} from region {region!r} "
                        "(no longer listed; deletionPolicy Delete)",
                    )
                )
        except Unavailable as exc:
            entries.append(build_region_status(region, "removing", False, f"unavailable: {exc.reason}"))
            retry = retry or exc.reason
        except IsthmusError as exc:
            entries.append(build_region_status(region, "removing", False, f"refused: {exc.reason}"))
    for region, why in plan.keep:
        events.append(
            Event(
                "Normal",
                "RegionTenantKept",
                f"region {region!r} is no longer listed; tenant {name!r} is kept there ({why})",
            )
        )
    if plan.unknown:
        message = "; ".join(e["message"] for e in entries if e["region"] in plan.unknown)
        parts.append(build_condition("VectorStoreReady", False, "UnknownRegion", message, generation, now))
        before = {c.get("type"): c for c in status.get("conditions") or []}.get("VectorStoreReady") or {}
        if before.get("message") != message:  # once, not on every timer tick
            events.append(Event("Warning", "UnknownRegion", message))
    elif not all(ready.values()):
        failing = [f"{e['region']}: {e['message']}" for e in entries if not e["ready"]]
        reason = "RegionUnavailable" if retry else "Rejected"
        parts.append(build_condition("VectorStoreReady", False, reason, "; ".join(failing), generation, now))
    else:
        held = ", ".join(f"{r} ({role})" for r, role in plan.ensure)
        parts.append(
            build_condition("VectorStoreReady", True, "Registered", f"tenant held in {held}", generation, now)
        )
    return entries, retry


async def finalize_tenant(
    deps: Dependencies,
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
) -> list[str]:
    """Remove what :func:`reconcile_tenant` created. Raises Unavailable while something is unreachable
    (the finalizer stays and kopf retries). Returns human notes of what was removed."""
    notes = []
    if await deps.kube.delete_configmap(namespace, tenant_configmap_name(name)):
        notes.append(f"deleted ConfigMap {namespace}/{tenant_configmap_name(name)}")
    retain = spec.get("deletionPolicy") == "Retain"
    if deps.regions:
        # every region the operator knows, not only the listed ones: a former primary dropped from the
        # spec kept the tenant's data, which goes with the Tenant (removing an absent tenant is a no-op)
        if retain:
            return [*notes, f"kept tenant {name!r} in its regions (deletionPolicy Retain)"]
        for region in sorted(deps.regions):
            try:
                if await deps.regions[region].tenants.remove_tenant(name):
                    notes.append(f"deleted tenant {name!r} from region {region!r}")
            except InvalidArgument:
                pass  # an id the region refuses was never created there
        return notes
    if deps.tenants is not None and not retain and is_tenant_id(name):
        try:
            if await deps.tenants.remove_tenant(name):
                notes.append(f"deleted tenant {name!r} from the vector store")
        except InvalidArgument:
            pass  # an id retrieval refuses was never created there
    elif retain:
        notes.append(f"kept tenant {name!r} in the vector store (deletionPolicy Retain)")
    return notes


# -- EdgeRollout -------------------------------------------------------------------------------------


async def reconcile_rollout(
    deps: Dependencies,
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int,
) -> Outcome:
    """One step of a rollout: read the pool and metrics, :func:`~isthmus_operator.rollout.step`, patch."""
    if status.get("phase") in TERMINAL_PHASES:
        return Outcome(status={})
    now = deps.clock()
    try:
        parsed = parse_rollout(name, spec)
    except InvalidArgument as exc:
        failed = invalid(status, exc.reason, generation, now).status
        return Outcome(status=failed, events=phase_event(status, failed))
    kind = parsed.node_pool.workload_kind
    try:
        items = await deps.kube.list_workloads(kind, namespace, parsed.node_pool.label_selector)
        workloads = {w["metadata"]["name"]: w for w in items}
        metrics: dict[str, str] = {}
        if int(status.get("currentWave") or 0) > 0 and not parsed.paused:
            try:
                typed: RolloutStatus | None = RolloutStatus.from_dict(status)
            except InvalidArgument:
                typed = None  # a corrupt status: step() fails the rollout naming the field
            if typed is not None:
                metrics = await deps.metrics.read(MetricsRequest(namespace, name, parsed, typed))
        decision = step(
            parsed,
            status,
            Observed(
                workloads={n: workload_bundle(w) for n, w in workloads.items()},
                metrics=metrics,
                metrics_source=deps.metrics.describe(namespace, name),
            ),
            generation,
            now,
        )
        events: list[Event] = []
        for target in decision.apply:
            await deps.kube.patch_workload(kind, namespace, target, build_bundle_patch(parsed.bundle.ref))
        if decision.apply:
            events.append(
                Event(
                    "Normal",
                    "BundleApplied",
                    f"put {parsed.bundle.ref} on {kind}s {', '.join(decision.apply)}",
                )
            )
        for target, previous in decision.revert.items():
            await deps.kube.patch_workload(kind, namespace, target, build_bundle_patch(previous))
        if decision.revert:
            events.append(
                Event("Warning", "BundleReverted", f"rolled back {kind}s {', '.join(decision.revert)}")
            )
    except IsthmusError as exc:
        # the status is left as it was: the next step re-reads and re-decides (steps are idempotent)
        return Outcome(status={}, retry=exc.reason)
    return Outcome(status=decision.status, events=[*events, *phase_event(status, decision.status)])


# -- FailoverDrill -----------------------------------------------------------------------------------


async def reconcile_drill(
    deps: Dependencies,
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int,
) -> Outcome:
    """One tick of a drill: validate and start it, or run (or keep waiting on) its current step, or
    write its report. At most one step per tick; each step is idempotent when replayed."""
    if status.get("phase") in drill.TERMINAL_PHASES:
        return Outcome(status={})
    now = iso(deps.moment())
    try:
        parsed = parse_drill(name, spec)
    except InvalidArgument as exc:
        failed = drill.invalid(status, exc.reason, generation, now)
        return Outcome(status=failed, events=phase_event(status, failed))
    if not status.get("phase"):
        try:
            tenants = {t: await deps.kube.get_tenant(namespace, t) for t in parsed.tenants}
        except IsthmusError as exc:
            return Outcome(status={}, retry=exc.reason)
        problems = drill.check_context(
            parsed,
            namespace,
            deps.regions,
            {t: (obj or {}).get("spec") if obj is not None else None for t, obj in tenants.items()},
        )
        if problems:
            message = f"invalid FailoverDrill {name!r}: " + "; ".join(problems)
            failed = drill.invalid(status, message, generation, now)
            return Outcome(status=failed, events=phase_event(status, failed))
        started = drill.start(parsed, status, generation, now)
        return Outcome(status=started, events=phase_event(status, started))
    index = int(status.get("step") or 0)
    steps = parsed.definition.steps
    if index >= len(steps):
        done = drill.finish(parsed, status, generation, now)
        return Outcome(status=done, events=phase_event(status, done))
    plan = drill.plan_step(steps[index], parsed, namespace)
    try:
        update = await _run_plan(deps, name, namespace, parsed, status, plan, now)
    except DrillFailed as exc:
        failed = drill.fail(parsed, status, exc.reason_code, exc.reason, generation, now)
        healed = await heal_drill(deps, name, namespace, parsed)
        if healed:
            failed["timeline"].append(drill.timeline_entry(now, "heal", "", "; ".join(healed)))
        return Outcome(status=failed, events=phase_event(status, failed))
    except IsthmusError as exc:
        # transient (API or region unreachable): the status stays, the next tick replays the step
        return Outcome(status={}, retry=exc.reason)
    events = []
    if int(update.get("step", index)) > index:
        events.append(Event("Normal", "DrillStep", str(update["message"])))
    return Outcome(status=update, events=events)


class DrillFailed(FailedPrecondition):
    """A step cannot complete (a bound passed, a Tenant refused the move): the drill fails."""

    def __init__(self, reason: str, code: str = "StepFailed") -> None:
        super().__init__(reason)
        self.reason_code = code


async def _scale(
    deps: Dependencies,
    namespace: str,
    selector: str,
    build: Callable[[Mapping[str, Any]], dict[str, Any] | None],
) -> list[str]:
    """Patch every Deployment/StatefulSet matching ``selector`` with ``build(workload)``; their names."""
    touched = []
    for kind in drill.SCALABLE_KINDS:
        for workload in await deps.kube.list_workloads(kind, namespace, selector):
            patch = build(workload)
            if patch is not None:
                await deps.kube.patch_workload(kind, namespace, workload["metadata"]["name"], patch)
                touched.append(f"{kind} {workload['metadata']['name']} → {patch['spec']['replicas']}")
    return touched


async def _snapshot(
    deps: Dependencies, region: str, tenants: Iterable[str]
) -> dict[str, dict[str, DocumentState]] | str:
    """Every drill tenant's indexed documents in ``region``, or why they cannot be read."""
    clients = deps.regions.get(region)
    if clients is None or clients.documents is None:
        return f"the operator has no endpoint for region {region!r} (ISTHMUS_OPERATOR_REGIONS)"
    out: dict[str, dict[str, DocumentState]] = {}
    for tenant in tenants:
        got = await _indexed(clients, tenant)
        if isinstance(got, str):
            return f"region {region!r}, tenant {tenant!r}: {got}"
        out[tenant] = got
    return out


async def _run_plan(
    deps: Dependencies,
    name: str,
    namespace: str,
    spec: FailoverDrillSpec,
    status: Mapping[str, Any],
    plan: drill.Plan,
    now: str,
) -> dict[str, Any]:
    """Execute one step's plan; the status update (advanced, or still waiting)."""
    if isinstance(plan, drill.Wait):
        if drill.elapsed(status, now) >= plan.seconds:
            return drill.advance(spec, status, f"observed {plan.seconds:g} s", now)
        return drill.waiting(spec, status, f"observing for {plan.seconds:g} s", now)
    if isinstance(plan, drill.Note):
        return drill.advance(spec, status, plan.detail, now)
    if isinstance(plan, drill.ScaleDown):
        rpo: dict[str, Any] = {}
        notes: list[str] = []
        measure = bool(plan.lost) and not status.get("faultAt")
        before = await _snapshot(deps, plan.lost, spec.tenants) if measure else None
        touched = await _scale(
            deps, plan.namespace, plan.selector, lambda w: drill.build_scale_down_patch(w, name)
        )
        if measure:
            rpo, notes = await _measure_rpo(deps, spec, before, plan.survivor, now)
        detail = f"scaled to 0 ({plan.selector}): " + (", ".join(touched) or "nothing left to scale")
        return drill.advance(spec, status, detail, now, notes=notes, **rpo)
    if isinstance(plan, drill.ScaleBack):
        touched = await _scale(
            deps, plan.namespace, plan.selector, lambda w: drill.build_scale_back_patch(w, name)
        )
        detail = f"scaled back ({plan.selector}): " + (", ".join(touched) or "nothing was scaled down")
        return drill.advance(spec, status, detail, now)
    if isinstance(plan, drill.DeletePod):
        pod = drill.pick_pod(await deps.kube.list_pods(plan.namespace, plan.selector))
        if pod is None:
            raise DrillFailed(f"no broker pod matches {plan.selector} in namespace {plan.namespace!r}")
        await deps.kube.delete_pod(plan.namespace, pod)
        return drill.advance(spec, status, f"deleted broker pod {plan.namespace}/{pod}", now)
    if isinstance(plan, drill.MovePrimary):
        moved = []
        for tenant in plan.tenants:
            obj = await deps.kube.get_tenant(namespace, tenant)
            if obj is None:
                raise DrillFailed(f"Tenant {namespace}/{tenant} is gone", "TenantGone")
            patch = drill.build_primary_move(obj.get("spec") or {}, plan.region)
            if patch is not None:
                try:
                    await deps.kube.patch_tenant(namespace, tenant, patch)
                except InvalidArgument as exc:
                    raise DrillFailed(exc.reason, "MoveRefused") from exc
                moved.append(tenant)
        detail = f"primary of {', '.join(plan.tenants)} := {plan.region}" + ("" if moved else " (already)")
        return drill.advance(
            spec,
            status,
            detail,
            now,
            **(
                {"failoverAt": now}
                if plan.region == spec.regions.secondary and not status.get("failoverAt")
                else {}
            ),
        )
    if isinstance(plan, drill.AwaitServing):
        return await _await_serving(deps, spec, status, plan, now)
    return await _await_catch_up(deps, spec, status, plan, now)


async def _measure_rpo(
    deps: Dependencies,
    spec: FailoverDrillSpec,
    before: dict[str, dict[str, DocumentState]] | str | None,
    survivor: str,
    now: str,
) -> tuple[dict[str, Any], list[str]]:
    """RPO at the fault: the lost region's indexed documents (read just before it was scaled down) that
    the survivor lacks (read just after): their count and how far back the oldest was written. An upper
    bound: documents still in flight may yet arrive."""
    if not isinstance(before, dict):
        return {}, [f"RPO not measured: {before}"]
    after = await _snapshot(deps, survivor, spec.tenants)
    if isinstance(after, str):
        return {}, [f"RPO not measured: {after}"]
    at = parse_iso(now).timestamp()
    lost = 0
    seconds = 0.0
    for tenant, docs in before.items():
        missing = documents_behind(docs, after.get(tenant, {}))
        lost += len(missing)
        seconds = max(seconds, seconds_of_writes(missing, docs, at))
    return {"rpoDocuments": lost, "rpoSeconds": seconds}, []


async def _await_serving(
    deps: Dependencies, spec: FailoverDrillSpec, status: Mapping[str, Any], plan: drill.AwaitServing, now: str
) -> dict[str, Any]:
    clients = deps.regions.get(plan.region)
    if clients is None or clients.health is None:
        note = f"RTO not measured: the operator has no health endpoint for region {plan.region!r}"
        return drill.advance(spec, status, "not awaited: " + note, now, notes=[note])
    answered = await clients.health.serving()
    if answered and clients.documents is not None:
        answered = isinstance(await _snapshot(deps, plan.region, spec.tenants), dict)
    if answered:
        fault = status.get("faultAt")
        rto = seconds_between(str(fault), now) if fault else None
        detail = f"{plan.region} serving every drill tenant" + (
            f", {rto:g} s after the fault" if rto is not None else ""
        )
        measured: dict[str, Any] = {"recoveredAt": now}
        if rto is not None:
            measured["rtoSeconds"] = rto
        return drill.advance(spec, status, detail, now, **measured)
    if drill.elapsed(status, now) > plan.seconds:
        raise DrillFailed(
            f"region {plan.region!r} did not serve the drill's tenants within {plan.seconds:g} s",
            "NotRecovered",
        )
    return drill.waiting(spec, status, f"waiting ≤ {plan.seconds:g} s for {plan.region} to serve", now)


async def _await_catch_up(
    deps: Dependencies, spec: FailoverDrillSpec, status: Mapping[str, Any], plan: drill.AwaitCatchUp, now: str
) -> dict[str, Any]:
    a, b = plan.regions
    missing = [r for r in plan.regions if r not in deps.regions or deps.regions[r].documents is None]
    if missing:
        note = f"catch-up not checked: the operator has no endpoint for region(s) {missing}"
        return drill.advance(spec, status, "not awaited: " + note, now, notes=[note])
    left, right = await _snapshot(deps, a, spec.tenants), await _snapshot(deps, b, spec.tenants)
    detail = ""
    if isinstance(left, dict) and isinstance(right, dict):
        behind = sum(
            len(documents_behind(left[t], right[t])) + len(documents_behind(right[t], left[t]))
            for t in spec.tenants
        )
        if behind == 0:
            return drill.advance(spec, status, f"{a} and {b} hold the same documents", now)
        detail = f"{behind} documents differ"
    else:
        detail = str(left if isinstance(left, str) else right)
    if drill.elapsed(status, now) > plan.seconds:
        raise DrillFailed(f"{a} and {b} did not catch up within {plan.seconds:g} s: {detail}", "NotCaughtUp")
    return drill.waiting(
        spec, status, f"waiting ≤ {plan.seconds:g} s for {a} and {b} to catch up ({detail})", now
    )


async def heal_drill(deps: Dependencies, name: str, namespace: str, spec: FailoverDrillSpec) -> list[str]:
    """Scale back whatever this drill scaled down, in both regions (a failed or deleted drill)."""
    healed: list[str] = []
    for region, workloads in spec.region_workloads.items():
        ns = workloads.namespace or namespace
        touched = await _scale(
            deps, ns, workloads.selector(), lambda w: drill.build_scale_back_patch(w, name)
        )
        healed.extend(f"{region}: {t}" for t in touched)
    return healed
