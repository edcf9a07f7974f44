"""EdgeRollouts against a real kube-apiserver: the operator (KopfRunner, ``-A --standalone``) patches real
DaemonSets wave by wave, reads gate metrics from the ConfigMap the test writes, pauses, and rolls back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

PLURAL = "edgerollouts"
FINALIZER = "isthmus.dev/operator"
GOOD = {"ndcg_at_10": 0.52, "faithfulness": 0.91, "guardrail_block_rate": 0.02}
GATES = {"maxNdcgDrop": 0.02, "maxFaithfulnessDrop": 0.03, "maxGuardrailBlockRateIncrease": 0.01}


def rollout(name: str, pool: str, waves: list[int], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bundle": {"name": "bge-small-en", "version": "1.6.0"},
        "nodePool": {"matchLabels": {"isthmus.dev/edge-pool": pool}},
        "waves": waves,
        "gates": GATES,
    }
    body.update(spec)
    return {
        "apiVersion": "isthmus.dev/v1alpha1",
        "kind": "EdgeRollout",
        "metadata": {"name": name},
        "spec": body,
    }


def metrics(**entries: dict[str, float]) -> dict[str, str]:
    return {key.replace("_", "-"): json.dumps(value) for key, value in entries.items()}


def bundle_of(ds: dict[str, Any]) -> tuple[str | None, str | None]:
    """(pod-template annotation, the workload's own annotation) ``isthmus.dev/model-bundle``."""
    template = ds["spec"]["template"]
    annotation = (template["metadata"].get("annotations") or {}).get("isthmus.dev/model-bundle")
    return annotation, (ds["metadata"].get("annotations") or {}).get("isthmus.dev/model-bundle")


def finalizers(kube_api, namespace: str, name: str) -> list[str]:
    return list((kube_api.get(PLURAL, namespace, name) or {})["metadata"].get("finalizers") or [])


def bundles(kube_api, namespace: str, names: list[str]) -> dict[str, tuple[str | None, str | None]]:
    return {n: bundle_of(kube_api.daemonset(namespace, n)) for n in names}


@pytest.fixture
def pool(kube_api, namespace) -> list[str]:
    """Four edge node groups (one DaemonSet each) in pool 'edge-eu', and one DaemonSet outside the pool."""
    names = ["edge-eu-a", "edge-eu-b", "edge-eu-c", "edge-eu-d"]
    for n in names:
        kube_api.create_daemonset(namespace, n, {"isthmus.dev/edge-pool": "edge-eu"})
    kube_api.create_daemonset(namespace, "core-logger", {"isthmus.dev/edge-pool": "core"})
    return names


def test_schema_rejects_bad_waves_and_keeps_the_bundle_immutable(kube_api, namespace) -> None:
    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, rollout("bad", "edge-eu", [50, 10, 90], gates={}))
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert "waves must strictly increase" in message
    assert "the last wave must be 100" in message
    assert "spec.gates: Invalid value" in message

    kube_api.create(PLURAL, namespace, rollout("ok", "edge-eu", [10, 100]))
    with pytest.raises(client.ApiException) as info:
        kube_api.patch_spec(PLURAL, namespace, "ok", {"bundle": {"version": "9.9.9"}})
    assert info.value.status == 422
    assert "bundle is immutable" in json.loads(info.value.body)["message"]

    # waves may change until the first wave is applied, not after
    kube_api.patch_spec(PLURAL, namespace, "ok", {"waves": [20, 100]})
    kube_api.custom.patch_namespaced_custom_object_status(
        "isthmus.dev",
        "v1alpha1",
        namespace,
        PLURAL,
        "ok",
        {"status": {"currentWave": 1}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(client.ApiException) as info:
        kube_api.patch_spec(PLURAL, namespace, "ok", {"waves": [50, 100]})
    assert info.value.status == 422
    assert "waves are fixed once the first wave is applied" in json.loads(info.value.body)["message"]
    kube_api.patch_spec(PLURAL, namespace, "ok", {"paused": True})  # other fields stay editable
    kube_api.delete(PLURAL, namespace, "ok")


def test_rollout_advances_wave_by_wave_while_gates_pass(
    kube_api, namespace, pool, run_operator, wait
) -> None:
    kube_api.put_configmap(
        namespace,
        "isthmus-rollout-metrics-eu-16",
        metrics(baseline=GOOD, wave_1=GOOD | {"ndcg_at_10": 0.515}),
    )
    with run_operator(interval=0.3):
        kube_api.create(PLURAL, namespace, rollout("eu-16", "edge-eu", [25, 50, 100]))

        # wave 1 passes (nDCG -0.005 within 0.02) → wave 2 is applied; its metrics are not there yet
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "eu-16")).get("currentWave") == 2 and s, "wave 2"
        )
        assert status["phase"] == "Progressing" and status["currentPercent"] == 50
        # a running rollout holds the operator's finalizer (kopf's, for its timer)
        assert FINALIZER in kube_api.get(PLURAL, namespace, "eu-16")["metadata"]["finalizers"]
        now = bundles(kube_api, namespace, pool)
        assert now["edge-eu-a"] == now["edge-eu-b"] == ("bge-small-en@1.6.0", "bge-small-en@1.6.0")
        assert now["edge-eu-c"] == now["edge-eu-d"] == (None, None)
        assert [w["state"] for w in status["waves"]] == ["Passed", "Applied", "Pending"]
        assert [w["workloads"] for w in status["waves"]] == [pool[:1], pool[:2], pool]
        ndcg = next(g for g in status["waves"][0]["gates"] if g["metric"] == "ndcg_at_10")
        assert ndcg["passed"] is True and ndcg["baseline"] == 0.52 and ndcg["observed"] == 0.515
        gates = {c["type"]: c for c in status["conditions"]}["GatesPassed"]
        assert gates["status"] == "Unknown"
        assert "waiting for wave-2" in gates["message"]

        kube_api.put_configmap(
            namespace,
            "isthmus-rollout-metrics-eu-16",
            metrics(baseline=GOOD, wave_1=GOOD, wave_2=GOOD, wave_3=GOOD),
        )
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "eu-16")).get("phase") == "Succeeded" and s,
            "Succeeded",
        )
        assert status["currentWave"] == 3 and status["currentPercent"] == 100
        assert [w["state"] for w in status["waves"]] == ["Passed", "Passed", "Passed"]
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert ready["status"] == "True" and ready["reason"] == "Succeeded"
        assert set(bundles(kube_api, namespace, pool).values()) == {
            ("bge-small-en@1.6.0", "bge-small-en@1.6.0")
        }
        # outside the pool nothing is touched, and inside it only the annotations: no container changes
        assert bundle_of(kube_api.daemonset(namespace, "core-logger")) == (None, None)
        server, sidecar = kube_api.daemonset(namespace, "edge-eu-a")["spec"]["template"]["spec"]["containers"]
        assert not sidecar.get("env")
        assert server["env"] == [{"name": "LOG_FORMAT", "value": "json"}]
        # finished: the finalizer is released (deletable without the operator, e.g. after its uninstall)
        wait(lambda: not finalizers(kube_api, namespace, "eu-16"), "the finalizer released")
        kube_api.delete(PLURAL, namespace, "eu-16")


