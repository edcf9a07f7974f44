"""The operator in-cluster: the isthmus-operator chart installed with `helm install --wait` on the real node
(same image, `isthmus-operator` entry point, its own ServiceAccount and least-privilege RBAC), reconciling a
Tenant (its ConfigMap, the namespace's access file, status, the finalizer on delete) and an EdgeRollout
against an edge pool of real DaemonSets whose pods — kubelet-started embedding services of the same image,
the bundles on a hostPath directory of the node — restart on the new model bundle wave by wave and then
serve it (EmbeddingService.GetModel names the bundle and its model directory)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.testing.kube_node import KubeNode

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "isthmus-operator" / "crds"
RELEASE = "isthmus-operator"
POOL = {"isthmus.dev/edge-pool": "edge-eu"}
EDGE = ("edge-eu-a", "edge-eu-b")
BUNDLE = "edge-en"
OLD, NEW = "2026.12.1", "2026.12.2"
#: the platform admin of the access file the operator renders (operator.access.platformBindings)
PROBER = "ops-admin"
GOOD = {"ndcg_at_10": 0.52, "faithfulness": 0.91}
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 120.0, every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


@contextlib.contextmanager
def diagnosed(kube_node: KubeNode, system: str, edge: str) -> Iterator[None]:
    """On a failure, print what the namespaces show (pods, events, the operator's log) for the report."""
    try:
        yield
    except BaseException:
        for ns in (system, edge):
            print(
                kube_node.kubectl(
                    "-n", ns, "get", "pods,daemonsets,tenants,edgerollouts", "-o", "wide", check=False
                )
            )
            print(
                kube_node.kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False)[-4000:]
            )
        print(kube_node.logs(system, f"deploy/{RELEASE}", tail=200))
        raise


@pytest.fixture
def namespaces(kube_node: KubeNode) -> Iterator[tuple[str, str]]:
    """(the operator's namespace, the watched namespace holding the Tenants and the edge pool)."""
    suffix = uuid.uuid4().hex[:6]
    system, edge = f"op-system-{suffix}", f"op-edge-{suffix}"
    kube_node.create_namespace(system)
    kube_node.create_namespace(edge)
    try:
        yield system, edge
    finally:
        # the watched namespace first, while the operator runs: it releases its finalizers; then the
        # release (its Role and RoleBinding), then its namespace
        kube_node.delete_namespace(edge, timeout=120)
        if kube_node.kubectl("get", "namespace", edge, "--ignore-not-found", "-o", "name", check=False):
            # the operator did not release them (the test failed with it down): do not leave the node a
            # namespace stuck in Terminating
            for kind in ("tenants", "edgerollouts", "failoverdrills"):
                for obj in kube_node.kubectl("-n", edge, "get", kind, "-o", "name", check=False).split():
                    kube_node.kubectl(
                        "-n",
                        edge,
                        "patch",
                        obj,
                        "--type=merge",
                        "-p",
                        '{"metadata":{"finalizers":null}}',
                        check=False,
                    )
        kube_node.helm("uninstall", RELEASE, "--namespace", system, "--wait", timeout=180, check=False)
        kube_node.delete_namespace(system)


