"""The cluster tier: a real single-node Kubernetes (tests/infra/cluster.sh) running the image built from the
Dockerfile (tools/image.sh). The node is the one already running (`make cluster-up`), or started here once for
the session and stopped at its end. Without root, Go or the Debian packages the tier skips locally and fails
under CI=true (missing_tool)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus_core.testing.infra import missing_tool
from isthmus_core.testing.kube_node import KubeNode

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "tests" / "infra" / "cluster.sh"
TOOLS = ROOT / ".tools"


def _script(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def kube_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeNode]:
    if os.geteuid() != 0:
        missing_tool("the cluster tier runs a kubelet and containerd: it needs root")
    kube = TOOLS / "kube-node" / "bin"
    for tool, why in (
        (TOOLS / "bin" / "kube-apiserver", "tools/tools.d/kube-apiserver.sh"),
        (kube / "kubelet", "tools/tools.d/kube-node.sh"),
        (TOOLS / "bin" / "helm", "tools/tools.d/helm.sh"),
    ):
        if not tool.exists():
            missing_tool(f"{tool.name} is not built ({why}, run by make test-setup; needs Go)")
    for binary in ("containerd", "runc", "buildah", "debootstrap", "etcd"):
        if shutil.which(binary) is None:
            missing_tool(f"{binary} is not installed (tools/tools.d/kube-node.sh installs it with apt-get)")
    status = _script(str(CLUSTER_SH), "status", timeout=30)
    started = status.returncode != 0
    if started:
        up = _script(str(CLUSTER_SH), "up", timeout=600)
        if up.returncode != 0:
            pytest.fail(f"tests/infra/cluster.sh up failed: {up.stderr[-3000:]}", pytrace=False)
        kubeconfig = up.stdout.strip().splitlines()[-1]
    else:
        kubeconfig = status.stdout.strip()
    node = KubeNode(
        kubeconfig=Path(kubeconfig),
        kubectl_bin=kube / "kubectl",
        helm_bin=TOOLS / "bin" / "helm",
        helm_home=tmp_path_factory.mktemp("helm"),
    )
    try:
        yield node
    finally:
        if started:
            _script(str(CLUSTER_SH), "down", timeout=300)


@pytest.fixture(scope="session")
def isthmus_image(kube_node: KubeNode) -> str:
    """The image built from this checkout's Dockerfile (reused when the tree has not changed), imported
    into the node's containerd; its reference."""
    proc = _script(str(ROOT / "tools" / "image.sh"), timeout=2400)
    if proc.returncode != 0:
        pytest.fail(f"tools/image.sh failed: {proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def namespace(kube_node: KubeNode, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (with every release and volume in it)."""
    name = f"t-{request.node.name.lower().replace('_', '-')[:40].strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    kube_node.create_namespace(name)
    try:
        yield name
    finally:
        kube_node.delete_namespace(name)
