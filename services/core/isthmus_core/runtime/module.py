"""What a service registers with the runtime: one :class:`Module` per service.

Modelled on Grafana Loki's targets: a module declares its settings section, what it depends on, and a
``build`` coroutine that wires its parts from a :class:`ModuleContext` and returns what it offers — gRPC
servicers, bus subscriptions, topics, start/stop hooks. ``isthmus run --target all`` builds every module
into one process; ``--target retrieval`` builds one. The code path is the same.

A module is generic in its settings section: ``Module[RetrievalSettings]``'s ``build`` receives a
``ModuleContext[RetrievalSettings]``, so ``ctx.settings`` is already the service's own settings class
(checked once, here, by :meth:`Module.context`). ``ctx.channel(service)`` opens channels only to the
services the module declares in ``depends_on``; the runtime refuses to start a target whose
dependencies outside it have no address (see :func:`isthmus_core.runtime.runtime.check_endpoints`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar

import grpc

from isthmus_core.auth.stack import AuthStack
from isthmus_core.bus.port import EventBus, Subscription
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import ConfigurationError
from isthmus_core.grpc.client import Channels
from isthmus_core.settings import CommonSettings, SectionSettings

Hook = Callable[[], Awaitable[None]]
#: a readiness probe: False while a dependency the module cannot work without is down
Probe = Callable[[], Awaitable[bool]]


SettingsT = TypeVar("SettingsT", bound=SectionSettings)


@dataclass
class ModuleContext(Generic[SettingsT]):
    """What ``build`` gets: its own settings section (typed), the common settings, the bus, and
    channels to the services it declared in ``depends_on`` (no other: see :meth:`channel`)."""

    settings: SettingsT
    common: CommonSettings
    bus: EventBus
    _channels: Channels = field(repr=False)
    data_dir: Path
    #: the module being built and the services it declared in ``depends_on``
    module: str
    depends_on: tuple[str, ...]
    #: the process's quota gate and audit sink (and who is authenticated how): isthmus_core.auth.stack
    auth: AuthStack = field(default_factory=AuthStack)

    def channel(self, service: str) -> grpc.aio.Channel:
        """A channel to a service this module depends on (in ``all``, this process's own port).

        Raises :class:`ConfigurationError` for a service missing from the module's ``depends_on``: the
        runtime only checks the addresses of declared dependencies, so an undeclared call would find
        no server in a split deployment."""
        return self._channels.for_service(self._declared(service))

    def address(self, service: str) -> str:
        """The gRPC address ``channel(service)`` dials (same check)."""
        return self._channels.address(self._declared(service))

    def _declared(self, service: str) -> str:
        if service not in self.depends_on:
            declared = ", ".join(self.depends_on) or "nothing"
            raise ConfigurationError(
                f"module {self.module!r} asked for a channel to {service!r}, which it does not declare "
                f"in depends_on (it declares: {declared}); add {service!r} to its Module(depends_on=...)"
            )
        return service


@dataclass
class Offer:
    """What a built module offers the runtime."""

    registrars: list[Callable[[grpc.aio.Server], None]] = field(default_factory=list)
    grpc_service_names: list[str] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    topics: list[AnyTopic] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    #: while any probe is False the module's gRPC services (and the server's overall health) report
    #: NOT_SERVING, so load balancers route elsewhere; probed every ``probe_interval_s`` seconds
    probes: list[Probe] = field(default_factory=list)
    probe_interval_s: float = 5.0


@dataclass(frozen=True)
class Module(Generic[SettingsT]):
    name: str  # kebab-case: folder = image = chart key = target
    settings_cls: type[SettingsT]
    build: Callable[[ModuleContext[SettingsT]], Awaitable[Offer]]
    #: the services this module calls over gRPC: in its target, or at an address in ``ISTHMUS_ENDPOINTS``
    depends_on: Sequence[str] = ()
    description: str = ""

    def context(
        self,
        sections: Mapping[str, SectionSettings],
        common: CommonSettings,
        bus: EventBus,
        channels: Channels,
        auth: AuthStack | None = None,
    ) -> ModuleContext[SettingsT]:
        """The context ``build`` gets, with this module's own section checked against ``settings_cls``."""
        settings = sections.get(self.settings_cls.section)
        if not isinstance(settings, self.settings_cls):
            got = "nothing" if settings is None else type(settings).__name__
            raise ConfigurationError(
                f"module {self.name!r} needs its [{self.settings_cls.section}] settings as "
                f"{self.settings_cls.__name__}, got {got}"
            )
        return ModuleContext(
            settings,
            common,
            bus,
            channels,
            common.data_dir,
            module=self.name,
            depends_on=tuple(self.depends_on),
            auth=auth or AuthStack(),
        )


#: a module of any settings type (for lists of modules: the composition root, the runtime)
AnyModule: TypeAlias = Module[Any]
