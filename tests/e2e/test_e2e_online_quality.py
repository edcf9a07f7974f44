"""Online evaluation on the `all` target: a tenant's online faithfulness moves when its answers get worse,
and a ``QualityDropped`` event is published.

Sampled ``AnswerProduced`` events go over the in-process bus, as the orchestrator publishes them: a
baseline of good answers (sentences copied from their contexts) five minutes ago, then bad answers
(sentences their contexts do not support) now. Evaluation keeps them, judges them, and its periodic check
finds the recent window's faithfulness below the baseline's by more than the allowance.

A second test takes the real path from ``Ask``: the orchestrator samples the answer, evaluation keeps
it, and an answer to a question of the tenant's evaluation set is scored nDCG@10 without a judge.

Two judges for the first: the module's own (``online_judge = "offline"``: the guardrail's grounding
model through ``Entail``, the RAG metrics of ``rag_metrics.score_sample``), and a lexical stand-in put
in place of the module's score function, which exercises the same path (bus, store, worker, drops,
gauges, GetOnlineMetrics) without the models.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.typed import decode_event, publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    AnswerProduced,
    AnswerSample,
    Citation,
    QualityDropped,
    SampleContext,
    SampleSentence,
)
from isthmus_evaluation import module as evaluation_module
from isthmus_evaluation.rag_metrics import RagSample, SampleScores

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow]

TENANT = "club"
#: (context, a sentence it states, a sentence it does not support: a claim of its own, or its negation).
#: Not an entity or number swapped ("... located in Berlin" against "... in Paris"): the offline grounding
#: model, a head over a relevance cross-encoder, labels such near-copies entailed
FACTS = [
    (
        "The Eiffel Tower is located in Paris. It was completed in 1889.",
        "The Eiffel Tower is located in Paris.",
        "The tower was painted bright green by Napoleon in 1750.",
    ),
    (
        "Water boils at 100 degrees Celsius at sea level.",
        "Water boils at 100 degrees Celsius at sea level.",
        "Mountain climbers carry oxygen tanks above eight thousand metres.",
    ),
    (
        "Honey bees tell each other where flowers are through a waggle dance.",
        "Honey bees tell each other where flowers are through a waggle dance.",
        "Honey bees never tell each other where flowers are.",
    ),
    (
        "Photosynthesis converts light energy into chemical energy in plants.",
        "Photosynthesis converts light energy into chemical energy in plants.",
        "Volcanic eruptions release sulfur dioxide into the stratosphere.",
    ),
]
SETTINGS = {
    "online_window_s": 60,
    "online_baseline_window_s": 600,
    "online_min_samples": 3,
    "online_check_interval_s": 0.2,
    "online_max_drop": {"faithfulness": 0.2},
}


def answer(i: int, good: bool, when: datetime) -> AnswerProduced:
    context, stated, contradicted = FACTS[i % len(FACTS)]
    sentence = stated if good else contradicted
    doc = f"fact-{i % len(FACTS)}"
    cite = Citation(chunk_id=f"{doc}#0", document_id=doc, start=0, end=len(context))
    answer_id = uuid.uuid4().hex
    return AnswerProduced(
        tenant_id=TENANT,
        idempotency_key=f"{TENANT}/{answer_id}",
        question_id=answer_id,
        occurred_at=when,
        latency_ms=120.0,
        citations=[cite],
        sample=AnswerSample(
            question=f"Question {i}?",
            answer=sentence,
            sentences=[SampleSentence(text=sentence, citations=[cite])],
            contexts=[SampleContext(chunk_id=cite.chunk_id, document_id=doc, start=0, text=context)],
        ),
    )


_WORD = re.compile(r"\w+")


async def lexical(sample: RagSample, tenant_id: str) -> SampleScores:
    """Stand-in judge: a sentence is faithful when every word of it is in the contexts."""
    words = {w.lower() for c in sample.contexts for w in _WORD.findall(c.text)}
    faithful = [all(w.lower() in words for w in _WORD.findall(s.text)) for s in sample.sentences]
    return SampleScores({"faithfulness": sum(faithful) / len(faithful)})


async def eventually(predicate: Callable[[], Any], what: str, within_s: float = 120.0) -> Any:
    """Wait for an observable condition (the worker and the periodic check run on their own)."""
    deadline = time.monotonic() + within_s
    while True:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(params=["stand-in", "offline"])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    if request.param == "stand-in":
        monkeypatch.setattr(evaluation_module, "online_score_fn", lambda settings, judges: lexical)
    async with platform(tmp_path, evaluation={"online_judge": "offline", **SETTINGS}) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        yield rt, ch
        await ch.close()


async def test_online_faithfulness_drops_when_answers_get_worse(env: Any) -> None:
    rt, ch = env
    stub = evaluation_pb2_grpc.EvaluationServiceStub(ch)
    publish = publisher(rt.bus, topics.ANSWERS_PRODUCED)
    now = datetime.now(UTC)
    for i in range(5):  # the baseline: good answers five minutes ago
        await publish(answer(i, True, now - timedelta(minutes=5)))
    for i in range(4):  # the recent window: bad answers
        await publish(answer(i, False, now))
    await rt.bus.drain()

    async def all_scored() -> bool:
        m = await stub.GetOnlineMetrics(evaluation_pb2.GetOnlineMetricsRequest(tenant_id=TENANT))
        return m.samples == 9 and sum(q.n for q in m.quality if q.name == "faithfulness") == 9

    await eventually(all_scored, "every sample judged")
    recent = await stub.GetOnlineMetrics(
        evaluation_pb2.GetOnlineMetricsRequest(tenant_id=TENANT, window_seconds=60)
    )
    before = await stub.GetOnlineMetrics(
        evaluation_pb2.GetOnlineMetricsRequest(
            tenant_id=TENANT, start=_ts(now - timedelta(minutes=11)), end=_ts(now - timedelta(minutes=1))
        )
    )
    faith_now = {q.name: q for q in recent.quality}["faithfulness"]
    faith_before = {q.name: q for q in before.quality}["faithfulness"]
    assert (faith_now.n, faith_before.n, recent.judge_failures) == (4, 5, 0)
    assert faith_before.mean >= 0.75 and faith_now.mean <= 0.25, (faith_before, faith_now)

    def dropped() -> list[QualityDropped]:
        return [decode_event(topics.QUALITY_DROPPED, m) for m in rt.bus.messages(topics.QUALITY_DROPPED.name)]

    [drop] = await eventually(dropped, "QualityDropped published")
    assert (drop.tenant_id, drop.metric, drop.threshold, drop.window_seconds) == (
        TENANT,
        "faithfulness",
        0.2,
        60,
    )
    assert drop.drop > 0.2 and drop.samples >= 3 and drop.baseline_samples >= 3
    gauge = REGISTRY.get_sample_value("isthmus_online_quality", {"tenant": TENANT, "metric": "faithfulness"})
    assert gauge == pytest.approx(faith_now.mean)


def _ts(t: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(t)
    return out


GLIDER = b"""# Gliders

