"""Train the learned prompt-injection detector and write its artefact (``make train-injection``).

    python -m isthmus_guardrail.training.injection [--data DIR] [--out DIR] [--cache DIR]

Data: the S-Labs prompt-injection dataset (MIT), ``train.csv`` / ``validation.csv`` / ``test.csv``
(``text``, ``label``). The models are fitted on ``train.csv`` only; each stage's operating point and
cascade band are chosen on ``validation.csv`` (input: validation FPR <= 1 %; ingest, where documents are
long and many: <= 0.2 %); ``test.csv`` is scored once, for the card.

Features: TF-IDF of character n-grams (scikit-learn ``char_wb`` 3-5, sublinear tf, 100k most frequent
with ``min_df=3``) and of word 1-2-grams (``word``, tokens ``\\b\\w+\\b``, sublinear tf, ``min_df=2``) of
the text folded like the rules fold it, next to the bundled bge-small vector (max 128 tokens,
``kind="passage"``). The *full* model: a logistic regression (C=0.25, lbfgs) over all three; the
*fast* model: a ridge regression (alpha=3) of the full model's training logits on the n-grams alone
(distillation: it agrees with the full model more often than a classifier of the labels would, so fewer
texts need the vector). Cascade band per stage: the fast logits of the validation texts
(windows at ingest) the full model flags reach down to ``benign_below``, those it does not flag up to
``injection_above``; outside the band the fast model decides, so every validation decision is the full
model's (checked through the inference path).

Choices (on validation, see the model README): C and the word n-grams by validation TPR at FPR 1 %;
the fast model (ridge alpha, distillation rather than a classifier) by the validation share of texts
inside the band;
the input stage scores texts whole (not windows) because on long validation texts built by
concatenation whole-text scores separate injections from benign texts better (AUC) than the max over
windows.

Everything is deterministic (row-wise ONNX runs, lbfgs), so a rerun gives the same metrics; the weights
are written as float32 in a plain ``.npz``. ``--cache DIR`` keeps the training/validation/test vectors
between runs (keyed by the file's sha256 and the encoder).

scikit-learn is a development dependency: it is imported here only, never by the service.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_core.onnx_embedder import OnnxEmbedder
from isthmus_guardrail.detector.features import WORD_TOKEN, windows
from isthmus_guardrail.detector.model import (
    ARTEFACT_DIR,
    CARD_FILE,
    WEIGHTS_FILE,
    LinearInjectionModel,
    Weights,
    sigmoid,
)
from isthmus_guardrail.injection import normalise

NAME = "injection-lr"
VERSION = 2
MAX_TOKENS = 128
NGRAM_RANGE = (3, 5)
WORD_NGRAM_RANGE = (1, 2)
MAX_FEATURES = 100_000
MIN_DF = 3
WORD_MIN_DF = 2
C = 0.25
#: ridge penalty of the fast model (chosen on validation: the smallest share of texts needing the vector)
FAST_ALPHA = 3.0
#: validation false-positive rate each stage's operating point allows
FPR_TARGETS = {"input": 0.01, "ingest": 0.002}
#: stages scored in windows (long texts: sentences packed to <= 400 characters, max over windows)
WINDOWED = {"input": False, "ingest": True}
#: further validation FPRs whose equivalent policy threshold the card lists
ALTERNATIVE_FPRS = (0.002, 0.005, 0.01, 0.02, 0.05)
DEFAULT_DATA = Path("../shared/datasets/injection")
NON_ENGLISH = (
    "Trained on English text only, with an English encoder (bge-small-en): on other languages it sees "
    "character n-grams and a weaker vector, and catches fewer attacks (see README.md beside this card and "
    "the multilingual mini-set of make bench-guardrails); the multilingual rules (FR, DE, ES, IT, PT, NL) "
    "are the floor there."
)


def load_split(data: Path, split: str) -> tuple[list[str], npt.NDArray[np.int64], str]:
    path = data / f"{split}.csv"
    raw = path.read_bytes()
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return (
        [r["text"] for r in rows],
        np.array([int(r["label"]) for r in rows]),
        hashlib.sha256(raw).hexdigest(),
    )


def threshold_at(logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], fpr: float) -> float:
    """The lowest logit threshold flagging at most ``fpr`` of the benign texts (flagged = logit >= it)."""
    benign = np.sort(logits[labels == 0])[::-1]
    allowed = int(np.floor(fpr * len(benign)))
    return float(np.nextafter(benign[allowed], np.inf))


def rates(flagged: npt.NDArray[np.bool_], labels: npt.NDArray[np.int64]) -> dict[str, float]:
    return {
        "tpr": round(float(flagged[labels == 1].mean()), 4),
        "fpr": round(float(flagged[labels == 0].mean()), 4),
    }


def embed(
    encoder: OnnxEmbedder, texts: Sequence[str], sha: str, cache: Path | None
) -> npt.NDArray[np.float32]:
    """The passage vectors of ``texts`` (read from / written to ``cache`` when given)."""
    path = None
    if cache is not None:
        path = cache / f"{sha[:16]}-{encoder.model_id.replace('@', '-')}-{MAX_TOKENS}.npy"
        if path.is_file():
            cached: npt.NDArray[np.float32] = np.load(path, allow_pickle=False)
            return cached
    vectors = np.asarray(encoder.embed(list(texts), kind="passage").vectors, dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def units(texts: Sequence[str], windowed: bool) -> tuple[list[str], npt.NDArray[np.int64]]:
    """The pieces a stage scores (windows or whole texts) and, for each, the index of its text."""
    pieces: list[str] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        spans = windows(t) if windowed else [(0, len(t))]
        pieces += [t[s:e] for s, e in spans]
        owner += [i] * len(spans)
    return pieces, np.array(owner, dtype=np.int64)


def per_text(
    values: npt.NDArray[np.float64], owner: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    """The highest value of each text's pieces."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, owner, values)
    return out


