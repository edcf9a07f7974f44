"""Every agent step passes the input guardrail before anyone sees it (the caller, or — for a tool's
result — the agents themselves).

A step's text (a plan, a tool's arguments, what a tool returned, a critique…) may carry what the
guardrail must stop: personal data found by a tool, a prompt injection planted in a fetched page. Each
is checked with ``GuardClient.check_input`` under the subject ``<question_id>/step/<index>``: ALLOW shows
it as is, REDACT shows the guardrail's redacted text, BLOCK replaces it by :data:`WITHHELD`. A tool
result that is blocked is withheld from the agents too (the graph node drops its text and passages).
Pure: the guardrail is reached through the :class:`GuardClient` Protocol.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal, assert_never

from isthmus_agent_orchestrator.agents.types import Step, StepKind
from isthmus_core.ports.guard import Action
from isthmus_core.ports.guard_client import GuardClient

WITHHELD: Final = "[withheld by the guardrail]"


@dataclasses.dataclass(frozen=True, slots=True)
class GuardedStep:
    step: Step
    #: the guardrail blocked its text (``step.text`` is :data:`WITHHELD`)
    blocked: bool = False


class StepGuard:
    """The guard of one answer's steps: numbers them (``index`` from ``first_index``) and checks each."""

    def __init__(self, guard: GuardClient | None, tenant_id: str, question_id: str, first_index: int = 0):
        self._guard = guard
        self._tenant = tenant_id
        self._question_id = question_id
        self.next_index = first_index

    async def check(self, step: Step) -> GuardedStep:
        index = self.next_index
        self.next_index += 1
        step = dataclasses.replace(step, index=index)
        if self._guard is None or not (step.text or step.arguments_json):
            return GuardedStep(step)
        subject = f"{self._question_id}/step/{index}"
        text = step.text if not step.arguments_json else f"{step.text}\n{step.arguments_json}"
        # what a tool returned came from documents or the web: checked as documents are
        origin: Literal["user", "document"] = "document" if step.kind is StepKind.TOOL_RESULT else "user"
        verdict = await self._guard.check_input(self._tenant, text, subject, origin)
        match verdict.action:
            case Action.ALLOW | Action.FLAG:
                return GuardedStep(step)
            case Action.REDACT:
                if step.sub_questions:  # a plan: one sub-question a line, as redacted
                    subs = tuple(line for line in verdict.text.split("\n") if line.strip())
                    return GuardedStep(dataclasses.replace(step, text=verdict.text, sub_questions=subs))
                if not step.arguments_json:
                    return GuardedStep(dataclasses.replace(step, text=verdict.text))
                # the arguments (one line of JSON) were checked after the text: both as redacted
                shown, _, args = verdict.text.rpartition("\n")
                return GuardedStep(dataclasses.replace(step, text=shown, arguments_json=args))
            case Action.BLOCK:
                withheld = dataclasses.replace(step, text=WITHHELD, arguments_json="", sub_questions=())
                return GuardedStep(withheld, blocked=True)
            case _:
                assert_never(verdict.action)
