"""``isthmus ingest``'s file collection: every file of a folder is either uploaded or listed as
unsupported with the reason, never silently left out; the extensions are ingestion's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus_cli.client import collect_files, supported_extensions
from isthmus_ingestion.parsing import EXTENSIONS


def test_every_file_is_uploaded_or_listed_with_a_reason(tmp_path: Path) -> None:
    for name in [
        "a.docx",
        "b/c.XLSX",
        "b/d.eml",
        "e.mbox",
        "f.csv",
        "g.json",
        "h.jsonl",
        "i.pptx",
        "j.png",
        "README",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    collected = collect_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in collected.files] == [
        "a.docx",
        "b/c.XLSX",
        "b/d.eml",
        "e.mbox",
        "f.csv",
        "g.json",
        "h.jsonl",
        "i.pptx",
    ]
    assert [(p.name, reason) for p, reason in collected.unsupported] == [
        ("README", "no file extension: cannot tell its type"),
        ("j.png", "unsupported file extension '.png'"),
    ]


def test_a_single_file_is_always_uploaded_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "scan.tiff").write_bytes(b"x")
    assert collect_files(tmp_path / "scan.tiff").files == [tmp_path / "scan.tiff"]
    with pytest.raises(FileNotFoundError):
        collect_files(tmp_path / "nope")


def test_the_supported_extensions_are_ingestion_s() -> None:
    assert supported_extensions() == sorted(EXTENSIONS)
    assert {".docx", ".pptx", ".xlsx", ".csv", ".json", ".jsonl", ".eml", ".mbox"} <= set(EXTENSIONS)
