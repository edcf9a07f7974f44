"""The event bus port.

Semantics every adapter guarantees (checked by :mod:`isthmus_core.testing.bus_conformance`):

* **per-key ordering** — messages with the same key are handled in publish order within a group;
* **consumer groups** — each group sees every message; within a group each message goes to one member;
* **at-least-once** — a message is acknowledged (offset committed) only after its handler returned;
* **bounded retries with backoff** — a handler that raises is retried ``RetryPolicy.max_attempts`` times
  with exponential backoff, unless it raised a :class:`~isthmus_core.errors.PermanentError`;
* **dead-letter** — then the original value and headers go to ``<topic>.dlq`` with the error class, the
  error message, the source topic/partition/offset and the attempt count as headers, and the partition
  keeps flowing;
* **bounded memory** — a slow consumer never makes the bus hold an unbounded backlog in memory: the
  in-process bus holds ``publish`` back (bounded wait, then :class:`~isthmus_core.errors.Unavailable`),
  Kafka leaves the backlog on the broker and fetches bounded batches. Nothing is dropped either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from isthmus_core.contracts.topics import AnyTopic

# headers on a dead-lettered message
H_ERROR_CLASS = "isthmus-error-class"
H_ERROR_MESSAGE = "isthmus-error-message"
H_SOURCE_TOPIC = "isthmus-source-topic"
H_SOURCE_PARTITION = "isthmus-source-partition"
H_SOURCE_OFFSET = "isthmus-source-offset"
H_ATTEMPTS = "isthmus-attempts"
H_GROUP = "isthmus-consumer-group"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0
    attempt: int = 1
    #: when the bus appended it (ms since the epoch): the broker's time on topics with
    #: ``TopicSpec.broker_timestamps`` (Kafka ``LogAppendTime``), the producer's otherwise; None if unknown
    timestamp_ms: int | None = None


Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0


@dataclass(frozen=True, slots=True)
class Subscription:
    topic: str
    group: str
    handler: Handler
    retry: RetryPolicy = RetryPolicy()


@runtime_checkable
class EventBus(Protocol):
    """Publish bytes to topics; deliver them to subscribed handlers with the semantics above."""

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        """Create the topics (and their DLQs) if missing; idempotent."""

    def subscribe(self, subscription: Subscription) -> None:
        """Register a handler; must be called before :meth:`start`."""

    async def start(self) -> None: ...

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Durably append one message (returns once the bus has accepted it). May wait while the bus
        applies back-pressure; raises :class:`~isthmus_core.errors.Unavailable` if it cannot accept the
        message in bounded time."""

    async def stop(self) -> None:
        """Stop consuming, let in-flight handlers finish, flush producers."""
