"""Document status changes as they happen, to any number of watchers (``WatchDocuments``).

:class:`DocumentWatch` is the in-process notification core: every watcher has its own bounded queue,
filled synchronously by :meth:`DocumentWatch.publish` with a copy of the document as it was just stored,
so a watcher sees every state in order (received → chunked → embedded → indexed, or failed with its
reason) however slowly it reads. :class:`WatchedRegistry` feeds it: the document registry, telling the
watchers about every record it saves (``mark_batch`` and ``fail`` save through ``save`` too) and every
tenant it forgets.

Scope: a watcher sees the changes stored by the registry of its own process. The registry is a local
sqlite file per ingestion instance, and status events are consumed by one member of the ``ingestion-status``
group, so with several ingestion replicas each would hold (and notify) only part of the story; the chart
runs one ingestion replica (ReadWriteOnce volume) for that reason, and this watch shares the limit.

A watcher that falls more than ``max_pending`` changes behind is dropped with RESOURCE_EXHAUSTED (it can
watch again: the stream starts with the current state); nothing here blocks the code that stores changes.
Past ``max_watchers`` open watches a new one is refused at once with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from isthmus_core.errors import IsthmusError, NotFound, ResourceExhausted
from isthmus_ingestion.registry import DocumentRecord, DocumentRegistry, Status

TERMINAL = frozenset({Status.INDEXED, Status.FAILED, Status.QUARANTINED, Status.DELETED})
DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_WATCHERS = 256


class DocumentLookup(Protocol):
    """What a watch reads for its first answer: the registry's current records."""

    def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None: ...

    def list(self, tenant_id: str, status: Status | None = None) -> list[DocumentRecord]: ...


@dataclass(frozen=True, slots=True)
class DocumentUpdate:
    document: DocumentRecord
    #: True for the state sent when the watch opens, False for a change seen afterwards
    initial: bool


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _Watcher:
    """One open watch: its filter and its queue, which belongs to the watch's event loop (a change stored
    from a worker thread is handed over with ``call_soon_threadsafe``)."""

    def __init__(self, tenant_id: str, document_ids: frozenset[str] | None, max_pending: int) -> None:
        self.tenant_id = tenant_id
        self.document_ids = document_ids
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[DocumentRecord | IsthmusError] = asyncio.Queue()
        self._max_pending = max_pending
        self._closed = False

    def wants(self, tenant_id: str, document_id: str) -> bool:
        return tenant_id == self.tenant_id and (self.document_ids is None or document_id in self.document_ids)

    def offer(self, record: DocumentRecord) -> None:
        if _on_loop(self._loop):
            self._offer(record)
        else:
            self._loop.call_soon_threadsafe(self._offer, record)

    def close(self, error: IsthmusError) -> None:
        """End this watcher with ``error`` as soon as it reads (pending changes are dropped)."""
        if _on_loop(self._loop):
            self._close(error)
        else:
            self._loop.call_soon_threadsafe(self._close, error)

    def _offer(self, record: DocumentRecord) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._max_pending:
            self._close(
                ResourceExhausted(
                    f"the watch fell more than {self._max_pending} changes behind; watch again "
                    "(the stream starts with the current state)"
                )
            )
            return
        self._queue.put_nowait(record)

    def _close(self, error: IsthmusError) -> None:
        if self._closed:
            return
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    @property
    def pending(self) -> bool:
        return not self._queue.empty()

    async def next(self) -> DocumentRecord:
        item = await self._queue.get()
        if isinstance(item, IsthmusError):
            raise item
        return item


def _copy(record: DocumentRecord) -> DocumentRecord:
    return dataclasses.replace(record, metadata=dict(record.metadata))


def _state(record: DocumentRecord) -> tuple[int, Status, str]:
    return (record.version, record.status, record.failure_reason)


