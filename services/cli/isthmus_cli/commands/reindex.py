"""``isthmus reindex``: rebuild a tenant's index from its chunk history on Kafka."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from isthmus_cli.client import connect, kafka_security, run
from isthmus_cli.options import DEFAULT_BOOTSTRAP, DEFAULT_ENDPOINT, Bootstrap, ConfigFile, Endpoint, Tenant
from isthmus_cli.output import console, err

if TYPE_CHECKING:
    from isthmus_core.contracts.events import Event
    from isthmus_core.contracts.topics import TopicSpec

EventT = TypeVar("EventT", bound="Event")


async def tenant_events(
    bootstrap: str, spec: TopicSpec[EventT], tenant: str, key_prefix: str, config: ConfigFile
) -> list[EventT]:
    """The valid events of ``tenant`` on ``spec``'s topic (none if the topic was never created)."""
    from isthmus_core.bus.kafka_tools import read_topic
    from isthmus_core.bus.typed import decode_event
    from isthmus_core.errors import IsthmusError, NotFound

    try:
        messages, _ = await read_topic(
            bootstrap, spec.name, key_prefix=key_prefix, security=kafka_security(config)
        )
    except NotFound:  # never created: nothing of that kind happened
        return []
    out = []
    for m in messages:
        try:
            ev = decode_event(spec, m)
        except IsthmusError:
            continue  # not an event the platform could have applied either
        if ev.tenant_id == tenant:
            out.append(ev)
    return out


def reindex(
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    config: ConfigFile = None,
    ingestion_endpoint: Annotated[
        str,
        typer.Option(
            "--ingestion-endpoint",
            help="gRPC address of ingestion, whose registry lists the deleted documents "
            "(default: --endpoint)",
        ),
    ] = "",
) -> None:
    """Rebuild a tenant's index from its chunk history: empty the index, then replay the tenant's
    chunks.created events (re-embedded and re-indexed by the running services; ids are deterministic,
    so the rebuilt index holds exactly what the original run produced). Events of documents erased
    since (``isthmus erase``, as recorded on the erasures topic) are skipped: erased content stays erased;
    so are the events of deleted versions (``isthmus delete``: the documents.deleted topic, and the
    documents the registry lists as deleted, which includes deletions mirrored from other regions)."""
    import grpc

    from isthmus.ingestion.v1 import ingestion_pb2
    from isthmus.retrieval.v1 import retrieval_pb2
    from isthmus_core.bus.kafka_tools import read_topic, republish
    from isthmus_core.bus.port import Message
    from isthmus_core.bus.typed import decode_event
    from isthmus_core.contracts.topics import CHUNKS_CREATED, DOCUMENTS_DELETED, ERASURES_REQUESTED
    from isthmus_core.errors import IsthmusError
    from isthmus_ingestion.deletion import deleted_by
    from isthmus_ingestion.erasure import erased_by

    security = kafka_security(config)

    async def main() -> int:
        messages, _ = await read_topic(
            bootstrap, CHUNKS_CREATED.name, key_prefix=f"{tenant}/", security=security
        )
        covered = erased_by(await tenant_events(bootstrap, ERASURES_REQUESTED, tenant, tenant, config))
        deletions = await tenant_events(bootstrap, DOCUMENTS_DELETED, tenant, f"{tenant}/", config)
        registry: list[tuple[str, int]] = []
        async with connect(ingestion_endpoint or endpoint) as stubs:
            try:
                listed = await stubs.ingestion.ListDocuments(
                    ingestion_pb2.ListDocumentsRequest(
                        tenant_id=tenant, status=ingestion_pb2.DOCUMENT_STATUS_DELETED
                    ),
                    timeout=120,
                )
                registry = [(d.document_id, d.version) for d in listed.documents]
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED or ingestion_endpoint:
                    raise
                err.print(
                    f"warning: no ingestion at {endpoint}: deleted documents are taken from the "
                    f"{DOCUMENTS_DELETED.name} topic only (name ingestion with --ingestion-endpoint)"
                )
        deleted = deleted_by([*deletions, *registry])

        def kept(m: Message) -> bool:
            try:
                ev = decode_event(CHUNKS_CREATED, m)
            except IsthmusError:  # not a valid event: replayed as before (the consumer dead-letters it)
                return True
            return not (covered(ev.document_id, ev.occurred_at) or deleted(ev.document_id, ev.version))

        messages = [m for m in messages if kept(m)]
        async with connect(endpoint) as stubs:
            await stubs.retrieval.ClearTenant(retrieval_pb2.ClearTenantRequest(tenant_id=tenant), timeout=120)
        return await republish(bootstrap, messages, lambda m: CHUNKS_CREATED.name, security=security)

    n = run(main())
    console.print(
        f"replayed {n} chunk batch event(s) of tenant {tenant}; the index fills as they are processed"
    )
