"""Ask capacity and overload (issue 12): latency unloaded, then under open-loop offered load, per shape.

Run::

    .venv/bin/python -m isthmus_bench.capacity [--shape all|distributed|all,distributed] [--docs 400]
        [--rates 10,20,50,100] [--duration 20] [--deadline-ms 2000] [--calls ask,search] [--json]

The platform under test runs in its own process(es), never in the bench's: ``all`` is one
``isthmus run --target all`` (in-process bus, embedded store, bundled models, throwaway data dir, free
gRPC and metrics ports); ``distributed`` is the six ``isthmus run --target <svc>`` processes on a real
Kafka (started with ``tests/infra/kafka.sh`` unless ``--bootstrap`` names one). Both are started by
:class:`isthmus_core.testing.cluster.Cluster`.

Per shape: the first ``--docs`` Cranfield documents are uploaded over gRPC (8 at a time) and the bench
waits until the index holds every chunk (consumer lag sampled from ``/metrics`` meanwhile). Then, per
call (``Ask``, optionally ``Search``):

* **unloaded**: ``--baseline`` calls one at a time → p50/p95/p99;
* **offered load**, for each rate of ``--rates``, ``--duration`` s open loop: request *i* starts at
  ``start + i / rate`` whatever the latency of the others (no coordinated omission), each with a deadline
  of ``--deadline-ms``. Latency is measured from the actual send; how late the sends were against the
  schedule (start lag) is reported apart, with a warning when the generator fell behind. Reported:
  answers/s achieved (OK), admitted (OK) latency percentiles, the share refused (``RESOURCE_EXHAUSTED``
  or ``UNAVAILABLE``) with its latency and the share carrying a ``google.rpc.RetryInfo`` detail, other
  errors by code, the server's CPU seconds and peak RSS (``/proc``, summed over its processes; the peak
  is reset before each phase where the kernel allows), admitted p95 ÷ unloaded p95 beside the issue's
  target, and from ``/metrics`` deltas the mean of each ``isthmus_ask_stage_seconds`` stage, the
  deltas of any ``isthmus_*cache*`` counter and each cache's hit ratio (skipped when absent).
  ``--pause`` s between phases.

Questions (Cranfield's 225) are asked in turn across phases, so one comes back only once all were
asked. With ``--questions fresh`` (the default) a question's later rounds end in that many more `` ?``:
no exact-text cache (query vectors, PII findings of the question) can answer them, as for new users'
questions, while retrieval and the answer are the same work (analysers drop the punctuation). With
``--questions cycle`` they come back verbatim. Each phase reports the share of its question texts asked
before in the run, beside the caches' hit ratios.

Capacity is taken as the most answers/s of any phase (one by one or offered: past capacity, a server
that queues answers fewer); each rate is shown as a multiple of it, so the rows at >= 2x capacity are
the ones the target (admitted p95 <= 2x unloaded p95) speaks of.

The summaries (:func:`summarize`, :func:`stage_means_ms`, :func:`counter_deltas`,
:func:`cache_hit_ratios`) are pure functions of the recorded outcomes and
scraped samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_bench.scale import percentiles
from isthmus_core.grpc.status import retry_after_s

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
TENANT = "bench"
SHAPES = ("all", "distributed")
CALLS = ("ask", "search")
#: codes that mean "not now, retry later": load shed by admission control, or a draining server
REFUSED = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE"})
STAGE_METRIC = "isthmus_ask_stage_seconds"
ASK_STAGES = ("input_guard", "retrieval", "generation", "output_guard")  # in pipeline order, for tables
CACHE_METRIC = re.compile(r"^isthmus_\w*cache\w*_total$")
REFUSED_METRIC = re.compile(r"^isthmus_admission_refused_total$")
LAG_METRIC = "isthmus_bus_consumer_lag"
#: the issue's overload target: admitted p95 at most this many times the unloaded p95 at 2x capacity
P95_RATIO_TARGET = 2.0
#: start lag p95 above this (ms) means the load generator fell behind its schedule. About one scheduler
#: tick (10 ms at HZ=100) is what waking up costs on 2 cores shared with a saturated server; sustained
#: lag beyond two ticks means the generator itself cannot keep up
LAG_WARN_MS = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# -- corpus --------------------------------------------------------------------------------------------


def corpus(n_docs: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Cranfield's first documents and queries when the shared datasets are there, else generated text."""
    corpus_file = DATASETS / "cranfield" / "corpus.jsonl"
    if corpus_file.exists():
        docs: list[tuple[str, str]] = []
        with corpus_file.open() as fh:
            for line in fh:
                d = json.loads(line)
                if (d.get("title") or d.get("text", "")).strip():
                    docs.append((d["_id"], f"{d.get('title', '')}\n\n{d.get('text', '')}"))
                if len(docs) >= n_docs:
                    break
        with (DATASETS / "cranfield" / "queries.jsonl").open() as fh:
            queries = [json.loads(line)["text"] for line in fh]
        return docs, queries
    topics = ["boundary layer", "shock wave", "heat transfer", "wing flutter", "supersonic flow"]
    docs = [
        (str(i), f"Report {i} on {topics[i % 5]}. The {topics[i % 5]} was measured at Mach {i % 7 + 1}.")
        for i in range(n_docs)
    ]
    return docs, [f"what is known about {t}?" for t in topics] * 20


