"""A drill's timeline and what it measures: RPO, RTO, loss, duplicates, the regions compared.

Pure (values in, values out, no I/O): the runner (``isthmus drill run``) and the operator record events
and snapshots, this module turns them into numbers. Times are seconds since the drill started (any
monotonic origin works, as long as one timeline uses one).

The timeline
  * :class:`Write` — one Upload attempt: when it started, how long it took, the region that answered
    (or was tried), acknowledged (``ok``) or not.
  * :class:`Read` — one Search/Ask for the unique token of an acknowledged document: ``ok`` = the call
    succeeded *and* found that document.
  * :class:`Marker` — what the drill did or saw: ``fault`` (a fault hook started: the fault is in effect
    from then on — the pessimistic choice for RTO), ``detection`` (the client saw the faulty region
    unhealthy), ``failover`` (writes moved to the survivor), ``recovery`` (the survivor answered),
    ``heal`` (a heal hook finished: the region is back), ``catch-up`` (both regions hold the same
    documents), ``failback`` (writes moved back), ``step`` (anything else the scenario did).

The measures (:func:`measure`)
  * **RPO** at the first failover after the first fault: the acknowledged writes of the failed region
    (``ok`` writes whose region is the failed one, acknowledged at or before the failover) that the
    survivor did not hold (INDEXED) at failover, as a count and in seconds of writes: the survivor holds
    every write up to the *recovery point* (the acknowledgement just before the oldest missing one; the
    oldest missing one itself when none precedes it), and the failed region stopped acknowledging at
    the fault (or at its last acknowledgement, if one came later): RPO seconds = stop - recovery point,
    0 when nothing is missing. Without a fault the reference time is the failover itself (a planned
    move, e.g. ``tenant-move``).
  * **RTO, first answer**: fault → the completion of the first successful read served by the survivor
    (a read that completed at or after the fault).
  * **RTO, error rate < 1 %**: the error rate at a request's completion time ``c`` is the share of failed
    requests (reads and writes of the drill's tenant) among those completed in the trailing window
    ``(c - window_s, c]`` (``window_s`` = 5 s by default). Evaluated at every completion from the fault
    on: once it has reached ``max_error_rate`` (1 %) or more, the RTO is the first later completion at
    which it is back under, minus the fault time. If it never reached 1 % after the fault, the RTO is 0;
    if it never came back under, None (not recovered). A later relapse is another event (e.g. a
    failback): it does not move this RTO. The window makes this RTO at least ``window_s`` past the last
    failure of the outage: with traffic at a few requests per second, one failure in a 5 s window is
    already over 1 %.
  * **after convergence** (both regions up and caught up), from a :class:`RegionSnapshot` per region:
    acknowledged writes lost = acknowledged document ids not INDEXED in every region (expected 0);
    duplicated chunks = a region's chunk count minus the chunks of its INDEXED documents (expected 0);
    the two regions' documents compared by (document_id, version, content_hash, chunk_count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

DEFAULT_WINDOW_S: Final = 5.0
DEFAULT_MAX_ERROR_RATE: Final = 0.01


class Mark(StrEnum):
    FAULT = "fault"
    DETECTION = "detection"
    FAILOVER = "failover"
    RECOVERY = "recovery"
    HEAL = "heal"
    CATCH_UP = "catch-up"
    FAILBACK = "failback"
    STEP = "step"


@dataclass(frozen=True, slots=True)
class Write:
    t: float  # the call started
    document_id: str
    region: str  # the region that acknowledged it (or refused / was unreachable)
    ok: bool
    latency_s: float = 0.0
    error: str = ""

    @property
    def done(self) -> float:
        return self.t + self.latency_s


@dataclass(frozen=True, slots=True)
class Read:
    t: float
    region: str  # the region that answered (or the last one tried)
    ok: bool
    latency_s: float = 0.0
    document_id: str = ""  # the document looked for
    error: str = ""

    @property
    def done(self) -> float:
        return self.t + self.latency_s


@dataclass(frozen=True, slots=True)
class Marker:
    t: float
    kind: Mark
    region: str = ""
    note: str = ""


@dataclass
class Timeline:
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)

    def first(self, kind: Mark, after: float = float("-inf")) -> Marker | None:
        hits = [m for m in self.markers if m.kind == kind and m.t >= after]
        return min(hits, key=lambda m: m.t) if hits else None

    @property
    def end(self) -> float:
        times = [w.done for w in self.writes] + [r.done for r in self.reads] + [m.t for m in self.markers]
        return max(times, default=0.0)

    def acknowledged(self, region: str | None = None, until: float = float("inf")) -> list[Write]:
        """Acknowledged writes (of ``region``), acknowledged at or before ``until``, oldest first."""
        return sorted(
            (w for w in self.writes if w.ok and (region is None or w.region == region) and w.done <= until),
            key=lambda w: w.done,
        )


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """One document as a region's ingestion registry lists it."""

    document_id: str
    version: int
    content_hash: str
    chunk_count: int
    indexed: bool = True

    def key(self) -> tuple[int, str, int]:
        return (self.version, self.content_hash, self.chunk_count)


