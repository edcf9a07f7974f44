"""deliver(): the retry / backoff / dead-letter logic shared by every bus adapter."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from isthmus_core.bus.delivery import (
    MAX_ERROR_HEADER_CHARS,
    Outcome,
    deliver,
    validate_policy,
)
from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    Message,
    RetryPolicy,
)
from isthmus_core.errors import ConfigurationError, NotFound, Unavailable

MESSAGE = Message("orders", "tenant/doc", b"payload", {"x-a": "1"}, partition=2, offset=41)
FAST = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)


class DeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.calls = 0
        self._failures = failures

    async def __call__(self, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        self.calls += 1
        if self.calls <= self._failures:
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value, headers))


class Flaky:
    """Fails with ``errors[i]`` on the i-th call while there are errors left, then succeeds."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.seen: list[Message] = []
        self.times: list[float] = []

    async def __call__(self, message: Message) -> None:
        self.seen.append(message)
        self.times.append(time.monotonic())
        if len(self.seen) <= len(self.errors):
            raise self.errors[len(self.seen) - 1]


async def test_a_handler_that_succeeds_is_called_once() -> None:
    handler, dlq = Flaky(), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="g", dead_letter=dlq) is Outcome.HANDLED
    assert [m.attempt for m in handler.seen] == [1]
    assert handler.seen[0].value == MESSAGE.value and dlq.sent == []


async def test_transient_failures_are_retried_with_the_attempt_number() -> None:
    handler, dlq = Flaky(RuntimeError("a"), Unavailable("b")), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="g", dead_letter=dlq) is Outcome.HANDLED
    assert [m.attempt for m in handler.seen] == [1, 2, 3]
    assert dlq.sent == []


async def test_exhausted_attempts_dead_letter_the_original_with_error_headers() -> None:
    handler, dlq = Flaky(*(ValueError(f"nope {i}") for i in range(5))), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="grp", dead_letter=dlq) is Outcome.DEAD_LETTERED
    assert len(handler.seen) == FAST.max_attempts
    [(topic, key, value, headers)] = dlq.sent
    assert (topic, key, value) == ("orders.dlq", "tenant/doc", b"payload")
    assert headers == {
        "x-a": "1",
        H_ERROR_CLASS: "ValueError",
        H_ERROR_MESSAGE: f"nope {FAST.max_attempts - 1}",
        H_SOURCE_TOPIC: "orders",
        H_SOURCE_PARTITION: "2",
        H_SOURCE_OFFSET: "41",
        H_ATTEMPTS: str(FAST.max_attempts),
        H_GROUP: "grp",
    }


async def test_an_outage_is_waited_out_not_dead_lettered() -> None:
    # more Unavailable failures than max_attempts: the dependency is down, the message is fine
    handler, dlq = Flaky(*(Unavailable("broker down") for _ in range(3 * FAST.max_attempts))), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="g", dead_letter=dlq) is Outcome.HANDLED
    assert len(handler.seen) == 3 * FAST.max_attempts + 1
    assert dlq.sent == []


async def test_an_outage_then_a_bad_message_is_dead_lettered_within_the_budget() -> None:
    errors = [
        Unavailable("down"),
        Unavailable("down"),
        ValueError("bad"),
        ValueError("bad"),
        ValueError("bad"),
    ]
    handler, dlq = Flaky(*errors), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="g", dead_letter=dlq) is Outcome.DEAD_LETTERED
    assert dlq.sent[0][3][H_ERROR_CLASS] == "ValueError"


async def test_permanent_errors_are_not_retried() -> None:
    handler, dlq = Flaky(NotFound("no such document"), RuntimeError("unused")), DeadLetters()
    assert await deliver(handler, MESSAGE, FAST, group="g", dead_letter=dlq) is Outcome.DEAD_LETTERED
    assert len(handler.seen) == 1
    assert dlq.sent[0][3][H_ERROR_CLASS] == "NotFound"
    assert dlq.sent[0][3][H_ATTEMPTS] == "1"


async def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.02, max_backoff_s=0.05, multiplier=2.0)
    handler = Flaky(*(RuntimeError() for _ in range(4)))
    await deliver(handler, MESSAGE, policy, group="g", dead_letter=DeadLetters())
    gaps = [b - a for a, b in itertools.pairwise(handler.times)]
    expected = [0.02, 0.04, 0.05]  # 0.02 * 2**n, capped at 0.05
    assert len(gaps) == 3
    for gap, floor in zip(gaps, expected, strict=True):
        assert gap >= floor * 0.9
    assert gaps[2] < 0.05 + 0.04, "the cap keeps the third wait well under 0.08 s"


async def test_a_failing_dead_letter_publish_is_retried_until_it_succeeds() -> None:
    dlq = DeadLetters(failures=2)
    outcome = await deliver(Flaky(NotFound("x")), MESSAGE, FAST, group="g", dead_letter=dlq)
    assert outcome is Outcome.DEAD_LETTERED
    assert dlq.calls == 3 and len(dlq.sent) == 1


async def test_cancellation_is_not_swallowed_nor_dead_lettered() -> None:
    dlq = DeadLetters()
    with pytest.raises(asyncio.CancelledError):
        await deliver(Flaky(asyncio.CancelledError()), MESSAGE, FAST, group="g", dead_letter=dlq)
    assert dlq.calls == 0


async def test_long_error_messages_are_cut_in_the_header() -> None:
    dlq = DeadLetters()
    await deliver(Flaky(NotFound("e" * 10_000)), MESSAGE, FAST, group="g", dead_letter=dlq)
    message = dlq.sent[0][3][H_ERROR_MESSAGE]
    assert len(message) == MAX_ERROR_HEADER_CHARS and message.endswith("…")


async def test_an_error_without_text_is_described_by_its_repr() -> None:
    dlq = DeadLetters()
    await deliver(Flaky(*(KeyError() for _ in range(3))), MESSAGE, FAST, group="g", dead_letter=dlq)
    assert dlq.sent[0][3][H_ERROR_MESSAGE] == "KeyError()"


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RetryPolicy(max_attempts=0), "max_attempts"),
        (RetryPolicy(initial_backoff_s=-1), "backoffs"),
        (RetryPolicy(multiplier=0.5), "multiplier"),
    ],
)
def test_unusable_retry_policies_are_rejected(policy: RetryPolicy, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        validate_policy(policy)
