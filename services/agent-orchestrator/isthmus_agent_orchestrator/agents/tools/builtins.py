"""The built-in agent tools: ``search``, ``calculator``, ``http_get`` and ``subagent``.

Each tool is a :class:`~isthmus_agent_orchestrator.agents.types.Tool`: a pydantic arguments model (its JSON
schema, with the fields' descriptions, is what a model sees), a ``sensitive`` flag (every call of a
sensitive tool waits for a person's approval; ``settings.sensitive_tools``) and a time-out
(``settings.tool_timeout_s``). A tool's ``call`` gets validated arguments; the registry
(:mod:`.registry`) validates, applies the time-out and turns every failure into ``ToolResult(ok=False)``.

* ``search`` — the tenant's documents through the :class:`~isthmus_agent_orchestrator.pipeline.Searcher`
  port, with the run's tenant and principals (document ACLs): the caller's scope, never wider.
* ``calculator`` — arithmetic on numbers only (simpleeval behind an AST allow-list: no names but ``pi``
  and ``e``, no attributes, subscripts, strings or comparisons, a few math functions; bounded powers and
  integer sizes).
* ``http_get`` — off unless ``http_get_enabled``; fetches only URLs under an allow-listed prefix, compared
  after normalisation (user-info, encoded slashes and dot segments are refused, so
  ``http://allowed.example@evil/`` or ``/docs/..%2fadmin`` never pass); redirects are followed only to
  allowed URLs; at most ``http_get_max_bytes`` are read (the rest is cut, while streaming; a gzip body
  is decompressed with the same bound); only ``text/*`` and JSON bodies. Sensitive by default.
* ``subagent`` — runs another graph on a sub-question through a ``run_graph`` callback the runtime gives;
  refuses the calling graph itself and depths beyond ``subagent_max_depth``.
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import math
import operator
import re
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field
from simpleeval import InvalidExpression, SimpleEval

from isthmus_agent_orchestrator.agents.types import GRAPH_NAME_PATTERN, ToolContext, ToolResult
from isthmus_agent_orchestrator.pipeline import Searcher
from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.generator import Context

#: what the subagent tool calls: run ``graph`` on ``question`` as a sub-run at ``ctx.depth``
RunGraph = Callable[[str, str, ToolContext], Awaitable[ToolResult]]

_SNIPPET_CHARS = 160


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shorten(text: str, limit: int = _SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---- search ---------------------------------------------------------------------------------------------


class SearchArgs(_Args):
    query: str = Field(
        min_length=1, max_length=2000, description="what to look for in the tenant's documents"
    )
    top_k: int | None = Field(
        default=None, ge=1, le=50, description="how many passages to return (default: the request's top_k)"
    )


class SearchTool:
    name = "search"
    description = (
        "Search the tenant's documents; returns the best matching passages (citable) with their sources."
    )
    args_model: type[BaseModel] = SearchArgs

    def __init__(self, searcher: Searcher, *, sensitive: bool = False, timeout_s: float = 10.0) -> None:
        self._searcher = searcher
        self.sensitive = sensitive
        self.timeout_s = timeout_s

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult:
        assert isinstance(args, SearchArgs)
        top_k = args.top_k or max(1, min(ctx.top_k, 50))
        found = await self._searcher.search(ctx.tenant_id, args.query, top_k, ctx.principals)
        return ToolResult(
            ok=True, text=search_summary(found), contexts=tuple(found), data={"count": len(found)}
        )


def search_summary(contexts: Sequence[Context]) -> str:
    if not contexts:
        return "no passages found"
    lines = [f"{len(contexts)} passage{'s' if len(contexts) != 1 else ''} found:"]
    for i, c in enumerate(contexts, 1):
        source = c.title or c.source_name or c.document_id
        lines.append(f"[{i}] {source}: {_shorten(c.text)}")
    return "\n".join(lines)


# ---- calculator -----------------------------------------------------------------------------------------

#: the largest |exponent| and integer size (bits) the calculator works with
MAX_EXPONENT = 1000
MAX_INT_BITS = 4096

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
_NAMES: dict[str, float] = {"pi": math.pi, "e": math.e}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_UNARYOPS = (ast.UAdd, ast.USub)
_MAX_ARGS = 8


class CalculatorRefused(ValueError):
    """The expression is not plain arithmetic, or too large to compute."""


def _checked(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculatorRefused("only numbers are allowed")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorRefused(f"the result exceeds {MAX_INT_BITS} bits")
    return value


def _power(a: Any, b: Any) -> Any:
    if abs(b) > MAX_EXPONENT:
        raise CalculatorRefused(f"exponents are limited to ±{MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a.bit_length() * b > MAX_INT_BITS:
        raise CalculatorRefused(f"the result exceeds {MAX_INT_BITS} bits")
    return _checked(a**b)


def _arith(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        return _checked(fn(_checked(a), _checked(b)))

    return apply


def _unary(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(a: Any) -> Any:
        return _checked(fn(_checked(a)))

    return apply


def _function(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        return _checked(fn(*(_checked(a) for a in args)))

    return apply


_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: _arith(operator.add),
    ast.Sub: _arith(operator.sub),
    ast.Mult: _arith(operator.mul),
    ast.Div: _arith(operator.truediv),
    ast.FloorDiv: _arith(operator.floordiv),
    ast.Mod: _arith(operator.mod),
    ast.Pow: _arith(_power),
    ast.USub: _unary(operator.neg),
    ast.UAdd: _unary(operator.pos),
}


def _allow_listed(node: ast.AST) -> None:
    """Refuse (``CalculatorRefused``) every node but numbers, + - * / // % **, unary ± and calls of the
    allow-listed functions by name — before anything is evaluated."""
    match node:
        case ast.Expression(body=body):
            _allow_listed(body)
        case ast.Constant(value=value):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CalculatorRefused("only numbers are allowed")
        case ast.BinOp(left=left, op=op, right=right) if isinstance(op, _BINOPS):
            _allow_listed(left)
            _allow_listed(right)
        case ast.UnaryOp(op=op, operand=operand) if isinstance(op, _UNARYOPS):
            _allow_listed(operand)
        case ast.Name(id=name, ctx=ast.Load()):
            if name not in _NAMES:
                raise CalculatorRefused(f"unknown name {name!r} (constants: {', '.join(_NAMES)})")
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]):
            if name not in _FUNCTIONS:
                raise CalculatorRefused(f"unknown function {name!r} (functions: {', '.join(_FUNCTIONS)})")
            if len(args) > _MAX_ARGS:
                raise CalculatorRefused(f"at most {_MAX_ARGS} arguments")
            for a in args:
                _allow_listed(a)
        case ast.Attribute():
            raise CalculatorRefused("attributes are not allowed")
        case _:
            raise CalculatorRefused(f"{type(node).__name__} is not allowed: numbers and arithmetic only")


def calculate(expression: str) -> int | float:
    """The value of an arithmetic ``expression``; ``CalculatorRefused`` for anything else (or too big)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorRefused(f"not an arithmetic expression: {exc.msg}") from None
    _allow_listed(tree)
    evaluator = SimpleEval(
        operators=dict(_OPERATORS),
        functions={k: _function(v) for k, v in _FUNCTIONS.items()},
        names=dict(_NAMES),
    )
    evaluator.ATTR_INDEX_FALLBACK = False
    try:
        value = evaluator.eval(expression.strip(), previously_parsed=tree.body)
    except CalculatorRefused:
        raise
    except (ArithmeticError, ValueError, TypeError, InvalidExpression) as exc:
        raise CalculatorRefused(f"cannot compute: {exc}") from None
    result: int | float = _checked(value)
    return result


