"""The Ask playground: a question to a tenant's agents, answered as a stream (Server-Sent Events from
``AskStream``) with the agent steps as they happen, citations that open the cited span of the source
document (``GetDocumentText``), both guardrail verdicts, and the answer's provenance (``GetProvenance``).

Flow: the form is posted (CSRF-checked) to ``POST /ask``, which keeps the question in the server-side
session under a one-time key and answers with the run's fragment; that fragment's EventSource opens
``GET /ask/stream/<key>`` (the question never goes in a URL), which relays the gRPC stream as rendered
HTML fragments, one SSE event per kind (``status``, ``step``, ``sentence``, ``final``, ``failure``), then
``done`` (the page closes the EventSource on it, so the browser does not reconnect).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import grpc
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.common.v1 import common_pb2
from isthmus.evaluation.v1 import evaluation_pb2
from isthmus.ingestion.v1 import ingestion_pb2
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_console.backend import NotLoggedIn, RpcFailure
from isthmus_console.viewer import Viewer
from isthmus_console.web import (
    bad_request,
    console_of,
    current_tenant,
    fragment,
    page,
    remember_tenant,
    render,
    rpc_error,
)
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.events import AGENT_ID_PATTERN
from isthmus_core.contracts.ids import parse_document_id, parse_tenant_id
from isthmus_core.errors import InvalidArgument

#: the conversation per tenant in the session (tenant -> session id sent as AskRequest.session_id)
CONVERSATIONS_KEY: Final = "ask_conversations"
#: pending questions in the session (key -> question), waiting for their stream to be opened
RUNS_KEY: Final = "ask_runs"
#: at most this many questions wait for their stream at once (the oldest is dropped)
MAX_PENDING: Final = 8
#: a question waits this long for its stream
PENDING_TTL_S: Final = 300.0
#: the console's own bound (the orchestrator's max_question_chars says the real limit)
MAX_QUESTION_CHARS: Final = 20_000
#: the source view shows this many characters on each side of the cited span
SOURCE_CONTEXT_CHARS: Final = 20_000
#: graph names, as the orchestrator spells them (see ListGraphs)
GRAPH_NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
#: answer ids (the AskResponse's question_id)
ANSWER_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
#: approval ids (the 32 hexadecimal digits a run's APPROVAL_WAIT step shows)
APPROVAL_ID: Final = re.compile(AGENT_ID_PATTERN)
#: a decision's reason (the orchestrator's own limit)
MAX_REASON_CHARS: Final = 2_000
APPROVAL_STATES: Final[Mapping[int, tuple[str, str]]] = {
    ao.APPROVAL_STATE_PENDING: ("pending", "warn"),
    ao.APPROVAL_STATE_APPROVED: ("approved", "ok"),
    ao.APPROVAL_STATE_REJECTED: ("rejected", "bad"),
    ao.APPROVAL_STATE_EXPIRED: ("expired", "bad"),
}
#: how long a gRPC call may take (the stream: the whole answer)
CALL_TIMEOUT_S: Final = 30.0
STREAM_TIMEOUT_S: Final = 600.0
#: the provenance is recorded a moment after the answer: asked again this many times, a second apart
PROVENANCE_RETRIES: Final = 5

STAGE_LABELS: Final[Mapping[int, str]] = {
    ao.STAGE_INPUT_GUARD: "Checking the question (input guardrail)",
    ao.STAGE_RETRIEVAL: "Retrieving",
    ao.STAGE_AGENT: "Running the agents",
    ao.STAGE_GENERATION: "Writing the answer",
    ao.STAGE_OUTPUT_GUARD: "Checking the answer (output guardrail)",
    ao.STAGE_DONE: "Done",
}
STEP_LABELS: Final[Mapping[int, str]] = {
    ao.STEP_KIND_CONDENSE: "condense",
    ao.STEP_KIND_MEMORY: "memory",
    ao.STEP_KIND_PLAN: "plan",
    ao.STEP_KIND_TOOL_CALL: "tool call",
    ao.STEP_KIND_TOOL_RESULT: "tool result",
    ao.STEP_KIND_APPROVAL_WAIT: "waiting for approval",
    ao.STEP_KIND_APPROVAL_DECIDED: "approval decided",
    ao.STEP_KIND_CRITIQUE: "critique",
    ao.STEP_KIND_RETRY: "retry",
    ao.STEP_KIND_CACHE_HIT: "cache hit",
    ao.STEP_KIND_BUDGET: "budget",
}
#: a verdict's action as the page says it, with its badge class
ACTIONS: Final[Mapping[int, tuple[str, str]]] = {
    common_pb2.GUARD_ACTION_UNSPECIFIED: ("not checked", ""),
    common_pb2.GUARD_ACTION_ALLOW: ("allowed", "ok"),
    common_pb2.GUARD_ACTION_REDACT: ("redacted", "warn"),
    common_pb2.GUARD_ACTION_BLOCK: ("blocked", "bad"),
    common_pb2.GUARD_ACTION_FLAG: ("flagged", "warn"),
}
PROVENANCE_ACTIONS: Final[Mapping[str, tuple[str, str]]] = {
    "": ("not checked", ""),
    "allow": ("allowed", "ok"),
    "redact": ("redacted", "warn"),
    "block": ("blocked", "bad"),
    "flag": ("flagged", "warn"),
}
RUN_STATUS: Final[Mapping[int, str]] = {
    ao.RUN_STATUS_STOPPED: "The run stopped (a sensitive tool call was rejected or its approval expired): "
    "the answer uses what the run had.",
    ao.RUN_STATUS_BUDGET_EXHAUSTED: "A budget (steps, tokens, time or cost) ran out: the answer uses what "
    "the run had.",
}


# ---- what the templates show --------------------------------------------------------------------------


def source_href(tenant: str, document_id: str, start: int, end: int) -> str:
    """The source view of ``[start, end)`` of a document (ids are validated again when it is opened)."""
    query = urlencode({"start": start, "end": end})
    return f"/ask/source/{quote(tenant, safe='')}/{quote(document_id, safe='')}?{query}"


@dataclass(frozen=True)
class CitationView:
    number: int
    document_id: str
    start: int
    end: int
    label: str
    uri: str
    href: str


class CitationNumbers:
    """Citations numbered in the order the answer first cites them (the same number for the same span)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self._numbers: dict[tuple[str, int, int], int] = {}

    def view(self, c: common_pb2.Citation) -> CitationView:
        key = (c.document_id, c.start, c.end)
        number = self._numbers.setdefault(key, len(self._numbers) + 1)
        return CitationView(
            number=number,
            document_id=c.document_id,
            start=c.start,
            end=c.end,
            label=c.title or c.source_name or c.document_id,
            uri=c.uri,
            href=source_href(self.tenant, c.document_id, c.start, c.end),
        )

    def views(self, citations: Any) -> list[CitationView]:
        seen: set[int] = set()
        out = []
        for c in citations:
            v = self.view(c)
            if v.number not in seen:
                seen.add(v.number)
                out.append(v)
        return out


