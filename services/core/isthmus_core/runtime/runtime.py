"""The process lifecycle: settings → bus → modules → gRPC server → serve → drain → stop.

Before anything opens, :func:`check_endpoints` requires an address (``ISTHMUS_ENDPOINTS``) for every
service a module depends on that is not part of the target: a split service never silently dials its own
port for a dependency it does not serve.

Readiness: a module's own probes (a store it cannot work without), and in a split deployment one probe per
service it depends on that runs elsewhere (its standard gRPC health, overall): while a dependency is down
or not ready, the module's services report NOT_SERVING, so Kubernetes takes the pod out of its Service
until the dependency is back (see :meth:`Runtime.check_readiness`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus_core.auth.audit import BusAuditSink
from isthmus_core.auth.metrics_guard import metrics_guard
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.wiring import build_stack, service_tokens
from isthmus_core.bus.admin import BusAdmin
from isthmus_core.bus.port import EventBus
from isthmus_core.contracts.topics import AUDIT_RECORDED, DEAD_LETTERS_REPLAYED
from isthmus_core.errors import ConfigurationError
from isthmus_core.grpc.admission import policy_from_settings
from isthmus_core.grpc.client import Channels
from isthmus_core.grpc.operations import SERVICE_NAME as OPERATIONS_SERVICE
from isthmus_core.grpc.operations import OperationsServicer
from isthmus_core.grpc.operations import registrar as operations_registrar
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.runtime.module import AnyModule, Offer, Probe
from isthmus_core.settings import CommonSettings, SectionSettings, load_all
from isthmus_core.telemetry.logging import configure_logging
from isthmus_core.telemetry.metrics import serve_metrics
from isthmus_core.telemetry.tracing import configure_tracing

log = structlog.get_logger("isthmus.runtime")

ALL = "all"
#: how long a dependency's health check may take before it counts as down
DEPENDENCY_PROBE_TIMEOUT_S = 2.0


def resolve_targets(spec: str, modules: Sequence[AnyModule]) -> list[AnyModule]:
    """``all`` or a comma-separated list of module names → modules in dependency order."""
    by_name = {m.name: m for m in modules}
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigurationError(f"no target given; choose 'all' or some of: {', '.join(by_name)}")
    if ALL in names:
        names = list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigurationError(
            f"unknown target(s) {unknown}; choose 'all' or some of: {', '.join(by_name)}"
        )
    ordered: list[AnyModule] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise ConfigurationError(f"module dependency cycle: {' -> '.join((*trail, name))}")
        mod = by_name[name]
        if mod in ordered:
            return
        for dep in mod.depends_on:
            if dep in names:  # dependencies outside the target are reached over gRPC/Kafka
                visit(dep, (*trail, name))
        ordered.append(mod)

    for n in names:
        visit(n, ())
    return ordered


def missing_endpoints(modules: Sequence[AnyModule], endpoints: Mapping[str, str]) -> dict[str, list[str]]:
    """Dependencies outside ``modules`` with no address in ``endpoints``: service → modules calling it."""
    local = {m.name for m in modules}
    missing: dict[str, list[str]] = {}
    for mod in modules:
        for dep in mod.depends_on:
            if dep not in local and dep not in endpoints:
                missing.setdefault(dep, []).append(mod.name)
    return missing


def check_endpoints(modules: Sequence[AnyModule], endpoints: Mapping[str, str]) -> None:
    """Raise one :class:`ConfigurationError` naming every dependency outside the target that has no
    address in ``ISTHMUS_ENDPOINTS`` (``[common] endpoints``)."""
    missing = missing_endpoints(modules, endpoints)
    if not missing:
        return
    needs = "; ".join(f"{dep} (called by {', '.join(callers)})" for dep, callers in missing.items())
    example = json.dumps({dep: f"{dep}:50051" for dep in missing})
    raise ConfigurationError(
        f"target {'+'.join(m.name for m in modules)} depends on services it does not run and has no "
        f"address for: {needs}. Give their gRPC addresses in ISTHMUS_ENDPOINTS (or [common] endpoints), "
        f"e.g. ISTHMUS_ENDPOINTS='{example}', or add them to the target"
    )


def make_bus(common: CommonSettings, all_in_one: bool) -> EventBus:
    kind = common.bus
    if kind == "auto":
        kind = "inprocess" if all_in_one else "kafka"
    if kind == "inprocess":
        from isthmus_core.bus.inprocess import InProcessBus

        return InProcessBus(
            max_backlog_messages=common.inprocess_max_backlog_messages,
            max_backlog_bytes=common.inprocess_max_backlog_bytes,
            publish_timeout_s=common.inprocess_publish_timeout_s,
            retained_messages=common.inprocess_retained_messages,
            retained_bytes=common.inprocess_retained_bytes,
        )
    from isthmus_core.bus.kafka import KafkaBus

    return KafkaBus(
        common.kafka_bootstrap_servers,
        partitions=common.kafka_partitions,
        replication_factor=common.kafka_replication_factor,
        retention_ms=common.kafka_retention_ms,
        security=common.kafka_security(),
        max_poll_records=common.kafka_max_poll_records,
        fetch_max_bytes=common.kafka_fetch_max_bytes,
        max_partition_fetch_bytes=common.kafka_max_partition_fetch_bytes,
    )


def make_bus_admin(bus: EventBus) -> BusAdmin:
    """The :class:`BusAdmin` of the process's bus (what ``OperationsService`` reports)."""
    from isthmus_core.bus.inprocess import InProcessBus, InProcessBusAdmin

    if isinstance(bus, InProcessBus):
        return InProcessBusAdmin(bus)
    from isthmus_core.bus.kafka import KafkaBus
    from isthmus_core.bus.kafka_admin import KafkaBusAdmin

    if isinstance(bus, KafkaBus):
        return KafkaBusAdmin(bus)
    raise ConfigurationError(f"no bus admin for {type(bus).__name__}")


