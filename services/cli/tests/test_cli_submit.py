"""``isthmus submit``: what it refuses before it touches Kafka or the object store (the producer path
itself runs on the real broker in tests/distributed/test_distributed_claim_check.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus_cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["a.txt", "b.txt", "--document-id", "doc-1"], "--document-id names one document"),
        (["a.txt", "--document-id", "../x"], "document ids are"),
        (["missing.txt"], "not a file: missing.txt"),
        (["a.txt", "--tenant", "Bad/Tenant"], "tenant ids are"),
    ],
)
def test_submit_refuses_bad_arguments_before_producing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("Gliders climb in thermals.")
    (tmp_path / "b.txt").write_text("Ridge lift.")
    tenant = [] if "--tenant" in args else ["--tenant", "acme"]
    # an unreachable bootstrap: a refusal must come before any connection attempt
    result = runner.invoke(app, ["submit", *args, *tenant, "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code != 0
    assert reason in " ".join(result.output.split()), result.output
