"""The audit log and provenance store (SQLite) and their gRPC edges: filters, paging, idempotence,
tenant scoping, and refusals of bad requests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.audit.v1 import audit_pb2
from isthmus.evaluation.v1 import evaluation_pb2
from isthmus_core.contracts.events import (
    AnswerProduced,
    AuditRecorded,
    ChunkProvenance,
    Provenance,
    VerdictSummary,
)
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.audit_api import AuditServicer
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.records import MAX_LIMIT, AuditQuery, RecordStore

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CTX: Any = None  # the servicers do not use their context


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    s = RecordStore(tmp_path / "evaluation" / "records.sqlite")
    yield s
    s.close()


def record(n: int, **overrides: Any) -> AuditRecorded:
    fields: dict[str, Any] = {
        "event_id": f"e{n:03d}",
        "tenant_id": "acme",
        "idempotency_key": f"k{n}",
        "kind": "permission_denied",
        "principal": "client-abc",
        "method": "/isthmus.ingestion.v1.IngestionService/Upload",
        "outcome": "denied",
        "occurred_at": T0 + timedelta(minutes=n),
    }
    return AuditRecorded.model_validate({**fields, **overrides})


def answer(tenant: str = "acme", answer_id: str = "q1", **overrides: Any) -> AnswerProduced:
    provenance = Provenance(
        principal="alice",
        retrieved=[ChunkProvenance(chunk_id="c1", document_id="d1", document_version=2, start=0, end=40)],
        cited=[ChunkProvenance(chunk_id="c1", document_id="d1", document_version=2, start=5, end=20)],
        embedding_model="bge-small",
        generator="extractive",
        guardrail_policy_version="p1",
        input_verdict=VerdictSummary(action="allow"),
        output_verdict=VerdictSummary(action="redact", codes=["pii.EMAIL_ADDRESS"]),
        timings_ms={"retrieval": 3.5},
    )
    fields: dict[str, Any] = {
        "tenant_id": tenant,
        "idempotency_key": f"{tenant}/{answer_id}",
        "question_id": answer_id,
        "latency_ms": 12.0,
        "generator": "extractive",
        "provenance": provenance,
    }
    return AnswerProduced.model_validate({**fields, **overrides})


def ids(events: list[AuditRecorded]) -> list[str]:
    return [e.event_id for e in events]


def test_a_redelivered_record_is_kept_once(store: RecordStore) -> None:
    assert store.add_audit(record(1))
    assert not store.add_audit(record(1))
    assert ids(store.list_audit(AuditQuery()).events) == ["e001"]


def test_filters_by_tenant_principal_kind_and_time(store: RecordStore) -> None:
    store.add_audit(record(1))
    store.add_audit(record(2, tenant_id="globex", principal="client-xyz"))
    store.add_audit(record(3, tenant_id="", kind="authentication_failed", principal="", outcome="failed"))
    store.add_audit(record(4, kind="admin_action", outcome="ok", principal="ops"))
    store.add_audit(record(5, kind="impersonation", principal="ops"))

    def listed(**filters: Any) -> list[str]:
        return ids(store.list_audit(AuditQuery.checked(**filters)).events)

    assert listed() == ["e005", "e004", "e003", "e002", "e001"], "every tenant, newest first"
    assert listed(tenant_id="acme") == ["e005", "e004", "e001"]
    assert listed(principal="ops") == ["e005", "e004"]
    assert listed(kinds=frozenset({"authentication_failed", "admin_action"})) == ["e004", "e003"]
    assert listed(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == ["e003", "e002"]
    assert listed(tenant_id="acme", principal="ops", kinds=frozenset({"impersonation"})) == ["e005"]
    assert listed(tenant_id="initech") == []


def test_pages_cover_every_record_once_even_at_equal_times(store: RecordStore) -> None:
    for n in range(7):
        store.add_audit(record(n, occurred_at=T0 + timedelta(minutes=n // 3)))  # three at each time
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = store.list_audit(AuditQuery.checked(limit=3, page_token=token))
        seen += ids(page.events)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == ["e006", "e005", "e004", "e003", "e002", "e001", "e000"]


def test_a_page_that_ends_the_log_has_no_next_token(store: RecordStore) -> None:
    store.add_audit(record(1))
    store.add_audit(record(2))
    page = store.list_audit(AuditQuery.checked(limit=2))
    assert len(page.events) == 2 and page.next_page_token == ""


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ({"limit": MAX_LIMIT + 1}, "limit must be between 1 and 10000"),
        ({"limit": -1}, "limit must be between"),
        ({"kinds": frozenset({"login"})}, "unknown audit kinds ['login']"),
        ({"since": T0, "until": T0}, "must be before until"),
        ({"page_token": "not-a-token"}, "page_token is not one this service gave"),
        ({"page_token": "WzEsMl0="}, "page_token is not one this service gave"),  # [1, 2]: wrong shape
    ],
)
def test_bad_filters_are_refused(filters: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        AuditQuery.checked(**filters)
    assert reason in str(exc.value)


def test_limit_zero_means_a_hundred(store: RecordStore) -> None:
    for n in range(101):
        store.add_audit(record(n))
    page = store.list_audit(AuditQuery.checked(limit=0))
    assert len(page.events) == 100 and page.next_page_token


def test_an_answer_is_kept_once_and_only_its_tenant_reads_it(store: RecordStore) -> None:
    assert store.add_answer(answer())
    assert not store.add_answer(answer(latency_ms=99.0)), "the first event of an answer wins"
    kept = store.provenance("acme", "q1")
    assert kept is not None and kept.latency_ms == 12.0
    assert kept.provenance == answer().provenance
    assert store.provenance("globex", "q1") is None
    assert store.provenance("acme", "q2") is None


def test_a_deleted_tenant_loses_its_answers_but_not_a_later_one(store: RecordStore) -> None:
    store.add_answer(answer(answer_id="old", occurred_at=T0))
    store.add_answer(answer(answer_id="new", occurred_at=T0 + timedelta(hours=1)))
    store.add_answer(answer(tenant="globex", answer_id="old", occurred_at=T0))
    assert store.drop_tenant_answers("acme", T0 + timedelta(minutes=1)) == 1
    assert store.provenance("acme", "old") is None
    assert store.provenance("acme", "new") is not None and store.provenance("globex", "old") is not None


def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    first = RecordStore(path)
    first.add_audit(record(1))
    first.add_answer(answer())
    first.close()
    again = RecordStore(path)
    try:
        assert ids(again.list_audit(AuditQuery()).events) == ["e001"]
        assert again.provenance("acme", "q1") is not None
    finally:
        again.close()


# -- the gRPC edges -----------------------------------------------------------------------------------


async def test_list_audit_events_returns_every_field(store: RecordStore) -> None:
    store.add_audit(
        record(1, details={"as": "bob"}, peer="ipv4:10.0.0.1:5000", region="eu", trace_context={"a": "b"})
    )
    resp = await AuditServicer(store).ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(tenant_id="acme", kinds=["permission_denied"]), CTX
    )
    [ev] = resp.events
    assert (ev.event_id, ev.tenant_id, ev.kind, ev.principal, ev.outcome) == (
        "e001",
        "acme",
        "permission_denied",
        "client-abc",
        "denied",
    )
    assert (ev.method, ev.peer, ev.region, dict(ev.details)) == (
        "/isthmus.ingestion.v1.IngestionService/Upload",
        "ipv4:10.0.0.1:5000",
        "eu",
        {"as": "bob"},
    )
    assert ev.occurred_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=1)
    assert (ev.idempotency_key, dict(ev.trace_context), ev.schema_version) == ("k1", {"a": "b"}, 1)
    assert resp.next_page_token == ""


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (audit_pb2.ListAuditEventsRequest(since=Timestamp(seconds=0, nanos=-1)), "since is not a valid"),
        (
            audit_pb2.ListAuditEventsRequest(until=Timestamp(seconds=300_000_000_000)),
            "until is not a valid",
        ),
        (audit_pb2.ListAuditEventsRequest(limit=20_000), "limit must be between"),
        (audit_pb2.ListAuditEventsRequest(kinds=["everything"]), "unknown audit kinds"),
    ],
)
async def test_bad_audit_requests_are_invalid_arguments(
    store: RecordStore, request_: audit_pb2.ListAuditEventsRequest, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        await AuditServicer(store).ListAuditEvents(request_, CTX)
    assert reason in str(exc.value)


def servicer(store: RecordStore) -> EvaluationServicer:
    runner: Any = None  # not used by GetProvenance
    online = OnlineStore(Path(tempfile.mkdtemp()) / "online.sqlite")
    return EvaluationServicer(runner, online, InMemoryTenantDirectory(), records=store)


async def test_get_provenance_of_the_tenants_answer(store: RecordStore) -> None:
    store.add_answer(answer())
    p = await servicer(store).GetProvenance(
        evaluation_pb2.GetProvenanceRequest(tenant_id="acme", answer_id="q1"), CTX
    )
    assert (p.answer_id, p.tenant_id, p.principal) == ("q1", "acme", "alice")
    assert [(c.chunk_id, c.document_id, c.document_version, c.start, c.end) for c in p.retrieved] == [
        ("c1", "d1", 2, 0, 40)
    ]
    assert [(c.chunk_id, c.document_version, c.start, c.end) for c in p.cited] == [("c1", 2, 5, 20)]
    assert (p.embedding_model, p.generator, p.guardrail_policy_version) == ("bge-small", "extractive", "p1")
    assert p.input_verdict.action == "allow"
    assert (p.output_verdict.action, list(p.output_verdict.codes)) == ("redact", ["pii.EMAIL_ADDRESS"])
    assert dict(p.timings_ms) == {"retrieval": 3.5} and p.latency_ms == 12.0


async def test_another_tenants_answer_is_not_found_like_an_unknown_one(store: RecordStore) -> None:
    store.add_answer(answer())
    messages = []
    for tenant, answer_id in (("globex", "q1"), ("globex", "q-unknown")):
        with pytest.raises(NotFound) as exc:
            await servicer(store).GetProvenance(
                evaluation_pb2.GetProvenanceRequest(tenant_id=tenant, answer_id=answer_id), CTX
            )
        messages.append(str(exc.value).replace(answer_id, "<id>"))
    assert messages[0] == messages[1], "the refusal says nothing of the other tenant"
    assert "acme" not in messages[0]


@pytest.mark.parametrize(("answer_id", "reason"), [("", "answer_id is required"), ("q\n1", "printable")])
async def test_bad_answer_ids_are_invalid_arguments(store: RecordStore, answer_id: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        await servicer(store).GetProvenance(
            evaluation_pb2.GetProvenanceRequest(tenant_id="acme", answer_id=answer_id), CTX
        )
