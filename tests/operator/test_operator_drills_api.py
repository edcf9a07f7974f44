"""FailoverDrills against a real kube-apiserver: the CRD schema, and the operator (KopfRunner) running a
scenario through the API. The API server alone runs no pods: the drill's effects are read off the objects
(spec.replicas of region a's Deployments/StatefulSets, the Tenants' primaryRegion). Regions are
in-memory fakes (tenant registry, documents, health) the test drives."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from isthmus_core.drills.scenarios import SCENARIOS
from isthmus_operator.measure import DocumentState
from isthmus_operator.regional import InMemoryDocumentIndex, InMemoryHealthProbe, RegionClients
from isthmus_operator.retrieval import InMemoryTenantRegistry

DRILLS = "failoverdrills"
REGION_A = {"isthmus.dev/region": "a"}


def tenant(name: str, primary: str = "a", replicas: tuple[str, ...] = ("b",)) -> dict[str, Any]:
    return {
        "apiVersion": "isthmus.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {
            "primaryRegion": primary,
            "replicaRegions": list(replicas),
            "quotas": {"requestsPerSecond": 5, "tokensPerDay": 1000, "storage": "1Gi"},
            "modelBundle": {"name": "bge-small-en", "version": "1.5.0"},
        },
    }


def failover_drill(name: str, tenants: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scenario": "region-loss",
        "tenants": tenants,
        "regions": {"primary": "a", "secondary": "b"},
        "objectives": {"rpoMaxSeconds": 3600, "rtoMaxSeconds": 3600},
        "regionWorkloads": {"a": {"matchLabels": REGION_A}},
        "pace": 0.1,
        **spec,
    }
    return {
        "apiVersion": "isthmus.dev/v1alpha1",
        "kind": "FailoverDrill",
        "metadata": {"name": name},
        "spec": body,
    }


def names(namespace: str) -> tuple[str, str]:
    """The drill's tenant and one it leaves alone; unique per test (``run -A`` sees every namespace)."""
    return f"acme-{namespace[-6:]}", f"bystander-{namespace[-6:]}"


def region(namespace: str, documents: dict[str, DocumentState], up: bool = True) -> RegionClients:
    acme, bystander = names(namespace)
    return RegionClients(
        endpoint="in-memory",
        tenants=InMemoryTenantRegistry(),
        documents=InMemoryDocumentIndex({acme: dict(documents), bystander: {}}),
        health=InMemoryHealthProbe(up=up),
    )


def clean_up(kube_api, namespace: str, wait) -> None:
    """Delete the test's Tenants and drills while the operator runs (their finalizers are released), so a
    later test's operator does not resume them."""
    for plural in ("tenants", DRILLS):
        for obj in kube_api.custom.list_namespaced_custom_object(
            "isthmus.dev", "v1alpha1", namespace, plural
        )["items"]:
            kube_api.delete(plural, namespace, obj["metadata"]["name"])
        wait(
            lambda plural=plural: (
                not kube_api.custom.list_namespaced_custom_object(
                    "isthmus.dev", "v1alpha1", namespace, plural
                )["items"]
            ),
            f"{plural} deleted",
        )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def events(kube_api, namespace: str, reason: str) -> list[str]:
    return [
        e.message or "" for e in kube_api.core.list_namespaced_event(namespace).items if e.reason == reason
    ]


@pytest.fixture
def region_a_workloads(kube_api, namespace) -> dict[str, int]:
    """Region a: platform, MirrorMaker 2 and brokers; region b: its platform (never touched)."""
    kube_api.create_scalable(namespace, "Deployment", "a-platform", REGION_A, 2)
    kube_api.create_scalable(
        namespace, "Deployment", "a-mm2", {**REGION_A, "isthmus.dev/component": "mirrormaker2"}, 1
    )
    kube_api.create_scalable(
        namespace, "StatefulSet", "a-kafka", {**REGION_A, "isthmus.dev/component": "kafka"}, 3
    )
    kube_api.create_scalable(namespace, "Deployment", "b-platform", {"isthmus.dev/region": "b"}, 2)
    return {"a-platform": 2, "a-mm2": 1, "a-kafka": 3, "b-platform": 2}


