"""Documents by reference (claim check): what a reference may name (never a path: a key of the event's
tenant, resolved below the store's root only), the size limits, exactly one of content / content_uri,
and what the bus does with each failure (a bad reference dead-lettered at once, an outage retried then
dead-lettered, the document recorded failed with the reason)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES, Outcome, deliver
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, Message, RetryPolicy
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ChunksCreated, DocumentSubmitted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound, Unavailable
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.module import object_store
from isthmus_ingestion.objects import (
    DEFAULT_MAX_INLINE_BYTES,
    MAX_INLINE_BYTES_CEILING,
    LocalObjectStore,
    ObjectStoreUnavailable,
    S3ObjectStore,
    reference_key,
    submitted_content,
)
from isthmus_ingestion.registry import DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.settings import IngestionSettings

ACME, OTHER = TenantId("acme"), TenantId("other")
TEXT = b"Gliders stay aloft by circling in thermals, columns of rising warm air."
ROOT = "/srv/objects"


# --- what a reference may name (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("acme/report.pdf", ["acme", "report.pdf"]),
        ("acme/2026/12/report v2.pdf", ["acme", "2026", "12", "report v2.pdf"]),
        (f"file://{ROOT}/acme/report.pdf", ["acme", "report.pdf"]),
        (f"file://localhost{ROOT}/acme/report.pdf", ["acme", "report.pdf"]),
        (f"file:{ROOT}/acme/report.pdf", ["acme", "report.pdf"]),
        (f"FILE://{ROOT}/acme/a%20b.pdf", ["acme", "a b.pdf"]),
    ],
)
def test_a_local_reference_is_a_key_of_the_events_tenant(reference: str, key: list[str]) -> None:
    assert reference_key(reference, ACME, scheme="file", roots=[ROOT]) == key


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("", "no object key"),
        ("acme", "in the event's tenant's space"),
        ("other/report.pdf", "in the event's tenant's space"),
        ("report.pdf", "in the event's tenant's space"),
        ("acme/../other/report.pdf", "'..' segments"),
        ("acme/./report.pdf", "'..' segments"),
        ("acme//report.pdf", "'..' segments"),
        ("acme/dir/", "'..' segments"),
        ("../acme/report.pdf", "'..' segments"),
        ("/etc/passwd", "absolute path"),
        ("/srv/objects/acme/report.pdf", "absolute path"),
        ("acme\\..\\other\\x", "backslashes"),
        ("acme/a\x00b", "control characters"),
        ("acme/a\nb", "control characters"),
        ("acme/" + "x" * 1100, "longer than 1024 bytes"),
        ("acme/" + "é" * 510, "longer than 1024 bytes"),
        ("file:///etc/passwd", "outside the object store directory"),
        (f"file://{ROOT}-evil/acme/x", "outside the object store directory"),
        (f"file://{ROOT}/acme/%2e%2e/other/x", "'..' segments"),
        (f"file://{ROOT}/acme/..%2fother/x", "'..' segments"),
        (f"file://{ROOT}/acme/%00x", "control characters"),
        (f"file://{ROOT}/acme/%ff", "not UTF-8"),
        (f"file://{ROOT}/other/x", "in the event's tenant's space"),
        (f"file://evil.example{ROOT}/acme/x", "names no host"),
        (f"file://{ROOT}/acme/x?version=2", "query or fragment"),
        (f"file://{ROOT}/acme/x#frag", "query or fragment"),
        ("http://example.com/acme/x", "scheme 'http' is not read here"),
        ("https://example.com/acme/x", "scheme 'https' is not read here"),
        ("s3://bucket/acme/x", "scheme 's3' is not read here"),
        ("ftp://host/acme/x", "scheme 'ftp' is not read here"),
        ("data:text/plain,acme", "scheme 'data' is not read here"),
        ("C:/acme/x", "scheme 'c' is not read here"),
    ],
)
def test_a_bad_local_reference_is_refused_with_the_reason(reference: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason.replace(".", r"\.").replace("?", r"\?")):
        reference_key(reference, ACME, scheme="file", roots=[ROOT])


@pytest.mark.parametrize(
    ("reference", "outcome"),
    [
        ("acme/report.pdf", ["acme", "report.pdf"]),
        ("s3://docs/isthmus/acme/report.pdf", ["acme", "report.pdf"]),
        ("s3://other-bucket/isthmus/acme/report.pdf", "only the bucket 'docs'"),
        ("s3://docs/elsewhere/acme/report.pdf", "outside the object store prefix"),
        ("s3://docs/isthmus/other/report.pdf", "in the event's tenant's space"),
        ("s3://docs/isthmus/acme/../other/x", "'..' segments"),
        ("file:///srv/objects/acme/x", "scheme 'file' is not read here"),
    ],
)
def test_an_s3_reference_names_only_the_configured_bucket_and_prefix(
    reference: str, outcome: list[str] | str
) -> None:
    if isinstance(outcome, list):
        assert reference_key(reference, ACME, scheme="s3", bucket="docs", prefix="isthmus/") == outcome
        return
    with pytest.raises(InvalidArgument, match=outcome):
        reference_key(reference, ACME, scheme="s3", bucket="docs", prefix="isthmus/")


# --- the local store, for real ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def _put(store: LocalObjectStore, key: str, data: bytes) -> Path:
    path = store.base().joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_the_local_store_reads_a_key_and_its_file_uri(store: LocalObjectStore) -> None:
    path = _put(store, "acme/2026/report.txt", TEXT)
    assert await store.read(ACME, "acme/2026/report.txt", max_bytes=len(TEXT)) == TEXT
    assert await store.read(ACME, path.as_uri(), max_bytes=len(TEXT)) == TEXT
    uri = await store.write(ACME, "../../weird name?.txt", b"written")
    assert uri.startswith(store.base().as_uri() + "/acme/") and uri.endswith("/weird_name_.txt")
    assert await store.read(ACME, uri, max_bytes=100) == b"written"


async def test_a_symbolic_link_is_never_followed(store: LocalObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"outside the root")
    _put(store, "other/private.txt", b"another tenant's document")
    base = store.base()
    (base / "acme").mkdir()
    (base / "acme" / "out.txt").symlink_to(outside)  # a link out of the root
    (base / "acme" / "theirs.txt").symlink_to(base / "other" / "private.txt")  # into another tenant
    (base / "acme" / "folder").symlink_to(base / "other")  # a linked folder on the way
    (base / "acme" / "up").symlink_to(tmp_path)
    for key in ("acme/out.txt", "acme/theirs.txt", "acme/folder/private.txt", "acme/up/secret.txt"):
        with pytest.raises(InvalidArgument, match="symbolic link"):
            await store.read(ACME, key, max_bytes=1000)


async def test_the_root_itself_may_be_reached_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # e.g. /tmp -> /private/tmp
    store = LocalObjectStore(tmp_path / "link")
    _put(store, "acme/a.txt", TEXT)
    assert await store.read(ACME, (tmp_path / "link" / "acme" / "a.txt").as_uri(), max_bytes=100) == TEXT
    assert await store.read(ACME, "acme/a.txt", max_bytes=100) == TEXT


async def test_what_is_not_a_readable_regular_file_is_refused(store: LocalObjectStore) -> None:
    (store.base() / "acme" / "folder").mkdir(parents=True)
    os.mkfifo(store.base() / "acme" / "pipe")  # opening it must not block
    cases = {
        "acme/missing.pdf": "no such object",
        "acme/folder": "not a regular file",
        "acme/pipe": "not a regular file",
        "acme/folder/missing/deeper.pdf": "no such object",
        "acme/" + "n" * 300: "too long",
    }
    for key, reason in cases.items():
        with pytest.raises(InvalidArgument, match=reason):
            await store.read(ACME, key, max_bytes=1000)


async def test_the_size_is_checked_before_the_object_is_read(store: LocalObjectStore) -> None:
    _put(store, "acme/exact.txt", b"x" * 1000)
    assert len(await store.read(ACME, "acme/exact.txt", max_bytes=1000)) == 1000
    with pytest.raises(InvalidArgument, match="1000 bytes, over the limit of 999 bytes"):
        await store.read(ACME, "acme/exact.txt", max_bytes=999)
    # a 1 TiB sparse file: its size comes from the file's metadata (reading it would take hours)
    huge = _put(store, "acme/huge.pdf", b"")
    os.truncate(huge, 1 << 40)
    with pytest.raises(InvalidArgument, match=f"{1 << 40} bytes, over the limit of 1048576 bytes"):
        await store.read(ACME, "acme/huge.pdf", max_bytes=1 << 20)


# --- exactly one of content and content_uri, and the inline limit -----------------------------------


def _event(content: bytes = b"", content_uri: str = "", **metadata: str) -> DocumentSubmitted:
    return DocumentSubmitted(
        tenant_id=ACME,
        idempotency_key="k",
        document_id="doc-1",
        filename="a.txt",
        content=content,
        content_uri=content_uri,
        metadata=metadata,
    )


async def test_an_event_carries_exactly_one_of_content_and_content_uri(store: LocalObjectStore) -> None:
    _put(store, "acme/a.txt", TEXT)
    limits = {"max_inline_bytes": len(TEXT), "max_reference_bytes": 1000}
    assert await submitted_content(_event(content=TEXT), None, store, **limits) == TEXT
    assert await submitted_content(_event(content_uri="acme/a.txt"), ACME, store, **limits) == TEXT
    with pytest.raises(InvalidArgument, match="exactly one of content and content_uri; this one has both"):
        await submitted_content(_event(content=TEXT, content_uri="acme/a.txt"), ACME, store, **limits)
    with pytest.raises(InvalidArgument, match="this one has neither"):
        await submitted_content(_event(), ACME, store, **limits)
    with pytest.raises(
        InvalidArgument, match=r"over the limit of 70 bytes \(\[ingestion\] max_inline_bytes\)"
    ):
        await submitted_content(
            _event(content=TEXT + b"!"), None, store, **(limits | {"max_inline_bytes": 70})
        )
    with pytest.raises(
        InvalidArgument, match=r"over the limit of 10 bytes \(\[ingestion\] max_upload_bytes\)"
    ):
        await submitted_content(
            _event(content_uri="acme/a.txt"), ACME, store, **(limits | {"max_reference_bytes": 10})
        )


def test_the_inline_limit_keeps_an_event_below_the_bus_message_limit() -> None:
    largest = _event(content=b"\xff" * MAX_INLINE_BYTES_CEILING, k="v" * 100_000)
    assert len(largest.model_dump_json().encode()) < MAX_MESSAGE_BYTES
    assert (
        IngestionSettings.model_validate({}).max_inline_bytes
        == DEFAULT_MAX_INLINE_BYTES
        <= MAX_INLINE_BYTES_CEILING
    )
    with pytest.raises(ValidationError, match="max_inline_bytes"):
        IngestionSettings.model_validate({"max_inline_bytes": MAX_INLINE_BYTES_CEILING + 1})
    with pytest.raises(ValidationError, match="needs object_store_s3_bucket"):
        IngestionSettings.model_validate({"object_store": "s3"})
    for bad in ("isthmus", "/isthmus/", "a//b/"):
        with pytest.raises(ValidationError, match="prefix"):
            IngestionSettings.model_validate({"object_store_s3_prefix": bad})
    assert IngestionSettings.model_validate(
        {"object_store": "s3", "object_store_s3_bucket": "b", "object_store_s3_prefix": "a/b/"}
    )


# --- the service and the bus --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DocumentRegistry]:
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


class _Down:
    """An object store that cannot be reached."""

    scheme = "file"
    reads = 0

    def describe(self) -> str:
        return "down"

    async def read(self, tenant: TenantId, reference: str, *, max_bytes: int) -> bytes:
        self.reads += 1
        raise ObjectStoreUnavailable(
            f"content_uri {reference!r}: the object store failed: connection refused"
        )

    async def write(self, tenant: TenantId, filename: str, data: bytes) -> str:
        raise AssertionError("not called")


def _core(
    registry: DocumentRegistry, chunker: Chunker, store: object, published: list[ChunksCreated]
) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    return Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME, OTHER]),
        publish,
        max_bytes=10_000,
        chunks_per_event=8,
        objects=store,  # type: ignore[arg-type]
        max_inline_bytes=200,
    )


def _submitted(document_id: str, content: bytes = b"", content_uri: str = "") -> DocumentSubmitted:
    return DocumentSubmitted(
        tenant_id=ACME,
        idempotency_key=document_id,
        document_id=document_id,
        filename="a.txt",
        content=content,
        content_uri=content_uri,
    )


async def test_a_document_sent_by_reference_is_ingested(
    store: LocalObjectStore, registry: DocumentRegistry, chunker: Chunker
) -> None:
    published: list[ChunksCreated] = []
    core = _core(registry, chunker, store, published)
    _put(store, "acme/gliders.txt", TEXT * 50)  # over the inline limit, under max_upload_bytes
    await core.on_document_submitted(_submitted("gliders", content_uri="acme/gliders.txt"))
    record = registry.get(ACME, "gliders")
    assert record is not None and record.status == Status.CHUNKED and record.size_bytes == len(TEXT) * 50
    assert published and all(ev.document_id == "gliders" for ev in published)
    assert "thermals" in published[0].chunks[0].text


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"content_uri": "other/gliders.txt"}, "in the event's tenant's space"),
        ({"content_uri": "acme/../other/gliders.txt"}, "'..' segments"),
        ({"content_uri": "file:///etc/passwd"}, "outside the object store directory"),
        ({"content_uri": "https://example.com/x.pdf"}, "scheme 'https'"),
        ({"content_uri": "acme/missing.txt"}, "no such object"),
        ({"content_uri": "acme/big.txt"}, "over the limit of 10000 bytes"),
        ({"content": TEXT * 3}, "max_inline_bytes"),
        ({"content": TEXT, "content_uri": "acme/gliders.txt"}, "has both"),
        ({}, "has neither"),
    ],
)
async def test_a_bad_submission_is_refused_and_recorded_failed_with_the_reason(
    store: LocalObjectStore,
    registry: DocumentRegistry,
    chunker: Chunker,
    fields: dict[str, Any],
    reason: str,
) -> None:
    published: list[ChunksCreated] = []
    core = _core(registry, chunker, store, published)
    _put(store, "other/gliders.txt", TEXT)
    _put(store, "acme/big.txt", b"x" * 10_001)
    with pytest.raises(InvalidArgument, match=reason) as refused:
        await core.on_document_submitted(_submitted("doc-1", **fields))
    assert refused.value.permanent  # the bus dead-letters it at once
    record = registry.get(ACME, "doc-1")
    assert (
        record is not None and record.status == Status.FAILED and reason.strip("'") in record.failure_reason
    )
    assert published == []


async def test_a_reference_of_an_unknown_tenant_is_not_read(
    registry: DocumentRegistry, chunker: Chunker
) -> None:
    down = _Down()
    core = _core(registry, chunker, down, [])
    ev = DocumentSubmitted(
        tenant_id="nobody", idempotency_key="k", document_id="d", filename="a.txt", content_uri="nobody/a.txt"
    )
    with pytest.raises(NotFound):
        await core.on_document_submitted(ev)
    assert down.reads == 0 and registry.get(TenantId("nobody"), "d") is None


async def test_an_object_store_outage_is_retried_then_dead_lettered_and_recorded_failed(
    registry: DocumentRegistry, chunker: Chunker
) -> None:
    down = _Down()
    core = _core(registry, chunker, down, [])
    ev = _submitted("doc-2", content_uri="acme/a.txt")
    message = Message(topics.DOCUMENTS_SUBMITTED.name, "acme/doc-2", ev.model_dump_json().encode(), {}, 0, 7)
    dead: list[tuple[str, bytes, dict[str, str]]] = []

    async def dead_letter(topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        dead.append((topic, value, headers))

    async def handler(m: Message) -> None:
        await core.on_document_submitted(DocumentSubmitted.model_validate_json(m.value))

    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0, max_backoff_s=0)
    outcome = await deliver(handler, message, policy, group="ingestion", dead_letter=dead_letter)
    assert not isinstance(ObjectStoreUnavailable("x"), Unavailable)  # Unavailable is waited out forever
    assert outcome == Outcome.DEAD_LETTERED and down.reads == 3  # retried, then given up
    [(topic, value, headers)] = dead
    assert topic == topics.DOCUMENTS_SUBMITTED.dlq and value == message.value  # the original payload
    assert headers[H_ERROR_CLASS] == "ObjectStoreUnavailable"
    assert "connection refused" in headers[H_ERROR_MESSAGE]
    assert registry.get(ACME, "doc-2") is None  # not a refusal: recorded when the dead letter comes back
    await core.on_submission_dead_letter(Message(topic, "acme/doc-2", value, headers, 0, 0))
    record = registry.get(ACME, "doc-2")
    assert record is not None and record.status == Status.FAILED
    assert "ObjectStoreUnavailable" in record.failure_reason and "connection refused" in record.failure_reason


async def test_a_bad_reference_is_dead_lettered_at_once(
    store: LocalObjectStore, registry: DocumentRegistry, chunker: Chunker
) -> None:
    core = _core(registry, chunker, store, [])
    ev = _submitted("doc-3", content_uri="acme/../../etc/passwd")
    message = Message(topics.DOCUMENTS_SUBMITTED.name, "acme/doc-3", ev.model_dump_json().encode(), {}, 0, 8)
    dead: list[dict[str, str]] = []
    attempts = 0

    async def dead_letter(topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        dead.append(headers)

    async def handler(m: Message) -> None:
        nonlocal attempts
        attempts += 1
        await core.on_document_submitted(DocumentSubmitted.model_validate_json(m.value))

    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0, max_backoff_s=0)
    assert (
        await deliver(handler, message, policy, group="ingestion", dead_letter=dead_letter)
        == Outcome.DEAD_LETTERED
    )
    assert attempts == 1 and dead[0][H_ERROR_CLASS] == "InvalidArgument"
    assert "'..' segments" in dead[0][H_ERROR_MESSAGE]


def test_the_settings_choose_the_store(tmp_path: Path) -> None:
    local = object_store(IngestionSettings.model_validate({}), tmp_path)
    assert (
        isinstance(local, LocalObjectStore) and local.base() == (tmp_path / "ingestion" / "objects").resolve()
    )
    chosen = object_store(
        IngestionSettings.model_validate({"object_store_dir": tmp_path / "shared"}), tmp_path
    )
    assert isinstance(chosen, LocalObjectStore) and chosen.base() == (tmp_path / "shared").resolve()
    s3 = object_store(
        IngestionSettings.model_validate(
            {
                "object_store": "s3",
                "object_store_s3_bucket": "docs",
                "object_store_s3_prefix": "isthmus/",
                "object_store_s3_endpoint_url": "http://127.0.0.1:9000",
            }
        ),
        tmp_path,
    )
    assert isinstance(s3, S3ObjectStore) and (s3.bucket, s3.prefix) == ("docs", "isthmus/")
    assert s3.describe() == "S3 bucket 'docs' at http://127.0.0.1:9000, prefix 'isthmus/'"
