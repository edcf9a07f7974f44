"""What the handlers do, without kopf: read, decide (pure functions), write; return the new status.

Each function takes the injected :class:`Dependencies` and plain values, and returns an
:class:`Outcome`: the status to merge, and — for a transient failure — the reason to retry. Invalid
specs never raise: they become a ``Valid=False`` condition and phase ``Failed`` with a precise message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import InvalidArgument, IsthmusError, Unavailable
from isthmus_operator.builders import (
    build_bundle_patch,
    build_condition,
    build_tenant_configmap,
    merge_conditions,
    summarise,
    tenant_phase,
    workload_bundle,
)
from isthmus_operator.kube import Kube, MetricsSource
from isthmus_operator.names import tenant_configmap_name
from isthmus_operator.retrieval import TenantRegistry
from isthmus_operator.rollout import TERMINAL_PHASES, Observed, invalid, step
from isthmus_operator.specs import parse_rollout, parse_tenant


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dependencies:
    kube: Kube
    metrics: MetricsSource
    #: None = the operator does not manage vector-store tenants (no retrieval endpoint configured)
    tenants: TenantRegistry | None
    clock: Callable[[], str] = utc_now


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
        parts: list[dict[str, Any]], retry: str | None = None, events: list[Event] | None = None
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


async def finalize_tenant(
    deps: Dependencies, name: str, namespace: str, spec: Mapping[str, Any]
) -> list[str]:
    """Remove what :func:`reconcile_tenant` created. Raises Unavailable while something is unreachable
    (the finalizer stays and kopf retries). Returns human notes of what was removed."""
    notes = []
    if await deps.kube.delete_configmap(namespace, tenant_configmap_name(name)):
        notes.append(f"deleted ConfigMap {namespace}/{tenant_configmap_name(name)}")
    retain = spec.get("deletionPolicy") == "Retain"
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
            metrics = await deps.metrics.read(namespace, name)
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
