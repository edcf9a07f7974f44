"""SqlitePromptBook: immutable versions with digests, template validation, split validation, the built-in
templates (synthesize = openai_compat's prompt), and the A/B split's distribution and reproducibility."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.prompts import (
    FIELDS,
    MAX_TEMPLATE_CHARS,
    PROMPT_NAMES,
    SqlitePromptBook,
    bucket,
    builtin_templates,
    check_template,
)
from isthmus_agent_orchestrator.agents.providers.answers import contexts_block, render
from isthmus_agent_orchestrator.openai_compat import SYSTEM_PROMPT, user_prompt
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import Context

SYNTH = "Answer from the sources.\n=== user ===\n{contexts}\n\nQ: {question}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def book(tmp_path: Path, **kw: object) -> SqlitePromptBook:
    return SqlitePromptBook(tmp_path / "prompts.sqlite", **kw)  # type: ignore[arg-type]


async def test_versions_are_numbered_immutable_and_digested(tmp_path: Path) -> None:
    b = book(tmp_path)
    v1 = await b.create_version("acme", "synthesize", SYNTH, "alice")
    v2 = await b.create_version("acme", "synthesize", SYNTH + " Be brief.", "bob")
    assert (v1.version, v2.version) == ("v1", "v2")
    assert v1.digest == hashlib.sha256(SYNTH.encode()).hexdigest()
    assert (v1.created_by, v2.created_by) == ("alice", "bob")
    # the same template again is the same version (a retry creates nothing), never a rewrite
    again = await b.create_version("acme", "synthesize", SYNTH, "carol")
    assert again == v1
    assert await b.list_versions("acme", "synthesize") == [v1, v2]
    # numbering is per tenant and per name
    assert (await b.create_version("globex", "synthesize", SYNTH, "x")).version == "v1"
    assert (await b.create_version("acme", "plan", "{question} {max_sub_questions}", "x")).version == "v1"
    assert await b.list_versions("acme", "critic") == []
    assert await book(tmp_path).list_versions("acme", "synthesize") == [v1, v2]  # persisted


@pytest.mark.parametrize(
    ("name", "template"),
    [
        ("synthesize", "only {question}"),  # {contexts} missing
        ("synthesize", "{question} {contexts} {secret}"),  # a field it does not have
        ("synthesize", "{question.__class__} {contexts}"),  # attribute access
        ("synthesize", "{question[0]} {contexts}"),  # indexing
        ("synthesize", "{question!r} {contexts}"),  # conversion
        ("synthesize", "{question:>10} {contexts}"),  # format spec
        ("synthesize", "{} {question} {contexts}"),  # positional
        ("synthesize", "{question} {contexts"),  # unbalanced
        ("synthesize", "   "),
        ("plan", "{question}"),  # {max_sub_questions} missing
        ("condense", "{question}"),  # {history} missing
        ("critic", "{question} {contexts}"),  # {draft} missing
        ("summarize", "{question}"),  # unknown name
    ],
)
async def test_invalid_templates_are_refused(tmp_path: Path, name: str, template: str) -> None:
    with pytest.raises(InvalidArgument):
        await book(tmp_path).create_version("acme", name, template, "alice")


async def test_templates_have_a_size_cap(tmp_path: Path) -> None:
    padding = "x" * (MAX_TEMPLATE_CHARS - len("{question}{contexts}"))
    assert check_template("synthesize", "{question}{contexts}" + padding)
    with pytest.raises(InvalidArgument):
        await book(tmp_path).create_version("acme", "synthesize", "{question}{contexts}" + padding + "x", "a")


async def test_literal_braces_are_allowed_when_doubled(tmp_path: Path) -> None:
    v = await book(tmp_path).create_version(
        "acme", "synthesize", 'JSON like {{"a": 1}} {question} {contexts}', "a"
    )
    assert render(v.template, question="q", contexts="c").user == 'JSON like {"a": 1} q c'


async def test_split_validation(tmp_path: Path) -> None:
    b = book(tmp_path)
    await b.create_version("acme", "synthesize", SYNTH, "a")
    await b.create_version("acme", "synthesize", SYNTH + "!", "a")
    for bad in [{"v1": 50, "v2": 40}, {"v1": 60, "v2": 60}, {"v3": 100}, {"v1": 100, "v2": 0},
                {"v1": -10, "v2": 110}, {"1": 100}, {"v01": 100}, {"v1": True}]:  # fmt: skip
        with pytest.raises(InvalidArgument):
            await b.set_split("acme", "synthesize", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        await b.set_split("globex", "synthesize", {"v1": 100})  # acme's versions are not globex's
    assert (await b.get_split("acme", "synthesize")).percent == {}
    split = await b.set_split("acme", "synthesize", {"v2": 30, "v1": 70})
    assert split.percent == {"v1": 70, "v2": 30}
    assert (await b.get_split("acme", "synthesize")).percent == {"v1": 70, "v2": 30}


async def test_without_a_split_the_builtin_is_chosen(tmp_path: Path) -> None:
    b = book(tmp_path)
    for name in PROMPT_NAMES:
        choice = b.choose("acme", name, "q1")
        assert (choice.version, choice.template) == ("", builtin_templates()[name])
    await b.create_version("acme", "synthesize", SYNTH, "a")
    await b.set_split("acme", "synthesize", {"v1": 100})
    assert b.choose("acme", "synthesize", "q1").template == SYNTH
    await b.set_split("acme", "synthesize", {})  # back to the built-in
    assert b.choose("acme", "synthesize", "q1").version == ""
    assert b.choose("globex", "synthesize", "q1").version == ""  # another tenant's split is not ours


def test_builtin_templates_are_valid_and_synthesize_is_openai_compat_s_prompt() -> None:
    for name in PROMPT_NAMES:
        check_template(name, builtin_templates()[name])
    contexts = [
        Context(chunk_id="c1", document_id="d1", text=" Refunds take five days. "),
        Context(chunk_id="c2", document_id="d2", text="Gift cards {are} final."),
    ]
    rendered = render(
        builtin_templates()["synthesize"], question="How long?", contexts=contexts_block(contexts)
    )
    assert rendered.system == SYSTEM_PROMPT
    assert rendered.user == user_prompt("How long?", contexts)
    assert set(FIELDS) == set(PROMPT_NAMES)


async def test_choose_is_reproducible_and_follows_the_buckets(tmp_path: Path) -> None:
    b = book(tmp_path)
    await b.create_version("acme", "synthesize", SYNTH, "a")
    await b.create_version("acme", "synthesize", SYNTH + "!", "a")
    await b.set_split("acme", "synthesize", {"v1": 25, "v2": 75})
    for key in ["q-1", "q-2", "question-id-3f2a"]:
        chosen = b.choose("acme", "synthesize", key).version
        assert chosen == ("v1" if bucket(key) < 25 else "v2")
        # another process over the same file chooses the same
        assert book(tmp_path).choose("acme", "synthesize", key).version == chosen
    assert bucket("q-1") == int.from_bytes(hashlib.sha256(b"q-1").digest()[:8], "big") % 100


async def test_the_split_distribution_over_10k_keys(tmp_path: Path) -> None:
    b = book(tmp_path)
    for i in range(3):
        await b.create_version("acme", "synthesize", SYNTH + "!" * i, "a")
    percent = {"v1": 20, "v2": 30, "v3": 50}
    await b.set_split("acme", "synthesize", percent)
    n = 10_000
    counts = dict.fromkeys(percent, 0)
    for i in range(n):
        counts[b.choose("acme", "synthesize", f"question-{i}").version] += 1
    for version, share in percent.items():
        p = share / 100
        # each count is Binomial(n, p) under a uniform hash: 4.5 standard deviations bound a false
        # failure below 1e-5 per version
        tolerance = 4.5 * math.sqrt(n * p * (1 - p))
        assert abs(counts[version] - n * p) <= tolerance, (version, counts)


async def test_other_processes_splits_are_seen_after_the_refresh(tmp_path: Path) -> None:
    clock = Clock()
    reader = book(tmp_path, clock=clock, refresh_s=30.0)
    writer = book(tmp_path)
    assert reader.choose("acme", "synthesize", "k").version == ""
    await writer.create_version("acme", "synthesize", SYNTH, "a")
    await writer.set_split("acme", "synthesize", {"v1": 100})
    assert reader.choose("acme", "synthesize", "k").version == ""  # still cached
    clock.now += 30.0
    assert reader.choose("acme", "synthesize", "k").version == "v1"


async def test_bad_tenant_or_name_is_an_invalid_argument(tmp_path: Path) -> None:
    b = book(tmp_path)
    with pytest.raises(InvalidArgument):
        await b.list_versions("ACME", "synthesize")
    with pytest.raises(InvalidArgument):
        await b.list_versions("acme", "nope")
    with pytest.raises(InvalidArgument):
        b.choose("acme", "nope", "k")
    with pytest.raises(InvalidArgument):
        await b.create_version("acme", "synthesize", SYNTH, "")
