"""The AsyncAPI document (isthmus_core.contracts.asyncapi): generated from the code, committed, valid."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter

from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, H_SOURCE_TOPIC
from isthmus_core.contracts import asyncapi, topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.testing.infra import missing_tool, repository_root


def root() -> Path:
    found = repository_root()
    assert found is not None and (found / "services").is_dir(), (
        "these tests read the repository's sources (docs/asyncapi.yaml, the services' wiring): run them "
        "from a checkout"
    )
    return found


@pytest.fixture(scope="module")
def roles() -> asyncapi.Roles:
    return asyncapi.scan_roles(root())


@pytest.fixture(scope="module")
def doc(roles: asyncapi.Roles) -> dict[str, Any]:
    return asyncapi.build_document(roles)


def test_the_committed_document_is_the_generated_one(roles: asyncapi.Roles) -> None:
    committed = root() / "docs" / "asyncapi.yaml"
    assert committed.exists(), "docs/asyncapi.yaml is missing: run `make asyncapi`"
    assert committed.read_text(encoding="utf-8") == asyncapi.render(root(), roles), (
        "docs/asyncapi.yaml differs from what the event contracts generate: run `make asyncapi` and commit it"
    )


def test_the_topics_table_of_the_events_doc_is_the_generated_one(roles: asyncapi.Roles) -> None:
    events = root() / "docs" / "events.md"
    current = events.read_text(encoding="utf-8")
    assert current == asyncapi.render_events_doc(root(), current, roles), (
        "the topics table of docs/events.md differs from what the code generates: run `make asyncapi`"
    )
    table = asyncapi.topics_table(roles)
    for spec in topics.ALL_TOPICS:
        assert f"| `{spec.name}`" in table
    assert "| `isthmus.documents.submitted.v1` (broker time) | DocumentSubmitted |" in table


def test_the_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], roles: asyncapi.Roles
) -> None:
    out = tmp_path / "asyncapi.yaml"
    out.write_text("asyncapi: 3.0.0\n")
    events = tmp_path / "events.md"
    events.write_text(f"# Events\n\n{asyncapi.TABLE_BEGIN}\nold\n{asyncapi.TABLE_END}\n\nprose\n")
    argv = ["--root", str(root()), "--output", str(out), "--events-doc", str(events)]
    assert asyncapi.main([*argv, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{out} is out of date: run `make asyncapi`" in err and f"{events} is out of date" in err
    assert asyncapi.main(argv) == 0
    assert asyncapi.main([*argv, "--check"]) == 0
    assert out.read_text() == asyncapi.render(root(), roles)
    text = events.read_text()
    assert "old" not in text and "| `isthmus.chunks.created.v1` |" in text and text.endswith("\n\nprose\n")


def test_the_yaml_reads_back_as_the_document(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(asyncapi.to_yaml(doc)) == doc
    tricky = {"yes": "no", "a: b": ["", "line one\nline two", "null", 1, 2.5, True, None, {}, []], "k": {}}
    assert yaml.safe_load(asyncapi.to_yaml(tricky)) == tricky


def test_every_topic_has_its_channel_its_dead_letter_twin_and_kafka_bindings(doc: dict[str, Any]) -> None:
    by_address = {c["address"]: c for c in doc["channels"].values()}
    for spec in topics.ALL_TOPICS:
        chan = by_address[spec.name]
        kafka = chan["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions
        assert kafka["topicConfiguration"]["retention.ms"] == spec.retention_ms
        stamped = kafka["topicConfiguration"].get("message.timestamp.type")
        assert stamped == ("LogAppendTime" if spec.broker_timestamps else None), spec.name
        (message,) = chan["messages"].values()
        name = message["$ref"].rsplit("/", 1)[1]
        assert doc["components"]["messages"][name]["payload"] == {
            "$ref": f"#/components/schemas/{spec.payload.__name__}"
        }
        dlq = by_address[spec.dlq]
        assert list(dlq["messages"]) == ["DeadLetter"]
        assert "message.timestamp.type" not in dlq["bindings"]["kafka"]["topicConfiguration"]


def test_the_document_submitted_schema_is_the_one_ingestion_validates_with(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    submitted = schemas["DocumentSubmitted"]
    assert submitted["additionalProperties"] is False  # extra="forbid": an unknown field is refused
    assert set(submitted["required"]) == {"tenant_id", "idempotency_key", "filename"}
    assert {"content", "content_uri", "schema_version", "metadata"} <= set(submitted["properties"])
    # what the schema's example looks like is what the model accepts
    TypeAdapter(DocumentSubmitted).validate_json(
        '{"tenant_id": "acme", "idempotency_key": "k", "filename": "a.txt", "content": "aGk="}'
    )
    # the fields' documentation (``#:`` comments in the contracts) travels with the schema
    assert "claim check" in submitted["properties"]["content_uri"]["description"]
    assert "W3C trace context" in submitted["properties"]["trace_context"]["description"]  # inherited
    message = doc["components"]["messages"]["DocumentSubmitted"]
    assert message["headers"] == {"$ref": "#/components/schemas/ProducerHeaders"}
    assert "authorization" in schemas["ProducerHeaders"]["properties"]
    assert message["bindings"]["kafka"]["key"]["examples"] == ["acme/handbook-2024"]
    dead = schemas["DeadLetterHeaders"]
    assert {H_ERROR_CLASS, H_ERROR_MESSAGE, H_SOURCE_TOPIC} <= set(dead["required"])
    assert "authorization" not in dead["properties"]  # never copied into a dead letter


def test_the_producer_examples_match_the_schemas(doc: dict[str, Any]) -> None:
    """The AsyncAPI parser does not check message examples: the examples of the producer messages are
    checked here against the generated schemas (JSON Schema 2020-12, as pydantic writes them)."""

    def validator(name: str) -> Draft202012Validator:
        return Draft202012Validator({"components": doc["components"], "$ref": f"#/components/schemas/{name}"})

    checked = 0
    for message in doc["components"]["messages"].values():
        for example in message.get("examples", []):
            payload = validator(message["payload"]["$ref"].rsplit("/", 1)[1])
            payload.validate(example["payload"])
            validator(message["headers"]["$ref"].rsplit("/", 1)[1]).validate(example["headers"])
            assert not payload.is_valid({**example["payload"], "unknown_field": 1})  # extra="forbid"
            assert not payload.is_valid({**example["payload"], "tenant_id": "Not A Tenant"})
            checked += 1
    assert checked == 2  # DocumentSubmitted and DeletionRequested (the producer topics)


def test_operations_come_from_the_services_code(doc: dict[str, Any]) -> None:
    ops = doc["operations"]
    # a sample of the wiring read from the services' modules
    assert ops["ingestion_send_chunksCreatedV1"]["action"] == "send"
    assert ops["embedding_receive_chunksCreatedV1"]["action"] == "receive"
    assert ops["embedding_send_chunksCreatedV1Dlq"]["action"] == "send"  # the bus dead-letters for it
    assert ops["retrieval_receive_chunksEmbeddedV1Mirrored"]["channel"] == {
        "$ref": "#/channels/chunksEmbeddedV1Mirrored"
    }
    producer_tag = {"$ref": "#/components/tags/producer-contract"}
    assert doc["channels"]["documentsSubmittedV1"]["tags"] == [producer_tag]
    assert producer_tag in ops["ingestion_receive_documentsSubmittedV1"]["tags"]
    assert "tags" not in doc["channels"]["chunksCreatedV1"]
    assert ops["ingestion_receive_documentsSubmittedV1Dlq"]["action"] == "receive"
    for svc in asyncapi.SERVICES:  # every process publishes its audit records
        assert f"{asyncapi.channel_id(svc)}_send_auditRecordedV1" in ops


def test_the_scan_reads_each_kind_of_wiring() -> None:
    source = """
