"""The answer pipeline with agents: graphs, steps as events, conversations, episodic memory, the
response cache (replayed through the output guardrail), reflect's draft, cost, resumed runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from isthmus_agent_orchestrator.agents.caches import Coalescer
from isthmus_agent_orchestrator.agents.runtime import AgentRuntime
from isthmus_agent_orchestrator.agents.step_guard import WITHHELD
from isthmus_agent_orchestrator.agents.testing import (
    DictCache,
    FakeToolRegistry,
    FixedPrompts,
    FollowUpCondenser,
    InMemoryApprovalBook,
    InMemoryConversations,
    KeywordSearcher,
    ListCostMeter,
    ListEpisodicMemory,
    RuleGuard,
    ScriptedChatModel,
    fetch_tool,
    tool_call_reply,
)
from isthmus_agent_orchestrator.agents.types import ChatReply, RunStatus, StepKind, Usage
from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_agent_orchestrator.pipeline import (
    Answer,
    AskEvent,
    AskInput,
    FinalEvent,
    Orchestrator,
    SentenceEvent,
    Stage,
    StageEvent,
    StepEvent,
)
from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import Principal
from isthmus_core.contracts.events import AnswerProduced
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.generator import AnswerSentence, Context, Generation

DOCS = [
    Context("a1", "da1", "Gliders soar in thermals and ridge lift."),
    Context("a2", "da2", "Glider pilots find thermals and soar for hours."),
    Context("b1", "db1", "The hangars open at eight in the morning."),
    Context("b2", "db2", "Hangars close at dusk after the last flight."),
]


class Counting(ExtractiveGenerator):
    """The extractive generator, counting its streams."""

    def __init__(self) -> None:
        super().__init__()
        self.streams = 0
        self.contexts: list[list[Context]] = []

    def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        self.streams += 1
        self.contexts.append(list(contexts))
        return super().stream(question, contexts)

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        return await super().generate(question, contexts)


class Prompted(Counting):
    """An LLM-like generator: answers from a prompt (recorded), here extractively."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[tuple[str, str] | None] = []

    def stream(  # type: ignore[override]
        self, question: str, contexts: Sequence[Context], *, prompt: tuple[str, str] | None = None
    ) -> AsyncIterator[AnswerSentence]:
        self.prompts.append(prompt)
        return super().stream(question, contexts)


class World:
    def __init__(
        self, guard: RuleGuard | None = None, generator: Counting | None = None, **kw: object
    ) -> None:
        self.guard = guard or RuleGuard()
        self.searcher = KeywordSearcher(DOCS)
        self.generator = generator or Counting()
        self.published: list[AnswerProduced] = []
        self.cost = ListCostMeter(usd_per_token=0.0001)
        runtime = kw.pop("runtime", None) or AgentRuntime(
            tools=FakeToolRegistry.over(self.searcher), generator=self.generator
        )
        self.core = Orchestrator(
            self.guard,
            self.searcher,
            self.generator,
            self.publish,
            top_k=2,
            runtime=runtime,  # type: ignore[arg-type]
            cost=self.cost,
            **kw,  # type: ignore[arg-type]
        )

    async def publish(self, ev: AnswerProduced) -> None:
        self.published.append(ev)

    async def events(self, req: AskInput) -> list[AskEvent]:
        return [e async for e in self.core.run(req)]


def final(events: Sequence[AskEvent]) -> FinalEvent:
    last = events[-1]
    assert isinstance(last, FinalEvent)
    return last


async def test_rag_takes_no_step_and_no_extra_guardrail_call() -> None:
    w = World()
    events = await w.events(AskInput("t", "How do gliders soar?"))
    answer = final(events).answer
    assert not any(isinstance(e, StepEvent) for e in events) and answer.steps == []
    assert [text for text, _ in w.guard.inputs] == ["How do gliders soar?"]
    assert answer.graph == "rag" and answer.status is RunStatus.COMPLETED and len(answer.run_id) == 32
    assert answer.sentences and "thermals" in answer.text


