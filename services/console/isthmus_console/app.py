"""The console's Starlette app: middleware (security headers, sessions, CSRF), probes, login, pages."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from isthmus_console.pages import ask, documents, evaluation, operations, tenants
from isthmus_console.security import CsrfMiddleware, SecurityHeadersMiddleware, content_security_policy
from isthmus_console.sessions import SessionMiddleware
from isthmus_console.web import Console, console_of

HERE = Path(__file__).parent
PAGES = (ask, documents, tenants, evaluation, operations)
#: paths served without a session (probes, assets)
_SESSIONLESS = ("/healthz", "/readyz", "/static/")
#: readiness is asked of the platform at most this often
READY_CACHE_S = 2.0


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.autoescape = True
    return t


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """200 while the platform's services answer SERVING to the console (cached for a moment)."""
    state = request.app.state
    now = time.monotonic()
    if now - getattr(state, "ready_at", -1e9) > READY_CACHE_S:
        state.ready = await console_of(request).backend.ready()
        state.ready_at = now
    return PlainTextResponse("ready" if state.ready else "not ready", status_code=200 if state.ready else 503)


async def home(request: Request) -> Response:
    return RedirectResponse("/ask", status_code=303)


def create_app(console: Console) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/", home),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        *console.login.routes(),
    ]
    for module in PAGES:
        routes.extend(module.routes)
    form_targets = (console.login.issuer_origin,) if console.login.issuer_origin else ()
    secure = console.settings.public_url.startswith("https://")
    middleware = [
        Middleware(SecurityHeadersMiddleware, csp=content_security_policy(form_targets)),
        Middleware(
            SessionMiddleware,
            store=console.sessions,
            secure=secure,
            skip=lambda path: path.startswith(_SESSIONLESS),
        ),
        Middleware(CsrfMiddleware, exempt=lambda path: False),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
