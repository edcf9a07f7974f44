"""The evaluation page: run an evaluation (EvaluationService.RunEval on a dataset under the service's
datasets root, or RunEvalUpload on a small BEIR dataset uploaded here) and watch it over Server-Sent
Events; its report with plots; earlier runs of this session; online metrics over time.

A run is driven by a task of its own (a dropped or reconnecting event stream neither stops nor repeats
it); the session keeps the last runs and their reports (the API does not list past runs). Online metrics
are one window per GetOnlineMetrics call: the page asks for consecutive windows to draw a series.
Plots are SVG drawn here with matplotlib from the numbers the API returns, served from their own URL
(the CSP forbids inline content) next to a table of the same numbers.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from isthmus.evaluation.v1 import evaluation_pb2 as ev_pb
from isthmus.retrieval.v1 import retrieval_pb2 as ret_pb
from isthmus_console.backend import NotLoggedIn, RpcFailure
from isthmus_console.viewer import Viewer
from isthmus_console.web import (
    Console,
    bad_request,
    console_of,
    current_tenant,
    fragment,
    page,
    render,
    rpc_error,
    whole_number,
)
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.ids import is_tenant_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODES = ("bm25", "dense", "hybrid", "hybrid+rerank")
JUDGES = ("offline", "llm")
#: the session keeps this many runs (the oldest finished ones go first)
MAX_RUNS = 10
#: runs of one session going at once
MAX_ACTIVE = 2
#: an evaluation may take long: the call's deadline
RUN_TIMEOUT_S = 6 * 3600.0
UPLOAD_PIECE = 64 * 1024
#: the online series: range name -> (seconds, label); each range is cut into ONLINE_WINDOWS windows
RANGES: dict[str, tuple[int, str]] = {
    "1h": (3600, "the last hour"),
    "6h": (6 * 3600, "the last 6 hours"),
    "24h": (24 * 3600, "the last 24 hours"),
    "7d": (7 * 24 * 3600, "the last 7 days"),
}
ONLINE_WINDOWS = 12
#: a series fetched for the table is drawn from the session for this long (the plot matches the table)
ONLINE_CACHE_S = 120.0
QUALITY = ("faithfulness", "answer_relevance", "context_precision", "context_recall", "ndcg_at_10")
RETRIEVAL = (
    ("ndcg_at_10", "nDCG@10"),
    ("recall_at_100", "Recall@100"),
    ("mrr_at_10", "MRR@10"),
    ("map_at_100", "MAP@100"),
)

_RUN_ID = re.compile(r"[A-Za-z0-9_-]{8,32}")
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATASET_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_RUNS_KEY = "evaluation.runs"
_ONLINE_KEY = "evaluation.online"


# -- a run -----------------------------------------------------------------------------------------------
@dataclass
class EvalRun:
    """One evaluation of this session: what was asked, its progress, its report or failure."""

    id: str
    dataset: str
    source: str  # "upload" or "path"
    modes: tuple[str, ...]
    started_at: float = field(default_factory=time.time)
    progress: list[ev_pb.EvalProgress] = field(default_factory=list)
    report: ev_pb.EvalReport | None = None
    failure: RpcFailure | None = None
    done: bool = False
    finished_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def changed(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def wait(self, timeout_s: float) -> bool:
        """Until the run changes (True) or ``timeout_s`` passed (False: the stream sends a keep-alive)."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    @property
    def started(self) -> str:
        return datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @property
    def status(self) -> str:
        if not self.done:
            return "running"
        return "failed" if self.failure is not None else "done"


def _runs(request: Request) -> OrderedDict[str, EvalRun]:
    runs = request.session.get(_RUNS_KEY)
    if not isinstance(runs, OrderedDict):
        runs = OrderedDict()
        request.session[_RUNS_KEY] = runs
    return runs


def _keep(runs: OrderedDict[str, EvalRun], run: EvalRun) -> None:
    runs[run.id] = run
    while len(runs) > MAX_RUNS:
        oldest = next((r for r in runs.values() if r.done), None)
        if oldest is None:
            break
        del runs[oldest.id]


def _run_of(request: Request) -> EvalRun | None:
    raw = request.query_params.get("run", "")
    if not _RUN_ID.fullmatch(raw):
        return None
    return _runs(request).get(raw)


