"""Child documents (e-mail attachments, an mbox's messages) and the parsed-text store behind
GetDocumentText: children are ingested as documents of their own with ``parent_document_id``, a child
that cannot be parsed is FAILED with its reason; the text is served by range, respects the document's
acl, and is gone after Erase and a deleted tenant (no byte left in texts.sqlite)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import Permission, Principal
from isthmus_core.contracts.events import ChunksCreated, DocumentDeleted, DocumentSubmitted, TenantDeleted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound, PermissionDenied
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_ingestion.api import IngestionServicer
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.testing import make_docx, make_eml, make_mbox, make_xlsx
from isthmus_ingestion.texts import TextStore
from isthmus_ingestion.watch import DocumentWatch

ACME, OTHER = TenantId("acme"), TenantId("other")
SECRET = "Cloudbase-7731 marks the ridge where the club soars in spring"


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=32, overlap_tokens=4)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DocumentRegistry]:
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


@pytest.fixture
def texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextStore]:
    # as on a build of sqlite whose default is off: the store must turn secure_delete on itself
    connect = sqlite3.connect

    def insecure_by_default(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", insecure_by_default)
    t = TextStore(tmp_path / "texts" / "texts.sqlite")
    yield t
    t.close()


@pytest.fixture
def published() -> list[ChunksCreated]:
    return []


def make_core(
    registry: DocumentRegistry,
    chunker: Chunker,
    texts: TextStore,
    published: list[ChunksCreated],
    **kw: Any,
) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    return Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME, OTHER]),
        publish,
        max_bytes=5_000_000,
        chunks_per_event=8,
        texts=texts,
        **kw,
    )


@pytest.fixture
def core(
    registry: DocumentRegistry, chunker: Chunker, texts: TextStore, published: list[ChunksCreated]
) -> Ingestion:
    return make_core(registry, chunker, texts, published)


async def _parts(header: pb.UploadHeader, data: bytes) -> AsyncIterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    yield pb.UploadRequest(data=data)


def _mail_with_attachments() -> tuple[bytes, bytes]:
    report = make_docx([f"Season report. {SECRET}."], title="Season report")
    mail = make_eml(
        "Season report",
        "The report is attached, with a picture.",
        attachments=[
            ("report.docx", report, "application/octet-stream"),
            ("photo.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ],
    )
    return mail, report


# --- children ------------------------------------------------------------------------------------------


async def test_attachments_are_documents_of_their_own_and_a_failed_one_says_why(
    core: Ingestion, published: list[ChunksCreated]
) -> None:
    mail, _ = _mail_with_attachments()
    svc = IngestionServicer(core, DocumentWatch())
    header = pb.UploadHeader(tenant_id=ACME, filename="season.eml", metadata={"acl": "alice,group:club"})
    response = await svc.Upload(_parts(header, mail), None)
    assert len(response.child_document_ids) == 2
    docx_id, png_id = response.child_document_ids

    parent = await svc.GetDocument(
        pb.GetDocumentRequest(tenant_id=ACME, document_id=response.document_id), None
    )
    assert parent.parent_document_id == ""
    assert parent.metadata["email_subject"] == "Season report"

    report = await svc.GetDocument(pb.GetDocumentRequest(tenant_id=ACME, document_id=docx_id), None)
    assert (report.filename, report.status) == ("report.docx", pb.DOCUMENT_STATUS_CHUNKED)
    assert report.parent_document_id == response.document_id
    assert report.metadata["acl"] == "alice,group:club"  # the parent's readers, not more
    assert "email_subject" not in report.metadata
    chunks = [c for ev in published if ev.document_id == docx_id for c in ev.chunks]
    assert SECRET in " ".join(c.text for c in chunks)
    assert all(c.metadata["parent_document_id"] == response.document_id for c in chunks)

    photo = await svc.GetDocument(pb.GetDocumentRequest(tenant_id=ACME, document_id=png_id), None)
    assert photo.status == pb.DOCUMENT_STATUS_FAILED
    assert photo.parent_document_id == response.document_id
    assert photo.failure_reason.startswith("unsupported content type 'image/png' for 'photo.png'")

    again = await svc.Upload(_parts(header, mail), None)  # a duplicate still names its children
    assert again.duplicate and list(again.child_document_ids) == [docx_id, png_id]


async def test_an_upload_cannot_claim_a_parent(core: Ingestion) -> None:
    r = await core.ingest(ACME, "a.txt", b"Plain words.", metadata={"parent_document_id": "forged"})
    assert "parent_document_id" not in (await core.get_document(ACME, r.document_id)).metadata


async def test_mbox_messages_are_children_and_nesting_is_depth_limited(
    registry: DocumentRegistry, chunker: Chunker, texts: TextStore, published: list[ChunksCreated]
) -> None:
    core = make_core(registry, chunker, texts, published, max_child_depth=1)
    with_attachment = make_eml(
        "Fleet",
        "Sheet attached.",
        attachments=[("fleet.xlsx", make_xlsx({"F": [["T"], ["ASK 21"]]}), "application/octet-stream")],
    )
    box = make_mbox([make_eml("Launch list", "Winch at nine."), with_attachment])
    r = await core.ingest(ACME, "club.mbox", box)
    first, second = [await core.get_document(ACME, d) for d in r.child_document_ids]
    assert (first.filename, first.status, first.title) == ("club-0001.eml", Status.CHUNKED, "Launch list")
    assert second.metadata["parent_document_id"] == r.document_id
    (grandchild,) = [
        d for d in registry.list(ACME) if d.metadata.get("parent_document_id") == second.document_id
    ]
    assert grandchild.status == Status.FAILED
    assert grandchild.failure_reason == (
        "fleet.xlsx: found 2 levels deep inside 'club-0002.eml'; documents nested deeper than 1 levels are "
        "not ingested ([ingestion] max_child_depth): upload it on its own"
    )


async def test_too_many_children_refuse_the_upload_before_anything_is_recorded(
    registry: DocumentRegistry, chunker: Chunker, texts: TextStore, published: list[ChunksCreated]
) -> None:
    core = make_core(registry, chunker, texts, published, max_children=2)
    box = make_mbox([make_eml(f"m{i}", f"body {i}") for i in range(3)])
    with pytest.raises(InvalidArgument, match="holds 3 attachments or messages; the limit is 2 per upload"):
        await core.ingest(ACME, "big.mbox", box)
    assert registry.list(ACME) == [] and published == []


async def test_the_json_field_map_comes_from_the_upload_metadata(core: Ingestion) -> None:
    data = b'[{"subject": "Ridge", "msg": "Soaring on the ridge."}, {"msg": "Thermals later."}]'
    with pytest.raises(InvalidArgument, match="JSON without the text field"):
        await core.ingest(ACME, "export.json", data)
    r = await core.ingest(
        ACME, "export.json", data, metadata={"json_text_fields": "msg", "json_title_field": "subject"}
    )
    text, *_ = await _text(core, r.document_id)
    assert text == "Ridge\nSoaring on the ridge.\n\nThermals later."


# --- the parsed text -------------------------------------------------------------------------------------


async def _text(core: Ingestion, document_id: str, start: int = 0, end: int = 0) -> tuple[str, int, int, int]:
    _, stored, s, e = await core.get_document_text(ACME, document_id, start, end)
    return stored.text[s:e], s, e, len(stored.text)


async def test_the_text_is_what_chunk_offsets_point_into(
    core: Ingestion, published: list[ChunksCreated]
) -> None:
    r = await core.ingest(ACME, "report.docx", make_docx([f"Intro words. {SECRET}.", "More text " * 40]))
    svc = IngestionServicer(core, DocumentWatch())
    whole = await svc.GetDocumentText(
        pb.GetDocumentTextRequest(tenant_id=ACME, document_id=r.document_id), None
    )
    assert whole.text.startswith("Intro words.") and whole.length == len(whole.text)
    assert (whole.start, whole.end, whole.version, whole.content_type) == (0, whole.length, 1, record_type())
    chunks = [c for ev in published for c in ev.chunks]
    assert len(chunks) > 1
    for c in chunks:
        part = await svc.GetDocumentText(
            pb.GetDocumentTextRequest(tenant_id=ACME, document_id=r.document_id, start=c.start, end=c.end),
            None,
        )
        assert part.text == c.text == whole.text[c.start : c.end]
        assert (part.start, part.end, part.length) == (c.start, c.end, whole.length)
    tail = await svc.GetDocumentText(
        pb.GetDocumentTextRequest(tenant_id=ACME, document_id=r.document_id, start=whole.length - 5), None
    )
    assert tail.text == whole.text[-5:]


def record_type() -> str:
    return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (-1, 5, "start (-1) and end (5) must not be negative"),
        (0, 10_000, "range [0, 10000) is outside the text, which has 12 characters"),
        (13, 0, "range [13, 12) is outside the text, which has 12 characters"),
        (8, 4, "start (8) is after end (4); the range is [start, end)"),
    ],
)
async def test_bad_ranges_are_invalid_arguments(core: Ingestion, start: int, end: int, message: str) -> None:
    r = await core.ingest(ACME, "a.txt", b"Plain words.")
    with pytest.raises(InvalidArgument) as info:
        await core.get_document_text(ACME, r.document_id, start, end)
    assert info.value.reason == message


async def test_no_text_for_unknown_failed_or_other_tenants_documents(core: Ingestion) -> None:
    r = await core.ingest(ACME, "a.txt", b"Plain words.")
    with pytest.raises(NotFound):
        await core.get_document_text(OTHER, r.document_id)
    with pytest.raises(NotFound):
        await core.get_document_text(ACME, "nope")
    mail, _ = _mail_with_attachments()
    result = await core.ingest(ACME, "m.eml", mail)
    with pytest.raises(NotFound, match="has no text: it is failed: unsupported content type"):
        await core.get_document_text(ACME, result.child_document_ids[1])


async def test_a_document_with_an_acl_is_served_to_its_principals_only(core: Ingestion) -> None:
    r = await core.ingest(ACME, "a.txt", b"Restricted words.", metadata={"acl": "alice, club"})
    with acting_as(Access(Principal(subject="alice", via="jwt"), AllowAll())):
        assert (await _text(core, r.document_id))[0] == "Restricted words."
    with acting_as(Access(Principal(subject="bob", via="jwt", groups=("club",)), AllowAll())):
        assert (await _text(core, r.document_id))[0] == "Restricted words."

    class NoImpersonation(AllowAll):
        def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
            return permission != Permission.IMPERSONATE

    with acting_as(Access(Principal(subject="mallory", via="jwt"), NoImpersonation())):
        with pytest.raises(PermissionDenied, match="restricted by its 'acl' metadata"):
            await core.get_document_text(ACME, r.document_id)
    with acting_as(Access(Principal(subject="auditor", via="jwt"), AllowAll())):  # may impersonate
        assert (await _text(core, r.document_id))[0] == "Restricted words."


async def test_erase_and_a_deleted_tenant_leave_no_byte_of_the_text(
    core: Ingestion, texts: TextStore, tmp_path: Path
) -> None:
    a = await core.ingest(ACME, "a.txt", f"{SECRET} (first).".encode())
    b = await core.ingest(ACME, "b.txt", b"Another document.")
    o = await core.ingest(OTHER, "o.txt", f"{SECRET} (other tenant).".encode())
    assert (await _text(core, a.document_id))[0].startswith(SECRET)

    await core.erase(ACME, document_ids=[a.document_id])
    assert texts.get(ACME, a.document_id) is None
    assert texts.get(ACME, b.document_id) is not None
    assert b"(first)" not in _files(tmp_path / "texts")

    await core.on_tenant_deleted(TenantDeleted(tenant_id=OTHER, idempotency_key="other/deleted"))
    assert texts.get(OTHER, o.document_id) is None
    assert SECRET.encode() not in _files(tmp_path / "texts")

    await core.erase(ACME, whole_tenant=True)
    assert texts.get(ACME, b.document_id) is None


def _files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


def test_the_store_keeps_the_newest_version(texts: TextStore) -> None:
    texts.put(ACME, "d", 2, "text/plain", "", "version two")
    texts.put(ACME, "d", 1, "text/plain", "", "version one, late")
    stored = texts.get(ACME, "d")
    assert stored is not None and (stored.version, stored.text) == (2, "version two")
    texts.put(ACME, "d", 3, "text/markdown", "T", "version three")
    assert texts.get(ACME, "d") == type(stored)("d", 3, "text/markdown", "T", "version three")
    assert texts.delete(ACME, "d") and not texts.delete(ACME, "d")


async def test_erasing_an_e_mail_erases_what_was_found_inside_it(
    core: Ingestion, registry: DocumentRegistry
) -> None:
    mail, _ = _mail_with_attachments()
    kept = await core.ingest(ACME, "kept.txt", b"Unrelated document.")
    r = await core.ingest(ACME, "season.eml", mail)
    receipt = await core.erase(ACME, document_ids=[r.document_id])
    assert sorted(receipt.document_ids) == sorted([r.document_id, *r.child_document_ids])
    assert [d.document_id for d in registry.list(ACME)] == [kept.document_id]


async def test_deleting_an_e_mail_deletes_what_was_found_inside_it(
    registry: DocumentRegistry, chunker: Chunker, texts: TextStore, published: list[ChunksCreated]
) -> None:
    deleted: list[DocumentDeleted] = []

    async def publish_deleted(ev: DocumentDeleted) -> None:
        deleted.append(ev)

    core = make_core(registry, chunker, texts, published, publish_deleted=publish_deleted)
    mail, _ = _mail_with_attachments()
    kept = await core.ingest(ACME, "kept.txt", b"Unrelated document.")
    r = await core.ingest(ACME, "season.eml", mail)
    assert r.child_document_ids
    d = await core.delete_document(ACME, r.document_id, reason="obsolete")
    assert d.status == Status.DELETED
    inside = [registry.get(ACME, c) for c in r.child_document_ids]
    assert all(c is not None and c.status == Status.DELETED for c in inside)
    assert sorted(e.document_id for e in deleted) == sorted([r.document_id, *r.child_document_ids])
    assert all(texts.get(ACME, c) is None for c in r.child_document_ids)
    unrelated = registry.get(ACME, kept.document_id)
    assert unrelated is not None and unrelated.status != Status.DELETED


async def test_a_failed_new_version_drops_the_text_and_drop_text_scrubs(
    core: Ingestion, texts: TextStore, tmp_path: Path
) -> None:
    await core.ingest(ACME, "a.txt", f"{SECRET} (v1).".encode(), document_id="doc-a")
    bad = DocumentSubmitted(
        tenant_id=ACME, idempotency_key="k", document_id="doc-a", filename="a.txt", content=b"  \n "
    )
    with pytest.raises(InvalidArgument, match="contains no text"):
        await core.on_document_submitted(bad)
    assert texts.get(ACME, "doc-a") is None
    with pytest.raises(NotFound, match=r"has no text: it is failed: .*contains no text"):
        await core.get_document_text(ACME, "doc-a")

    await core.ingest(ACME, "b.txt", f"{SECRET} (b).".encode(), document_id="doc-b")
    assert core.drop_text(ACME, "doc-b", scrub=True) and not core.drop_text(ACME, "doc-b")
    assert b"(b)." not in _files(tmp_path / "texts")