# -- outcomes and their summaries (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One call: how late it was sent against its schedule, how long it took, how it ended."""

    lag_ms: float
    latency_ms: float
    code: str  # "OK", a grpc.StatusCode name, or "EXCEPTION:<type>"
    retry_delay_ms: float | None = None  # the RetryInfo detail of a refusal, when there was one


def retry_delay_ms(error: grpc.aio.AioRpcError) -> float | None:
    """The ``google.rpc.RetryInfo`` delay (ms) a refused call carries, if any."""
    delay_s = retry_after_s(error)
    return None if delay_s is None else delay_s * 1000


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summarize(outcomes: Sequence[Outcome], elapsed_s: float) -> dict[str, Any]:
    """Counts, shares and latency percentiles of one phase's outcomes (``elapsed_s``: the phase's length,
    which OK/s is computed over)."""
    ok = [o.latency_ms for o in outcomes if o.code == "OK"]
    refused = [o for o in outcomes if o.code in REFUSED]
    errors = Counter(o.code for o in outcomes if o.code != "OK" and o.code not in REFUSED)
    delays = [o.retry_delay_ms for o in refused if o.retry_delay_ms is not None]
    refusal = percentiles([o.latency_ms for o in refused])
    return {
        "sent": len(outcomes),
        "elapsed_s": elapsed_s,
        "ok": len(ok),
        "achieved_rps": len(ok) / elapsed_s if elapsed_s > 0 else 0.0,
        "admitted_ms": percentiles(ok),
        "refused": len(refused),
        "refused_share": _share(len(refused), len(outcomes)),
        "refused_by_code": dict(Counter(o.code for o in refused)),
        "refusal_ms": {k: refusal[k] for k in ("p50", "p95", "max")} if refusal else {},
        "retry_info_share": _share(len(delays), len(refused)),
        "retry_delay_ms_p50": percentiles(delays).get("p50"),
        "errors": dict(errors),
        "error_share": _share(sum(errors.values()), len(outcomes)),
        "start_lag_ms": {k: v for k, v in percentiles([o.lag_ms for o in outcomes]).items() if k != "mean"},
    }


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (sample name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = out.get(key, 0.0) + s.value
    return out


def merge(samples: Iterable[Samples]) -> Samples:
    """Samples of several processes summed (the distributed shape scrapes six)."""
    out: Samples = {}
    for one in samples:
        for k, v in one.items():
            out[k] = out.get(k, 0.0) + v
    return out


def stage_means_ms(before: Samples, after: Samples) -> dict[str, float]:
    """Mean seconds per ``isthmus_ask_stage_seconds`` stage over a phase (``_sum``/``_count`` deltas), ms."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for (name, labels), value in after.items():
        stage = dict(labels).get("stage")
        if stage is None or name not in (f"{STAGE_METRIC}_sum", f"{STAGE_METRIC}_count"):
            continue
        delta = value - before.get((name, labels), 0.0)
        target = sums if name.endswith("_sum") else counts
        target[stage] = target.get(stage, 0.0) + delta
    return {s: sums.get(s, 0.0) / n * 1000 for s, n in sorted(counts.items()) if n > 0}


def counter_deltas(
    before: Samples, after: Samples, pattern: re.Pattern[str] = CACHE_METRIC
) -> dict[str, float]:
    """``name{labels}`` → increase over a phase, for the counters whose sample name matches ``pattern``."""
    out: dict[str, float] = {}
    for (name, labels), value in sorted(after.items()):
        if pattern.match(name):
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            out[f"{name}{{{label_text}}}" if labels else name] = value - before.get((name, labels), 0.0)
    return out


def cache_hit_ratios(before: Samples, after: Samples) -> dict[str, float]:
    """Per ``cache`` label, hits ÷ lookups over a phase (``isthmus_cache_hits_total`` and
    ``isthmus_cache_misses_total`` deltas); caches without lookups in the phase are left out."""
    counts: dict[str, list[float]] = {}
    for (name, labels), value in after.items():
        cache = dict(labels).get("cache")
        if cache is None or name not in ("isthmus_cache_hits_total", "isthmus_cache_misses_total"):
            continue
        pair = counts.setdefault(cache, [0.0, 0.0])
        pair[0 if name == "isthmus_cache_hits_total" else 1] += value - before.get((name, labels), 0.0)
    return {c: hits / (hits + misses) for c, (hits, misses) in sorted(counts.items()) if hits + misses > 0}


def refusal_reasons(before: Samples, after: Samples) -> dict[str, float]:
    """``method reason`` → refusals over a phase (``isthmus_admission_refused_total`` deltas, non-zero)."""
    out: dict[str, float] = {}
    for (name, labels), value in sorted(after.items()):
        if REFUSED_METRIC.match(name) and (delta := value - before.get((name, labels), 0.0)) > 0:
            d = dict(labels)
            out[f"{d.get('method', '?').rsplit('.', 1)[-1]} {d.get('reason', '?')}"] = delta
    return out


def metric_total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


# -- the server's processes ----------------------------------------------------------------------------


def process_tree(pids: Iterable[int]) -> list[int]:
    """The given processes and all their descendants that are still alive."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen or not Path(f"/proc/{pid}").exists():
            continue
        seen.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in children.read_text().split())
    return seen


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of the processes so far (``/proc/<pid>/stat`` utime + stime)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after pid and comm
    return total / CLK_TCK


