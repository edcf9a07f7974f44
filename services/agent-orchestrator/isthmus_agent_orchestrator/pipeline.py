"""The answer pipeline: input guardrail → conversation and memory → response cache → agent graph →
synthesis → output guardrail (every sentence) → memory, cache, cost, ``AnswerProduced``.

Both ``Ask`` and ``AskStream`` consume :meth:`Orchestrator.run`; the unary call just keeps the final
event. One ask (:class:`AskInput`):

1. validated (graph known, session and run ids well formed) and the tenant's token quota checked;
2. the input guardrail checks the question (a block ends here; a redaction is what goes on);
3. with a ``session_id``, the conversation's earlier turns condense a follow-up into a standalone
   question (``CONDENSE`` step); a tenant with episodic memory recalls the principal's earlier turns
   (``MEMORY`` step, into the run's scratchpad);
4. the response cache (unless ``no_cache``): a hit (``CACHE_HIT`` step) is replayed through the output
   guardrail again — a cached answer is never shown unchecked;
5. the agent graph (:class:`~isthmus_agent_orchestrator.agents.runtime.AgentRuntime`) runs: its steps,
   each through the step guard, then the passages it gathered (and reflect's draft);
6. synthesis: the generator's stream over the passages, or the draft's sentences — every sentence
   through the output guardrail. ALLOW shows it, REDACT shows the guardrail's redacted text (citations
   kept), BLOCK withholds the rest of the answer. The answer's output verdict is the guardrail's own,
   combined over the sentences (strongest action, every finding);
7. the turn is appended to the conversation (and episodic memory), a completed unblocked answer goes
   into the cache, the LLM usage is priced and recorded, ``AnswerProduced`` is published.

``rag`` (the default graph) takes no step: no extra guardrail call, no checkpoint.

Pure: the guardrail, retrieval and the agents' services are reached through Protocols (gRPC
implementations in :mod:`isthmus_agent_orchestrator.clients`, the rest in ``agents/``).
"""

from __future__ import annotations

import inspect
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, assert_never

from isthmus_agent_orchestrator.agents.graphs import GRAPHS
from isthmus_agent_orchestrator.agents.providers.answers import answer_prompt
from isthmus_agent_orchestrator.agents.runtime import AgentRuntime, GraphOutcome
from isthmus_agent_orchestrator.agents.step_guard import GuardedStep, StepGuard
from isthmus_agent_orchestrator.agents.testing import (
    FakeToolRegistry,
    FixedPrompts,
    InMemoryConversations,
    KeepQuestion,
    NoEpisodicMemory,
    ZeroCost,
)
from isthmus_agent_orchestrator.agents.types import (
    SESSION_ID_PATTERN,
    CachedAnswer,
    CacheKey,
    Condenser,
    ConversationStore,
    CostMeter,
    EpisodicMemory,
    PromptBook,
    PromptChoice,
    ResponseCache,
    RunStatus,
    Step,
    StepKind,
    Turn,
    Usage,
)
from isthmus_agent_orchestrator.budget import TokenMeter
from isthmus_core.auth.context import current_principal
from isthmus_core.auth.stack import NoQuotas, QuotaGate
from isthmus_core.contracts.events import (
    AnswerProduced,
    AnswerSample,
    ChunkProvenance,
    Citation,
    Provenance,
    SampleContext,
    SampleSentence,
    VerdictSummary,
)
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context, Generator
from isthmus_core.ports.guard import Action, Verdict
from isthmus_core.ports.guard_client import GuardClient, OutputCheck, combine_output_verdicts
from isthmus_core.sampling import sample_rate, sampled

_RUN_ID: Final = re.compile(r"^[0-9a-f]{32}$")
_SESSION_ID: Final = re.compile(SESSION_ID_PATTERN)


class Searcher(Protocol):
    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        """Best first. ``principals``: the caller's, for document ACLs; empty = only documents without
        an ACL (there is no "see everything" scope)."""


