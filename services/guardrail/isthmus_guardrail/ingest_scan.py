"""The ``ScanChunks`` edge's translation (the servicer method in :mod:`isthmus_guardrail.api` delegates):
the request's chunks checked and parsed, the verdicts as proto, and the verdict events of a scan.

The decisions are :meth:`isthmus_guardrail.guard.Guard.scan_chunks`'s. Only chunks that are not ALLOWed
get a ``guardrail.verdicts`` event (stage ``chunk``, subject ``<document_id>/<index>``): a clean corpus
does not flood the topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus_core.contracts.events import GuardrailVerdict, VerdictReason
from isthmus_core.contracts.ids import parse_document_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.guard import Action, ChunkVerdict, IngestScope

#: most chunks one ScanChunks call may carry (ingestion's client sends 64)
MAX_CHUNKS_PER_CALL = 1024

_ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
    Action.FLAG: common_pb2.GUARD_ACTION_FLAG,
}

_EVENT_ACTION: dict[Action, Literal["allow", "redact", "block", "flag"]] = {
    Action.ALLOW: "allow",
    Action.REDACT: "redact",
    Action.BLOCK: "block",
    Action.FLAG: "flag",
}


def chunks_of(request: pb.ScanChunksRequest, max_text_chars: int) -> tuple[str, list[tuple[int, str]]]:
    """(document id, ``(index, text)`` chunks) of a request; InvalidArgument naming what is wrong."""
    document = parse_document_id(request.document_id, "document_id")
    if not request.chunks:
        raise InvalidArgument("chunks is empty; send at least one chunk")
    if len(request.chunks) > MAX_CHUNKS_PER_CALL:
        raise InvalidArgument(
            f"{len(request.chunks)} chunks in one call; the limit is {MAX_CHUNKS_PER_CALL} "
            "(send several calls)"
        )
    seen: set[int] = set()
    out: list[tuple[int, str]] = []
    for n, c in enumerate(request.chunks):
        if c.index < 0 or c.index in seen:
            raise InvalidArgument(f"chunks[{n}].index {c.index} is negative or repeated")
        if len(c.text) > max_text_chars:
            raise InvalidArgument(
                f"chunks[{n}].text is {len(c.text)} characters; the limit is {max_text_chars}"
            )
        seen.add(c.index)
        out.append((c.index, c.text))
    return document, out


def response_pb(
    verdicts: Sequence[ChunkVerdict], policy_version: str, scope: IngestScope
) -> pb.ScanChunksResponse:
    return pb.ScanChunksResponse(
        verdicts=[
            pb.ChunkVerdict(
                index=v.index,
                action=_ACTION_TO_PB[v.action],
                text=v.text,
                findings=[
                    common_pb2.Finding(
                        code=f.code, message=f.message, start=f.start, end=f.end, score=f.score
                    )
                    for f in v.findings
                ],
            )
            for v in verdicts
        ],
        policy_version=policy_version,
        scope=scope.value,
    )


def verdict_events(
    tenant: str,
    document: str,
    chunks: Sequence[tuple[int, str]],
    verdicts: Sequence[ChunkVerdict],
    policy_version: str,
) -> list[GuardrailVerdict]:
    """One event per chunk that is not ALLOWed. The idempotency key names the chunk and a digest of its
    text and the policy: a retried scan repeats its keys, a new version of the document does not."""
    texts = dict(chunks)
    events = []
    for v in verdicts:
        if v.action is Action.ALLOW:
            continue
        digest = hashlib.sha256(f"{policy_version}\0{texts.get(v.index, '')}".encode()).hexdigest()[:16]
        subject = f"{document}/{v.index}"
        events.append(
            GuardrailVerdict(
                tenant_id=tenant,
                idempotency_key=f"{tenant}/{subject}/chunk/{digest}",
                stage="chunk",
                action=_EVENT_ACTION[v.action],
                subject_id=subject,
                policy_version=policy_version,
                reasons=[
                    VerdictReason(code=f.code, message=f.message, start=f.start, end=f.end)
                    for f in v.findings
                ],
            )
        )
    return events
