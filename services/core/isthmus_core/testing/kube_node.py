"""The cluster tier's handle on a real single-node Kubernetes (``tests/infra/cluster.sh``): kubectl and helm
against its API server, the image built by ``tools/image.sh``, and the chart installed the way a user
installs it. Used by tests/cluster (fixtures in its conftest) and the cluster benchmark; no pytest here."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
CHARTS = ROOT / "charts"


class KubeError(RuntimeError):
    """A kubectl or helm command failed: the command and the tail of its output."""


@dataclass(frozen=True)
class KubeNode:
    """A running node: its admin kubeconfig, and the kubectl and helm binaries to drive it."""

    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path
    helm_home: Path

    # --- commands ------------------------------------------------------------------------------
    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> str:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.helm_home),
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and proc.returncode != 0:
            raise KubeError(
                f"{' '.join(argv[:6])}... exited {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}"
            )
        return proc.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
        return self.run([str(self.kubectl_bin), *args], input=input, timeout=timeout, check=check)

    def helm(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        return self.run([str(self.helm_bin), *args], timeout=timeout, check=check)

    def get(self, namespace: str, *what: str) -> dict[str, Any]:
        """``kubectl get ... -o json`` parsed."""
        out = self.kubectl("-n", namespace, "get", *what, "-o", "json")
        return json.loads(out)  # type: ignore[no-any-return]

    def apply(self, manifest: Mapping[str, Any] | str, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        self.kubectl(*(("-n", namespace) if namespace else ()), "apply", "-f", "-", input=text)

    # --- namespaces and releases -----------------------------------------------------------------
    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # the ServiceAccount admission plugin needs the namespace's default account before any pod
        deadline = time.monotonic() + 60
        while not self.kubectl(
            "-n", name, "get", "serviceaccount", "default", "--ignore-not-found", "-o", "name"
        ):
            if time.monotonic() > deadline:
                raise KubeError(f"namespace {name}: no default ServiceAccount after 60 s")
            time.sleep(0.5)

    def delete_namespace(self, name: str, *, timeout: float = 300) -> None:
        self.kubectl(
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--wait=true",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
            check=False,
        )

    def install(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any],
        *,
        chart: str = "isthmus",
        timeout_s: int = 600,
        upgrade: bool = False,
    ) -> None:
        """``helm upgrade --install --wait`` of a chart of this repository with these values (JSON-encoded, as
        ``--values`` would read them)."""
        values_file = self.helm_home / f"values-{namespace}-{release}.json"
        values_file.parent.mkdir(parents=True, exist_ok=True)
        values_file.write_text(json.dumps(values))
        self.helm(
            "upgrade",
            "--install",
            release,
            str(CHARTS / chart),
            "--namespace",
            namespace,
            "--values",
            str(values_file),
            "--wait",
            "--timeout",
            f"{timeout_s}s",
            timeout=timeout_s + 60,
        )

    def service_address(self, namespace: str, service: str, port_name: str = "grpc") -> str:
        """``clusterIP:port`` of a Service: reachable from this machine through kube-proxy, as from a pod."""
        svc = self.get(namespace, "service", service)
        ports = svc["spec"]["ports"]
        port = next((p["port"] for p in ports if p.get("name") == port_name), ports[0]["port"])
        return f"{svc['spec']['clusterIP']}:{port}"

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return list(self.get(namespace, "pods", "-l", selector)["items"])

    def exec(self, namespace: str, target: str, *argv: str, timeout: float = 120) -> str:
        """``kubectl exec`` a command in a pod (``deploy/<name>`` picks one of a Deployment's)."""
        return self.kubectl("-n", namespace, "exec", target, "--", *argv, timeout=timeout)

    def logs(self, namespace: str, target: str, *, previous: bool = False, tail: int = 200) -> str:
        args = ["-n", namespace, "logs", target, f"--tail={tail}", "--all-containers"]
        if previous:
            args.append("--previous")
        return self.kubectl(*args, check=False)


def isthmus_values(image: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Chart values for this node: the locally built image (never pulled: no registry here) and requests a
    two-core machine can schedule; ``overrides`` merged over them (nested dicts merged)."""
    repository, _, tag = image.rpartition(":")
    small = {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "3Gi"}}
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "persistence": {"size": "1Gi", "keep": False},
        "allInOne": {
            "resources": {
                "requests": {"cpu": "100m", "memory": "512Mi"},
                "limits": {"cpu": "2", "memory": "6Gi"},
            }
        },
        "services": {
            name: {"resources": small}
            for name in (
                "ingestion",
                "embedding",
                "retrieval",
                "guardrail",
                "agent-orchestrator",
                "evaluation",
            )
        },
    }
    return merge(values, overrides or {})


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
