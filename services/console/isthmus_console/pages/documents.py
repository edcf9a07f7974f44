"""The documents page: a tenant's documents over the ingestion service's public gRPC API.

Upload (the browser posts the files; each is streamed into ``Upload`` in parts), the list with each
document's status kept live by ``WatchDocuments`` (Server-Sent Events: the table is re-rendered from the
watch's state, and each change is said in an aria-live region), a document's details (``GetDocument``,
its history, ``GetDocumentText``), and deletion and erasure behind a confirmation step. Buttons a viewer
may not use are not shown; the services check every call (the viewer's own token is forwarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sse_starlette import EventSourceResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_console.backend import RpcFailure
from isthmus_console.viewer import Viewer
from isthmus_console.web import (
    bad_request,
    console_of,
    current_tenant,
    fragment,
    http_status,
    page,
    remember_tenant,
    render,
    rpc_error,
)
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.ids import parse_document_id, parse_tenant_id
from isthmus_core.errors import InvalidArgument

#: files in one upload request (each is a document of its own)
MAX_FILES = 10
#: what a multipart body carries beyond the files' bytes (boundaries, part headers, the tenant field)
FORM_OVERHEAD = 64 * 1024
#: the size of the parts a file is streamed into Upload in
PART_BYTES = 64 * 1024
#: how long a burst of watch events is collected before the table is re-rendered once
COALESCE_S = 0.15
#: the parsed text shown on the detail page (the rest is said to be there)
TEXT_SHOWN = 200_000
#: the browser reconnects this long after a watch ended (ms; the sse extension backs off further)
RETRY_MS = 3000
_ERASURE_ID = re.compile(r"[0-9a-f]{32}")
#: the statuses shown, with their badge class: done (ok), in flight (warn), stopped (bad), gone (muted)
STATUS_CLASS: Mapping[str, str] = {
    "received": "warn",
    "chunked": "warn",
    "embedded": "warn",
    "indexed": "ok",
    "failed": "bad",
    "quarantined": "bad",
    "deleted": "muted",
    "unspecified": "muted",
}
#: statuses after which nothing more happens to a version (the announcement says so)
TERMINAL = frozenset({"indexed", "failed", "quarantined", "deleted"})


def status_name(status: int) -> str:
    name: str = pb.DocumentStatus.Name(status)
    return name.removeprefix("DOCUMENT_STATUS_").lower()


def when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class DocView:
    """A document as the page shows it."""

    document_id: str
    filename: str
    status: str
    badge: str
    reason: str
    chunks: int
    version: int
    created: str
    updated: str
    created_key: float
    doc: pb.Document

    @classmethod
    def of(cls, d: pb.Document) -> DocView:
        status = status_name(d.status)
        reason = d.failure_reason or d.quarantine_reason
        return cls(
            document_id=d.document_id,
            filename=d.filename,
            status=status,
            badge=STATUS_CLASS.get(status, "muted"),
            reason=reason,
            chunks=d.chunk_count,
            version=d.version,
            created=when(d.created_at),
            updated=when(d.updated_at),
            created_key=d.created_at.seconds + d.created_at.nanos / 1e9,
            doc=d,
        )


def ordered(docs: Mapping[str, pb.Document]) -> list[DocView]:
    """Newest first (by creation), then by id."""
    views = [DocView.of(d) for d in docs.values()]
    views.sort(key=lambda v: v.document_id)
    views.sort(key=lambda v: v.created_key, reverse=True)
    return views


def permissions(viewer: Viewer, tenant: str) -> dict[str, bool]:
    return {
        "can_write": bool(tenant) and viewer.can(Permission.DOCUMENTS_WRITE, tenant),
        "can_erase": bool(tenant) and viewer.can(Permission.ERASE, tenant),
    }


def _tenant_param(request: Request, form: Mapping[str, Any] | None = None) -> str:
    """The ``tenant`` of the request (form field or query), parsed: InvalidArgument when bad or absent."""
    raw = form.get("tenant") if form is not None else request.query_params.get("tenant")
    if not isinstance(raw, str) or not raw:
        raw = current_tenant(request) or None
    tenant = str(parse_tenant_id(raw, "tenant"))
    remember_tenant(request, tenant)
    return tenant


def _document_param(source: Mapping[str, Any]) -> str:
    return str(parse_document_id(source.get("document"), "document"))


def failure_response(request: Request, failure: RpcFailure, what: str, status: int) -> Response:
    return render(request, "_error.html", {"failure": failure, "what": what}, status)


# -- the page ----------------------------------------------------------------------------------------
async def _tenants(request: Request, viewer: Viewer) -> tuple[list[str], RpcFailure | None]:
    backend = console_of(request).backend
    try:
        reply = await backend.retrieval.ListTenants(
            retrieval_pb2.ListTenantsRequest(), metadata=backend.metadata(viewer), timeout=backend.timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        return [], RpcFailure.of(exc)
    return sorted(t.tenant_id for t in reply.tenants), None


async def _list(request: Request, viewer: Viewer, tenant: str) -> dict[str, pb.Document]:
    backend = console_of(request).backend
    reply = await backend.ingestion.ListDocuments(
        pb.ListDocumentsRequest(tenant_id=tenant),
        metadata=backend.metadata(viewer),
        timeout=backend.timeout_s,
    )
    return {d.document_id: d for d in reply.documents}


@page
async def index(request: Request, viewer: Viewer) -> Response:
    raw = request.query_params.get("tenant")
    if raw is not None and raw != "":
        try:
            parse_tenant_id(raw, "tenant")
        except InvalidArgument as exc:
            return render(
                request, "documents/index.html", _page_context(request, viewer, "", [], None, exc.reason), 400
            )
    tenants, tenants_failure = await _tenants(request, viewer)
    # the one asked for; else the remembered one while it is still among the viewer's; else the first
    tenant = raw or current_tenant(request)
    if not raw and tenants and tenant not in tenants:
        tenant = tenants[0]
    tenant = tenant or (tenants[0] if tenants else "")
    remember_tenant(request, tenant)
    ctx = _page_context(request, viewer, tenant, tenants, tenants_failure, "")
    status = 200
    if tenant:
        try:
            ctx["rows"] = ordered(await _list(request, viewer, tenant))
            ctx["listed"] = True
        except grpc.aio.AioRpcError as exc:
            failure = RpcFailure.of(exc)
            ctx["list_failure"] = failure
            status = http_status(failure.code)
    return render(request, "documents/index.html", ctx, status)


def _page_context(
    request: Request,
    viewer: Viewer,
    tenant: str,
    tenants: list[str],
    tenants_failure: RpcFailure | None,
    bad: str,
) -> dict[str, Any]:
    return {
        "max_upload_bytes": console_of(request).settings.max_upload_bytes,
        "tenant": tenant,
        "tenants": tenants if tenant in tenants or not tenant else [tenant, *tenants],
        "tenants_failure": tenants_failure,
        "bad_input": bad,
        "rows": [],
        "listed": False,
        "list_failure": None,
        **permissions(viewer, tenant),
    }


@fragment
async def rows(request: Request, viewer: Viewer) -> Response:
    """The table's rows (after a deletion or an erasure, and for a client without the stream)."""
    try:
        tenant = _tenant_param(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    try:
        docs = await _list(request, viewer, tenant)
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, "Listing the documents failed")
    return render(request, "documents/_rows.html", {"rows": ordered(docs), **permissions(viewer, tenant)})


