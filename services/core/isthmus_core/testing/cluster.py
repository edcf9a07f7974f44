"""A distributed Isthmus on one machine: each service its own `isthmus run --target <svc>` process,
all on one Kafka, calling each other over gRPC on loopback. Used by the distributed test tier and the
capacity benchmark, which also starts the all-in-one shape with it (``targets=("all",)``, no
bootstrap: one `isthmus run --target all` process on the in-process bus)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus_core.testing.infra import free_port_run

SERVICES = ("embedding", "retrieval", "ingestion", "guardrail", "agent-orchestrator", "evaluation")
HEALTH_NAMES = {
    "ingestion": "isthmus.ingestion.v1.IngestionService",
    "embedding": "isthmus.embedding.v1.EmbeddingService",
    "retrieval": "isthmus.retrieval.v1.RetrievalService",
    "agent-orchestrator": "isthmus.agent_orchestrator.v1.AgentOrchestratorService",
    "guardrail": "isthmus.guardrail.v1.GuardrailService",
    "evaluation": "isthmus.evaluation.v1.EvaluationService",
    "all": "",  # the server's overall health
}
ISTHMUS = str(Path(sys.executable).with_name("isthmus"))


def free_port() -> int:
    return free_port_run(1)


class Cluster:
    def __init__(
        self,
        base: Path,
        bootstrap: str,
        extra_env: dict[str, str] | None = None,
        *,
        metrics: bool = False,
        targets: Sequence[str] = SERVICES,
    ) -> None:
        self.base = base
        self.targets = tuple(targets)
        self.metrics_ports = {svc: free_port() if metrics else 0 for svc in self.targets}
        self.bootstrap = bootstrap
        self.ports = {svc: free_port() for svc in self.targets}
        self.endpoints = {svc: f"127.0.0.1:{p}" for svc, p in self.ports.items()}
        self.extra_env = extra_env or {}
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {svc: [] for svc in self.targets}

    def env(self, svc: str, port: int) -> dict[str, str]:
        bus = (
            {"ISTHMUS_BUS": "kafka", "ISTHMUS_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
            if self.bootstrap
            else {"ISTHMUS_BUS": "inprocess"}
        )
        endpoints = {name: a for name, a in self.endpoints.items() if name in SERVICES}
        return {
            **os.environ,
            **bus,
            "ISTHMUS_GRPC_PORT": str(port),
            "ISTHMUS_METRICS_PORT": str(self.metrics_ports[svc] if port == self.ports[svc] else 0),
            # the console (part of `all`) on a free port: several platforms run side by side here
            "ISTHMUS_CONSOLE_PORT": "0",
            "ISTHMUS_DATA_DIR": str(self.base / svc),
            **({"ISTHMUS_ENDPOINTS": json.dumps(endpoints)} if endpoints else {}),
            "ISTHMUS_LOG_FORMAT": "json",
            "ISTHMUS_SHUTDOWN_GRACE_S": "2",
            **self.extra_env,
        }

    def start(self, svc: str, *, replica: bool = False) -> subprocess.Popen[bytes]:
        port = free_port() if replica else self.ports[svc]
        log = (self.base / f"{svc}-{len(self.procs[svc])}.log").open("ab")
        proc = subprocess.Popen(
            [ISTHMUS, "run", "--target", svc], env=self.env(svc, port), stdout=log, stderr=subprocess.STDOUT
        )
        proc.isthmus_port = port  # type: ignore[attr-defined]
        self.procs[svc].append(proc)
        return proc

    async def wait_healthy(
        self, svc: str, proc: subprocess.Popen[bytes] | None = None, within: float = 180
    ) -> None:
        proc = proc or self.procs[svc][-1]
        address = f"127.0.0.1:{proc.isthmus_port}"  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with grpc.aio.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"{svc} exited with {proc.returncode}: {self.log_tail(svc)}")
                try:
                    r = await stub.Check(health_pb2.HealthCheckRequest(service=HEALTH_NAMES[svc]), timeout=2)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"{svc} not healthy within {within}s: {self.log_tail(svc)}")
                await asyncio.sleep(0.3)

    def kill(self, svc: str, sig: int = signal.SIGKILL) -> None:
        for proc in self.procs[svc]:
            if proc.poll() is None:
                proc.send_signal(sig)
                proc.wait(timeout=30)

    def log_tail(self, svc: str, n: int = 30) -> str:
        logs = sorted(self.base.glob(f"{svc}-*.log"))
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-n:]) if logs else ""

    def stop_all(self) -> None:
        for svc in reversed(self.targets):
            for proc in self.procs[svc]:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        for procs in self.procs.values():
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
