"""The console's way to the platform: the public gRPC APIs, each call carrying the viewer's own token.

The console never calls with the process's identity: with authentication on, a call for a viewer
without a token is refused here (the channels' interceptors would otherwise attach the process's own
service token). The stubs are the generated ones; pages call them with :meth:`Backend.metadata`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc
from isthmus.audit.v1 import audit_pb2_grpc
from isthmus.evaluation.v1 import evaluation_pb2_grpc
from isthmus.guardrail.v1 import guardrail_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2_grpc
from isthmus.operations.v1 import operations_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2_grpc
from isthmus_console.viewer import Viewer

#: the services the console shows, with their gRPC service names (health is checked per name)
SERVICES: Mapping[str, str] = {
    "ingestion": "isthmus.ingestion.v1.IngestionService",
    "embedding": "isthmus.embedding.v1.EmbeddingService",
    "retrieval": "isthmus.retrieval.v1.RetrievalService",
    "agent-orchestrator": "isthmus.agent_orchestrator.v1.AgentOrchestratorService",
    "guardrail": "isthmus.guardrail.v1.GuardrailService",
    "evaluation": "isthmus.evaluation.v1.EvaluationService",
}

Metadata = tuple[tuple[str, str], ...]


class NotLoggedIn(Exception):
    """A call for a viewer without a token while authentication is on."""


@dataclass(frozen=True)
class RpcFailure:
    """A failed call as the console shows it: the status code's name and the server's reason."""

    code: str
    reason: str

    @classmethod
    def of(cls, exc: grpc.aio.AioRpcError) -> RpcFailure:
        code = exc.code()
        return cls(code.name if code is not None else "UNKNOWN", exc.details() or "")


class Backend:
    def __init__(
        self,
        channels: Mapping[str, grpc.aio.Channel],
        addresses: Mapping[str, str],
        *,
        auth_enabled: bool,
        timeout_s: float = 30.0,
    ) -> None:
        self.channels = dict(channels)
        self.addresses = dict(addresses)
        self.auth_enabled = auth_enabled
        self.timeout_s = timeout_s
        self.ingestion = ingestion_pb2_grpc.IngestionServiceStub(self.channels["ingestion"])
        self.retrieval = retrieval_pb2_grpc.RetrievalServiceStub(self.channels["retrieval"])
        self.orchestrator = agent_orchestrator_pb2_grpc.AgentOrchestratorServiceStub(
            self.channels["agent-orchestrator"]
        )
        self.guardrail = guardrail_pb2_grpc.GuardrailServiceStub(self.channels["guardrail"])
        self.evaluation = evaluation_pb2_grpc.EvaluationServiceStub(self.channels["evaluation"])
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channels["evaluation"])
        # the runtime of every process serves OperationsService (its own view of the bus): `operations` for
        # the dead letters (any process reads them), `operations_at` per distinct address for consumer lag,
        # with the services served there
        self.operations = operations_pb2_grpc.OperationsServiceStub(self.channels["ingestion"])
        self.operations_at: dict[str, tuple[tuple[str, ...], operations_pb2_grpc.OperationsServiceStub]] = {}
        for name, address in self.addresses.items():
            served, stub = self.operations_at.get(
                address, ((), operations_pb2_grpc.OperationsServiceStub(self.channels[name]))
            )
            self.operations_at[address] = ((*served, name), stub)

    def metadata(self, viewer: Viewer) -> Metadata:
        """The metadata of a call made for ``viewer``: its bearer token (none with authentication off)."""
        if viewer.token:
            return (("authorization", f"Bearer {viewer.token}"),)
        if self.auth_enabled:
            raise NotLoggedIn("log in first")
        return ()

    async def health(self, service: str, timeout_s: float = 2.0) -> str:
        """The gRPC health of ``service`` at its address: SERVING, NOT_SERVING, ... or UNREACHABLE."""
        stub = health_pb2_grpc.HealthStub(self.channels[service])
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=SERVICES.get(service, service)), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return "UNREACHABLE" if exc.code() == grpc.StatusCode.UNAVAILABLE else exc.code().name
        except TimeoutError:
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def ready(self) -> bool:
        """Every service the console shows answers SERVING (the console's readiness)."""
        states = await asyncio.gather(*(self.health(s) for s in SERVICES))
        return all(s == "SERVING" for s in states)