# -- upload ------------------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


def _limited(request: Request, limit: int) -> Request:
    """``request`` whose body stops being read (``_TooLarge``) past ``limit`` bytes."""
    received = 0

    async def receive() -> Any:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
        return message

    return Request(request.scope, receive)


@dataclass(frozen=True)
class UploadOutcome:
    filename: str
    reply: pb.UploadResponse | None = None
    failure: RpcFailure | None = None
    status: str = ""


def _too_large(request: Request, limit: int, what: str) -> Response:
    reason = (
        f"{what} is larger than the console accepts: at most {limit} bytes per document "
        "(console.max_upload_bytes)"
    )
    return failure_response(request, RpcFailure("RESOURCE_EXHAUSTED", reason), "Upload refused", 413)


async def _send(request: Request, viewer: Viewer, tenant: str, file: UploadFile) -> UploadOutcome:
    backend = console_of(request).backend
    filename = file.filename or "upload"

    async def parts() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(tenant_id=tenant, filename=filename))
        while chunk := await file.read(PART_BYTES):
            yield pb.UploadRequest(data=chunk)

    try:
        reply = await backend.ingestion.Upload(
            parts(), metadata=backend.metadata(viewer), timeout=max(backend.timeout_s, 120.0)
        )
    except grpc.aio.AioRpcError as exc:
        return UploadOutcome(filename, failure=RpcFailure.of(exc))
    return UploadOutcome(filename, reply=reply, status=status_name(reply.status))


