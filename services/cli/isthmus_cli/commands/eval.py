"""``isthmus eval``: retrieval quality of a BEIR-layout dataset, per search mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from isthmus_cli import eval_outputs
from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, ConfigFile, Endpoint
from isthmus_cli.output import console, fail, progress

if TYPE_CHECKING:
    from rich.progress import TaskID

    from isthmus.evaluation.v1.evaluation_pb2 import EvalReport as EvalReportPb


def eval_(
    dataset: Annotated[
        Path, typer.Argument(help="BEIR-layout dir: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    ],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    modes: Annotated[
        str, typer.Option(help="comma-separated: bm25,dense,hybrid,hybrid+rerank")
    ] = "bm25,dense,hybrid,hybrid+rerank",
    max_queries: Annotated[int, typer.Option(help="0 = all judged queries")] = 0,
    standalone: Annotated[
        bool, typer.Option("--standalone", help="boot a throwaway platform in-process")
    ] = False,
    keep_tenant: Annotated[bool, typer.Option("--keep-tenant")] = False,
    store: Annotated[
        str | None,
        typer.Option(
            help="embedded|weaviate: boot a throwaway platform on this store (implies --standalone)"
        ),
    ] = None,
    weaviate_url: Annotated[
        str, typer.Option(envvar="ISTHMUS_RETRIEVAL_WEAVIATE_URL", help="with --store weaviate")
    ] = "http://127.0.0.1:18080",
    weaviate_grpc_port: Annotated[
        int, typer.Option(envvar="ISTHMUS_RETRIEVAL_WEAVIATE_GRPC_PORT", help="with --store weaviate")
    ] = 18081,
    answers: Annotated[
        int,
        typer.Option(
            min=0,
            help="ask this many queries (the first, by id) through the orchestrator and judge the answers",
        ),
    ] = 0,
    judge: Annotated[
        str,
        typer.Option(help="offline|llm: the judge of the answers (default: the service's evaluation.judge)"),
    ] = "",
    baseline: Annotated[
        Path | None,
        typer.Option(help="a report written by --output (or --json) to compare with: the gate, the HTML"),
    ] = None,
    max_drop: Annotated[
        list[str] | None,
        typer.Option(
            "--max-drop",
            metavar="[MODE:]METRIC=ALLOWANCE",
            help="fail (exit 1) when METRIC falls more than ALLOWANCE below the baseline, in every mode or "
            "in MODE; repeatable. Metrics: ndcg_at_10, recall_at_100, mrr_at_10, map_at_100; "
            "latency_p50_ms / latency_p95_ms (a rise, in ms); faithfulness, answer_relevance, "
            "context_precision, context_recall (answers). ALLOWANCE: a number, or N% of the baseline",
        ),
    ] = None,
    allow_mismatch: Annotated[
        bool,
        typer.Option("--allow-mismatch", help="compare with a baseline of another dataset, size or judge"),
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="write a self-contained HTML report (no network to view it)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the JSON report here")] = None,
    as_json: AsJson = False,
    config: ConfigFile = None,
) -> None:
    """Ingest a dataset for a throwaway tenant and report nDCG@10, recall@100, MRR@10, MAP@100 per mode;
    with --answers N, also the answer metrics (faithfulness, answer relevance, context precision and
    recall) of the first N queries' answers.

    Against a running platform (--endpoint), or a throwaway one in this process (--standalone, or
    --store embedded|weaviate; `make weaviate-up` serves the default --weaviate-url).

    A regression gate for CI: --baseline base.json --max-drop ndcg_at_10=0.01 exits 1 when a metric
    fell past its allowance, naming each and by how much; a metric or mode missing from either report
    fails too. --output writes this run's report (the next baseline), --html a page to read.

    Exit codes: 0 done, and the gate (if any) passed; 1 the evaluation failed, or the gate did; 2 a
    usage error (a bad --max-drop, an unreadable baseline, a baseline lacking what --max-drop names,
    a baseline of another dataset)."""
    from isthmus.evaluation.v1 import evaluation_pb2
    from isthmus_cli.eval_report import report_from_proto
    from isthmus_cli.standalone import standalone_platform
    from isthmus_evaluation.datasets import CORPUS_FILE, LAYOUT_HINT, QRELS_FILE, QUERIES_FILE
    from isthmus_evaluation.report import REFERENCE_NDCG10, render_answers, render_table

    ds = dataset.resolve()
    if not ds.is_dir():
        fail(f"{dataset} is not a directory")
    # the dataset travels with the request (RunEvalUpload): the service never opens a path we choose
    files = {"corpus": ds / CORPUS_FILE, "queries": ds / QUERIES_FILE, "qrels": ds / QRELS_FILE}
    if missing := [str(p.relative_to(ds)) for p in files.values() if not p.is_file()]:
        fail(f"{dataset} has no {', '.join(missing)}; {LAYOUT_HINT}")
    outputs = eval_outputs.prepare(
        baseline=baseline,
        max_drop=max_drop or [],
        html=html,
        output=output,
        allow_mismatch=allow_mismatch,
        dataset=eval_outputs.dataset_name(ds),
        modes=[m for m in modes.split(",") if m],
    )

    def upload_requests() -> Iterator[evaluation_pb2.RunEvalUploadRequest]:
        yield evaluation_pb2.RunEvalUploadRequest(
            header=evaluation_pb2.RunEvalUploadHeader(
                name=eval_outputs.dataset_name(ds),
                modes=[m for m in modes.split(",") if m],
                max_queries=max_queries,
                keep_tenant=keep_tenant,
                answers=answers,
                judge=judge,
            )
        )
        for part, path in files.items():
            with path.open("rb") as fh:
                while piece := fh.read(1 << 20):  # 1 MiB messages, well under gRPC's 4 MiB default
                    request = evaluation_pb2.RunEvalUploadRequest()
                    setattr(request, part, piece)
                    yield request

    async def call(address: str) -> EvalReportPb | None:
        report = None
        async with connect(address) as stubs:
            with progress(as_json) as bars:
                tasks: dict[str, TaskID] = {}
                async for ev in stubs.evaluation.RunEvalUpload(upload_requests()):
                    if ev.WhichOneof("event") == "progress":
                        p = ev.progress
                        if p.phase not in tasks:
                            tasks[p.phase] = bars.add_task(p.phase, total=p.total)
                        bars.update(tasks[p.phase], completed=p.done, total=p.total)
                    else:
                        report = ev.report
        return report

    retrieval: dict[str, Any] = {}
    if store is not None:
        if store not in ("embedded", "weaviate"):
            fail(f"--store must be embedded or weaviate, got {store!r}")
        retrieval["store"] = store
        if store == "weaviate":
            retrieval |= {"weaviate_url": weaviate_url, "weaviate_grpc_port": weaviate_grpc_port}

    async def main() -> EvalReportPb | None:
        if standalone or store is not None:
            async with standalone_platform(config, retrieval) as address:
                return await call(address)
        return await call(endpoint)

    r = run(main())
    if r is None:
        fail("the evaluation stream ended without its report")
    report = report_from_proto(r)
    if as_json:
        print(report.to_json())
    else:
        console.print(render_table(report, REFERENCE_NDCG10.get(report.dataset)))
        if report.answers is not None:
            console.print(render_answers(report.answers))
    eval_outputs.finish(report, outputs)
