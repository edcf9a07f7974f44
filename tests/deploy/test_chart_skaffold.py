"""skaffold.yaml: one artifact built from the Dockerfile, deployed through charts/isthmus, and each
profile's values accepted by the chart's schema (rendered with the real helm, as skaffold would)."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus_core.testing.infra import missing_tool

ROOT = Path(__file__).resolve().parents[2]
MODES = {"all-in-one": "AllInOne", "distributed": "Distributed"}
RELEASE = "rel"  # the release name the ``chart`` fixture renders with


@functools.cache
def skaffold() -> dict[str, Any]:
    """skaffold.yaml (read on first use: nothing is read at import time)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return config


def apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """skaffold profile patches (JSON Patch ``add``/``replace``) applied to a copy of the config."""
    out = copy.deepcopy(config)
    for patch in patches:
        assert patch["op"] in ("add", "replace"), patch
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in patch["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = patch["value"]
    return out


def test_one_artifact_built_from_the_dockerfile() -> None:
    assert skaffold()["apiVersion"].startswith("skaffold/v4")
    [artifact] = skaffold()["build"]["artifacts"]
    assert artifact["image"] == "isthmus"
    assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).resolve() == ROOT / "Dockerfile"


def test_the_release_deploys_the_chart_with_the_built_image() -> None:
    [release] = skaffold()["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == ROOT / "charts" / "isthmus"
    image = skaffold()["build"]["artifacts"][0]["image"]
    key = re.sub(r"[^A-Za-z0-9]", "_", image)
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}",
    }


@pytest.mark.parametrize("profile", sorted(MODES))
def test_each_profile_renders_its_mode(chart: Any, profile: str) -> None:
    profiles = {p["name"]: p for p in skaffold()["profiles"]}
    assert set(profiles) == set(MODES)
    config = apply_patches(skaffold(), profiles[profile]["patches"])
    [release] = config["deploy"]["helm"]["releases"]
    templated = {"image.repository": "isthmus", "image.tag": "dev-abc123"}  # what skaffold substitutes
    values = {**templated, **release.get("setValues", {})}
    assert values["deploymentMode"] == MODES[profile]
    args = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    # as skaffold renders it: the profile's values alone (fails if the chart's schema rejects one)
    docs = [d for d in yaml.safe_load_all(chart.template(*args, base=False).stdout) if d]
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    targets = {d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in deps.values()}
    assert (targets == {"all"}) == (MODES[profile] == "AllInOne")
    for dep in deps.values():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == "isthmus:dev-abc123"
        assert c["imagePullPolicy"] == "IfNotPresent"  # locally built images are never pulled
    # what `skaffold dev` forwards is a port of a Service the profile renders (all-in-one: the console)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    forwards = config.get("portForward", [])
    assert bool(forwards) == (MODES[profile] == "AllInOne")
    for fwd in forwards:
        assert (fwd["resourceType"], fwd["namespace"]) == ("service", release["namespace"])
        svc = services[fwd["resourceName"].replace(release["name"], RELEASE, 1)]
        assert fwd["port"] in {p["port"] for p in svc["spec"]["ports"]}, fwd


# --- the real skaffold (tools/tools.d/skaffold.sh builds v2.16.1) -----------------------------------
# `skaffold dev/run` need a Docker daemon to build; here the image comes from `make image`, and skaffold is
# handed it as a finished build (`--build-artifacts`), the way a CI pipeline that builds elsewhere does.
SKAFFOLD = ROOT / ".tools" / "bin" / "skaffold"
BUILT = {"builds": [{"imageName": "isthmus", "tag": "localhost/isthmus:0123456789ab"}]}


def _skaffold(*args: str, helm: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not SKAFFOLD.exists():
        missing_tool(
            "skaffold is not installed at .tools/bin/skaffold (run bash tools/install-tools.sh; needs Go)"
        )
    env = {
        "PATH": f"{helm.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_COLLECT_METRICS": "false",
    }
    return subprocess.run(
        [str(SKAFFOLD), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_skaffold_accepts_the_config(helm: Path, tmp_path: Path) -> None:
    for profile in MODES:
        proc = _skaffold("diagnose", "--yaml-only", "-p", profile, helm=helm, tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        effective = yaml.safe_load(proc.stdout)
        assert effective["build"]["artifacts"][0]["docker"]["dockerfile"] == "Dockerfile"


@pytest.mark.parametrize("profile", sorted(MODES))
def test_skaffold_renders_each_profile_with_a_built_image(profile: str, helm: Path, tmp_path: Path) -> None:
    built = tmp_path / "build.json"
    built.write_text(json.dumps(BUILT))
    proc = _skaffold(
        "render",
        "-p",
        profile,
        "--offline=true",
        "--digest-source=tag",
        "-a",
        str(built),
        helm=helm,
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == (1 if MODES[profile] == "AllInOne" else 6)
    for deployment in deployments:
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == BUILT["builds"][0]["tag"]
        assert container["imagePullPolicy"] == "IfNotPresent"
