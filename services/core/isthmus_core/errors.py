"""Error vocabulary shared by every service.

Pure logic raises these; the gRPC edge maps them to status codes (``isthmus_core.grpc.status``) and the
bus maps :class:`PermanentError` subclasses straight to the dead-letter topic (no retries).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class IsthmusError(Exception):
    """Base error: a machine-readable code, a human reason, optional structured details."""

    code: ErrorCode = ErrorCode.INTERNAL
    #: errors that will fail the same way on every retry (bad input) are permanent
    permanent: bool = False

    def __init__(self, reason: str, **details: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details

    def __str__(self) -> str:
        return self.reason


class PermanentError(IsthmusError):
    """Retrying cannot help: the bus dead-letters the message at once."""

    permanent = True


class InvalidArgument(PermanentError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(PermanentError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(PermanentError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(PermanentError):
    code = ErrorCode.FAILED_PRECONDITION


class ResourceExhausted(PermanentError):
    """Over a limit. With ``retry_after_s`` (load shed: a service is past its capacity) the call may be
    retried after that delay, so it is transient (the bus retries it, the gRPC edge sends the delay as a
    ``google.rpc.RetryInfo``); without it (a request too large) it is permanent."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, reason: str, retry_after_s: float | None = None, **details: str) -> None:
        super().__init__(reason, **details)
        self.retry_after_s = retry_after_s
        self.permanent = retry_after_s is None


class QuotaExceeded(ResourceExhausted):
    """A tenant past one of its quotas. ``violations`` are (subject, description) pairs sent as a
    ``google.rpc.QuotaFailure``; with ``retry_after_s`` (a rate or a daily budget) also a ``RetryInfo``."""

    def __init__(
        self,
        reason: str,
        violations: list[tuple[str, str]],
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason, retry_after_s)
        self.violations = violations


class Unauthenticated(PermanentError):
    """No credentials, or credentials that do not verify (bad signature, expired, wrong audience...)."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(PermanentError):
    """A verified caller without the permission the call needs (in that tenant)."""

    code = ErrorCode.PERMISSION_DENIED


class Unavailable(IsthmusError):
    """Transient: a dependency is down or slow. Retried with backoff."""

    code = ErrorCode.UNAVAILABLE


class DeadlineExceeded(Unavailable):
    """Transient: a dependency did not answer in time (retried like Unavailable)."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ConfigurationError(PermanentError):
    """Bad settings or missing model files: raised at startup with a precise message."""

    code = ErrorCode.FAILED_PRECONDITION
