"""charts/isthmus rendered by the real `helm template` (values.schema.json enforced) and checked against
the Kubernetes schemas (kubernetes-validate) and against the code it deploys: the services and their call
graph (the modules' ``depends_on``), the consumer groups, the gRPC health names (the protos) and the
settings classes (every rendered env var must load into the settings it is meant for). The web console
(an HTTP service of the same image) is on in every render (base-values.yaml)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from isthmus_cli.modules import MODULES
from isthmus_core.auth.access_file import FAMILIES
from isthmus_core.auth.access_file import Quota as AccessQuota
from isthmus_core.auth.access_file import parse as parse_access_file
from isthmus_core.contracts.ids import PRINCIPAL_PATTERN
from isthmus_core.settings import CommonSettings, load_all

CHART = Path(__file__).resolve().parents[2] / "charts" / "isthmus"
RELEASE, NAMESPACE = "rel", "isthmus"  # what the ``chart`` fixture renders with
CONSOLE = "console"  # the web console: HTTP pages (port 8088 "http"), no gRPC API of its own
CONSOLE_PORT = 8088


SERVICES = sorted(m.name for m in MODULES)
GRPC_SERVICES = [s for s in SERVICES if s != CONSOLE]  # each serves a gRPC API (and has a health name)
CALLEES = {m.name: set(m.depends_on) for m in MODULES}  # who calls whom over gRPC
CALLERS = {s: {c for c in SERVICES if s in CALLEES[c]} for s in SERVICES}
# the chart's contract: clients call these directly; embedding and guardrail are only called by services
PUBLIC = {"ingestion", "retrieval", "agent-orchestrator", "evaluation"}
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}  # custom resources: not in the Kubernetes schemas
K8S_VERSIONS = ("1.31", "1.34")  # the oldest we support on EKS, and the API server the operator tests run
DIST = {"deploymentMode": "Distributed", "kafka.bootstrapServers": "kafka.data:9092"}
BASE_VALUES = Path(__file__).resolve().parent / "base-values.yaml"  # what ``chart`` renders from
ACCESS_FILE = "/etc/isthmus/access/access.toml"


@functools.cache
def chart_values() -> dict[str, Any]:
    """The chart's values.yaml (read on first use: nothing is read at import time)."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


@functools.cache
def chart_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def sets(values: dict[str, Any]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def container(dep: dict[str, Any]) -> dict[str, Any]:
    [c] = dep["spec"]["template"]["spec"]["containers"]
    return typing.cast(dict[str, Any], c)


def env_of(dep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = container(dep)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"duplicate env vars in {dep['metadata']['name']}: {names}"
    return {e["name"]: e for e in env}


#: the downward API field every pod's ISTHMUS_MODEL_BUNDLE comes from (what an EdgeRollout sets)
BUNDLE_FIELD = {"fieldRef": {"fieldPath": "metadata.annotations['isthmus.dev/model-bundle']"}}


def env_value(e: dict[str, Any]) -> str:
    """What a rendered env var holds in a pod: its value; "" for the bundle annotation of a pod that has
    none (the downward API's empty string); a stand-in for a secret."""
    if "value" in e:
        return str(e["value"])
    return "" if e["valueFrom"] == BUNDLE_FIELD else "from-a-secret"


def module_of(service: str) -> Any:
    return importlib.import_module(f"isthmus_{service.replace('-', '_')}.module")


def health_name(service: str) -> str:
    snake = service.replace("-", "_")
    pb2 = importlib.import_module(f"isthmus.{snake}.v1.{snake}_pb2")
    [svc] = pb2.DESCRIPTOR.services_by_name.values()
    return str(svc.full_name)


def settings_class(section: str) -> Any:
    if section == "common":
        return CommonSettings
    [cls] = [m.settings_cls for m in MODULES if m.name == section]
    return cls


def autoscaling(service: str) -> dict[str, Any]:
    """A service's autoscaling values (the console has none: one replica)."""
    auto: dict[str, Any] = chart_values()["services"][service].get("autoscaling", {"enabled": False})
    return auto


def write_values(tmp_path: Path, values: dict[str, Any]) -> list[str]:
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    return ["-f", str(f)]


SERVICE_CLIENT = {
    "auth.serviceClient.tokenUrl": "https://idp.example.com/oauth2/token",
    "auth.serviceClient.clientId": "isthmus-platform",
    "auth.serviceClient.clientSecretRef.name": "idp-client",
    "auth.serviceClient.clientSecretRef.key": "secret",
}

VARIANTS = {
    "all-in-one": {},
    "distributed": DIST,
    "keda": {**DIST, "keda.enabled": "true", "keda.authenticationRef": "msk-iam"},
    "observability": {
        **DIST,
        "metrics.serviceMonitor.enabled": "true",
        "otel.endpoint": "http://otel-collector.observability:4317",
        "weaviate.url": "https://weaviate.data:8443",
        "weaviate.apiKeySecretRef.existingSecret": "weaviate",
        "weaviate.apiKeySecretRef.key": "api-key",
    },
    "secrets-by-ref": {
        **DIST,
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.existingSecret": "llm",
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.key": "api-key",
    },
    "kafka-scram-private-ca": {
        **DIST,
        "kafka.securityProtocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.username": "isthmus",
        "kafka.sasl.passwordSecretRef.existingSecret": "kafka-credentials",
        "kafka.sasl.passwordSecretRef.key": "password",
        "kafka.tls.caSecretRef.existingSecret": "kafka-ca",
        "kafka.tls.caSecretRef.key": "ca.crt",
    },
    "kafka-msk-iam": {
        **DIST,
        "kafka.securityProtocol": "SASL_SSL",
        "kafka.sasl.mechanism": "AWS_MSK_IAM",
        "region": "eu-west-1",
    },
    "model-bundles": {**DIST, "modelBundles.hostPath": "/var/lib/isthmus/bundles"},
    "console-exposed": {
        **DIST,
        "console.ingress.enabled": "true",
        "console.ingress.className": "nginx",
        "console.ingress.host": "console.isthmus.example.com",
        "console.ingress.tls.secretName": "console-tls",
        "services.console.settings.KUBE_NAMESPACE": NAMESPACE,
        "services.console.secrets.OIDC_CLIENT_SECRET.existingSecret": "console-oidc",
        "services.console.secrets.OIDC_CLIENT_SECRET.key": "client-secret",
    },
    "all-in-one-exposed": {
        "ingress.allowedNamespaces[0]": "apps",
        "ingress.cidrs[0]": "10.20.0.0/16",
        "services.agent-orchestrator.service.type": "NodePort",
        "services.agent-orchestrator.service.nodePort": "30051",
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.existingSecret": "llm",
        "services.agent-orchestrator.secrets.OPENAI_API_KEY.key": "api-key",
    },
}


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_helm_lint_is_clean(chart: Any, mode: dict[str, Any]) -> None:
    r = chart.run("lint", str(CHART), "--strict", "-f", str(BASE_VALUES), *sets(mode))
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout, r.stdout + r.stderr
    assert "[ERROR]" not in r.stdout and "[WARNING]" not in r.stdout


@pytest.mark.parametrize("values", list(VARIANTS.values()), ids=list(VARIANTS))
def test_every_rendered_object_matches_the_kubernetes_schemas(chart: Any, values: dict[str, Any]) -> None:
    import kubernetes_validate

    docs = chart.render(*sets(values))
    validated = 0
    for d in docs:
        assert d["metadata"]["namespace"] == NAMESPACE, d["metadata"]["name"]
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if d["kind"] in CRD_KINDS:
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(d, version, strict=True)
        validated += 1
    assert validated >= 6


def test_all_in_one_is_one_pod_with_a_volume_every_setting_and_grpc_probes(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                "services.retrieval.settings.HYBRID_ALPHA": "0.25",
                "services.guardrail.settings.PII_ENABLED": "false",
            }
        )
    )
    deps = by_kind(docs, "Deployment")
    assert list(deps) == [name("all")]
    dep = deps[name("all")]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    assert c["args"] == ["--target", "all"]
    env = env_of(dep)
    assert env["ISTHMUS_BUS"]["value"] == "inprocess"
    assert "ISTHMUS_ENDPOINTS" not in env  # every client dials the pod's own port
    # every service's settings go to the one pod
    assert env["ISTHMUS_RETRIEVAL_HYBRID_ALPHA"]["value"] == "0.25"
    assert env["ISTHMUS_GUARDRAIL_PII_ENABLED"]["value"] == "false"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    [pvc] = by_kind(docs, "PersistentVolumeClaim").values()
    assert volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == 50051, probe
    assert set(by_kind(docs, "PodDisruptionBudget")) == {name("all")}
    assert set(by_kind(docs, "Service")) == {name("all"), name(CONSOLE)}  # the console's: its http port


