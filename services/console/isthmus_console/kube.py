"""EdgeRollout and FailoverDrill objects, read-only from the Kubernetes API (``console.kube_namespace``).

The console's one way to the platform besides its gRPC APIs (see the design): it lists the isthmus
operator's objects in one namespace and shows what the operator wrote in their status — a rollout's waves
(their workloads, how many of those workloads' pods are ready, the gates' verdicts) and a drill's timeline
with its measured RPO and RTO against the objectives. It never writes.

The official client is synchronous: :class:`KubeReader` runs every call in a worker thread and returns
plain values. :func:`rollout_view` and :func:`drill_view` turn the raw objects into what the page shows
(pure: dicts in, dataclasses out). The group, version and plurals are the CRDs'
(``charts/isthmus-operator/crds``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

GROUP = "isthmus.dev"
VERSION = "v1alpha1"
ROLLOUTS = "edgerollouts"
DRILLS = "failoverdrills"
#: how long one list call may take before the page says the API did not answer
REQUEST_TIMEOUT_S = 10.0


class KubeUnavailable(Exception):
    """The Kubernetes API refused or did not answer; the message says why (shown on the page)."""


# -- what the page shows (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GateView:
    gate: str
    metric: str
    baseline: float | None
    observed: float | None
    threshold: float | None
    regression: float | None
    passed: bool | None


@dataclass(frozen=True)
class WorkloadView:
    name: str
    #: "ready/desired" pods of the workload ("" when it was not found in the namespace)
    pods: str = ""
    #: the bundle its pod template carries (annotation isthmus.dev/model-bundle)
    bundle: str = ""


@dataclass(frozen=True)
class WaveView:
    number: int
    percent: int
    #: Pending (not applied yet), Applied, Passed, Failed, RolledBack
    state: str
    applied_at: str = ""
    workloads: tuple[WorkloadView, ...] = ()
    gates: tuple[GateView, ...] = ()


@dataclass(frozen=True)
class RolloutView:
    name: str
    bundle: str
    phase: str
    message: str
    paused: bool
    current_wave: int
    current_percent: int
    waves: tuple[WaveView, ...]
    failed_gates: tuple[GateView, ...] = ()
    #: the gates' thresholds from the spec (name -> threshold)
    gate_thresholds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEntry:
    time: str
    action: str
    region: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Objective:
    """A measured value against its target: ``met`` None when it was not measured."""

    measured: float | None
    target: float | None

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.target is None:
            return None
        return self.measured <= self.target


@dataclass(frozen=True)
class DrillView:
    name: str
    scenario: str
    primary: str
    secondary: str
    phase: str
    message: str
    started_at: str
    finished_at: str
    timeline: tuple[TimelineEntry, ...]
    rpo: Objective
    rto: Objective
    rpo_documents: int | None
    #: the report's verdict: True met, False missed, None not measured (or not finished)
    objectives_met: bool | None
    summary: str = ""
    notes: tuple[str, ...] = ()
    milestones: tuple[tuple[str, str], ...] = ()

    @property
    def verdict(self) -> str:
        """pass, fail, running or pending (what the page's badge says)."""
        if self.phase == "Succeeded":
            return "pass"
        if self.phase == "Failed":
            return "fail"
        return "running" if self.phase == "Running" else "pending"


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw)


def _gate(raw: Any) -> GateView:
    g = raw if isinstance(raw, Mapping) else {}
    passed = g.get("passed")
    return GateView(
        gate=str(g.get("gate") or ""),
        metric=str(g.get("metric") or ""),
        baseline=_number(g.get("baseline")),
        observed=_number(g.get("observed")),
        threshold=_number(g.get("threshold")),
        regression=_number(g.get("regression")),
        passed=passed if isinstance(passed, bool) else None,
    )


def _int(raw: Any, default: int = 0) -> int:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else default


def _list(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list) else []