class CalculatorArgs(_Args):
    expression: str = Field(
        min_length=1,
        max_length=256,
        description="an arithmetic expression: numbers, + - * / // % ** and parentheses; constants pi, e; "
        "functions " + ", ".join(_FUNCTIONS),
    )


class CalculatorTool:
    name = "calculator"
    description = "Evaluate an arithmetic expression exactly (numbers only; no variables or code)."
    args_model: type[BaseModel] = CalculatorArgs

    def __init__(self, *, sensitive: bool = False, timeout_s: float = 10.0) -> None:
        self.sensitive = sensitive
        self.timeout_s = timeout_s

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult:
        assert isinstance(args, CalculatorArgs)
        try:
            value = calculate(args.expression)
        except CalculatorRefused as exc:
            return ToolResult(ok=False, text=f"calculator: {exc}")
        return ToolResult(ok=True, text=f"{args.expression} = {value}", data={"value": value})


# ---- http_get --------------------------------------------------------------------------------------------

_MAX_URL_CHARS = 2048
_MAX_REDIRECTS = 5
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IPV6 = re.compile(r"^[0-9a-f:.]+$")
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|25)", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ACCEPT = {"accept": "text/*, application/json", "accept-encoding": "gzip"}


class UrlRefused(ValueError):
    """A URL http_get will not fetch (malformed, ambiguous or not allow-listed)."""


@dataclass(frozen=True, slots=True)
class NormalUrl:
    """A URL reduced to what decides where it goes: lower-case scheme and host, explicit port, the path
    percent-decoded (for comparison) and as given (for the request), the query; never user-info or a
    fragment."""

    scheme: str
    host: str
    port: int
    path: str
    raw_path: str
    query: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{host}{port}{self.raw_path}{query}"

    def under(self, prefix: NormalUrl) -> bool:
        """Whether this URL lies under ``prefix`` (same origin; path below it on a segment boundary)."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        if prefix.path.endswith("/"):
            return self.path.startswith(prefix.path)
        return self.path == prefix.path or self.path.startswith(prefix.path + "/")


def normalize_url(url: str) -> NormalUrl:
    """``url`` normalised, or ``UrlRefused``: only http(s) with a plain host name or IP, no user-info, no
    encoded slashes, backslashes or ``%25``, no ``.``/``..`` segments (raw or encoded), no control
    characters, no spaces or non-ASCII characters."""
    if len(url) > _MAX_URL_CHARS:
        raise UrlRefused(f"URL longer than {_MAX_URL_CHARS} characters")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in url) or "\\" in url:
        raise UrlRefused("URL has spaces, control, backslash or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UrlRefused("only http and https URLs")
    if "@" in parts.netloc or "%" in parts.netloc:
        raise UrlRefused("URL has user-info or an encoded host")
    host = (parts.hostname or "").rstrip(".")
    if not host or not (_HOST.match(host) or (":" in host and _IPV6.match(host))):
        raise UrlRefused("URL has no valid host")
    raw_path = parts.path or "/"
    if not raw_path.startswith("/"):
        raise UrlRefused("URL path must be absolute")
    if _ENCODED_SEPARATOR.search(raw_path):
        raise UrlRefused("URL path has an encoded slash, backslash or percent sign")
    path = unquote(raw_path)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise UrlRefused("URL path has control characters")
    if any(seg.split(";", 1)[0] in (".", "..") for seg in path.split("/")):
        raise UrlRefused("URL path has dot segments")
    return NormalUrl(
        scheme=scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        path=path,
        raw_path=raw_path,
        query=parts.query,
    )


class UrlAllowList:
    """The URL prefixes http_get may fetch (``scheme://host[:port]/path``), normalised once."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self._prefixes: list[NormalUrl] = []
        for p in prefixes:
            try:
                norm = normalize_url(p)
            except UrlRefused as exc:
                raise ConfigurationError(f"http_get_allow: {p!r} is not a usable URL prefix: {exc}") from None
            if norm.query:
                raise ConfigurationError(f"http_get_allow: {p!r} has a query; prefixes are paths")
            self._prefixes.append(norm)

    def check(self, url: str) -> NormalUrl:
        """``url`` normalised if it lies under an allowed prefix; ``UrlRefused`` otherwise."""
        norm = normalize_url(url)
        if not any(norm.under(p) for p in self._prefixes):
            raise UrlRefused(f"{norm} is not under an allowed prefix")
        return norm


def _charset(name: str | None) -> str:
    try:
        return codecs.lookup(name or "utf-8").name
    except LookupError:
        return "utf-8"


def _allowed_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media == "application/json" or media.endswith("+json")


class HttpGetArgs(_Args):
    url: str = Field(
        min_length=1,
        max_length=_MAX_URL_CHARS,
        description="an absolute http(s) URL under one of the allowed prefixes",
    )


class HttpGetTool:
    name = "http_get"
    description = (
        "Fetch a text or JSON web page by URL (only allow-listed sites; each call needs approval when "
        "sensitive)."
    )
    args_model: type[BaseModel] = HttpGetArgs

    def __init__(
        self,
        allow: Sequence[str],
        *,
        max_bytes: int = 200_000,
        sensitive: bool = True,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow = UrlAllowList(allow)
        self.max_bytes = max_bytes
        self.sensitive = sensitive
        self.timeout_s = timeout_s
        self._transport = transport

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult:
        assert isinstance(args, HttpGetArgs)
        try:
            url = self.allow.check(args.url)
        except UrlRefused as exc:
            return ToolResult(ok=False, text=f"http_get refused: {exc}")
        # trust_env off: no proxies, no .netrc credentials from the environment go to fetched sites
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=self.timeout_s, transport=self._transport
        ) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.stream("GET", str(url), headers=_ACCEPT) as r:
                    if r.is_redirect:
                        location = r.headers.get("location", "")
                        try:
                            url = self.allow.check(urljoin(str(url), location))
                        except UrlRefused as exc:
                            return ToolResult(ok=False, text=f"http_get refused a redirect: {exc}")
                        continue
                    return await self._read(url, r)
        return ToolResult(ok=False, text=f"http_get: more than {_MAX_REDIRECTS} redirects")

    async def _read(self, url: NormalUrl, r: httpx.Response) -> ToolResult:
        content_type = r.headers.get("content-type", "")
        if not r.is_success:
            return ToolResult(ok=False, text=f"http_get: {url} answered HTTP {r.status_code}")
        if not _allowed_type(content_type):
            return ToolResult(
                ok=False, text=f"http_get: {url} is {content_type or 'untyped'}; only text and JSON"
            )
        encoding = r.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip"):
            return ToolResult(ok=False, text=f"http_get: {url} is {encoding}-encoded; only gzip or none")
        # raw bytes, decompressed here with a bound: a small gzip body cannot expand past the cap
        gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        body = bytearray()
        truncated = False
        async for raw in r.aiter_raw():
            body += gunzip.decompress(raw, self.max_bytes - len(body) + 1) if gunzip else raw
            if len(body) > self.max_bytes:
                del body[self.max_bytes :]
                truncated = True
                break
        text = bytes(body).decode(_charset(r.charset_encoding), errors="replace")
        return ToolResult(
            ok=True,
            text=text + (f"\n[cut at {self.max_bytes} bytes]" if truncated else ""),
            data={
                "url": str(url),
                "status": r.status_code,
                "content_type": content_type,
                "bytes": len(body),
                "truncated": truncated,
            },
        )


# ---- subagent --------------------------------------------------------------------------------------------


class SubagentArgs(_Args):
    graph: str = Field(
        pattern=GRAPH_NAME_PATTERN, description="the agent graph to run (another graph than this one)"
    )
    question: str = Field(min_length=1, max_length=2000, description="the sub-question it should answer")


class SubagentTool:
    name = "subagent"
    description = "Ask another agent graph a sub-question; returns its answer and the passages it found."
    args_model: type[BaseModel] = SubagentArgs

    def __init__(
        self, run_graph: RunGraph, *, max_depth: int = 2, sensitive: bool = False, timeout_s: float = 10.0
    ) -> None:
        self._run_graph = run_graph
        self.max_depth = max_depth
        self.sensitive = sensitive
        self.timeout_s = timeout_s

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult:
        assert isinstance(args, SubagentArgs)
        if args.graph == ctx.graph:
            return ToolResult(ok=False, text=f"subagent: graph {args.graph!r} cannot call itself")
        if ctx.depth + 1 > self.max_depth:
            limit = f"sub-runs are limited to depth {self.max_depth} (this run: {ctx.depth})"
            return ToolResult(ok=False, text=f"subagent: {limit}")
        sub = dataclasses.replace(ctx, depth=ctx.depth + 1)
        return await self._run_graph(args.graph, args.question, sub)
