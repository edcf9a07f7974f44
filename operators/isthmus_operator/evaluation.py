"""The EdgeRollout metrics the platform computes: the evaluation service's ``GetOnlineMetrics``.

:class:`EvaluationMetricsSource` is the default :class:`~isthmus_operator.kube.MetricsSource` (operator
setting ``rollout_metrics = "evaluation"``, endpoint ``evaluation_endpoint``): for the current wave and the
baseline it asks for the online metrics of the answers served with each bundle
(:func:`~isthmus_operator.gate_metrics.plan_queries`) and maps them to the gate metrics
(:func:`~isthmus_operator.gate_metrics.gate_metrics`), as the JSON entries the rollout reads. A failed call
is :class:`~isthmus_core.errors.Unavailable` (the rollout's step is retried, its status left as it was).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from isthmus_core.auth.outbound import TokenSource
from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.status import from_rpc_error
from isthmus_operator.gate_metrics import Figures, Query, gate_metrics, merge, plan_queries

if TYPE_CHECKING:
    from isthmus_operator.kube import MetricsRequest


def figures_of(reply: pb.OnlineMetrics) -> Figures:
    return Figures(
        answers=reply.answers,
        blocked_answers=reply.blocked_answers,
        quality={v.name: (v.mean, v.n) for v in reply.quality},
    )


class EvaluationMetricsSource:
    """Gate metrics from the evaluation service at ``endpoint`` (the channel opens lazily)."""

    def __init__(
        self,
        endpoint: str,
        timeout_s: float = 5.0,
        tokens: TokenSource | None = None,
        *,
        min_samples: int = 20,
        baseline_window_s: float = 86_400.0,
    ) -> None:
        if not endpoint or ":" not in endpoint:
            raise InvalidArgument(f"evaluation endpoint must be host:port, got {endpoint!r}")
        self._endpoint = endpoint
        self._tokens = tokens
        self._timeout = timeout_s
        self._min = min_samples
        self._window = baseline_window_s
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> pb_grpc.EvaluationServiceStub:
        if self._channel is None:
            self._channel = open_channel(self._endpoint, self._tokens)
        return pb_grpc.EvaluationServiceStub(self._channel)

    async def _fetch(self, query: Query) -> Figures:
        request = pb.GetOnlineMetricsRequest(tenant_id=query.tenant, model_bundle=query.model_bundle)
        if query.start is not None:
            start = Timestamp()
            start.FromDatetime(query.start)
            request.start.CopyFrom(start)
        try:
            reply = await self._stub().GetOnlineMetrics(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"evaluation at {self._endpoint}: GetOnlineMetrics of {query.model_bundle} failed: "
                f"{from_rpc_error(exc).reason}"
            ) from exc
        return figures_of(reply)

    async def read(self, request: MetricsRequest) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, queries in plan_queries(request.spec, request.status, self._window).items():
            figures = merge([await self._fetch(q) for q in queries])
            out[key] = json.dumps(gate_metrics(figures, self._min), sort_keys=True)
        return out

    def describe(self, namespace: str, rollout: str) -> str:
        return (
            f"the evaluation service at {self._endpoint} (online metrics; a metric over fewer than "
            f"{self._min} answers or judged samples is missing)"
        )

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
