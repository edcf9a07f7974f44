"""The caller of the current call, for handlers and for the calls they make (no I/O).

The auth interceptor sets it for the duration of a call; a handler that filters by tenant (ListTenants)
asks :func:`current_access`; the outbound client interceptor (:mod:`isthmus_core.auth.outbound`)
forwards the caller's bearer token on calls made inside it, so a chain of calls keeps the first
caller's identity and tenant scope. Outside any call (a bus handler) there is no caller: the process's
own service identity is used instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from isthmus_core.auth.identity import ANONYMOUS, Permission, Principal


class Authorizer(Protocol):
    """Who may do what where (bindings from the access file; :mod:`isthmus_core.auth.policy`)."""

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        """``tenant=None``: the permission for every tenant (a ``"*"`` binding)."""
        ...

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        """The permission in at least one tenant (or for every tenant)."""
        ...

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        """The tenants where the principal has the permission; None = every tenant."""
        ...


class AllowAll:
    """The authorizer with authentication off: every caller may do everything."""

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        return True

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        return True

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        return None


@dataclass(frozen=True, slots=True)
class Access:
    principal: Principal
    authorizer: Authorizer

    def can(self, tenant: str | None, permission: Permission) -> bool:
        return self.authorizer.allowed(self.principal, tenant, permission)

    def tenants(self, permission: Permission) -> frozenset[str] | None:
        return self.authorizer.tenants(self.principal, permission)


_CURRENT: ContextVar[Access | None] = ContextVar("isthmus_access", default=None)


def current_access() -> Access:
    """The current call's access; outside a call (or with auth off), the anonymous allow-all access."""
    return _CURRENT.get() or Access(ANONYMOUS, AllowAll())


def current_principal() -> Principal | None:
    """The current call's verified caller; None outside a call."""
    access = _CURRENT.get()
    return None if access is None else access.principal


@contextmanager
def acting_as(access: Access) -> Iterator[None]:
    token = _CURRENT.set(access)
    try:
        yield
    finally:
        _CURRENT.reset(token)
