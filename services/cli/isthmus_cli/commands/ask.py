"""``isthmus ask``: a question to the agent orchestrator; the answer, its citations, the verdicts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from isthmus_cli.client import Stubs, connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, RegionsFile, Tenant
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus.agent_orchestrator.v1.agent_orchestrator_pb2 import AskResponse
    from isthmus.common.v1.common_pb2 import Citation


def ask(
    question: str,
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    regions: RegionsFile = None,
    top_k: Annotated[int, typer.Option(help="contexts for the generator")] = 0,
    as_json: AsJson = False,
    stream: Annotated[
        bool, typer.Option("--stream", help="print sentences as they pass the guardrail")
    ] = False,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            help="ask as this user/group (repeatable): documents uploaded with an 'acl' metadata only "
            "count when they name one of them; without it, only documents without an ACL count",
        ),
    ] = None,
) -> None:
    """Ask a question; prints the answer, its citations and the guardrail verdicts."""
    from google.protobuf.json_format import MessageToDict

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
    from isthmus.common.v1 import common_pb2
    from isthmus_cli.regional import RegionalClient, load_regions_or_fail

    config = load_regions_or_fail(regions) if regions is not None else None
    access = common_pb2.AccessScope(principals=principal) if principal is not None else None
    req = pb.AskRequest(tenant_id=tenant, question=question, top_k=top_k, access=access)

    async def answer_stream(stubs: Stubs) -> AskResponse | None:
        final = None
        async for ev in stubs.agent_orchestrator.AskStream(req, timeout=120):
            kind = ev.WhichOneof("event")
            if kind == "sentence" and not as_json:
                console.print(ev.sentence.text)
            elif kind == "final":
                final = ev.final
        return final

    async def main() -> AskResponse | None:
        if config is not None:  # the primary region, or another one when it does not answer
            async with RegionalClient(config, tenant) as rc:
                if not stream:
                    return (await rc.ask(req)).value
                return await answer_stream(rc.stubs(rc.read_order()[0]))
        async with connect(endpoint) as stubs:
            if not stream:
                answer: AskResponse = await stubs.agent_orchestrator.Ask(req, timeout=120)
                return answer
            return await answer_stream(stubs)

    resp = run(main())
    if resp is None:
        fail("the answer stream ended without its final answer")
    if as_json:
        print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
        return
    if not stream:
        console.print(resp.answer if not resp.blocked else f"[yellow]{resp.answer}[/yellow]")
    if resp.citations:
        console.print("\n[bold]citations[/bold]")
        for i, c in enumerate(resp.citations, 1):
            console.print(_citation_line(i, c))
    for label, v in (("input", resp.input_verdict), ("output", resp.output_verdict)):
        if v.action:
            codes = ", ".join(f.code for f in v.findings) or "no findings"
            action = common_pb2.GuardAction.Name(v.action).removeprefix("GUARD_ACTION_").lower()
            console.print(f"[dim]guardrail {label}: {action} ({escape(codes)})[/dim]")
    if resp.blocked:
        raise typer.Exit(3)


def _citation_line(number: int, c: Citation) -> str:
    """One citation of ``isthmus ask``: the source a person recognises (file name, title when it says
    more, URI), then where in it (document id, characters, chunk)."""
    name = c.source_name or f"document {c.document_id}"
    if c.title and c.title not in (c.source_name, c.source_name.rsplit(".", 1)[0]):
        name += f" \N{EM DASH} {c.title}"
    if c.uri:
        name += f" <{c.uri}>"
    where = f"document {c.document_id}, " if c.source_name else ""
    return escape(f"  [{number}] {name} ({where}chars {c.start}-{c.end}, chunk {c.chunk_id})")
