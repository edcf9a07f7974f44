"""The evaluation page against the real `all` platform in this process, the console on a free port (no
browser): a tiny BEIR dataset uploaded through the page's form is evaluated, its progress and report
stream as Server-Sent Events, the report's plots are SVG with their numbers in a table; a dataset under
the service's datasets_root runs by path, a missing one ends with the service's error; bad forms are 400
with the reason; the online metrics of a tenant that was asked questions are drawn as SVG."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as orc_pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as orc_grpc
from isthmus.evaluation.v1 import evaluation_pb2 as ev_pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as ev_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as ret_pb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as ret_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run


def on_platform(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test on the module's in-process platform (slow: it loads the bundled models)."""
    return pytest.mark.slow(pytest.mark.asyncio(loop_scope="module")(test))


_CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')
CORPUS = [
    {"_id": "glider", "title": "Gliders", "text": "A glider flies without an engine, soaring on thermals."},
    {"_id": "marmot", "title": "Marmots", "text": "Marmots hibernate in burrows through the alpine winter."},
    {"_id": "pelican", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
    {"_id": "glacier", "title": "Glaciers", "text": "Glaciers carve U-shaped valleys as they slowly flow."},
    {"_id": "kiln", "title": "Kilns", "text": "A kiln fires clay pots at very high temperatures."},
]
QUERIES = {
    "q1": "how do marmots spend the winter",
    "q2": "pelican throat pouch",
    "q3": "aircraft without an engine",
}
QRELS = {"q1": "marmot", "q2": "pelican", "q3": "glider"}


def beir_files() -> dict[str, bytes]:
    return {
        "corpus": "".join(json.dumps(doc) + "\n" for doc in CORPUS).encode(),
        "queries": "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()).encode(),
        "qrels": (
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items())
        ).encode(),
    }