def test_failed_gate_rolls_every_touched_workload_back(kube_api, namespace, pool, run_operator, wait) -> None:
    # two node groups already run 1.5.0 (the baseline to restore); the others run no bundle yet
    for n in ("edge-eu-0", "edge-eu-1"):
        kube_api.create_daemonset(
            namespace, n, {"isthmus.dev/edge-pool": "edge-eu"}, bundle="bge-small-en@1.5.0"
        )
    everyone = sorted([*pool, "edge-eu-0", "edge-eu-1"])
    worse = GOOD | {"ndcg_at_10": 0.47, "guardrail_block_rate": 0.05}
    kube_api.put_configmap(
        namespace, "isthmus-rollout-metrics-bad", metrics(baseline=GOOD, wave_1=GOOD, wave_2=worse)
    )
    with run_operator(interval=0.3):
        kube_api.create(PLURAL, namespace, rollout("bad", "edge-eu", [20, 50, 100]))
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "bad")).get("phase") == "RolledBack" and s,
            "RolledBack",
        )

        assert status["currentWave"] == 2
        assert [w["state"] for w in status["waves"]] == ["RolledBack", "Failed", "Pending"]
        failed = {g["metric"]: g for g in status["failedGates"]}
        assert set(failed) == {"ndcg_at_10", "guardrail_block_rate"}
        assert failed["ndcg_at_10"]["baseline"] == 0.52 and failed["ndcg_at_10"]["observed"] == 0.47
        assert (
            failed["ndcg_at_10"]["regression"] == pytest.approx(0.05)
            and failed["ndcg_at_10"]["threshold"] == 0.02
        )
        assert failed["guardrail_block_rate"]["regression"] == pytest.approx(0.03)
        gates = {c["type"]: c for c in status["conditions"]}["GatesPassed"]
        assert gates["status"] == "False" and gates["reason"] == "GateFailed"
        assert "ndcg_at_10 dropped by 0.0500 (0.5200 → 0.4700); maxNdcgDrop allows 0.0200" in gates["message"]
        assert "guardrail_block_rate rose by 0.0300" in gates["message"]
        assert (
            status["baseline"]["edge-eu-0"] == "bge-small-en@1.5.0" and status["baseline"]["edge-eu-a"] == ""
        )

        now = bundles(kube_api, namespace, everyone)
        assert now["edge-eu-0"] == now["edge-eu-1"] == ("bge-small-en@1.5.0", "bge-small-en@1.5.0")
        assert {now[n] for n in pool} == {(None, None)}

        # RolledBack is final: later metrics do not restart it
        kube_api.put_configmap(
            namespace, "isthmus-rollout-metrics-bad", metrics(baseline=GOOD, wave_1=GOOD, wave_2=GOOD)
        )
        time.sleep(1.5)
        assert kube_api.status(PLURAL, namespace, "bad")["phase"] == "RolledBack"
        assert {bundles(kube_api, namespace, pool)[n] for n in pool} == {(None, None)}
        wait(lambda: not finalizers(kube_api, namespace, "bad"), "the finalizer released")
        kube_api.delete(PLURAL, namespace, "bad")