def rss_mb(pids: Iterable[int], key: str = "VmHWM") -> float:
    """Sum of a ``/proc/<pid>/status`` memory line (``VmHWM``: peak resident set; ``VmRSS``: now), MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{key}:"):
                    total += int(line.split()[1])
    return total / 1024


def reset_peak_rss(pids: Iterable[int]) -> bool:
    """Reset ``VmHWM`` to the current RSS (``echo 5 > /proc/<pid>/clear_refs``); False if not allowed."""
    done = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            done = False
    return done


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- the platform under test ---------------------------------------------------------------------------


@dataclass
class Platform:
    """A running shape: where each service answers, the processes serving it, their /metrics ports."""

    shape: str
    endpoints: dict[str, str]
    pids: list[int]
    metrics_ports: list[int]

    async def scrape(self) -> Samples:
        def fetch(port: int) -> Samples:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    return parse_metrics(resp.read().decode())
            except OSError:
                return {}

        return merge(await asyncio.gather(*(asyncio.to_thread(fetch, p) for p in self.metrics_ports)))


def _broker(cmd: str, data: Path, port: int = 0) -> str:
    script = str(ROOT / "tests" / "infra" / "kafka.sh")
    args = ["bash", script, cmd, "--dir", str(data), *(["--port", str(port)] if port else [])]
    if cmd == "down" and not data.exists():
        return ""
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


@contextlib.asynccontextmanager
async def platform(
    shape: str, bootstrap: str = "", log_level: str = "warning", *, answer_cache: bool = True
) -> AsyncIterator[Platform]:
    """Start a shape in its own processes (throwaway data dir, free ports), healthy; stop it after.
    ``answer_cache`` False: the orchestrator's answer cache off (it ignores trailing punctuation, so
    ``--questions fresh`` texts would hit it: they stand for new users' questions, which it cannot answer)."""
    from isthmus_core.testing.cluster import SERVICES, Cluster, free_port

    env = {"ISTHMUS_LOG_LEVEL": log_level}
    if not answer_cache:
        env["ISTHMUS_AGENT_ORCHESTRATOR_CACHE_ENABLED"] = "false"
    with tempfile.TemporaryDirectory(prefix=f"isthmus-bench-{shape}-") as tmp:
        broker_dir = Path(tmp) / "kafka"
        if shape == "distributed" and not bootstrap:
            bootstrap = await asyncio.to_thread(_broker, "up", broker_dir, free_port())
        targets = SERVICES if shape == "distributed" else ("all",)
        cluster = Cluster(
            Path(tmp), bootstrap if shape == "distributed" else "", env, metrics=True, targets=targets
        )
        try:
            for svc in targets:
                cluster.start(svc)
            for svc in targets:
                await cluster.wait_healthy(svc)
            endpoints = (
                dict(cluster.endpoints)
                if shape == "distributed"
                else dict.fromkeys(SERVICES, cluster.endpoints["all"])
            )
            yield Platform(
                shape,
                endpoints,
                [p.pid for procs in cluster.procs.values() for p in procs],
                list(cluster.metrics_ports.values()),
            )
        finally:
            cluster.stop_all()
            if shape == "distributed":
                await asyncio.to_thread(_broker, "down", broker_dir)


