#!/usr/bin/env python3
"""Submit one document to Isthmus over Kafka: a ``DocumentSubmitted`` event on
``isthmus.documents.submitted.v1`` (the producer contract: docs/events.md, docs/asyncapi.yaml).

Needs only ``aiokafka`` (the Kafka client Isthmus itself uses) and the standard library: a producer
does not need Isthmus installed. Usage::

    python examples/producers/produce_document.py --bootstrap localhost:9092 \\
        --tenant acme --file handbook.pdf [--document-id handbook-2024] [--metadata team=hr]

    # authentication on ([auth] in the platform's settings): a token of a principal with
    # documents.write in the tenant, from a file (or the environment variable PRODUCER_TOKEN)
    python examples/producers/produce_document.py ... --token-file token.jwt

    # too large to carry inline: put the file in the object store ingestion reads, send the reference
    python examples/producers/produce_document.py ... --content-uri acme/uploads/big.pdf --filename big.pdf

It prints the partition and offset the broker acknowledged. Ingestion then parses, chunks, embeds and
indexes the document; ``GetDocument`` shows where it is (``isthmus status --tenant T`` counts). A
record ingestion refuses (invalid event, a refused token, too large) lands on
``isthmus.documents.submitted.v1.dlq`` with the reason in its headers: ``isthmus dlq list``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import mimetypes
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

TOPIC = "isthmus.documents.submitted.v1"
#: what ingestion accepts inline by default ([ingestion] max_inline_bytes); larger: by reference
DEFAULT_MAX_INLINE_BYTES = 4 * 1024 * 1024
#: the bus's limit for one record's value (the topic's max.message.bytes leaves room for headers)
MAX_VALUE_BYTES = 8 * 1024 * 1024


def build_event(args: argparse.Namespace, data: bytes | None) -> dict[str, object]:
    """The event as JSON-ready data: the fields of DocumentSubmitted (unknown fields are refused)."""
    filename = args.filename or (args.file.name if args.file else "")
    if not filename:
        raise SystemExit("--filename is needed with --content-uri (the name says which parser reads it)")
    # the idempotency key names this submission: the same file sent twice has the same key
    digest = hashlib.sha256(data if data is not None else args.content_uri.encode()).hexdigest()
    event: dict[str, object] = {
        "schema_version": 1,
        "event_id": uuid.uuid4().hex,
        "tenant_id": args.tenant,
        "idempotency_key": f"{args.tenant}/{args.document_id or digest}/{digest}",
        "occurred_at": datetime.now(UTC).isoformat(),
        "filename": filename,
        "content_type": args.content_type or mimetypes.guess_type(filename)[0],
        "metadata": dict(kv.split("=", 1) for kv in args.metadata),
    }
    if args.document_id:  # without one, ingestion derives it from the tenant and the content's hash
        event["document_id"] = args.document_id
    if data is not None:
        event["content"] = base64.b64encode(data).decode("ascii")  # bytes travel as standard base64
    else:
        event["content_uri"] = args.content_uri
    return event


def token(args: argparse.Namespace) -> str | None:
    path: Path | None = args.token_file
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return os.environ.get("PRODUCER_TOKEN") or None


async def produce(args: argparse.Namespace) -> int:
    data = None
    if args.file is not None:
        data = args.file.read_bytes()
        if len(data) > args.max_inline_bytes:
            print(
                f"{args.file} is {len(data)} bytes, over the inline limit ({args.max_inline_bytes}): put it "
                "in the object store and send --content-uri instead",
                file=sys.stderr,
            )
            return 2
    value = json.dumps(build_event(args, data), separators=(",", ":")).encode("utf-8")
    if len(value) > MAX_VALUE_BYTES:
        print(f"the event is {len(value)} bytes, over the bus's {MAX_VALUE_BYTES}", file=sys.stderr)
        return 2
    headers = [("content-type", b"application/json")]
    bearer = token(args)
    if bearer:
        headers.append(("authorization", f"Bearer {bearer}".encode()))
    # the partition key: every event of one document goes to one partition, in order
    key = f"{args.tenant}/{args.document_id}" if args.document_id else args.tenant
    security = {}
    if args.security_protocol != "PLAINTEXT":
        security = {
            "security_protocol": args.security_protocol,
            "sasl_mechanism": args.sasl_mechanism,
            "sasl_plain_username": args.sasl_username,
            "sasl_plain_password": os.environ.get("KAFKA_SASL_PASSWORD"),
        }
        if args.cafile:
            from aiokafka.helpers import create_ssl_context

            security["ssl_context"] = create_ssl_context(cafile=str(args.cafile))
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_VALUE_BYTES + 256 * 1024,
        **{k: v for k, v in security.items() if v is not None},
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(TOPIC, value, key=key.encode("utf-8"), headers=headers)
    finally:
        await producer.stop()
    print(f"submitted {key} to {TOPIC} partition {meta.partition} offset {meta.offset}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--tenant", required=True, help="the tenant id (lowercase letters, digits, '-')")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, help="the document, sent inline (base64 in the event)")
    what.add_argument("--content-uri", help="the document by reference: a key or URI of the object store")
    p.add_argument(
        "--filename", help="the document's name (default: the file's); its extension picks the parser"
    )
    p.add_argument("--document-id", help="default: derived from the tenant and the content")
    p.add_argument("--content-type", help="default: guessed from the file name")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--token-file", type=Path, help="a JWT with documents.write (default: $PRODUCER_TOKEN)")
    p.add_argument("--max-inline-bytes", type=int, default=DEFAULT_MAX_INLINE_BYTES)
    p.add_argument("--security-protocol", default="PLAINTEXT", choices=["PLAINTEXT", "SSL", "SASL_SSL"])
    p.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    p.add_argument("--sasl-username", help="the password comes from $KAFKA_SASL_PASSWORD")
    p.add_argument("--cafile", type=Path, help="the CA that signed the brokers' certificates")
    args = p.parse_args(argv)
    if any("=" not in kv for kv in args.metadata):
        p.error("--metadata takes KEY=VALUE")
    return asyncio.run(produce(args))


if __name__ == "__main__":
    raise SystemExit(main())