def action_of(verdict: common_pb2.Verdict) -> tuple[str, str]:
    return ACTIONS.get(verdict.action, ("unknown", ""))


def step_label(step: ao.AgentStep) -> str:
    return STEP_LABELS.get(step.kind, "step")


def _pending(request: Request) -> dict[str, dict[str, Any]]:
    runs = request.session.get(RUNS_KEY)
    if not isinstance(runs, dict):
        runs = {}
        request.session[RUNS_KEY] = runs
    now = time.monotonic()
    for key in [k for k, v in runs.items() if now - v.get("at", 0.0) > PENDING_TTL_S]:
        del runs[key]
    return runs


# ---- the page ---------------------------------------------------------------------------------------


async def _tenants(request: Request, viewer: Viewer) -> tuple[list[str], RpcFailure | None]:
    """The tenants the viewer may ask in: RetrievalService.ListTenants (which lists only the tenants the
    caller may read), narrowed to those where the viewer holds ``search``."""
    backend = console_of(request).backend
    try:
        reply = await backend.retrieval.ListTenants(
            retrieval_pb2.ListTenantsRequest(), metadata=backend.metadata(viewer), timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        scope = viewer.tenants(Permission.SEARCH)
        return (sorted(scope) if scope else []), RpcFailure.of(exc)
    names = sorted(t.tenant_id for t in reply.tenants)
    return [t for t in names if viewer.can(Permission.SEARCH, t)], None


async def _graphs(
    request: Request, viewer: Viewer, tenant: str
) -> tuple[list[ao.GraphInfo], RpcFailure | None]:
    if not tenant:
        return [], None
    backend = console_of(request).backend
    try:
        reply = await backend.orchestrator.ListGraphs(
            ao.ListGraphsRequest(tenant_id=tenant), metadata=backend.metadata(viewer), timeout=CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        return [], RpcFailure.of(exc)
    return list(reply.graphs), None


@page
async def index(request: Request, viewer: Viewer) -> Response:
    tenants, tenants_failure = await _tenants(request, viewer)
    tenant = current_tenant(request)
    if tenant not in tenants and tenants:
        tenant = tenants[0]
    graphs, graphs_failure = await _graphs(request, viewer, tenant)
    return render(
        request,
        "ask/index.html",
        {
            "tenants": tenants,
            "tenants_failure": tenants_failure,
            "tenant": tenant,
            "graphs": graphs,
            "graphs_failure": graphs_failure,
            "max_question_chars": MAX_QUESTION_CHARS,
        },
    )


@fragment
async def graph_field(request: Request, viewer: Viewer) -> Response:
    """The graph chooser for the tenant picked in the form (htmx, on the tenant's change)."""
    try:
        tenant = parse_tenant_id(request.query_params.get("tenant", ""), "tenant")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    graphs, failure = await _graphs(request, viewer, tenant)
    return render(request, "ask/_graphs.html", {"graphs": graphs, "graphs_failure": failure})


@fragment
async def start(request: Request, viewer: Viewer) -> Response:
    """The question posted: kept in the session under a one-time key; the answer is the run's fragment,
    whose EventSource opens the stream."""
    form = await request.form()
    try:
        tenant = parse_tenant_id(str(form.get("tenant", "")).strip(), "tenant")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    graph = str(form.get("graph", "")).strip()
    if graph and not GRAPH_NAME.fullmatch(graph):
        return bad_request(
            request,
            "graph names are 1-64 characters of lowercase letters, digits and '-', starting with a letter",
        )
    question = str(form.get("question", "")).strip()
    if not question:
        return bad_request(request, "type a question")
    if len(question) > MAX_QUESTION_CHARS:
        return bad_request(request, f"the question is longer than {MAX_QUESTION_CHARS} characters")
    if not viewer.can(Permission.SEARCH, tenant):
        reason = f"you may not ask in tenant {tenant!r} (it needs the {Permission.SEARCH.value} permission)"
        return render(
            request,
            "_error.html",
            {"failure": RpcFailure("PERMISSION_DENIED", reason), "what": "Cannot ask"},
            403,
        )
    remember_tenant(request, tenant)
    conversation = ""
    if form.get("conversation") == "on":
        # follow-ups: the orchestrator condenses a question with the conversation's earlier turns
        conversations = request.session.setdefault(CONVERSATIONS_KEY, {})
        conversation = conversations.setdefault(tenant, secrets.token_hex(16))
    runs = _pending(request)
    while len(runs) >= MAX_PENDING:
        del runs[next(iter(runs))]
    key = secrets.token_urlsafe(16)
    runs[key] = {
        "tenant": tenant,
        "graph": graph,
        "question": question,
        "no_cache": form.get("no_cache") == "on",
        "conversation": conversation,
        "at": time.monotonic(),
    }
    return render(
        request,
        "ask/_run.html",
        {"key": key, "question": question, "ask_tenant": tenant, "conversation": conversation},
    )


@fragment
async def new_conversation(request: Request, viewer: Viewer) -> Response:
    """Forget the tenant's conversation: the next follow-up starts a new one."""
    form = await request.form()
    try:
        tenant = parse_tenant_id(str(form.get("tenant", "")).strip(), "tenant")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    conversations = request.session.get(CONVERSATIONS_KEY)
    if isinstance(conversations, dict):
        conversations.pop(tenant, None)
    return render(request, "ask/_status.html", {"label": f"A new conversation starts in {tenant}."})


@fragment
async def stream(request: Request, viewer: Viewer) -> Response:
    """The answer as Server-Sent Events: each event's data is an HTML fragment the page swaps in."""
    run = _pending(request).pop(request.path_params["key"], None)
    c = console_of(request)
    env = c.templates.env

    def html(name: str, **context: Any) -> str:
        return env.get_template(name).render(request=request, **context)

    async def events() -> AsyncIterator[dict[str, str]]:
        if run is None:
            yield {
                "event": "failure",
                "data": html(
                    "_error.html",
                    failure=RpcFailure(
                        "NOT_FOUND", "this question's stream was already opened or has expired"
                    ),
                    what="The answer cannot be shown (ask again)",
                ),
            }
            yield {"event": "status", "data": html("ask/_status.html", label="Failed.")}
            yield {"event": "done", "data": "end"}
            return
        tenant = run["tenant"]
        numbers = CitationNumbers(tenant)
        can_read = viewer.can(Permission.DOCUMENTS_READ, tenant)
        can_provenance = viewer.can(Permission.PROVENANCE_READ, tenant)
        can_decide = viewer.can(Permission.APPROVALS_DECIDE, tenant)
        streamed = 0
        said = ""
        request_pb = ao.AskRequest(
            tenant_id=tenant,
            question=run["question"],
            graph=run["graph"],
            no_cache=run["no_cache"],
            session_id=run["conversation"],
        )
        try:
            call = c.backend.orchestrator.AskStream(
                request_pb, metadata=c.backend.metadata(viewer), timeout=STREAM_TIMEOUT_S
            )
            try:
                async for ev in call:
                    kind = ev.WhichOneof("event")
                    if kind == "stage":
                        label = STAGE_LABELS.get(ev.stage.stage, "Working")
                        if label != said:  # a stage's second event only adds a detail
                            said = label
                            yield {"event": "status", "data": html("ask/_status.html", label=label)}
                        yield {
                            "event": "step",
                            "data": html("ask/_stage.html", label=label, detail=ev.stage.detail),
                        }
                    elif kind == "step":
                        yield {
                            "event": "step",
                            "data": html(
                                "ask/_step.html",
                                step=ev.step,
                                kind=step_label(ev.step),
                                is_result=ev.step.kind == ao.STEP_KIND_TOOL_RESULT,
                                decide_href=_approval_href(tenant, ev.step.approval_id)
                                if can_decide
                                and ev.step.kind == ao.STEP_KIND_APPROVAL_WAIT
                                and APPROVAL_ID.fullmatch(ev.step.approval_id)
                                else "",
                            ),
                        }
                    elif kind == "sentence":
                        streamed += 1
                        yield {
                            "event": "sentence",
                            "data": html(
                                "ask/_sentence.html",
                                sentence=ev.sentence,
                                citations=numbers.views(ev.sentence.citations),
                                can_read=can_read,
                            ),
                        }
                    elif kind == "final":
                        final = ev.final
                        yield {
                            "event": "final",
                            "data": html(
                                "ask/_final.html",
                                final=final,
                                tenant=tenant,
                                streamed=streamed,
                                citations=numbers.views(final.citations),
                                sentences=[(s, numbers.views(s.citations)) for s in final.sentences],
                                input_action=action_of(final.input_verdict),
                                output_action=action_of(final.output_verdict),
                                run_status=RUN_STATUS.get(final.status, ""),
                                can_read=can_read,
                                can_provenance=can_provenance and bool(final.question_id),
                                provenance_href=_provenance_href(tenant, final.question_id),
                            ),
                        }
                        status = "Blocked by the guardrail." if final.blocked else "Answered."
                        yield {"event": "status", "data": html("ask/_status.html", label=status)}
            finally:
                call.cancel()
        except grpc.aio.AioRpcError as exc:
            yield {
                "event": "failure",
                "data": html("_error.html", failure=RpcFailure.of(exc), what="The question failed"),
            }
            yield {"event": "status", "data": html("ask/_status.html", label="Failed.")}
        except NotLoggedIn:
            yield {
                "event": "failure",
                "data": html("_error.html", failure=RpcFailure("UNAUTHENTICATED", "log in first"), what=""),
            }
            yield {"event": "status", "data": html("ask/_status.html", label="Failed.")}
        # (an event with no data is not dispatched by EventSource)
        yield {"event": "done", "data": "end"}

    return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})