async def test_plan_execute_steps_are_streamed_before_the_answer_and_kept_in_it() -> None:
    w = World()
    events = await w.events(
        AskInput("t", "How do gliders soar? Also, when do the hangars open?", graph="plan-execute")
    )
    answer = final(events).answer
    kinds = [type(e) for e in events]
    assert kinds.index(StepEvent) < kinds.index(SentenceEvent)
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == answer.steps and steps[0].kind is StepKind.PLAN
    assert StageEvent(Stage.AGENT) in events and Stage.AGENT in answer.stage_ms
    # every step was checked by the guardrail under its own subject, after the question
    assert [s for _, s in w.guard.inputs[1:]] == [f"{answer.question_id}/step/{i}" for i in range(len(steps))]
    cited = {c.document_id for c in answer.citations}
    assert cited & {"da1", "da2"} and cited & {"db1", "db2"}  # both parts answered
    assert w.published[0].retrieved == 4


async def test_a_follow_up_in_a_session_is_condensed_and_the_turns_kept() -> None:
    conversations = InMemoryConversations()
    w = World(conversations=conversations, condenser=FollowUpCondenser())
    alice = Access(Principal(subject="alice", via="jwt"), AllowAll())
    with acting_as(alice):
        first = final(await w.events(AskInput("t", "When do the hangars open?", session_id="s-1"))).answer
        assert first.standalone_question == "" and first.steps == []
        events = await w.events(AskInput("t", "And at what time do they close?", session_id="s-1"))
    answer = final(events).answer
    [condense] = [e.step for e in events if isinstance(e, StepEvent)]
    assert condense.kind is StepKind.CONDENSE
    assert condense.text == "And at what time do they close? (When do the hangars open?)"
    assert answer.standalone_question == condense.text and w.searcher.queries[-1] == condense.text
    assert answer.session_id == "s-1"
    turns = conversations.sessions[("t", "alice", "s-1")]
    assert [t.question for t in turns] == ["When do the hangars open?", "And at what time do they close?"]
    assert turns[1].standalone == condense.text and turns[1].answer == answer.text
    with acting_as(Access(Principal(subject="mallory", via="jwt"), AllowAll())):
        # mallory's "s-1" is a session of her own: nothing of alice's is condensed into her question
        other = await w.core.ask(AskInput("t", "And then?", session_id="s-1"))
    assert other.standalone_question == "" and w.searcher.queries[-1] == "And then?"
    assert [t.question for t in conversations.sessions[("t", "alice", "s-1")]] == [
        "When do the hangars open?",
        "And at what time do they close?",
    ]


async def test_a_withheld_condensation_answers_the_question_as_asked() -> None:
    w = World(
        RuleGuard(block=["(when"]), conversations=InMemoryConversations(), condenser=FollowUpCondenser()
    )
    await w.core.ask(AskInput("t", "When do the hangars open?", session_id="s"))
    events = await w.events(AskInput("t", "And close?", session_id="s"))
    [condense] = [e.step for e in events if isinstance(e, StepEvent)]
    assert condense.text == WITHHELD and final(events).answer.standalone_question == ""
    assert w.searcher.queries[-1] == "And close?"


async def test_episodic_memory_is_recalled_as_a_step_and_remembered() -> None:
    memory = ListEpisodicMemory()
    w = World(episodic=memory)
    await w.core.ask(AskInput("t", "When do the hangars open?"))
    events = await w.events(AskInput("t", "How do gliders soar?"))
    [recalled] = [e.step for e in events if isinstance(e, StepEvent)]
    assert recalled.kind is StepKind.MEMORY and recalled.text.startswith("When do the hangars open? -> ")
    assert [t.question for t in memory.turns[("t", "anonymous")]] == [
        "When do the hangars open?",
        "How do gliders soar?",
    ]


async def test_a_react_model_reads_the_recalled_turns() -> None:
    memory = ListEpisodicMemory()
    chat = ScriptedChatModel()
    w0 = World(episodic=memory)
    await w0.core.ask(AskInput("t", "When do the hangars open?"))
    tools = FakeToolRegistry.over(w0.searcher)
    runtime = AgentRuntime(tools=tools, generator=ExtractiveGenerator(), chat=chat)
    w = World(episodic=memory, runtime=runtime)
    await w.core.ask(AskInput("t", "And gliders?", graph="react"))
    memory_message = chat.seen[0][1]
    assert memory_message.role == "system" and "When do the hangars open? -> " in memory_message.content