from isthmus_core.contracts import topics
def build(ctx):
    pub = publisher(ctx.bus, topics.CHUNKS_CREATED)
    dead = dead_letterer(ctx.bus, topics.CHUNKS_EMBEDDED, group="g")
    return [
        Subscription(topics.DOCUMENTS_SUBMITTED.name, "g",
                     checked_producer(topics.DOCUMENTS_SUBMITTED, handler, ctx.auth, perm)),
        Subscription(topics.CHUNKS_CREATED.dlq, "g-dlq", on_dead),
        subscribe(topics.TENANTS_DELETED, "g", lambda ev: publish_event(bus, topics.AUDIT_RECORDED, ev)),
        *replica_subscriptions(topics.CHUNKS_EMBEDDED, "g", peers, on_mirrored, service="x"),
        *purge_on_erasure("x", peers, clears),
    ]
"""
    roles = asyncapi.Roles()
    helpers = asyncapi.scan_helpers(
        [(root() / "services/core/isthmus_core/bus/purge.py").read_text()], asyncapi._topic_constants()
    )
    asyncapi.scan_source(
        "from isthmus_core.bus.purge import purge_on_erasure\n" + source,
        "svc",
        roles,
        asyncapi._topic_constants(),
        helpers,
    )
    assert roles.sends == {
        topics.CHUNKS_CREATED.name: {"svc"},
        topics.CHUNKS_EMBEDDED.dlq: {"svc"},
        topics.AUDIT_RECORDED.name: {"svc"},  # a publish inside a handler is a send too
    }
    assert roles.receives == {
        topics.DOCUMENTS_SUBMITTED.name: {"svc"},
        topics.CHUNKS_CREATED.dlq: {"svc"},
        topics.TENANTS_DELETED.name: {"svc"},
        topics.ERASURES_REQUESTED.name: {"svc"},
    }
    assert roles.receives_mirrored == {
        topics.CHUNKS_EMBEDDED.name: {"svc"},
        topics.ERASURES_REQUESTED.name: {"svc"},
    }
    assert roles.checked_producers == {topics.DOCUMENTS_SUBMITTED.name}


def test_the_scan_follows_the_shared_core_helpers_a_service_calls() -> None:
    core = """
