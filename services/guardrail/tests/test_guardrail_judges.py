"""The evaluation judges of the guardrail: ``Entail`` / ``ScoreRelevance`` (judging.py behind the servicer)
and the offline judge client :class:`~isthmus_core.clients.judge.GrpcJudge`.

The client passes the Judge conformance suite against the guardrail served over real gRPC with its real
bundled models (the grounding model and the ms-marco cross-encoder); the edge refuses what it cannot
judge with INVALID_ARGUMENT and the reason before any model runs; gRPC failures reach evaluation as
``JudgeFailed`` with their codes."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.clients.judge import GrpcJudge
from isthmus_core.contracts.events import GuardrailVerdict
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.judge import (
    MAX_JUDGE_ITEMS,
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
    JudgeFailed,
)
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.testing.infra import free_port_run
from isthmus_core.testing.judge_conformance import (
    ENTAILED,
    PREMISE,
    QUERY,
    RELEVANT,
    TENANT,
    JudgeConformance,
    JudgeOutageConformance,
)
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.entailment.model import Judgement
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.judging import Judges, Judging, check_pairs, check_relevance
from isthmus_guardrail.policies import PolicyStore

# ------------------------------------------------------------------------------------- pure: judging.py


class _Scorer:
    """A cross-encoder whose logit is the passage's length minus 10 (records its calls)."""

    model_id = "stub-ce@0"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query: str, passages: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        return np.array([len(p) - 10.0 for p in passages], dtype=np.float32)


class _Model:
    """An entailment model answering probabilities that sum to slightly more than 1 (float32 rounding)."""

    name = "stub-nli@3"

    def judge(self, hypothesis: str, premise: str) -> Judgement:
        return Judgement(0.5, 0.3, 0.2000001, "")


def test_limits_are_checked_with_the_item_and_the_limit_named() -> None:
    cases: list[tuple[Any, str]] = [
        (lambda: check_pairs([]), "pairs is empty"),
        (lambda: check_pairs([("p", "h")] * (MAX_JUDGE_ITEMS + 1)), f"the limit is {MAX_JUDGE_ITEMS}"),
        (lambda: check_pairs([("p", "h"), ("p", " \n")]), "pairs[1].hypothesis is blank"),
        (
            lambda: check_pairs([("p" * (MAX_JUDGE_TEXT_CHARS + 1), "h")]),
            f"pairs[0].premise is {MAX_JUDGE_TEXT_CHARS + 1} characters",
        ),
        (lambda: check_relevance("", ["x"]), "query is blank"),
        (lambda: check_relevance("q" * (MAX_JUDGE_QUERY_CHARS + 1), ["x"]), f"{MAX_JUDGE_QUERY_CHARS}"),
        (lambda: check_relevance("q", []), "passages is empty"),
        (lambda: check_relevance("q", ["x"] * (MAX_JUDGE_ITEMS + 1)), "passages; the limit"),
        (lambda: check_relevance("q", ["x", "p" * (MAX_JUDGE_TEXT_CHARS + 1)]), "passages[1] is"),
    ]
    for call, reason in cases:
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert reason in str(caught.value)
    check_pairs([("", "a claim with no premise")])  # nothing supports it, but it can be judged


def test_judging_normalises_probabilities_maps_logits_to_unit_range_and_names_its_models() -> None:
    scorer = _Scorer()
    judging = Judging(_Model(), scorer)
    [e] = judging.entail([("premise", "claim")])
    assert e.entailment + e.neutral + e.contradiction == pytest.approx(1.0, abs=1e-12)
    scores = judging.relevance("q", ["x" * 10, "y" * 2000, ""])
    assert scores[0] == pytest.approx(0.5) and scores[1] == pytest.approx(1.0) and 0 < scores[2] < 1e-4
    assert (judging.entailment_model, judging.relevance_model) == ("stub-nli@3", "stub-ce@0")
    with pytest.raises(InvalidArgument):
        judging.relevance("q", [])
    assert scorer.calls == 1  # refused before the model ran


# ------------------------------------------------------------------------------------------- the edge


@pytest.fixture(scope="module")
def real_judging() -> Iterator[Judging]:
    from isthmus_core.onnx_reranker import OnnxCrossEncoder
    from isthmus_guardrail.entailment import load_default

    cross_encoder = OnnxCrossEncoder(parallel_runs=1)
    yield Judging(load_default(cross_encoder), cross_encoder)
    cross_encoder.close()


