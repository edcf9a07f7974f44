from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.errors import ConfigurationError
from isthmus_core.grpc.server import LIVENESS
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.runtime.runtime import Runtime, check_endpoints, resolve_targets
from isthmus_core.settings import CommonSettings, SectionSettings, section_config


class ASettings(SectionSettings):
    section: ClassVar[str] = "a"
    model_config = section_config("a")


class BSettings(SectionSettings):
    section: ClassVar[str] = "b"
    model_config = section_config("b")


class CSettings(SectionSettings):
    section: ClassVar[str] = "c"
    model_config = section_config("c")


events: list[str] = []


def _module(name: str, settings: type[SectionSettings], depends: tuple[str, ...] = ()) -> Module:
    async def build(ctx: ModuleContext) -> Offer:
        events.append(f"build {name}")

        async def started() -> None:
            events.append(f"start {name}")

        async def stopped() -> None:
            events.append(f"stop {name}")

        return Offer(grpc_service_names=[f"test.{name}"], on_start=[started], on_stop=[stopped])

    return Module(name=name, settings_cls=settings, build=build, depends_on=depends)


MODS = (_module("b", BSettings, ("a",)), _module("a", ASettings))


def test_targets_resolve_in_dependency_order() -> None:
    assert [m.name for m in resolve_targets("all", MODS)] == ["a", "b"]
    assert [m.name for m in resolve_targets("b", MODS)] == ["b"]  # a is reached remotely
    assert [m.name for m in resolve_targets("b, a", MODS)] == ["a", "b"]


def test_unknown_target_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown target.*'c'.*choose 'all' or some of: b, a"):
        resolve_targets("a,c", MODS)
    with pytest.raises(ConfigurationError, match="no target"):
        resolve_targets(" , ", MODS)


async def test_all_target_runs_in_process_and_stops_gracefully(tmp_path: Path) -> None:
    events.clear()
    rt = Runtime.from_settings(
        "all", MODS, overrides={"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": 0}}
    )
    await rt.start()
    assert isinstance(rt.bus, InProcessBus)
    async with grpc.aio.insecure_channel(rt.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        r = await health.Check(health_pb2.HealthCheckRequest(service="test.b"))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        await rt.stop()
    assert events == ["build a", "build b", "start a", "start b", "stop b", "stop a"]


async def test_single_target_defaults_to_kafka(tmp_path: Path) -> None:
    rt = Runtime.from_settings("a", MODS, overrides={"common": {"data_dir": str(tmp_path)}})
    assert not rt.all_in_one
    from isthmus_core.runtime.runtime import make_bus

    assert type(make_bus(rt.common, rt.all_in_one)).__name__ == "KafkaBus"


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = Runtime.from_settings(
        "all", MODS, overrides={"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": 0}}
    )
    await first.start()
    try:
        port = int(first.address.rsplit(":", 1)[1])
        second = Runtime.from_settings(
            "all",
            MODS,
            overrides={"common": {"data_dir": str(tmp_path), "grpc_port": port, "metrics_port": 0}},
        )
        with pytest.raises(OSError, match=str(port)):
            await second.start()
    finally:
        await first.stop()


async def test_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = Runtime.from_settings(
        "all", MODS, overrides={"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": port}}
    )
    await rt.start()
    try:
        async with grpc.aio.insecure_channel(rt.address) as ch:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="test.a"))
        url = f"http://127.0.0.1:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await rt.stop()
    assert "isthmus_grpc_requests_total" in body and "isthmus_bus_messages_total" in body
    assert "isthmus_bus_consumer_lag" in body


# --- typed seams: settings, declared channels, endpoints of split targets --------------------------------

seen: dict[str, object] = {}


def _calling(
    name: str, settings: type[SectionSettings], depends: tuple[str, ...], calls: tuple[str, ...]
) -> Module[SectionSettings]:
    """A module whose build opens a channel to each of ``calls`` and records what it got."""

    async def build(ctx: ModuleContext[SectionSettings]) -> Offer:
        seen[f"{name}.settings"] = ctx.settings
        for service in calls:
            ctx.channel(service)
            seen[f"{name}->{service}"] = ctx.address(service)
        return Offer(grpc_service_names=[f"test.{name}"])

    return Module(name=name, settings_cls=settings, build=build, depends_on=depends)


def _common(tmp_path: Path, **more: object) -> dict[str, dict[str, object]]:
    return {"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": 0, **more}}


async def test_build_gets_its_own_settings_class(tmp_path: Path) -> None:
    seen.clear()
    mods = (_calling("a", ASettings, (), ()), _calling("c", CSettings, ("a",), ("a",)))
    rt = Runtime.from_settings("all", mods, overrides=_common(tmp_path))
    await rt.start()
    await rt.stop()
    assert type(seen["a.settings"]) is ASettings and type(seen["c.settings"]) is CSettings
    assert seen["c->a"] == rt.address, "a dependency inside the target is this process's own port"


