"""Who may do what in which tenant: role bindings from the access file, enforced with pycasbin.

The casbin model is RBAC with domains (a domain is a tenant): each role's permissions are ``p`` policies
(from :data:`~isthmus_core.auth.identity.ROLE_PERMISSIONS`), each binding of the access file a
``g(principal, role, tenant)`` — ``"*"`` for the platform's bindings, which hold in every tenant. A
caller's names are its subject and ``group:<g>`` for each group of its token
(:attr:`Principal.names`); it has a permission in a tenant when any of its names does.

The process's own service identity (``isthmus-service`` with ``auth = "local"``, the
``auth_service_client_id`` with ``auth = "oidc"``) holds role ``service`` on ``"*"`` without an entry in
the file. Names and roles live in separate namespaces inside casbin (a subject called ``writer`` is not
the role ``writer``: casbin's role manager treats equal names as linked).

Decisions are cached per (names, tenant, permission) and the cache is dropped whenever the access file
changes (an ``enforce`` costs tens of microseconds; a cached answer, a dict lookup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import casbin

from isthmus_core.auth.access_file import AccessFile, AccessFileReloader, AccessSource, access_file_path
from isthmus_core.auth.identity import ALL_TENANTS, ROLE_PERMISSIONS, Permission, Principal, Role

if TYPE_CHECKING:
    from isthmus_core.auth.context import Authorizer
    from isthmus_core.settings import CommonSettings

#: the subject of this process's own token with ``auth = "local"`` (minted by the local issuer)
LOCAL_SERVICE_SUBJECT: Final = "isthmus-service"

CASBIN_MODEL: Final = """
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = (g(r.sub, p.sub, r.dom) || g(r.sub, p.sub, "*")) && r.act == p.act
"""

_NAME: Final = "name:"
_ROLE: Final = "role:"
#: cached decisions kept at most (names come from verified tokens, tenants from requests): past it the
#: cache starts over
MAX_CACHED: Final = 65_536


def service_subject(common: CommonSettings) -> str | None:
    """The subject of this process's own token, bound to role ``service`` on every tenant."""
    if common.auth == "local":
        return LOCAL_SERVICE_SUBJECT
    if common.auth == "oidc":
        return common.auth_service_client_id or None
    return None


def _enforcer(model: AccessFile, service: str | None) -> Any:
    m = casbin.Model()
    m.load_model_from_text(CASBIN_MODEL)
    e = casbin.Enforcer(m)
    policies = [[_ROLE + role.value, p.value] for role, perms in ROLE_PERMISSIONS.items() for p in perms]
    e.add_policies(policies)
    grouping = [[_NAME + b.principal, _ROLE + b.role.value, tenant] for tenant, b in model.bindings()]
    if service:
        grouping.append([_NAME + service, _ROLE + Role.SERVICE.value, ALL_TENANTS])
    if grouping:
        e.add_grouping_policies(grouping)
    return e


class CasbinAuthorizer:
    """:class:`~isthmus_core.auth.context.Authorizer` over the access file (re-read when it changes)."""

    def __init__(self, source: AccessSource, *, service_subject: str | None = None) -> None:
        self._source = source
        self._service = service_subject
        self._model: AccessFile | None = None
        self._enforcer: Any = None
        self._decisions: dict[tuple[tuple[str, ...], str, Permission], bool] = {}
        self._tenants: dict[tuple[tuple[str, ...], Permission], frozenset[str] | None] = {}
        self._refresh()

    def _refresh(self) -> None:
        model = self._source.current()
        if model is not self._model:  # a new file: a new enforcer, and no decision of the old one
            self._enforcer = _enforcer(model, self._service)
            self._decisions = {}
            self._tenants = {}
            self._model = model

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        self._refresh()
        names = principal.names
        domain = tenant or ALL_TENANTS  # none: the permission must hold for every tenant
        key = (names, domain, permission)
        decision = self._decisions.get(key)
        if decision is None:
            enforce = self._enforcer.enforce
            decision = any(enforce(_NAME + n, domain, permission.value) for n in names)
            if len(self._decisions) >= MAX_CACHED:
                self._decisions = {}
            self._decisions[key] = decision
        return decision

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        tenants = self.tenants(principal, permission)
        return tenants is None or bool(tenants)

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        self._refresh()
        names = principal.names
        key = (names, permission)
        if key in self._tenants:
            return self._tenants[key]
        e = self._enforcer
        found: set[str] = set()
        result: frozenset[str] | None = None
        every = False
        for name in names:
            for _, role, domain in e.get_filtered_grouping_policy(0, _NAME + name):
                if e.has_policy(role, permission.value):
                    every = every or domain == ALL_TENANTS
                    found.add(domain)
        result = None if every else frozenset(found)
        if len(self._tenants) >= MAX_CACHED:
            self._tenants = {}
        self._tenants[key] = result
        return result


def build_authorizer(common: CommonSettings, source: AccessSource | None = None) -> Authorizer:
    """The authorizer of a process: bindings from ``common.access_file`` (default
    ``<data_dir>/access.toml``), re-read when the file changes; ``source`` shares one reloader with
    :func:`isthmus_core.auth.quotas.build_quota_gate`. Raises
    :class:`~isthmus_core.auth.access_file.AccessFileError` when the file is broken at start."""
    return CasbinAuthorizer(
        source or AccessFileReloader(access_file_path(common)), service_subject=service_subject(common)
    )
