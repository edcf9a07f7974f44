"""Erasure receipts, data-subject resolution and the bus's retention guarantee (pure: values in, values out).

An erasure is requested at one ingestion (``Erase``), which keeps its :class:`Receipt`: one
:class:`Step` per place (:data:`~isthmus_core.contracts.events.ERASURE_PLACES`, plus ``kafka``) and per
region, each ``pending`` until that place reports back with an ``ErasureApplied`` event. A step moves
``pending → done | failed``; ``failed → done`` too (a redelivered request that succeeded); ``done`` is
final (a late duplicate of the same report changes nothing). A report from a place or region the
receipt did not expect adds its step. The receipt is ``complete`` once every step is done.

Events already written to the bus are not rewritten: :func:`bus_step` states until when they stay on
the broker, from the topics' retention (crypto-shredding of per-subject keys is planned).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ERASE_MAX_IDS,
    ERASE_MAX_SUBJECT_CHARS,
    ERASURE_KAFKA_PLACE,
    ERASURE_PLACES,
    ErasureRequested,
)
from isthmus_core.errors import InvalidArgument

StepStatus = Literal["pending", "done", "failed"]
Target = Literal["documents", "data_subject", "whole_tenant"]

#: the places a receipt expects a report from, in every region (evaluation's handler may not be
#: deployed yet: its step then stays pending and the receipt incomplete, which is the truth)
EXPECTED_PLACES: Final[tuple[str, ...]] = (*ERASURE_PLACES, ERASURE_KAFKA_PLACE)
#: most document ids one Erase call may name
MAX_ERASE_IDS: Final = ERASE_MAX_IDS
#: longest data subject (the value of the upload metadata key ``erasure_subject_key``)
MAX_SUBJECT_CHARS: Final = ERASE_MAX_SUBJECT_CHARS
MAX_REASON_CHARS: Final = 1024

#: topics whose events carry a document's content: the raw bytes (documents.submitted), chunk text
#: (chunks.created, chunks.embedded, chunks.quarantined); their dead-letter twins and mirrored copies keep
#: the same retention
CONTENT_TOPICS: Final[tuple[topics.AnyTopic, ...]] = (
    topics.DOCUMENTS_SUBMITTED,
    topics.CHUNKS_CREATED,
    topics.CHUNKS_EMBEDDED,
    topics.CHUNKS_QUARANTINED,
)
#: Kafka rolls a segment at most this long after its first record (broker default ``log.roll.hours`` =
#: 168; the platform sets no ``segment.ms``), and deletes a segment only once its newest record is past
#: retention, checked every ``log.retention.check.interval.ms`` (5 minutes by default)
KAFKA_SEGMENT_MS: Final = 7 * 24 * 3600 * 1000
KAFKA_RETENTION_CHECK_MS: Final = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Step:
    place: str
    region: str
    status: StepStatus = "pending"
    count: int = 0
    detail: str = ""
    #: epoch seconds; None while pending
    completed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    erasure_id: str
    tenant_id: str
    requested_by: str
    requested_at: float
    target: Target
    reason: str
    document_ids: tuple[str, ...]
    steps: tuple[Step, ...]

    @property
    def complete(self) -> bool:
        return all(s.status == "done" for s in self.steps)

    def step(self, place: str, region: str) -> Step | None:
        return next((s for s in self.steps if s.place == place and s.region == region), None)

    def report(
        self, place: str, region: str, status: Literal["done", "failed"], count: int, detail: str, at: float
    ) -> Receipt:
        """The receipt after ``place`` in ``region`` reported (see the module docstring for the rules)."""
        current = self.step(place, region)
        if current is None:
            added = Step(place, region, status, count, detail, at)
            return dataclasses.replace(self, steps=(*self.steps, added))
        if current.status == "done":
            return self
        updated = Step(place, region, status, count, detail, at)
        return dataclasses.replace(self, steps=tuple(updated if s is current else s for s in self.steps))


def new_receipt(
    *,
    erasure_id: str,
    tenant_id: str,
    requested_by: str,
    requested_at: float,
    target: Target,
    reason: str,
    document_ids: Sequence[str],
    regions: Sequence[str],
    places: Sequence[str] = EXPECTED_PLACES,
) -> Receipt:
    """A receipt with every expected step pending: each place in each region (``[""]``: one region)."""
    steps = tuple(Step(place, region) for region in (sorted(regions) or [""]) for place in places)
    return Receipt(
        erasure_id, tenant_id, requested_by, requested_at, target, reason, tuple(document_ids), steps
    )


def unique_ids(ids: Iterable[str]) -> list[str]:
    """``ids`` without repeats, in first-seen order."""
    return list(dict.fromkeys(ids))


def check_subject(subject: str) -> str:
    if not subject.strip():
        raise InvalidArgument("data_subject is empty; name the subject whose documents to erase")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidArgument(f"data_subject is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}")
    if not subject.isprintable():
        raise InvalidArgument("data_subject has a control or non-printable character")
    return subject


def documents_of_subject(
    documents: Iterable[tuple[str, Mapping[str, str]]], subject_key: str, subject: str
) -> list[str]:
    """The ids of the documents (``(id, upload metadata)``) whose metadata ``subject_key`` is ``subject``
    (exact match: a subject is an identifier, not a search)."""
    return [doc_id for doc_id, metadata in documents if metadata.get(subject_key) == subject]


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return f"{days:g} d" if days >= 1 else f"{ms / 3_600_000:g} h"


def bus_step(
    requested_at: float,
    *,
    kafka: bool,
    retention_override_ms: int | None = None,
    specs: Sequence[topics.AnyTopic] = CONTENT_TOPICS,
    segment_ms: int = KAFKA_SEGMENT_MS,
) -> tuple[Literal["done", "failed"], str]:
    """The ``kafka`` step: until when the erased content stays on the bus's topics, which are not rewritten.

    On Kafka, every record written before ``requested_at`` is gone from the broker by ``requested_at`` +
    the longest retention among ``specs`` (``retention_override_ms`` = ``[common] kafka_retention_ms``
    replaces each topic's own) + one segment roll + one retention check. A retention of -1 keeps records
    forever: the step fails and says so. The in-process bus keeps events in the process's memory only."""
    names = ", ".join(s.name for s in specs)
    if not kafka:
        return "done", (
            f"content on {names} was held by the in-process bus in memory only (nothing on disk); "
            "it is gone when the process stops"
        )
    override = retention_override_ms
    retentions = [override if override is not None else s.retention_ms for s in specs]
    if any(r < 0 for r in retentions):
        return "failed", f"content on {names} is kept forever (retention.ms = -1): it does not expire"
    longest = max(retentions, default=0)
    by = requested_at + (longest + segment_ms + KAFKA_RETENTION_CHECK_MS) / 1000
    return "done", (
        f"content on {names} (with their .dlq twins and mirrored copies) expires by {_iso(by)} "
        f"(retention {_days(longest)}, plus up to {_days(segment_ms)} before a segment rolls); "
        "events are not rewritten: per-subject key destruction (crypto-shredding) is planned"
    )


def erased_by(erasures: Iterable[ErasureRequested]) -> Callable[[str, datetime], bool]:
    """``covered(document_id, at)``: whether an event of that document written at ``at`` predates an
    erasure of it (of the document, or of the whole tenant) — a replay of the bus's history (``isthmus
    reindex``) skips such events, so an erased document does not come back from the topics. A document
    uploaded again after its erasure is kept."""
    documents: dict[str, datetime] = {}
    whole: datetime | None = None
    for e in erasures:
        for doc in e.document_ids:
            documents[doc] = max(documents.get(doc, e.occurred_at), e.occurred_at)
        if e.whole_tenant:
            whole = e.occurred_at if whole is None else max(whole, e.occurred_at)

    def covered(document_id: str, at: datetime) -> bool:
        if whole is not None and at <= whole:
            return True
        erased_at = documents.get(document_id)
        return erased_at is not None and at <= erased_at

    return covered