def train(data: Path, out: Path, cache: Path | None = None) -> dict[str, Any]:
    from scipy.sparse import csr_matrix, hstack
    from sklearn import __version__ as sklearn_version
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    train_texts, y_train, train_sha = load_split(data, "train")
    val_texts, y_val, val_sha = load_split(data, "validation")
    test_texts, y_test, test_sha = load_split(data, "test")
    encoder = OnnxEmbedder(max_tokens=MAX_TOKENS)
    print(f"embedding {len(train_texts)} training texts with {encoder.model_id}", flush=True)
    emb_train = embed(encoder, train_texts, train_sha, cache)

    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAM_RANGE,
        min_df=MIN_DF,
        max_features=MAX_FEATURES,
        sublinear_tf=True,
        lowercase=False,
    )
    words = TfidfVectorizer(
        analyzer="word",
        ngram_range=WORD_NGRAM_RANGE,
        min_df=WORD_MIN_DF,
        sublinear_tf=True,
        lowercase=True,
        token_pattern=WORD_TOKEN,
    )
    folded = [normalise(t).text for t in train_texts]
    x_chars = chars.fit_transform(folded)
    x_words = words.fit_transform(folded)
    x_full = hstack([x_chars, x_words, csr_matrix(emb_train)]).tocsr()
    full = LogisticRegression(C=C, max_iter=5000).fit(x_full, y_train)
    # the fast model imitates the full model's logits from the n-grams alone (distillation): it agrees
    # with the full model more often than a classifier fitted on the labels, so fewer texts need the vector
    fast = Ridge(alpha=FAST_ALPHA).fit(hstack([x_chars, x_words]).tocsr(), full.decision_function(x_full))
    n_char, n_word = len(chars.vocabulary_), len(words.vocabulary_)

    def f32(a: Any) -> npt.NDArray[np.float64]:
        return np.asarray(a, dtype=np.float32).astype(np.float64)

    weights = Weights(
        vocabulary=dict(chars.vocabulary_),
        idf=f32(chars.idf_),
        coef_char=f32(full.coef_[0][:n_char]),
        coef_emb=f32(full.coef_[0][n_char + n_word :]),
        intercept=float(full.intercept_[0]),
        ngram_range=NGRAM_RANGE,
        word_vocabulary=dict(words.vocabulary_),
        word_idf=f32(words.idf_),
        coef_word=f32(full.coef_[0][n_char : n_char + n_word]),
        word_ngram_range=WORD_NGRAM_RANGE,
        fast_coef_char=f32(fast.coef_[:n_char]),
        fast_coef_word=f32(fast.coef_[n_char:]),
        fast_intercept=float(fast.intercept_),
    )
    no_cascade = {
        "name": NAME,
        "version": VERSION,
        "thresholds": {s: {"logit": 0.0, "windows": WINDOWED[s]} for s in FPR_TARGETS},
    }
    model = LinearInjectionModel(weights, no_cascade, encoder)

    # numpy inference == scikit-learn (float32 weights): checked on the validation texts, scored whole
    print("checking numpy inference against scikit-learn on validation", flush=True)
    emb_val = embed(encoder, val_texts, val_sha, cache)
    val_folded = [normalise(t).text for t in val_texts]
    x_val_ngrams = hstack([chars.transform(val_folded), words.transform(val_folded)])
    x_val = hstack([x_val_ngrams, csr_matrix(emb_val)]).tocsr()
    lexical = np.array([weights.lexical_logits(t) for t in val_texts])
    numpy_full = lexical[:, 0] + emb_val.astype(np.float64) @ weights.coef_emb + weights.intercept
    parity = max(
        float(np.max(np.abs(numpy_full - full.decision_function(x_val)))),
        float(np.max(np.abs(lexical[:, 1] - fast.predict(x_val_ngrams.tocsr())))),
    )
    if parity > 1e-3:
        raise SystemExit(f"numpy inference differs from scikit-learn by {parity}")

    # operating points and cascade bands, per stage, on validation units (whole texts or windows)
    thresholds: dict[str, Any] = {}
    val_full_logits: dict[str, npt.NDArray[np.float64]] = {}
    for stage, target in FPR_TARGETS.items():
        pieces, owner = units(val_texts, WINDOWED[stage])
        # a piece that is its whole text reuses the text's logits; only windows of long texts are scored
        whole = np.array([p == val_texts[i] for p, i in zip(pieces, owner, strict=True)])
        unit_full = np.where(whole, numpy_full[owner], 0.0)
        unit_fast = np.where(whole, lexical[owner, 1], 0.0)
        cut = [p for p, w in zip(pieces, whole, strict=True) if not w]
        if cut:
            unit_full[~whole] = model.logits(cut)
            unit_fast[~whole] = model.fast_logits(cut)
        text_full = per_text(unit_full, owner, len(val_texts))
        text_fast = per_text(unit_fast, owner, len(val_texts))
        thr = threshold_at(text_full, y_val, target)
        fast_thr = threshold_at(text_fast, y_val, target)
        flagged_units = unit_full >= thr
        benign_below = float(min(unit_fast[flagged_units].min(), fast_thr))
        injection_above = float(max(unit_fast[~flagged_units].max(), fast_thr))
        in_band = (unit_fast >= benign_below) & (unit_fast <= injection_above)
        val_full_logits[stage] = text_full
        thresholds[stage] = {
            "logit": thr,
            "probability": round(sigmoid(thr), 6),
            "validation_fpr_target": target,
            "windows": WINDOWED[stage],
            "validation": rates(text_full >= thr, y_val),
            "cascade": {
                "fast_logit": fast_thr,
                "benign_below": benign_below,
                "injection_above": injection_above,
                "validation_share_embedded": round(float(in_band.mean()), 4),
                "fast_model_alone_validation": rates(text_fast >= fast_thr, y_val),
            },
        }
    card_thresholds = {"name": NAME, "version": VERSION, "thresholds": thresholds}
    model = LinearInjectionModel(weights, card_thresholds, encoder)

    # the inference path (cascade) must take every validation decision of the full model
    print("scoring validation and test through the inference path (cascade)", flush=True)
    test_metrics: dict[str, Any] = {}
    test_scores: dict[str, npt.NDArray[np.float64]] = {}
    for stage in FPR_TARGETS:
        val_scored = [s for _, s in model.window_scores(val_texts, stage)]  # type: ignore[arg-type]
        cascade_flags = np.array([s.logit >= s.threshold for s in val_scored])
        full_flags = val_full_logits[stage] >= thresholds[stage]["logit"]
        if not np.array_equal(cascade_flags, full_flags):
            changed = int((cascade_flags != full_flags).sum())
            raise SystemExit(f"{stage}: the cascade changes {changed} validation decisions")
        test_scored = [s for _, s in model.window_scores(test_texts, stage)]  # type: ignore[arg-type]
        test_scores[stage] = np.array([s.logit - s.threshold for s in test_scored])
        test_metrics[stage] = rates(test_scores[stage] >= 0, y_test)
        test_metrics[stage]["share_embedded"] = round(float(np.mean([s.embedded for s in test_scored])), 4)

    # other operating points a tenant can choose through its policy's injection_threshold (input stage),
    # for the full model scored whole (the cascade band is exact at the stage's own point only)
    emb_test = embed(encoder, test_texts, test_sha, cache)
    test_full = np.array([weights.lexical_logits(t)[0] for t in test_texts])
    test_full += emb_test.astype(np.float64) @ weights.coef_emb + weights.intercept
    alternatives = []
    for target in ALTERNATIVE_FPRS:
        thr = threshold_at(val_full_logits["input"], y_val, target)
        alternatives.append(
            {
                "validation_fpr_target": target,
                "policy_injection_threshold": round(sigmoid(thr - thresholds["input"]["logit"]), 4),
                "validation": rates(val_full_logits["input"] >= thr, y_val),
                "test": rates(test_full >= thr, y_test),
            }
        )

    card: dict[str, Any] = {
        "name": NAME,
        "version": VERSION,
        "task": "prompt injection / jailbreak detection (1 = injection)",
        "training_command": "make train-injection (python -m isthmus_guardrail.training.injection)",
        "data": {
            "source": "S-Labs/prompt-injection-dataset (MIT), via ../shared/datasets/injection",
            "sha256": {"train.csv": train_sha, "validation.csv": val_sha, "test.csv": test_sha},
            "rows": {"train": len(train_texts), "validation": len(val_texts), "test": len(test_texts)},
            "use": "fitted on train only; operating points and cascade bands on validation; test scored once",
        },
        "features": {
            "char_ngrams": {
                "analyzer": "char_wb",
                "ngram_range": list(NGRAM_RANGE),
                "min_df": MIN_DF,
                "max_features": MAX_FEATURES,
                "sublinear_tf": True,
                "preprocessing": "isthmus_guardrail.injection.normalise",
                "vocabulary_size": n_char,
            },
            "word_ngrams": {
                "analyzer": "word",
                "ngram_range": list(WORD_NGRAM_RANGE),
                "token_pattern": WORD_TOKEN,
                "min_df": WORD_MIN_DF,
                "sublinear_tf": True,
                "preprocessing": "isthmus_guardrail.injection.normalise",
                "vocabulary_size": n_word,
            },
            "embedding": {"kind": "passage"},
            "windows": "input: texts scored whole (vector: first 128 tokens; n-grams: all); ingest: texts "
            "over 400 characters in windows of sentences packed to <= 400, max over windows",
        },
        "encoder": {"model_id": encoder.model_id, "max_tokens": MAX_TOKENS, "dimension": encoder.dimension},
        "classifier": {
            "full": {"type": "logistic regression", "features": "char + word n-grams + vector", "C": C},
            "fast": {
                "type": "ridge regression on the full model's training logits (distillation)",
                "features": "char + word n-grams",
                "alpha": FAST_ALPHA,
            },
            "solver": "lbfgs",
            "class_weight": None,
            "cascade": "per stage: fast logit < benign_below -> benign, > injection_above -> injection "
            "(fast model's score), else the full model with the encoder",
        },
        "trained_with": {"scikit-learn": sklearn_version, "python": sys.version.split()[0]},
        "numpy_vs_sklearn_max_abs_logit_diff": round(parity, 8),
        "thresholds": thresholds,
        "test": test_metrics,
        "input_operating_points": alternatives,
        "non_english": NON_ENGLISH,
        "score": "sigmoid(logit - stage threshold) of the deciding model: 0.5 = the stage's operating point",
    }
    out.mkdir(parents=True, exist_ok=True)
    weights.save(out / WEIGHTS_FILE)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of train/validation/test.csv")
    parser.add_argument("--out", type=Path, default=ARTEFACT_DIR, help="artefact folder to write")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping the vectors between runs")
    args = parser.parse_args(argv)
    card = train(args.data, args.out, args.cache)
    print(json.dumps({"thresholds": card["thresholds"], "test": card["test"]}, indent=2))


if __name__ == "__main__":
    main()
