"""The offline judge: :class:`GrpcJudge` implements :class:`isthmus_core.ports.judge.Judge` over the
guardrail's ``Entail`` and ``ScoreRelevance`` (its bundled grounding model and ms-marco cross-encoder).

A call of more than :data:`~isthmus_core.ports.judge.MAX_JUDGE_ITEMS` pairs or passages is sent in
batches of at most that many, in order; an empty call answers ``[]`` without a request. A text past the
limits is refused before any request (``too_long``). Every failure is a
:class:`~isthmus_core.ports.judge.JudgeFailed` whose ``failure`` code evaluation counts:

========================  ==============
gRPC status               failure code
========================  ==============
DEADLINE_EXCEEDED         ``timeout``
UNAVAILABLE               ``unavailable``
INVALID_ARGUMENT          ``invalid``
any other                 ``error``
========================  ==============

(the detail is the status's details: the server's reason). An answer with another number of results than
items asked is ``error`` too. ``timeout_s`` bounds each request (and never outlives the gRPC call being
served, if any: :func:`isthmus_core.grpc.deadline.remaining`).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus_core.grpc.deadline import remaining
from isthmus_core.ports.judge import (
    MAX_JUDGE_ITEMS,
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
    JudgeFailed,
)

DEFAULT_TIMEOUT_S = 60.0

_FAILURES = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
}


def judge_failure(exc: grpc.aio.AioRpcError) -> JudgeFailed:
    """The :class:`JudgeFailed` of a failed call (code per the table above, detail = the server's reason)."""
    code = exc.code()
    detail = exc.details() or code.name
    return JudgeFailed(_FAILURES.get(code, "error"), f"{code.name}: {detail}")


def _too_long(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise JudgeFailed("too_long", f"{what} is {len(text)} characters; the judge takes at most {limit}")


class GrpcJudge:
    """:class:`~isthmus_core.ports.judge.Judge` over ``GuardrailService.Entail`` / ``ScoreRelevance``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        batch_size: int = MAX_JUDGE_ITEMS,
    ) -> None:
        self._stub = guardrail_pb2_grpc.GuardrailServiceStub(channel)
        self._timeout = timeout_s
        self._batch = min(max(1, batch_size), MAX_JUDGE_ITEMS)
        self._entail_model = ""
        self._relevance_model = ""

    @property
    def name(self) -> str:
        """``offline:<entailment model>+<relevance model>`` as the guardrail named them in its answers
        (``offline:guardrail`` before the first answer)."""
        models = [m for m in (self._entail_model, self._relevance_model) if m]
        return "offline:" + ("+".join(models) if models else "guardrail")

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        for i, (premise, hypothesis) in enumerate(pairs):
            _too_long(f"pairs[{i}].premise", premise, MAX_JUDGE_TEXT_CHARS)
            _too_long(f"pairs[{i}].hypothesis", hypothesis, MAX_JUDGE_TEXT_CHARS)
        results: list[Entailment] = []
        for at in range(0, len(pairs), self._batch):
            part = pairs[at : at + self._batch]
            request = guardrail_pb2.EntailRequest(
                tenant_id=tenant_id,
                pairs=[guardrail_pb2.EntailPair(premise=p, hypothesis=h) for p, h in part],
            )
            try:
                resp = await self._stub.Entail(request, timeout=remaining(self._timeout))
            except grpc.aio.AioRpcError as exc:
                raise judge_failure(exc) from exc
            if len(resp.results) != len(part):
                raise JudgeFailed(
                    "error", f"the guardrail answered {len(resp.results)} results for {len(part)} pairs"
                )
            self._entail_model = resp.model or self._entail_model
            results += [Entailment(r.entailment, r.neutral, r.contradiction) for r in resp.results]
        return results

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        _too_long("query", query, MAX_JUDGE_QUERY_CHARS)
        for i, passage in enumerate(passages):
            _too_long(f"passages[{i}]", passage, MAX_JUDGE_TEXT_CHARS)
        scores: list[float] = []
        for at in range(0, len(passages), self._batch):
            part = passages[at : at + self._batch]
            request = guardrail_pb2.ScoreRelevanceRequest(tenant_id=tenant_id, query=query, passages=part)
            try:
                resp = await self._stub.ScoreRelevance(request, timeout=remaining(self._timeout))
            except grpc.aio.AioRpcError as exc:
                raise judge_failure(exc) from exc
            if len(resp.scores) != len(part):
                raise JudgeFailed(
                    "error", f"the guardrail answered {len(resp.scores)} scores for {len(part)} passages"
                )
            self._relevance_model = resp.model or self._relevance_model
            scores += list(resp.scores)
        return scores
