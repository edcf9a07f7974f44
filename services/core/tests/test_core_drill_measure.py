"""RPO / RTO / convergence maths of a drill, on constructed timelines."""

from __future__ import annotations

import pytest

from isthmus_core.drills.measure import (
    DocumentRow,
    Mark,
    Marker,
    Read,
    RegionSnapshot,
    Timeline,
    Write,
    convergence,
    measure,
    objectives_missed,
    rpo,
    rto,
)


def steady(start: float, end: float, region: str, step: float = 0.5, ok: bool = True) -> list[Read]:
    """Reads every ``step`` seconds in [start, end), each taking 0.1 s."""
    n = round((end - start) / step)
    return [Read(start + i * step, region, ok, 0.1) for i in range(n)]


def writes(times: list[float], region: str, ok: bool = True, prefix: str = "d") -> list[Write]:
    return [Write(t, f"{prefix}{t:g}", region, ok, 0.05) for t in times]


def test_rpo_counts_acknowledged_writes_of_the_failed_region_missing_in_the_survivor() -> None:
    tl = Timeline(
        writes=[
            *writes([1, 2, 3, 4, 5], "a"),
            Write(6.0, "d6", "a", False, 0.5, "UNAVAILABLE"),  # never acknowledged: not an RPO write
            *writes([8, 9], "b"),  # after failover, in the survivor
        ],
        markers=[Marker(6.0, Mark.FAULT, "a"), Marker(7.0, Mark.FAILOVER, "b")],
    )
    r = rpo(tl, "a", "b", available=["d1", "d2", "d3"])
    assert r is not None
    assert r.missing == ("d4", "d5")
    assert r.count == 2 and r.acknowledged == 5
    # the survivor holds everything up to d3 (acknowledged at 3.05); a stopped at the fault, 6.0
    assert r.seconds == pytest.approx(2.95)
    assert (r.at, r.reference) == (7.0, 6.0)


def test_rpo_is_zero_when_the_survivor_held_everything() -> None:
    tl = Timeline(
        writes=writes([1, 2, 3], "a"),
        markers=[Marker(4.0, Mark.FAULT, "a"), Marker(4.5, Mark.FAILOVER, "b")],
    )
    r = rpo(tl, "a", "b", available=["d1", "d2", "d3", "unrelated"])
    assert r is not None and r.count == 0 and r.seconds == 0.0


def test_rpo_counts_from_the_last_acknowledgement_when_it_lands_after_the_fault_marker() -> None:
    tl = Timeline(
        writes=[
            Write(9.0, "held", "a", True, 0.1),  # acknowledged at 9.1: the recovery point
            Write(9.9, "late", "a", True, 0.3),  # acknowledged at 10.2, after the fault marker (10.0)
        ],
        markers=[Marker(10.0, Mark.FAULT, "a"), Marker(11.0, Mark.FAILOVER, "b")],
    )
    r = rpo(tl, "a", "b", available=["held"])
    assert r is not None and r.missing == ("late",) and r.seconds == pytest.approx(10.2 - 9.1)
    alone = rpo(Timeline(writes=tl.writes[1:], markers=tl.markers), "a", "b", available=[])
    assert alone is not None and alone.count == 1 and alone.seconds == 0.0  # never negative


def test_rpo_without_a_fault_uses_the_failover_and_without_failover_is_none() -> None:
    planned = Timeline(writes=writes([1, 2], "a"), markers=[Marker(3.0, Mark.FAILOVER, "b")])
    r = rpo(planned, "a", "b", available=["d1"])
    assert r is not None and r.missing == ("d2",) and r.seconds == pytest.approx(3.0 - 1.05)
    assert rpo(Timeline(writes=writes([1], "a")), "a", "b", available=[]) is None


def test_rto_first_answer_is_the_first_successful_read_from_the_survivor_after_the_fault() -> None:
    tl = Timeline(
        reads=[
            *steady(0, 10, "a"),
            Read(9.8, "b", True, 0.1),  # the survivor answered before the fault: does not count
            *steady(10, 13, "a", ok=False),
            Read(13.0, "b", False, 0.2),
            Read(13.5, "b", True, 0.4),  # done at 13.9
            *steady(14, 30, "b"),
        ],
        markers=[Marker(10.0, Mark.FAULT, "a")],
    )
    r = rto(tl, "b")
    assert r is not None
    assert r.first_answer_s == pytest.approx(3.9)


def test_rto_error_rate_waits_for_the_trailing_window_to_drop_under_one_percent() -> None:
    tl = Timeline(
        reads=[*steady(0, 10, "a"), *steady(10, 14, "a", ok=False), *steady(14, 40, "b")],
        markers=[Marker(10.0, Mark.FAULT, "a")],
    )
    r = rto(tl, "b", window_s=4.8)
    assert r is not None
    # the last failure completes at 13.6: the trailing 4.8 s window is clean from the first completion
    # after 18.4 on (18.6)
    assert r.error_rate_s == pytest.approx(18.6 - 10.0)
    shorter = rto(tl, "b", window_s=1.2)
    assert shorter is not None and shorter.error_rate_s == pytest.approx(15.1 - 10.0)


