"""The tenant's tool registry: which built-in tools a caller may use in a graph, and calling them safely.

A tool is *available* to the current caller (:func:`isthmus_core.auth.context.current_access`) in a
tenant and a graph when it is switched on (``http_get`` only with ``http_get_enabled`` and a non-empty
``http_get_allow``; ``subagent`` only once the runtime gave its ``run_graph`` callback and
``subagent_max_depth`` > 0), the graph is in its allow-list (``settings.tool_graphs``; absent = every
graph) and the caller holds its permission there (``search``/``calculator``/``subagent``: ``search``;
``http_get``: ``tools.external``).

:meth:`TenantToolRegistry.invoke` never raises (but for cancellation): it checks the same three things
again, validates the arguments against the tool's model (a bad field → ``ToolResult(ok=False)`` naming
it), runs the call under the tool's time-out and turns every failure into ``ToolResult(ok=False, reason)``
— a result the agents reason over, not an error of the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from isthmus_agent_orchestrator.agents.tools.builtins import (
    CalculatorTool,
    HttpGetTool,
    RunGraph,
    SearchTool,
    SubagentTool,
)
from isthmus_agent_orchestrator.agents.types import Tool, ToolContext, ToolResult, ToolSpec
from isthmus_agent_orchestrator.pipeline import Searcher
from isthmus_agent_orchestrator.settings import OrchestratorSettings
from isthmus_core.auth.context import current_access
from isthmus_core.auth.identity import Permission
from isthmus_core.errors import IsthmusError

log = structlog.get_logger("isthmus.agents.tools")

#: the permission a caller needs (in the run's tenant) to use each built-in tool
TOOL_PERMISSIONS: Mapping[str, Permission] = {
    SearchTool.name: Permission.SEARCH,
    CalculatorTool.name: Permission.SEARCH,
    SubagentTool.name: Permission.SEARCH,
    HttpGetTool.name: Permission.TOOLS_EXTERNAL,
}

_MAX_REASON_CHARS = 300
_MAX_REPORTED_ERRORS = 3


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool as ``ListTools`` shows it. ``enabled``: switched on and usable by the current caller in
    the tenant (``permission`` held there)."""

    name: str
    description: str
    arguments_schema_json: str
    sensitive: bool
    permission: str
    #: the graphs that may call it; empty = every graph
    graphs: tuple[str, ...]
    enabled: bool


def tool_spec(tool: Tool) -> ToolSpec:
    """What a chat model is told of ``tool``: its name, description and arguments' JSON schema."""
    return ToolSpec(tool.name, tool.description, tool.args_model.model_json_schema())


def _validation_text(tool: str, exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<arguments>'}: {err['msg']}"
        for err in exc.errors()[:_MAX_REPORTED_ERRORS]
    ]
    more = exc.error_count() - len(problems)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"invalid arguments for {tool}: {'; '.join(problems)}{suffix}"


def _failure_text(tool: str, exc: Exception) -> str:
    reason = exc.reason if isinstance(exc, IsthmusError) else f"{type(exc).__name__}: {exc}"
    reason = " ".join(reason.split())
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 1] + "…"
    return f"{tool} failed: {reason}"


@dataclass(slots=True)
class _Entry:
    tool: Tool
    permission: Permission
    switched_on: bool


