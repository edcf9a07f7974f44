"""Spec parsing and the semantic checks the CRD schema cannot make (pure, no fixtures)."""

from __future__ import annotations

from typing import Any

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_operator.specs import parse_rollout, parse_tenant


def tenant_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "primaryRegion": "eu-west",
        "replicaRegions": ["us-east"],
        "quotas": {"requestsPerSecond": 10, "tokensPerDay": 1000, "storage": "5Gi"},
        "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
    }
    spec.update(over)
    return spec


def rollout_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "bundle": {"name": "bge-small-en", "version": "1.6.0"},
        "nodePool": {"matchLabels": {"isthmus.dev/edge-pool": "eu", "tier": "edge"}},
        "waves": [10, 50, 100],
        "gates": {"maxNdcgDrop": 0.02},
    }
    spec.update(over)
    return spec


def test_tenant_defaults_policy_and_deletion_and_exposes_the_bundle_ref() -> None:
    spec = parse_tenant("acme", tenant_spec())
    assert spec.guardrail_policy_ref.name == "default"
    assert spec.guardrail_policy_ref.version is None
    assert spec.guardrail_policy_ref.text == "preset 'default'"
    assert spec.deletion_policy == "Delete"
    assert spec.model_bundle.ref == "bge-small-en@1.5.0"
    assert spec.replica_regions == ("us-east",)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("acme.eu", "metadata.name 'acme.eu' cannot be a tenant id"),
        ("-acme", "metadata.name '-acme' cannot be a tenant id"),
        ("a" * 64, "cannot be a tenant id"),
    ],
)
def test_tenant_name_must_be_a_retrieval_tenant_id(name: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_tenant(name, tenant_spec())
    assert fragment in str(info.value)
    assert "no dots" in str(info.value)


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"replicaRegions": ["eu-west"]}, "replicaRegions must not contain the primary region 'eu-west'"),
        ({"replicaRegions": ["us-east", "us-east"]}, "replicaRegions lists a region twice"),
        ({"replicaRegions": ["US_EAST"]}, "replicaRegions: 'US_EAST' is not a region name"),
        ({"primaryRegion": "EU"}, "spec.primaryRegion: String should match pattern"),
        (
            {"quotas": {"requestsPerSecond": 0, "tokensPerDay": 1, "storage": "1Gi"}},
            "spec.quotas.requestsPerSecond",
        ),
        ({"quotas": {"requestsPerSecond": 1, "tokensPerDay": 1, "storage": "lots"}}, "spec.quotas.storage"),
        ({"deletionPolicy": "Orphan"}, "spec.deletionPolicy: Input should be 'Delete' or 'Retain'"),
        ({"surprise": 1}, "spec.surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_tenant_specs_name_the_field(over: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_tenant("acme", tenant_spec(**over))
    assert fragment in str(info.value)
    assert str(info.value).startswith("invalid Tenant 'acme': ")


def test_missing_required_tenant_field() -> None:
    spec = tenant_spec()
    del spec["modelBundle"]
    with pytest.raises(InvalidArgument, match=r"spec.modelBundle: Field required"):
        parse_tenant("acme", spec)


def test_rollout_label_selector_is_sorted_and_kind_defaults_to_daemonset() -> None:
    spec = parse_rollout("r", rollout_spec())
    assert spec.node_pool.label_selector == "isthmus.dev/edge-pool=eu,tier=edge"
    assert spec.node_pool.workload_kind == "DaemonSet"
    assert spec.paused is False
    assert spec.bundle.ref == "bge-small-en@1.6.0"


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"waves": [50, 10, 100]}, "waves must strictly increase, got [50, 10, 100]"),
        ({"waves": [10, 10, 100]}, "waves must strictly increase"),
        ({"waves": [10, 50]}, "the last wave must be 100 (the whole pool), got 50"),
        ({"waves": [0, 100]}, "every wave is a percentage in 1..100"),
        ({"waves": []}, "spec.waves: Tuple should have at least 1 item"),
        ({"gates": {}}, "gates: set at least one of maxNdcgDrop"),
        ({"gates": {"maxNdcgDrop": 2}}, "spec.gates.maxNdcgDrop: Input should be less than or equal to 1"),
        ({"nodePool": {"matchLabels": {}}}, "spec.nodePool.matchLabels"),
        ({"nodePool": {"matchLabels": {"a": "b"}, "workloadKind": "StatefulSet"}}, "workloadKind"),
    ],
)
def test_invalid_rollout_specs_name_the_field(over: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_rollout("r", rollout_spec(**over))
    assert fragment in str(info.value)


def test_a_policy_ref_may_pin_a_stored_version() -> None:
    ref = parse_tenant(
        "acme", tenant_spec(guardrailPolicyRef={"name": "strict", "version": 3})
    ).guardrail_policy_ref
    assert (ref.name, ref.version, ref.text) == ("strict", 3, "version 3")
    with pytest.raises(InvalidArgument) as info:
        parse_tenant("acme", tenant_spec(guardrailPolicyRef={"name": "strict", "version": 0}))
    assert "spec.guardrailPolicyRef.version: Input should be greater than or equal to 1" in str(info.value)
