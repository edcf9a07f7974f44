"""Bearer JWT verification (isthmus_core.auth.tokens) and the local development issuer, with real keys
and, for the issuer's JWKS, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.auth.local_issuer import ISSUER, LocalIssuer, thumbprint
from isthmus_core.auth.tokens import JwtVerifier, KeySource, RemoteJwks, StaticJwks
from isthmus_core.errors import ConfigurationError, Unauthenticated, Unavailable
from isthmus_core.testing.auth import IdpServer, Signer, claims, hmac_signed, unsigned

ISS = "https://idp.test"


class Counting:
    """A key source that counts lookups (the verified-token cache must spare them)."""

    def __init__(self, inner: KeySource) -> None:
        self.inner = inner
        self.lookups = 0

    async def key(self, kid: str | None) -> Mapping[str, Any] | None:
        self.lookups += 1
        return await self.inner.key(kid)

    @property
    def fresh_until(self) -> float:
        return self.inner.fresh_until


@pytest.fixture(scope="module")
def ec_key() -> Signer:
    return Signer("EC256", "ec-1")


@pytest.fixture(scope="module")
def rsa_key() -> Signer:
    return Signer("RSA", "rsa-1")


def verifier(*signers: Signer, algorithms: tuple[str, ...] = ("ES256", "RS256"), **kw: Any) -> JwtVerifier:
    keys = StaticJwks({"keys": [s.jwk() for s in signers]})
    return JwtVerifier(issuer=ISS, audience="isthmus", algorithms=algorithms, keys=keys, **kw)


async def refused(v: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        await v.verify(token)
    reason = info.value.reason
    # a refusal never echoes the token, nor any part of it (parts shorter than 16 characters could be
    # in any sentence by chance)
    for part in [token, *token.split(".")]:
        assert len(part) < 16 or part not in reason
    return reason


async def test_a_valid_token_gives_its_principal(ec_key: Signer) -> None:
    token = ec_key.sign(claims("alice", issuer=ISS, groups=["analysts", "ops"], client_id="app-1"))
    p = await verifier(ec_key).verify(token)
    assert (p.subject, p.via, p.groups) == ("alice", "jwt", ("analysts", "ops"))
    assert (p.issuer, p.client_id) == (ISS, "app-1")
    assert p.token == token
    assert p.expires_at is not None


async def test_groups_come_from_the_configured_claim(ec_key: Signer) -> None:
    token = ec_key.sign(claims("alice", issuer=ISS, roles=["r1"], groups=["ignored"]))
    p = await verifier(ec_key, groups_claim="roles").verify(token)
    assert p.groups == ("r1",)
    nested = ec_key.sign(claims("alice", issuer=ISS, ext={"groups": ["g1", "g2"]}))  # Hydra's custom claims
    assert (await verifier(ec_key, groups_claim="ext.groups").verify(nested)).groups == ("g1", "g2")
    assert (await verifier(ec_key, groups_claim="ext.roles").verify(nested)).groups == ()
    bad = ec_key.sign(claims("alice", issuer=ISS, groups={"a": 1}))
    assert "groups" in await refused(verifier(ec_key), bad)


async def test_issuer_with_or_without_trailing_slash(ec_key: Signer) -> None:
    token = ec_key.sign(claims("alice", issuer=ISS + "/"))
    assert (await verifier(ec_key).verify(token)).subject == "alice"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 20_000, "e30.e30.e30.e30"])
async def test_malformed_tokens(ec_key: Signer, token: str) -> None:
    assert (await refused(verifier(ec_key), token)).startswith("malformed token")


async def test_expired_beyond_the_leeway_is_refused_within_it_accepted(ec_key: Signer) -> None:
    old = ec_key.sign(claims("alice", issuer=ISS, ttl_s=-60))  # expired a minute ago
    assert await refused(verifier(ec_key, leeway_s=30), old) == "expired token"
    assert (await verifier(ec_key, leeway_s=120).verify(old)).subject == "alice"


async def test_not_yet_valid(ec_key: Signer) -> None:
    import time

    token = ec_key.sign(claims("alice", issuer=ISS, nbf=int(time.time()) + 600))
    assert "not yet valid" in await refused(verifier(ec_key), token)


async def test_wrong_audience_and_wrong_issuer(ec_key: Signer) -> None:
    v = verifier(ec_key)
    assert (await refused(v, ec_key.sign(claims(issuer=ISS, audience="other")))).startswith("wrong audience")
    assert (await refused(v, ec_key.sign(claims(issuer="https://evil.test")))).startswith("wrong issuer")
    ok = ec_key.sign(claims(issuer=ISS, audience=["other", "isthmus"]))
    assert (await v.verify(ok)).subject == "alice"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
async def test_required_claims(ec_key: Signer, missing: str) -> None:
    payload = claims(issuer=ISS)
    del payload[missing]
    assert missing in await refused(verifier(ec_key), ec_key.sign(payload))


async def test_a_key_the_issuer_does_not_publish(ec_key: Signer) -> None:
    stranger = Signer("EC256", "stranger")
    reason = await refused(verifier(ec_key), stranger.sign(claims(issuer=ISS)))
    assert reason.startswith("unknown key")
    impostor = Signer("EC256", ec_key.kid)  # claims the issuer's key id, signed with another key
    assert await refused(verifier(ec_key), impostor.sign(claims(issuer=ISS))) == "bad signature"


async def test_alg_none_is_refused(ec_key: Signer) -> None:
    token = unsigned(claims(issuer=ISS), kid=ec_key.kid)
    assert "algorithm not allowed: 'none'" in await refused(verifier(ec_key), token)


async def test_hs256_signed_with_the_rsa_public_key_is_refused(rsa_key: Signer) -> None:
    """Algorithm confusion: an HMAC keyed with the (public) RSA key's PEM bytes."""
    token = hmac_signed(claims(issuer=ISS), rsa_key.public_pem(), kid=rsa_key.kid)
    assert "algorithm not allowed: 'HS256'" in await refused(verifier(rsa_key), token)
    # the JWK's own bytes as the secret: same answer
    jwk_secret = json.dumps(rsa_key.jwk()).encode()
    confused = hmac_signed(claims(issuer=ISS), jwk_secret)
    assert "algorithm not allowed" in await refused(verifier(rsa_key), confused)


