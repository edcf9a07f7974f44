"""gRPC edge of ingestion."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as pb_grpc
from isthmus_core.contracts.ids import parse_document_id, parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_ingestion.erasure import Receipt
from isthmus_ingestion.registry import DocumentRecord, Status, StatusChange
from isthmus_ingestion.service import PARENT_KEY, Ingestion
from isthmus_ingestion.watch import DocumentWatch

STATUS_TO_PB = {
    Status.RECEIVED: pb.DOCUMENT_STATUS_RECEIVED,
    Status.CHUNKED: pb.DOCUMENT_STATUS_CHUNKED,
    Status.EMBEDDED: pb.DOCUMENT_STATUS_EMBEDDED,
    Status.INDEXED: pb.DOCUMENT_STATUS_INDEXED,
    Status.FAILED: pb.DOCUMENT_STATUS_FAILED,
    Status.QUARANTINED: pb.DOCUMENT_STATUS_QUARANTINED,
    Status.DELETED: pb.DOCUMENT_STATUS_DELETED,
}
PB_TO_STATUS = {v: k for k, v in STATUS_TO_PB.items()}
#: initial-metadata key WatchDocuments sends once it has accepted the request (valid ids, known tenant);
#: the current state follows. An open watch may then stay silent: a caller tells it from a refusal by this
WATCH_OPEN = "isthmus-watch-open"


def _ts(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


STEP_STATUS_TO_PB = {
    "pending": pb.ERASURE_STEP_STATUS_PENDING,
    "done": pb.ERASURE_STEP_STATUS_DONE,
    "failed": pb.ERASURE_STEP_STATUS_FAILED,
}


def receipt_pb(r: Receipt) -> pb.ErasureReceipt:
    return pb.ErasureReceipt(
        erasure_id=r.erasure_id,
        tenant_id=r.tenant_id,
        requested_by=r.requested_by,
        requested_at=_ts(r.requested_at),
        document_ids=list(r.document_ids),
        steps=[
            pb.ErasureStep(
                place=s.place,
                region=s.region,
                status=STEP_STATUS_TO_PB[s.status],
                count=s.count,
                detail=s.detail,
                completed_at=_ts(s.completed_at) if s.completed_at is not None else None,
            )
            for s in r.steps
        ],
        complete=r.complete,
        target=r.target,
        reason=r.reason,
    )


def document_pb(d: DocumentRecord, history: Sequence[StatusChange] = ()) -> pb.Document:
    """``history``: the document's status changes (GetDocument and DeleteDocument send them; a listing
    or a watch does not)."""
    return pb.Document(
        tenant_id=d.tenant_id,
        document_id=d.document_id,
        filename=d.filename,
        content_type=d.content_type,
        content_hash=d.content_hash,
        status=STATUS_TO_PB[d.status],
        failure_reason=d.failure_reason,
        chunk_count=d.chunk_count,
        version=d.version,
        created_at=_ts(d.created_at),
        updated_at=_ts(d.updated_at),
        metadata=d.metadata,
        quarantined_chunks=d.quarantined_chunks,
        flagged_chunks=d.flagged_chunks,
        redacted_chunks=d.redacted_chunks,
        quarantine_reason=d.quarantine_reason,
        parent_document_id=d.metadata.get(PARENT_KEY, ""),
        chunking=d.chunking,
        history=[
            pb.StatusChange(status=STATUS_TO_PB[h.status], at=_ts(h.at), version=h.version, detail=h.detail)
            for h in history
        ],
    )


class IngestionServicer(pb_grpc.IngestionServiceServicer):
    def __init__(self, core: Ingestion, watch: DocumentWatch) -> None:
        self._core = core
        self._watch = watch

    async def Upload(
        self, request_iterator: AsyncIterator[pb.UploadRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadResponse:
        header: pb.UploadHeader | None = None
        parts: list[bytes] = []
        size = 0
        async for req in request_iterator:
            kind = req.WhichOneof("part")
            if kind == "header":
                if header is not None:
                    raise InvalidArgument("the upload stream has two headers; send exactly one, first")
                header = req.header
                await self._core.check_tenant(header.tenant_id)  # fail fast, before the bytes
                if header.document_id:
                    parse_document_id(header.document_id)
            elif kind == "data":
                if header is None:
                    raise InvalidArgument("the first message of an upload must be the header")
                size += len(req.data)
                self._core.check_size(size)  # stop reading as soon as the limit is crossed
                parts.append(req.data)
        if header is None:
            raise InvalidArgument("empty upload stream: send a header, then the file's bytes")
        result = await self._core.ingest(
            header.tenant_id,
            header.filename,
            b"".join(parts),
            content_type=header.content_type or None,
            document_id=header.document_id or None,
            metadata=dict(header.metadata),
        )
        return pb.UploadResponse(
            document_id=result.document_id,
            status=STATUS_TO_PB[result.status],
            content_hash=result.content_hash,
            chunk_count=result.chunk_count,
            duplicate=result.duplicate,
            duplicate_of=result.document_id if result.duplicate else "",
            quarantined_chunks=result.quarantined_chunks,
            flagged_chunks=result.flagged_chunks,
            redacted_chunks=result.redacted_chunks,
            quarantine_reason=result.quarantine_reason,
            child_document_ids=list(result.child_document_ids),
        )

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        d = await self._core.get_document(request.tenant_id, request.document_id)
        return document_pb(d, self._core.registry.history(d.tenant_id, d.document_id))

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        d = await self._core.delete_document(request.tenant_id, request.document_id, reason=request.reason)
        return document_pb(d, self._core.registry.history(d.tenant_id, d.document_id))

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDocumentsResponse:
        docs = await self._core.list_documents(request.tenant_id, PB_TO_STATUS.get(request.status))
        return pb.ListDocumentsResponse(documents=[document_pb(d) for d in docs])

    async def WatchDocuments(
        self, request: pb.WatchDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DocumentEvent]:
        tenant = parse_tenant_id(request.tenant_id)
        ids = [parse_document_id(d, "document_ids") for d in request.document_ids]
        await self._core.check_tenant(tenant)
        await context.send_initial_metadata(((WATCH_OPEN, "1"),))
        updates = self._watch.stream(
            self._core.registry,
            tenant,
            ids,
            until_terminal=request.until_terminal,
        )
        async for u in updates:
            yield pb.DocumentEvent(document=document_pb(u.document), initial=u.initial)

    async def Erase(self, request: pb.EraseRequest, context: grpc.aio.ServicerContext) -> pb.ErasureReceipt:
        target = request.WhichOneof("target")
        receipt = await self._core.erase(
            request.tenant_id,
            document_ids=list(request.documents.ids) if target == "documents" else None,
            data_subject=request.data_subject if target == "data_subject" else None,
            whole_tenant=target == "whole_tenant" and request.whole_tenant,
            reason=request.reason,
        )
        return receipt_pb(receipt)

    async def GetDocumentText(
        self, request: pb.GetDocumentTextRequest, context: grpc.aio.ServicerContext
    ) -> pb.DocumentText:
        record, stored, start, end = await self._core.get_document_text(
            request.tenant_id, request.document_id, request.start, request.end
        )
        return pb.DocumentText(
            document_id=record.document_id,
            version=stored.version,
            content_type=stored.content_type,
            title=stored.title,
            text=stored.text[start:end],
            start=start,
            end=end,
            length=len(stored.text),
        )

    async def GetErasure(
        self, request: pb.GetErasureRequest, context: grpc.aio.ServicerContext
    ) -> pb.ErasureReceipt:
        return receipt_pb(await self._core.get_erasure(request.tenant_id, request.erasure_id))
