"""The login & consent provider (isthmus_core.testing.oidc_login) with the real Hydra, no console: a
browser runs the authorization-code flow of a client registered with ``hydra.new_browser_client``;
Hydra shows the provider's form, the user signs in, consent is given at once, and the code the redirect
URI receives buys tokens: an RS256 access token for the subject, audience ``isthmus`` and the user's
groups under ``ext.groups`` (what ``auth_groups_claim = "ext.groups"`` reads), an ID token with the
user's name, and a refresh token (offline_access). An empty username is refused by the form."""

from __future__ import annotations

import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest

from .conftest import wait_for_url

pytestmark = [pytest.mark.browser, pytest.mark.hydra]


class _Landing(BaseHTTPRequestHandler):
    """The relying party's redirect URI: a plain page (the test reads the code from the URL)."""

    def do_GET(self) -> None:
        body = b'<!doctype html><html lang="en"><head><title>back</title></head><body><main><h1>back</h1></main></body></html>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def landing() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cb"
    finally:
        server.shutdown()
        server.server_close()


def _authorize_url(hydra: Any, client_id: str, redirect_uri: str, state: str) -> str:
    found = httpx.get(hydra.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid offline_access",
        "state": state,
    }
    return str(found["authorization_endpoint"]) + "?" + urllib.parse.urlencode(query)


def test_a_browser_login_gets_tokens_with_audience_groups_and_name(
    hydra: Any, landing: str, page: Any
) -> None:
    hydra.login.add_user("carol", "Carol Danvers", ["analysts", "pilots"])
    client_id, secret = hydra.new_browser_client(landing, name="isthmus-provider-check")
    state = secrets.token_urlsafe(16)
    page.goto(_authorize_url(hydra, client_id, landing, state))
    wait_for_url(page, hydra.login.login_url, "the provider's login form")
    page.get_by_role("button", name="Sign in").click()  # empty: the browser's `required` keeps it here
    assert page.url.startswith(hydra.login.login_url)
    page.get_by_label("Username").fill("carol")
    page.get_by_role("button", name="Sign in").click()
    wait_for_url(page, landing, "the client's redirect URI")
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))
    assert back.get("state") == state and back.get("code"), page.url

    quote = urllib.parse.quote  # client_secret_basic: both parts form-encoded (RFC 6749 2.3.1)
    resp = httpx.post(
        hydra.token_url,
        data={"grant_type": "authorization_code", "code": back["code"], "redirect_uri": landing},
        auth=(quote(client_id, safe=""), quote(secret, safe="")),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    key = jwt.PyJWKClient(hydra.jwks_url, cache_keys=False).get_signing_key_from_jwt(tokens["access_token"])
    access = jwt.decode(
        tokens["access_token"], key.key, algorithms=["RS256"], audience="isthmus", issuer=hydra.issuer
    )
    assert access["sub"] == "carol"
    assert access["ext"]["groups"] == ["analysts", "pilots"]
    assert set(access["scp"]) == {"openid", "offline_access"}
    ident = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (ident["sub"], ident["name"], ident["aud"]) == ("carol", "Carol Danvers", [client_id])
    assert tokens.get("refresh_token")
    assert hydra.login.logins[-1] == "carol"


def test_the_form_refuses_a_username_it_cannot_bind(hydra: Any, landing: str, context: Any) -> None:
    client_id, _ = hydra.new_browser_client(landing, name="isthmus-provider-bad-name")
    page = context.new_page()
    page.goto(_authorize_url(hydra, client_id, landing, secrets.token_urlsafe(16)))
    wait_for_url(page, hydra.login.login_url, "the provider's login form")
    page.get_by_label("Username").fill("not a name")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Sign in").click()
    assert posted.value.status == 400
    assert "Enter a username" in page.get_by_role("alert").inner_text()
