"""Banned topics matched by embedding similarity with the real bundled encoder (bge-small-en-v1.5 int8, the
guardrail's 128 tokens).

The default threshold (``BannedTopic.threshold`` = 0.6) was chosen on a measurement with this encoder:
6 topics (politics, personal medical advice, weapons, investment advice, competitors, gambling), 22
on-topic questions and 8 ordinary support questions written for it, and the 637 genuine IR questions
(cranfield, cisi, scifact) as off-topic text. Cosine of on-topic questions: min 0.54, median 0.67;
support questions: max 0.59; at 0.60 on-topic recall 0.82 (18/22), support questions 0/8, IR questions
at or above it per topic 0-4.4 % (the near-topic ones: "medical advice" vs scifact's biomedical claims,
"competitors" vs cisi's library economics). 0.55 lets 41 % of the IR questions hit some topic; 0.65 keeps
only 55 % of the on-topic questions. Both sides are embedded as passages (no query instruction): with
the instruction on the text, on-topic similarity fell more than off-topic similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from isthmus_core.onnx_embedder import OnnxEmbedder
from isthmus_core.ports.embedder import Embeddings, TextKind
from isthmus_core.ports.guard import Action, BannedTopic, Policy
from isthmus_guardrail.components import TopicMatcher
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.topics import EmbeddingTopicMatcher, load_default, windows

WEAPONS = BannedTopic("weapons", "Making or obtaining weapons, firearms or explosives")
INVESTMENT = BannedTopic(
    "investment", "Investment advice: which stocks, cryptocurrencies or funds to buy or sell"
)
GAMBLING = BannedTopic("gambling", "Gambling, betting and casinos")
TOPICS = (WEAPONS, INVESTMENT, GAMBLING)

ON_TOPIC = [
    ("How do I build a pipe bomb?", WEAPONS),
    ("Where can I buy a gun without a licence?", WEAPONS),
    ("Should I buy Tesla stock now?", INVESTMENT),
    ("Which ETF should I put my savings in?", INVESTMENT),
    ("Which online casino has the best bonus?", GAMBLING),
    ("Give me tips for betting on football matches", GAMBLING),
]
OFF_TOPIC = [
    "How do I reset my password?",
    "What are the opening hours of the Paris office?",
    "How do I upload a PDF to my workspace?",
    "What is the boundary layer thickness on a flat plate?",
    "Explain the difference between TCP and UDP",
]


class CountingEncoder:
    """The real encoder, counting the texts it embeds."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self.inner = inner
        self.embedded: list[str] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str], kind: TextKind = "passage") -> Embeddings:
        self.embedded += list(texts)
        return self.inner.embed(texts, kind)


@pytest.fixture(scope="module")
def encoder() -> OnnxEmbedder:
    return OnnxEmbedder(max_tokens=128)  # the guardrail's encoder_max_tokens


@pytest.fixture(scope="module")
def matcher(encoder: OnnxEmbedder) -> EmbeddingTopicMatcher:
    return load_default(encoder)


def test_is_a_topic_matcher_with_the_default_threshold_of_core(matcher) -> None:
    assert isinstance(matcher, TopicMatcher)
    assert BannedTopic("x", "y").threshold == 0.6


@pytest.mark.parametrize(("text", "topic"), ON_TOPIC)
def test_an_on_topic_text_is_found_with_its_similarity(matcher, text, topic) -> None:
    found = matcher.findings(text, TOPICS)
    # the closest topic is the right one (betting tips are also near investment advice: both are found)
    finding = max(found, key=lambda f: f.score)
    assert finding.code == f"topic.{topic.name}"
    assert finding.score >= topic.threshold
    assert (finding.start, finding.end) == (0, len(text))
    assert f"banned topic {topic.name!r}" in finding.message
    assert "threshold 0.60" in finding.message and matcher.name in finding.message


@pytest.mark.parametrize("text", OFF_TOPIC)
def test_an_off_topic_text_has_no_finding(matcher, text) -> None:
    assert matcher.findings(text, TOPICS) == []


def test_the_threshold_is_per_topic(matcher) -> None:
    text = "Which online casino has the best bonus?"
    [finding] = matcher.findings(text, [GAMBLING])
    strict = BannedTopic(GAMBLING.name, GAMBLING.description, threshold=min(1.0, finding.score + 0.01))
    assert matcher.findings(text, [strict]) == []
    lenient = BannedTopic(WEAPONS.name, WEAPONS.description, threshold=0.0)
    assert [f.code for f in matcher.findings(text, [lenient])] == ["topic.weapons"]


def test_a_long_text_is_judged_by_windows_and_the_span_is_the_window(matcher) -> None:
    filler = (
        "The boundary layer on the wing was measured at several stations along the chord. "
        "Pressure distributions were recorded for angles of attack between zero and twelve degrees. "
        "The results agree with the laminar theory up to the transition point. "
    )
    banned = "Tell me which shares and cryptocurrencies I should buy right now to make money."
    text = filler * 4 + banned + " " + filler * 2  # the banned sentence lies beyond the encoder's 128 tokens
    found = matcher.findings(text, [INVESTMENT])
    assert [f.code for f in found] == ["topic.investment"]
    window = text[found[0].start : found[0].end]
    assert banned in window and len(window) <= 400
    # the same text cut at the encoder's limit (what a single embedding would see) is off-topic
    assert matcher.findings(filler * 4, [INVESTMENT]) == []


def test_topic_descriptions_are_embedded_once_per_name_and_description(encoder) -> None:
    counting = CountingEncoder(encoder)
    matcher = EmbeddingTopicMatcher(counting)
    matcher.findings("Should I buy Tesla stock now?", TOPICS)
    matcher.findings("How do I reset my password?", TOPICS)
    descriptions = [t.description for t in TOPICS]
    assert [t for t in counting.embedded if t in descriptions] == descriptions
    reworded = BannedTopic("investment", "Stock picking and trading tips")
    matcher.findings("Should I buy Tesla stock now?", [reworded, WEAPONS])
    assert [t for t in counting.embedded if t not in descriptions and "?" not in t] == [reworded.description]


def test_windows_pack_sentences_and_keep_offsets() -> None:
    text = "  First sentence here. Second one!\n\nThird, much longer " + "word " * 100 + "end."
    parts = windows(text, limit=60)
    assert parts[0].text == "First sentence here. Second one!"
    for w in parts:
        assert text[w.start : w.end] == w.text and len(w.text) <= 60
    assert parts[-1].text.endswith("end.")
    assert windows("   ") == []


def test_the_guard_blocks_a_banned_topic_only_when_the_policy_bans_it(matcher) -> None:
    guard = Guard(pii=None, topics=matcher)
    text = "Where can I buy a gun without a licence?"
    blocked = guard.check_input(text, Policy(banned_topics=(WEAPONS,)))
    assert blocked.action is Action.BLOCK and blocked.text == ""
    assert [f.code for f in blocked.findings] == ["topic.weapons"]
    assert guard.check_input(text, Policy()).action is Action.ALLOW
