"""The AsyncAPI 3.0 document of the bus: every topic Isthmus reads or writes, generated from the code.

``python -m isthmus_core.contracts.asyncapi`` (``make asyncapi``) writes ``docs/asyncapi.yaml``; a unit
test fails when the committed file differs from what this module generates, and validates it against
the official AsyncAPI 3.0 schema (``@asyncapi/parser``). What comes from where:

* **channels**: every topic of :data:`~isthmus_core.contracts.topics.ALL_TOPICS`, its ``.dlq`` twin and,
  for the topics in :data:`~isthmus_core.regions.REPLICATED_TOPICS`, the copies MirrorMaker 2 delivers
  from another region (``{region}.<topic>``), with the Kafka bindings the bus creates them with
  (partitions, ``retention.ms``, ``max.message.bytes``, ``message.timestamp.type`` on topics stamped by
  the broker: :func:`isthmus_core.bus.kafka.new_topics`);
* **messages**: the JSON Schema of each pydantic event (validation mode: what a consumer accepts),
  the partition key (:func:`~isthmus_core.contracts.topics.partition_key`), the headers the bus sets
  (:func:`isthmus_core.bus.typed.publish_event`), the dead-letter headers (:mod:`isthmus_core.bus.port`)
  and, on topics whose consumer checks its producers, the ``authorization`` header
  (:mod:`isthmus_core.auth.producers`);
* **operations**, from the platform's point of view, per service: read from the services' source by
  :func:`scan_roles` (the calls ``subscribe``/``Subscription``/``replica_subscriptions`` receive,
  ``publisher``/``publish_event`` send, ``dead_letterer`` sends to a DLQ, ``checked_producer`` marks a
  topic external producers write to), plus what the shared core functions a service calls do for it
  (:func:`scan_helpers`: ``purge_on_erasure`` subscribes to the erasures, local and mirrored) and the
  audit records every process publishes. A receiving service also sends what it
  cannot handle to the topic's DLQ (the bus does, :mod:`isthmus_core.bus.delivery`).

The schemas' property descriptions are the contracts' own ``#:`` field comments (:func:`field_comments`).
Nothing happens at import; files are read only when called (:func:`scan_roles` reads the services'
sources, :func:`field_comments` the contracts', :func:`main` writes the two documents).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from isthmus_core.auth.producers import H_AUTHORIZATION
from isthmus_core.bus.delivery import MAX_ERROR_HEADER_CHARS, MAX_MESSAGE_BYTES
from isthmus_core.bus.kafka import new_topics
from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
)
from isthmus_core.bus.typed import CONTENT_TYPE_JSON, H_CONTENT_TYPE, H_EVENT_TYPE, H_TENANT
from isthmus_core.contracts.events import DeletionRequested, DocumentSubmitted, Event
from isthmus_core.contracts.ids import TENANT_ID_PATTERN
from isthmus_core.contracts.topics import (
    ALL_TOPICS,
    AUDIT_RECORDED,
    DEAD_LETTERS_REPLAYED,
    DLQ_SUFFIX,
    AnyTopic,
)
from isthmus_core.regions import REPLICATED_TOPICS, SEPARATOR

#: the services, as ``isthmus run --target`` names them (each in ``services/<name>/isthmus_<name>``)
SERVICES: tuple[str, ...] = (
    "ingestion",
    "embedding",
    "retrieval",
    "guardrail",
    "agent-orchestrator",
    "evaluation",
)
#: calls whose topic argument a service receives from / sends to (see :func:`scan_roles`)
RECEIVE_CALLS = frozenset({"subscribe", "Subscription", "event_handler"})
MIRRORED_RECEIVE_CALLS = frozenset({"replica_subscriptions"})
SEND_CALLS = frozenset({"publisher", "publish_event"})
DEAD_LETTER_CALLS = frozenset({"dead_letterer", "dead_letter_event"})
PRODUCER_CHECK_CALLS = frozenset({"checked_producer"})
_BASE_KINDS: Mapping[str, str] = {
    **dict.fromkeys(RECEIVE_CALLS, "receive"),
    **dict.fromkeys(MIRRORED_RECEIVE_CALLS, "mirrored"),
    **dict.fromkeys(SEND_CALLS, "send"),
    **dict.fromkeys(DEAD_LETTER_CALLS, "dead-letter"),
    **dict.fromkeys(PRODUCER_CHECK_CALLS, "producer"),
}
#: every process publishes its audit records (isthmus_core.auth.audit) and the replays of dead letters
#: (isthmus_core.bus.admin, OperationsService); the runtime creates both topics
EVERY_SERVICE_SENDS: tuple[str, ...] = (AUDIT_RECORDED.name, DEAD_LETTERS_REPLAYED.name)

KAFKA_BINDING_VERSION = "0.5.0"
#: the tag of the channels (and their consuming operations) producers outside Isthmus write to
PRODUCER_TAG = "producer-contract"
_MIRROR_PARAMETER = "region"


@dataclass
class Roles:
    """Who does what on which topic (topic names; DLQs as ``<topic>.dlq``)."""

    receives: dict[str, set[str]] = field(default_factory=dict)  # topic -> services
    receives_mirrored: dict[str, set[str]] = field(default_factory=dict)
    sends: dict[str, set[str]] = field(default_factory=dict)
    #: topics external producers write to, whose consumer checks the producer's token
    checked_producers: set[str] = field(default_factory=set)

    def add(self, kind: str, topic: str, service: str) -> None:
        if kind == "producer":
            self.checked_producers.add(topic)
            return
        table = {"receive": self.receives, "mirrored": self.receives_mirrored, "send": self.sends}[kind]
        table.setdefault(topic, set()).add(service)


# ---------------------------------------------------------------------------------------------- scan


@dataclass(frozen=True)
class _Names:
    """How one module names the topic registry (module aliases such as ``topics``, imported constants)
    and which functions of shared core code it may call (imported from ``isthmus_core``, or its own)."""

    modules: frozenset[str]
    constants: Mapping[str, AnyTopic]
    helpers: frozenset[str]


def _names(tree: ast.Module, by_const: Mapping[str, AnyTopic], local: Iterable[str] = ()) -> _Names:
    modules = {"topics"}
    constants: dict[str, AnyTopic] = {}
    helpers = set(local)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module == "isthmus_core.contracts":
            modules.update(a.asname or a.name for a in node.names if a.name == "topics")
        elif node.module == "isthmus_core.contracts.topics":
            constants.update({a.asname or a.name: by_const[a.name] for a in node.names if a.name in by_const})
        if node.module.split(".")[0] == "isthmus_core":
            helpers.update(a.name for a in node.names if a.asname is None)
    return _Names(frozenset(modules), constants, frozenset(helpers))


def _spec_of(node: ast.AST, names: _Names, by_const: Mapping[str, AnyTopic]) -> AnyTopic | None:
    """The topic ``node`` names: ``topics.X`` (or an alias of the module) or an imported constant."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in names.modules
    ):
        return by_const.get(node.attr)
    if isinstance(node, ast.Name):
        return names.constants.get(node.id)
    return None


