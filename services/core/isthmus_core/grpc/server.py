"""The shared ``grpc.aio`` server: every module's servicers on one port, plus health and reflection.

* health: one entry per service name plus "" (overall); NOT_SERVING while starting and draining;
* reflection: every registered service, so ``grpcurl -plaintext host:port list`` works;
* an interceptor maps :class:`~isthmus_core.errors.IsthmusError` (and downstream gRPC failures) to a
  status with the reason, records metrics, and continues the caller's trace from the metadata;
* inside it, :class:`~isthmus_core.auth.interceptor.AuthInterceptor` authenticates the caller and
  authorizes the call (``UNAUTHENTICATED`` / ``PERMISSION_DENIED``; quotas as ``RESOURCE_EXHAUSTED``),
  and runs the handler as that caller (:mod:`isthmus_core.auth.context`); with authentication off
  (``auth=None`` or a stack without a verifier) every caller is anonymous and may do everything;
* inside it, :class:`~isthmus_core.grpc.admission.AdmissionInterceptor` refuses calls past a method
  family's capacity as ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` (see :mod:`isthmus_core.admission`)
  and records each call's deadline for the calls it makes (:mod:`isthmus_core.grpc.deadline`);
* inside it, :class:`~isthmus_core.grpc.validation.ValidationInterceptor` refuses bad requests (and bytes
  that do not decode) as ``INVALID_ARGUMENT`` before any handler runs;
* a client-streaming or bidi call that fails while the client is still writing answers once the client
  has finished (bounded, see :class:`_Requests`): otherwise grpc.aio clients report "INTERNAL: Internal
  error from Core" instead of the status. Handlers just raise; none drains its stream itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from pydantic import ValidationError

from isthmus_core.admission import Policy
from isthmus_core.auth.interceptor import AuthInterceptor
from isthmus_core.auth.stack import AuthStack
from isthmus_core.errors import IsthmusError, QuotaExceeded, ResourceExhausted
from isthmus_core.grpc.admission import AdmissionInterceptor
from isthmus_core.grpc.handlers import WrappingInterceptor, rewrap
from isthmus_core.grpc.status import retry_after_s, rich_status, to_grpc
from isthmus_core.grpc.validation import ValidationInterceptor, request_size
from isthmus_core.telemetry.metrics import GRPC_LATENCY, GRPC_REQUESTS
from isthmus_core.telemetry.tracing import extracted, tracer

log = structlog.get_logger("isthmus.grpc")

Registrar = Callable[[grpc.aio.Server], None]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: in the details of a ValidationError that escaped a handler: input the edge should have refused (a bug)
UNVALIDATED = "invalid input not refused at the edge"
#: bounds on reading what a client still sends after its request stream was refused (see _Requests)
DRAIN_MAX_BYTES = 256 * 1024 * 1024
DRAIN_MAX_MESSAGES = 100_000
DRAIN_MAX_S = 30.0
DRAIN_IDLE_S = 1.0


#: a server span marks its errors itself (:func:`_mark_span`): an expected refusal (a status with its
#: reason) sets the span's status without the cost of a formatted traceback; the abort that sends the
#: status is not recorded as an exception of its own
_SERVER_SPAN: dict[str, Any] = {
    "kind": trace.SpanKind.SERVER,
    "record_exception": False,
    "set_status_on_exception": False,
}


def _mark_span(exc: BaseException) -> None:
    span = trace.get_current_span()
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    if not isinstance(exc, IsthmusError | grpc.aio.AioRpcError):  # unexpected: keep its traceback
        span.record_exception(exc)


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, QuotaExceeded):  # a tenant's quota: which one, and when to retry if it refills
        GRPC_REQUESTS.labels(method, "RESOURCE_EXHAUSTED").inc()
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        await context.abort_with_status(rich_status(code, exc.reason, exc.retry_after_s, exc.violations))
    if isinstance(exc, ResourceExhausted) and exc.retry_after_s is not None:  # load shed: say when to retry
        GRPC_REQUESTS.labels(method, "RESOURCE_EXHAUSTED").inc()
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        await context.abort_with_status(rich_status(code, exc.reason, exc.retry_after_s))
    if isinstance(exc, IsthmusError):
        code = to_grpc(exc.code)
        GRPC_REQUESTS.labels(method, code.name).inc()
        await context.abort(code, exc.reason)
    if isinstance(exc, grpc.aio.AioRpcError):  # a downstream service failed: pass its status on
        GRPC_REQUESTS.labels(method, exc.code().name).inc()
        details = exc.details() or exc.code().name
        if (delay := retry_after_s(exc)) is not None:
            await context.abort_with_status(rich_status(exc.code(), details, delay))
        await context.abort(exc.code(), details)
    if isinstance(exc, ValidationError):
        # last resort: an event or model refused a value that reached it unchecked. The caller's input was
        # bad, so INVALID_ARGUMENT, but the edge should have said so first: logged as a bug, and marked in
        # the details so tests (tests/e2e/test_e2e_fuzz.py) can tell it from a proper refusal
        errors = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        GRPC_REQUESTS.labels(method, "INVALID_ARGUMENT").inc()
        log.error("unvalidated input reached a handler", method=method, model=exc.title, errors=errors)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{UNVALIDATED} ({exc.title}): {errors}")
    # anything else, OSError included, is INTERNAL: an OSError may be the server's own (disk full), and one
    # caused by input (a name too long) is a missing edge check to add, not a status to guess
    GRPC_REQUESTS.labels(method, "INTERNAL").inc()
    log.exception("unhandled error in gRPC method", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


#: the health entry of the process itself (liveness and startup probes): SERVING from start until it
#: stops, whatever its dependencies do — readiness ("" and the services' names) follows them, and a
#: dependency that is down must take the pod out of its Service, not get it restarted
LIVENESS = "isthmus.Liveness"


class _Requests:
    """The request stream of a call, as its handler reads it. If the handler ends with an error while the
    client is still writing, :meth:`drain` reads and drops what follows before the status is sent.

    Why: a grpc.aio client whose write fails because the call has already ended reports "INTERNAL:
    Internal error from Core" instead of the server's status (grpc/grpc#36066), so a refusal must wait
    until the client has finished writing. The wait is bounded: at most :data:`DRAIN_MAX_BYTES` and
    :data:`DRAIN_MAX_MESSAGES` more, within :data:`DRAIN_MAX_S` seconds, each message arriving within
    :data:`DRAIN_IDLE_S` of the previous one (a client waiting for an answer writes nothing: it gets the
    status once that gap has passed)."""

    def __init__(self, requests: AsyncIterable[Any]) -> None:
        self._it = aiter(requests)
        self._ended = False

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            self._ended = True
            raise
        except BaseException:
            self._ended = True  # a failed read (cancelled, stream broken): nothing left to drain
            raise

    async def drain(self, method: str) -> None:
        """Read and drop the rest of the stream, within the bounds (see the class docstring)."""
        if self._ended:
            return
        self._ended = True
        messages = size = 0
        try:
            async with asyncio.timeout(DRAIN_MAX_S):
                while messages < DRAIN_MAX_MESSAGES and size < DRAIN_MAX_BYTES:
                    async with asyncio.timeout(DRAIN_IDLE_S):
                        request = await anext(self._it)
                    messages += 1
                    size += request_size(request)
                stopped = "the bytes bound" if size >= DRAIN_MAX_BYTES else "the messages bound"
        except StopAsyncIteration:
            return  # the client has finished writing: it will see the status
        except TimeoutError:
            stopped = "a time bound"  # or a client waiting for an answer: it gets the status now
        except Exception as exc:  # the stream broke (the client went away): nothing more to read
            stopped = f"{type(exc).__name__}: {exc}"
        log.info(
            "stopped reading a refused request stream",
            method=method,
            messages=messages,
            bytes=size,
            stopped_by=stopped,
        )


def _wrap_unary(
    fn: Callable[..., Awaitable[Any]], method: str, streaming_in: bool = False
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if streaming_in:
            request = _Requests(request)
        t0 = time.perf_counter()
        with extracted({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}):
            with tracer().start_as_current_span(method, **_SERVER_SPAN):
                try:
                    result = await fn(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    _mark_span(exc)
                    if streaming_in:
                        await request.drain(method)
                    await _abort_for(exc, context, method)
                    raise
                finally:
                    GRPC_LATENCY.labels(method).observe(time.perf_counter() - t0)
        GRPC_REQUESTS.labels(method, "OK").inc()
        return result

    return handler


def _wrap_stream(fn: Callable[..., Any], method: str, streaming_in: bool = False) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if streaming_in:
            request = _Requests(request)
        with extracted({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}):
            with tracer().start_as_current_span(method, **_SERVER_SPAN):
                try:
                    async for item in fn(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    _mark_span(exc)
                    if streaming_in:
                        await request.drain(method)
                    await _abort_for(exc, context, method)
                    raise
        GRPC_REQUESTS.labels(method, "OK").inc()

    return handler


class ErrorInterceptor(WrappingInterceptor):
    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        def wrap(fn: Callable[..., Any], streaming_in: bool, streaming_out: bool) -> Callable[..., Any]:
            return (_wrap_stream if streaming_out else _wrap_unary)(fn, method, streaming_in)

        return rewrap(handler, wrap)


class GrpcServer:
    """Bind first (so clients in this process know the address), register servicers, then start."""

    def __init__(
        self, host: str, port: int, admission: Policy | None = None, auth: AuthStack | None = None
    ) -> None:
        self.auth = auth or AuthStack()
        self._server = grpc.aio.server(
            # the first is the outermost: errors raised by auth, admission and validation are mapped like
            # a handler's; a caller refused by auth costs no admission slot; admission refuses before
            # validation does any work (admission=None: no limits; auth=None: authentication off)
            interceptors=[
                ErrorInterceptor(),
                AuthInterceptor(self.auth),
                AdmissionInterceptor(admission),
                ValidationInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # without this, a second process silently shares the port and steals half the calls
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._names: list[str] = []
        try:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            raise OSError(f"could not bind gRPC server to {host}:{port}: {exc}") from exc
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {host}:{port} (port in use?)")
        self.address = f"{host}:{self.port}"

    def add(self, registrars: Sequence[Registrar], service_names: Sequence[str]) -> None:
        for register in registrars:
            register(self._server)
        self._names.extend(service_names)

    async def _set_all(self, status: int) -> None:
        for name in ["", LIVENESS, *self._names]:
            result = self._health.set(name, status)
            if result is not None:
                await result

    async def start(self) -> None:
        reflection.enable_server_reflection(
            [*self._names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()

    async def set_serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def set_status(self, names: Sequence[str], serving: bool) -> None:
        """Health of some services (readiness of one module); ``""`` is the server's overall health."""
        r = health_pb2.HealthCheckResponse
        status = r.SERVING if serving else r.NOT_SERVING
        for name in names:
            result = self._health.set(name, status)
            if result is not None:
                await result

    async def stop(self, grace: float, drain_delay: float = 0.0) -> None:
        """Readiness NOT_SERVING first (kept for ``drain_delay`` s so load balancers stop routing here),
        then refuse new calls and let in-flight ones finish within ``grace`` seconds."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        if drain_delay > 0:
            await asyncio.sleep(drain_delay)
        await self._server.stop(grace)
