"""Checks across the auth settings (called by ``CommonSettings``' validator; no I/O)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from isthmus_core.settings import CommonSettings

#: algorithms a token may be signed with: asymmetric only, so a public key can never verify an HMAC
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_problems(s: CommonSettings) -> list[str]:
    problems: list[str] = []
    if s.auth == "off" and not is_loopback(s.grpc_host):
        problems.append(
            f"grpc_host {s.grpc_host!r} is not a loopback address and auth is off: Isthmus refuses to "
            "listen beyond loopback without authentication (set auth = 'oidc' with auth_issuer, or "
            "auth = 'local'; or listen on 127.0.0.1)"
        )
    if s.auth == "oidc" and not s.auth_issuer:
        problems.append("auth = 'oidc' needs auth_issuer (the issuer URL of your identity provider)")
    bad = sorted(set(s.auth_algorithms) - ASYMMETRIC_ALGORITHMS)
    if bad:
        problems.append(
            f"auth_algorithms {bad} refused: only asymmetric ones "
            f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
        )
    if not s.auth_algorithms:
        problems.append("auth_algorithms is empty")
    if s.auth_service_token_url and not (s.auth_service_client_id and s.auth_service_client_secret):
        problems.append("auth_service_token_url needs auth_service_client_id and auth_service_client_secret")
    return problems