async def _serve(tmp_path: Path, judging: Judges | None) -> AsyncIterator[grpc.aio.Channel]:
    async def publish(ev: GuardrailVerdict) -> None:
        raise AssertionError(f"the judges publish no verdicts, got {ev}")

    servicer = GuardrailServicer(
        Guard(pii=None),
        PolicyStore(tmp_path / "policies"),
        publish,
        2_000,
        InMemoryTenantDirectory([parse_tenant_id(TENANT)]),
        judging,
    )
    server = GrpcServer("127.0.0.1", 0)
    server.add(
        [partial(pb_grpc.add_GuardrailServiceServicer_to_server, servicer)],
        [pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
    )
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch
    await server.stop(grace=1.0)


@pytest.fixture
async def channel(tmp_path: Path, real_judging: Judging) -> AsyncIterator[grpc.aio.Channel]:
    async for ch in _serve(tmp_path, real_judging):
        yield ch


@pytest.mark.slow
class TestGrpcJudgeOnTheRealGuardrail(JudgeConformance, JudgeOutageConformance):
    @pytest.fixture
    def judge(self, channel: grpc.aio.Channel) -> GrpcJudge:
        return GrpcJudge(channel, timeout_s=60.0)

    @pytest.fixture
    async def unreachable_judge(self) -> AsyncIterator[GrpcJudge]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port_run(1)}") as ch:
            yield GrpcJudge(ch, timeout_s=30.0)


