"""`WatchDocuments` on the real `all` target: the status changes of a tenant's documents as the ingestion
service stores them — the current state first, then each change — instead of polling `GetDocument`."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted

from .conftest import platform, upload, wait_indexed

pytestmark = pytest.mark.slow

TEXT = b"The Wright brothers flew the first powered aircraft at Kitty Hawk in December 1903."
ORDER = ["received", "chunked", "embedded", "indexed"]


def _status(d: ingestion_pb2.Document) -> str:
    return ingestion_pb2.DocumentStatus.Name(d.status).removeprefix("DOCUMENT_STATUS_").lower()


async def test_a_watch_sees_an_upload_through_to_indexed_and_a_failure_with_its_reason(
    tmp_path: Path,
) -> None:
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id="club")
        )
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
        first = await upload(ch, "club", "first.txt", TEXT, document_id="first")
        await wait_indexed(ch, "club", [first.document_id])

        # "late" and "bad" do not exist yet: the watch waits for them; it ends once all three are terminal
        call = ingestion.WatchDocuments(
            ingestion_pb2.WatchDocumentsRequest(
                tenant_id="club", document_ids=["first", "late", "bad"], until_terminal=True
            ),
            timeout=120,
        )
        events = call.__aiter__()
        opened = await anext(events)  # the current state: the watch is in place before the changes below
        assert (
            opened.initial
            and opened.document.document_id == "first"
            and _status(opened.document) == "indexed"
        )

        late = await upload(
            ch, "club", "late.md", b"# Gliders\n\nGliders soar in thermals.\n", document_id="late"
        )
        assert late.document_id == "late"
        await publish_event(
            rt.bus,
            topics.DOCUMENTS_SUBMITTED,
            DocumentSubmitted(
                tenant_id="club",
                idempotency_key="k-bad",
                document_id="bad",
                filename="bad.pdf",
                content=b"not a pdf",
            ),
        )
        seen: dict[str, list[ingestion_pb2.Document]] = {}
        async for ev in events:  # ends by itself: every watched document reached indexed or failed
            assert not ev.initial
            seen.setdefault(ev.document.document_id, []).append(ev.document)

        assert set(seen) == {"late", "bad"}
        statuses = [_status(d) for d in seen["late"]]
        # every stored state in order; "embedded" may be overtaken by "indexed" (two independent consumers)
        assert statuses[:2] == ["received", "chunked"] and statuses[-1] == "indexed"
        assert statuses == sorted(set(statuses), key=ORDER.index)
        assert seen["late"][-1].chunk_count == late.chunk_count
        [bad] = seen["bad"]
        assert _status(bad) == "failed" and "pdf" in bad.failure_reason.lower()
        assert await call.code() == grpc.StatusCode.OK


async def test_a_watch_refuses_bad_requests_at_the_edge(tmp_path: Path) -> None:
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id="club")
        )
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
        cases = [
            (ingestion_pb2.WatchDocumentsRequest(tenant_id="nobody"), grpc.StatusCode.NOT_FOUND),
            (ingestion_pb2.WatchDocumentsRequest(tenant_id="../etc"), grpc.StatusCode.INVALID_ARGUMENT),
            (
                ingestion_pb2.WatchDocumentsRequest(tenant_id="club", document_ids=["../x"]),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ]
        for request, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in ingestion.WatchDocuments(request, timeout=30):
                    pass
            assert caught.value.code() == code, request
        # a tenant with nothing in flight: until_terminal ends the stream at once
        done = [
            ev
            async for ev in ingestion.WatchDocuments(
                ingestion_pb2.WatchDocumentsRequest(tenant_id="club", until_terminal=True), timeout=30
            )
        ]
        assert done == []
