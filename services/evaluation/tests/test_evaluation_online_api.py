"""``GetOnlineMetrics`` over the durable store: windows (the last N seconds, or start/end), the model bundle
filter, the quality of the sampled answers with their judge failures; bad windows refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus_core.contracts.events import AnswerProduced, AnswerSample, Provenance
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.rag_metrics import SampleScores

ACME = TenantId("acme")


def ts(t: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(t)
    return out


def answer(
    answer_id: str, ago: timedelta, bundle: str = "", latency: float = 10.0, blocked: bool = False
) -> AnswerProduced:
    return AnswerProduced(
        tenant_id=ACME,
        idempotency_key=f"acme/{answer_id}",
        question_id=answer_id,
        occurred_at=datetime.now(UTC) - ago,
        latency_ms=latency,
        blocked=blocked,
        provenance=Provenance(model_bundle=bundle),
        sample=None if blocked else AnswerSample(question="q", answer="a"),
    )


@pytest.fixture
def store(tmp_path: Path) -> OnlineStore:
    s = OnlineStore(tmp_path / "online.sqlite")
    s.add_answer(answer("old", timedelta(days=2), latency=500.0))
    s.add_answer(answer("v1", timedelta(minutes=5), bundle="emb@1", latency=20.0))
    s.add_answer(answer("v2", timedelta(minutes=4), bundle="emb@2", latency=40.0))
    s.add_answer(answer("v2-blocked", timedelta(minutes=3), bundle="emb@2", blocked=True))
    s.record_scores("acme", "old", SampleScores({"faithfulness": 0.0}))
    s.record_scores("acme", "v1", SampleScores({"faithfulness": 1.0, "answer_relevance": 0.5}))
    s.record_scores("acme", "v2", SampleScores(failure="timeout", detail="slow"))
    return s


@pytest.fixture
def servicer(store: OnlineStore) -> EvaluationServicer:
    runner: Any = None
    return EvaluationServicer(runner, store, InMemoryTenantDirectory([ACME]))


async def test_the_last_hour(servicer: EvaluationServicer) -> None:
    before = datetime.now(UTC)
    m = await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id=ACME, window_seconds=3600), None)
    assert (m.answers, m.blocked_answers, m.samples, m.judge_failures) == (3, 1, 2, 1)
    assert m.guardrail_block_rate == pytest.approx(1 / 3)
    assert m.latency_p50_ms == pytest.approx(20.0)
    assert dict(m.failure_reasons) == {"timeout": 1}
    assert [(q.name, q.mean, q.n, q.failures) for q in m.quality] == [
        ("answer_relevance", 0.5, 1, 1),
        ("faithfulness", 1.0, 1, 1),
    ]
    start, end = m.window_start.ToDatetime(tzinfo=UTC), m.window_end.ToDatetime(tzinfo=UTC)
    assert end - start == timedelta(hours=1) and end >= before


async def test_everything_kept_without_a_window(servicer: EvaluationServicer) -> None:
    m = await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id=ACME), None)
    assert m.answers == 4 and not m.HasField("window_start") and m.HasField("window_end")
    assert {q.name: q.mean for q in m.quality}["faithfulness"] == 0.5


async def test_start_and_end(servicer: EvaluationServicer) -> None:
    now = datetime.now(UTC)
    req = pb.GetOnlineMetricsRequest(
        tenant_id=ACME, start=ts(now - timedelta(days=3)), end=ts(now - timedelta(days=1))
    )
    m = await servicer.GetOnlineMetrics(req, None)
    assert (m.answers, m.latency_p95_ms) == (1, 500.0)
    assert (m.window_start, m.window_end) == (req.start, req.end)


async def test_the_bundle_filter(servicer: EvaluationServicer) -> None:
    m = await servicer.GetOnlineMetrics(
        pb.GetOnlineMetricsRequest(tenant_id=ACME, model_bundle="emb@2"), None
    )
    assert (m.model_bundle, m.answers, m.blocked_answers, m.guardrail_block_rate) == ("emb@2", 2, 1, 0.5)
    assert (m.samples, m.judge_failures, list(m.quality)) == (1, 1, [])


async def test_none_names_the_bundled_models(servicer: EvaluationServicer) -> None:
    async def answers(bundle: str) -> int:
        m = await servicer.GetOnlineMetrics(
            pb.GetOnlineMetricsRequest(tenant_id=ACME, model_bundle=bundle), None
        )
        assert m.model_bundle == bundle
        return m.answers

    # the answers recorded without a bundle ("old") are the ones neither bundle filter takes
    bundled = await answers("none")
    assert bundled == await answers("") - await answers("emb@1") - await answers("emb@2") == 1


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"window_seconds": 60, "start": -3600}, "not both"),
        ({"window_seconds": 60, "end": 0}, "not both"),
        ({"start": 0, "end": -60}, "must be after start"),
        ({"window_seconds": -5}, "negative"),
        ({"model_bundle": "x" * 129}, "model_bundle"),
        ({"model_bundle": "a\nb"}, "model_bundle"),
        ({"model_bundle": "emb"}, "name>@<version"),
    ],
)
async def test_bad_windows_are_invalid_arguments(
    servicer: EvaluationServicer, fields: dict[str, Any], match: str
) -> None:
    now = datetime.now(UTC)
    kw = {k: ts(now + timedelta(seconds=v)) if k in ("start", "end") else v for k, v in fields.items()}
    with pytest.raises(InvalidArgument, match=match):
        await servicer.GetOnlineMetrics(pb.GetOnlineMetricsRequest(tenant_id=ACME, **kw), None)
