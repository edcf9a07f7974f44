"""The access file the operator renders from Tenant objects (pure: no fixtures, no API): the design's
TOML format (``[platform]``, ``[tenants.<t>]`` bindings, ``[tenants.<t>.quota]``), what is left out, and the
CRD's enum of roles against ``isthmus_core.auth.identity.Role``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus_core.auth.access_file import FAMILIES, parse
from isthmus_core.auth.identity import Role
from isthmus_core.contracts.ids import PRINCIPAL_PATTERN
from isthmus_core.errors import InvalidArgument
from isthmus_operator import specs
from isthmus_operator.builders import (
    ACCESS_FILE_KEY,
    build_access_configmap,
    build_access_file,
    build_tenant_settings,
    tenant_access,
)
from isthmus_operator.settings import OperatorSettings
from isthmus_operator.specs import BINDABLE_ROLES, Binding, parse_tenant

CRD = (
    Path(__file__).resolve().parents[2] / "charts" / "isthmus-operator" / "crds" / "tenants.isthmus.dev.yaml"
)


def tenant(name: str, deleting: bool = False, **spec: Any) -> dict[str, Any]:
    body = {"primaryRegion": "eu-west", "modelBundle": {"name": "bge", "version": "1"}, **spec}
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T15:00:00Z"
    return {"apiVersion": "isthmus.dev/v1alpha1", "kind": "Tenant", "metadata": meta, "spec": body}


ACME = tenant(
    "acme",
    access={
        "bindings": [
            {"principal": "client-abc", "role": "writer"},
            {"principal": "group:analysts", "role": "reader"},
        ]
    },
    quota={
        "requestsPerS": {"ask": 5, "search": 50, "ingest": 10},
        "maxDocuments": 1000,
        "maxBytes": 100_000_000,
        "llmTokensPerDay": 200_000,
    },
)
PLATFORM = [Binding(principal="ops-admin", role="platform-admin")]


def test_the_access_file_has_the_design_format() -> None:
    text = build_access_file([ACME, tenant("beta")], PLATFORM)
    assert tomllib.loads(text) == {
        "platform": {"bindings": [{"principal": "ops-admin", "role": "platform-admin"}]},
        "tenants": {
            "acme": {
                "bindings": [
                    {"principal": "client-abc", "role": "writer"},
                    {"principal": "group:analysts", "role": "reader"},
                ],
                "quota": {
                    "requests_per_s": {"ask": 5, "ingest": 10, "search": 50},
                    "max_documents": 1000,
                    "max_bytes": 100_000_000,
                    "llm_tokens_per_day": 200_000,
                },
            },
            "beta": {"bindings": []},  # known, nobody bound yet
        },
    }


def test_a_partial_quota_names_only_what_is_set() -> None:
    text = build_access_file([tenant("acme", quota={"maxBytes": 5_000_000_000})])
    assert tomllib.loads(text)["tenants"]["acme"]["quota"] == {"max_bytes": 5_000_000_000}


def test_the_access_file_is_deterministic() -> None:
    other = tenant("zeta", access={"bindings": [{"principal": "z", "role": "auditor"}]})
    assert build_access_file([ACME, other], PLATFORM) == build_access_file([other, ACME], PLATFORM)


def test_the_policys_parser_reads_it_back() -> None:
    """What every pod does with the file: isthmus_core.auth.access_file.parse (the one reader)."""
    text = build_access_file(
        [ACME, tenant("beta", access={"bindings": [{"principal": "b@x.org", "role": "auditor"}]})], PLATFORM
    )
    model = parse(text)
    assert [(b.principal, b.role) for b in model.platform.bindings] == [("ops-admin", Role.PLATFORM_ADMIN)]
    acme = model.tenants["acme"]
    assert [(b.principal, b.role) for b in acme.bindings] == [
        ("client-abc", Role.WRITER),
        ("group:analysts", Role.READER),
    ]
    assert acme.quota.requests_per_s == {"ask": 5, "search": 50, "ingest": 10}
    assert (acme.quota.max_documents, acme.quota.max_bytes, acme.quota.llm_tokens_per_day) == (
        1000,
        100_000_000,
        200_000,
    )
    assert model.tenants["beta"].quota.empty


def test_the_operator_accepts_exactly_the_principals_and_families_the_parser_does() -> None:
    assert re.fullmatch(PRINCIPAL_PATTERN, "group:analysts")
    assert specs.FAMILIES == FAMILIES
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    principal = spec["access"]["properties"]["bindings"]["items"]["properties"]["principal"]
    assert principal["pattern"] == PRINCIPAL_PATTERN
    [rule] = spec["quota"]["properties"]["requestsPerS"]["x-kubernetes-validations"]
    assert sorted(re.findall(r"'([a-z]+)'", rule["rule"])) == sorted(FAMILIES)
    for family in FAMILIES:
        parse_tenant("acme", tenant("acme", quota={"requestsPerS": {family: 1}})["spec"])


def test_tenants_being_deleted_or_invalid_grant_nothing() -> None:
    tenants = [
        ACME,
        tenant("gone", deleting=True, access={"bindings": [{"principal": "p", "role": "writer"}]}),
        tenant("broken", access={"bindings": [{"principal": "p", "role": "service"}]}),
        tenant("Not.An.Id"),
    ]
    kept, skipped = tenant_access(tenants)
    assert set(kept) == {"acme"}
    assert skipped["gone"] == "being deleted"
    assert "role 'service' is not one of" in skipped["broken"]
    assert "tenant id" in skipped["Not.An.Id"]
    assert set(tomllib.loads(build_access_file(tenants))["tenants"]) == {"acme"}


def test_empty_access_file_binds_nobody() -> None:
    assert tomllib.loads(build_access_file([])) == {"platform": {"bindings": []}}


def test_access_configmap() -> None:
    cm = build_access_configmap("isthmus-access", "platform", "[platform]\nbindings = []\n")
    assert cm["metadata"] == {
        "name": "isthmus-access",
        "namespace": "platform",
        "labels": {
            "app.kubernetes.io/managed-by": "isthmus-operator",
            "app.kubernetes.io/component": "access",
        },
    }
    assert cm["data"] == {ACCESS_FILE_KEY: "[platform]\nbindings = []\n"}
    assert ACCESS_FILE_KEY == "access.toml"  # the key the isthmus chart mounts


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"access": {"bindings": [{"principal": "p", "role": "service"}]}}, "role 'service' is not one of"),
        ({"access": {"bindings": [{"principal": "two words", "role": "reader"}]}}, "principals are 1-256"),
        (
            {"access": {"bindings": [{"principal": "-x", "role": "reader"}]}},
            "spec.access.bindings.0.principal",
        ),
        ({"quota": {"requestsPerS": {"ask": 0}}}, "requestsPerS.ask: at least 1"),
        ({"quota": {"requestsPerS": {"chat": 1}}}, "'chat' is not an RPC family; the families are admin"),
        ({"quota": {"maxBytes": -1}}, "spec.quota.maxBytes"),
        ({"quota": {"tokens": 1}}, "spec.quota.tokens: Extra inputs are not permitted"),
    ],
)
def test_invalid_access_and_quota_name_the_field(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_tenant("acme", tenant("acme", **spec)["spec"])
    assert fragment in str(info.value)


def test_legacy_quotas_are_optional() -> None:
    settings = build_tenant_settings("acme", parse_tenant("acme", tenant("acme")["spec"]))
    assert settings["quotas"] is None


def test_the_crd_binds_the_roles_isthmus_knows_but_service() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    role = spec["properties"]["access"]["properties"]["bindings"]["items"]["properties"]["role"]
    assert role["enum"] == list(BINDABLE_ROLES) == [r.value for r in Role if r is not Role.SERVICE]
    assert "quotas" not in spec["required"]
    quota = spec["properties"]["quota"]["properties"]
    assert set(quota) == {"requestsPerS", "maxDocuments", "maxBytes", "llmTokensPerDay"}


def test_operator_settings_take_platform_bindings_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from isthmus_core.settings import load_all

    monkeypatch.setenv("ISTHMUS_OPERATOR_EVALUATION_ENDPOINT", "isthmus-evaluation:50051")
    monkeypatch.setenv(
        "ISTHMUS_OPERATOR_ACCESS_PLATFORM_BINDINGS", '[{"principal": "ops-admin", "role": "platform-admin"}]'
    )
    settings = load_all([OperatorSettings])["operator"]
    assert isinstance(settings, OperatorSettings)
    assert settings.access_configmap == "isthmus-access"
    assert settings.access_platform_bindings == PLATFORM
    monkeypatch.setenv("ISTHMUS_OPERATOR_ACCESS_PLATFORM_BINDINGS", '[{"principal": "x", "role": "service"}]')
    with pytest.raises(Exception, match="role 'service' is not one of"):
        load_all([OperatorSettings])
