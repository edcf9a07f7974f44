"""The producer examples (examples/producers) write events the contract accepts: checked here without a
broker, against the DocumentSubmitted model ingestion validates with, so a contract change that breaks
them fails the fast tier too (tests/distributed/test_distributed_producer_examples.py runs them on Kafka)."""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.contracts.topics import DOCUMENTS_SUBMITTED, partition_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "producers"


def python_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_document", EXAMPLES / "produce_document.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "tenant": "acme",
        "file": None,
        "content_uri": None,
        "filename": None,
        "document_id": None,
        "content_type": None,
        "metadata": [],
    }
    return argparse.Namespace(**{**defaults, **given})


def test_the_python_example_writes_valid_events_inline_and_by_reference(tmp_path: Path) -> None:
    example = python_example()
    assert example.TOPIC == DOCUMENTS_SUBMITTED.name
    doc = tmp_path / "notes.md"
    doc.write_bytes(b"# Notes\n\nBinary-safe: \x00\xff")
    inline = example.build_event(
        args(file=doc, document_id="notes-1", metadata=["team=hr"]), doc.read_bytes()
    )
    event = DocumentSubmitted.model_validate_json(json.dumps(inline))
    assert event.content == doc.read_bytes() and event.content_uri == ""
    assert (event.document_id, event.filename, event.content_type) == ("notes-1", "notes.md", "text/markdown")
    assert event.metadata == {"team": "hr"}
    by_reference = example.build_event(args(content_uri="acme/uploads/big.pdf", filename="big.pdf"), None)
    event = DocumentSubmitted.model_validate_json(json.dumps(by_reference))
    assert event.content == b"" and event.content_uri == "acme/uploads/big.pdf"
    assert event.document_id is None  # ingestion derives it


def test_the_console_producer_example_writes_the_documented_line(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "kafka-console-producer.sh"  # records what Kafka's producer would read
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$0.args"\ncat > "$0.stdin"\n')
    fake.chmod(0o755)
    doc = tmp_path / 'a "quoted" name.txt'
    doc.write_bytes(b"Ridge lift happens where wind meets a slope.\n")
    token = tmp_path / "feeder.jwt"
    token.write_text("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl\n")
    proc = subprocess.run(
        [
            "bash",
            str(EXAMPLES / "console-producer.sh"),
            "--bootstrap",
            "127.0.0.1:1",
            "--tenant",
            "acme",
            "--file",
            str(doc),
            "--document-id",
            "ridge",
            "--token-file",
            str(token),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KAFKA_HOME": "", "PATH": f"{fake.parent}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    headers, key, value = Path(f"{fake}.stdin").read_text().rstrip("\n").split("\t")
    assert headers == "content-type:application/json,authorization:Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"
    event = DocumentSubmitted.model_validate_json(value)
    assert key == partition_key(event) == "acme/ridge"
    assert event.filename == 'a "quoted" name.txt' and event.content == doc.read_bytes()
    assert base64.b64decode(json.loads(value)["content"]) == doc.read_bytes()  # standard base64
    argv = Path(f"{fake}.args").read_text().splitlines()
    assert argv[:4] == ["--bootstrap-server", "127.0.0.1:1", "--topic", DOCUMENTS_SUBMITTED.name]
    for prop in ("parse.key=true", "parse.headers=true", "headers.key.separator=:", "headers.separator=,"):
        assert prop in argv


def test_both_examples_refuse_a_file_over_the_inline_limit(tmp_path: Path) -> None:
    doc = tmp_path / "big.txt"
    doc.write_bytes(b"x" * (4 * 1024 * 1024 + 1))
    py = subprocess.run(
        [sys.executable, str(EXAMPLES / "produce_document.py"), "--tenant", "acme", "--file", str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert py.returncode == 2 and "over the inline limit" in py.stderr and "--content-uri" in py.stderr
    fake = tmp_path / "bin" / "kafka-console-producer.sh"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\ncat > "$0.stdin"\n')
    fake.chmod(0o755)
    sh = subprocess.run(
        ["bash", str(EXAMPLES / "console-producer.sh"), "--tenant", "acme", "--file", str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KAFKA_HOME": "", "PATH": f"{fake.parent}:{os.environ['PATH']}"},
    )
    assert sh.returncode == 2 and "over the inline limit" in sh.stderr
    assert not Path(f"{fake}.stdin").exists()  # nothing was sent
