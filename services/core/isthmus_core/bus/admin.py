"""Operations on the bus: consumer positions, and the dead letters of a topic with their replay.

:class:`BusAdmin` is the port (four operations an adapter does on its bus: the positions of consumer
groups, a scan of a topic, one message by position, an append that says where it went); its adapters are
:class:`isthmus_core.bus.inprocess.InProcessBusAdmin` and :class:`isthmus_core.bus.kafka_admin.KafkaBusAdmin`,
both checked by :mod:`isthmus_core.testing.bus_admin_conformance`. Everything else is decided once, here,
over the port: :class:`DeadLetters` lists and replays dead letters for ``OperationsService``
(:mod:`isthmus_core.grpc.operations`, served by the runtime of every process) and ``isthmus dlq``.

* A dead letter's **tenant** comes from its payload (``tenant_id`` of a JSON object), its
  ``isthmus-tenant`` header and its key (the part before the first ``/``): every one of them that is
  present must be a valid tenant id and they must agree, else the letter has no known tenant and only
  platform-wide callers see it (:func:`tenant_of`).
* A **replay** re-publishes the original value and headers (less the dead-letter headers) to the source
  topic with the same key, then records a :class:`~isthmus_core.contracts.events.DeadLetterReplayed`
  event on :data:`~isthmus_core.contracts.topics.DEAD_LETTERS_REPLAYED`; a dead letter with such a
  record is not replayed again (:class:`~isthmus_core.errors.FailedPrecondition`). Replays in one process
  are serialised; two processes replaying the same letter at the same instant may both publish it
  (at-least-once: events carry their idempotency key).
"""

from __future__ import annotations

import asyncio
import codecs
import heapq
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog
from pydantic import ValidationError

from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    Message,
)
from isthmus_core.bus.typed import CONTENT_TYPE_JSON, H_CONTENT_TYPE, H_EVENT_TYPE, H_TENANT
from isthmus_core.contracts.events import DeadLetterReplayed
from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.contracts.topics import ALL_TOPICS, DEAD_LETTERS_REPLAYED, DLQ_SUFFIX, AnyTopic
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound

_log = structlog.get_logger(__name__)

#: the headers a dead letter carries on top of the original ones (dropped by a replay)
DEAD_LETTER_HEADERS = (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_SOURCE_TOPIC,
    H_SOURCE_PARTITION,
    H_SOURCE_OFFSET,
    H_ATTEMPTS,
    H_GROUP,
)
#: the payload preview of a listed dead letter: at most this many bytes of its value, as UTF-8 text
PREVIEW_BYTES = 4096
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ConsumerPosition:
    """Where a consumer group stands on one partition of a topic."""

    topic: str
    group: str
    partition: int
    #: the next offset the group handles (its committed offset, else the partition's first offset)
    position: int
    #: the offset the next message appended to the partition gets
    end: int
    #: False: the group has committed nothing on this partition (``position`` is its first offset)
    committed: bool = True

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@runtime_checkable
class BusAdmin(Protocol):
    """What :class:`DeadLetters` and ``ListConsumers`` need of a bus (semantics in the module docstring
    and :mod:`isthmus_core.testing.bus_admin_conformance`)."""

    #: ``"inprocess"`` or ``"kafka"``
    kind: str

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        """Create the topics (and their DLQs) if missing; idempotent."""

    async def consumer_positions(self, subscriptions: Sequence[tuple[str, str]]) -> list[ConsumerPosition]:
        """For each ``(topic, group)``: one entry per partition of the topic (none if it does not exist)."""

    def scan(self, topic: str) -> AsyncIterator[Message]:
        """Every message ``topic`` holds up to its end as the scan starts, partition by partition in
        offset order; nothing if the topic does not exist."""

    async def fetch(self, topic: str, partition: int, offset: int) -> Message | None:
        """The message at that position; None if the topic holds none there."""

    async def append(self, topic: str, key: str, value: bytes, headers: dict[str, str]) -> Position:
        """Publish one message (like :meth:`EventBus.publish`) and say where it went."""


# ---------------------------------------------------------------------------------------------- pure


def resolve_topic(name: str) -> AnyTopic:
    """The registry topic ``name`` names (``isthmus.`` prefix and ``.dlq`` suffix optional), or
    :class:`InvalidArgument` listing the known names."""
    base = name.strip().removesuffix(DLQ_SUFFIX)
    wanted = base if base.startswith("isthmus.") else f"isthmus.{base}"
    for spec in ALL_TOPICS:
        if spec.name == wanted:
            return spec
    known = ", ".join(t.name for t in ALL_TOPICS)
    shown = name if len(name) <= 200 else name[:197] + "..."
    raise InvalidArgument(f"unknown topic {shown!r}; known topics: {known}")


