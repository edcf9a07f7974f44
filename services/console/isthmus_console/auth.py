"""Login: the same identity as the gRPC API.

* ``common.auth = "off"``: no login; every visitor is the anonymous viewer (the console then listens
  on loopback only, like the gRPC port).
* ``"oidc"``: authorization code with PKCE (S256) against ``common.auth_issuer`` (Authlib). The access
  token is verified with the process's verifier (issuer, audience, JWKS) and kept in the server-side
  session; the browser holds only the session id.
* ``"local"``: the development issuer has no login page: paste a token from ``isthmus auth token``.

The viewer's permissions per tenant come from the platform's role bindings (the access file), the same
ones the services enforce.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from isthmus_console.sessions import SessionStore, rotate_session
from isthmus_console.viewer import ANONYMOUS_VIEWER, TenantScope, Viewer
from isthmus_console.web import render
from isthmus_core.auth.identity import Permission, Principal
from isthmus_core.auth.stack import AuthStack
from isthmus_core.errors import IsthmusError

VIEWER_KEY = "viewer"
NEXT_KEY = "next"


def viewer_from(
    principal: Principal, stack: AuthStack, via: Literal["oidc", "local"], name: str = ""
) -> Viewer:
    scopes: dict[Permission, TenantScope] = {p: stack.authorizer.tenants(principal, p) for p in Permission}
    return Viewer(
        subject=principal.subject,
        via=via,
        name=name,
        token=principal.token,
        expires_at=principal.expires_at,
        scopes=scopes,
    )


def _safe_next(raw: str | None) -> str:
    """Where to go after login: a path of this site only (never another origin)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/ask"
    return raw


@dataclass
class LoginFlow:
    mode: Literal["off", "oidc", "local"]
    stack: AuthStack
    sessions: SessionStore
    redirect_uri: str = ""
    oauth: OAuth | None = None
    issuer_origin: str = ""

    @classmethod
    def build(
        cls,
        mode: Literal["off", "oidc", "local"],
        stack: AuthStack,
        sessions: SessionStore,
        *,
        issuer: str = "",
        client_id: str = "",
        client_secret: str = "",
        scopes: list[str] | None = None,
        public_url: str = "",
    ) -> LoginFlow:
        flow = cls(mode, stack, sessions, redirect_uri=public_url.rstrip("/") + "/auth/callback")
        if mode == "oidc":
            oauth = OAuth()
            oauth.register(
                name="isthmus",
                client_id=client_id,
                client_secret=client_secret or None,
                server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
                client_kwargs={"scope": " ".join(scopes or ["openid"]), "code_challenge_method": "S256"},
            )
            flow.oauth = oauth
            parts = urlsplit(issuer)
            flow.issuer_origin = f"{parts.scheme}://{parts.netloc}"
        return flow

    def viewer(self, request: Request) -> Viewer | None:
        """The request's viewer: anonymous with authentication off; the session's, while its token lives."""
        if self.mode == "off":
            return ANONYMOUS_VIEWER
        viewer = request.session.get(VIEWER_KEY)
        if isinstance(viewer, Viewer) and not viewer.expired(time.time()):
            return viewer
        return None

    async def _login_with(
        self, request: Request, token: str, via: Literal["oidc", "local"], name: str
    ) -> Viewer:
        if self.stack.verifier is None:
            raise IsthmusError("authentication is off")
        principal = await self.stack.verifier.verify(token)
        viewer = viewer_from(principal, self.stack, via, name)
        session = rotate_session(request.scope, self.sessions)
        session[VIEWER_KEY] = viewer
        return viewer

    # -- routes -------------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if self.mode == "off":
            return RedirectResponse("/ask", status_code=303)
        request.session[NEXT_KEY] = _safe_next(request.query_params.get("next"))
        if self.mode == "oidc":
            assert self.oauth is not None
            client: Any = self.oauth.create_client("isthmus")
            try:
                return await client.authorize_redirect(request, self.redirect_uri)  # type: ignore[no-any-return]
            except Exception as exc:  # the issuer unreachable or its discovery document wrong
                return self.templates_error(request, f"the identity provider cannot be reached: {exc}", 502)
        return self.render(request, "auth/token.html", {})

    async def callback(self, request: Request) -> Response:
        if self.mode != "oidc" or self.oauth is None:
            return RedirectResponse("/ask", status_code=303)
        client: Any = self.oauth.create_client("isthmus")
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as exc:
            return self.templates_error(request, f"login failed: {exc.error}: {exc.description or ''}", 400)
        userinfo = token.get("userinfo") or {}
        name = str(userinfo.get("name") or userinfo.get("preferred_username") or "")
        nxt = _safe_next(request.session.get(NEXT_KEY))
        try:
            await self._login_with(request, str(token.get("access_token", "")), "oidc", name)
        except IsthmusError as exc:
            return self.templates_error(request, f"the access token was refused: {exc}", 403)
        return RedirectResponse(nxt, status_code=303)

    async def token_login(self, request: Request) -> Response:
        if self.mode != "local":
            return RedirectResponse("/ask", status_code=303)
        form = await request.form()
        token = str(form.get("token", "")).strip()
        nxt = _safe_next(request.session.get(NEXT_KEY))
        try:
            await self._login_with(request, token, "local", "")
        except IsthmusError as exc:
            return self.render(request, "auth/token.html", {"error": f"the token was refused: {exc}"}, 403)
        response = Response(status_code=204)
        response.headers["HX-Redirect"] = nxt
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.drop(request.scope.get("session_id"))
        _, data = self.sessions.create()
        request.scope["session"] = data
        request.scope["session_id"] = _
        response = Response(status_code=204)
        response.headers["HX-Redirect"] = "/auth/login" if self.mode != "off" else "/ask"
        return response

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/login", self.login, methods=["GET"]),
            Route("/auth/callback", self.callback, methods=["GET"]),
            Route("/auth/token", self.token_login, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
        ]

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return render(request, name, context, status)

    def templates_error(self, request: Request, message: str, status: int) -> Response:
        return render(request, "_error_page.html", {"message": message}, status)
