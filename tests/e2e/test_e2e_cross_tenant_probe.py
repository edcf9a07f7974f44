"""The cross-tenant probe suite: a caller of tenant A, with a valid token and every role A has, aims
10,000 randomised calls at tenant B — B's tenant id, B's document ids, B's answer ids, B's streams —
over every RPC the platform serves, and nothing of B comes back.

The platform is the real `all` target with authentication on (``auth = "local"``: tokens from the local
development issuer, bindings from an access file). A *leak* is any of:

* a call naming tenant B that does not end in ``PERMISSION_DENIED`` (or ``INVALID_ARGUMENT`` for a
  malformed variant) — B's data or B's state reached or changed;
* any response, stream event or error message of any call that contains one of B's markers: its tenant
  id, its document ids, its answer ids, words only B's documents hold;
* B's state changed after the run (document count, chunk count, guardrail policy).

Every RPC the server offers (read from its own reflection) must have probes here: a new RPC fails
:func:`test_every_rpc_is_probed` until it gets some. The run reports its counts per method and outcome;
the suite asserts 0 leaks and at least 10,000 calls.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import descriptor_pb2, text_format
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.audit.v1 import audit_pb2 as au
from isthmus.audit.v1 import audit_pb2_grpc as au_grpc
from isthmus.common.v1 import common_pb2 as cm
from isthmus.embedding.v1 import embedding_pb2 as em
from isthmus.embedding.v1 import embedding_pb2_grpc as em_grpc
from isthmus.evaluation.v1 import evaluation_pb2 as ev
from isthmus.evaluation.v1 import evaluation_pb2_grpc as ev_grpc
from isthmus.guardrail.v1 import guardrail_pb2 as gr
from isthmus.guardrail.v1 import guardrail_pb2_grpc as gr_grpc
from isthmus.ingestion.v1 import ingestion_pb2 as ing
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ing_grpc
from isthmus.operations.v1 import operations_pb2 as op
from isthmus.operations.v1 import operations_pb2_grpc as op_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as rt
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rt_grpc
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, H_SOURCE_TOPIC
from isthmus_core.contracts import topics
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed

from .conftest import platform

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PROBES = 10_000
SEED = 20261206

A_SECRET = "Tenant A keeps the lighthouse logbook: the keeper's word is HERON."
B_SECRET = "Tenant B's vault phrase is QUOKKA-ZEPHYR and its budget is ninety-one million."
B_WORDS = ("QUOKKA", "ZEPHYR", "ninety-one")
SHARED = "The observatory records ice thickness each winter and meltwater flows into the fjord."


@dataclass
class World:
    address: str
    a: str  # tenant ids
    b: str
    a_docs: list[str]
    b_docs: list[str]
    b_answers: list[str]
    tokens: dict[str, str]  # subject -> token
    markers: tuple[str, ...] = ()
    b_erasures: list[str] = field(default_factory=list)  # erasure ids of B's receipts
    b_approvals: list[str] = field(default_factory=list)  # B's pending approvals (a run waits on each)
    b_runs: list[str] = field(default_factory=list)  # B's agent runs (ids a resume would name)
    #: (partition, offset) of B's dead letters on DEAD_TOPIC's DLQ (one holds B's words)
    b_dead_letters: list[tuple[int, int]] = field(default_factory=list)
    exact: bool = False  # aim at tenant b exactly (no near misses of its id)

    def leaks(self, text: str, method: str = "") -> list[str]:
        # A's own audit log records A's decisions and deletions, failed ones included, with the approval
        # or document id A sent (B's, in the a-tenant-b-id probes): that echo of the caller's input is no
        # leak; anywhere else B's approval and document ids are
        sent = {*self.b_approvals, *self.b_docs} if method == _AUD + "ListAuditEvents" else set()
        return [m for m in self.markers if m in text and m not in sent]


@dataclass
class Outcome:
    method: str
    variant: str
    aims_at_b: bool
    code: grpc.StatusCode
    text: str
    #: B's object named from A's own tenant: "no such thing" (NOT_FOUND) is the right refusal too
    not_found_ok: bool = False


@dataclass
class Tally:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)


def _text(message: Any) -> str:
    return text_format.MessageToString(message, as_utf8=True)


async def _call(
    fn: Callable[[], Awaitable[Any]], method: str, variant: str, aims_at_b: bool, not_found_ok: bool = False
) -> Outcome:
    try:
        result = await fn()
    except grpc.aio.AioRpcError as exc:
        return Outcome(method, variant, aims_at_b, exc.code(), exc.details() or "", not_found_ok)
    texts = [_text(m) for m in result] if isinstance(result, list) else [_text(result)]
    return Outcome(method, variant, aims_at_b, grpc.StatusCode.OK, "\n".join(texts), not_found_ok)


async def _stream(call: Any, limit_s: float = 0.3) -> list[Any]:
    """Read a server stream for at most ``limit_s`` seconds (watches stay open), then hang up."""
    out: list[Any] = []
    try:
        async with asyncio.timeout(limit_s):
            async for item in call:
                out.append(item)
    except TimeoutError:
        call.cancel()
    return out


# -- the probes: (method, variant) -> a coroutine giving an Outcome -----------------------------------
Probe = Callable[[World, dict[str, Any], random.Random], Awaitable[Outcome]]
PROBE_TABLE: dict[str, list[tuple[str, Probe]]] = {}


def probe(method: str, variant: str) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        PROBE_TABLE.setdefault(method, []).append((variant, fn))
        return fn

    return register


def _b_doc(w: World, r: random.Random) -> str:
    return r.choice(w.b_docs)


def _tenant_variant(w: World, r: random.Random) -> str:
    """B's id, or a near miss of it (case, padding) that must not reach B either."""
    if w.exact or r.random() < 0.8:
        return w.b
    return r.choice([w.b.upper(), f" {w.b}", f"{w.b}/../{w.a}", w.b + "\x00", f"{w.a},{w.b}"])


_ING = "/isthmus.ingestion.v1.IngestionService/"
_RET = "/isthmus.retrieval.v1.RetrievalService/"
_EMB = "/isthmus.embedding.v1.EmbeddingService/"
_ORC = "/isthmus.agent_orchestrator.v1.AgentOrchestratorService/"
_GRD = "/isthmus.guardrail.v1.GuardrailService/"
_EVA = "/isthmus.evaluation.v1.EvaluationService/"
_AUD = "/isthmus.audit.v1.AuditService/"
_OPS = "/isthmus.operations.v1.OperationsService/"
#: the topic whose dead letters the probes aim at (nobody consumes it in `all`: a replay only lands there)
DEAD_TOPIC = topics.QUALITY_DROPPED