def _topic_refs(node: ast.AST, names: _Names, by_const: Mapping[str, AnyTopic]) -> Iterable[tuple[str, bool]]:
    """The topics named inside ``node`` (``X``, ``X.name``, ``X.dlq``): (topic name, is dlq)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "dlq":
            spec = _spec_of(sub.value, names, by_const)
            if spec is not None:
                yield spec.dlq, True
                continue
        spec = _spec_of(sub, names, by_const)
        if spec is not None:
            yield spec.name, False


def _call_name(call: ast.Call) -> str | None:
    fn = call.func
    if isinstance(fn, ast.Name):
        return fn.id
    if isinstance(fn, ast.Attribute):
        return fn.attr
    return None


@dataclass
class Helper:
    """What a shared core function (``purge_on_erasure``, ``_purge_on``) does on the bus for its caller."""

    #: kinds applied to the topic it is given (``_purge_on(spec, ...)``: receive, mirrored)
    on_argument: set[str] = field(default_factory=set)
    #: (kind, topic) on topics it names itself (``purge_on_erasure``: erasures, local and mirrored)
    fixed: set[tuple[str, str]] = field(default_factory=set)


_PARAM = "\0argument"


def _resolve(kind: str, topic: str, is_dlq: bool) -> list[tuple[str, str]]:
    if kind == "dead-letter":
        return [("send", topic if is_dlq else topic + DLQ_SUFFIX)]
    if kind == "mirrored" and is_dlq:
        return []  # mirrored DLQs are not replicated
    return [(kind, topic)]


def _uses(
    node: ast.AST,
    names: _Names,
    by_const: Mapping[str, AnyTopic],
    helpers: Mapping[str, Helper],
    params: frozenset[str] = frozenset(),
) -> Iterable[tuple[str, str]]:
    """(kind, topic) of every bus call inside ``node``; the topic is ``_PARAM`` (and the kind unresolved)
    when the call is given one of ``params`` (the enclosing helper's argument)."""
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        name = _call_name(call)
        if name is None:
            continue
        if name in _BASE_KINDS:
            kinds = {_BASE_KINDS[name]}
        elif name in helpers and name in names.helpers:
            yield from helpers[name].fixed
            kinds = helpers[name].on_argument
        else:
            continue
        # the topic is among the first arguments (``publisher(bus, spec)``, ``subscribe(spec, ...)``);
        # later ones are handlers, which may name other topics
        for arg in call.args[:2]:
            if isinstance(arg, ast.Name) and arg.id in params:
                yield from ((k, _PARAM) for k in sorted(kinds))
                break
            refs = list(_topic_refs(arg, names, by_const))
            if refs:
                topic, is_dlq = next(((t, d) for t, d in refs if d), refs[0])
                for k in sorted(kinds):
                    yield from _resolve(k, topic, is_dlq)
                break


def scan_source(
    source: str,
    service: str,
    roles: Roles,
    by_const: Mapping[str, AnyTopic],
    helpers: Mapping[str, Helper] | None = None,
) -> None:
    """Add what one module of ``service`` subscribes and publishes to ``roles`` (``helpers``: the shared
    core functions it may call, from :func:`scan_helpers`)."""
    tree = ast.parse(source)
    for kind, topic in _uses(tree, _names(tree, by_const), by_const, helpers or {}):
        roles.add(kind, topic, service)


def scan_helpers(sources: Iterable[str], by_const: Mapping[str, AnyTopic]) -> dict[str, Helper]:
    """The module-level functions of shared core code (``sources``) that subscribe or publish for their
    caller, on the topic they are given or on their own; helpers calling helpers are followed."""
    functions: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, _Names]] = []
    for source in sources:
        tree = ast.parse(source)
        local = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        names = _names(tree, by_const, local={f.name for f in local})
        functions += [(f, names) for f in local if f.name not in _BASE_KINDS]
    helpers: dict[str, Helper] = {}
    for _ in range(8):  # to a fixed point: each pass follows one more level of helpers calling helpers
        found: dict[str, Helper] = {}
        for fn, names in functions:
            params = frozenset(a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs])
            uses = list(_uses(fn, names, by_const, helpers, params))
            if uses:
                found[fn.name] = Helper(
                    on_argument={k for k, t in uses if t == _PARAM},
                    fixed={(k, t) for k, t in uses if t != _PARAM},
                )
        if found == helpers:
            break
        helpers = found
    return helpers