async def _drive(run: EvalRun, stream: Any) -> None:
    """Reads the run's EvalEvents into ``run`` until the report (or the failure)."""
    try:
        async for event in stream:
            kind = event.WhichOneof("event")
            if kind == "progress":
                run.progress.append(event.progress)
                del run.progress[:-50]
            elif kind == "report":
                run.report = event.report
            run.changed()
        if run.report is None:
            run.failure = RpcFailure("UNKNOWN", "the evaluation ended without a report")
    except grpc.aio.AioRpcError as exc:
        run.failure = RpcFailure.of(exc)
    except asyncio.CancelledError:
        run.failure = RpcFailure("CANCELLED", "the console stopped before the evaluation ended")
        raise
    finally:
        run.done = True
        run.finished_at = time.time()
        run.changed()


def upload_requests(
    header: ev_pb.RunEvalUploadHeader, files: dict[str, bytes]
) -> Iterator[ev_pb.RunEvalUploadRequest]:
    """The RunEvalUpload stream: the header, then each file in pieces."""
    yield ev_pb.RunEvalUploadRequest(header=header)
    for part in ("corpus", "queries", "qrels"):
        data = files[part]
        for i in range(0, len(data), UPLOAD_PIECE):
            piece = ev_pb.RunEvalUploadRequest()
            setattr(piece, part, data[i : i + UPLOAD_PIECE])
            yield piece


# -- the run form --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunForm:
    source: str
    name: str
    dataset_path: str
    modes: tuple[str, ...]
    max_queries: int
    answers: int
    judge: str
    keep_tenant: bool


def parse_run_form(fields: dict[str, list[str]]) -> RunForm:
    """The run form's fields (name -> values), checked; ValueError says what is wrong."""

    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[0].strip()

    source = one("source") or "upload"
    if source not in ("upload", "path"):
        raise ValueError(f"source must be upload or path, not {source!r}")
    modes = tuple(fields.get("modes") or [])
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}: the modes are {', '.join(MODES)}")
    if not modes:
        raise ValueError("choose at least one retrieval mode")
    judge = one("judge") or "offline"
    if judge not in JUDGES:
        raise ValueError(f"the judge must be offline or llm, not {judge!r}")
    name, path = one("name"), one("dataset_path")
    if source == "upload" and not _DATASET_NAME.fullmatch(name):
        raise ValueError(
            f"dataset name {name!r}: dataset names are 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if source == "path" and (not _DATASET_PATH.fullmatch(path) or ".." in path.split("/")):
        raise ValueError(
            f"dataset path {path!r}: a directory relative to the evaluation service's datasets_root "
            "(letters, digits, '.', '_', '-' and '/'; no '..', not absolute)"
        )
    return RunForm(
        source=source,
        name=name if source == "upload" else path.rsplit("/", 1)[-1],
        dataset_path=path,
        modes=tuple(m for m in MODES if m in modes),
        max_queries=whole_number(one("max_queries"), "max queries", 0, 1_000_000, default=0),
        answers=whole_number(one("answers"), "answers to judge", 0, 1000, default=0),
        judge=judge,
        keep_tenant=one("keep_tenant") in ("on", "true", "1"),
    )


# -- plots (matplotlib, SVG) -----------------------------------------------------------------------------
def _svg(draw: Callable[[Figure], None], size: tuple[float, float] = (6.4, 3.4)) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    draw(fig)
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _bars(
    fig: Figure, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], ylabel: str, title: str
) -> None:
    ax = fig.add_subplot()
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (label, values) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=label)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)


def report_plot(report: ev_pb.EvalReport, kind: str) -> bytes:
    modes = [m.mode for m in report.modes]
    if kind == "quality":
        series = [(label, [getattr(m, key) for m in report.modes]) for key, label in RETRIEVAL]

        def draw(fig: Figure) -> None:
            _bars(fig, modes, series, "score (0-1)", f"Retrieval quality per mode · {report.dataset}")
            fig.axes[0].set_ylim(0, 1.05)

    elif kind == "latency":
        series = [
            ("p50", [m.latency_p50_ms for m in report.modes]),
            ("p95", [m.latency_p95_ms for m in report.modes]),
        ]

        def draw(fig: Figure) -> None:
            _bars(fig, modes, series, "milliseconds", f"Query latency per mode · {report.dataset}")

    elif kind == "answers":
        metrics = list(report.answers.metrics)

        def draw(fig: Figure) -> None:
            _bars(
                fig,
                [m.name for m in metrics],
                [("mean", [m.mean for m in metrics])],
                "score (0-1)",
                "Answer quality",
            )
            fig.axes[0].set_ylim(0, 1.05)

    else:
        raise ValueError(kind)
    return _svg(draw)


