"""Citations name the source (file name, title, URI): from search hits to the answer and its event."""

from __future__ import annotations

from isthmus.common.v1 import common_pb2
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_agent_orchestrator.api import answer_pb
from isthmus_agent_orchestrator.clients import context_from_hit, sentence_pb
from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_agent_orchestrator.pipeline import Answer
from isthmus_core.contracts.events import AnswerProduced, Citation
from isthmus_core.ports.generator import Context

URI = "https://intranet.example.com/travel.md"


def _hit(**metadata: str) -> retrieval_pb2.Hit:
    return retrieval_pb2.Hit(
        context=common_pb2.Context(
            chunk_id="c1", document_id="d1", text="Hotels cost 120 euros per night.", start=40, score=0.5
        ),
        chunk_index=1,
        end=72,
        metadata=metadata,
    )


def test_a_hit_becomes_a_context_naming_its_source() -> None:
    context = context_from_hit(
        _hit(filename="policies/travel.md", source_name="travel.md", title="Travel policy", uri=URI)
    )
    assert context == Context(
        "c1",
        "d1",
        "Hotels cost 120 euros per night.",
        40,
        0.5,
        source_name="travel.md",
        title="Travel policy",
        uri=URI,
        end=72,
    )


def test_a_hit_carries_its_document_version_and_the_search_model_into_the_context() -> None:
    context = context_from_hit(_hit(document_version="3"), "bge-small@onnx")
    assert (context.document_version, context.end, context.embedding_model) == (3, 72, "bge-small@onnx")
    # indexed before versions were recorded (or a value that is not one): unknown, 0
    assert context_from_hit(_hit()).document_version == 0
    assert context_from_hit(_hit(document_version="x")).document_version == 0


def test_a_chunk_indexed_before_source_names_is_named_by_its_file_name() -> None:
    context = context_from_hit(_hit(filename="travel.md"))
    assert (context.source_name, context.title, context.uri) == ("travel.md", "", "")
    assert not context.continues_sentence


def test_a_hit_that_continues_a_sentence_says_so() -> None:
    assert context_from_hit(_hit(continues_sentence="true")).continues_sentence


async def test_answers_cite_the_source_in_the_api_and_the_event() -> None:
    context = context_from_hit(_hit(source_name="travel.md", title="Travel policy", uri=URI))
    generation = await ExtractiveGenerator().generate("How much do hotels cost per night?", [context])
    [sentence] = generation.sentences
    [span] = sentence.citations
    assert (span.source_name, span.title, span.uri, span.start) == ("travel.md", "Travel policy", URI, 40)

    [pb_citation] = sentence_pb(sentence).citations
    assert (pb_citation.source_name, pb_citation.title, pb_citation.uri) == ("travel.md", span.title, URI)

    answer = Answer(question_id="q", sentences=[sentence])
    [citation] = answer.citations
    assert (citation.source_name, citation.title, citation.uri) == ("travel.md", "Travel policy", URI)
    [response_citation] = answer_pb(answer).citations
    assert response_citation == pb_citation


def test_an_answer_event_written_before_source_names_still_parses() -> None:
    old = {"chunk_id": "c1", "document_id": "d1", "start": 0, "end": 5}
    assert Citation.model_validate(old) == Citation(**old, source_name="", title="", uri="")
    event = AnswerProduced.model_validate_json(
        '{"tenant_id": "t", "idempotency_key": "t/q", "question_id": "q", "latency_ms": 1.0, '
        '"citations": [{"chunk_id": "c1", "document_id": "d1", "start": 0, "end": 5}]}'
    )
    assert event.citations[0].source_name == ""
