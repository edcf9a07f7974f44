"""What every page shares: the console's parts (:class:`Console`), rendering with the common context,
who is asking (:func:`page` / :func:`fragment`), the tenant in play, and errors as the user sees them."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from isthmus_console.backend import Backend, RpcFailure
from isthmus_console.settings import ConsoleSettings
from isthmus_console.viewer import Viewer
from isthmus_core.contracts.ids import is_tenant_id

if TYPE_CHECKING:
    from isthmus_console.auth import LoginFlow
    from isthmus_console.sessions import SessionStore

TENANT_KEY = "tenant"

#: the navigation: (path, label); a page hides itself from viewers without its permission (nav_visible)
NAV: tuple[tuple[str, str], ...] = (
    ("/ask", "Ask"),
    ("/documents", "Documents"),
    ("/tenants", "Tenants"),
    ("/evaluation", "Evaluation"),
    ("/operations", "Operations"),
)


@dataclass
class Console:
    """The console's parts, at ``request.app.state.console``."""

    settings: ConsoleSettings
    backend: Backend
    login: LoginFlow
    sessions: SessionStore
    templates: Jinja2Templates
    #: the region this deployment serves ("" = single-region) and every region's gRPC address
    region: str = ""
    #: anything a page needs that is built once (e.g. the Kubernetes reader): name -> object
    extras: dict[str, Any] = field(default_factory=dict)
    #: what pages opened and the console closes at its stop, after the last request (channels, runs)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def console_of(request: Request) -> Console:
    c = request.app.state.console
    assert isinstance(c, Console)
    return c


def current_tenant(request: Request) -> str:
    """The tenant in play: the request's ``tenant`` parameter (remembered in the session) or the
    session's; "" when none is chosen. A malformed id is ignored (an id is never a path)."""
    raw = request.query_params.get("tenant") or request.path_params.get("tenant")
    if raw is not None and is_tenant_id(raw):
        request.session[TENANT_KEY] = raw
        return str(raw)
    remembered = request.session.get(TENANT_KEY, "")
    return remembered if is_tenant_id(remembered) else ""


def remember_tenant(request: Request, tenant: str) -> None:
    if is_tenant_id(tenant):
        request.session[TENANT_KEY] = tenant


def render(request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200) -> Response:
    """A template with the common context: viewer, csrf token, nav, the tenant in play, the auth mode."""
    c = console_of(request)
    viewer = request.scope.get("viewer") or c.login.viewer(request)
    ctx: dict[str, Any] = {
        "request": request,
        "viewer": viewer,
        "csrf": request.session.get("csrf", "") if "session" in request.scope else "",
        "nav": NAV,
        "active": request.url.path,
        "tenant": current_tenant(request) if "session" in request.scope else "",
        "auth_mode": c.login.mode,
        "region": c.region,
    }
    ctx.update(context or {})
    return c.templates.TemplateResponse(request, name, ctx, status_code=status)


def http_status(code: str) -> int:
    """The HTTP status a failure with gRPC status ``code`` is answered with (502: the platform failed)."""
    return {
        "INVALID_ARGUMENT": 400,
        "FAILED_PRECONDITION": 400,
        "OUT_OF_RANGE": 400,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "PERMISSION_DENIED": 403,
        "UNAUTHENTICATED": 401,
        "RESOURCE_EXHAUSTED": 429,
    }.get(code, 502)


def rpc_error(request: Request, exc: grpc.aio.AioRpcError, what: str = "") -> Response:
    """A failed gRPC call as a visible message (status code name and the server's reason)."""
    failure = RpcFailure.of(exc)
    status = http_status(failure.code)
    return render(request, "_error.html", {"failure": failure, "what": what}, status)


def whole_number(raw: str | None, name: str, low: int, high: int, default: int | None = None) -> int:
    """A form or query value as a whole number in [low, high]; empty = ``default`` (or required).
    Raises ValueError saying what is wrong (the page answers 400 with it)."""
    if raw is None or raw.strip() == "":
        if default is None:
            raise ValueError(f"{name} is required")
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def bad_request(request: Request, reason: str) -> Response:
    return render(
        request, "_error.html", {"failure": RpcFailure("INVALID_ARGUMENT", reason), "what": ""}, 400
    )


Endpoint = Callable[[Request, Viewer], Awaitable[Response]]


def page(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A full page: a visitor who is not logged in is sent to the login (and back here after)."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        viewer = console_of(request).login.viewer(request)
        if viewer is None:
            return RedirectResponse(f"/auth/login?next={quote(request.url.path)}", status_code=303)
        request.scope["viewer"] = viewer
        return await endpoint(request, viewer)

    return wrapper


def fragment(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A part of a page (htmx) or a stream: 401 (and htmx goes to the login) when not logged in."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        viewer = console_of(request).login.viewer(request)
        if viewer is None:
            response = Response("log in first", status_code=401)
            response.headers["HX-Redirect"] = "/auth/login"
            return response
        request.scope["viewer"] = viewer
        return await endpoint(request, viewer)

    return wrapper