from isthmus_core.contracts import topics
def purge_on_erasure(module, peers, clears):
    return _purge_on(topics.ERASURES_REQUESTED, module, peers, clears)
def purge_on_deletion(module, peers, clears):
    return _purge_on(topics.DOCUMENTS_DELETED, module, peers, clears)
def _purge_on(spec, module, peers, clears):
    return [subscribe(spec, "g", f), *replica_subscriptions(spec, "g", peers, f, service=module)]
def audit_somewhere(bus, event):
    return publish_event(bus, topics.AUDIT_RECORDED, event)
def unrelated(x):
    return x
"""
    by_const = asyncapi._topic_constants()
    helpers = asyncapi.scan_helpers([core], by_const)
    assert set(helpers) == {"purge_on_erasure", "purge_on_deletion", "_purge_on", "audit_somewhere"}
    assert helpers["_purge_on"].on_argument == {"receive", "mirrored"}
    assert helpers["purge_on_deletion"].fixed == {
        ("receive", topics.DOCUMENTS_DELETED.name),
        ("mirrored", topics.DOCUMENTS_DELETED.name),
    }
    service = """
from isthmus_core.bus.purge import purge_on_deletion
subs = [*purge_on_deletion("svc", peers, clears), *purge_on_erasure("svc", peers, clears)]
"""
    roles = asyncapi.Roles()
    asyncapi.scan_source(service, "svc", roles, by_const, helpers)
    # purge_on_erasure is not imported from isthmus_core here: a function of the service's own
    assert roles.receives == {topics.DOCUMENTS_DELETED.name: {"svc"}}
    assert roles.receives_mirrored == {topics.DOCUMENTS_DELETED.name: {"svc"}}
    assert roles.sends == {}


def test_the_scan_follows_aliases_and_imported_constants() -> None:
    source = """
from isthmus_core.contracts import topics as t
from isthmus_core.contracts.topics import CHUNKS_INDEXED, USAGE_RECORDED as USAGE
subs = [subscribe(t.CHUNKS_CREATED, "g", f), Subscription(CHUNKS_INDEXED.dlq, "g", f)]
publish = publisher(bus, USAGE)
unrelated = publisher(bus, other.CHUNKS_EMBEDDED)
"""
    roles = asyncapi.Roles()
    asyncapi.scan_source(source, "svc", roles, asyncapi._topic_constants())
    assert roles.receives == {topics.CHUNKS_CREATED.name: {"svc"}, topics.CHUNKS_INDEXED.dlq: {"svc"}}
    assert roles.sends == {topics.USAGE_RECORDED.name: {"svc"}}


def test_the_document_is_valid_against_the_official_asyncapi_3_schema(
    tmp_path: Path, roles: asyncapi.Roles
) -> None:
    node = shutil.which("node")
    if node is None:
        missing_tool("Node.js is not installed: the AsyncAPI validator needs it (apt-get install nodejs npm)")
    modules = root() / ".tools" / "asyncapi" / "node_modules"
    if not (modules / "@asyncapi" / "parser").is_dir():
        missing_tool("@asyncapi/parser is not installed: run `make test-setup` (tools/tools.d/asyncapi.sh)")
    validator = root() / "tools" / "asyncapi" / "validate.cjs"
    generated = tmp_path / "asyncapi.yaml"
    generated.write_text(asyncapi.render(root(), roles), encoding="utf-8")
    # a broken document is refused, so a pass means something
    broken = tmp_path / "broken.yaml"
    broken.write_text(generated.read_text().replace('action: "receive"', 'action: "subscribe"', 1))
    env = {**os.environ, "NODE_PATH": str(modules)}
    ok = subprocess.run(
        [node, str(validator), str(generated)], capture_output=True, text=True, timeout=120, env=env
    )
    assert ok.returncode == 0, ok.stderr[-4000:]
    bad = subprocess.run(
        [node, str(validator), str(broken)], capture_output=True, text=True, timeout=120, env=env
    )
    assert (
        bad.returncode == 1 and '"action" property must be equal to one of the allowed values' in bad.stderr
    )
