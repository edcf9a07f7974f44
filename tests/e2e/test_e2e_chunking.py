"""Chunking strategies per tenant on the real `all` target (issue 18): one tenant's documents are chunked
``parent-child`` (settings ``chunking_overrides``), another's with the default ``token`` windows. The
document says which strategy made its chunks; the small children are what search finds, each naming its
parent section; answers are built from the parent section's text and cite inside it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.ports.generator import PARENT_END_KEY, PARENT_START_KEY, PARENT_TEXT_KEY
from isthmus_core.testing.client import run_cli
from isthmus_ingestion.parsing import parse_document

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PARENT_CHILD, PLAIN = "handbook", "plain"
HANDBOOK = b"""# Gliding club handbook

## Launching

The winch pulls the cable at ninety kilometres per hour. Pilots release the cable at the top of the
climb. A weak link protects the glider from overload. The launch marshal signals with a raised arm.

## Landing

Pilots land into the wind on the grass strip. The landing circuit is flown to the left of the field.
Gliders are pushed off the runway after landing.
"""
QUESTION = "How fast does the winch pull the cable, and when do pilots release it?"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with platform(
        tmp_path_factory.mktemp("isthmus"),
        ingestion={
            "chunking_overrides": {PARENT_CHILD: "parent-child", f"{PLAIN}/manuals": "sentence"},
            "chunking_child_max_tokens": 20,  # about a sentence: a parent holds several children
            "chunking_parent_max_tokens": 256,
        },
    ) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        for tenant in (PARENT_CHILD, PLAIN):
            await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=tenant))
            await upload(ch, tenant, "handbook.md", HANDBOOK, document_id="handbook")
            await wait_indexed(ch, tenant, ["handbook"])
        yield {
            "address": rt.address,
            "ask": ao_grpc.AgentOrchestratorServiceStub(ch),
            "search": retrieval,
            "ingestion": ingestion_pb2_grpc.IngestionServiceStub(ch),
        }
        await ch.close()


async def test_each_tenants_documents_are_chunked_by_its_strategy_and_say_so(env: dict[str, Any]) -> None:
    docs = {
        t: await env["ingestion"].GetDocument(
            ingestion_pb2.GetDocumentRequest(tenant_id=t, document_id="handbook")
        )
        for t in (PARENT_CHILD, PLAIN)
    }
    assert {t: d.chunking for t, d in docs.items()} == {PARENT_CHILD: "parent-child", PLAIN: "token"}
    assert docs[PARENT_CHILD].chunk_count > docs[PLAIN].chunk_count == 1


async def test_children_are_found_and_name_their_parent_section(env: dict[str, Any]) -> None:
    text = parse_document(HANDBOOK, "handbook.md").text
    hits = (
        await env["search"].Search(
            retrieval_pb2.SearchRequest(tenant_id=PARENT_CHILD, query=QUESTION, top_k=20)
        )
    ).hits
    # a child that is its whole section names no parent: it is answered from itself
    assert sum(PARENT_TEXT_KEY in h.metadata for h in hits) >= len(hits) - 1
    for h in (h for h in hits if PARENT_TEXT_KEY in h.metadata):
        start, end = int(h.metadata[PARENT_START_KEY]), int(h.metadata[PARENT_END_KEY])
        assert text[start:end] == h.metadata[PARENT_TEXT_KEY]
        assert start <= h.context.start and h.end <= end
        assert text[h.context.start : h.end] == h.context.text
    plain = (await env["search"].Search(retrieval_pb2.SearchRequest(tenant_id=PLAIN, query=QUESTION))).hits
    assert plain and not any(PARENT_TEXT_KEY in h.metadata for h in plain)


async def test_the_answer_is_built_from_the_parent_section_and_cites_inside_it(env: dict[str, Any]) -> None:
    text = parse_document(HANDBOOK, "handbook.md").text
    hits = (
        await env["search"].Search(
            retrieval_pb2.SearchRequest(tenant_id=PARENT_CHILD, query=QUESTION, top_k=50)
        )
    ).hits
    child = {h.context.chunk_id: (h.context.start, h.end) for h in hits}
    parent = {
        h.context.chunk_id: (int(h.metadata[PARENT_START_KEY]), int(h.metadata[PARENT_END_KEY]))
        if PARENT_TEXT_KEY in h.metadata
        else child[h.context.chunk_id]
        for h in hits
    }
    resp = await env["ask"].Ask(ao.AskRequest(tenant_id=PARENT_CHILD, question=QUESTION, top_k=3))
    assert not resp.blocked and resp.sentences, resp.answer
    assert "ninety kilometres per hour" in resp.answer and "top of the" in resp.answer
    cites = [c for s in resp.sentences for c in s.citations]
    for c in cites:
        start, end = parent[c.chunk_id]
        assert start <= c.start < c.end <= end, "a citation lies inside its parent section"
        assert text[c.start : c.end] in resp.answer
    # the child found is one sentence; the answer quotes its parent's other sentences under its id
    outside = [c for c in cites if not (child[c.chunk_id][0] <= c.start and c.end <= child[c.chunk_id][1])]
    assert outside, "every quote lies in the retrieved child itself: the parent was not answered from"


async def test_a_collection_uploaded_with_the_cli_is_chunked_by_its_own_strategy(
    env: dict[str, Any], tmp_path: Path
) -> None:
    manual = tmp_path / "winch-manual.md"
    manual.write_text(
        "# Winch manual\n\nCheck the cable before every launch. Replace the weak link yearly.\n"
    )
    code, out, err = await run_cli(
        "ingest", str(manual), "-t", PLAIN, "--collection", "manuals", "--json", endpoint=env["address"]
    )
    assert code == 0, err
    [row] = json.loads(out)
    doc = await env["ingestion"].GetDocument(
        ingestion_pb2.GetDocumentRequest(tenant_id=PLAIN, document_id=row["document_id"])
    )
    assert (doc.chunking, doc.metadata["collection"]) == ("sentence", "manuals")