def test_region_loss_scales_region_a_down_moves_the_primary_and_back(
    kube_api, namespace, run_operator, wait, region_a_workloads
) -> None:
    now = time.time()
    written = {"d1": DocumentState(1, now - 60), "d2": DocumentState(1, now - 1)}
    regions = {"a": region(namespace, written), "b": region(namespace, {"d1": written["d1"]}, up=False)}
    acme, bystander = names(namespace)

    def drill_status() -> dict[str, Any]:
        return kube_api.status(DRILLS, namespace, "loss")

    with run_operator(regions=regions):
        kube_api.create("tenants", namespace, tenant(acme))
        kube_api.create("tenants", namespace, tenant(bystander))
        wait(lambda: kube_api.status("tenants", namespace, acme).get("phase") == "Ready", "acme Ready")
        kube_api.create(DRILLS, namespace, failover_drill("loss", [acme]))

        # region b does not answer yet: the drill holds at await-recovery, region a is down
        held = wait(
            lambda: (s := drill_status()).get("step") == 3 and s.get("stepStartedAt") and s,
            "the drill waiting for region b to recover",
        )
        assert held["phase"] == "Running"
        assert "await-recovery b: waiting" in held["message"]
        down = kube_api.replicas(namespace)
        for name in ("a-platform", "a-mm2", "a-kafka"):
            replicas = region_a_workloads[name]
            assert down[name] == (
                0,
                {"isthmus.dev/drill-replicas": str(replicas), "isthmus.dev/drill": "loss"},
            ), name
        assert down["b-platform"] == (2, {})
        moved = kube_api.get("tenants", namespace, acme)["spec"]
        assert (moved["primaryRegion"], moved["replicaRegions"]) == ("b", ["a"])
        untouched = kube_api.get("tenants", namespace, bystander)["spec"]
        assert (untouched["primaryRegion"], untouched["replicaRegions"]) == ("a", ["b"])
        # RPO at the fault: d2 was acknowledged in a and not yet in b
        assert held["rpoDocuments"] == 1
        assert held["rpoSeconds"] > 0
        assert held["faultAt"] and held["failoverAt"]

        # region b recovers (and has caught up when a returns)
        index_b = regions["b"].documents
        assert isinstance(index_b, InMemoryDocumentIndex)
        index_b.documents[acme] = dict(written)
        health_b = regions["b"].health
        assert isinstance(health_b, InMemoryHealthProbe)
        health_b.up = True

        done = wait(lambda: (s := drill_status()).get("phase") in ("Succeeded", "Failed") and s, "drill done")
        assert done["phase"] == "Succeeded", done["message"]
        assert [e["action"] for e in done["timeline"]] == [
            "start",
            *(s.action.value for s in SCENARIOS["region-loss"].steps),
            "finish",
        ]
        assert {e["region"] for e in done["timeline"] if e["action"] == "kill-region"} == {"a"}
        assert done["rtoSeconds"] >= 0
        assert done["recoveredAt"] >= done["faultAt"]
        assert done["report"]["objectivesMet"] is True
        assert done["report"]["summary"].startswith("region-loss a → b: RPO ")
        assert conditions(done)["Complete"]["status"] == "True"
        assert kube_api.replicas(namespace) == {name: (n, {}) for name, n in region_a_workloads.items()}
        wait(lambda: len(events(kube_api, namespace, "DrillStep")) >= 7, "one event per step")
        wait(lambda: events(kube_api, namespace, "Succeeded"), "the Succeeded event")
        # finished: the operator's finalizer is released (nothing left to heal on delete)
        wait(
            lambda: not (kube_api.get(DRILLS, namespace, "loss") or {})["metadata"].get("finalizers"),
            "the finalizer released",
        )
        clean_up(kube_api, namespace, wait)


def test_a_region_that_never_recovers_fails_the_drill_and_heals_region_a(
    kube_api, namespace, run_operator, wait, region_a_workloads
) -> None:
    regions = {"a": region(namespace, {}), "b": region(namespace, {}, up=False)}
    acme, _ = names(namespace)
    with run_operator(regions=regions):
        kube_api.create("tenants", namespace, tenant(acme))
        kube_api.create(DRILLS, namespace, failover_drill("stuck", [acme], pace=0.02))
        failed = wait(
            lambda: (s := kube_api.status(DRILLS, namespace, "stuck")).get("phase") == "Failed" and s,
            "drill Failed",
        )
        assert (
            "step 4/7 await-recovery b: region 'b' did not serve the drill's tenants within 1.2 s"
            in (failed["message"])
        )
        assert conditions(failed)["Complete"]["reason"] == "NotRecovered"
        assert [e["action"] for e in failed["timeline"]][-2:] == ["fail", "heal"]
        assert kube_api.replicas(namespace) == {name: (n, {}) for name, n in region_a_workloads.items()}
        wait(lambda: events(kube_api, namespace, "Failed"), "the Failed event")
        clean_up(kube_api, namespace, wait)


