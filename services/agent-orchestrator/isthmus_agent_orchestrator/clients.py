"""The orchestrator's clients of other services, over gRPC: the guardrail and retrieval.

:class:`GrpcGuardClient` implements :class:`isthmus_core.ports.guard_client.GuardClient` (conformance:
:mod:`isthmus_core.testing.guard_client_conformance`, run in ``tests/e2e`` against a real guardrail);
:class:`GrpcSearcher` implements the pipeline's :class:`~isthmus_agent_orchestrator.pipeline.Searcher`.
A failed call raises the matching :mod:`isthmus_core.errors` error (``InvalidArgument``, ``NotFound``,
``Unavailable``...), so the pipeline never sees a gRPC type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import grpc

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_agent_orchestrator.parents import answer_context, distinct_contexts
from isthmus_core.errors import DeadlineExceeded, FailedPrecondition, IsthmusError, Unavailable
from isthmus_core.grpc.deadline import remaining
from isthmus_core.grpc.status import from_rpc_error
from isthmus_core.ports.generator import (
    CONTINUES_SENTENCE_KEY,
    DOCUMENT_VERSION_KEY,
    SOURCE_NAME_KEY,
    TITLE_KEY,
    URI_KEY,
    AnswerSentence,
    CitedSpan,
    Context,
)
from isthmus_core.ports.guard import Action, Finding, Verdict
from isthmus_core.ports.guard_client import OutputCheck

#: initial-metadata key the guardrail sends once it has accepted a CheckOutputStream header
OUTPUT_CHECK_OPEN = "isthmus-output-check"

_ACTION_FROM_PB = {
    common_pb2.GUARD_ACTION_ALLOW: Action.ALLOW,
    common_pb2.GUARD_ACTION_REDACT: Action.REDACT,
    common_pb2.GUARD_ACTION_BLOCK: Action.BLOCK,
}


def verdict_from_pb(v: common_pb2.Verdict) -> Verdict:
    """An unknown (or unset) action is read as BLOCK: the check fails closed."""
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
        policy_version=v.policy_version,
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


def context_from_hit(h: retrieval_pb2.Hit, model_id: str = "") -> Context:
    """A search hit as a generator context; the source's name, title and URI come from chunk metadata,
    and so does the document version; ``model_id``: the embedding model of the search."""
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
        end=h.end,
        document_version=_version(h.metadata.get(DOCUMENT_VERSION_KEY, "")),
        embedding_model=model_id,
    )


def _version(raw: str) -> int:
    """A chunk's document version from its metadata; 0 (unknown) when absent or not a number."""
    return int(raw) if raw.isdigit() else 0


def context_pb(c: Context) -> common_pb2.Context:
    return common_pb2.Context(
        chunk_id=c.chunk_id, document_id=c.document_id, text=c.text, start=c.start, score=c.score
    )


class GrpcOutputCheck:
    """One ``CheckOutputStream`` call: the header went out when it was opened; one sentence out, one
    verdict back per :meth:`check`."""

    def __init__(self, call: Any, timeout_s: float) -> None:
        self._call = call
        self._timeout = timeout_s
        self._closed = False

    async def check(self, sentence: AnswerSentence) -> Verdict:
        if self._closed:
            raise FailedPrecondition("this output check is closed")
        try:
            await self._call.write(guardrail_pb2.CheckOutputStreamRequest(sentence=sentence_pb(sentence)))
            reply = await asyncio.wait_for(self._call.read(), self._timeout)
        except grpc.aio.AioRpcError as exc:
            self._closed = True
            raise from_rpc_error(exc) from exc
        except asyncio.InvalidStateError as exc:  # the guardrail ended the call (e.g. refused the header)
            self._closed = True
            raise await self._status_error() from exc
        except TimeoutError as exc:
            await self.aclose()
            raise DeadlineExceeded(f"the guardrail gave no verdict within {self._timeout:g} s") from exc
        if reply is grpc.aio.EOF:
            self._closed = True
            raise Unavailable("the guardrail ended the output check before answering")
        return verdict_from_pb(reply)

    async def _status_error(self) -> IsthmusError:
        code = await self._call.code()
        details = await self._call.details()
        if code == grpc.StatusCode.OK:
            return Unavailable("the guardrail ended the output check before answering")
        trailers = await self._call.trailing_metadata()  # with a RetryInfo, if the guardrail shed load
        return from_rpc_error(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._call.done_writing()
            while await asyncio.wait_for(self._call.read(), self._timeout) is not grpc.aio.EOF:
                pass  # no verdict is expected after the last sentence; never block on one
        except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError):
            self._call.cancel()


class GrpcGuardClient:
    """:class:`~isthmus_core.ports.guard_client.GuardClient` over ``GuardrailService``.

    ``timeout_s`` bounds each unary call and each verdict of an output check; ``session_timeout_s`` bounds
    a whole output check (an answer's generation, sentence by sentence).
    """

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 30.0, session_timeout_s: float = 600.0):
        self._stub = guardrail_pb2_grpc.GuardrailServiceStub(channel)
        self._timeout = timeout_s
        self._session_timeout = session_timeout_s

    async def check_input(
        self, tenant_id: str, text: str, subject_id: str, origin: Literal["user", "document"] = "user"
    ) -> Verdict:
        try:
            v = await self._stub.CheckInput(
                guardrail_pb2.CheckInputRequest(
                    tenant_id=tenant_id, text=text, subject_id=subject_id, origin=origin
                ),
                timeout=remaining(self._timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return verdict_from_pb(v)

    async def open_output_check(
        self, tenant_id: str, subject_id: str, contexts: Sequence[Context]
    ) -> OutputCheck:
        call = self._stub.CheckOutputStream(timeout=remaining(self._session_timeout))
        header = guardrail_pb2.CheckOutputHeader(
            tenant_id=tenant_id, subject_id=subject_id, contexts=[context_pb(c) for c in contexts]
        )
        session = GrpcOutputCheck(call, self._timeout)
        try:
            await call.write(guardrail_pb2.CheckOutputStreamRequest(header=header))
            # the guardrail answers the header with initial metadata once it has accepted it, or ends the
            # call with the reason (INVALID_ARGUMENT, NOT_FOUND...): a refused session is never handed out
            metadata = await asyncio.wait_for(call.initial_metadata(), self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        except TimeoutError as exc:
            call.cancel()
            raise DeadlineExceeded(
                f"the guardrail did not open the output check within {self._timeout:g} s"
            ) from exc
        if metadata is None or metadata.get(OUTPUT_CHECK_OPEN) is None:
            raise await session._status_error()
        return session


class GrpcSearcher:
    """The pipeline's :class:`~isthmus_agent_orchestrator.pipeline.Searcher` over ``RetrievalService``."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = 30.0) -> None:
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        self._timeout = timeout_s

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        # the scope is always sent: retrieval reads a missing one as "no principals" too, but an
        # explicit scope does not depend on that
        access = common_pb2.AccessScope(principals=list(principals))
        try:
            resp = await self._stub.Search(
                retrieval_pb2.SearchRequest(tenant_id=tenant_id, query=query, top_k=top_k, access=access),
                timeout=remaining(self._timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return contexts_of_hits(resp.hits, resp.model_id)


def contexts_of_hits(hits: Sequence[retrieval_pb2.Hit], model_id: str = "") -> list[Context]:
    """Search hits as the contexts to answer from, best first: a chunk of ``parent-child`` chunking as
    its parent section, each parent once (:mod:`isthmus_agent_orchestrator.parents`)."""
    return distinct_contexts(answer_context(context_from_hit(h, model_id), h.metadata) for h in hits)
