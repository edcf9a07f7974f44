"""Conformance suite for the Judge port (:class:`isthmus_core.ports.judge.Judge`).

Usage, in an adapter's tests::

    class TestMyJudge(JudgeConformance, JudgeOutageConformance):
        @pytest.fixture
        async def judge(self) -> AsyncIterator[Judge]:          # any scope
            yield MyJudge(...)

        @pytest.fixture        # the Outage mix-in: a judge whose backend cannot be reached
        async def unreachable_judge(self) -> AsyncIterator[Judge]:
            yield MyJudge(<an address nothing listens on>)

The suite pins what evaluation relies on: one result per pair / passage, in the order sent (a call's
results are those of its items judged alone, whatever their company); class probabilities in 0..1 that
sum to 1; a premise's paraphrase more entailed than its negation or an unrelated sentence, and its
negation more contradicted than the paraphrase; relevance in 0..1 with the answering passage above an
unrelated one; more items than one request takes (:data:`MAX_JUDGE_ITEMS`) judged all the same; an
empty call ``[]``; a blank hypothesis or query, or a text past the port's limits, refused with
:class:`JudgeFailed` (never another exception); an unreachable backend ``JudgeFailed("unavailable")``.
It is meant for judges that judge (the offline models, the fake); a small LLM judges too poorly for the
quality checks and is tested on its transport instead.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from isthmus_core.ports.judge import (
    MAX_JUDGE_ITEMS,
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
    Judge,
    JudgeFailed,
)

TENANT = "judge-conformance"
PREMISE = (
    "Refunds are handled by the billing team. Refunds are paid within five business days after the "
    "returned item arrives. Shipping is free for orders above fifty euros."
)
ENTAILED = "The billing team handles refunds."
CONTRADICTED = "Refunds are never paid within five business days."
#: a sentence of the premise, verbatim
QUOTED = "Shipping is free for orders above fifty euros."
UNRELATED = "Penguins nest on the Antarctic coast in winter."
QUERY = "how long do refunds take"
RELEVANT = "Refunds are paid within five business days after the returned item arrives."
OFF_TOPIC = "Penguins nest on the Antarctic coast in winter, far from any shop."
TOLERANCE = 1e-6


def assert_probabilities(e: Entailment) -> None:
    probs = (e.entailment, e.neutral, e.contradiction)
    assert all(math.isfinite(p) and -TOLERANCE <= p <= 1 + TOLERANCE for p in probs), probs
    assert abs(sum(probs) - 1.0) <= TOLERANCE, probs


def _close(a: Entailment, b: Entailment) -> bool:
    return all(
        abs(x - y) <= 1e-4
        for x, y in zip(
            (a.entailment, a.neutral, a.contradiction),
            (b.entailment, b.neutral, b.contradiction),
            strict=True,
        )
    )


class JudgeConformance:
    """Mixin: subclasses provide a ``judge`` fixture."""

    async def test_the_judge_has_a_name(self, judge: Any) -> None:
        assert isinstance(judge, Judge)
        assert isinstance(judge.name, str) and judge.name.strip()

    async def test_one_entailment_per_pair_in_order_each_a_distribution(self, judge: Any) -> None:
        pairs = [(PREMISE, ENTAILED), (PREMISE, CONTRADICTED), (PREMISE, UNRELATED)]
        together = await judge.entail(TENANT, pairs)
        assert len(together) == 3
        for e in together:
            assert isinstance(e, Entailment)
            assert_probabilities(e)
        reversed_ = await judge.entail(TENANT, pairs[::-1])
        assert all(_close(a, b) for a, b in zip(together, reversed_[::-1], strict=True))
        alone = [(await judge.entail(TENANT, [p]))[0] for p in pairs]
        assert all(_close(a, b) for a, b in zip(together, alone, strict=True))

    async def test_a_paraphrase_is_entailed_more_than_a_negation_or_an_unrelated_claim(
        self, judge: Any
    ) -> None:
        entailed, contradicted, unrelated = await judge.entail(
            TENANT, [(PREMISE, ENTAILED), (PREMISE, CONTRADICTED), (PREMISE, UNRELATED)]
        )
        assert entailed.entailment > contradicted.entailment
        assert entailed.entailment > unrelated.entailment
        assert contradicted.contradiction > entailed.contradiction
        assert entailed.label == "entailment"

    async def test_relevance_is_in_unit_range_in_order_the_answer_first(self, judge: Any) -> None:
        scores = await judge.relevance(TENANT, QUERY, [OFF_TOPIC, RELEVANT])
        assert len(scores) == 2
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
        assert scores[1] > scores[0]
        swapped = await judge.relevance(TENANT, QUERY, [RELEVANT, OFF_TOPIC])
        assert swapped == pytest.approx(scores[::-1], abs=1e-4)

    async def test_more_items_than_one_request_takes_are_all_judged(self, judge: Any) -> None:
        # a quotation and a claim sharing no word with the premise: cheap for a model that recognises them
        n = MAX_JUDGE_ITEMS + 3
        pairs = [(PREMISE, QUOTED if i % 2 else UNRELATED) for i in range(n)]
        results = await judge.entail(TENANT, pairs)
        assert len(results) == n
        assert all(_close(r, results[i % 2]) for i, r in enumerate(results))
        assert results[1].entailment > results[0].entailment
        scores = await judge.relevance(TENANT, QUERY, [RELEVANT if i % 2 else OFF_TOPIC for i in range(n)])
        assert len(scores) == n
        assert all(s == pytest.approx(scores[i % 2], abs=1e-4) for i, s in enumerate(scores))
        assert scores[1] > scores[0]

    async def test_an_empty_call_judges_nothing(self, judge: Any) -> None:
        assert await judge.entail(TENANT, []) == []
        assert await judge.relevance(TENANT, QUERY, []) == []

    @pytest.mark.parametrize(
        "pair",
        [
            (PREMISE, "   "),
            (PREMISE, "x" * (MAX_JUDGE_TEXT_CHARS + 1)),
            ("y" * (MAX_JUDGE_TEXT_CHARS + 1), ENTAILED),
        ],
        ids=["blank-hypothesis", "long-hypothesis", "long-premise"],
    )
    async def test_a_pair_that_cannot_be_judged_fails_the_call(
        self, judge: Any, pair: tuple[str, str]
    ) -> None:
        with pytest.raises(JudgeFailed) as caught:
            await judge.entail(TENANT, [(PREMISE, ENTAILED), pair])
        assert caught.value.failure

    @pytest.mark.parametrize(
        ("query", "passage"),
        [
            (" ", RELEVANT),
            ("q" * (MAX_JUDGE_QUERY_CHARS + 1), RELEVANT),
            (QUERY, "p" * (MAX_JUDGE_TEXT_CHARS + 1)),
        ],
        ids=["blank-query", "long-query", "long-passage"],
    )
    async def test_relevance_that_cannot_be_judged_fails_the_call(
        self, judge: Any, query: str, passage: str
    ) -> None:
        with pytest.raises(JudgeFailed) as caught:
            await judge.relevance(TENANT, query, [passage])
        assert caught.value.failure


class JudgeOutageConformance:
    """Mixin: subclasses provide an ``unreachable_judge`` fixture (its backend cannot be reached)."""

    async def test_an_unreachable_backend_is_judge_failed_unavailable(self, unreachable_judge: Any) -> None:
        with pytest.raises(JudgeFailed) as caught:
            await unreachable_judge.entail(TENANT, [(PREMISE, ENTAILED)])
        assert caught.value.failure == "unavailable"
        with pytest.raises(JudgeFailed) as caught:
            await unreachable_judge.relevance(TENANT, QUERY, [RELEVANT])
        assert caught.value.failure == "unavailable"