@fragment
async def upload(request: Request, viewer: Viewer) -> Response:
    limit = console_of(request).settings.max_upload_bytes
    body_limit = limit * MAX_FILES + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        return _too_large(request, limit, f"the upload ({declared} bytes)")
    try:
        form = await _limited(request, body_limit).form(max_files=MAX_FILES, max_fields=10)
    except _TooLarge:
        return _too_large(request, limit, "the upload")
    except HTTPException as exc:  # a malformed body, too many files
        return bad_request(request, f"the upload form could not be read: {exc.detail}")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(form.close)
        try:
            tenant = _tenant_param(request, form)
        except InvalidArgument as exc:
            return bad_request(request, exc.reason)
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            return bad_request(request, "choose at least one file to upload")
        for f in files:
            if f.size is not None and f.size > limit:
                return _too_large(request, limit, f"{f.filename} ({f.size} bytes)")
        outcomes = [await _send(request, viewer, tenant, f) for f in files]
    failed = [o.failure for o in outcomes if o.failure is not None]
    status = 200
    if failed and len(failed) == len(outcomes):  # nothing went in: the first failure's status
        too_large = failed[0].code == "RESOURCE_EXHAUSTED" and "exceeds the limit" in failed[0].reason
        status = 413 if too_large else http_status(failed[0].code)
    response = render(
        request, "documents/_upload_result.html", {"outcomes": outcomes, "tenant": tenant}, status
    )
    if len(failed) < len(outcomes):
        response.headers["HX-Trigger"] = "documents-changed"
    return response


# -- live status -------------------------------------------------------------------------------------
WATCH_OPEN = "isthmus-watch-open"


def announce(d: pb.Document) -> str:
    status = status_name(d.status)
    reason = d.failure_reason or d.quarantine_reason
    said = f"{d.filename or d.document_id} ({d.document_id}): {status}"
    return f"{said}: {reason}" if reason and status in TERMINAL else said


