"""Answers quote whole sentences of wrapped sources, and citations name the source (issue 11, 8 and 9).

The `all` target with small chunks (so chunks cut paragraphs): a wrapped Markdown file and a wrapped
HTML file go in over gRPC; every answer sentence must be a whole sentence of the parsed text, cited at its
exact offsets, and every citation must carry the file name, title and URI — over gRPC and in `isthmus ask`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_agent_orchestrator.sentences import split_sentences
from isthmus_core.testing.client import run_cli
from isthmus_ingestion.parsing import parse_document

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "travel"
# wrapped at ~80 columns as people write Markdown: most sentences run over a soft line break
TRAVEL_MD = b"""# Travel policy

Employees book flights through the Skyport portal at least
fourteen days before departure. Hotels are reimbursed up to 120 euros per night in Germany and at
140 euros per night abroad. Train travel is preferred for trips that take under four hours
door to door. Dr. Smith approves exceptions for conferences and trade fairs.

Receipts are uploaded to the expense tool within thirty days of the trip, otherwise the costs
cannot be reimbursed. Meals are covered by a daily allowance of 28 euros in Germany and
of 40 euros abroad.
"""
TRAVEL_URI = "https://intranet.example.com/policies/travel.md"
ROUTE_HTML = b"""<!doctype html>
<html><head><title>North Sea
  tour</title></head>
<body>
<p>The preferred route for the North Sea tour is Hamburg first, then Antwerp, then
   Rotterdam, with one night in each port. The tour bus leaves Hamburg at seven in the
   morning and reaches Antwerp in the early evening.</p>
<p>Ferries between the ports are booked by the tour office, never by the participants
   themselves. Cabins on night ferries are shared by two participants of the same team.</p>
<p>The tour office also books the hotels, the buses between the ports, the guided walks through
   the old towns of Hamburg, Antwerp and Rotterdam, the dinners on the first and the last evening,
   Dutch and German lessons for beginners and the travel insurance for every participant.</p>
</body></html>"""
DOCS = {"travel-policy": ("travel.md", TRAVEL_MD), "north-sea": ("route.html", ROUTE_HTML)}
QUESTIONS = (
    "How many days before departure do employees book flights?",
    "How much are hotels reimbursed per night abroad?",
    "Which route does the North Sea tour take, Hamburg, Antwerp or Rotterdam first?",
    "Who books the ferries between the ports?",
    "How long do employees have to upload receipts to the expense tool?",
    "What daily allowance covers meals abroad?",
    "Who approves exceptions for conferences?",
)
#: answered only by a sentence longer than a chunk: it is never whole in any chunk
LONG_SENTENCE_QUESTION = "Does the tour office book Dutch and German lessons for beginners?"
ISTHMUS = str(Path(sys.executable).with_name("isthmus"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    # small chunks: every paragraph is cut into several chunks, so chunk windows cut the text
    async with platform(
        tmp_path_factory.mktemp("isthmus"), ingestion={"chunk_max_tokens": 40, "chunk_overlap_tokens": 10}
    ) as rt:
        ch = grpc.aio.insecure_channel(rt.address)
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        chunk_counts = []
        for doc_id, (name, data) in DOCS.items():
            metadata = {"uri": TRAVEL_URI} if name == "travel.md" else {}
            r = await upload(ch, TENANT, name, data, document_id=doc_id, metadata=metadata)
            chunk_counts.append(r.chunk_count)
        assert min(chunk_counts) > 2, "the test needs chunks that cut paragraphs"
        await wait_indexed(ch, TENANT, list(DOCS))
        yield {
            "address": rt.address,
            "ask": ao_grpc.AgentOrchestratorServiceStub(ch),
            "search": retrieval_pb2_grpc.RetrievalServiceStub(ch),
        }
        await ch.close()


def _parsed_text(document_id: str) -> str:
    name, data = DOCS[document_id]
    return parse_document(data, name).text


@pytest.mark.parametrize("question", QUESTIONS)
async def test_every_answer_sentence_is_a_whole_sentence_of_the_parsed_text(
    env: dict[str, Any], question: str
) -> None:
    resp = await env["ask"].Ask(ao.AskRequest(tenant_id=TENANT, question=question, top_k=5))
    assert not resp.blocked, resp.answer
    assert resp.sentences, f"no answer to {question!r}: {resp.answer!r}"
    for sentence in resp.sentences:
        [citation] = sentence.citations
        text = _parsed_text(citation.document_id)
        whole = {text[s:e] for s, e in split_sentences(text)}
        assert text[citation.start : citation.end] == sentence.text, "the citation offsets are exact"
        assert re.search(r"[.!?]$", sentence.text), f"cut sentence: {sentence.text!r}"
        assert sentence.text in whole, f"not a sentence of {citation.document_id}: {sentence.text!r}"
        assert "\n" not in sentence.text, "a soft line break split or joined a sentence"
    # the answer's text is the sentences, each whole: a wrapped sentence never comes back in halves
    assert resp.answer == " ".join(s.text for s in resp.sentences)


async def test_the_wrapped_sentence_that_answers_comes_back_whole(env: dict[str, Any]) -> None:
    resp = await env["ask"].Ask(ao.AskRequest(tenant_id=TENANT, question=QUESTIONS[0], top_k=5))
    assert "Employees book flights through the Skyport portal at least fourteen days before departure." in [
        s.text for s in resp.sentences
    ]
    resp = await env["ask"].Ask(ao.AskRequest(tenant_id=TENANT, question=QUESTIONS[2], top_k=5))
    assert any(
        s.text.startswith("The preferred route for the North Sea tour is Hamburg first, then Antwerp, then")
        and s.text.endswith("with one night in each port.")
        for s in resp.sentences
    ), [s.text for s in resp.sentences]


async def test_a_sentence_longer_than_a_chunk_is_never_quoted_in_pieces(env: dict[str, Any]) -> None:
    search = await env["search"].Search(
        retrieval_pb2.SearchRequest(tenant_id=TENANT, query=LONG_SENTENCE_QUESTION, top_k=20)
    )
    assert any(h.metadata.get("continues_sentence") == "true" for h in search.hits), "ingestion marks it"
    resp = await env["ask"].Ask(ao.AskRequest(tenant_id=TENANT, question=LONG_SENTENCE_QUESTION))
    whole = {_parsed_text(d)[s:e] for d in DOCS for s, e in split_sentences(_parsed_text(d))}
    for sentence in resp.sentences:
        assert sentence.text in whole, f"a piece of a sentence: {sentence.text!r}"


async def test_citations_name_the_source_file_title_and_uri(env: dict[str, Any]) -> None:
    expected = {
        "travel-policy": ("travel.md", "Travel policy", TRAVEL_URI),
        "north-sea": ("route.html", "North Sea tour", ""),
    }
    seen = set()
    for question in (QUESTIONS[0], QUESTIONS[3]):
        resp = await env["ask"].Ask(ao.AskRequest(tenant_id=TENANT, question=question))
        assert resp.citations
        for c in [*resp.citations, *(c for s in resp.sentences for c in s.citations)]:
            assert (c.source_name, c.title, c.uri) == expected[c.document_id]
            seen.add(c.document_id)
    assert seen == set(expected)


async def test_isthmus_ask_shows_the_source_name_and_title(env: dict[str, Any]) -> None:
    code, out, err = await run_cli("ask", QUESTIONS[3], "--tenant", TENANT, endpoint=env["address"])
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.strip().startswith("[1]")]
    assert "route.html" in line and "North Sea tour" in line and "north-sea" in line