@pytest.fixture
def bundles_dir() -> Iterator[Path]:
    """Two versions of bundle edge-en on this machine (the node): a hostPath directory readable by the pods'
    non-root user, each version's embedding model the bundled bge-small (hard links, no copy)."""
    root = Path(tempfile.mkdtemp(prefix="op-bundles-", dir="/tmp"))
    model = bundled_model_dir(BGE_SMALL_EN)
    for version in (OLD, NEW):
        target = root / BUNDLE / version / "embedding"
        target.mkdir(parents=True)
        for name in ("model.onnx", "tokenizer.json"):
            try:
                os.link(model / name, target / name)
            except OSError:
                shutil.copyfile(model / name, target / name)
        manifest = {"name": BUNDLE, "version": version, "embedding": {"model_dir": "embedding"}}
        (root / BUNDLE / version / "bundle.json").write_text(json.dumps(manifest))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def edge_daemonset(name: str, image: str, bundles: Path, bundle: str) -> dict[str, Any]:
    """One edge node group: the embedding service of the image (auth local: the pod's own development
    issuer, the callers bound in the access file the operator renders from the Tenants), serving
    the bundle its pod annotation names (ISTHMUS_MODEL_BUNDLE through the downward API, as the isthmus chart
    does), the bundles mounted read-only from the node."""
    repository, _, tag = image.rpartition(":")
    annotations = {"isthmus.dev/model-bundle": bundle}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "labels": POOL, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name, **POOL}, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "embedding",
                            "image": f"{repository}:{tag}",
                            "imagePullPolicy": "Never",
                            "args": ["--target", "embedding"],
                            "env": [
                                {"name": "ISTHMUS_GRPC_HOST", "value": "0.0.0.0"},
                                {"name": "ISTHMUS_BUS", "value": "inprocess"},
                                # the pod's development issuer; who may call: the operator's access file
                                {"name": "ISTHMUS_AUTH", "value": "local"},
                                {"name": "ISTHMUS_ACCESS_FILE", "value": "/etc/isthmus/access/access.toml"},
                                {"name": "ISTHMUS_EMBEDDING_INTRA_OP_THREADS", "value": "1"},
                                {"name": "ISTHMUS_SHUTDOWN_DRAIN_DELAY_S", "value": "0"},
                                {
                                    "name": "ISTHMUS_MODEL_BUNDLE",
                                    "valueFrom": {
                                        "fieldRef": {
                                            "fieldPath": "metadata.annotations['isthmus.dev/model-bundle']"
                                        }
                                    },
                                },
                                {"name": "ISTHMUS_MODEL_BUNDLES_DIR", "value": "/models/bundles"},
                            ],
                            "ports": [{"name": "grpc", "containerPort": 50051}],
                            "readinessProbe": {"grpc": {"port": 50051}, "periodSeconds": 2},
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "bundles", "mountPath": "/models/bundles", "readOnly": True},
                                {"name": "access", "mountPath": "/etc/isthmus/access", "readOnly": True},
                                {"name": "data", "mountPath": "/data"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "bundles", "hostPath": {"path": str(bundles), "type": "Directory"}},
                        {
                            "name": "access",
                            "configMap": {
                                "name": "isthmus-access",
                                "items": [{"key": "access.toml", "path": "access.toml"}],
                            },
                        },
                        {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def operator_values(image: str, watched: str) -> dict[str, Any]:
    repository, _, tag = image.rpartition(":")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {
            # no platform release here: vector-store tenants and guardrail policies are not managed
            "retrievalEndpoint": "",
            "guardrailEndpoint": "",
            "rolloutIntervalSeconds": 2,
            "retryDelaySeconds": 2,
            "rolloutMetrics": {"source": "configmap"},
            "watchNamespace": watched,
            "access": {"platformBindings": [{"principal": PROBER, "role": "platform-admin"}]},
        },
    }


class Edge:
    """The edge pool as the test sees it: each DaemonSet's one pod, and what that pod serves."""

    def __init__(self, kube_node: KubeNode, namespace: str) -> None:
        self.kube, self.ns = kube_node, namespace
        self._tokens: dict[str, str] = {}

    def pod(self, name: str) -> dict[str, Any] | None:
        """The DaemonSet's pod when there is exactly one, Ready and not terminating."""
        pods = self.kube.pods(self.ns, f"app={name}")
        if len(pods) != 1 or pods[0]["metadata"].get("deletionTimestamp"):
            return None
        conditions = {c["type"]: c["status"] for c in pods[0]["status"].get("conditions") or []}
        return pods[0] if conditions.get("Ready") == "True" else None

    def served(self, name: str) -> tuple[str, str, str] | None:
        """(pod uid, the bundle GetModel reports, its model directory) of the DaemonSet's ready pod, asked
        as the platform admin of the operator's access file (a token of the pod's own issuer)."""
        pod = self.pod(name)
        if pod is None:
            return None
        uid, pod_name = str(pod["metadata"]["uid"]), pod["metadata"]["name"]
        if uid not in self._tokens:
            self._tokens[uid] = self.kube.exec(
                self.ns, pod_name, "isthmus", "auth", "token", "--subject", PROBER
            ).strip()
        with grpc.insecure_channel(f"{pod['status']['podIP']}:50051") as channel:
            info = embedding_pb2_grpc.EmbeddingServiceStub(channel).GetModel(
                embedding_pb2.GetModelRequest(),
                timeout=10,
                metadata=[("authorization", f"Bearer {self._tokens[uid]}")],
            )
        return uid, info.model_bundle, info.model_dir

    def restarted_on(self, name: str, bundle: str, before: str) -> tuple[str, str, str] | None:
        """What the DaemonSet serves once a new pod (not ``before``) is ready and serves ``bundle``."""
        now = self.served(name)
        return now if now is not None and now[0] != before and now[1] == bundle else None