def rollout_view(obj: Mapping[str, Any], workloads: Mapping[str, WorkloadView] | None = None) -> RolloutView:
    """An EdgeRollout as the page shows it: the status's waves, then the spec's waves not applied yet
    (Pending); ``workloads`` (name -> readiness) fills in each wave's pods."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    bundle = spec.get("bundle") or {}
    known = workloads or {}
    waves: list[WaveView] = []
    for raw in _list(status.get("waves")):
        if not isinstance(raw, Mapping):
            continue
        names = [str(n) for n in _list(raw.get("workloads"))]
        waves.append(
            WaveView(
                number=_int(raw.get("number")),
                percent=_int(raw.get("percent")),
                state=str(raw.get("state") or "Pending"),
                applied_at=str(raw.get("appliedAt") or ""),
                workloads=tuple(known.get(n, WorkloadView(n)) for n in names),
                gates=tuple(_gate(g) for g in _list(raw.get("gates"))),
            )
        )
    seen = {w.number for w in waves}
    for number, percent in enumerate(_list(spec.get("waves")), start=1):
        if number not in seen:
            waves.append(WaveView(number=number, percent=_int(percent), state="Pending"))
    waves.sort(key=lambda w: w.number)
    raw_gates = spec.get("gates")
    gates: Mapping[str, Any] = raw_gates if isinstance(raw_gates, Mapping) else {}
    return RolloutView(
        name=str(meta.get("name") or ""),
        bundle=f"{bundle.get('name', '')}@{bundle.get('version', '')}",
        phase=str(status.get("phase") or "Pending"),
        message=str(status.get("message") or ""),
        paused=bool(spec.get("paused")),
        current_wave=_int(status.get("currentWave")),
        current_percent=_int(status.get("currentPercent")),
        waves=tuple(waves),
        failed_gates=tuple(_gate(g) for g in _list(status.get("failedGates"))),
        gate_thresholds={str(k): v for k, raw in gates.items() if (v := _number(raw)) is not None},
    )


def drill_view(obj: Mapping[str, Any]) -> DrillView:
    """A FailoverDrill as the page shows it: its timeline, RPO and RTO against the objectives, verdict."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    regions = spec.get("regions") or {}
    objectives = spec.get("objectives") or {}
    report = status.get("report") or {}
    met = report.get("objectivesMet") if isinstance(report, Mapping) else None
    timeline = tuple(
        TimelineEntry(
            time=str(e.get("time") or ""),
            action=str(e.get("action") or ""),
            region=str(e.get("region") or ""),
            detail=str(e.get("detail") or ""),
        )
        for e in _list(status.get("timeline"))
        if isinstance(e, Mapping)
    )
    notes = [str(n) for n in _list(status.get("notes"))]
    if isinstance(report, Mapping):
        notes += [str(n) for n in _list(report.get("notes")) if str(n) not in notes]
    milestones = tuple(
        (label, str(status[key]))
        for key, label in (
            ("startedAt", "started"),
            ("faultAt", "fault injected"),
            ("failoverAt", "failed over"),
            ("recoveredAt", "recovered"),
            ("finishedAt", "finished"),
        )
        if status.get(key)
    )
    docs = status.get("rpoDocuments")
    return DrillView(
        name=str(meta.get("name") or ""),
        scenario=str(spec.get("scenario") or ""),
        primary=str(regions.get("primary") or ""),
        secondary=str(regions.get("secondary") or ""),
        phase=str(status.get("phase") or "Pending"),
        message=str(status.get("message") or ""),
        started_at=str(status.get("startedAt") or ""),
        finished_at=str(status.get("finishedAt") or ""),
        timeline=timeline,
        rpo=Objective(_number(status.get("rpoSeconds")), _number(objectives.get("rpoMaxSeconds"))),
        rto=Objective(_number(status.get("rtoSeconds")), _number(objectives.get("rtoMaxSeconds"))),
        rpo_documents=docs if isinstance(docs, int) and not isinstance(docs, bool) else None,
        objectives_met=met if isinstance(met, bool) else None,
        summary=str(report.get("summary") or "") if isinstance(report, Mapping) else "",
        notes=tuple(notes),
        milestones=milestones,
    )


