"""Versioned event payloads carried on the bus.

Every event carries the tenant id, an idempotency key (stable across redeliveries and replays) and the
W3C trace context of the producer. Payloads are frozen pydantic models; a breaking change means a new
``vN`` model and a new topic (see :mod:`isthmus_core.contracts.topics`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from isthmus_core.contracts.ids import TENANT_ID_PATTERN

TENANT_PATTERN = TENANT_ID_PATTERN


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    tenant_id: str = Field(pattern=TENANT_PATTERN)
    idempotency_key: str = Field(min_length=1, max_length=512)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: W3C trace context (``traceparent``/``tracestate``) of the producer; also sent as Kafka headers
    trace_context: dict[str, str] = Field(default_factory=dict)


class DocumentSubmitted(Event):
    """A document to ingest, sent by a producer to the documents topic (the async twin of ``Upload``)."""

    document_id: str | None = Field(default=None, max_length=256)
    filename: str = Field(min_length=1, max_length=512)
    content_type: str | None = None
    #: base64 of the raw bytes (pydantic encodes/decodes bytes as base64 in JSON with ser_json_bytes);
    #: empty when the document is sent by reference (``content_uri``)
    content: bytes = b""
    #: the document by reference (claim check): a URI in the object store ingestion reads
    #: (``[ingestion] object_store``), for documents too large for an event; exactly one of ``content``
    #: and ``content_uri`` is set (checked by ingestion, which dead-letters the event otherwise)
    content_uri: str = Field(default="", max_length=2048)
    metadata: dict[str, str] = Field(default_factory=dict)

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class DeletionRequested(Event):
    """A producer asks to delete a document (the async twin of ``DeleteDocument``)."""

    document_id: str = Field(min_length=1, max_length=256)
    reason: str = Field(default="", max_length=2048)


class DocumentDeleted(Event):
    """A document was deleted (``DeleteDocument`` or ``deletions.requested``): published by the ingestion
    that deleted it; retrieval removes its chunks, the other regions delete it too (mirrored). Every
    version up to ``version`` is deleted: a chunk batch of such a version arriving later (in flight,
    mirrored, replayed) is not indexed."""

    document_id: str = Field(min_length=1, max_length=256)
    version: int = Field(ge=0)
    reason: str = Field(default="", max_length=2048)
    #: the verified principal who deleted it ("" with authentication off or for a producer's request)
    deleted_by: str = Field(default="", max_length=512)
    #: the region it was deleted in ("" = single region)
    origin: str = ""


class ChunkPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    index: int = Field(ge=0)
    text: str
    start: int = Field(ge=0, description="character offset of the chunk in the parsed document text")
    end: int = Field(ge=0)
    metadata: dict[str, str] = Field(default_factory=dict)


class ChunkBatchEvent(Event):
    document_id: str
    content_hash: str
    #: monotonically increasing per document: a newer version replaces an older one
    version: int = Field(ge=1)
    batch_index: int = Field(ge=0)
    batch_count: int = Field(ge=1)


class ChunksCreated(ChunkBatchEvent):
    chunks: list[ChunkPayload]


class EmbeddedChunk(ChunkPayload):
    vector: list[float]


class ChunksEmbedded(ChunkBatchEvent):
    model_id: str
    chunks: list[EmbeddedChunk]


class ChunksIndexed(ChunkBatchEvent):
    count: int = Field(ge=0)


class TenantDeleted(Event):
    pass


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    document_id: str
    start: int
    end: int
    #: the source as a person knows it (file name, title, URI); "" when unknown or in older events
    source_name: str = ""
    title: str = ""
    uri: str = ""


class VerdictReason(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    start: int | None = None
    end: int | None = None


class GuardrailVerdict(Event):
    stage: Literal["input", "output", "chunk"]
    action: Literal["allow", "redact", "block", "flag"]
    reasons: list[VerdictReason] = Field(default_factory=list)
    subject_id: str = ""
    #: the label of the tenant's policy version the check applied (``v3``, ``default``)
    policy_version: str = ""


class QuarantinedChunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    #: the chunk's text as parsed (the original payload: nothing of a quarantined document is lost)
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    #: why: the findings of its scan ("" codes never occur); empty for a chunk quarantined only because
    #: another chunk of its document was (scope ``document``)
    reasons: list[VerdictReason] = Field(default_factory=list)


class ChunksQuarantined(Event):
    """Chunks the guardrail's ingest scan blocked, withheld from the index (``isthmus.chunks.quarantined``).

    With the policy's scope ``document`` every chunk of the document is here and none is indexed; with
    ``chunk`` only the blocked ones are."""

    document_id: str
    content_hash: str
    version: int = Field(ge=1)
    filename: str = ""
    policy_version: str = ""
    scope: Literal["document", "chunk"] = "document"
    chunks: list[QuarantinedChunk]


class ChunkProvenance(BaseModel):
    """A chunk an answer was made from: retrieved (the chunk's offsets) or cited (the cited span's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    document_id: str
    #: the version of the document the chunk belongs to; 0 = not known (indexed before it was recorded)
    document_version: int = Field(default=0, ge=0)
    start: int = 0
    end: int = 0
    score: float = 0.0


class VerdictSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: "" = the check did not run (e.g. no output check of a blocked question)
    action: Literal["", "allow", "redact", "block", "flag"] = ""
    codes: list[str] = Field(default_factory=list)


class Provenance(BaseModel):
    """How an answer was made (``AnswerProduced.provenance``; kept by evaluation, ``GetProvenance``).

    Every field has a default: answers from producers that did not record provenance parse, empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the verified subject that asked; "" with authentication off (or from an older producer)
    principal: str = Field(default="", max_length=512)
    retrieved: list[ChunkProvenance] = Field(default_factory=list)
    cited: list[ChunkProvenance] = Field(default_factory=list)
    embedding_model: str = ""
    generator: str = ""
    generator_model: str = ""
    prompt_version: str = ""
    guardrail_policy_version: str = ""
    input_verdict: VerdictSummary = Field(default_factory=VerdictSummary)
    output_verdict: VerdictSummary = Field(default_factory=VerdictSummary)
    #: milliseconds per stage (input_guard, retrieval, generation, output_guard)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    #: the model bundle ("<name>@<version>", ``ISTHMUS_MODEL_BUNDLE``) of the workload that answered;
    #: "" when it runs the bundled models (what the EdgeRollout gates compare per bundle)
    model_bundle: str = Field(default="", max_length=128)


class SampleContext(BaseModel):
    """A context an answer was generated from, with its text (in an :class:`AnswerSample`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str
    document_id: str
    #: offset of ``text`` in the parsed document (citations' offsets are in the same coordinates)
    start: int = Field(default=0, ge=0)
    text: str = Field(max_length=65_536)
    score: float = 0.0


class SampleSentence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(max_length=16_384)
    citations: list[Citation] = Field(default_factory=list)


class AnswerSample(BaseModel):
    """The content of an answer sampled for online evaluation (``AnswerProduced.sample``): what the user
    saw after the guardrail, and the contexts it was generated from. Present only on the sampled share of
    answers (the orchestrator's ``eval_sample_rate``), never on blocked answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(max_length=16_384)
    answer: str = Field(max_length=65_536)
    #: the answer's sentences with their citations (spans of the contexts, document offsets)
    sentences: list[SampleSentence] = Field(default_factory=list, max_length=512)
    contexts: list[SampleContext] = Field(default_factory=list, max_length=256)


class AnswerProduced(Event):
    """An answer given; its id is ``question_id`` (the AskResponse's)."""

    question_id: str
    latency_ms: float = Field(ge=0)
    citations: list[Citation] = Field(default_factory=list)
    blocked: bool = False
    generator: str = ""
    retrieved: int = Field(default=0, ge=0)
    provenance: Provenance = Field(default_factory=Provenance)
    #: the answer's content, on sampled answers only (online evaluation); None otherwise
    sample: AnswerSample | None = None


#: the answer-quality metrics online evaluation scores and watches (``QualityDropped.metric``)
QualityMetric = Literal["faithfulness", "answer_relevance", "context_precision", "ndcg_at_10"]


class QualityDropped(Event):
    """A tenant's online answer quality fell past its allowance: the mean of ``metric`` over the recent
    window is lower than over the baseline window before it by more than ``threshold``. Raised once when
    the drop is detected; again only after the metric recovered (``idempotency_key`` names the window)."""

    metric: QualityMetric
    baseline: float
    current: float
    #: baseline - current (> threshold)
    drop: float
    threshold: float
    #: the recent window (seconds) and the samples it holds; the baseline window's samples
    window_seconds: int = Field(ge=1)
    samples: int = Field(ge=0)
    baseline_samples: int = Field(ge=0)
    #: "" = every bundle together
    model_bundle: str = Field(default="", max_length=128)
    region: str = ""


#: what an audit record is about (isthmus_core.auth.audit)
AuditKind = Literal[
    "authentication_failed",  # no token, or one that does not verify
    "permission_denied",  # a verified caller without the permission (in that tenant)
    "admin_action",  # a method marked admin in isthmus_core.auth.methods, whatever its outcome
    "impersonation",  # a caller naming other principals in an AccessScope (admins only)
    "quota_exceeded",  # a tenant past one of its quotas
    "erasure",  # documents, a data subject or a tenant erased
    "deletion",  # a document deleted (DeleteDocument, or a producer's deletions.requested)
]


class AuditRecorded(Event):
    """One audit record. ``tenant_id`` is empty for what concerns no tenant (a token refused before any
    tenant was read, a platform-wide call)."""

    tenant_id: str = Field("", pattern=r"^(|" + TENANT_PATTERN.strip("^$") + r")$")
    kind: AuditKind
    principal: str = Field("", max_length=512, description="the verified subject; empty if none")
    method: str = Field("", max_length=256, description="the full gRPC method, or the bus topic")
    outcome: Literal["ok", "denied", "failed"] = "ok"
    reason: str = Field("", max_length=2048)
    details: dict[str, str] = Field(default_factory=dict)
    peer: str = Field(default="", max_length=256, description="the caller's address, as gRPC reports it")
    region: str = ""


class DeadLetterReplayed(Event):
    """A dead letter was re-published to its source topic (``OperationsService.ReplayDeadLetter``, or
    ``isthmus dlq replay``): the record that refuses a second replay of it. ``tenant_id`` is the letter's
    tenant, empty when it has none known."""

    tenant_id: str = Field("", pattern=r"^(|" + TENANT_PATTERN.strip("^$") + r")$")
    #: the dead letter: its topic (``<topic>.dlq``) and position
    dead_letter_topic: str = Field(min_length=1, max_length=512)
    dead_letter_partition: int = Field(ge=0)
    dead_letter_offset: int = Field(ge=0)
    #: where its original value was published
    topic: str = Field(min_length=1, max_length=512)
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    #: the verified subject who replayed it
    replayed_by: str = Field("", max_length=512)


#: an erasure's id: 32 lowercase hex digits (a uuid4), made by the ingestion that received the request
ERASURE_ID_PATTERN = r"^[0-9a-f]{32}$"
#: most document ids one ErasureRequested carries (20,000 ids of at most 128 characters, listed and with
#: their versions, stay under the bus's 8 MiB message limit); a whole-tenant erasure carries none
ERASURE_MAX_DOCUMENTS = 20_000
#: most document ids one Erase call names (a data subject or a whole tenant may cover more)
ERASE_MAX_IDS = 10_000
#: longest data subject an Erase call names (the value of its upload metadata key)
ERASE_MAX_SUBJECT_CHARS = 256
#: the places that erase a tenant's data on ``erasures.requested`` and answer with ``erasures.applied``,
#: in every region: a receipt expects one step of each per region (plus ``kafka``, see
#: :data:`ERASURE_KAFKA_PLACE`); a place whose handler is not deployed leaves its step pending
ERASURE_PLACES: tuple[str, ...] = ("ingestion", "retrieval", "evaluation")
#: the receipt step about events already on the bus's topics (not rewritten; they expire with retention)
ERASURE_KAFKA_PLACE = "kafka"


class ErasureRequested(Event):
    """Erase documents (or a whole tenant) everywhere: published by the ingestion that received the
    ``Erase`` call, mirrored to the other regions (each erases there too and answers).

    ``document_ids`` are the documents the origin resolved (none for a whole tenant); a region also
    erases the documents its own registry finds for ``data_subject`` (documents it holds that the
    origin had not seen yet)."""

    erasure_id: str = Field(pattern=ERASURE_ID_PATTERN)
    document_ids: list[str] = Field(default_factory=list, max_length=ERASURE_MAX_DOCUMENTS)
    #: the highest version of each document the origin knew when it erased it: a region that has not
    #: received the document yet (its mirrored chunks still on their way) erases them when they land
    versions: dict[str, int] = Field(default_factory=dict, max_length=ERASURE_MAX_DOCUMENTS)
    data_subject: str = Field(default="", max_length=ERASE_MAX_SUBJECT_CHARS)
    whole_tenant: bool = False
    #: the region the erasure was requested in, where its receipt is kept ("" = single region)
    origin: str = ""


class ErasureApplied(Event):
    """One place of one region reporting what it erased (or why it could not), for the receipt."""

    erasure_id: str = Field(pattern=ERASURE_ID_PATTERN)
    place: str = Field(min_length=1, max_length=64)
    region: str = ""
    count: int = Field(default=0, ge=0)
    status: Literal["done", "failed"] = "done"
    detail: str = Field(default="", max_length=2048)


#: agent runs (issue 15): approval ids and run ids are 32 lowercase hex digits
AGENT_ID_PATTERN = r"^[0-9a-f]{32}$"


class ApprovalRequested(Event):
    """A sensitive tool call of an agent run waits for a person: ``Approve`` or ``Reject`` (gRPC) decide
    it, or it expires. Every orchestrator replica keeps the pending list from these events."""

    approval_id: str = Field(pattern=AGENT_ID_PATTERN)
    run_id: str = Field(pattern=AGENT_ID_PATTERN)
    graph: str = Field(max_length=64)
    tool: str = Field(max_length=64)
    arguments_json: str = Field(max_length=16_384)
    requested_by: str = Field("", max_length=512)
    expires_at_ms: int = Field(ge=0)


class ApprovalDecided(Event):
    """An approval decided: the waiting run (in whichever replica holds it) resumes or stops."""

    approval_id: str = Field(pattern=AGENT_ID_PATTERN)
    run_id: str = Field(pattern=AGENT_ID_PATTERN)
    state: Literal["approved", "rejected", "expired"]
    decided_by: str = Field("", max_length=512)
    reason: str = Field("", max_length=2_000)


#: prompt versions (issue 15, agents.prompts): ``v1``, ``v2``…; a template's sha256, in hex
PROMPT_VERSION_PATTERN = r"^v[1-9][0-9]{0,5}$"
PROMPT_DIGEST_PATTERN = r"^[0-9a-f]{64}$"
PROMPT_NAME_PATTERN = r"^[a-z_]{1,32}$"
PROMPT_MAX_TEMPLATE_CHARS = 20_000

PromptVersionLabel = Annotated[str, Field(pattern=PROMPT_VERSION_PATTERN)]


class PromptVersionCreated(Event):
    """A prompt template version created in one orchestrator replica; every replica applies it to its own
    view. ``version`` is the number the creating replica answered with; the number every replica keeps is
    derived from the order of these events (see ``agents.prompts``), which equals it unless two replicas
    created versions of one prompt at the same moment."""

    name: str = Field(pattern=PROMPT_NAME_PATTERN)
    version: str = Field(pattern=PROMPT_VERSION_PATTERN)
    template: str = Field(min_length=1, max_length=PROMPT_MAX_TEMPLATE_CHARS)
    digest: str = Field(pattern=PROMPT_DIGEST_PATTERN)
    created_by: str = Field(min_length=1, max_length=512)
    created_at_ms: int = Field(ge=0)


class PromptSplitSet(Event):
    """A tenant's A/B split of one prompt replaced: version -> percent (1-100, summing to 100; empty = the
    built-in template). ``digests`` names each version's template (version -> sha256), so the split
    follows the templates should a version be renumbered, and may arrive before the version itself."""

    name: str = Field(pattern=PROMPT_NAME_PATTERN)
    percent: dict[PromptVersionLabel, Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=dict, max_length=100
    )
    digests: dict[PromptVersionLabel, Annotated[str, Field(pattern=PROMPT_DIGEST_PATTERN)]] = Field(
        default_factory=dict, max_length=100
    )


class UsageRecorded(Event):
    """The LLM tokens and cost of one request (its id is ``question_id``), per model it used."""

    question_id: str = Field(max_length=64)
    graph: str = Field("", max_length=64)
    model: str = Field("", max_length=256)
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    #: counted by the model server (``usage`` of its responses) rather than estimated
    reported: bool = False
    principal: str = Field("", max_length=512)
