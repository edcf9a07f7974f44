"""The capacity benchmark: its summaries from recorded outcomes and scraped metrics, its open-loop
generator against a fake call, and the whole harness once at a tiny scale against a real all-in-one
process (figures are not checked, only that every one is there)."""

from __future__ import annotations

import argparse
import json

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from rich.console import Console

from isthmus_bench.capacity import (
    Outcome,
    Questions,
    ShapeReport,
    cache_hit_ratios,
    counter_deltas,
    open_loop,
    parse_args,
    parse_metrics,
    report_json,
    retry_delay_ms,
    retrying,
    run,
    stage_means_ms,
    summarize,
    tables,
)


def _refusal_trailer(delay_ms: int) -> tuple[tuple[str, bytes], ...]:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=delay_ms * 1_000_000)))
    status = status_pb2.Status(
        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="busy", details=[detail]
    )
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_retry_info_is_read_from_a_refused_call() -> None:
    def refused(trailer: tuple[tuple[str, bytes], ...]) -> grpc.aio.AioRpcError:
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailer), "busy")

    assert retry_delay_ms(refused(_refusal_trailer(250))) == 250.0
    assert retry_delay_ms(refused((("other-bin", b"x"),))) is None
    no_retry_info = status_pb2.Status(code=8, message="busy").SerializeToString()
    assert retry_delay_ms(refused((("grpc-status-details-bin", no_retry_info),))) is None


def test_summary_splits_admitted_refused_and_other_errors() -> None:
    outcomes = [
        Outcome(1.0, 100.0, "OK"),
        Outcome(2.0, 200.0, "OK"),
        Outcome(1.0, 3.0, "RESOURCE_EXHAUSTED", 50.0),
        Outcome(1.0, 5.0, "UNAVAILABLE"),
        Outcome(1.0, 2000.0, "DEADLINE_EXCEEDED"),
    ]
    s = summarize(outcomes, elapsed_s=2.0)
    assert (s["sent"], s["ok"], s["refused"]) == (5, 2, 2)
    assert s["achieved_rps"] == 1.0
    assert s["admitted_ms"]["p50"] == 150.0 and s["admitted_ms"]["max"] == 200.0
    assert s["refused_share"] == 0.4 and s["refused_by_code"] == {"RESOURCE_EXHAUSTED": 1, "UNAVAILABLE": 1}
    assert s["refusal_ms"]["max"] == 5.0
    assert s["retry_info_share"] == 0.5 and s["retry_delay_ms_p50"] == 50.0
    assert s["errors"] == {"DEADLINE_EXCEEDED": 1} and s["error_share"] == 0.2
    assert s["start_lag_ms"]["max"] == 2.0


def test_stage_means_and_cache_counters_come_from_metric_deltas() -> None:
    def exposition(retrieval_sum: float, count: float, hits: float) -> str:
        return (
            "# TYPE isthmus_ask_stage_seconds histogram\n"
            f'isthmus_ask_stage_seconds_sum{{stage="retrieval"}} {retrieval_sum}\n'
            f'isthmus_ask_stage_seconds_count{{stage="retrieval"}} {count}\n'
            f'isthmus_ask_stage_seconds_bucket{{stage="retrieval",le="+Inf"}} {count}\n'
            "# TYPE isthmus_cache_hits counter\n"
            f'isthmus_cache_hits_total{{cache="pii"}} {hits}\n'
            f'isthmus_cache_hits_created{{cache="pii"}} 1.7e9\n'
            "# TYPE isthmus_cache_misses counter\n"
            f'isthmus_cache_misses_total{{cache="pii"}} {hits / 2}\n'
            f'isthmus_cache_misses_total{{cache="idle"}} 4\n'
            "# TYPE isthmus_cache_entries gauge\n"
            f'isthmus_cache_entries{{cache="pii"}} {hits}\n'
        )

    before, after = parse_metrics(exposition(1.0, 10, 3)), parse_metrics(exposition(3.0, 30, 10))
    assert stage_means_ms(before, after) == {"retrieval": pytest.approx(100.0)}
    assert counter_deltas(before, after) == {
        'isthmus_cache_hits_total{cache="pii"}': 7.0,
        'isthmus_cache_misses_total{cache="idle"}': 0.0,
        'isthmus_cache_misses_total{cache="pii"}': 3.5,
    }
    assert cache_hit_ratios(before, after) == {"pii": pytest.approx(7.0 / 10.5)}  # "idle": no lookups
    # a server without these metrics: nothing to report, no error
    assert stage_means_ms({}, {}) == {} and counter_deltas({}, {}) == {} and cache_hit_ratios({}, {}) == {}


def test_tables_show_refusals_stages_caches_and_a_late_generator() -> None:
    args = parse_args(["--rates", "50", "--deadline-ms", "500"])
    baseline = summarize([Outcome(0.0, 80.0, "OK")] * 4, elapsed_s=0.4)
    phase = {
        **summarize([Outcome(30.0, 150.0, "OK"), Outcome(40.0, 4.0, "RESOURCE_EXHAUSTED", 100.0)], 1.0),
        "offered_rps": 50.0,
        "duration_s": 1.0,
        "server_cpu_s": 1.9,
        "server_cpu_cores": 1.9,
        "server_peak_rss_mb": 500.0,
        "peak_rss_is_phase_peak": True,
        "generator_cpu_s": 0.1,
        "generator_behind": True,
        "p95_ratio": 1.9,
        "stage_mean_ms": {"retrieval": 20.0, "input_guard": 5.0},
        "cache": {'isthmus_cache_hits_total{cache="pii"}': 3.0},
        "cache_hit_ratio": {"pii": 0.75},
        "offered_over_capacity": 50.0,
        "asked_before_share": 0.25,
    }
    report = ShapeReport(
        "all",
        10,
        {"chunks": 12, "ingest_s": 1.0, "chunks_per_s": 12, "lag_p50": 0, "lag_max": 1},
        {"processes": 1, "rss_after_ingest_mb": 400},
    )
    report.calls["ask"] = {"baseline": baseline, "phases": [phase], "capacity_rps": 1.0}
    console = Console(record=True, width=200)
    for item in tables([report], args):
        console.print(item)
    text = console.export_text()
    assert "50 (50.0x cap.)" in text and "50%" in text and "100%" in text  # refused share, RetryInfo share
    assert text.index("input_guard ms") < text.index("retrieval ms")  # stages in pipeline order
    assert "cache hit ratio at 50/s: pii 75%" in text and "behind" in text and "warning" in text


