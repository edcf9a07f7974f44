"""Pure builders: objects, patches, conditions and phases (no fixtures, no API)."""

from __future__ import annotations

import json

from isthmus_operator.builders import (
    build_bundle_patch,
    build_condition,
    build_policy_condition,
    build_region_status,
    build_tenant_configmap,
    merge_conditions,
    plan_tenant_regions,
    summarise,
    tenant_phase,
    workload_bundle,
)
from isthmus_operator.specs import PolicyRef, parse_tenant

SPEC = {
    "primaryRegion": "eu-west",
    "replicaRegions": ["us-east", "ap-south"],
    "quotas": {"requestsPerSecond": 25, "tokensPerDay": 500000, "storage": "20Gi"},
    "guardrailPolicyRef": {"name": "strict"},
    "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
}


def test_tenant_configmap_carries_the_settings_labels_and_owner() -> None:
    cm = build_tenant_configmap("acme", "platform", "uid-1", parse_tenant("acme", SPEC))
    assert cm["metadata"]["name"] == "isthmus-tenant-acme"
    assert cm["metadata"]["namespace"] == "platform"
    assert cm["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "isthmus-operator",
        "isthmus.dev/tenant": "acme",
        "isthmus.dev/primary-region": "eu-west",
    }
    owner = cm["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["name"], owner["uid"]) == (
        "isthmus.dev/v1alpha1",
        "Tenant",
        "acme",
        "uid-1",
    )
    settings = json.loads(cm["data"]["tenant.json"])
    assert settings == {
        "tenantId": "acme",
        "primaryRegion": "eu-west",
        "replicaRegions": ["us-east", "ap-south"],
        "quotas": {"requestsPerSecond": 25, "tokensPerDay": 500000, "storage": "20Gi"},
        "guardrailPolicy": "strict",
        "guardrailPolicyVersion": None,
        "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
    }


def test_tenant_configmap_is_deterministic() -> None:
    a = build_tenant_configmap("acme", "ns", "u", parse_tenant("acme", SPEC))
    b = build_tenant_configmap("acme", "ns", "u", parse_tenant("acme", dict(reversed(list(SPEC.items())))))
    assert a == b