def test_distributed_has_every_piece_per_service(chart: Any) -> None:
    docs = chart.render(*sets(DIST))
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
        assert sorted(by_kind(docs, kind)) == sorted(name(s) for s in SERVICES), kind
    autoscaled = {s for s in SERVICES if autoscaling(s)["enabled"]}
    assert autoscaled, "values.yaml autoscales no service: the HPA path is untested"
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {name(s) for s in autoscaled}
    for s in autoscaled:
        spec, auto = hpas[name(s)]["spec"], autoscaling(s)
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name(s)}
        assert (spec["minReplicas"], spec["maxReplicas"]) == (auto["minReplicas"], auto["maxReplicas"])
        assert spec["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in by_kind(docs, "Deployment")[name(s)]["spec"]  # the HPA owns it
    services = by_kind(docs, "Service")
    for s in SERVICES:
        dep = by_kind(docs, "Deployment")[name(s)]
        c = container(dep)
        assert c["args"] == ["--target", s]
        env = env_of(dep)
        assert env["ISTHMUS_BUS"]["value"] == "kafka"
        assert env["ISTHMUS_KAFKA_BOOTSTRAP_SERVERS"]["value"] == "kafka.data:9092"
        assert env["ISTHMUS_GRPC_HOST"]["value"] == "0.0.0.0"
        endpoints = json.loads(env["ISTHMUS_ENDPOINTS"]["value"])
        assert set(endpoints) == set(GRPC_SERVICES)  # nothing calls the console over gRPC
        for target, address in endpoints.items():
            host, port = address.rsplit(":", 1)
            svc_name, ns, suffix = host.split(".")
            assert (ns, suffix) == (NAMESPACE, "svc")
            svc = services[svc_name]
            assert svc["spec"]["selector"]["app.kubernetes.io/component"] == target
            assert int(port) in {p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"}
        if s == CONSOLE:  # its own HTTP endpoints (issue 20): liveness /healthz, readiness /readyz
            assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == CONSOLE_PORT
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert (
                c["livenessProbe"]["httpGet"]
                == c["startupProbe"]["httpGet"]
                == {
                    "path": "/healthz",
                    "port": "http",
                }
            )
            continue
        assert "http" not in {p["name"] for p in c["ports"]}
        assert c["readinessProbe"]["grpc"] == {"port": 50051, "service": health_name(s)}
        assert c["livenessProbe"]["grpc"]["port"] == c["startupProbe"]["grpc"]["port"] == 50051
        # a dependency down makes a pod unready, never restarts it: liveness asks the process's own entry
        assert (
            c["livenessProbe"]["grpc"]["service"]
            == c["startupProbe"]["grpc"]["service"]
            == "isthmus.Liveness"
        )
        assert not {"httpGet", "exec", "tcpSocket"} & set(c["readinessProbe"])


def test_pods_are_locked_down(chart: Any) -> None:
    docs = chart.render(*sets(DIST))
    for dep in by_kind(docs, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        sc = container(dep)["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False  # no <RELEASE>_<SVC>_PORT env vars next to ISTHMUS_*
        sa = by_kind(docs, "ServiceAccount")[pod["serviceAccountName"]]
        assert sa["automountServiceAccountToken"] is False
        c = container(dep)
        assert c["resources"]["requests"] and c["resources"]["limits"]
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9464"
        drain = chart_values()["shutdown"]["drainDelaySeconds"] + chart_values()["shutdown"]["graceSeconds"]
        assert pod["terminationGracePeriodSeconds"] > drain
        env = env_of(dep)
        assert (
            float(env["ISTHMUS_SHUTDOWN_DRAIN_DELAY_S"]["value"])
            == chart_values()["shutdown"]["drainDelaySeconds"]
        )


def test_services_with_embedded_state_get_a_volume_and_one_writer(chart: Any) -> None:
    docs = chart.render(*sets(DIST))
    data_dirs = {"ingestion", "retrieval", "guardrail"}  # the modules that write under ctx.data_dir
    pvcs = by_kind(docs, "PersistentVolumeClaim")
    assert set(pvcs) == {f"{name(s)}-data" for s in data_dirs}
    for s in SERVICES:
        dep = by_kind(docs, "Deployment")[name(s)]
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        claim = volumes["data"].get("persistentVolumeClaim", {}).get("claimName")
        if s in data_dirs:
            assert claim == f"{name(s)}-data" and dep["spec"]["strategy"]["type"] == "Recreate"
            assert pvcs[claim]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        else:
            assert claim is None and "emptyDir" in volumes["data"]


def test_weaviate_url_moves_retrieval_off_its_volume(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **DIST,
                "weaviate.url": "http://weaviate.data:8080",
                "weaviate.grpcPort": 50052,
                "services.retrieval.replicas": 3,
            }
        )
    )
    dep = by_kind(docs, "Deployment")[name("retrieval")]
    env = env_of(dep)
    assert env["ISTHMUS_RETRIEVAL_STORE"]["value"] == "weaviate"
    assert env["ISTHMUS_RETRIEVAL_WEAVIATE_URL"]["value"] == "http://weaviate.data:8080"
    assert env["ISTHMUS_RETRIEVAL_WEAVIATE_GRPC_PORT"]["value"] == "50052"
    assert dep["spec"]["replicas"] == 3  # stateless on Weaviate: it scales out
    assert f"{name('retrieval')}-data" not in by_kind(docs, "PersistentVolumeClaim")
    egress = by_kind(docs, "NetworkPolicy")[name("retrieval")]["spec"]["egress"]
    assert {8080, 50052} in [{p["port"] for p in r["ports"]} for r in egress]
    # an explicit STORE setting wins (e.g. keep the embedded store while Weaviate is being filled)
    docs = chart.render(
        *sets(
            {
                **DIST,
                "weaviate.url": "http://weaviate.data:8080",
                "services.retrieval.settings.STORE": "embedded",
            }
        )
    )
    env = env_of(by_kind(docs, "Deployment")[name("retrieval")])
    assert env["ISTHMUS_RETRIEVAL_STORE"]["value"] == "embedded"
    assert f"{name('retrieval')}-data" in by_kind(docs, "PersistentVolumeClaim")


def test_network_policies_allow_exactly_the_call_graph(chart: Any) -> None:
    docs = chart.render(*sets(DIST))
    for pol_name, pol in by_kind(docs, "NetworkPolicy").items():
        s = pol_name.removeprefix(f"{RELEASE}-")
        assert pol["spec"]["policyTypes"] == ["Ingress", "Egress"]  # default deny both ways
        assert pol["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == s
        grpc_from, clients, scrapers, web = set(), [], [], []
        for rule in pol["spec"]["ingress"]:
            ports = {p["port"] for p in rule["ports"]}
            for peer in rule["from"]:
                comp = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                if comp:
                    assert ports == {50051} and "namespaceSelector" not in peer
                    grpc_from.add(comp)
                elif ports == {9464}:
                    scrapers.append(peer)
                elif ports == {CONSOLE_PORT}:
                    web.append(peer)
                else:
                    assert ports == {50051}
                    clients.append(peer)
        assert grpc_from == CALLERS[s], s
        assert bool(clients) == (s in PUBLIC), s
        assert web == (
            [{"podSelector": {"matchLabels": {"isthmus.dev/client": "true"}}}] if s == CONSOLE else []
        )
        assert scrapers == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
        grpc_to = set()
        for rule in pol["spec"]["egress"]:
            for peer in rule.get("to", []):
                comp = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                if comp:
                    assert {p["port"] for p in rule["ports"]} == {50051}
                    grpc_to.add(comp)
        assert grpc_to == CALLEES[s], s
        kafka = [
            r
            for r in pol["spec"]["egress"]
            if {p["port"] for p in r["ports"]} == set(chart_values()["kafka"]["ports"])
        ]
        assert len(kafka) == 1, s


def test_network_policy_knobs(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **DIST,
                "ingress.allowedNamespaces[0]": "apps",
                "ingress.cidrs[0]": "10.20.0.0/16",
                "metrics.monitoringNamespace": "prom",
                "otel.endpoint": "http://otel.obs:4318",
                "weaviate.url": "https://weaviate.data",
                "kafka.networkPeers[0].ipBlock.cidr": "10.30.0.0/16",
            }
        )
    )
    pols = by_kind(docs, "NetworkPolicy")
    ingress_peers = [p for r in pols[name("agent-orchestrator")]["spec"]["ingress"] for p in r["from"]]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in ingress_peers
    [ns_peer] = [p for p in ingress_peers if "podSelector" in p and "namespaceSelector" in p]
    assert ns_peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["apps"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prom"}}} in ingress_peers

    def egress_ports(component: str) -> list[set[int]]:
        return [{p["port"] for p in r["ports"]} for r in pols[name(component)]["spec"]["egress"]]

    assert {4318} in egress_ports("embedding")  # OTLP port from the URL
    assert {443, 50051} in egress_ports("retrieval")  # Weaviate: https default port + gRPC
    assert {443, 50051} not in egress_ports("embedding")  # only retrieval talks to Weaviate
    kafka_rule = next(
        r
        for r in pols[name("guardrail")]["spec"]["egress"]
        if r["ports"][0]["port"] == chart_values()["kafka"]["ports"][0]
    )
    assert kafka_rule["to"] == [{"ipBlock": {"cidr": "10.30.0.0/16"}}]


def test_a_disabled_service_drops_out_of_endpoints_and_policies(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **DIST,
                "services.evaluation.enabled": "false",
                "services.console.enabled": "false",  # it calls every service, evaluation too
                "endpoints.retrieval": "search.other:50051",
            }
        )
    )
    assert name("evaluation") not in by_kind(docs, "Deployment")
    env = env_of(by_kind(docs, "Deployment")[name("agent-orchestrator")])
    endpoints = json.loads(env["ISTHMUS_ENDPOINTS"]["value"])
    assert "evaluation" not in endpoints and endpoints["retrieval"] == "search.other:50051"
    pol = by_kind(docs, "NetworkPolicy")[name("ingestion")]
    comps = {
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for r in pol["spec"]["ingress"]
        for p in r["from"]
    }
    assert "evaluation" not in comps


