"""Tenants that live in regions, against a real kube-apiserver: the operator (KopfRunner) with one in-memory
tenant registry and document index per region (no platform runs there)."""

from __future__ import annotations

from typing import Any

from isthmus_operator.measure import DocumentState
from isthmus_operator.regional import InMemoryDocumentIndex, InMemoryHealthProbe, RegionClients
from isthmus_operator.retrieval import InMemoryTenantRegistry

PLURAL = "tenants"


def tenant(name: str, primary: str, replicas: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "primaryRegion": primary,
        "replicaRegions": replicas,
        "quotas": {"requestsPerSecond": 5, "tokensPerDay": 1000, "storage": "1Gi"},
        "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
        **spec,
    }
    return {"apiVersion": "isthmus.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": body}


def region() -> RegionClients:
    return RegionClients(
        endpoint="in-memory",
        tenants=InMemoryTenantRegistry(),
        documents=InMemoryDocumentIndex(),
        health=InMemoryHealthProbe(),
    )


def registry(clients: RegionClients) -> InMemoryTenantRegistry:
    assert isinstance(clients.tenants, InMemoryTenantRegistry)
    return clients.tenants


def index(clients: RegionClients) -> InMemoryDocumentIndex:
    assert isinstance(clients.documents, InMemoryDocumentIndex)
    return clients.documents


def by_region(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["region"]: e for e in status.get("regions") or []}


def events(kube_api, namespace: str, reason: str) -> list[str]:
    return [
        e.message or "" for e in kube_api.core.list_namespaced_event(namespace).items if e.reason == reason
    ]


def test_tenant_is_held_in_each_listed_region_moves_primary_and_leaves_regions(
    kube_api, namespace, run_operator, wait
) -> None:
    regions = {"a": region(), "b": region(), "c": region()}
    acme = f"acme-{namespace[-6:]}"  # unique: ``run -A`` sees other tests' namespaces
    docs = {"d1": DocumentState(1, 1.0), "d2": DocumentState(3, 2.0)}
    index(regions["a"]).documents[acme] = dict(docs)
    index(regions["b"]).documents[acme] = {"d1": DocumentState(1, 1.0)}  # d2 not mirrored yet

    def status() -> dict[str, Any]:
        return kube_api.status(PLURAL, namespace, acme)

    with run_operator(regions=regions, regions_interval=0.5):
        kube_api.create(PLURAL, namespace, tenant(acme, "a", ["b"]))
        ready = wait(lambda: (s := status()).get("phase") == "Ready" and s, "Tenant Ready")
        assert registry(regions["a"]).tenants == {acme}
        assert registry(regions["b"]).tenants == {acme}
        assert registry(regions["c"]).tenants == set(), "c is not listed"
        entries = by_region(ready)
        assert {r: (e["role"], e["ready"], e["message"]) for r, e in entries.items()} == {
            "a": ("primary", True, "tenant created"),
            "b": ("replica", True, "tenant created"),
        }
        assert entries["a"]["lagDocuments"] == 0
        assert entries["b"]["lagDocuments"] == 1
        assert entries["b"]["lagSeconds"] > 0  # d2 was written at t=2 s after the epoch
        assert entries["a"]["lagSeconds"] == 0
        store = {c["type"]: c for c in ready["conditions"]}["VectorStoreReady"]
        assert store["message"] == "tenant held in a (primary), b (replica)"

        # replication catches up: the timer refreshes the lag without any change to the Tenant
        index(regions["b"]).documents[acme] = dict(docs)
        caught_up = wait(
            lambda: (e := by_region(status())["b"]).get("lagDocuments") == 0 and e, "lag back to 0"
        )
        assert caught_up["lagSeconds"] == 0

        # move the primary (one patch): both regions keep the tenant and its documents
        kube_api.patch_spec(PLURAL, namespace, acme, {"primaryRegion": "b", "replicaRegions": ["a"]})
        moved = wait(
            lambda: (s := status()).get("observedGeneration") == 2 and s.get("phase") == "Ready" and s,
            "status after the move",
        )
        assert {r: e["role"] for r, e in by_region(moved).items()} == {"b": "primary", "a": "replica"}
        for name in ("a", "b"):
            assert ("remove", acme) not in registry(regions[name]).calls
            assert registry(regions[name]).tenants == {acme}
            assert index(regions[name]).documents[acme] == docs
        configmap = kube_api.configmap(namespace, f"isthmus-tenant-{acme}")
        assert configmap["metadata"]["labels"]["isthmus.dev/primary-region"] == "b"

        # a replica dropped from the list loses the tenant there (deletionPolicy Delete) ...
        kube_api.patch_spec(PLURAL, namespace, acme, {"replicaRegions": ["c"]})
        wait(lambda: registry(regions["a"]).tenants == set(), "tenant removed from the dropped replica a")
        wait(lambda: set(by_region(status())) == {"b", "c"}, "status lists b and c")
        assert registry(regions["c"]).tenants == {acme}
        wait(lambda: events(kube_api, namespace, "RegionTenantRemoved"), "RegionTenantRemoved event")

        # ... a dropped former primary keeps it (it may hold writes not mirrored yet)
        kube_api.patch_spec(PLURAL, namespace, acme, {"primaryRegion": "c", "replicaRegions": []})
        kept = wait(lambda: events(kube_api, namespace, "RegionTenantKept"), "RegionTenantKept event")
        assert f"region 'b' is no longer listed; tenant '{acme}' is kept there (it was the primary" in kept[0]
        assert registry(regions["b"]).tenants == {acme}
        assert ("remove", acme) not in registry(regions["b"]).calls

        # deleting the Tenant removes it from every region the operator knows
        kube_api.delete(PLURAL, namespace, acme)
        wait(lambda: kube_api.get(PLURAL, namespace, acme) is None, "Tenant gone")
        assert all(registry(r).tenants == set() for r in regions.values())


