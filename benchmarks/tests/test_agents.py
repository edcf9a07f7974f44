"""The agents benchmark's parts that need no platform: summaries of runs, the report, the usage found in
proxied model-server bytes and the recording proxy itself (on loopback), the small dataset of the cost
check. The whole harness needs the platform and the datasets: run ``python -m isthmus_bench.agents``."""

from __future__ import annotations

import asyncio

import pytest

from isthmus_bench.agents import (
    RecordingProxy,
    Run,
    VariantReport,
    parse_args,
    render,
    small_subset,
    summarize,
    usages_in,
)
from isthmus_bench.compound import CompoundQuestion, score
from isthmus_evaluation.datasets import BeirDataset, CorpusDoc


def _q(i: int, relevant: dict[str, int]) -> CompoundQuestion:
    return CompoundQuestion(
        f"{i}+{i + 1}", f"q{i}? Also, q{i + 1}", (str(i), str(i + 1)), ("a", "b"), relevant
    )


def _run(docs: list[str], latency_ms: float, sub_questions: int = 0) -> Run:
    return Run(docs, latency_ms, "rag", False, False, ["s"] * sub_questions, 0, 0, "qid")


def test_summarize_scores_each_run_against_its_own_question_and_pairs_with_the_baseline() -> None:
    questions = [_q(0, {"a": 1, "b": 1}), _q(2, {"c": 2})]
    rag = [_run(["a", "x"], 10.0), _run(["x", "y"], 30.0)]
    plan = [_run(["a", "b"], 20.0, 2), _run(["x", "c", "c"], 40.0, 2)]
    base = summarize("rag", "-", questions, rag)
    cand = summarize("plan-execute", "heuristic", questions, plan, rag, seed=3)
    assert base.recall == pytest.approx((0.5 + 0.0) / 2)
    assert cand.recall == pytest.approx((1.0 + 1.0) / 2)
    expected_ndcg = (
        score(["a", "b"], questions[0].qrels).ndcg + score(["x", "c"], questions[1].qrels).ndcg
    ) / 2
    assert cand.ndcg == pytest.approx(expected_ndcg)
    assert base.delta_recall is None
    assert cand.delta_recall is not None and cand.delta_recall[0] == pytest.approx(cand.recall - base.recall)
    assert cand.delta_recall[1] <= cand.delta_recall[0] <= cand.delta_recall[2]
    assert cand.delta_ndcg is not None and cand.delta_ndcg[0] == pytest.approx(cand.ndcg - base.ndcg)
    assert (cand.latency_p50_ms, cand.mean_sub_questions, cand.mean_documents) == (30.0, 2.0, 2.0)


def test_summarize_refuses_runs_that_do_not_answer_every_question() -> None:
    with pytest.raises(ValueError):
        summarize("rag", "-", [_q(0, {"a": 1})], [])


def _result(variants: list[VariantReport]) -> dict[str, object]:
    from dataclasses import asdict

    return {
        "settings": {"questions": 2, "seed": 0, "top_k": 20, "k": 20, "template": "{first}? Also, {second}"},
        "datasets": {
            "cisi": {
                "documents": 10,
                "ingest_s": 1.0,
                "questions": 2,
                "variants": [asdict(v) for v in variants],
            }
        },
        "cache": {"skipped": "the response cache is not wired"},
        "cost": {
            "model": "/x/SmolLM2.gguf",
            "questions": 3,
            "graphs": [
                {
                    "graph": "rag",
                    "server_responses": 3,
                    "server_prompt": 900,
                    "server_completion": 90,
                    "ask_prompt": 900,
                    "ask_completion": 90,
                    "recorded_events": 3,
                    "recorded_prompt": 900,
                    "recorded_completion": 90,
                    "match": True,
                }
            ],
        },
    }


def test_render_shows_rows_deltas_skips_and_checks() -> None:
    questions = [_q(0, {"a": 1}), _q(2, {"c": 1})]
    rag = [_run(["a"], 10.0), _run(["x"], 30.0)]
    text = render(
        _result(
            [
                summarize("rag", "-", questions, rag),
                VariantReport("plan-execute", "heuristic", skipped="this build does not run agent graphs"),
            ]
        )
    )
    assert "cisi       rag / -" in text
    assert "plan-execute / heuristic   skipped: this build does not run agent graphs" in text
    assert "cache: skipped: the response cache is not wired" in text
    assert "SmolLM2.gguf" in text and "/x/" not in text and "MATCH" in text
    cand = summarize("plan-execute", "heuristic", questions, [_run(["a"], 5.0), _run(["c"], 6.0)], rag)
    assert "+0.500 [" in render(_result([summarize("rag", "-", questions, rag), cand]))


def test_usages_in_reads_json_bodies_and_sse_events_but_not_null_usage() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"
        b'{"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}'
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'4a\r\ndata: {"choices": [{"delta": {"content": "hi"}}], "usage": null}\r\n\r\n'
        b'6c\r\ndata: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}\r\n\r\n'
    )
    assert usages_in(raw) == [
        {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        {"prompt_tokens": 7, "completion_tokens": 2},
    ]
    assert usages_in(b"no usage here") == []


async def test_the_recording_proxy_forwards_both_ways_and_keeps_what_the_server_sent() -> None:
    reply = b'HTTP/1.1 200 OK\r\n\r\n{"usage": {"prompt_tokens": 5, "completion_tokens": 1}}'

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(5)
        writer.write(reply + b" echo:" + request)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RecordingProxy("127.0.0.1", port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"hello")
            await writer.drain()
            got = await reader.read()
            writer.close()
            assert got == reply + b" echo:hello"
            assert proxy.usages() == [{"prompt_tokens": 5, "completion_tokens": 1}]
    finally:
        server.close()


def test_small_subset_keeps_the_judgments_on_its_documents() -> None:
    corpus = {f"d{i}": CorpusDoc("t", f"text {i}") for i in range(5)}
    ds = BeirDataset(
        "x",
        corpus,
        {"q1": "one", "q2": "two"},
        {"q1": {"d0": 1, "d4": 2}, "q2": {"d3": 1}},
    )
    sub = small_subset(ds, 2)
    assert list(sub.corpus) == ["d0", "d1"]
    assert sub.qrels == {"q1": {"d0": 1}}
    assert sub.queries == {"q1": "one"}
    assert sub.name == "x-2"


def test_parse_args_defaults_and_checks() -> None:
    args = parse_args([])
    assert args.datasets == ["cranfield", "cisi", "scifact"]
    assert (args.questions, args.candidate, args.llm_planner, args.json) == (
        100,
        "plan-execute",
        False,
        False,
    )
    assert parse_args(["--datasets", "cisi,", "--questions", "5"]).datasets == ["cisi"]
    with pytest.raises(SystemExit):
        parse_args(["--questions", "0"])
