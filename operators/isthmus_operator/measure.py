"""Replication measurements as pure functions: documents one region holds and another lacks, and the
seconds of writes they stand for (a Tenant's ``lagDocuments``, a FailoverDrill's RPO)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class DocumentState:
    """One indexed document as a region holds it."""

    version: int
    #: when it was last written (seconds since the epoch; 0 = unknown)
    updated_at: float = 0.0


def documents_behind(source: Mapping[str, DocumentState], target: Mapping[str, DocumentState]) -> list[str]:
    """Ids of the documents ``source`` holds that ``target`` lacks or holds at a lower version, sorted."""
    behind = []
    for doc, state in source.items():
        have = target.get(doc)
        if have is None or have.version < state.version:
            behind.append(doc)
    return sorted(behind)


def seconds_of_writes(docs: list[str], source: Mapping[str, DocumentState], at: float) -> float:
    """How far back the oldest of ``docs`` was written, seen from ``at`` (0 when none; documents without
    a write time count as written at ``at``)."""
    times = [source[d].updated_at for d in docs if d in source and source[d].updated_at > 0]
    if not docs or not times:
        return 0.0
    return round(max(0.0, at - min(times)), 3)


def iso(moment: datetime) -> str:
    """A status timestamp: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_between(start: str, end: str) -> float:
    return round((parse_iso(end) - parse_iso(start)).total_seconds(), 3)
