"""EdgeRollouts gated on what the platform measures: the operator (KopfRunner) against a real
kube-apiserver reads its gate metrics from a REAL evaluation service (the evaluation module and its gRPC
server, in this process, on a loopback port) through ``EvaluationMetricsSource``; the evaluation is fed
``AnswerProduced`` events over its bus, each carrying the bundle of the workload that answered
(``provenance.model_bundle``) — as the answers of the pool's pods would once the annotation reaches them.

The block rate needs no judge: these rollouts are gated on ``maxGuardrailBlockRateIncrease``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.contracts.events import AnswerProduced, Provenance
from isthmus_operator.evaluation import EvaluationMetricsSource

PLURAL = "edgerollouts"
POOL_LABEL = "isthmus.dev/edge-pool"
MIN_SAMPLES = 20
#: the address of the services the evaluation depends on but these tests never make it call (dataset
#: runs: ingestion, the orchestrator; the judge of samples: the guardrail — no answer here has a sample)
UNUSED = "127.0.0.1:9"


class EvaluationServer:
    """The evaluation target (its real module, gRPC server and in-process bus) on a loopback port; its
    tenant directory is the session's real retrieval service."""

    def __init__(self, bg: Any, data_dir: Path, retrieval: str) -> None:
        from isthmus_cli.modules import MODULES
        from isthmus_core.bus.typed import publisher
        from isthmus_core.contracts import topics
        from isthmus_core.runtime.runtime import Runtime

        self._bg = bg
        overrides: dict[str, dict[str, Any]] = {
            "common": {
                "data_dir": str(data_dir),
                "grpc_port": 0,
                "metrics_port": 0,
                "bus": "inprocess",
                "shutdown_grace_s": 1.0,
                "endpoints": {"retrieval": retrieval}
                | {s: UNUSED for s in ("ingestion", "guardrail", "agent-orchestrator")},
            }
        }
        self.runtime = Runtime.from_settings("evaluation", MODULES, None, overrides)
        bg.run(self.runtime.start(), timeout=60)
        self.endpoint = self.runtime.address
        assert self.runtime.bus is not None
        self._publish = publisher(self.runtime.bus, topics.ANSWERS_PRODUCED)

    def answers(self, tenant: str, bundle: str, count: int, blocked: int) -> None:
        """``count`` answers of ``tenant`` served with ``bundle`` ("" = the bundled models), ``blocked``
        of them blocked by the guardrail."""
        for i in range(count):
            qid = uuid.uuid4().hex
            event = AnswerProduced(
                tenant_id=tenant,
                idempotency_key=f"{tenant}/answer/{qid}",
                question_id=qid,
                latency_ms=12.0,
                blocked=i < blocked,
                provenance=Provenance(model_bundle=bundle),
            )
            self._bg.run(self._publish(event))

    def stop(self) -> None:
        self._bg.run(self.runtime.stop(), timeout=30)


@pytest.fixture(scope="module")
def evaluation_server(
    background_loop: Any, retrieval_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EvaluationServer]:
    server = EvaluationServer(
        background_loop, tmp_path_factory.mktemp("evaluation"), retrieval_server.endpoint
    )
    yield server
    server.stop()


def rollout(name: str, pool: str, version: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bundle": {"name": "edge-en", "version": version},
        "nodePool": {"matchLabels": {POOL_LABEL: pool}},
        "waves": [50, 100],
        "gates": {"maxGuardrailBlockRateIncrease": 0.05},
    }
    body.update(spec)
    return {
        "apiVersion": "isthmus.dev/v1alpha1",
        "kind": "EdgeRollout",
        "metadata": {"name": name},
        "spec": body,
    }


def bundles(kube_api: Any, namespace: str, names: list[str]) -> dict[str, str | None]:
    out = {}
    for n in names:
        template = kube_api.daemonset(namespace, n)["spec"]["template"]["metadata"]
        out[n] = (template.get("annotations") or {}).get("isthmus.dev/model-bundle")
    return out


def source(evaluation: EvaluationServer) -> EvaluationMetricsSource:
    return EvaluationMetricsSource(evaluation.endpoint, min_samples=MIN_SAMPLES, baseline_window_s=3600)