def _provenance_href(tenant: str, answer_id: str) -> str:
    return f"/ask/provenance/{quote(tenant, safe='')}/{quote(answer_id, safe='')}"


def _approval_href(tenant: str, approval_id: str) -> str:
    return f"/ask/approvals/{quote(tenant, safe='')}/{quote(approval_id, safe='')}"


@fragment
async def decide(request: Request, viewer: Viewer) -> Response:
    """Approve or reject a sensitive tool call a run waits for (the run's stream then goes on): the
    decision's form, from the APPROVAL_WAIT step, is replaced by the decided approval."""
    form = await request.form()
    try:
        tenant = parse_tenant_id(request.path_params["tenant"], "tenant")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    approval_id = request.path_params["approval_id"]
    if not APPROVAL_ID.fullmatch(approval_id):
        return bad_request(request, "approval ids are the 32 hexadecimal digits a run showed")
    decision = str(form.get("decision", ""))
    if decision not in ("approve", "reject"):
        return bad_request(request, "decision must be 'approve' or 'reject'")
    reason = str(form.get("reason", "")).strip()
    if len(reason) > MAX_REASON_CHARS:
        return bad_request(request, f"the reason is longer than {MAX_REASON_CHARS} characters")
    backend = console_of(request).backend
    rpc = backend.orchestrator.Approve if decision == "approve" else backend.orchestrator.Reject
    try:
        approval = await rpc(
            ao.DecideApprovalRequest(tenant_id=tenant, approval_id=approval_id, reason=reason),
            metadata=backend.metadata(viewer),
            timeout=CALL_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, "The decision failed")
    except NotLoggedIn:
        return bad_request(request, "log in first")
    return render(
        request,
        "ask/_approval.html",
        {"approval": approval, "state": APPROVAL_STATES.get(approval.state, ("unknown", ""))},
    )


