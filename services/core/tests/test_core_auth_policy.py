"""The casbin authorizer: every role in its own tenant, another tenant and every tenant; groups; the
implicit service identity; names that look like roles; reloads (and a broken edit keeping the last good
bindings); the builder's service subject per auth mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus_core.auth.access_file import AccessFile, AccessFileReloader, StaticAccess, save
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Permission, Principal, Role
from isthmus_core.auth.policy import (
    LOCAL_SERVICE_SUBJECT,
    CasbinAuthorizer,
    build_authorizer,
    service_subject,
)
from isthmus_core.settings import CommonSettings

P = Permission
#: a sample of permissions covering every role's distinctive ones
SAMPLE = [
    P.DOCUMENTS_READ,
    P.DOCUMENTS_WRITE,
    P.SEARCH,
    P.TENANT_MANAGE,
    P.TENANTS_ADMIN,
    P.AUDIT_READ,
    P.METRICS_READ,
    P.ERASE,
    P.IMPERSONATE,
    P.DRILL_RUN,
    P.EVAL_RUN,
]


def who(subject: str, *groups: str) -> Principal:
    return Principal(subject=subject, via="jwt", groups=groups)


def authorizer(model: AccessFile, service: str | None = None) -> CasbinAuthorizer:
    return CasbinAuthorizer(StaticAccess(model), service_subject=service)


@pytest.mark.parametrize("role", list(Role))
def test_a_tenant_binding_holds_in_that_tenant_only(role: Role) -> None:
    auth = authorizer(AccessFile().granted("acme", "alice", role))
    alice = who("alice")
    for perm in SAMPLE:
        held = perm in ROLE_PERMISSIONS[role]
        assert auth.allowed(alice, "acme", perm) is held, (role, perm)
        assert auth.allowed(alice, "other", perm) is False, (role, perm)
        assert auth.allowed(alice, None, perm) is False, (role, perm)  # not for every tenant
        assert auth.allowed_anywhere(alice, perm) is held
        assert auth.tenants(alice, perm) == (frozenset({"acme"}) if held else frozenset())


@pytest.mark.parametrize("role", list(Role))
def test_a_platform_binding_holds_in_every_tenant(role: Role) -> None:
    auth = authorizer(AccessFile().granted("*", "ops", role))
    ops = who("ops")
    for perm in SAMPLE:
        held = perm in ROLE_PERMISSIONS[role]
        for tenant in ("acme", "other", None):
            assert auth.allowed(ops, tenant, perm) is held, (role, perm, tenant)
        assert auth.tenants(ops, perm) == (None if held else frozenset())


def test_the_roles_say_what_the_issue_says() -> None:
    auth = authorizer(
        AccessFile()
        .granted("acme", "reader", Role.READER)
        .granted("acme", "writer", Role.WRITER)
        .granted("acme", "admin", Role.TENANT_ADMIN)
        .granted("acme", "auditor", Role.AUDITOR)
        .granted("*", "root", Role.PLATFORM_ADMIN)
    )
    assert auth.allowed(who("reader"), "acme", P.SEARCH)
    assert not auth.allowed(who("reader"), "acme", P.DOCUMENTS_WRITE)
    assert auth.allowed(who("writer"), "acme", P.DOCUMENTS_WRITE)
    assert not auth.allowed(who("writer"), "acme", P.ERASE)
    assert auth.allowed(who("admin"), "acme", P.IMPERSONATE)
    assert not auth.allowed(who("admin"), "acme", P.TENANTS_ADMIN)  # creating tenants is platform-wide
    assert auth.allowed(who("auditor"), "acme", P.AUDIT_READ)
    assert not auth.allowed(who("auditor"), "acme", P.DOCUMENTS_READ)
    assert auth.allowed(who("root"), None, P.TENANTS_ADMIN)
    assert not auth.allowed(who("nobody"), "acme", P.SEARCH)


def test_groups_grant_through_any_of_the_caller_s_names() -> None:
    auth = authorizer(
        AccessFile().granted("acme", "group:analysts", Role.READER).granted("beta", "bob", Role.WRITER)
    )
    assert auth.allowed(who("bob", "analysts"), "acme", P.SEARCH)
    assert auth.allowed(who("bob", "analysts"), "beta", P.DOCUMENTS_WRITE)
    assert not auth.allowed(who("bob", "analysts"), "acme", P.DOCUMENTS_WRITE)
    assert not auth.allowed(who("bob"), "acme", P.SEARCH)
    assert not auth.allowed(who("carol", "auditors"), "acme", P.SEARCH)
    # a subject literally named like the group is not the group
    assert not auth.allowed(who("analysts"), "acme", P.SEARCH)
    assert auth.tenants(who("bob", "analysts"), P.SEARCH) == frozenset({"acme", "beta"})


def test_a_subject_named_like_a_role_is_not_that_role() -> None:
    auth = authorizer(AccessFile().granted("acme", "someone", Role.READER))
    for role in Role:
        for name in (role.value, f"role:{role.value}"):
            assert not auth.allowed(who(name), "acme", P.SEARCH), name
            assert auth.tenants(who(name), P.SEARCH) == frozenset()


def test_the_service_identity_is_bound_implicitly() -> None:
    auth = authorizer(AccessFile(), service="isthmus-service")
    svc = who("isthmus-service")
    for perm in [*SAMPLE, P.TENANT_READ, P.MODELS_USE, P.GUARD_CHECK]:
        held = perm in ROLE_PERMISSIONS[Role.SERVICE]
        assert auth.allowed(svc, "acme", perm) is held
        assert auth.allowed(svc, None, perm) is held
    assert not auth.allowed(who("someone-else"), "acme", P.TENANT_READ)
    assert not authorizer(AccessFile()).allowed(svc, "acme", P.TENANT_READ)  # no service subject: none


def test_service_subject_per_auth_mode(tmp_path: Path) -> None:
    assert service_subject(CommonSettings(auth="local")) == LOCAL_SERVICE_SUBJECT
    oidc = CommonSettings(
        auth="oidc", auth_issuer="https://idp.example", auth_service_client_id="isthmus-svc"
    )
    assert service_subject(oidc) == "isthmus-svc"
    assert service_subject(CommonSettings(auth="oidc", auth_issuer="https://idp.example")) is None
    assert service_subject(CommonSettings()) is None

    auth = build_authorizer(CommonSettings(auth="local", data_dir=tmp_path))  # no file: no bindings
    assert auth.allowed(who(LOCAL_SERVICE_SUBJECT), "acme", P.TENANT_READ)
    assert not auth.allowed(who("alice"), "acme", P.TENANT_READ)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_changes_to_the_file_apply_and_drop_cached_decisions(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    save(path, AccessFile().granted("acme", "alice", Role.READER))
    clock = Clock()
    auth = CasbinAuthorizer(AccessFileReloader(path, clock=clock))
    alice = who("alice")
    assert auth.allowed(alice, "acme", P.SEARCH)
    assert auth.tenants(alice, P.SEARCH) == frozenset({"acme"})

    save(path, AccessFile().granted("beta", "alice", Role.READER))
    clock.now += 1.5
    assert not auth.allowed(alice, "acme", P.SEARCH)  # the cached True is gone with the old file
    assert auth.allowed(alice, "beta", P.SEARCH)
    assert auth.tenants(alice, P.SEARCH) == frozenset({"beta"})

    path.write_text('[tenants.beta]\nbindings = [{ principal = "alice", role = "overlord" }]\n')
    clock.now += 1.5
    assert auth.allowed(alice, "beta", P.SEARCH)  # broken edit: the last good bindings stay
    assert not auth.allowed(alice, "acme", P.SEARCH)

    path.unlink()
    clock.now += 1.5
    assert not auth.allowed(alice, "beta", P.SEARCH)  # no file: no bindings


def test_build_authorizer_reads_the_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    save(path, AccessFile().granted("acme", "alice", Role.WRITER))
    auth = build_authorizer(CommonSettings(access_file=path, data_dir=tmp_path / "data"))
    assert auth.allowed(who("alice"), "acme", P.DOCUMENTS_WRITE)
