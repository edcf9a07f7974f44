"""FailoverDrills without a cluster: the spec checks, step → API-call planning, the patches, the status
transitions and the report (pure, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus_core.drills.scenarios import SCENARIOS, Action, Step
from isthmus_core.errors import InvalidArgument
from isthmus_operator import drill
from isthmus_operator.measure import DocumentState, documents_behind, iso, seconds_of_writes
from isthmus_operator.specs import parse_drill

CRD = (
    Path(__file__).resolve().parents[2]
    / "charts"
    / "isthmus-operator"
    / "crds"
    / "failoverdrills.isthmus.dev.yaml"
)
NOW = "2026-12-06T12:00:00.000Z"


def drill_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scenario": "region-loss",
        "tenants": ["acme"],
        "regions": {"primary": "a", "secondary": "b"},
        "objectives": {"rpoMaxSeconds": 5, "rtoMaxSeconds": 30},
        "regionWorkloads": {"a": {"matchLabels": {"isthmus.dev/region": "a"}}},
        "pace": 0.1,
    }
    spec.update(over)
    return spec


def test_the_crd_enum_is_exactly_the_shared_scenarios() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["scenario"]["enum"] == sorted(SCENARIOS)


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        (
            {"scenario": "region-lost"},
            "spec.scenario: unknown drill scenario 'region-lost'; the scenarios are: "
            "broker-loss, failback, link-loss, region-loss, tenant-move",
        ),
        (
            {"regions": {"primary": "a", "secondary": "a"}},
            "spec.regions: secondary must differ from primary ('a')",
        ),
        ({"objectives": {"rpoMaxSeconds": -1, "rtoMaxSeconds": 30}}, "spec.objectives.rpoMaxSeconds"),
        ({"objectives": {"rpoMaxSeconds": 1, "rtoMaxSeconds": 0}}, "spec.objectives.rtoMaxSeconds"),
        ({"objectives": {"rpoMaxSeconds": 1}}, "spec.objectives.rtoMaxSeconds: Field required"),
        ({"tenants": ["Acme"]}, "spec.tenants: Value error, ['Acme'] are not tenant ids"),
        ({"tenants": []}, "spec.tenants"),
        ({"tenants": ["acme", "acme"]}, "a tenant is listed twice"),
        (
            {"regionWorkloads": {}},
            "regionWorkloads.a: required: scenario 'region-loss' runs kill-region, "
            "restore-region on region 'a'",
        ),
        (
            {"regionWorkloads": {"a": {"matchLabels": {"x": "y"}}, "c": {"matchLabels": {"x": "y"}}}},
            "regionWorkloads: ['c'] are not the drill's regions",
        ),
        ({"pace": 0}, "spec.pace"),
        ({"surprise": 1}, "spec.surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_drill_specs_name_the_field(over: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_drill("dr", drill_spec(**over))
    assert str(info.value).startswith("invalid FailoverDrill 'dr': ")
    assert fragment.replace("Value error, ", "") in str(info.value)


def test_link_loss_needs_the_secondarys_workloads_and_tenant_move_none() -> None:
    with pytest.raises(
        InvalidArgument, match=r"regionWorkloads\.b: required: scenario 'link-loss' runs stop-link"
    ):
        parse_drill("dr", drill_spec(scenario="link-loss"))
    assert parse_drill("dr", drill_spec(scenario="tenant-move", regionWorkloads={})).region_workloads == {}


def test_each_action_plans_its_api_calls() -> None:
    spec = parse_drill(
        "dr",
        drill_spec(
            pace=0.5,
            regionWorkloads={
                "a": {"namespace": "region-a", "matchLabels": {"isthmus.dev/region": "a"}},
                "b": {"matchLabels": {"isthmus.dev/region": "b"}},
            },
        ),
    )
    plan = {a: drill.plan_step(Step(a, "primary", 10), spec, "drills") for a in Action}
    assert plan[Action.KILL_REGION] == drill.ScaleDown(
        "region-a", "isthmus.dev/region=a", lost="a", survivor="b"
    )
    assert plan[Action.RESTORE_REGION] == drill.ScaleBack("region-a", "isthmus.dev/region=a")
    assert plan[Action.STOP_LINK] == drill.ScaleDown(
        "region-a", "isthmus.dev/component=mirrormaker2,isthmus.dev/region=a"
    )
    assert plan[Action.START_LINK] == drill.ScaleBack(
        "region-a", "isthmus.dev/component=mirrormaker2,isthmus.dev/region=a"
    )
    assert plan[Action.KILL_BROKER] == drill.DeletePod(
        "region-a", "isthmus.dev/component=kafka,isthmus.dev/region=a"
    )
    assert isinstance(plan[Action.RESTORE_BROKER], drill.Note)
    assert plan[Action.MOVE_PRIMARY] == drill.MovePrimary(("acme",), "a")
    assert plan[Action.OBSERVE] == drill.Wait(5.0)  # 10 s at pace 0.5
    assert plan[Action.AWAIT_RECOVERY] == drill.AwaitServing("a", 5.0)
    assert plan[Action.AWAIT_CATCH_UP] == drill.AwaitCatchUp(("a", "b"), 5.0)
    # the secondary role binds to region b, whose workloads default to the drill's namespace
    assert drill.plan_step(Step(Action.KILL_REGION, "secondary"), spec, "drills") == drill.ScaleDown(
        "drills", "isthmus.dev/region=b", lost="b", survivor="a"
    )


def deployment(replicas: int | None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": "w", "annotations": annotations or {}}, "spec": spec}


def test_scaling_down_remembers_the_replicas_once_and_back_restores_them() -> None:
    down = drill.build_scale_down_patch(deployment(3), "dr")
    assert down == {
        "metadata": {"annotations": {"isthmus.dev/drill-replicas": "3", "isthmus.dev/drill": "dr"}},
        "spec": {"replicas": 0},
    }
    scaled = deployment(0, {"isthmus.dev/drill-replicas": "3", "isthmus.dev/drill": "dr"})
    assert drill.build_scale_down_patch(scaled, "dr") is None  # replayed: 0 is never recorded as before
    bumped = deployment(2, {"isthmus.dev/drill-replicas": "3", "isthmus.dev/drill": "dr"})
    assert drill.build_scale_down_patch(bumped, "dr") == {"spec": {"replicas": 0}}
    assert drill.build_scale_back_patch(scaled, "dr") == {
        "metadata": {"annotations": {"isthmus.dev/drill-replicas": None, "isthmus.dev/drill": None}},
        "spec": {"replicas": 3},
    }
    assert drill.build_scale_back_patch(scaled, "other-drill") is None
    assert drill.build_scale_back_patch(deployment(3), "dr") is None
    # the API server's default replicas is 1
    assert (
        drill.build_scale_down_patch(deployment(None), "dr")["metadata"]["annotations"][
            "isthmus.dev/drill-replicas"
        ]
        == "1"
    )


def test_moving_the_primary_keeps_the_former_primary_as_a_replica() -> None:
    assert drill.build_primary_move({"primaryRegion": "a", "replicaRegions": ["b", "c"]}, "b") == {
        "spec": {"primaryRegion": "b", "replicaRegions": ["a", "c"]}
    }
    assert drill.build_primary_move({"primaryRegion": "a", "replicaRegions": ["b"]}, "a") is None
    assert drill.build_primary_move({"primaryRegion": "b", "replicaRegions": ["a"]}, "a") == {
        "spec": {"primaryRegion": "a", "replicaRegions": ["b"]}
    }


def test_pick_pod_takes_the_first_live_pod_by_name() -> None:
    pods = [
        {"metadata": {"name": "kafka-a-0", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
        {"metadata": {"name": "kafka-a-2"}},
        {"metadata": {"name": "kafka-a-1"}},
    ]
    assert drill.pick_pod(pods) == "kafka-a-1"
    assert drill.pick_pod(pods[:1]) is None


def test_context_checks_name_unknown_regions_missing_tenants_and_tenants_outside_the_regions() -> None:
    spec = parse_drill(
        "dr", drill_spec(tenants=["acme", "ghost", "solo"], regions={"primary": "a", "secondary": "z"})
    )
    problems = drill.check_context(
        spec,
        "ns",
        {"a", "b"},
        {
            "acme": {"primaryRegion": "a", "replicaRegions": ["b"]},
            "ghost": None,
            "solo": {"primaryRegion": "a"},
        },
    )
    assert problems == [
        "spec.regions.secondary: unknown region 'z'; the operator's regions are 'a', 'b' (ISTHMUS_OPERATOR_REGIONS)",
        "spec.tenants: Tenant 'acme' is not in region(s) ['z'] (primaryRegion 'a', replicaRegions ['b']): "
        "a drill moves a tenant between regions that both hold it",
        "spec.tenants: no Tenant 'ghost' in namespace 'ns'",
        "spec.tenants: Tenant 'solo' is not in region(s) ['z'] (primaryRegion 'a', replicaRegions []): "
        "a drill moves a tenant between regions that both hold it",
    ]
    ok = parse_drill("dr", drill_spec())
    assert (
        drill.check_context(ok, "ns", set(), {"acme": {"primaryRegion": "b", "replicaRegions": ["a"]}}) == []
    )


def run_to_end(spec_over: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    spec = parse_drill("dr", drill_spec(**spec_over))
    status: dict[str, Any] = drill.start(spec, {}, 1, NOW)
    for i in range(len(spec.definition.steps)):
        status.update(drill.advance(spec, status, f"done {i}", NOW, **(measured if i == 1 else {})))
    status.update(drill.finish(spec, status, 1, NOW))
    return status


def test_a_drill_runs_its_steps_in_order_and_reports() -> None:
    status = run_to_end({}, {"rpoSeconds": 1.5, "rpoDocuments": 2})
    assert [e["action"] for e in status["timeline"]] == [
        "start",
        *(s.action.value for s in SCENARIOS["region-loss"].steps),
        "finish",
    ]
    assert status["timeline"][2]["region"] == "a"  # kill-region on the primary
    assert status["faultAt"] == NOW  # the first fault step sets it
    assert status["phase"] == "Succeeded"
    assert status["report"]["objectivesMet"] is True
    assert status["report"]["summary"] == (
        "region-loss a → b: RPO 1.5 s (2 documents) (max 5 s), RTO not measured (max 30 s); objectives met"
    )


def test_a_missed_objective_fails_the_drill() -> None:
    status = run_to_end({}, {"rpoSeconds": 9.0, "rpoDocuments": 4, "rtoSeconds": 45.0})
    assert status["phase"] == "Failed"
    assert status["report"]["objectivesMet"] is False
    assert "objectives missed: RPO 9 s > rpoMaxSeconds 5; RTO 45 s > rtoMaxSeconds 30" in status["message"]
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert (complete["status"], complete["reason"]) == ("False", "ObjectivesMissed")


def test_nothing_measured_is_said_not_claimed_met() -> None:
    status = run_to_end({"scenario": "tenant-move", "regionWorkloads": {}}, {})
    assert status["phase"] == "Succeeded"
    assert status["report"]["objectivesMet"] is None
    assert status["report"]["summary"].endswith("objectives not checked (nothing measured)")


def test_waits_count_from_their_first_tick() -> None:
    spec = parse_drill("dr", drill_spec())
    status: dict[str, Any] = drill.start(spec, {}, 1, NOW)
    status.update(drill.waiting(spec, status, "observing", NOW))
    assert status["stepStartedAt"] == NOW
    later = "2026-12-06T12:00:02.500Z"
    assert drill.waiting(spec, status, "observing", later).get("stepStartedAt") is None  # kept
    assert drill.elapsed(status, later) == 2.5


def test_fail_names_the_step_and_keeps_the_timeline() -> None:
    spec = parse_drill("dr", drill_spec())
    status: dict[str, Any] = drill.start(spec, {}, 1, NOW)
    status["step"] = 3
    failed = drill.fail(spec, status, "NotRecovered", "region 'b' did not serve", 1, NOW)
    assert failed["phase"] == "Failed"
    assert failed["message"] == "step 4/7 await-recovery b: region 'b' did not serve"
    assert failed["timeline"][-1]["action"] == "fail"
    assert failed["report"]["summary"].endswith("failed: step 4/7 await-recovery b: region 'b' did not serve")


def test_documents_behind_and_the_seconds_of_writes_they_stand_for() -> None:
    source = {"d1": DocumentState(1, 100.0), "d2": DocumentState(3, 104.0), "d3": DocumentState(1, 107.0)}
    target = {"d1": DocumentState(1), "d2": DocumentState(1), "d9": DocumentState(5)}
    behind = documents_behind(source, target)
    assert behind == ["d2", "d3"]
    assert seconds_of_writes(behind, source, at=110.0) == 6.0
    assert seconds_of_writes([], source, at=110.0) == 0.0
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 678_900, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
