"""A login & consent provider for Ory Hydra, for the browser tests (tests only, loopback only).

Hydra runs the OAuth2 authorization-code flow but delegates the user-facing part to an app: it sends the
browser to ``urls.login`` with a ``login_challenge`` and to ``urls.consent`` with a ``consent_challenge``;
the app decides who the user is and what they grant, tells Hydra through its admin API, and sends the
browser on to the ``redirect_to`` Hydra answers. :class:`LoginProvider` is that app, on ``127.0.0.1`` in
a thread (``http.server``, no dependency):

- ``GET /login`` shows a real HTML form (a ``username`` field and a *Sign in* button) — or, when Hydra
  says the user already logged in (``skip``), accepts at once; ``POST /login`` accepts the login
  challenge for that subject (the token's ``sub``);
- ``GET /consent`` accepts the consent at once: the requested scopes, the access-token audience the
  platform checks (``isthmus``, plus any audience the client asked for), and the session claims: the
  user's groups in the access token (Hydra puts them under ``ext``: the platform reads them with
  ``auth_groups_claim = "ext.groups"``), name and groups in the ID token.

Users are optional: any non-empty username logs in; :meth:`LoginProvider.add_user` gives one a display
name and groups. Start it before Hydra (Hydra's config names its URLs: ``tests/infra/hydra.sh up
--login-url ... --consent-url ...``), then set :attr:`LoginProvider.admin_url`.
:func:`create_browser_client` registers an authorization-code client (a web app such as the console).

    python -m isthmus_core.testing.oidc_login --admin-url http://127.0.0.1:24445 --port 24450 \\
        --user alice:Alice:admins
runs it in the foreground for a Hydra started by hand (``make hydra-up`` with the matching flags)."""

from __future__ import annotations

import argparse
import html
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: the usernames the form accepts (a token subject the access file can bind: see contracts.ids)
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
ADMIN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class User:
    """What the provider knows of a user beyond the subject: the ID token's ``name`` and the groups
    (access token ``ext.groups``, ID token ``groups``)."""

    name: str
    groups: tuple[str, ...] = ()


class HydraAdminError(RuntimeError):
    """Hydra's admin API refused a call (status and body in the message)."""


def admin_call(admin_url: str, method: str, path: str, body: Any = None) -> Any:
    """One JSON call to Hydra's admin API; the decoded answer (None for an empty one)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(admin_url.rstrip("/") + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=ADMIN_TIMEOUT_S) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:2000]
        raise HydraAdminError(f"Hydra admin {method} {path}: {err.code} {detail}") from None
    return json.loads(raw) if raw else None


def create_browser_client(
    admin_url: str,
    redirect_uri: str,
    *,
    name: str = "isthmus-console",
    audience: Sequence[str] = ("isthmus",),
    scope: str = "openid offline_access",
    auth_method: str = "client_secret_basic",
) -> tuple[str, str]:
    """Register an authorization-code client (grant types authorization_code + refresh_token, response
    type code, one redirect URI, a secret sent as ``auth_method``, allowed ``audience``): (id, secret)."""
    made = admin_call(
        admin_url,
        "POST",
        "/admin/clients",
        {
            "client_name": name,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [redirect_uri],
            "scope": scope,
            "audience": list(audience),
            "token_endpoint_auth_method": auth_method,
        },
    )
    return str(made["client_id"]), str(made["client_secret"])


class LoginProvider(ThreadingHTTPServer):
    """Hydra's login & consent pages on 127.0.0.1 (a daemon thread): see the module docstring.
    ``login_url``/``consent_url`` go into Hydra's config; ``admin_url`` must be set before a flow runs."""

    daemon_threads = True

    def __init__(
        self,
        admin_url: str = "",
        *,
        port: int = 0,
        audience: Sequence[str] = ("isthmus",),
        start: bool = True,
    ) -> None:
        self.admin_url = admin_url
        self.audience = tuple(audience)
        self.users: dict[str, User] = {}
        #: subjects logged in so far, in order (what a test can assert on)
        self.logins: list[str] = []
        super().__init__(("127.0.0.1", port), _Handler)
        base = f"http://127.0.0.1:{self.server_address[1]}"
        self.login_url = base + "/login"
        self.consent_url = base + "/consent"
        if start:
            threading.Thread(target=self.serve_forever, name="oidc-login-provider", daemon=True).start()

    def add_user(self, subject: str, name: str = "", groups: Sequence[str] = ()) -> None:
        if USERNAME.fullmatch(subject) is None:
            raise ValueError(f"{subject!r} is not a username this provider accepts ({USERNAME.pattern})")
        self.users[subject] = User(name or subject, tuple(groups))

    def user(self, subject: str) -> User:
        return self.users.get(subject) or User(subject)

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    # -- the two steps, against Hydra's admin API ---------------------------------------------------
    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.admin_url:
            raise HydraAdminError("the login provider was not told Hydra's admin URL")
        return admin_call(self.admin_url, method, path, body)

    def login_request(self, challenge: str) -> dict[str, Any]:
        q = urllib.parse.urlencode({"login_challenge": challenge})
        found: dict[str, Any] = self._admin("GET", f"/admin/oauth2/auth/requests/login?{q}")
        return found

    def accept_login(self, challenge: str, subject: str) -> str:
        q = urllib.parse.urlencode({"login_challenge": challenge})
        done = self._admin(
            "PUT", f"/admin/oauth2/auth/requests/login/accept?{q}", {"subject": subject, "remember": False}
        )
        self.logins.append(subject)
        return str(done["redirect_to"])

    def accept_consent(self, challenge: str) -> str:
        q = urllib.parse.urlencode({"consent_challenge": challenge})
        asked = self._admin("GET", f"/admin/oauth2/auth/requests/consent?{q}")
        user = self.user(str(asked.get("subject", "")))
        audience = sorted({*self.audience, *(asked.get("requested_access_token_audience") or [])})
        groups = list(user.groups)
        done = self._admin(
            "PUT",
            f"/admin/oauth2/auth/requests/consent/accept?{q}",
            {
                "grant_scope": asked.get("requested_scope") or [],
                "grant_access_token_audience": audience,
                "remember": False,
                "session": {
                    "access_token": {"groups": groups},
                    "id_token": {
                        "name": user.name,
                        "preferred_username": asked.get("subject", ""),
                        "groups": groups,
                    },
                },
            },
        )
        return str(done["redirect_to"])