# -- load ----------------------------------------------------------------------------------------------

Call = Callable[[str, float], Awaitable[object]]


async def _one(call: Call, payload: str, scheduled: float, deadline_s: float) -> Outcome:
    t0 = time.perf_counter()
    lag_ms = (t0 - scheduled) * 1000
    try:
        await call(payload, deadline_s)
    except grpc.aio.AioRpcError as e:
        delay = retry_delay_ms(e) if e.code().name in REFUSED else None
        return Outcome(lag_ms, (time.perf_counter() - t0) * 1000, e.code().name, delay)
    except Exception as e:  # a bench must finish and say what happened, not die on one odd call
        return Outcome(lag_ms, (time.perf_counter() - t0) * 1000, f"EXCEPTION:{type(e).__name__}")
    return Outcome(lag_ms, (time.perf_counter() - t0) * 1000, "OK")


def scheduled_calls(rate: float, duration_s: float) -> int:
    return max(1, round(rate * duration_s))


class Questions:
    """The questions in turn, each phase going on where the last one stopped, so a question comes back
    only once all were asked; :meth:`take` says which share of its batch was asked before in this run
    (what the server's caches may have kept)."""

    def __init__(self, pool: Sequence[str], fresh: bool = True) -> None:
        self.pool, self.cursor, self.seen = list(pool), 0, set[str]()
        self.fresh = fresh

    def _text(self, k: int) -> str:
        text = self.pool[k % len(self.pool)]
        return text + " ?" * (k // len(self.pool)) if self.fresh else text

    def take(self, n: int) -> tuple[list[str], float]:
        batch = [self._text(self.cursor + i) for i in range(n)]
        self.cursor += n
        repeated = 0
        for q in batch:
            repeated += q in self.seen
            self.seen.add(q)
        return batch, repeated / n if n else 0.0


async def open_loop(
    call: Call, payloads: Sequence[str], rate: float, duration_s: float, deadline_s: float
) -> tuple[list[Outcome], float]:
    """Offer ``rate`` calls/s for ``duration_s``: call *i* is started at ``start + i / rate`` whatever the
    others' latency (a late scheduler catches up at once, never skips). Returns the outcomes and the
    phase's length: the schedule's span (``n / rate``), or until the last completion if that is later."""
    n = scheduled_calls(rate, duration_s)
    start = time.perf_counter() + 0.01
    tasks: list[asyncio.Task[Outcome]] = []
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(call, payloads[i % len(payloads)], at, deadline_s)))
    outcomes = list(await asyncio.gather(*tasks))
    return outcomes, max(n / rate, time.perf_counter() - start)


