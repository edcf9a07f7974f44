"""Conformance suite for the GuardClient port (:mod:`isthmus_core.ports.guard_client`).

Usage, in an adapter's tests::

    class TestMyGuardClient(GuardClientConformance):
        @pytest.fixture
        async def guard_client(self) -> AsyncIterator[GuardClient]:   # any scope
            yield MyGuardClient(...)   # the default policy; detects e-mail addresses

The suite pins what the orchestrator relies on: a question's verdict (benign: ALLOW unchanged; injection:
BLOCK, no text; e-mail: REDACT, the placeholder names the entity), and an output-check session that
answers each sentence with its own verdict, in order, against the contexts it was opened with (grounded:
ALLOW with the sentence as text; e-mail: REDACT with the redacted sentence; unsupported or unknown
citation: BLOCK with no text), independent of other open sessions, closed idempotently, refusing checks
once closed, and refusing a missing tenant with ``InvalidArgument``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from isthmus_core.errors import FailedPrecondition, InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Action, Verdict
from isthmus_core.ports.guard_client import GuardClient, OutputCheck
from isthmus_core.testing.guard_conformance import (
    CONTEXTS,
    EMAIL,
    GROUNDED,
    INJECTIONS,
    UNSUPPORTED,
    extracted,
)

TENANT = "conformance"
EMAIL_CONTEXT = Context(
    chunk_id="chunk-c",
    document_id="doc-3",
    text=f"Questions about refunds go to {EMAIL} during office hours.",
    start=40,
)
WITH_EMAIL = extracted(EMAIL_CONTEXT, EMAIL_CONTEXT.text)
ALL_CONTEXTS = (*CONTEXTS, EMAIL_CONTEXT)
UNKNOWN_CITATION = AnswerSentence(
    text=GROUNDED[0].text,
    citations=(CitedSpan(chunk_id="chunk-missing", document_id="doc-1", start=0, end=10),),
)


def _codes(verdict: Verdict) -> list[str]:
    return [f.code for f in verdict.findings]


class GuardClientConformance:
    """Mixin: subclasses provide a ``guard_client`` fixture (a GuardClient, default policy, PII on)."""

    async def _session(self, client: Any, contexts: tuple[Context, ...] = ALL_CONTEXTS) -> OutputCheck:
        return await client.open_output_check(TENANT, "question-1", contexts)  # type: ignore[no-any-return]

    # ---- protocol

    async def test_implements_the_port(self, guard_client: Any) -> None:
        assert isinstance(guard_client, GuardClient)
        session = await self._session(guard_client)
        try:
            assert isinstance(session, OutputCheck)
        finally:
            await session.aclose()

    # ---- input

    async def test_benign_question_is_allowed_unchanged(self, guard_client: Any) -> None:
        question = "How many vacation days do new employees get?"
        verdict = await guard_client.check_input(TENANT, question, "q-benign")
        assert verdict.action is Action.ALLOW, verdict.findings
        assert verdict.text == question

    async def test_injection_is_blocked_without_text(self, guard_client: Any) -> None:
        verdict = await guard_client.check_input(TENANT, INJECTIONS[0], "q-injection")
        assert verdict.action is Action.BLOCK
        assert any(c.startswith("prompt_injection.") for c in _codes(verdict)), verdict.findings
        assert verdict.text == ""

    async def test_email_in_question_is_redacted(self, guard_client: Any) -> None:
        question = f"Please forward the invoice to {EMAIL} before the end of the month."
        verdict = await guard_client.check_input(TENANT, question, "q-email")
        assert verdict.action is Action.REDACT
        assert EMAIL not in verdict.text and "EMAIL_ADDRESS" in verdict.text
        assert "pii.EMAIL_ADDRESS" in _codes(verdict)

    async def test_missing_tenant_is_invalid_argument(self, guard_client: Any) -> None:
        with pytest.raises(InvalidArgument):
            await guard_client.check_input("", "How are you?", "q")
        with pytest.raises(InvalidArgument):  # refused when opened, or at the latest on the first check
            session = await guard_client.open_output_check("", "q", CONTEXTS)
            try:
                await session.check(GROUNDED[0])
            finally:
                await session.aclose()

    # ---- output session

    async def test_each_sentence_gets_its_own_verdict_in_order(self, guard_client: Any) -> None:
        sentences = [GROUNDED[0], WITH_EMAIL, GROUNDED[1], UNSUPPORTED[0]]
        session = await self._session(guard_client)
        try:
            verdicts = [await session.check(s) for s in sentences]
        finally:
            await session.aclose()
        assert [v.action for v in verdicts] == [Action.ALLOW, Action.REDACT, Action.ALLOW, Action.BLOCK]
        assert verdicts[0].text == GROUNDED[0].text and verdicts[2].text == GROUNDED[1].text
        assert verdicts[3].text == ""

    async def test_email_in_a_sentence_is_redacted(self, guard_client: Any) -> None:
        session = await self._session(guard_client)
        try:
            verdict = await session.check(WITH_EMAIL)
        finally:
            await session.aclose()
        assert verdict.action is Action.REDACT
        assert EMAIL not in verdict.text and "EMAIL_ADDRESS" in verdict.text
        assert verdict.text.startswith("Questions about refunds go to ")
        assert "pii.EMAIL_ADDRESS" in _codes(verdict)
        [email] = [f for f in verdict.findings if f.code == "pii.EMAIL_ADDRESS"]
        assert (email.start, email.end) == (
            WITH_EMAIL.text.index(EMAIL),
            WITH_EMAIL.text.index(EMAIL) + len(EMAIL),
        )

    @pytest.mark.parametrize("sentence", [UNSUPPORTED[0], UNKNOWN_CITATION], ids=["unsupported", "unknown"])
    async def test_ungrounded_sentence_is_blocked(self, guard_client: Any, sentence: AnswerSentence) -> None:
        session = await self._session(guard_client)
        try:
            verdict = await session.check(sentence)
        finally:
            await session.aclose()
        assert verdict.action is Action.BLOCK
        assert verdict.text == ""
        assert any(c.startswith("grounding.") for c in _codes(verdict)), verdict.findings

    async def test_sentences_are_checked_against_the_sessions_contexts(self, guard_client: Any) -> None:
        with_all = await self._session(guard_client)
        without_b = await self._session(guard_client, (CONTEXTS[0],))
        try:
            allowed, blocked = await asyncio.gather(with_all.check(GROUNDED[1]), without_b.check(GROUNDED[1]))
            again = await with_all.check(GROUNDED[0])
        finally:
            await asyncio.gather(with_all.aclose(), without_b.aclose())
        assert allowed.action is Action.ALLOW
        assert blocked.action is Action.BLOCK  # its citation is not among this session's contexts
        assert again.action is Action.ALLOW

    async def test_closed_session_refuses_checks_and_closes_twice(self, guard_client: Any) -> None:
        session = await self._session(guard_client)
        assert (await session.check(GROUNDED[0])).action is Action.ALLOW
        await session.aclose()
        await session.aclose()
        with pytest.raises(FailedPrecondition):
            await session.check(GROUNDED[0])

    async def test_a_session_closed_unused_is_fine(self, guard_client: Any) -> None:
        session = await self._session(guard_client)
        await session.aclose()
        verdict = await guard_client.check_input(
            TENANT, "How many vacation days do new employees get?", "q-after"
        )
        assert verdict.action is Action.ALLOW
