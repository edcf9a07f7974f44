"""The topic registry: every topic the platform uses, declared once.

Names follow ``isthmus.<noun>.<past-tense verb>.v<N>``; each topic has a dead-letter twin ``<name>.dlq``
that carries the original bytes and headers plus the error (see :mod:`isthmus_core.bus.port`).

A :class:`TopicSpec` is generic in the event it carries (``TopicSpec[ChunksCreated]``), so the typed bus
helpers (:mod:`isthmus_core.bus.typed`) check at type-check time that a handler takes, and a publisher
gives, that event type. It is invariant on purpose: ``publish_event(bus, CHUNKS_CREATED, tenant_deleted)``
does not type-check. Collections of mixed topics use :data:`AnyTopic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel

from isthmus_core.contracts import events as ev

DLQ_SUFFIX = ".dlq"

EventT = TypeVar("EventT", bound=ev.Event)


@dataclass(frozen=True, slots=True)
class TopicSpec(Generic[EventT]):
    name: str
    payload: type[EventT]
    key: str  # which payload fields make the partition key (documented; used by ``partition_key``)
    partitions: int = 6
    retention_ms: int = 7 * 24 * 3600 * 1000
    #: records are stamped by the broker when appended (Kafka ``message.timestamp.type=LogAppendTime``):
    #: a producer's token is checked at that time (isthmus_core.auth.producers), which it cannot backdate
    broker_timestamps: bool = False

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


DOCUMENTS_SUBMITTED = TopicSpec(
    "isthmus.documents.submitted.v1", ev.DocumentSubmitted, "tenant_id/document_id", broker_timestamps=True
)
#: deletions a producer asks for; DOCUMENTS_DELETED: the deletions done (mirrored across regions)
DELETIONS_REQUESTED = TopicSpec(
    "isthmus.deletions.requested.v1", ev.DeletionRequested, "tenant_id/document_id", broker_timestamps=True
)
DOCUMENTS_DELETED = TopicSpec("isthmus.documents.deleted.v1", ev.DocumentDeleted, "tenant_id/document_id")
CHUNKS_CREATED = TopicSpec("isthmus.chunks.created.v1", ev.ChunksCreated, "tenant_id/document_id")
CHUNKS_EMBEDDED = TopicSpec("isthmus.chunks.embedded.v1", ev.ChunksEmbedded, "tenant_id/document_id")
CHUNKS_INDEXED = TopicSpec("isthmus.chunks.indexed.v1", ev.ChunksIndexed, "tenant_id/document_id")
TENANTS_DELETED = TopicSpec("isthmus.tenants.deleted.v1", ev.TenantDeleted, "tenant_id", partitions=1)
ANSWERS_PRODUCED = TopicSpec("isthmus.answers.produced.v1", ev.AnswerProduced, "tenant_id")
#: online evaluation: a tenant's answer quality fell past its allowance (raised by evaluation)
QUALITY_DROPPED = TopicSpec("isthmus.quality.dropped.v1", ev.QualityDropped, "tenant_id")
#: chunks the ingest scan blocked (indirect prompt injection, PII per policy), with their original text
CHUNKS_QUARANTINED = TopicSpec("isthmus.chunks.quarantined.v1", ev.ChunksQuarantined, "tenant_id/document_id")
GUARDRAIL_VERDICTS = TopicSpec("isthmus.guardrail.verdicts.v1", ev.GuardrailVerdict, "tenant_id")
#: audit records from every process (isthmus_core.auth.audit); kept 400 days
AUDIT_RECORDED = TopicSpec(
    "isthmus.audit.recorded.v1", ev.AuditRecorded, "tenant_id", retention_ms=400 * 24 * 3600 * 1000
)
#: erasures: requested by ingestion's Erase, applied by every place in every region (both replicated)
ERASURES_REQUESTED = TopicSpec(
    "isthmus.erasures.requested.v1", ev.ErasureRequested, "tenant_id", partitions=1
)
ERASURES_APPLIED = TopicSpec("isthmus.erasures.applied.v1", ev.ErasureApplied, "tenant_id", partitions=1)
#: agent runs: sensitive tool calls waiting for a person, and the decisions (every replica reads both)
APPROVALS_REQUESTED = TopicSpec("isthmus.approvals.requested.v1", ev.ApprovalRequested, "tenant_id")
APPROVALS_DECIDED = TopicSpec("isthmus.approvals.decided.v1", ev.ApprovalDecided, "tenant_id")
#: LLM tokens and cost per request and model (for billing and budgets); kept 400 days
USAGE_RECORDED = TopicSpec(
    "isthmus.usage.recorded.v1", ev.UsageRecorded, "tenant_id", retention_ms=400 * 24 * 3600 * 1000
)
#: prompt versions and A/B splits (agents.prompts). They are the source of truth every orchestrator replica
#: builds its own view from (a new replica replays them from the start), so they are kept 10 years rather
#: than a week: a version that expired from the log would be missing from, or numbered differently in, a
#: replica started afterwards. One partition each: version numbers follow the order of the created
#: events, and a single partition keeps that order for good (with several, adding partitions later would
#: move a tenant's newer events to another partition, which a replaying replica may read interleaved
#: differently); prompt writes are rare administrative calls, so one partition is plenty.
PROMPTS_CREATED = TopicSpec(
    "isthmus.prompts.created.v1",
    ev.PromptVersionCreated,
    "tenant_id",
    partitions=1,
    retention_ms=10 * 365 * 24 * 3600 * 1000,
)
PROMPTS_SPLIT = TopicSpec(
    "isthmus.prompts.split.v1",
    ev.PromptSplitSet,
    "tenant_id",
    partitions=1,
    retention_ms=10 * 365 * 24 * 3600 * 1000,
)
#: dead letters re-published to their source topic (isthmus_core.bus.admin): one record per replay, read to
#: refuse a second one; one partition (rare administrative events)
DEAD_LETTERS_REPLAYED = TopicSpec(
    "isthmus.deadletters.replayed.v1", ev.DeadLetterReplayed, "tenant_id", partitions=1
)

#: a topic of any event type (for collections of mixed topics: the registry, a module's offer)
AnyTopic: TypeAlias = TopicSpec[Any]

ALL_TOPICS: tuple[AnyTopic, ...] = (
    DOCUMENTS_SUBMITTED,
    DELETIONS_REQUESTED,
    DOCUMENTS_DELETED,
    CHUNKS_CREATED,
    CHUNKS_EMBEDDED,
    CHUNKS_INDEXED,
    CHUNKS_QUARANTINED,
    TENANTS_DELETED,
    ANSWERS_PRODUCED,
    QUALITY_DROPPED,
    GUARDRAIL_VERDICTS,
    AUDIT_RECORDED,
    ERASURES_REQUESTED,
    ERASURES_APPLIED,
    APPROVALS_REQUESTED,
    APPROVALS_DECIDED,
    USAGE_RECORDED,
    PROMPTS_CREATED,
    PROMPTS_SPLIT,
    DEAD_LETTERS_REPLAYED,
)


def by_name(name: str) -> AnyTopic:
    for spec in ALL_TOPICS:
        if spec.name == name or spec.dlq == name:
            return spec
    raise KeyError(name)


def partition_key(event: BaseModel) -> str:
    """The partition key of an event: tenant and document where there is one (per-document order)."""
    tenant = getattr(event, "tenant_id", "")
    doc = getattr(event, "document_id", None)
    return f"{tenant}/{doc}" if doc else str(tenant)