@fragment
async def events(request: Request, viewer: Viewer) -> Response:
    """Server-Sent Events from ``WatchDocuments``: ``rows`` (the table's rows as they are now) after each
    burst of changes, ``announce`` (what changed, for the aria-live region). A watch that ends (fallen
    behind, the service going away) says so and closes; the browser connects again."""
    try:
        tenant = _tenant_param(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    c = console_of(request)
    call = c.backend.ingestion.WatchDocuments(
        pb.WatchDocumentsRequest(tenant_id=tenant), metadata=c.backend.metadata(viewer)
    )
    opened = await call.initial_metadata()
    if not any(key == WATCH_OPEN for key, _ in opened or ()):
        code = await call.code()
        failure = RpcFailure(code.name, await call.details() or "")
        return failure_response(request, failure, "Watching the documents failed", http_status(failure.code))
    rows_template = c.templates.get_template("documents/_rows.html")
    context = {"request": request, "tenant": tenant, **permissions(viewer, tenant)}

    async def stream() -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[pb.DocumentEvent | RpcFailure | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for ev in call:
                    queue.put_nowait(ev)
                queue.put_nowait(None)
            except grpc.aio.AioRpcError as exc:
                queue.put_nowait(RpcFailure.of(exc))

        reader = asyncio.create_task(read(), name="console-documents-watch")
        docs: dict[str, pb.Document] = {}
        try:
            while True:
                batch = [await queue.get()]
                await asyncio.sleep(COALESCE_S)
                while not queue.empty():
                    batch.append(queue.get_nowait())
                said: dict[str, str] = {}  # per document, its latest change in the burst
                ended: RpcFailure | None = None
                finished = False
                for item in batch:
                    if isinstance(item, pb.DocumentEvent):
                        docs[item.document.document_id] = item.document
                        if not item.initial:
                            said.pop(item.document.document_id, None)  # said last, in order
                            said[item.document.document_id] = announce(item.document)
                    elif item is None:
                        finished = True
                    else:
                        ended = item
                if any(isinstance(item, pb.DocumentEvent) for item in batch):
                    html = rows_template.render({**context, "rows": ordered(docs)})
                    yield {"event": "rows", "data": html, "retry": RETRY_MS}
                if said:
                    yield {"event": "announce", "data": "Updated: " + "; ".join(said.values())}
                if ended is not None:
                    yield {
                        "event": "announce",
                        "data": f"Live updates stopped ({ended.code}: {ended.reason})",
                    }
                if ended is not None or finished:
                    return
        finally:
            call.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    return EventSourceResponse(stream(), headers={"Cache-Control": "no-store"})


# -- one document ------------------------------------------------------------------------------------
def _ids(request: Request, source: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(tenant, document) of the request: InvalidArgument when either is bad."""
    src = source if source is not None else request.query_params
    return _tenant_param(request, src), _document_param(src)


async def _get(request: Request, viewer: Viewer, tenant: str, document: str) -> pb.Document:
    backend = console_of(request).backend
    d: pb.Document = await backend.ingestion.GetDocument(
        pb.GetDocumentRequest(tenant_id=tenant, document_id=document),
        metadata=backend.metadata(viewer),
        timeout=backend.timeout_s,
    )
    return d


def _detail_context(viewer: Viewer, tenant: str, d: pb.Document) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "d": DocView.of(d),
        "history": [
            {"status": status_name(h.status), "at": when(h.at), "version": h.version, "detail": h.detail}
            for h in d.history
        ],
        "metadata": sorted(d.metadata.items()),
        **permissions(viewer, tenant),
    }


@page
async def detail(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, document = _ids(request)
    except InvalidArgument as exc:
        return render(request, "documents/detail.html", {"bad_input": exc.reason, "failure": None}, 400)
    try:
        d = await _get(request, viewer, tenant, document)
    except grpc.aio.AioRpcError as exc:
        failure = RpcFailure.of(exc)
        ctx = {"bad_input": "", "failure": failure, "document_id": document, "tenant": tenant}
        return render(request, "documents/detail.html", ctx, http_status(failure.code))
    return render(
        request,
        "documents/detail.html",
        {"bad_input": "", "failure": None, **_detail_context(viewer, tenant, d)},
    )


@fragment
async def summary(request: Request, viewer: Viewer) -> Response:
    """The detail page's document part, again (after a deletion)."""
    try:
        tenant, document = _ids(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    try:
        d = await _get(request, viewer, tenant, document)
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Reading document {document} failed")
    return render(request, "documents/_summary.html", _detail_context(viewer, tenant, d))


@fragment
async def text(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, document = _ids(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    backend = console_of(request).backend
    try:
        t = await backend.ingestion.GetDocumentText(
            pb.GetDocumentTextRequest(tenant_id=tenant, document_id=document),
            metadata=backend.metadata(viewer),
            timeout=backend.timeout_s,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, "Reading the document's text failed")
    shown = t.text[:TEXT_SHOWN]
    return render(request, "documents/_text.html", {"t": t, "shown": shown, "cut": len(shown) < len(t.text)})


# -- delete and erase --------------------------------------------------------------------------------
@fragment
async def confirm(request: Request, viewer: Viewer) -> Response:
    """The confirmation step of a deletion or an erasure (``cancel`` = none: the panel empties)."""
    if request.query_params.get("cancel"):
        return Response("", media_type="text/html")
    action = request.query_params.get("action", "")
    if action not in ("delete", "erase"):
        return bad_request(request, "action must be delete or erase")
    try:
        tenant, document = _ids(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    filename = request.query_params.get("filename", "")[:200]
    ctx = {"action": action, "tenant": tenant, "document": document, "filename": filename}
    return render(request, "documents/_confirm.html", ctx)


async def _form_ids(request: Request) -> tuple[str, str, str]:
    form = await request.form(max_files=0, max_fields=10)
    reason = form.get("reason", "")
    tenant, document = _ids(request, form)
    return tenant, document, (reason if isinstance(reason, str) else "")[:500]


@fragment
async def delete(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, document, reason = await _form_ids(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    except HTTPException as exc:
        return bad_request(request, f"the form could not be read: {exc.detail}")
    backend = console_of(request).backend
    try:
        d = await backend.ingestion.DeleteDocument(
            pb.DeleteDocumentRequest(tenant_id=tenant, document_id=document, reason=reason),
            metadata=backend.metadata(viewer),
            timeout=backend.timeout_s,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Deleting {document} failed")
    response = render(request, "documents/_deleted.html", {"d": DocView.of(d), "tenant": tenant})
    response.headers["HX-Trigger"] = "documents-changed"
    return response


@fragment
async def erase(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, document, reason = await _form_ids(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    except HTTPException as exc:
        return bad_request(request, f"the form could not be read: {exc.detail}")
    backend = console_of(request).backend
    try:
        receipt = await backend.ingestion.Erase(
            pb.EraseRequest(tenant_id=tenant, documents=pb.DocumentIds(ids=[document]), reason=reason),
            metadata=backend.metadata(viewer),
            timeout=backend.timeout_s,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Erasing {document} failed")
    response = render(request, "documents/_receipt.html", _receipt_context(receipt))
    response.headers["HX-Trigger"] = "documents-changed"
    return response


def _receipt_context(r: pb.ErasureReceipt) -> dict[str, Any]:
    return {
        "r": r,
        "requested_at": when(r.requested_at),
        "steps": [
            {
                "place": s.place,
                "region": s.region,
                "status": pb.ErasureStepStatus.Name(s.status).removeprefix("ERASURE_STEP_STATUS_").lower(),
                "count": s.count,
                "detail": s.detail,
                "completed": when(s.completed_at) if s.HasField("completed_at") else "",
            }
            for s in r.steps
        ],
    }


@fragment
async def erasure(request: Request, viewer: Viewer) -> Response:
    """An erasure's receipt as it stands now (its steps complete as the other places report)."""
    try:
        tenant = _tenant_param(request)
    except InvalidArgument as exc:
        return bad_request(request, exc.reason)
    erasure_id = request.query_params.get("erasure", "")
    if not _ERASURE_ID.fullmatch(erasure_id):
        return bad_request(request, "erasure must be the 32 hexadecimal digits of an erasure's id")
    backend = console_of(request).backend
    try:
        receipt = await backend.ingestion.GetErasure(
            pb.GetErasureRequest(tenant_id=tenant, erasure_id=erasure_id),
            metadata=backend.metadata(viewer),
            timeout=backend.timeout_s,
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, "Reading the erasure failed")
    return render(request, "documents/_receipt.html", _receipt_context(receipt))


routes: list[BaseRoute] = [
    Route("/documents", index),
    Route("/documents/rows", rows),
    Route("/documents/upload", upload, methods=["POST"]),
    Route("/documents/events", events),
    Route("/documents/doc", detail),
    Route("/documents/summary", summary),
    Route("/documents/text", text),
    Route("/documents/confirm", confirm),
    Route("/documents/delete", delete, methods=["POST"]),
    Route("/documents/erase", erase, methods=["POST"]),
    Route("/documents/erasure", erasure),
]
