"""``isthmus ask`` with agent graphs (``--graph``, ``--session``, ``--resume``, ``--no-cache``; ``--stream``
prints each step), ``isthmus approvals|approve|reject``, ``isthmus graphs|tools`` and ``isthmus prompt
create|list|split`` — against the real orchestrator servicer behind the real auth, admission and
validation interceptors, over scripted collaborators (``isthmus_agent_orchestrator.api_testing``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as pb_grpc
from isthmus_agent_orchestrator.api import AgentOrchestratorServicer
from isthmus_agent_orchestrator.api_testing import (
    APPROVAL_ID,
    GRAPHS,
    RUN_ID,
    FakeApprovals,
    FakeCore,
    FakePrompts,
    FakeTools,
    defaults,
)
from isthmus_cli import client
from isthmus_cli.main import app
from isthmus_core.auth.identity import ROLE_PERMISSIONS, Role
from isthmus_core.auth.local_issuer import ISSUER, LocalIssuer
from isthmus_core.auth.stack import AuthStack
from isthmus_core.auth.tokens import JwtVerifier, StaticJwks
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.testing.auth import Bindings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "ISTHMUS_TOKEN",
        "ISTHMUS_TOKEN_FILE",
        "ISTHMUS_CONFIG",
        "ISTHMUS_TENANT",
        "ISTHMUS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    yield
    client._BEARER.token, client._BEARER.given = None, False  # the app callback's state, per process


@dataclass
class Platform:
    address: str
    core: FakeCore
    approvals: FakeApprovals
    prompts: FakePrompts
    tokens: dict[str, str]

    async def cli(self, who: str, *args: str) -> Result:
        """The CLI in a worker thread (it runs its own event loop; the server runs on this one)."""
        argv = ["--token", self.tokens[who], *args, "--endpoint", self.address]
        return await asyncio.to_thread(runner.invoke, app, argv, env={"COLUMNS": "250"})


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    issuer = LocalIssuer(tmp_path / "issuer.pem")
    verifier = JwtVerifier(
        issuer=ISSUER, audience="isthmus", algorithms=["ES256"], keys=StaticJwks(issuer.jwks())
    )
    authorizer = Bindings(
        {
            ("alice", "acme"): ROLE_PERMISSIONS[Role.TENANT_ADMIN],
            ("carol", "acme"): ROLE_PERMISSIONS[Role.READER],
        }
    )
    core, approvals, prompts = FakeCore(), FakeApprovals(), FakePrompts()
    approvals.add("acme", approval_id=APPROVAL_ID)
    servicer = AgentOrchestratorServicer(
        core,
        approvals=approvals,
        graphs=GRAPHS,
        default_graph=defaults({"acme": "react"}),
        tools=FakeTools(),
        prompts=prompts,
    )
    server = GrpcServer("127.0.0.1", 0, auth=AuthStack(verifier, authorizer))
    server.add(
        [lambda s: pb_grpc.add_AgentOrchestratorServiceServicer_to_server(servicer, s)],
        ["isthmus.agent_orchestrator.v1.AgentOrchestratorService"],
    )
    await server.start()
    tokens = {who: issuer.mint(who, ttl_s=600, audience="isthmus") for who in ("alice", "carol")}
    try:
        yield Platform(server.address, core, approvals, prompts, tokens)
    finally:
        await server.stop(0)


def lines(result: Result) -> list[str]:
    return [line.rstrip() for line in result.stdout.splitlines()]


# ---- ask ------------------------------------------------------------------------------------------------


async def test_ask_stream_prints_each_step_then_the_sentences_and_citations(platform: Platform) -> None:
    r = await platform.cli(
        "alice", "ask", "How far do gliders fly?", "-t", "acme", "--stream", "--graph", "plan-execute",
        "--session", "s-1", "--no-cache",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = lines(r)
    expected = [
        "condensed Standalone: what is the glider's range?",
        "memory 2 earlier turns recalled",
        "plan 2 sub-questions",
        "  - What is a glider?",
        "  - How far can it fly?",
        'tool call search {"query": "glider range"}',
        "tool result search: ok \N{EM DASH} 3 passages",
        f"waiting for approval {APPROVAL_ID} (tool http_get): run `isthmus approve {APPROVAL_ID}`",
        f"approval {APPROVAL_ID} (tool http_get): rejected by bob",
        "tool result http_get: failed \N{EM DASH} rejected by bob",
        "critique grounded: 2 of 2 sentences cite",
        "retry retrying with: glider range km",
        "cache hit exact match",
        "budget the step budget (16) ran out",
        "Gliders fly far.",
    ]
    assert out[: len(expected)] == expected
    rest = "\n".join(out[len(expected) :])
    assert f"graph plan-execute; run {RUN_ID}; status stopped; session s-1" in rest
    assert "120+30 tokens, $0.0015" in rest and "prompt v2" in rest
    assert "citations" in rest and "chunk c1" in rest
    [call] = platform.core.calls
    assert (call["how"], call["graph"], call["session_id"], call["run_id"], call["no_cache"]) == (
        "run",
        "plan-execute",
        "s-1",
        "",
        True,
    )
    assert call["principals"] == ("alice",)  # the interceptor's: the caller's own


async def test_ask_resume_sends_the_run_and_no_question(platform: Platform) -> None:
    r = await platform.cli("alice", "ask", "-t", "acme", "--resume", RUN_ID, "--json")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["run_id"] == RUN_ID and answer["status"] == "RUN_STATUS_STOPPED"
    assert [s["kind"] for s in answer["steps"]][:3] == [
        "STEP_KIND_CONDENSE",
        "STEP_KIND_MEMORY",
        "STEP_KIND_PLAN",
    ]
    [call] = platform.core.calls
    assert (call["how"], call["question"], call["run_id"], call["graph"]) == ("ask", "", RUN_ID, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "-t", "acme"], "give a question"),
        (["ask", "q?", "-t", "acme", "--resume", RUN_ID], "give no question"),
        (["ask", "-t", "acme", "--resume", "not-a-run"], "invalid run_id"),
        (["ask", "q?", "-t", "acme", "--graph", "Plan Execute"], "invalid graph"),
        (["ask", "q?", "-t", "acme", "--session", "a/b"], "invalid session_id"),
    ],
)
async def test_ask_refuses_bad_options_before_calling(
    platform: Platform, args: list[str], message: str
) -> None:
    r = await platform.cli("alice", *args)
    assert r.exit_code == 2
    assert message in " ".join(r.output.replace("│", "").split())
    assert platform.core.calls == []


# ---- approvals ------------------------------------------------------------------------------------------


async def test_approvals_are_listed_then_approved_by_the_callers_subject(platform: Platform) -> None:
    listed = await platform.cli("alice", "approvals", "-t", "acme")
    assert listed.exit_code == 0, listed.output
    assert (
        APPROVAL_ID in listed.stdout and "http_get" in listed.stdout and "isthmus approve ID" in listed.stdout
    )
    as_json = await platform.cli("alice", "approvals", "-t", "acme", "--json")
    [pending] = json.loads(as_json.stdout)
    assert (pending["approval_id"], pending["tool"], pending["state"]) == (
        APPROVAL_ID,
        "http_get",
        "APPROVAL_STATE_PENDING",
    )

    approved = await platform.cli("alice", "approve", APPROVAL_ID, "-t", "acme", "--reason", "looks fine")
    assert approved.exit_code == 0, approved.output
    assert f"approval {APPROVAL_ID} approved by alice: tool http_get of run {RUN_ID}" in approved.stdout
    decided = platform.approvals.items[APPROVAL_ID]
    assert (decided.state, decided.decided_by, decided.reason) == ("approved", "alice", "looks fine")

    again = await platform.cli("alice", "reject", APPROVAL_ID, "-t", "acme")
    assert again.exit_code == 1 and "FAILED_PRECONDITION" in again.output
    empty = await platform.cli("alice", "approvals", "-t", "acme")
    assert "no approval is pending in tenant acme" in empty.stdout


async def test_reject_and_the_refusals_of_decisions(platform: Platform) -> None:
    other = platform.approvals.add("acme").approval_id
    rejected = await platform.cli("alice", "reject", other, "-t", "acme", "--json")
    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout)["state"] == "APPROVAL_STATE_REJECTED"
    unknown = await platform.cli("alice", "approve", "0" * 32, "-t", "acme")
    assert unknown.exit_code == 1 and "NOT_FOUND" in unknown.output
    malformed = await platform.cli("alice", "approve", "../etc", "-t", "acme")
    assert malformed.exit_code == 2 and "invalid approval_id" in malformed.output
    reader = await platform.cli("carol", "approve", APPROVAL_ID, "-t", "acme")
    assert reader.exit_code == 1 and "PERMISSION_DENIED" in reader.output
    assert platform.approvals.items[APPROVAL_ID].state == "pending"


# ---- graphs and tools -----------------------------------------------------------------------------------


async def test_graphs_and_tools(platform: Platform) -> None:
    graphs = await platform.cli("carol", "graphs", "-t", "acme", "--json")
    assert graphs.exit_code == 0, graphs.output
    assert [(g["name"], g.get("is_default", False)) for g in json.loads(graphs.stdout)] == [
        ("rag", False),
        ("react", True),
    ]
    table = await platform.cli("carol", "graphs", "-t", "acme")
    assert "tool_caller-?>__end__" in table.stdout
    tools = await platform.cli("carol", "tools", "-t", "acme", "--json")
    assert tools.exit_code == 0, tools.output
    by_name = {t["name"]: t for t in json.loads(tools.stdout)}
    assert by_name["http_get"]["arguments_schema"]["properties"]["url"] == {"type": "string"}
    assert by_name["http_get"]["sensitive"] and by_name["http_get"]["graphs"] == ["react"]
    shown = await platform.cli("carol", "tools", "-t", "acme")
    assert "every call" in shown.stdout and "tools.external" in shown.stdout and "every graph" in shown.stdout


# ---- prompt versions ------------------------------------------------------------------------------------


async def test_prompt_create_list_and_split(platform: Platform, tmp_path: Path) -> None:
    for i, text in enumerate(["Answer from the passages: {question}", "Be brief. {question}"]):
        (tmp_path / f"t{i}.txt").write_text(text)
        made = await platform.cli(
            "alice", "prompt", "create", "synthesize", "-t", "acme", "--file", str(tmp_path / f"t{i}.txt")
        )
        assert made.exit_code == 0, made.output
        assert f"synthesize prompt v{i + 1} created in tenant acme" in made.stdout
    split = await platform.cli("alice", "prompt", "split", "synthesize", "v1=50", "v2=50", "-t", "acme")
    assert split.exit_code == 0, split.output
    assert "synthesize requests of tenant acme: v1 50%, v2 50%" in split.stdout
    listed = await platform.cli("carol", "prompt", "list", "synthesize", "-t", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    data: dict[str, Any] = json.loads(listed.stdout)
    assert [v["version"] for v in data["versions"]] == ["v1", "v2"] and data["split"] == {"v1": 50, "v2": 50}
    assert {v["created_by"] for v in data["versions"]} == {"alice"}
    table = await platform.cli("carol", "prompt", "list", "synthesize", "-t", "acme")
    assert "50%" in table.stdout
    cleared = await platform.cli("alice", "prompt", "split", "synthesize", "-t", "acme")
    assert "use the built-in template" in cleared.stdout
    assert platform.prompts.splits[("acme", "synthesize")] == {}
    reader = await platform.cli("carol", "prompt", "split", "synthesize", "v1=100", "-t", "acme")
    assert reader.exit_code == 1 and "PERMISSION_DENIED" in reader.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["split", "synthesize", "v1=50"], "sum to 50"),
        (["split", "synthesize", "v1"], "expected VERSION=PERCENT"),
        (["split", "summarize", "v1=100"], "invalid name"),
        (["create", "plan", "--file", "/nonexistent/template.txt"], "cannot read the template"),
    ],
)
async def test_prompt_refuses_bad_input_before_calling(
    platform: Platform, args: list[str], message: str
) -> None:
    r = await platform.cli("alice", "prompt", *args, "-t", "acme")
    assert r.exit_code == 2
    assert message in " ".join(r.output.replace("│", "").split())
    assert platform.prompts.versions == {} and platform.prompts.splits == {}
