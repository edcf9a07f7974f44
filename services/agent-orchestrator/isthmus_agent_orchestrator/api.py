"""gRPC edge of the agent orchestrator, and the gRPC clients it uses for the other services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as pb_grpc
from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_agent_orchestrator.pipeline import (
    Answer,
    FinalEvent,
    Orchestrator,
    SentenceEvent,
    Stage,
    StageEvent,
)
from isthmus_core.ports.generator import (
    CONTINUES_SENTENCE_KEY,
    SOURCE_NAME_KEY,
    TITLE_KEY,
    URI_KEY,
    AnswerSentence,
    CitedSpan,
    Context,
)
from isthmus_core.ports.guard import Action, Finding, Verdict

_STAGE = {
    Stage.INPUT_GUARD: pb.STAGE_INPUT_GUARD,
    Stage.RETRIEVAL: pb.STAGE_RETRIEVAL,
    Stage.GENERATION: pb.STAGE_GENERATION,
    Stage.OUTPUT_GUARD: pb.STAGE_OUTPUT_GUARD,
    Stage.DONE: pb.STAGE_DONE,
}
_ACTION_FROM_PB = {
    common_pb2.GUARD_ACTION_ALLOW: Action.ALLOW,
    common_pb2.GUARD_ACTION_REDACT: Action.REDACT,
    common_pb2.GUARD_ACTION_BLOCK: Action.BLOCK,
}
_ACTION_TO_PB = {v: k for k, v in _ACTION_FROM_PB.items()}


def verdict_from_pb(v: common_pb2.Verdict) -> Verdict:
    return Verdict(
        action=_ACTION_FROM_PB.get(v.action, Action.BLOCK),
        findings=tuple(
            Finding(
                f.code,
                f.message,
                f.start if f.HasField("start") else None,
                f.end if f.HasField("end") else None,
                f.score,
            )
            for f in v.findings
        ),
        text=v.text,
    )


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


def citation_pb(c: CitedSpan) -> common_pb2.Citation:
    return common_pb2.Citation(
        chunk_id=c.chunk_id,
        document_id=c.document_id,
        start=c.start,
        end=c.end,
        source_name=c.source_name,
        title=c.title,
        uri=c.uri,
    )


def sentence_pb(s: AnswerSentence) -> common_pb2.AnswerSentence:
    return common_pb2.AnswerSentence(text=s.text, citations=[citation_pb(c) for c in s.citations])


def context_from_hit(h: retrieval_pb2.Hit) -> Context:
    """A search hit as a generator context; the source's name, title and URI come from chunk metadata."""
    return Context(
        h.context.chunk_id,
        h.context.document_id,
        h.context.text,
        h.context.start,
        h.context.score,
        source_name=h.metadata.get(SOURCE_NAME_KEY) or h.metadata.get("filename", ""),
        title=h.metadata.get(TITLE_KEY, ""),
        uri=h.metadata.get(URI_KEY, ""),
        continues_sentence=h.metadata.get(CONTINUES_SENTENCE_KEY) == "true",
    )


def context_pb(c: Context) -> common_pb2.Context:
    return common_pb2.Context(
        chunk_id=c.chunk_id, document_id=c.document_id, text=c.text, start=c.start, score=c.score
    )


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


class Clients:
    """The orchestrator's view of guardrail and retrieval: plain async functions over gRPC."""

    def __init__(self, guardrail: grpc.aio.Channel, retrieval: grpc.aio.Channel, timeout_s: float = 30.0):
        self._guard = guardrail_pb2_grpc.GuardrailServiceStub(guardrail)
        self._retrieval = retrieval_pb2_grpc.RetrievalServiceStub(retrieval)
        self._timeout = timeout_s

    async def check_input(self, tenant: str, text: str, subject: str) -> Verdict:
        v = await self._guard.CheckInput(
            guardrail_pb2.CheckInputRequest(tenant_id=tenant, text=text, subject_id=subject),
            timeout=self._timeout,
        )
        return verdict_from_pb(v)

    async def check_output(
        self, tenant: str, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], subject: str
    ) -> Verdict:
        v = await self._guard.CheckOutput(
            guardrail_pb2.CheckOutputRequest(
                tenant_id=tenant,
                subject_id=subject,
                sentences=[sentence_pb(s) for s in sentences],
                contexts=[context_pb(c) for c in contexts],
            ),
            timeout=self._timeout,
        )
        return verdict_from_pb(v)

    async def search(
        self, tenant: str, query: str, top_k: int, principals: Sequence[str] | None = None
    ) -> list[Context]:
        access = common_pb2.AccessScope(principals=list(principals)) if principals is not None else None
        resp = await self._retrieval.Search(
            retrieval_pb2.SearchRequest(tenant_id=tenant, query=query, top_k=top_k, access=access),
            timeout=self._timeout,
        )
        return [context_from_hit(h) for h in resp.hits]


class AgentOrchestratorServicer(pb_grpc.AgentOrchestratorServiceServicer):
    def __init__(self, core: Orchestrator) -> None:
        self._core = core

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> pb.AskResponse:
        return answer_pb(
            await self._core.ask(request.tenant_id, request.question, request.top_k, _principals(request))
        )

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
                yield pb.AskEvent(final=answer_pb(ev.answer))


def _principals(request: pb.AskRequest) -> list[str] | None:
    return list(request.access.principals) if request.HasField("access") else None
