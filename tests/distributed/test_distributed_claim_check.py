"""Documents by reference (claim check) on a real Kafka broker, against the all-in-one platform on Kafka
(``isthmus run --target all`` with ``bus = kafka``): a 20 MB PDF written to the object store and
submitted by reference (``isthmus submit --by-reference``) is indexed; an oversize inline event and bad
references land on ``isthmus.documents.submitted.v1.dlq`` with their original payload and the reason,
and the documents they name are recorded failed with that reason."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject, StreamObject

from isthmus.ingestion.v1 import ingestion_pb2 as ing
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ing_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.testing.client import run_cli, wait_indexed
from isthmus_ingestion.objects import DEFAULT_MAX_INLINE_BYTES

from .conftest import Cluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "claim-check"
PDF_BYTES = 20 * 1024 * 1024
PAGES = [
    "Sailplanes climb in thermals, columns of rising warm air over sunny fields.\n"
    "A glider pilot circles inside the thermal to gain height before gliding on.",
    "Ridge lift forms where wind meets a slope and is deflected upwards.\n"
    "Wave lift reaches far higher, in the lee of mountain ranges.",
]


def make_pdf(pages: list[str], image_bytes: int) -> bytes:
    """A PDF made with pypdf's writer: one page of text each, the first with a grey-scale image of
    ``image_bytes`` random (incompressible) pixels — most of a large real PDF is images."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    side = int(image_bytes**0.5) + 1
    image = StreamObject()
    image.set_data(os.urandom(side * side))
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(side),
            NameObject("/Height"): NumberObject(side),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    image_ref = writer._add_object(image)
    for i, text in enumerate(pages):
        page = writer.add_blank_page(612, 792)
        resources = {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        ops = "BT /F1 11 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in text.split("\n")) + " ET"
        if i == 0:
            resources[NameObject("/XObject")] = DictionaryObject({NameObject("/Im1"): image_ref})
            ops = "q 468 0 0 300 72 300 cm /Im1 Do Q " + ops
        page[NameObject("/Resources")] = DictionaryObject(resources)
        content = DecodedStreamObject()
        content.set_data(ops.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("claim-check")
    objects = base / "objects"
    env = {"ISTHMUS_INGESTION_OBJECT_STORE_DIR": str(objects)}
    cluster = Cluster(base, kafka_bootstrap, env, targets=("all",))
    try:
        cluster.start("all")
        await cluster.wait_healthy("all")
        async with grpc.aio.insecure_channel(cluster.endpoints["all"]) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
            )
        yield {"cluster": cluster, "objects": objects, "env": env, "base": base}
    finally:
        cluster.stop_all()


async def test_a_20_mb_pdf_submitted_by_reference_is_indexed(platform: dict[str, Any]) -> None:
    c: Cluster = platform["cluster"]
    pdf = make_pdf(PAGES, PDF_BYTES)
    assert len(pdf) > PDF_BYTES > 2 * 8 * 1024 * 1024  # far beyond what one Kafka message may carry
    path = platform["base"] / "glider-handbook.pdf"
    path.write_bytes(pdf)
    code, out, err = await run_cli(
        "submit",
        str(path),
        "--tenant",
        TENANT,
        "--by-reference",
        "--document-id",
        "glider-handbook",
        "--bootstrap",
        c.bootstrap,
        "--json",
        env={**platform["env"], "ISTHMUS_DATA_DIR": str(platform["base"] / "cli")},
        timeout_s=120,
    )
    assert code == 0, err
    [row] = json.loads(out)
    assert row["status"] == "submitted" and not row["inline"]
    assert row["content_uri"].startswith((platform["objects"] / TENANT).resolve().as_uri() + "/")
    async with grpc.aio.insecure_channel(c.endpoints["all"]) as ch:
        await wait_indexed(ch, TENANT, ["glider-handbook"], within_s=240)
        doc = await ing_grpc.IngestionServiceStub(ch).GetDocument(
            ing.GetDocumentRequest(tenant_id=TENANT, document_id="glider-handbook"), timeout=30
        )
        assert doc.filename == "glider-handbook.pdf" and doc.chunk_count >= 1
        hits = await retrieval_pb2_grpc.RetrievalServiceStub(ch).Search(
            retrieval_pb2.SearchRequest(tenant_id=TENANT, query="How high does wave lift reach?", top_k=3),
            timeout=60,
        )
    assert hits.hits[0].context.document_id == "glider-handbook"
    assert "Wave lift reaches far higher" in " ".join(h.context.text for h in hits.hits)


async def _produce(bootstrap: str, values: list[tuple[str, bytes]]) -> None:
    """Raw records as any Kafka producer sends them (the bus's 8 MiB limit, not the client's 1 MiB)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=9 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topics.DOCUMENTS_SUBMITTED.name, value, key=key.encode())
    finally:
        await producer.stop()


def _event(document_id: str, **fields: Any) -> bytes:
    event = DocumentSubmitted(
        tenant_id=TENANT, idempotency_key=document_id, document_id=document_id, filename="doc.pdf", **fields
    )
    return event.model_dump_json().encode()


async def test_oversize_inline_events_and_bad_references_are_dead_lettered_with_the_reason(
    platform: dict[str, Any],
) -> None:
    c: Cluster = platform["cluster"]
    objects: Path = platform["objects"]
    (objects / TENANT).mkdir(parents=True, exist_ok=True)
    secret = platform["base"] / "secret.pdf"
    secret.write_bytes(make_pdf(["Outside the object store."], 10))
    (objects / TENANT / "escape.pdf").symlink_to(secret)  # a link out of the store
    (objects / "other-tenant").mkdir(exist_ok=True)
    (objects / "other-tenant" / "theirs.pdf").write_bytes(make_pdf(["Another tenant's document."], 10))
    cases = {
        # over max_inline_bytes (4 MiB) but within the bus's 8 MiB message limit: the broker takes it
        "oversize-inline": (
            _event("oversize-inline", content=b"%PDF" + b"x" * DEFAULT_MAX_INLINE_BYTES),
            "over the limit of 4194304 bytes ([ingestion] max_inline_bytes)",
        ),
        "absolute-path": (
            _event("absolute-path", content_uri="file:///etc/passwd"),
            "outside the object store",
        ),
        "traversal": (
            _event("traversal", content_uri=f"{TENANT}/../other-tenant/theirs.pdf"),
            "'..' segments are not allowed",
        ),
        "other-tenant": (
            _event("other-tenant", content_uri="other-tenant/theirs.pdf"),
            "must be in the event's tenant's space",
        ),
        "symlink": (_event("symlink", content_uri=f"{TENANT}/escape.pdf"), "symbolic link is not followed"),
        "other-scheme": (
            _event("other-scheme", content_uri="https://example.com/doc.pdf"),
            "the scheme 'https' is not read here",
        ),
        "missing": (_event("missing", content_uri=f"{TENANT}/nothing-here.pdf"), "no such object"),
        "both": (
            _event("both", content=b"inline text", content_uri=f"{TENANT}/nothing-here.pdf"),
            "exactly one of content and content_uri; this one has both",
        ),
    }
    await _produce(c.bootstrap, [(f"{TENANT}/{doc}", value) for doc, (value, _) in cases.items()])
    found: dict[str, Any] = {}
    for _ in range(240):
        messages, _ = await read_topic(c.bootstrap, topics.DOCUMENTS_SUBMITTED.dlq, key_prefix=f"{TENANT}/")
        found = {json.loads(m.value)["document_id"]: m for m in messages}
        if set(cases) <= set(found):
            break
        await asyncio.sleep(0.5)
    assert set(cases) <= set(found), sorted(found)
    async with grpc.aio.insecure_channel(c.endpoints["all"]) as ch:
        stub = ing_grpc.IngestionServiceStub(ch)
        for doc, (value, reason) in cases.items():
            dead = found[doc]
            assert dead.value == value  # the original payload, byte for byte
            assert dead.headers["isthmus-error-class"] == "InvalidArgument", doc
            assert reason in dead.headers["isthmus-error-message"], (
                doc,
                dead.headers["isthmus-error-message"],
            )
            assert dead.headers["isthmus-attempts"] == "1"  # dead-lettered at once, no retries
            record = await stub.GetDocument(
                ing.GetDocumentRequest(tenant_id=TENANT, document_id=doc), timeout=30
            )
            assert record.status == ing.DOCUMENT_STATUS_FAILED and reason in record.failure_reason, doc
