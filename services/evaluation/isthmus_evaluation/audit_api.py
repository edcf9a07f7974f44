"""gRPC edge of the audit log (``isthmus.audit.v1.AuditService``), served by the evaluation module.

Requests are checked here (kinds, ``since``/``until`` timestamps, ``limit``, the page token) and refused
with INVALID_ARGUMENT; who may list which tenant's records is the auth interceptor's (an empty tenant
needs the permission for every tenant).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.audit.v1 import audit_pb2 as pb
from isthmus.audit.v1 import audit_pb2_grpc as pb_grpc
from isthmus_core.contracts.events import AuditRecorded
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.records import AuditQuery, RecordStore

#: the range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def timestamp_pb(t: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


def read_timestamp(ts: Timestamp, name: str) -> datetime:
    """A request's timestamp as an aware UTC datetime; INVALID_ARGUMENT outside the Timestamp range."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(
            f"{name} is not a valid timestamp (seconds {ts.seconds}, nanos {ts.nanos}): seconds must be "
            f"between {_MIN_SECONDS} and {_MAX_SECONDS} and nanos between 0 and 999999999"
        )
    return ts.ToDatetime(tzinfo=UTC)


def audit_query(request: pb.ListAuditEventsRequest) -> AuditQuery:
    return AuditQuery.checked(
        tenant_id=parse_tenant_id(request.tenant_id) if request.tenant_id else None,
        principal=request.principal or None,
        kinds=frozenset(request.kinds),
        since=read_timestamp(request.since, "since") if request.HasField("since") else None,
        until=read_timestamp(request.until, "until") if request.HasField("until") else None,
        limit=request.limit,
        page_token=request.page_token,
    )


def audit_event_pb(ev: AuditRecorded) -> pb.AuditEvent:
    return pb.AuditEvent(
        event_id=ev.event_id,
        tenant_id=ev.tenant_id,
        kind=ev.kind,
        principal=ev.principal,
        method=ev.method,
        outcome=ev.outcome,
        reason=ev.reason,
        details=ev.details,
        peer=ev.peer,
        region=ev.region,
        occurred_at=timestamp_pb(ev.occurred_at),
        idempotency_key=ev.idempotency_key,
        trace_context=ev.trace_context,
        schema_version=ev.schema_version,
    )


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, records: RecordStore) -> None:
        self._records = records

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        page = await asyncio.to_thread(self._records.list_audit, audit_query(request))
        return pb.ListAuditEventsResponse(
            events=[audit_event_pb(e) for e in page.events], next_page_token=page.next_page_token
        )