def test_merge_keeps_transition_time_while_status_is_unchanged() -> None:
    old = [build_condition("Ready", True, "Reconciled", "ok", 1, "2025-01-01T00:00:00Z")]
    same = merge_conditions(
        old, [build_condition("Ready", True, "Reconciled", "still ok", 2, "2025-01-02T00:00:00Z")]
    )
    assert same[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert same[0]["message"] == "still ok" and same[0]["observedGeneration"] == 2
    flipped = merge_conditions(
        old, [build_condition("Ready", False, "X", "broken", 2, "2025-01-02T00:00:00Z")]
    )
    assert flipped[0]["lastTransitionTime"] == "2025-01-02T00:00:00Z"
    assert flipped[0]["status"] == "False"


def test_merge_adds_new_types_sorted_and_keeps_others() -> None:
    old = [build_condition("Valid", True, "SpecAccepted", "", 1, "t0")]
    merged = merge_conditions(old, [build_condition("ConfigReady", None, "Waiting", "", 1, "t1")])
    assert [c["type"] for c in merged] == ["ConfigReady", "Valid"]
    assert merged[0]["status"] == "Unknown"


def test_summary_and_phase() -> None:
    ok = [
        build_condition("Valid", True, "SpecAccepted", "", 1, "t"),
        build_condition("VectorStoreReady", None, "NotManaged", "not managed", 1, "t"),
    ]
    ready = summarise(ok, 1, "t")
    assert ready["status"] == "True"
    assert tenant_phase([*ok, ready]) == "Ready"

    down = [*ok[:1], build_condition("VectorStoreReady", False, "RetrievalUnavailable", "down", 1, "t")]
    not_ready = summarise(down, 1, "t")
    assert (not_ready["status"], not_ready["reason"], not_ready["message"]) == (
        "False",
        "RetrievalUnavailable",
        "down",
    )
    assert tenant_phase([*down, not_ready]) == "Pending"

    invalid = [build_condition("Valid", False, "InvalidSpec", "bad", 1, "t")]
    assert tenant_phase([*invalid, summarise(invalid, 1, "t")]) == "Failed"


def daemonset(bundle: str | None = None) -> dict:
    meta = {"annotations": {"isthmus.dev/model-bundle": bundle}} if bundle else {}
    return {
        "spec": {
            "template": {
                "metadata": meta,
                "spec": {"containers": [{"name": "model-server"}, {"name": "sidecar"}]},
            }
        }
    }


def test_bundle_patch_sets_the_annotation_on_the_workload_and_its_pod_template_only() -> None:
    """No env var: nothing in Isthmus reads one; a workload reads the pod annotation (downward API)."""
    patch = build_bundle_patch("bge@2")
    assert patch == {
        "metadata": {"annotations": {"isthmus.dev/model-bundle": "bge@2"}},
        "spec": {"template": {"metadata": {"annotations": {"isthmus.dev/model-bundle": "bge@2"}}}},
    }


def test_bundle_patch_to_none_removes_what_it_set() -> None:
    patch = build_bundle_patch(None)
    assert patch["metadata"]["annotations"] == {"isthmus.dev/model-bundle": None}
    assert patch["spec"]["template"]["metadata"]["annotations"] == {"isthmus.dev/model-bundle": None}
    assert "spec" not in patch["spec"]["template"]


def test_workload_bundle_reads_the_pod_template() -> None:
    assert workload_bundle(daemonset("bge@1")) == "bge@1"
    assert workload_bundle(daemonset()) is None
    assert workload_bundle({}) is None


def test_pure_modules_import_no_io_library() -> None:
    """builders, rollout and specs take values and return values: no kopf, kubernetes client or grpc."""
    import subprocess
    import sys

    code = (
        "import sys; import isthmus_operator.builders, isthmus_operator.rollout, isthmus_operator.specs; "
        "print(sorted(m for m in ('kopf', 'kubernetes', 'grpc', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def _regions(primary: str, replicas: list[str], deletion: str = "Delete"):
    return parse_tenant(
        "acme", {**SPEC, "primaryRegion": primary, "replicaRegions": replicas, "deletionPolicy": deletion}
    )


def test_region_plan_lists_the_primary_first_and_sets_unknown_regions_apart() -> None:
    plan = plan_tenant_regions(_regions("a", ["b", "zz"]), {"a", "b"}, [])
    assert plan.ensure == (("a", "primary"), ("b", "replica"))
    assert plan.unknown == ("zz",)
    assert plan.remove == () and plan.keep == ()


def test_moving_the_primary_drops_no_region() -> None:
    before = [{"region": "a", "role": "primary"}, {"region": "b", "role": "replica"}]
    plan = plan_tenant_regions(_regions("b", ["a"]), {"a", "b"}, before)
    assert plan.ensure == (("b", "primary"), ("a", "replica"))
    assert plan.remove == () and plan.keep == ()


def test_a_dropped_replica_is_emptied_a_dropped_primary_or_retained_tenant_is_kept() -> None:
    before = [
        {"region": "a", "role": "primary"},
        {"region": "b", "role": "replica"},
        {"region": "c", "role": "removing"},
        {"region": "gone", "role": "replica"},  # no longer known to the operator: nothing to call
    ]
    plan = plan_tenant_regions(_regions("d", []), {"a", "b", "c", "d"}, before)
    assert plan.remove == ("b", "c")
    assert plan.keep == (("a", "it was the primary and may hold writes not mirrored yet"),)
    retained = plan_tenant_regions(_regions("d", [], "Retain"), {"a", "b", "c", "d"}, before)
    assert retained.remove == ()
    assert [r for r, _ in retained.keep] == ["a", "b", "c"]


def test_region_status_entry_carries_lag_only_when_measured() -> None:
    assert build_region_status("b", "replica", True, "tenant exists") == {
        "region": "b",
        "role": "replica",
        "ready": True,
        "message": "tenant exists",
    }
    assert build_region_status("b", "replica", True, "ok", 3)["lagDocuments"] == 3


def test_policy_condition_names_the_current_label_or_why_not() -> None:
    strict = PolicyRef(name="strict")
    applied = build_policy_condition(strict, {"": "v3"}, {}, {}, 2, "t")
    assert (applied["type"], applied["status"], applied["reason"]) == (
        "GuardrailPolicyReady",
        "True",
        "Applied",
    )
    assert applied["message"] == "guardrail policy v3 is current (preset 'strict')"
    assert applied["observedGeneration"] == 2

    regions = build_policy_condition(strict, {"b": "v1", "a": "v2"}, {}, {}, 1, "t")
    assert regions["message"] == "guardrail policy current (preset 'strict'): a v2, b v1"

    down = build_policy_condition(strict, {"a": "v2"}, {"b": "connection refused"}, {}, 1, "t")
    assert (down["status"], down["reason"]) == ("False", "GuardrailUnavailable")
    assert (
        down["message"]
        == "cannot apply guardrailPolicyRef (preset 'strict') yet: region 'b': connection refused"
    )

    pinned = PolicyRef(name="default", version=7)
    refused = build_policy_condition(pinned, {}, {"": "down"}, {"": "no policy version 7"}, 1, "t")
    assert (refused["status"], refused["reason"]) == ("False", "Rejected")
    assert refused["message"] == "the guardrail refused guardrailPolicyRef (version 7): no policy version 7"
    # a failing policy condition makes the tenant not Ready
    assert summarise([refused], 1, "t")["status"] == "False"