@dataclass(frozen=True, slots=True)
class RegionSnapshot:
    """A region's view of the drill's tenant after convergence: its documents and its chunk count."""

    region: str
    documents: tuple[DocumentRow, ...]
    chunk_count: int

    def indexed(self) -> dict[str, DocumentRow]:
        return {d.document_id: d for d in self.documents if d.indexed}


@dataclass(frozen=True, slots=True)
class Rpo:
    failed_region: str
    survivor: str
    at: float  # the failover
    reference: float  # the fault (or the failover when there was none)
    missing: tuple[str, ...]  # acknowledged in the failed region, not in the survivor at failover
    seconds: float
    acknowledged: int  # acknowledged writes of the failed region up to the failover

    @property
    def count(self) -> int:
        return len(self.missing)


@dataclass(frozen=True, slots=True)
class Rto:
    fault: float
    survivor: str
    first_answer_s: float | None  # None: the survivor never answered
    error_rate_s: float | None  # None: the error rate never went back under the threshold
    window_s: float
    max_error_rate: float


@dataclass(frozen=True, slots=True)
class DocumentDiff:
    document_id: str
    rows: dict[str, tuple[int, str, int] | None]  # region -> (version, content_hash, chunk_count)


@dataclass(frozen=True, slots=True)
class Convergence:
    regions: tuple[str, ...]
    compared: int  # documents listed (INDEXED) in any region
    equal: int
    differences: tuple[DocumentDiff, ...]
    lost: dict[str, tuple[str, ...]]  # region -> acknowledged document ids it does not hold
    duplicates: dict[str, int]  # region -> chunks beyond those of its indexed documents

    @property
    def lost_count(self) -> int:
        return len({d for ids in self.lost.values() for d in ids})

    @property
    def duplicate_count(self) -> int:
        return sum(self.duplicates.values())


@dataclass(frozen=True, slots=True)
class Measures:
    rpo: Rpo | None
    rto: Rto | None
    convergence: Convergence | None
    writes: int
    writes_acknowledged: int
    reads: int
    reads_ok: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.rpo is not None:
            out["rpo"]["count"] = self.rpo.count
        if self.convergence is not None:
            out["convergence"]["lost_count"] = self.convergence.lost_count
            out["convergence"]["duplicate_count"] = self.convergence.duplicate_count
        return out


def rpo(timeline: Timeline, failed: str, survivor: str, available: Iterable[str]) -> Rpo | None:
    """RPO at the first failover after the first fault (see the module docstring); ``available`` = the
    document ids the survivor held (INDEXED) at failover. None without a failover."""
    fault = timeline.first(Mark.FAULT)
    failover = timeline.first(Mark.FAILOVER, after=fault.t if fault else float("-inf"))
    if failover is None:
        return None
    reference = fault.t if fault is not None else failover.t
    held = set(available)
    acked = timeline.acknowledged(failed, until=failover.t)
    missing = [w for w in acked if w.document_id not in held]
    seconds = 0.0
    if missing:
        first = acked.index(missing[0])
        recovery_point = acked[first - 1].done if first else missing[0].done
        stopped = max(reference, acked[-1].done)
        seconds = stopped - recovery_point
    return Rpo(
        failed_region=failed,
        survivor=survivor,
        at=failover.t,
        reference=reference,
        missing=tuple(w.document_id for w in missing),
        seconds=seconds,
        acknowledged=len(acked),
    )


