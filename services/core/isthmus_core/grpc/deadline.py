"""The deadline of the gRPC call being served, for the calls it makes downstream.

The server's admission interceptor records each call's absolute deadline (:func:`bound`); a client
inside the handler passes ``timeout=remaining(default_s)``, so a downstream call never outlives its
caller: it gets ``min(default_s, time left)``. Outside a call (bus handlers, start-up) or for a caller
without a deadline, :func:`remaining` is ``default_s``.

Request-scoped: a task created inside a handler inherits the deadline (asyncio copies the context), as
it should for work done for that call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

#: the shortest timeout handed out (a deadline already passed still gets a call that fails at once)
MIN_TIMEOUT_S: Final = 0.001

_DEADLINE: ContextVar[float | None] = ContextVar("isthmus_grpc_deadline", default=None)


def remaining(default_s: float) -> float:
    """The timeout for a downstream call: ``default_s``, or less if the current call ends sooner."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return default_s
    return max(min(default_s, deadline - time.monotonic()), MIN_TIMEOUT_S)


@contextlib.contextmanager
def bound(time_remaining: float | None) -> Iterator[None]:
    """The body serves a call with ``time_remaining`` seconds left (None: no deadline)."""
    token = _DEADLINE.set(None if time_remaining is None else time.monotonic() + time_remaining)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # an async generator closed from another context
            _DEADLINE.reset(token)