class Stage(StrEnum):
    INPUT_GUARD = "input_guard"
    RETRIEVAL = "retrieval"
    GENERATION = "generation"
    OUTPUT_GUARD = "output_guard"
    DONE = "done"
    #: an agent graph other than rag (its time includes the session, memory and cache look-ups)
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class AskInput:
    """One question as the edge parsed it (principals already through ``parse_principals``)."""

    tenant_id: str
    question: str
    top_k: int = 0
    principals: tuple[str, ...] = ()
    #: "" = the tenant's default graph
    graph: str = ""
    session_id: str = ""
    #: resume this run (32 hex); the question and graph are then the run's
    run_id: str = ""
    no_cache: bool = False


@dataclass(frozen=True, slots=True)
class StageEvent:
    stage: Stage
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """An agent step, as the step guard let the caller see it."""

    step: Step


@dataclass(frozen=True, slots=True)
class SentenceEvent:
    sentence: AnswerSentence


@dataclass
class Answer:
    question_id: str
    sentences: list[AnswerSentence] = field(default_factory=list)
    input_verdict: Verdict | None = None
    output_verdict: Verdict | None = None
    blocked: bool = False
    message: str = ""  # the text shown instead of an answer when blocked or abstained
    generator: str = ""
    latency_ms: float = 0.0
    #: milliseconds spent in each stage (generation and output checks interleave: each is its own share)
    stage_ms: dict[Stage, float] = field(default_factory=dict)
    graph: str = "rag"
    run_id: str = ""
    session_id: str = ""
    #: the question as answered when a conversation rewrote it ("" = the question itself)
    standalone_question: str = ""
    prompt_version: str = ""
    #: LLM usage of the answer (the agents' and the generator's), and its price
    usages: list[Usage] = field(default_factory=list)
    cost_usd: float = 0.0
    cached: bool = False
    steps: list[Step] = field(default_factory=list)
    status: RunStatus = RunStatus.COMPLETED
    #: the contexts the answer was generated from, best first (a cache hit: the cached answer's; with
    #: parent-child chunking, the parent sections the generator read); empty when the question was blocked
    contexts: list[Context] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.message or " ".join(s.text for s in self.sentences)

    @property
    def usage(self) -> Usage:
        """Every usage summed (``model``: the one model if a single one was used, else "")."""
        total = Usage(model=self.usages[0].model if len({u.model for u in self.usages}) == 1 else "")
        for u in self.usages:
            total.add(u)
        return total

    @property
    def citations(self) -> list[Citation]:
        seen: dict[tuple[str, int, int], Citation] = {}
        for s in self.sentences:
            for c in s.citations:
                seen.setdefault(
                    (c.chunk_id, c.start, c.end),
                    Citation(
                        chunk_id=c.chunk_id,
                        document_id=c.document_id,
                        start=c.start,
                        end=c.end,
                        source_name=c.source_name,
                        title=c.title,
                        uri=c.uri,
                    ),
                )
        return list(seen.values())


@dataclass(frozen=True, slots=True)
class FinalEvent:
    answer: Answer


AskEvent = StageEvent | StepEvent | SentenceEvent | FinalEvent


def _reasons(v: Verdict) -> str:
    return "; ".join(f.message for f in v.findings) or "policy"


def _shown(sentence: AnswerSentence, verdict: Verdict) -> AnswerSentence | None:
    """What the caller gets of a checked sentence; ``None``: withhold the rest of the answer."""
    match verdict.action:
        case Action.ALLOW | Action.FLAG:
            return sentence
        case Action.REDACT:
            # the guardrail's text replaces the sentence; an empty one shows nothing of it
            return AnswerSentence(verdict.text, sentence.citations)
        case Action.BLOCK:
            return None
        case _:
            assert_never(verdict.action)


def _summary(v: Verdict | None) -> VerdictSummary:
    if v is None:
        return VerdictSummary()
    return VerdictSummary(action=v.action.value, codes=[f.code for f in v.findings])


