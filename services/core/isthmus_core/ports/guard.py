"""Guard port: checks on inputs (injection, PII), ingested chunks, and outputs (grounding).

Conformance: :mod:`isthmus_core.testing.guard_conformance`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from isthmus_core.ports.generator import AnswerSentence, Context


class Action(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"
    #: allowed, with findings worth a person's look (an ingested chunk indexed with a flag)
    FLAG = "flag"


class PolicyAction(StrEnum):
    """What a policy does with a finding of one kind at one stage (PII on input, injection at ingest...)."""

    #: report only: the finding is in the verdict, the text goes on unchanged (an ingested chunk is
    #: indexed with a flag in its metadata)
    FLAG = "flag"
    #: replace each finding's span with ``<ENTITY>`` (PII only)
    REDACT = "redact"
    #: hide all but the last characters of each finding's span (``************1234``; PII only)
    MASK = "mask"
    #: BLOCK the text (a question is refused, an answer withheld, a chunk quarantined)
    BLOCK = "block"


class IngestScope(StrEnum):
    """What a BLOCK of one ingested chunk quarantines."""

    #: the whole document: none of its chunks is indexed (a poisoned document is not half-trusted)
    DOCUMENT = "document"
    #: that chunk only: the document's other chunks are indexed
    CHUNK = "chunk"


@dataclass(frozen=True, slots=True)
class BannedTopic:
    """A topic a tenant refuses, matched by embedding similarity of the text to ``description``."""

    name: str
    description: str
    #: cosine similarity at or above which the text is on the topic
    threshold: float = 0.6


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # e.g. "prompt_injection.ignore_instructions", "pii.EMAIL_ADDRESS", "grounding.unsupported"
    message: str
    start: int | None = None
    end: int | None = None
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    findings: tuple[Finding, ...] = ()
    #: the text to use downstream (PII replaced by placeholders when action is REDACT)
    text: str = ""
    #: the label of the tenant's policy version the check applied (``v3``; ``default`` for the built-in
    #: policy of a tenant that never stored one; "" when not known)
    policy_version: str = ""


#: the default PII entity set of questions (and, less PERSON, of answers)
DEFAULT_PII_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "PERSON_NAME",  # names given as personal data ("my name is", "Dear", signatures, titles); not PERSON
    "STREET_ADDRESS",
    "DATE_OF_BIRTH",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "UK_NINO",
    "ES_NIF",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "FR_NIR",
    "DE_TAX_ID",
    "NL_BSN",
    "BR_CPF",
)
#: entities never redacted in answers by default: answers quote the tenant's own documents, which
#: legitimately name people (authors, signatories, the people a document is about)
OUTPUT_PII_EXEMPT: frozenset[str] = frozenset({"PERSON", "PERSON_NAME"})


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-tenant guardrail policy: the content of one immutable version (see the guardrail's store).

    Stages: *input* (a question, an agent step), *output* (an answer's sentences) and *ingest* (each
    chunk of a document before it is indexed)."""

    block_injection: bool = True
    injection_threshold: float = 0.5
    redact_pii: bool = True
    #: PERSON is opt-in: redacting names in questions would stop people-centred questions from
    #: retrieving anything; tenants that need it add it to their policy
    pii_entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    pii_threshold: float = 0.5
    #: fraction of an answer sentence's content words that must appear in its cited spans
    grounding_threshold: float = 0.6
    block_ungrounded: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    # ---- input: PII action (when ``redact_pii``; off = report only), toxicity, banned topics
    pii_action: PolicyAction = PolicyAction.REDACT
    #: toxicity findings at or above the threshold BLOCK inputs and outputs
    block_toxicity: bool = True
    toxicity_threshold: float = 0.5
    #: topics refused on input and output (BLOCK), each with its own similarity threshold
    banned_topics: tuple[BannedTopic, ...] = ()

    # ---- output: PII (None = ``pii_entities`` less :data:`OUTPUT_PII_EXEMPT`) and the grounding model
    output_pii_entities: tuple[str, ...] | None = None
    output_pii_action: PolicyAction = PolicyAction.REDACT
    #: the NLI model judges each answer sentence against its cited spans (beside the lexical check)
    grounding_model: bool = True
    #: P(contradiction) at or above which a sentence is ``grounding.contradicted``
    contradiction_threshold: float = 0.5
    #: P(entailment) below which a sentence is ``grounding.not_entailed`` (0 = never)
    entailment_threshold: float = 0.0

    # ---- ingest: every chunk is scanned before it is indexed
    scan_ingest: bool = True
    #: injection in a chunk (indirect prompt injection): BLOCK quarantines, FLAG indexes with a flag
    ingest_injection_action: PolicyAction = PolicyAction.BLOCK
    #: the injection threshold at ingest (documents are long and varied: a stricter operating point)
    ingest_injection_threshold: float = 0.5
    ingest_pii_entities: tuple[str, ...] = DEFAULT_PII_ENTITIES
    ingest_pii_action: PolicyAction = PolicyAction.FLAG
    ingest_scope: IngestScope = IngestScope.DOCUMENT

    def output_entities(self) -> tuple[str, ...]:
        if self.output_pii_entities is not None:
            return self.output_pii_entities
        return tuple(e for e in self.pii_entities if e not in OUTPUT_PII_EXEMPT)

    @property
    def digest(self) -> str:
        """The policy's content hash (16 hex digits): two policies with the same settings have the same
        digest, any change gives another. A stored policy version also has a number (the guardrail's
        policy store); verdicts name that."""
        content = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()[:16]


@runtime_checkable
class InputGuard(Protocol):
    def check_input(self, text: str, policy: Policy) -> Verdict: ...


@runtime_checkable
class OutputGuard(Protocol):
    def check_output(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> Verdict:
        """BLOCK (or drop, per policy) answers whose sentences are not supported by their citations."""


@dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """The verdict on one ingested chunk."""

    #: the chunk's index in its document
    index: int
    #: ALLOW, FLAG (index it, with the finding codes in its metadata), REDACT (index ``text``) or BLOCK
    #: (quarantine it: never indexed)
    action: Action
    findings: tuple[Finding, ...] = ()
    #: the text to index (PII redacted or masked when REDACT; "" when BLOCK)
    text: str = ""


@dataclass(frozen=True, slots=True)
class ChunkScan:
    """A document's chunks scanned under one policy version."""

    verdicts: tuple[ChunkVerdict, ...]
    #: the label of the policy version applied (``v3``, ``default``)
    policy_version: str = ""
    #: what a BLOCK quarantines (the policy's ``ingest_scope``)
    scope: IngestScope = IngestScope.DOCUMENT

    @property
    def quarantines_document(self) -> bool:
        return self.scope is IngestScope.DOCUMENT and any(v.action is Action.BLOCK for v in self.verdicts)


@runtime_checkable
class ChunkGuard(Protocol):
    def scan_chunks(self, chunks: Sequence[tuple[int, str]], policy: Policy) -> tuple[ChunkVerdict, ...]:
        """One verdict per ``(index, text)`` chunk, in order (ingest stage of ``policy``)."""
        ...


@runtime_checkable
class ChunkScanner(Protocol):
    """Ingestion's view of the guardrail: scan a document's chunks before they are indexed."""

    async def scan(self, tenant_id: str, document_id: str, chunks: Sequence[tuple[int, str]]) -> ChunkScan:
        """Raises :class:`~isthmus_core.errors.Unavailable` when the guardrail cannot be reached (the
        caller retries or dead-letters: a chunk is never indexed unscanned)."""
        ...