def tenant_of(message: Message) -> str:
    """The tenant a dead letter belongs to, "" if none is known (see the module docstring)."""
    found: list[str] = []
    if message.value[:1] == b"{":
        try:
            payload = json.loads(message.value)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict) and "tenant_id" in payload:
            found.append(payload["tenant_id"] if isinstance(payload["tenant_id"], str) else "\0")
    if H_TENANT in message.headers:
        found.append(message.headers[H_TENANT])
    if message.key:
        found.append(message.key.split("/", 1)[0])
    found = [t for t in found if t != ""]
    if not found or len(set(found)) != 1 or not is_tenant_id(found[0]):
        return ""
    return found[0]


def preview(value: bytes, limit: int = PREVIEW_BYTES) -> tuple[str, bool]:
    """The start of ``value`` as text (at most ``limit`` bytes, no character cut in two) and whether it
    was cut."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    cut = len(value) > limit
    return decoder.decode(value[:limit], final=not cut), cut


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Replay:
    """Where a dead letter was replayed to, by whom and when."""

    to: Position
    replayed_by: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter as listed (its value reduced to a size and a preview)."""

    at: Position
    key: str
    tenant_id: str
    error_class: str
    error_message: str
    attempts: int
    group: str
    source: Position
    timestamp_ms: int | None
    payload_size: int
    payload_preview: str
    payload_truncated: bool
    replay: Replay | None = None


def view(message: Message, replay: Replay | None = None) -> DeadLetterView:
    h = message.headers
    text, cut = preview(message.value)
    return DeadLetterView(
        at=Position(message.topic, message.partition, message.offset),
        key=message.key,
        tenant_id=tenant_of(message),
        error_class=h.get(H_ERROR_CLASS, ""),
        error_message=h.get(H_ERROR_MESSAGE, ""),
        attempts=_int(h.get(H_ATTEMPTS), 0),
        group=h.get(H_GROUP, ""),
        source=Position(
            h.get(H_SOURCE_TOPIC, message.topic.removesuffix(DLQ_SUFFIX)),
            _int(h.get(H_SOURCE_PARTITION), -1),
            _int(h.get(H_SOURCE_OFFSET), -1),
        ),
        timestamp_ms=message.timestamp_ms,
        payload_size=len(message.value),
        payload_preview=text,
        payload_truncated=cut,
        replay=replay,
    )


def check_limit(limit: int) -> int:
    if limit < 0 or limit > MAX_LIMIT:
        raise InvalidArgument(f"limit must be 0 (= {DEFAULT_LIMIT}) to {MAX_LIMIT}, got {limit}")
    return limit or DEFAULT_LIMIT


def check_position(partition: int, offset: int) -> None:
    if partition < 0 or offset < 0:
        raise InvalidArgument(f"partition and offset must be >= 0, got partition={partition} offset={offset}")


@dataclass(frozen=True, slots=True)
class Listing:
    """The newest dead letters of ``topic`` that matched (``total`` of them matched in all)."""

    topic: str
    total: int
    dead_letters: list[DeadLetterView]


# -------------------------------------------------------------------------------------------- service


