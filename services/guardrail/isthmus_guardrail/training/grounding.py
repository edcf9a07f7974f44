"""Train the grounding model's head (``make train-grounding``): synthetic NLI pairs from Cranfield + CISI.

    python -m isthmus_guardrail.training.grounding [--datasets ../shared/datasets] [--out <models/grounding>]

Training data (never SciFact: it is the CC BY-NC evaluation set). From the abstracts of the Cranfield
(aeronautics) and CISI (library science) research collections, with the whole abstract as the premise:

* **entailment** — a sentence of the abstract as it is; a clause of it (cut at a comma, semicolon, "and",
  "which"); it with hedges/modifiers and parentheses dropped; the "that"-clause of "results show that
  ..."; the document's title (a summary of the abstract; Cranfield's copy of the title at the start of
  the text is removed first);
* **contradiction** — one of those, negated ("not" added after the first auxiliary, or removed), an
  antonym of the curated lexicon swapped in ("increases" -> "decreases"), a number changed
  ("five" -> "fifty", "20" -> "200"), or a quantifier flipped ("all" -> "no", "always" -> "never");
* **neutral** — a sentence or the title of another, similar abstract of the same collection (most
  shared content words), a sentence of the abstract held out of the premise when the rest does not
  hold its words, and a quarter of these negated/antonym-swapped/number-changed the same way (so
  "negated" alone does not mean "contradicted": a negated *unrelated* sentence stays neutral).

Documents are split 80/20 into train and validation by document id (no abstract in both); the head is
fitted on train and its validation metrics are written to the card. Deterministic: a fixed seed, the
same cross-encoder, the same scikit-learn solver -> the same weights up to float rounding.
scikit-learn is a dev dependency: imported only here, never at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from isthmus_guardrail.entailment.features import (
    FEATURE_NAMES,
    candidates,
    features,
    sentences_of,
)
from isthmus_guardrail.entailment.lexicon import ANTONYM_PAIRS
from isthmus_guardrail.entailment.model import (
    CARD_FILE,
    CLASSES,
    DEFAULT_CANDIDATES,
    DEFAULT_DIR,
    WEIGHTS_FILE,
    Head,
    PairScorer,
)
from isthmus_guardrail.grounding import content_words

NAME = "grounding-lr"
VERSION = "1"
SEED = 16
PER_CLASS = 1100
COLLECTIONS = ("cranfield", "cisi")
C = 1.0

_AUX = "is are was were can could may might will would should must has have had does do did cannot".split()
_MODIFIERS = frozenset(
    "very quite significantly substantially approximately relatively generally also further thus "
    "therefore however moreover furthermore particularly especially considerably slightly rather "
    "usually often typically mainly largely".split()
)
_THAT = re.compile(
    r"^.*?\b(?:show|shows|showed|shown|indicate|indicates|indicated|suggest|suggests|suggested|found|"
    r"find|finds|demonstrate|demonstrates|demonstrated|reveal|reveals|revealed|conclude|concluded|"
    r"concludes)\s+that\s+(.+)$"
)
_NUMBER_WORDS = {
    "one": "two", "two": "three", "three": "four", "four": "six", "five": "fifty", "six": "sixteen",
    "seven": "seventy", "eight": "eighty", "nine": "nineteen", "ten": "twenty", "twenty": "two hundred",
    "fifty": "five", "hundred": "thousand", "thousand": "million",
}  # fmt: skip
_QUANTIFIERS = {"all": "no", "always": "never", "every": "no", "never": "always", "none": "all"}


@dataclass(frozen=True, slots=True)
class Doc:
    collection: str
    doc_id: str
    title: str
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass(frozen=True, slots=True)
class Example:
    hypothesis: str
    premise: str
    label: str  # one of CLASSES
    kind: str  # how it was made
    doc: str  # collection/doc id (for the split)


# ----------------------------------------------------------------------------------------- corpora


def _clean(sentence: str) -> str:
    s = re.sub(r"\s+", " ", sentence).strip()
    s = re.sub(r"\s+([.,;:?!)])", r"\1", s)
    s = re.sub(r"([(])\s+", r"\1", s)
    s = s.rstrip(" .,;:")
    if not s:
        return ""
    return s[0].upper() + s[1:] + "."


def load_docs(datasets: Path) -> list[Doc]:
    docs = []
    for collection in COLLECTIONS:
        with (datasets / collection / "corpus.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                title, text = _clean(row.get("title", "")), row.get("text", "")
                raw_title = row.get("title", "").strip().rstrip(" .").strip()
                if raw_title and text.strip().startswith(raw_title):  # Cranfield repeats the title
                    text = text.strip()[len(raw_title) :].lstrip(" .")
                sentences = tuple(c for s in sentences_of(text) if (c := _clean(s)))
                if len(sentences) >= 3:
                    docs.append(Doc(collection, str(row["_id"]), title, sentences))
    return docs


def corpus_digests(datasets: Path) -> dict[str, str]:
    return {
        f"{c}/corpus.jsonl": hashlib.sha256((datasets / c / "corpus.jsonl").read_bytes()).hexdigest()
        for c in COLLECTIONS
    }


# ------------------------------------------------------------------------------------- transforms


def _words(s: str) -> list[str]:
    return s.split(" ")


def _usable(s: str) -> bool:
    n = len(s.split())
    return 6 <= n <= 40


def clause(s: str, rng: random.Random) -> str | None:
    body = s.rstrip(".")
    parts = [p.strip() for p in re.split(r",|;| and | which | whereas | while ", body) if p.strip()]
    parts = [p for p in parts if len(p.split()) >= 5]
    if len(parts) < 2:
        return None
    return _clean(rng.choice(parts))


def drop_modifiers(s: str) -> str | None:
    t = re.sub(r"\s*\([^)]*\)", "", s)
    kept = [w for w in _words(t) if w.lower().strip(",") not in _MODIFIERS]
    out = _clean(" ".join(kept))
    return out if out != s and len(kept) >= 5 else None


def that_clause(s: str) -> str | None:
    m = _THAT.match(s.rstrip("."))
    if not m or len(m.group(1).split()) < 5:
        return None
    return _clean(m.group(1))


def negate(s: str) -> str | None:
    words = _words(s.rstrip("."))
    for i, w in enumerate(words):
        lw = w.lower()
        if lw in ("not", "never"):
            return _clean(" ".join(words[:i] + words[i + 1 :]))
        if lw == "cannot":
            return _clean(" ".join([*words[:i], "can", *words[i + 1 :]]))
    for i, w in enumerate(words):
        if w.lower() in _AUX and w.lower() != "cannot" and 0 < i < len(words) - 1:
            return _clean(" ".join([*words[: i + 1], "not", *words[i + 1 :]]))
    return None


def _inflections(word: str) -> dict[str, str]:
    base = word[:-1] if word.endswith("e") else word
    return {"": word, "s": word + "s", "d": base + "ed", "ing": base + "ing", "ly": word + "ly"}


def _antonym_map() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for a, b in ANTONYM_PAIRS:
        fa, fb = _inflections(a), _inflections(b)
        for suffix in fa:
            mapping.setdefault(fa[suffix], fb[suffix])
            mapping.setdefault(fb[suffix], fa[suffix])
    return mapping


_ANTONYM_MAP = _antonym_map()


def swap_antonym(s: str, rng: random.Random) -> str | None:
    words = _words(s.rstrip("."))
    spots = [i for i, w in enumerate(words) if w.lower().strip(",;:") in _ANTONYM_MAP]
    if not spots:
        return None
    i = rng.choice(spots)
    w = words[i]
    core = w.lower().strip(",;:")
    words[i] = w.lower().replace(core, _ANTONYM_MAP[core])
    return _clean(" ".join(words))


def change_number(s: str, rng: random.Random) -> str | None:
    words = _words(s.rstrip("."))
    spots = [
        i
        for i, w in enumerate(words)
        if re.fullmatch(r"\d+(?:\.\d+)?[,;:]?", w) or w.lower() in _NUMBER_WORDS
    ]
    if not spots:
        return None
    i = rng.choice(spots)
    w = words[i].rstrip(",;:")
    tail = words[i][len(w) :]
    if w.lower() in _NUMBER_WORDS:
        new = _NUMBER_WORDS[w.lower()]
    else:
        value = float(w)
        choice = rng.choice((10.0, 0.5, 3.0))
        changed = value * choice if value else 7.0
        new = str(int(changed)) if "." not in w and changed == int(changed) else f"{changed:g}"
        if new == w:
            new = str(int(value) + 1)
    words[i] = new + tail
    return _clean(" ".join(words))


def flip_quantifier(s: str) -> str | None:
    words = _words(s.rstrip("."))
    for i, w in enumerate(words):
        if w.lower() in _QUANTIFIERS:
            words[i] = _QUANTIFIERS[w.lower()]
            return _clean(" ".join(words))
    return None


def contradict(s: str, rng: random.Random) -> tuple[str, str] | None:
    """A contradiction of ``s`` and how it was made; None when no transform applies."""
    makers: dict[str, tuple[float, Callable[[], str | None]]] = {
        "negated": (0.35, lambda: negate(s)),
        "antonym": (0.30, lambda: swap_antonym(s, rng)),
        "number": (0.25, lambda: change_number(s, rng)),
        "quantifier": (0.10, lambda: flip_quantifier(s)),
    }
    made = {kind: out for kind, (_, make) in makers.items() if (out := make()) and out != s}
    if not made:
        return None
    kinds = sorted(made)
    kind = rng.choices(kinds, weights=[makers[k][0] for k in kinds])[0]
    return made[kind], kind


def entail(doc: Doc, i: int, rng: random.Random) -> tuple[str, str] | None:
    s = doc.sentences[i]
    r = rng.random()
    options: list[tuple[str, str | None]] = []
    if r < 0.25:
        options.append(("sentence", s))
    options += [
        ("that_clause", that_clause(s)),
        ("clause", clause(s, rng)),
        ("modifiers_dropped", drop_modifiers(s)),
        ("sentence", s),
    ]
    for kind, h in options:
        if h:
            return h, kind
    return None


# ------------------------------------------------------------------------------------- generation


def _similar(doc: Doc, pool: Sequence[Doc], words: dict[str, frozenset[str]], rng: random.Random) -> Doc:
    mine = words[doc.doc_id + doc.collection]
    sample = rng.sample(list(pool), min(300, len(pool)))
    scored = sorted(
        (d for d in sample if d.doc_id != doc.doc_id),
        key=lambda d: (
            -len(mine & words[d.doc_id + d.collection]) / (len(mine | words[d.doc_id + d.collection]) or 1)
        ),
    )
    return rng.choice(scored[:5])


def generate(docs: Sequence[Doc], per_class: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    words = {d.doc_id + d.collection: content_words(d.text) for d in docs}
    by_collection = {c: [d for d in docs if d.collection == c] for c in COLLECTIONS}
    out: dict[str, list[Example]] = {c: [] for c in CLASSES}
    order = list(docs)
    rng.shuffle(order)
    for doc in order:
        if all(len(v) >= per_class for v in out.values()):
            break
        key = f"{doc.collection}/{doc.doc_id}"
        premise = doc.text
        usable = [i for i, s in enumerate(doc.sentences) if _usable(s)]
        if not usable:
            continue
        # entailment (+ its contradiction)
        i = rng.choice(usable)
        made = entail(doc, i, rng)
        if rng.random() < 0.2 and len(doc.title.split()) >= 4:
            made = (doc.title, "title")
        if made:
            h, kind = made
            if len(out["entailment"]) < per_class:
                out["entailment"].append(Example(h, premise, "entailment", kind, key))
            c = contradict(h, rng)
            if c and len(out["contradiction"]) < per_class:
                out["contradiction"].append(Example(c[0], premise, "contradiction", f"{c[1]}:{kind}", key))
        # a second contradiction from another sentence keeps the classes balanced
        numbered = [n for n in usable if re.search(r"\d", doc.sentences[n])]
        j = rng.choice(numbered if numbered and rng.random() < 0.5 else usable)
        c2 = contradict(doc.sentences[j], rng)
        if c2 and len(out["contradiction"]) < per_class and rng.random() < 0.5:
            out["contradiction"].append(Example(c2[0], premise, "contradiction", f"{c2[1]}:sentence", key))
        # neutral
        if len(out["neutral"]) >= per_class:
            continue
        r = rng.random()
        if r < 0.3 and len(usable) >= 4:
            k = rng.choice(usable)
            rest = " ".join(s for n, s in enumerate(doc.sentences) if n != k)
            h_words = content_words(doc.sentences[k])
            if h_words and len(h_words & content_words(rest)) / len(h_words) < 0.75:
                h, kind = doc.sentences[k], "held_out"
            else:
                continue
            premise_n = rest
        else:
            other = _similar(doc, by_collection[doc.collection], words, rng)
            other_usable = [s for s in other.sentences if _usable(s)]
            if r < 0.45 and len(other.title.split()) >= 4:
                h, kind = other.title, "other_title"
            elif other_usable:
                h, kind = rng.choice(other_usable), "other_sentence"
            else:
                continue
            premise_n = premise
        if rng.random() < 0.25:
            c3 = contradict(h, rng)
            if c3:
                h, kind = c3[0], f"{c3[1]}:{kind}"
        out["neutral"].append(Example(h, premise_n, "neutral", kind, key))
    return [e for c in CLASSES for e in out[c]]


# --------------------------------------------------------------------------------------- features


def featurise(
    examples: Sequence[Example], scorer: PairScorer, k: int = DEFAULT_CANDIDATES
) -> npt.NDArray[np.float64]:
    rows = []
    started = time.perf_counter()
    for n, e in enumerate(examples):
        sentences = sentences_of(e.premise)
        chosen = [sentences[i] for i in candidates(e.hypothesis, sentences, k)]
        scores = [float(s) for s in scorer.score(e.hypothesis, chosen)] if chosen else []
        rows.append(features(e.hypothesis, e.premise, chosen, scores))
        if (n + 1) % 500 == 0:
            print(
                f"  features {n + 1}/{len(examples)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr
            )
    return np.vstack(rows)


def _macro_f1(gold: Sequence[str], pred: Sequence[str]) -> tuple[float, dict[str, float]]:
    per: dict[str, float] = {}
    for c in CLASSES:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        per[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return sum(per.values()) / len(per), per


def _split(examples: Sequence[Example]) -> tuple[list[int], list[int]]:
    train: list[int] = []
    val: list[int] = []
    for n, e in enumerate(examples):
        bucket = int(hashlib.sha256(e.doc.encode()).hexdigest(), 16) % 5
        (val if bucket == 0 else train).append(n)
    return train, val


def train(datasets: Path, out: Path, scorer: PairScorer) -> dict[str, object]:
    from sklearn import __version__ as sklearn_version
    from sklearn.linear_model import LogisticRegression

    docs = load_docs(datasets)
    examples = generate(docs, PER_CLASS, SEED)
    print(f"{len(docs)} abstracts, {len(examples)} examples", file=sys.stderr)
    x = featurise(examples, scorer)
    y = np.array([CLASSES.index(e.label) for e in examples])
    train_idx, val_idx = _split(examples)
    mean = x[train_idx].mean(axis=0)
    scale = x[train_idx].std(axis=0)
    scale[scale < 1e-9] = 1.0
    lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    lr.fit((x[train_idx] - mean) / scale, y[train_idx])
    head = Head(
        mean=mean, scale=scale, coef=lr.coef_.astype(np.float64), intercept=lr.intercept_.astype(np.float64)
    )
    pred = head.probabilities(x[val_idx]).argmax(axis=1)
    gold_labels = [CLASSES[i] for i in y[val_idx]]
    macro, per = _macro_f1(gold_labels, [CLASSES[i] for i in pred])
    out.mkdir(parents=True, exist_ok=True)
    head.save(out / WEIGHTS_FILE)
    kinds: dict[str, int] = {}
    for e in examples:
        kinds[f"{e.label}/{e.kind.split(':')[0]}"] = kinds.get(f"{e.label}/{e.kind.split(':')[0]}", 0) + 1
    card: dict[str, object] = {
        "name": NAME,
        "version": VERSION,
        "task": "3-way NLI of an answer sentence against its cited text: "
        "entailment / neutral / contradiction",
        "classes": list(CLASSES),
        "head": f"multinomial logistic regression (scikit-learn {sklearn_version}, lbfgs, C={C}, "
        "class_weight=balanced) on standardised features; numpy inference",
        "features": list(FEATURE_NAMES),
        "cross_encoder": scorer.model_id,
        "candidates_per_sentence": DEFAULT_CANDIDATES,
        "training_command": "make train-grounding  (python -m isthmus_guardrail.training.grounding)",
        "training_data": {
            "source": "synthetic pairs from the abstracts of the Cranfield and CISI test collections "
            "(University of Glasgow IR group research collections); SciFact NOT used",
            "sha256": corpus_digests(datasets),
            "seed": SEED,
            "examples": len(examples),
            "train_examples": len(train_idx),
            "validation_examples": len(val_idx),
            "split": "by document: sha256(collection/id) % 5 == 0 -> validation",
            "kinds": dict(sorted(kinds.items())),
        },
        "validation": {
            "macro_f1": round(macro, 4),
            "f1": {c: round(v, 4) for c, v in per.items()},
        },
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest(),
        "coefficients": {
            c: {f: round(float(w), 3) for f, w in zip(FEATURE_NAMES, head.coef[k], strict=True)}
            for k, c in enumerate(CLASSES)
        },
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def _examples_preview(examples: Sequence[Example], n: int) -> Iterator[str]:
    for e in examples[:n]:
        yield f"{e.label:13} {e.kind:28} {e.hypothesis[:100]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--preview", type=int, default=0, help="print N generated examples and stop")
    args = parser.parse_args(argv)
    if args.preview:
        examples = generate(load_docs(args.datasets), PER_CLASS, SEED)
        rng = random.Random(0)
        for line in _examples_preview(rng.sample(examples, args.preview), args.preview):
            print(line)
        return 0
    from isthmus_core.onnx_reranker import OnnxCrossEncoder

    scorer = OnnxCrossEncoder()
    try:
        card = train(args.datasets, args.out, scorer)
    finally:
        scorer.close()
    print(json.dumps(card["validation"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
