"""Deleting a document (``DeleteDocument``, ``isthmus.deletions.requested.v1``): the rules, pure.

Unlike an erasure (:mod:`isthmus_ingestion.erasure`, every trace removed), a deleted document keeps its
record, status ``deleted``, and its history; ``isthmus.documents.deleted.v1`` (:class:`DocumentDeleted`,
every version up to ``version``) tells retrieval to remove its chunks and the other regions to delete it
too. Nothing older brings it back:

* a chunk batch of a deleted version indexed after the deletion (in flight, mirrored, replayed) is
  answered with the deletion again (ingestion's ``on_chunks_indexed``), as erasure does for late chunks;
* ``isthmus reindex`` skips the chunk events of deleted versions (:func:`deleted_by`);
* a ``documents.submitted`` event written before the deletion (a Kafka replay: an offset reset, a
  dead letter replayed, a producer sending its old events again) is not ingested
  (:func:`submitted_before`); one written after it is a new upload: a new version, ingested;
* a ``deletions.requested`` event written before the document's current version was uploaded does not
  delete that version (:func:`requested_before`).

"Written" is the event's ``occurred_at`` (the producer's clock; a replayed record keeps it, while the
broker's append time is new for a republished dead letter), or the time of the call for ``Upload`` and
``DeleteDocument``; the registry keeps it with each status change (``history.written``), so an upload
and a deletion are ordered as they were sent, however late each is consumed. A producer whose clock
lags the platform's by *s* seconds sees an upload made less than *s* seconds after a gRPC deletion
skipped as a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from isthmus_core.contracts.events import DocumentDeleted
from isthmus_core.errors import InvalidArgument
from isthmus_ingestion.erasure import MAX_REASON_CHARS

DELETE_METHOD: Final = "/isthmus.ingestion.v1.IngestionService/DeleteDocument"


def check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")
    return reason


def deletion_key(tenant_id: str, document_id: str, version: int) -> str:
    """The idempotency key of a document's deletion (the same for a repeated call: one deletion)."""
    return f"{tenant_id}/{document_id}/deleted/v{version}"


def submitted_before(submitted_at: float, deleted_at: float | None) -> bool:
    """Whether a submission written at ``submitted_at`` predates the deletion (a replay: not ingested)."""
    return deleted_at is not None and submitted_at <= deleted_at


def requested_before(requested_at: float, version_since: float | None) -> bool:
    """Whether a deletion requested at ``requested_at`` predates the current version (``version_since``:
    when it was recorded; None for a record older than the history): it does not delete that version."""
    return version_since is not None and requested_at < version_since


def deleted_by(deletions: Iterable[DocumentDeleted | tuple[str, int]]) -> Callable[[str, int], bool]:
    """``covered(document_id, version)``: whether that version of the document was deleted (every version
    up to the highest deleted one is), from ``documents.deleted`` events or ``(document id, version)``
    pairs (the registry's deleted documents) — a replay of the bus's history (``isthmus reindex``)
    skips its chunk events, so a deleted document does not come back; a version uploaded after the
    deletion is higher, and kept."""
    highest: dict[str, int] = {}
    for d in deletions:
        doc, version = (d.document_id, d.version) if isinstance(d, DocumentDeleted) else d
        highest[doc] = max(highest.get(doc, version), version)

    def covered(document_id: str, version: int) -> bool:
        deleted = highest.get(document_id)
        return deleted is not None and version <= deleted

    return covered
