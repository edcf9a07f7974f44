"""gRPC edge of the agent orchestrator: the servicer and the proto translation of its answers.

The clients of the guardrail and retrieval are in :mod:`isthmus_agent_orchestrator.clients`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as pb_grpc
from isthmus.common.v1 import common_pb2
from isthmus_agent_orchestrator.clients import sentence_pb
from isthmus_agent_orchestrator.pipeline import (
    Answer,
    FinalEvent,
    Orchestrator,
    SentenceEvent,
    Stage,
    StageEvent,
)
from isthmus_core.contracts.ids import parse_principals
from isthmus_core.ports.guard import Action, Verdict
from isthmus_core.telemetry.metrics import ASK_STAGE_SECONDS

_STAGE = {
    Stage.INPUT_GUARD: pb.STAGE_INPUT_GUARD,
    Stage.RETRIEVAL: pb.STAGE_RETRIEVAL,
    Stage.GENERATION: pb.STAGE_GENERATION,
    Stage.OUTPUT_GUARD: pb.STAGE_OUTPUT_GUARD,
    Stage.DONE: pb.STAGE_DONE,
}
_ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
}


def verdict_pb(v: Verdict | None) -> common_pb2.Verdict | None:
    if v is None:
        return None
    return common_pb2.Verdict(
        action=_ACTION_TO_PB[v.action],
        text=v.text,
        findings=[
            common_pb2.Finding(code=f.code, message=f.message, start=f.start, end=f.end, score=f.score)
            for f in v.findings
        ],
    )


def observe_stages(a: Answer) -> None:
    for stage, ms in a.stage_ms.items():
        ASK_STAGE_SECONDS.labels(stage.value).observe(ms / 1000)


def answer_pb(a: Answer) -> pb.AskResponse:
    return pb.AskResponse(
        question_id=a.question_id,
        answer=a.text,
        sentences=[sentence_pb(s) for s in a.sentences],
        citations=[common_pb2.Citation(**c.model_dump()) for c in a.citations],
        input_verdict=verdict_pb(a.input_verdict),
        output_verdict=verdict_pb(a.output_verdict),
        blocked=a.blocked,
        generator=a.generator,
        latency_ms=a.latency_ms,
    )


class AgentOrchestratorServicer(pb_grpc.AgentOrchestratorServiceServicer):
    def __init__(self, core: Orchestrator) -> None:
        self._core = core

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> pb.AskResponse:
        answer = await self._core.ask(
            request.tenant_id, request.question, request.top_k, _principals(request)
        )
        observe_stages(answer)
        return answer_pb(answer)

    async def AskStream(
        self, request: pb.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AskEvent]:
        async for ev in self._core.run(
            request.tenant_id, request.question, request.top_k, _principals(request)
        ):
            if isinstance(ev, StageEvent):
                yield pb.AskEvent(stage=pb.StageEvent(stage=_STAGE[ev.stage], detail=ev.detail))
            elif isinstance(ev, SentenceEvent):
                yield pb.AskEvent(sentence=sentence_pb(ev.sentence))
            elif isinstance(ev, FinalEvent):
                observe_stages(ev.answer)
                yield pb.AskEvent(final=answer_pb(ev.answer))


def _principals(request: pb.AskRequest) -> tuple[str, ...]:
    """The caller's principals; no ``access`` scope is no principals (documents without an ACL only)."""
    return parse_principals(list(request.access.principals))