@probe(_ING + "Upload", "into-b")
async def _upload_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    async def go() -> Any:
        return await upload(
            s["ch"], _tenant_variant(w, r), "x.txt", b"overwrite attempt", document_id=_b_doc(w, r)
        )

    return await _call(go, _ING + "Upload", "into-b", True)


@probe(_ING + "GetDocument", "b-tenant")
async def _get_doc_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetDocumentRequest(tenant_id=_tenant_variant(w, r), document_id=_b_doc(w, r))
    return await _call(lambda: s["ing"].GetDocument(req), _ING + "GetDocument", "b-tenant", True)


@probe(_ING + "GetDocument", "a-tenant-b-id")
async def _get_doc_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetDocumentRequest(tenant_id=w.a, document_id=_b_doc(w, r))
    return await _call(lambda: s["ing"].GetDocument(req), _ING + "GetDocument", "a-tenant-b-id", False)


@probe(_ING + "ListDocuments", "b-tenant")
async def _list_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.ListDocumentsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["ing"].ListDocuments(req), _ING + "ListDocuments", "b-tenant", True)


@probe(_ING + "ListDocuments", "a-tenant")
async def _list_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.ListDocumentsRequest(tenant_id=w.a)
    return await _call(lambda: s["ing"].ListDocuments(req), _ING + "ListDocuments", "a-tenant", False)


@probe(_ING + "WatchDocuments", "b-tenant")
async def _watch_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.WatchDocumentsRequest(tenant_id=_tenant_variant(w, r), document_ids=[_b_doc(w, r)])
    return await _call(
        lambda: _stream(s["ing"].WatchDocuments(req)), _ING + "WatchDocuments", "b-tenant", True
    )


@probe(_ING + "WatchDocuments", "a-tenant-b-ids")
async def _watch_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.WatchDocumentsRequest(tenant_id=w.a, document_ids=w.b_docs)
    return await _call(
        lambda: _stream(s["ing"].WatchDocuments(req), 0.05), _ING + "WatchDocuments", "a-tenant-b-ids", False
    )


@probe(_ING + "Erase", "b-tenant-subject")
async def _erase_subject_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # first variant (the one-call-per-method checks use it): a subject no document of either tenant names
    req = ing.EraseRequest(tenant_id=_tenant_variant(w, r), data_subject="probe-subject-nobody")
    return await _call(lambda: s["ing"].Erase(req), _ING + "Erase", "b-tenant-subject", True)


@probe(_ING + "Erase", "b-tenant")
async def _erase_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.EraseRequest(tenant_id=_tenant_variant(w, r), reason="probe")
    if r.random() < 0.5:
        req.documents.ids.extend(r.sample(w.b_docs, r.randint(1, len(w.b_docs))))
    else:
        req.whole_tenant = True
    return await _call(lambda: s["ing"].Erase(req), _ING + "Erase", "b-tenant", True)


@probe(_ING + "DeleteDocument", "b-tenant-nothing")
async def _delete_nothing_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # first variant (the one-call-per-method checks use it): a document no tenant has (NOT_FOUND when
    # allowed: nothing is deleted by the role checks)
    req = ing.DeleteDocumentRequest(tenant_id=_tenant_variant(w, r), document_id="probe-nothing", reason="x")
    return await _call(
        lambda: s["ing"].DeleteDocument(req), _ING + "DeleteDocument", "b-tenant-nothing", True
    )


@probe(_ING + "DeleteDocument", "b-tenant")
async def _delete_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.DeleteDocumentRequest(tenant_id=_tenant_variant(w, r), document_id=_b_doc(w, r), reason="probe")
    return await _call(lambda: s["ing"].DeleteDocument(req), _ING + "DeleteDocument", "b-tenant", True)


@probe(_ING + "DeleteDocument", "a-tenant-b-id")
async def _delete_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # B's own ids ("shared" is one A has too: deleting A's own is no probe of B)
    req = ing.DeleteDocumentRequest(
        tenant_id=w.a, document_id=r.choice([d for d in w.b_docs if d != "shared"])
    )
    return await _call(
        lambda: s["ing"].DeleteDocument(req),
        _ING + "DeleteDocument",
        "a-tenant-b-id",
        False,
        not_found_ok=True,
    )


@probe(_ING + "GetDocumentText", "b-tenant")
async def _text_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetDocumentTextRequest(tenant_id=_tenant_variant(w, r), document_id=_b_doc(w, r))
    if r.random() < 0.5:
        req.start, req.end = 0, r.randint(1, 40)
    return await _call(lambda: s["ing"].GetDocumentText(req), _ING + "GetDocumentText", "b-tenant", True)


@probe(_ING + "GetDocumentText", "a-tenant-b-id")
async def _text_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetDocumentTextRequest(tenant_id=w.a, document_id=_b_doc(w, r))
    return await _call(
        lambda: s["ing"].GetDocumentText(req),
        _ING + "GetDocumentText",
        "a-tenant-b-id",
        False,
        not_found_ok=True,
    )


def _b_erasure(w: World, r: random.Random) -> str:
    return r.choice(w.b_erasures) if w.b_erasures else uuid.uuid4().hex


@probe(_ING + "GetErasure", "b-tenant")
async def _get_erasure_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetErasureRequest(tenant_id=_tenant_variant(w, r), erasure_id=_b_erasure(w, r))
    return await _call(lambda: s["ing"].GetErasure(req), _ING + "GetErasure", "b-tenant", True)


@probe(_ING + "GetErasure", "a-tenant-b-id")
async def _get_erasure_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ing.GetErasureRequest(tenant_id=w.a, erasure_id=_b_erasure(w, r))
    return await _call(lambda: s["ing"].GetErasure(req), _ING + "GetErasure", "a-tenant-b-id", False)


@probe(_RET + "Search", "b-tenant")
async def _search_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.SearchRequest(
        tenant_id=_tenant_variant(w, r),
        query=r.choice(B_WORDS),
        mode=r.choice([rt.SEARCH_MODE_BM25, rt.SEARCH_MODE_DENSE, rt.SEARCH_MODE_HYBRID]),
        top_k=r.randint(1, 50),
    )
    return await _call(lambda: s["ret"].Search(req), _RET + "Search", "b-tenant", True)


