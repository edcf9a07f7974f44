"""The deterministic fake judge (lexical overlap) passes the Judge conformance suite, and fails on demand
with the codes evaluation counts."""

from __future__ import annotations

import pytest

from isthmus_core.ports.judge import JudgeFailed
from isthmus_core.testing.fake_judge import FakeJudge
from isthmus_core.testing.judge_conformance import (
    ENTAILED,
    PREMISE,
    QUERY,
    RELEVANT,
    TENANT,
    JudgeConformance,
    JudgeOutageConformance,
)


class TestFakeJudge(JudgeConformance, JudgeOutageConformance):
    @pytest.fixture
    def judge(self) -> FakeJudge:
        return FakeJudge()

    @pytest.fixture
    def unreachable_judge(self) -> FakeJudge:
        return FakeJudge(failure="unavailable")


async def test_fails_on_a_marked_text_with_the_given_code_and_records_calls() -> None:
    judge = FakeJudge(fail_on={"BROKEN": "timeout"})
    assert len(await judge.entail(TENANT, [(PREMISE, ENTAILED)])) == 1
    with pytest.raises(JudgeFailed) as caught:
        await judge.entail(TENANT, [(PREMISE, ENTAILED), (PREMISE, "BROKEN claim")])
    assert caught.value.failure == "timeout"
    with pytest.raises(JudgeFailed):
        await judge.relevance(TENANT, QUERY, [RELEVANT, "BROKEN"])
    assert judge.calls == [("entail", TENANT, 1), ("entail", TENANT, 2), ("relevance", TENANT, 2)]


async def test_scores_follow_word_overlap() -> None:
    judge = FakeJudge()
    [full, half, none] = await judge.entail(
        TENANT, [("red apples grow", "Red apples."), ("red apples", "red pears"), ("red", "blue sky")]
    )
    assert (full.entailment, half.entailment, none.entailment) == pytest.approx((0.95, 0.5, 0.05))
    [negated] = await judge.entail(TENANT, [("red apples grow", "red apples do not grow")])
    assert negated.label == "contradiction"
    assert await judge.relevance(TENANT, "red apples", ["apples", "red apples", "pears"]) == [0.5, 1.0, 0.0]
