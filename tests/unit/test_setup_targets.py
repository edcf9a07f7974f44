"""What `make setup` and `make test` install, read from the Makefile itself (`make -n`, nothing runs).

`make setup` is the newcomer's path to `make run`: the runtime packages only, no llama.cpp build from
source and no test tool. `make test` (what CI runs, through `.ci/run`) installs everything the test
tiers need first, so a fresh clone under CI=true still has every tool. The `llama` dependency group
that test-setup syncs must be the same in pyproject.toml and uv.lock (`--frozen` trusts the lock).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from isthmus_core.testing.infra import missing_tool

ROOT = Path(__file__).resolve().parents[2]


def dry_run(target: str) -> str:
    """The commands `make <target>` would run, prerequisites included (make -n executes none of them)."""
    make = shutil.which("make")
    if make is None:
        missing_tool("make is not installed")
    # not the outer make's flags and jobserver when the suite itself runs under `make test`
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env["UV"] = "uv-under-test"
    proc = subprocess.run(
        [make, "-n", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def syncs(commands: str) -> list[list[str]]:
    """The uv syncs among the commands: the options of each `uv sync --all-packages --frozen`."""
    return [s.split() for s in re.findall(r"uv-under-test sync --all-packages --frozen([^\n]*)", commands)]


def test_setup_installs_the_runtime_only() -> None:
    commands = dry_run("setup")
    assert syncs(commands) == [["--no-dev", "--inexact"]]
    assert "install-tools" not in commands
    assert "tools.d" not in commands
    assert "llama" not in commands


def test_ci_installs_every_test_package_and_tool_before_the_tests() -> None:
    # CI runs exactly the README's commands: `make setup`, then `make test`
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.findall(r"^\s*make\s+(.+?)\s*$", ci, re.M) == ["setup", "test"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make setup && make run" in readme and re.search(r"^make test\b", readme, re.M)
    # ... and `make test` syncs the test groups and installs the tools before pytest starts
    commands = dry_run("test")
    full = [s for s in syncs(commands) if "--group" in s]
    # exact (no --inexact): what CI tests is the lock, nothing else; llama-cpp-python from tools/llama.sh
    assert full == [["--group", "llama", "--no-install-package", "llama-cpp-python"]]
    at = commands.index
    assert at("--group llama") < at("tools/llama.sh") < at("tools/install-tools.sh") < at("-m pytest")


def _names(requirements: list[object]) -> set[str]:
    out = set()
    for r in requirements:
        name = r["name"] if isinstance(r, dict) else re.split(r"[\[<>=!~;\s]", str(r), maxsplit=1)[0]
        out.add(re.sub(r"[-_.]+", "-", name).lower())
    return out


def test_llama_is_its_own_group_in_pyproject_and_the_lock() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["dependency-groups"]
    with_llama = [g for g, reqs in groups.items() if "llama-cpp-python" in _names(reqs)]
    assert with_llama == ["llama"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (root,) = [p for p in lock["package"] if p["name"] == "isthmus-workspace"]
    locked = root["metadata"]["requires-dev"]
    assert {g: _names(r) for g, r in locked.items()} == {g: _names(r) for g, r in groups.items()}


def test_make_test_runs_the_retrieval_quality_gate_against_the_committed_baseline() -> None:
    from isthmus_evaluation.report import EvalReport

    commands = dry_run("test")
    (gate,) = [line for line in commands.splitlines() if " eval " in line and "--baseline" in line]
    assert "--standalone" in gate and "--max-drop ndcg_at_10=" in gate and "--max-drop recall_at_100=" in gate
    # the slice is cut before the run, and the gate runs once the tools are installed, before the tests
    at = commands.index
    assert at("tools/install-tools.sh") < at("-m isthmus_bench.eval_gate") < at(gate) < at("-m pytest")
    baseline = re.search(r"--baseline (\S+)", gate)
    assert baseline is not None
    report = EvalReport.from_json((ROOT / baseline[1]).read_text(encoding="utf-8"))
    dataset = re.search(r" eval (\S+)", gate)
    assert dataset is not None and report.dataset == Path(dataset[1]).name
    modes = re.search(r"--modes (\S+)", gate)
    assert modes is not None and [m.mode for m in report.modes] == modes[1].split(",")
    # `make eval-gate-baseline` rewrites that very file from the same run, without a gate
    rewriting = dry_run("eval-gate-baseline")
    (rewrite,) = [line for line in rewriting.splitlines() if " eval " in line]
    # ... and keeps no text of the collection in it (read from ../shared, not redistributed)
    assert rewriting.index(rewrite) < rewriting.index(f"-m isthmus_bench.eval_gate strip {baseline[1]}")
    assert f"--output {baseline[1]}" in rewrite and "--max-drop" not in rewrite
    assert rewrite.split(" --output")[0] == gate.split(" --output")[0]
