"""The built-in agent tools: calculator (numbers only, bounded), search (the run's tenant and principals),
subagent (depth and self-call limits) and http_get's URL normalisation and allow-list."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from isthmus_agent_orchestrator.agents.tools.builtins import (
    CalculatorArgs,
    CalculatorRefused,
    CalculatorTool,
    SearchArgs,
    SearchTool,
    SubagentArgs,
    SubagentTool,
    UrlAllowList,
    UrlRefused,
    calculate,
    normalize_url,
)
from isthmus_agent_orchestrator.agents.types import ToolContext, ToolResult
from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.generator import Context

CTX = ToolContext(tenant_id="acme", run_id="a" * 32, graph="react", principals=("alice",), top_k=3)


# ---- calculator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("10 / 4", 2.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 2)", 3.14),
        ("2 ** -1", 0.5),
    ],
)
def test_calculator_computes_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "x + 1",  # names
        "__import__('os')",  # functions outside the allow-list
        "(1).__class__",  # attributes
        "pi.__class__.__bases__",
        "'a' * 10",  # strings
        "[1, 2][0]",  # lists, subscripts
        "1 if 1 else 2",
        "1 < 2",  # comparisons
        "True + 1",  # booleans are not numbers here
        "lambda: 1",
        "sqrt(x=4)",  # keywords
        "a = 1",  # statements
        "1; 2",
        "",
    ],
)
def test_calculator_refuses_anything_but_numbers(expression: str) -> None:
    with pytest.raises(CalculatorRefused):
        calculate(expression)


@pytest.mark.parametrize(
    "expression",
    ["9 ** 9 ** 9", "2 ** 100000", "10 ** 999 * 10 ** 999 * 10 ** 999", "(10 ** 600) ** 10", "2.0 ** 1e10"],
)
def test_calculator_refuses_huge_numbers_before_computing_them(expression: str) -> None:
    with pytest.raises(CalculatorRefused):
        calculate(expression)


@pytest.mark.parametrize("expression", ["1 / 0", "log(0)", "sqrt(-1)", "exp(1000)", "10.0 ** 400"])
def test_calculator_reports_arithmetic_errors_as_refusals(expression: str) -> None:
    with pytest.raises(CalculatorRefused, match="cannot compute"):
        calculate(expression)


async def test_calculator_tool_answers_with_the_value_or_why_not() -> None:
    tool = CalculatorTool()
    ok = await tool.call(CalculatorArgs(expression="6 * 7"), CTX)
    assert ok.ok and ok.data == {"value": 42} and "42" in ok.text
    refused = await tool.call(CalculatorArgs(expression="os.system"), CTX)
    assert not refused.ok and "not allowed" in refused.text


# ---- search ----------------------------------------------------------------------------------------------


class RecordingSearcher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, tuple[str, ...]]] = []

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        self.calls.append((tenant_id, query, top_k, tuple(principals)))
        return [
            Context(f"c{i}", f"d{i}", f"passage {i} about {query}", title=f"Doc {i}") for i in range(top_k)
        ]


async def test_search_uses_the_runs_tenant_and_principals_and_returns_contexts() -> None:
    searcher = RecordingSearcher()
    tool = SearchTool(searcher)
    result = await tool.call(SearchArgs(query="gliders"), CTX)
    assert searcher.calls == [("acme", "gliders", 3, ("alice",))]  # top_k: the request's
    assert result.ok and [c.chunk_id for c in result.contexts] == ["c0", "c1", "c2"]
    assert result.text.splitlines()[0] == "3 passages found:" and "[1] Doc 0: passage 0" in result.text
    await tool.call(SearchArgs(query="x", top_k=7), CTX)
    assert searcher.calls[-1][2] == 7


def test_search_args_bound_top_k() -> None:
    with pytest.raises(ValueError, match="top_k"):
        SearchArgs(query="x", top_k=51)
    schema = SearchArgs.model_json_schema()
    assert schema["properties"]["query"]["description"]  # what models see


# ---- subagent ----------------------------------------------------------------------------------------------


async def test_subagent_runs_another_graph_one_level_deeper() -> None:
    seen: list[tuple[str, str, ToolContext]] = []

    async def run_graph(graph: str, question: str, ctx: ToolContext) -> ToolResult:
        seen.append((graph, question, ctx))
        return ToolResult(ok=True, text=f"{graph} answered")

    tool = SubagentTool(run_graph, max_depth=2)
    result = await tool.call(SubagentArgs(graph="rag", question="what?"), CTX)
    assert result.ok and result.text == "rag answered"
    assert seen[0][:2] == ("rag", "what?") and seen[0][2].depth == 1 and seen[0][2].tenant_id == "acme"

    itself = await tool.call(SubagentArgs(graph="react", question="what?"), CTX)
    assert not itself.ok and "itself" in itself.text
    too_deep = await tool.call(SubagentArgs(graph="rag", question="what?"), dataclasses.replace(CTX, depth=2))
    assert not too_deep.ok and "depth 2" in too_deep.text
    assert len(seen) == 1  # neither refused call ran a graph


# ---- http_get: URLs --------------------------------------------------------------------------------

ALLOW = UrlAllowList(["https://docs.example/api/", "http://intranet.example:8080/wiki"])


@pytest.mark.parametrize(
    "url",
    [
        "https://docs.example/api/v1?q=1",
        "HTTPS://DOCS.example:443/api/v1",  # case and the default port
        "https://docs.example./api/x",  # a trailing dot on the host
        "http://intranet.example:8080/wiki",
        "http://intranet.example:8080/wiki/Page#section",
        "https://docs.example/api/%76%31",  # an encoded letter is still under the prefix
    ],
)
def test_allowed_urls_pass_after_normalisation(url: str) -> None:
    assert ALLOW.check(url).host in {"docs.example", "intranet.example"}


@pytest.mark.parametrize(
    "url",
    [
        "https://docs.example@evil.example/api/",  # user-info: the host is evil.example
        "https://docs.example:443@evil.example/api/",
        "https://evil.example#@docs.example/api/",
        "https://evil.example?@docs.example/api/",
        "https://docs.example.evil.example/api/",
        "https://docs.example/api/..%2fadmin",
        "https://docs.example/api/..%2Fadmin",
        "https://docs.example/api/%2e%2e/admin",
        "https://docs.example/api/../admin",
        "https://docs.example/api/./../admin",
        "https://docs.example/api/..;/admin",
        "https://docs.example/api/%252e%252e/admin",  # double encoding
        "https://docs.example/api\\..\\admin",
        "https://docs.example/apix",
        "http://docs.example/api/",  # another scheme (and port)
        "https://docs.example:8443/api/",
        "http://intranet.example:8080/wikis",  # a prefix without '/' ends on a segment boundary
        "http://intranet.example/wiki",
        "https://docs.example/api/ x",
        "https://docs.example/api/%00",
        "https://dócs.example/api/",
        "file:///etc/passwd",
        "https://%64ocs.example/api/",
        "//docs.example/api/",
        "https://docs.example:99999/api/",
    ],
)
def test_allow_list_bypass_attempts_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        ALLOW.check(url)


def test_normalised_url_is_what_is_fetched() -> None:
    assert str(normalize_url("HTTPS://Docs.Example:443/api/v1?q=1#frag")) == "https://docs.example/api/v1?q=1"
    assert str(normalize_url("http://[::1]:8080/x")) == "http://[::1]:8080/x"


@pytest.mark.parametrize("prefix", ["ftp://x.example/", "https://a@x.example/", "https://x.example/?q=1"])
def test_unusable_prefixes_are_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        UrlAllowList([prefix])
