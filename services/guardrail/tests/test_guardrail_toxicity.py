"""Toxicity: the better-profanity lexicon (less ordinary words), obfuscation-aware, plus insult/threat
patterns; no findings on any genuine IR question."""

from __future__ import annotations

import json

import pytest

from isthmus_core.ports.guard import Action, Policy
from isthmus_core.testing.infra import shared_datasets
from isthmus_guardrail.components import ToxicityDetector
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.toxicity import (
    INSULT,
    MILD_SCORE,
    PROFANITY,
    PROFANITY_SCORE,
    SLUR_SCORE,
    THREAT,
    LexiconToxicityDetector,
    lexicon_words,
    load_default,
)


@pytest.fixture(scope="module")
def detector() -> LexiconToxicityDetector:
    return load_default()


def test_the_word_list_ships_in_the_wheel_and_is_named_with_its_version(detector) -> None:
    words = lexicon_words()
    assert len(words) > 800 and "fuck" in words
    assert isinstance(detector, ToxicityDetector)
    assert detector.lexicon.startswith("better-profanity@")
    [finding] = detector.findings("well fuck")
    assert detector.lexicon in finding.message


@pytest.mark.parametrize(
    ("text", "span", "how"),
    [
        ("this is shit", "shit", ""),
        ("this is SH1T", "SH1T", ""),  # leetspeak undone by injection.normalise
        ("this is \uff53\uff48\uff49\uff54", "\uff53\uff48\uff49\uff54", ""),  # full-width letters
        ("this is sh\u200bit", "sh\u200bit", ""),  # a zero-width space inside
        ("this is \u0455hit", "\u0455hit", ""),  # a Cyrillic look-alike
        ("f.u.c.k this", "f.u.c.k", "spelled apart"),
        ("s h i t happens", "s h i t", "spelled apart"),
        ("what the f*ck", "f*ck", "masked"),
        ("what the f#ck", "f#ck", "masked"),
        ("fuuuuuck", "fuuuuuck", "stretched"),
        ("unfuckingbelievable", "unfuckingbelievable", "compound"),
    ],
)
def test_profanity_is_found_through_obfuscation_with_its_span(detector, text, span, how) -> None:
    [finding] = detector.findings(text)
    assert finding.code == PROFANITY
    assert text[finding.start : finding.end] == span
    expected = PROFANITY_SCORE * (0.95 if how else 1.0)
    assert finding.score == pytest.approx(expected)
    assert (f"written {how}" in finding.message) is bool(how)


def test_mild_swearing_is_reported_below_the_default_threshold(detector) -> None:
    [finding] = detector.findings("damn, the upload failed again")
    assert finding.code == PROFANITY and finding.score == MILD_SCORE < Policy().toxicity_threshold
    assert "mild profanity 'damn'" in finding.message


def test_a_slur_is_an_insult_wherever_it_stands(detector) -> None:
    [finding] = detector.findings("they are all f4ggots")
    assert finding.code == INSULT and finding.score == SLUR_SCORE
    assert "slur 'faggot'" in finding.message and finding.end - finding.start == len("f4ggots")


@pytest.mark.parametrize(
    ("text", "code", "span"),
    [
        ("You are a complete idiot", INSULT, "You are a complete idiot"),
        ("you're useless", INSULT, "you're useless"),
        ("this stupid bot never answers", INSULT, "this stupid bot"),
        ("shut up and answer", INSULT, "shut up"),
        ("what a moron", INSULT, "what a moron"),
        ("I will kill you", THREAT, "I will kill you"),
        ("I'm going to hurt you", THREAT, "I'm going to hurt you"),
        ("we'll murder your family", THREAT, "we'll murder your family"),
        ("just kill yourself", THREAT, "kill yourself"),
        ("I know where you live.", THREAT, "I know where you live"),
        ("You'll regret this", THREAT, "You'll regret this"),
        ("I'll k1ll you", THREAT, "I'll k1ll you"),
    ],
)
def test_insults_and_threats_are_found_with_spans(detector, text, code, span) -> None:
    found = [f for f in detector.findings(text) if f.code == code]
    assert found, detector.findings(text)
    assert text[found[0].start : found[0].end] == span
    assert found[0].score >= 0.8
    assert span.split()[0].lower() in found[0].message.lower()


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe United beat Arsenal",  # no substring matching
        "I'll shoot you an email with the figures",  # an object after 'you': no threat
        "I'll burn you a CD of the logs",
        "How do cytotoxic T cells kill tumour cells?",  # violence words need a target
        "What is the jerk of the aircraft at touchdown?",  # ordinary words of the lexicon
        "Does a cock valve leak under pressure?",
        "Sex differences in penile and breast cancer incidence",
        "Which screw thread fits the housing?",
        "Why is the word moron considered offensive?",
        "Can you garbage collect the old chunks?",
        "Mortality fell in the treated group (p < 0.05)* and the **bold** claim held*",
        "What a great answer, thank you",
        "Gay and lesbian patrons of public libraries",
        "retarded potentials in electrodynamics",
        "",
    ],
)
def test_ordinary_text_has_no_findings(detector, text) -> None:
    assert detector.findings(text) == []


def test_no_genuine_ir_question_has_a_finding(detector) -> None:
    paths = sorted(shared_datasets(why="the genuine IR questions").glob("*/queries.jsonl"))
    assert paths
    questions = [json.loads(line)["text"] for p in paths for line in p.read_text().splitlines() if line]
    assert len(questions) > 600
    flagged = {q: detector.findings(q) for q in questions if detector.findings(q)}
    assert flagged == {}


def test_the_guard_blocks_abuse_and_a_tolerant_policy_lets_swearing_through(detector) -> None:
    guard = Guard(pii=None, toxicity=detector)
    abuse = guard.check_input("You are a useless idiot, answer me", Policy())
    assert abuse.action is Action.BLOCK and abuse.text == ""
    assert {f.code for f in abuse.findings} == {INSULT}

    swearing = "why the fuck does the upload fail?"
    assert guard.check_input(swearing, Policy()).action is Action.BLOCK
    tolerant = Policy(toxicity_threshold=0.75)
    allowed = guard.check_input(swearing, tolerant)
    assert allowed.action is Action.ALLOW and allowed.text == swearing
    assert [f.code for f in allowed.findings] == [PROFANITY]
    assert guard.check_input("I will kill you", tolerant).action is Action.BLOCK
    assert guard.check_input(swearing, Policy(block_toxicity=False)).action is Action.ALLOW
