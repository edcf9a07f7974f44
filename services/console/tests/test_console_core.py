"""The console's shell without a browser: probes, security headers, sessions, CSRF, login modes, the
viewer's permissions and the rule that a call for a viewer never goes out without the viewer's token.

The app runs in-process (httpx's ASGI transport); the platform behind it is unreachable on purpose
(readiness must say so). Pages that need the platform are tested in test_console_<page>.py."""

from __future__ import annotations

import re
import time
from pathlib import Path

import grpc
import httpx
import pytest

from isthmus_console.app import create_app, templates
from isthmus_console.auth import LoginFlow, _safe_next
from isthmus_console.backend import SERVICES, Backend, NotLoggedIn
from isthmus_console.module import settings_problems
from isthmus_console.sessions import COOKIE, SessionStore
from isthmus_console.settings import ConsoleSettings
from isthmus_console.viewer import ANONYMOUS_VIEWER, Viewer
from isthmus_console.web import Console
from isthmus_core.auth.identity import Permission
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.auth.wiring import build_stack
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.settings import CommonSettings

UNREACHABLE = "127.0.0.1:9"  # discard port: nothing answers


def _console(tmp_path: Path, auth: str = "off") -> tuple[Console, LocalIssuer | None]:
    common = CommonSettings(data_dir=tmp_path, auth=auth)  # type: ignore[arg-type]
    stack = build_stack(common, InProcessBus())
    channels = {s: grpc.aio.insecure_channel(UNREACHABLE) for s in SERVICES}
    backend = Backend(channels, dict.fromkeys(SERVICES, UNREACHABLE), auth_enabled=stack.enabled)
    sessions = SessionStore(3600, 100)
    login = LoginFlow.build(common.auth, stack, sessions, public_url="http://127.0.0.1:1")
    issuer = LocalIssuer(tmp_path / "auth" / "local-issuer.pem") if auth == "local" else None
    settings = ConsoleSettings()
    return Console(settings, backend, login, sessions, templates()), issuer


def _client(console: Console) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(console)), base_url="http://127.0.0.1:1"
    )


def _csrf(html: str) -> str:
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', html)
    assert found, "the page carries its CSRF token for htmx"
    return found.group(1)


async def test_probes_answer_without_a_session_and_readiness_follows_the_platform(tmp_path: Path) -> None:
    console, _ = _console(tmp_path)
    async with _client(console) as c:
        live = await c.get("/healthz")
        ready = await c.get("/readyz")
    assert live.status_code == 200 and live.text == "ok"
    assert "set-cookie" not in live.headers
    assert ready.status_code == 503, "nothing serves behind the console: not ready"


async def test_every_page_has_a_strict_policy_and_a_private_session_cookie(tmp_path: Path) -> None:
    console, _ = _console(tmp_path)
    async with _client(console) as c:
        r = await c.get("/ask")
        static = await c.get("/static/htmx.min.js")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "<script>" not in r.text and " style=" not in r.text and " onclick=" not in r.text
    assert static.status_code == 200 and "content-security-policy" in static.headers


async def test_an_unsafe_request_needs_the_sessions_csrf_token(tmp_path: Path) -> None:
    console, _ = _console(tmp_path)
    async with _client(console) as c:
        token = _csrf((await c.get("/ask")).text)
        missing = await c.post("/auth/logout")
        wrong = await c.post("/auth/logout", headers={"X-CSRF-Token": "x" + token})
        right = await c.post("/auth/logout", headers={"X-CSRF-Token": token})
    assert missing.status_code == 403 and "CSRF" in missing.text
    assert wrong.status_code == 403
    assert right.status_code == 204


async def test_with_auth_on_pages_send_to_the_login_and_fragments_say_401(tmp_path: Path) -> None:
    console, _ = _console(tmp_path, auth="local")
    async with _client(console) as c:
        page = await c.get("/documents")
        login = await c.get("/auth/login?next=/documents")
    assert page.status_code == 303 and page.headers["location"] == "/auth/login?next=/documents"
    assert login.status_code == 200 and 'name="token"' in login.text
    assert '<label for="token">' in login.text


