"""What the guardrail's ingest scan means for a document's chunks (pure: values in, values out).

The guardrail answers one :class:`~isthmus_core.ports.guard.ChunkVerdict` per chunk; here they become
what ingestion does:

* BLOCK — the chunk is quarantined (never indexed; its original text goes to ``chunks.quarantined`` with
  the reasons). With the policy's scope ``document`` (the default), or when every chunk is blocked, the
  whole document is quarantined: none of its chunks is indexed.
* REDACT — the redacted (or masked) text is indexed, with the finding codes in the chunk's
  :data:`GUARDRAIL_FLAGS_KEY` metadata.
* FLAG — the chunk is indexed as it is, with the finding codes in :data:`GUARDRAIL_FLAGS_KEY`.
* ALLOW — indexed as it is (weak findings below the policy's thresholds leave no mark).

A scan that does not answer every chunk exactly once is refused (:class:`Unavailable`): a chunk is never
indexed unscanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from isthmus_core.contracts.events import QuarantinedChunk, VerdictReason
from isthmus_core.errors import Unavailable
from isthmus_core.ports.generator import PARENT_END_KEY, PARENT_START_KEY, PARENT_TEXT_KEY
from isthmus_core.ports.guard import Action, ChunkScan, ChunkVerdict, Finding
from isthmus_ingestion.chunking import TextChunk

#: chunk metadata key: the finding codes of a chunk indexed with a flag or redacted (comma-separated)
GUARDRAIL_FLAGS_KEY = "guardrail_flags"
#: longest ``quarantine_reason`` kept on a document record
MAX_REASON_CHARS = 1000
#: chunks named one by one in a ``quarantine_reason`` (the rest are counted)
REASON_CHUNKS = 3


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    chunk: TextChunk
    #: the text to index (the redacted text when the scan redacted it)
    text: str
    #: the finding codes to record in the chunk's metadata ("" = none)
    flags: str = ""


@dataclass(frozen=True, slots=True)
class Screening:
    """A document's chunks after the scan: what is indexed, what is quarantined, and why."""

    indexed: tuple[IndexedChunk, ...]
    quarantined: tuple[QuarantinedChunk, ...]
    #: no chunk of the document is indexed
    document_quarantined: bool
    flagged: int = 0
    redacted: int = 0
    reason: str = ""
    policy_version: str = ""
    scope: str = "document"


def unscanned(chunks: Sequence[TextChunk]) -> Screening:
    """Scanning is off (``[ingestion] scan_chunks = false``): every chunk is indexed as it is."""
    return Screening(tuple(IndexedChunk(c, c.text) for c in chunks), (), False)


def _codes(findings: Sequence[Finding]) -> str:
    return ",".join(sorted({f.code for f in findings}))


def _reasons(findings: Sequence[Finding]) -> list[VerdictReason]:
    return [VerdictReason(code=f.code, message=f.message, start=f.start, end=f.end) for f in findings]


def _check_complete(chunks: Sequence[TextChunk], verdicts: Sequence[ChunkVerdict]) -> dict[int, ChunkVerdict]:
    by_index = {v.index: v for v in verdicts}
    wanted = [c.index for c in chunks]
    if len(verdicts) != len(chunks) or set(by_index) != set(wanted):
        raise Unavailable(
            f"the guardrail answered {len(verdicts)} verdicts for {len(chunks)} chunks (indexes "
            f"{sorted(by_index)[:10]}...): the document is not indexed unscanned"
        )
    return by_index


