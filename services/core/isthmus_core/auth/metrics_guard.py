"""Who may scrape ``/metrics`` when authentication is on.

The metrics endpoint listens on the same host as gRPC, so with authentication on it asks the same
question: a bearer JWT (``Authorization: Bearer <token>``, e.g. Prometheus' ``oauth2`` client-credentials
scrape config) whose principal holds ``metrics.read`` for every tenant (metrics span tenants). No token or
a bad one is 401, a principal without the permission 403; both are audited. ``[common] metrics_auth =
false`` serves the metrics to anyone who reaches the port (protect it another way, e.g. the chart's
NetworkPolicy).

The check runs on the metrics server's thread; token verification (cached) runs on the runtime's event
loop, where the verifier and its key cache live.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from isthmus_core.auth.identity import Permission
from isthmus_core.auth.producers import H_AUTHORIZATION, bearer_of
from isthmus_core.auth.stack import AuthStack
from isthmus_core.contracts.events import AuditRecorded
from isthmus_core.errors import Unauthenticated

#: (HTTP status, reason); 200 = let the scrape through
Decision = tuple[int, str]
METHOD = "GET /metrics"
VERIFY_TIMEOUT_S = 10.0


def metrics_guard(stack: AuthStack, loop: asyncio.AbstractEventLoop) -> Callable[[str | None], Decision]:
    """The check of one scrape's ``Authorization`` header (call it from another thread than ``loop``'s)."""
    verifier = stack.verifier
    if verifier is None:
        raise ValueError("metrics_guard needs authentication on")

    def audit(kind: str, principal: str, reason: str) -> None:
        event = AuditRecorded(
            tenant_id="",
            idempotency_key=uuid.uuid4().hex,
            kind=kind,  # type: ignore[arg-type]
            principal=principal,
            method=METHOD,
            outcome="denied",
            reason=reason,
            region=stack.region,
        )
        loop.call_soon_threadsafe(stack.audit.record, event)

    def check(header: str | None) -> Decision:
        token = bearer_of({H_AUTHORIZATION: header or ""})
        if token is None:
            reason = "a bearer token is needed: send 'Authorization: Bearer <token>'"
            audit("authentication_failed", "", reason)
            return 401, reason
        try:
            principal = asyncio.run_coroutine_threadsafe(verifier.verify(token), loop).result(
                VERIFY_TIMEOUT_S
            )
        except Unauthenticated as exc:
            audit("authentication_failed", "", exc.reason)
            return 401, exc.reason
        except Exception as exc:  # keys unreachable, loop stopping: not the scraper's fault
            return 503, f"cannot verify the token now: {type(exc).__name__}"
        if not stack.authorizer.allowed(principal, None, Permission.METRICS_READ):
            reason = f"{principal.subject!r} lacks 'metrics.read' for every tenant"
            audit("permission_denied", principal.subject, reason)
            return 403, reason
        return 200, ""

    return check
