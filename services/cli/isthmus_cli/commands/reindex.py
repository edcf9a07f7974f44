"""``isthmus reindex``: rebuild a tenant's index from its chunk history on Kafka."""

from __future__ import annotations

from isthmus_cli.client import connect, kafka_security, run
from isthmus_cli.options import DEFAULT_BOOTSTRAP, DEFAULT_ENDPOINT, Bootstrap, ConfigFile, Endpoint, Tenant
from isthmus_cli.output import console


def reindex(
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    config: ConfigFile = None,
) -> None:
    """Rebuild a tenant's index from its chunk history: empty the index, then replay the tenant's
    chunks.created events (re-embedded and re-indexed by the running services; ids are deterministic,
    so the rebuilt index holds exactly what the original run produced). Events of documents erased
    since (``isthmus erase``, as recorded on the erasures topic) are skipped: erased content stays erased."""
    from isthmus.retrieval.v1 import retrieval_pb2
    from isthmus_core.bus.kafka_tools import read_topic, republish
    from isthmus_core.bus.typed import decode_event
    from isthmus_core.contracts.topics import CHUNKS_CREATED, ERASURES_REQUESTED
    from isthmus_core.errors import IsthmusError
    from isthmus_ingestion.erasure import erased_by

    security = kafka_security(config)

    async def main() -> int:
        messages, _ = await read_topic(
            bootstrap, CHUNKS_CREATED.name, key_prefix=f"{tenant}/", security=security
        )
        erasures, _ = await read_topic(
            bootstrap, ERASURES_REQUESTED.name, key_prefix=tenant, security=security
        )
        requested = []
        for m in erasures:
            try:
                requested.append(decode_event(ERASURES_REQUESTED, m))
            except IsthmusError:
                continue  # not an erasure the platform could have applied either
        covered = erased_by(e for e in requested if e.tenant_id == tenant)
        kept = []
        for m in messages:
            try:
                ev = decode_event(CHUNKS_CREATED, m)
            except IsthmusError:  # not a valid event: replayed as before (the consumer dead-letters it)
                kept.append(m)
                continue
            if not covered(ev.document_id, ev.occurred_at):
                kept.append(m)
        messages = kept
        async with connect(endpoint) as stubs:
            await stubs.retrieval.ClearTenant(retrieval_pb2.ClearTenantRequest(tenant_id=tenant), timeout=120)
        return await republish(bootstrap, messages, lambda m: CHUNKS_CREATED.name, security=security)

    n = run(main())
    console.print(
        f"replayed {n} chunk batch event(s) of tenant {tenant}; the index fills as they are processed"
    )