def _python_files(package: Path, skip: Sequence[str] = ()) -> list[Path]:
    return [
        p
        for p in sorted(package.rglob("*.py"))
        if not {"tests", "testing"} & set(p.relative_to(package).parts)
        and p.relative_to(package).as_posix() not in skip
    ]


def scan_roles(root: Path, services: Sequence[str] = SERVICES) -> Roles:
    """The roles of every service, read from ``root/services/<svc>/isthmus_<svc>/**.py`` (tests excluded),
    with what the shared core functions they call do for them (``root/services/core/isthmus_core``)."""
    by_const = _topic_constants()
    core = root / "services" / "core" / "isthmus_core"
    if not core.is_dir():
        raise FileNotFoundError(f"{core} not found: run from the repository root (or give --root)")
    helpers = scan_helpers(
        (p.read_text(encoding="utf-8") for p in _python_files(core, skip=["contracts/asyncapi.py"])), by_const
    )
    roles = Roles()
    for service in services:
        package = root / "services" / service / f"isthmus_{service.replace('-', '_')}"
        if not package.is_dir():
            raise FileNotFoundError(f"{package} not found: run from the repository root (or give --root)")
        for path in _python_files(package):
            scan_source(path.read_text(encoding="utf-8"), service, roles, by_const, helpers)
        for topic in EVERY_SERVICE_SENDS:
            roles.add("send", topic, service)
    # a service may subscribe to the mirrored copies of a topic should it cross regions; only the
    # topics MirrorMaker 2 replicates have any
    replicated = {t.name for t in REPLICATED_TOPICS}
    roles.receives_mirrored = {t: s for t, s in roles.receives_mirrored.items() if t in replicated}
    return roles