def test_rendered_settings_load_into_the_services_settings(
    chart: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every env var the chart renders must be read by the settings class it is meant for (unknown
    ISTHMUS_* variables are silently ignored at run time, so a wrong name would be a silent no-op)."""
    chosen: dict[str, dict[str, Any]] = {
        "ingestion": {"MAX_UPLOAD_BYTES": 104857600, "CHUNK_OVERLAP_TOKENS": 32},
        "retrieval": {"HYBRID_ALPHA": 0.75, "DEFAULT_TOP_K": 20},
        "guardrail": {"PII_ENABLED": False},
        "embedding": {"MAX_BATCH": 64, "MAX_WAIT_MS": 2.5},
        "agent-orchestrator": {"GENERATOR": "openai", "OPENAI_MODEL": "smollm2", "TOP_K": 4},
        "evaluation": {"SEARCH_CONCURRENCY": 2},
        CONSOLE: {"SESSION_TTL_S": 1800, "MAX_UPLOAD_BYTES": 1048576, "KUBE_NAMESPACE": "ops"},
    }
    values = {
        "deploymentMode": "Distributed",
        "kafka": {"bootstrapServers": "kafka.data:9092", "replicationFactor": 2},
        "settings": {
            "LOG_LEVEL": "debug",
            "KAFKA_PARTITIONS": 12,
            "MAX_MESSAGE_BYTES": 16777216,
            "ADMISSION_MAX_CONCURRENT": 8,
            "ADMISSION_OVERRIDES": '{"AgentOrchestratorService/Ask": {"max_queue": 0}}',
        },
        "shutdown": {"drainDelaySeconds": 2.5, "graceSeconds": 15, "terminationGracePeriodSeconds": 30},
        "otel": {"endpoint": "http://otel.obs:4317"},
        "services": {
            s: {"settings": chosen[s]}
            | (
                {"secrets": {"OPENAI_API_KEY": {"existingSecret": "llm", "key": "k"}}}
                if s == "agent-orchestrator"
                else {}
            )
            for s in SERVICES
        },
    }
    docs = chart.render(*write_values(tmp_path, values))
    for s in SERVICES:
        env = env_of(by_kind(docs, "Deployment")[name(s)])
        for key in [k for k in os.environ if k.startswith("ISTHMUS_")]:
            monkeypatch.delenv(key)
        for var, e in env.items():
            monkeypatch.setenv(var, env_value(e))
        loaded = load_all([CommonSettings, settings_class(s)])
        common, own = loaded["common"], loaded[s]
        assert (common.bus, common.grpc_host, common.grpc_port) == ("kafka", "0.0.0.0", 50051)
        assert common.kafka_replication_factor == 2 and common.kafka_partitions == 12
        assert common.max_message_bytes == 16777216 and common.log_level == "debug"
        assert common.admission_max_concurrent == 8
        assert common.admission_overrides["AgentOrchestratorService/Ask"].max_queue == 0
        assert (common.shutdown_drain_delay_s, common.shutdown_grace_s) == (2.5, 15.0)
        assert (common.otel_exporter, common.otel_endpoint) == ("otlp", "http://otel.obs:4317")
        assert str(common.data_dir) == "/data"
        assert set(common.endpoints) == set(GRPC_SERVICES)
        for key, value in chosen[s].items():
            assert getattr(own, key.lower()) == value, (s, key)
        if s == "agent-orchestrator":
            assert own.openai_api_key.get_secret_value() == "from-a-secret"


#: settings of a service the chart sets itself (not offered under services.<svc>.settings): retrieval's store
#: lives on the chart's volume; the console listens on the pod's http port, runs when
#: services.console.enabled, and reads the Kubernetes API with its ServiceAccount's token (no kubeconfig)
CHART_OWNED = {"retrieval": {"STORE_DIR"}, CONSOLE: {"ENABLED", "HOST", "PORT", "KUBECONFIG"}}


def _expected_settings_schema(section: str) -> tuple[set[str], set[str]]:
    """(settings keys, secret keys) a section's schema must allow: the settings class's fields, secrets
    only under ``secrets``, minus what the chart sets itself (derived from a default render)."""
    cls = settings_class(section)
    fields = {n.upper(): f for n, f in cls.model_fields.items()}
    secrets = {k for k, f in fields.items() if f.annotation is SecretStr}
    return set(fields) - secrets, secrets


def test_the_schema_knows_every_setting_of_every_service(chart: Any) -> None:
    docs = chart.render(*sets({**DIST, "otel.endpoint": "http://otel:4317"}))
    defs = chart_schema()["definitions"]
    rendered = set(env_of(by_kind(docs, "Deployment")[name("embedding")]))
    owned = {v.removeprefix("ISTHMUS_") for v in rendered} - set(chart_values()["settings"])
    # the chart owns the addresses, bus, data dir, endpoints, OTel and shutdown; the rest is the user's
    settings, secrets = _expected_settings_schema("common")
    # Kafka security comes from kafka.securityProtocol / kafka.sasl / kafka.tls / region; client
    # certificates (mutual TLS) would need files the chart does not mount, so it does not offer them
    owned |= {"KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_AWS_REGION", "KAFKA_SSL_CAFILE"}
    # authentication comes from auth.* (the service client only with auth.serviceClient.tokenUrl)
    owned |= {"AUTH_SERVICE_TOKEN_URL", "AUTH_SERVICE_CLIENT_ID"}
    assert {"AUTH", "AUTH_ISSUER", "AUTH_JWKS_URL", "AUTH_AUDIENCE", "ACCESS_FILE"} <= owned
    # the model bundle comes from the pod annotation (an EdgeRollout's), the bundles' dir from modelBundles
    owned |= {"MODEL_BUNDLES_DIR"}
    assert "MODEL_BUNDLE" in owned
    # the local issuer's key lives in the pod's data dir (auth.mode local, AllInOne): no other path
    not_offered = {"KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "AUTH_LOCAL_KEY_FILE"}
    assert "KAFKA_SECURITY_PROTOCOL" in owned  # rendered in every Distributed pod
    assert set(defs["settings.common"]["properties"]) == settings - owned - not_offered
    # kafka.sasl.passwordSecretRef, auth.serviceClient.clientSecretRef
    assert secrets == {"KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD", "AUTH_SERVICE_CLIENT_SECRET"}
    for s in SERVICES:
        settings, secrets = _expected_settings_schema(s)
        allowed = set(defs[f"settings.{s}"]["properties"])
        assert allowed == settings - CHART_OWNED.get(s, set()), s
        assert set(defs[f"secrets.{s}"]["properties"]) == secrets, s
        for key, spec in defs[f"settings.{s}"]["properties"].items():
            assert _schema_matches_field(spec, settings_class(s).model_fields[key.lower()].annotation), (
                s,
                key,
            )
    for key, spec in defs["settings.common"]["properties"].items():
        assert _schema_matches_field(spec, CommonSettings.model_fields[key.lower()].annotation), key


def _schema_matches_field(spec: dict[str, Any], annotation: Any) -> bool:
    """The JSON-schema type of a setting agrees with the field's type (Optional[X] is X: unset = default)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return bool(spec.get("enum") == list(typing.get_args(annotation)))
    types_ = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    if typing.get_origin(annotation) in (dict, list):
        return "string" in types_  # a JSON object or list in one env var
    expected = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
    return expected[annotation] in types_  # floats also take strings: `--set x=0.5` passes a string


def test_secrets_are_only_referenced(chart: Any) -> None:
    docs = chart.render(*sets(VARIANTS["secrets-by-ref"] | VARIANTS["observability"] | SERVICE_CLIENT))
    assert not by_kind(docs, "Secret")
    assert set(by_kind(docs, "ConfigMap")) == {name("access")}  # role bindings: no secret in them
    secret_vars = {
        settings_class(s).env_prefix_for() + n.upper()
        for s in SERVICES
        for n, f in settings_class(s).model_fields.items()
        if f.annotation is SecretStr
    } | {"ISTHMUS_RETRIEVAL_WEAVIATE_API_KEY"}
    seen = {}
    for dep_name, dep in by_kind(docs, "Deployment").items():
        for var, e in env_of(dep).items():
            if var == "ISTHMUS_AUTH_SERVICE_TOKEN_URL":
                continue  # an address
            if var in secret_vars or any(w in var for w in ("API_KEY", "PASSWORD", "TOKEN", "SECRET")):
                assert "value" not in e, f"{dep_name}: {var} has a plain value"
                if var != "ISTHMUS_AUTH_SERVICE_CLIENT_SECRET":  # every pod's (below)
                    seen[var] = (dep_name, e["valueFrom"]["secretKeyRef"])
    assert seen == {
        "ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_API_KEY": (
            name("agent-orchestrator"),
            {"name": "llm", "key": "api-key"},
        ),
        "ISTHMUS_RETRIEVAL_WEAVIATE_API_KEY": (name("retrieval"), {"name": "weaviate", "key": "api-key"}),
    }  # each secret only in the one service that reads it
    # the deployment's own OAuth2 client: any pod may need a service token
    for dep in by_kind(docs, "Deployment").values():
        assert env_of(dep)["ISTHMUS_AUTH_SERVICE_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
            "name": "idp-client",
            "key": "secret",
        }


def _load_common(env: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> CommonSettings:
    for key in [k for k in os.environ if k.startswith("ISTHMUS_")]:
        monkeypatch.delenv(key)
    for var, e in env.items():
        monkeypatch.setenv(var, env_value(e))
    common = load_all([CommonSettings])["common"]
    assert isinstance(common, CommonSettings)
    return common


def test_kafka_sasl_and_a_private_ca_reach_every_distributed_pod(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = chart.render(*sets(VARIANTS["kafka-scram-private-ca"]))
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {name(s) for s in SERVICES}
    for dep in deployments.values():
        env = env_of(dep)
        assert env["ISTHMUS_KAFKA_SASL_PASSWORD"] == {
            "name": "ISTHMUS_KAFKA_SASL_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "kafka-credentials", "key": "password"}},
        }
        security = _load_common(env, monkeypatch).kafka_security()
        assert (security.protocol, security.sasl_mechanism, security.sasl_username) == (
            "SASL_SSL",
            "SCRAM-SHA-512",
            "isthmus",
        )
        assert security.sasl_password == "from-a-secret" and security.problems() == []
        # the CA bundle is the Secret's key, mounted read-only where ISTHMUS_KAFKA_SSL_CAFILE points
        pod = dep["spec"]["template"]["spec"]
        mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "kafka-ca")
        assert mount["readOnly"] is True
        assert str(security.ssl_cafile) == mount["mountPath"] + "/ca.pem"
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-ca")
        assert volume["secret"] == {"secretName": "kafka-ca", "items": [{"key": "ca.crt", "path": "ca.pem"}]}
    # the all-in-one pod has no Kafka: none of it is rendered there
    all_in_one = chart.render(
        *sets({k: v for k, v in VARIANTS["kafka-scram-private-ca"].items() if k not in DIST})
    )
    env = env_of(by_kind(all_in_one, "Deployment")[name("all")])
    assert not [v for v in env if v.startswith("ISTHMUS_KAFKA_")]


def test_msk_iam_uses_the_pods_role_and_the_region(chart: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = chart.render(*sets(VARIANTS["kafka-msk-iam"]))
    for dep in by_kind(docs, "Deployment").values():
        env = env_of(dep)
        assert "ISTHMUS_KAFKA_SASL_PASSWORD" not in env and "ISTHMUS_KAFKA_SASL_USERNAME" not in env
        security = _load_common(env, monkeypatch).kafka_security()
        assert (security.protocol, security.sasl_mechanism, security.aws_region) == (
            "SASL_SSL",
            "AWS_MSK_IAM",
            "eu-west-1",
        )
        assert security.problems() == []


def test_keda_replaces_the_hpas_and_scales_consumers_on_their_group_lag(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **VARIANTS["keda"],
                "services.evaluation.autoscaling.enabled": "true",
                "services.evaluation.autoscaling.maxReplicas": "3",
            }
        )
    )
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    scaled = by_kind(docs, "ScaledObject")
    autoscaled = {s for s in SERVICES if autoscaling(s)["enabled"]} | {"evaluation"}
    assert set(scaled) == {name(s) for s in autoscaled}
    for s in autoscaled:
        spec = scaled[name(s)]["spec"]
        assert spec["scaleTargetRef"]["name"] == name(s)
        kafka = [t for t in spec["triggers"] if t["type"] == "kafka"]
        group = getattr(module_of(s), "GROUP", None)  # the module's consumer group, if it consumes
        if group is None:
            assert kafka == [], f"{s} consumes nothing: no lag trigger"
        else:
            [trigger] = kafka
            assert trigger["metadata"]["consumerGroup"] == group == s
            assert trigger["metadata"]["bootstrapServers"] == "kafka.data:9092"
            assert trigger["authenticationRef"] == {"name": "msk-iam"}
        assert any(t["type"] == "cpu" for t in spec["triggers"])
    assert any(getattr(module_of(s), "GROUP", None) for s in autoscaled), "no consumer autoscaled"


def test_service_monitor_scrapes_the_metrics_port(chart: Any) -> None:
    docs = chart.render(*sets(VARIANTS["observability"] | {"metrics.serviceMonitor.labels.release": "prom"}))
    [sm] = by_kind(docs, "ServiceMonitor").values()
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    selector = sm["spec"]["selector"]["matchLabels"]
    for svc in by_kind(docs, "Service").values():
        assert selector.items() <= svc["metadata"]["labels"].items()
        assert {"name": "metrics", "port": 9464}.items() <= next(
            p for p in svc["spec"]["ports"] if p["name"] == "metrics"
        ).items()


def test_metrics_need_a_token_by_default_and_the_service_monitor_can_bring_one(chart: Any) -> None:
    oauth2 = {
        "metrics.serviceMonitor.oauth2.tokenUrl": "https://idp.example/oauth2/token",
        "metrics.serviceMonitor.oauth2.clientId.secret.name": "prom-client",
        "metrics.serviceMonitor.oauth2.clientId.secret.key": "id",
        "metrics.serviceMonitor.oauth2.clientSecret.name": "prom-client",
        "metrics.serviceMonitor.oauth2.clientSecret.key": "secret",
    }
    docs = chart.render(*sets(VARIANTS["observability"] | oauth2))
    for dep in by_kind(docs, "Deployment").values():
        assert env_of(dep)["ISTHMUS_METRICS_AUTH"]["value"] == "true"
    [sm] = by_kind(docs, "ServiceMonitor").values()
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["oauth2"]["tokenUrl"] == "https://idp.example/oauth2/token"
    assert endpoint["oauth2"]["clientSecret"] == {"name": "prom-client", "key": "secret"}
    opened = chart.render(*sets(VARIANTS["observability"] | {"metrics.auth": "false"}))
    for dep in by_kind(opened, "Deployment").values():
        assert env_of(dep)["ISTHMUS_METRICS_AUTH"]["value"] == "false"
    [sm] = by_kind(opened, "ServiceMonitor").values()
    assert "oauth2" not in sm["spec"]["endpoints"][0]


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "{repository}:{tag}"),
        ({"image.digest": "sha256:" + "a" * 64}, "{repository}@sha256:" + "a" * 64),
        ({"image.tag": "sha256:" + "b" * 64}, "{repository}@sha256:" + "b" * 64),
    ],
    ids=["tag", "digest-wins", "digest-as-tag"],
)
def test_image_reference(chart: Any, values: dict[str, Any], image: str) -> None:
    [dep] = by_kind(chart.render(*sets(values)), "Deployment").values()
    assert container(dep)["image"] == image.format(**chart_values()["image"])


