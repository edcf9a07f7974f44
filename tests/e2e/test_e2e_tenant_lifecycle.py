"""Tenant lifecycle through the public gRPC API of the real `all` target (issue 11, defects 2 and 4):

* a tenant id is never a path: ``../../escaped`` is INVALID_ARGUMENT everywhere and writes nothing;
* an unknown tenant is NOT_FOUND from every service that holds tenant state (guardrail, evaluation,
  ingestion, retrieval, and Ask before any guardrail or generator work);
* ``isthmus.tenants.deleted.v1`` makes every service drop the tenant's state: after a delete and a
  re-create the tenant starts from the defaults (policy, online counters, documents);
* the TenantDirectory conformance suite passes against the real gRPC client and the real registry.

The embedding service has no tenant in its API and keeps no tenant state, so it has nothing to check.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao_pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.common.v1 import common_pb2
from isthmus.evaluation.v1 import evaluation_pb2 as ev_pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as ev_grpc
from isthmus.guardrail.v1 import guardrail_pb2 as gr_pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as gr_grpc
from isthmus.ingestion.v1 import ingestion_pb2 as in_pb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as in_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import decode_event
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.ports.guard import Policy
from isthmus_core.ports.tenants import TenantDirectory
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.tenant_directory_conformance import (
    TenantDirectoryConformance,
    TenantDirectoryOutageConformance,
)

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

DOC = b"Gliders stay aloft by circling in thermals, columns of rising warm air over sunny fields."
QUESTION = "How do gliders stay aloft?"


class Env:
    def __init__(self, rt: Runtime, ch: grpc.aio.Channel, data_dir: Path) -> None:
        self.rt, self.ch, self.data_dir = rt, ch, data_dir
        self.retrieval = rgrpc.RetrievalServiceStub(ch)
        self.ingestion = in_grpc.IngestionServiceStub(ch)
        self.guardrail = gr_grpc.GuardrailServiceStub(ch)
        self.evaluation = ev_grpc.EvaluationServiceStub(ch)
        self.orchestrator = ao_grpc.AgentOrchestratorServiceStub(ch)

    @property
    def bus(self) -> InProcessBus:
        assert isinstance(self.rt.bus, InProcessBus)
        return self.rt.bus

    def events(self, spec: topics.TopicSpec, tenant: str) -> list[Any]:
        found = [decode_event(spec, m) for m in self.bus.messages(spec.name)]
        return [e for e in found if e.tenant_id == tenant]

    def policy_versions(self, tenant: str) -> int:
        """How many policy versions the guardrail's store holds for ``tenant`` (read from its file)."""
        with sqlite3.connect(self.data_dir / "guardrail" / "policies.sqlite") as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM policy_versions WHERE tenant_id = ?", (tenant,)
            ).fetchone()
        return int(row[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    data_dir = tmp_path_factory.mktemp("tenants") / "data"
    async with platform(data_dir) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        yield Env(rt, ch, data_dir)


def fresh() -> str:
    return f"life-{uuid.uuid4().hex[:10]}"


async def _code(call: Awaitable[Any]) -> grpc.StatusCode | None:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return None


async def _stream_code(stream: Any) -> grpc.StatusCode | None:
    try:
        async for _ in stream:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return None


def tenant_calls(e: Env, tenant: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call per tenant-scoped RPC of every service (fresh coroutines each time)."""

    async def upload_call() -> Any:
        return await upload(e.ch, tenant, "a.txt", DOC)

    async def ask_stream() -> grpc.StatusCode | None:
        return await _stream_code(
            e.orchestrator.AskStream(ao_pb.AskRequest(tenant_id=tenant, question=QUESTION))
        )

    return {
        "guardrail.CheckInput": lambda: e.guardrail.CheckInput(
            gr_pb.CheckInputRequest(tenant_id=tenant, text="hi")
        ),
        "guardrail.CheckOutput": lambda: e.guardrail.CheckOutput(
            gr_pb.CheckOutputRequest(
                tenant_id=tenant,
                sentences=[common_pb2.AnswerSentence(text="Ten days.")],
                contexts=[common_pb2.Context(chunk_id="c", document_id="d", text="Ten days.")],
            )
        ),
        "guardrail.GetPolicy": lambda: e.guardrail.GetPolicy(gr_pb.GetPolicyRequest(tenant_id=tenant)),
        "guardrail.PutPolicy": lambda: e.guardrail.PutPolicy(
            gr_pb.Policy(tenant_id=tenant, injection_threshold=0.5, pii_threshold=0.5)
        ),
        "evaluation.GetOnlineMetrics": lambda: e.evaluation.GetOnlineMetrics(
            ev_pb.GetOnlineMetricsRequest(tenant_id=tenant)
        ),
        "ingestion.Upload": upload_call,
        "ingestion.GetDocument": lambda: e.ingestion.GetDocument(
            in_pb.GetDocumentRequest(tenant_id=tenant, document_id="doc-1")
        ),
        "ingestion.ListDocuments": lambda: e.ingestion.ListDocuments(
            in_pb.ListDocumentsRequest(tenant_id=tenant)
        ),
        "retrieval.Search": lambda: e.retrieval.Search(rpb.SearchRequest(tenant_id=tenant, query="gliders")),
        "retrieval.GetTenant": lambda: e.retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant)),
        "retrieval.ClearTenant": lambda: e.retrieval.ClearTenant(rpb.ClearTenantRequest(tenant_id=tenant)),
        "agent-orchestrator.Ask": lambda: e.orchestrator.Ask(
            ao_pb.AskRequest(tenant_id=tenant, question=QUESTION)
        ),
        "agent-orchestrator.AskStream": ask_stream,
    }


async def codes(e: Env, tenant: str) -> dict[str, grpc.StatusCode | None]:
    out = {}
    for name, call in tenant_calls(e, tenant).items():
        out[name] = await call() if name == "agent-orchestrator.AskStream" else await _code(call())
    return out


async def test_a_tenant_id_is_never_a_path(env: Env) -> None:
    bad = "../../escaped"
    got = await codes(env, bad)
    got["retrieval.CreateTenant"] = await _code(
        env.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=bad))
    )
    assert got == dict.fromkeys(got, grpc.StatusCode.INVALID_ARGUMENT)
    root = env.data_dir.parent
    assert [p for p in root.rglob("*escaped*")] == []


async def test_an_unknown_tenant_is_not_found_everywhere(env: Env) -> None:
    tenant = fresh()
    got = await codes(env, tenant)
    assert got == dict.fromkeys(got, grpc.StatusCode.NOT_FOUND)
    await env.bus.drain()
    # Ask was refused before any work: no guardrail verdict and no answer for the unknown tenant
    assert env.events(topics.GUARDRAIL_VERDICTS, tenant) == []
    assert env.events(topics.ANSWERS_PRODUCED, tenant) == []
    assert env.policy_versions(tenant) == 0
    # an empty tenant id still means "all tenants" for the online metrics
    assert await _code(env.evaluation.GetOnlineMetrics(ev_pb.GetOnlineMetricsRequest())) is None


async def test_a_policy_no_check_could_run_with_is_refused_when_stored(env: Env) -> None:
    tenant = fresh()
    await env.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
    bad = gr_pb.Policy(tenant_id=tenant, pii_entities=["EMAIL_ADDRESS", "NOT_AN_ENTITY"], pii_threshold=0.5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await env.guardrail.PutPolicy(bad)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NOT_AN_ENTITY" in (refused.value.details() or "")
    assert env.policy_versions(tenant) == 0  # nothing stored: the tenant's checks keep working
    verdict = await env.guardrail.CheckInput(gr_pb.CheckInputRequest(tenant_id=tenant, text="Hello there"))
    assert verdict.action == common_pb2.GUARD_ACTION_ALLOW


async def test_deleting_a_tenant_drops_its_state_in_every_service(env: Env) -> None:
    tenant = fresh()
    await env.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
    await env.guardrail.PutPolicy(gr_pb.Policy(tenant_id=tenant, injection_threshold=0.9, pii_threshold=0.4))
    doc = await upload(env.ch, tenant, "glider.txt", DOC)
    await wait_indexed(env.ch, tenant, [doc.document_id])
    answer = await env.orchestrator.Ask(ao_pb.AskRequest(tenant_id=tenant, question=QUESTION))
    assert answer.citations
    await env.bus.drain()
    metrics = await env.evaluation.GetOnlineMetrics(ev_pb.GetOnlineMetricsRequest(tenant_id=tenant))
    assert metrics.answers == 1
    assert env.policy_versions(tenant) == 1

    await env.retrieval.DeleteTenant(rpb.DeleteTenantRequest(tenant_id=tenant))
    await env.bus.drain()  # every subscriber has handled tenants.deleted
    assert env.policy_versions(tenant) == 0
    got = await codes(env, tenant)
    assert got == dict.fromkeys(got, grpc.StatusCode.NOT_FOUND)  # no cached "yes" outlives the event

    # created again, the tenant starts from nothing: default policy, zero counters, no documents
    await env.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
    policy = await env.guardrail.GetPolicy(gr_pb.GetPolicyRequest(tenant_id=tenant))
    assert (policy.injection_threshold, policy.pii_threshold) == pytest.approx(
        (Policy().injection_threshold, Policy().pii_threshold)
    )
    metrics = await env.evaluation.GetOnlineMetrics(ev_pb.GetOnlineMetricsRequest(tenant_id=tenant))
    assert metrics.answers == 0
    docs = await env.ingestion.ListDocuments(in_pb.ListDocumentsRequest(tenant_id=tenant))
    assert list(docs.documents) == []
    assert (await env.retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant))).chunk_count == 0


class PlatformRegistry:
    """Tenants created and deleted through retrieval's gRPC API; the deletion notice handed to the
    directory under test is the real tenants.deleted event retrieval published on the bus."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self.directory: GrpcTenantDirectory | None = None

    async def create(self, tenant_id: TenantId) -> None:
        await self._env.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant_id))

    async def delete(self, tenant_id: TenantId) -> None:
        await self._env.retrieval.DeleteTenant(rpb.DeleteTenantRequest(tenant_id=tenant_id))
        await self._env.bus.drain()
        notices: list[TenantDeleted] = self._env.events(topics.TENANTS_DELETED, tenant_id)
        assert notices, f"no tenants.deleted event for {tenant_id}"
        assert self.directory is not None
        await self.directory.on_tenant_deleted(notices[-1])


class TestGrpcTenantDirectoryOnThePlatform(TenantDirectoryConformance, TenantDirectoryOutageConformance):
    @pytest.fixture
    def registry(self, env: Env) -> PlatformRegistry:
        return PlatformRegistry(env)

    @pytest.fixture
    def directory(self, registry: PlatformRegistry, env: Env) -> TenantDirectory:
        registry.directory = GrpcTenantDirectory(env.ch, ttl_s=3600)  # only the event clears the cache
        return registry.directory

    @pytest_asyncio.fixture(loop_scope="module")
    async def unreachable_directory(self) -> AsyncIterator[TenantDirectory]:
        async with grpc.aio.insecure_channel("127.0.0.1:1") as ch:  # nothing listens on port 1
            yield GrpcTenantDirectory(ch, timeout_s=5)
