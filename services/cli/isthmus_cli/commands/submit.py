"""``isthmus submit``: put documents on the documents topic (``isthmus.documents.submitted.v1``) as a
Kafka producer does — inline, or by reference (claim check): the file is written to the object store
ingestion reads (``[ingestion] object_store*``, from the same settings) and the event carries its
``content_uri``. A file larger than ``[ingestion] max_inline_bytes`` always goes by reference."""

from __future__ import annotations

import json
import mimetypes
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from isthmus_cli.client import bearer, run
from isthmus_cli.options import DEFAULT_BOOTSTRAP, AsJson, Bootstrap, ConfigFile, Tenant
from isthmus_cli.output import console, fail


def submit(
    files: Annotated[list[Path], typer.Argument(help="files to submit (their extension tells the type)")],
    tenant: Tenant,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    by_reference: Annotated[
        bool,
        typer.Option(
            "--by-reference/--auto",
            help="always write the file to the object store and send its content_uri (default: only files "
            "over the ingestion setting max_inline_bytes)",
        ),
    ] = False,
    document_id: Annotated[
        str, typer.Option(help="the document id (one file only; default: derived from the content)")
    ] = "",
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Submit documents over Kafka (the documents topic), inline or by reference; prints the document
    ids to follow with `isthmus status`."""
    from isthmus_core.contracts.ids import parse_document_id
    from isthmus_core.contracts.topics import DOCUMENTS_SUBMITTED
    from isthmus_core.errors import InvalidArgument

    if document_id and len(files) != 1:
        fail("--document-id names one document: give one file")
    try:
        doc_id = parse_document_id(document_id, "--document-id") if document_id else None
    except InvalidArgument as exc:
        fail(str(exc), 2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"not a file: {', '.join(missing)}")
    common, ingestion = _settings(config)

    async def main() -> list[dict[str, Any]]:
        from isthmus_core.bus.kafka import KafkaBus
        from isthmus_core.contracts.events import DocumentSubmitted
        from isthmus_core.contracts.ids import TenantId
        from isthmus_ingestion.module import object_store

        store = object_store(ingestion, common.data_dir)
        bus = KafkaBus(bootstrap, client_id="isthmus-submit", security=common.kafka_security())
        await bus.start()
        rows: list[dict[str, Any]] = []
        try:
            for path in files:
                data = path.read_bytes()
                row: dict[str, Any] = {"path": str(path), "bytes": len(data)}
                if len(data) > ingestion.max_upload_bytes:
                    row.update(
                        status="rejected",
                        error=f"over [ingestion] max_upload_bytes ({ingestion.max_upload_bytes})",
                    )
                    rows.append(row)
                    continue
                fields: dict[str, Any] = {"content": data}
                if by_reference or len(data) > ingestion.max_inline_bytes:
                    fields = {"content_uri": await store.write(TenantId(tenant), path.name, data)}
                event = DocumentSubmitted(
                    tenant_id=tenant,
                    idempotency_key=f"{tenant}/submit/{uuid.uuid4().hex}",
                    document_id=doc_id,
                    filename=path.name,
                    content_type=mimetypes.guess_type(path.name)[0],
                    **fields,
                )
                await _produce(bus, DOCUMENTS_SUBMITTED.name, event)
                row.update(
                    status="submitted",
                    document_id=doc_id or "",
                    content_uri=event.content_uri,
                    inline=not event.content_uri,
                )
                rows.append(row)
        finally:
            await bus.stop()
        return rows

    rows = run(main())
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            how = "inline" if r.get("inline") else f"by reference {r.get('content_uri', '')}"
            line = f"{r['path']}: {r['status']}" + (f" ({how})" if r["status"] == "submitted" else "")
            console.print(escape(line + (f" — {r['error']}" if r.get("error") else "")))
    if any(r["status"] != "submitted" for r in rows):
        raise typer.Exit(1)


async def _produce(bus: Any, topic: str, event: Any) -> None:
    """The event as a producer sends it: JSON, keyed ``tenant[/document]``, with the producer token
    (``authorization: Bearer``) when the CLI has one (authentication on)."""
    from isthmus_core.bus.typed import CONTENT_TYPE_JSON, H_CONTENT_TYPE, H_EVENT_TYPE, H_TENANT
    from isthmus_core.contracts.topics import partition_key

    headers = {
        H_CONTENT_TYPE: CONTENT_TYPE_JSON,
        H_EVENT_TYPE: type(event).__name__,
        H_TENANT: event.tenant_id,
    }
    token = bearer()
    if token:
        headers["authorization"] = f"Bearer {token}"
    await bus.publish(topic, partition_key(event), event.model_dump_json().encode("utf-8"), headers)


def _settings(config: Path | None) -> tuple[Any, Any]:
    """[common] (data dir, Kafka security) and [ingestion] (the object store, the limits), read like the
    services read them (environment and the config file)."""
    from isthmus_cli.modules import MODULES
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import CommonSettings, load_all

    try:
        loaded = load_all([CommonSettings, *(m.settings_cls for m in MODULES)], config)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    return loaded["common"], loaded["ingestion"]
