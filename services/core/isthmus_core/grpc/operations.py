"""``isthmus.operations.v1.OperationsService``: the bus as this process sees it (served by the runtime of
every process, like health). An edge: it translates requests and delegates to
:class:`~isthmus_core.bus.admin.DeadLetters` and :class:`~isthmus_core.bus.admin.BusAdmin`.

Who may call what is in :mod:`isthmus_core.auth.methods` (``ops.read``, ``ops.replay``): the interceptor
checks the permission in the request's ``tenant_id`` (empty: in every tenant), and the servicer then keeps
to that tenant's dead letters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.operations.v1 import operations_pb2 as pb
from isthmus.operations.v1 import operations_pb2_grpc as pb_grpc
from isthmus_core.auth.context import current_access
from isthmus_core.bus.admin import BusAdmin, DeadLetters, DeadLetterView, Replay, resolve_topic
from isthmus_core.contracts.ids import parse_tenant_id

SERVICE_NAME = "isthmus.operations.v1.OperationsService"


def _timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def _replayed_to(replay: Replay) -> pb.ReplayedTo:
    return pb.ReplayedTo(
        topic=replay.to.topic,
        partition=replay.to.partition,
        offset=replay.to.offset,
        replayed_by=replay.replayed_by,
        replayed_at=_timestamp(replay.at_ms),
    )


def dead_letter_pb(letter: DeadLetterView) -> pb.DeadLetter:
    return pb.DeadLetter(
        topic=letter.at.topic,
        partition=letter.at.partition,
        offset=letter.at.offset,
        key=letter.key,
        tenant_id=letter.tenant_id,
        error_class=letter.error_class,
        error_message=letter.error_message,
        attempts=letter.attempts,
        group=letter.group,
        source_topic=letter.source.topic,
        source_partition=letter.source.partition,
        source_offset=letter.source.offset,
        timestamp=_timestamp(letter.timestamp_ms),
        payload_size=letter.payload_size,
        payload_preview=letter.payload_preview,
        payload_truncated=letter.payload_truncated,
        replayed=letter.replay is not None,
        replayed_to=_replayed_to(letter.replay) if letter.replay is not None else None,
    )


def _tenant(raw: str) -> str:
    return parse_tenant_id(raw) if raw else ""


class OperationsServicer(pb_grpc.OperationsServiceServicer):
    """``subscriptions``: ``(module, topic, group)`` of every subscription of this process."""

    def __init__(
        self, admin: BusAdmin, subscriptions: Sequence[tuple[str, str, str]], modules: Sequence[str]
    ) -> None:
        self._admin = admin
        self._dead_letters = DeadLetters(admin)
        self._owners: dict[tuple[str, str], list[str]] = {}
        for module, topic, group in subscriptions:
            owners = self._owners.setdefault((topic, group), [])
            if module not in owners:
                owners.append(module)
        self._modules = list(modules)

    async def ListConsumers(
        self, request: pb.ListConsumersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConsumersResponse:
        positions = await self._admin.consumer_positions(list(self._owners))
        positions.sort(key=lambda c: (c.group, c.topic, c.partition))
        return pb.ListConsumersResponse(
            consumers=[
                pb.ConsumerPartition(
                    group=c.group,
                    topic=c.topic,
                    partition=c.partition,
                    position=c.position,
                    end_offset=c.end,
                    lag=c.lag,
                    modules=self._owners.get((c.topic, c.group), []),
                    committed=c.committed,
                )
                for c in positions
            ],
            bus=self._admin.kind,
            modules=self._modules,
        )

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        spec = resolve_topic(request.topic)
        listing = await self._dead_letters.listing(
            spec.dlq, limit=request.limit, tenant=_tenant(request.tenant_id)
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_pb(d) for d in listing.dead_letters],
            topic=listing.topic,
            total=listing.total,
        )

    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        spec = resolve_topic(request.topic)
        letter = await self._dead_letters.replay(
            spec.dlq,
            request.partition,
            request.offset,
            tenant=_tenant(request.tenant_id),
            by=current_access().principal.subject,
        )
        assert letter.replay is not None
        return pb.ReplayDeadLetterResponse(
            dead_letter=dead_letter_pb(letter), replayed_to=_replayed_to(letter.replay)
        )


def registrar(servicer: OperationsServicer) -> Callable[[grpc.aio.Server], None]:
    """A :data:`~isthmus_core.grpc.server.Registrar` adding ``servicer`` to a server."""

    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_OperationsServiceServicer_to_server(servicer, server)

    return register
