"""Security headers on every response (a strict Content-Security-Policy) and CSRF protection.

CSRF: every unsafe request (POST, PUT, PATCH, DELETE) must carry the session's token in the
``X-CSRF-Token`` header (``base.html`` puts it in ``hx-headers`` on <body>, so every htmx request sends
it). With SameSite=Lax cookies and the header (which a cross-site form cannot set) a forged request fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_HEADER = "x-csrf-token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def content_security_policy(form_targets: tuple[str, ...] = ()) -> str:
    """No inline script or style, nothing from elsewhere; forms post only here (and to the issuer)."""
    form_action = " ".join(("'self'", *form_targets))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; font-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h["Content-Security-Policy"] = self.csp
                h["X-Content-Type-Options"] = "nosniff"
                h["Referrer-Policy"] = "no-referrer"
                h["X-Frame-Options"] = "DENY"
                h["Cross-Origin-Opener-Policy"] = "same-origin"
                if not static and "cache-control" not in h:
                    h["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_wrapper)


class CsrfMiddleware:
    """Refuses an unsafe request whose X-CSRF-Token header is not its session's token (403)."""

    def __init__(self, app: ASGIApp, exempt: Callable[[str], bool]) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE and not self.exempt(scope["path"]):
            session = scope.get("session") or {}
            expected = session.get("csrf", "")
            got = dict(scope["headers"]).get(CSRF_HEADER.encode(), b"").decode("latin-1")
            if not expected or not got or not secrets.compare_digest(expected, got):
                response = PlainTextResponse(
                    "CSRF check failed: reload the page and try again", status_code=403
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
