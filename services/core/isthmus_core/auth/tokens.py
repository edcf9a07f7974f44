"""Bearer JWT → verified :class:`~isthmus_core.auth.identity.Principal` (PyJWT).

:class:`JwtVerifier` implements :class:`~isthmus_core.auth.stack.TokenVerifier`:

* the signature algorithm is pinned: the token's ``alg`` must be one of the configured asymmetric
  algorithms (``none`` and ``HS*`` are refused whatever the settings say), and the key it names must be
  of that algorithm's type (an RSA key never checks an ``ES256`` token, a public key never an HMAC);
* ``exp``, ``iss``, ``aud`` and ``sub`` are required; ``exp``/``nbf``/``iat`` allow ``leeway_s`` of
  clock skew;
* keys come from a :class:`KeySource`: :class:`RemoteJwks` fetches the issuer's JWKS over HTTP(S) in a
  worker thread (never on the event loop), keeps it ``cache_s`` seconds, and refetches when a token names
  an unknown ``kid`` (key rotation) — at most once every ``refetch_after_s`` seconds, so tokens with
  random kids cannot make it hammer the identity provider; :class:`StaticJwks` serves fixed keys (the
  local development issuer);
* a verified token is remembered (by its SHA-256, in a bounded LRU) until its ``exp`` — or until the
  keys are due for a refetch, whichever comes first — so a caller's repeated calls cost one dict lookup.

Every refusal is :class:`~isthmus_core.errors.Unauthenticated` with a precise reason (expired, wrong
audience, wrong issuer, unknown key, bad signature, malformed, algorithm not allowed...) that never
contains the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

import jwt
import structlog

from isthmus_core.auth.identity import Principal
from isthmus_core.auth.settings_check import ASYMMETRIC_ALGORITHMS
from isthmus_core.errors import Unauthenticated, Unavailable

log = structlog.get_logger("isthmus.auth")

#: claims every token must carry
REQUIRED_CLAIMS: Final = ("exp", "iss", "aud", "sub")
#: a longer bearer is refused before any parsing (real access tokens are a few KB)
MAX_TOKEN_CHARS: Final = 16 * 1024
#: a JWKS document larger than this is refused
MAX_JWKS_BYTES: Final = 1024 * 1024
#: the key type (and curve) each algorithm needs
_KEY_TYPES: Final[dict[str, tuple[str, frozenset[str] | None]]] = {
    **{a: ("RSA", None) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}


def default_jwks_url(issuer: str) -> str:
    """Where an OIDC issuer publishes its keys (Hydra, Keycloak realms, Auth0...)."""
    return issuer.rstrip("/") + "/.well-known/jwks.json"


def token_digest(token: str) -> bytes:
    """How a token is keyed in caches (the token itself is never a key nor logged)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class KeySource(Protocol):
    """The issuer's public keys (JWKs as dicts) by ``kid``."""

    async def key(self, kid: str | None) -> Mapping[str, Any] | None:
        """The JWK with this ``kid`` (None: the single signing key, if there is exactly one), or None
        if there is no such key even after a refetch."""
        ...

    @property
    def fresh_until(self) -> float:
        """``time.time()`` after which the keys are due for a refetch (bounds the verified-token cache,
        so a key the issuer withdrew stops verifying tokens within the cache period)."""
        ...


