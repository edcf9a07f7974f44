"""Tenants against a real kube-apiserver (v1.34.2 + etcd): the CRD schema, and the operator's handlers run by
``kopf.testing.KopfRunner(['run', '-A', '--standalone'])`` with the real retrieval gRPC service."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from isthmus_operator.guardrail import GrpcPolicyApplier, InMemoryPolicyApplier
from isthmus_operator.retrieval import GrpcTenantRegistry, InMemoryTenantRegistry

PLURAL = "tenants"


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "primaryRegion": "eu-west",
        "replicaRegions": ["us-east"],
        "quotas": {"requestsPerSecond": 50, "tokensPerDay": 2_000_000, "storage": "20Gi"},
        "guardrailPolicyRef": {"name": "strict"},
        "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
    }
    body.update(spec)
    return {"apiVersion": "isthmus.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": body}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def test_schema_rejects_an_invalid_tenant_with_422(kube_api, namespace) -> None:
    bad = tenant("bad")
    del bad["spec"]["primaryRegion"]
    bad["spec"]["replicaRegions"] = ["Not_A_Region"]
    bad["spec"]["quotas"]["requestsPerSecond"] = 0
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, bad)
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert "spec.primaryRegion: Required value" in message
    assert 'spec.replicaRegions[0]: Invalid value: "Not_A_Region"' in message
    assert "spec.quotas.requestsPerSecond: Invalid value: 0" in message
    assert kube_api.get(PLURAL, namespace, "bad") is None


@pytest.mark.parametrize("storage", ["lots", "-5Gi", "0"])
def test_schema_rejects_a_storage_quota_that_is_no_positive_quantity(kube_api, namespace, storage) -> None:
    bad = tenant("bad-storage")
    bad["spec"]["quotas"]["storage"] = storage
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, bad)
    assert info.value.status == 422
    assert "storage must be a positive Kubernetes quantity" in json.loads(info.value.body)["message"]


def test_schema_rejects_the_primary_region_as_a_replica(kube_api, namespace) -> None:
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, tenant("dup", replicaRegions=["eu-west"]))
    assert info.value.status == 422
    assert "replicaRegions must not contain the primary region" in json.loads(info.value.body)["message"]


def test_schema_takes_a_policy_version_of_at_least_one(kube_api, namespace) -> None:
    bad = tenant("bad-version", guardrailPolicyRef={"name": "strict", "version": 0})
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, bad)
    assert info.value.status == 422
    assert "spec.guardrailPolicyRef.version: Invalid value: 0" in json.loads(info.value.body)["message"]
    pinned = kube_api.create(
        PLURAL, namespace, tenant("pinned", guardrailPolicyRef={"name": "x", "version": 3})
    )
    kube_api.delete(PLURAL, namespace, "pinned")  # no operator runs: nothing holds it
    assert pinned["spec"]["guardrailPolicyRef"] == {"name": "x", "version": 3}


def test_schema_defaults_policy_and_deletion_policy(kube_api, namespace) -> None:
    body = tenant("defaults")
    del body["spec"]["guardrailPolicyRef"]
    created = kube_api.create(PLURAL, namespace, body)
    kube_api.delete(PLURAL, namespace, "defaults")  # no operator runs: nothing holds it
    assert created["spec"]["guardrailPolicyRef"] == {"name": "default"}
    assert created["spec"]["deletionPolicy"] == "Delete"


def test_tenant_lifecycle_materialises_updates_and_cleans_up(
    kube_api, namespace, run_operator, retrieval_server, guardrail_server, wait
) -> None:
    name = f"acme-{namespace[-4:]}"
    policies = GrpcPolicyApplier(guardrail_server.endpoint)
    with run_operator(GrpcTenantRegistry(retrieval_server.endpoint), policies=policies):
        created = kube_api.create(PLURAL, namespace, tenant(name))

        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, name)).get("phase") == "Ready" and s,
            "Tenant Ready",
        )
        conds = conditions(status)
        assert {t: c["status"] for t, c in conds.items()} == {
            "Valid": "True",
            "ConfigReady": "True",
            "VectorStoreReady": "True",
            "GuardrailPolicyReady": "True",
            "Ready": "True",
        }
        assert conds["VectorStoreReady"]["message"] == "tenant created in the vector store"
        assert conds["GuardrailPolicyReady"]["reason"] == "Applied"
        assert conds["GuardrailPolicyReady"]["message"] == "guardrail policy v1 is current (preset 'strict')"
        assert guardrail_server.current(name) == (1, "preset:strict")
        assert status["observedGeneration"] == 1
        assert status["configMap"] == f"isthmus-tenant-{name}"

        obj = kube_api.get(PLURAL, namespace, name)
        assert "isthmus.dev/operator" in obj["metadata"]["finalizers"]
        cm = kube_api.configmap(namespace, f"isthmus-tenant-{name}")
        assert cm["metadata"]["labels"]["isthmus.dev/tenant"] == name
        assert cm["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        settings = json.loads(cm["data"]["tenant.json"])
        assert settings["tenantId"] == name
        assert settings["quotas"] == {"requestsPerSecond": 50, "storage": "20Gi", "tokensPerDay": 2000000}
        assert settings["guardrailPolicy"] == "strict"
        assert retrieval_server.has_tenant(name)

        # update: the ConfigMap follows the spec
        kube_api.patch_spec(
            PLURAL,
            namespace,
            name,
            {"replicaRegions": ["us-east", "ap-south"], "quotas": {"requestsPerSecond": 75}},
        )

        def updated() -> dict[str, Any] | None:
            data = json.loads(kube_api.configmap(namespace, f"isthmus-tenant-{name}")["data"]["tenant.json"])
            return data if data["quotas"]["requestsPerSecond"] == 75 else None

        data = wait(updated, "ConfigMap updated")
        assert data["replicaRegions"] == ["us-east", "ap-south"]
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, name)).get("observedGeneration") == 2 and s,
            "status observes generation 2",
        )
        assert status["phase"] == "Ready"
        assert conditions(status)["VectorStoreReady"]["message"] == "tenant exists in the vector store"
        assert guardrail_server.current(name) == (1, "preset:strict"), "re-applying stores nothing"

        # delete: the finalizer holds the object until the ConfigMap and the vector-store tenant are gone
        kube_api.delete(PLURAL, namespace, name)
        wait(lambda: kube_api.get(PLURAL, namespace, name) is None, "Tenant gone (finalizer removed)")
        assert kube_api.configmap(namespace, f"isthmus-tenant-{name}") is None
        assert not retrieval_server.has_tenant(name)
        assert name in retrieval_server.deleted_events


def test_tenant_name_that_is_no_tenant_id_fails_without_side_effects(
    kube_api, namespace, run_operator, wait
) -> None:
    registry = InMemoryTenantRegistry()
    with run_operator(registry):
        kube_api.create(PLURAL, namespace, tenant("acme.eu"))
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "acme.eu")).get("phase") and s, "a phase"
        )
        assert status["phase"] == "Failed"
        valid = conditions(status)["Valid"]
        assert valid["status"] == "False" and valid["reason"] == "InvalidSpec"
        assert "metadata.name 'acme.eu' cannot be a tenant id" in valid["message"]
        assert status["message"] == valid["message"]
        assert kube_api.configmap(namespace, "isthmus-tenant-acme.eu") is None
        assert [c for c in registry.calls if c[1] == "acme.eu"] == []
        kube_api.delete(PLURAL, namespace, "acme.eu")
        wait(lambda: kube_api.get(PLURAL, namespace, "acme.eu") is None, "invalid Tenant deleted")


def test_unavailable_retrieval_is_reported_then_retried(kube_api, namespace, run_operator, wait) -> None:
    registry = InMemoryTenantRegistry()
    registry.fail_next = 2
    with run_operator(registry, retry_delay=0.5):
        kube_api.create(PLURAL, namespace, tenant("flaky", deletionPolicy="Retain"))
        # the first attempt's status is written even though the handler asks kopf to retry
        pending = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "flaky")).get("phase") == "Pending" and s,
            "Pending",
        )
        store = conditions(pending)["VectorStoreReady"]
        assert store["status"] == "False" and store["reason"] == "RetrievalUnavailable"
        assert "failed (injected)" in store["message"]
        wait(
            lambda: kube_api.status(PLURAL, namespace, "flaky").get("phase") == "Ready", "Ready after retries"
        )
        assert registry.tenants == {"flaky"}
        assert [op for op, t in registry.calls if t == "flaky"] == ["ensure", "ensure", "ensure"]

        kube_api.delete(PLURAL, namespace, "flaky")
        wait(lambda: kube_api.get(PLURAL, namespace, "flaky") is None, "Tenant gone")
        assert registry.tenants == {"flaky"}, "deletionPolicy Retain keeps the vector-store tenant"
        assert kube_api.configmap(namespace, "isthmus-tenant-flaky") is None


def test_policy_ref_selects_a_preset_or_a_stored_version_in_the_guardrail(
    kube_api, namespace, run_operator, guardrail_server, wait
) -> None:
    name = f"pol-{namespace[-4:]}"

    def policy_condition(message: str) -> dict[str, Any] | None:
        cond = conditions(kube_api.status(PLURAL, namespace, name)).get("GuardrailPolicyReady") or {}
        return cond if cond.get("message") == message else None

    with run_operator(InMemoryTenantRegistry(), policies=GrpcPolicyApplier(guardrail_server.endpoint)):
        kube_api.create(PLURAL, namespace, tenant(name, guardrailPolicyRef={"name": "strict"}))
        wait(lambda: policy_condition("guardrail policy v1 is current (preset 'strict')"), "strict applied")
        kube_api.patch_spec(PLURAL, namespace, name, {"guardrailPolicyRef": {"name": "permissive"}})
        wait(lambda: policy_condition("guardrail policy v2 is current (preset 'permissive')"), "v2")
        assert guardrail_server.current(name) == (2, "preset:permissive")
        # a stored version by number: a rollback
        kube_api.patch_spec(PLURAL, namespace, name, {"guardrailPolicyRef": {"version": 1}})
        wait(lambda: policy_condition("guardrail policy v1 is current (version 1)"), "rolled back to v1")
        assert guardrail_server.current(name) == (1, "preset:strict")
        # a version never stored is refused: the tenant is not Ready, and says why
        kube_api.patch_spec(PLURAL, namespace, name, {"guardrailPolicyRef": {"version": 9}})
        refused = wait(
            lambda: (
                (c := conditions(kube_api.status(PLURAL, namespace, name)).get("GuardrailPolicyReady"))
                and c["reason"] == "Rejected"
                and c
            ),
            "version 9 refused",
        )
        assert "the guardrail refused guardrailPolicyRef (version 9)" in refused["message"]
        assert "no policy version 9" in refused["message"]
        assert kube_api.status(PLURAL, namespace, name)["phase"] == "Pending"
        assert guardrail_server.current(name) == (1, "preset:strict"), "a refused ref changes nothing"
        kube_api.delete(PLURAL, namespace, name)
        wait(lambda: kube_api.get(PLURAL, namespace, name) is None, "Tenant gone")


def test_unavailable_guardrail_is_reported_then_retried(kube_api, namespace, run_operator, wait) -> None:
    policies = InMemoryPolicyApplier(fail_next=2)
    with run_operator(InMemoryTenantRegistry(), policies=policies, retry_delay=0.5):
        kube_api.create(PLURAL, namespace, tenant("guard-flaky"))
        pending = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "guard-flaky")).get("phase") == "Pending" and s,
            "Pending",
        )
        cond = conditions(pending)["GuardrailPolicyReady"]
        assert cond["status"] == "False" and cond["reason"] == "GuardrailUnavailable"
        assert "cannot apply guardrailPolicyRef (preset 'strict') yet" in cond["message"]
        assert "failed (injected)" in cond["message"]
        ready = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "guard-flaky")).get("phase") == "Ready" and s,
            "Ready after retries",
        )
        assert conditions(ready)["GuardrailPolicyReady"]["message"] == (
            "guardrail policy v1 is current (preset 'strict')"
        )
        assert [c for c in policies.calls if c[0] == "guard-flaky"] == [("guard-flaky", "strict", None)] * 3
        kube_api.delete(PLURAL, namespace, "guard-flaky")
        wait(lambda: kube_api.get(PLURAL, namespace, "guard-flaky") is None, "Tenant gone")


def test_without_a_guardrail_endpoint_the_ref_is_not_managed(kube_api, namespace, run_operator, wait) -> None:
    with run_operator(InMemoryTenantRegistry()):
        kube_api.create(PLURAL, namespace, tenant("no-guard"))
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "no-guard")).get("phase") == "Ready" and s,
            "Ready (an unmanaged policy does not block)",
        )
        cond = conditions(status)["GuardrailPolicyReady"]
        assert (cond["status"], cond["reason"]) == ("Unknown", "NotManaged")
        assert "guardrailPolicyRef (preset 'strict') is not applied" in cond["message"]
        kube_api.delete(PLURAL, namespace, "no-guard")
        wait(lambda: kube_api.get(PLURAL, namespace, "no-guard") is None, "Tenant gone")


ACCESS_CM = "isthmus-access"


def _access_file(kube_api, namespace: str) -> dict[str, Any] | None:
    import tomllib

    cm = kube_api.configmap(namespace, ACCESS_CM)
    return tomllib.loads(cm["data"]["access.toml"]) if cm else None


def test_schema_rejects_unknown_roles_and_bad_quotas(kube_api, namespace) -> None:
    bad = tenant("bad-access")
    bad["spec"]["access"] = {
        "bindings": [{"principal": "p", "role": "service"}, {"principal": "a b", "role": "reader"}]
    }
    bad["spec"]["quota"] = {"requestsPerS": {"search": 0}, "maxBytes": -1}
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, bad)
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert 'spec.access.bindings[0].role: Unsupported value: "service"' in message
    assert 'spec.access.bindings[1].principal: Invalid value: "a b"' in message
    assert "spec.quota.requestsPerS.search: Invalid value: 0" in message
    assert "spec.quota.maxBytes: Invalid value: -1" in message
    # CEL rules run once the schema holds
    bad = tenant("bad-family")
    bad["spec"]["quota"] = {"requestsPerS": {"chat": 1}}
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, bad)
    assert info.value.status == 422
    assert "requestsPerS keys are RPC families: admin, ask" in json.loads(info.value.body)["message"]
    # the legacy quotas are optional now (spec.quota is the enforced one)
    body = tenant("no-legacy-quotas")
    del body["spec"]["quotas"]
    assert kube_api.create(PLURAL, namespace, body)["spec"].get("quotas") is None
    kube_api.delete(PLURAL, namespace, "no-legacy-quotas")  # no operator runs: nothing holds it


def test_tenant_bindings_and_quotas_become_the_namespaces_access_file(
    kube_api, namespace, run_operator, wait
) -> None:
    from isthmus_operator.reconcile import AccessConfig
    from isthmus_operator.specs import Binding

    access = AccessConfig(ACCESS_CM, (Binding(principal="ops-admin", role="platform-admin"),))
    acme_access = {
        "bindings": [
            {"principal": "client-abc", "role": "writer"},
            {"principal": "group:analysts", "role": "reader"},
        ]
    }
    acme_quota = {"requestsPerS": {"ask": 5, "search": 50}, "maxDocuments": 1000, "llmTokensPerDay": 200000}
    with run_operator(InMemoryTenantRegistry(), access=access):
        kube_api.create(PLURAL, namespace, tenant("acme", access=acme_access, quota=acme_quota))
        kube_api.create(
            PLURAL, namespace, tenant("beta", access={"bindings": [{"principal": "b", "role": "auditor"}]})
        )
        both = wait(
            lambda: (
                (f := _access_file(kube_api, namespace))
                and set(f.get("tenants", {})) == {"acme", "beta"}
                and f
            ),
            "the access file with both tenants",
        )
        assert both == {
            "platform": {"bindings": [{"principal": "ops-admin", "role": "platform-admin"}]},
            "tenants": {
                "acme": {
                    "bindings": acme_access["bindings"],
                    "quota": {
                        "requests_per_s": {"ask": 5, "search": 50},
                        "max_documents": 1000,
                        "llm_tokens_per_day": 200000,
                    },
                },
                "beta": {"bindings": [{"principal": "b", "role": "auditor"}]},
            },
        }
        cm = kube_api.configmap(namespace, ACCESS_CM)
        assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "isthmus-operator"
        # an update: client-abc is demoted to reader, the quota dropped
        kube_api.patch_spec(
            PLURAL,
            namespace,
            "acme",
            {"access": {"bindings": [{"principal": "client-abc", "role": "reader"}]}, "quota": None},
        )
        acme = wait(
            lambda: (
                (f := _access_file(kube_api, namespace))
                and f["tenants"]["acme"]["bindings"] == [{"principal": "client-abc", "role": "reader"}]
                and f["tenants"]["acme"]
            ),
            "the demotion in the access file",
        )
        assert "quota" not in acme
        # a delete: the tenant's bindings go with it
        kube_api.delete(PLURAL, namespace, "beta")
        wait(lambda: kube_api.get(PLURAL, namespace, "beta") is None, "Tenant beta deleted")
        final = wait(
            lambda: (f := _access_file(kube_api, namespace)) and set(f["tenants"]) == {"acme"} and f,
            "beta gone from the access file",
        )
        assert final["platform"] == both["platform"]
        kube_api.delete(PLURAL, namespace, "acme")
        wait(
            lambda: (f := _access_file(kube_api, namespace)) is not None and "tenants" not in f,
            "no tenant left in the access file",
        )