_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in — test identity provider</title></head>
<body>
<main>
<h1>Sign in</h1>
<p>Test identity provider (Ory Hydra login &amp; consent).</p>
{error}
<form method="post" action="/login">
<input type="hidden" name="login_challenge" value="{challenge}">
<p><label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus></p>
<p><button type="submit">Sign in</button></p>
</form>
</main>
</body>
</html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: LoginProvider

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path == "/login" and query.get("login_challenge"):
                challenge = query["login_challenge"]
                asked = self.server.login_request(challenge)
                if asked.get("skip"):  # Hydra already knows the user: no form
                    self._redirect(self.server.accept_login(challenge, str(asked["subject"])))
                else:
                    self._form(challenge)
            elif url.path == "/consent" and query.get("consent_challenge"):
                self._redirect(self.server.accept_consent(query["consent_challenge"]))
            else:
                self._text(404, "not found: this test provider serves /login and /consent from Hydra")
        except HydraAdminError as err:
            self._text(502, str(err))

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/login":
            self._text(404, "not found")
            return
        length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode(errors="replace")))
        challenge, username = form.get("login_challenge", ""), form.get("username", "").strip()
        if not challenge:
            self._text(400, "login_challenge is missing")
            return
        if USERNAME.fullmatch(username) is None:
            self._form(challenge, error="Enter a username (letters, digits, . _ @ -).", status=400)
            return
        try:
            self._redirect(self.server.accept_login(challenge, username))
        except HydraAdminError as err:
            self._text(502, str(err))

    def _form(self, challenge: str, error: str = "", status: int = 200) -> None:
        shown = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        body = _PAGE.format(error=shown, challenge=html.escape(challenge, quote=True))
        self._send(status, "text/html; charset=utf-8", body.encode())

    def _redirect(self, to: str) -> None:
        self.send_response(303)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _text(self, status: int, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hydra login & consent provider for tests (loopback)")
    parser.add_argument("--admin-url", required=True, help="Hydra's admin API, e.g. http://127.0.0.1:24445")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--audience", action="append", default=None, help="granted (default: isthmus)")
    parser.add_argument(
        "--user", action="append", default=[], help="subject[:name[:group,group...]] (repeatable)"
    )
    args = parser.parse_args(argv)
    provider = LoginProvider(
        args.admin_url, port=args.port, audience=args.audience or ("isthmus",), start=False
    )
    for spec in args.user:
        subject, _, rest = spec.partition(":")
        name, _, groups = rest.partition(":")
        provider.add_user(subject, name, [g for g in groups.split(",") if g])
    print(f"login: {provider.login_url}\nconsent: {provider.consent_url}", flush=True)
    try:
        provider.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        provider.server_close()


if __name__ == "__main__":
    main()
