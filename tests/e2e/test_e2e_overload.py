"""Overload on the real `all` target: past a family's capacity, `Ask` is refused at once with
RESOURCE_EXHAUSTED and a RetryInfo (the CLI says when to retry), admitted asks still answer, and a
refusal by a service `Ask` calls (the guardrail) reaches the asker with its retry hint.

To hold a family's only slot deterministically, the tests put `WatchDocuments` in that family (settings
only): a watch holds its slot until it ends, and it ends, server side, when the watched document is
indexed — so its slot is free before the end of the stream reaches the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.grpc.status import retry_after_s
from isthmus_core.testing.client import run_cli

from .conftest import platform, upload, wait_indexed

pytestmark = pytest.mark.slow

ASK = "AgentOrchestratorService/Ask"
CHECK_INPUT = "GuardrailService/CheckInput"
GLIDERS = (
    b"A glider is a heavier-than-air aircraft that flies without an engine.\n"
    b"Gliders stay aloft by soaring in rising air such as thermals and ridge lift.\n"
)
LATER = b"The hangar opens at eight in the morning and closes at sunset.\n"
QUESTION = ao.AskRequest(tenant_id="club", question="How do gliders stay aloft?")


def _one_slot(family: str) -> dict[str, Any]:
    """Common settings: ``family`` takes one call at a time, no queue; watches count in it."""
    return {
        "admission_families": {"IngestionService/WatchDocuments": family},
        "admission_overrides": {family: {"max_concurrent": 1, "max_queue": 0}},
    }


def _retry_delay_s(exc: grpc.aio.AioRpcError) -> float:
    delay = retry_after_s(exc)  # the google.rpc.Status in the trailers, read with grpcio-status
    assert delay is not None, f"no RetryInfo with {exc.code()}: {exc.details()}"
    return delay


async def _hold(ch: grpc.aio.Channel) -> AsyncIterator[ingestion_pb2.DocumentEvent]:
    """A watch of "glider" and "later" that ends once "later" is indexed; returned once it is admitted
    (its first event, glider's current state, has arrived)."""
    call = ingestion_pb2_grpc.IngestionServiceStub(ch).WatchDocuments(
        ingestion_pb2.WatchDocumentsRequest(
            tenant_id="club", document_ids=["glider", "later"], until_terminal=True
        ),
        timeout=120,
    )
    events: AsyncIterator[ingestion_pb2.DocumentEvent] = call.__aiter__()
    opened = await anext(events)
    assert opened.initial and opened.document.document_id == "glider"
    return events


async def _release(ch: grpc.aio.Channel, events: AsyncIterator[ingestion_pb2.DocumentEvent]) -> None:
    await upload(ch, "club", "later.txt", LATER, document_id="later")
    async for _ in events:  # to its end: the watch handler has returned, its slot is free
        pass


async def _tenant_with_a_document(ch: grpc.aio.Channel) -> None:
    await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
        retrieval_pb2.CreateTenantRequest(tenant_id="club")
    )
    await upload(ch, "club", "glider.txt", GLIDERS, document_id="glider")
    await wait_indexed(ch, "club", ["glider"])


async def test_past_capacity_ask_is_refused_at_once_with_a_retry_hint_and_admitted_asks_answer(
    tmp_path: Path,
) -> None:
    async with (
        platform(tmp_path, common=_one_slot(ASK)) as rt,
        grpc.aio.insecure_channel(rt.address) as ch,
    ):
        await _tenant_with_a_document(ch)
        agent = ao_grpc.AgentOrchestratorServiceStub(ch)
        events = await _hold(ch)  # the Ask family's only slot is taken

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent.Ask(QUESTION, timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"{ASK} is over capacity: 1 in flight, 0 queued" in (info.value.details() or "")
        assert _retry_delay_s(info.value) > 0

        with pytest.raises(grpc.aio.AioRpcError) as info:  # AskStream shares Ask's family
            async for _ in agent.AskStream(QUESTION, timeout=60):
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _retry_delay_s(info.value) > 0

        code, _, err = await run_cli("ask", QUESTION.question, "--tenant", "club", endpoint=rt.address)
        assert code == 1
        assert "RESOURCE_EXHAUSTED" in err and "try again in" in err, err

        await _release(ch, events)
        answer = await agent.Ask(QUESTION, timeout=60)
        assert "thermals" in answer.answer and answer.citations

        # a burst: the first ask in is answered; each other one is answered or refused with a hint
        outcomes = await asyncio.gather(
            *(agent.Ask(QUESTION, timeout=60) for _ in range(4)), return_exceptions=True
        )
        answered = [o for o in outcomes if isinstance(o, ao.AskResponse)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert answered and len(answered) + len(refused) == len(outcomes), outcomes
        assert all("thermals" in a.answer for a in answered)
        for r in refused:
            assert r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_delay_s(r) > 0, r


async def test_a_refusal_by_the_guardrail_reaches_the_asker_with_its_retry_hint(tmp_path: Path) -> None:
    async with (
        platform(tmp_path, common=_one_slot(CHECK_INPUT)) as rt,
        grpc.aio.insecure_channel(rt.address) as ch,
    ):
        await _tenant_with_a_document(ch)
        agent = ao_grpc.AgentOrchestratorServiceStub(ch)
        events = await _hold(ch)  # the guardrail's CheckInput family is full; Ask's is not

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent.Ask(QUESTION, timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"{CHECK_INPUT} is over capacity" in (info.value.details() or "")
        assert _retry_delay_s(info.value) > 0

        await _release(ch, events)
        answer = await agent.Ask(QUESTION, timeout=60)
        assert "thermals" in answer.answer
