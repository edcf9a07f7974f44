"""Who may put a document on the bus: the producer's token, checked by the consumer.

A document event (``isthmus.documents.submitted.v1``) carries its producer's bearer JWT in the Kafka
header ``authorization: Bearer <token>`` — the same tokens as gRPC callers, from the same issuer. With
authentication on, ingestion accepts the event only if the token verifies *at the time the broker
appended the record* (``LogAppendTime`` on that topic, so a backlog is not refused for tokens that
expired while it waited, and a producer cannot backdate a record) and its principal has
``documents.write`` in the event's tenant. Anything else goes to the dead-letter topic with the reason
(the original payload kept, the token header left out: :data:`~isthmus_core.bus.delivery.CREDENTIAL_HEADERS`)
and an audit record; it is never indexed. A replayed dead letter needs a fresh token.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from isthmus_core.auth.context import Access, acting_as
from isthmus_core.auth.identity import Permission
from isthmus_core.auth.stack import AuthStack
from isthmus_core.bus.port import Handler, Message
from isthmus_core.bus.typed import decode_event
from isthmus_core.contracts.events import AuditRecorded, Event
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.errors import PermissionDenied, Unauthenticated

H_AUTHORIZATION = "authorization"

EventT = TypeVar("EventT", bound=Event)


def bearer_of(headers: dict[str, str]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header (any case), None if absent."""
    for key, value in headers.items():
        if key.lower() == H_AUTHORIZATION:
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def checked_producer(
    spec: TopicSpec[EventT], handler: Handler, stack: AuthStack, permission: Permission
) -> Handler:
    """``handler`` behind the producer check (unchanged when authentication is off)."""
    verifier = stack.verifier
    if verifier is None:
        return handler

    def audit(kind: str, tenant: str, principal: str, reason: str, message: Message) -> None:
        stack.audit.record(
            AuditRecorded(
                tenant_id=tenant,
                idempotency_key=f"producer:{message.topic}:{message.partition}:{message.offset}:{uuid.uuid4().hex}",
                kind=kind,  # type: ignore[arg-type]
                principal=principal,
                method=message.topic,
                outcome="denied",
                reason=reason,
                details={"partition": str(message.partition), "offset": str(message.offset)},
                region=stack.region,
            )
        )

    async def handle(message: Message) -> None:
        event = decode_event(spec, message)  # a payload that is not an event: dead-lettered as such
        token = bearer_of(message.headers)
        if token is None:
            reason = (
                f"{spec.name} record without a producer token: authentication is on, so each record needs "
                "the header 'authorization: Bearer <JWT>' of a principal with documents.write in its tenant"
            )
            audit("authentication_failed", event.tenant_id, "", reason, message)
            raise Unauthenticated(reason)
        at = message.timestamp_ms / 1000 if message.timestamp_ms is not None else None
        try:
            principal = await verifier.verify(token, at=at)
        except Unauthenticated as exc:
            reason = f"producer token refused: {exc.reason}"
            audit("authentication_failed", event.tenant_id, "", reason, message)
            raise Unauthenticated(reason) from None
        if not stack.authorizer.allowed(principal, event.tenant_id, permission):
            reason = f"producer {principal.subject!r} lacks {permission.value} in tenant {event.tenant_id!r}"
            audit("permission_denied", event.tenant_id, principal.subject, reason, message)
            raise PermissionDenied(reason)
        with acting_as(Access(principal, stack.authorizer)):
            await handler(message)

    handle.__qualname__ = f"checked_producer({getattr(handler, '__qualname__', repr(handler))})"
    return handle
