"""``isthmus metrics``: online metrics of live traffic over a time window — answers, latency, citations,
guardrail blocks and redactions, and the answer quality of the sampled answers (faithfulness, answer
relevance, context precision, nDCG@10 of evaluation-set questions), for a tenant or all, for a model
bundle or all."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.commands.audit import parse_when
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, optional_tenant_id
from isthmus_cli.output import console

if TYPE_CHECKING:
    from isthmus.evaluation.v1.evaluation_pb2 import OnlineMetrics

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_window(value: str) -> int:
    """``45s`` / ``30m`` / ``1h`` / ``7d`` / ``2w`` in seconds; ``ValueError`` saying what is accepted."""
    m = _DURATION.match(value.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{value!r} is not a window: give a duration such as 30m, 1h, 7d, 2w")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def _window(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_window(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def _when(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_when(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def as_dict(m: OnlineMetrics) -> dict[str, Any]:
    """The figures as printed by ``--json``."""

    def when(field: str) -> str | None:
        if not m.HasField(field):
            return None
        return str(getattr(m, field).ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"))

    return {
        "window_start": when("window_start"),
        "window_end": when("window_end"),
        "model_bundle": m.model_bundle,
        "answers": m.answers,
        "blocked_answers": m.blocked_answers,
        "guardrail_block_rate": round(m.guardrail_block_rate, 4),
        "latency_p50_ms": round(m.latency_p50_ms, 1),
        "latency_p95_ms": round(m.latency_p95_ms, 1),
        "citations_per_answer": round(m.citations_per_answer, 2),
        "guardrail_blocks": m.guardrail_blocks,
        "guardrail_redactions": m.guardrail_redactions,
        "samples": m.samples,
        "judge_failures": m.judge_failures,
        "failure_reasons": dict(sorted(m.failure_reasons.items())),
        "quality": {q.name: {"mean": round(q.mean, 4), "n": q.n, "failures": q.failures} for q in m.quality},
    }


def metrics(
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    tenant: Annotated[
        str,
        typer.Option(
            "--tenant",
            "-t",
            help="this tenant's figures (default: every tenant together)",
            callback=optional_tenant_id,
        ),
    ] = "",
    window: Annotated[
        str | None,
        typer.Option(
            "--window", "-w", help="the last 30m, 1h, 7d... (default: everything kept)", callback=_window
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="from this time: ISO 8601 or an age such as -1h (instead of --window)",
            callback=_when,
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="before this time (same forms as --since)", callback=_when)
    ] = None,
    bundle: Annotated[
        str, typer.Option("--bundle", "-b", help="only answers served by this model bundle (name@version)")
    ] = "",
    as_json: AsJson = False,
) -> None:
    """Online metrics of live traffic over a window: volume, latency, guardrail, answer quality."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from isthmus.evaluation.v1 import evaluation_pb2

    if window is not None and (since is not None or until is not None):
        raise typer.BadParameter("give either --window or --since/--until, not both")

    def ts(value: str | None) -> Timestamp | None:
        if value is None:
            return None
        t = Timestamp()
        t.FromDatetime(parse_when(value, datetime.now(UTC)))
        return t

    request = evaluation_pb2.GetOnlineMetricsRequest(
        tenant_id=tenant,
        window_seconds=parse_window(window) if window is not None else 0,
        start=ts(since),
        end=ts(until),
        model_bundle=bundle,
    )

    async def main() -> OnlineMetrics:
        async with connect(endpoint) as stubs:
            m: OnlineMetrics = await stubs.evaluation.GetOnlineMetrics(request, timeout=30)
            return m

    out = as_dict(run(main()))
    if as_json:
        print(json.dumps(out, indent=2))
        return
    start = out["window_start"] or "the oldest kept"
    scope = f"tenant {tenant}" if tenant else "every tenant"
    console.print(
        escape(f"{scope}, {start} to {out['window_end']}" + (f", bundle {bundle}" if bundle else ""))
    )
    table = Table("figure", "value")
    for key in (
        "answers",
        "blocked_answers",
        "guardrail_block_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "citations_per_answer",
        "guardrail_blocks",
        "guardrail_redactions",
        "samples",
        "judge_failures",
    ):
        table.add_row(key, str(out[key]))
    console.print(table)
    quality = Table("metric", "mean", "samples", "judge failures", title="answer quality (sampled answers)")
    for name, q in out["quality"].items():
        quality.add_row(name, f"{q['mean']:.3f}", str(q["n"]), str(q["failures"]))
    console.print(quality)
    if out["failure_reasons"]:
        console.print(
            escape("judge failures: " + ", ".join(f"{k} {v}" for k, v in out["failure_reasons"].items()))
        )
