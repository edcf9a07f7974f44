"""No access scope is no principals, on the `all` target: a caller who leaves ``access`` out sees only
documents without an ACL, in Search (every mode) and in Ask/AskStream. There is no "trusted" scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.common.v1 import common_pb2
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "acme"
BOARD = b"The board approved the acquisition of the glacier observatory for ninety million."
PUBLIC = b"The glacier observatory opens to visitors every Saturday morning."
QUESTION = "What did the board approve for the glacier observatory?"
MODES = (retrieval_pb2.SEARCH_MODE_BM25, retrieval_pb2.SEARCH_MODE_DENSE, retrieval_pb2.SEARCH_MODE_HYBRID)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with platform(tmp_path_factory.mktemp("isthmus")) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        board = await upload(
            ch, TENANT, "board.txt", BOARD, document_id="board-minutes", metadata={"acl": "board"}
        )
        public = await upload(ch, TENANT, "visits.txt", PUBLIC, document_id="visits")
        await wait_indexed(ch, TENANT, [board.document_id, public.document_id])
        yield {"ch": ch}
        await ch.close()


async def test_search_without_access_sees_only_documents_without_an_acl(env: dict[str, Any]) -> None:
    stub = retrieval_pb2_grpc.RetrievalServiceStub(env["ch"])
    for mode in MODES:
        resp = await stub.Search(retrieval_pb2.SearchRequest(tenant_id=TENANT, query=QUESTION, mode=mode))
        assert {h.context.document_id for h in resp.hits} == {"visits"}, mode
    named = await stub.Search(
        retrieval_pb2.SearchRequest(
            tenant_id=TENANT, query=QUESTION, access=common_pb2.AccessScope(principals=["board"])
        )
    )
    assert "board-minutes" in {h.context.document_id for h in named.hits}  # the ACL'd document is there


async def test_ask_without_access_does_not_see_an_acld_document(env: dict[str, Any]) -> None:
    stub = ao_grpc.AgentOrchestratorServiceStub(env["ch"])
    resp = await stub.Ask(ao.AskRequest(tenant_id=TENANT, question=QUESTION))
    assert "board-minutes" not in {c.document_id for c in resp.citations}
    assert "ninety million" not in resp.answer
    events = [e async for e in stub.AskStream(ao.AskRequest(tenant_id=TENANT, question=QUESTION))]
    assert all("ninety million" not in e.sentence.text for e in events if e.WhichOneof("event") == "sentence")
    assert "board-minutes" not in {c.document_id for c in events[-1].final.citations}
    # the same question, asked by a board member, is answered from it
    resp = await stub.Ask(
        ao.AskRequest(
            tenant_id=TENANT, question=QUESTION, access=common_pb2.AccessScope(principals=["board"])
        )
    )
    assert "board-minutes" in {c.document_id for c in resp.citations}


async def test_an_invalid_principal_is_refused(env: dict[str, Any]) -> None:
    for call in (
        ao_grpc.AgentOrchestratorServiceStub(env["ch"]).Ask(
            ao.AskRequest(
                tenant_id=TENANT, question=QUESTION, access=common_pb2.AccessScope(principals=[" "])
            )
        ),
        retrieval_pb2_grpc.RetrievalServiceStub(env["ch"]).Search(
            retrieval_pb2.SearchRequest(
                tenant_id=TENANT, query=QUESTION, access=common_pb2.AccessScope(principals=["a,b"])
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