def test_a_rollout_advances_on_the_metrics_the_evaluation_computed(
    kube_api: Any, namespace: str, run_operator: Any, wait: Any, evaluation_server: EvaluationServer
) -> None:
    pool = ["edge-a", "edge-b"]
    for n in pool:
        kube_api.create_daemonset(namespace, n, {POOL_LABEL: "good"})
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    # the bundled models' answers before the rollout: 1 of 40 blocked (2.5 %)
    evaluation_server.answers(tenant, "", 40, blocked=1)
    with run_operator(interval=0.3, metrics=source(evaluation_server)):
        kube_api.create(PLURAL, namespace, rollout("good", "good", "2"))
        status = wait(
            lambda: (
                (s := kube_api.status(PLURAL, namespace, "good")).get("currentWave") == 1
                and "wave-1 lacks 'guardrail_block_rate'" in s.get("message", "")
                and s
            ),
            "wave 1 applied, holding until the new bundle has answered enough",
        )
        assert status["phase"] == "Progressing"
        assert status["waves"][0]["appliedAt"] and "appliedAt" not in status["waves"][1]
        assert bundles(kube_api, namespace, pool) == {"edge-a": "edge-en@2", "edge-b": None}

        # fewer answers than the minimum: still holding, never judged on a handful
        evaluation_server.answers(tenant, "edge-en@2", MIN_SAMPLES - 1, blocked=0)
        # ... then enough: 1 of 30 blocked (3.3 %, within the 5-point allowance)
        evaluation_server.answers(tenant, "edge-en@2", 30 - (MIN_SAMPLES - 1), blocked=1)
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "good")).get("currentWave") == 2 and s, "wave 2"
        )
        [gate] = status["waves"][0]["gates"]
        assert gate["metric"] == "guardrail_block_rate" and gate["passed"] is True
        assert gate["baseline"] == pytest.approx(1 / 40)
        assert gate["observed"] == pytest.approx(1 / 30)
        assert status["waves"][1]["appliedAt"] >= status["waves"][0]["appliedAt"]
        assert bundles(kube_api, namespace, pool) == {"edge-a": "edge-en@2", "edge-b": "edge-en@2"}

        # wave 2 counts the bundle's answers since wave 2 was applied
        evaluation_server.answers(tenant, "edge-en@2", 25, blocked=0)
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "good")).get("phase") == "Succeeded" and s,
            "Succeeded",
        )
        assert [w["state"] for w in status["waves"]] == ["Passed", "Passed"]
        kube_api.delete(PLURAL, namespace, "good")


def test_a_rollout_rolls_back_when_the_bundles_block_rate_rises(
    kube_api: Any,
    namespace: str,
    run_operator: Any,
    wait: Any,
    evaluation_server: EvaluationServer,
    background_loop: Any,
    retrieval_server: Any,
) -> None:
    from isthmus_operator.retrieval import GrpcTenantRegistry

    pool = ["edge-c", "edge-d"]
    kube_api.create_daemonset(namespace, "edge-c", {POOL_LABEL: "bad"}, bundle="edge-en@1")
    kube_api.create_daemonset(namespace, "edge-d", {POOL_LABEL: "bad"}, bundle="edge-en@1")
    tenant, other = f"b-{uuid.uuid4().hex[:8]}", f"o-{uuid.uuid4().hex[:8]}"
    registry = GrpcTenantRegistry(retrieval_server.endpoint)
    background_loop.run(registry.ensure_tenant(tenant))
    background_loop.run(registry.close())
    # the rollout judges `tenant`'s answers only: the other tenant's would pass the gate
    evaluation_server.answers(tenant, "edge-en@1", 30, blocked=0)
    evaluation_server.answers(other, "edge-en@1", 30, blocked=9)
    with run_operator(interval=0.3, metrics=source(evaluation_server)):
        kube_api.create(PLURAL, namespace, rollout("bad", "bad", "3", evaluation={"tenant": tenant}))
        wait(lambda: kube_api.status(PLURAL, namespace, "bad").get("currentWave") == 1, "wave 1")
        evaluation_server.answers(other, "edge-en@3", 60, blocked=0)
        evaluation_server.answers(tenant, "edge-en@3", 30, blocked=12)  # 40 % blocked
        status = wait(
            lambda: (s := kube_api.status(PLURAL, namespace, "bad")).get("phase") == "RolledBack" and s,
            "RolledBack",
        )
        [failed] = status["failedGates"]
        assert failed["metric"] == "guardrail_block_rate"
        assert failed["baseline"] == pytest.approx(0.0) and failed["observed"] == pytest.approx(0.4)
        assert [w["state"] for w in status["waves"]] == ["Failed", "Pending"]
        assert status["baseline"] == {"edge-c": "edge-en@1", "edge-d": "edge-en@1"}
        assert bundles(kube_api, namespace, pool) == {"edge-c": "edge-en@1", "edge-d": "edge-en@1"}
        kube_api.delete(PLURAL, namespace, "bad")


def test_the_schema_takes_a_tenant_id_as_the_evaluation_tenant(kube_api: Any, namespace: str) -> None:
    from kubernetes import client

    with pytest.raises(client.ApiException) as info:
        kube_api.create(PLURAL, namespace, rollout("t", "p", "2", evaluation={"tenant": "Not_A_Tenant"}))
    assert info.value.status == 422 and "spec.evaluation.tenant" in info.value.body
    kube_api.create(PLURAL, namespace, rollout("t", "p", "2", evaluation={"tenant": "acme"}))
    assert kube_api.get(PLURAL, namespace, "t")["spec"]["evaluation"] == {"tenant": "acme"}