def _signing_keys(jwks: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    return [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig" and k.get("kty")]


def _pick(keys: Sequence[Mapping[str, Any]], kid: str | None) -> Mapping[str, Any] | None:
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    for k in keys:
        if k.get("kid") == kid:
            return k
    return None


class StaticJwks:
    """Fixed keys (the local development issuer's): no HTTP, never stale."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _signing_keys(jwks)

    async def key(self, kid: str | None) -> Mapping[str, Any] | None:
        return _pick(self._keys, kid)

    @property
    def fresh_until(self) -> float:
        return float("inf")


def _fetch_json(url: str, timeout_s: float) -> Any:
    """GET ``url`` (blocking: run it in a worker thread) and parse its JSON body, size-bounded."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # the scheme is checked: http(s)
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    return json.loads(body)


class RemoteJwks:
    """An issuer's JWKS fetched over HTTP(S) off the event loop, cached ``cache_s`` seconds, refetched
    for an unknown ``kid`` at most once per ``refetch_after_s`` seconds (a failed fetch waits as long
    before the next attempt; the keys fetched before stay in use meanwhile)."""

    def __init__(
        self,
        url: str,
        cache_s: float = 300.0,
        refetch_after_s: float = 5.0,
        timeout_s: float = 5.0,
        fetch: Callable[[str, float], Any] = _fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the JWKS URL must be http(s), got {url!r}")
        self.url = url
        self.cache_s = cache_s
        self.refetch_after_s = refetch_after_s
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._clock = clock
        self._keys: list[Mapping[str, Any]] | None = None
        self._fetched_at = float("-inf")  # last successful fetch (clock)
        self._attempted_at = float("-inf")  # last attempt, successful or not (clock)
        self._lock = asyncio.Lock()
        #: number of fetch attempts (observability and tests)
        self.fetches = 0

    @property
    def fresh_until(self) -> float:
        return time.time() + max(0.0, self._fetched_at + self.cache_s - self._clock())

    async def _refresh(self, reason: str) -> None:
        """One fetch, unless another caller just did one (the lock serialises concurrent misses)."""
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return  # someone refreshed while we waited: use that
            if self._clock() - self._attempted_at < self.refetch_after_s:
                return  # rate limit: too soon after the last attempt
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                doc = await asyncio.to_thread(self._fetch, self.url, self.timeout_s)
                keys = _signing_keys(doc)
            except Exception as exc:
                log.warning("could not fetch the issuer's keys", url=self.url, reason=reason, error=str(exc))
                return
            self._keys = keys
            self._fetched_at = self._clock()
            log.info("fetched the issuer's keys", url=self.url, reason=reason, keys=len(keys))

    async def key(self, kid: str | None) -> Mapping[str, Any] | None:
        if self._keys is None or self._clock() - self._fetched_at >= self.cache_s:
            await self._refresh("first use" if self._keys is None else "cache expired")
        if self._keys is None:
            raise Unavailable(f"the identity provider's keys could not be fetched from {self.url}")
        found = _pick(self._keys, kid)
        if found is None and kid is not None:
            await self._refresh("unknown key id")
            found = _pick(self._keys, kid)
        return found


def _checked_jwk(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    """The key, if it is of the type ``alg`` needs and declares no other algorithm."""
    kty, curves = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or (curves is not None and jwk.get("crv") not in curves):
        raise Unauthenticated(f"algorithm not allowed: the token's key is not a {kty} key for {alg}")
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        raise Unauthenticated(
            f"algorithm not allowed: the token's key is for {declared}, the token says {alg}"
        )
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWKError as exc:
        raise Unauthenticated(f"unknown key: the issuer's key cannot be used ({exc})") from None


def _claim(claims: Mapping[str, Any], name: str) -> object:
    """A claim by name; a dotted name not present as such walks nested objects (Hydra puts custom
    claims under ``ext``: ``auth_groups_claim = "ext.groups"``)."""
    if name in claims:
        return claims[name]
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _groups(raw: object, claim: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(g for g in raw.split() if g)
    if isinstance(raw, list) and all(isinstance(g, str) for g in raw):
        return tuple(dict.fromkeys(g for g in raw if g))
    raise Unauthenticated(f"malformed token: the {claim!r} claim is not a list of strings")


class JwtVerifier:
    """Verify bearer JWTs of one issuer (see the module docstring). ``via`` says how the principal was
    authenticated (``"jwt"``: an OIDC provider; ``"local"``: the development issuer)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str],
        keys: KeySource,
        leeway_s: float = 30.0,
        groups_claim: str = "groups",
        via: Literal["jwt", "local"] = "jwt",
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        pinned = frozenset(algorithms)
        refused = sorted(pinned - ASYMMETRIC_ALGORITHMS)
        if refused or not pinned:
            raise ValueError(f"only asymmetric algorithms may verify tokens, got {sorted(pinned)}")
        self.issuer = issuer
        # an issuer URL may appear in tokens with or without its trailing slash (Hydra adds one)
        self._issuers: frozenset[str] = frozenset(
            {issuer, issuer.rstrip("/"), issuer.rstrip("/") + "/"} if "://" in issuer else {issuer}
        )
        self.audience = audience
        self.algorithms = pinned
        self.keys = keys
        self.leeway_s = leeway_s
        self.groups_claim = groups_claim
        self.via: Literal["jwt", "local"] = via
        self.cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._jwks: dict[tuple[str, str], tuple[Mapping[str, Any], jwt.PyJWK]] = {}

    async def verify(self, token: str) -> Principal:
        digest = token_digest(token)
        hit = self._verified.get(digest)
        if hit is not None:
            principal, valid_until = hit
            if self._clock() < valid_until:
                self._verified.move_to_end(digest)
                return principal
            del self._verified[digest]
        principal, valid_until = await self._verify(token)
        self._verified[digest] = (principal, valid_until)
        if len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)
        return principal

    def _key_for(self, jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
        slot = (str(jwk.get("kid", "")), alg)
        known = self._jwks.get(slot)
        if known is not None and known[0] is jwk:
            return known[1]
        key = _checked_jwk(jwk, alg)
        self._jwks[slot] = (jwk, key)
        return key

    async def _verify(self, token: str) -> tuple[Principal, float]:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise Unauthenticated("malformed token: not a compact JWS (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token: the header does not decode") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            shown = alg if isinstance(alg, str) and len(alg) <= 16 else "?"
            allowed = ", ".join(sorted(self.algorithms))
            raise Unauthenticated(f"algorithm not allowed: {shown!r} (this server accepts {allowed})")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise Unauthenticated("malformed token: the key id is not a short string")
        jwk = await self.keys.key(kid)
        if jwk is None:
            raise Unauthenticated("unknown key: the token is not signed by a key of the issuer")
        key = self._key_for(jwk, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self._issuers,
                leeway=self.leeway_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("expired token") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"wrong audience: the token is not for {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"wrong issuer: the token is not from {self.issuer!r}") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid (nbf or iat in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"malformed token: the {exc.claim!r} claim is missing") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(f"algorithm not allowed: {alg!r}") from None
        except jwt.DecodeError:
            raise Unauthenticated("malformed token: the payload or signature does not decode") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {type(exc).__name__}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 512:
            raise Unauthenticated("malformed token: 'sub' is not a non-empty string")
        exp = float(claims["exp"])
        client_id = claims.get("client_id", claims.get("azp", ""))
        principal = Principal(
            subject=subject,
            via=self.via,
            groups=_groups(_claim(claims, self.groups_claim), self.groups_claim),
            issuer=str(claims["iss"]),
            client_id=client_id if isinstance(client_id, str) else "",
            expires_at=exp,
            token=token,
        )
        return principal, min(exp, self.keys.fresh_until)
