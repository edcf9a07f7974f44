"""Online evaluation at work: the scoring worker (bounded concurrency, failures counted, pending samples
scored after a restart), drops raised once as ``QualityDropped`` (not again after a restart, published
again if publishing failed, raised anew after recovery), the Prometheus gauges read from the store,
the evaluation sets and watched metrics checked at start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from isthmus_core.contracts.events import (
    AnswerProduced,
    AnswerSample,
    QualityDropped,
    SampleContext,
    SampleSentence,
)
from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.judge import JudgeFailed
from isthmus_evaluation.online_scoring import SampleScorer, no_judge
from isthmus_evaluation.online_service import OnlineEvaluation, check_watched_metrics, load_eval_sets
from isthmus_evaluation.online_store import OnlineStore, Window
from isthmus_evaluation.online_telemetry import OnlineCollector
from isthmus_evaluation.rag_metrics import RagSample, SampleScores
from isthmus_evaluation.settings import EvaluationSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def sampled(answer_id: str, text: str, tenant: str = "acme", minutes_ago: float = 1.0) -> AnswerProduced:
    return AnswerProduced(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/{answer_id}",
        question_id=answer_id,
        occurred_at=NOW - timedelta(minutes=minutes_ago),
        latency_ms=5.0,
        sample=AnswerSample(
            question="q?",
            answer=text,
            sentences=[SampleSentence(text=text)],
            contexts=[SampleContext(chunk_id="c", document_id="d", text="the context")],
        ),
    )


async def by_answer_text(sample: RagSample, tenant_id: str) -> SampleScores:
    """A stand-in for the RAG metrics: faithfulness 1 for answers saying "good", else 0."""
    return SampleScores({"faithfulness": 1.0 if "good" in sample.answer else 0.0})


@pytest.fixture
def store(tmp_path: Path) -> OnlineStore:
    return OnlineStore(tmp_path / "online.sqlite")


async def test_the_worker_scores_every_pending_sample_a_bounded_number_at_once(store: OnlineStore) -> None:
    for i in range(7):
        store.add_answer(sampled(f"a{i}", "good" if i % 2 else "bad"))
    running = peak = 0

    async def score(sample: RagSample, tenant_id: str) -> SampleScores:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # let the others start, if they may
        running -= 1
        return await by_answer_text(sample, tenant_id)

    assert await SampleScorer(store, score, concurrency=2, batch=3).score_pending() == 7
    assert peak == 2
    s = store.summary("acme", Window())
    assert (s.pending_samples, s.quality["faithfulness"].n) == (0, 7)
    assert s.quality["faithfulness"].mean == pytest.approx(3 / 7)


async def test_judge_failures_are_counted_with_their_code(store: OnlineStore) -> None:
    store.add_answer(sampled("timeout", "x"))
    store.add_answer(sampled("crash", "x"))
    store.add_answer(sampled("said", "x"))

    async def flaky(sample: RagSample, tenant_id: str) -> SampleScores:
        answer_id = current.pop(0)
        if answer_id == "timeout":
            raise JudgeFailed("timeout", "60 s")
        if answer_id == "crash":
            raise RuntimeError("a defect")
        return SampleScores(failure="unparseable", detail="maybe")

    current = [p.answer_id for p in store.pending()]
    assert await SampleScorer(store, flaky, concurrency=1).score_pending() == 3
    s = store.summary("acme", Window())
    assert s.judge_failures == 3 and s.failure_reasons == {"timeout": 1, "error": 1, "unparseable": 1}
    assert s.quality == {}


async def test_without_a_judge_samples_fail_as_no_judge(store: OnlineStore) -> None:
    store.add_answer(sampled("a", "good"))
    await SampleScorer(store, no_judge("not built"), concurrency=1).score_pending()
    assert store.summary("acme", Window()).failure_reasons == {"no_judge": 1}


async def test_samples_pending_at_a_stop_are_scored_after_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    store = OnlineStore(path)
    for i in range(3):
        store.add_answer(sampled(f"a{i}", "good"))
    started = asyncio.Event()

    async def stuck(sample: RagSample, tenant_id: str) -> SampleScores:
        started.set()
        await asyncio.Event().wait()  # a judge that never answers before the process stops
        raise AssertionError("unreachable")

    worker = SampleScorer(store, stuck, concurrency=2)
    await worker.start()
    await started.wait()
    await worker.stop()
    store.close()

    store = OnlineStore(path)
    assert store.summary("acme", Window()).pending_samples == 3
    assert await SampleScorer(store, by_answer_text, concurrency=2).score_pending() == 3
    s = store.summary("acme", Window())
    assert (s.pending_samples, s.quality["faithfulness"].mean) == (0, 1.0)


async def test_a_started_worker_scores_what_is_observed(store: OnlineStore) -> None:
    scored = asyncio.Event()

    async def score(sample: RagSample, tenant_id: str) -> SampleScores:
        scored.set()
        return await by_answer_text(sample, tenant_id)

    worker = SampleScorer(store, score, concurrency=1)
    online = OnlineEvaluation(store, EvaluationSettings(), publish_nothing, scorer=worker, clock=lambda: NOW)
    await worker.start()
    try:
        assert await online.observe_answer(sampled("a", "good")) is True
        assert await online.observe_answer(sampled("a", "good")) is False
        await asyncio.wait_for(scored.wait(), 30)
    finally:
        await worker.stop()


async def publish_nothing(ev: QualityDropped) -> None:
    return None


def settings(**kw: object) -> EvaluationSettings:
    base: dict[str, object] = {
        "online_window_s": 3600,
        "online_baseline_window_s": 6 * 3600,
        "online_min_samples": 3,
        "online_max_drop": {"faithfulness": 0.2},
    }
    return EvaluationSettings(**{**base, **kw})  # type: ignore[arg-type]


async def feed(
    online: OnlineEvaluation, tenant: str, good: int, bad: int, minutes_ago: float, tag: str
) -> None:
    for i in range(good + bad):
        await online.observe_answer(sampled(f"{tag}{i}", "good" if i < good else "bad", tenant, minutes_ago))
    assert online.scorer is not None
    await online.scorer.score_pending()


class Published:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[QualityDropped] = []
        self.fail = fail

    async def __call__(self, ev: QualityDropped) -> None:
        if self.fail:
            raise ConnectionError("the bus is down")
        self.events.append(ev)


def evaluation(
    store: OnlineStore, publish: Published, clock: Callable[[], datetime] = lambda: NOW, **kw: object
) -> OnlineEvaluation:
    return OnlineEvaluation(
        store,
        settings(**kw),
        publish,
        scorer=SampleScorer(store, by_answer_text, concurrency=2),
        region="eu",
        clock=clock,
    )


async def test_a_quality_drop_is_raised_once_and_not_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    store, published = OnlineStore(path), Published()
    online = evaluation(store, published)
    await feed(online, "acme", good=4, bad=0, minutes_ago=120, tag="base")  # baseline: all faithful
    await feed(online, "globex", good=4, bad=0, minutes_ago=120, tag="base")
    await feed(online, "acme", good=1, bad=3, minutes_ago=10, tag="now")  # recent: mostly not
    await feed(online, "globex", good=4, bad=0, minutes_ago=10, tag="now")
    [ev] = await online.check_drops()
    assert published.events == [ev]
    assert (ev.tenant_id, ev.metric, ev.baseline, ev.current, ev.threshold) == (
        "acme",
        "faithfulness",
        1.0,
        0.25,
        0.2,
    )
    assert (ev.drop, ev.samples, ev.baseline_samples, ev.window_seconds) == (0.75, 4, 4, 3600)
    assert (ev.model_bundle, ev.region) == ("", "eu")
    since = (NOW - timedelta(hours=1)).isoformat()
    assert ev.idempotency_key == f"acme/quality-dropped/faithfulness/*/{since}"
    assert await online.check_drops() == []
    store.close()

    store = OnlineStore(path)
    assert await evaluation(store, published).check_drops() == []
    assert len(published.events) == 1


async def test_a_drop_not_published_is_published_at_the_next_check(store: OnlineStore) -> None:
    down = Published(fail=True)
    online = evaluation(store, down)
    await feed(online, "acme", good=4, bad=0, minutes_ago=120, tag="base")
    await feed(online, "acme", good=0, bad=4, minutes_ago=10, tag="now")
    with pytest.raises(ConnectionError):
        await online.check_drops()
    later, up = NOW + timedelta(minutes=5), Published()
    [again] = await evaluation(store, up, clock=lambda: later).check_drops()
    assert again.idempotency_key.endswith((NOW - timedelta(hours=1)).isoformat())  # the same event
    assert up.events == [again]


async def test_a_recovered_metric_can_drop_again(store: OnlineStore) -> None:
    published = Published()
    now = [NOW]
    online = evaluation(store, published, clock=lambda: now[0])
    await feed(online, "acme", good=4, bad=0, minutes_ago=120, tag="base")
    await feed(online, "acme", good=0, bad=4, minutes_ago=10, tag="bad")
    assert len(await online.check_drops()) == 1
    # two hours later: the recent window is good again against a baseline holding both
    now[0] = NOW + timedelta(hours=2)
    await feed(online, "acme", good=4, bad=0, minutes_ago=10 - 120, tag="good")
    assert await online.check_drops() == [] and store.raised_drops() == {}
    now[0] = NOW + timedelta(hours=3)
    await feed(online, "acme", good=0, bad=4, minutes_ago=10 - 180, tag="worse")
    assert len(await online.check_drops()) == 1 and len(published.events) == 2


async def test_the_periodic_round_purges_past_the_retention(store: OnlineStore) -> None:
    online = evaluation(store, Published(), online_retention_days=1)
    await feed(online, "acme", good=1, bad=0, minutes_ago=2 * 24 * 60, tag="old")
    await feed(online, "acme", good=1, bad=0, minutes_ago=1, tag="new")
    await online.tick()
    assert store.summary("acme", Window()).answers == 1


def test_the_gauges_are_read_from_the_store_at_each_scrape(store: OnlineStore) -> None:
    registry = CollectorRegistry()
    registry.register(OnlineCollector(store, 3600, clock=lambda: NOW))
    assert registry.get_sample_value("isthmus_online_samples_pending") == 0.0
    assert registry.get_sample_value("isthmus_online_samples", {"tenant": "acme"}) is None
    store.add_answer(sampled("a", "good"))
    store.add_answer(sampled("b", "bad"))
    store.add_answer(sampled("c", "bad"))
    store.add_answer(sampled("old", "bad", minutes_ago=120))  # outside the window
    store.record_scores("acme", "a", SampleScores({"faithfulness": 1.0}))
    store.record_scores("acme", "b", SampleScores({"faithfulness": 0.5}))
    store.record_scores("acme", "c", SampleScores(failure="timeout"))
    assert (
        registry.get_sample_value("isthmus_online_quality", {"tenant": "acme", "metric": "faithfulness"})
        == 0.75
    )
    assert (
        registry.get_sample_value(
            "isthmus_online_quality_samples", {"tenant": "acme", "metric": "faithfulness"}
        )
        == 2
    )
    assert registry.get_sample_value("isthmus_online_samples", {"tenant": "acme"}) == 3
    assert (
        registry.get_sample_value("isthmus_online_judge_failures", {"tenant": "acme", "reason": "timeout"})
        == 1
    )
    assert registry.get_sample_value("isthmus_online_samples_pending") == 1.0  # the old one


def test_a_scrape_survives_a_closed_store(store: OnlineStore) -> None:
    registry = CollectorRegistry()
    registry.register(OnlineCollector(store, 3600, clock=lambda: NOW))
    store.close()
    assert registry.get_sample_value("isthmus_online_samples_pending") is None


def test_watched_metrics_must_be_quality_metrics() -> None:
    check_watched_metrics(settings(online_tenant_max_drop={"acme": {"ndcg_at_10": 0.05}}))
    with pytest.raises(ConfigurationError, match="context_recall"):
        check_watched_metrics(settings(online_max_drop={"context_recall": 0.1}))
    with pytest.raises(ConfigurationError, match="bogus"):
        OnlineEvaluation(
            OnlineStore.__new__(OnlineStore),
            settings(online_tenant_max_drop={"acme": {"bogus": 0.1}}),
            publish_nothing,
        )


def test_eval_sets_are_read_at_start(tmp_path: Path) -> None:
    ds = tmp_path / "sets" / "club"
    (ds / "qrels").mkdir(parents=True)
    (ds / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "Gliders soar."}\n')
    (ds / "queries.jsonl").write_text('{"_id": "q1", "text": "How do gliders fly?"}\n')
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    sets = load_eval_sets(tmp_path / "sets", {"acme": "club"})
    assert sets["acme"].query_of("how do gliders fly?") == "q1"
    assert load_eval_sets(None, {}) == {}
    with pytest.raises(ConfigurationError, match="online_eval_sets\\['acme'\\]"):
        load_eval_sets(tmp_path / "sets", {"acme": "missing"})
    with pytest.raises(ConfigurationError, match="online_eval_sets\\['acme'\\]"):
        load_eval_sets(None, {"acme": "club"})


async def test_the_modules_score_function_follows_online_judge() -> None:
    import grpc

    from isthmus_evaluation import module

    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # never dialled: the llm judge is not the guardrail
    s = settings(online_judge="none")
    assert module.online_score_fn(s, module._Judges(s, channel)) is None
    s = settings(online_judge="llm", judge_llm_url="", judge_llm_model="")
    score = module.online_score_fn(s, module._Judges(s, channel))
    assert score is not None
    result = await score(RagSample(question="q", answer="a", sentences=(), contexts=()), "acme")
    assert result.failure == "no_judge" and "judge_llm_url" in result.detail
    await channel.close()