def test_a_module_s_context_refuses_another_section_s_settings(tmp_path: Path) -> None:
    from isthmus_core.bus.inprocess import InProcessBus
    from isthmus_core.grpc.client import Channels

    mod = _calling("c", CSettings, (), ())
    common = CommonSettings(data_dir=tmp_path)
    wrong = r"module 'c' needs its \[c\] settings as CSettings, got BSettings"
    with pytest.raises(ConfigurationError, match=wrong):
        mod.context({"c": BSettings()}, common, InProcessBus(), Channels({}, "127.0.0.1:1"))
    with pytest.raises(ConfigurationError, match="got nothing"):
        mod.context({}, common, InProcessBus(), Channels({}, "127.0.0.1:1"))


async def test_a_module_opens_channels_only_to_what_it_declares(tmp_path: Path) -> None:
    seen.clear()
    mods = (_calling("a", ASettings, (), ()), _calling("c", CSettings, ("a",), ("a", "b")))
    rt = Runtime.from_settings("all", mods, overrides=_common(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        await rt.start()
    reason = str(info.value)
    assert "module 'c' asked for a channel to 'b'" in reason
    assert "does not declare in depends_on (it declares: a)" in reason
    assert "c->a" in seen and "c->b" not in seen


async def test_a_split_target_needs_an_address_for_every_outside_dependency(tmp_path: Path) -> None:
    seen.clear()
    mods = (
        _calling("a", ASettings, (), ()),
        _calling("b", BSettings, (), ()),
        _calling("c", CSettings, ("a", "b"), ("a", "b")),
    )
    rt = Runtime.from_settings("c", mods, overrides=_common(tmp_path, bus="inprocess"))
    with pytest.raises(ConfigurationError) as info:
        await rt.start()
    reason = str(info.value)
    assert "a (called by c); b (called by c)" in reason, "every missing endpoint, in one error"
    assert "ISTHMUS_ENDPOINTS" in reason
    assert seen == {} and rt.server is None, "refused before anything is built or bound"

    partly = Runtime.from_settings(
        "c", mods, overrides=_common(tmp_path, bus="inprocess", endpoints={"a": "10.0.0.1:50051"})
    )
    with pytest.raises(ConfigurationError, match=r"address for: b \(called by c\)\. Give"):
        await partly.start()

    configured = {"a": "10.0.0.1:50051", "b": "10.0.0.2:50051"}
    rt = Runtime.from_settings("c", mods, overrides=_common(tmp_path, bus="inprocess", endpoints=configured))
    await rt.start()
    await rt.stop()
    assert seen["c->a"] == "10.0.0.1:50051" and seen["c->b"] == "10.0.0.2:50051"


def test_endpoints_are_needed_only_outside_the_target() -> None:
    a = _calling("a", ASettings, (), ())
    c = _calling("c", CSettings, ("a",), ())
    check_endpoints([a, c], {})  # a runs in this process
    check_endpoints([c], {"a": "a:50051"})
    with pytest.raises(ConfigurationError, match=r"target c depends on services it does not run"):
        check_endpoints([c], {"b": "b:50051"})


async def test_a_split_target_is_not_ready_while_a_dependency_is_down(tmp_path: Path) -> None:
    """Readiness follows the services a split target depends on: NOT_SERVING (its own services and the
    overall health, what the kubelet's readiness probe asks) while one is down, SERVING once it is back."""
    mods = (_calling("a", ASettings, (), ()), _calling("c", CSettings, ("a",), ()))
    a = Runtime.from_settings("a", mods, overrides=_common(tmp_path / "a", bus="inprocess"))
    await a.start()
    port = a.server.port if a.server else 0
    c = Runtime.from_settings(
        "c", mods, overrides=_common(tmp_path / "c", bus="inprocess", endpoints={"a": a.address})
    )
    await c.start()
    channel = grpc.aio.insecure_channel(c.address)
    health = health_pb2_grpc.HealthStub(channel)

    async def status(name: str) -> int:
        return (await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        assert await status("") == serving and await status("test.c") == serving
        await a.stop()
        assert await c.check_readiness() is False
        assert await status("") == not_serving and await status("test.c") == not_serving
        assert await status(LIVENESS) == serving, "liveness is the process's own: nothing restarts it"
        back = Runtime.from_settings(
            "a", mods, overrides=_common(tmp_path / "a", bus="inprocess", grpc_port=port)
        )
        await back.start()
        try:
            assert await c.check_readiness() is True
            assert await status("") == serving and await status("test.c") == serving
        finally:
            await back.stop()
    finally:
        await channel.close()
        await c.stop()