async def one_at_a_time(
    call: Call, payloads: Sequence[str], n: int, deadline_s: float
) -> tuple[list[Outcome], float]:
    start = time.perf_counter()
    outcomes = []
    for i in range(n):
        outcomes.append(await _one(call, payloads[i % len(payloads)], time.perf_counter(), deadline_s))
    return outcomes, time.perf_counter() - start


# -- one shape -----------------------------------------------------------------------------------------


@dataclass
class ShapeReport:
    shape: str
    documents: int
    ingest: dict[str, float]
    server: dict[str, float]
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)


async def retrying(call: Callable[[], Awaitable[Any]], attempts: int = 20) -> Any:
    """``call()``, retried after the server's RetryInfo delay (else 0.2 s) while it refuses for load."""
    for attempt in range(attempts):
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code().name not in REFUSED or attempt == attempts - 1:
                raise
            await asyncio.sleep((retry_delay_ms(e) or 200.0) / 1000)
    raise AssertionError("unreachable")


async def ingest(
    p: Platform, docs: Sequence[tuple[str, str]], log: Callable[[str], None], within_s: float = 900
) -> dict[str, float]:
    """Upload ``docs`` (8 at a time, retried when refused for load) and wait until retrieval holds every
    chunk; sample consumer lag."""
    from isthmus_core.testing.client import upload

    async with (
        grpc.aio.insecure_channel(p.endpoints["retrieval"]) as rch,
        grpc.aio.insecure_channel(p.endpoints["ingestion"]) as ich,
    ):
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(rch)
        await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30)
        sem = asyncio.Semaphore(8)
        expected = 0

        async def one(doc_id: str, text: str) -> None:
            nonlocal expected
            async with sem:
                r = await retrying(
                    lambda: upload(ich, TENANT, f"{doc_id}.txt", text.encode(), document_id=doc_id)
                )
            expected += r.chunk_count

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, t) for i, t in docs))
        log(f"{p.shape}: {len(docs)} documents uploaded, {expected} chunks; waiting for the index")
        lags: list[float] = []
        while True:
            got = await retrieval.GetTenant(retrieval_pb2.GetTenantRequest(tenant_id=TENANT), timeout=30)
            lags.append(metric_total(await p.scrape(), LAG_METRIC))
            if got.chunk_count >= expected:
                break
            if time.perf_counter() - t0 > within_s:
                raise RuntimeError(
                    f"{p.shape}: {got.chunk_count}/{expected} chunks indexed after {within_s}s"
                )
            await asyncio.sleep(0.5)
        ingest_s = time.perf_counter() - t0
    return {
        "chunks": expected,
        "ingest_s": ingest_s,
        "chunks_per_s": expected / ingest_s,
        "lag_p50": percentiles(lags)["p50"],
        "lag_max": max(lags),
    }


@contextlib.asynccontextmanager
async def callers(p: Platform, channels: int) -> AsyncIterator[dict[str, Call]]:
    """``ask`` and ``search`` over ``channels`` channels per service (own connections), round-robin."""
    opts = [("grpc.use_local_subchannel_pool", 1)]
    async with contextlib.AsyncExitStack() as stack:
        och = [
            await stack.enter_async_context(
                grpc.aio.insecure_channel(p.endpoints["agent-orchestrator"], opts)
            )
            for _ in range(channels)
        ]
        rch = [
            await stack.enter_async_context(grpc.aio.insecure_channel(p.endpoints["retrieval"], opts))
            for _ in range(channels)
        ]
        asks = [ao_grpc.AgentOrchestratorServiceStub(c) for c in och]
        searches = [retrieval_pb2_grpc.RetrievalServiceStub(c) for c in rch]
        turn = [0]

        def pick(stubs: list[Any]) -> Any:
            turn[0] += 1
            return stubs[turn[0] % len(stubs)]

        async def ask(q: str, deadline_s: float) -> object:
            return await pick(asks).Ask(ao.AskRequest(tenant_id=TENANT, question=q), timeout=deadline_s)

        async def search(q: str, deadline_s: float) -> object:
            req = retrieval_pb2.SearchRequest(tenant_id=TENANT, query=q, top_k=10)
            return await pick(searches).Search(req, timeout=deadline_s)

        yield {"ask": ask, "search": search}


