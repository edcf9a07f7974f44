"""``isthmus`` — run the platform, ingest, ask, evaluate, manage tenants and configuration."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from isthmus_core.errors import ConfigurationError, IsthmusError

if TYPE_CHECKING:
    from isthmus_core.bus.kafka_security import KafkaSecurity

app = typer.Typer(
    help="Isthmus — an enterprise GenAI platform you can run on a laptop.", no_args_is_help=True
)
tenant_app = typer.Typer(help="Create, list and delete tenants.", no_args_is_help=True)
config_app = typer.Typer(help="Print or verify the settings.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(config_app, name="config")
dlq_app = typer.Typer(help="Inspect and re-drive dead-lettered messages (Kafka).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console()
err = Console(stderr=True)

Endpoint = Annotated[
    str, typer.Option("--endpoint", "-e", envvar="ISTHMUS_ENDPOINT", help="gRPC address of the platform")
]


def _tenant_id(value: str) -> str:
    """A ``--tenant`` / ``TENANT_ID`` value through the one tenant id parser, before anything uses it."""
    from isthmus_core.contracts.ids import parse_tenant_id
    from isthmus_core.errors import InvalidArgument

    try:
        return parse_tenant_id(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None


def _optional_tenant_id(value: str) -> str:
    return _tenant_id(value) if value else value


Tenant = Annotated[
    str, typer.Option("--tenant", "-t", envvar="ISTHMUS_TENANT", help="tenant id", callback=_tenant_id)
]
TenantArg = Annotated[str, typer.Argument(help="tenant id", callback=_tenant_id)]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="ISTHMUS_CONFIG", help="TOML settings file")
]
DEFAULT_ENDPOINT = "127.0.0.1:50051"
Bootstrap = Annotated[
    str,
    typer.Option("--bootstrap", envvar="ISTHMUS_KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers"),
]
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"


def _kafka_security(config: Path | None) -> KafkaSecurity:
    """The [common] Kafka security settings (TLS, SASL, MSK IAM) from env and the config file, so the Kafka
    tools connect like the services do."""
    from isthmus_core.settings import CommonSettings, load_all

    try:
        common = load_all([CommonSettings], config)["common"]
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    assert isinstance(common, CommonSettings)
    return common.kafka_security()


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            _fail(f"cannot reach the platform ({exc.details()}); is 'isthmus run' (make run) started?")
        _fail(f"{exc.code().name}: {exc.details()}")
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except IsthmusError as exc:  # e.g. Kafka unreachable or refusing the credentials, a missing topic
        _fail(f"{exc.code.name}: {exc}")


# --- run -----------------------------------------------------------------------------------------------


@app.command()
def run(
    target: Annotated[str, typer.Option("--target", help="all, or comma-separated service names")] = "all",
    config: ConfigFile = None,
) -> None:
    """Start services: `all` in one process (in-process bus, embedded store), or one service on Kafka."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    async def main() -> None:
        rt = Runtime.from_settings(target, MODULES, config)
        await rt.serve_forever()

    _run(main())


# --- config --------------------------------------------------------------------------------------------


def _load_sections(target: str, config: Path | None) -> dict[str, Any]:
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import resolve_targets
    from isthmus_core.settings import CommonSettings, load_all

    mods = resolve_targets(target, MODULES)
    return load_all([CommonSettings, *(m.settings_cls for m in mods)], config)


@config_app.command("print")
def config_print(target: Annotated[str, typer.Option("--target")] = "all", config: ConfigFile = None) -> None:
    """Print the effective settings of a target (secrets masked) as JSON."""
    from isthmus_core.settings import masked

    try:
        sections = _load_sections(target, config)
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    console.print_json(json.dumps({name: masked(s) for name, s in sections.items()}))


@config_app.command("verify")
def config_verify(
    target: Annotated[str, typer.Option("--target")] = "all", config: ConfigFile = None
) -> None:
    """Validate every setting of a target (and that model files exist); exit 2 listing all problems."""
    try:
        sections = _load_sections(target, config)
        emb = sections.get("embedding")
        if emb is not None:
            from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir

            model_dir = emb.model_dir or bundled_model_dir(BGE_SMALL_EN)
            missing = [f for f in ("model.onnx", "tokenizer.json") if not (Path(model_dir) / f).is_file()]
            if missing:
                raise ConfigurationError(f"[embedding] model_dir {model_dir} lacks {', '.join(missing)}")
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    console.print(f"[green]ok[/green]: settings for {', '.join(sections)} are valid")


