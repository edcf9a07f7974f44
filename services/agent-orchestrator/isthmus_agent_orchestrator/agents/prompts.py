"""Versioned prompt templates per tenant, with an A/B split by percentage.

Names: ``synthesize`` (the answer: fields ``{question}`` and ``{contexts}``), ``plan`` (``{question}``,
``{max_sub_questions}``), ``condense`` (``{history}``, ``{question}``) and ``critic`` (``{question}``,
``{draft}``, ``{contexts}``). A template must use every field its name needs and no other, each as a
bare ``{field}`` (no attribute, index, conversion or format spec: a template is data, never code); literal
braces are doubled. Checked with :class:`string.Formatter`; anything else is ``InvalidArgument``.

* Versions ``v1``, ``v2``… per (tenant, name) are assigned in order and never change (there is no update
  nor delete; only a race between replicas renumbers one, see below); each has the sha256 ``digest`` of
  its template. Creating a template identical to an existing version of the same name returns that
  version (a retried call creates nothing).
* The split: version → percent of requests, each 1-100, summing to 100, of existing versions; empty =
  the built-in template. ``choose`` puts a request in bucket ``sha256(key) mod 100`` (``key``: the question
  id), so a request's version is reproducible, and walks the versions in order (v1 takes the first
  buckets). Splits are cached in memory, refreshed on every write and every applied event, and re-read
  from the file every ``refresh_s`` (other processes sharing the file).
* Built-ins (version ``""``): ``synthesize`` is :mod:`isthmus_agent_orchestrator.openai_compat`'s own
  prompt (its ``SYSTEM_PROMPT`` and ``user_prompt``, whose version is ``openai_compat.PROMPT_VERSION``).

Replicas (the chart's Distributed mode runs several, each with its own file). Every write is an event on
the bus — ``PromptVersionCreated`` on ``isthmus.prompts.created.v1``, ``PromptSplitSet`` on
``isthmus.prompts.split.v1`` — published before the local write (a failed publish changes nothing), and
every replica applies every event to its own file (:meth:`SqlitePromptBook.subscriptions`: a consumer
group of its own, which starts at the oldest retained event, so a new replica rebuilds the whole view).

* **Version numbers follow the log.** The creating replica answers at once with the next number it
  knows of and stores the version *provisionally*. The number every replica keeps is derived when the
  event is applied, in the topic's order (one partition: every replica reads the same order): an event
  whose template a kept version of that name already has is a duplicate (the first one in the log keeps
  its number, author and time); any other takes the highest kept number + 1. A provisional version takes
  its kept number when its event is applied (and a provisional version in the way moves up). So two
  replicas creating ``v3`` of one prompt at the same moment both answer ``v3``; the template whose
  event comes first in the log stays ``v3`` everywhere and the other becomes ``v4`` everywhere, the
  creating replica included (a warning ``prompt version renumbered`` says so). Replaying events changes
  nothing.
* **Splits name templates.** A split event carries each version's digest and is stored by digest, so it
  follows a renumbered template and may arrive before its versions (their share of the buckets takes the
  built-in until they do). The latest split wins: the one with the latest ``occurred_at`` (then the
  higher event id), whatever the order it is heard in, so a replayed older split changes nothing. A
  split set here is stamped at least 1 ms after the split this replica applied last, so a replica whose
  clock runs behind still overrides the splits it has heard of, and two splits set in one millisecond
  keep their order.
* Versions and splits stored before they were published (an older release) stay local to their replica.
* A tenant's prompts stay in its region: the topics are not mirrored between regions.

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
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final, Literal, get_args

import structlog
from pydantic import ValidationError

from isthmus_agent_orchestrator.agents.providers.answers import (
    SYSTEM_PROMPT,
    USER_SEPARATOR,
    escape_braces,
    user_prompt_parts,
)
from isthmus_agent_orchestrator.agents.types import PromptChoice
from isthmus_core.bus.port import Subscription
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import PromptSplitSet, PromptVersionCreated
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import ConfigurationError, InvalidArgument, ResourceExhausted
from isthmus_core.sqlite import SqliteFile

log = structlog.get_logger("isthmus.agents.prompts")

PublishCreated = Callable[[PromptVersionCreated], Awaitable[None]]
PublishSplit = Callable[[PromptSplitSet], Awaitable[None]]

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

# ``confirmed``: 1 once the version's event was applied (its number is the log's), 0 while provisional.
# A split row: ``number`` is the version as the split named it, ``digest`` the template it names.
# ``prompt_split_stamps``: the (occurred_at ms, event id) of the split applied last, per prompt.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompt_versions (
  tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, template TEXT NOT NULL,
  digest TEXT NOT NULL, created_by TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name, number));
CREATE TABLE IF NOT EXISTS prompt_splits (
  tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, percent INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, name, number));
CREATE TABLE IF NOT EXISTS prompt_split_stamps (
  tenant_id TEXT NOT NULL, name TEXT NOT NULL, at_ms INTEGER NOT NULL, event_id TEXT NOT NULL,
  PRIMARY KEY (tenant_id, name));
"""
#: columns added since the first release (added to older files when they are opened)
_ADDED_COLUMNS: Final = (
    ("prompt_versions", "confirmed", "INTEGER NOT NULL DEFAULT 1"),
    ("prompt_splits", "digest", "TEXT NOT NULL DEFAULT ''"),
)


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