async def measure_phase(
    p: Platform,
    run: Awaitable[tuple[list[Outcome], float]],
    baseline_p95: float | None,
) -> dict[str, Any]:
    """Await ``run`` (one phase) with the server's CPU, peak RSS and /metrics deltas around it."""
    pids = process_tree(p.pids)
    before = await p.scrape()
    rss_reset = reset_peak_rss(pids)
    cpu0, own0 = cpu_seconds(pids), own_cpu_seconds()
    outcomes, elapsed = await run
    cpu = cpu_seconds(pids) - cpu0
    own = own_cpu_seconds() - own0
    after = await p.scrape()
    s = summarize(outcomes, elapsed)
    p95 = s["admitted_ms"].get("p95")
    s.update(
        server_cpu_s=cpu,
        server_cpu_cores=cpu / elapsed if elapsed > 0 else 0.0,
        server_peak_rss_mb=rss_mb(pids),
        peak_rss_is_phase_peak=rss_reset,
        generator_cpu_s=own,
        generator_behind=s["start_lag_ms"].get("p95", 0.0) > LAG_WARN_MS,
        p95_ratio=p95 / baseline_p95 if p95 is not None and baseline_p95 else None,
        stage_mean_ms=stage_means_ms(before, after),
        cache=counter_deltas(before, after),
        cache_hit_ratio=cache_hit_ratios(before, after),
        refused_by=refusal_reasons(before, after),
    )
    return s


async def bench_shape(shape: str, args: argparse.Namespace, log: Callable[[str], None]) -> ShapeReport:
    docs, queries = corpus(args.docs)
    log(f"{shape}: starting the platform")
    async with platform(shape, args.bootstrap, args.log_level, answer_cache=args.questions != "fresh") as p:
        figures = await ingest(p, docs, log)
        report = ShapeReport(
            shape,
            len(docs),
            figures,
            {"processes": len(p.pids), "rss_after_ingest_mb": rss_mb(process_tree(p.pids), "VmRSS")},
        )
        deadline_s = args.deadline_ms / 1000
        questions = Questions(queries, fresh=args.questions == "fresh")
        async with callers(p, args.channels) as calls:
            for name in args.calls:
                call = calls[name]
                for q in questions.take(5)[0]:  # warm-up
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await call(q, deadline_s)
                log(f"{shape}: {name} unloaded, {args.baseline} calls one at a time")
                batch, repeated = questions.take(args.baseline)
                baseline = await measure_phase(p, one_at_a_time(call, batch, len(batch), deadline_s), None)
                baseline["asked_before_share"] = repeated
                base_p95 = baseline["admitted_ms"].get("p95")
                phases = []
                for rate in args.rates:
                    await asyncio.sleep(args.pause)
                    log(f"{shape}: {name} at {rate:g}/s offered for {args.duration:g} s")
                    batch, repeated = questions.take(scheduled_calls(rate, args.duration))
                    phase = await measure_phase(
                        p, open_loop(call, batch, rate, args.duration, deadline_s), base_p95
                    )
                    phases.append(
                        {
                            "offered_rps": rate,
                            "duration_s": args.duration,
                            "asked_before_share": repeated,
                            **phase,
                        }
                    )
                # the most answers/s seen, one by one or under load: past capacity, goodput can collapse
                capacity = max(ph["achieved_rps"] for ph in (baseline, *phases))
                for ph in phases:
                    ph["offered_over_capacity"] = ph["offered_rps"] / capacity if capacity else None
                report.calls[name] = {"baseline": baseline, "phases": phases, "capacity_rps": capacity}
    return report


# -- output --------------------------------------------------------------------------------------------


def _ms(d: Mapping[str, float], k: str) -> str:
    return f"{d[k]:.0f}" if k in d else "-"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x else "0"