# --- tenants -------------------------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(tenant_id: TenantArg, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
    from isthmus_cli.client import channel

    async def main() -> None:
        async with channel(endpoint) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=tenant_id), timeout=30
            )

    _run(main())
    console.print(f"tenant [bold]{tenant_id}[/bold] created")


@tenant_app.command("list")
def tenant_list(
    endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: Annotated[bool, typer.Option("--json")] = False
):
    from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
    from isthmus_cli.client import channel

    async def main() -> Any:
        async with channel(endpoint) as ch:
            return await retrieval_pb2_grpc.RetrievalServiceStub(ch).ListTenants(
                retrieval_pb2.ListTenantsRequest(), timeout=30
            )

    resp = _run(main())
    rows = [{"tenant_id": t.tenant_id, "chunks": t.chunk_count} for t in resp.tenants]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("tenant", "chunks")
    for r in rows:
        table.add_row(r["tenant_id"], str(r["chunks"]))
    console.print(table)


@tenant_app.command("delete")
def tenant_delete(
    tenant_id: TenantArg,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
    from isthmus_cli.client import channel

    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete tenant {tenant_id} and all its documents?", abort=True)

    async def main() -> None:
        async with channel(endpoint) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).DeleteTenant(
                retrieval_pb2.DeleteTenantRequest(tenant_id=tenant_id), timeout=120
            )

    _run(main())
    console.print(f"tenant [bold]{tenant_id}[/bold] deleted")