async def test_open_loop_sends_every_scheduled_call_and_records_each_outcome() -> None:
    sent: list[str] = []

    async def call(q: str, deadline_s: float) -> object:
        sent.append(q)
        if q == "refuse":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(*_refusal_trailer(100)),
                "busy",
            )
        return None

    outcomes, elapsed = await open_loop(call, ["ok", "refuse"], rate=200.0, duration_s=0.1, deadline_s=1.0)
    assert len(outcomes) == len(sent) == 20 and elapsed >= 0.1
    assert [o.code for o in outcomes].count("RESOURCE_EXHAUSTED") == 10
    assert {o.retry_delay_ms for o in outcomes if o.code != "OK"} == {100.0}


async def test_ingest_calls_are_retried_while_refused_for_load_only() -> None:
    def refusal(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
        trailer = grpc.aio.Metadata(*_refusal_trailer(1))
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailer, "busy")

    attempts: list[int] = []

    async def busy_twice() -> str:
        attempts.append(1)
        if len(attempts) <= 2:
            raise refusal(grpc.StatusCode.RESOURCE_EXHAUSTED)
        return "done"

    assert await retrying(busy_twice) == "done" and len(attempts) == 3

    async def invalid() -> str:
        attempts.append(1)
        raise refusal(grpc.StatusCode.INVALID_ARGUMENT)

    attempts.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        await retrying(invalid)
    assert len(attempts) == 1


def test_questions_go_round_before_any_comes_back() -> None:
    q = Questions(["a", "b", "c"], fresh=False)
    assert q.take(2) == (["a", "b"], 0.0)
    assert q.take(2) == (["c", "a"], 0.5)  # the next phase goes on from "c"; "a" was asked before
    assert q.take(4) == (["b", "c", "a", "b"], 1.0)


def test_fresh_questions_come_back_as_new_texts_differing_in_punctuation_only() -> None:
    q = Questions(["a", "b"])
    assert q.take(3) == (["a", "b", "a ?"], 0.0)
    assert q.take(3) == (["b ?", "a ? ?", "b ? ?"], 0.0)
    assert parse_args([]).questions == "fresh"


def test_options_are_checked() -> None:
    args = parse_args(["--shape", "all,distributed", "--rates", "10,20.5", "--calls", "ask,search"])
    assert (
        args.shape == ["all", "distributed"]
        and args.rates == [10.0, 20.5]
        and args.calls == ["ask", "search"]
    )
    assert parse_args([]).shape == ["all"] and parse_args([]).calls == ["ask"]
    for bad in (["--shape", "kube"], ["--rates", "0"], ["--rates", "x"], ["--calls", "eval"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_the_harness_runs_against_an_all_in_one_process() -> None:
    args: argparse.Namespace = parse_args(
        ["--docs", "5", "--rates", "4", "--duration", "1", "--baseline", "3", "--pause", "0", "--json"]
    )
    log: list[str] = []
    reports = await run(args, log.append)

    encoded = json.loads(json.dumps(report_json(reports, args)))
    assert encoded["config"]["rates"] == [4.0]
    shape = encoded["shapes"]["all"]
    assert shape["server"]["processes"] >= 1 and shape["ingest"]["chunks"] >= 5
    ask = shape["calls"]["ask"]
    assert ask["baseline"]["sent"] == 3
    (phase,) = ask["phases"]
    assert phase["offered_rps"] == 4.0 and phase["sent"] == 4
    for key in (
        "ok", "achieved_rps", "admitted_ms", "refused_share", "refusal_ms", "retry_info_share", "errors",
        "start_lag_ms", "server_cpu_s", "server_peak_rss_mb", "p95_ratio", "stage_mean_ms", "cache",
        "cache_hit_ratio", "generator_behind", "offered_over_capacity", "asked_before_share",
    ):  # fmt: skip
        assert key in phase, key
    assert phase["server_peak_rss_mb"] > 0 and phase["server_cpu_s"] >= 0
    console = Console(record=True, width=150)
    for item in tables(reports, args):
        console.print(item)
    text = console.export_text()
    assert "all: Ask" in text and "unloaded (3 one by one)" in text
    assert any("starting the platform" in m for m in log)


def test_refusal_reasons_are_the_server_counters_deltas() -> None:
    from isthmus_bench.capacity import refusal_reasons

    name = "isthmus_admission_refused_total"
    method = ("method", "/isthmus.agent_orchestrator.v1.AgentOrchestratorService/Ask")
    ask, wait = (method, ("reason", "queue_full")), (method, ("reason", "queue_wait"))
    before = {(name, ask): 2.0, (name, wait): 5.0}
    after = {(name, ask): 9.0, (name, wait): 5.0, ("isthmus_cache_hits_total", ()): 3.0}
    assert refusal_reasons(before, after) == {"AgentOrchestratorService/Ask queue_full": 7.0}
