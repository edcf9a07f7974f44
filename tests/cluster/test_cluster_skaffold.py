"""skaffold.yaml deployed for real: `skaffold deploy -p all-in-one` with the image `make image` built handed
over as a finished build (`--build-artifacts`; skaffold's own build needs a Docker daemon, absent here). The
release lands in the namespace skaffold.yaml names (`isthmus`) and its pod becomes Ready."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from isthmus_core.testing.infra import missing_tool
from isthmus_core.testing.kube_node import KubeNode

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
SKAFFOLD = ROOT / ".tools" / "bin" / "skaffold"
NAMESPACE = "isthmus"  # skaffold.yaml's release namespace


def test_skaffold_deploys_the_all_in_one_profile(
    kube_node: KubeNode, isthmus_image: str, tmp_path: Path
) -> None:
    if not SKAFFOLD.exists():
        missing_tool(
            "skaffold is not installed at .tools/bin/skaffold (run bash tools/install-tools.sh; needs Go)"
        )
    built = tmp_path / "build.json"
    built.write_text(json.dumps({"builds": [{"imageName": "isthmus", "tag": isthmus_image}]}))
    env = {
        "PATH": f"{kube_node.helm_bin.parent}:{kube_node.kubectl_bin.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kube_node.kubeconfig),
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_COLLECT_METRICS": "false",
    }
    kube_node.delete_namespace(NAMESPACE)
    try:
        proc = subprocess.run(
            [
                str(SKAFFOLD),
                "deploy",
                "-p",
                "all-in-one",
                "-a",
                str(built),
                "--status-check=true",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        [pod] = kube_node.pods(NAMESPACE, "app.kubernetes.io/instance=isthmus")
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True"
        assert pod["spec"]["containers"][0]["image"] == isthmus_image
        health = kube_node.exec(
            NAMESPACE, "deploy/isthmus-all", "isthmus", "config", "print", "--target", "all"
        )
        assert "local" in health  # the profile's auth.mode reached the pod's settings
    finally:
        kube_node.delete_namespace(NAMESPACE)
