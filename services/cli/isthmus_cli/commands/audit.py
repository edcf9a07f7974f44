"""``isthmus audit``: the audit log (authentication failures, denials, admin actions, impersonation,
quota refusals, erasures), filtered by tenant, principal, kind and time, newest first."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, optional_tenant_id
from isthmus_cli.output import console

if TYPE_CHECKING:
    from isthmus.audit.v1.audit_pb2 import AuditEvent
    from isthmus.audit.v1.audit_pb2_grpc import AuditServiceAsyncStub

#: records per request (the service's maximum)
PAGE = 10_000
_RELATIVE = re.compile(r"^-(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """``-30m`` / ``-1h`` / ``-7d`` / ``-2w`` / ``-45s`` before ``now``, or an ISO 8601 time (without a
    zone: UTC). Raises ``ValueError`` saying what is accepted."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: give an ISO 8601 time (2026-12-01T09:00:00Z) or an age such as "
            "-30m, -1h, -7d, -2w"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _when(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_when(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def audit(
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    tenant: Annotated[
        str,
        typer.Option(
            "--tenant",
            "-t",
            help="only this tenant's records (default: every tenant, which needs the audit permission "
            "for every tenant)",
            callback=optional_tenant_id,
        ),
    ] = "",
    principal: Annotated[str, typer.Option("--principal", "-p", help="only this verified subject's")] = "",
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            help="only this kind (repeatable): authentication_failed, permission_denied, admin_action, "
            "impersonation, quota_exceeded, erasure, deletion",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="from this time: ISO 8601 (UTC without a zone) or an age: -30m, -1h, -7d",
            callback=_when,
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="before this time (same forms as --since)", callback=_when)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="at most this many records")] = 100,
    as_json: AsJson = False,
) -> None:
    """The audit log, newest first."""
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.timestamp_pb2 import Timestamp

    from isthmus.audit.v1 import audit_pb2, audit_pb2_grpc

    def ts(value: str | None) -> Timestamp | None:
        if value is None:
            return None
        out = Timestamp()
        out.FromDatetime(parse_when(value))
        return out

    base = audit_pb2.ListAuditEventsRequest(
        tenant_id=tenant, principal=principal, kinds=kind or [], since=ts(since), until=ts(until)
    )

    async def main() -> list[AuditEvent]:
        events: list[AuditEvent] = []
        async with connect(endpoint) as stubs:
            stub = cast("AuditServiceAsyncStub", audit_pb2_grpc.AuditServiceStub(stubs.channel))
            token = ""
            while len(events) < limit:
                req = audit_pb2.ListAuditEventsRequest()
                req.CopyFrom(base)
                req.limit, req.page_token = min(PAGE, limit - len(events)), token
                resp = await stub.ListAuditEvents(req, timeout=60)
                events.extend(resp.events)
                token = resp.next_page_token
                if not token:
                    break
        return events

    events = run(main())
    if as_json:
        rows: list[dict[str, Any]] = [MessageToDict(e, preserving_proto_field_name=True) for e in events]
        print(json.dumps(rows, indent=2))
        return
    table = Table("time (UTC)", "tenant", "kind", "principal", "method", "outcome", "reason")
    for e in events:
        table.add_row(
            e.occurred_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
            escape(e.tenant_id or "-"),
            e.kind,
            escape(e.principal or "-"),
            escape(e.method),
            e.outcome,
            escape(e.reason),
        )
    console.print(table)
    console.print(f"[dim]{len(events)} record(s)[/dim]")