@dataclass
class DeadLetters:
    """List and replay dead letters over a :class:`BusAdmin` (see the module docstring).

    Topics are dead-letter topic names (``<source>.dlq``); callers resolve what users typed first
    (:func:`resolve_topic` for the registry; the CLI also admits mirrored copies)."""

    admin: BusAdmin
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ensured: bool = False

    async def replays(self, dlq: str) -> dict[tuple[int, int], Replay]:
        """The recorded replays of ``dlq``'s letters, by (partition, offset) (the first one of each)."""
        out: dict[tuple[int, int], Replay] = {}
        async for m in self.admin.scan(DEAD_LETTERS_REPLAYED.name):
            try:
                ev = DeadLetterReplayed.model_validate_json(m.value)
            except ValidationError:
                _log.warning("bus.replay_record_unreadable", partition=m.partition, offset=m.offset)
                continue
            if ev.dead_letter_topic == dlq:
                out.setdefault(
                    (ev.dead_letter_partition, ev.dead_letter_offset),
                    Replay(
                        Position(ev.topic, ev.partition, ev.offset),
                        ev.replayed_by,
                        int(ev.occurred_at.timestamp() * 1000),
                    ),
                )
        return out

    async def listing(self, dlq: str, *, limit: int | None = DEFAULT_LIMIT, tenant: str = "") -> Listing:
        """The newest ``limit`` dead letters of ``dlq`` (of ``tenant``; "" = every one), newest first;
        ``limit`` None: every one (the CLI; the RPC is bounded by :data:`MAX_LIMIT`)."""
        bound = check_limit(limit) if limit is not None else None
        replays = await self.replays(dlq)
        newest: list[tuple[int, int, int, DeadLetterView]] = []  # a min-heap of the newest `limit`
        total = 0
        async for m in self.admin.scan(dlq):
            letter_tenant = tenant_of(m)
            if tenant and letter_tenant != tenant:
                continue
            total += 1
            rank = (m.timestamp_ms or 0, m.offset, m.partition)
            if bound is not None and len(newest) >= bound and rank <= newest[0][:3]:
                continue
            item = (*rank, view(m, replays.get((m.partition, m.offset))))
            if bound is None or len(newest) < bound:
                heapq.heappush(newest, item)
            else:
                heapq.heapreplace(newest, item)
        ordered = [item[3] for item in sorted(newest, key=lambda i: i[:3], reverse=True)]
        return Listing(dlq, total, ordered)

    async def replay(
        self, dlq: str, partition: int, offset: int, *, tenant: str = "", by: str = ""
    ) -> DeadLetterView:
        """Re-publish the dead letter at ``partition``/``offset`` of ``dlq`` to its source topic and record
        it. :class:`NotFound` if ``dlq`` holds no letter there (or none of ``tenant``'s, when given);
        :class:`FailedPrecondition` if it was replayed already."""
        check_position(partition, offset)
        async with self._lock:
            letter = await self.admin.fetch(dlq, partition, offset)
            if letter is None or (tenant and tenant_of(letter) != tenant):
                whose = f" of tenant {tenant!r}" if tenant else ""
                raise NotFound(f"no dead letter{whose} at partition {partition}, offset {offset} of {dlq}")
            done = (await self.replays(dlq)).get((partition, offset))
            if done is not None:
                raise FailedPrecondition(
                    f"the dead letter at partition {partition}, offset {offset} of {dlq} was replayed "
                    f"already, to {done.to.topic} partition {done.to.partition} offset {done.to.offset}"
                    f"{' by ' + done.replayed_by if done.replayed_by else ''}; it is not replayed twice"
                )
            replay = await self._republish(dlq, letter, by)
        return view(letter, replay)

    async def replay_pending(self, dlq: str, *, key_prefix: str = "", by: str = "") -> list[DeadLetterView]:
        """Replay every dead letter of ``dlq`` not replayed yet (whose key starts with ``key_prefix``), in
        offset order per partition (``isthmus dlq replay``); returns them, marked replayed."""
        async with self._lock:
            done = await self.replays(dlq)
            pending = [
                m
                async for m in self.admin.scan(dlq)
                if (m.partition, m.offset) not in done and m.key.startswith(key_prefix)
            ]
            return [view(m, await self._republish(dlq, m, by)) for m in pending]

    async def _republish(self, dlq: str, letter: Message, by: str) -> Replay:
        """Publish ``letter``'s original to its source topic and record the replay (under the lock)."""
        if not self._ensured:
            await self.admin.ensure_topics([DEAD_LETTERS_REPLAYED])
            self._ensured = True
        source = dlq.removesuffix(DLQ_SUFFIX)
        headers = {k: v for k, v in letter.headers.items() if k not in DEAD_LETTER_HEADERS}
        to = await self.admin.append(source, letter.key, letter.value, headers)
        record = DeadLetterReplayed(
            tenant_id=tenant_of(letter),
            idempotency_key=f"{dlq}/{letter.partition}/{letter.offset}",
            dead_letter_topic=dlq,
            dead_letter_partition=letter.partition,
            dead_letter_offset=letter.offset,
            topic=to.topic,
            partition=to.partition,
            offset=to.offset,
            replayed_by=by[:512],
        )
        await self.admin.append(
            DEAD_LETTERS_REPLAYED.name,
            record.tenant_id,
            record.model_dump_json().encode("utf-8"),
            {
                H_CONTENT_TYPE: CONTENT_TYPE_JSON,
                H_EVENT_TYPE: type(record).__name__,
                H_TENANT: record.tenant_id,
            },
        )
        _log.info(
            "bus.dead_letter_replayed",
            dead_letter_topic=dlq,
            partition=letter.partition,
            offset=letter.offset,
            to_topic=to.topic,
            to_partition=to.partition,
            to_offset=to.offset,
            replayed_by=by,
        )
        return Replay(to, by, int(record.occurred_at.timestamp() * 1000))
