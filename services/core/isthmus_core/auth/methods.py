"""What each RPC needs: one declared table, read by the auth interceptor (:mod:`.interceptor`).

Every Isthmus method is listed here; a method missing from the table is refused (``PERMISSION_DENIED``,
"no access rule"), so a new RPC cannot ship open by accident (``tests`` check the table covers every
method of every servicer). Health and reflection are not Isthmus methods: they are never checked, and
``[common] auth_exempt_methods`` may exempt more (e.g. for a load balancer's probe of a method).

``tenant_field`` names the request field holding the tenant (dotted for nested: ``header.tenant_id``);
for a client-streaming method it is read from the first message that has it, and every later message
naming a tenant must name the same one. ``when_empty`` says what a method without a tenant (or with the
field empty) needs: ``"platform"`` — the permission for every tenant (a ``"*"`` binding); ``"any"`` —
the permission in at least one tenant (tenant-less model calls; ListTenants then filters). ``acl_field``
names the request's :class:`AccessScope`, which the interceptor replaces with the caller's own subject
and groups (only a caller with ``impersonate`` in that tenant may name others; that is audited).
``admin`` marks actions written to the audit log even when they succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from isthmus_core.auth.identity import Permission as P


@dataclass(frozen=True, slots=True)
class MethodRule:
    permission: P
    tenant_field: str | None = "tenant_id"
    when_empty: Literal["platform", "any"] = "platform"
    acl_field: str | None = None
    admin: bool = False
    #: the RPC family quotas count against (``requests_per_s`` keys in a tenant's quota)
    family: str = "other"


_ING = "/isthmus.ingestion.v1.IngestionService/"
_RET = "/isthmus.retrieval.v1.RetrievalService/"
_EMB = "/isthmus.embedding.v1.EmbeddingService/"
_ORC = "/isthmus.agent_orchestrator.v1.AgentOrchestratorService/"
_GRD = "/isthmus.guardrail.v1.GuardrailService/"
_EVA = "/isthmus.evaluation.v1.EvaluationService/"
_AUD = "/isthmus.audit.v1.AuditService/"
_OPS = "/isthmus.operations.v1.OperationsService/"

METHOD_RULES: Final[dict[str, MethodRule]] = {
    # ingestion
    _ING + "Upload": MethodRule(P.DOCUMENTS_WRITE, "header.tenant_id", family="ingest"),
    _ING + "GetDocument": MethodRule(P.DOCUMENTS_READ, family="documents"),
    _ING + "ListDocuments": MethodRule(P.DOCUMENTS_READ, family="documents"),
    _ING + "WatchDocuments": MethodRule(P.DOCUMENTS_READ, family="documents"),
    _ING + "DeleteDocument": MethodRule(P.DOCUMENTS_WRITE, admin=True, family="ingest"),
    _ING + "Erase": MethodRule(P.ERASE, admin=True, family="admin"),
    _ING + "GetErasure": MethodRule(P.ERASE, family="admin"),
    _ING + "GetDocumentText": MethodRule(P.DOCUMENTS_READ, family="documents"),
    # retrieval
    _RET + "Search": MethodRule(P.SEARCH, acl_field="access", family="search"),
    _RET + "CreateTenant": MethodRule(P.TENANTS_ADMIN, admin=True, family="admin"),
    _RET + "GetTenant": MethodRule(P.TENANT_READ, family="documents"),
    _RET + "ListTenants": MethodRule(P.TENANT_READ, None, when_empty="any", family="documents"),
    _RET + "DeleteTenant": MethodRule(P.TENANTS_ADMIN, admin=True, family="admin"),
    _RET + "ClearTenant": MethodRule(P.TENANT_MANAGE, admin=True, family="admin"),
    # embedding: no tenant in the request
    _EMB + "Embed": MethodRule(P.MODELS_USE, None, when_empty="any", family="models"),
    _EMB + "GetModel": MethodRule(P.MODELS_USE, None, when_empty="any", family="models"),
    _EMB + "Rerank": MethodRule(P.MODELS_USE, None, when_empty="any", family="models"),
    # agent-orchestrator
    _ORC + "Ask": MethodRule(P.SEARCH, acl_field="access", family="ask"),
    _ORC + "AskStream": MethodRule(P.SEARCH, acl_field="access", family="ask"),
    _ORC + "ListPendingApprovals": MethodRule(P.APPROVALS_READ, family="documents"),
    _ORC + "Approve": MethodRule(P.APPROVALS_DECIDE, admin=True, family="admin"),
    _ORC + "Reject": MethodRule(P.APPROVALS_DECIDE, admin=True, family="admin"),
    _ORC + "ListGraphs": MethodRule(P.TENANT_READ, family="documents"),
    _ORC + "ListTools": MethodRule(P.TENANT_READ, family="documents"),
    _ORC + "CreatePromptVersion": MethodRule(P.PROMPTS_MANAGE, admin=True, family="admin"),
    _ORC + "ListPromptVersions": MethodRule(P.TENANT_READ, family="documents"),
    _ORC + "SetPromptSplit": MethodRule(P.PROMPTS_MANAGE, admin=True, family="admin"),
    # guardrail
    _GRD + "CheckInput": MethodRule(P.GUARD_CHECK, family="guard"),
    _GRD + "CheckOutput": MethodRule(P.GUARD_CHECK, family="guard"),
    _GRD + "CheckOutputStream": MethodRule(P.GUARD_CHECK, "header.tenant_id", family="guard"),
    # ingestion's scan of a document's chunks (the uploader's token on Upload, the service's on the bus)
    _GRD + "ScanChunks": MethodRule(P.GUARD_CHECK, family="guard"),
    _GRD + "Entail": MethodRule(P.GUARD_CHECK, family="guard"),
    _GRD + "ScoreRelevance": MethodRule(P.GUARD_CHECK, family="guard"),
    _GRD + "GetPolicy": MethodRule(P.POLICY_READ, family="admin"),
    _GRD + "PutPolicy": MethodRule(P.TENANT_MANAGE, admin=True, family="admin"),
    _GRD + "ListPolicyVersions": MethodRule(P.POLICY_READ, family="admin"),
    _GRD + "RollbackPolicy": MethodRule(P.TENANT_MANAGE, admin=True, family="admin"),
    _GRD + "ApplyPolicyRef": MethodRule(P.TENANT_MANAGE, admin=True, family="admin"),
    # evaluation: offline runs make throwaway tenants, so they are platform-wide
    _EVA + "RunEval": MethodRule(P.EVAL_RUN, None, family="eval"),
    _EVA + "RunEvalUpload": MethodRule(P.EVAL_RUN, None, family="eval"),
    _EVA + "GetOnlineMetrics": MethodRule(P.METRICS_READ, family="metrics"),
    _EVA + "GetProvenance": MethodRule(P.PROVENANCE_READ, family="metrics"),
    # audit (served by evaluation): a tenant's events, or every tenant's with the field empty
    _AUD + "ListAuditEvents": MethodRule(P.AUDIT_READ, family="metrics"),
    # operations (served by the runtime of every process): consumer lag is platform-wide; dead letters are
    # a tenant's (a tenant admin's, filtered by the servicer), or every tenant's with the field empty
    _OPS + "ListConsumers": MethodRule(P.OPS_READ, None, family="admin"),
    _OPS + "ListDeadLetters": MethodRule(P.OPS_READ, family="admin"),
    _OPS + "ReplayDeadLetter": MethodRule(P.OPS_REPLAY, admin=True, family="admin"),
}


def rule_for(method: str) -> MethodRule | None:
    """The rule of a full method name (``/package.Service/Method``), None if it has none."""
    return METHOD_RULES.get(method)
