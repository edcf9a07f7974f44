"""Build a process's auth parts from the ``[common]`` settings (called once by the runtime).

* :func:`build_stack` — the :class:`~isthmus_core.auth.stack.AuthStack` the gRPC edge and the modules
  share: the token verifier per ``auth`` (``off``: none; ``local``: the local issuer's key, no HTTP;
  ``oidc``: the issuer's JWKS over HTTP), and the authorizer, quota gate and audit sink;
* :func:`service_tokens` — the token this process's own calls carry outside any call
  (:mod:`isthmus_core.auth.outbound`).
"""

from __future__ import annotations

from isthmus_core.auth.context import AllowAll
from isthmus_core.auth.local_issuer import ALGORITHM, ISSUER, LocalIssuer, default_key_file
from isthmus_core.auth.outbound import ClientCredentialsToken, LocalServiceToken, NoToken, TokenSource
from isthmus_core.auth.stack import AuthStack, ListAudit, NoQuotas, TokenVerifier
from isthmus_core.auth.tokens import JwtVerifier, RemoteJwks, StaticJwks, default_jwks_url
from isthmus_core.bus.port import EventBus
from isthmus_core.errors import ConfigurationError
from isthmus_core.settings import CommonSettings


def local_issuer(common: CommonSettings) -> LocalIssuer:
    """The local development issuer of these settings (its key is read, or created, on first use)."""
    key_file = common.auth_local_key_file or default_key_file(common.data_dir)
    return LocalIssuer(key_file, common.auth_audience)


def build_verifier(common: CommonSettings) -> TokenVerifier | None:
    """The token verifier ``auth`` asks for (None: authentication off)."""
    if common.auth == "off":
        return None
    if common.auth == "local":
        issuer = local_issuer(common)
        return JwtVerifier(
            issuer=ISSUER,
            audience=common.auth_audience,
            algorithms=[ALGORITHM],
            keys=StaticJwks(issuer.jwks()),
            leeway_s=common.auth_leeway_s,
            groups_claim="groups",
            via="local",
        )
    try:
        keys = RemoteJwks(
            common.auth_jwks_url or default_jwks_url(common.auth_issuer), cache_s=common.auth_jwks_cache_s
        )
    except ValueError as exc:
        raise ConfigurationError(f"[common] auth_jwks_url: {exc}") from None
    return JwtVerifier(
        issuer=common.auth_issuer,
        audience=common.auth_audience,
        algorithms=common.auth_algorithms,
        keys=keys,
        leeway_s=common.auth_leeway_s,
        groups_claim=common.auth_groups_claim,
        via="jwt",
    )


def build_stack(common: CommonSettings, bus: EventBus) -> AuthStack:
    """The process's auth stack. With authentication off: no verifier, everyone may do everything."""
    verifier = build_verifier(common)
    exempt = frozenset(common.auth_exempt_methods)
    if verifier is None:
        return AuthStack(None, AllowAll(), NoQuotas(), ListAudit(), exempt, common.region)
    # ---------------------------------------------------------------------------------------------------
    # TODO(lead, issue 14): plug the adapters written in the other slices here:
    #   authorizer = policy.CasbinAuthorizer(access_file.load(common.access_file or <data_dir>/access.toml),
    #                                        service subject bound to role "service" on "*")
    #   quotas     = quotas.LimitsQuotaGate(..., replicas=common.quota_replicas)
    #   audit      = audit.BusAuditSink(bus, region=common.region)
    # Until then an authenticated caller may do everything (AllowAll), nothing is limited and audit
    # records stay in memory: authentication works, authorization does NOT.
    # ---------------------------------------------------------------------------------------------------
    authorizer = AllowAll()
    quotas = NoQuotas()
    audit = ListAudit()
    return AuthStack(verifier, authorizer, quotas, audit, exempt, common.region)


def service_tokens(common: CommonSettings) -> TokenSource | None:
    """The token this process's calls carry when made outside any call (bus handlers, start-up); None
    with authentication off (channels then carry no token at all, not even a caller's)."""
    if common.auth == "off":
        return None
    if common.auth == "local":
        return LocalServiceToken(local_issuer(common))
    if common.auth == "oidc" and common.auth_service_token_url:
        return ClientCredentialsToken(
            common.auth_service_token_url,
            common.auth_service_client_id,
            common.auth_service_client_secret.get_secret_value(),
            audience=common.auth_audience,
        )
    return NoToken()
