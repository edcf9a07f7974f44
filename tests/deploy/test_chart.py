"""The Helm chart `charts/isthmus`, the Dockerfile and skaffold.yaml, checked with the real tools:
`helm lint`/`helm template` (values.schema.json enforced), Kubernetes schemas (kubernetes-validate), and
checkov on the rendered manifests and the Dockerfile with zero failures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "isthmus"
HELM = ROOT / ".tools" / "bin" / "helm"
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
SERVICES = ["agent-orchestrator", "embedding", "evaluation", "guardrail", "ingestion", "retrieval"]
CALLERS = {  # who calls whom over gRPC (the NetworkPolicy must allow exactly these)
    "ingestion": {"evaluation"},
    "embedding": {"retrieval"},
    "retrieval": {"ingestion", "agent-orchestrator", "evaluation"},
    "guardrail": {"agent-orchestrator"},
    "agent-orchestrator": set(),
    "evaluation": set(),
}
DIST = ["--set", "deploymentMode=Distributed", "--set", "kafka.bootstrapServers=kafka.data:9092"]
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}


def need(tool: Path) -> None:
    if not tool.exists():
        reason = f"{tool.name} is not installed at {tool} (run make setup / bash tools/install-tools.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    need(HELM)
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check, timeout=120)


def render(*values: str) -> list[dict[str, Any]]:
    out = helm("template", "rel", str(CHART), "--namespace", "isthmus", *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_helm_lint_passes() -> None:
    r = helm("lint", str(CHART), "--strict", *DIST)
    assert "0 chart(s) failed" in r.stdout


@pytest.mark.parametrize(
    "values",
    [
        [],
        DIST,
        [*DIST, "--set", "keda.enabled=true"],
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "otel.endpoint=http://otel:4317"],
        [
            *DIST,
            "--set",
            "secretEnv.ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY.name=llm",
            "--set",
            "secretEnv.ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY.key=api-key",
        ],
    ],
    ids=["all-in-one", "distributed", "keda", "servicemonitor-otel", "secret-ref"],
)
def test_rendered_manifests_match_kubernetes_schemas(values: list[str]) -> None:
    import kubernetes_validate

    docs = render(*values)
    assert docs
    for d in docs:
        if d["kind"] in CRD_KINDS:
            continue  # custom resources: not in the Kubernetes schemas
        kubernetes_validate.validate(d, "1.31", strict=True)
        assert d["metadata"]["namespace"] == "isthmus"


def test_all_in_one_is_one_pod_with_a_volume_and_grpc_probes() -> None:
    docs = render()
    deps = by_kind(docs, "Deployment")
    assert list(deps) == ["rel-all"]
    pod = deps["rel-all"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["--target", "all"]
    assert {"grpc"} == set(c["readinessProbe"]) & {"grpc", "httpGet", "exec"}
    assert any(v.get("persistentVolumeClaim") for v in pod["volumes"])
    assert deps["rel-all"]["spec"]["strategy"]["type"] == "Recreate"


def test_distributed_has_every_piece_per_service() -> None:
    docs = render(*DIST)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
        assert sorted(by_kind(docs, kind)) == [f"rel-{s}" for s in SERVICES], kind
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {
        "rel-embedding",
        "rel-guardrail",
        "rel-agent-orchestrator",
    }  # autoscaling on in values
    services = set(by_kind(docs, "Service"))
    for name, dep in by_kind(docs, "Deployment").items():
        svc = name.removeprefix("rel-")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["args"] == ["--target", svc]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["ISTHMUS_BUS"] == "kafka" and env["ISTHMUS_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.data:9092"
        endpoints = json.loads(env["ISTHMUS_ENDPOINTS"])
        assert set(endpoints) == set(SERVICES)
        assert {e.split(".")[0] for e in endpoints.values()} <= services
        assert c["readinessProbe"]["grpc"]["service"].startswith("isthmus.")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_network_policies_allow_exactly_the_call_graph() -> None:
    docs = render(*DIST)
    for name, pol in by_kind(docs, "NetworkPolicy").items():
        svc = name.removeprefix("rel-")
        grpc_from: set[str] = set()
        for rule in pol["spec"]["ingress"]:
            if rule["ports"] != [{"port": 50051, "protocol": "TCP"}]:
                continue
            for peer in rule["from"]:
                comp = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                if comp and "namespaceSelector" not in peer:
                    grpc_from.add(comp)
        assert grpc_from == CALLERS[svc], svc


def test_secrets_are_only_referenced() -> None:
    docs = render(
        *DIST,
        "--set",
        "secretEnv.ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY.name=llm",
        "--set",
        "secretEnv.ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY.key=api-key",
    )
    assert not by_kind(docs, "Secret")
    c = by_kind(docs, "Deployment")["rel-agent-orchestrator"]["spec"]["template"]["spec"]["containers"][0]
    [ref] = [e for e in c["env"] if e["name"] == "ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "llm", "key": "api-key"}


def test_keda_replaces_the_hpa_and_scales_on_the_consumer_group() -> None:
    docs = render(*DIST, "--set", "keda.enabled=true")
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    so = by_kind(docs, "ScaledObject")["rel-embedding"]
    kafka = next(t for t in so["spec"]["triggers"] if t["type"] == "kafka")
    assert kafka["metadata"]["consumerGroup"] == "embedding"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "deploymentMode=Sideways"], "deploymentMode"),
        (["--set", "services.embedding.replicas=-1"], "replicas"),
        (["--set", "services.vectorizer.enabled=true"], "vectorizer"),
        (["--set", "deploymentMode=Distributed"], "bootstrapServers"),
        (["--set", "image.digest=latest"], "digest"),
    ],
    ids=["bad-mode", "negative-replicas", "unknown-service", "distributed-without-kafka", "bad-digest"],
)
def test_invalid_values_fail_at_render_with_the_schema_message(values: list[str], message: str) -> None:
    r = helm("template", "rel", str(CHART), *values, check=False)
    assert r.returncode != 0
    assert "values don't meet the specifications of the schema" in r.stderr
    assert message in r.stderr


def _checkov(*args: str) -> dict[str, Any]:
    need(CHECKOV)
    r = subprocess.run(
        [str(CHECKOV), *args, "--compact", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    data = json.loads(r.stdout)
    return data[0] if isinstance(data, list) else data


@pytest.mark.parametrize("values", [[], DIST], ids=["all-in-one", "distributed"])
def test_checkov_finds_nothing_in_the_rendered_chart(values: list[str], tmp_path: Path) -> None:
    out = helm("template", "rel", str(CHART), "--namespace", "isthmus", *values).stdout
    (tmp_path / "rendered.yaml").write_text(out)
    report = _checkov("-d", str(tmp_path), "--framework", "kubernetes")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 50
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {"CKV_K8S_43", "CKV_K8S_35"}  # each annotated in the chart with its reason


def test_checkov_finds_nothing_in_the_dockerfile() -> None:
    report = _checkov("-f", str(ROOT / "Dockerfile"), "--framework", "dockerfile")
    assert report["results"]["failed_checks"] == []
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} == {"CKV_DOCKER_2"}
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and "--no-dev" in text


def test_skaffold_builds_the_image_and_deploys_both_shapes_through_the_chart() -> None:
    sk = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    [artifact] = sk["build"]["artifacts"]
    assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).exists()
    [release] = sk["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]) == CHART
    profiles = {p["name"]: p["patches"][0]["value"] for p in sk["profiles"]}
    assert set(profiles) == {"all-in-one", "distributed"}
    for values in profiles.values():
        args = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
        assert render(*args)  # the chart schema accepts each profile's values


def test_the_values_terraform_passes_are_accepted(tmp_path: Path) -> None:
    """terraform/modules/region/isthmus.tf feeds these keys to the chart (plus envs' extra values)."""
    values = {
        "deploymentMode": "Distributed",
        "image": {"repository": "123.dkr.ecr.us-east-1.amazonaws.com/isthmus", "tag": "0.1.0"},
        "kafka": {"bootstrapServers": "b-1.msk:9098,b-2.msk:9098", "replicationFactor": 3},
        "region": "us-east-1",
        "services": {
            s: {
                "serviceAccount": {
                    "create": True,
                    "name": f"isthmus-{s}",
                    "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::1:role/{s}"},
                },
                **({"service": {"type": "NodePort", "nodePort": 30051}} if s == "agent-orchestrator" else {}),
            }
            for s in SERVICES
        },
        "backups": {"bucket": "isthmus-backups-use1"},
        "settings": {"LOG_FORMAT": "json"},
    }
    f = tmp_path / "tf.yaml"
    f.write_text(yaml.safe_dump(values))
    docs = render("-f", str(f))
    sas = by_kind(docs, "ServiceAccount")
    assert sas["isthmus-retrieval"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "/retrieval"
    )
    dep = by_kind(docs, "Deployment")["rel-retrieval"]
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "isthmus-retrieval"
    svc = by_kind(docs, "Service")["rel-agent-orchestrator"]
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30051
