"""GuardClient port: how a service asks the guardrail to check a question and an answer.

The agent orchestrator depends on this Protocol only; its gRPC implementation (over
``GuardrailService``) lives in the orchestrator's ``clients.py``. An answer is checked in one
*output-check session*: the passages it may cite are given once, when the session is opened, then each
sentence is checked as it is generated and gets its own :class:`~isthmus_core.ports.guard.Verdict`.

:func:`combine_output_verdicts` folds a session's per-sentence verdicts into the answer's verdict: the
strongest action (BLOCK > REDACT > ALLOW) and every finding, as one check over the whole answer would.
Failures are :mod:`isthmus_core.errors` (``InvalidArgument`` for a bad request, ``Unavailable`` when the
guardrail cannot be reached...). Conformance: :mod:`isthmus_core.testing.guard_client_conformance`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, Protocol, assert_never, runtime_checkable

from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import Action, Finding, Verdict


@runtime_checkable
class OutputCheck(Protocol):
    """One answer's output check, open until :meth:`aclose`."""

    async def check(self, sentence: AnswerSentence) -> Verdict:
        """The verdict on the next sentence of the answer (grounded in the session's contexts?
        PII to redact?). ``text`` is the sentence to show: redacted for REDACT, empty for BLOCK."""

    async def aclose(self) -> None:
        """End the session; idempotent. ``check`` after ``aclose`` raises ``FailedPrecondition``."""


@runtime_checkable
class GuardClient(Protocol):
    async def check_input(
        self, tenant_id: str, text: str, subject_id: str, origin: Literal["user", "document"] = "user"
    ) -> Verdict:
        """The verdict on a question; ``subject_id`` (e.g. the question id) names it in verdict events.
        ``origin`` "document": the text came from a document or a tool (a fetched page, search results),
        checked for injection at the policy's stricter ingest operating point."""

    async def open_output_check(
        self, tenant_id: str, subject_id: str, contexts: Sequence[Context]
    ) -> OutputCheck:
        """Open the output check of one answer whose sentences may cite ``contexts``."""


def action_strength(action: Action) -> int:
    """ALLOW < FLAG < REDACT < BLOCK. Exhaustive: a new action must say where it ranks."""
    match action:
        case Action.ALLOW:
            return 0
        case Action.FLAG:
            return 1
        case Action.REDACT:
            return 2
        case Action.BLOCK:
            return 3
        case _:
            assert_never(action)


def combine_output_verdicts(checked: Sequence[tuple[AnswerSentence, Verdict]], text: str) -> Verdict:
    """The answer's output verdict from its checked sentences (in order) and their verdicts.

    Action: the strongest of the sentences' (ALLOW when nothing was checked). Findings: all of them, their
    offsets moved to the checked sentences joined by single spaces (what one ``CheckOutput`` over the
    whole answer reports). ``text``: the answer as shown (redacted sentences redacted); empty for BLOCK.
    """
    action = max((v.action for _, v in checked), key=action_strength, default=Action.ALLOW)
    findings: list[Finding] = []
    offset = 0
    for sentence, verdict in checked:
        for f in verdict.findings:
            findings.append(
                dataclasses.replace(
                    f,
                    start=None if f.start is None else f.start + offset,
                    end=None if f.end is None else f.end + offset,
                )
            )
        offset += len(sentence.text) + 1
    policy_version = next((v.policy_version for _, v in checked if v.policy_version), "")
    return Verdict(action, tuple(findings), "" if action is Action.BLOCK else text, policy_version)