def _latency_row(label: str, ph: Mapping[str, Any]) -> list[str]:
    a, rf = ph["admitted_ms"], ph["refusal_ms"]
    return [
        label,
        f"{ph['achieved_rps']:.1f}",
        f"{_ms(a, 'p50')} / {_ms(a, 'p95')} / {_ms(a, 'p99')}",
        f"{ph['p95_ratio']:.2f}x" if ph.get("p95_ratio") else "-",
        _pct(ph["refused_share"]),
        f"{_ms(rf, 'p95')} / {_ms(rf, 'max')}" if rf else "-",
        _pct(ph["retry_info_share"]) if ph["refused"] else "-",
        ", ".join(f"{k} {v}" for k, v in sorted(ph["errors"].items())) or "0",
    ]


def tables(reports: Sequence[ShapeReport], args: argparse.Namespace) -> list[Any]:
    """Rich renderables: per shape, its ingest line, then per call a latency table and a server table."""
    out: list[Any] = []
    for r in reports:
        ing = r.ingest
        out.append(
            f"[bold]{r.shape}[/bold] ({int(r.server['processes'])} process(es)): {r.documents} documents, "
            f"{ing['chunks']:.0f} chunks indexed in {ing['ingest_s']:.1f} s "
            f"({ing['chunks_per_s']:.1f} chunks/s, "
            f"consumer lag p50 / max {ing['lag_p50']:.0f} / {ing['lag_max']:.0f}); "
            f"server RSS after ingest {r.server['rss_after_ingest_mb']:.0f} MiB"
        )
        for name, c in r.calls.items():
            t = Table(
                title=f"{r.shape}: {name.capitalize()} (deadline {args.deadline_ms:g} ms, "
                f"{args.duration:g} s per offered rate)",
                caption=f"capacity seen (most OK/s of any row): {c['capacity_rps']:.1f}. "
                f"Target: admitted p95 <= {P95_RATIO_TARGET:g}x unloaded p95 at 2x capacity; "
                "refusals fast, with RetryInfo.",
            )
            for col in (
                "offered/s", "OK/s", "OK p50 / p95 / p99 ms", "p95 ÷ unloaded", "refused",
                "refused p95 / max ms", "RetryInfo", "other errors",
            ):  # fmt: skip
                t.add_column(col, justify="right")
            t.add_row(*_latency_row(f"unloaded ({c['baseline']['sent']} one by one)", c["baseline"]))
            for ph in c["phases"]:
                over = ph["offered_over_capacity"]
                t.add_row(
                    *_latency_row(f"{ph['offered_rps']:g}" + (f" ({over:.1f}x cap.)" if over else ""), ph)
                )
            out.append(t)
            seen = {k for ph in c["phases"] for k in ph["stage_mean_ms"]}
            stages = [s for s in ASK_STAGES if s in seen] + sorted(seen - set(ASK_STAGES))
            t = Table(
                title=f"{r.shape}: server and load generator during each {name.capitalize()} phase"
                + (" (then the mean ms of each Ask stage)" if stages else "")
            )
            for col in (
                "offered/s",
                "server CPU s (cores)",
                "peak RSS MiB",
                "bench CPU s",
                "start lag p95 / max ms",
                "asked before",
            ):
                t.add_column(col, justify="right")
            for stage in stages:
                t.add_column(f"{stage} ms", justify="right")
            for ph in c["phases"]:
                lag = ph["start_lag_ms"]
                t.add_row(
                    f"{ph['offered_rps']:g}",
                    f"{ph['server_cpu_s']:.1f} ({ph['server_cpu_cores']:.2f})",
                    f"{ph['server_peak_rss_mb']:.0f}"
                    + ("" if ph["peak_rss_is_phase_peak"] else " (since start)"),
                    f"{ph['generator_cpu_s']:.1f}",
                    f"{lag.get('p95', 0):.1f} / {lag.get('max', 0):.0f}"
                    + (" [red]behind[/red]" if ph["generator_behind"] else ""),
                    _pct(ph["asked_before_share"]),
                    *(f"{ph['stage_mean_ms'][s]:.1f}" if s in ph["stage_mean_ms"] else "-" for s in stages),
                )
            out.append(t)
            for ph in c["phases"]:
                if ph["cache_hit_ratio"]:
                    ratios = ", ".join(f"{k} {100 * v:.0f}%" for k, v in ph["cache_hit_ratio"].items())
                    out.append(f"  cache hit ratio at {ph['offered_rps']:g}/s: {ratios}")
                elif ph["cache"]:
                    deltas = ", ".join(f"{k} +{v:g}" for k, v in ph["cache"].items())
                    out.append(f"  cache counters at {ph['offered_rps']:g}/s: {deltas}")
            for ph in c["phases"]:
                if ph.get("refused_by"):
                    why = ", ".join(f"{k} {v:g}" for k, v in ph["refused_by"].items())
                    out.append(f"  refusals at {ph['offered_rps']:g}/s (server's count): {why}")
            if any(ph["generator_behind"] for ph in c["phases"]):
                out.append(
                    f"[yellow]warning: the load generator started calls > {LAG_WARN_MS:g} ms late (p95) "
                    "in some phase: the machine, not the server alone, set the pace there[/yellow]"
                )
    by_shape = {r.shape: r for r in reports}
    if set(by_shape) == set(SHAPES):
        ratio = by_shape["distributed"].ingest["chunks_per_s"] / by_shape["all"].ingest["chunks_per_s"]
        out.append(f"distributed / all-in-one ingestion throughput: {ratio:.2f}x (target >= 0.8x)")
    return out