class Console:
    def __init__(self, client: httpx.AsyncClient, grpc_address: str) -> None:
        self.client = client
        self.grpc_address = grpc_address
        self.csrf = ""

    async def get(self, path: str, **params: str) -> httpx.Response:
        response = await self.client.get(path, params=params)
        if found := _CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    async def run(
        self, fields: dict[str, str | list[str]], files: dict[str, bytes] | None = None
    ) -> httpx.Response:
        if not self.csrf:
            await self.get("/evaluation")
        return await self.client.post(
            "/evaluation/run",
            data=fields,
            files={k: (f"{k}.data", v) for k, v in (files or {}).items()} or None,
            headers={"X-CSRF-Token": self.csrf, "HX-Request": "true"},
        )

    async def events(self, run_page: str) -> list[tuple[str, str]]:
        """The run's Server-Sent Events until ``done``: (event, data)."""
        found = re.search(r'sse-connect="([^"]+)"', run_page)
        assert found, run_page
        url = found.group(1).replace("&amp;", "&")
        events: list[tuple[str, str]] = []
        event, data = "", []
        async with self.client.stream("GET", url, headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and event:
                    events.append((event, "\n".join(data)))
                    if event == "done":
                        return events
                    event, data = "", []
        return events


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    tmp: Path = tmp_path_factory.mktemp("console-eval")
    root = tmp / "datasets" / "tiny"
    (root / "qrels").mkdir(parents=True)
    files = beir_files()
    (root / "corpus.jsonl").write_bytes(files["corpus"])
    (root / "queries.jsonl").write_bytes(files["queries"])
    (root / "qrels" / "test.tsv").write_bytes(files["qrels"])
    port = free_port_run(1)
    rt = Runtime.from_settings(
        "all",
        MODULES,
        None,
        platform_overrides(
            str(tmp / "data"), evaluation={"datasets_root": str(tmp / "datasets")}, console={"port": port}
        ),
    )
    await rt.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            yield Console(client, rt.address)
    finally:
        await rt.stop()


@on_platform
async def test_an_uploaded_dataset_streams_to_a_report_with_svg_plots(console: Console) -> None:
    page = await console.get("/evaluation")
    assert page.status_code == 200, page.text
    assert 'hx-encoding="multipart/form-data"' in page.text and 'for="ds-corpus"' in page.text
    started = await console.run(
        {"source": "upload", "name": "tiny-upload", "modes": ["bm25", "dense"]}, beir_files()
    )
    assert started.status_code == 200, started.text
    assert 'hx-ext="sse"' in started.text and 'sse-close="done"' in started.text
    events = await console.events(started.text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "report" in kinds and "progress" in kinds, kinds
    report = dict(events)["report"]
    assert "Report: tiny-upload" in report, report
    assert '<div id="runs-list" hx-swap-oob="true">' in report and "Report of tiny-upload" in report
    assert "<caption>Retrieval quality per mode</caption>" in report
    assert '<th scope="row">bm25</th>' in report and '<th scope="row">dense</th>' in report
    plots = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', report)
    assert len(plots) == 2, plots
    for src, alt in plots:
        assert "bm25" in alt and "dense" in alt, alt
        svg = await console.client.get(src.replace("&amp;", "&"))
        assert svg.status_code == 200, svg.text
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in svg.content[:2000]
    # the session keeps the run: the page lists it and shows its report again
    again = await console.get("/evaluation", run=re.findall(r"run=([A-Za-z0-9_-]+)", report)[0])
    assert "Report of tiny-upload" in again.text and "Report: tiny-upload" in again.text
    # a second stream of a finished run replays its end (a reconnecting EventSource does not rerun it)
    replay = await console.events(started.text)
    assert [e for e, _ in replay][-2:] == ["report", "done"]


@on_platform
async def test_a_dataset_under_the_root_runs_by_path_and_a_missing_one_fails_with_the_reason(
    console: Console,
) -> None:
    ok = await console.run({"source": "path", "dataset_path": "tiny", "modes": ["bm25"]})
    assert ok.status_code == 200, ok.text
    events = dict(await console.events(ok.text))
    assert "Report: tiny" in events["report"]
    missing = await console.run({"source": "path", "dataset_path": "nope", "modes": ["bm25"]})
    assert missing.status_code == 200, missing.text
    failed = dict(await console.events(missing.text))["report"]
    assert 'role="alert"' in failed and "The evaluation failed" in failed
    assert re.search(r'class="code">(INVALID_ARGUMENT|NOT_FOUND|FAILED_PRECONDITION)<', failed), failed


@on_platform
async def test_bad_run_forms_are_400_with_the_reason(console: Console) -> None:
    no_files = await console.run({"source": "upload", "name": "x", "modes": ["bm25"]})
    assert no_files.status_code == 400 and "corpus.jsonl" in no_files.text
    bad_name = await console.run({"source": "upload", "name": "../x", "modes": ["bm25"]}, beir_files())
    assert bad_name.status_code == 400 and "dataset name" in bad_name.text
    escape = await console.run({"source": "path", "dataset_path": "../etc", "modes": ["bm25"]})
    assert escape.status_code == 400 and "no '..'" in html.unescape(escape.text)
    no_mode = await console.run({"source": "upload", "name": "x"}, beir_files())
    assert no_mode.status_code == 400 and "at least one retrieval mode" in no_mode.text
    bad_mode = await console.run({"source": "upload", "name": "x", "modes": ["magic"]}, beir_files())
    assert bad_mode.status_code == 400 and "unknown mode" in bad_mode.text
    unknown_run = await console.get("/evaluation/events", run="nosuchrun123")
    assert unknown_run.status_code == 400


@on_platform
async def test_online_metrics_are_drawn_after_some_asks(console: Console) -> None:
    tenant = "ask-" + uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(console.grpc_address) as ch:
        await ret_grpc.RetrievalServiceStub(ch).CreateTenant(ret_pb.CreateTenantRequest(tenant_id=tenant))
        orchestrator = orc_grpc.AgentOrchestratorServiceStub(ch)
        for question in ("what do marmots do in winter?", "how does a glider fly?"):
            await orchestrator.Ask(orc_pb.AskRequest(tenant_id=tenant, question=question))
        evaluation = ev_grpc.EvaluationServiceStub(ch)
        for _ in range(100):  # the answer events reach the evaluation service over the bus
            got = await evaluation.GetOnlineMetrics(ev_pb.GetOnlineMetricsRequest(tenant_id=tenant))
            if got.answers >= 2:
                break
            await asyncio.sleep(0.2)
        assert got.answers >= 2, got
    part = await console.get("/evaluation/online", tenant=tenant, range="1h")
    assert part.status_code == 200, part.text
    assert f"for tenant {tenant}: <strong>2</strong> answers" in " ".join(part.text.split())
    plots = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', part.text)
    assert [re.search(r"kind=(\w+)", src).group(1) for src, _ in plots] == ["traffic", "latency", "quality"]  # type: ignore[union-attr]
    assert "2 answers" in plots[0][1], plots[0][1]
    for src, _ in plots:
        svg = await console.client.get(src.replace("&amp;", "&"))
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml"), svg.text
        assert b"<svg" in svg.content[:2000]
    bad = await console.get("/evaluation/online", tenant="Bad_Tenant")
    assert bad.status_code == 400 and "lowercase letters" in bad.text


# -- the page's own logic (no platform) ----------------------------------------------------------------
def test_run_form_is_parsed_and_checked() -> None:
    from isthmus_console.pages.evaluation import parse_run_form

    spec = parse_run_form(
        {
            "source": ["upload"],
            "name": ["tiny"],
            "modes": ["dense", "bm25"],
            "answers": ["2"],
            "keep_tenant": ["on"],
        }
    )
    assert (spec.name, spec.modes, spec.answers, spec.judge, spec.keep_tenant) == (
        "tiny",
        ("bm25", "dense"),
        2,
        "offline",
        True,
    )
    by_path = parse_run_form({"source": ["path"], "dataset_path": ["beir/scifact"], "modes": ["bm25"]})
    assert (by_path.name, by_path.dataset_path) == ("scifact", "beir/scifact")
    for fields, reason in (
        ({"source": ["path"], "dataset_path": ["/etc"], "modes": ["bm25"]}, "not absolute"),
        ({"source": ["path"], "dataset_path": ["a/../b"], "modes": ["bm25"]}, "no '..'"),
        ({"source": ["upload"], "name": ["a b"], "modes": ["bm25"]}, "dataset name"),
        ({"source": ["upload"], "name": ["x"], "modes": ["bm25"], "judge": ["oracle"]}, "judge"),
        ({"source": ["upload"], "name": ["x"], "modes": ["bm25"], "max_queries": ["-1"]}, "between"),
        ({"source": ["ftp"], "modes": ["bm25"]}, "source"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_run_form(fields)  # type: ignore[arg-type]


def _report() -> ev_pb.EvalReport:
    return ev_pb.EvalReport(
        dataset="tiny",
        documents=5,
        queries=3,
        modes=[
            ev_pb.ModeMetrics(
                mode="bm25", ndcg_at_10=0.9, recall_at_100=1.0, mrr_at_10=0.8, latency_p50_ms=3
            ),
            ev_pb.ModeMetrics(
                mode="dense", ndcg_at_10=0.5, recall_at_100=0.75, mrr_at_10=0.4, latency_p95_ms=9
            ),
        ],
        answers=ev_pb.AnswerMetrics(
            samples=2, metrics=[ev_pb.MetricValue(name="faithfulness", mean=0.5, n=2)]
        ),
    )


def test_report_plots_are_svg_with_their_numbers_in_words() -> None:
    from isthmus_console.pages.evaluation import report_alt, report_plot

    report = _report()
    for kind in ("quality", "latency", "answers"):
        svg = report_plot(report, kind)
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg and b"<script" not in svg
    assert "bm25: nDCG@10 0.900, Recall@100 1.000, MRR@10 0.800" in report_alt(report, "quality")
    assert "dense: p50 0.0 ms, p95 9.0 ms" in report_alt(report, "latency")
    assert "faithfulness 0.500 over 2 answers" in report_alt(report, "answers")


def test_online_series_plots_and_alt_texts_with_and_without_answers() -> None:
    from isthmus_console.pages.evaluation import OnlineSeries, Window, online_alt, online_plot

    busy = ev_pb.OnlineMetrics(
        answers=4,
        latency_p50_ms=50,
        latency_p95_ms=120,
        quality=[ev_pb.MetricValue(name="faithfulness", mean=0.75, n=2)],
    )
    windows = tuple(
        Window(600.0 * i, 600.0 * (i + 1), busy if i == 3 else ev_pb.OnlineMetrics()) for i in range(6)
    )
    series = OnlineSeries("acme", "1h", 0.0, windows, busy)
    for kind in ("traffic", "latency", "quality"):
        assert b"<svg" in online_plot(series, kind)
    assert "4 answers, 0 blocked; the busiest window starts 01-01 00:30 with 4" in online_alt(
        series, "traffic"
    )
    assert "the highest p95 is 120 ms" in online_alt(series, "latency")
    assert "faithfulness from 0.75 to 0.75" in online_alt(series, "quality")
    quiet = OnlineSeries("", "1h", 0.0, tuple(Window(0, 300, ev_pb.OnlineMetrics()) for _ in range(3)), busy)
    for kind in ("traffic", "latency", "quality"):
        assert b"<svg" in online_plot(quiet, kind)  # empty windows draw empty axes, not an error
    assert "no answers" in online_alt(quiet, "latency") and "all tenants" in online_alt(quiet, "traffic")
    assert "no sampled answer was scored" in online_alt(quiet, "quality")