def test_a_drill_deleted_mid_run_scales_its_region_back(
    kube_api, namespace, run_operator, wait, region_a_workloads
) -> None:
    regions = {"a": region(namespace, {}), "b": region(namespace, {}, up=False)}
    acme, _ = names(namespace)
    with run_operator(regions=regions):
        kube_api.create("tenants", namespace, tenant(acme))
        kube_api.create(DRILLS, namespace, failover_drill("abandoned", [acme], pace=0.2))  # awaits ≤ 12 s
        wait(lambda: kube_api.status(DRILLS, namespace, "abandoned").get("step") == 3, "region a down")
        assert kube_api.replicas(namespace)["a-platform"][0] == 0
        kube_api.delete(DRILLS, namespace, "abandoned")
        wait(lambda: kube_api.get(DRILLS, namespace, "abandoned") is None, "drill deleted")
        assert kube_api.replicas(namespace) == {name: (n, {}) for name, n in region_a_workloads.items()}
        clean_up(kube_api, namespace, wait)


def test_the_schema_refuses_unknown_scenarios_one_region_drills_and_edits(kube_api, namespace) -> None:
    refused = {
        "region-lost": (
            {"scenario": "region-lost"},
            'spec.scenario: Unsupported value: "region-lost": supported values: "broker-loss", "failback"',
        ),
        "one-region": ({"regions": {"primary": "a", "secondary": "a"}}, "regions.secondary must differ from"),
        "no-rto": ({"objectives": {"rpoMaxSeconds": 1, "rtoMaxSeconds": 0}}, "spec.objectives.rtoMaxSeconds"),
    }
    for name, (spec, fragment) in refused.items():
        with pytest.raises(client.ApiException) as info:
            kube_api.create(DRILLS, namespace, failover_drill(name, ["acme"], **spec))
        assert info.value.status == 422
        assert fragment in json.loads(info.value.body)["message"], name

    kube_api.create(
        DRILLS, namespace, failover_drill("frozen", ["acme"])
    )  # no operator runs: nothing holds it
    with pytest.raises(client.ApiException) as info:
        kube_api.patch_spec(DRILLS, namespace, "frozen", {"pace": 0.5})
    assert info.value.status == 422
    assert "a FailoverDrill's spec is immutable" in json.loads(info.value.body)["message"]
    kube_api.delete(DRILLS, namespace, "frozen")


def test_bad_drills_fail_with_the_field_named_and_touch_nothing(
    kube_api, namespace, run_operator, wait, region_a_workloads
) -> None:
    regions = {"a": region(namespace, {}), "b": region(namespace, {})}
    acme, _ = names(namespace)
    with run_operator(regions=regions):
        kube_api.create("tenants", namespace, tenant(acme))
        kube_api.create(DRILLS, namespace, failover_drill("no-workloads", [acme], regionWorkloads={}))
        kube_api.create(
            DRILLS,
            namespace,
            failover_drill(
                "elsewhere",
                [acme, "ghost"],
                regions={"primary": "a", "secondary": "mars"},
                regionWorkloads={"a": {"matchLabels": REGION_A}},
            ),
        )
        expected = {
            "no-workloads": "invalid FailoverDrill 'no-workloads': spec: regionWorkloads.a: required: scenario "
            "'region-loss' runs kill-region, restore-region on region 'a' (give its namespace and matchLabels)",
            "elsewhere": "invalid FailoverDrill 'elsewhere': spec.regions.secondary: unknown region 'mars'; "
            f"the operator's regions are 'a', 'b' (ISTHMUS_OPERATOR_REGIONS); spec.tenants: Tenant '{acme}' is "
            "not in region(s) ['mars'] (primaryRegion 'a', replicaRegions ['b']): a drill moves a tenant "
            "between regions that both hold it; spec.tenants: no Tenant 'ghost' in namespace "
            f"'{namespace}'",
        }
        for name, message in expected.items():
            failed = wait(
                lambda name=name: (s := kube_api.status(DRILLS, namespace, name)).get("phase") and s,
                f"{name} has a phase",
            )
            assert failed["phase"] == "Failed"
            valid = conditions(failed)["Valid"]
            assert (valid["status"], valid["reason"], valid["message"]) == ("False", "InvalidSpec", message)
            wait(lambda message=message: message in events(kube_api, namespace, "Failed"), f"{name}'s event")
        assert kube_api.replicas(namespace) == {name: (n, {}) for name, n in region_a_workloads.items()}
        assert kube_api.get("tenants", namespace, acme)["spec"]["primaryRegion"] == "a"
        clean_up(kube_api, namespace, wait)