def provenance(
    answer: Answer,
    contexts: Sequence[Context],
    generator_model: str = "",
    prompt_version: str = "",
    model_bundle: str = "",
) -> Provenance:
    """How ``answer`` was made: the caller (the verified subject of the current call, "" with
    authentication off), the chunks retrieved and cited (document versions, offsets, scores), the
    models (and the model bundle of the workload), the prompt and guardrail policy versions, the
    verdicts and the stage timings."""
    by_id = {c.chunk_id: c for c in contexts}

    def cited(c: Citation) -> ChunkProvenance:
        ctx = by_id.get(c.chunk_id)
        return ChunkProvenance(
            chunk_id=c.chunk_id,
            document_id=c.document_id,
            document_version=ctx.document_version if ctx else 0,
            start=c.start,
            end=c.end,
            score=ctx.score if ctx else 0.0,
        )

    verdicts = [v for v in (answer.input_verdict, answer.output_verdict) if v is not None]
    return Provenance(
        principal=_subject(),
        retrieved=[
            ChunkProvenance(
                chunk_id=c.chunk_id,
                document_id=c.document_id,
                document_version=c.document_version,
                start=c.start,
                end=c.end or c.start + len(c.text),
                score=c.score,
            )
            for c in contexts
        ],
        cited=[cited(c) for c in answer.citations],
        embedding_model=next((c.embedding_model for c in contexts if c.embedding_model), ""),
        generator=answer.generator,
        generator_model=generator_model,
        prompt_version=prompt_version,
        guardrail_policy_version=next((v.policy_version for v in verdicts if v.policy_version), ""),
        input_verdict=_summary(answer.input_verdict),
        output_verdict=_summary(answer.output_verdict),
        timings_ms={str(stage): ms for stage, ms in answer.stage_ms.items()},
        model_bundle=model_bundle,
    )


# the bounds of AnswerSample's fields (isthmus_core.contracts.events): a longer text is cut, never refused
_SAMPLE_QUESTION_CHARS: Final = 16_384
_SAMPLE_ANSWER_CHARS: Final = 65_536
_SAMPLE_SENTENCE_CHARS: Final = 16_384
_SAMPLE_SENTENCES: Final = 512
_SAMPLE_CONTEXT_CHARS: Final = 65_536
_SAMPLE_CONTEXTS: Final = 256


def answer_sample(question: str, answer: Answer, contexts: Sequence[Context]) -> AnswerSample:
    """What online evaluation judges of an answer: the question as answered (after the input guardrail's
    redaction and a conversation's rewriting), the sentences the caller was shown (redacted as shown,
    with their citations) and the contexts they were generated from. Texts beyond the event's bounds
    are cut."""
    return AnswerSample(
        question=question[:_SAMPLE_QUESTION_CHARS],
        answer=answer.text[:_SAMPLE_ANSWER_CHARS],
        sentences=[
            SampleSentence(
                text=s.text[:_SAMPLE_SENTENCE_CHARS],
                citations=[
                    Citation(
                        chunk_id=c.chunk_id,
                        document_id=c.document_id,
                        start=c.start,
                        end=c.end,
                        source_name=c.source_name,
                        title=c.title,
                        uri=c.uri,
                    )
                    for c in s.citations
                ],
            )
            for s in answer.sentences[:_SAMPLE_SENTENCES]
        ],
        contexts=[
            SampleContext(
                chunk_id=c.chunk_id,
                document_id=c.document_id,
                start=c.start,
                text=c.text[:_SAMPLE_CONTEXT_CHARS],
                score=c.score,
            )
            for c in contexts[:_SAMPLE_CONTEXTS]
        ],
    )


#: who owns conversations and episodic memories when authentication is off (every caller is the same one)
ANONYMOUS_OWNER = "anonymous"


def _owner(subject: str) -> str:
    return subject or ANONYMOUS_OWNER


def _subject() -> str:
    """The verified subject of the current call ("" outside a call or with authentication off)."""
    principal = current_principal()
    return "" if principal is None or principal.via == "anonymous" else principal.subject


def _stream_takes(generator: Generator, parameter: str) -> bool:
    """The generator's ``stream`` takes ``parameter``: ``usage_sink`` (providers that report the server's
    usage), ``prompt`` (LLM generators, which answer with a tenant's prompt version)."""
    try:
        return parameter in inspect.signature(generator.stream).parameters
    except (TypeError, ValueError):
        return False