def report_json(reports: Sequence[ShapeReport], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "config": {
            "shapes": list(args.shape),
            "docs": args.docs,
            "rates": list(args.rates),
            "duration_s": args.duration,
            "deadline_ms": args.deadline_ms,
            "calls": list(args.calls),
            "baseline_calls": args.baseline,
            "channels": args.channels,
        },
        "shapes": {r.shape: asdict(r) for r in reports},
    }


# -- command line --------------------------------------------------------------------------------------


def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(allowed)} (comma-separated), got {text!r}"
            )
        return items

    return parse


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive numbers, got {text!r}")
    return rates


def add_arguments(p: argparse.ArgumentParser, *, shape: str = "all", docs: int = 400) -> None:
    p.add_argument(
        "--shape", type=_choices(SHAPES), default=shape, help="all | distributed | all,distributed"
    )
    p.add_argument("--docs", type=int, default=docs, help="Cranfield documents ingested first")
    p.add_argument("--rates", "--rate", type=_rates, default="10,20,50,100", help="offered calls/s")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per offered rate")
    p.add_argument("--deadline-ms", type=float, default=2000.0, help="deadline of every call")
    p.add_argument("--calls", type=_choices(CALLS), default="ask", help="ask | search | ask,search")
    p.add_argument("--baseline", type=int, default=100, help="unloaded calls, one at a time")
    p.add_argument(
        "--questions",
        choices=("fresh", "cycle"),
        default="fresh",
        help="fresh: a question asked again differs in trailing ' ?' (no exact-text cache answers it); "
        "cycle: verbatim",
    )
    p.add_argument("--pause", type=float, default=3.0, help="seconds between phases, for queues to drain")
    p.add_argument("--channels", type=int, default=2, help="gRPC channels (connections) per service")
    p.add_argument(
        "--bootstrap",
        default="",
        help="distributed: an existing Kafka's bootstrap servers (empty: start one)",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the server's log level",
    )
    p.add_argument("--json", action="store_true", help="print every figure as JSON instead of tables")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m isthmus_bench.capacity",
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)
    return p.parse_args(argv)


async def run(args: argparse.Namespace, log: Callable[[str], None] = lambda _: None) -> list[ShapeReport]:
    return [await bench_shape(shape, args, log) for shape in args.shape]


def main(argv: Sequence[str] | None = None, args: argparse.Namespace | None = None) -> None:
    args = args or parse_args(argv)
    err = Console(stderr=True)
    reports = asyncio.run(run(args, lambda m: err.print(f"[dim]{m}[/dim]")))
    if args.json:
        json.dump(report_json(reports, args), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console = Console() if sys.stdout.isatty() else Console(width=150)
    for item in tables(reports, args):
        console.print(item)


if __name__ == "__main__":
    main()
