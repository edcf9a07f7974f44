"""A tool's result is checked as a document (the stricter ingest operating point), everything else as a
person's text."""

from __future__ import annotations

import pytest

from isthmus_agent_orchestrator.agents.step_guard import StepGuard
from isthmus_agent_orchestrator.agents.testing import RuleGuard
from isthmus_agent_orchestrator.agents.types import Step, StepKind


@pytest.mark.parametrize(
    ("kind", "origin"),
    [
        (StepKind.TOOL_RESULT, "document"),
        (StepKind.TOOL_CALL, "user"),
        (StepKind.PLAN, "user"),
        (StepKind.CRITIQUE, "user"),
    ],
)
async def test_tool_results_are_checked_as_documents(kind: StepKind, origin: str) -> None:
    guard = RuleGuard()
    await StepGuard(guard, "acme", "q1").check(Step(kind=kind, node="agent", text="some text"))
    assert guard.origins == [origin]
