"""The operator chart's RBAC is enough, and no more: render it with helm, install its ServiceAccount and
(Cluster)Role into the real API server, and run the operator with that service account's token."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from isthmus_core.testing.infra import missing_tool
from isthmus_operator.kube import Kube, api_client
from isthmus_operator.reconcile import AccessConfig
from isthmus_operator.retrieval import InMemoryTenantRegistry
from isthmus_operator.specs import Binding

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "isthmus-operator"


def helm() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        missing_tool("helm is not installed: run tools/install-tools.sh (needs Go)")
    return found


def render(release_namespace: str, *sets: str) -> list[dict[str, Any]]:
    args = [helm(), "template", "ops", str(CHART), "--namespace", release_namespace]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_renders_a_least_privilege_single_replica_operator() -> None:
    docs = render("isthmus-system", "operator.retrievalEndpoint=retrieval.isthmus:50051")
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"}
    deploy = kinds["Deployment"]
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["isthmus-operator"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT"] == "retrieval.isthmus:50051"
    assert env["ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT"] == "isthmus-guardrail:50051"
    assert env["ISTHMUS_OPERATOR_NAMESPACE"] == ""
    assert env["ISTHMUS_OPERATOR_ACCESS_CONFIGMAP"] == "isthmus-access"
    assert json.loads(env["ISTHMUS_OPERATOR_ACCESS_PLATFORM_BINDINGS"]) == []
    assert not any(name.startswith("ISTHMUS_OPERATOR_AUTH_") for name in env)  # no client: no token
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # ready once kopf runs: `helm install --wait` returns with a working operator
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        deploy["spec"]["template"]["spec"]["serviceAccountName"]
        == kinds["ServiceAccount"]["metadata"]["name"]
    )
    verbs = {v for rule in kinds["ClusterRole"]["rules"] for v in rule["verbs"]}
    assert "*" not in verbs and not {"update", "deletecollection", "escalate", "bind"} & verbs
    assert not any("secrets" in rule["resources"] for rule in kinds["ClusterRole"]["rules"])


def test_regions_replace_the_single_retrieval_endpoint_and_drills_get_their_permissions() -> None:
    docs = render(
        "isthmus-system", "operator.regions.a=isthmus-a:50051", "operator.regions.b=isthmus-b:50051"
    )
    kinds = {d["kind"]: d for d in docs}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["ISTHMUS_OPERATOR_REGIONS"]) == {"a": "isthmus-a:50051", "b": "isthmus-b:50051"}
    assert "ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT" not in env, "the operator refuses both"
    assert "ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT" not in env, "each region serves its guardrail"
    assert env["ISTHMUS_OPERATOR_DRILL_INTERVAL_S"] == "1"
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in kinds["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules[("isthmus.dev", "failoverdrills")] == {"get", "list", "watch", "patch"}
    assert rules[("isthmus.dev", "failoverdrills/status")] == {"get", "patch"}
    assert rules[("apps", "statefulsets")] == {"list", "patch"}
    assert rules[("", "pods")] == {"list", "delete"}


def test_watch_namespace_turns_rbac_into_a_role() -> None:
    docs = render("isthmus-system", "operator.watchNamespace=tenants")
    roles = [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert {(d["kind"], d["metadata"]["namespace"]) for d in roles} == {
        ("Role", "tenants"),
        ("RoleBinding", "tenants"),
    }
    assert not [d for d in docs if d["kind"].startswith("Cluster")]


def _install(kube_api, docs: list[dict[str, Any]], release_namespace: str) -> str:
    """Create the chart's RBAC objects; return a kubeconfig path for its service account's token."""
    rbac = client.RbacAuthorizationV1Api(kube_api.api)
    for d in docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] == "ServiceAccount":
            kube_api.core.create_namespaced_service_account(ns, d)
            sa = d["metadata"]["name"]
        elif d["kind"] == "ClusterRole":
            rbac.create_cluster_role(d)
        elif d["kind"] == "ClusterRoleBinding":
            rbac.create_cluster_role_binding(d)
        elif d["kind"] == "Role":
            rbac.create_namespaced_role(ns, d)
        elif d["kind"] == "RoleBinding":
            rbac.create_namespaced_role_binding(ns, d)
    token = kube_api.core.create_namespaced_service_account_token(
        sa, release_namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = yaml.safe_load(kube_api.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    path = kube_api.kubeconfig.with_name(f"kubeconfig-{release_namespace}")
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_operator_works_with_only_the_charts_permissions(
    kube_api, namespace, run_operator, wait, mode
) -> None:
    release_ns = f"{namespace}-sys"
    kube_api.core.create_namespace({"metadata": {"name": release_ns}})
    sets = [f"fullnameOverride=ops-{mode}"]
    if mode == "namespaced":
        sets.append(f"operator.watchNamespace={namespace}")
    docs = [d for d in render(release_ns, *sets) if d["kind"] != "Deployment"]
    kubeconfig = _install(kube_api, docs, release_ns)
    restricted = Kube(api_client(kubeconfig))

    # more than the chart grants is refused: reading Secrets, deleting workloads
    sa_api = api_client(kubeconfig)
    with pytest.raises(client.ApiException) as info:
        client.CoreV1Api(sa_api).list_namespaced_secret(namespace)
    assert info.value.status == 403
    kube_api.create_daemonset(namespace, "edge-rbac-a", {"isthmus.dev/edge-pool": "rbac"})
    with pytest.raises(client.ApiException) as info:
        client.AppsV1Api(sa_api).delete_namespaced_daemon_set("edge-rbac-a", namespace)
    assert info.value.status == 403

    registry = InMemoryTenantRegistry()
    args = ["run", "--standalone", "-A"] if mode == "cluster" else ["run", "--standalone", "-n", namespace]
    kube_api.put_configmap(
        namespace,
        "isthmus-rollout-metrics-rbac",
        {k: json.dumps({"ndcg_at_10": 0.5}) for k in ("baseline", "wave-1")},
    )
    access = AccessConfig("isthmus-access", (Binding(principal="ops", role="platform-admin"),))
    with run_operator(registry, kube=restricted, args=args, access=access):
        kube_api.create(
            "tenants",
            namespace,
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "Tenant",
                "metadata": {"name": "rbac"},
                "spec": {
                    "primaryRegion": "eu-west",
                    "quotas": {"requestsPerSecond": 1, "tokensPerDay": 1, "storage": "1Gi"},
                    "modelBundle": {"name": "bge", "version": "1"},
                    "access": {"bindings": [{"principal": "client-rbac", "role": "writer"}]},
                },
            },
        )
        kube_api.create(
            "edgerollouts",
            namespace,
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "EdgeRollout",
                "metadata": {"name": "rbac"},
                "spec": {
                    "bundle": {"name": "bge", "version": "2"},
                    "nodePool": {"matchLabels": {"isthmus.dev/edge-pool": "rbac"}},
                    "waves": [100],
                    "gates": {"maxNdcgDrop": 0.01},
                },
            },
        )
        wait(lambda: kube_api.status("tenants", namespace, "rbac").get("phase") == "Ready", "Tenant Ready")
        assert kube_api.configmap(namespace, "isthmus-tenant-rbac") is not None
        # the access file: every Tenant listed, the ConfigMap applied, with the chart's permissions
        wait(
            lambda: (
                "client-rbac"
                in ((kube_api.configmap(namespace, "isthmus-access") or {}).get("data") or {}).get(
                    "access.toml", ""
                )
            ),
            "the access file with the Tenant's binding",
        )
        wait(
            lambda: kube_api.status("edgerollouts", namespace, "rbac").get("phase") == "Succeeded",
            "rollout done",
        )
        annotations = kube_api.daemonset(namespace, "edge-rbac-a")["metadata"]["annotations"]
        assert annotations["isthmus.dev/model-bundle"] == "bge@2"

        def posted() -> list[str]:
            messages = [
                (e.reason or "", e.message or "")
                for e in kube_api.core.list_namespaced_event(namespace).items
            ]
            return [
                m for r, m in messages if "put bge@2 on DaemonSets edge-rbac-a" in m and "BundleApplied" in r
            ]

        wait(posted, "the operator's event about the patched DaemonSet")

        kube_api.delete("tenants", namespace, "rbac")
        wait(lambda: kube_api.get("tenants", namespace, "rbac") is None, "Tenant deleted")
        assert kube_api.configmap(namespace, "isthmus-tenant-rbac") is None
        assert registry.tenants == set()
        kube_api.delete("edgerollouts", namespace, "rbac")

        # FailoverDrills: scale a region's Deployments/StatefulSets down and back, move a Tenant's primary,
        # delete a broker pod
        _drills_with_the_charts_permissions(kube_api, namespace, wait)


def _drills_with_the_charts_permissions(kube_api, namespace: str, wait) -> None:
    region = {"isthmus.dev/region": "eu-west"}
    broker = {**region, "isthmus.dev/component": "kafka"}
    kube_api.create_scalable(namespace, "Deployment", "eu-platform", region, 2)
    kube_api.create_scalable(namespace, "StatefulSet", "eu-kafka", broker, 3)
    kube_api.create_pod(namespace, "eu-kafka-0", broker)
    tenant_name = f"rbac-drill-{namespace[-6:]}"
    kube_api.create(
        "tenants",
        namespace,
        {
            "apiVersion": "isthmus.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": tenant_name},
            "spec": {
                "primaryRegion": "eu-west",
                "replicaRegions": ["us-east"],
                "quotas": {"requestsPerSecond": 1, "tokensPerDay": 1, "storage": "1Gi"},
                "modelBundle": {"name": "bge", "version": "1"},
            },
        },
    )
    for name, scenario in (("rbac-loss", "region-loss"), ("rbac-broker", "broker-loss")):
        kube_api.create(
            "failoverdrills",
            namespace,
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "FailoverDrill",
                "metadata": {"name": name},
                "spec": {
                    "scenario": scenario,
                    "tenants": [tenant_name],
                    "regions": {"primary": "eu-west", "secondary": "us-east"},
                    "objectives": {"rpoMaxSeconds": 60, "rtoMaxSeconds": 60},
                    "regionWorkloads": {"eu-west": {"matchLabels": region}},
                    "pace": 0.02,
                },
            },
        )
        done = wait(
            lambda name=name: (
                (s := kube_api.status("failoverdrills", namespace, name)).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            f"drill {name} done",
        )
        assert done["phase"] == "Succeeded", done["message"]
    loss = kube_api.status("failoverdrills", namespace, "rbac-loss")
    assert (
        "scaled to 0 (isthmus.dev/region=eu-west): Deployment eu-platform → 0, StatefulSet eu-kafka → 0"
        in [e["detail"] for e in loss["timeline"]]
    )
    assert kube_api.replicas(namespace) == {"eu-platform": (2, {}), "eu-kafka": (3, {})}
    assert kube_api.get("tenants", namespace, tenant_name)["spec"]["primaryRegion"] == "us-east"
    assert [p.metadata.name for p in kube_api.core.list_namespaced_pod(namespace).items] == []
    for name in ("rbac-loss", "rbac-broker"):
        kube_api.delete("failoverdrills", namespace, name)
    kube_api.delete("tenants", namespace, tenant_name)
    wait(lambda: kube_api.get("tenants", namespace, tenant_name) is None, "drill Tenant deleted")
    wait(lambda: kube_api.get("failoverdrills", namespace, "rbac-broker") is None, "drill deleted")


def test_platform_bindings_reach_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from isthmus_core.settings import load_all
    from isthmus_operator.settings import OperatorSettings

    docs = render(
        "isthmus-system",
        "operator.access.platformBindings[0].principal=ops-admin",
        "operator.access.platformBindings[0].role=platform-admin",
        "operator.access.configMapName=access-prod",
    )
    [deploy] = [d for d in docs if d["kind"] == "Deployment"]
    for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]:
        monkeypatch.setenv(e["name"], e["value"])
    settings = load_all([OperatorSettings])["operator"]
    assert isinstance(settings, OperatorSettings)
    assert settings.access_configmap == "access-prod"
    assert settings.access_platform_bindings == [Binding(principal="ops-admin", role="platform-admin")]


def test_the_operator_gets_its_own_client_credentials_for_an_authenticated_platform() -> None:
    """With auth on, retrieval refuses CreateTenant without a platform-admin token: the operator's
    client id and secret (from a Secret) reach its settings, which build a client-credentials source."""
    from isthmus_core.auth.outbound import ClientCredentialsToken
    from isthmus_operator.settings import OperatorSettings, operator_tokens

    docs = render(
        "isthmus-system",
        "operator.auth.tokenUrl=https://idp.example/oauth2/token",
        "operator.auth.clientId=isthmus-operator",
        "operator.auth.clientSecretRef.name=operator-client",
    )
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ISTHMUS_OPERATOR_AUTH_TOKEN_URL"]["value"] == "https://idp.example/oauth2/token"
    assert env["ISTHMUS_OPERATOR_AUTH_CLIENT_ID"]["value"] == "isthmus-operator"
    assert env["ISTHMUS_OPERATOR_AUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "operator-client",
        "key": "client-secret",
    }
    settings = OperatorSettings(
        auth_token_url=env["ISTHMUS_OPERATOR_AUTH_TOKEN_URL"]["value"],
        auth_client_id=env["ISTHMUS_OPERATOR_AUTH_CLIENT_ID"]["value"],
        auth_client_secret="s3cret",
        rollout_metrics="configmap",
    )
    assert isinstance(operator_tokens(settings), ClientCredentialsToken)
    assert operator_tokens(OperatorSettings(rollout_metrics="configmap")) is None
    with pytest.raises(subprocess.CalledProcessError):  # a token URL without the client is refused
        render("isthmus-system", "operator.auth.tokenUrl=https://idp.example/oauth2/token")


def test_rollout_metrics_reach_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """By default the gates read the evaluation service of the release's namespace; configmap needs no
    endpoint; evaluation without one is refused at start, naming the setting."""
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import load_all
    from isthmus_operator.settings import OperatorSettings

    def settings_of(*values: str) -> OperatorSettings:
        [deploy] = [d for d in render("isthmus-system", *values) if d["kind"] == "Deployment"]
        for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]:
            monkeypatch.setenv(e["name"], e["value"])
        settings = load_all([OperatorSettings])["operator"]
        assert isinstance(settings, OperatorSettings)
        return settings

    default = settings_of()
    assert (default.rollout_metrics, default.evaluation_endpoint) == (
        "evaluation",
        "isthmus-evaluation:50051",
    )
    assert (default.evaluation_min_samples, default.evaluation_baseline_window_s) == (20, 86400.0)
    tuned = settings_of(
        "operator.rolloutMetrics.minSamples=50", "operator.rolloutMetrics.baselineWindowSeconds=3600"
    )
    assert (tuned.evaluation_min_samples, tuned.evaluation_baseline_window_s) == (50, 3600.0)
    by_hand = settings_of(
        "operator.rolloutMetrics.source=configmap", "operator.rolloutMetrics.evaluationEndpoint="
    )
    assert by_hand.rollout_metrics == "configmap"
    with pytest.raises(ConfigurationError, match="evaluation_endpoint is empty"):
        settings_of("operator.rolloutMetrics.evaluationEndpoint=")
