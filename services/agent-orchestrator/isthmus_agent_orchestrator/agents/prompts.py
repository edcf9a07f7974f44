"""Versioned prompt templates per tenant, with an A/B split by percentage.

Names: ``synthesize`` (the answer: fields ``{question}`` and ``{contexts}``), ``plan`` (``{question}``,
``{max_sub_questions}``), ``condense`` (``{history}``, ``{question}``) and ``critic`` (``{question}``,
``{draft}``, ``{contexts}``). A template must use every field its name needs and no other, each as a
bare ``{field}`` (no attribute, index, conversion or format spec: a template is data, never code); literal
braces are doubled. Checked with :class:`string.Formatter`; anything else is ``InvalidArgument``.

* Versions ``v1``, ``v2``… per (tenant, name) are assigned in order and never change (there is no update
  nor delete); each has the sha256 ``digest`` of its template. Creating a template identical to an
  existing version of the same name returns that version (a retried call creates nothing).
* The split: version → percent of requests, each 1-100, summing to 100, of existing versions; empty =
  the built-in template. ``choose`` puts a request in bucket ``sha256(key) mod 100`` (``key``: the question
  id), so a request's version is reproducible, and walks the versions in order (v1 takes the first
  buckets). Splits are cached in memory, refreshed on every write and re-read from the file every
  ``refresh_s`` (other processes sharing the file).
* Built-ins (version ``""``): ``synthesize`` is :mod:`isthmus_agent_orchestrator.openai_compat`'s own
  prompt (its ``SYSTEM_PROMPT`` and ``user_prompt``, whose version is ``openai_compat.PROMPT_VERSION``).

A rendered template is one text; a line ``=== user ===`` (:data:`USER_SEPARATOR`) splits it into a system
and a user message (:func:`render`); without it the whole text is the user message.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal, get_args

from isthmus_agent_orchestrator.agents.memory.conversations import SqliteFile
from isthmus_agent_orchestrator.agents.providers.answers import (
    SYSTEM_PROMPT,
    USER_SEPARATOR,
    escape_braces,
    user_prompt_parts,
)
from isthmus_agent_orchestrator.agents.types import PromptChoice
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import ConfigurationError, InvalidArgument, ResourceExhausted

PromptName = Literal["synthesize", "plan", "condense", "critic"]
PROMPT_NAMES: Final[tuple[str, ...]] = get_args(PromptName)

#: the fields each name's template must use (and the only ones it may use)
FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "synthesize": frozenset({"question", "contexts"}),
    "plan": frozenset({"question", "max_sub_questions"}),
    "condense": frozenset({"history", "question"}),
    "critic": frozenset({"question", "draft", "contexts"}),
}
MAX_TEMPLATE_CHARS: Final = 20_000
MAX_VERSIONS: Final = 1000
BUCKETS: Final = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompt_versions (
  tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, template TEXT NOT NULL,
  digest TEXT NOT NULL, created_by TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name, number));
CREATE TABLE IF NOT EXISTS prompt_splits (
  tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, percent INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name, number));
"""


@dataclass(frozen=True, slots=True)
class PromptVersion:
    tenant_id: str
    name: str
    version: str
    template: str
    created_by: str
    created_at_ms: int
    digest: str


@dataclass(frozen=True, slots=True)
class PromptSplit:
    tenant_id: str
    name: str
    #: version -> percent (sums to 100); empty = the built-in template
    percent: Mapping[str, int]


# ---- built-in templates --------------------------------------------------------------------------------


@cache
def builtin_templates() -> Mapping[str, str]:
    before, between, after = user_prompt_parts()
    synthesize = (
        escape_braces(SYSTEM_PROMPT)
        + USER_SEPARATOR
        + escape_braces(before)
        + "{contexts}"
        + escape_braces(between)
        + "{question}"
        + escape_braces(after)
    )
    return {
        "synthesize": synthesize,
        "plan": (
            "You split a user's question into the separate questions a search engine must answer to "
            "answer it. Return at most {max_sub_questions} short, self-contained questions; return the "
            "question itself alone when it asks one thing." + USER_SEPARATOR + "Question: {question}"
        ),
        "condense": (
            "You rewrite the user's last question so it can be understood without the conversation: "
            "replace pronouns and ellipses with what they refer to. Keep its meaning and language; "
            "return the question unchanged when it already stands alone."
            + USER_SEPARATOR
            + "Conversation:\n{history}\n\nLast question: {question}"
        ),
        "critic": (
            "You check whether a draft answer is supported by the numbered sources. Say whether every "
            "sentence is grounded in the sources and, when it is not, a better search query to find "
            "what is missing."
            + USER_SEPARATOR
            + "Sources:\n\n{contexts}\n\nQuestion: {question}\n\nDraft answer:\n{draft}"
        ),
    }


