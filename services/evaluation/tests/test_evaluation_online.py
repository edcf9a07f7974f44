from __future__ import annotations

import numpy as np
import pytest

from isthmus_core.contracts.events import AnswerProduced, Citation, GuardrailVerdict
from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.online import OnlineMetrics, OnlineSnapshot


def _answer(
    tenant: str = "acme", latency: float = 100.0, citations: int = 0, blocked: bool = False, **kw: object
) -> AnswerProduced:
    cites = [Citation(chunk_id=f"c{i}", document_id=f"d{i}", start=0, end=5) for i in range(citations)]
    return AnswerProduced(
        tenant_id=tenant,
        idempotency_key="k",
        question_id="q",
        latency_ms=latency,
        citations=cites,
        blocked=blocked,
        **kw,
    )


def _verdict(action: str, stage: str = "input", tenant: str = "acme") -> GuardrailVerdict:
    return GuardrailVerdict(tenant_id=tenant, idempotency_key="k", stage=stage, action=action)


def test_empty_snapshot() -> None:
    snap = OnlineMetrics().snapshot()
    assert isinstance(snap, OnlineSnapshot)
    assert snap.tenant_id is None
    assert snap.answers == 0 and snap.guardrail_verdicts == 0
    assert snap.latency_p50_ms is None and snap.latency_p95_ms is None
    assert snap.citations_per_answer == 0.0


def test_answers_latency_and_citations() -> None:
    m = OnlineMetrics()
    latencies = [120.0, 80.0, 300.0, 95.0, 1000.0]
    citations = [2, 0, 3, 1, 0]
    for lat, n in zip(latencies, citations, strict=True):
        assert m.observe_answer(_answer(latency=lat, citations=n))
    m.observe_answer(_answer(latency=50.0, blocked=True))
    snap = m.snapshot()
    all_lat = [*latencies, 50.0]
    assert snap.answers == len(all_lat)
    assert snap.blocked_answers == 1
    assert snap.latency_p50_ms == pytest.approx(float(np.percentile(all_lat, 50)))
    assert snap.latency_p95_ms == pytest.approx(float(np.percentile(all_lat, 95)))
    assert snap.citations_per_answer == pytest.approx(sum(citations) / len(all_lat))
    assert snap.answers_with_citations == sum(1 for n in citations if n)


def test_verdicts_counted_by_action_and_stage() -> None:
    m = OnlineMetrics()
    for action, stage in [
        ("allow", "input"),
        ("block", "input"),
        ("block", "output"),
        ("redact", "output"),
        ("redact", "chunk"),
        ("flag", "chunk"),
        ("block", "input"),
    ]:
        m.observe_verdict(_verdict(action, stage))
    snap = m.snapshot()
    assert snap.guardrail_verdicts == 7
    assert snap.guardrail_blocks == 3
    assert snap.guardrail_redactions == 2  # output and chunk (ingestion indexes the redacted text)
    assert snap.blocks_by_stage == {"input": 2, "output": 1}


def test_only_applied_redactions_count() -> None:
    """Input and output REDACTs are applied by the orchestrator (the redacted question is searched, the
    redacted sentence returned), chunk REDACTs by ingestion (the redacted text is indexed); a FLAG is no
    redaction."""
    m = OnlineMetrics()
    for stage in ("input", "output", "output", "chunk"):
        m.observe_verdict(_verdict("redact", stage))
    m.observe_verdict(_verdict("flag", "chunk"))
    snap = m.snapshot()
    assert snap.guardrail_verdicts == 5
    assert snap.guardrail_redactions == 4


def test_same_event_id_counts_once() -> None:
    m = OnlineMetrics()
    ev = _answer(latency=10.0, citations=1)
    assert m.observe_answer(ev) is True
    assert m.observe_answer(ev) is False
    assert m.observe_answer(AnswerProduced.model_validate_json(ev.model_dump_json())) is False
    v = _verdict("block")
    assert m.observe_verdict(v) is True
    assert m.observe_verdict(v) is False
    snap = m.snapshot()
    assert (snap.answers, snap.guardrail_blocks) == (1, 1)
    assert m.snapshot("acme").answers == 1


def test_per_tenant_and_overall() -> None:
    m = OnlineMetrics()
    m.observe_answer(_answer(tenant="acme", latency=10.0, citations=2))
    m.observe_answer(_answer(tenant="acme", latency=30.0))
    m.observe_answer(_answer(tenant="globex", latency=1000.0, blocked=True))
    m.observe_verdict(_verdict("redact", tenant="globex"))
    acme, globex, total = m.snapshot("acme"), m.snapshot("globex"), m.snapshot()
    assert acme.tenant_id == "acme" and acme.answers == 2 and acme.blocked_answers == 0
    assert acme.latency_p50_ms == pytest.approx(20.0)
    assert acme.citations_per_answer == pytest.approx(1.0)
    assert acme.guardrail_redactions == 0
    assert globex.answers == 1 and globex.blocked_answers == 1 and globex.guardrail_redactions == 1
    assert total.answers == 3 and total.guardrail_redactions == 1
    assert m.tenants() == ["acme", "globex"]


def test_unknown_tenant_snapshot_is_zero() -> None:
    m = OnlineMetrics()
    m.observe_answer(_answer(tenant="acme"))
    snap = m.snapshot("nobody")
    assert snap.tenant_id == "nobody" and snap.answers == 0 and snap.latency_p50_ms is None
    assert m.tenants() == ["acme"]


def test_latency_window_keeps_only_recent_answers() -> None:
    m = OnlineMetrics(latency_window=3)
    for lat in [1000.0, 1000.0, 1.0, 2.0, 3.0]:
        m.observe_answer(_answer(latency=lat))
    snap = m.snapshot()
    assert snap.answers == 5  # counts are not windowed
    assert snap.latency_p50_ms == pytest.approx(2.0)
    assert snap.latency_p95_ms is not None and snap.latency_p95_ms <= 3.0


def test_seen_ids_memory_is_bounded() -> None:
    m = OnlineMetrics(seen_ids=2)
    first, second, third = _answer(), _answer(), _answer()
    for ev in (first, second, third):
        assert m.observe_answer(ev)
    assert m.observe_answer(third) is False  # still remembered
    assert m.observe_answer(first) is True  # forgotten: the oldest id was evicted
    assert m.snapshot().answers == 4


def test_answer_and_verdict_ids_do_not_collide() -> None:
    m = OnlineMetrics()
    assert m.observe_answer(_answer(event_id="same"))
    assert m.observe_verdict(
        GuardrailVerdict(
            tenant_id="acme", idempotency_key="k", stage="input", action="block", event_id="same"
        )
    )
    assert m.snapshot().answers == 1 and m.snapshot().guardrail_blocks == 1


@pytest.mark.parametrize("kwargs", [{"latency_window": 0}, {"seen_ids": 0}])
def test_invalid_bounds(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidArgument, match="must be at least 1"):
        OnlineMetrics(**kwargs)