def screen(chunks: Sequence[TextChunk], scan: ChunkScan) -> Screening:
    """The chunks to index and to quarantine under ``scan`` (see the module docstring)."""
    verdicts = _check_complete(chunks, scan.verdicts)
    blocked = [c for c in chunks if verdicts[c.index].action is Action.BLOCK]
    whole = bool(blocked) and (scan.quarantines_document or len(blocked) == len(chunks))
    quarantined = tuple(
        QuarantinedChunk(
            index=c.index,
            text=c.text,
            start=c.start,
            end=c.end,
            reasons=_reasons(verdicts[c.index].findings) if verdicts[c.index].action is Action.BLOCK else [],
        )
        for c in chunks
        if whole or verdicts[c.index].action is Action.BLOCK
    )
    indexed: list[IndexedChunk] = []
    flagged = redacted = 0
    if not whole:
        for c in chunks:
            v = verdicts[c.index]
            if v.action is Action.BLOCK:
                continue
            if v.action is Action.REDACT:
                redacted += 1
                indexed.append(IndexedChunk(c, v.text, _codes(v.findings)))
            elif v.action is Action.FLAG:
                flagged += 1
                indexed.append(IndexedChunk(c, c.text, _codes(v.findings)))
            else:
                indexed.append(IndexedChunk(c, c.text))
    return Screening(
        indexed=tuple(indexed),
        quarantined=quarantined,
        document_quarantined=whole,
        flagged=flagged,
        redacted=redacted,
        reason=quarantine_reason(blocked, verdicts, len(chunks), whole, scan.policy_version),
        policy_version=scan.policy_version,
        scope=scan.scope.value,
    )


def quarantine_reason(
    blocked: Sequence[TextChunk],
    verdicts: dict[int, ChunkVerdict],
    total: int,
    whole: bool,
    policy_version: str,
) -> str:
    """``"2 of 5 chunks blocked by guardrail policy v3 (document quarantined): chunk 1: prompt_injection.
    ignore_instructions; chunk 4: pii.US_SSN"``; "" when nothing was blocked."""
    if not blocked:
        return ""
    policy = f" by guardrail policy {policy_version}" if policy_version else " by the guardrail"
    head = f"{len(blocked)} of {total} chunks blocked{policy}"
    head += " (document quarantined)" if whole else " (those chunks quarantined)"
    named = [
        f"chunk {c.index}: {_codes(verdicts[c.index].findings) or 'blocked'}" for c in blocked[:REASON_CHUNKS]
    ]
    if len(blocked) > REASON_CHUNKS:
        named.append(f"{len(blocked) - REASON_CHUNKS} more")
    reason = f"{head}: {'; '.join(named)}"
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


_PARENT_KEYS = frozenset({PARENT_TEXT_KEY, PARENT_START_KEY, PARENT_END_KEY})


def _parent_of(chunk: TextChunk) -> tuple[str, str] | None:
    meta = dict(chunk.metadata)
    if PARENT_TEXT_KEY not in meta:
        return None
    return meta.get(PARENT_START_KEY, ""), meta.get(PARENT_END_KEY, "")


def parents_screened(screened: Screening) -> Screening:
    """``parent-child`` chunks: a parent's text is only what its children hold, and only the children are
    scanned; so a parent one of whose children was redacted or quarantined is not kept in any child's
    metadata (those children answer from their own, scanned, text)."""
    tainted = {
        p for k in screened.indexed if k.text != k.chunk.text and (p := _parent_of(k.chunk)) is not None
    }
    # a quarantined chunk lies inside the parent whose offsets enclose it
    spans = {p for k in screened.indexed if (p := _parent_of(k.chunk)) is not None}
    for q in screened.quarantined:
        tainted |= {p for p in spans if _encloses(p, q.start)}
    if not tainted:
        return screened
    indexed = tuple(
        IndexedChunk(
            replace(k.chunk, metadata=tuple((n, v) for n, v in k.chunk.metadata if n not in _PARENT_KEYS)),
            k.text,
            k.flags,
        )
        if _parent_of(k.chunk) in tainted
        else k
        for k in screened.indexed
    )
    return replace(screened, indexed=indexed)


def _encloses(parent: tuple[str, str], offset: int) -> bool:
    start, end = parent
    return start.isdigit() and end.isdigit() and int(start) <= offset < int(end)