SCHEMA_ERROR = "values don't meet the specifications of the schema"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"deploymentMode": "Sideways"}, "at '/deploymentMode': value must be one of"),
        ({"services.embedding.replicas": "-1"}, "at '/services/embedding/replicas': minimum: got -1"),
        ({"services.vectorizer.enabled": "true"}, "additional properties 'vectorizer' not allowed"),
        ({"deploymentMode": "Distributed"}, "at '/kafka/bootstrapServers': minLength"),
        ({"image.digest": "latest"}, "at '/image/digest'"),
        (
            {"services.retrieval.settings.HYBRID_ALFA": "0.5"},
            "additional properties 'HYBRID_ALFA' not allowed",
        ),
        ({"services.retrieval.settings.HYBRID_ALPHA": "2"}, "at '/services/retrieval/settings/HYBRID_ALPHA'"),
        ({"services.agent-orchestrator.settings.GENERATOR": "gpt"}, "GENERATOR': value must be one of"),
        ({"services.agent-orchestrator.settings.OPENAI_API_KEY": "sk-1"}, "'OPENAI_API_KEY' not allowed"),
        ({"services.agent-orchestrator.secrets.OPENAI_API_KEY": "sk-1"}, "OPENAI_API_KEY': got string"),
        ({"settings.BUS": "inprocess"}, "additional properties 'BUS' not allowed"),
        ({"persistence.size": "lots"}, "at '/persistence/size'"),
        ({"weaviate.apiKeySecretRef.existingSecret": "w"}, "at '/weaviate/apiKeySecretRef/key': minLength"),
        ({"kafka.securityProtocol": "TLS"}, "at '/kafka/securityProtocol': value must be one of"),
        ({"kafka.sasl.mechanism": "GSSAPI"}, "at '/kafka/sasl/mechanism': value must be one of"),
    ],
    ids=[
        "bad-mode",
        "negative-replicas",
        "unknown-service",
        "distributed-without-kafka",
        "bad-digest",
        "unknown-setting",
        "setting-out-of-range",
        "setting-not-in-enum",
        "secret-as-a-setting",
        "secret-as-a-value",
        "chart-owned-setting",
        "bad-quantity",
        "secret-ref-without-key",
        "kafka-unknown-protocol",
        "kafka-unsupported-mechanism",
    ],
)
def test_invalid_values_fail_at_render_with_the_schema_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = chart.template(*sets(values), check=False)
    assert r.returncode != 0
    assert SCHEMA_ERROR in r.stderr
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**DIST, "services.guardrail.replicas": "2"}, "services.guardrail keeps its state"),
        (
            {
                **DIST,
                "services.retrieval.autoscaling.enabled": "true",
                "services.retrieval.autoscaling.maxReplicas": "3",
            },
            "services.retrieval keeps its state",
        ),
        (
            {**DIST, "services.embedding.autoscaling.minReplicas": "9"},
            "minReplicas (9) must not exceed maxReplicas",
        ),
        (
            {"shutdown.terminationGracePeriodSeconds": "10"},
            "terminationGracePeriodSeconds (10) must be at least",
        ),
        ({**DIST, "services.retrieval.enabled": "false"}, "calls retrieval, which is disabled"),
        (
            {**DIST, "kafka.securityProtocol": "SASL_SSL"},
            "kafka.securityProtocol SASL_SSL needs kafka.sasl.mechanism",
        ),
        (
            {**DIST, "kafka.sasl.mechanism": "PLAIN"},
            "kafka.sasl.mechanism PLAIN needs kafka.securityProtocol SASL_SSL",
        ),
        (
            {**DIST, "kafka.securityProtocol": "SASL_SSL", "kafka.sasl.mechanism": "SCRAM-SHA-256"},
            "kafka.sasl.mechanism SCRAM-SHA-256 needs kafka.sasl.username and kafka.sasl.passwordSecretRef",
        ),
        (
            {**DIST, "kafka.securityProtocol": "SASL_SSL", "kafka.sasl.mechanism": "AWS_MSK_IAM"},
            "AWS_MSK_IAM needs region",
        ),
        (
            {
                **DIST,
                "kafka.securityProtocol": "SASL_PLAINTEXT",
                "kafka.sasl.mechanism": "AWS_MSK_IAM",
                "region": "eu-west-1",
            },
            "AWS_MSK_IAM needs kafka.securityProtocol SASL_SSL",
        ),
        (
            {**DIST, "kafka.tls.caSecretRef.existingSecret": "ca", "kafka.tls.caSecretRef.key": "ca.crt"},
            "kafka.tls.caSecretRef needs kafka.securityProtocol SSL or SASL_SSL, not PLAINTEXT",
        ),
    ],
    ids=[
        "stateful-replicas",
        "stateful-autoscaling",
        "hpa-min-over-max",
        "grace-too-short",
        "callee-disabled",
        "kafka-sasl-without-mechanism",
        "kafka-mechanism-without-sasl",
        "kafka-scram-without-credentials",
        "kafka-msk-iam-without-region",
        "kafka-msk-iam-without-tls",
        "kafka-ca-without-tls",
    ],
)
def test_what_the_schema_cannot_say_fails_at_render_with_a_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = chart.template(*sets(values), check=False)
    assert r.returncode != 0
    assert "execution error" in r.stderr and message in r.stderr, r.stderr


