"""Online evaluation's share of answers: the sampled ones carry what the caller saw (the question as
answered, the shown sentences with their citations, the contexts with their text), blocked ones never;
the choice is the answer id's (``isthmus_core.sampling``) at the tenant's rate; the model bundle of the
workload is in every answer's provenance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from isthmus_agent_orchestrator.pipeline import Orchestrator
from isthmus_core.contracts.events import AnswerProduced
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generation
from isthmus_core.ports.guard import Action, Finding, Verdict
from isthmus_core.sampling import sampled

CTX = [
    Context("c1", "d1", "Gliders fly without engines. They soar in thermals and ridge lift.", start=100),
    Context("c2", "d2", "Book a flight with ops@club.example or at the desk.", start=50),
]


def quoted(ctx: Context, phrase: str) -> AnswerSentence:
    start = ctx.start + ctx.text.index(phrase)
    return AnswerSentence(phrase, (CitedSpan(ctx.chunk_id, ctx.document_id, start, start + len(phrase)),))


SOAR = quoted(CTX[0], "They soar in thermals and ridge lift.")
BOOK = quoted(CTX[1], "Book a flight with ops@club.example or at the desk.")
REDACTED_BOOK = "Book a flight with <EMAIL> or at the desk."


class Check:
    """Output check: blocks sentences naming "engines", redacts the e-mail address."""

    async def check(self, sentence: AnswerSentence) -> Verdict:
        if "engines" in sentence.text:
            return Verdict(Action.BLOCK, (Finding("policy.denied_term", "engines"),))
        if "ops@club.example" in sentence.text:
            text = sentence.text.replace("ops@club.example", "<EMAIL>")
            return Verdict(Action.REDACT, (Finding("pii.EMAIL_ADDRESS", "e-mail"),), text)
        return Verdict(Action.ALLOW, (), sentence.text)

    async def aclose(self) -> None:
        return None


class Guard:
    """Input check: blocks "forbidden", redacts "secret-name" to "<NAME>"."""

    async def check_input(self, tenant_id: str, text: str, subject_id: str, origin: str = "user") -> Verdict:
        if "forbidden" in text:
            return Verdict(Action.BLOCK, (Finding("policy.denied_term", "forbidden"),))
        if "secret-name" in text:
            redacted = text.replace("secret-name", "<NAME>")
            return Verdict(Action.REDACT, (Finding("pii.PERSON", "name"),), redacted)
        return Verdict(Action.ALLOW, (), text)

    async def open_output_check(self, tenant_id: str, subject_id: str, contexts: Sequence[Context]) -> Check:
        return Check()


class Scripted:
    name = "scripted"

    def __init__(self, *sentences: AnswerSentence) -> None:
        self.sentences = sentences

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        raise NotImplementedError

    async def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        for s in self.sentences:
            yield s


class Recorder:
    def __init__(self) -> None:
        self.published: list[AnswerProduced] = []

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        return CTX[:top_k]

    async def publish(self, ev: AnswerProduced) -> None:
        self.published.append(ev)


def core(rec: Recorder, *sentences: AnswerSentence, **kw: object) -> Orchestrator:
    return Orchestrator(Guard(), rec, Scripted(*sentences), rec.publish, top_k=2, **kw)  # type: ignore[arg-type]


async def test_a_sampled_answer_carries_what_the_caller_saw() -> None:
    rec = Recorder()
    answer = await core(rec, SOAR, BOOK, sample_rate=1.0).ask("acme", "secret-name: how do gliders fly?")
    [ev] = rec.published
    s = ev.sample
    assert s is not None
    assert s.question == "<NAME>: how do gliders fly?"  # the question as answered, redacted
    assert s.answer == answer.text == f"{SOAR.text} {REDACTED_BOOK}"
    assert [x.text for x in s.sentences] == [SOAR.text, REDACTED_BOOK]  # shown, not generated
    assert [(c.chunk_id, c.start, c.end) for c in s.sentences[1].citations] == [
        (c.chunk_id, c.start, c.end) for c in BOOK.citations
    ]
    assert [(c.chunk_id, c.document_id, c.start, c.text) for c in s.contexts] == [
        (c.chunk_id, c.document_id, c.start, c.text) for c in CTX
    ]


async def test_blocked_answers_are_never_sampled() -> None:
    rec = Recorder()
    blocked_output = quoted(CTX[0], "Gliders fly without engines.")
    answer = await core(rec, SOAR, blocked_output, sample_rate=1.0).ask("acme", "How do gliders fly?")
    assert answer.blocked
    await core(rec, SOAR, sample_rate=1.0).ask("acme", "a forbidden question")
    assert [ev.blocked for ev in rec.published] == [True, True]
    assert [ev.sample for ev in rec.published] == [None, None]


async def test_the_share_follows_the_answer_id_and_the_tenants_rate() -> None:
    rec = Recorder()
    orch = core(rec, SOAR, sample_rate=0.5, sample_rates={"quiet": 0.0, "loud": 1.0})
    for tenant in ("acme", "quiet", "loud"):
        for _ in range(40):
            await orch.ask(tenant, "How do gliders fly?")
    by_tenant: dict[str, list[AnswerProduced]] = {}
    for ev in rec.published:
        by_tenant.setdefault(ev.tenant_id, []).append(ev)
    assert all(ev.sample is None for ev in by_tenant["quiet"])
    assert all(ev.sample is not None for ev in by_tenant["loud"])
    acme = by_tenant["acme"]
    assert [ev.sample is not None for ev in acme] == [sampled(ev.question_id, 0.5) for ev in acme]
    assert 0 < sum(ev.sample is not None for ev in acme) < len(acme)


async def test_no_rate_no_sample() -> None:
    rec = Recorder()
    await core(rec, SOAR).ask("acme", "How do gliders fly?")
    assert rec.published[0].sample is None


async def test_the_model_bundle_is_in_every_answers_provenance() -> None:
    rec = Recorder()
    await core(rec, SOAR, model_bundle="embedder@2").ask("acme", "How do gliders fly?")
    await core(rec, SOAR, model_bundle="embedder@2").ask("acme", "a forbidden question")
    await core(rec, SOAR).ask("acme", "How do gliders fly?")
    assert [ev.provenance.model_bundle for ev in rec.published] == ["embedder@2", "embedder@2", ""]
