"""Who is looking at the console, and what they may see and do (pure: values in, values out).

A :class:`Viewer` is made once at login (``auth.py``) from the verified access token and the platform's
role bindings; pages ask it what to show (``can``) and which tenants to offer (``tenants``). It only
shapes views: every action is a gRPC call carrying the viewer's own token, which the services check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from isthmus_core.auth.identity import Permission

#: None = every tenant (a platform-wide binding, or authentication off)
TenantScope = frozenset[str] | None


@dataclass(frozen=True)
class Viewer:
    subject: str
    #: how the viewer logged in: "anonymous" with authentication off (loopback only)
    via: Literal["anonymous", "oidc", "local"]
    name: str = ""
    #: the access token forwarded on every gRPC call (server-side only: never rendered)
    token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    scopes: Mapping[Permission, TenantScope] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.name or self.subject

    def can(self, permission: Permission | str, tenant: str | None = None) -> bool:
        """May the viewer do ``permission`` in ``tenant`` (in some tenant, for None)?"""
        if self.via == "anonymous":
            return True
        scope = self.scopes.get(Permission(permission), frozenset())
        if scope is None:
            return True
        return bool(scope) if tenant is None else tenant in scope

    def platform_wide(self, permission: Permission | str) -> bool:
        """Does the viewer hold ``permission`` in every tenant (platform views: all tenants' dead letters)?"""
        return self.via == "anonymous" or self.scopes.get(Permission(permission), frozenset()) is None

    def tenants(self, permission: Permission | str) -> TenantScope:
        """The tenants where the viewer holds ``permission`` (None = every tenant)."""
        if self.via == "anonymous":
            return None
        return self.scopes.get(Permission(permission), frozenset())

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


ANONYMOUS_VIEWER = Viewer(subject="anonymous", via="anonymous", name="local (authentication off)")