def test_the_values_terraform_passes_are_accepted(chart: Any, tmp_path: Path) -> None:
    """terraform/modules/region/isthmus.tf feeds these keys (see terraform/README.md)."""
    public = {"agent-orchestrator": 30051, "ingestion": 30052}
    values: dict[str, Any] = {
        "deploymentMode": "Distributed",
        "image": {"repository": "123.dkr.ecr.us-east-1.amazonaws.com/isthmus", "tag": "0.1.0"},
        "kafka": {
            "bootstrapServers": "b-1.msk:9098,b-2.msk:9098",
            "replicationFactor": 3,
            "securityProtocol": "SASL_SSL",
            "sasl": {"mechanism": "AWS_MSK_IAM"},
        },
        "region": "us-east-1",
        "services": {
            s: {
                "serviceAccount": {
                    "create": True,
                    "name": f"isthmus-{s}",
                    "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::1:role/{s}"},
                },
                **({"service": {"type": "NodePort", "nodePort": public[s]}} if s in public else {}),
            }
            for s in SERVICES
        },
        "backups": {"bucket": "isthmus-backups-use1"},
        # identity and access as isthmus.tf builds them (auth_service_client null: empty strings)
        "auth": {
            "mode": "oidc",
            "issuer": "https://auth.example.com/",
            "jwksUrl": "",
            "audience": "isthmus",
            "serviceClient": {"tokenUrl": "", "clientId": "", "clientSecretRef": {"name": "", "key": ""}},
        },
        "access": {
            "existingConfigMap": "",
            "bindings": [{"principal": "group:isthmus-ops", "role": "platform-admin"}],
            "tenants": {"acme": {"bindings": [{"principal": "acme-ingest-client", "role": "writer"}]}},
        },
    }
    docs = chart.render(*write_values(tmp_path, values))
    access = tomllib.loads(by_kind(docs, "ConfigMap")[name("access")]["data"]["access.toml"])
    assert access["tenants"]["acme"]["bindings"] == values["access"]["tenants"]["acme"]["bindings"]
    # with the operator's ConfigMap instead (access_existing_configmap)
    operator = {**values, "access": {"existingConfigMap": "isthmus-access", "bindings": [], "tenants": {}}}
    assert not by_kind(chart.render(*write_values(tmp_path, operator)), "ConfigMap")
    sas = by_kind(docs, "ServiceAccount")
    for s in SERVICES:
        assert sas[f"isthmus-{s}"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(f"/{s}")
        dep = by_kind(docs, "Deployment")[name(s)]
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == f"isthmus-{s}"
        env = env_of(dep)  # the role signs the MSK IAM tokens, for the region's cluster
        assert env["ISTHMUS_AUTH_ISSUER"]["value"] == "https://auth.example.com/"
        assert "ISTHMUS_AUTH_SERVICE_CLIENT_SECRET" not in env  # no service client given
        assert env["ISTHMUS_KAFKA_SASL_MECHANISM"]["value"] == "AWS_MSK_IAM"
        assert env["ISTHMUS_KAFKA_AWS_REGION"]["value"] == "us-east-1"
        assert dep["metadata"]["labels"]["isthmus.dev/region"] == "us-east-1"
        svc = by_kind(docs, "Service")[name(s)]
        if s in public:
            assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == public[s]
        else:
            assert svc["spec"]["type"] == "ClusterIP"
    # AllInOne: the one pod's Service takes agent-orchestrator's (the load balancer's target)
    values["deploymentMode"] = "AllInOne"
    values["services"] = {"agent-orchestrator": values["services"]["agent-orchestrator"]}
    docs = chart.render(*write_values(tmp_path, values))
    svc = by_kind(docs, "Service")[name("all")]
    assert (
        svc["spec"]["type"] == "NodePort"
        and svc["spec"]["ports"][0]["nodePort"] == public["agent-orchestrator"]
    )


# -- identity and access ------------------------------------------------------------------------------

ACCESS_VALUES: dict[str, Any] = {
    "access": {
        "bindings": [{"principal": "ops-admin", "role": "platform-admin"}],
        "tenants": {
            "acme": {
                "bindings": [
                    {"principal": "client-abc", "role": "writer"},
                    {"principal": "group:analysts", "role": "reader"},
                ],
                "quota": {
                    "requestsPerS": {"ask": 5, "search": 50, "ingest": 10},
                    "maxDocuments": 1000,
                    "maxBytes": 100_000_000,
                    "llmTokensPerDay": 200_000,
                },
            },
            "beta-2": {"bindings": [{"principal": "spiffe://corp/ns/a+b@x.org", "role": "auditor"}]},
            "gamma": {"quota": {"maxBytes": 5_000_000_000}},
        },
    }
}
QUOTA_KEYS = {
    "requestsPerS": "requests_per_s",
    "maxDocuments": "max_documents",
    "maxBytes": "max_bytes",
    "llmTokensPerDay": "llm_tokens_per_day",
}


def _expected_quota_replicas(mode: dict[str, Any], service: str) -> int:
    if not mode:
        return 1  # AllInOne: one pod
    cfg, auto = chart_values()["services"][service], autoscaling(service)
    return int(auto["maxReplicas"] if auto["enabled"] else max(1, cfg["replicas"]))


@pytest.mark.parametrize("values", list(VARIANTS.values()), ids=list(VARIANTS))
def test_every_rendered_pod_env_is_accepted_by_the_common_settings(
    chart: Any, values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pods listen on 0.0.0.0: CommonSettings refuses that without authentication, so every pod of
    every variant must come up with auth configured (the settings check is not weakened)."""
    for dep in by_kind(chart.render(*sets(values)), "Deployment").values():
        common = _load_common(env_of(dep), monkeypatch)
        assert common.grpc_host == "0.0.0.0"
        assert (common.auth, common.auth_issuer) == ("oidc", "https://idp.example.com/")
        assert str(common.access_file) == ACCESS_FILE


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_auth_values_reach_every_pod_and_load_into_the_settings(
    chart: Any, mode: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        **mode,
        **SERVICE_CLIENT,
        "auth.issuer": "https://hydra.auth:4444/",
        "auth.jwksUrl": "https://hydra.auth:4444/.well-known/jwks.json",
        "auth.audience": "isthmus-prod",
        "auth.algorithms[0]": "ES256",
        "auth.algorithms[1]": "RS256",
        "auth.groupsClaim": "roles",
    }
    docs = chart.render(*sets(values))
    deployments = by_kind(docs, "Deployment")
    assert deployments
    for dep_name, dep in deployments.items():
        env = env_of(dep)
        common = _load_common(env, monkeypatch)
        assert common.auth == "oidc"
        assert common.auth_issuer == "https://hydra.auth:4444/"
        assert common.auth_jwks_url == "https://hydra.auth:4444/.well-known/jwks.json"
        assert common.auth_audience == "isthmus-prod"
        assert common.auth_algorithms == ["ES256", "RS256"]
        assert common.auth_groups_claim == "roles"
        assert common.auth_service_token_url == SERVICE_CLIENT["auth.serviceClient.tokenUrl"]
        assert common.auth_service_client_id == "isthmus-platform"
        assert common.auth_service_client_secret.get_secret_value() == "from-a-secret"
        assert env["ISTHMUS_AUTH_SERVICE_CLIENT_SECRET"]["valueFrom"] == {
            "secretKeyRef": {"name": "idp-client", "key": "secret"}
        }
        # the access file: the ConfigMap's key, mounted read-only where ISTHMUS_ACCESS_FILE points
        pod = dep["spec"]["template"]["spec"]
        mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "access")
        assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees edits
        assert str(common.access_file) == mount["mountPath"] + "/access.toml"
        volume = next(v for v in pod["volumes"] if v["name"] == "access")
        assert volume["configMap"]["name"] == name("access")
        assert {"key": "access.toml", "path": "access.toml"} in volume["configMap"]["items"]
        # each pod allows its share of a tenant's request rate: the replicas that share it
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        expected = _expected_quota_replicas(mode, component)
        assert env["ISTHMUS_QUOTA_REPLICAS"]["value"] == str(expected), dep_name
        assert common.quota_replicas == expected
    assert set(by_kind(docs, "ConfigMap")) == {name("access")}


def test_quota_replicas_follow_the_replicas_and_the_autoscaler(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **DIST,
                "services.embedding.autoscaling.enabled": "false",
                "services.embedding.replicas": "3",
                "services.agent-orchestrator.autoscaling.maxReplicas": "7",
            }
        )
    )
    deps = by_kind(docs, "Deployment")
    assert env_of(deps[name("embedding")])["ISTHMUS_QUOTA_REPLICAS"]["value"] == "3"
    assert env_of(deps[name("agent-orchestrator")])["ISTHMUS_QUOTA_REPLICAS"]["value"] == "7"  # at most
    assert env_of(deps[name("ingestion")])["ISTHMUS_QUOTA_REPLICAS"]["value"] == "1"


def test_access_configmap_holds_the_bindings_and_quotas_in_the_access_file_format(
    chart: Any, tmp_path: Path
) -> None:
    docs = chart.render(*write_values(tmp_path, ACCESS_VALUES))
    cm = by_kind(docs, "ConfigMap")[name("access")]
    parsed = tomllib.loads(cm["data"]["access.toml"])
    access = ACCESS_VALUES["access"]
    expected = {
        "platform": {"bindings": access["bindings"]},
        "tenants": {
            tenant: {"bindings": cfg.get("bindings", [])}
            | ({"quota": {QUOTA_KEYS[k]: v for k, v in cfg["quota"].items()}} if "quota" in cfg else {})
            for tenant, cfg in access["tenants"].items()
        },
    }
    assert parsed == expected
    # what every pod does with it: the access file's own reader
    model = parse_access_file(cm["data"]["access.toml"])
    assert model.quota("acme") == AccessQuota(
        requests_per_s={"ask": 5, "search": 50, "ingest": 10},
        max_documents=1000,
        max_bytes=100_000_000,
        llm_tokens_per_day=200_000,
    )
    assert [(b.principal, b.role.value) for b in model.tenants["acme"].bindings] == [
        ("client-abc", "writer"),
        ("group:analysts", "reader"),
    ]
    assert [b.principal for b in model.platform.bindings] == ["ops-admin"]
    quota = parsed["tenants"]["gamma"]["quota"]["max_bytes"]
    assert isinstance(quota, int) and quota == 5_000_000_000  # not 5e+09
    # the default: no binding at all (nobody may call until bindings are given)
    default = by_kind(chart.render(), "ConfigMap")[name("access")]
    assert tomllib.loads(default["data"]["access.toml"]) == {"platform": {"bindings": []}}


def test_the_operators_configmap_replaces_the_rendered_one(chart: Any) -> None:
    docs = chart.render(*sets({**DIST, "access.existingConfigMap": "isthmus-access"}))
    assert not by_kind(docs, "ConfigMap")
    for dep in by_kind(docs, "Deployment").values():
        volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "access")
        assert volume["configMap"]["name"] == "isthmus-access"


def test_local_issuer_in_all_in_one(chart: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    [dep] = by_kind(chart.render(*sets({"auth.mode": "local"})), "Deployment").values()
    env = env_of(dep)
    assert "ISTHMUS_AUTH_ISSUER" not in env
    common = _load_common(env, monkeypatch)
    assert (common.auth, common.grpc_host) == ("local", "0.0.0.0")


def test_network_policies_let_pods_reach_the_identity_provider(chart: Any) -> None:
    docs = chart.render(
        *sets(
            {
                **DIST,
                **SERVICE_CLIENT,
                "auth.jwksUrl": "http://hydra.auth:4444/.well-known/jwks.json",
                "auth.networkPeers[0].ipBlock.cidr": "10.40.0.0/16",
            }
        )
    )
    for pol in by_kind(docs, "NetworkPolicy").values():
        [rule] = [r for r in pol["spec"]["egress"] if {p["port"] for p in r["ports"]} == {4444, 443}]
        assert rule["to"] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]


def test_the_schema_takes_the_principals_and_families_the_access_file_takes() -> None:
    defs = chart_schema()["definitions"]
    assert defs["bindings"]["items"]["properties"]["principal"]["pattern"] == PRINCIPAL_PATTERN
    assert sorted(defs["quota"]["properties"]["requestsPerS"]["propertyNames"]["enum"]) == sorted(FAMILIES)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth.mode": "off"}, "at '/auth/mode': value must be one of 'oidc', 'local'"),
        ({"access.bindings[0].principal": "p", "access.bindings[0].role": "service"}, "role': value must be"),
        ({"access.tenants.Acme.quota.maxBytes": "1"}, "'Acme' does not match pattern"),
        ({"access.tenants.acme.quota.requestsPerS.ask": "0"}, "requestsPerS/ask': minimum"),
        ({"access.tenants.acme.quota.requestsPerS.chat": "1"}, "invalid propertyName 'chat'"),
        (
            {"access.bindings[0].principal": "-x", "access.bindings[0].role": "reader"},
            "principal': '-x' does not",
        ),
        ({"auth.issuer": "idp.example.com"}, "at '/auth/issuer'"),
        ({"auth.algorithms[0]": "HS256"}, "at '/auth/algorithms/0'"),
    ],
    ids=[
        "auth-off",
        "service-role",
        "bad-tenant-id",
        "zero-rate",
        "unknown-family",
        "bad-principal",
        "issuer-not-a-url",
        "symmetric-alg",
    ],
)
def test_invalid_auth_values_fail_at_render_with_the_schema_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = chart.template(*sets(values), check=False)
    assert r.returncode != 0
    assert SCHEMA_ERROR in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**DIST, "auth.mode": "local"}, "auth.mode local signs tokens with a key in each pod"),
        (
            {"auth.serviceClient.tokenUrl": "https://idp.example.com/token"},
            "auth.serviceClient.tokenUrl needs auth.serviceClient.clientId and",
        ),
        (
            {"access.existingConfigMap": "isthmus-access", "access.bindings[0].principal": "x"}
            | {"access.bindings[0].role": "reader"},
            "access.existingConfigMap (isthmus-access) and access.bindings/access.tenants are exclusive",
        ),
    ],
    ids=["local-distributed", "service-client-without-secret", "configmap-and-bindings"],
)
def test_inconsistent_auth_values_fail_at_render_with_a_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = chart.template(*sets(values), check=False)
    assert r.returncode != 0
    assert "execution error" in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_the_default_oidc_mode_requires_the_issuer(chart: Any, mode: dict[str, Any]) -> None:
    r = chart.template(*sets(mode), check=False, base=False)
    assert r.returncode != 0
    assert "auth.issuer is required with auth.mode oidc" in r.stderr, r.stderr


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_every_pod_reads_its_model_bundle_from_its_pod_annotation(chart: Any, mode: dict[str, Any]) -> None:
    """An EdgeRollout annotates the pod template (isthmus.dev/model-bundle); the downward API hands it to
    the process as ISTHMUS_MODEL_BUNDLE ("" without the annotation: the bundled models). No bundles are
    mounted by default."""
    for dep in by_kind(chart.render(*sets(mode)), "Deployment").values():
        env = env_of(dep)
        assert env["ISTHMUS_MODEL_BUNDLE"]["valueFrom"] == BUNDLE_FIELD
        assert "ISTHMUS_MODEL_BUNDLES_DIR" not in env
        assert "model-bundles" not in {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize(
    ("values", "source"),
    [
        (
            {"modelBundles.existingClaim": "bundles"},
            {"persistentVolumeClaim": {"claimName": "bundles", "readOnly": True}},
        ),
        (
            {**DIST, "modelBundles.hostPath": "/var/lib/isthmus/bundles"},
            {"hostPath": {"path": "/var/lib/isthmus/bundles", "type": "Directory"}},
        ),
    ],
    ids=["claim", "host-path"],
)
def test_model_bundles_are_mounted_read_only_and_named_to_the_settings(
    chart: Any,
    values: dict[str, Any],
    source: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    deployments = by_kind(chart.render(*sets(values)), "Deployment").values()
    assert deployments
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "model-bundles"]
        assert {k: v for k, v in volume.items() if k != "name"} == source
        [mount] = [m for m in container(dep)["volumeMounts"] if m["name"] == "model-bundles"]
        assert mount == {"name": "model-bundles", "mountPath": "/models/bundles", "readOnly": True}
        env = env_of(dep)
        assert env["ISTHMUS_MODEL_BUNDLES_DIR"]["value"] == "/models/bundles"
    # the rendered env loads: a pod annotated with a bundle missing from the mount refuses to start,
    # naming the setting (the mount itself is not here: a bundle dir of the test's stands in for it)
    env = dict(env_of(next(iter(deployments))))
    env["ISTHMUS_MODEL_BUNDLES_DIR"] = {"value": str(tmp_path)}
    env["ISTHMUS_MODEL_BUNDLE"] = {"value": "edge-en@2"}
    from isthmus_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"model_bundle.*unknown bundle 'edge-en@2'"):
        _load_common(env, monkeypatch)
    (tmp_path / "edge-en" / "2").mkdir(parents=True)
    (tmp_path / "edge-en" / "2" / "bundle.json").write_text('{"name": "edge-en", "version": "2"}')
    assert _load_common(env, monkeypatch).model_bundle == "edge-en@2"


def test_model_bundles_take_one_source(chart: Any) -> None:
    r = chart.template(*sets({"modelBundles.existingClaim": "b", "modelBundles.hostPath": "/b"}), check=False)
    assert r.returncode != 0 and SCHEMA_ERROR in r.stderr, r.stderr
    r = chart.template(*sets({"modelBundles.hostPath": "relative/dir"}), check=False)
    assert r.returncode != 0 and SCHEMA_ERROR in r.stderr, r.stderr


# -- the web console (issue 20) -----------------------------------------------------------------------

CONSOLE_OFF = {"services.console.enabled": "false"}
#: what the console is given in the tests below: its Ingress, the namespace of the operator's objects
CONSOLE_INGRESS = {
    "console.ingress.enabled": "true",
    "console.ingress.className": "nginx",
    "console.ingress.host": "console.isthmus.example.com",
    "console.ingress.tls.secretName": "console-tls",
    "console.ingress.annotations.cert-manager\\.io/cluster-issuer": "letsencrypt",
}


def render_without_console_base(chart: Any, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``helm template`` with the console on but without base-values.yaml's OIDC client and URL (the
    schema refuses a null that would drop them)."""
    base = {"auth.issuer": "https://idp.example.com/", "services.console.enabled": "true"}
    r: subprocess.CompletedProcess[str] = chart.template(*sets({**base, **values}), check=False, base=False)
    return r


def docs_of(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def console_service_ports(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in by_kind(docs, "Service")[name(CONSOLE)]["spec"]["ports"]}


def test_the_console_is_off_by_default_and_then_leaves_no_trace(chart: Any) -> None:
    """values.yaml: off (with oidc it needs an OAuth2 client of its own). Off, nothing of it is rendered
    but ISTHMUS_CONSOLE_ENABLED=false on the AllInOne pod (its `--target all` would start it)."""
    assert chart_values()["services"][CONSOLE]["enabled"] is False
    assert chart_values()["console"]["ingress"]["enabled"] is False
    for mode in ({}, DIST):
        docs = chart.render(*sets({**mode, **CONSOLE_OFF}))
        assert name(CONSOLE) not in by_kind(docs, "Service") | by_kind(docs, "Deployment")
        assert not by_kind(docs, "Ingress") and not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
        for dep in by_kind(docs, "Deployment").values():
            c = container(dep)
            assert "http" not in {p["name"] for p in c["ports"]}
            assert "kube-api-access" not in {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
            env = env_of(dep)
            if mode:
                assert not [v for v in env if v.startswith("ISTHMUS_CONSOLE_")]
            else:
                assert env["ISTHMUS_CONSOLE_ENABLED"]["value"] == "false"
        for pol_name, pol in by_kind(docs, "NetworkPolicy").items():
            assert CONSOLE_PORT not in {p["port"] for r in pol["spec"]["ingress"] for p in r["ports"]}
            peers = [p for r in pol["spec"]["ingress"] for p in r["from"]]
            assert CONSOLE not in {
                p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                for p in peers
            }, pol_name


def test_the_all_in_one_pod_serves_the_console_behind_its_own_service(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = chart.render()
    [dep] = by_kind(docs, "Deployment").values()
    c = container(dep)
    assert c["args"] == ["--target", "all"]  # the console is one of the modules of `all`
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == CONSOLE_PORT
    # the pod's probes stay gRPC (every module's health); the console's Service follows its readiness
    assert c["readinessProbe"]["grpc"]["port"] == 50051
    svc = by_kind(docs, "Service")[name(CONSOLE)]
    assert svc["spec"]["selector"] == by_kind(docs, "Service")[name("all")]["spec"]["selector"]
    assert svc["spec"]["type"] == "ClusterIP"
    # only the web port: the pod's metrics are scraped through <release>-all (no double scrape)
    assert console_service_ports(docs) == {
        "http": {
            "name": "http",
            "port": CONSOLE_PORT,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        }
    }
    console = _load_console(env_of(dep), monkeypatch)
    assert (console.enabled, console.host, console.port) == (True, "0.0.0.0", CONSOLE_PORT)
    assert console.public_url == "https://console.example.com"
    assert console.oidc_client_id == "isthmus-console"
    assert not by_kind(docs, "Ingress")
    [pol] = by_kind(docs, "NetworkPolicy").values()
    web = [r for r in pol["spec"]["ingress"] if r["ports"] == [{"port": CONSOLE_PORT, "protocol": "TCP"}]]
    assert [r["from"] for r in web] == [[{"podSelector": {"matchLabels": {"isthmus.dev/client": "true"}}}]]
    # a NodePort for a load balancer
    exposed = chart.render(*sets({"console.service.type": "NodePort", "console.service.nodePort": "30088"}))
    port = console_service_ports(exposed)["http"]
    assert by_kind(exposed, "Service")[name(CONSOLE)]["spec"]["type"] == "NodePort"
    assert port["nodePort"] == 30088


def _load_console(env: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in [k for k in os.environ if k.startswith("ISTHMUS_")]:
        monkeypatch.delenv(key)
    for var, e in env.items():
        monkeypatch.setenv(var, env_value(e))
    return load_all([CommonSettings, settings_class(CONSOLE)])[CONSOLE]


def test_distributed_runs_the_console_as_its_own_deployment(
    chart: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "deploymentMode": "Distributed",
        "kafka": {"bootstrapServers": "kafka.data:9092"},
        "services": {
            CONSOLE: {
                "settings": {
                    "OIDC_SCOPES": '["openid", "offline_access", "email"]',
                    "REGION_ENDPOINTS": '{"eu-west-1": "isthmus.eu.example.com:443"}',
                },
                "secrets": {"OIDC_CLIENT_SECRET": {"existingSecret": "console-oidc", "key": "secret"}},
                "serviceAccount": {"name": "console-reader"},
            }
        },
    }
    docs = chart.render(*write_values(tmp_path, values))
    dep = by_kind(docs, "Deployment")[name(CONSOLE)]
    assert container(dep)["args"] == ["--target", CONSOLE]
    assert dep["spec"]["replicas"] == 1  # sessions live in the pod's memory
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert name(CONSOLE) not in by_kind(docs, "HorizontalPodAutoscaler")
    assert name(CONSOLE) in by_kind(docs, "PodDisruptionBudget")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "console-reader"
    assert "console-reader" in by_kind(docs, "ServiceAccount")
    svc = by_kind(docs, "Service")[name(CONSOLE)]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == CONSOLE
    ports = console_service_ports(docs)
    assert set(ports) == {"http", "metrics"}  # no gRPC: nothing calls the console
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (CONSOLE_PORT, "http")
    env = env_of(dep)
    assert env["ISTHMUS_CONSOLE_OIDC_CLIENT_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "console-oidc", "key": "secret"}
    }
    for other in GRPC_SERVICES:  # the secret only where it is read
        assert "ISTHMUS_CONSOLE_OIDC_CLIENT_SECRET" not in env_of(by_kind(docs, "Deployment")[name(other)])
    console = _load_console(env, monkeypatch)
    assert (console.enabled, console.host, console.port) == (True, "0.0.0.0", CONSOLE_PORT)
    assert console.oidc_scopes == ["openid", "offline_access", "email"]
    assert console.region_endpoints == {"eu-west-1": "isthmus.eu.example.com:443"}
    assert console.oidc_client_secret.get_secret_value() == "from-a-secret"
    common = _load_common(env, monkeypatch)
    assert set(common.endpoints) == CALLEES[CONSOLE] == set(GRPC_SERVICES)  # every one it calls


def _egress(pol: dict[str, Any]) -> list[tuple[frozenset[int], str]]:
    """(ports, to) of each egress rule; ``to``: the component a pod selector names, "dns", or the JSON of
    the peers ("" = any destination)."""
    out = []
    for rule in pol["spec"]["egress"]:
        ports = frozenset(p["port"] for p in rule["ports"])
        peers = rule.get("to", [])
        comps = {
            p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for p in peers
        }
        if ports == {53}:
            out.append((ports, "dns"))
        elif len(comps) == 1 and None not in comps:
            out.append((ports, str(comps.pop())))
        else:
            out.append((ports, json.dumps(peers, sort_keys=True) if peers else ""))
    return out


def test_the_console_network_policy_allows_what_it_needs_and_nothing_more(chart: Any, tmp_path: Path) -> None:
    kube_peer = {"ipBlock": {"cidr": "10.0.0.10/32"}}
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    values: dict[str, Any] = {
        "deploymentMode": "Distributed",
        "kafka": {"bootstrapServers": "kafka.data:9092"},
        "auth": {"jwksUrl": "https://keys.example.com:8443/jwks.json"},
        "ingress": {"allowedNamespaces": ["apps"], "cidrs": ["10.20.0.0/16"]},
        "console": {"ingress": {"controllerPeers": [controller]}, "kubeApi": {"networkPeers": [kube_peer]}},
        "services": {
            CONSOLE: {
                "settings": {
                    "KUBE_NAMESPACE": "ops",
                    "REGION_ENDPOINTS": '{"eu": "isthmus.eu.example.com:443", "us": "isthmus.us:50051"}',
                }
            }
        },
    }
    docs = chart.render(*write_values(tmp_path, values))
    pols = by_kind(docs, "NetworkPolicy")
    pol = pols[name(CONSOLE)]
    assert pol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # ingress: its web port from the clients and the Ingress controller, metrics from Prometheus; no gRPC
    ingress = {frozenset(p["port"] for p in r["ports"]): r["from"] for r in pol["spec"]["ingress"]}
    assert set(ingress) == {frozenset({CONSOLE_PORT}), frozenset({9464})}
    clients = [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps"]}
                ]
            },
            "podSelector": {"matchLabels": {"isthmus.dev/client": "true"}},
        },
        {"ipBlock": {"cidr": "10.20.0.0/16"}},
    ]
    assert ingress[frozenset({CONSOLE_PORT})] == [*clients, controller]
    # egress: DNS, gRPC to each service it calls, Kafka (the runtime's bus: audit records), the identity
    # provider (JWKS port, and the issuer's for logins), the Kubernetes API, the other regions
    kafka = frozenset(chart_values()["kafka"]["ports"])
    assert sorted(_egress(pol), key=str) == sorted(
        [
            (frozenset({53}), "dns"),
            *[(frozenset({50051}), s) for s in sorted(CALLEES[CONSOLE])],
            (kafka, ""),
            (frozenset({8443, 443}), ""),
            (frozenset({443, 6443}), json.dumps([kube_peer], sort_keys=True)),
            (frozenset({443, 50051}), ""),
        ],
        key=str,
    )
    # every service it calls lets it in on gRPC, and only those
    for s in GRPC_SERVICES:
        froms = {
            p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            for r in pols[name(s)]["spec"]["ingress"]
            for p in r["from"]
        }
        assert (CONSOLE in froms) == (s in CALLEES[CONSOLE]), s
    # no kube namespace, no region: neither rule; the other services get none of the console's rules
    plain = chart.render(*sets(DIST))
    assert sorted(_egress(by_kind(plain, "NetworkPolicy")[name(CONSOLE)]), key=str) == sorted(
        [
            (frozenset({53}), "dns"),
            *[(frozenset({50051}), s) for s in sorted(CALLEES[CONSOLE])],
            (kafka, ""),
            (frozenset({443}), ""),
        ],
        key=str,
    )
    for s in GRPC_SERVICES:
        rules = _egress(by_kind(docs, "NetworkPolicy")[name(s)])
        assert frozenset({443, 6443}) not in {ports for ports, _ in rules}, s
        assert CONSOLE_PORT not in {p["port"] for r in pols[name(s)]["spec"]["ingress"] for p in r["ports"]}


def test_the_all_in_one_policy_opens_the_console_port_and_its_kube_api(chart: Any) -> None:
    docs = chart.render(*sets({"services.console.settings.KUBE_NAMESPACE": "ops"}))
    [pol] = by_kind(docs, "NetworkPolicy").values()
    rules = _egress(pol)
    assert (frozenset({443, 6443}), "") in rules  # no peers given: any destination on those ports
    assert CONSOLE_PORT in {p["port"] for r in pol["spec"]["ingress"] for p in r["ports"]}
    assert (frozenset({443, 6443}), "") not in _egress(
        next(iter(by_kind(chart.render(), "NetworkPolicy").values()))
    )


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_the_console_ingress_targets_its_service_and_gives_the_login_its_url(
    chart: Any, mode: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes_validate

    # no PUBLIC_URL: the Ingress's host is the console's URL
    with_client = {**mode, **CONSOLE_INGRESS, "services.console.settings.OIDC_CLIENT_ID": "isthmus-console"}
    docs = docs_of(render_without_console_base(chart, with_client))
    [ing] = by_kind(docs, "Ingress").values()
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(ing, version, strict=True)
    spec = ing["spec"]
    assert ing["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["console.isthmus.example.com"], "secretName": "console-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "console.isthmus.example.com"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend == {"name": name(CONSOLE), "port": {"name": "http"}}
    assert "http" in console_service_ports(docs)
    dep = by_kind(docs, "Deployment")[name(CONSOLE if mode else "all")]
    console = _load_console(env_of(dep), monkeypatch)
    assert console.public_url == "https://console.isthmus.example.com"  # redirect URI: + /auth/callback
    docs = docs_of(render_without_console_base(chart, {**with_client, "console.ingress.tls.secretName": ""}))
    assert "tls" not in next(iter(by_kind(docs, "Ingress").values()))["spec"]
    env = env_of(by_kind(docs, "Deployment")[name(CONSOLE if mode else "all")])
    assert env["ISTHMUS_CONSOLE_PUBLIC_URL"]["value"] == "http://console.isthmus.example.com"
    # a PUBLIC_URL given wins (e.g. TLS ends at a load balancer in front of the Ingress)
    docs = chart.render(*sets({**mode, **CONSOLE_INGRESS}))
    env = env_of(by_kind(docs, "Deployment")[name(CONSOLE if mode else "all")])
    assert env["ISTHMUS_CONSOLE_PUBLIC_URL"]["value"] == "https://console.example.com"


@pytest.mark.parametrize("mode", [{}, DIST], ids=["all-in-one", "distributed"])
def test_the_console_reads_rollouts_and_drills_with_a_read_only_role(
    chart: Any, mode: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes_validate

    from isthmus_operator.names import DRILL_PLURAL, GROUP, ROLLOUT_PLURAL

    docs = chart.render(*sets({**mode, "services.console.settings.KUBE_NAMESPACE": "ops"}))
    component = CONSOLE if mode else "all"
    [role] = by_kind(docs, "Role").values()
    [binding] = by_kind(docs, "RoleBinding").values()
    for obj in (role, binding):
        assert obj["metadata"]["namespace"] == "ops"  # where the operator's objects are
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    assert role["rules"] == [
        {
            "apiGroups": [GROUP],
            "resources": [ROLLOUT_PLURAL, DRILL_PLURAL],
            "verbs": ["get", "list", "watch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    dep = by_kind(docs, "Deployment")[name(component)]
    pod = dep["spec"]["template"]["spec"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    # the API token: mounted where the in-cluster client looks, on this pod only; no automount anywhere
    assert pod["automountServiceAccountToken"] is False
    [mount] = [m for m in container(dep)["volumeMounts"] if m["name"] == "kube-api-access"]
    assert mount == {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    [volume] = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert {"key": "ca.crt", "path": "ca.crt"} in sources[1]["configMap"]["items"]
    for other_name, other in by_kind(docs, "Deployment").items():
        if other_name != name(component):
            assert "kube-api-access" not in {v["name"] for v in other["spec"]["template"]["spec"]["volumes"]}
    assert _load_console(env_of(dep), monkeypatch).kube_namespace == "ops"
    # without a namespace: no Role, no token
    docs = chart.render(*sets(mode))
    assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    pod = by_kind(docs, "Deployment")[name(component)]["spec"]["template"]["spec"]
    assert "kube-api-access" not in {v["name"] for v in pod["volumes"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"services.console.replicas": "2"}, "at '/services/console/replicas': maximum: got 2"),
        ({"services.console.settings.HOST": "0.0.0.0"}, "additional properties 'HOST' not allowed"),
        ({"services.console.settings.PORT": "9000"}, "additional properties 'PORT' not allowed"),
        ({"services.console.settings.KUBECONFIG": "/k"}, "additional properties 'KUBECONFIG' not allowed"),
        (
            {"services.console.settings.OIDC_CLIENT_SECRET": "s3cret"},
            "additional properties 'OIDC_CLIENT_SECRET' not allowed",
        ),
        ({"services.console.autoscaling.enabled": "true"}, "additional properties 'autoscaling' not allowed"),
        (
            {"services.console.settings.PUBLIC_URL": "console.example.com"},
            "at '/services/console/settings/PUBLIC_URL'",
        ),
        ({"services.console.settings.PUBLIC_URL": "https://c.example.com/"}, "PUBLIC_URL"),
        ({"services.console.settings.KUBE_NAMESPACE": "Ops_1"}, "KUBE_NAMESPACE"),
        ({"console.ingress.host": "https://console.example.com"}, "at '/console/ingress/host'"),
        ({"console.kubeApi.ports[0]": "0"}, "at '/console/kubeApi/ports/0'"),
    ],
    ids=[
        "two-replicas",
        "chart-owned-host",
        "chart-owned-port",
        "kubeconfig-not-offered",
        "secret-as-a-setting",
        "no-autoscaling",
        "public-url-not-a-url",
        "public-url-trailing-slash",
        "bad-namespace",
        "ingress-host-not-a-name",
        "bad-kube-api-port",
    ],
)
def test_invalid_console_values_fail_at_render_with_the_schema_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = chart.template(*sets(values), check=False)
    assert r.returncode != 0
    assert SCHEMA_ERROR in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"services.console.settings.PUBLIC_URL": "https://console.example.com"},
            "services.console with auth.mode oidc needs services.console.settings.OIDC_CLIENT_ID",
        ),
        (
            {"services.console.settings.OIDC_CLIENT_ID": "isthmus-console"},
            "services.console with auth.mode oidc needs its external URL",
        ),
        (
            {
                "services.console.settings.OIDC_CLIENT_ID": "isthmus-console",
                "services.console.settings.PUBLIC_URL": "https://console.example.com",
                "console.ingress.enabled": "true",
            },
            "console.ingress.enabled needs console.ingress.host",
        ),
        (
            {**CONSOLE_INGRESS, "services.console.enabled": "false"},
            "console.ingress.enabled needs services.console.enabled",
        ),
        (
            {
                **DIST,
                "services.evaluation.enabled": "false",
                "services.console.settings.OIDC_CLIENT_ID": "isthmus-console",
                "services.console.settings.PUBLIC_URL": "https://console.example.com",
            },
            "services.console is enabled and calls evaluation",
        ),
    ],
    ids=[
        "oidc-without-client",
        "oidc-without-url",
        "ingress-without-host",
        "ingress-without-console",
        "callee-off",
    ],
)
def test_inconsistent_console_values_fail_at_render_with_a_message(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    r = render_without_console_base(chart, values)
    assert r.returncode != 0
    assert "execution error" in r.stderr and message in r.stderr, r.stderr


def test_the_console_needs_no_client_with_the_local_issuer(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auth.mode local (AllInOne): a token from `isthmus auth token` is pasted at login; no OAuth2 client."""
    docs = docs_of(render_without_console_base(chart, {"auth.mode": "local"}))
    [dep] = by_kind(docs, "Deployment").values()
    console = _load_console(env_of(dep), monkeypatch)
    assert (console.enabled, console.oidc_client_id, console.public_url) == (True, "", "")