def test_rto_error_rate_is_the_first_return_under_the_threshold_a_relapse_is_another_event() -> None:
    tl = Timeline(
        reads=[
            *steady(0, 10, "a"),
            *steady(10, 12, "a", ok=False),
            *steady(12, 20, "b"),
            Read(20.0, "b", False, 0.1),  # a relapse (e.g. at failback): the recovery at 16.6 stands
            *steady(20.5, 40, "b"),
        ],
        markers=[Marker(10.0, Mark.FAULT, "a")],
    )
    r = rto(tl, "b", window_s=4.8)
    # the last failure of the outage completes at 11.6: the trailing window is clean after 16.4
    assert r is not None and r.error_rate_s == pytest.approx(16.6 - 10.0)


def test_rto_error_rate_ignores_failures_before_the_fault() -> None:
    tl = Timeline(
        reads=[*steady(0, 3, "a", ok=False), *steady(3, 20, "a")], markers=[Marker(10.0, Mark.FAULT, "a")]
    )
    r = rto(tl, "a")
    assert r is not None and r.error_rate_s == 0.0


def test_rto_error_rate_counts_writes_too_and_is_zero_without_failures() -> None:
    clean = Timeline(reads=steady(0, 20, "b"), writes=writes([3, 12], "b"), markers=[Marker(10, Mark.FAULT)])
    r = rto(clean, "b")
    assert r is not None and r.error_rate_s == 0.0
    failing_write = Timeline(
        reads=steady(0, 20, "b"),
        writes=[Write(11.0, "w", "a", False, 1.0)],
        markers=[Marker(10, Mark.FAULT)],
    )
    w = rto(failing_write, "b", window_s=2.0)
    assert w is not None and w.error_rate_s == pytest.approx(14.1 - 10.0)


def test_rto_is_none_when_the_survivor_never_recovers() -> None:
    tl = Timeline(
        reads=[*steady(0, 10, "a"), *steady(10, 20, "b", ok=False)], markers=[Marker(10, Mark.FAULT)]
    )
    r = rto(tl, "b")
    assert r is not None and r.first_answer_s is None and r.error_rate_s is None
    assert rto(Timeline(reads=steady(0, 5, "a")), "b") is None  # no fault: no RTO
    problems = objectives_missed(measure(tl, "a", "b"), rto_max_s=30)
    assert problems == ["RTO (first answer): never recovered", "RTO (error rate < 1 %): never recovered"]


def row(doc: str, version: int = 1, h: str = "h", chunks: int = 1, indexed: bool = True) -> DocumentRow:
    return DocumentRow(doc, version, h + doc, chunks, indexed)


def test_convergence_compares_documents_and_finds_loss_and_duplicates() -> None:
    a = RegionSnapshot("a", (row("d1"), row("d2", 3, chunks=2), row("d3"), row("d5", indexed=False)), 5)
    b = RegionSnapshot("b", (row("d1"), row("d2", 2, chunks=2), row("d4")), 5)
    c = convergence([a, b], acknowledged=["d1", "d2", "d3", "d5", "d1"])
    assert c.compared == 4  # d1..d4 (d5 is not indexed anywhere)
    assert c.equal == 1  # d1 only
    assert {d.document_id: d.rows for d in c.differences} == {
        "d2": {"a": (3, "hd2", 2), "b": (2, "hd2", 2)},
        "d3": {"a": (1, "hd3", 1), "b": None},
        "d4": {"a": None, "b": (1, "hd4", 1)},
    }
    assert c.lost == {"a": ("d5",), "b": ("d3", "d5")}
    assert c.lost_count == 2
    # a: 5 chunks, its indexed documents hold 1 + 2 + 1 = 4; b: 5 chunks for 1 + 2 + 1
    assert c.duplicates == {"a": 1, "b": 1} and c.duplicate_count == 2


def test_converged_regions_meet_the_objectives_and_a_loss_misses_them() -> None:
    docs = (row("d1"), row("d2", 2, chunks=3))
    good = [RegionSnapshot("a", docs, 4), RegionSnapshot("b", docs, 4)]
    tl = Timeline(
        writes=[Write(1, "d1", "a", True, 0.1), Write(2, "d2", "a", True, 0.1)],
        reads=steady(0, 20, "b"),
        markers=[Marker(5, Mark.FAULT), Marker(6, Mark.FAILOVER)],
    )
    m = measure(tl, "a", "b", available_at_failover=["d1", "d2"], snapshots=good)
    assert m.convergence is not None and m.convergence.equal == 2 and m.convergence.lost_count == 0
    assert objectives_missed(m, rpo_max_s=0, rto_max_s=30) == []
    assert m.to_dict()["convergence"]["duplicate_count"] == 0 and m.to_dict()["rpo"]["count"] == 0

    short = [RegionSnapshot("a", docs, 4), RegionSnapshot("b", docs[:1], 1)]
    lossy = measure(tl, "a", "b", available_at_failover=["d1"], snapshots=short)
    assert objectives_missed(lossy, rpo_max_s=10) == [
        "1 acknowledged write(s) lost after convergence",
        "1 document(s) differ between the regions",
    ]
    assert objectives_missed(lossy, rpo_max_s=0.5)[-1] == "RPO 3.9 s > --rpo-max 0.5 s"


def test_measure_counts_traffic() -> None:
    tl = Timeline(
        writes=[Write(0, "a1", "a", True), Write(1, "a2", "a", False)],
        reads=[Read(0, "a", True), Read(1, "a", False), Read(2, "a", True)],
    )
    m = measure(tl, "a", "b")
    assert (m.writes, m.writes_acknowledged, m.reads, m.reads_ok) == (2, 1, 3, 2)
    assert m.rpo is None and m.rto is None and m.convergence is None
