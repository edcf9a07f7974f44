"""Train the learned prompt-injection detector and write its artefact (``make train-injection``).

    python -m isthmus_guardrail.training.injection [--data DIR] [--out DIR]

Data: the S-Labs prompt-injection dataset (MIT), ``train.csv`` / ``validation.csv`` / ``test.csv``
(``text``, ``label``). The model is fitted on ``train.csv`` only; each stage's operating point is chosen
on ``validation.csv`` (input: validation FPR <= 1 %; ingest, where documents are long and many: <= 0.2 %);
``test.csv`` is scored once, for the card. Features: TF-IDF of character n-grams (scikit-learn
``char_wb`` 3-5, sublinear tf, 100k most frequent n-grams with ``min_df=3``) of the text folded like
the rules fold it, next to the bundled bge-small vector (max 128 tokens, ``kind="passage"``); a logistic
regression (C=0.5, lbfgs) over both. Everything is deterministic (row-wise ONNX runs, lbfgs), so a rerun
gives the same metrics; the weights are written as float32 in a plain ``.npz``.

scikit-learn is a development dependency: it is imported here only, never by the service.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_core.onnx_embedder import OnnxEmbedder
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
VERSION = 1
MAX_TOKENS = 128
NGRAM_RANGE = (3, 5)
MAX_FEATURES = 100_000
MIN_DF = 3
C = 0.5
#: validation false-positive rate each stage's operating point allows
FPR_TARGETS = {"input": 0.01, "ingest": 0.002}
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


def rates(
    logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], threshold: float
) -> dict[str, float]:
    flagged = logits >= threshold
    return {
        "tpr": round(float(flagged[labels == 1].mean()), 4),
        "fpr": round(float(flagged[labels == 0].mean()), 4),
    }


def train(data: Path, out: Path) -> dict[str, Any]:
    from scipy.sparse import csr_matrix, hstack
    from sklearn import __version__ as sklearn_version
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train_texts, y_train, train_sha = load_split(data, "train")
    val_texts, y_val, val_sha = load_split(data, "validation")
    test_texts, y_test, test_sha = load_split(data, "test")
    encoder = OnnxEmbedder(max_tokens=MAX_TOKENS)
    print(f"embedding {len(train_texts)} training texts with {encoder.model_id}", flush=True)
    emb_train = encoder.embed(train_texts, kind="passage").vectors

    vectorizer = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAM_RANGE,
        min_df=MIN_DF,
        max_features=MAX_FEATURES,
        sublinear_tf=True,
        lowercase=False,
    )
    folded = [normalise(t).text for t in train_texts]
    x_train = hstack([vectorizer.fit_transform(folded), csr_matrix(emb_train)]).tocsr()
    clf = LogisticRegression(C=C, max_iter=5000).fit(x_train, y_train)
    n_char = len(vectorizer.vocabulary_)
    weights = Weights(
        vocabulary=dict(vectorizer.vocabulary_),
        idf=np.asarray(vectorizer.idf_, dtype=np.float32).astype(np.float64),
        coef_char=np.asarray(clf.coef_[0][:n_char], dtype=np.float32).astype(np.float64),
        coef_emb=np.asarray(clf.coef_[0][n_char:], dtype=np.float32).astype(np.float64),
        intercept=float(clf.intercept_[0]),
        ngram_range=NGRAM_RANGE,
    )
    placeholder = {"name": NAME, "version": VERSION, "thresholds": {s: {"logit": 0.0} for s in FPR_TARGETS}}
    model = LinearInjectionModel(weights, placeholder, encoder)

    # numpy inference == scikit-learn (float32 weights): checked on the validation texts, scored whole
    print("checking numpy inference against scikit-learn on validation", flush=True)
    emb_val = encoder.embed(val_texts, kind="passage").vectors
    x_val = hstack([vectorizer.transform([normalise(t).text for t in val_texts]), csr_matrix(emb_val)])
    parity = float(np.max(np.abs(model.logits(val_texts) - clf.decision_function(x_val.tocsr()))))
    if parity > 1e-3:
        raise SystemExit(f"numpy inference differs from scikit-learn by {parity}")

    print("scoring validation and test in windows (the inference path)", flush=True)
    val_logits = np.array([logit for _, logit in model.window_logits(val_texts)])
    test_logits = np.array([logit for _, logit in model.window_logits(test_texts)])
    thresholds: dict[str, Any] = {}
    test_metrics: dict[str, Any] = {}
    for stage, target in FPR_TARGETS.items():
        thr = threshold_at(val_logits, y_val, target)
        thresholds[stage] = {
            "logit": thr,
            "probability": round(sigmoid(thr), 6),
            "validation_fpr_target": target,
            "validation": rates(val_logits, y_val, thr),
        }
        test_metrics[stage] = rates(test_logits, y_test, thr)

    # other operating points a tenant can choose through its policy's injection_threshold (input stage)
    alternatives = []
    for target in ALTERNATIVE_FPRS:
        thr = threshold_at(val_logits, y_val, target)
        alternatives.append(
            {
                "validation_fpr_target": target,
                "policy_injection_threshold": round(sigmoid(thr - thresholds["input"]["logit"]), 4),
                "validation": rates(val_logits, y_val, thr),
                "test": rates(test_logits, y_test, thr),
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
            "use": "fitted on train only; operating points on validation; test scored once",
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
            "embedding": {"kind": "passage"},
            "windows": "texts over 400 characters: sentences packed into windows of <= 400, max over windows",
        },
        "encoder": {"model_id": encoder.model_id, "max_tokens": MAX_TOKENS, "dimension": encoder.dimension},
        "classifier": {"type": "logistic regression", "C": C, "solver": "lbfgs", "class_weight": None},
        "trained_with": {"scikit-learn": sklearn_version, "python": sys.version.split()[0]},
        "numpy_vs_sklearn_max_abs_logit_diff": round(parity, 8),
        "thresholds": thresholds,
        "test": test_metrics,
        "input_operating_points": alternatives,
        "non_english": NON_ENGLISH,
        "score": "sigmoid(logit - stage threshold): 0.5 = the stage's operating point",
    }
    out.mkdir(parents=True, exist_ok=True)
    weights.save(out / WEIGHTS_FILE)
    (out / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of train/validation/test.csv")
    parser.add_argument("--out", type=Path, default=ARTEFACT_DIR, help="artefact folder to write")
    args = parser.parse_args(argv)
    card = train(args.data, args.out)
    print(json.dumps({"thresholds": card["thresholds"], "test": card["test"]}, indent=2))


if __name__ == "__main__":
    main()