def warn_about_auth(common: CommonSettings) -> None:
    """Say loudly at start what authentication does not cover."""
    if common.auth == "off":
        log.warning(
            "authentication is OFF: listening on loopback only; every caller may act as any tenant "
            "(set [common] auth = 'oidc' with auth_issuer, or auth = 'local', to require tokens)",
            grpc_host=common.grpc_host,
        )
    elif common.auth == "oidc" and not common.auth_service_token_url:
        log.warning(
            "auth is 'oidc' without auth_service_token_url: calls this process makes outside a request "
            "(bus handlers) carry no token and other services will refuse them",
        )


@dataclass
class Runtime:
    modules: list[AnyModule]
    common: CommonSettings
    sections: dict[str, SectionSettings]
    all_in_one: bool
    bus: EventBus | None = None
    server: GrpcServer | None = None
    channels: Channels | None = None
    auth: AuthStack | None = None
    offers: list[Offer] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _probe_channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _watcher: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        target: str,
        modules: Sequence[AnyModule],
        config_file: Path | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Runtime:
        selected = resolve_targets(target, modules)
        classes: list[type[SectionSettings]] = [CommonSettings, *(m.settings_cls for m in selected)]
        sections = load_all(classes, config_file, overrides)
        common = sections["common"]
        assert isinstance(common, CommonSettings)
        all_in_one = len(selected) == len(modules)
        return cls(list(selected), common, sections, all_in_one)

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    async def start(self) -> None:
        c = self.common
        check_endpoints(self.modules, c.endpoints)
        configure_logging(c.log_level, c.log_format)
        configure_tracing(
            "isthmus-" + "+".join(m.name for m in self.modules) if not self.all_in_one else "isthmus-all",
            c.otel_exporter,
            c.otel_endpoint,
        )
        c.data_dir.mkdir(parents=True, exist_ok=True)
        self.bus = make_bus(c, self.all_in_one)
        # one auth stack for the process: the gRPC edge checks callers with it, modules get its quota
        # gate and audit sink, and calls made outside any call carry the process's own token
        self.auth = build_stack(c, self.bus)
        warn_about_auth(c)
        self.server = GrpcServer(c.grpc_host, c.grpc_port, policy_from_settings(c), self.auth)
        self.channels = Channels(c.endpoints, self.server.address, service_tokens(c))
        topics = {}
        try:
            for mod in self.modules:
                ctx = mod.context(self.sections, c, self.bus, self.channels, auth=self.auth)
                offer = await mod.build(ctx)
                offer.probes.extend(self._dependency_probes(mod))
                self.offers.append(offer)
                self.server.add(offer.registrars, offer.grpc_service_names)
                for t in offer.topics:
                    topics[t.name] = t
                for sub in offer.subscriptions:
                    self.bus.subscribe(sub)
            topics[AUDIT_RECORDED.name] = AUDIT_RECORDED  # every process may publish audit records
            # every process serves the bus's operations (consumer lag, dead letters and their replay)
            topics[DEAD_LETTERS_REPLAYED.name] = DEAD_LETTERS_REPLAYED
            operations = OperationsServicer(
                make_bus_admin(self.bus),
                [
                    (mod.name, sub.topic, sub.group)
                    for mod, offer in zip(self.modules, self.offers, strict=True)
                    for sub in offer.subscriptions
                ],
                [m.name for m in self.modules],
            )
            self.server.add([operations_registrar(operations)], [OPERATIONS_SERVICE])
            await self.bus.ensure_topics(list(topics.values()))
            for offer in self.offers:
                for hook in offer.on_start:
                    await hook()
            await self.bus.start()
            if isinstance(self.auth.audit, BusAuditSink):
                await self.auth.audit.start()
            # models, vocabularies and indexes loaded at start live as long as the process: moved out of
            # the collector's reach, so a full collection under load scans only what requests made
            # (hundreds of thousands of objects fewer: no pause of tens of ms in the middle of answers)
            gc.collect()
            gc.freeze()
            await self.server.start()
            await self.server.set_serving()
            if any(o.probes for o in self.offers):
                await self.check_readiness()  # not ready from the start while a dependency is down
                self._watcher = asyncio.create_task(self._watch_readiness(), name="isthmus-readiness")
        except BaseException:
            await self.stop()
            raise
        if c.metrics_port:
            guard = None
            if self.auth.enabled and c.metrics_auth:
                guard = metrics_guard(self.auth, asyncio.get_running_loop())
            elif self.auth.enabled:
                log.warning(
                    "metrics_auth is false: /metrics is served without authentication",
                    host=c.grpc_host,
                    port=c.metrics_port,
                )
            try:
                serve_metrics(c.metrics_port, c.grpc_host, guard)
            except OSError as exc:
                log.warning("metrics endpoint not started", port=c.metrics_port, error=str(exc))
        log.info(
            "isthmus started",
            targets=[m.name for m in self.modules],
            grpc=self.server.address,
            bus=type(self.bus).__name__,
        )

    async def stop(self) -> None:
        """Graceful: readiness NOT_SERVING, drain gRPC calls, stop consuming, then module hooks."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        grace = self.common.shutdown_grace_s
        if self.server is not None:
            await self.server.stop(grace, self.common.shutdown_drain_delay_s)
        if self.auth is not None and isinstance(self.auth.audit, BusAuditSink):
            await self.auth.audit.stop()  # what the drained calls recorded, before the bus stops
        if self.bus is not None:
            await self.bus.stop()
        for offer in reversed(self.offers):
            for hook in reversed(offer.on_stop):
                try:
                    await hook()
                except Exception:
                    log.exception("error in stop hook")
        if self.channels is not None:
            await self.channels.close()
        for channel in self._probe_channels.values():
            await channel.close()
        log.info("isthmus stopped")

    def _dependency_probes(self, mod: AnyModule) -> list[Probe]:
        """One probe per service ``mod`` depends on that this process does not run: that service's overall
        gRPC health, on a plain channel (health needs no token: an identity provider being down does not
        make a dependency look down)."""
        local = {m.name for m in self.modules}
        return [self._health_probe(self.common.endpoints[dep]) for dep in mod.depends_on if dep not in local]

    def _health_probe(self, address: str) -> Probe:
        async def probe() -> bool:
            channel = self._probe_channels.get(address)
            if channel is None:
                channel = self._probe_channels[address] = grpc.aio.insecure_channel(address)
            serving = False
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=DEPENDENCY_PROBE_TIMEOUT_S
                )
                serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            if not serving:
                # a fresh channel next time: this one waits out gRPC's reconnect backoff (up to minutes)
                # before it dials again, or stays on a pod that drains while its Service has others
                del self._probe_channels[address]
                await channel.close()
            return serving

        return probe

    async def check_readiness(self) -> bool:
        """Probe every module's dependencies once and set gRPC health to match; True when all are up."""
        assert self.server is not None
        all_ready = True
        for offer in self.offers:
            if not offer.probes:
                continue
            ready = True
            for probe in offer.probes:
                try:
                    ready = ready and await probe()
                except Exception:
                    ready = False
            if not ready:
                log.warning("readiness: a dependency is down", services=offer.grpc_service_names)
            all_ready = all_ready and ready
            await self.server.set_status(offer.grpc_service_names, ready)
        await self.server.set_status([""], all_ready)
        return all_ready

    async def _watch_readiness(self) -> None:
        interval = min(o.probe_interval_s for o in self.offers if o.probes)
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), interval)
            if self._stopped.is_set():
                return
            try:
                await self.check_readiness()
            except Exception:
                log.exception("readiness probe failed")

    async def serve_forever(self) -> None:
        """Start, then wait for SIGINT/SIGTERM and stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        log.info("shutting down")
        await self.stop()
