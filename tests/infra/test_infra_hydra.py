"""The real OAuth2 server the auth tests rely on (tests/infra/hydra.sh through the session ``hydra``
fixture): Hydra's client-credentials tokens are RS256 JWTs that verify against its JWKS with the issuer,
audience and subject the platform checks; a key rotation makes new tokens carry a new kid that the JWKS
publishes, while the old key keeps verifying; a client cannot get a token for an audience it was not
allowed, and a token for another audience fails an ``isthmus`` audience check; the token hook puts a
client's groups in its tokens (``ext.groups``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

pytestmark = pytest.mark.hydra

ROOT = Path(__file__).resolve().parents[2]


def verify(hydra: Any, token: str, audience: str = "isthmus") -> dict[str, Any]:
    keys = jwt.PyJWKClient(hydra.jwks_url, cache_keys=False)  # fetched fresh: what Hydra publishes now
    key = keys.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=hydra.issuer,
        options={"require": ["exp", "iss", "aud", "sub"]},
    )
    return claims


def test_env_names_the_discovery_endpoints(hydra: Any) -> None:
    found = httpx.get(hydra.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()
    assert (found["issuer"], found["jwks_uri"], found["token_endpoint"]) == (
        hydra.issuer,
        hydra.jwks_url,
        hydra.token_url,
    )
    assert httpx.get(hydra.admin_url + "/health/ready", timeout=10).status_code == 200


def test_a_client_credentials_token_verifies_against_the_jwks(hydra: Any) -> None:
    client_id, secret = hydra.new_client(name="infra-check")
    token = hydra.token(client_id, secret)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = verify(hydra, token)
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["aud"] == ["isthmus"]
    with pytest.raises(jwt.InvalidAudienceError):
        verify(hydra, token, audience="billing")
    # a wrong secret gets no token
    with pytest.raises(AssertionError, match="401"):
        hydra.token(client_id, secret + "x")


def test_an_audience_the_client_was_not_allowed_is_not_issued(hydra: Any) -> None:
    client_id, secret = hydra.new_client(name="infra-billing", audience="billing")
    with pytest.raises(AssertionError, match="audience"):
        hydra.token(client_id, secret)  # asks for "isthmus"
    token = hydra.token(client_id, secret, audience="billing")
    assert verify(hydra, token, audience="billing")["aud"] == ["billing"]
    with pytest.raises(jwt.InvalidAudienceError):
        verify(hydra, token)


def test_rotate_keys_signs_new_tokens_with_a_new_published_key(hydra: Any) -> None:
    client_id, secret = hydra.new_client(name="infra-rotation")
    before = hydra.token(client_id, secret)
    old_kid = jwt.get_unverified_header(before)["kid"]
    new_kid = hydra.rotate_keys()
    after = hydra.token(client_id, secret)
    assert jwt.get_unverified_header(after)["kid"] == new_kid != old_kid
    published = {k["kid"] for k in httpx.get(hydra.jwks_url, timeout=10).json()["keys"]}
    assert {old_kid, new_kid} <= published
    assert verify(hydra, after)["sub"] == verify(hydra, before)["sub"] == client_id


def test_the_token_hook_gives_a_client_groups_under_ext(hydra: Any) -> None:
    grouped, secret = hydra.new_client(name="infra-grouped")
    plain, plain_secret = hydra.new_client(name="infra-plain")
    hydra.set_groups(grouped, ["analysts", "board"])
    claims = verify(hydra, hydra.token(grouped, secret))
    assert claims["ext"]["groups"] == ["analysts", "board"]
    assert "groups" not in verify(hydra, hydra.token(plain, plain_secret)).get("ext", {})


def test_status_reports_the_running_server(hydra: Any) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "tests" / "infra" / "hydra.sh"), "status", "--dir", str(hydra.data)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("running")
    assert f"ISSUER={hydra.issuer}" in proc.stdout.splitlines()