def _by_name(items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(items, key=lambda o: str((o.get("metadata") or {}).get("name") or ""))


def _workload_view(raw: Mapping[str, Any]) -> WorkloadView:
    meta = raw.get("metadata") or {}
    status = raw.get("status") or {}
    annotations = ((raw.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    if raw.get("kind") == "DaemonSet" or "desiredNumberScheduled" in status:
        ready, desired = _int(status.get("numberReady")), _int(status.get("desiredNumberScheduled"))
    else:
        ready, desired = _int(status.get("readyReplicas")), _int((raw.get("spec") or {}).get("replicas"), 1)
    return WorkloadView(
        name=str(meta.get("name") or ""),
        pods=f"{ready}/{desired}",
        bundle=str(annotations.get("isthmus.dev/model-bundle") or ""),
    )


# -- the API (I/O) -----------------------------------------------------------------------------------------


def _reason(exc: Exception) -> str:
    if isinstance(exc, client.ApiException):
        reason = exc.reason or ""
        try:
            reason = json.loads(exc.body or "{}").get("message") or reason
        except (TypeError, ValueError, AttributeError):
            pass
        return f"HTTP {exc.status}: {reason}"
    return f"{type(exc).__name__}: {exc}"


class KubeReader:
    """Lists the operator's objects in one namespace (read-only; every call in a worker thread)."""

    def __init__(self, namespace: str, kubeconfig: Path | None = None) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self._api: client.ApiClient | None = None

    def _client(self) -> client.ApiClient:
        """The API client: the kubeconfig file given, else the pod's in-cluster account (built once)."""
        if self._api is None:
            if self.kubeconfig is not None:
                self._api = cast(
                    client.ApiClient,
                    config.new_client_from_config(config_file=str(self.kubeconfig)),  # type: ignore[no-untyped-call]
                )
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                self._api = client.ApiClient()
            else:
                raise KubeUnavailable(
                    "console.kubeconfig is not set and the console does not run in a pod "
                    "(no in-cluster service account)"
                )
        return self._api

    def _list_custom(self, plural: str) -> list[Mapping[str, Any]]:
        api = client.CustomObjectsApi(self._client())
        reply = cast(
            dict[str, Any],
            api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )
        return _by_name(list(reply.get("items") or []))

    def _workloads(self, kind: str, labels: Mapping[str, str]) -> dict[str, WorkloadView]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        apps = client.AppsV1Api(self._client())
        reply: object
        if kind == "Deployment":
            reply = apps.list_namespaced_deployment(
                self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
        else:
            reply = apps.list_namespaced_daemon_set(
                self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
            )
        raw = cast(dict[str, Any], self._client().sanitize_for_serialization(reply))  # type: ignore[no-untyped-call]
        out = {}
        for item in raw.get("items") or []:
            view = _workload_view({**item, "kind": kind})
            out[view.name] = view
        return out

    def _rollouts(self) -> list[RolloutView]:
        views = []
        for obj in self._list_custom(ROLLOUTS):
            pool = (obj.get("spec") or {}).get("nodePool") or {}
            labels = pool.get("matchLabels") or {}
            workloads: dict[str, WorkloadView] = {}
            if labels:
                try:
                    workloads = self._workloads(str(pool.get("workloadKind") or "DaemonSet"), labels)
                except client.ApiException:
                    workloads = {}  # no read access to the workloads: the waves still show their names
            views.append(rollout_view(obj, workloads))
        return views

    def _drills(self) -> list[DrillView]:
        return [drill_view(obj) for obj in self._list_custom(DRILLS)]

    async def rollouts(self) -> list[RolloutView]:
        try:
            return await asyncio.to_thread(self._rollouts)
        except KubeUnavailable:
            raise
        except Exception as exc:  # the client raises ApiException, urllib3 and config errors alike
            raise KubeUnavailable(f"EdgeRollouts in {self.namespace}: {_reason(exc)}") from exc

    async def drills(self) -> list[DrillView]:
        try:
            return await asyncio.to_thread(self._drills)
        except KubeUnavailable:
            raise
        except Exception as exc:
            raise KubeUnavailable(f"FailoverDrills in {self.namespace}: {_reason(exc)}") from exc

    def close(self) -> None:
        if self._api is not None:
            self._api.close()  # type: ignore[no-untyped-call]
            self._api = None