async def test_local_login_verifies_the_token_rotates_the_session_and_computes_permissions(
    tmp_path: Path,
) -> None:
    (tmp_path / "access.toml").write_text(
        '[tenants.acme]\nbindings = [{ principal = "alice", role = "writer" }]\n'
    )
    console, issuer = _console(tmp_path, auth="local")
    assert issuer is not None
    async with _client(console) as c:
        page = await c.get("/auth/login?next=/documents")
        before = c.cookies[COOKIE]
        token = _csrf(page.text)
        refused = await c.post("/auth/token", data={"token": "not-a-jwt"}, headers={"X-CSRF-Token": token})
        good = await c.post(
            "/auth/token", data={"token": issuer.mint("alice")}, headers={"X-CSRF-Token": token}
        )
        after = c.cookies[COOKIE]
        docs = await c.get("/documents")
    assert refused.status_code == 403 and "the token was refused" in refused.text
    assert good.status_code == 204 and good.headers["hx-redirect"] == "/documents"
    assert after != before, "a login gets a new session id (no fixation)"
    assert docs.status_code == 200 and "alice" in docs.text
    sessions = [e.data["viewer"] for e in console.sessions._entries.values() if "viewer" in e.data]
    assert len(sessions) == 1
    viewer = sessions[0]
    assert viewer.can(Permission.DOCUMENTS_WRITE, "acme")
    assert not viewer.can(Permission.DOCUMENTS_WRITE, "globex")
    assert not viewer.can(Permission.TENANTS_ADMIN)


async def test_a_call_for_a_viewer_without_a_token_is_refused_when_auth_is_on() -> None:
    channels = {s: grpc.aio.insecure_channel(UNREACHABLE) for s in SERVICES}
    on = Backend(channels, {}, auth_enabled=True)
    off = Backend(channels, {}, auth_enabled=False)
    with pytest.raises(NotLoggedIn):
        on.metadata(Viewer(subject="x", via="oidc"))
    assert on.metadata(Viewer(subject="x", via="oidc", token="t")) == (("authorization", "Bearer t"),)
    assert off.metadata(ANONYMOUS_VIEWER) == ()


def test_the_viewer_scopes() -> None:
    v = Viewer(
        subject="bob",
        via="oidc",
        scopes={Permission.DOCUMENTS_READ: frozenset({"globex"}), Permission.TENANT_READ: None},
        expires_at=time.time() + 60,
    )
    assert v.can(Permission.DOCUMENTS_READ, "globex") and not v.can(Permission.DOCUMENTS_READ, "acme")
    assert v.can(Permission.DOCUMENTS_READ) and not v.can(Permission.ERASE)
    assert v.platform_wide(Permission.TENANT_READ) and not v.platform_wide(Permission.DOCUMENTS_READ)
    assert not v.expired(time.time()) and v.expired(time.time() + 120)
    assert (
        ANONYMOUS_VIEWER.can(Permission.ERASE, "any") and ANONYMOUS_VIEWER.tenants(Permission.ERASE) is None
    )


def test_after_login_only_a_path_of_this_site() -> None:
    assert _safe_next("/documents?tenant=acme") == "/documents?tenant=acme"
    for evil in ("//evil.example/x", "https://evil.example", "/\\evil.example", "", None):
        assert _safe_next(evil) == "/ask"


def test_settings_problems_come_together() -> None:
    wide = ConsoleSettings(host="0.0.0.0")
    assert any("beyond loopback" in p for p in settings_problems(wide, "off", ""))
    assert settings_problems(wide, "local", "") == []
    problems = settings_problems(ConsoleSettings(), "oidc", "")
    assert len(problems) == 2 and any("oidc_client_id" in p for p in problems)


def test_sessions_expire_and_stay_bounded() -> None:
    now = [0.0]
    store = SessionStore(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    a, _ = store.create()
    b, _ = store.create()
    c, _ = store.create()
    assert store.get(a) is None and store.get(b) is not None and len(store) == 2
    now[0] = 11
    assert store.get(c) is None
