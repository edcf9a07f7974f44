"""``isthmus ask``: a question to the agent orchestrator; the answer, its citations, the verdicts. With
``--stream``, the agents' steps as they take them (plan, tool calls and results, approvals waited for,
critique, cache hits, budgets), then the answer's sentences as they pass the guardrail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from isthmus_cli.client import Stubs, connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, RegionsFile, Tenant
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus.agent_orchestrator.v1.agent_orchestrator_pb2 import AgentStep, AskResponse
    from isthmus.common.v1.common_pb2 import Citation


def _checked(parse_name: str) -> Callable[[str], str]:
    """A typer callback running the orchestrator edge's own parser of a field (one rule everywhere)."""

    def check(value: str) -> str:
        from isthmus_agent_orchestrator import api
        from isthmus_core.errors import InvalidArgument

        try:
            parsed: str = getattr(api, parse_name)(value)
        except InvalidArgument as exc:
            raise typer.BadParameter(str(exc)) from None
        return parsed

    return check


def ask(
    tenant: Tenant,
    question: Annotated[str, typer.Argument(help="the question (none with --resume)")] = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    regions: RegionsFile = None,
    top_k: Annotated[int, typer.Option(help="contexts for the generator")] = 0,
    as_json: AsJson = False,
    stream: Annotated[
        bool,
        typer.Option("--stream", help="print the agents' steps, then sentences as they pass the guardrail"),
    ] = False,
    principal: Annotated[
        list[str] | None,
        typer.Option(
            "--principal",
            help="ask as this user/group (repeatable): documents uploaded with an 'acl' metadata only "
            "count when they name one of them; without it, only documents without an ACL count",
        ),
    ] = None,
    graph: Annotated[
        str,
        typer.Option(
            "--graph",
            "-g",
            help="the agent graph (see 'isthmus graphs'); default: the tenant's",
            callback=_checked("parse_graph"),
        ),
    ] = "",
    session: Annotated[
        str,
        typer.Option(
            "--session",
            "-s",
            help="a conversation id of your choosing: follow-up questions are read with its earlier turns",
            callback=_checked("parse_session_id"),
        ),
    ] = "",
    resume: Annotated[
        str,
        typer.Option(
            "--resume",
            metavar="RUN_ID",
            help="continue a run that was interrupted (the question and graph are the run's)",
            callback=_checked("parse_run_id"),
        ),
    ] = "",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="do not answer from the response cache")
    ] = False,
) -> None:
    """Ask a question; prints the answer, its citations and the guardrail verdicts (with --stream: the
    agents' steps first, then the sentences as they pass the guardrail)."""
    from google.protobuf.json_format import MessageToDict

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
    from isthmus.common.v1 import common_pb2
    from isthmus_cli.regional import RegionalClient, load_regions_or_fail

    if not question.strip() and not resume:
        fail("give a question (or --resume RUN_ID to continue an interrupted run)", 2)
    if question.strip() and resume:
        fail("--resume continues a run with its own question: give no question with it", 2)
    config = load_regions_or_fail(regions) if regions is not None else None
    access = common_pb2.AccessScope(principals=principal) if principal is not None else None
    req = pb.AskRequest(
        tenant_id=tenant,
        question=question,
        top_k=top_k,
        access=access,
        graph=graph,
        session_id=session,
        run_id=resume,
        no_cache=no_cache,
    )

    async def answer_stream(stubs: Stubs) -> AskResponse | None:
        final = None
        async for ev in stubs.agent_orchestrator.AskStream(req, timeout=120):
            kind = ev.WhichOneof("event")
            if kind == "step" and not as_json:
                for line in step_lines(ev.step):
                    console.print(line)
            elif kind == "sentence" and not as_json:
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
    if (run_line := _run_line(resp)) is not None:
        console.print(run_line)
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


def step_lines(step: AgentStep) -> list[str]:
    """How ``isthmus ask --stream`` shows one agent step (markup escaped; the guardrail already checked
    the step's text)."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    kind = pb.StepKind.Name(step.kind).removeprefix("STEP_KIND_").lower()
    text = escape(step.text)
    tool = escape(step.tool)
    if step.kind == pb.STEP_KIND_PLAN:
        lines = [f"[cyan]plan[/cyan] {text}"]
        return lines + [f"  [cyan]-[/cyan] {escape(q)}" for q in step.sub_questions]
    if step.kind == pb.STEP_KIND_TOOL_CALL:
        return [f"[cyan]tool call[/cyan] {tool} {escape(step.arguments_json)}".rstrip()]
    if step.kind == pb.STEP_KIND_TOOL_RESULT:
        outcome = "ok" if step.ok else "[red]failed[/red]"
        return [f"[cyan]tool result[/cyan] {tool}: {outcome}" + (f" \N{EM DASH} {text}" if text else "")]
    if step.kind == pb.STEP_KIND_APPROVAL_WAIT:
        return [
            f"[yellow]waiting for approval {escape(step.approval_id)} (tool {tool}): run "
            f"`isthmus approve {escape(step.approval_id)}`[/yellow]"
        ]
    if step.kind == pb.STEP_KIND_APPROVAL_DECIDED:
        return [f"[cyan]approval {escape(step.approval_id)}[/cyan] (tool {tool}): {text}"]
    label = {
        "condense": "condensed",
        "memory": "memory",
        "critique": "critique",
        "retry": "retry",
        "cache_hit": "cache hit",
        "budget": "budget",
    }.get(kind, kind)
    style = "yellow" if step.kind == pb.STEP_KIND_BUDGET else "cyan"
    return [f"[{style}]{label}[/{style}] {text}".rstrip()]


def _run_line(resp: AskResponse) -> str | None:
    """The run's graph, id, status, cache and usage when there is more to say than a plain answer."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    parts: list[str] = []
    if resp.graph:
        parts.append(f"graph {resp.graph}")
    if resp.run_id:
        parts.append(f"run {resp.run_id}")
    if resp.status not in (pb.RUN_STATUS_UNSPECIFIED, pb.RUN_STATUS_COMPLETED):
        parts.append("status " + pb.RunStatus.Name(resp.status).removeprefix("RUN_STATUS_").lower())
    if resp.session_id:
        parts.append(f"session {resp.session_id}")
    if resp.standalone_question:
        parts.append(f"read as: {resp.standalone_question}")
    if resp.cached:
        parts.append("from the cache")
    if resp.prompt_version:
        parts.append(f"prompt {resp.prompt_version}")
    u = resp.usage
    if u.prompt_tokens or u.completion_tokens:
        tokens = f"{u.prompt_tokens}+{u.completion_tokens} tokens" + ("" if u.reported else " (estimated)")
        parts.append(tokens + (f", ${u.cost_usd:.4f}" if u.cost_usd else ""))
    return f"[dim]{escape('; '.join(parts))}[/dim]" if parts else None