def report_alt(report: ev_pb.EvalReport, kind: str) -> str:
    """What a report plot shows, in words (the <img>'s alt text)."""
    if kind == "quality":
        parts = [
            f"{m.mode}: " + ", ".join(f"{label} {getattr(m, key):.3f}" for key, label in RETRIEVAL)
            for m in report.modes
        ]
        return "Bar chart of retrieval quality per mode. " + "; ".join(parts) + "."
    if kind == "latency":
        parts = [
            f"{m.mode}: p50 {m.latency_p50_ms:.1f} ms, p95 {m.latency_p95_ms:.1f} ms" for m in report.modes
        ]
        return "Bar chart of query latency per mode. " + "; ".join(parts) + "."
    parts = [f"{m.name} {m.mean:.3f} over {m.n} answers" for m in report.answers.metrics]
    return "Bar chart of answer quality. " + "; ".join(parts) + "."


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    metrics: ev_pb.OnlineMetrics

    @property
    def label(self) -> str:
        return datetime.fromtimestamp(self.start, UTC).strftime("%m-%d %H:%M")

    def quality(self, name: str) -> ev_pb.MetricValue | None:
        return next((q for q in self.metrics.quality if q.name == name and q.n > 0), None)


@dataclass(frozen=True)
class OnlineSeries:
    tenant: str
    range: str
    fetched_at: float
    windows: tuple[Window, ...]
    total: ev_pb.OnlineMetrics

    @property
    def range_label(self) -> str:
        return RANGES[self.range][1]

    @property
    def step_label(self) -> str:
        step = RANGES[self.range][0] // ONLINE_WINDOWS
        return f"{step // 60} minutes" if step < 3600 else f"{step // 3600} hours"

    @property
    def who(self) -> str:
        return f"tenant {self.tenant}" if self.tenant else "all tenants"

    def metric_names(self) -> list[str]:
        seen = {q.name for w in self.windows for q in w.metrics.quality if q.n > 0}
        return [n for n in QUALITY if n in seen] + sorted(seen - set(QUALITY))


