"""Principals, roles and permissions: pure values, no I/O.

A :class:`Principal` is a verified caller (from a JWT, the local development issuer, or a client
certificate); with authentication off every caller is :data:`ANONYMOUS` and may do everything (the
server then listens on loopback only). Roles are bound to principals per tenant (or for every tenant,
``"*"``) in the access file (:mod:`isthmus_core.auth.access_file`); a role grants a fixed set of
permissions (:data:`ROLE_PERMISSIONS`), and each RPC needs one permission (:mod:`isthmus_core.auth.methods`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

#: a binding's tenant that means "every tenant" (platform-wide roles: platform-admin, service)
ALL_TENANTS: Final = "*"


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    TENANT_ADMIN = "tenant-admin"
    WRITER = "writer"
    READER = "reader"
    AUDITOR = "auditor"
    DRILL_OPERATOR = "drill-operator"
    #: Isthmus' own processes, for calls no user made (a bus handler asking whether a tenant exists)
    SERVICE = "service"


class Permission(StrEnum):
    DOCUMENTS_READ = "documents.read"  # GetDocument, ListDocuments, WatchDocuments
    DOCUMENTS_WRITE = "documents.write"  # Upload (and producing document events on Kafka)
    SEARCH = "search"  # Search, Ask, AskStream
    GUARD_CHECK = "guard.check"  # CheckInput, CheckOutput, CheckOutputStream
    MODELS_USE = "models.use"  # Embed, Rerank, GetModel (no tenant: held in any tenant)
    TENANT_READ = "tenant.read"  # GetTenant, ListTenants (only the tenants the caller may read)
    TENANT_MANAGE = "tenant.manage"  # ClearTenant, PutPolicy
    TENANTS_ADMIN = "tenants.admin"  # CreateTenant, DeleteTenant
    POLICY_READ = "policy.read"  # GetPolicy
    EVAL_RUN = "eval.run"  # RunEval, RunEvalUpload (throwaway tenants: platform-wide)
    METRICS_READ = "metrics.read"  # GetOnlineMetrics
    AUDIT_READ = "audit.read"  # ListAuditEvents
    PROVENANCE_READ = "provenance.read"  # GetProvenance
    ERASE = "erase"  # Erase (documents, a data subject, a tenant)
    IMPERSONATE = "impersonate"  # name other principals in a request's AccessScope (audited)
    DRILL_RUN = "drill.run"  # failover drills
    APPROVALS_READ = "approvals.read"  # ListPendingApprovals
    APPROVALS_DECIDE = "approvals.decide"  # Approve, Reject (sensitive tool calls of agent runs)
    PROMPTS_MANAGE = "prompts.manage"  # CreatePromptVersion, SetPromptSplit
    TOOLS_EXTERNAL = "tools.external"  # agent tools that reach outside the platform (http_get)
    OPS_READ = "ops.read"  # ListConsumers (platform-wide), ListDeadLetters (a tenant's, or every one)
    OPS_REPLAY = "ops.replay"  # ReplayDeadLetter (a tenant's dead letters, or every one)


_READ = {
    Permission.DOCUMENTS_READ,
    Permission.SEARCH,
    Permission.GUARD_CHECK,
    Permission.MODELS_USE,
    Permission.TENANT_READ,
    Permission.POLICY_READ,
    Permission.PROVENANCE_READ,
}
_AUDIT = {
    Permission.TENANT_READ,
    Permission.POLICY_READ,
    Permission.METRICS_READ,
    Permission.AUDIT_READ,
    Permission.PROVENANCE_READ,
    Permission.APPROVALS_READ,
}

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.READER: frozenset(_READ),
    Role.WRITER: frozenset(_READ | {Permission.DOCUMENTS_WRITE, Permission.TOOLS_EXTERNAL}),
    Role.AUDITOR: frozenset(_AUDIT),
    Role.TENANT_ADMIN: frozenset(
        _READ
        | _AUDIT
        | {
            Permission.DOCUMENTS_WRITE,
            Permission.TENANT_MANAGE,
            Permission.ERASE,
            Permission.IMPERSONATE,
            Permission.APPROVALS_DECIDE,
            Permission.PROMPTS_MANAGE,
            Permission.TOOLS_EXTERNAL,
            Permission.OPS_READ,
            Permission.OPS_REPLAY,
        }
    ),
    Role.PLATFORM_ADMIN: frozenset(Permission),
    Role.DRILL_OPERATOR: frozenset({Permission.DRILL_RUN, Permission.TENANT_READ, Permission.METRICS_READ}),
    Role.SERVICE: frozenset(
        {Permission.TENANT_READ, Permission.MODELS_USE, Permission.SEARCH, Permission.GUARD_CHECK}
    ),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. ``subject`` is what bindings name (a JWT's ``sub``; for a client-credentials
    token, the OAuth2 client id); ``groups`` come from the token's groups claim (bindings may name a
    group as ``group:<name>``). ``token`` is the bearer it presented, forwarded on the calls its call
    makes to other services (never logged)."""

    subject: str
    via: Literal["jwt", "local", "mtls", "anonymous"]
    groups: tuple[str, ...] = ()
    issuer: str = ""
    client_id: str = ""
    expires_at: float | None = None
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The names bindings may use for this caller: its subject and ``group:<g>`` for each group."""
        return (self.subject, *(f"group:{g}" for g in self.groups))

    @property
    def acl_principals(self) -> list[str]:
        """What document ACLs match for this caller: its subject and its groups (as plain names)."""
        return [self.subject, *self.groups]


#: the caller when authentication is off (loopback only): every permission, request ACL scopes trusted
ANONYMOUS: Final = Principal(subject="anonymous", via="anonymous")
