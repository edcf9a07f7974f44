"""Test helpers for identity and access: real keys, a real HTTP identity-provider stand-in, a bindings
authorizer. Used by the auth tests of every package (nothing here runs at import time).

* :class:`Signer` — an RSA, EC or Ed25519 key that signs tokens with any header (including ones a
  verifier must refuse) and publishes its public JWK;
* :class:`IdpServer` — a real ``http.server`` on 127.0.0.1 in a thread: ``GET /jwks`` (a JWKS the test
  changes at will) and ``POST /token`` (an OAuth2 token endpoint answering what the test says), counting
  and keeping the requests;
* :class:`Bindings` — an :class:`~isthmus_core.auth.context.Authorizer` over explicit
  ``(principal name, tenant or "*") → permissions`` bindings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from isthmus_core.auth.identity import ALL_TENANTS, Permission, Principal

KeyKind = Literal["RSA", "EC256", "EC384", "Ed25519"]
_DEFAULT_ALG = {"RSA": "RS256", "EC256": "ES256", "EC384": "ES384", "Ed25519": "EdDSA"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(
    subject: str = "alice",
    *,
    issuer: str = "https://idp.test",
    audience: str | list[str] = "isthmus",
    ttl_s: float = 300.0,
    now: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Standard claims for a token valid ``ttl_s`` seconds from ``now`` (negative: already expired)."""
    t = int(time.time() if now is None else now)
    return {"iss": issuer, "sub": subject, "aud": audience, "iat": t, "exp": t + int(ttl_s), **extra}


class Signer:
    """A fresh private key of ``kind`` with id ``kid``."""

    def __init__(self, kind: KeyKind = "EC256", kid: str = "key-1") -> None:
        self.kind = kind
        self.kid = kid
        self.alg = _DEFAULT_ALG[kind]
        self.key: Any
        if kind == "RSA":
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "EC256":
            self.key = ec.generate_private_key(ec.SECP256R1())
        elif kind == "EC384":
            self.key = ec.generate_private_key(ec.SECP384R1())
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK (``kid`` set; ``extra`` members added, e.g. ``alg``)."""
        public = self.key.public_key()
        if self.kind == "RSA":
            data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        elif self.kind == "Ed25519":
            data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", **extra}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def sign(
        self, payload: Mapping[str, Any], alg: str | None = None, alg_header: str | None = None, **header: Any
    ) -> str:
        """A JWS of ``payload`` signed with this key (``alg`` default: the key's own); ``alg_header``
        puts another algorithm in the header than the one that signed (a lying token)."""
        alg = alg or self.alg
        token = jwt.encode(dict(payload), self.key, algorithm=alg, headers={"kid": self.kid, **header})
        if alg_header is None:
            return token
        head, rest = token.split(".", 1)
        fields = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        return b64url(json.dumps({**fields, "alg": alg_header}).encode()) + "." + rest


def unsigned(payload: Mapping[str, Any], **header: Any) -> str:
    """An ``alg: none`` token (no signature)."""
    head = b64url(json.dumps({"alg": "none", "typ": "JWT", **header}).encode())
    body = b64url(json.dumps(dict(payload)).encode())
    return f"{head}.{body}."


def hmac_signed(payload: Mapping[str, Any], secret: bytes, alg: str = "HS256", **header: Any) -> str:
    """An HMAC token signed with ``secret`` — e.g. an RSA public key's PEM bytes (algorithm confusion),
    which PyJWT itself refuses to produce."""
    head = b64url(json.dumps({"alg": alg, "typ": "JWT", **header}).encode())
    body = b64url(json.dumps(dict(payload)).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64url(sig)}"


@dataclass
class IdpState:
    """What the server answers, and what it was asked (read and changed by the test)."""

    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    jwks_requests: int = 0
    #: (status, JSON body) the token endpoint answers
    token_response: tuple[int, dict[str, Any]] = (200, {"access_token": "t", "expires_in": 3600})
    #: (Authorization header, form fields) of each token request
    token_requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class IdpServer:
    """A real HTTP server on 127.0.0.1 (a context manager): ``GET /jwks`` and ``POST /token``."""

    def __init__(self) -> None:
        self.state = IdpState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/jwks":
                    self._send(404, {"error": "not_found"})
                    return
                with state.lock:
                    state.jwks_requests += 1
                    body = json.loads(json.dumps(state.jwks))
                self._send(200, body)

            def do_POST(self) -> None:
                from urllib.parse import parse_qs

                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                with state.lock:
                    state.token_requests.append((self.headers.get("Authorization", ""), form))
                    status, body = state.token_response
                self._send(status, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="idp-server", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> IdpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def publish(self, *jwks: Mapping[str, Any]) -> None:
        with self.state.lock:
            self.state.jwks = {"keys": [dict(k) for k in jwks]}


class Bindings:
    """An authorizer over explicit bindings: ``{(name, tenant or "*"): permissions}`` where ``name`` is
    a subject or ``group:<g>`` (:attr:`Principal.names`)."""

    def __init__(self, bindings: Mapping[tuple[str, str], Iterable[Permission]]) -> None:
        self._bindings = {k: frozenset(v) for k, v in bindings.items()}

    def allowed(self, principal: Principal, tenant: str | None, permission: Permission) -> bool:
        for name in principal.names:
            if permission in self._bindings.get((name, ALL_TENANTS), frozenset()):
                return True
            if tenant is not None and permission in self._bindings.get((name, tenant), frozenset()):
                return True
        return False

    def allowed_anywhere(self, principal: Principal, permission: Permission) -> bool:
        names = set(principal.names)
        return any(name in names and permission in perms for (name, _), perms in self._bindings.items())

    def tenants(self, principal: Principal, permission: Permission) -> frozenset[str] | None:
        if self.allowed(principal, None, permission):
            return None
        names = set(principal.names)
        return frozenset(
            t for (name, t), perms in self._bindings.items() if name in names and permission in perms
        )
