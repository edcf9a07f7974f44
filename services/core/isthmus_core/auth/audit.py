"""The audit sink of a process: audit records onto the audit topic, never in the way of a call.

:class:`BusAuditSink` implements :class:`~isthmus_core.auth.stack.AuditSink`. ``record`` is called from
the auth interceptor and from modules (erasures) on the request path, so it neither blocks nor raises:
it stamps the record with the process's region and puts it on a bounded queue; a background task
publishes what is queued to :data:`~isthmus_core.contracts.topics.AUDIT_RECORDED`, one record at a time.
A record that cannot be sent (the queue is full, the sink is not running, the publish fails) is not
lost silently: it is logged in full (``audit record not published``, every field of the record) and
counted in ``isthmus_audit_records_total{kind, outcome="dropped"}``; a published one counts as
``outcome="published"``. ``stop`` publishes what is still queued, for at most ``drain_timeout_s``.

The evaluation module keeps what arrives on the topic and serves it (``isthmus audit``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog

from isthmus_core.bus.port import EventBus
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts.events import AuditRecorded
from isthmus_core.contracts.topics import AUDIT_RECORDED
from isthmus_core.telemetry.metrics import AUDIT_RECORDS

_log = structlog.get_logger(__name__)

DEFAULT_QUEUE_SIZE: Final = 10_000
DEFAULT_DRAIN_TIMEOUT_S: Final = 5.0


class BusAuditSink:
    """:class:`~isthmus_core.auth.stack.AuditSink` publishing to the audit topic (see the module doc)."""

    def __init__(
        self,
        bus: EventBus,
        region: str = "",
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._bus = bus
        self._region = region
        self._queue: asyncio.Queue[AuditRecorded] = asyncio.Queue(maxsize=queue_size)
        self._drain_timeout_s = drain_timeout_s
        self._task: asyncio.Task[None] | None = None

    def record(self, event: AuditRecorded) -> None:
        try:
            if self._region and not event.region:
                event = event.model_copy(update={"region": self._region})
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped(event, "the audit queue is full")
        except Exception as exc:  # never raise into the caller's request
            self._dropped(event, f"{type(exc).__name__}: {exc}")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="audit-sink")

    async def stop(self) -> None:
        """Publish what is queued (for at most ``drain_timeout_s``), then stop; what is left is dropped
        (logged and counted)."""
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._drain_timeout_s)
            except TimeoutError:
                pass
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            self._dropped(self._queue.get_nowait(), "the audit sink stopped before publishing it")
            self._queue.task_done()

    @property
    def pending(self) -> int:
        """Records queued, not yet published."""
        return self._queue.qsize()

    async def _drain(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await publish_event(self._bus, AUDIT_RECORDED, event)
            except asyncio.CancelledError:
                self._dropped(event, "the audit sink stopped while publishing it")
                self._queue.task_done()
                raise
            except Exception as exc:
                self._dropped(event, f"{type(exc).__name__}: {exc}")
            else:
                AUDIT_RECORDS.labels(event.kind, "published").inc()
            self._queue.task_done()

    @staticmethod
    def _dropped(event: AuditRecorded, why: str) -> None:
        AUDIT_RECORDS.labels(event.kind, "dropped").inc()
        _log.error("audit record not published", why=why, record=event.model_dump(mode="json"))