@pytest.mark.slow
async def test_the_rpcs_answer_probabilities_scores_and_the_models(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.GuardrailServiceStub(channel)
    entailed = await stub.Entail(
        pb.EntailRequest(tenant_id=TENANT, pairs=[pb.EntailPair(premise=PREMISE, hypothesis=ENTAILED)])
    )
    assert entailed.model == "grounding-lr@1"
    [r] = entailed.results
    assert r.entailment > 0.5 and r.entailment + r.neutral + r.contradiction == pytest.approx(1.0)
    scored = await stub.ScoreRelevance(
        pb.ScoreRelevanceRequest(tenant_id=TENANT, query=QUERY, passages=[RELEVANT])
    )
    assert scored.model.startswith("reranker_en@") and 0.5 < scored.scores[0] <= 1.0
    judge = GrpcJudge(channel)
    assert judge.name == "offline:guardrail"
    await judge.entail(TENANT, [(PREMISE, ENTAILED)])
    await judge.relevance(TENANT, QUERY, [RELEVANT])
    assert judge.name == f"offline:grounding-lr@1+{scored.model}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (pb.EntailRequest(tenant_id=TENANT), grpc.StatusCode.INVALID_ARGUMENT, "pairs is empty"),
        (
            pb.EntailRequest(tenant_id=TENANT, pairs=[pb.EntailPair(premise="p", hypothesis="h")] * 257),
            grpc.StatusCode.INVALID_ARGUMENT,
            "257 pairs; the limit is 256",
        ),
        (
            pb.EntailRequest(tenant_id=TENANT, pairs=[pb.EntailPair(premise="p" * 40_000, hypothesis="h")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pairs[0].premise is 40000 characters",
        ),
        (
            pb.EntailRequest(tenant_id="../etc", pairs=[pb.EntailPair(premise="p", hypothesis="h")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tenant",
        ),
        (
            pb.EntailRequest(tenant_id="nobody", pairs=[pb.EntailPair(premise="p", hypothesis="h")]),
            grpc.StatusCode.NOT_FOUND,
            "nobody",
        ),
        (pb.ScoreRelevanceRequest(tenant_id=TENANT, query="q"), grpc.StatusCode.INVALID_ARGUMENT, "passages"),
        (
            pb.ScoreRelevanceRequest(tenant_id=TENANT, query="q" * 5000, passages=["x"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "query is 5000 characters; the limit is 4096",
        ),
        (
            pb.ScoreRelevanceRequest(tenant_id="", query="q", passages=["x"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tenant_id",
        ),
    ],
)
async def test_the_edge_refuses_what_it_cannot_judge_with_the_reason(
    channel: grpc.aio.Channel, request_: Any, code: grpc.StatusCode, reason: str
) -> None:
    stub = pb_grpc.GuardrailServiceStub(channel)
    method = stub.Entail if isinstance(request_, pb.EntailRequest) else stub.ScoreRelevance
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await method(request_)
    assert caught.value.code() == code
    assert reason in (caught.value.details() or "")


async def test_without_the_grounding_model_the_judges_are_a_failed_precondition(tmp_path: Path) -> None:
    async for ch in _serve(tmp_path, None):
        stub = pb_grpc.GuardrailServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Entail(
                pb.EntailRequest(tenant_id=TENANT, pairs=[pb.EntailPair(premise="p", hypothesis="h")])
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "grounding_model_enabled" in (caught.value.details() or "")
        # the client: any other status is "error", with the server's reason
        with pytest.raises(JudgeFailed) as failed:
            await GrpcJudge(ch).relevance(TENANT, QUERY, [RELEVANT])
        assert failed.value.failure == "error" and "grounding_model_enabled" in str(failed.value)


class _Stalled:
    """Judging that holds every call until released (a guardrail too slow for the caller's timeout)."""

    entailment_model = relevance_model = "stalled@0"

    def __init__(self) -> None:
        self.release = threading.Event()

    def entail(self, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        self.release.wait(30)
        return []

    def relevance(self, query: str, passages: Sequence[str]) -> list[float]:
        self.release.wait(30)
        return []


async def test_grpc_failures_become_judge_failed_codes(tmp_path: Path) -> None:
    stalled = _Stalled()
    async for ch in _serve(tmp_path, stalled):
        try:
            with pytest.raises(JudgeFailed) as timeout:
                await GrpcJudge(ch, timeout_s=0.2).entail(TENANT, [(PREMISE, ENTAILED)])
            assert timeout.value.failure == "timeout" and "DEADLINE_EXCEEDED" in str(timeout.value)
        finally:
            stalled.release.set()
        # refused by the server (a malformed tenant id): "invalid", with the reason
        with pytest.raises(JudgeFailed) as invalid:
            await GrpcJudge(ch).relevance("Not A Tenant!", QUERY, [RELEVANT])
        assert invalid.value.failure == "invalid" and "tenant" in str(invalid.value)
        # refused before sending: too long for the port
        with pytest.raises(JudgeFailed) as long_:
            await GrpcJudge(ch).entail(TENANT, [(PREMISE, "h" * (MAX_JUDGE_TEXT_CHARS + 1))])
        assert long_.value.failure == "too_long"


async def test_a_reply_with_the_wrong_number_of_results_is_an_error(tmp_path: Path) -> None:
    stalled = _Stalled()
    stalled.release.set()  # answers at once, with nothing
    async for ch in _serve(tmp_path, stalled):
        with pytest.raises(JudgeFailed) as caught:
            await GrpcJudge(ch).entail(TENANT, [(PREMISE, ENTAILED)])
        assert caught.value.failure == "error" and "0 results for 1 pairs" in str(caught.value)


class _Counting:
    """Judging that answers fixed values and records each request's size (the client's batches)."""

    entailment_model = relevance_model = "counting@0"

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def entail(self, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        self.sizes.append(len(pairs))
        return [Entailment(1.0, 0.0, 0.0) if "keep" in h else Entailment(0.0, 1.0, 0.0) for _, h in pairs]

    def relevance(self, query: str, passages: Sequence[str]) -> list[float]:
        self.sizes.append(len(passages))
        return [float(p.startswith("r")) for p in passages]


async def test_the_client_splits_a_long_call_into_batches_in_order(tmp_path: Path) -> None:
    counting = _Counting()
    async for ch in _serve(tmp_path, counting):
        judge = GrpcJudge(ch)
        pairs = [("p", "keep" if i % 3 == 0 else "drop") for i in range(2 * MAX_JUDGE_ITEMS + 5)]
        results = await judge.entail(TENANT, pairs)
        assert counting.sizes == [MAX_JUDGE_ITEMS, MAX_JUDGE_ITEMS, 5]
        assert [r.entailment for r in results] == [1.0 if i % 3 == 0 else 0.0 for i in range(len(pairs))]
        counting.sizes.clear()
        scores = await GrpcJudge(ch, batch_size=2).relevance(TENANT, "q", ["r1", "x", "r2", "y", "r3"])
        assert counting.sizes == [2, 2, 1] and scores == [1.0, 0.0, 1.0, 0.0, 1.0]
        assert await judge.entail(TENANT, []) == [] and counting.sizes == [2, 2, 1]  # no request
