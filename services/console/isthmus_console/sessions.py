"""Server-side sessions: the browser holds only an opaque random id; what a session knows (the viewer,
its token, the CSRF token, the login's PKCE state) stays in this process's memory.

The middleware puts the session's dict at ``scope["session"]`` (where Starlette's ``request.session``
and Authlib look for it). Sessions end ``ttl_s`` after their last request; at most ``max_sessions`` are
kept (the least recently used go first). Kept per process: a console with several replicas needs sticky
sessions (docs/operations.md).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "isthmus_console"


@dataclass
class _Entry:
    data: dict[str, Any]
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sid: str | None) -> dict[str, Any] | None:
        if not sid:
            return None
        entry = self._entries.get(sid)
        now = self._clock()
        if entry is None:
            return None
        if now - entry.last_seen > self.ttl_s:
            del self._entries[sid]
            return None
        entry.last_seen = now
        self._entries.move_to_end(sid)
        return entry.data

    def create(self) -> tuple[str, dict[str, Any]]:
        sid = secrets.token_urlsafe(32)
        data: dict[str, Any] = {"csrf": secrets.token_urlsafe(32)}
        self._entries[sid] = _Entry(data, self._clock())
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)
        return sid, data

    def drop(self, sid: str | None) -> None:
        if sid:
            self._entries.pop(sid, None)

    def rotate(self, old_sid: str | None) -> tuple[str, dict[str, Any]]:
        """A new id for a session that changes privilege (login): the old id stops working."""
        self.drop(old_sid)
        return self.create()


class SessionMiddleware:
    """Loads the session named by the cookie (or makes one) into ``scope["session"]``; sets the cookie
    when the id changed (new session, login rotation, logout)."""

    def __init__(
        self, app: ASGIApp, store: SessionStore, *, secure: bool, skip: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.store = store
        self.secure = secure
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.skip(scope["path"]):
            await self.app(scope, receive, send)
            return
        sid = HTTPConnection(scope).cookies.get(COOKIE)
        data = self.store.get(sid)
        if data is None:
            sid, data = self.store.create()
            new_sid: str | None = sid
        else:
            new_sid = None
        scope["session"] = data
        scope["session_id"] = sid

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope.get("session_id")
                if new_sid is not None or current != sid:
                    headers = MutableHeaders(scope=message)
                    flags = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
                    headers.append("Set-Cookie", f"{COOKIE}={current}{flags}")
            await send(message)

        await self.app(scope, receive, send_wrapper)


def rotate_session(scope: Scope, store: SessionStore) -> dict[str, Any]:
    """Give the request's session a new id (after login); the middleware sends the new cookie."""
    old = scope.get("session")
    sid, data = store.rotate(scope.get("session_id"))
    if isinstance(old, dict):
        data.update({k: v for k, v in old.items() if k != "csrf"})
    scope["session"] = data
    scope["session_id"] = sid
    return data
