"""Shared helpers of the deployment checks: where the external tools are, and the chart renderer.

The tools are installed by ``bash tools/install-tools.sh`` (``make test-setup``, which ``make test`` runs): ``.tools/bin/helm``
(tools/tools.d/helm.sh) and ``.tools/checkov`` (tools/tools.d/checkov.sh, its own virtualenv). Without
one, the tests that need it skip locally with the reason and fail under ``CI=true``.

Use the fixtures: ``helm`` / ``checkov`` (the binaries' paths), ``checkov_run`` (``run_checkov``) and
``chart`` (the renderer). The plain functions ``helm_bin()``, ``checkov_bin()`` and ``run_checkov()``
back them; importing them (``from conftest import ...``) is fragile — several folders have a module named
``conftest`` — so test modules get them through the fixtures."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from isthmus_core.testing.infra import missing_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "isthmus"
HELM = ROOT / ".tools" / "bin" / "helm"
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
NAMESPACE = "isthmus"
RELEASE = "rel"
#: every render starts from these values (an issuer: the chart requires one with the default auth.mode
#: oidc); later ``-f`` files and ``--set`` override them
BASE_VALUES = Path(__file__).resolve().parent / "base-values.yaml"


tool_missing = missing_tool


def helm_bin() -> Path:
    if not HELM.exists():
        tool_missing(f"helm is not installed at {HELM.relative_to(ROOT)} (run bash tools/install-tools.sh)")
    return HELM


def checkov_bin() -> Path:
    if not CHECKOV.exists():
        tool_missing(
            f"checkov is not installed at {CHECKOV.relative_to(ROOT)} (run bash tools/install-tools.sh)"
        )
    return CHECKOV


def run_checkov(*args: str, framework: str, cwd: Path | None = None) -> dict[str, Any]:
    """One offline checkov run (no guideline download), JSON output; returns the report of
    ``framework``. Exit code 1 means failed checks (the caller asserts on them); others are crashes."""
    cmd = [str(checkov_bin()), *args, "--framework", framework, "--compact", "--skip-download", "-o", "json"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}): {proc.stderr[-3000:]}"
    data = json.loads(proc.stdout)
    reports: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    matching = [r for r in reports if r.get("check_type") == framework]
    assert len(matching) == 1, (
        f"expected one {framework} report, got {[r.get('check_type') for r in reports]}"
    )
    return matching[0]


class Chart:
    """``helm template`` / ``helm lint`` of charts/isthmus with the real helm; renders are cached."""

    def __init__(self, helm: Path) -> None:
        self.helm = helm
        self._cache: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, check=check, timeout=120
        )

    def template(
        self, *values: str, check: bool = True, base: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``helm template``; ``base`` = start from :data:`BASE_VALUES` (an issuer)."""
        first = ["-f", str(BASE_VALUES)] if base else []
        return self.run(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *first, *values, check=check
        )

    def render(self, *values: str) -> list[dict[str, Any]]:
        """The rendered objects; cached per arguments unless a values file (-f) is passed."""
        if "-f" in values:
            return [d for d in yaml.safe_load_all(self.template(*values).stdout) if d]
        if values not in self._cache:
            self._cache[values] = [d for d in yaml.safe_load_all(self.template(*values).stdout) if d]
        return self._cache[values]


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_bin()


@pytest.fixture(scope="session")
def checkov() -> Path:
    return checkov_bin()


@pytest.fixture(scope="session")
def chart(helm: Path) -> Chart:
    return Chart(helm)


@pytest.fixture(scope="session")
def checkov_run(checkov: Path) -> Callable[..., dict[str, Any]]:
    return run_checkov