def prompt_topics() -> list[AnyTopic]:
    """The topics the book publishes and consumes, for ``Offer.topics`` (never mirrored between regions)."""
    return [topics.PROMPTS_CREATED, topics.PROMPTS_SPLIT]


def digest_of(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def _at_ms(ev: PromptSplitSet) -> int:
    return (ev.occurred_at - _EPOCH) // _MS


@dataclass(frozen=True, slots=True)
class _Split:
    #: (version, template or None while the version is unknown here, first bucket after it), in order
    ranges: tuple[tuple[str, str | None, int], ...]
    loaded: float


class SqlitePromptBook:
    """:class:`~isthmus_agent_orchestrator.agents.types.PromptBook` over one SQLite file: this replica's
    view, kept in step with the other replicas' over the bus (see the module docstring).

    ``publish_created``/``publish_split``: typed bus publishers of the two topics (None: nothing published,
    a single process; its writes are then final at once)."""

    def __init__(
        self,
        path: Path,
        *,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        publish_created: PublishCreated | None = None,
        publish_split: PublishSplit | None = None,
    ) -> None:
        if refresh_s <= 0:
            raise ConfigurationError("prompt book: refresh_s must be positive")
        self._db = SqliteFile(path, _SCHEMA, "prompt book")
        self._db.run(_migrate)
        self._refresh_s = refresh_s
        self._clock = clock
        self._publish_created = publish_created
        self._publish_split = publish_split
        self._splits: dict[tuple[str, str], _Split] = {}
        self._lock = threading.Lock()
        #: one create or split at a time in this replica (the number it assigns is the next it knows of)
        self._writing = asyncio.Lock()

    # ---- the Protocol ---------------------------------------------------------------------------------

    def choose(self, tenant_id: str, name: str, key: str) -> PromptChoice:
        """The version for ``key`` by the tenant's split of ``name`` (the built-in when it has none)."""
        check_name(name)
        split = self._split(tenant_id, name)
        b = bucket(key)
        for version, template, end in split.ranges:
            if b < end:
                if template is None:  # a version this replica has not heard of yet
                    break
                return PromptChoice(name, version, template)
        return PromptChoice(name, "", builtin_templates()[name])

    # ---- management (the edge's RPCs) -------------------------------------------------------------------

    async def create_version(
        self, tenant_id: str, name: str, template: str, created_by: str
    ) -> PromptVersion:
        """Create (or find) the version of ``template``: published first, then stored here (provisionally
        when published: its number is final once its event is applied, see the module docstring)."""
        tenant = parse_tenant_id(tenant_id)
        check_template(name, template)
        if not created_by:
            raise InvalidArgument("created_by is required")
        digest = digest_of(template)
        async with self._writing:
            found, number = await asyncio.to_thread(
                self._db.run, lambda conn: _existing_or_next(conn, tenant, name, template, digest)
            )
            if found is not None:
                return found
            try:
                ev = PromptVersionCreated(
                    tenant_id=tenant,
                    idempotency_key=f"prompt-created:{name}:{digest}",
                    name=name,
                    version=f"v{number}",
                    template=template,
                    digest=digest,
                    created_by=created_by,
                    created_at_ms=int(time.time() * 1000),
                )
            except ValidationError as exc:
                raise InvalidArgument(f"cannot create a prompt version: {exc.errors()[0]['msg']}") from None
            if self._publish_created is None:
                await asyncio.to_thread(self.apply_created, ev)
            else:
                # published first: a failed publish leaves nothing behind, and a retry creates it again
                await self._publish_created(ev)
            version = await asyncio.to_thread(self._db.run, lambda conn: _provisional(conn, ev))
        await asyncio.to_thread(self._load, tenant, name)
        log.info("prompt version created", tenant=tenant, prompt=name, version=version.version, by=created_by)
        return version

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
        back to the built-in template. Published first, then applied here."""
        tenant = parse_tenant_id(tenant_id)
        check_name(name)
        numbers: dict[int, int] = {}
        for version, share in percent.items():
            if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 100:
                raise InvalidArgument(f"the percent of {version!r} must be a whole number from 1 to 100")
            numbers[_parse_version(version)] = share
        if numbers and sum(numbers.values()) != 100:
            raise InvalidArgument(f"the percents of a split sum to 100, not {sum(numbers.values())}")

        def digests(conn: sqlite3.Connection) -> tuple[dict[int, str], int]:
            """The digest of each version, and the time of the split applied last (ms, 0 if none)."""
            last = conn.execute(
                "SELECT at_ms FROM prompt_split_stamps WHERE tenant_id = ? AND name = ?", (tenant, name)
            ).fetchone()
            found: dict[int, str] = {}
            for number in numbers:
                row = conn.execute(
                    "SELECT digest FROM prompt_versions WHERE tenant_id = ? AND name = ? AND number = ?",
                    (tenant, name, number),
                ).fetchone()
                if row is None:
                    raise InvalidArgument(f"unknown prompt version 'v{number}' of {name}")
                found[number] = str(row[0])
            return found, 0 if last is None else int(last[0])

        async with self._writing:
            by_number, last_ms = await asyncio.to_thread(self._db.run, digests)
            # stamped after the split applied last here (even within one millisecond, or should this
            # replica's clock run behind the one that set it): the newest split set here wins
            at_ms = max(int(time.time() * 1000), last_ms + 1)
            ev = PromptSplitSet(
                tenant_id=tenant,
                occurred_at=_EPOCH + at_ms * _MS,
                idempotency_key=f"prompt-split:{name}:{uuid.uuid4().hex}",
                name=name,
                percent={f"v{n}": p for n, p in sorted(numbers.items())},
                digests={f"v{n}": d for n, d in sorted(by_number.items())},
            )
            # published first: a failed publish changes nothing (the caller may retry)
            if self._publish_split is not None:
                await self._publish_split(ev)
            await asyncio.to_thread(self.apply_split, ev)  # this process sees its own write at once
        log.info("prompt split set", tenant=tenant, prompt=name, percent=dict(ev.percent))
        return PromptSplit(tenant, name, dict(ev.percent))

    def close(self) -> None:
        self._db.close()

    # ---- the bus ------------------------------------------------------------------------------------------

    def apply_created(self, ev: PromptVersionCreated) -> bool:
        """Apply a version heard on the bus (or written here without a bus): keep it under the next number
        of the log's order; False when it changes nothing (a duplicate, a replay, an invalid event)."""
        try:
            check_template(ev.name, ev.template)
            parse_tenant_id(ev.tenant_id)
        except InvalidArgument as exc:
            log.warning("prompt version event ignored", event_id=ev.event_id, reason=str(exc))
            return False
        if digest_of(ev.template) != ev.digest:
            log.warning("prompt version event ignored", event_id=ev.event_id, reason="digest mismatch")
            return False
        number = self._db.run(lambda conn: _confirm(conn, ev))
        if number is None:
            return False
        if f"v{number}" != ev.version:
            log.warning(
                "prompt version renumbered",
                tenant=ev.tenant_id,
                prompt=ev.name,
                announced=ev.version,
                version=f"v{number}",
                reason="another replica's version of this prompt came first in the log",
            )
        self._load(ev.tenant_id, ev.name)
        return True

    def apply_split(self, ev: PromptSplitSet) -> bool:
        """Apply a split heard on the bus (or set here): the latest by (occurred_at, event id) wins; False
        when it changes nothing (an older or replayed split, an invalid event)."""
        try:
            check_name(ev.name)
            parse_tenant_id(ev.tenant_id)
            if set(ev.percent) != set(ev.digests):
                raise InvalidArgument("a split names the digest of each of its versions")
            if ev.percent and sum(ev.percent.values()) != 100:
                raise InvalidArgument("the percents of a split sum to 100")
        except InvalidArgument as exc:
            log.warning("prompt split event ignored", event_id=ev.event_id, reason=str(exc))
            return False
        stamp = (_at_ms(ev), ev.event_id)

        def write(conn: sqlite3.Connection) -> bool:
            last = conn.execute(
                "SELECT at_ms, event_id FROM prompt_split_stamps WHERE tenant_id = ? AND name = ?",
                (ev.tenant_id, ev.name),
            ).fetchone()
            if last is not None and (int(last[0]), str(last[1])) >= stamp:
                return False
            conn.execute(
                "INSERT INTO prompt_split_stamps VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, name) "
                "DO UPDATE SET at_ms = excluded.at_ms, event_id = excluded.event_id",
                (ev.tenant_id, ev.name, *stamp),
            )
            conn.execute(
                "DELETE FROM prompt_splits WHERE tenant_id = ? AND name = ?", (ev.tenant_id, ev.name)
            )
            conn.executemany(
                "INSERT INTO prompt_splits (tenant_id, name, number, percent, digest) VALUES (?, ?, ?, ?, ?)",
                [
                    (ev.tenant_id, ev.name, _parse_version(v), share, ev.digests[v])
                    for v, share in ev.percent.items()
                ],
            )
            return True

        applied = self._db.run(write)
        self._load(ev.tenant_id, ev.name)
        return applied

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """This replica's subscriptions to both topics, in a consumer group of its own so that every replica
        hears every event (from the oldest retained: a new replica rebuilds its view). ``peers`` adds
        nothing: a tenant's prompts stay in its region, and version numbers follow one log's order."""
        del peers
        group = f"{module}-prompts-{uuid.uuid4().hex[:12]}"

        async def created(ev: PromptVersionCreated) -> None:
            await asyncio.to_thread(self.apply_created, ev)

        async def split(ev: PromptSplitSet) -> None:
            await asyncio.to_thread(self.apply_split, ev)

        return [
            subscribe(topics.PROMPTS_CREATED, group, created),
            subscribe(topics.PROMPTS_SPLIT, group, split),
        ]

    # ---- internals ----------------------------------------------------------------------------------------

    def _split(self, tenant: str, name: str) -> _Split:
        cached = self._splits.get((tenant, name))
        if cached is not None and self._clock() - cached.loaded < self._refresh_s:
            return cached
        return self._load(tenant, name)

    def _load(self, tenant: str, name: str) -> _Split:
        rows = self._db.run(lambda conn: _split_rows(conn, tenant, name))
        ranges: list[tuple[str, str | None, int]] = []
        end = 0
        for number, share, template in rows:
            end += share
            ranges.append((f"v{number}", template, end))
        split = _Split(tuple(ranges), self._clock())
        with self._lock:
            self._splits[(tenant, name)] = split
        return split


# ---- SQL ------------------------------------------------------------------------------------------------


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a file of an older release lacks (its versions count as confirmed; its splits get
    their versions' digests)."""
    for table, column, decl in _ADDED_COLUMNS:
        columns = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    conn.execute(
        "UPDATE prompt_splits SET digest = COALESCE((SELECT v.digest FROM prompt_versions v WHERE "
        "v.tenant_id = prompt_splits.tenant_id AND v.name = prompt_splits.name AND "
        "v.number = prompt_splits.number), '') WHERE digest = ''"
    )


def _row(
    conn: sqlite3.Connection, tenant: str, name: str, template: str, digest: str
) -> tuple[int, ...] | None:
    """(number, confirmed) of the version of ``template`` (kept or provisional), if there is one."""
    found = conn.execute(
        "SELECT number, confirmed FROM prompt_versions "
        "WHERE tenant_id = ? AND name = ? AND digest = ? AND template = ? ORDER BY number LIMIT 1",
        (tenant, name, digest, template),
    ).fetchone()
    return (int(found[0]), int(found[1])) if found is not None else None


def _version(conn: sqlite3.Connection, tenant: str, name: str, number: int) -> PromptVersion:
    t, by, at, d = conn.execute(
        "SELECT template, created_by, created_at_ms, digest FROM prompt_versions "
        "WHERE tenant_id = ? AND name = ? AND number = ?",
        (tenant, name, number),
    ).fetchone()
    return PromptVersion(tenant, name, f"v{number}", t, by, int(at), d)


def _highest(conn: sqlite3.Connection, tenant: str, name: str, *, confirmed_only: bool) -> int:
    where = " AND confirmed = 1" if confirmed_only else ""
    return int(
        conn.execute(
            f"SELECT COALESCE(MAX(number), 0) FROM prompt_versions WHERE tenant_id = ? AND name = ?{where}",
            (tenant, name),
        ).fetchone()[0]
    )


def _existing_or_next(
    conn: sqlite3.Connection, tenant: str, name: str, template: str, digest: str
) -> tuple[PromptVersion | None, int]:
    """The version of ``template`` if there is one, else the number a new one gets here."""
    found = _row(conn, tenant, name, template, digest)
    if found is not None:
        return _version(conn, tenant, name, found[0]), 0
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM prompt_versions WHERE tenant_id = ? AND name = ?", (tenant, name)
    ).fetchone()
    if count >= MAX_VERSIONS:
        raise ResourceExhausted(f"a prompt has at most {MAX_VERSIONS} versions")
    return None, _highest(conn, tenant, name, confirmed_only=False) + 1


def _provisional(conn: sqlite3.Connection, ev: PromptVersionCreated) -> PromptVersion:
    """Store the version just published, unconfirmed, under its announced number (or the next free one,
    should a version heard meanwhile hold it); if its event was applied already, that version."""
    found = _row(conn, ev.tenant_id, ev.name, ev.template, ev.digest)
    if found is None:
        number = _parse_version(ev.version)
        taken = conn.execute(
            "SELECT 1 FROM prompt_versions WHERE tenant_id = ? AND name = ? AND number = ?",
            (ev.tenant_id, ev.name, number),
        ).fetchone()
        if taken is not None:
            number = _highest(conn, ev.tenant_id, ev.name, confirmed_only=False) + 1
        conn.execute(
            "INSERT INTO prompt_versions (tenant_id, name, number, template, digest, created_by, "
            "created_at_ms, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            (ev.tenant_id, ev.name, number, ev.template, ev.digest, ev.created_by, ev.created_at_ms),
        )
        return _version(conn, ev.tenant_id, ev.name, number)
    return _version(conn, ev.tenant_id, ev.name, found[0])


def _confirm(conn: sqlite3.Connection, ev: PromptVersionCreated) -> int | None:
    """Keep ``ev``'s version under the highest kept number + 1 (the log's order); None when a kept version
    has its template already (a duplicate or a replay) or the prompt has its most versions."""
    tenant, name = ev.tenant_id, ev.name
    found = _row(conn, tenant, name, ev.template, ev.digest)
    if found is not None and found[1] == 1:
        return None
    (kept,) = conn.execute(
        "SELECT COUNT(*) FROM prompt_versions WHERE tenant_id = ? AND name = ? AND confirmed = 1",
        (tenant, name),
    ).fetchone()
    if kept >= MAX_VERSIONS:
        log.warning("prompt version event ignored", event_id=ev.event_id, reason="too many versions")
        if found is not None:
            conn.execute(
                "DELETE FROM prompt_versions WHERE tenant_id = ? AND name = ? AND number = ?",
                (tenant, name, found[0]),
            )
        return None
    number = _highest(conn, tenant, name, confirmed_only=True) + 1
    if found is None or found[0] != number:
        # a provisional version holding the number moves up (its own event gives its final number)
        conn.execute(
            "UPDATE prompt_versions SET number = ? WHERE tenant_id = ? AND name = ? AND number = ?",
            (_highest(conn, tenant, name, confirmed_only=False) + 1, tenant, name, number),
        )
    if found is None:
        conn.execute(
            "INSERT INTO prompt_versions (tenant_id, name, number, template, digest, created_by, "
            "created_at_ms, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            (tenant, name, number, ev.template, ev.digest, ev.created_by, ev.created_at_ms),
        )
    else:
        # the first event in the log names the author and the time, wherever the version was created
        conn.execute(
            "UPDATE prompt_versions SET number = ?, confirmed = 1, created_by = ?, created_at_ms = ? "
            "WHERE tenant_id = ? AND name = ? AND number = ?",
            (number, ev.created_by, ev.created_at_ms, tenant, name, found[0]),
        )
    return number


def _split_rows(conn: sqlite3.Connection, tenant: str, name: str) -> list[tuple[int, int, str | None]]:
    """(number, percent, template) of the split's versions in version order; a version not heard of yet
    has its number as the split named it and no template."""
    return [
        (int(n), int(p), None if t is None else str(t))
        for n, p, t in conn.execute(
            "SELECT COALESCE(v.number, s.number) AS n, s.percent, v.template FROM prompt_splits s "
            "LEFT JOIN prompt_versions v "
            "ON v.tenant_id = s.tenant_id AND v.name = s.name AND v.digest = s.digest "
            "WHERE s.tenant_id = ? AND s.name = ? ORDER BY n",
            (tenant, name),
        ).fetchall()
    ]