def online_plot(series: OnlineSeries, kind: str) -> bytes:
    labels = [w.label for w in series.windows]
    xs = list(range(len(labels)))
    ticks = xs[:: max(1, len(xs) // 6)]

    def axes(fig: Figure, ylabel: str, title: str) -> Any:
        ax = fig.add_subplot()
        ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize="small")
        ax.set_ylabel(ylabel)
        ax.set_xlabel(f"window start (UTC), {series.step_label} each")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        return ax

    if kind == "traffic":

        def draw(fig: Figure) -> None:
            ax = axes(fig, "answers", f"Answers per window · {series.who}")
            ax.bar(xs, [w.metrics.answers for w in series.windows], label="answers")
            ax.bar(xs, [w.metrics.blocked_answers for w in series.windows], label="blocked")
            ax.set_ylim(0, max([w.metrics.answers for w in series.windows] + [1]) * 1.1)
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.legend(fontsize="small")

    elif kind == "latency":

        def draw(fig: Figure) -> None:
            ax = axes(fig, "milliseconds", f"Answer latency · {series.who}")
            for key, label in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")):
                ys = [getattr(w.metrics, key) if w.metrics.answers else math.nan for w in series.windows]
                ax.plot(xs, ys, marker="o", label=label)
            top = max([w.metrics.latency_p95_ms for w in series.windows if w.metrics.answers] + [1.0])
            ax.set_ylim(0, top * 1.1)
            ax.legend(fontsize="small")

    elif kind == "quality":

        def draw(fig: Figure) -> None:
            ax = axes(fig, "mean score (0-1)", f"Answer quality of sampled answers · {series.who}")
            for name in series.metric_names():
                ys = [q.mean if (q := w.quality(name)) else math.nan for w in series.windows]
                ax.plot(xs, ys, marker="o", label=name)
            ax.set_ylim(0, 1.05)
            if series.metric_names():
                ax.legend(fontsize="small")

    else:
        raise ValueError(kind)
    return _svg(draw)


def online_alt(series: OnlineSeries, kind: str) -> str:
    ws = series.windows
    head = f"over {series.range_label} for {series.who}, in {len(ws)} windows of {series.step_label}"
    if kind == "traffic":
        busiest = max(ws, key=lambda w: w.metrics.answers) if ws else None
        peak = (
            f"; the busiest window starts {busiest.label} with {busiest.metrics.answers}" if busiest else ""
        )
        answers = sum(w.metrics.answers for w in ws)
        blocked = sum(w.metrics.blocked_answers for w in ws)
        return f"Bar chart of answers per window {head}: {answers} answers, {blocked} blocked{peak}."
    if kind == "latency":
        busy = [w for w in ws if w.metrics.answers]
        if not busy:
            return f"Line chart of answer latency {head}: no answers, no latency."
        worst = max(busy, key=lambda w: w.metrics.latency_p95_ms)
        return (
            f"Line chart of answer latency p50 and p95 {head}: the highest p95 is "
            f"{worst.metrics.latency_p95_ms:.0f} ms in the window starting {worst.label}."
        )
    names = series.metric_names()
    if not names:
        return f"Line chart of answer quality {head}: no sampled answer was scored."
    parts = []
    for name in names:
        means = [q.mean for w in ws if (q := w.quality(name))]
        parts.append(f"{name} from {min(means):.2f} to {max(means):.2f}")
    return f"Line chart of answer quality {head}: " + "; ".join(parts) + "."


def _svg_response(body: bytes) -> Response:
    return Response(body, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=60"})


# -- calls -----------------------------------------------------------------------------------------------
def _md(request: Request, viewer: Viewer, timeout: float | None = None) -> dict[str, Any]:
    backend = console_of(request).backend
    return {"metadata": backend.metadata(viewer), "timeout": timeout or backend.timeout_s}


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


async def fetch_online(request: Request, viewer: Viewer, tenant: str, range_: str) -> OnlineSeries:
    """The range cut into ONLINE_WINDOWS consecutive windows, one GetOnlineMetrics each, and the total."""
    seconds = RANGES[range_][0]
    step = seconds // ONLINE_WINDOWS
    now = time.time()
    end = math.ceil(now / 60) * 60  # whole minutes: consecutive loads line up
    starts = [end - seconds + i * step for i in range(ONLINE_WINDOWS)]
    stub = console_of(request).backend.evaluation
    calls = [
        stub.GetOnlineMetrics(
            ev_pb.GetOnlineMetricsRequest(tenant_id=tenant, start=_ts(s), end=_ts(s + step)),
            **_md(request, viewer),
        )
        for s in starts
    ]
    total_call = stub.GetOnlineMetrics(
        ev_pb.GetOnlineMetricsRequest(tenant_id=tenant, start=_ts(end - seconds), end=_ts(end)),
        **_md(request, viewer),
    )
    *replies, total = await asyncio.gather(*calls, total_call)
    series = OnlineSeries(
        tenant=tenant,
        range=range_,
        fetched_at=now,
        windows=tuple(Window(s, s + step, r) for s, r in zip(starts, replies, strict=True)),
        total=total,
    )
    request.session[_ONLINE_KEY] = series
    return series


def _online_params(request: Request) -> tuple[str, str]:
    tenant = request.query_params.get("tenant", "").strip()
    if tenant and not is_tenant_id(tenant):
        raise ValueError(
            f"invalid tenant {tenant!r}: tenant ids are 1-63 characters of lowercase letters, digits "
            "and '-', starting with a letter or digit"
        )
    range_ = request.query_params.get("range", "1h")
    if range_ not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, not {range_!r}")
    return tenant, range_


# -- routes ----------------------------------------------------------------------------------------------
@page
async def index(request: Request, viewer: Viewer) -> Response:
    runs = list(reversed(_runs(request).values()))
    shown = _run_of(request)
    tenants: list[str] = []
    tenants_failure: RpcFailure | None = None
    try:
        reply = await console_of(request).backend.retrieval.ListTenants(
            ret_pb.ListTenantsRequest(), **_md(request, viewer)
        )
        tenants = sorted(
            t.tenant_id for t in reply.tenants if viewer.can(Permission.METRICS_READ, t.tenant_id)
        )
    except grpc.aio.AioRpcError as exc:
        tenants_failure = RpcFailure.of(exc)
    except NotLoggedIn as exc:
        tenants_failure = RpcFailure("UNAUTHENTICATED", str(exc))
    # online metrics of every tenant (an empty tenant) need metrics.read platform-wide
    all_tenants = viewer.platform_wide(Permission.METRICS_READ)
    online_tenant = current_tenant(request)
    if online_tenant not in tenants:
        online_tenant = "" if all_tenants or not tenants else tenants[0]
    return render(
        request,
        "evaluation/index.html",
        {
            "runs": runs,
            "shown": shown,
            "modes": MODES,
            "judges": JUDGES,
            "ranges": RANGES,
            "tenants": tenants,
            "tenants_failure": tenants_failure,
            "online_tenant": online_tenant,
            "all_tenants": all_tenants,
            # RunEval makes a throwaway tenant: eval.run platform-wide (methods.py)
            "can_run": viewer.platform_wide(Permission.EVAL_RUN),
            "can_metrics": all_tenants or bool(tenants),
            "max_upload_mib": console_of(request).settings.max_upload_bytes / (1024 * 1024),
            **_report_context(shown),
        },
    )


def _report_context(run: EvalRun | None) -> dict[str, Any]:
    if run is None or run.report is None:
        return {}
    report = run.report
    alts = {k: report_alt(report, k) for k in ("quality", "latency")}
    if report.answers.metrics:
        alts["answers"] = report_alt(report, "answers")
    return {"run": run, "report": report, "alts": alts, "retrieval": RETRIEVAL}


async def _read_upload(request: Request) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    limit = console_of(request).settings.max_upload_bytes
    form = await request.form(max_files=3, max_fields=50)
    fields: dict[str, list[str]] = {}
    files: dict[str, bytes] = {}
    total = 0
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key not in ("corpus", "queries", "qrels") or not value.filename:
                continue
            data = await value.read(limit - total + 1)
            total += len(data)
            if total > limit:
                raise ValueError(f"the dataset is larger than the console's upload limit ({limit} bytes)")
            files[key] = data
        else:
            fields.setdefault(key, []).append(value)
    return fields, files


@fragment
async def run_eval(request: Request, viewer: Viewer) -> Response:
    try:
        fields, files = await _read_upload(request)
        spec = parse_run_form(fields)
        if spec.source == "upload":
            missing = [f for f in ("corpus", "queries", "qrels") if not files.get(f)]
            if missing:
                raise ValueError(
                    "upload the three BEIR files: corpus.jsonl, queries.jsonl and qrels/test.tsv "
                    f"(missing: {', '.join(missing)})"
                )
    except ValueError as exc:
        return bad_request(request, str(exc))
    runs = _runs(request)
    if sum(1 for r in runs.values() if not r.done) >= MAX_ACTIVE:
        return bad_request(request, f"{MAX_ACTIVE} evaluations of yours are running: wait for one to end")
    stub = console_of(request).backend.evaluation
    try:
        md = _md(request, viewer, RUN_TIMEOUT_S)
    except NotLoggedIn as exc:
        return bad_request(request, str(exc))
    if spec.source == "upload":
        header = ev_pb.RunEvalUploadHeader(
            name=spec.name,
            modes=spec.modes,
            max_queries=spec.max_queries,
            keep_tenant=spec.keep_tenant,
            answers=spec.answers,
            judge=spec.judge,
        )
        stream = stub.RunEvalUpload(upload_requests(header, files), **md)
    else:
        stream = stub.RunEval(
            ev_pb.RunEvalRequest(
                dataset_path=spec.dataset_path,
                modes=spec.modes,
                max_queries=spec.max_queries,
                keep_tenant=spec.keep_tenant,
                answers=spec.answers,
                judge=spec.judge,
            ),
            **md,
        )
    run = EvalRun(id=secrets.token_urlsafe(12), dataset=spec.name, source=spec.source, modes=spec.modes)
    run.task = asyncio.create_task(_drive(run, stream), name=f"console-eval-{run.id}")
    _track(console_of(request), run.task)
    _keep(runs, run)
    return render(request, "evaluation/_run.html", {"run": run})


_TASKS_KEY = "evaluation.tasks"


def _track(console: Console, task: asyncio.Task[None]) -> None:
    """Runs still going when the console stops are cancelled (their gRPC streams closed) at its stop."""
    tasks: set[asyncio.Task[None]] | None = console.extras.get(_TASKS_KEY)
    if tasks is None:
        tasks = console.extras[_TASKS_KEY] = set()

        async def cancel_runs() -> None:
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        console.on_stop.append(cancel_runs)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _sse(event: str, data: str) -> str:
    lines = data.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


@fragment
async def run_events(request: Request, viewer: Viewer) -> Response:
    """The run's progress, then its report (or failure), as Server-Sent Events; ``done`` ends it."""
    run = _run_of(request)
    if run is None:
        return bad_request(request, "no such evaluation run in this session")
    templates = console_of(request).templates
    base = {"request": request, "run": run}

    def part(name: str, **ctx: Any) -> str:
        return templates.get_template(name).render({**base, **ctx})

    async def stream() -> AsyncIterator[str]:
        shown = -1
        while True:
            if len(run.progress) != shown or run.done:
                shown = len(run.progress)
                yield _sse("progress", part("evaluation/_progress.html"))
            if run.done:
                if run.report is not None:
                    final = part("evaluation/_report.html", **_report_context(run))
                else:
                    final = part("_error.html", failure=run.failure, what="The evaluation failed")
                runs = list(reversed(_runs(request).values()))
                yield _sse("report", final + part("evaluation/_runs_oob.html", runs=runs))
                yield _sse("done", "")
                return
            if not await run.wait(15.0):
                yield ": keep-alive\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@fragment
async def report_fragment(request: Request, viewer: Viewer) -> Response:
    run = _run_of(request)
    if run is None or run.report is None:
        return bad_request(request, "no finished evaluation run of that id in this session")
    return render(request, "evaluation/_report.html", _report_context(run))


@fragment
async def report_svg(request: Request, viewer: Viewer) -> Response:
    run = _run_of(request)
    kind = request.query_params.get("kind", "")
    if run is None or run.report is None:
        return bad_request(request, "no finished evaluation run of that id in this session")
    if kind not in ("quality", "latency", "answers") or (
        kind == "answers" and not run.report.answers.metrics
    ):
        return bad_request(request, f"no plot {kind!r} for this report (quality, latency, answers)")
    return _svg_response(await asyncio.to_thread(report_plot, run.report, kind))


@fragment
async def online(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, range_ = _online_params(request)
    except ValueError as exc:
        return bad_request(request, str(exc))
    try:
        series = await fetch_online(request, viewer, tenant, range_)
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, "Reading online metrics failed")
    except NotLoggedIn as exc:
        return bad_request(request, str(exc))
    alts = {k: online_alt(series, k) for k in ("traffic", "latency", "quality")}
    return render(
        request, "evaluation/_online.html", {"series": series, "alts": alts, "stamp": int(series.fetched_at)}
    )


@fragment
async def online_svg(request: Request, viewer: Viewer) -> Response:
    try:
        tenant, range_ = _online_params(request)
    except ValueError as exc:
        return bad_request(request, str(exc))
    kind = request.query_params.get("kind", "")
    if kind not in ("traffic", "latency", "quality"):
        return bad_request(request, f"no plot {kind!r} (traffic, latency, quality)")
    series = request.session.get(_ONLINE_KEY)
    fresh = (
        isinstance(series, OnlineSeries)
        and (series.tenant, series.range) == (tenant, range_)
        and time.time() - series.fetched_at < ONLINE_CACHE_S
    )
    if not fresh:
        try:
            series = await fetch_online(request, viewer, tenant, range_)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(request, exc, "Reading online metrics failed")
        except NotLoggedIn as exc:
            return bad_request(request, str(exc))
    assert isinstance(series, OnlineSeries)
    return _svg_response(await asyncio.to_thread(online_plot, series, kind))


routes: list[BaseRoute] = [
    Route("/evaluation", index),
    Route("/evaluation/run", run_eval, methods=["POST"]),
    Route("/evaluation/events", run_events),
    Route("/evaluation/report", report_fragment),
    Route("/evaluation/report.svg", report_svg),
    Route("/evaluation/online", online),
    Route("/evaluation/online.svg", online_svg),
]
