"""Typed gRPC client helpers for the CLI commands.

* :func:`connect` opens one channel to the platform and hands out typed stubs of every service;
* every channel (:func:`channel`, the regional client's too) carries the caller's bearer token when one
  is given: ``isthmus --token T …``, ``--token-file F``, or ``ISTHMUS_TOKEN`` / ``ISTHMUS_TOKEN_FILE``
  (:func:`use_token`, :func:`bearer`);
* :func:`run` runs a command's coroutine and turns any failure (gRPC status, bad settings, Kafka
  refusing) into one line on stderr and an exit code — never a traceback;
* upload and watch helpers for ``isthmus ingest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
from collections.abc import AsyncIterator, Collection, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from isthmus.ingestion.v1 import ingestion_pb2
from isthmus_cli.output import fail
from isthmus_core.errors import ConfigurationError, IsthmusError
from isthmus_core.grpc.status import quota_violations, retry_after_s

if TYPE_CHECKING:
    from grpc_health.v1.health_pb2_grpc import HealthStub

    from isthmus.agent_orchestrator.v1.agent_orchestrator_pb2_grpc import AgentOrchestratorServiceAsyncStub
    from isthmus.evaluation.v1.evaluation_pb2_grpc import EvaluationServiceAsyncStub
    from isthmus.guardrail.v1.guardrail_pb2_grpc import GuardrailServiceAsyncStub
    from isthmus.ingestion.v1.ingestion_pb2_grpc import IngestionServiceAsyncStub
    from isthmus.retrieval.v1.retrieval_pb2_grpc import RetrievalServiceAsyncStub
    from isthmus_core.bus.kafka_security import KafkaSecurity

T = TypeVar("T")

CHUNK = 1024 * 1024


@dataclass(slots=True)
class _Bearer:
    token: str | None = None
    given: bool = False


#: the token the command line gave (set once by the app's callback, before any command runs)
_BEARER = _Bearer()


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped), or :class:`ConfigurationError`."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the token file {path}: {exc}") from None
    if not token:
        raise ConfigurationError(f"the token file {path} is empty")
    return token


def use_token(token: str | None, token_file: Path | None = None) -> None:
    """The bearer token every call of this command carries (``--token`` wins over ``--token-file``)."""
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    _BEARER.token, _BEARER.given = (token.strip() or None) if token else None, True


def bearer() -> str | None:
    """The token calls carry: the one given on the command line, else ``ISTHMUS_TOKEN``, else the
    content of ``ISTHMUS_TOKEN_FILE`` (None: no token; fine while the platform's auth is off)."""
    if _BEARER.given:
        return _BEARER.token
    if token := os.environ.get("ISTHMUS_TOKEN", "").strip():
        return token
    if path := os.environ.get("ISTHMUS_TOKEN_FILE"):
        return read_token_file(Path(path))
    return None


def channel(endpoint: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to ``endpoint``; ``options`` add gRPC channel arguments (the regional client shortens
    the reconnect backoff so a region that returns is seen within a second). Every call on it carries
    the bearer token of :func:`bearer`, if any."""
    from isthmus_core.auth.outbound import StaticToken, bearer_interceptors

    token = bearer()
    return grpc.aio.insecure_channel(
        endpoint,
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), *options],
        interceptors=bearer_interceptors(StaticToken(token)) if token else None,
    )


@dataclass(frozen=True, slots=True)
class Stubs:
    """Typed stubs of every service, on one channel (stubs are cheap: made on access; the casts pick the
    asyncio typing of the generated stubs, which mypy cannot infer from an untyped channel)."""

    channel: grpc.aio.Channel

    @property
    def ingestion(self) -> IngestionServiceAsyncStub:
        from isthmus.ingestion.v1 import ingestion_pb2_grpc

        return cast("IngestionServiceAsyncStub", ingestion_pb2_grpc.IngestionServiceStub(self.channel))

    @property
    def retrieval(self) -> RetrievalServiceAsyncStub:
        from isthmus.retrieval.v1 import retrieval_pb2_grpc

        return cast("RetrievalServiceAsyncStub", retrieval_pb2_grpc.RetrievalServiceStub(self.channel))

    @property
    def agent_orchestrator(self) -> AgentOrchestratorServiceAsyncStub:
        from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc

        return cast(
            "AgentOrchestratorServiceAsyncStub",
            agent_orchestrator_pb2_grpc.AgentOrchestratorServiceStub(self.channel),
        )

    @property
    def evaluation(self) -> EvaluationServiceAsyncStub:
        from isthmus.evaluation.v1 import evaluation_pb2_grpc

        return cast("EvaluationServiceAsyncStub", evaluation_pb2_grpc.EvaluationServiceStub(self.channel))

    @property
    def guardrail(self) -> GuardrailServiceAsyncStub:
        from isthmus.guardrail.v1 import guardrail_pb2_grpc

        return cast("GuardrailServiceAsyncStub", guardrail_pb2_grpc.GuardrailServiceStub(self.channel))

    @property
    def health(self) -> HealthStub:
        from grpc_health.v1 import health_pb2_grpc

        return health_pb2_grpc.HealthStub(self.channel)


@contextlib.asynccontextmanager
async def connect(endpoint: str) -> AsyncIterator[Stubs]:
    """One channel to ``endpoint`` for the duration of a command."""
    async with channel(endpoint) as ch:
        yield Stubs(ch)


def rpc_error_text(exc: grpc.aio.AioRpcError | grpc.Call) -> str:
    """``CODE: details``; a tenant's quota names the quota (its ``QuotaFailure``) and a refusal says when
    to try again (its ``RetryInfo``)."""
    text = f"{exc.code().name}: {exc.details()}"
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return text
    delay = retry_after_s(exc)
    quotas = quota_violations(exc)
    if quotas:
        text += f" (quota {', '.join(subject for subject, _ in quotas)}"
        text += f": try again in {delay:.2f} s)" if delay is not None else ")"
    elif delay is not None:
        text += f" (the platform is busy: try again in {delay:.2f} s)"
    return text


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a failure is one line on stderr and exit 1 (bad settings: exit 2)."""
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            fail(f"cannot reach the platform ({exc.details()}); is 'isthmus run' (make run) started?")
        fail(rpc_error_text(exc))
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except IsthmusError as exc:  # e.g. Kafka unreachable or refusing the credentials, a missing topic
        fail(f"{exc.code.name}: {exc}")


def kafka_security(config: Path | None) -> KafkaSecurity:
    """The [common] Kafka security settings (TLS, SASL, MSK IAM) from env and the config file, so the Kafka
    tools connect like the services do."""
    from isthmus_core.settings import CommonSettings, load_all

    try:
        common = load_all([CommonSettings], config)["common"]
    except ConfigurationError as exc:
        fail(str(exc), 2)
    assert isinstance(common, CommonSettings)
    return common.kafka_security()


# --- documents -----------------------------------------------------------------------------------------


def status_name(status: int) -> str:
    """``DOCUMENT_STATUS_INDEXED`` → ``indexed``."""
    return ingestion_pb2.DocumentStatus.Name(status).removeprefix("DOCUMENT_STATUS_").lower()


async def upload_parts(
    tenant: str, path: Path, document_id: str = "", metadata: dict[str, str] | None = None
) -> AsyncIterator[ingestion_pb2.UploadRequest]:
    ctype = mimetypes.guess_type(path.name)[0] or ""
    yield ingestion_pb2.UploadRequest(
        header=ingestion_pb2.UploadHeader(
            tenant_id=tenant,
            filename=path.name,
            content_type="",
            document_id=document_id,
            metadata={"path": str(path), **({"mime": ctype} if ctype else {}), **(metadata or {})},
        )
    )
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            yield ingestion_pb2.UploadRequest(data=block)


def supported_extensions() -> list[str]:
    """The file extensions ingestion parses (its parser's table: one list, never out of step)."""
    from isthmus_ingestion.parsing import EXTENSIONS

    return sorted(EXTENSIONS)


@dataclass(frozen=True, slots=True)
class Collected:
    """A folder's files: those to upload, and those left out with the reason (never silently)."""

    files: list[Path]
    unsupported: list[tuple[Path, str]]


def collect_files(path: Path) -> Collected:
    """Every file under ``path`` (recursively): a supported extension is uploaded (the service still
    checks the bytes and says why it refuses one); any other file is listed with the reason. A single
    file named on the command line is always uploaded: the service tells what is wrong with it."""
    if path.is_file():
        return Collected([path], [])
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    supported = set(supported_extensions())
    files: list[Path] = []
    unsupported: list[tuple[Path, str]] = []
    for p in sorted(path.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix.lower() in supported:
            files.append(p)
        elif p.suffix:
            unsupported.append((p, f"unsupported file extension {p.suffix!r}"))
        else:
            unsupported.append((p, "no file extension: cannot tell its type"))
    return Collected(files, unsupported)


async def watch_until_terminal(
    stub: IngestionServiceAsyncStub, tenant: str, document_ids: Collection[str], within_s: float
) -> AsyncIterator[ingestion_pb2.Document]:
    """The documents' states as the ingestion service stores them (``WatchDocuments``: the current state,
    then each change), until every one is indexed or failed; after ``within_s`` seconds it just stops."""
    request = ingestion_pb2.WatchDocumentsRequest(
        tenant_id=tenant, document_ids=sorted(document_ids), until_terminal=True
    )
    try:
        async for event in stub.WatchDocuments(request, timeout=within_s):
            yield event.document
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