def test_operator_in_cluster_reconciles_a_tenant_and_rolls_a_bundle_out_to_restarting_pods(
    kube_node: KubeNode, isthmus_image: str, namespaces: tuple[str, str], bundles_dir: Path
) -> None:
    system, edge = namespaces
    with diagnosed(kube_node, system, edge):
        # the CRDs as this checkout has them (helm installs crds/ only when absent, and never upgrades them)
        kube_node.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        kube_node.install(
            RELEASE, system, operator_values(isthmus_image, edge), chart="isthmus-operator", timeout_s=180
        )
        account = f"system:serviceaccount:{system}:{RELEASE}"

        # least privilege, as the API server's authorizer answers for the operator's ServiceAccount
        def can(*args: str) -> bool:
            return kube_node.kubectl("auth", "can-i", "--as", account, *args, check=False).strip() == "yes"

        assert can("patch", "daemonsets", "-n", edge) and can(
            "patch", "edgerollouts.isthmus.dev/status", "-n", edge
        )
        assert not can("patch", "daemonsets", "-n", system), (
            "namespaced: nothing outside the watched namespace"
        )
        assert not can("get", "secrets", "-n", edge) and not can("list", "nodes")
        assert not can("update", "daemonsets", "-n", edge) and not can("create", "pods", "-n", edge)

        # -- a Tenant: its ConfigMap, the namespace's access file, its status -------------------------------
        tenant = {
            "apiVersion": "isthmus.dev/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {
                "primaryRegion": "eu-west",
                "modelBundle": {"name": BUNDLE, "version": OLD},
                "access": {"bindings": [{"principal": "alice", "role": "tenant-admin"}]},
            },
        }
        kube_node.apply(tenant, edge)
        status = wait_for(
            lambda: (
                (s := kube_node.get(edge, "tenant", "acme").get("status") or {}).get("phase") == "Ready" and s
            ),
            "Tenant acme Ready",
        )
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["ConfigReady"]["status"] == "True"
        assert conditions["VectorStoreReady"]["reason"] == "NotManaged"
        settings = json.loads(kube_node.get(edge, "configmap", "isthmus-tenant-acme")["data"]["tenant.json"])
        assert settings["tenantId"] == "acme" and settings["modelBundle"] == {"name": BUNDLE, "version": OLD}
        access = wait_for(
            lambda: (
                "alice" in (t := kube_node.get(edge, "configmap", "isthmus-access")["data"]["access.toml"])
                and t
            ),
            "the access file with acme's bindings",
        )
        assert '[tenants."acme"]' in access and PROBER in access
        printed = kube_node.kubectl("-n", edge, "get", "tenants")
        assert "acme" in printed and "Ready" in printed

        # -- the edge pool on the old bundle, its pods authorising callers with the operator's access file --
        for name in EDGE:
            kube_node.apply(edge_daemonset(name, isthmus_image, bundles_dir, f"{BUNDLE}@{OLD}"), edge)
        pool = Edge(kube_node, edge)
        old = {name: wait_for(lambda n=name: pool.served(n), f"{name} serving", timeout=180) for name in EDGE}
        for name in EDGE:
            assert old[name][1] == f"{BUNDLE}@{OLD}" and old[name][2].endswith(f"/{BUNDLE}/{OLD}/embedding")

        # -- an EdgeRollout: wave 1 restarts one node group's pod on the new bundle, wave 2 the other -------
        kube_node.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "isthmus-rollout-metrics-to-new"},
                "data": {"baseline": json.dumps(GOOD)},
            },
            edge,
        )
        kube_node.apply(
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "EdgeRollout",
                "metadata": {"name": "to-new"},
                "spec": {
                    "bundle": {"name": BUNDLE, "version": NEW},
                    "nodePool": {"matchLabels": POOL},
                    "waves": [50, 100],
                    "gates": {"maxNdcgDrop": 0.02, "maxFaithfulnessDrop": 0.03},
                },
            },
            edge,
        )
        first, second = EDGE
        new = f"{BUNDLE}@{NEW}"
        wave1 = wait_for(lambda: pool.restarted_on(first, new, old[first][0]), f"{first}'s pod on {new}")
        assert wave1[2].endswith(f"/{BUNDLE}/{NEW}/embedding")
        rollout = kube_node.get(edge, "edgerollout", "to-new")["status"]
        assert rollout["phase"] == "Progressing" and rollout["currentWave"] == 1
        assert rollout["baseline"] == {n: f"{BUNDLE}@{OLD}" for n in EDGE}
        # the other node group is untouched while wave 1 waits for its metrics
        assert pool.served(second) == old[second]

        patch = {"data": {"wave-1": json.dumps(GOOD)}}
        kube_node.kubectl(
            "-n", edge, "patch", "configmap", "isthmus-rollout-metrics-to-new", "-p", json.dumps(patch)
        )
        wave2 = wait_for(lambda: pool.restarted_on(second, new, old[second][0]), f"{second}'s pod on {new}")
        assert wave2[2].endswith(f"/{BUNDLE}/{NEW}/embedding")
        assert pool.served(first) == wave1, "wave 2 leaves wave 1's pod alone"

        patch = {"data": {"wave-2": json.dumps({"ndcg_at_10": 0.515, "faithfulness": 0.9})}}
        kube_node.kubectl(
            "-n", edge, "patch", "configmap", "isthmus-rollout-metrics-to-new", "-p", json.dumps(patch)
        )
        done = wait_for(
            lambda: (
                (s := kube_node.get(edge, "edgerollout", "to-new").get("status") or {}).get("phase")
                == "Succeeded"
                and s
            ),
            "EdgeRollout to-new Succeeded",
        )
        assert [w["state"] for w in done["waves"]] == ["Passed", "Passed"]
        printed = kube_node.kubectl("-n", edge, "get", "edgerollouts")
        assert "to-new" in printed and "Succeeded" in printed
        events = kube_node.kubectl(
            "-n", edge, "get", "events", "--field-selector", "involvedObject.name=to-new", "-o", "json"
        )
        reasons = {e["reason"] for e in json.loads(events)["items"]}
        assert {"BundleApplied", "Succeeded"} <= reasons
        # finished, it holds no finalizer: deletable even once the operator is uninstalled
        wait_for(
            lambda: not kube_node.get(edge, "edgerollout", "to-new")["metadata"].get("finalizers"),
            "the finished rollout's finalizer released",
            timeout=30,
        )

        # -- the Tenant deleted: the finalizer removes its ConfigMap and its bindings from the access file --
        kube_node.kubectl("-n", edge, "delete", "tenant", "acme", "--wait=true", "--timeout=60s", timeout=90)
        assert not kube_node.kubectl(
            "-n", edge, "get", "configmap", "isthmus-tenant-acme", "--ignore-not-found"
        )
        access = kube_node.get(edge, "configmap", "isthmus-access")["data"]["access.toml"]
        assert "alice" not in access and PROBER in access

        # the operator never hit a permission it lacks
        logs = kube_node.logs(system, f"deploy/{RELEASE}", tail=2000)
        assert "403" not in logs and "Forbidden" not in logs, logs[-3000:]