Gliders fly without engines. They soar in thermals, columns of rising warm air, and in ridge lift.
A winch launch pulls the glider up on a long cable before the pilot releases it.
"""
ASKED = "How do gliders stay up without an engine?"


async def test_asked_answers_are_sampled_and_eval_set_questions_scored_ndcg(tmp_path: Path) -> None:
    """The real path: Ask → the orchestrator samples the answer (rate 1 for the tenant) → evaluation keeps
    the sample; the question is one of the tenant's evaluation set, so it is scored nDCG@10 from what was
    retrieved, without a judge (``online_judge = "none"``)."""
    root = tmp_path / "sets"
    ds = root / "club-set"
    (ds / "qrels").mkdir(parents=True)
    (ds / "corpus.jsonl").write_text('{"_id": "glider", "title": "", "text": "Gliders."}\n')
    (ds / "queries.jsonl").write_text(f'{{"_id": "q1", "text": "{ASKED.upper()}"}}\n')
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tglider\t1\n")
    async with platform(
        tmp_path / "data",
        agent_orchestrator={"eval_sample_rates": {TENANT: 1.0}},
        evaluation={
            "online_judge": "none",
            "datasets_root": str(root),
            "online_eval_sets": {TENANT: "club-set"},
        },
    ) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        await upload(ch, TENANT, "glider.md", GLIDER, document_id="glider")
        await wait_indexed(ch, TENANT, ["glider"])
        asked = await ao_grpc.AgentOrchestratorServiceStub(ch).Ask(
            ao.AskRequest(tenant_id=TENANT, question=ASKED)
        )
        assert not asked.blocked and asked.citations, asked.answer
        await rt.bus.drain()
        [ev] = [
            decode_event(topics.ANSWERS_PRODUCED, m)
            for m in rt.bus.messages(topics.ANSWERS_PRODUCED.name)
            if decode_event(topics.ANSWERS_PRODUCED, m).question_id == asked.question_id
        ]
        assert ev.sample is not None and ev.sample.question == ASKED
        assert ev.sample.answer == asked.answer and ev.sample.contexts
        m = await evaluation_pb2_grpc.EvaluationServiceStub(ch).GetOnlineMetrics(
            evaluation_pb2.GetOnlineMetricsRequest(tenant_id=TENANT, window_seconds=600)
        )
        assert (m.answers, m.samples, m.judge_failures) == (1, 1, 0)
        assert [(q.name, q.mean, q.n) for q in m.quality] == [("ndcg_at_10", 1.0, 1)]
        await ch.close()
