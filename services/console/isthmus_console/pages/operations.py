"""The operations page: the services' health here and in every region, the bus's consumer lag, dead
letters with their replay, and the edge rollouts' waves and failover drills' timelines (Kubernetes).

Health is each service's gRPC health check at its address (this deployment) and at every region's
platform (``console.region_endpoints``), polled by the page every few seconds. Consumer lag and dead letters
come from ``isthmus.operations.v1.OperationsService``, which the runtime of every process serves with its
own view of the bus: the lag is asked of every distinct address (each row says which services run there),
the dead letters of one. Rollouts and drills are read from the Kubernetes API when
``console.kube_namespace`` is set (:mod:`isthmus_console.kube`).

Permissions (the services enforce them; the page only hides what the viewer may not do): consumer lag
needs ``ops.read`` in every tenant, a tenant's dead letters ``ops.read`` there (every tenant's: in every
tenant), a replay ``ops.replay`` in the letter's tenant (a letter of no known tenant: in every tenant).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus.operations.v1 import operations_pb2 as ops_pb
from isthmus_console.backend import SERVICES, Backend, RpcFailure
from isthmus_console.kube import DrillView, KubeReader, KubeUnavailable, RolloutView
from isthmus_console.viewer import Viewer
from isthmus_console.web import (
    Console,
    bad_request,
    console_of,
    current_tenant,
    fragment,
    page,
    remember_tenant,
    render,
    rpc_error,
    whole_number,
)
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.contracts.topics import ALL_TOPICS
from isthmus_core.grpc.client import open_channel

#: how long one health check may take before the service counts as unreachable
HEALTH_TIMEOUT_S = 2.0
#: the column of this deployment in the health table (its region's name when it has one)
HERE = ""
REGIONS_KEY = "operations.regions"
KUBE_KEY = "kube"
#: how long an operations call may take
OPS_TIMEOUT_S = 10.0
#: the topics whose dead letters can be listed (the registry's), and the one shown first
TOPICS: tuple[str, ...] = tuple(t.name for t in ALL_TOPICS)
DEFAULT_TOPIC = TOPICS[0]
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


@dataclass(frozen=True)
class HealthTable:
    #: column keys: HERE first, then each region of console.region_endpoints; with their headings
    columns: tuple[tuple[str, str], ...]
    #: service -> column -> SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN, UNREACHABLE ...
    rows: Mapping[str, Mapping[str, str]]

    @property
    def problems(self) -> list[tuple[str, str, str]]:
        """(service, column heading, state) of every check that did not answer SERVING."""
        headings = dict(self.columns)
        return [
            (service, headings[col], state)
            for service, states in self.rows.items()
            for col, state in states.items()
            if state != "SERVING"
        ]

    @property
    def summary(self) -> str:
        where = "this deployment" + (
            f" and {len(self.columns) - 1} region{'s' if len(self.columns) > 2 else ''}"
            if len(self.columns) > 1
            else ""
        )
        problems = self.problems
        if not problems:
            return f"All {len(self.rows)} services SERVING in {where}."
        listed = "; ".join(f"{s} in {h}: {state}" for s, h, state in problems)
        return f"{len(problems)} of {len(self.rows) * len(self.columns)} health checks not SERVING: {listed}."


def _region_backends(console: Console) -> dict[str, Backend]:
    """One backend per region of ``console.region_endpoints`` (a channel to that region's platform; health
    only), opened once and kept in the console's extras."""
    backends: dict[str, Backend] = console.extras.setdefault(REGIONS_KEY, {})
    for region, address in console.settings.region_endpoints.items():
        if region not in backends:
            channel: grpc.aio.Channel = open_channel(address)
            console.on_stop.append(channel.close)
            backends[region] = Backend(
                dict.fromkeys(SERVICES, channel),
                dict.fromkeys(SERVICES, address),
                auth_enabled=console.backend.auth_enabled,
            )
    return backends


async def health_table(console: Console) -> HealthTable:
    here = f"this deployment ({console.region})" if console.region else "this deployment"
    targets: dict[str, Backend] = {HERE: console.backend}
    columns: list[tuple[str, str]] = [(HERE, here)]
    for region, backend in sorted(_region_backends(console).items()):
        targets[region] = backend
        columns.append((region, f"region {region}"))
    checks = [(service, col) for service in SERVICES for col, _ in columns]
    states = await asyncio.gather(
        *(targets[col].health(service, HEALTH_TIMEOUT_S) for service, col in checks)
    )
    rows: dict[str, dict[str, str]] = {service: {} for service in SERVICES}
    for (service, col), state in zip(checks, states, strict=True):
        rows[service][col] = state
    return HealthTable(tuple(columns), rows)


