"""The durable online series (SQLite): counts, latency percentiles and quality over windows, per tenant and
model bundle; idempotency on answer and verdict ids; samples pending until judged (content dropped
then); retention; a deleted or erased tenant's rows and the samples that used erased documents
forgotten; drop state kept across a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from isthmus_core.contracts.events import (
    AnswerProduced,
    AnswerSample,
    ChunkProvenance,
    Citation,
    GuardrailVerdict,
    Provenance,
    QualityDropped,
    SampleContext,
    SampleSentence,
)
from isthmus_evaluation.online_store import OnlineStore, Window, micros
from isthmus_evaluation.rag_metrics import SampleScores

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALL = Window()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def window(start_min: float | None, end_min: float | None) -> Window:
    return Window.between(
        None if start_min is None else at(start_min), None if end_min is None else at(end_min)
    )


def sample(doc: str = "d1", question: str = "how do gliders fly?") -> AnswerSample:
    return AnswerSample(
        question=question,
        answer="They soar in thermals.",
        sentences=[
            SampleSentence(
                text="They soar in thermals.",
                citations=[Citation(chunk_id=f"{doc}#0", document_id=doc, start=0, end=22)],
            )
        ],
        contexts=[
            SampleContext(chunk_id=f"{doc}#0", document_id=doc, start=0, text="They soar in thermals.")
        ],
    )


def answer(
    answer_id: str,
    tenant: str = "acme",
    *,
    minutes: float = 0.0,
    latency: float = 100.0,
    citations: int = 0,
    blocked: bool = False,
    bundle: str = "",
    with_sample: AnswerSample | None = None,
    retrieved: tuple[str, ...] = (),
) -> AnswerProduced:
    cites = [Citation(chunk_id=f"c{i}", document_id=f"d{i}", start=0, end=5) for i in range(citations)]
    return AnswerProduced(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/{answer_id}",
        question_id=answer_id,
        occurred_at=at(minutes),
        latency_ms=latency,
        citations=cites,
        blocked=blocked,
        provenance=Provenance(
            model_bundle=bundle,
            retrieved=[ChunkProvenance(chunk_id=f"{d}#0", document_id=d) for d in retrieved],
        ),
        sample=with_sample,
    )


def verdict(
    action: str, stage: str = "input", tenant: str = "acme", minutes: float = 0.0
) -> GuardrailVerdict:
    return GuardrailVerdict(
        tenant_id=tenant, idempotency_key="k", stage=stage, action=action, occurred_at=at(minutes)
    )


@pytest.fixture
def store(tmp_path: Path) -> OnlineStore:
    return OnlineStore(tmp_path / "evaluation" / "online.sqlite")


def test_empty_summary(store: OnlineStore) -> None:
    s = store.summary(None, ALL)
    assert s.tenant_id is None and s.answers == 0 and s.guardrail_verdicts == 0 and s.samples == 0
    assert s.latency_p50_ms is None and s.latency_p95_ms is None
    assert s.citations_per_answer == 0.0 and s.block_rate == 0.0 and s.quality == {}


def test_answers_latency_and_citations(store: OnlineStore) -> None:
    latencies = [120.0, 80.0, 300.0, 95.0, 1000.0, 42.5, 7.0]
    citations = [2, 0, 3, 1, 0, 1, 1]
    for i, (lat, n) in enumerate(zip(latencies, citations, strict=True)):
        assert store.add_answer(answer(f"a{i}", latency=lat, citations=n))
    assert store.add_answer(answer("blocked", latency=50.0, blocked=True))
    s = store.summary(None, ALL)
    all_lat = [*latencies, 50.0]
    assert s.answers == len(all_lat) and s.blocked_answers == 1
    assert s.block_rate == pytest.approx(1 / len(all_lat))
    assert s.latency_p50_ms == pytest.approx(float(np.percentile(all_lat, 50)))
    assert s.latency_p95_ms == pytest.approx(float(np.percentile(all_lat, 95)))
    assert s.citations_per_answer == pytest.approx(sum(citations) / len(all_lat))
    assert s.answers_with_citations == sum(1 for n in citations if n)


def test_a_single_answer_is_its_own_percentiles(store: OnlineStore) -> None:
    store.add_answer(answer("a", latency=33.0))
    s = store.summary("acme", ALL)
    assert s.latency_p50_ms == s.latency_p95_ms == 33.0


def test_verdicts_counted_by_action_and_stage_only_applied_redactions(store: OnlineStore) -> None:
    for action, stage in [
        ("allow", "input"),
        ("block", "input"),
        ("block", "output"),
        ("redact", "output"),
        ("redact", "chunk"),
        ("redact", "input"),
        ("flag", "chunk"),
        ("block", "input"),
    ]:
        assert store.add_verdict(verdict(action, stage))
    s = store.summary(None, ALL)
    assert s.guardrail_verdicts == 8 and s.guardrail_blocks == 3
    assert s.guardrail_redactions == 3  # input, output and chunk REDACTs are applied; a FLAG is none
    assert s.blocks_by_stage == {"input": 2, "output": 1}


def test_redeliveries_count_once(store: OnlineStore) -> None:
    ev = answer("a1", latency=10.0, citations=1)
    assert store.add_answer(ev) is True
    assert store.add_answer(ev) is False
    assert store.add_answer(AnswerProduced.model_validate_json(ev.model_dump_json())) is False
    # the answer id is the key: the same answer published again (another event id) is the same answer
    assert store.add_answer(ev.model_copy(update={"event_id": "other"})) is False
    # ... of its tenant: another tenant's answer with the same id is another answer
    assert store.add_answer(answer("a1", tenant="globex")) is True
    v = verdict("block")
    assert store.add_verdict(v) is True and store.add_verdict(v) is False
    s = store.summary(None, ALL)
    assert (s.answers, s.guardrail_blocks) == (2, 1)
    assert store.summary("acme", ALL).answers == 1


def test_per_tenant_and_overall(store: OnlineStore) -> None:
    store.add_answer(answer("a", "acme", latency=10.0, citations=2))
    store.add_answer(answer("b", "acme", latency=30.0))
    store.add_answer(answer("c", "globex", latency=1000.0, blocked=True))
    store.add_verdict(verdict("redact", "output", tenant="globex"))
    acme, globex, total = store.summary("acme", ALL), store.summary("globex", ALL), store.summary("", ALL)
    assert acme.tenant_id == "acme" and acme.answers == 2 and acme.blocked_answers == 0
    assert acme.latency_p50_ms == pytest.approx(20.0) and acme.citations_per_answer == pytest.approx(1.0)
    assert acme.guardrail_redactions == 0
    assert globex.answers == 1 and globex.blocked_answers == 1 and globex.guardrail_redactions == 1
    assert total.tenant_id is None and total.answers == 3 and total.guardrail_redactions == 1


def test_windows_select_answers_verdicts_and_samples_by_time(store: OnlineStore) -> None:
    for i, (minute, lat) in enumerate([(-90, 1000.0), (-61, 900.0), (-30, 1.0), (-10, 2.0), (-1, 3.0)]):
        store.add_answer(answer(f"a{i}", minutes=minute, latency=lat, with_sample=sample()))
        store.add_verdict(verdict("block", minutes=minute))
    last_hour = store.summary("acme", window(-60, 0))
    assert last_hour.answers == 3 and last_hour.guardrail_blocks == 3 and last_hour.samples == 3
    assert last_hour.latency_p50_ms == pytest.approx(2.0)  # the window's answers only
    assert last_hour.latency_p95_ms is not None and last_hour.latency_p95_ms <= 3.0
    # [start, end): an answer at the end is not in, one at the start is
    assert store.summary("acme", window(-30, -10)).answers == 1
    assert store.summary("acme", window(None, -60)).answers == 2  # no start: everything before the end
    assert store.summary("acme", window(-60, None)).answers == 3
    assert store.summary("acme", window(0, 10)).answers == 0


def test_the_bundle_filter_applies_to_answers_and_samples(store: OnlineStore) -> None:
    store.add_answer(answer("a", bundle="emb@1", latency=10.0, with_sample=sample()))
    store.add_answer(answer("b", bundle="emb@2", latency=90.0, blocked=True))
    store.add_answer(answer("c", bundle="emb@2", latency=70.0, with_sample=sample()))
    store.add_verdict(verdict("block"))
    for p in store.pending():
        store.record_scores(
            p.tenant_id, p.answer_id, SampleScores({"faithfulness": 1.0 if p.answer_id == "a" else 0.5})
        )
    one = store.summary("acme", ALL, "emb@1")
    assert (one.model_bundle, one.answers, one.blocked_answers, one.samples) == ("emb@1", 1, 0, 1)
    assert one.quality["faithfulness"].mean == 1.0
    two = store.summary("acme", ALL, "emb@2")
    assert (two.answers, two.block_rate, two.latency_p50_ms) == (2, 0.5, 80.0)
    assert two.quality["faithfulness"].mean == 0.5
    assert one.guardrail_blocks == two.guardrail_blocks == 1  # verdicts name no bundle: the tenant's
    assert store.summary("acme", ALL, "emb@3").answers == 0


def test_samples_are_pending_until_judged_then_scored_or_failed(store: OnlineStore) -> None:
    store.add_answer(answer("good", with_sample=sample()))
    store.add_answer(answer("late", minutes=1, with_sample=sample()))
    store.add_answer(answer("bad", minutes=2, with_sample=sample()))
    store.add_answer(answer("plain", minutes=3))  # not sampled
    store.add_answer(answer("blocked", minutes=4, blocked=True, with_sample=sample()))  # never kept
    pending = store.pending()
    assert [p.answer_id for p in pending] == ["good", "late", "bad"]  # oldest first
    assert pending[0].sample == sample()
    assert [p.answer_id for p in store.pending(limit=1)] == ["good"]
    s = store.summary("acme", ALL)
    assert (s.samples, s.pending_samples, s.quality) == (3, 3, {})

    assert store.record_scores("acme", "good", SampleScores({"faithfulness": 1.0, "answer_relevance": 0.8}))
    assert store.record_scores("acme", "bad", SampleScores(failure="timeout", detail="60 s"))
    assert not store.record_scores("acme", "good", SampleScores({"faithfulness": 0.0}))  # judged already
    assert [p.answer_id for p in store.pending()] == ["late"]
    assert store.record_scores("acme", "late", SampleScores({"faithfulness": 0.5}))
    s = store.summary("acme", ALL)
    assert (s.samples, s.pending_samples, s.judge_failures, s.failure_reasons) == (3, 0, 1, {"timeout": 1})
    faith, relevance = s.quality["faithfulness"], s.quality["answer_relevance"]
    assert (faith.mean, faith.n, faith.failures) == (0.75, 2, 1)
    assert (relevance.mean, relevance.n, relevance.failures) == (0.8, 1, 1)


def test_without_a_judge_samples_are_recorded_unjudged(store: OnlineStore) -> None:
    store.add_answer(answer("a", with_sample=sample()), judged=False, scores={"ndcg_at_10": 0.6})
    assert store.pending() == []
    s = store.summary("acme", ALL)
    assert (s.samples, s.pending_samples) == (1, 0)
    ndcg = s.quality["ndcg_at_10"]
    assert (ndcg.mean, ndcg.n, ndcg.failures) == (0.6, 1, 0)


def test_samples_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    first = OnlineStore(path)
    first.add_answer(answer("a", with_sample=sample()))
    first.add_verdict(verdict("block"))
    first.close()
    again = OnlineStore(path)
    assert [p.answer_id for p in again.pending()] == ["a"]
    assert again.summary("acme", ALL).guardrail_blocks == 1
    assert again.add_answer(answer("a", with_sample=sample())) is False


def test_retention_purges_old_rows_only(store: OnlineStore) -> None:
    store.add_answer(answer("old", minutes=-120, with_sample=sample()))
    store.add_answer(answer("new", minutes=-5, with_sample=sample()))
    store.add_verdict(verdict("block", minutes=-120))
    store.add_verdict(verdict("block", minutes=-5))
    for p in store.pending():
        store.record_scores(
            p.tenant_id, p.answer_id, SampleScores({"faithfulness": 0.0 if p.answer_id == "old" else 1.0})
        )
    assert store.purge_before(at(-60)) == 3  # the old answer, its sample, the old verdict
    s = store.summary("acme", ALL)
    assert (s.answers, s.guardrail_blocks, s.samples) == (1, 1, 1)
    assert s.quality["faithfulness"].mean == 1.0
    assert store.purge_before(at(-60)) == 0


def test_erasing_documents_forgets_the_samples_that_used_them(store: OnlineStore) -> None:
    store.add_answer(answer("ctx", with_sample=sample(doc="secret")))
    store.add_answer(answer("retrieved", with_sample=sample(doc="d9"), retrieved=("secret",)))
    store.add_answer(answer("other", with_sample=sample(doc="d2")))
    store.add_answer(answer("elsewhere", tenant="globex", with_sample=sample(doc="secret")))
    store.record_scores("acme", "other", SampleScores({"faithfulness": 1.0}))
    assert store.erase("acme", ["secret"], whole_tenant=False) == 2
    assert [p.answer_id for p in store.pending()] == ["elsewhere"]  # another tenant's is not touched
    s = store.summary("acme", ALL)
    assert s.samples == 1 and s.quality["faithfulness"].n == 1
    assert s.answers == 3  # an answer's counts name no document: they stay
    assert store.erase("acme", ["secret"], whole_tenant=False) == 0
    assert store.erase("acme", [], whole_tenant=False) == 0


def test_erasing_a_whole_tenant_forgets_all_its_rows(store: OnlineStore) -> None:
    store.add_answer(answer("a", with_sample=sample()))
    store.add_verdict(verdict("block"))
    store.add_answer(answer("b", tenant="globex", with_sample=sample()))
    store.raise_drop(drop_event("acme"))
    assert store.erase("acme", [], whole_tenant=True) == 1
    s = store.summary("acme", ALL)
    assert (s.answers, s.guardrail_verdicts, s.samples) == (0, 0, 0)
    assert store.raised_drops() == {}
    assert store.summary("globex", ALL).samples == 1


def test_a_deleted_tenant_loses_its_rows_from_before_the_deletion(store: OnlineStore) -> None:
    store.add_answer(answer("before", with_sample=sample()))
    store.add_answer(answer("after", minutes=10, with_sample=sample()))
    store.raise_drop(drop_event("acme"))
    assert store.drop_tenant("acme", at(5)) == 2  # the answer and its sample
    assert [p.answer_id for p in store.pending()] == ["after"]
    assert store.raised_drops() == {}


def drop_event(tenant: str, metric: str = "faithfulness") -> QualityDropped:
    return QualityDropped(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/quality-dropped/{metric}/*/x",
        occurred_at=T0,
        metric=metric,  # type: ignore[arg-type]
        baseline=0.9,
        current=0.4,
        drop=0.5,
        threshold=0.1,
        window_seconds=3600,
        samples=20,
        baseline_samples=20,
    )


def test_a_drop_is_remembered_raised_then_published_until_it_recovers(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    store = OnlineStore(path)
    ev = drop_event("acme")
    assert store.raise_drop(ev) is True
    assert store.raise_drop(drop_event("acme")) is False  # one raised drop per (tenant, metric, bundle)
    assert store.raised_drops() == {("acme", "faithfulness", ""): (ev, False)}
    store.drop_published("acme", "faithfulness", "")
    store.close()
    store = OnlineStore(path)
    assert store.raised_drops() == {("acme", "faithfulness", ""): (ev, True)}
    assert store.drop_recovered("acme", "faithfulness", "") is True
    assert store.raised_drops() == {}


def test_times_are_microseconds_since_the_epoch() -> None:
    assert micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    assert micros(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000  # naive = UTC
