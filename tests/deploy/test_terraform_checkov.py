"""checkov over ``terraform/`` (every module and environment, modules evaluated through their callers):
zero failed checks, and every skipped check is skipped in code next to the resource with
``#checkov:skip=CKV_...:<reason>`` — no command-line or config-file skips, no skip without a reason, no
stale skip that no longer matches a finding.

checkov is installed by ``tools/tools.d/checkov.sh`` into ``.tools/checkov`` (``make test-setup``, which ``make test`` runs); without it
these tests skip locally and fail under CI=true."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.testing.infra import missing_tool

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$", re.M)
MIN_REASON_CHARS = 40


def _checkov_bin() -> Path:
    if CHECKOV.exists():
        return CHECKOV
    missing_tool(f"checkov is not installed at {CHECKOV.relative_to(ROOT)} (run tools/install-tools.sh)")


def _run_checkov(tf_dir: Path) -> dict[str, Any]:
    """One offline checkov run over tf_dir (no guideline download, no external modules), about 6 s."""
    cmd = [
        str(_checkov_bin()),
        "--directory",
        str(tf_dir),
        "--framework",
        "terraform",
        "--compact",
        "--skip-download",
        "--download-external-modules",
        "false",
        "--output",
        "json",
    ]
    proc = subprocess.run(cmd, cwd=tf_dir.parent, capture_output=True, text=True, timeout=600)
    # Exit code 1 means "failed checks" (asserted with details by the tests); anything else is a crash.
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}): {proc.stderr[-3000:]}"
    data = json.loads(proc.stdout)
    reports: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    (terraform,) = [r for r in reports if r.get("check_type") == "terraform"]
    return terraform


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return _run_checkov(TF)


@pytest.fixture(scope="module")
def unsuppressed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov over a copy of terraform/ with every skip comment removed: what each skip hides."""
    copy = tmp_path_factory.mktemp("tf-unsuppressed") / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    for path in copy.rglob("*.tf"):
        path.write_text(SKIP_COMMENT.sub("# (skip removed)", path.read_text()))
    return _run_checkov(copy)


def _where(check: dict[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    return f"{check['check_id']} {check['resource']} ({check['repo_file_path']}:{lines[0]}-{lines[1]})"


def _in_code_skips() -> dict[tuple[str, str], str]:
    """(repo path of the .tf file, check id) -> reason, for every skip comment under terraform/."""
    skips: dict[tuple[str, str], str] = {}
    for path in sorted(TF.rglob("*.tf")):
        for check_id, reason in SKIP_COMMENT.findall(path.read_text()):
            skips[("/" + path.relative_to(ROOT).as_posix(), check_id)] = reason.strip()
    return skips


def test_checkov_scanned_every_module_and_environment(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 100 and summary["passed"] >= 300, summary
    scanned = {
        Path(c["repo_file_path"]).parent
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in report["results"].get(kind, [])
    }
    # Every module and environment that declares resources was scanned (through its callers for modules).
    with_resources = {
        Path("/" + path.parent.relative_to(ROOT).as_posix())
        for path in TF.rglob("*.tf")
        if re.search(r'^resource "', path.read_text(), re.M)
    }
    assert len(with_resources) >= 3
    assert with_resources <= scanned, sorted(map(str, with_resources - scanned))


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    failed = report["results"].get("failed_checks", [])
    assert not failed, "checkov failures (fix them, or skip in code with a real reason):\n" + "\n".join(
        f"  {_where(c)}: {c['check_name']}" for c in failed
    )


def test_every_skip_is_in_code_next_to_the_resource_with_a_reason(report: dict[str, Any]) -> None:
    skipped = report["results"].get("skipped_checks", [])
    in_code = _in_code_skips()
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= MIN_REASON_CHARS, f"{_where(check)}: skipped without a real reason: {reason!r}"
        key = (check["repo_file_path"], check["check_id"])
        assert key in in_code, f"{_where(check)} is skipped, but not by a #checkov:skip comment in that file"
        assert in_code[key] == reason


def test_no_skip_comment_is_stale_or_unexplained(unsuppressed: dict[str, Any]) -> None:
    """Each skip hides a real failure: without the comments, checkov fails that check in that file."""
    would_fail = {
        (c["repo_file_path"], c["check_id"]) for c in unsuppressed["results"].get("failed_checks", [])
    }
    skips = _in_code_skips()
    assert skips, "expected the documented in-code skips (see terraform/README.md)"
    for (path, check_id), reason in skips.items():
        assert len(reason) >= MIN_REASON_CHARS, f"{path}: #checkov:skip={check_id} has no real reason"
        assert (path, check_id) in would_fail, f"{path}: #checkov:skip={check_id} hides no failure (stale)"


def test_no_skips_outside_the_code() -> None:
    for config in (".checkov.yaml", ".checkov.yml"):
        for folder in (ROOT, TF):
            path = folder / config
            assert not path.exists() or "skip" not in path.read_text(), (
                f"{path} skips checks outside the code"
            )