# ---- the source view --------------------------------------------------------------------------------


def _int_param(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "0") or "0"
    if not raw.isdigit() or len(raw) > 10:
        raise InvalidArgument(f"{name} must be a character offset (a whole number >= 0), got {raw[:20]!r}")
    return int(raw)


async def _source(request: Request, viewer: Viewer) -> Response:
    """A document's parsed text with the cited span ``[start, end)`` in <mark id="cited">: the whole page,
    or (an htmx request) the panel beside the answer. At most SOURCE_CONTEXT_CHARS on each side of the
    span are shown; no span (start = end) shows the document's beginning."""
    try:
        tenant = parse_tenant_id(request.path_params["tenant"], "tenant")
        document_id = parse_document_id(request.path_params["document_id"])
        begin = _int_param(request, "start")
        end = _int_param(request, "end")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    if end < begin:
        return bad_request(request, f"end ({end}) must not be before start ({begin})")
    backend = console_of(request).backend
    try:
        md = backend.metadata(viewer)
        # the span itself first: the service says whether it lies in the text, and the text's length
        probe = await backend.ingestion.GetDocumentText(
            ingestion_pb2.GetDocumentTextRequest(
                tenant_id=tenant, document_id=document_id, start=begin, end=max(end, begin + 1)
            ),
            metadata=md,
            timeout=CALL_TIMEOUT_S,
        )
        lo = max(0, begin - SOURCE_CONTEXT_CHARS)
        hi = min(probe.length, end + SOURCE_CONTEXT_CHARS)
        window = (
            probe
            if (lo, hi) == (probe.start, probe.end)
            else await backend.ingestion.GetDocumentText(
                ingestion_pb2.GetDocumentTextRequest(
                    tenant_id=tenant, document_id=document_id, start=lo, end=hi
                ),
                metadata=md,
                timeout=CALL_TIMEOUT_S,
            )
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Cannot show document {document_id}")
    except NotLoggedIn:
        return bad_request(request, "log in first")
    text = window.text
    a, b = begin - window.start, end - window.start
    context = {
        "doc": window,
        "document_id": document_id,
        "source_tenant": tenant,
        "before": text[:a],
        "marked": text[a:b],
        "after": text[b:],
        "start": begin,
        "end": end,
        "hidden_before": window.start,
        "hidden_after": window.length - window.end,
    }
    if request.headers.get("HX-Request") == "true":
        return render(request, "ask/_source.html", context)
    return render(request, "ask/source.html", context)


_source_page = page(_source)
_source_fragment = fragment(_source)


async def source(request: Request) -> Response:
    """The source view: a page of its own (a link opened anew), or the panel (htmx): a visitor who is not
    logged in is sent to the login from the page, and gets 401 in the panel."""
    if request.headers.get("HX-Request") == "true":
        return await _source_fragment(request)
    return await _source_page(request)


# ---- provenance -------------------------------------------------------------------------------------


@fragment
async def provenance(request: Request, viewer: Viewer) -> Response:
    """EvaluationService.GetProvenance of an answer (it is recorded a moment after the answer: NOT_FOUND
    then offers to try again)."""
    try:
        tenant = parse_tenant_id(request.path_params["tenant"], "tenant")
    except InvalidArgument as exc:
        return bad_request(request, str(exc))
    answer_id = request.path_params["answer_id"]
    if not ANSWER_ID.fullmatch(answer_id):
        return bad_request(
            request, "answer ids are 1-128 characters of letters, digits and '.', '_', ':', '-'"
        )
    backend = console_of(request).backend
    href = _provenance_href(tenant, answer_id)
    try:
        p = await backend.evaluation.GetProvenance(
            evaluation_pb2.GetProvenanceRequest(tenant_id=tenant, answer_id=answer_id),
            metadata=backend.metadata(viewer),
            timeout=CALL_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            # 200, so htmx swaps it in: it asks again by itself a few times, then offers a button
            attempt = request.query_params.get("attempt", "0")
            n = int(attempt) if attempt.isdigit() and len(attempt) < 3 else PROVENANCE_RETRIES
            next_href = f"{href}?attempt={n + 1}" if n < PROVENANCE_RETRIES else ""
            return render(
                request,
                "ask/_provenance_pending.html",
                {"href": href, "next_href": next_href, "failure": RpcFailure.of(exc)},
            )
        return rpc_error(request, exc, "Cannot show the provenance")
    can_read = viewer.can(Permission.DOCUMENTS_READ, tenant)

    def chunks(rows: Any) -> list[tuple[Any, str]]:
        return [
            (r, source_href(tenant, r.document_id, r.start, r.end) if can_read and r.document_id else "")
            for r in rows
        ]

    return render(
        request,
        "ask/_provenance.html",
        {
            "p": p,
            "answered_at": p.answered_at.ToDatetime().isoformat(timespec="seconds") + "Z"
            if p.HasField("answered_at")
            else "",
            "retrieved": chunks(p.retrieved),
            "cited": chunks(p.cited),
            "input_action": PROVENANCE_ACTIONS.get(p.input_verdict.action, (p.input_verdict.action, "")),
            "output_action": PROVENANCE_ACTIONS.get(p.output_verdict.action, (p.output_verdict.action, "")),
            "timings": sorted(p.timings_ms.items()),
        },
    )


routes: list[BaseRoute] = [
    Route("/ask", index, methods=["GET"]),
    Route("/ask", start, methods=["POST"]),
    Route("/ask/graphs", graph_field, methods=["GET"]),
    Route("/ask/conversation", new_conversation, methods=["POST"]),
    Route("/ask/stream/{key}", stream, methods=["GET"]),
    Route("/ask/source/{tenant}/{document_id}", source, methods=["GET"]),
    Route("/ask/provenance/{tenant}/{answer_id}", provenance, methods=["GET"]),
    Route("/ask/approvals/{tenant}/{approval_id}", decide, methods=["POST"]),
]