async def test_a_cached_answer_is_checked_by_the_output_guardrail_again() -> None:
    cache = DictCache()
    w = World(cache=cache)
    first = await w.core.ask(AskInput("t", "How do gliders soar?"))
    assert not first.cached and len(cache.entries) == 1 and len(w.searcher.queries) == 1
    events = await w.events(AskInput("t", "How do gliders soar?"))
    hit = final(events).answer
    assert hit.cached and [s.kind for s in hit.steps] == [StepKind.CACHE_HIT]
    assert hit.sentences == first.sentences and len(w.searcher.queries) == 1 and w.generator.streams == 1
    assert w.guard.sessions[-1].checked == first.sentences  # replayed through the output check
    # the policy changed since: the cached answer is withheld like a fresh one would be
    w.guard.block = ["thermals"]
    blocked = await w.core.ask(AskInput("t", "How do gliders soar?"))
    assert blocked.cached and blocked.blocked and "withheld by the output guardrail" in blocked.text


async def test_an_answer_carries_the_contexts_given_to_the_generator_a_cache_hit_the_cached_ones() -> None:
    cache = DictCache()
    w = World(cache=cache)
    first = await w.core.ask(AskInput("t", "How do gliders soar?"))
    [entry] = cache.entries.values()
    assert first.contexts and first.contexts == list(entry.contexts)
    # what the generator was given, in its order
    assert [c.chunk_id for c in first.contexts] == [c.chunk_id for c in w.generator.contexts[-1]]
    hit = await w.core.ask(AskInput("t", "How do gliders soar?"))
    assert hit.cached and hit.contexts == first.contexts
    # a question the input guardrail blocks retrieves nothing
    w.guard.block = ["soar"]
    blocked = await w.core.ask(AskInput("t", "How do gliders soar?", no_cache=True))
    assert blocked.blocked and blocked.contexts == []


async def test_no_cache_skips_the_lookup_but_stores_the_answer() -> None:
    cache = DictCache()
    w = World(cache=cache)
    await w.core.ask(AskInput("t", "How do gliders soar?"))
    again = await w.core.ask(AskInput("t", "How do gliders soar?", no_cache=True))
    assert not again.cached and len(w.searcher.queries) == 2 and len(cache.entries) == 1


async def test_reflect_answers_with_its_draft_through_the_output_guardrail() -> None:
    w = World()
    answer = await w.core.ask(AskInput("t", "How do gliders soar in thermals?", graph="reflect"))
    assert w.generator.streams == 0  # the draft is the answer
    assert answer.sentences and w.guard.sessions[0].checked == answer.sentences
    assert StepKind.CRITIQUE in [s.kind for s in answer.steps]
    # the draft's usage (estimated) is recorded once
    [(_, qid, graph, usages, _)] = w.cost.records
    assert (qid, graph) == (answer.question_id, "reflect") and [u.model for u in usages] == ["extractive"]


async def test_a_tenants_prompt_version_is_what_an_llm_generator_answers_with() -> None:
    template = "Be brief.\n=== user ===\n{contexts}\nQ: {question}"
    w = World(generator=Prompted(), prompts=FixedPrompts("v3", template))
    answer = await w.core.ask(AskInput("t", "How do gliders soar?"))
    assert isinstance(w.generator, Prompted)
    [(system, user)] = w.generator.prompts
    assert system == "Be brief." and user.endswith("Q: How do gliders soar?") and "[1]" in user
    assert answer.prompt_version == "v3" and w.published[0].provenance.prompt_version == "v3"
    # the extractive generator reads no prompt: no version is recorded for its answers
    plain = World(prompts=FixedPrompts("v3", template))
    assert (await plain.core.ask(AskInput("t", "How do gliders soar?"))).prompt_version == ""


async def test_usage_is_priced_recorded_and_reported_with_the_prompt_version() -> None:
    w = World(generator=Prompted(), prompts=FixedPrompts("v3", "template"))
    answer = await w.core.ask(AskInput("t", "How do gliders soar?"))
    [(tenant, qid, graph, usages, principal)] = w.cost.records
    assert (tenant, qid, graph, principal) == ("t", answer.question_id, "rag", "")
    assert answer.usages == usages and answer.usage.tokens > 0 and not answer.usage.reported
    assert answer.cost_usd == pytest.approx(answer.usage.tokens * 0.0001)
    assert answer.prompt_version == "v3" and w.published[0].provenance.prompt_version == "v3"


async def test_a_blocked_question_takes_no_step_and_leaves_no_turn() -> None:
    conversations = InMemoryConversations()
    w = World(RuleGuard(block=["secret"]), conversations=conversations, cache=DictCache())
    answer = await w.core.ask(AskInput("t", "Tell me the secret", session_id="s", graph="react"))
    assert answer.blocked and answer.steps == [] and w.searcher.queries == []
    assert conversations.sessions == {} and w.cost.records == []