class InFlight(Protocol):
    """Runs ``factory`` once for every caller of the same ``key`` while it is in flight."""

    async def run(self, key: Hashable, factory: Callable[[], Awaitable[Answer]]) -> Answer: ...


class Orchestrator:
    """The answer pipeline (see the module's doc). Only ``guard``, ``searcher``, ``generator`` and
    ``publish_answer`` are required: without the rest it answers with the ``rag`` graph over a
    search-only tool registry, without conversations' persistence, memory, cache or prices."""

    def __init__(
        self,
        guard: GuardClient,
        searcher: Searcher,
        generator: Generator,
        publish_answer: Callable[[AnswerProduced], Awaitable[None]],
        *,
        top_k: int = 5,
        max_question_chars: int = 2000,
        generator_model: str = "",
        prompt_version: str = "",
        quotas: QuotaGate | None = None,
        runtime: AgentRuntime | None = None,
        default_graph: str = "rag",
        tenant_graphs: Mapping[str, str] | None = None,
        conversations: ConversationStore | None = None,
        condenser: Condenser | None = None,
        session_turns: int = 6,
        episodic: EpisodicMemory | None = None,
        episodic_k: int = 3,
        prompts: PromptBook | None = None,
        cache: ResponseCache | None = None,
        cost: CostMeter | None = None,
        coalescer: InFlight | None = None,
        sample_rate: float = 0.0,
        sample_rates: Mapping[str, float] | None = None,
        model_bundle: str = "",
    ) -> None:
        self._guard = guard
        self._generator = generator
        self._publish = publish_answer
        self._top_k = top_k
        self._max_chars = max_question_chars
        #: for answers' provenance: the generator's model, the version of its prompt template
        self._generator_model = generator_model
        self._prompt_version = prompt_version
        self._quotas = quotas or NoQuotas()  # the tenant's LLM token budget (budget.py)
        self.runtime = runtime or AgentRuntime(tools=FakeToolRegistry.over(searcher), generator=generator)
        for name in (default_graph, *(tenant_graphs or {}).values()):
            if name not in GRAPHS:
                raise InvalidArgument(f"unknown graph {name!r}; the graphs are {', '.join(GRAPHS)}")
        self._default_graph = default_graph
        self._tenant_graphs = dict(tenant_graphs or {})
        self._conversations = conversations or InMemoryConversations()
        self._condenser = condenser or KeepQuestion()
        self._session_turns = session_turns
        self._episodic = episodic or NoEpisodicMemory()
        self._episodic_k = episodic_k
        self._prompts = prompts or FixedPrompts(prompt_version)
        self._cache = cache
        self._cost = cost or ZeroCost()
        #: identical unary asks in flight share one run (agents.caches.Coalescer); None: each runs
        self._coalescer = coalescer
        #: online evaluation: the share of answers whose content rides on their event (per tenant), and
        #: the model bundle this workload serves (provenance)
        self._sample_rate = sample_rate
        self._sample_rates = dict(sample_rates or {})
        self._model_bundle = model_bundle
        self._usage_sink = _stream_takes(generator, "usage_sink")
        #: the generator answers with a prompt (an LLM): a tenant's prompt versions apply to it
        self._prompted = _stream_takes(generator, "prompt")

    def graph_of(self, tenant_id: str) -> str:
        """The graph of the tenant's questions that name none."""
        return self._tenant_graphs.get(tenant_id, self._default_graph)

    def _validated(self, req: AskInput) -> tuple[str, int]:
        if not req.tenant_id:
            raise InvalidArgument("tenant_id is required")
        if req.run_id and not _RUN_ID.match(req.run_id):
            raise InvalidArgument("run_id must be 32 lowercase hexadecimal characters")
        if not req.run_id and not req.question.strip():
            raise InvalidArgument("question is empty")
        if len(req.question) > self._max_chars:
            raise InvalidArgument(
                f"question is {len(req.question)} characters; the limit is {self._max_chars}"
            )
        graph = req.graph or self.graph_of(req.tenant_id)
        if graph not in GRAPHS:
            raise InvalidArgument(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
        if req.session_id and not _SESSION_ID.match(req.session_id):
            raise InvalidArgument("session_id must be 1-64 of the characters A-Z a-z 0-9 . _ -")
        k = req.top_k or self._top_k
        if not 1 <= k <= 50:
            raise InvalidArgument(f"top_k must be between 1 and 50, got {k}")
        return graph, k

    def run(
        self, request: AskInput | str, question: str = "", top_k: int = 0, principals: Sequence[str] = ()
    ) -> AsyncGenerator[AskEvent, None]:
        """The events of one ask: ``run(AskInput(...))``, or ``run(tenant_id, question, top_k,
        principals)`` for the plain rag question."""
        if isinstance(request, str):
            request = AskInput(request, question, top_k, tuple(principals))
        return self._run(request)

    async def ask(
        self, request: AskInput | str, question: str = "", top_k: int = 0, principals: Sequence[str] = ()
    ) -> Answer:
        req = (
            request
            if isinstance(request, AskInput)
            else AskInput(request, question, top_k, tuple(principals))
        )
        if self._coalescer is None or req.session_id or req.run_id or req.no_cache:
            return await self._ask_once(req)
        # identical questions in flight (same caller, tenant, graph, access scope) share one run
        key = (
            req.tenant_id,
            req.graph or self.graph_of(req.tenant_id),
            " ".join(req.question.split()),
            tuple(sorted(req.principals)),
            req.top_k,
            _subject(),
        )
        return await self._coalescer.run(key, lambda: self._ask_once(req))

    async def _ask_once(self, req: AskInput) -> Answer:
        final: Answer | None = None
        async for ev in self.run(req):
            if isinstance(ev, FinalEvent):
                final = ev.answer
        assert final is not None
        return final

    async def _run(self, req: AskInput) -> AsyncGenerator[AskEvent, None]:
        graph, k = self._validated(req)
        tenant_id = req.tenant_id
        self._quotas.check_tokens(tenant_id)
        t0 = time.perf_counter()
        subject = _subject()
        answer = Answer(
            question_id=uuid.uuid4().hex,
            generator=self._generator.name,
            graph=graph,
            run_id=req.run_id or uuid.uuid4().hex,
            session_id=req.session_id,
        )
        question = req.question
        principals = tuple(req.principals)
        if req.run_id:  # the run's own question and graph (NotFound unless it is this caller's)
            info = await self.runtime.lookup(req.run_id, tenant_id, subject)
            question, answer.graph, k = info.question, info.graph, info.top_k
            graph = info.graph
        contexts: list[Context] = []

        def spent(stage: Stage, since: float) -> float:
            now = time.perf_counter()
            answer.stage_ms[stage] = answer.stage_ms.get(stage, 0.0) + (now - since) * 1000
            return now

        yield StageEvent(Stage.INPUT_GUARD)
        t = time.perf_counter()
        verdict = await self._guard.check_input(tenant_id, question, answer.question_id)
        spent(Stage.INPUT_GUARD, t)
        answer.input_verdict = verdict
        query = question
        match verdict.action:
            case Action.ALLOW | Action.FLAG:
                pass
            case Action.REDACT:
                query = verdict.text  # empty: nothing of the question may go on (checked below)
            case Action.BLOCK:
                query = ""
            case _:
                assert_never(verdict.action)
        if not query:
            answer.blocked = True
            answer.message = f"Your question was blocked by the input guardrail: {_reasons(verdict)}"
        standalone = query
        key: CacheKey | None = None
        outcome: GraphOutcome | None = None
        cached: CachedAnswer | None = None
        raw_shown: list[AnswerSentence] = []  # the generator's sentences the caller saw (for the cache)
        generation_usage: list[Usage] = []
        if not answer.blocked:
            steps = StepGuard(self._guard, tenant_id, answer.question_id)

            async def step(s: Step) -> GuardedStep:
                guarded = await steps.check(s)
                answer.steps.append(guarded.step)
                return guarded

            agent_stage = Stage.RETRIEVAL if graph == "rag" else Stage.AGENT
            yield StageEvent(agent_stage)
            t = time.perf_counter()
            scratchpad: dict[str, object] = {}
            if req.session_id and not req.run_id:
                history = await self._conversations.history(
                    tenant_id, req.session_id, _owner(subject), self._session_turns
                )
                condensed = (await self._condenser.condense(history, query)).strip() if history else query
                if condensed and condensed != query:
                    guarded = await step(Step(StepKind.CONDENSE, "condense", condensed))
                    yield StepEvent(guarded.step)
                    if not guarded.blocked and guarded.step.text:  # withheld: the question as asked
                        standalone = guarded.step.text
                        answer.standalone_question = standalone
            if not req.run_id and self._episodic.enabled(tenant_id):
                recalled = await self._episodic.recall(
                    tenant_id, _owner(subject), standalone, self._episodic_k
                )
                if recalled:
                    text = "\n".join(f"{r.standalone or r.question} -> {r.answer}" for r in recalled)
                    guarded = await step(Step(StepKind.MEMORY, "memory", text))
                    yield StepEvent(guarded.step)
                    if not guarded.blocked:
                        scratchpad["memory"] = guarded.step.text
            # a tenant's prompt version (its A/B split) when the generator answers from a prompt; the
            # version recorded is the one the answer was made with ("" for the extractive generator)
            choice = self._prompts.choose(tenant_id, "synthesize", answer.question_id)
            if not (self._prompted and choice.version):
                choice = PromptChoice("synthesize", "", "")
            answer.prompt_version = choice.version or self._prompt_version
            key = CacheKey(tenant_id, graph, standalone, tuple(sorted(principals)), k)
            if self._cache is not None and not req.no_cache and not req.run_id:
                cached = await self._cache.get(key)
            if cached is not None:
                guarded = await step(
                    Step(StepKind.CACHE_HIT, "cache", f"answered from the cache ({cached.match} match)")
                )
                yield StepEvent(guarded.step)
                answer.cached = True
                answer.generator = cached.generator
                answer.prompt_version = cached.prompt_version
                contexts = list(cached.contexts)
            else:
                async for item in self.runtime.execute(
                    graph,
                    tenant_id,
                    standalone,
                    principals,
                    k,
                    subject,
                    answer.run_id,
                    resume=bool(req.run_id),
                    guard=steps,
                    scratchpad=scratchpad,
                ):
                    if isinstance(item, GraphOutcome):
                        outcome = item
                    else:
                        answer.steps.append(item)
                        yield StepEvent(item)
                assert outcome is not None
                contexts = list(outcome.contexts)
                answer.status = outcome.status
                answer.usages.extend(outcome.usages)
            spent(agent_stage, t)
            answer.contexts = contexts
            yield StageEvent(agent_stage, f"{len(contexts)} contexts")
            yield StageEvent(Stage.GENERATION)
            checked: list[tuple[AnswerSentence, Verdict]] = []
            session: OutputCheck | None = None
            t = time.perf_counter()
            meter = TokenMeter(standalone, contexts)
            sentences: AsyncIterator[AnswerSentence]
            if cached is not None:
                sentences = _replay(cached.sentences)
            elif outcome is not None and outcome.draft is not None:
                # its usage is the graph's; the reflect graph drafts with the built-in prompt
                sentences = _replay(outcome.draft.sentences)
                answer.prompt_version = self._prompt_version
            else:
                options: dict[str, Any] = {}
                if self._usage_sink:
                    options["usage_sink"] = generation_usage.append
                if choice.version:
                    options["prompt"] = answer_prompt(choice.template, standalone, contexts)
                sentences = self._generator.stream(standalone, contexts, **options)
            streamed = cached is None and (outcome is None or outcome.draft is None)
            try:
                async for sentence in sentences:
                    if streamed:
                        meter.add(sentence)
                    t = spent(Stage.GENERATION, t)
                    if not sentence.citations:
                        continue  # uncited text (an abstention, a preamble) is never shown as an answer
                    if session is None:  # opened lazily: no call when nothing is to be checked
                        session = await self._guard.open_output_check(tenant_id, answer.question_id, contexts)
                    out = await session.check(sentence)
                    t = spent(Stage.OUTPUT_GUARD, t)
                    checked.append((sentence, out))
                    shown_sentence = _shown(sentence, out)
                    if shown_sentence is None:
                        answer.blocked = True
                        answer.message = f"The answer was withheld by the output guardrail: {_reasons(out)}"
                        break
                    if shown_sentence.text:
                        raw_shown.append(sentence)
                        answer.sentences.append(shown_sentence)
                        yield SentenceEvent(shown_sentence)
                    t = time.perf_counter()  # the caller's time reading the sentence is no stage's
                spent(Stage.GENERATION, t)
            finally:
                if streamed:
                    if not generation_usage:
                        model = self._generator_model or self._generator.name
                        generation_usage.append(Usage(model, meter.prompt, meter.completion))
                    answer.usages.extend(generation_usage)
                self._quotas.charge_tokens(tenant_id, sum(u.tokens for u in answer.usages))
                if session is not None:
                    t = time.perf_counter()
                    await session.aclose()
                    spent(Stage.OUTPUT_GUARD, t)
            yield StageEvent(Stage.OUTPUT_GUARD)
            answer.output_verdict = combine_output_verdicts(
                checked, " ".join(s.text for s in answer.sentences)
            )
            if not answer.sentences and not answer.message:
                answer.message = "I could not find an answer in the indexed documents."
        if answer.input_verdict is not None and query:
            await self._after(req, answer, question, key, contexts, raw_shown, subject)
        answer.latency_ms = (time.perf_counter() - t0) * 1000
        rate = sample_rate(tenant_id, self._sample_rate, self._sample_rates)
        # what the caller saw, on the sampled share of the answers; never for a blocked one
        sample = (
            answer_sample(standalone, answer, contexts)
            if not answer.blocked and sampled(answer.question_id, rate)
            else None
        )
        await self._publish(
            AnswerProduced(
                tenant_id=tenant_id,
                idempotency_key=f"{tenant_id}/{answer.question_id}",
                question_id=answer.question_id,
                latency_ms=answer.latency_ms,
                citations=answer.citations,
                blocked=answer.blocked,
                generator=answer.generator,
                retrieved=len(contexts),
                provenance=provenance(
                    answer, contexts, self._generator_model, answer.prompt_version, self._model_bundle
                ),
                sample=sample,
            )
        )
        yield StageEvent(Stage.DONE)
        yield FinalEvent(answer)

    async def _after(
        self,
        req: AskInput,
        answer: Answer,
        question: str,
        key: CacheKey | None,
        contexts: Sequence[Context],
        raw_shown: Sequence[AnswerSentence],
        subject: str,
    ) -> None:
        """The turn into the conversation and episodic memory, the answer into the cache, the usage
        priced and recorded (a question the input guardrail blocked leaves no trace but the event)."""
        tenant_id = req.tenant_id
        turn = Turn(
            question=question,
            answer=answer.text,
            standalone=answer.standalone_question,
            question_id=answer.question_id,
        )
        if req.session_id:
            await self._conversations.append(tenant_id, req.session_id, _owner(subject), turn)
        if answer.sentences and not answer.blocked and self._episodic.enabled(tenant_id):
            await self._episodic.remember(tenant_id, _owner(subject), turn)
        if (
            self._cache is not None
            and key is not None
            and not answer.cached
            and not answer.blocked
            and answer.status is RunStatus.COMPLETED
            and raw_shown
        ):
            # the generator's sentences (not the redacted ones): a hit is checked again as they were
            await self._cache.put(
                key,
                CachedAnswer(
                    sentences=tuple(raw_shown),
                    contexts=tuple(contexts),
                    message=answer.message,
                    steps=tuple(answer.steps),
                    generator=answer.generator,
                    prompt_version=answer.prompt_version,
                ),
            )
        if answer.usages:
            answer.cost_usd = await self._cost.record(
                tenant_id, answer.question_id, answer.graph, answer.usages, subject
            )


async def _replay(sentences: Sequence[AnswerSentence]) -> AsyncIterator[AnswerSentence]:
    for s in sentences:
        yield s
