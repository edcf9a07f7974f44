"""The source a person recognises (file name, title, URI) is kept with the document and its chunks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from isthmus_ingestion.registry import DocumentRecord, DocumentRegistry, Status
from isthmus_ingestion.service import chunk_metadata, source_name


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("travel.md", "travel.md"),
        ("policies/2026/travel.md", "travel.md"),
        ("C:\\Users\\ana\\travel policy.pdf", "travel policy.pdf"),
    ],
)
def test_source_name_is_the_file_name_without_directories(filename: str, expected: str) -> None:
    assert source_name(filename) == expected


def test_chunk_metadata_names_the_source_and_keeps_the_upload_metadata() -> None:
    meta = chunk_metadata(
        "docs/travel.md", "Travel policy", {"lang": "en", "acl": "staff", "uri": "https://x.example/t"}
    )
    assert meta == {
        "filename": "docs/travel.md",
        "lang": "en",
        "acl": "staff",
        "source_name": "travel.md",
        "title": "Travel policy",
        "uri": "https://x.example/t",
    }


def test_an_uploaded_title_wins_and_source_uri_is_a_uri() -> None:
    meta = chunk_metadata("a.html", "Parsed title", {"title": "Given title", "source_uri": "s3://b/a.html"})
    assert (meta["title"], meta["uri"]) == ("Given title", "s3://b/a.html")


def test_unknown_title_and_uri_are_left_out() -> None:
    assert chunk_metadata("notes.txt", None, {}) == {"filename": "notes.txt", "source_name": "notes.txt"}


def _record(title: str = "") -> DocumentRecord:
    return DocumentRecord("t1", "d1", "travel.md", "text/markdown", "h", Status.CHUNKED, title=title)


def test_the_registry_keeps_the_title(tmp_path: Path) -> None:
    registry = DocumentRegistry(tmp_path / "docs.sqlite3")
    registry.save(_record("Travel policy"))
    stored = registry.get("t1", "d1")
    assert stored is not None and stored.title == "Travel policy"
    registry.close()


def test_a_registry_written_before_titles_opens_and_keeps_its_documents(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE documents (
          tenant_id TEXT NOT NULL, document_id TEXT NOT NULL, filename TEXT NOT NULL,
          content_type TEXT NOT NULL, content_hash TEXT NOT NULL, status TEXT NOT NULL,
          version INTEGER NOT NULL, chunk_count INTEGER NOT NULL, batch_count INTEGER NOT NULL,
          failure_reason TEXT NOT NULL, metadata TEXT NOT NULL, created_at REAL NOT NULL,
          updated_at REAL NOT NULL, PRIMARY KEY (tenant_id, document_id));
        INSERT INTO documents VALUES
          ('t1', 'old', 'old.md', 'text/markdown', 'h0', 'indexed', 1, 3, 1, '', '{}', 1.0, 2.0);
        """
    )
    old.close()
    registry = DocumentRegistry(path)
    before = registry.get("t1", "old")
    assert before is not None and before.status == Status.INDEXED and before.title == ""
    registry.save(_record("Travel policy"))
    stored = registry.get("t1", "d1")
    assert stored is not None and stored.title == "Travel policy"
    registry.close()
