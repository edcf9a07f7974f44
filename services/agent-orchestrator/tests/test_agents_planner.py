"""The deterministic planner, critic and step guard (pure)."""

from __future__ import annotations

import pytest

from isthmus_agent_orchestrator.agents.critic import HeuristicCritic
from isthmus_agent_orchestrator.agents.planner import HeuristicPlanner, split_question
from isthmus_agent_orchestrator.agents.step_guard import WITHHELD, StepGuard
from isthmus_agent_orchestrator.agents.testing import RuleGuard
from isthmus_agent_orchestrator.agents.types import Draft, Step, StepKind
from isthmus_core.ports.generator import AnswerSentence, Context


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        # the benchmark's compound questions: two dataset queries joined
        (
            "What is a glider? Also, how do thermals form?",
            ["What is a glider?", "how do thermals form?"],
        ),
        (
            "Aspirin lowers the risk of stroke. Also, vitamin D prevents bone fractures?",
            ["Aspirin lowers the risk of stroke.", "vitamin D prevents bone fractures?"],
        ),
        (
            "Which gliders have engines, and also which ones are cheapest?",
            ["Which gliders have engines", "which ones are cheapest?"],
        ),
        (
            "List the opening hours; name the fuel types sold at the tower",
            ["List the opening hours", "name the fuel types sold at the tower"],
        ),
        (
            "Explain ridge lift as well as how wave lift forms over mountains",
            ["Explain ridge lift", "how wave lift forms over mountains"],
        ),
        # nothing to cut: abbreviations, decimals, a noun phrase joined by "as well as", a short tail
        ("Tell me about e.g. gliders with 3.5 m wings", ["Tell me about e.g. gliders with 3.5 m wings"]),
        ("Compare gliders as well as sailplanes", ["Compare gliders as well as sailplanes"]),
        ("How do gliders fly? Why?", ["How do gliders fly? Why?"]),
        # repeats count once
        ("What is lift? what is LIFT?", ["What is lift?"]),
    ],
)
def test_compound_questions_are_split_into_what_they_ask(question: str, parts: list[str]) -> None:
    assert split_question(question) == parts


def test_past_the_cap_the_rest_joins_the_last_part_and_no_word_is_lost() -> None:
    question = "What is lift? What is drag? What is thrust? What is weight?"
    parts = split_question(question, max_sub_questions=2)
    assert parts == ["What is lift?", "What is drag? What is thrust? What is weight?"]
    assert " ".join(parts) == question


@pytest.mark.parametrize("question", ["", "   ", "?", "Why?"])
async def test_the_plan_is_never_empty(question: str) -> None:
    assert len(await HeuristicPlanner().plan(question, max_sub_questions=4)) == 1


CTX = Context("c1", "d1", "Hangars open at eight. Thermals are rising warm air.")


def cited(text: str) -> AnswerSentence:
    start = CTX.text.index(text)
    return AnswerSentence(text, (CTX.cite(start, start + len(text)),))


def test_a_cited_draft_covering_the_question_is_grounded() -> None:
    critique = HeuristicCritic().judge(
        "When do hangars open?", Draft((cited("Hangars open at eight."),), (CTX,))
    )
    assert critique.grounded and critique.retry_query == ""


def test_an_uncited_draft_is_not_grounded_and_retries_with_the_missing_words() -> None:
    draft = Draft((AnswerSentence("Gliders need no fuel."),), (CTX,))
    critique = HeuristicCritic().judge("Do gliders need fuel?", draft)
    assert not critique.grounded
    assert critique.retry_query == "Do gliders need fuel? gliders need fuel"


def test_a_draft_missing_part_of_the_question_retries_with_that_part() -> None:
    draft = Draft((cited("Hangars open at eight."),), (CTX,))
    critique = HeuristicCritic().judge("When do hangars open and what is ridge soaring?", draft)
    assert not critique.grounded and critique.retry_query.endswith("ridge soaring")


def test_an_empty_draft_is_not_grounded() -> None:
    assert not HeuristicCritic().judge("When do hangars open?", Draft((), (CTX,))).grounded


async def test_the_step_guard_numbers_and_checks_every_step() -> None:
    guard = RuleGuard(block=["secret"])
    steps = StepGuard(guard, "t", "q1", first_index=3)
    shown = await steps.check(Step(StepKind.TOOL_RESULT, "tool_caller", "mail ops@club.example"))
    assert (shown.step.index, shown.step.text, shown.blocked) == (3, "mail <EMAIL_ADDRESS>", False)
    call = await steps.check(
        Step(StepKind.TOOL_CALL, "tool_caller", "calling fetch", arguments_json='{"to": "a@b.example"}')
    )
    assert (call.step.text, call.step.arguments_json) == ("calling fetch", '{"to": "<EMAIL_ADDRESS>"}')
    plan = await steps.check(
        Step(StepKind.PLAN, "planner", "ask a@b.example\nwhen", sub_questions=("x", "y"))
    )
    assert plan.step.sub_questions == ("ask <EMAIL_ADDRESS>", "when")
    blocked = await steps.check(Step(StepKind.TOOL_RESULT, "tool_caller", "the secret is 42"))
    assert blocked.blocked and blocked.step.text == WITHHELD and blocked.step.index == 6
    assert [s for _, s in guard.inputs] == ["q1/step/3", "q1/step/4", "q1/step/5", "q1/step/6"]
