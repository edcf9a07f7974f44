"""A clone on its own (no ``../shared`` beside it) must collect every test: nothing reads files at import
time, and tests that need the shared datasets skip (or fail under CI=true) when they run, not before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _copy_checkout(dest: Path) -> None:
    """The files git would put in a fresh clone (tracked and new, not ignored), as they are now on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_a_clone_without_shared_collects_every_test(tmp_path: Path) -> None:
    clone = tmp_path / "isthmus"
    _copy_checkout(clone)
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ISTHMUS_SHARED_DATASETS")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "error" not in out.lower().split("tests collected")[-1], out[-4000:]
    # the tests that need ../shared are collected (they skip with the reason when run)
    assert "test_evaluation_datasets.py::test_real_dataset_counts_match_readme[cranfield]" in out
    assert "test_evaluation_report.py::test_reference_figures_match_the_datasets_readme" in out