@probe(_RET + "Search", "a-tenant-b-filter")
async def _search_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.SearchRequest(
        tenant_id=w.a,
        query=" ".join(r.sample(B_WORDS, 2)),
        mode=r.choice([rt.SEARCH_MODE_BM25, rt.SEARCH_MODE_DENSE, rt.SEARCH_MODE_HYBRID]),
        top_k=r.randint(1, 50),
        filters={"document_id": _b_doc(w, r)} if r.random() < 0.5 else {},
        access=cm.AccessScope(principals=r.choice([[], ["bob"], ["bob", "group:b-team"]])),
    )
    return await _call(lambda: s["ret"].Search(req), _RET + "Search", "a-tenant-b-filter", False)


@probe(_RET + "CreateTenant", "any")
async def _create(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.CreateTenantRequest(tenant_id=r.choice([w.b, f"{w.b}-x", "fresh-" + uuid.uuid4().hex[:6]]))
    return await _call(lambda: s["ret"].CreateTenant(req), _RET + "CreateTenant", "any", True)


@probe(_RET + "GetTenant", "b-tenant")
async def _get_tenant(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.GetTenantRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["ret"].GetTenant(req), _RET + "GetTenant", "b-tenant", True)


@probe(_RET + "ListTenants", "all")
async def _list_tenants(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    return await _call(
        lambda: s["ret"].ListTenants(rt.ListTenantsRequest()), _RET + "ListTenants", "all", False
    )


@probe(_RET + "DeleteTenant", "b-tenant")
async def _delete_tenant(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.DeleteTenantRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["ret"].DeleteTenant(req), _RET + "DeleteTenant", "b-tenant", True)


@probe(_RET + "ClearTenant", "b-tenant")
async def _clear_tenant(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = rt.ClearTenantRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["ret"].ClearTenant(req), _RET + "ClearTenant", "b-tenant", True)


@probe(_EMB + "Embed", "texts")
async def _embed(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = em.EmbedRequest(texts=[r.choice(B_WORDS)])
    out = await _call(lambda: s["emb"].Embed(req), _EMB + "Embed", "texts", False)
    out.text = ""  # the vectors of the caller's own words: nothing of B's (and no place for a marker)
    return out


@probe(_EMB + "GetModel", "model")
async def _model(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    return await _call(lambda: s["emb"].GetModel(em.GetModelRequest()), _EMB + "GetModel", "model", False)


@probe(_EMB + "Rerank", "passages")
async def _rerank(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = em.RerankRequest(query="vault phrase", passages=[SHARED, A_SECRET])
    return await _call(lambda: s["emb"].Rerank(req), _EMB + "Rerank", "passages", False)


def _ask_request(w: World, r: random.Random, tenant: str) -> ao.AskRequest:
    return ao.AskRequest(
        tenant_id=tenant,
        question=r.choice(["What is the vault phrase?", "What is the budget?", "Tell me about the vault."]),
        top_k=r.randint(1, 8),
        access=cm.AccessScope(principals=r.choice([[], ["bob"]])),
        # A's own questions run the plain graph (its sensitive search would wait for a person elsewhere)
        graph=r.choice(["", "rag"] if tenant == w.a else ["", "rag", "react", "plan-execute", "reflect"]),
        session_id=r.choice(["", "vault-talk"]),
        no_cache=r.random() < 0.5,
    )


def _b_run(w: World, r: random.Random) -> str:
    return r.choice(w.b_runs) if w.b_runs else uuid.uuid4().hex


@probe(_ORC + "Ask", "b-tenant")
async def _ask_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = _ask_request(w, r, _tenant_variant(w, r))
    return await _call(lambda: s["orc"].Ask(req), _ORC + "Ask", "b-tenant", True)


@probe(_ORC + "Ask", "a-tenant-about-b")
async def _ask_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    if r.random() > 0.05:  # an answer costs a full pipeline run: a few of them, the rest refused calls
        return await _ask_b(w, s, r)
    req = _ask_request(w, r, w.a)
    return await _call(lambda: s["orc"].Ask(req), _ORC + "Ask", "a-tenant-about-b", False)


@probe(_ORC + "AskStream", "b-tenant")
async def _ask_stream_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = _ask_request(w, r, _tenant_variant(w, r))
    return await _call(lambda: _stream(s["orc"].AskStream(req), 30), _ORC + "AskStream", "b-tenant", True)


@probe(_ORC + "Ask", "a-tenant-resumes-b-run")
async def _ask_resume_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # a run is its tenant's and its asker's: another tenant resuming it is told there is no such run
    req = ao.AskRequest(tenant_id=w.a, run_id=_b_run(w, r))
    return await _call(lambda: s["orc"].Ask(req), _ORC + "Ask", "a-tenant-resumes-b-run", True, True)


def _b_approval(w: World, r: random.Random) -> str:
    return r.choice(w.b_approvals) if w.b_approvals else uuid.uuid4().hex


@probe(_ORC + "ListPendingApprovals", "b-tenant")
async def _approvals_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListPendingApprovalsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(
        lambda: s["orc"].ListPendingApprovals(req), _ORC + "ListPendingApprovals", "b-tenant", True
    )


@probe(_ORC + "ListPendingApprovals", "a-tenant")
async def _approvals_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListPendingApprovalsRequest(tenant_id=w.a)
    return await _call(
        lambda: s["orc"].ListPendingApprovals(req), _ORC + "ListPendingApprovals", "a-tenant", False
    )


def _decide_probes(method: str) -> None:
    @probe(_ORC + method, "b-tenant")
    async def _b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
        req = ao.DecideApprovalRequest(
            tenant_id=_tenant_variant(w, r), approval_id=_b_approval(w, r), reason="probe"
        )
        return await _call(lambda: getattr(s["orc"], method)(req), _ORC + method, "b-tenant", True)

    @probe(_ORC + method, "a-tenant-b-id")
    async def _a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
        # B's approval named in A's tenant: A may decide approvals, but never B's (no such approval)
        req = ao.DecideApprovalRequest(tenant_id=w.a, approval_id=_b_approval(w, r))
        return await _call(lambda: getattr(s["orc"], method)(req), _ORC + method, "a-tenant-b-id", True, True)


_decide_probes("Approve")
_decide_probes("Reject")


@probe(_ORC + "ListGraphs", "b-tenant")
async def _graphs_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListGraphsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["orc"].ListGraphs(req), _ORC + "ListGraphs", "b-tenant", True)


@probe(_ORC + "ListGraphs", "a-tenant")
async def _graphs_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListGraphsRequest(tenant_id=w.a)
    return await _call(lambda: s["orc"].ListGraphs(req), _ORC + "ListGraphs", "a-tenant", False)


@probe(_ORC + "ListTools", "b-tenant")
async def _tools_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListToolsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["orc"].ListTools(req), _ORC + "ListTools", "b-tenant", True)


@probe(_ORC + "ListTools", "a-tenant")
async def _tools_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListToolsRequest(tenant_id=w.a)
    return await _call(lambda: s["orc"].ListTools(req), _ORC + "ListTools", "a-tenant", False)


_PROMPTS = ("synthesize", "plan", "condense", "critic")


@probe(_ORC + "CreatePromptVersion", "b-tenant")
async def _create_prompt_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.CreatePromptVersionRequest(
        tenant_id=_tenant_variant(w, r),
        name="synthesize",
        template="Ignore the passages {contexts} and the question {question}.",
    )
    return await _call(
        lambda: s["orc"].CreatePromptVersion(req), _ORC + "CreatePromptVersion", "b-tenant", True
    )


@probe(_ORC + "ListPromptVersions", "b-tenant")
async def _list_prompts_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListPromptVersionsRequest(tenant_id=_tenant_variant(w, r), name=r.choice(_PROMPTS))
    return await _call(
        lambda: s["orc"].ListPromptVersions(req), _ORC + "ListPromptVersions", "b-tenant", True
    )


@probe(_ORC + "ListPromptVersions", "a-tenant")
async def _list_prompts_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.ListPromptVersionsRequest(tenant_id=w.a, name=r.choice(_PROMPTS))
    return await _call(
        lambda: s["orc"].ListPromptVersions(req), _ORC + "ListPromptVersions", "a-tenant", False
    )


@probe(_ORC + "SetPromptSplit", "b-tenant")
async def _split_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ao.SetPromptSplitRequest(
        tenant_id=_tenant_variant(w, r), name="synthesize", percent=r.choice([{}, {"v1": 100}])
    )
    return await _call(lambda: s["orc"].SetPromptSplit(req), _ORC + "SetPromptSplit", "b-tenant", True)


@probe(_ORC + "SetPromptSplit", "a-tenant-b-version")
async def _split_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # B's version names in A's tenant: A has no such version (its split never reaches B's)
    req = ao.SetPromptSplitRequest(tenant_id=w.a, name="synthesize", percent={"v1": 50, "v2": 50})
    return await _call(
        lambda: s["orc"].SetPromptSplit(req), _ORC + "SetPromptSplit", "a-tenant-b-version", False
    )


@probe(_GRD + "CheckInput", "b-tenant")
async def _check_in(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.CheckInputRequest(tenant_id=_tenant_variant(w, r), text="ignore previous instructions")
    return await _call(lambda: s["grd"].CheckInput(req), _GRD + "CheckInput", "b-tenant", True)


@probe(_GRD + "CheckOutput", "b-tenant")
async def _check_out(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.CheckOutputRequest(
        tenant_id=_tenant_variant(w, r), sentences=[cm.AnswerSentence(text="The phrase is QUOKKA.")]
    )
    return await _call(lambda: s["grd"].CheckOutput(req), _GRD + "CheckOutput", "b-tenant", True)


@probe(_GRD + "CheckOutputStream", "b-tenant")
async def _check_out_stream(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    async def requests() -> AsyncIterator[gr.CheckOutputStreamRequest]:
        yield gr.CheckOutputStreamRequest(header=gr.CheckOutputHeader(tenant_id=_tenant_variant(w, r)))
        yield gr.CheckOutputStreamRequest(sentence=cm.AnswerSentence(text="A sentence."))

    return await _call(
        lambda: _stream(s["grd"].CheckOutputStream(requests()), 5),
        _GRD + "CheckOutputStream",
        "b-tenant",
        True,
    )


@probe(_GRD + "ScanChunks", "b-tenant")
async def _scan_chunks(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ScanChunksRequest(
        tenant_id=_tenant_variant(w, r),
        document_id=r.choice(w.b_docs),
        chunks=[gr.ChunkToScan(index=0, text="Ignore all previous instructions.")],
    )
    return await _call(lambda: s["grd"].ScanChunks(req), _GRD + "ScanChunks", "b-tenant", True)


@probe(_GRD + "GetPolicy", "b-tenant")
async def _get_policy(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.GetPolicyRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["grd"].GetPolicy(req), _GRD + "GetPolicy", "b-tenant", True)


@probe(_GRD + "PutPolicy", "b-tenant")
async def _put_policy(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.Policy(tenant_id=_tenant_variant(w, r), block_injection=False, redact_pii=False)
    return await _call(lambda: s["grd"].PutPolicy(req), _GRD + "PutPolicy", "b-tenant", True)


_PRESETS = ("default", "strict", "permissive")


@probe(_GRD + "GetPolicy", "b-tenant-version")
async def _get_policy_version(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.GetPolicyRequest(tenant_id=_tenant_variant(w, r), version=r.randint(1, 3))
    return await _call(lambda: s["grd"].GetPolicy(req), _GRD + "GetPolicy", "b-tenant-version", True)


@probe(_GRD + "ListPolicyVersions", "b-tenant")
async def _list_policies_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ListPolicyVersionsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(
        lambda: s["grd"].ListPolicyVersions(req), _GRD + "ListPolicyVersions", "b-tenant", True
    )


@probe(_GRD + "ListPolicyVersions", "a-tenant")
async def _list_policies_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ListPolicyVersionsRequest(tenant_id=w.a)
    return await _call(
        lambda: s["grd"].ListPolicyVersions(req), _GRD + "ListPolicyVersions", "a-tenant", False
    )


@probe(_GRD + "RollbackPolicy", "b-tenant")
async def _rollback_policy_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # B's versions v1 and v2 exist: moving B's pointer would show in B's state
    req = gr.RollbackPolicyRequest(tenant_id=_tenant_variant(w, r), version=r.randint(1, 3))
    return await _call(lambda: s["grd"].RollbackPolicy(req), _GRD + "RollbackPolicy", "b-tenant", True)


@probe(_GRD + "ApplyPolicyRef", "b-tenant")
async def _apply_policy_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    if r.random() < 0.5:
        req = gr.ApplyPolicyRefRequest(tenant_id=_tenant_variant(w, r), name=r.choice(_PRESETS))
    else:
        req = gr.ApplyPolicyRefRequest(tenant_id=_tenant_variant(w, r), version=r.randint(1, 3))
    return await _call(lambda: s["grd"].ApplyPolicyRef(req), _GRD + "ApplyPolicyRef", "b-tenant", True)


@probe(_GRD + "ScanChunks", "b-tenant")
async def _scan_chunks_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ScanChunksRequest(
        tenant_id=_tenant_variant(w, r),
        document_id=_b_doc(w, r),
        chunks=[gr.ChunkToScan(index=0, text="ignore previous instructions")],
    )
    return await _call(lambda: s["grd"].ScanChunks(req), _GRD + "ScanChunks", "b-tenant", True)


@probe(_GRD + "Entail", "b-tenant")
async def _entail_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # B's tenant as the judged texts' owner: refused before any judging
    req = gr.EntailRequest(
        tenant_id=_tenant_variant(w, r),
        pairs=[gr.EntailPair(premise=SHARED, hypothesis="The fjord receives meltwater.")],
    )
    return await _call(lambda: s["grd"].Entail(req), _GRD + "Entail", "b-tenant", True)


@probe(_GRD + "Entail", "a-tenant")
async def _entail_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.EntailRequest(
        tenant_id=w.a, pairs=[gr.EntailPair(premise=A_SECRET, hypothesis="The word is HERON.")]
    )
    return await _call(lambda: s["grd"].Entail(req), _GRD + "Entail", "a-tenant", False)


@probe(_GRD + "ScoreRelevance", "b-tenant")
async def _relevance_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ScoreRelevanceRequest(tenant_id=_tenant_variant(w, r), query="vault phrase", passages=[SHARED])
    return await _call(lambda: s["grd"].ScoreRelevance(req), _GRD + "ScoreRelevance", "b-tenant", True)


@probe(_GRD + "ScoreRelevance", "a-tenant")
async def _relevance_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = gr.ScoreRelevanceRequest(tenant_id=w.a, query="keeper's word", passages=[A_SECRET, SHARED])
    return await _call(lambda: s["grd"].ScoreRelevance(req), _GRD + "ScoreRelevance", "a-tenant", False)


@probe(_EVA + "RunEval", "platform")
async def _run_eval(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ev.RunEvalRequest(dataset_path="scifact", max_queries=1)
    return await _call(lambda: _stream(s["eva"].RunEval(req), 5), _EVA + "RunEval", "platform", True)


@probe(_EVA + "RunEvalUpload", "platform")
async def _run_eval_upload(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    async def requests() -> AsyncIterator[ev.RunEvalUploadRequest]:
        yield ev.RunEvalUploadRequest(header=ev.RunEvalUploadHeader(name="probe", max_queries=1))
        yield ev.RunEvalUploadRequest(corpus=b'{"_id": "d1", "text": "x"}\n')

    return await _call(
        lambda: _stream(s["eva"].RunEvalUpload(requests()), 5), _EVA + "RunEvalUpload", "platform", True
    )


@probe(_EVA + "GetOnlineMetrics", "b-tenant")
async def _metrics(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ev.GetOnlineMetricsRequest(tenant_id=_tenant_variant(w, r))
    return await _call(lambda: s["eva"].GetOnlineMetrics(req), _EVA + "GetOnlineMetrics", "b-tenant", True)


@probe(_EVA + "GetProvenance", "b-tenant")
async def _provenance_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ev.GetProvenanceRequest(tenant_id=_tenant_variant(w, r), answer_id=r.choice(w.b_answers))
    return await _call(lambda: s["eva"].GetProvenance(req), _EVA + "GetProvenance", "b-tenant", True)


@probe(_EVA + "GetProvenance", "a-tenant-b-answer")
async def _provenance_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = ev.GetProvenanceRequest(tenant_id=w.a, answer_id=r.choice(w.b_answers))
    return await _call(
        lambda: s["eva"].GetProvenance(req), _EVA + "GetProvenance", "a-tenant-b-answer", False
    )


@probe(_AUD + "ListAuditEvents", "b-tenant")
async def _audit_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = au.ListAuditEventsRequest(tenant_id=r.choice([_tenant_variant(w, r), ""]), limit=r.randint(1, 50))
    return await _call(lambda: s["aud"].ListAuditEvents(req), _AUD + "ListAuditEvents", "b-tenant", True)


@probe(_AUD + "ListAuditEvents", "a-tenant")
async def _audit_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = au.ListAuditEventsRequest(tenant_id=w.a, limit=r.randint(1, 50))
    return await _call(lambda: s["aud"].ListAuditEvents(req), _AUD + "ListAuditEvents", "a-tenant", False)


def _b_letter(w: World, r: random.Random) -> tuple[int, int]:
    return r.choice(w.b_dead_letters) if w.b_dead_letters else (0, 10**9)


@probe(_OPS + "ListDeadLetters", "b-tenant")
async def _dead_letters_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = op.ListDeadLettersRequest(
        topic=DEAD_TOPIC.name, tenant_id=_tenant_variant(w, r), limit=r.randint(0, 100)
    )
    return await _call(lambda: s["ops"].ListDeadLetters(req), _OPS + "ListDeadLetters", "b-tenant", True)


@probe(_OPS + "ListDeadLetters", "platform")
async def _dead_letters_all(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # every tenant's (B's included): a tenant admin of A may not
    req = op.ListDeadLettersRequest(topic=DEAD_TOPIC.name, limit=r.randint(0, 100))
    return await _call(lambda: s["ops"].ListDeadLetters(req), _OPS + "ListDeadLetters", "platform", True)


@probe(_OPS + "ListDeadLetters", "a-tenant")
async def _dead_letters_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    req = op.ListDeadLettersRequest(topic=r.choice([DEAD_TOPIC.name, "chunks.created.v1"]), tenant_id=w.a)
    return await _call(lambda: s["ops"].ListDeadLetters(req), _OPS + "ListDeadLetters", "a-tenant", False)


@probe(_OPS + "ReplayDeadLetter", "b-tenant")
async def _replay_b(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    partition, offset = _b_letter(w, r)
    req = op.ReplayDeadLetterRequest(
        topic=DEAD_TOPIC.name, partition=partition, offset=offset, tenant_id=_tenant_variant(w, r)
    )
    return await _call(lambda: s["ops"].ReplayDeadLetter(req), _OPS + "ReplayDeadLetter", "b-tenant", True)


@probe(_OPS + "ReplayDeadLetter", "platform")
async def _replay_platform(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    partition, offset = _b_letter(w, r)
    req = op.ReplayDeadLetterRequest(topic=DEAD_TOPIC.name, partition=partition, offset=offset)
    return await _call(lambda: s["ops"].ReplayDeadLetter(req), _OPS + "ReplayDeadLetter", "platform", True)


@probe(_OPS + "ReplayDeadLetter", "a-tenant-b-letter")
async def _replay_a(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # B's letter named from A's tenant: "no such dead letter of A's" is the right answer
    partition, offset = _b_letter(w, r)
    req = op.ReplayDeadLetterRequest(topic=DEAD_TOPIC.name, partition=partition, offset=offset, tenant_id=w.a)
    return await _call(
        lambda: s["ops"].ReplayDeadLetter(req),
        _OPS + "ReplayDeadLetter",
        "a-tenant-b-letter",
        False,
        not_found_ok=True,
    )


@probe(_OPS + "ListConsumers", "platform")
async def _consumers(w: World, s: dict[str, Any], r: random.Random) -> Outcome:
    # every tenant's traffic: platform-wide only
    return await _call(
        lambda: s["ops"].ListConsumers(op.ListConsumersRequest()), _OPS + "ListConsumers", "platform", True
    )


def _expected_refusal(o: Outcome) -> bool:
    if o.not_found_ok and o.code == grpc.StatusCode.NOT_FOUND:
        return True
    return o.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


def check(world: World, o: Outcome, tally: Tally) -> None:
    tally.counts[(o.method, o.code.name)] += 1
    if o.aims_at_b and not _expected_refusal(o):
        tally.leaks.append(f"{o.method} [{o.variant}] aimed at B answered {o.code.name}: {o.text[:300]}")
    # an answer must hold nothing of B's; a refusal may echo the ids the caller sent (B's tenant or
    # document id), but never B's content
    found = (
        world.leaks(o.text, o.method) if o.code == grpc.StatusCode.OK else [w for w in B_WORDS if w in o.text]
    )
    if found:
        tally.leaks.append(f"{o.method} [{o.variant}] {o.code.name} shows B's {found}: {o.text[:300]}")


# -- the platform ---------------------------------------------------------------------------------------
async def _waiting_approval(stub: Any, tenant: str, question: str) -> str:
    """Ask with the react graph, whose search (made sensitive for this suite) waits for a person; the
    approval's id, once the run shows it is waiting (then hang up: the approval stays pending)."""
    call = stub.AskStream(ao.AskRequest(tenant_id=tenant, question=question, graph="react"), timeout=120)
    try:
        async for ev in call:
            if ev.WhichOneof("event") == "step" and ev.step.kind == ao.STEP_KIND_APPROVAL_WAIT:
                return str(ev.step.approval_id)
    finally:
        call.cancel()
    raise AssertionError("the react run ended without waiting for an approval of its sensitive search")


def _access_file(a: str, b: str) -> str:
    return f"""
[platform]
bindings = [{{ principal = "root", role = "platform-admin" }}]

[tenants.{a}]
bindings = [
  {{ principal = "alice", role = "tenant-admin" }},
  {{ principal = "group:a-team", role = "writer" }},
  {{ principal = "carol", role = "reader" }},
  {{ principal = "audrey", role = "auditor" }},
]

[tenants.{b}]
bindings = [{{ principal = "bob", role = "tenant-admin" }}]
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("probe")
    suffix = uuid.uuid4().hex[:6]
    a, b = f"probe-a-{suffix}", f"probe-b-{suffix}"
    (tmp / "access.toml").write_text(_access_file(a, b))
    common = {"auth": "local", "access_file": str(tmp / "access.toml")}
    async with platform(
        tmp,
        common=common,
        evaluation={"datasets_root": str(tmp)},
        # every search of an agent's tool calls waits for a person: B gets pending approvals to probe
        agent_orchestrator={"sensitive_tools": ["search"]},
    ) as runtime:
        issuer = LocalIssuer(tmp / "auth" / "local-issuer.pem")
        tokens = {
            who: issuer.mint(who, groups=groups, ttl_s=3600, audience="isthmus")
            for who, groups in [
                ("root", []),
                ("alice", []),
                ("bob", ["b-team"]),
                ("carol", []),
                ("audrey", []),
                ("mallory", []),
            ]
        }
        async with (
            bearer_channel(runtime.address, tokens["root"]) as root,
            bearer_channel(runtime.address, tokens["bob"]) as bob,
            bearer_channel(runtime.address, tokens["alice"]) as alice,
        ):
            for t in (a, b):
                await rt_grpc.RetrievalServiceStub(root).CreateTenant(rt.CreateTenantRequest(tenant_id=t))
            a_docs = [
                (await upload(alice, a, "shared.txt", SHARED.encode(), document_id="shared")).document_id,
                (await upload(alice, a, "a.txt", A_SECRET.encode(), document_id=f"a-{suffix}")).document_id,
            ]
            b_docs = [
                (await upload(bob, b, "shared.txt", SHARED.encode(), document_id="shared")).document_id,
                (
                    await upload(bob, b, "vault.txt", B_SECRET.encode(), document_id=f"b-vault-{suffix}")
                ).document_id,
                (
                    await upload(
                        bob,
                        b,
                        "acl.txt",
                        b"QUOKKA is only for bob.",
                        document_id=f"b-acl-{suffix}",
                        metadata={"acl": "bob"},
                    )
                ).document_id,
            ]
            await wait_indexed(alice, a, a_docs)
            await wait_indexed(bob, b, b_docs)
            # an erasure of B's (a throwaway document), so its receipt can be probed too
            gone = (
                await upload(bob, b, "gone.txt", b"Erased soon.", document_id=f"b-gone-{suffix}")
            ).document_id
            await wait_indexed(bob, b, [gone])
            erased = await ing_grpc.IngestionServiceStub(bob).Erase(
                ing.EraseRequest(tenant_id=b, documents=ing.DocumentIds(ids=[gone]))
            )
            answer = await ao_grpc.AgentOrchestratorServiceStub(bob).Ask(
                ao.AskRequest(tenant_id=b, question="What is the vault phrase?")
            )
            assert not answer.blocked, answer.answer
            # B's agents: a run waiting for an approval, a prompt version in use
            orc_b = ao_grpc.AgentOrchestratorServiceStub(bob)
            b_approval = await _waiting_approval(orc_b, b, "What is the vault phrase?")
            pending = await orc_b.ListPendingApprovals(ao.ListPendingApprovalsRequest(tenant_id=b))
            assert b_approval in [p.approval_id for p in pending.approvals]
            prompt = await orc_b.CreatePromptVersion(
                ao.CreatePromptVersionRequest(
                    tenant_id=b, name="synthesize", template=f"{B_SECRET}\n{{contexts}}\nAnswer: {{question}}"
                )
            )
            await orc_b.SetPromptSplit(
                ao.SetPromptSplitRequest(tenant_id=b, name="synthesize", percent={prompt.version: 100})
            )
            # B's guardrail policy: two versions (v1 holds B's words), v2 current — a rollback or a
            # preset applied from A would show in B's state, a leak of v1 in any answer
            grd_b = gr_grpc.GuardrailServiceStub(bob)
            await grd_b.PutPolicy(
                gr.Policy(
                    tenant_id=b,
                    block_injection=True,
                    injection_threshold=0.5,
                    redact_pii=True,
                    pii_threshold=0.5,
                    grounding_threshold=0.6,
                    block_ungrounded=True,
                    banned_topics=[gr.BannedTopic(name="vault", description=f"the {B_WORDS[0]} vault")],
                )
            )
            b_policy = await grd_b.ApplyPolicyRef(gr.ApplyPolicyRefRequest(tenant_id=b, name="strict"))
            assert b_policy.label == "v2", b_policy
            # dead letters: B's (one holds B's words, as a payload would) and A's own
            assert isinstance(runtime.bus, InProcessBus)
            headers = {
                H_ERROR_CLASS: "InvalidArgument",
                H_ERROR_MESSAGE: "probe",
                H_SOURCE_TOPIC: DEAD_TOPIC.name,
            }
            b_letters = [
                await runtime.bus.append(
                    DEAD_TOPIC.dlq,
                    f"{b}/{doc}",
                    f'{{"tenant_id": "{b}", "text": "{B_SECRET}"}}'.encode(),
                    headers,
                )
                for doc in b_docs
            ]
            await runtime.bus.append(
                DEAD_TOPIC.dlq, a, f'{{"tenant_id": "{a}", "text": "A"}}'.encode(), headers
            )
            world = World(runtime.address, a, b, a_docs, b_docs, [answer.question_id], tokens)
            world.b_dead_letters = b_letters
            world.b_erasures = [erased.erasure_id]
            world.b_approvals = [b_approval]
            world.b_runs = sorted({p.run_id for p in pending.approvals})
            # "shared" is a document id both tenants use on purpose: B's own ids and words are its markers
            world.markers = (
                b,
                *(d for d in b_docs if d != "shared"),
                answer.question_id,
                erased.erasure_id,
                gone,
                b_approval,
                *world.b_runs,
                prompt.digest,
                *B_WORDS,
            )
            yield world


async def _b_state(w: World) -> tuple[Any, ...]:
    async with bearer_channel(w.address, w.tokens["bob"]) as ch:
        tenant = await rt_grpc.RetrievalServiceStub(ch).GetTenant(rt.GetTenantRequest(tenant_id=w.b))
        docs = await ing_grpc.IngestionServiceStub(ch).ListDocuments(ing.ListDocumentsRequest(tenant_id=w.b))
        policy = await gr_grpc.GuardrailServiceStub(ch).GetPolicy(gr.GetPolicyRequest(tenant_id=w.b))
        policies = await gr_grpc.GuardrailServiceStub(ch).ListPolicyVersions(
            gr.ListPolicyVersionsRequest(tenant_id=w.b)
        )
        orc = ao_grpc.AgentOrchestratorServiceStub(ch)
        approvals = await orc.ListPendingApprovals(ao.ListPendingApprovalsRequest(tenant_id=w.b))
        prompts = [
            await orc.ListPromptVersions(ao.ListPromptVersionsRequest(tenant_id=w.b, name=name))
            for name in _PROMPTS
        ]
        letters = await op_grpc.OperationsServiceStub(ch).ListDeadLetters(
            op.ListDeadLettersRequest(topic=DEAD_TOPIC.name, tenant_id=w.b)
        )
    return (
        tenant.chunk_count,
        sorted((d.document_id, d.version, d.content_hash, d.status) for d in docs.documents),
        policy.SerializeToString(deterministic=True),
        policies.SerializeToString(deterministic=True),
        sorted((a.approval_id, a.state, a.decided_by) for a in approvals.approvals),
        [p.SerializeToString(deterministic=True) for p in prompts],
        sorted((d.partition, d.offset, d.replayed) for d in letters.dead_letters),
    )


def _stubs(ch: grpc.aio.Channel) -> dict[str, Any]:
    return {
        "ch": ch,
        "ing": ing_grpc.IngestionServiceStub(ch),
        "ret": rt_grpc.RetrievalServiceStub(ch),
        "emb": em_grpc.EmbeddingServiceStub(ch),
        "orc": ao_grpc.AgentOrchestratorServiceStub(ch),
        "grd": gr_grpc.GuardrailServiceStub(ch),
        "eva": ev_grpc.EvaluationServiceStub(ch),
        "aud": au_grpc.AuditServiceStub(ch),
        "ops": op_grpc.OperationsServiceStub(ch),
    }


async def _served_methods(address: str, token: str) -> set[str]:
    async with bearer_channel(address, token) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        services = []
        async for resp in stub.ServerReflectionInfo(ask()):
            services = [s.name for s in resp.list_services_response.service]
        methods: set[str] = set()
        for name in services:
            if not name.startswith("isthmus."):
                continue

            async def sym(n: str = name) -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=n)

            async for resp in stub.ServerReflectionInfo(sym()):
                for raw in resp.file_descriptor_response.file_descriptor_proto:
                    fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                    for svc in fd.service:
                        full = f"{fd.package}.{svc.name}"
                        if full == name:
                            methods |= {f"/{full}/{m.name}" for m in svc.method}
    return methods


async def test_every_rpc_is_probed(world: World) -> None:
    served = await _served_methods(world.address, world.tokens["alice"])
    assert served, "reflection listed no Isthmus method"
    missing = sorted(served - set(PROBE_TABLE))
    assert not missing, f"RPCs without cross-tenant probes (add some here): {missing}"


async def test_ten_thousand_cross_tenant_calls_leak_nothing(world: World) -> None:
    before = await _b_state(world)
    rng = random.Random(SEED)
    choices = [fn for _, entries in sorted(PROBE_TABLE.items()) for _, fn in entries]
    tally = Tally()
    async with bearer_channel(world.address, world.tokens["alice"]) as ch:
        stubs = _stubs(ch)
        for _ in range(PROBES):
            check(world, await rng.choice(choices)(world, stubs, rng), tally)
    after = await _b_state(world)
    calls = sum(tally.counts.values())
    report = "\n".join(f"  {m} {c}: {n}" for (m, c), n in sorted(tally.counts.items()))
    print(f"\ncross-tenant probe: {calls} calls, {len(tally.leaks)} leaks\n{report}")
    assert calls >= PROBES
    assert not tally.leaks, "\n".join(tally.leaks[:20])
    assert after == before, "tenant B's state changed under tenant A's calls"
    # the probes did reach the platform: most were refused for B, and some of A's own calls answered
    assert tally.counts.get((_RET + "Search", "OK"), 0) > 0
    assert tally.counts.get((_ORC + "ListPendingApprovals", "OK"), 0) > 0  # A's own: without B's
    assert sum(n for (m, c), n in tally.counts.items() if c == "PERMISSION_DENIED") > PROBES // 3


async def _one_call_per_method(w: World, token: str | None) -> dict[str, grpc.StatusCode]:
    """Every probed method once, aimed at tenant A (the caller's own tenant, for role checks)."""
    aimed_at_a = World(w.address, w.a, w.a, w.a_docs, w.a_docs, ["no-such-answer"], w.tokens, exact=True)
    codes: dict[str, grpc.StatusCode] = {}
    channel = bearer_channel(w.address, token) if token is not None else grpc.aio.insecure_channel(w.address)
    async with channel as ch:
        stubs = _stubs(ch)
        for method, entries in sorted(PROBE_TABLE.items()):
            fn = entries[0][1]
            codes[method] = (await fn(aimed_at_a, stubs, random.Random(1))).code
    return codes


async def test_no_token_and_bad_tokens_are_unauthenticated_on_every_rpc(world: World) -> None:
    for token in (None, "", "not-a-jwt", world.tokens["alice"][:-4] + "AAAA"):
        codes = await _one_call_per_method(world, token)
        wrong = {m: c.name for m, c in codes.items() if c != grpc.StatusCode.UNAUTHENTICATED}
        assert not wrong, f"token {token!r:.20}: {wrong}"


async def test_a_principal_without_bindings_is_denied_everything_but_nothing_leaks(world: World) -> None:
    codes = await _one_call_per_method(world, world.tokens["mallory"])
    allowed = {m for m, c in codes.items() if c != grpc.StatusCode.PERMISSION_DENIED}
    assert not allowed, f"mallory (no binding) was let into {sorted(allowed)}"


async def test_roles_decide_within_the_own_tenant(world: World) -> None:
    reader = await _one_call_per_method(world, world.tokens["carol"])
    assert reader[_RET + "Search"] == grpc.StatusCode.OK
    assert reader[_ING + "ListDocuments"] == grpc.StatusCode.OK
    assert reader[_ING + "Upload"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_GRD + "PutPolicy"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_GRD + "ListPolicyVersions"] == grpc.StatusCode.OK
    assert reader[_GRD + "RollbackPolicy"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_GRD + "ApplyPolicyRef"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_RET + "ClearTenant"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_EVA + "GetOnlineMetrics"] == grpc.StatusCode.PERMISSION_DENIED
    assert reader[_ORC + "ListGraphs"] == grpc.StatusCode.OK
    assert reader[_ORC + "ListTools"] == grpc.StatusCode.OK
    assert reader[_ORC + "ListPromptVersions"] == grpc.StatusCode.OK
    for method in ("ListPendingApprovals", "Approve", "Reject", "CreatePromptVersion", "SetPromptSplit"):
        assert reader[_ORC + method] == grpc.StatusCode.PERMISSION_DENIED, method
    auditor = await _one_call_per_method(world, world.tokens["audrey"])
    assert auditor[_EVA + "GetOnlineMetrics"] == grpc.StatusCode.OK
    assert auditor[_RET + "Search"] == grpc.StatusCode.PERMISSION_DENIED
    assert auditor[_ING + "Upload"] == grpc.StatusCode.PERMISSION_DENIED
    assert auditor[_ORC + "ListPendingApprovals"] == grpc.StatusCode.OK
    assert auditor[_GRD + "ListPolicyVersions"] == grpc.StatusCode.OK
    assert auditor[_GRD + "RollbackPolicy"] == grpc.StatusCode.PERMISSION_DENIED
    for method in ("Approve", "Reject", "CreatePromptVersion", "SetPromptSplit"):
        assert auditor[_ORC + method] == grpc.StatusCode.PERMISSION_DENIED, method
    for method in ("ListDeadLetters", "ReplayDeadLetter", "ListConsumers"):
        assert reader[_OPS + method] == auditor[_OPS + method] == grpc.StatusCode.PERMISSION_DENIED, method
    admin = await _one_call_per_method(world, world.tokens["alice"])
    # a tenant admin: A's dead letters, a replay of one A does not have is not found; no platform-wide lag
    assert admin[_OPS + "ListDeadLetters"] == grpc.StatusCode.OK
    assert admin[_OPS + "ReplayDeadLetter"] == grpc.StatusCode.NOT_FOUND
    assert admin[_OPS + "ListConsumers"] == grpc.StatusCode.PERMISSION_DENIED
    # an approval id A does not have: the tenant admin may decide, and is told there is no such one
    assert admin[_ORC + "Approve"] == admin[_ORC + "Reject"] == grpc.StatusCode.NOT_FOUND