def rto(
    timeline: Timeline,
    survivor: str,
    window_s: float = DEFAULT_WINDOW_S,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> Rto | None:
    """RTO after the first fault (see the module docstring); None without a fault."""
    fault = timeline.first(Mark.FAULT)
    if fault is None:
        return None
    answers = sorted(r.done for r in timeline.reads if r.ok and r.region == survivor and r.done >= fault.t)
    first_answer = answers[0] - fault.t if answers else None
    return Rto(
        fault=fault.t,
        survivor=survivor,
        first_answer_s=first_answer,
        error_rate_s=_error_rate_rto(timeline, fault.t, window_s, max_error_rate),
        window_s=window_s,
        max_error_rate=max_error_rate,
    )


def _error_rate_rto(timeline: Timeline, fault: float, window_s: float, max_rate: float) -> float | None:
    events = sorted(
        [(w.done, w.ok) for w in timeline.writes] + [(r.done, r.ok) for r in timeline.reads],
        key=lambda e: e[0],
    )
    above = False
    for c, _ in events:
        if c < fault:
            continue
        window = [ok for done, ok in events if c - window_s < done <= c]
        rate = window.count(False) / len(window)
        if rate >= max_rate:
            above = True
        elif above:
            return c - fault
    return None if above else 0.0


def convergence(snapshots: Sequence[RegionSnapshot], acknowledged: Iterable[str]) -> Convergence:
    """Compare the regions document by document; loss and duplicates per region."""
    indexed = {s.region: s.indexed() for s in snapshots}
    ids = sorted({d for docs in indexed.values() for d in docs})
    diffs: list[DocumentDiff] = []
    for doc in ids:
        rows = {r: (docs[doc].key() if doc in docs else None) for r, docs in indexed.items()}
        if len(set(rows.values())) != 1:
            diffs.append(DocumentDiff(doc, rows))
    acked = sorted(set(acknowledged))
    lost = {r: tuple(d for d in acked if d not in docs) for r, docs in indexed.items()}
    duplicates = {
        s.region: max(0, s.chunk_count - sum(d.chunk_count for d in indexed[s.region].values()))
        for s in snapshots
    }
    return Convergence(
        regions=tuple(s.region for s in snapshots),
        compared=len(ids),
        equal=len(ids) - len(diffs),
        differences=tuple(diffs),
        lost=lost,
        duplicates=duplicates,
    )


def measure(
    timeline: Timeline,
    failed: str,
    survivor: str,
    available_at_failover: Iterable[str] = (),
    snapshots: Sequence[RegionSnapshot] = (),
    window_s: float = DEFAULT_WINDOW_S,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
) -> Measures:
    """Every measure of a drill (a part that does not apply — no fault, no failover, no snapshots — is
    None)."""
    acked = timeline.acknowledged()
    return Measures(
        rpo=rpo(timeline, failed, survivor, available_at_failover),
        rto=rto(timeline, survivor, window_s, max_error_rate),
        convergence=convergence(snapshots, (w.document_id for w in acked)) if snapshots else None,
        writes=len(timeline.writes),
        writes_acknowledged=len(acked),
        reads=len(timeline.reads),
        reads_ok=sum(r.ok for r in timeline.reads),
    )


def objectives_missed(
    measures: Measures, rpo_max_s: float | None = None, rto_max_s: float | None = None
) -> list[str]:
    """Why the drill misses its objectives (empty: met). Loss or duplicates after convergence always
    count; ``rpo_max_s`` bounds the RPO in seconds of writes; ``rto_max_s`` bounds both RTOs (a measure
    that does not apply to the scenario — no fault, no failover — is not held against it; an RTO that
    never came is)."""
    problems: list[str] = []
    c = measures.convergence
    if c is not None:
        if c.lost_count:
            problems.append(f"{c.lost_count} acknowledged write(s) lost after convergence")
        if c.duplicate_count:
            problems.append(f"{c.duplicate_count} duplicated chunk(s)")
        if c.differences:
            problems.append(f"{len(c.differences)} document(s) differ between the regions")
    if rpo_max_s is not None and measures.rpo is not None and measures.rpo.seconds > rpo_max_s:
        problems.append(f"RPO {measures.rpo.seconds:.1f} s > --rpo-max {rpo_max_s:g} s")
    if rto_max_s is not None and measures.rto is not None:
        for label, value in (
            ("first answer", measures.rto.first_answer_s),
            ("error rate < 1 %", measures.rto.error_rate_s),
        ):
            if value is None:
                problems.append(f"RTO ({label}): never recovered")
            elif value > rto_max_s:
                problems.append(f"RTO ({label}) {value:.1f} s > --rto-max {rto_max_s:g} s")
    return problems