# ---- validation -------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if name not in FIELDS:
        raise InvalidArgument(f"unknown prompt name {name!r}: one of {', '.join(PROMPT_NAMES)}")
    return name


def check_template(name: str, template: str) -> str:
    """``template`` when it is a valid template of ``name`` (see the module docstring)."""
    if not template.strip():
        raise InvalidArgument("a prompt template must not be empty")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidArgument(f"a prompt template has at most {MAX_TEMPLATE_CHARS} characters")
    allowed = FIELDS[check_name(name)]
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidArgument(
            f"invalid prompt template: {exc} (write literal braces as '{{{{' and '}}}}')"
        ) from exc
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed:
            raise InvalidArgument(
                f"prompt template field {{{field}}} is not one of {name}'s: "
                + ", ".join(f"{{{f}}}" for f in sorted(allowed))
            )
        if spec or conversion:
            raise InvalidArgument(f"prompt template field {{{field}}} must be bare (no '!' nor ':')")
        used.add(field)
    missing = allowed - used
    if missing:
        raise InvalidArgument(
            f"a {name} prompt template must use " + ", ".join(f"{{{f}}}" for f in sorted(missing))
        )
    return template


def _parse_version(version: str) -> int:
    if not (version.startswith("v") and version[1:].isdigit() and not version[1:].startswith("0")):
        raise InvalidArgument(f"unknown prompt version {version!r}")
    return int(version[1:])


