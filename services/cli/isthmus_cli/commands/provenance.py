"""``isthmus provenance``: how an answer was made — who asked, the chunks (document versions, offsets)
retrieved and cited, the models, the prompt and guardrail policy versions, the verdicts, the timings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, Tenant
from isthmus_cli.output import console

if TYPE_CHECKING:
    from isthmus.evaluation.v1.evaluation_pb2 import Provenance, ProvenanceChunk, ProvenanceVerdict


def provenance(
    answer_id: Annotated[
        str,
        typer.Argument(
            help="the answer's id: the question_id of its AskResponse ('isthmus ask --json' prints it)"
        ),
    ],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """How an answer was made (answer id = the question_id of the AskResponse)."""
    from google.protobuf.json_format import MessageToDict

    from isthmus.evaluation.v1 import evaluation_pb2

    async def main() -> Provenance:
        async with connect(endpoint) as stubs:
            p: Provenance = await stubs.evaluation.GetProvenance(
                evaluation_pb2.GetProvenanceRequest(tenant_id=tenant, answer_id=answer_id), timeout=30
            )
            return p

    p = run(main())
    if as_json:
        print(json.dumps(MessageToDict(p, preserving_proto_field_name=True), indent=2))
        return
    answered = p.answered_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
    lines = [
        ("answer", p.answer_id),
        ("tenant", p.tenant_id),
        ("asked by", p.principal or "(not authenticated)"),
        ("answered at", answered),
        ("generator", p.generator + (f" (model {p.generator_model})" if p.generator_model else "")),
        ("prompt version", p.prompt_version or "-"),
        ("embedding model", p.embedding_model or "-"),
        ("guardrail policy", p.guardrail_policy_version or "-"),
        ("input verdict", _verdict(p.input_verdict)),
        ("output verdict", _verdict(p.output_verdict)),
        ("latency", f"{p.latency_ms:.1f} ms" + (" (blocked)" if p.blocked else "")),
        ("stages", ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(p.timings_ms.items())) or "-"),
    ]
    for label, value in lines:
        console.print(f"[bold]{label}:[/bold] {escape(value)}")
    for title, chunks in (("retrieved", p.retrieved), ("cited", p.cited)):
        console.print(_chunks(title, chunks))


def _verdict(v: ProvenanceVerdict) -> str:
    if not v.action:
        return "not checked"
    return v.action + (f" ({', '.join(v.codes)})" if v.codes else "")


def _chunks(title: str, chunks: Iterable[ProvenanceChunk]) -> Table:
    table = Table("document", "version", "chars", "chunk", "score", title=title)
    for c in chunks:
        version = str(c.document_version) if c.document_version else "?"
        chars = f"{c.start}-{c.end}"
        table.add_row(escape(c.document_id), version, chars, escape(c.chunk_id), f"{c.score:.3f}")
    return table
