"""``isthmus status``: health of every service at an endpoint, online metrics, a tenant's documents."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

from isthmus_cli.client import connect, run, status_name
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, optional_tenant_id
from isthmus_cli.output import console

SERVICES = {
    "ingestion": "isthmus.ingestion.v1.IngestionService",
    "embedding": "isthmus.embedding.v1.EmbeddingService",
    "retrieval": "isthmus.retrieval.v1.RetrievalService",
    "agent-orchestrator": "isthmus.agent_orchestrator.v1.AgentOrchestratorService",
    "guardrail": "isthmus.guardrail.v1.GuardrailService",
    "evaluation": "isthmus.evaluation.v1.EvaluationService",
}


def status(
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    tenant: Annotated[
        str,
        typer.Option(
            "--tenant", "-t", help="also count this tenant's documents", callback=optional_tenant_id
        ),
    ] = "",
    as_json: AsJson = False,
) -> None:
    """Health of every service at the endpoint (and a tenant's document counts)."""
    from grpc_health.v1 import health_pb2

    from isthmus.evaluation.v1 import evaluation_pb2
    from isthmus.ingestion.v1 import ingestion_pb2

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": endpoint, "services": {}}
        async with connect(endpoint) as stubs:
            for name, full in SERVICES.items():
                try:
                    r = await stubs.health.Check(health_pb2.HealthCheckRequest(service=full), timeout=5)
                    out["services"][name] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                except grpc.aio.AioRpcError as exc:
                    out["services"][name] = (
                        "NOT_HERE" if exc.code() == grpc.StatusCode.NOT_FOUND else exc.code().name
                    )
            if out["services"].get("evaluation") == "SERVING":
                m = await stubs.evaluation.GetOnlineMetrics(
                    evaluation_pb2.GetOnlineMetricsRequest(tenant_id=tenant), timeout=5
                )
                out["online"] = {
                    "answers": m.answers,
                    "latency_p50_ms": round(m.latency_p50_ms, 1),
                    "latency_p95_ms": round(m.latency_p95_ms, 1),
                    "citations_per_answer": round(m.citations_per_answer, 2),
                    "guardrail_blocks": m.guardrail_blocks,
                    "blocked_answers": m.blocked_answers,
                }
            if tenant:
                docs = await stubs.ingestion.ListDocuments(
                    ingestion_pb2.ListDocumentsRequest(tenant_id=tenant), timeout=30
                )
                counts: dict[str, int] = {}
                for d in docs.documents:
                    k = status_name(d.status)
                    counts[k] = counts.get(k, 0) + 1
                out["documents"] = counts
        return out

    out = run(main())
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table("service", "health")
    for name, st in out["services"].items():
        table.add_row(name, st)
    console.print(table)
    for key in ("online", "documents"):
        if key in out:
            console.print(f"{key}: {out[key]}")
    if any(v not in ("SERVING", "NOT_HERE") for v in out["services"].values()):
        raise typer.Exit(1)