def test_hmac_algorithms_cannot_be_configured() -> None:
    none = StaticJwks({"keys": []})
    with pytest.raises(ValueError, match="asymmetric"):
        JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["RS256", "HS256"], keys=none)
    with pytest.raises(ValueError, match="asymmetric"):
        JwtVerifier(issuer=ISS, audience="isthmus", algorithms=[], keys=none)


async def test_an_rs_token_when_only_es_is_allowed(rsa_key: Signer) -> None:
    token = rsa_key.sign(claims(issuer=ISS))
    assert "algorithm not allowed: 'RS256'" in await refused(verifier(rsa_key, algorithms=("ES256",)), token)


async def test_the_key_must_match_the_tokens_algorithm(ec_key: Signer, rsa_key: Signer) -> None:
    """A token saying ES256 that names an RSA key (or the reverse) is refused before any signature
    check; so is a key whose JWK declares another algorithm, and a P-384 key for ES256."""
    v = verifier(ec_key, rsa_key, algorithms=("ES256", "RS256", "PS256"))
    lying = ec_key.sign(claims(issuer=ISS), kid=rsa_key.kid)  # ES256, names the RSA key
    assert "not a EC key" in await refused(v, lying)
    pss = rsa_key.sign(claims(issuer=ISS), alg="PS256")
    declared = JwtVerifier(
        issuer=ISS,
        audience="isthmus",
        algorithms=("RS256", "PS256"),
        keys=StaticJwks({"keys": [rsa_key.jwk(alg="RS256")]}),
    )
    assert "key is for RS256" in await refused(declared, pss)
    p384 = Signer("EC384", "p384")
    v384 = verifier(p384, algorithms=("ES256", "ES384"))
    # signed with the P-384 key (ES384) but saying ES256
    mislabelled = p384.sign(claims(issuer=ISS), alg="ES384", alg_header="ES256")
    assert "not a EC key for ES256" in await refused(v384, mislabelled)
    assert (await v384.verify(p384.sign(claims(issuer=ISS)))).subject == "alice"


async def test_eddsa_tokens_verify() -> None:
    ed = Signer("Ed25519", "ed-1")
    assert (await verifier(ed, algorithms=("EdDSA",)).verify(ed.sign(claims(issuer=ISS)))).subject == "alice"


async def test_verified_tokens_are_remembered_until_exp(ec_key: Signer) -> None:
    now = [1_000.0]
    keys = Counting(StaticJwks({"keys": [ec_key.jwk()]}))
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys, clock=lambda: now[0])
    token = ec_key.sign(claims(issuer=ISS))
    first = await v.verify(token)
    assert await v.verify(token) is first
    assert keys.lookups == 1  # the second call cost a dict lookup
    assert first.expires_at is not None
    now[0] = first.expires_at  # at exp the token is verified again (the leeway applies there)
    await v.verify(token)
    assert keys.lookups == 2
    # bounded: the oldest entry goes
    small = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys, cache_size=2)
    tokens = [ec_key.sign(claims(f"user-{i}", issuer=ISS)) for i in range(3)]
    for t in tokens:
        await small.verify(t)
    lookups = keys.lookups
    await small.verify(tokens[0])
    assert keys.lookups == lookups + 1


async def test_a_refused_token_is_not_remembered(ec_key: Signer) -> None:
    keys = Counting(StaticJwks({"keys": [ec_key.jwk()]}))
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys)
    bad = Signer("EC256", ec_key.kid).sign(claims(issuer=ISS))
    for _ in range(2):
        await refused(v, bad)
    assert keys.lookups == 2


# --- the issuer's JWKS over HTTP -----------------------------------------------------------------------


