"""The agents' permissions (issue 15): who may read and decide approvals of sensitive tool calls, manage
prompt versions and use tools that reach outside the platform — per role, through the real casbin
authorizer over an access file — and the rule of every new orchestrator RPC (permission, tenant field,
audited as an admin action)."""

from __future__ import annotations

import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
from isthmus_core.auth.access_file import AccessFile, StaticAccess
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Permission, Principal, Role
from isthmus_core.auth.methods import METHOD_RULES, rule_for
from isthmus_core.auth.policy import CasbinAuthorizer

P = Permission
AGENT_PERMISSIONS = (P.APPROVALS_READ, P.APPROVALS_DECIDE, P.PROMPTS_MANAGE, P.TOOLS_EXTERNAL)
#: the issue's table: what each role holds of the agents' permissions
HELD: dict[Role, set[Permission]] = {
    Role.READER: set(),
    Role.WRITER: {P.TOOLS_EXTERNAL},
    Role.AUDITOR: {P.APPROVALS_READ},
    Role.TENANT_ADMIN: {P.APPROVALS_READ, P.APPROVALS_DECIDE, P.PROMPTS_MANAGE, P.TOOLS_EXTERNAL},
    Role.PLATFORM_ADMIN: set(AGENT_PERMISSIONS),
    Role.DRILL_OPERATOR: set(),
    Role.SERVICE: set(),
}
_ORC = "/isthmus.agent_orchestrator.v1.AgentOrchestratorService/"


@pytest.mark.parametrize("role", list(Role))
def test_each_role_holds_the_agent_permissions_the_issue_gives_it(role: Role) -> None:
    assert {p for p in AGENT_PERMISSIONS if p in ROLE_PERMISSIONS[role]} == HELD[role]


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SERVICE])
def test_a_tenant_binding_grants_them_in_that_tenant_only(role: Role) -> None:
    auth = CasbinAuthorizer(StaticAccess(AccessFile().granted("acme", "pat", role)), service_subject=None)
    pat = Principal(subject="pat", via="jwt")
    for perm in AGENT_PERMISSIONS:
        assert auth.allowed(pat, "acme", perm) is (perm in HELD[role]), (role, perm)
        assert not auth.allowed(pat, "globex", perm), (role, perm)


def test_the_service_identity_cannot_decide_approvals_or_manage_prompts() -> None:
    auth = CasbinAuthorizer(StaticAccess(AccessFile()), service_subject="isthmus-service")
    svc = Principal(subject="isthmus-service", via="jwt")
    assert auth.allowed(svc, "acme", P.SEARCH)
    assert not any(auth.allowed(svc, "acme", p) for p in AGENT_PERMISSIONS)


#: method -> (permission, audited as an admin action)
EXPECTED_RULES = {
    "Ask": (P.SEARCH, False),
    "AskStream": (P.SEARCH, False),
    "ListPendingApprovals": (P.APPROVALS_READ, False),
    "Approve": (P.APPROVALS_DECIDE, True),
    "Reject": (P.APPROVALS_DECIDE, True),
    "ListGraphs": (P.TENANT_READ, False),
    "ListTools": (P.TENANT_READ, False),
    "CreatePromptVersion": (P.PROMPTS_MANAGE, True),
    "ListPromptVersions": (P.TENANT_READ, False),
    "SetPromptSplit": (P.PROMPTS_MANAGE, True),
}


def test_every_orchestrator_rpc_has_its_rule_on_the_request_tenant() -> None:
    methods = [m.name for m in pb.DESCRIPTOR.services_by_name["AgentOrchestratorService"].methods]
    assert sorted(methods) == sorted(EXPECTED_RULES)
    for name in methods:
        rule = rule_for(_ORC + name)
        assert rule is not None, name
        assert (rule.permission, rule.admin) == EXPECTED_RULES[name], name
        assert rule.tenant_field == "tenant_id" and rule.when_empty == "platform", name
        request_type = (
            pb.DESCRIPTOR.services_by_name["AgentOrchestratorService"].methods_by_name[name].input_type
        )
        assert "tenant_id" in request_type.fields_by_name, name
    assert {m for m in METHOD_RULES if m.startswith(_ORC)} == {_ORC + m for m in methods}


def test_who_may_do_what_with_agents_in_their_own_tenant() -> None:
    """The roles of a tenant against the new RPCs, as the interceptor decides them."""
    auth = CasbinAuthorizer(
        StaticAccess(
            AccessFile()
            .granted("acme", "reader", Role.READER)
            .granted("acme", "writer", Role.WRITER)
            .granted("acme", "auditor", Role.AUDITOR)
            .granted("acme", "admin", Role.TENANT_ADMIN)
        ),
        service_subject=None,
    )

    def may(subject: str, method: str) -> bool:
        rule = rule_for(_ORC + method)
        assert rule is not None
        return auth.allowed(Principal(subject=subject, via="jwt"), "acme", rule.permission)

    assert [m for m in EXPECTED_RULES if may("reader", m)] == [
        "Ask",
        "AskStream",
        "ListGraphs",
        "ListTools",
        "ListPromptVersions",
    ]
    assert [m for m in EXPECTED_RULES if may("writer", m)] == [m for m in EXPECTED_RULES if may("reader", m)]
    assert [m for m in EXPECTED_RULES if may("auditor", m)] == [
        "ListPendingApprovals",
        "ListGraphs",
        "ListTools",
        "ListPromptVersions",
    ]
    assert all(may("admin", m) for m in EXPECTED_RULES)