def _topic_constants() -> dict[str, AnyTopic]:
    from isthmus_core.contracts import topics

    return {name: value for name, value in vars(topics).items() if any(value is t for t in ALL_TOPICS)}


# ---------------------------------------------------------------------------------------------- build


def channel_id(topic: str) -> str:
    """``isthmus.documents.submitted.v1`` -> ``documentsSubmittedV1`` (``.dlq`` -> ``...Dlq``)."""
    parts = [p for p in re.split(r"[.\-_]", topic) if p and p != "isthmus"]
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _mirrored_id(topic: str) -> str:
    return channel_id(topic) + "Mirrored"


def _op_id(service: str, action: str, chan: str) -> str:
    return f"{channel_id(service)}_{action}_{chan}"


def _key_schema(spec: AnyTopic) -> dict[str, Any]:
    tenant = TENANT_ID_PATTERN.strip("^$")
    if spec.key == "tenant_id/document_id":
        return {
            "type": "string",
            "description": (
                "`<tenant_id>/<document_id>` (isthmus_core.contracts.topics.partition_key): every event of "
                "one document lands in one partition, in order. Without a document_id, the tenant id alone."
            ),
            "pattern": f"^{tenant}(/.+)?$",
            "examples": ["acme/handbook-2024"],
        }
    return {
        "type": "string",
        "description": "`<tenant_id>` (isthmus_core.contracts.topics.partition_key): per-tenant order.",
        "pattern": f"^({tenant})?$",
        "examples": ["acme"],
    }


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _bus_header_properties() -> dict[str, Any]:
    return {
        H_CONTENT_TYPE: _string("the value's media type", const=CONTENT_TYPE_JSON),
        H_EVENT_TYPE: _string(
            "the event's class name (the payload schema's title)", examples=["DocumentSubmitted"]
        ),
        H_TENANT: _string("the event's tenant_id", pattern=TENANT_ID_PATTERN),
        "traceparent": _string(
            "W3C trace context of the producer (also in the payload's trace_context); a consumer continues "
            "the trace from it",
            pattern="^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        ),
        "tracestate": _string("W3C trace state, when the producer has one"),
    }


def _dead_letter_header_properties() -> dict[str, Any]:
    return {
        H_ERROR_CLASS: _string(
            "the class of the error that dead-lettered the message (InvalidArgument: the payload is not "
            "a valid event; Unauthenticated / PermissionDenied: the producer check; else what the handler "
            "raised)"
        ),
        H_ERROR_MESSAGE: _string(
            f"the reason, as the consumer reported it (at most {MAX_ERROR_HEADER_CHARS} characters)",
            maxLength=MAX_ERROR_HEADER_CHARS,
        ),
        H_SOURCE_TOPIC: _string("the topic the message was consumed from"),
        H_SOURCE_PARTITION: _string(
            "its partition (-1: split out of a message, not copied)", pattern="^-?[0-9]+$"
        ),
        H_SOURCE_OFFSET: _string("its offset (-1: split out of a message, not copied)", pattern="^-?[0-9]+$"),
        H_ATTEMPTS: _string("how many times the handler ran it", pattern="^[0-9]+$"),
        H_GROUP: _string("the consumer group that gave up on it (which service)"),
    }


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comments written above the fields of ``model`` and its bases (the contracts document
    their fields that way), by field name."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):  # no source (e.g. a model made at run time)
            continue
        comment: list[str] = []
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("#:"):
                comment.append(text[2:].strip())
                continue
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", text)
            if match and comment and match.group(1) in cls.model_fields:
                found[match.group(1)] = " ".join(comment)
            comment = []
    return found


def _describe_fields(schemas: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    for model in models:
        schema = schemas.get(model.__name__)
        if schema is None:
            continue
        for name, text in field_comments(model).items():
            prop = schema.get("properties", {}).get(name)
            if prop is not None and "description" not in prop:
                prop["description"] = text


def _models(payloads: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    """The payload models and every model they are made of."""
    seen: dict[str, type[BaseModel]] = {}
    todo = list(payloads)
    while todo:
        model = todo.pop()
        if model.__name__ in seen:
            continue
        seen[model.__name__] = model
        for info in model.model_fields.values():
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    todo.append(arg)
    return [seen[k] for k in sorted(seen)]


def _schemas() -> dict[str, Any]:
    payloads = sorted({spec.payload for spec in ALL_TOPICS}, key=lambda m: m.__name__)
    _, defs = models_json_schema(
        [(m, "validation") for m in payloads], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(sorted(defs.get("$defs", {}).items()))
    _describe_fields(schemas, _models(payloads))
    bus = _bus_header_properties()
    schemas["BusHeaders"] = {
        "type": "object",
        "title": "BusHeaders",
        "description": (
            "Kafka headers the bus sets on every event it publishes (values are UTF-8 strings). A consumer "
            "does not require them: the payload alone is the event."
        ),
        "properties": bus,
    }
    schemas["ProducerHeaders"] = {
        "type": "object",
        "title": "ProducerHeaders",
        "description": (
            "Kafka headers of a record an external producer writes. With authentication on "
            "([auth] issuer set), `authorization` is required: the consumer verifies the token at the "
            "record's broker timestamp and requires documents.write in the event's tenant; otherwise the "
            "record is dead-lettered (without the token) and audited. The other headers are optional."
        ),
        "properties": {
            H_AUTHORIZATION: _string(
                "`Bearer <JWT>` of a principal with documents.write in the event's tenant (the same tokens "
                "and issuer as gRPC callers)",
                pattern="^[Bb]earer .+$",
            ),
            **bus,
        },
    }
    schemas["DeadLetterHeaders"] = {
        "type": "object",
        "title": "DeadLetterHeaders",
        "description": (
            "A dead letter keeps the original headers (but `authorization`, never copied) and adds these."
        ),
        "properties": {**bus, **_dead_letter_header_properties()},
        "required": [
            H_ERROR_CLASS,
            H_ERROR_MESSAGE,
            H_SOURCE_TOPIC,
            H_SOURCE_PARTITION,
            H_SOURCE_OFFSET,
            H_ATTEMPTS,
            H_GROUP,
        ],
    }
    return schemas


def _channel_bindings(spec: AnyTopic, *, dlq: bool) -> dict[str, Any]:
    # the configs the bus creates the topics with (retention.ms overridable per deployment:
    # [common] kafka_retention_ms)
    own, dead = new_topics([spec], dlq_partitions=1, replication_factor=1, retention_ms=None)
    configs: dict[str, str] = dict((dead if dlq else own).topic_configs)
    topic_configuration: dict[str, Any] = {
        "cleanup.policy": ["delete"],
        "retention.ms": int(configs["retention.ms"]),
        "max.message.bytes": int(configs["max.message.bytes"]),
    }
    if "message.timestamp.type" in configs:
        topic_configuration["message.timestamp.type"] = configs["message.timestamp.type"]
    binding: dict[str, Any] = {"topic": spec.dlq if dlq else spec.name}
    if not dlq:  # a DLQ's partitions are a deployment setting (kafka_dlq_partitions)
        binding["partitions"] = spec.partitions
    binding["topicConfiguration"] = topic_configuration
    binding["bindingVersion"] = KAFKA_BINDING_VERSION
    return {"kafka": binding}


_EXAMPLE_AT = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def _producer_examples(spec: AnyTopic) -> list[dict[str, Any]]:
    """Examples of the events producers outside Isthmus send (documents to ingest, deletions), made with
    the event model itself, so they are valid events (the unit tests check them against the schema)."""
    common: dict[str, Any] = {
        "tenant_id": "acme",
        "event_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "occurred_at": _EXAMPLE_AT,
        "document_id": "handbook-2024",
    }
    if spec.payload is DocumentSubmitted:
        body = b"# Handbook\n\nWelcome to Acme.\n"
        event: Event = DocumentSubmitted(
            **common,
            idempotency_key=f"acme/handbook-2024/{hashlib.sha256(body).hexdigest()}",
            filename="handbook.md",
            content_type="text/markdown",
            content=body,
            metadata={"team": "hr"},
        )
        summary = "A Markdown document sent inline (content is base64)"
    elif spec.payload is DeletionRequested:
        event = DeletionRequested(
            **common, idempotency_key="acme/handbook-2024/delete/1", reason="superseded by the 2025 edition"
        )
        summary = "Delete a document (every version)"
    else:
        return []
    return [
        {
            "name": f"{spec.payload.__name__}Example",
            "summary": summary,
            "headers": {
                H_AUTHORIZATION: "Bearer <JWT with documents.write in acme>",
                H_CONTENT_TYPE: CONTENT_TYPE_JSON,
            },
            "payload": event.model_dump(mode="json"),
        }
    ]


def _record_limit() -> int:
    """The topics' ``max.message.bytes`` (the value limit plus room for the key and headers)."""
    (own, _) = new_topics(ALL_TOPICS[:1], dlq_partitions=1, replication_factor=1, retention_ms=None)
    return int(own.topic_configs["max.message.bytes"])


def _message(spec: AnyTopic, checked: bool) -> dict[str, Any]:
    model = spec.payload
    doc = (model.__doc__ or "").strip()
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "summary": doc.splitlines()[0] if doc else model.__name__,
        "contentType": CONTENT_TYPE_JSON,
        "headers": {"$ref": "#/components/schemas/" + ("ProducerHeaders" if checked else "BusHeaders")},
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"kafka": {"key": _key_schema(spec), "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    examples = _producer_examples(spec)
    if examples:
        message["examples"] = examples
    return message


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A message a consumer gave up on: the original value and key, unchanged, and why.",
        "description": (
            "The value is the original bytes (normally the source topic's event as JSON; possibly anything, "
            "which may be why it is here). `isthmus dlq list <topic>` shows them; `isthmus dlq replay "
            "<topic>` re-drives each to its source topic once."
        ),
        "contentType": CONTENT_TYPE_JSON,
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original value, unchanged"},
    }


def _message_refs(name: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/messages/{name}"}}


def build_document(roles: Roles, specs: Sequence[AnyTopic] = ALL_TOPICS) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a plain dict, keys in a fixed order)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    replicated = {t.name for t in REPLICATED_TOPICS}
    producer_channels = {channel_id(t) for t in roles.checked_producers}

    def operation(service: str, action: str, chan: str, message: str, summary: str) -> None:
        tags: list[dict[str, str]] = [{"name": service}]
        if action == "receive" and chan in producer_channels:
            tags.append({"$ref": f"#/components/tags/{PRODUCER_TAG}"})
        operations[_op_id(service, action, chan)] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{chan}"},
            "summary": summary,
            "tags": tags,
            "messages": [{"$ref": f"#/channels/{chan}/messages/{message}"}],
        }

    messages["DeadLetter"] = _dead_letter_message()
    for spec in specs:
        checked = spec.name in roles.checked_producers
        name = spec.payload.__name__
        messages.setdefault(name, _message(spec, checked))
        cid = channel_id(spec.name)
        producers = sorted(roles.sends.get(spec.name, set()))
        consumers = sorted(roles.receives.get(spec.name, set()))
        who = [f"Written by: {', '.join(producers) or 'no service'}."]
        if checked:
            who = [
                "Written by producers outside Isthmus (the producer contract, docs/events.md)"
                + (f" and by {', '.join(producers)}" if producers else "")
                + "; with authentication on, each record needs a producer token (header authorization)."
            ]
        who.append(f"Read by: {', '.join(consumers) or 'no service (an audit/analytics trail)'}.")
        if spec.broker_timestamps:
            who.append("The broker stamps each record (LogAppendTime): a producer cannot backdate it.")
        channels[cid] = {
            "address": spec.name,
            "title": spec.name,
            "description": " ".join(who),
            "messages": _message_refs(name),
            "bindings": _channel_bindings(spec, dlq=False),
        }
        if checked:
            channels[cid]["tags"] = [{"$ref": f"#/components/tags/{PRODUCER_TAG}"}]
        dlq_id = channel_id(spec.dlq)
        channels[dlq_id] = {
            "address": spec.dlq,
            "title": spec.dlq,
            "description": (
                f"Dead letters of {spec.name}: what a consumer could not handle (after its retries, or at "
                "once for an invalid payload or a refused producer), with the reason in headers."
            ),
            "messages": _message_refs("DeadLetter"),
            "bindings": _channel_bindings(spec, dlq=True),
        }
        if spec.name in replicated:
            mid = _mirrored_id(spec.name)
            channels[mid] = {
                "address": f"{{{_MIRROR_PARAMETER}}}{SEPARATOR}{spec.name}",
                "title": f"<region>{SEPARATOR}{spec.name}",
                "description": (
                    f"{spec.name} as MirrorMaker 2 copies it from another region (multi-region deployments: "
                    "docs/multi-region.md); same events, key and partitions."
                ),
                "parameters": {_MIRROR_PARAMETER: {"description": "the source region's name (a DNS label)"}},
                "messages": _message_refs(name),
            }
        for svc in producers:
            operation(svc, "send", cid, name, f"{svc} publishes {name} events.")
        for svc in consumers:
            operation(svc, "receive", cid, name, f"{svc} consumes {name} events.")
            operation(
                svc,
                "send",
                dlq_id,
                "DeadLetter",
                f"{svc} dead-letters the {spec.name} records it cannot handle.",
            )
        for svc in sorted(roles.sends.get(spec.dlq, set()) - set(consumers)):
            operation(svc, "send", dlq_id, "DeadLetter", f"{svc} dead-letters part of a {name} it consumed.")
        for svc in sorted(roles.receives.get(spec.dlq, set())):
            operation(svc, "receive", dlq_id, "DeadLetter", f"{svc} reads the dead letters of {spec.name}.")
        if spec.name in replicated:
            for svc in sorted(roles.receives_mirrored.get(spec.name, set())):
                operation(
                    svc,
                    "receive",
                    _mirrored_id(spec.name),
                    name,
                    f"{svc} consumes {name} mirrored from peers.",
                )

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Isthmus events",
            "version": "1.0.0",
            "description": (
                "Every Kafka topic Isthmus reads or writes, generated from the pydantic contracts "
                "(isthmus_core.contracts) by `make asyncapi`; do not edit by hand. Operations are from the "
                "platform's point of view, one per service (tag) and topic; the channels tagged "
                f"`{PRODUCER_TAG}` are the ones producers outside Isthmus write to. The producer contract "
                "(keys, headers, authentication, size limits, versioning rules, examples) is docs/events.md."
            ),
        },
        "defaultContentType": CONTENT_TYPE_JSON,
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": (
                    "The deployment's Kafka (ISTHMUS_KAFKA_BOOTSTRAP_SERVERS). Connection security per "
                    "deployment ([common] kafka_security_protocol): PLAINTEXT, SSL (optionally mutual TLS), "
                    "SASL_SSL with PLAIN, SCRAM-SHA-256/512 or AWS_MSK_IAM. An event's JSON value is at most "
                    f"{MAX_MESSAGE_BYTES} bytes; topics accept {_record_limit()} bytes per record "
                    "(room for the key and headers)."
                ),
                "variables": {
                    "bootstrap": {"default": "localhost:9092", "description": "host:port of a broker"}
                },
                "security": [
                    {"$ref": "#/components/securitySchemes/saslScram256"},
                    {"$ref": "#/components/securitySchemes/saslScram512"},
                    {"$ref": "#/components/securitySchemes/saslPlain"},
                    {"$ref": "#/components/securitySchemes/mutualTls"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _schemas(),
            "messages": messages,
            "tags": {
                PRODUCER_TAG: {
                    "name": PRODUCER_TAG,
                    "description": "A topic producers outside Isthmus write to (docs/events.md)",
                }
            },
            "securitySchemes": {
                "saslScram256": {"type": "scramSha256", "description": "SASL_SSL with SCRAM-SHA-256"},
                "saslScram512": {"type": "scramSha512", "description": "SASL_SSL with SCRAM-SHA-512"},
                "saslPlain": {
                    "type": "plain",
                    "description": "SASL_SSL with PLAIN (or SASL_PLAINTEXT in tests)",
                },
                "mutualTls": {"type": "X509", "description": "SSL with a client certificate"},
            },
        },
    }


# ---------------------------------------------------------------------------------------------- YAML

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$\-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _key(k: str) -> str:
    return k if _PLAIN_KEY.match(k) and k.lower() not in _YAML_WORDS else json.dumps(k)


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of JSON-like data (dicts keep their order; strings double-quoted): deterministic,
    and readable without a YAML library (none is a dependency of isthmus-core)."""
    return "".join(_lines(value, indent))


def _lines(value: Any, indent: int) -> Iterable[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, Mapping) and v:
                yield f"{pad}{_key(k)}:\n"
                yield from _lines(v, indent + 2)
            elif isinstance(v, list) and v:
                yield f"{pad}{_key(k)}:\n"
                yield from _lines(v, indent + 2)
            else:
                yield f"{pad}{_key(k)}: {_empty_or_scalar(v)}\n"
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping | list) and item:
                first, *rest = list(_lines(item, indent + 2))
                yield f"{pad}- {first.lstrip()}"
                yield from rest
            else:
                yield f"{pad}- {_empty_or_scalar(item)}\n"
    else:
        yield f"{pad}{_scalar(value)}\n"


def _empty_or_scalar(v: Any) -> str:
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return _scalar(v)


HEADER = "# Generated by `make asyncapi` (isthmus_core.contracts.asyncapi) from the code: do not edit.\n"

# ---------------------------------------------------------------------------------------------- docs

TABLE_BEGIN = "<!-- topics: generated by `make asyncapi` from the code; do not edit by hand -->"
TABLE_END = "<!-- /topics -->"


def _retention(ms: int) -> str:
    days, rest = divmod(ms, 24 * 3600 * 1000)
    return f"{days} days" if not rest else f"{ms} ms"


def topics_table(roles: Roles, specs: Sequence[AnyTopic] = ALL_TOPICS) -> str:
    """The markdown table of every topic for docs/events.md (between :data:`TABLE_BEGIN`/`TABLE_END`)."""
    rows = [
        "| Topic | Event | Key | Partitions | Retention | Written by | Read by |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        writers = sorted(roles.sends.get(spec.name, set()))
        if spec.name in roles.checked_producers:
            writers = ["**producers** (token checked)", *writers]
        readers = sorted(roles.receives.get(spec.name, set()))
        mirrored = sorted(roles.receives_mirrored.get(spec.name, set()))
        if mirrored:
            readers.append(f"mirrored copies: {', '.join(mirrored)}")
        stamp = " (broker time)" if spec.broker_timestamps else ""
        rows.append(
            f"| `{spec.name}`{stamp} | {spec.payload.__name__} | `{spec.key}` | {spec.partitions} | "
            f"{_retention(spec.retention_ms)} | {', '.join(writers) or '-'} | {', '.join(readers) or '-'} |"
        )
    return "\n".join(rows) + "\n"


def with_table(markdown: str, table: str) -> str:
    """``markdown`` with the text between the table markers replaced by ``table``."""
    start = markdown.find(TABLE_BEGIN)
    end = markdown.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {TABLE_BEGIN!r} and {TABLE_END!r} are missing")
    return markdown[: start + len(TABLE_BEGIN)] + "\n" + table + markdown[end:]


def render(root: Path, roles: Roles | None = None) -> str:
    """The text of docs/asyncapi.yaml for the repository at ``root`` (``roles``: already scanned)."""
    return HEADER + to_yaml(build_document(roles or scan_roles(root)))


def render_events_doc(root: Path, current: str, roles: Roles | None = None) -> str:
    """docs/events.md (``current``) with its topics table regenerated."""
    return with_table(current, topics_table(roles or scan_roles(root)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isthmus_core.contracts.asyncapi", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: .)")
    parser.add_argument("--output", type=Path, default=None, help="default: <root>/docs/asyncapi.yaml")
    parser.add_argument(
        "--events-doc",
        type=Path,
        default=None,
        help="its topics table is regenerated (default: <root>/docs/events.md)",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    args = parser.parse_args(argv)
    output = args.output or args.root / "docs" / "asyncapi.yaml"
    events = args.events_doc or args.root / "docs" / "events.md"
    roles = scan_roles(args.root)
    wanted = {output: render(args.root, roles)}
    if events.exists():
        wanted[events] = render_events_doc(args.root, events.read_text(encoding="utf-8"), roles)
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `make asyncapi`", file=sys.stderr)
        if not stale:
            print(f"{', '.join(str(p) for p in wanted)}: up to date")
        return 1 if stale else 0
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
