"""`isthmus dlq` against a broker that requires TLS + SASL: the CLI reads the same [common] Kafka security
settings as the services (env or --config), and a refused login or an incomplete setting is a one-line
error with an exit code, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from isthmus_core.bus.kafka import KafkaBus
from isthmus_core.bus.kafka_security import KafkaSecurity
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE
from isthmus_core.contracts import topics
from isthmus_core.testing.infra import SecureKafka

from .test_e2e_cli import cli

pytestmark = pytest.mark.kafka


def _env(kafka: SecureKafka, **changes: str | None) -> dict[str, str]:
    """The CLI's environment for this broker; a change of None leaves that variable out."""
    env = {
        "ISTHMUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ISTHMUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "ISTHMUS_KAFKA_SASL_USERNAME": kafka.username,
        "ISTHMUS_KAFKA_SASL_PASSWORD": kafka.password,
        "ISTHMUS_KAFKA_SSL_CAFILE": str(kafka.cafile),
    }
    env.update({k: v for k, v in changes.items() if v is not None})
    return {k: v for k, v in env.items() if changes.get(k, "") is not None}


async def test_dlq_list_over_sasl_ssl(kafka_secure: SecureKafka) -> None:
    security = KafkaSecurity(
        "SASL_SSL",
        ssl_cafile=kafka_secure.cafile,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=kafka_secure.username,
        sasl_password=kafka_secure.password,
    )
    bus = KafkaBus(kafka_secure.bootstrap, security=security)
    await bus.ensure_topics([topics.DOCUMENTS_SUBMITTED])
    await bus.start()
    try:
        await bus.publish(
            topics.DOCUMENTS_SUBMITTED.dlq,
            "t1/doc-1",
            b'{"not": "a document"}',
            {H_ERROR_CLASS: "InvalidArgument", H_ERROR_MESSAGE: "missing field 'document_id'"},
        )
    finally:
        await bus.stop()
    args = ("dlq", "list", topics.DOCUMENTS_SUBMITTED.name, "--bootstrap", kafka_secure.bootstrap, "--json")
    code, out, err = await cli(*args, env=_env(kafka_secure))
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    assert [(r["key"], r["error_class"], r["error"]) for r in rows] == [
        ("t1/doc-1", "InvalidArgument", "missing field 'document_id'")
    ]

    code, out, err = await cli(*args, env=_env(kafka_secure, ISTHMUS_KAFKA_SASL_PASSWORD="wrong"))
    assert code == 1 and "Traceback" not in err
    assert "UNAVAILABLE" in err and "invalid credentials" in err, err

    code, out, err = await cli(*args, env=_env(kafka_secure, ISTHMUS_KAFKA_SASL_MECHANISM=None))
    assert code == 2 and "Traceback" not in err
    assert "kafka_security_protocol SASL_SSL needs kafka_sasl_mechanism" in err, err