def _kube(console: Console) -> KubeReader | None:
    """The Kubernetes reader (built on first use, kept in the console's extras); None when not configured."""
    namespace = console.settings.kube_namespace
    if not namespace:
        return None
    reader = console.extras.get(KUBE_KEY)
    if not isinstance(reader, KubeReader):
        reader = KubeReader(namespace, console.settings.kubeconfig)
        console.extras[KUBE_KEY] = reader
    return reader


@dataclass(frozen=True)
class ConsumerRow:
    #: the services served at the address that reported it (its process's bus view)
    where: str
    entry: ops_pb.ConsumerPartition


@dataclass(frozen=True)
class GroupLag:
    """One consumer group on one topic in one process: its partitions and their total lag."""

    where: str
    group: str
    topic: str
    modules: tuple[str, ...]
    partitions: tuple[ops_pb.ConsumerPartition, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class Consumers:
    rows: list[ConsumerRow] = field(default_factory=list)
    #: per address that could not answer: (services there, failure)
    failures: list[tuple[str, RpcFailure]] = field(default_factory=list)
    #: per address: (services there, bus kind, modules of that process)
    processes: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(r.entry.lag for r in self.rows)

    @property
    def groups(self) -> list[GroupLag]:
        """The rows per (process, group, topic), the ones lagging most first, then by name."""
        found: dict[tuple[str, str, str], list[ops_pb.ConsumerPartition]] = {}
        for row in self.rows:
            found.setdefault((row.where, row.entry.group, row.entry.topic), []).append(row.entry)
        out = [
            GroupLag(
                where, group, topic, tuple(parts[0].modules), tuple(sorted(parts, key=lambda p: p.partition))
            )
            for (where, group, topic), parts in found.items()
        ]
        out.sort(key=lambda g: (-g.lag, g.group, g.topic, g.where))
        return out


async def consumers(backend: Backend, viewer: Viewer) -> Consumers:
    """The consumer lag reported by every distinct address (a process each), labelled with its services."""
    metadata = backend.metadata(viewer)
    targets = [(", ".join(served), stub) for served, stub in backend.operations_at.values()]
    replies = await asyncio.gather(
        *(
            stub.ListConsumers(ops_pb.ListConsumersRequest(), metadata=metadata, timeout=OPS_TIMEOUT_S)
            for _, stub in targets
        ),
        return_exceptions=True,
    )
    out = Consumers()
    for (where, _), reply in zip(targets, replies, strict=True):
        if isinstance(reply, grpc.aio.AioRpcError):
            out.failures.append((where, RpcFailure.of(reply)))
        elif isinstance(reply, BaseException):
            raise reply
        else:
            out.processes.append((where, reply.bus, tuple(reply.modules)))
            out.rows.extend(ConsumerRow(where, c) for c in reply.consumers)
    return out


def may_replay(viewer: Viewer, tenant: str) -> bool:
    """May ``viewer`` replay a dead letter of ``tenant`` ("" = of no known tenant: platform admins only)?"""
    if viewer.platform_wide(Permission.OPS_REPLAY):
        return True
    return bool(tenant) and viewer.can(Permission.OPS_REPLAY, tenant)


def _timestamp(message: ops_pb.DeadLetter | ops_pb.ReplayedTo, name: str) -> str:
    if not message.HasField(name):
        return ""
    return str(getattr(message, name).ToDatetime().isoformat(timespec="seconds")) + "Z"


# -- routes -------------------------------------------------------------------------------------------


@page
async def index(request: Request, viewer: Viewer) -> Response:
    console = console_of(request)
    table = await health_table(console)
    return render(
        request,
        "operations/index.html",
        {
            "health": table,
            "kube_configured": bool(console.settings.kube_namespace),
            "topics": TOPICS,
            "default_topic": DEFAULT_TOPIC,
            "default_limit": DEFAULT_LIMIT,
            "can_read_lag": viewer.platform_wide(Permission.OPS_READ),
            "can_read_letters": viewer.can(Permission.OPS_READ),
            "letters_platform_wide": viewer.platform_wide(Permission.OPS_READ),
        },
    )


@fragment
async def health(request: Request, viewer: Viewer) -> Response:
    """The health table (polled); the summary is re-announced only when it changed (``last``)."""
    table = await health_table(console_of(request))
    changed = request.query_params.get("last") != table.summary
    return render(request, "operations/_health.html", {"health": table, "announce": changed})


@fragment
async def consumer_lag(request: Request, viewer: Viewer) -> Response:
    """Consumer lag per (group, topic, partition) of every process (polled)."""
    if not viewer.platform_wide(Permission.OPS_READ):
        return render(request, "operations/_consumers.html", {"allowed": False})
    result = await consumers(console_of(request).backend, viewer)
    return render(request, "operations/_consumers.html", {"allowed": True, "consumers": result})


@fragment
async def dead_letters(request: Request, viewer: Viewer) -> Response:
    """The newest dead letters of a registry topic (``topic``), of a tenant (``tenant``) or every one."""
    q = request.query_params
    topic = q.get("topic") or DEFAULT_TOPIC
    if topic not in TOPICS:
        return bad_request(request, f"unknown topic {topic[:100]!r}: choose one of the registry's topics")
    tenant = (q.get("tenant") or "").strip()
    if tenant and not is_tenant_id(tenant):
        return bad_request(request, f"not a tenant id: {tenant[:64]!r}")
    if not tenant and not viewer.platform_wide(Permission.OPS_READ):
        tenant = current_tenant(request)
        if not tenant:
            return bad_request(request, "choose a tenant: you may read the dead letters of your tenants only")
    if tenant:
        remember_tenant(request, tenant)
    try:
        limit = whole_number(q.get("limit"), "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    except ValueError as exc:
        return bad_request(request, str(exc))
    backend = console_of(request).backend
    try:
        reply = await backend.operations.ListDeadLetters(
            ops_pb.ListDeadLettersRequest(topic=topic, limit=limit, tenant_id=tenant),
            metadata=backend.metadata(viewer),
            timeout=OPS_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Dead letters of {topic}")
    letters = [
        {
            "letter": d,
            "at": _timestamp(d, "timestamp"),
            "replayed_at": _timestamp(d.replayed_to, "replayed_at") if d.replayed else "",
            "can_replay": not d.replayed and may_replay(viewer, d.tenant_id),
        }
        for d in reply.dead_letters
    ]
    return render(
        request,
        "operations/_dead_letters.html",
        {
            "topic": topic,
            "dlq": reply.topic,
            "total": reply.total,
            "letters": letters,
            "asked_tenant": tenant,
        },
    )


@fragment
async def replay(request: Request, viewer: Viewer) -> Response:
    """Replay one dead letter (POST, CSRF-checked): its new position, or why the platform refused."""
    form = await request.form()
    topic = str(form.get("topic") or "")
    if topic not in TOPICS:
        return bad_request(request, f"unknown topic {topic[:100]!r}")
    tenant = str(form.get("tenant") or "").strip()
    if tenant and not is_tenant_id(tenant):
        return bad_request(request, f"not a tenant id: {tenant[:64]!r}")
    try:
        partition = whole_number(str(form.get("partition") or ""), "partition", 0, 2**31 - 1)
        offset = whole_number(str(form.get("offset") or ""), "offset", 0, 2**63 - 1)
    except ValueError as exc:
        return bad_request(request, str(exc))
    backend = console_of(request).backend
    try:
        reply = await backend.operations.ReplayDeadLetter(
            ops_pb.ReplayDeadLetterRequest(
                topic=topic,
                partition=partition,
                offset=offset,
                # a platform-wide replayer asks platform-wide; anyone else in the letter's tenant
                tenant_id="" if viewer.platform_wide(Permission.OPS_REPLAY) else tenant,
            ),
            metadata=backend.metadata(viewer),
            timeout=OPS_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Replay of {topic}.dlq {partition}:{offset}")
    return render(
        request,
        "operations/_replayed.html",
        {"to": reply.replayed_to, "at": _timestamp(reply.replayed_to, "replayed_at")},
    )


@fragment
async def kube(request: Request, viewer: Viewer) -> Response:
    """The edge rollouts and failover drills of ``console.kube_namespace`` (or why they are not shown)."""
    console = console_of(request)
    reader = _kube(console)
    rollouts: list[RolloutView] = []
    drills: list[DrillView] = []
    error = ""
    if reader is not None:
        try:
            rollouts, drills = await asyncio.gather(reader.rollouts(), reader.drills())
        except KubeUnavailable as exc:
            error = str(exc)
    return render(
        request,
        "operations/_kube.html",
        {
            "configured": reader is not None,
            "namespace": console.settings.kube_namespace,
            "rollouts": rollouts,
            "drills": drills,
            "kube_error": error,
        },
    )


routes: list[BaseRoute] = [
    Route("/operations", index),
    Route("/operations/health", health),
    Route("/operations/consumers", consumer_lag),
    Route("/operations/dead-letters", dead_letters),
    Route("/operations/dead-letters/replay", replay, methods=["POST"]),
    Route("/operations/kube", kube),
]