async def test_a_run_paused_for_an_approval_is_resumed_through_the_pipeline() -> None:
    book = InMemoryApprovalBook()
    searcher = KeywordSearcher(DOCS)
    chat = ScriptedChatModel(
        tool_call_reply("search", {"query": "gliders soar"}),
        tool_call_reply("fetch", {"url": "http://x"}),
        ChatReply("done", (), Usage("m", 1, 1)),
    )
    tools = FakeToolRegistry.over(searcher, fetch_tool({"http://x": "Gliders have long wings."}))
    runtime = AgentRuntime(tools=tools, generator=ExtractiveGenerator(), approvals=book, chat=chat)
    w = World(runtime=runtime)
    alice = Access(Principal(subject="alice", via="jwt"), AllowAll())
    with acting_as(alice):
        run = w.core.run(AskInput("t", "How do gliders soar?", graph="react"))
        async for ev in run:
            if isinstance(ev, StepEvent) and ev.step.kind is StepKind.APPROVAL_WAIT:
                break
        await run.aclose()  # the caller (or the process) went away while the run waited
    [approval] = book.list_pending("t")
    await book.decide("t", approval.approval_id, True, "bob", "")
    with acting_as(Access(Principal(subject="mallory", via="jwt"), AllowAll())):
        with pytest.raises(NotFound):
            await w.core.ask(AskInput("t", "", run_id=approval.run_id))
    with acting_as(alice):
        answer = await w.core.ask(AskInput("t", "", run_id=approval.run_id))
    assert answer.run_id == approval.run_id and answer.graph == "react"
    assert [s.kind for s in answer.steps][:2] == [StepKind.APPROVAL_WAIT, StepKind.APPROVAL_DECIDED]
    assert answer.status is RunStatus.COMPLETED and answer.sentences
    assert w.guard.inputs[-len(answer.steps) - 1][0] == "How do gliders soar?"  # the run's own question


@pytest.mark.parametrize(
    ("req", "match"),
    [
        (AskInput("t", "q?", graph="nope"), "unknown graph"),
        (AskInput("t", "q?", session_id="../etc"), "session_id"),
        (AskInput("t", "q?", run_id="not-hex"), "run_id"),
        (AskInput("t", ""), "empty"),
    ],
)
async def test_bad_agent_requests_are_refused(req: AskInput, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await World().core.ask(req)


def test_an_unknown_default_graph_is_refused_at_construction() -> None:
    with pytest.raises(InvalidArgument, match="unknown graph"):
        World(tenant_graphs={"t": "nope"})


async def test_a_tenants_default_graph_is_used_when_none_is_named() -> None:
    w = World(tenant_graphs={"t": "plan-execute"})
    answer = await w.core.ask(AskInput("t", "How do gliders soar? Also, when do the hangars open?"))
    other = await w.core.ask(AskInput("u", "How do gliders soar?"))
    assert (answer.graph, other.graph) == ("plan-execute", "rag")


class Reporting(ExtractiveGenerator):
    """A generator whose stream reports the server's usage (as the providers' do)."""

    def stream(
        self, question: str, contexts: Sequence[Context], *, usage_sink: Callable[[Usage], None] | None = None
    ) -> AsyncIterator[AnswerSentence]:
        if usage_sink is not None:
            usage_sink(Usage("m-1", 100, 20, True))
        return super().stream(question, contexts)


async def test_a_generator_reporting_its_usage_is_priced_by_it_not_by_the_estimate() -> None:
    searcher = KeywordSearcher(DOCS)
    cost = ListCostMeter(usd_per_token=0.001)
    core = Orchestrator(RuleGuard(), searcher, Reporting(), _drop, top_k=2, cost=cost)
    answer = await core.ask(AskInput("t", "How do gliders soar?"))
    assert answer.usages == [Usage("m-1", 100, 20, True)] and answer.cost_usd == pytest.approx(0.12)


async def _drop(ev: AnswerProduced) -> None:
    return None


async def test_identical_asks_in_flight_share_one_run() -> None:
    w = World(coalescer=Coalescer[Answer]())
    same = AskInput("t", "How do gliders soar?")
    first, second = await asyncio.gather(w.core.ask(same), w.core.ask(same))
    assert first is second and w.generator.streams == 1 and len(w.published) == 1
    # another question, or the same one later, runs on its own
    await w.core.ask(AskInput("t", "When does the hangar open?"))
    await w.core.ask(same)
    assert w.generator.streams == 3