class TenantToolRegistry:
    """The built-in tools, filtered per tenant, graph and caller (implements ``ToolRegistry``).

    ``run_graph``: the runtime's callback for ``subagent`` (also settable later with
    :meth:`bind_run_graph`, since the runtime is usually built after the registry it uses).
    ``http_transport``: an httpx transport for ``http_get`` (tests); None = the network."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        searcher: Searcher,
        *,
        run_graph: RunGraph | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        s = settings
        sensitive = set(s.sensitive_tools)
        self._graphs: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in s.tool_graphs.items()}
        self._max_depth = s.subagent_max_depth
        self._timeout_s = s.tool_timeout_s
        #: a sub-run is a whole run: it gets the run's wall budget when that is longer than a tool's
        self._subagent_timeout_s = max(s.tool_timeout_s, s.budget_max_wall_s)
        tools: list[tuple[Tool, bool]] = [
            (SearchTool(searcher, sensitive="search" in sensitive, timeout_s=s.tool_timeout_s), True),
            (CalculatorTool(sensitive="calculator" in sensitive, timeout_s=s.tool_timeout_s), True),
            (
                HttpGetTool(
                    s.http_get_allow,
                    max_bytes=s.http_get_max_bytes,
                    sensitive="http_get" in sensitive,
                    timeout_s=s.tool_timeout_s,
                    transport=http_transport,
                ),
                # with nothing allowed it could only fail: not offered
                s.http_get_enabled and bool(s.http_get_allow),
            ),
        ]
        self._tools: dict[str, _Entry] = {t.name: _Entry(t, TOOL_PERMISSIONS[t.name], on) for t, on in tools}
        self._subagent_sensitive = "subagent" in sensitive
        if run_graph is not None:
            self.bind_run_graph(run_graph)

    def bind_run_graph(self, run_graph: RunGraph) -> None:
        """Add (or replace) the ``subagent`` tool, running graphs through ``run_graph``."""
        tool = SubagentTool(
            run_graph,
            max_depth=self._max_depth,
            sensitive=self._subagent_sensitive,
            timeout_s=self._subagent_timeout_s,
        )
        self._tools[tool.name] = _Entry(tool, TOOL_PERMISSIONS[tool.name], self._max_depth > 0)

    # ---- ToolRegistry -----------------------------------------------------------------------------------

    def _refusal(self, entry: _Entry, tenant_id: str, graph: str) -> str:
        """Why the current caller may not use ``entry`` in this tenant and graph ("" = it may)."""
        name = entry.tool.name
        if not entry.switched_on:
            return f"tool {name} is not enabled"
        allowed = self._graphs.get(name)
        if allowed is not None and graph not in allowed:
            return f"tool {name} is not allowed in graph {graph!r}"
        if not current_access().can(tenant_id, entry.permission):
            return f"tool {name} needs the {entry.permission.value} permission in tenant {tenant_id!r}"
        return ""

    def available(self, tenant_id: str, graph: str) -> list[Tool]:
        return [e.tool for e in self._tools.values() if not self._refusal(e, tenant_id, graph)]

    def get(self, tenant_id: str, graph: str, name: str) -> Tool | None:
        entry = self._tools.get(name)
        if entry is None or self._refusal(entry, tenant_id, graph):
            return None
        return entry.tool

    async def invoke(self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        entry = self._tools.get(tool.name)
        if entry is None:
            return ToolResult(ok=False, text=f"unknown tool {tool.name!r}")
        refusal = self._refusal(entry, ctx.tenant_id, ctx.graph)
        if refusal:
            return ToolResult(ok=False, text=refusal)
        registered = entry.tool
        if not isinstance(arguments, Mapping):
            return ToolResult(ok=False, text=f"invalid arguments for {registered.name}: expected an object")
        try:
            args: BaseModel = registered.args_model.model_validate(dict(arguments))
        except ValidationError as exc:
            return ToolResult(ok=False, text=_validation_text(registered.name, exc))
        try:
            async with asyncio.timeout(registered.timeout_s):
                result = await registered.call(args, ctx)
        except TimeoutError:
            log.info("tool timed out", tool=registered.name, tenant=ctx.tenant_id, run=ctx.run_id)
            return ToolResult(ok=False, text=f"{registered.name} timed out after {registered.timeout_s:g} s")
        except Exception as exc:  # every failure is a result the agents reason over
            log.warning(
                "tool failed", tool=registered.name, tenant=ctx.tenant_id, run=ctx.run_id, error=repr(exc)
            )
            return ToolResult(ok=False, text=_failure_text(registered.name, exc))
        if not isinstance(result, ToolResult):
            return ToolResult(ok=False, text=f"{registered.name} failed: it returned no result")
        return result

    # ---- ListTools ----------------------------------------------------------------------------------------

    def infos(self, tenant_id: str) -> list[ToolInfo]:
        """Every tool (switched on or not), with what the current caller may do with it in ``tenant_id``."""
        access = current_access()
        return [
            ToolInfo(
                name=e.tool.name,
                description=e.tool.description,
                arguments_schema_json=json.dumps(e.tool.args_model.model_json_schema(), sort_keys=True),
                sensitive=e.tool.sensitive,
                permission=e.permission.value,
                graphs=self._graphs.get(e.tool.name, ()),
                enabled=e.switched_on
                and self._graphs.get(e.tool.name) != ()  # an empty allow-list: no graph may call it
                and access.can(tenant_id, e.permission),
            )
            for e in self._tools.values()
        ]