def test_an_unknown_region_is_named_with_the_known_ones(kube_api, namespace, run_operator, wait) -> None:
    regions = {"a": region(), "b": region()}
    solo = f"solo-{namespace[-6:]}"
    with run_operator(regions=regions):
        kube_api.create(PLURAL, namespace, tenant(solo, "a", ["mars"]))
        pending = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, solo)).get("phase") == "Pending" and s, "Pending"
        )
        store = {c["type"]: c for c in pending["conditions"]}["VectorStoreReady"]
        expected = (
            "spec.replicaRegions: unknown region 'mars'; the operator's regions are 'a', 'b' "
            "(ISTHMUS_OPERATOR_REGIONS)"
        )
        assert (store["status"], store["reason"], store["message"]) == ("False", "UnknownRegion", expected)
        assert by_region(pending)["mars"] == {
            "region": "mars",
            "role": "replica",
            "ready": False,
            "message": expected,
        }
        assert registry(regions["a"]).tenants == {solo}, "the known region still gets the tenant"
        wait(lambda: expected in events(kube_api, namespace, "UnknownRegion"), "UnknownRegion event")
        kube_api.delete(PLURAL, namespace, solo)
        wait(lambda: kube_api.get(PLURAL, namespace, solo) is None, "Tenant gone")


def test_the_policy_ref_is_applied_in_every_listed_region(kube_api, namespace, run_operator, wait) -> None:
    from isthmus_operator.guardrail import InMemoryPolicyApplier

    policies = {r: InMemoryPolicyApplier() for r in ("a", "b", "c")}
    regions = {
        r: RegionClients("in-memory", InMemoryTenantRegistry(), policies=p) for r, p in policies.items()
    }
    policies["b"].fail_next = 2  # region b's guardrail is down twice
    name = f"pol-{namespace[-6:]}"
    with run_operator(regions=regions, retry_delay=0.5):
        kube_api.create(PLURAL, namespace, tenant(name, "a", ["b"], guardrailPolicyRef={"name": "strict"}))

        def condition() -> dict[str, Any]:
            conds = kube_api.status(PLURAL, namespace, name).get("conditions") or []
            return next((c for c in conds if c["type"] == "GuardrailPolicyReady"), {})

        down = wait(lambda: (c := condition()).get("reason") == "GuardrailUnavailable" and c, "b unavailable")
        assert "region 'b': in-memory guardrail: ApplyPolicyRef" in down["message"]
        applied = wait(lambda: (c := condition()).get("status") == "True" and c, "applied in a and b")
        assert applied["message"] == "guardrail policy current (preset 'strict'): a v1, b v1"
        assert policies["c"].calls == [], "region c does not hold the tenant"
        assert policies["a"].current == {name: 1} and policies["b"].current == {name: 1}
        kube_api.delete(PLURAL, namespace, name)
        wait(lambda: kube_api.get(PLURAL, namespace, name) is None, "Tenant gone")
