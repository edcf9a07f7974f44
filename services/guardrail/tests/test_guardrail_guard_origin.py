"""Input from a document (a tool's result) is checked for injection at the ingest operating point."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from isthmus_core.ports.guard import Action, Finding, Policy
from isthmus_guardrail.components import INJECTION_MODEL, Stage
from isthmus_guardrail.guard import Guard


class StageModel:
    """Scores 0.7 at the input operating point and 0.3 at the ingest one (stricter)."""

    name = "stage-model@test"

    def __init__(self) -> None:
        self.stages: list[Stage] = []

    def findings(self, texts: Sequence[str], stage: Stage) -> list[list[Finding]]:
        self.stages.append(stage)
        score = 0.7 if stage == "input" else 0.3
        return [[Finding(INJECTION_MODEL, f"{self.name} p={score}", 0, len(t), score)] for t in texts]


TEXT = "The weather in the travel policy is sunny."


def test_a_users_text_is_checked_at_the_input_operating_point() -> None:
    model = StageModel()
    verdict = Guard(None, injection_model=model).check_input(TEXT, Policy())
    assert verdict.action is Action.BLOCK and model.stages == ["input"]


def test_a_documents_text_is_checked_at_the_ingest_operating_point() -> None:
    model = StageModel()
    verdict = Guard(None, injection_model=model).check_input(TEXT, Policy(), "document")
    assert verdict.action is Action.ALLOW and model.stages == ["ingest"]
    strict = dataclasses.replace(Policy(), ingest_injection_threshold=0.2)
    assert Guard(None, injection_model=model).check_input(TEXT, strict, "document").action is Action.BLOCK