@pytest.fixture
def idp() -> Iterator[IdpServer]:
    with IdpServer() as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_key_rotation_is_picked_up_and_refetches_are_rate_limited(idp: IdpServer) -> None:
    old, new = Signer("RSA", "2026-01"), Signer("RSA", "2026-02")
    idp.publish(old.jwk())
    clock = Clock()
    keys = RemoteJwks(idp.url + "/jwks", cache_s=300, refetch_after_s=5, clock=clock)
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["RS256"], keys=keys)
    assert (await v.verify(old.sign(claims(issuer=ISS)))).subject == "alice"
    assert idp.state.jwks_requests == 1

    idp.publish(old.jwk(), new.jwk())  # the issuer rotates: a new kid appears
    clock.t = 1.0  # within the refetch interval of the first fetch: not fetched again yet
    assert (await refused(v, new.sign(claims(issuer=ISS)))).startswith("unknown key")
    assert idp.state.jwks_requests == 1
    clock.t = 6.0
    assert (await v.verify(new.sign(claims("bob", issuer=ISS)))).subject == "bob"
    assert idp.state.jwks_requests == 2

    # tokens naming random kids cannot make it hammer the identity provider
    clock.t = 7.0
    for i in range(20):
        stranger = old.sign(claims(issuer=ISS), kid=f"random-{i}")
        await refused(v, stranger)
    assert idp.state.jwks_requests == 2
    clock.t = 12.0
    await refused(v, old.sign(claims(issuer=ISS), kid="random-again"))
    assert idp.state.jwks_requests == 3


async def test_concurrent_misses_share_one_fetch(idp: IdpServer) -> None:
    signer = Signer("EC256", "k")
    idp.publish(signer.jwk())
    keys = RemoteJwks(idp.url + "/jwks", refetch_after_s=5)
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys)
    tokens = [signer.sign(claims(f"u{i}", issuer=ISS)) for i in range(10)]
    principals = await asyncio.gather(*(v.verify(t) for t in tokens))
    assert [p.subject for p in principals] == [f"u{i}" for i in range(10)]
    assert idp.state.jwks_requests == 1


async def test_keys_are_refetched_when_the_cache_expires(idp: IdpServer) -> None:
    signer = Signer("EC256", "k")
    idp.publish(signer.jwk())
    clock = Clock()
    keys = RemoteJwks(idp.url + "/jwks", cache_s=60, refetch_after_s=5, clock=clock)
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys)
    await v.verify(signer.sign(claims(issuer=ISS)))
    idp.publish()  # the issuer withdraws the key
    clock.t = 61.0
    assert (await refused(v, signer.sign(claims("bob", issuer=ISS)))).startswith("unknown key")
    assert idp.state.jwks_requests == 2


async def test_an_unreachable_jwks_is_unavailable_not_a_hammer() -> None:
    with IdpServer() as gone:
        url = gone.url + "/jwks"
    clock = Clock()
    keys = RemoteJwks(url, refetch_after_s=5, timeout_s=2, clock=clock)
    v = JwtVerifier(issuer=ISS, audience="isthmus", algorithms=["ES256"], keys=keys)
    token = Signer("EC256", "k").sign(claims(issuer=ISS))
    for _ in range(3):
        with pytest.raises(Unavailable, match="could not be fetched"):
            await v.verify(token)
    assert keys.fetches == 1


def test_only_http_jwks_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        RemoteJwks("file:///etc/passwd")


# --- the local development issuer ----------------------------------------------------------------------


def test_rfc7638_thumbprint() -> None:
    """The example of RFC 7638 section 3.1."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
        "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
        "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lF"
        "d2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_local_key_is_created_0600_once(tmp_path: Path) -> None:
    key_file = tmp_path / "auth" / "local-issuer.pem"
    first = LocalIssuer(key_file)
    token = first.mint("alice")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = LocalIssuer(key_file)  # another process on the same data dir: the same key
    assert second.kid == first.kid == thumbprint(first.public_jwk())
    assert "d" not in second.public_jwk()  # the JWKS is public
    assert [p.name for p in key_file.parent.iterdir()] == ["local-issuer.pem"]
    assert token.count(".") == 2


async def test_local_tokens_verify_over_the_local_jwks(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path / "k.pem", audience="isthmus")
    v = JwtVerifier(
        issuer=ISSUER,
        audience="isthmus",
        algorithms=["ES256"],
        keys=StaticJwks(issuer.jwks()),
        via="local",
    )
    p = await v.verify(issuer.mint("alice", groups=["analysts"], ttl_s=60))
    assert (p.subject, p.groups, p.via, p.issuer) == ("alice", ("analysts",), "local", ISSUER)
    assert (await refused(v, issuer.mint("alice", audience="other"))).startswith("wrong audience")
    other = LocalIssuer(tmp_path / "other.pem")  # another machine's key
    assert (await refused(v, other.mint("alice"))).startswith("unknown key")


def test_a_local_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    LocalIssuer(key_file).mint("alice")
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        LocalIssuer(key_file).mint("alice")


def test_mint_bounds(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path / "k.pem")
    with pytest.raises(ValueError, match="ttl"):
        issuer.mint("alice", ttl_s=0)
    with pytest.raises(ValueError, match="subject"):
        issuer.mint("")
