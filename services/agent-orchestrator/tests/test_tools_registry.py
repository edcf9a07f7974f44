"""TenantToolRegistry: tools filtered by switch, graph allow-list and the caller's permission in the
tenant; invoke never raises (bad arguments, time-outs and failures are ``ToolResult(ok=False)``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import pytest

from isthmus_agent_orchestrator.agents.tools.registry import TenantToolRegistry, tool_spec
from isthmus_agent_orchestrator.agents.types import Tool, ToolContext, ToolResult
from isthmus_agent_orchestrator.settings import OrchestratorSettings
from isthmus_core.auth.context import Access, acting_as
from isthmus_core.auth.identity import Permission, Principal
from isthmus_core.errors import ConfigurationError, Unavailable
from isthmus_core.ports.generator import Context

CTX = ToolContext(tenant_id="acme", run_id="a" * 32, graph="react", principals=("alice",), top_k=2)


class Grants:
    """An authorizer granting exactly ``(tenant, permission)`` pairs."""

    def __init__(self, *grants: tuple[str, Permission]) -> None:
        self.grants = set(grants)

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        return (tenant, permission) in self.grants

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        return any(p == permission for _, p in self.grants)

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        return frozenset(t for t, p in self.grants if p == permission)


def as_(*grants: tuple[str, Permission]) -> Access:
    return Access(Principal("alice", "jwt"), Grants(*grants))


class Searcher:
    def __init__(self, *, fail: BaseException | None = None, stall: bool = False) -> None:
        self.fail = fail
        self.stall = stall
        self.calls = 0

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.stall:
            await asyncio.Event().wait()
        return [Context("c1", "d1", f"about {query}")]


def registry(searcher: Searcher | None = None, **settings: Any) -> TenantToolRegistry:
    return TenantToolRegistry(OrchestratorSettings(**settings), searcher or Searcher())


def tool(reg: TenantToolRegistry, name: str, graph: str = "react") -> Tool:
    found = reg.get("acme", graph, name)
    assert found is not None, name
    return found


def names(reg: TenantToolRegistry, tenant: str = "acme", graph: str = "react") -> list[str]:
    return [t.name for t in reg.available(tenant, graph)]


def test_http_get_is_off_by_default_and_sensitive_by_default() -> None:
    reg = registry()
    assert names(reg) == ["search", "calculator"]  # no subagent until the runtime binds run_graph
    assert reg.get("acme", "react", "http_get") is None
    assert registry(http_get_enabled=True).get("acme", "react", "http_get") is None  # nothing allowed
    on = registry(http_get_enabled=True, http_get_allow=["https://docs.example/"])
    assert names(on) == ["search", "calculator", "http_get"]
    http_get = on.get("acme", "react", "http_get")
    assert http_get is not None and http_get.sensitive
    assert not tool(on, "search").sensitive


def test_tools_need_their_permission_in_the_tenant() -> None:
    reg = registry(http_get_enabled=True, http_get_allow=["https://docs.example/"])
    with acting_as(as_(("acme", Permission.SEARCH))):
        assert names(reg) == ["search", "calculator"]
        assert names(reg, tenant="other") == []
        assert reg.get("acme", "react", "http_get") is None
    with acting_as(as_(("acme", Permission.SEARCH), ("acme", Permission.TOOLS_EXTERNAL))):
        assert names(reg) == ["search", "calculator", "http_get"]
    with acting_as(as_(("acme", Permission.TOOLS_EXTERNAL))):
        assert names(reg) == ["http_get"]


def test_graph_allow_list() -> None:
    reg = registry(tool_graphs={"calculator": ["plan-execute"], "search": []})
    assert names(reg, graph="react") == []
    assert names(reg, graph="plan-execute") == ["calculator"]


async def test_subagent_is_bound_by_the_runtime() -> None:
    async def run_graph(graph: str, question: str, ctx: ToolContext) -> ToolResult:
        return ToolResult(ok=True, text=f"{graph}@{ctx.depth}: {question}")

    reg = registry()
    reg.bind_run_graph(run_graph)
    sub = reg.get("acme", "react", "subagent")
    assert sub is not None and sub.timeout_s == 60.0  # a sub-run gets a run's wall budget
    result = await reg.invoke(sub, {"graph": "rag", "question": "why?"}, CTX)
    assert result == ToolResult(ok=True, text="rag@1: why?")
    off = registry(subagent_max_depth=0)
    off.bind_run_graph(run_graph)
    assert off.get("acme", "react", "subagent") is None


async def test_invoke_validates_arguments_naming_the_bad_field() -> None:
    searcher = Searcher()
    reg = registry(searcher)
    search = reg.get("acme", "react", "search")
    assert search is not None
    for arguments, field in (
        ({"query": "x", "top_k": 500}, "top_k"),
        ({"top_k": 1}, "query"),
        ({"query": "x", "shell": "rm"}, "shell"),
    ):
        result = await reg.invoke(search, arguments, CTX)
        assert not result.ok and result.text.startswith("invalid arguments for search")
        assert field in result.text
    assert searcher.calls == 0
    ok = await reg.invoke(search, {"query": "gliders"}, CTX)
    assert ok.ok and ok.contexts[0].text == "about gliders"


async def test_invoke_turns_failures_and_time_outs_into_results() -> None:
    failing = registry(Searcher(fail=Unavailable("retrieval is down")))
    result = await failing.invoke(tool(failing, "search"), {"query": "x"}, CTX)
    assert result == ToolResult(ok=False, text="search failed: retrieval is down")

    crashing = registry(Searcher(fail=RuntimeError("boom")))
    result = await crashing.invoke(tool(crashing, "search"), {"query": "x"}, CTX)
    assert not result.ok and "RuntimeError: boom" in result.text

    stalled = registry(Searcher(stall=True), tool_timeout_s=0.01)
    result = await stalled.invoke(tool(stalled, "search"), {"query": "x"}, CTX)
    assert not result.ok and "timed out" in result.text


async def test_invoke_rechecks_permission_switch_and_graph() -> None:
    reg = registry(tool_graphs={"calculator": ["react"]})
    calculator = reg.get("acme", "react", "calculator")
    assert calculator is not None
    assert (await reg.invoke(calculator, {"expression": "1+1"}, CTX)).ok
    with acting_as(as_(("other", Permission.SEARCH))):
        denied = await reg.invoke(calculator, {"expression": "1+1"}, CTX)
    assert not denied.ok and "permission" in denied.text
    reflect = dataclasses.replace(CTX, graph="reflect")
    elsewhere = await reg.invoke(calculator, {"expression": "1+1"}, reflect)
    assert not elsewhere.ok and "not allowed in graph" in elsewhere.text
    off = registry()
    http_get = tool(registry(http_get_enabled=True, http_get_allow=["https://docs.example/"]), "http_get")
    result = await off.invoke(http_get, {"url": "https://docs.example/"}, CTX)
    assert not result.ok and "not enabled" in result.text


def test_infos_list_every_tool_with_schema_and_what_the_caller_may_do() -> None:
    reg = registry(tool_graphs={"calculator": ["react"]})
    with acting_as(as_(("acme", Permission.SEARCH))):
        infos = {i.name: i for i in reg.infos("acme")}
    assert list(infos) == ["search", "calculator", "http_get"]
    assert infos["search"].enabled and infos["search"].permission == "search"
    assert infos["calculator"].graphs == ("react",)
    http_get = infos["http_get"]
    assert not http_get.enabled and http_get.sensitive and http_get.permission == "tools.external"
    schema = json.loads(http_get.arguments_schema_json)
    assert schema["required"] == ["url"] and schema["properties"]["url"]["description"]
    spec = tool_spec(tool(reg, "search"))
    assert spec.name == "search" and "query" in spec.parameters["properties"]


def test_unusable_allow_list_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="http_get_allow"):
        registry(http_get_allow=["https://user@docs.example/"])
