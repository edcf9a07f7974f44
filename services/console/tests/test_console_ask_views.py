"""The Ask page's view helpers (pure): citation numbers and source links."""

from __future__ import annotations

from isthmus.common.v1 import common_pb2
from isthmus_console.pages.ask import CitationNumbers, source_href


def test_citations_are_numbered_by_first_use_and_the_same_span_keeps_its_number() -> None:
    numbers = CitationNumbers("acme")
    a = common_pb2.Citation(document_id="kafka", start=0, end=12, source_name="kafka.md")
    b = common_pb2.Citation(document_id="kafka", start=14, end=100, title="Apache Kafka")
    assert [v.number for v in numbers.views([a])] == [1]
    assert [v.number for v in numbers.views([b, a, b])] == [2, 1]
    first = numbers.view(a)
    assert first.label == "kafka.md" and numbers.view(b).label == "Apache Kafka"
    assert first.href == "/ask/source/acme/kafka?start=0&end=12"


def test_source_links_escape_what_they_carry() -> None:
    assert source_href("acme", "doc:1", 3, 9) == "/ask/source/acme/doc%3A1?start=3&end=9"
    assert "/" not in source_href("acme", "a/b", 0, 1).split("/ask/source/acme/")[1].split("?")[0]
