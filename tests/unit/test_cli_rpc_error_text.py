"""How the CLI says why a call was refused: a tenant's quota is named (QuotaFailure) with when to retry
(RetryInfo); load shedding says the platform is busy; anything else is the code and the reason."""

from __future__ import annotations

import grpc

from isthmus_cli.client import rpc_error_text
from isthmus_core.grpc.status import rich_status


def _error(
    code: grpc.StatusCode, message: str, retry: float | None, quotas: list[tuple[str, str]]
) -> grpc.aio.AioRpcError:
    status = rich_status(code, message, retry, quotas)
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), details=message
    )


def test_a_quota_is_named_with_when_it_refills() -> None:
    exc = _error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "tenant acme is past 5 ask requests per second",
        0.4,
        [("tenant:acme/requests_per_s/ask", "5 per 1 s")],
    )
    assert rpc_error_text(exc) == (
        "RESOURCE_EXHAUSTED: tenant acme is past 5 ask requests per second "
        "(quota tenant:acme/requests_per_s/ask: try again in 0.40 s)"
    )


def test_a_storage_quota_does_not_refill() -> None:
    exc = _error(grpc.StatusCode.RESOURCE_EXHAUSTED, "full", None, [("tenant:acme/max_documents", "1000")])
    assert rpc_error_text(exc) == "RESOURCE_EXHAUSTED: full (quota tenant:acme/max_documents)"


def test_load_shedding_says_the_platform_is_busy() -> None:
    exc = _error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", 0.25, [])
    assert rpc_error_text(exc) == "RESOURCE_EXHAUSTED: queue full (the platform is busy: try again in 0.25 s)"


def test_other_refusals_are_code_and_reason() -> None:
    exc = _error(grpc.StatusCode.PERMISSION_DENIED, "'bob' lacks 'search' in tenant 'acme'", None, [])
    assert rpc_error_text(exc) == "PERMISSION_DENIED: 'bob' lacks 'search' in tenant 'acme'"
