"""What a service registers with the runtime: one :class:`Module` per service.

Modelled on Grafana Loki's targets: a module declares its settings section, what it depends on, and a
``build`` coroutine that wires its parts from a :class:`ModuleContext` and returns what it offers — gRPC
servicers, bus subscriptions, topics, start/stop hooks. ``isthmus run --target all`` builds every module
into one process; ``--target retrieval`` builds one. The code path is the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from isthmus_core.bus.port import EventBus, Subscription
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.grpc.client import Channels
from isthmus_core.settings import CommonSettings, SectionSettings

Hook = Callable[[], Awaitable[None]]
#: a readiness probe: False while a dependency the module cannot work without is down
Probe = Callable[[], Awaitable[bool]]


@dataclass
class ModuleContext:
    settings: SectionSettings
    common: CommonSettings
    bus: EventBus
    channels: Channels
    data_dir: Path

    def channel(self, service: str) -> grpc.aio.Channel:
        """A channel to another service (in ``all``, this process's own port)."""
        return self.channels.for_service(service)


@dataclass
class Offer:
    """What a built module offers the runtime."""

    registrars: list[Callable[[grpc.aio.Server], None]] = field(default_factory=list)
    grpc_service_names: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    topics: list[TopicSpec] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    #: while any probe is False the module's gRPC services (and the server's overall health) report
    #: NOT_SERVING, so load balancers route elsewhere; probed every ``probe_interval_s`` seconds
    probes: list[Probe] = field(default_factory=list)
    probe_interval_s: float = 5.0


@dataclass(frozen=True)
class Module:
    name: str  # kebab-case: folder = image = chart key = target
    settings_cls: type[SectionSettings]
    build: Callable[[ModuleContext], Awaitable[Offer]]
    depends_on: Sequence[str] = ()
    description: str = ""
