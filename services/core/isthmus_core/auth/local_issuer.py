"""The local development issuer (``[common] auth = "local"``): one machine, no identity provider.

An EC P-256 key at ``auth_local_key_file`` (default ``<data_dir>/auth/local-issuer.pem``), created with
mode 0600 on first use (atomically: two processes starting together end up with the same key). Tokens
are ES256 JWTs with ``iss = "isthmus-local"``, ``aud`` = ``auth_audience`` and ``kid`` = the key's RFC
7638 thumbprint; ``isthmus auth token --subject S`` prints one, and every process of the platform on
that machine verifies it with :class:`~isthmus_core.auth.tokens.JwtVerifier` over :meth:`jwks` (no HTTP).
Anyone who can read the key file can mint any identity: it is for development on one machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from isthmus_core.errors import ConfigurationError

ISSUER: Final = "isthmus-local"
ALGORITHM: Final = "ES256"
#: the subject of the platform's own processes (bound to role ``service`` on every tenant)
SERVICE_SUBJECT: Final = "isthmus-service"
#: longest lifetime of a minted token
MAX_TTL_S: Final = 30 * 24 * 3600


def default_key_file(data_dir: Path) -> Path:
    return data_dir / "auth" / "local-issuer.pem"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC or RSA public key."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _create(path: Path) -> None:
    """Write a new key to ``path`` (0600) unless one appears there first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)  # atomic, and fails if another process created the key meanwhile
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


class LocalIssuer:
    """Mints and publishes the keys of the local development issuer (the key is read on first use)."""

    def __init__(self, key_file: Path, audience: str = "isthmus") -> None:
        self.key_file = key_file
        self.audience = audience
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._jwk: dict[str, Any] | None = None

    def _load(self) -> ec.EllipticCurvePrivateKey:
        if self._key is not None:
            return self._key
        try:
            if not self.key_file.exists():
                _create(self.key_file)
            mode = stat.S_IMODE(self.key_file.stat().st_mode)
            if mode & 0o077:
                raise ConfigurationError(
                    f"the local issuer's key {self.key_file} is readable by others (mode {mode:o}); "
                    f"chmod 600 it (anyone who reads it can sign any identity)"
                )
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        except OSError as exc:
            raise ConfigurationError(f"the local issuer's key {self.key_file}: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(
                f"the local issuer's key {self.key_file} is not a PEM key: {exc}"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError(f"the local issuer's key {self.key_file} is not an EC P-256 key")
        self._key = key
        return key

    def public_jwk(self) -> dict[str, Any]:
        if self._jwk is None:
            jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._load().public_key()))
            public = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
            self._jwk = {**public, "kid": thumbprint(public), "use": "sig", "alg": ALGORITHM}
        return dict(self._jwk)

    @property
    def kid(self) -> str:
        return str(self.public_jwk()["kid"])

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (what ``isthmus auth jwks`` prints)."""
        return {"keys": [self.public_jwk()]}

    def mint(
        self,
        subject: str,
        groups: Sequence[str] = (),
        ttl_s: float = 3600.0,
        audience: str | None = None,
        now: float | None = None,
    ) -> str:
        """A signed token for ``subject`` (and its groups), valid ``ttl_s`` seconds."""
        if not subject:
            raise ValueError("a token needs a subject")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl must be between 1 second and {MAX_TTL_S // 86400} days, got {ttl_s:.0f} s")
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "aud": audience or self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if groups:
            claims["groups"] = list(groups)
        return jwt.encode(claims, self._load(), algorithm=ALGORITHM, headers={"kid": self.kid})