class DocumentWatch:
    """Fans document changes out to the open watches; see the module docstring."""

    def __init__(
        self, max_pending: int = DEFAULT_MAX_PENDING, max_watchers: int = DEFAULT_MAX_WATCHERS
    ) -> None:
        self._watchers: set[_Watcher] = set()
        self._max_pending = max_pending
        self._max_watchers = max_watchers

    @property
    def watching(self) -> int:
        return len(self._watchers)

    def publish(self, record: DocumentRecord) -> None:
        """A document was stored in this state (called synchronously, right after the store)."""
        # a tuple first: this may run on a worker thread while the loop opens or closes a watch
        interested = [w for w in tuple(self._watchers) if w.wants(record.tenant_id, record.document_id)]
        if interested:
            snapshot = _copy(record)
            for w in interested:
                w.offer(snapshot)

    def tenant_deleted(self, tenant_id: str) -> None:
        """The tenant's documents are gone: its watches end with NOT_FOUND."""
        for w in tuple(self._watchers):
            if w.tenant_id == tenant_id:
                w.close(NotFound(f"tenant {tenant_id!r} was deleted while being watched"))

    def documents_erased(self, tenant_id: str, document_ids: Collection[str]) -> None:
        """These documents were erased: a watch of any of them by id ends with NOT_FOUND (a watch of the
        whole tenant goes on: the erased documents simply never appear again)."""
        erased = frozenset(document_ids)
        for w in tuple(self._watchers):
            if w.tenant_id == tenant_id and w.document_ids is not None and w.document_ids & erased:
                w.close(NotFound("a watched document was erased"))

    async def stream(
        self,
        lookup: DocumentLookup,
        tenant_id: str,
        document_ids: Collection[str] = (),
        *,
        until_terminal: bool = False,
    ) -> AsyncIterator[DocumentUpdate]:
        """The current state of the watched documents (``initial``), then each change as it is stored.

        ``document_ids`` empty = every document of the tenant, including ones created later; watched ids
        that do not exist yet appear when they are uploaded. With ``until_terminal`` the stream ends once
        every watched document is indexed or failed (with no ids: once none of the tenant's documents is
        in flight, at once if there is none), changes already stored included.
        """
        if len(self._watchers) >= self._max_watchers:
            raise ResourceExhausted(
                f"{len(self._watchers)} document watches are open on this ingestion instance; retry later"
            )
        ids = frozenset(document_ids) or None
        watcher = _Watcher(tenant_id, ids, self._max_pending)
        self._watchers.add(watcher)  # before reading the current state: no change falls in between
        try:
            if ids is None:
                current = lookup.list(tenant_id)
            else:
                current = [d for d in (lookup.get(tenant_id, i) for i in sorted(ids)) if d is not None]
            last: dict[str, tuple[int, Status, str]] = {}
            for d in current:
                last[d.document_id] = _state(d)
                yield DocumentUpdate(_copy(d), initial=True)

            def done() -> bool:
                if not until_terminal:
                    return False
                if ids is not None and not ids <= last.keys():
                    return False
                return all(status in TERMINAL for _, status, _ in last.values())

            while watcher.pending or not done():  # changes already stored count before deciding
                record = await watcher.next()
                state = _state(record)
                if last.get(record.document_id) == state:
                    continue  # stored again unchanged (e.g. the state the stream opened with)
                last[record.document_id] = state
                yield DocumentUpdate(record, initial=False)
        finally:
            self._watchers.discard(watcher)


class WatchedRegistry(DocumentRegistry):
    """The document registry, telling ``watch`` about every record it stores and every tenant it drops."""

    def __init__(self, path: Path, watch: DocumentWatch) -> None:
        super().__init__(path)
        self.watch = watch

    def save(self, d: DocumentRecord, detail: str | None = None, written_at: float | None = None) -> None:
        super().save(d, detail, written_at)
        self.watch.publish(d)

    def delete_tenant(self, tenant_id: str) -> int:
        n = super().delete_tenant(tenant_id)
        self.watch.tenant_deleted(tenant_id)
        return n

    def delete_documents(
        self,
        tenant_id: str,
        document_ids: Sequence[str],
        erasure_id: str = "",
        known_versions: Mapping[str, int] | None = None,
    ) -> int:
        n = super().delete_documents(tenant_id, document_ids, erasure_id, known_versions)
        self.watch.documents_erased(tenant_id, document_ids)
        return n
