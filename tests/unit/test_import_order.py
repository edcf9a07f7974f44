"""usearch 2.26.6 segfaults when imported before onnxruntime; the pin must keep both orders working."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("order", ["usearch.index, onnxruntime", "onnxruntime, usearch.index"])
def test_usearch_and_onnxruntime_import_in_any_order(order: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {order}; print('ok')"], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.strip() == b"ok"
