"""The producer check on document events: token verified at the broker's time, permission in the
event's tenant, refusals dead-lettered with the reason and the payload (never the token), audited."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_core.auth.context import current_principal
from isthmus_core.auth.identity import Permission, Principal
from isthmus_core.auth.producers import bearer_of, checked_producer
from isthmus_core.auth.stack import AuthStack, ListAudit
from isthmus_core.auth.wiring import build_verifier, local_issuer
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.port import Message, RetryPolicy, Subscription
from isthmus_core.bus.typed import event_handler, publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.errors import Unauthenticated
from isthmus_core.settings import CommonSettings
from isthmus_core.testing.bus_conformance import Collector


class TableVerifier:
    """Tokens → principals from a table; records the time each was checked at. (The JWT verifier has
    its own tests; here only what the producer check does with its answer matters.)"""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self.principals = principals
        self.checked_at: list[float | None] = []

    async def verify(self, token: str, *, at: float | None = None) -> Principal:
        self.checked_at.append(at)
        if token not in self.principals:
            raise Unauthenticated("signature does not verify")
        return self.principals[token]


class OneTenantWriter:
    def __init__(self, subject: str, tenant: str) -> None:
        self.subject, self.tenant = subject, tenant

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        return principal.subject == self.subject and tenant == self.tenant

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        return principal.subject == self.subject

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        return frozenset({self.tenant}) if principal.subject == self.subject else frozenset()


def submitted(tenant: str = "acme") -> DocumentSubmitted:
    return DocumentSubmitted(
        tenant_id=tenant, idempotency_key="k1", document_id="d1", filename="a.txt", content=b"hello"
    )


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=1)
    yield bus
    await bus.stop()


async def _run(
    bus: InProcessBus, stack: AuthStack, event: DocumentSubmitted, headers: dict[str, str]
) -> tuple[list[str | None], list[Message]]:
    seen: list[str | None] = []

    async def on_submitted(ev: DocumentSubmitted) -> None:
        principal = current_principal()
        seen.append(principal.subject if principal else None)

    spec = topics.DOCUMENTS_SUBMITTED
    handler = checked_producer(spec, event_handler(spec, on_submitted), stack, Permission.DOCUMENTS_WRITE)
    dlq = Collector()
    bus.subscribe(Subscription(spec.name, "ingestion", handler, RetryPolicy(max_attempts=1)))
    bus.subscribe(Subscription(spec.dlq, "watch", dlq))
    await bus.start()
    value = event.model_dump_json().encode()
    await bus.publish(spec.name, "acme/d1", value, headers)
    await bus.drain(timeout=5)
    return seen, dlq.messages


def _stack(verifier: TableVerifier) -> AuthStack:
    return AuthStack(verifier=verifier, authorizer=OneTenantWriter("feeder", "acme"), audit=ListAudit())


async def test_a_writer_of_the_tenant_is_accepted_and_checked_at_the_broker_time(bus: InProcessBus) -> None:
    verifier = TableVerifier({"good": Principal("feeder", via="jwt")})
    before = time.time()
    seen, dead = await _run(bus, _stack(verifier), submitted(), {"Authorization": "Bearer good"})
    assert seen == ["feeder"] and dead == []
    [at] = verifier.checked_at
    assert at is not None and before - 1 <= at <= time.time()  # the bus's append time, not None


@pytest.mark.parametrize(
    ("headers", "tenant", "error", "reason"),
    [
        ({}, "acme", "Unauthenticated", "without a producer token"),
        ({"authorization": "Basic Zm9vOmJhcg=="}, "acme", "Unauthenticated", "without a producer token"),
        ({"authorization": "Bearer forged"}, "acme", "Unauthenticated", "signature does not verify"),
        ({"authorization": "Bearer good"}, "globex", "PermissionDenied", "lacks documents.write"),
    ],
)
async def test_anything_else_is_dead_lettered_with_the_reason_and_never_handled(
    bus: InProcessBus, headers: dict[str, str], tenant: str, error: str, reason: str
) -> None:
    stack = _stack(TableVerifier({"good": Principal("feeder", via="jwt")}))
    event = submitted(tenant)
    seen, dead = await _run(bus, stack, event, headers)
    assert seen == []
    [letter] = dead
    assert letter.headers["isthmus-error-class"] == error
    assert reason in letter.headers["isthmus-error-message"]
    assert DocumentSubmitted.model_validate_json(letter.value) == event  # the payload is kept whole
    assert not any(k.lower() == "authorization" for k in letter.headers)  # the credential is not
    assert isinstance(stack.audit, ListAudit)
    [record] = stack.audit.records
    assert record.tenant_id == tenant and record.outcome == "denied" and reason in record.reason


async def test_with_authentication_off_the_handler_is_unchanged(bus: InProcessBus) -> None:
    async def on_submitted(ev: DocumentSubmitted) -> None: ...

    handler = event_handler(topics.DOCUMENTS_SUBMITTED, on_submitted)
    assert (
        checked_producer(topics.DOCUMENTS_SUBMITTED, handler, AuthStack(), Permission.DOCUMENTS_WRITE)
        is handler
    )


def test_bearer_of_reads_the_scheme_in_any_case() -> None:
    assert bearer_of({"AUTHORIZATION": "bearer abc"}) == "abc"
    assert bearer_of({"authorization": "Bearer "}) is None
    assert bearer_of({"authorization": "Token abc"}) is None
    assert bearer_of({}) is None


async def test_publish_event_records_carry_the_bus_append_time(bus: InProcessBus) -> None:
    got = Collector()
    bus.subscribe(Subscription(topics.DOCUMENTS_SUBMITTED.name, "g", got))
    await bus.start()
    before = int(time.time() * 1000)
    await publish_event(bus, topics.DOCUMENTS_SUBMITTED, submitted())
    await bus.drain(timeout=5)
    [message] = got.messages
    assert message.timestamp_ms is not None and before <= message.timestamp_ms <= int(time.time() * 1000)


async def test_the_jwt_verifier_checks_expiry_at_the_given_time(tmp_path: Path) -> None:
    """The real verifier behind the producer check: a token that expired an hour ago was valid when a
    record it signed was appended two hours ago; checked at that time it verifies, now it does not."""
    common = CommonSettings(data_dir=tmp_path, auth="local")
    verifier = build_verifier(common)
    assert verifier is not None
    now = time.time()
    token = local_issuer(common).mint("feeder", ttl_s=3600, now=now - 7200)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)
    assert (await verifier.verify(token, at=now - 7000)).subject == "feeder"
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token, at=now)
    with pytest.raises(Unauthenticated, match=r"not yet valid|expired"):
        await verifier.verify(token, at=now - 9000)  # before it was issued (nbf/iat)