# --- ingest --------------------------------------------------------------------------------------------


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="a file or a folder (.txt .md .html .pdf, recursively)")],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until indexed")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for indexing")] = 600.0,
    acl: Annotated[
        str | None,
        typer.Option(help="comma-separated users/groups allowed to read these documents (metadata 'acl')"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload documents; by default wait until they are searchable."""
    from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
    from isthmus_cli.client import channel, collect_files, rpc_error_text, upload_parts

    try:
        files = collect_files(path)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if not files:
        _fail(f"no supported files under {path} (.txt .md .markdown .html .htm .pdf)")

    async def main() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with channel(endpoint) as ch:
            stub = ingestion_pb2_grpc.IngestionServiceStub(ch)
            with _progress(as_json) as progress:
                task = progress.add_task("uploading", total=len(files))
                for f in files:
                    row: dict[str, Any] = {"path": str(f)}
                    try:
                        meta = {"acl": acl} if acl else None
                        r = await stub.Upload(upload_parts(tenant, f, metadata=meta), timeout=300)
                        row.update(
                            document_id=r.document_id,
                            chunks=r.chunk_count,
                            duplicate=r.duplicate,
                            status=ingestion_pb2.DocumentStatus.Name(r.status)
                            .removeprefix("DOCUMENT_STATUS_")
                            .lower(),
                        )
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                            raise
                        row.update(status="rejected", error=rpc_error_text(exc))
                    results.append(row)
                    progress.advance(task)
                pending = {r["document_id"] for r in results if r.get("status") in ("chunked", "embedded")}
                if wait and pending:
                    task = progress.add_task("indexing", total=len(pending))
                    loop = asyncio.get_running_loop()
                    deadline = loop.time() + timeout
                    while pending and loop.time() < deadline:
                        for doc_id in list(pending):
                            d = await stub.GetDocument(
                                ingestion_pb2.GetDocumentRequest(tenant_id=tenant, document_id=doc_id),
                                timeout=30,
                            )
                            status = (
                                ingestion_pb2.DocumentStatus.Name(d.status)
                                .removeprefix("DOCUMENT_STATUS_")
                                .lower()
                            )
                            if status in ("indexed", "failed"):
                                pending.discard(doc_id)
                                progress.advance(task)
                                for r in results:
                                    if r.get("document_id") == doc_id:
                                        r["status"] = status
                                        if d.failure_reason:
                                            r["error"] = d.failure_reason
                        if pending:
                            await asyncio.sleep(0.2)
        return results

    results = _run(main())
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        table = Table("file", "document", "chunks", "status")
        for r in results:
            status = (
                r["status"]
                + (f" ({r['error']})" if r.get("error") else "")
                + (" duplicate" if r.get("duplicate") else "")
            )
            table.add_row(r["path"], r.get("document_id", ""), str(r.get("chunks", "")), status)
        console.print(table)
    if any(r["status"] in ("rejected", "failed") for r in results):
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(quiet: bool) -> Any:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )
    with progress:
        yield progress


# --- ask -----------------------------------------------------------------------------------------------


@app.command()
def ask(
    question: str,
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    top_k: Annotated[int, typer.Option(help="contexts for the generator")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    stream: Annotated[
        bool, typer.Option("--stream", help="print sentences as they pass the guardrail")
    ] = False,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            help="ask as this user/group (repeatable): documents uploaded with an 'acl' metadata only "
            "count when they name one of them; without it, no ACL check",
        ),
    ] = None,
) -> None:
    """Ask a question; prints the answer, its citations and the guardrail verdicts."""
    from google.protobuf.json_format import MessageToDict

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as pb_grpc
    from isthmus_cli.client import channel

    async def main() -> Any:
        async with channel(endpoint) as ch:
            stub = pb_grpc.AgentOrchestratorServiceStub(ch)
            from isthmus.common.v1 import common_pb2

            access = common_pb2.AccessScope(principals=principal) if principal is not None else None
            req = pb.AskRequest(tenant_id=tenant, question=question, top_k=top_k, access=access)
            if not stream:
                return await stub.Ask(req, timeout=120)
            final = None
            async for ev in stub.AskStream(req, timeout=120):
                kind = ev.WhichOneof("event")
                if kind == "sentence" and not as_json:
                    console.print(ev.sentence.text)
                elif kind == "final":
                    final = ev.final
            return final

    resp = _run(main())
    if as_json:
        print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
        return
    if not stream:
        console.print(resp.answer if not resp.blocked else f"[yellow]{resp.answer}[/yellow]")
    if resp.citations:
        console.print("\n[bold]citations[/bold]")
        for i, c in enumerate(resp.citations, 1):
            console.print(f"  [{i}] document {c.document_id} chars {c.start}-{c.end} (chunk {c.chunk_id})")
    from isthmus.common.v1 import common_pb2

    for label, v in (("input", resp.input_verdict), ("output", resp.output_verdict)):
        if v.action:
            codes = ", ".join(f.code for f in v.findings) or "no findings"
            action = common_pb2.GuardAction.Name(v.action).removeprefix("GUARD_ACTION_").lower()
            console.print(f"[dim]guardrail {label}: {action} ({escape(codes)})[/dim]")
    if resp.blocked:
        raise typer.Exit(3)


# --- eval ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def standalone_platform(
    config: Path | None = None, retrieval: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    """Boot the whole platform in this process on a free port with a throwaway data dir
    (``retrieval``: overrides of the retrieval section, e.g. the store)."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.runtime.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="isthmus-") as tmp:
        overrides = {
            "common": {
                "data_dir": tmp,
                "grpc_port": 0,
                "metrics_port": 0,
                "bus": "inprocess",
                "log_level": "warning",
            },
            **({"retrieval": retrieval} if retrieval else {}),
        }
        rt = Runtime.from_settings("all", MODULES, config, overrides)
        await rt.start()
        try:
            yield rt.address
        finally:
            await rt.stop()


@app.command("eval")
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigFile = None,
) -> None:
    """Ingest a dataset for a throwaway tenant and report nDCG@10, recall@100, MRR@10 per mode.

    Against a running platform (--endpoint), or a throwaway one in this process (--standalone, or
    --store embedded|weaviate; `make weaviate-up` serves the default --weaviate-url)."""
    from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
    from isthmus_cli.client import channel
    from isthmus_evaluation.report import REFERENCE_NDCG10, EvalReport, ModeReport, render_table

    ds = dataset.resolve()
    if not ds.is_dir():
        _fail(f"{dataset} is not a directory")

    async def call(address: str) -> Any:
        report = None
        async with channel(address) as ch:
            stub = evaluation_pb2_grpc.EvaluationServiceStub(ch)
            req = evaluation_pb2.RunEvalRequest(
                dataset_path=str(ds),
                modes=[m for m in modes.split(",") if m],
                max_queries=max_queries,
                keep_tenant=keep_tenant,
            )
            with _progress(as_json) as progress:
                tasks: dict[str, Any] = {}
                async for ev in stub.RunEval(req):
                    if ev.WhichOneof("event") == "progress":
                        p = ev.progress
                        if p.phase not in tasks:
                            tasks[p.phase] = progress.add_task(p.phase, total=p.total)
                        progress.update(tasks[p.phase], completed=p.done, total=p.total)
                    else:
                        report = ev.report
        return report

    retrieval: dict[str, Any] = {}
    if store is not None:
        if store not in ("embedded", "weaviate"):
            _fail(f"--store must be embedded or weaviate, got {store!r}")
        retrieval["store"] = store
        if store == "weaviate":
            retrieval |= {"weaviate_url": weaviate_url, "weaviate_grpc_port": weaviate_grpc_port}

    async def main() -> Any:
        if standalone or store is not None:
            async with standalone_platform(config, retrieval) as address:
                return await call(address)
        return await call(endpoint)

    r = _run(main())
    report = EvalReport(
        dataset=r.dataset,
        documents=r.documents,
        queries=r.queries,
        ingest_seconds=r.ingest_seconds,
        tenant_id=r.tenant_id,
        modes=[
            ModeReport(m.mode, m.ndcg_at_10, m.recall_at_100, m.mrr_at_10, m.latency_p50_ms, m.latency_p95_ms)
            for m in r.modes
        ],
    )
    if as_json:
        print(report.to_json())
    else:
        console.print(render_table(report, REFERENCE_NDCG10.get(report.dataset)))


# --- dead letters and replay (Kafka) -------------------------------------------------------------------


def _dlq_topic(topic: str) -> str:
    from isthmus_core.contracts.topics import DLQ_SUFFIX, by_name

    try:
        spec = by_name(topic if topic.startswith("isthmus.") else f"isthmus.{topic}")
    except KeyError:
        from isthmus_core.contracts.topics import ALL_TOPICS

        _fail(f"unknown topic {topic!r}; choose from {', '.join(t.name for t in ALL_TOPICS)}")
    return spec.name + DLQ_SUFFIX


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[
        str, typer.Argument(help="source topic, e.g. isthmus.chunks.created.v1 or chunks.created.v1")
    ],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    limit: Annotated[int, typer.Option(help="at most this many (0 = all)")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigFile = None,
) -> None:
    """List the dead letters of a topic: key, original size, error class and reason."""
    from isthmus_core.bus.kafka_tools import read_topic
    from isthmus_core.bus.port import H_ATTEMPTS, H_ERROR_CLASS, H_ERROR_MESSAGE, H_GROUP

    dlq = _dlq_topic(topic)
    messages, _ = _run(read_topic(bootstrap, dlq, limit=limit, security=_kafka_security(config)))
    rows = [
        {
            "partition": m.partition,
            "offset": m.offset,
            "key": m.key,
            "bytes": len(m.value),
            "group": m.headers.get(H_GROUP, ""),
            "attempts": m.headers.get(H_ATTEMPTS, ""),
            "error_class": m.headers.get(H_ERROR_CLASS, ""),
            "error": m.headers.get(H_ERROR_MESSAGE, ""),
            "value_preview": m.value[:120].decode("utf-8", "replace"),
        }
        for m in messages
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("partition/offset", "key", "bytes", "group", "error")
    for r in rows:
        table.add_row(
            f"{r['partition']}/{r['offset']}",
            r["key"],
            str(r["bytes"]),
            r["group"],
            escape(f"{r['error_class']}: {r['error']}"),
        )
    console.print(table)
    console.print(f"{len(rows)} dead letter(s) on {dlq}")


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="source topic whose dead letters to re-drive")],
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    key_prefix: Annotated[str, typer.Option(help="only keys starting with this (e.g. 'tenant/')")] = "",
    config: ConfigFile = None,
) -> None:
    """Publish dead letters back to their source topic (original bytes and headers). Each dead letter is
    replayed once: progress is committed in the consumer group 'isthmus-dlq-replay'."""
    from isthmus_core.bus.kafka_tools import DEAD_LETTER_HEADERS, REPLAY_GROUP, read_topic, republish
    from isthmus_core.bus.port import H_SOURCE_TOPIC

    dlq = _dlq_topic(topic)
    source = dlq.removesuffix(".dlq")

    security = _kafka_security(config)

    async def main() -> int:
        messages, commit = await read_topic(
            bootstrap, dlq, key_prefix=key_prefix, group=REPLAY_GROUP, security=security
        )
        try:
            n = await republish(
                bootstrap,
                messages,
                lambda m: m.headers.get(H_SOURCE_TOPIC, source),
                strip=DEAD_LETTER_HEADERS,
                security=security,
            )
        except BaseException:
            raise
        assert commit is not None
        await commit()
        return n

    n = _run(main())
    console.print(f"replayed {n} dead letter(s) from {dlq} to {source}")


