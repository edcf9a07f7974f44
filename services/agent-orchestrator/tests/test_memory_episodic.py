"""SqliteEpisodicMemory: opt-in per tenant, recall by cosine similarity within one principal of one
tenant, the similarity floor, replacement of a repeated question, the per-principal cap and purges."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.memory.episodic import SqliteEpisodicMemory
from isthmus_agent_orchestrator.agents.types import Turn
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument

VOCAB = [
    "bm25",
    "tf-idf",
    "refund",
    "refunds",
    "plan",
    "annual",
    "score",
    "computed",
    "gift",
    "cards",
    "policy",
]


class BagOfWords:
    """A deterministic embedder: counts of the vocabulary's words (plus a constant so no vector is zero)."""

    def __init__(self, vocab: Sequence[str] = VOCAB) -> None:
        self.vocab = list(vocab)
        self.calls = 0

    async def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        out = []
        for text in texts:
            words = re.findall(r"[a-z0-9-]+", text.lower())
            out.append([float(words.count(w)) for w in self.vocab] + [0.1])
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading is a later instant: the order of writes is kept
        return self.now


def memory(tmp_path: Path, tenants: Sequence[str] = ("acme", "globex"), **kw: object) -> SqliteEpisodicMemory:
    embed = kw.pop("embed", BagOfWords())
    return SqliteEpisodicMemory(tmp_path / "memory.sqlite", embed=embed, tenants=tenants, **kw)  # type: ignore[arg-type]


def turn(question: str, answer: str = "") -> Turn:
    return Turn(question=question, answer=answer or f"answer to {question}", standalone=question)


async def test_recall_is_most_similar_first_above_the_floor(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=0.5)
    await m.remember("acme", "alice", turn("How is the BM25 score computed?"))
    await m.remember("acme", "alice", turn("What is the refund policy for annual plans?"))
    await m.remember("acme", "alice", turn("Do refunds cover gift cards?"))
    got = await m.recall("acme", "alice", "refund policy of an annual plan", k=3)
    assert [t.question for t in got] == ["What is the refund policy for annual plans?"]
    got = await m.recall("acme", "alice", "BM25 score", k=1)
    assert [t.question for t in got] == ["How is the BM25 score computed?"]
    assert got[0].answer == "answer to How is the BM25 score computed?"
    assert await m.recall("acme", "alice", "weather tomorrow", k=3) == []


async def test_k_limits_and_orders_by_similarity(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=0.0)
    await m.remember("acme", "alice", turn("refund"))
    await m.remember("acme", "alice", turn("refund policy"))
    await m.remember("acme", "alice", turn("gift cards"))
    got = await m.recall("acme", "alice", "refund policy", k=2)
    assert [t.question for t in got] == ["refund policy", "refund"]


async def test_recall_never_crosses_principals_or_tenants(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=0.0)
    await m.remember("acme", "alice", turn("alice's BM25 question"))
    await m.remember("acme", "bob", turn("bob's BM25 question"))
    await m.remember("globex", "alice", turn("globex alice BM25 question"))
    assert [t.question for t in await m.recall("acme", "alice", "BM25", k=10)] == ["alice's BM25 question"]
    assert [t.question for t in await m.recall("acme", "bob", "BM25", k=10)] == ["bob's BM25 question"]
    assert [t.question for t in await m.recall("globex", "alice", "BM25", k=10)] == [
        "globex alice BM25 question"
    ]
    assert await m.recall("globex", "bob", "BM25", k=10) == []


async def test_only_tenants_that_opted_in(tmp_path: Path) -> None:
    embed = BagOfWords()
    m = memory(tmp_path, tenants=["acme"], embed=embed, min_similarity=0.0)
    assert m.enabled("acme") and not m.enabled("globex")
    await m.remember("globex", "alice", turn("BM25"))
    assert await m.recall("globex", "alice", "BM25") == []
    assert embed.calls == 0  # nothing embedded nor stored for a tenant that did not opt in
    everyone = memory(tmp_path / "all", tenants=["*"], min_similarity=0.0)
    assert everyone.enabled("globex")
    await everyone.remember("globex", "alice", turn("BM25"))
    assert [t.question for t in await everyone.recall("globex", "alice", "BM25")] == ["BM25"]
    assert not memory(tmp_path / "none", tenants=[]).enabled("acme")


async def test_a_repeated_question_replaces_the_older_memory(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=0.0, clock=Clock())
    await m.remember("acme", "alice", turn("What is BM25?", "old answer"))
    await m.remember("acme", "alice", turn("what is  BM25?", "new answer"))
    assert [t.answer for t in await m.recall("acme", "alice", "BM25", k=5)] == ["new answer"]


async def test_a_principal_keeps_its_newest_memories(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=-1.0, max_per_principal=2, clock=Clock())
    for q in ["refund one", "refund two", "refund three"]:
        await m.remember("acme", "alice", turn(q))
    assert sorted(t.question for t in await m.recall("acme", "alice", "refund", k=5)) == [
        "refund three",
        "refund two",
    ]


async def test_vectors_of_another_dimension_are_not_recalled(tmp_path: Path) -> None:
    await memory(tmp_path, min_similarity=0.0).remember("acme", "alice", turn("BM25"))
    other_model = memory(tmp_path, min_similarity=0.0, embed=BagOfWords(VOCAB[:3]))
    assert await other_model.recall("acme", "alice", "BM25") == []


async def test_erasure_deletes_the_tenants_memories_once(tmp_path: Path) -> None:
    m = memory(tmp_path, min_similarity=0.0)
    await m.remember("acme", "alice", turn("BM25"))
    await m.remember("globex", "alice", turn("BM25"))
    assert m.erase_tenant(TenantId("acme"), "ev-1")
    assert await m.recall("acme", "alice", "BM25") == []
    assert len(await m.recall("globex", "alice", "BM25")) == 1
    await m.remember("acme", "alice", turn("BM25 again"))
    assert not m.erase_tenant(TenantId("acme"), "ev-1")  # heard again: newer memories stay
    assert len(await m.recall("acme", "alice", "BM25")) == 1


async def test_tenant_deletion_deletes_memories_written_before_it(tmp_path: Path) -> None:
    clock = Clock()
    m = memory(tmp_path, min_similarity=0.0, clock=clock)
    await m.remember("acme", "alice", turn("old BM25"))
    cutoff = datetime.fromtimestamp(clock.now + 0.5, UTC)
    await m.remember("acme", "alice", turn("new BM25"))
    m.delete_tenant(TenantId("acme"), cutoff)
    assert [t.question for t in await m.recall("acme", "alice", "BM25", k=5)] == ["new BM25"]


async def test_bad_ids_are_invalid_arguments(tmp_path: Path) -> None:
    m = memory(tmp_path)
    with pytest.raises(InvalidArgument):
        await m.recall("../acme", "alice", "BM25")
    with pytest.raises(InvalidArgument):
        await m.remember("acme", "", turn("BM25"))