def bucket(key: str) -> int:
    """The A/B bucket (0-99) of ``key``: sha256, so a key always lands in the same one."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % BUCKETS


# ---- the book -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Split:
    #: (version, template, first bucket after it), in version order
    ranges: tuple[tuple[str, str, int], ...]
    loaded: float


class SqlitePromptBook:
    """:class:`~isthmus_agent_orchestrator.agents.types.PromptBook` over one SQLite file."""

    def __init__(
        self, path: Path, *, refresh_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if refresh_s <= 0:
            raise ConfigurationError("prompt book: refresh_s must be positive")
        self._db = SqliteFile(path, _SCHEMA, "prompt book")
        self._refresh_s = refresh_s
        self._clock = clock
        self._splits: dict[tuple[str, str], _Split] = {}
        self._lock = threading.Lock()

    # ---- the Protocol ---------------------------------------------------------------------------------

    def choose(self, tenant_id: str, name: str, key: str) -> PromptChoice:
        """The version for ``key`` by the tenant's split of ``name`` (the built-in when it has none)."""
        check_name(name)
        split = self._split(tenant_id, name)
        b = bucket(key)
        for version, template, end in split.ranges:
            if b < end:
                return PromptChoice(name, version, template)
        return PromptChoice(name, "", builtin_templates()[name])

    # ---- management (the edge's RPCs) -------------------------------------------------------------------

    async def create_version(
        self, tenant_id: str, name: str, template: str, created_by: str
    ) -> PromptVersion:
        tenant = parse_tenant_id(tenant_id)
        check_template(name, template)
        if not created_by:
            raise InvalidArgument("created_by is required")
        return await asyncio.to_thread(self._create, tenant, name, template, created_by)

    async def list_versions(self, tenant_id: str, name: str) -> list[PromptVersion]:
        tenant = parse_tenant_id(tenant_id)
        check_name(name)
        rows = await asyncio.to_thread(
            self._db.run,
            lambda conn: conn.execute(
                "SELECT number, template, created_by, created_at_ms, digest FROM prompt_versions "
                "WHERE tenant_id = ? AND name = ? ORDER BY number",
                (tenant, name),
            ).fetchall(),
        )
        return [PromptVersion(tenant, name, f"v{n}", t, by, at, d) for n, t, by, at, d in rows]

    async def get_split(self, tenant_id: str, name: str) -> PromptSplit:
        tenant = parse_tenant_id(tenant_id)
        check_name(name)
        rows = await asyncio.to_thread(self._db.run, lambda conn: _split_rows(conn, tenant, name))
        return PromptSplit(tenant, name, {f"v{n}": p for n, p, _ in rows})

    async def set_split(self, tenant_id: str, name: str, percent: Mapping[str, int]) -> PromptSplit:
        """Replace the split of ``name``: versions that exist, each 1-100 percent, summing to 100; empty =
        back to the built-in template."""
        tenant = parse_tenant_id(tenant_id)
        check_name(name)
        numbers: dict[int, int] = {}
        for version, share in percent.items():
            if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 100:
                raise InvalidArgument(f"the percent of {version!r} must be a whole number from 1 to 100")
            numbers[_parse_version(version)] = share
        if numbers and sum(numbers.values()) != 100:
            raise InvalidArgument(f"the percents of a split sum to 100, not {sum(numbers.values())}")

        def write(conn: sqlite3.Connection) -> None:
            for number in numbers:
                known = conn.execute(
                    "SELECT 1 FROM prompt_versions WHERE tenant_id = ? AND name = ? AND number = ?",
                    (tenant, name, number),
                ).fetchone()
                if known is None:
                    raise InvalidArgument(f"unknown prompt version 'v{number}' of {name}")
            conn.execute("DELETE FROM prompt_splits WHERE tenant_id = ? AND name = ?", (tenant, name))
            conn.executemany(
                "INSERT INTO prompt_splits VALUES (?, ?, ?, ?)",
                [(tenant, name, number, share) for number, share in sorted(numbers.items())],
            )

        await asyncio.to_thread(self._db.run, write)
        await asyncio.to_thread(self._load, tenant, name)  # this process sees its own write at once
        return PromptSplit(tenant, name, {f"v{n}": p for n, p in sorted(numbers.items())})

    def close(self) -> None:
        self._db.close()

    # ---- internals ----------------------------------------------------------------------------------------

    def _create(self, tenant: TenantId, name: str, template: str, created_by: str) -> PromptVersion:
        digest = hashlib.sha256(template.encode("utf-8")).hexdigest()

        def write(conn: sqlite3.Connection) -> PromptVersion:
            same = conn.execute(
                "SELECT number, created_by, created_at_ms FROM prompt_versions "
                "WHERE tenant_id = ? AND name = ? AND digest = ? AND template = ? ORDER BY number LIMIT 1",
                (tenant, name, digest, template),
            ).fetchone()
            if same is not None:
                return PromptVersion(tenant, name, f"v{same[0]}", template, same[1], same[2], digest)
            (count, last) = conn.execute(
                "SELECT COUNT(*), COALESCE(MAX(number), 0) FROM prompt_versions "
                "WHERE tenant_id = ? AND name = ?",
                (tenant, name),
            ).fetchone()
            if count >= MAX_VERSIONS:
                raise ResourceExhausted(f"a prompt has at most {MAX_VERSIONS} versions")
            at_ms = int(time.time() * 1000)
            conn.execute(
                "INSERT INTO prompt_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, name, last + 1, template, digest, created_by, at_ms),
            )
            return PromptVersion(tenant, name, f"v{last + 1}", template, created_by, at_ms, digest)

        return self._db.run(write)

    def _split(self, tenant: str, name: str) -> _Split:
        cached = self._splits.get((tenant, name))
        if cached is not None and self._clock() - cached.loaded < self._refresh_s:
            return cached
        return self._load(tenant, name)

    def _load(self, tenant: str, name: str) -> _Split:
        rows = self._db.run(lambda conn: _split_rows(conn, tenant, name))
        ranges: list[tuple[str, str, int]] = []
        end = 0
        for number, share, template in rows:
            end += share
            ranges.append((f"v{number}", template, end))
        split = _Split(tuple(ranges), self._clock())
        with self._lock:
            self._splits[(tenant, name)] = split
        return split


def _split_rows(conn: sqlite3.Connection, tenant: str, name: str) -> list[tuple[int, int, str]]:
    return [
        (int(n), int(p), str(t))
        for n, p, t in conn.execute(
            "SELECT s.number, s.percent, v.template FROM prompt_splits s JOIN prompt_versions v "
            "ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.number = s.number "
            "WHERE s.tenant_id = ? AND s.name = ? ORDER BY s.number",
            (tenant, name),
        ).fetchall()
    ]
