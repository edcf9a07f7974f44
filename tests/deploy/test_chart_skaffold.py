"""skaffold.yaml: one artifact built from the Dockerfile, deployed through charts/isthmus, and each
profile's values accepted by the chart's schema (rendered with the real helm, as skaffold would)."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODES = {"all-in-one": "AllInOne", "distributed": "Distributed"}


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
    docs = chart.render(*args)  # fails if the chart's schema rejects a profile value
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    targets = {d["spec"]["template"]["spec"]["containers"][0]["args"][1] for d in deps.values()}
    assert (targets == {"all"}) == (MODES[profile] == "AllInOne")
    for dep in deps.values():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == "isthmus:dev-abc123"
        assert c["imagePullPolicy"] == "IfNotPresent"  # locally built images are never pulled
