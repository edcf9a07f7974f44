"""The gRPC edge of admission control (:mod:`isthmus_core.admission`): an interceptor of the shared server.

Every Isthmus method (not health or reflection) passes through its family's :class:`Family` before the
request is validated or handled; a streaming call holds its slot until it ends. A refused call raises
:class:`~isthmus_core.errors.ResourceExhausted` with the retry hint, which the error interceptor (outside
this one) sends as ``RESOURCE_EXHAUSTED`` with a ``google.rpc.RetryInfo``. The interceptor also records
each call's deadline for the calls its handler makes (:mod:`isthmus_core.grpc.deadline`), limits or not.

Settings (``[common]``, :func:`policy_from_settings`): ``admission_enabled``,
``admission_max_concurrent``, ``admission_max_queue``, ``admission_max_queue_wait_ms`` (each family's
defaults), ``admission_families`` (methods sharing a family) and ``admission_overrides`` (per family
or per service), each added to its built-in entries (``DEFAULT_ADMISSION_*`` in
:mod:`isthmus_core.settings`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from isthmus_core.admission import Family, Limits, Override, Policy, Refused
from isthmus_core.errors import ResourceExhausted
from isthmus_core.grpc import deadline
from isthmus_core.grpc.handlers import WrappingInterceptor, rewrap
from isthmus_core.settings import DEFAULT_ADMISSION_FAMILIES, DEFAULT_ADMISSION_OVERRIDES, CommonSettings
from isthmus_core.telemetry.metrics import ADMISSION_IN_FLIGHT, ADMISSION_QUEUED, ADMISSION_REFUSED


def policy_from_settings(common: CommonSettings) -> Policy | None:
    """The admission policy the settings ask for (None when ``admission_enabled`` is false)."""
    if not common.admission_enabled:
        return None
    return Policy(
        Limits(
            common.admission_max_concurrent,
            common.admission_max_queue,
            common.admission_max_queue_wait_ms / 1000,
        ),
        {**DEFAULT_ADMISSION_FAMILIES, **common.admission_families},
        {
            key: Override(
                o.max_concurrent,
                o.max_queue,
                None if o.max_queue_wait_ms is None else o.max_queue_wait_ms / 1000,
            )
            for key, o in {**DEFAULT_ADMISSION_OVERRIDES, **common.admission_overrides}.items()
        },
    )


def _refusal(exc: Refused, method: str) -> ResourceExhausted:
    ADMISSION_REFUSED.labels(method, exc.reason.value).inc()
    return ResourceExhausted(str(exc), exc.retry_after_s)


def _unary_out(fn: Callable[..., Any], family: Family | None, method: str) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        remaining = context.time_remaining()
        with deadline.bound(remaining):
            if family is None:
                return await fn(request, context)
            try:
                admitted_at = await family.acquire(remaining)
            except Refused as exc:
                raise _refusal(exc, method) from None
            try:
                return await fn(request, context)
            finally:
                family.release(admitted_at)

    return handler


def _stream_out(fn: Callable[..., Any], family: Family | None, method: str) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        remaining = context.time_remaining()
        with deadline.bound(remaining):
            if family is None:
                async for item in fn(request, context):
                    yield item
                return
            try:
                admitted_at = await family.acquire(remaining)
            except Refused as exc:
                raise _refusal(exc, method) from None
            try:
                async for item in fn(request, context):
                    yield item
            finally:
                family.release(admitted_at)

    return handler


class AdmissionInterceptor(WrappingInterceptor):
    """Apply ``policy`` (None: no limits, deadlines still recorded). Install it inside the error
    interceptor (which maps its refusal) and outside validation (refuse before any work)."""

    def __init__(self, policy: Policy | None) -> None:
        self._policy = policy
        self._observed: set[str] = set()

    def _family(self, method: str) -> Family | None:
        if self._policy is None:
            return None
        family = self._policy.family_for(method)
        if family.name not in self._observed:  # gauges read the family's state at scrape time
            self._observed.add(family.name)
            ADMISSION_IN_FLIGHT.labels(family.name).set_function(lambda: family.in_flight)
            ADMISSION_QUEUED.labels(family.name).set_function(lambda: family.queued)
        return family

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        family = self._family(method)

        def wrap(fn: Callable[..., Any], streaming_in: bool, streaming_out: bool) -> Callable[..., Any]:
            return (_stream_out if streaming_out else _unary_out)(fn, family, method)

        return rewrap(handler, wrap)
