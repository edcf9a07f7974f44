"""The grounding (NLI) model: features, the plain artefact, findings; with the real cross-encoder (slow)
the issue's two misses are contradicted and the default guard blocks them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Action, Policy
from isthmus_guardrail.components import CONTRADICTED, NOT_ENTAILED, GroundingModel
from isthmus_guardrail.entailment.features import (
    FEATURE_NAMES,
    affix_conflicts,
    antonym_conflicts,
    candidates,
    features,
    number_mismatch,
    quantifier_mismatch,
)
from isthmus_guardrail.entailment.model import (
    CARD_FILE,
    CLASSES,
    DEFAULT_DIR,
    WEIGHTS_FILE,
    Head,
    NliGroundingModel,
    load_model,
    read_card,
)
from isthmus_guardrail.guard import Guard

SOURCE = (
    "Refunds are handled by the billing team. Refunds are paid within five business days after the "
    "returned item arrives. Shipping is free for orders above fifty euros."
)
CONTEXT = Context(chunk_id="c1", document_id="d1", text=SOURCE)
NEGATED = "Refunds are not handled by the billing team."
FIFTY = "Refunds are paid within fifty business days after the returned item arrives."
GROUNDED = "Refunds are paid in five business days."  # not verbatim: the model runs


def cite(text: str, context: Context = CONTEXT) -> AnswerSentence:
    return AnswerSentence(text, (CitedSpan(context.chunk_id, context.document_id, 0, len(context.text)),))


class FakeScorer:
    """Cross-encoder stand-in: relevance = shared words; records what it was asked."""

    model_id = "fake@1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def score(self, query: str, passages: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append((query, tuple(passages)))
        q = set(query.lower().split())
        return np.array([float(len(q & set(p.lower().split()))) - 3.0 for p in passages], dtype=np.float32)


# ------------------------------------------------------------------------------------------ features


def test_antonyms_are_found_across_inflections_and_either_way_round() -> None:
    assert antonym_conflicts("Smoking increases the risk.", "Smoking decreased the risk.") == [
        ("increas", "decreas")
    ]
    assert antonym_conflicts("Drug X inhibits growth.", "Drug X promotes growth.") == [("inhibit", "promot")]
    # both words on both sides: no conflict
    assert antonym_conflicts("It rises and falls.", "It falls and rises.") == []


def test_negative_affixes_and_quantifiers() -> None:
    assert affix_conflicts("The treatment is effective.", "The treatment is ineffective.")
    assert not affix_conflicts("The treatment is effective.", "The treatment is effective.")
    assert quantifier_mismatch("All patients recovered.", "Some patients recovered.")
    assert not quantifier_mismatch("All patients recovered.", "All patients recovered.")


def test_number_mismatch_reads_number_words_like_the_lexical_check() -> None:
    assert number_mismatch("within fifty business days", "within five business days")
    assert not number_mismatch("within 5 business days", "within five business days")


def test_candidates_are_the_k_sentences_sharing_most_words() -> None:
    sentences = ["The sky is blue.", "Refunds are paid.", "Refunds are paid by the billing team.", "Hi."]
    assert candidates("The billing team pays refunds.", sentences, 2) == [2, 1]


def test_feature_vector_has_the_named_features() -> None:
    x = features(NEGATED, SOURCE, ["Refunds are handled by the billing team."], [8.0])
    assert x.shape == (len(FEATURE_NAMES),)
    named = dict(zip(FEATURE_NAMES, x, strict=True))
    # every content word but the negation ("not" is a content word, as in the lexical check)
    assert named["negation_mismatch"] == 1.0 and named["support_aligned"] == pytest.approx(4 / 5)
    assert named["number_mismatch"] == 0.0


# ------------------------------------------------------------------------------------------ artefact


def test_the_bundled_artefact_is_plain_and_matches_the_code() -> None:
    with np.load(DEFAULT_DIR / WEIGHTS_FILE, allow_pickle=False) as data:
        assert tuple(str(n) for n in data["feature_names"]) == FEATURE_NAMES
    card = read_card()
    assert card["features"] == list(FEATURE_NAMES)
    data = card["training_data"]
    assert isinstance(data, dict)
    assert set(data["sha256"]) == {"cranfield/corpus.jsonl", "cisi/corpus.jsonl"}  # never scifact
    assert "make train-grounding" in str(card["training_command"])


def test_head_round_trips_and_refuses_weights_for_other_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = len(FEATURE_NAMES)
    head = Head(
        mean=rng.normal(size=n), scale=np.ones(n), coef=rng.normal(size=(3, n)), intercept=np.zeros(3)
    )
    head.save(tmp_path / "h.npz")
    loaded = Head.load(tmp_path / "h.npz")
    x = rng.normal(size=n)
    assert np.allclose(loaded.probabilities(x), head.probabilities(x))
    assert np.isclose(head.probabilities(x).sum(), 1.0)
    head.save(tmp_path / "old.npz", feature_names=(*FEATURE_NAMES[:-1], "something_else"))
    with pytest.raises(ConfigurationError, match="make train-grounding"):
        Head.load(tmp_path / "old.npz")
    with pytest.raises(ConfigurationError, match="could not be read"):
        Head.load(tmp_path / "missing.npz")


def test_a_model_folder_without_a_card_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=CARD_FILE):
        load_model(FakeScorer(), tmp_path)


# ------------------------------------------------------------------------------------------ findings


class FixedHead(Head):
    def __init__(self, probs: Sequence[float]) -> None:
        n = len(FEATURE_NAMES)
        super().__init__(np.zeros(n), np.ones(n), np.zeros((3, n)), np.log(np.array(probs, dtype=np.float64)))


def model_with(probs: Sequence[float], scorer: FakeScorer | None = None, k: int = 3) -> NliGroundingModel:
    return NliGroundingModel(scorer or FakeScorer(), FixedHead(probs), name="nli-test@1", candidates=k)


def test_is_a_grounding_model() -> None:
    assert isinstance(model_with((0.8, 0.1, 0.1)), GroundingModel)


def test_contradiction_at_the_policy_threshold_is_a_finding_naming_model_and_probabilities() -> None:
    [finding] = model_with((0.1, 0.2, 0.7)).findings([cite(NEGATED)], [CONTEXT], Policy())
    assert finding.code == CONTRADICTED and finding.score == pytest.approx(0.7)
    assert finding.message.startswith("sentence 0:")
    assert "nli-test@1" in finding.message and "P(contradiction)=0.70" in finding.message
    assert (
        model_with((0.1, 0.2, 0.7)).findings([cite(NEGATED)], [CONTEXT], Policy(contradiction_threshold=0.8))
        == []
    )


def test_not_entailed_only_when_the_policy_sets_an_entailment_threshold() -> None:
    model = model_with((0.3, 0.6, 0.1))
    assert model.findings([cite(GROUNDED)], [CONTEXT], Policy()) == []
    [finding] = model.findings([cite(GROUNDED)], [CONTEXT], Policy(entailment_threshold=0.5))
    assert finding.code == NOT_ENTAILED and finding.score == pytest.approx(0.7)


def test_sentences_citing_nothing_known_are_left_to_the_lexical_check() -> None:
    scorer = FakeScorer()
    model = model_with((0.0001, 0.0001, 0.9998), scorer)
    unknown = AnswerSentence(NEGATED, (CitedSpan("c9", "d9", 0, 10),))
    wrong_document = AnswerSentence(NEGATED, (CitedSpan("c1", "d2", 0, 10),))
    assert model.findings([AnswerSentence(NEGATED), unknown, wrong_document], [CONTEXT], Policy()) == []
    assert scorer.calls == []


def test_a_verbatim_quote_is_entailed_without_a_model_run() -> None:
    scorer = FakeScorer()
    model = model_with((0.0001, 0.0001, 0.9998), scorer)  # a head that says "contradiction" to all
    quote = "refunds are paid within five business days  after the returned item arrives"
    assert model.judge(quote, SOURCE).label == "entailment"
    assert model.findings([cite(quote)], [CONTEXT], Policy(entailment_threshold=0.9)) == []
    assert scorer.calls == []
    assert model.judge(NEGATED, SOURCE).label == "contradiction" and len(scorer.calls) == 1


def test_only_the_cited_part_and_at_most_k_sentences_go_through_the_cross_encoder() -> None:
    scorer = FakeScorer()
    model = model_with((0.8, 0.1, 0.1), scorer, k=2)
    long_context = Context(
        chunk_id="c2", document_id="d2", text=" ".join(f"Sentence {i} is here." for i in range(20))
    )
    cut = long_context.text.index("Sentence 10")
    sentence = AnswerSentence("Sentence 12 is shown.", (CitedSpan("c2", "d2", cut, len(long_context.text)),))
    model.findings([sentence], [long_context], Policy())
    [(query, passages)] = scorer.calls
    assert query == "Sentence 12 is shown." and len(passages) == 2
    assert "Sentence 12 is here." in passages and not any("Sentence 9 " in p for p in passages)


# ------------------------------------------------------------------------------------------ real model


@pytest.fixture(scope="module")
def real_model() -> Iterator[NliGroundingModel]:
    from isthmus_core.onnx_reranker import OnnxCrossEncoder
    from isthmus_guardrail.entailment import load_default

    cross_encoder = OnnxCrossEncoder(parallel_runs=1)
    yield load_default(cross_encoder)
    cross_encoder.close()


@pytest.mark.slow
@pytest.mark.parametrize("claim", [NEGATED, FIFTY])
def test_the_issues_misses_are_contradicted(real_model: NliGroundingModel, claim: str) -> None:
    judgement = real_model.judge(claim, SOURCE)
    assert judgement.label == "contradiction", judgement
    [finding] = real_model.findings([cite(claim)], [CONTEXT], Policy())
    assert finding.code == CONTRADICTED


@pytest.mark.slow
@pytest.mark.parametrize("claim", [NEGATED, FIFTY])
def test_the_default_guard_with_the_model_blocks_the_issues_misses(
    real_model: NliGroundingModel, claim: str
) -> None:
    verdict = Guard(pii=None, grounding_model=real_model).check_output([cite(claim)], [CONTEXT], Policy())
    assert verdict.action is Action.BLOCK and verdict.text == ""
    assert CONTRADICTED in {f.code for f in verdict.findings}


@pytest.mark.slow
@pytest.mark.parametrize(
    "claim",
    [GROUNDED, "The billing team handles refunds.", "Orders above fifty euros are shipped for free."],
)
def test_grounded_sentences_pass_the_default_guard_with_the_model(
    real_model: NliGroundingModel, claim: str
) -> None:
    judgement = real_model.judge(claim, SOURCE)
    assert judgement.label == "entailment", judgement
    verdict = Guard(pii=None, grounding_model=real_model).check_output([cite(claim)], [CONTEXT], Policy())
    assert verdict.action is Action.ALLOW and verdict.findings == ()


@pytest.mark.slow
def test_an_unrelated_sentence_is_neutral(real_model: NliGroundingModel) -> None:
    assert real_model.judge("The office is closed on Sundays.", SOURCE).label == "neutral"


def test_classes_are_in_the_artefacts_order() -> None:
    assert CLASSES == ("entailment", "neutral", "contradiction")