def test_pause_holds_the_current_wave_and_resume_continues(
    kube_api, namespace, pool, run_operator, wait
) -> None:
    with run_operator(interval=0.3):
        kube_api.create(PLURAL, namespace, rollout("held", "edge-eu", [25, 100]))
        wait(lambda: kube_api.status(PLURAL, namespace, "held").get("currentWave") == 1, "wave 1")
        kube_api.patch_spec(PLURAL, namespace, "held", {"paused": True})
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "held")).get("phase") == "Paused" and s, "Paused"
        )
        assert {c["type"]: c for c in status["conditions"]}["Paused"]["status"] == "True"

        # passing metrics arrive while paused: nothing moves
        kube_api.put_configmap(
            namespace, "isthmus-rollout-metrics-held", metrics(baseline=GOOD, wave_1=GOOD, wave_2=GOOD)
        )
        time.sleep(1.5)
        status = kube_api.status(PLURAL, namespace, "held")
        assert status["phase"] == "Paused" and status["currentWave"] == 1
        assert [w["state"] for w in status["waves"]] == ["Applied", "Pending"]
        assert sum(b != (None, None) for b in bundles(kube_api, namespace, pool).values()) == 1

        kube_api.patch_spec(PLURAL, namespace, "held", {"paused": False})
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "held")).get("phase") == "Succeeded" and s,
            "Succeeded",
        )
        assert {c["type"]: c for c in status["conditions"]}["Paused"]["status"] == "False"
        assert set(bundles(kube_api, namespace, pool).values()) == {
            ("bge-small-en@1.6.0", "bge-small-en@1.6.0")
        }
        kube_api.delete(PLURAL, namespace, "held")


def test_waves_finer_than_the_pool_fail_before_touching_anything(
    kube_api, namespace, run_operator, wait
) -> None:
    for n in ("tiny-a", "tiny-b"):
        kube_api.create_daemonset(namespace, n, {"isthmus.dev/edge-pool": "tiny"})
    with run_operator(interval=0.3):
        kube_api.create(PLURAL, namespace, rollout("fine", "tiny", [10, 20, 100]))
        status = wait(lambda: (s := kube_api.status(PLURAL, namespace, "fine")).get("phase") and s, "a phase")
        assert status["phase"] == "Failed"
        valid = {c["type"]: c for c in status["conditions"]}["Valid"]
        assert valid["status"] == "False"
        assert valid["message"] == (
            "waves 10% and 20% both cover 1 of the pool's 2 workloads: use fewer waves or more node groups "
            "(selector isthmus.dev/edge-pool=tiny)"
        )
        assert bundles(kube_api, namespace, ["tiny-a", "tiny-b"]) == {
            "tiny-a": (None, None),
            "tiny-b": (None, None),
        }

        # the spec can be fixed (waves are mutable) and the rollout then proceeds
        kube_api.put_configmap(
            namespace, "isthmus-rollout-metrics-fine", metrics(baseline=GOOD, wave_1=GOOD, wave_2=GOOD)
        )
        kube_api.patch_spec(PLURAL, namespace, "fine", {"waves": [50, 100]})
        wait(
            lambda: kube_api.status(PLURAL, namespace, "fine").get("phase") == "Succeeded",
            "Succeeded after the fix",
        )
        kube_api.delete(PLURAL, namespace, "fine")
