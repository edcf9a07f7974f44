"""Delivery of one message to one handler: retries with backoff, then the dead-letter topic.

Shared by every bus adapter so that retry, backoff and dead-letter behave the same everywhere
(the semantics are in :mod:`isthmus_core.bus.port`). An adapter only decides *when* to call
:func:`deliver` (in partition order) and commits the offset once it returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from enum import StrEnum

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    Handler,
    Message,
    RetryPolicy,
)
from isthmus_core.contracts.topics import DLQ_SUFFIX
from isthmus_core.errors import ConfigurationError, IsthmusError, Unavailable
from isthmus_core.telemetry.metrics import BUS_DEAD_LETTERED, BUS_HANDLED

#: the largest message value the platform puts on (or accepts from) the bus
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: error messages longer than this are cut in the dead-letter header
MAX_ERROR_HEADER_CHARS = 4096
#: a failing dead-letter publish is retried (until stop) with backoff capped at this many seconds
DEAD_LETTER_MAX_BACKOFF_S = 30.0

#: ``dead_letter(topic, key, value, headers)``: append one message to a topic (the adapter's publish)
DeadLetter = Callable[[str, str, bytes, dict[str, str]], Awaitable[None]]

_log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    HANDLED = "handled"
    DEAD_LETTERED = "dead_lettered"


def validate_policy(policy: RetryPolicy) -> None:
    """Reject a retry policy that cannot work (raised at subscribe time, before anything runs)."""
    if policy.max_attempts < 1:
        raise ConfigurationError(f"RetryPolicy.max_attempts must be >= 1, got {policy.max_attempts}")
    if policy.initial_backoff_s < 0 or policy.max_backoff_s < 0:
        raise ConfigurationError(
            f"RetryPolicy backoffs must be >= 0, got initial={policy.initial_backoff_s} "
            f"max={policy.max_backoff_s}"
        )
    if policy.multiplier < 1:
        raise ConfigurationError(f"RetryPolicy.multiplier must be >= 1, got {policy.multiplier}")


def is_permanent(exc: BaseException) -> bool:
    """True for errors that would fail the same way on every retry (see :mod:`isthmus_core.errors`)."""
    return isinstance(exc, IsthmusError) and exc.permanent


def _retryable(exc: BaseException) -> bool:
    # CancelledError / KeyboardInterrupt are BaseExceptions: never retried, re-raised as they are
    return isinstance(exc, Exception) and not is_permanent(exc)


def backoff(policy: RetryPolicy) -> wait_exponential:
    """Wait ``initial * multiplier**(n-1)`` seconds after the n-th failed attempt, at most ``max``."""
    return wait_exponential(
        multiplier=policy.initial_backoff_s, exp_base=policy.multiplier, max=policy.max_backoff_s
    )


def error_text(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    if len(text) > MAX_ERROR_HEADER_CHARS:
        text = text[: MAX_ERROR_HEADER_CHARS - 1] + "…"
    return text


#: headers never copied to a dead letter: a producer's bearer token is a credential, not evidence
CREDENTIAL_HEADERS = frozenset({"authorization"})


def dead_letter_headers(message: Message, exc: BaseException, attempts: int, group: str) -> dict[str, str]:
    """The original headers (credentials left out) plus the error and where the message came from."""
    return {
        **{k: v for k, v in message.headers.items() if k.lower() not in CREDENTIAL_HEADERS},
        H_ERROR_CLASS: type(exc).__name__,
        H_ERROR_MESSAGE: error_text(exc),
        H_SOURCE_TOPIC: message.topic,
        H_SOURCE_PARTITION: str(message.partition),
        H_SOURCE_OFFSET: str(message.offset),
        H_ATTEMPTS: str(attempts),
        H_GROUP: group,
    }


async def deliver(
    handler: Handler, message: Message, policy: RetryPolicy, *, group: str, dead_letter: DeadLetter
) -> Outcome:
    """Run ``handler`` on ``message`` until it succeeds, at most ``policy.max_attempts`` times.

    A :class:`~isthmus_core.errors.PermanentError` stops at once. An
    :class:`~isthmus_core.errors.Unavailable` error (a dependency — the broker, a downstream service —
    is down) is retried with capped backoff for as long as it lasts: dead-lettering a good message
    because of an outage would lose it from the flow. When no attempt succeeded, the
    original value and headers go to ``<topic>.dlq`` with the error headers; a failing dead-letter
    publish is retried with backoff until it succeeds or the caller is cancelled (then nothing is
    committed and the message is delivered again later). Returns how the message ended; never raises
    a handler's exception.
    """
    attempts = 0
    retrying = AsyncRetrying(
        stop=_stop_for(policy),
        wait=backoff(policy),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                try:
                    await handler(dataclasses.replace(message, attempt=attempts))
                except Exception as exc:
                    _log.warning(
                        "bus.handler_failed",
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                        group=group,
                        attempt=attempts,
                        max_attempts=policy.max_attempts,
                        permanent=is_permanent(exc),
                        error=error_text(exc),
                        error_class=type(exc).__name__,
                    )
                    raise
    except Exception as exc:
        await _dead_letter(message, exc, attempts, group, dead_letter, policy)
        return Outcome.DEAD_LETTERED
    BUS_HANDLED.labels(message.topic, group, Outcome.HANDLED.value).inc()
    return Outcome.HANDLED


def _stop_for(policy: RetryPolicy) -> Callable[[RetryCallState], bool]:
    bounded = stop_after_attempt(policy.max_attempts)

    def stop(state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is not None and isinstance(outcome.exception(), Unavailable):
            return False  # an outage, not a bad message: wait it out (cancellation still stops us)
        return bool(bounded(state))

    return stop


async def _dead_letter(
    message: Message,
    exc: Exception,
    attempts: int,
    group: str,
    dead_letter: DeadLetter,
    policy: RetryPolicy,
) -> None:
    dlq = message.topic + DLQ_SUFFIX
    headers = dead_letter_headers(message, exc, attempts, group)
    retrying = AsyncRetrying(
        wait=wait_exponential(
            multiplier=max(policy.initial_backoff_s, 0.01),
            exp_base=2,
            max=DEAD_LETTER_MAX_BACKOFF_S,
        ),
        retry=retry_if_exception(lambda e: isinstance(e, Exception)),
        before_sleep=lambda state: _log.error(
            "bus.dead_letter_publish_failed",
            topic=dlq,
            attempt=state.attempt_number,
            error=repr(state.outcome.exception()) if state.outcome else "",
        ),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await dead_letter(dlq, message.key, message.value, headers)
    _log.error(
        "bus.dead_lettered",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        group=group,
        attempts=attempts,
        error_class=type(exc).__name__,
        error=error_text(exc),
    )
    BUS_HANDLED.labels(message.topic, group, Outcome.DEAD_LETTERED.value).inc()
    BUS_DEAD_LETTERED.labels(message.topic, group).inc()
