"""The console module: the web console served by the runtime (its own target, part of ``all``).

It offers no gRPC service and subscribes to nothing: it is a client of the six services' public gRPC
APIs (``depends_on``), served over HTTP by uvicorn on the runtime's event loop. Its socket is bound at
build (a port conflict fails the start with the others' errors), served from ``on_start``, drained at
``on_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog

from isthmus_console.backend import SERVICES
from isthmus_console.settings import ConsoleSettings
from isthmus_core.auth.settings_check import is_loopback
from isthmus_core.errors import ConfigurationError
from isthmus_core.runtime.module import Module, ModuleContext, Offer

NAME = "console"
log = structlog.get_logger("isthmus.console")


if TYPE_CHECKING:
    import uvicorn


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn without its signal handlers: the runtime owns SIGTERM/SIGINT and stops us in order."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def settings_problems(s: ConsoleSettings, auth: str, issuer: str) -> list[str]:
    problems = []
    if auth == "off" and not is_loopback(s.host):
        problems.append(
            f"console.host {s.host!r} is not a loopback address and auth is off: the console refuses to "
            "listen beyond loopback without authentication (set common.auth = 'oidc', or host = 127.0.0.1)"
        )
    if auth == "oidc" and not s.oidc_client_id:
        problems.append("console.oidc_client_id is required with auth = 'oidc' (the console's OAuth2 client)")
    if auth == "oidc" and not issuer:
        problems.append("common.auth_issuer is required for the console's login")
    return problems


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"console: cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def build(ctx: ModuleContext[ConsoleSettings]) -> Offer:
    s = ctx.settings
    if not s.enabled:
        return Offer()
    # the web stack is imported here, not with the module list: a process without the console (or a CLI
    # command that only reads the module list) does not load it
    import uvicorn

    from isthmus_console.app import create_app, templates
    from isthmus_console.auth import LoginFlow
    from isthmus_console.backend import Backend
    from isthmus_console.sessions import SessionStore
    from isthmus_console.web import Console

    problems = settings_problems(s, ctx.common.auth, ctx.common.auth_issuer)
    if problems:
        raise ConfigurationError("\n".join(problems))
    sock = bind(s.host, s.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = (s.public_url or f"http://{shown_host}:{port}").rstrip("/") + "/"
    backend = Backend(
        {name: ctx.channel(name) for name in SERVICES},
        {name: ctx.address(name) for name in SERVICES},
        auth_enabled=ctx.auth.enabled,
    )
    sessions = SessionStore(s.session_ttl_s, s.max_sessions)
    login = LoginFlow.build(
        ctx.common.auth,
        ctx.auth,
        sessions,
        issuer=ctx.common.auth_issuer,
        client_id=s.oidc_client_id,
        client_secret=s.oidc_client_secret.get_secret_value(),
        scopes=s.oidc_scopes,
        public_url=url,
    )
    console = Console(s, backend, login, sessions, templates(), region=ctx.common.region)
    app = create_app(console)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        timeout_graceful_shutdown=int(ctx.common.shutdown_grace_s) or None,
    )
    server = _server(config)
    task: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal task
        task = asyncio.create_task(server.serve(sockets=[sock]), name="isthmus-console")
        # uvicorn says it listens only by its `started` flag
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # uvicorn failed to start: raise its error
        log.info("console ready", url=url, auth=ctx.common.auth)
        print(f"Isthmus console: {url}", flush=True)

    async def stop() -> None:
        server.should_exit = True
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        sock.close()
        for hook in console.on_stop:
            try:
                await hook()
            except Exception as exc:  # one failing hook does not keep the others from running
                log.warning("console stop hook failed", error=str(exc))

    return Offer(on_start=[start], on_stop=[stop])


MODULE = Module(
    name=NAME,
    settings_cls=ConsoleSettings,
    build=build,
    depends_on=tuple(SERVICES),
    description="the web console: ask, documents, tenants, evaluation, operations (HTTP)",
)