@app.command()
def reindex(
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    config: ConfigFile = None,
) -> None:
    """Rebuild a tenant's index from its chunk history: empty the index, then replay the tenant's
    chunks.created events (re-embedded and re-indexed by the running services; ids are deterministic,
    so the rebuilt index holds exactly what the original run produced)."""
    from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
    from isthmus_cli.client import channel
    from isthmus_core.bus.kafka_tools import read_topic, republish
    from isthmus_core.contracts.topics import CHUNKS_CREATED

    security = _kafka_security(config)

    async def main() -> int:
        messages, _ = await read_topic(
            bootstrap, CHUNKS_CREATED.name, key_prefix=f"{tenant}/", security=security
        )
        async with channel(endpoint) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).ClearTenant(
                retrieval_pb2.ClearTenantRequest(tenant_id=tenant), timeout=120
            )
        return await republish(bootstrap, messages, lambda m: CHUNKS_CREATED.name, security=security)

    n = _run(main())
    console.print(
        f"replayed {n} chunk batch event(s) of tenant {tenant}; the index fills as they are processed"
    )


# --- status --------------------------------------------------------------------------------------------


@app.command()
def status(
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    tenant: Annotated[
        str,
        typer.Option(
            "--tenant", "-t", help="also count this tenant's documents", callback=_optional_tenant_id
        ),
    ] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Health of every service at the endpoint (and a tenant's document counts)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
    from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
    from isthmus_cli.client import channel

    services = {
        "ingestion": "isthmus.ingestion.v1.IngestionService",
        "embedding": "isthmus.embedding.v1.EmbeddingService",
        "retrieval": "isthmus.retrieval.v1.RetrievalService",
        "agent-orchestrator": "isthmus.agent_orchestrator.v1.AgentOrchestratorService",
        "guardrail": "isthmus.guardrail.v1.GuardrailService",
        "evaluation": "isthmus.evaluation.v1.EvaluationService",
    }

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": endpoint, "services": {}}
        async with channel(endpoint) as ch:
            h = health_pb2_grpc.HealthStub(ch)
            for name, full in services.items():
                try:
                    r = await h.Check(health_pb2.HealthCheckRequest(service=full), timeout=5)
                    out["services"][name] = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                except grpc.aio.AioRpcError as exc:
                    out["services"][name] = (
                        "NOT_HERE" if exc.code() == grpc.StatusCode.NOT_FOUND else exc.code().name
                    )
            if out["services"].get("evaluation") == "SERVING":
                m = await evaluation_pb2_grpc.EvaluationServiceStub(ch).GetOnlineMetrics(
                    evaluation_pb2.GetOnlineMetricsRequest(tenant_id=tenant), timeout=5
                )
                out["online"] = {
                    "answers": m.answers,
                    "latency_p50_ms": round(m.latency_p50_ms, 1),
                    "latency_p95_ms": round(m.latency_p95_ms, 1),
                    "citations_per_answer": round(m.citations_per_answer, 2),
                    "guardrail_blocks": m.guardrail_blocks,
                    "blocked_answers": m.blocked_answers,
                }
            if tenant:
                docs = await ingestion_pb2_grpc.IngestionServiceStub(ch).ListDocuments(
                    ingestion_pb2.ListDocumentsRequest(tenant_id=tenant), timeout=30
                )
                counts: dict[str, int] = {}
                for d in docs.documents:
                    k = ingestion_pb2.DocumentStatus.Name(d.status).removeprefix("DOCUMENT_STATUS_").lower()
                    counts[k] = counts.get(k, 0) + 1
                out["documents"] = counts
        return out

    out = _run(main())
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table("service", "health")
    for name, st in out["services"].items():
        table.add_row(name, st)
    console.print(table)
    for key in ("online", "documents"):
        if key in out:
            console.print(f"{key}: {out[key]}")
    if any(v not in ("SERVING", "NOT_HERE") for v in out["services"].values()):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
