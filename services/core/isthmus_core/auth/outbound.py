"""Bearer tokens on the calls a process makes: client interceptors and the process's own token.

* Inside a call (the auth interceptor set :func:`~isthmus_core.auth.context.current_principal`), a call
  to another service carries the **caller's** token, so a chain of calls keeps the first caller's
  identity and tenant scope. A caller without a token (authentication off) sends none: a call made for
  someone never borrows the process's identity.
* Outside any call (a bus handler, start-up), the call carries the **process's** token, from a
  :class:`TokenSource`: :class:`LocalServiceToken` (``auth = "local"``: minted by the local issuer for
  ``isthmus-service``, re-minted before it expires), :class:`ClientCredentialsToken` (``auth = "oidc"``:
  an OAuth2 client-credentials grant at ``auth_service_token_url``, cached until shortly before it
  expires) or :class:`NoToken` (``auth = "off"``).

A call that already carries ``authorization`` metadata keeps it. :func:`bearer_interceptors` are the four
client interceptors (one per streaming shape) for a ``grpc.aio`` channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Final, Protocol

import grpc
import jwt

from isthmus_core.auth.context import current_principal
from isthmus_core.auth.local_issuer import SERVICE_SUBJECT, LocalIssuer
from isthmus_core.errors import Unavailable

#: a token is renewed when less than this share of its lifetime is left (and at most this many seconds)
RENEW_SHARE: Final = 0.2
RENEW_MAX_S: Final = 60.0
MAX_RESPONSE_BYTES: Final = 256 * 1024


class TokenSource(Protocol):
    async def token(self) -> str | None:
        """A bearer token for this process's own calls (None: send none)."""
        ...


class NoToken:
    """Authentication off: calls carry no token."""

    async def token(self) -> str | None:
        return None


class StaticToken:
    """A token given once (the CLI's ``--token``)."""

    def __init__(self, token: str | None) -> None:
        self._token = token or None

    async def token(self) -> str | None:
        return self._token


def _renew_at(issued: float, expires: float) -> float:
    return expires - min(RENEW_MAX_S, (expires - issued) * RENEW_SHARE)


class LocalServiceToken:
    """``auth = "local"``: a token of the local issuer for ``subject``, re-minted before it expires."""

    def __init__(
        self,
        issuer: LocalIssuer,
        subject: str = SERVICE_SUBJECT,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuer = issuer
        self._subject = subject
        self._ttl_s = ttl_s
        self._clock = clock
        self._token: str | None = None
        self._renew_at = float("-inf")

    async def token(self) -> str | None:
        now = self._clock()
        if self._token is None or now >= self._renew_at:
            self._token = self._issuer.mint(self._subject, ttl_s=self._ttl_s, now=now)
            self._renew_at = _renew_at(now, now + self._ttl_s)
        return self._token


def _post_form(url: str, form: dict[str, str], basic: tuple[str, str], timeout_s: float) -> Any:
    """POST a form with HTTP Basic client authentication (blocking: run it in a worker thread)."""
    user, password = (urllib.parse.quote(v, safe="") for v in basic)
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:  # the provider's error document says why (no secret in it)
        detail = exc.read(2048).decode("utf-8", "replace")
        raise RuntimeError(f"HTTP {exc.code}: {detail}") from None
    return json.loads(body)


class ClientCredentialsToken:
    """``auth = "oidc"``: this process's access token from an OAuth2 client-credentials grant (client
    authentication ``client_secret_basic``; ``audience`` asked for), fetched off the event loop and
    cached until shortly before it expires. A token endpoint that fails is :class:`Unavailable`."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        audience: str = "",
        scope: str = "",
        timeout_s: float = 10.0,
        post: Callable[[str, dict[str, str], tuple[str, str], float], Any] = _post_form,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"the token URL must be http(s), got {url!r}")
        self.url = url
        self._client = (client_id, client_secret)
        self._form = {"grant_type": "client_credentials"}
        if audience:
            self._form["audience"] = audience
        if scope:
            self._form["scope"] = scope
        self._timeout_s = timeout_s
        self._post = post
        self._clock = clock
        self._token: str | None = None
        self._renew_at = float("-inf")
        self._lock = asyncio.Lock()
        #: number of token requests made (observability and tests)
        self.requests = 0

    async def token(self) -> str | None:
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token  # another call renewed it while this one waited
            self.requests += 1
            now = self._clock()
            try:
                doc = await asyncio.to_thread(self._post, self.url, self._form, self._client, self._timeout_s)
                token = doc["access_token"]
                if not isinstance(token, str) or not token:
                    raise ValueError("no access_token in the response")
            except Exception as exc:
                raise Unavailable(f"could not get this process's token from {self.url}: {exc}") from None
            expires_in = doc.get("expires_in")
            if isinstance(expires_in, int | float) and expires_in > 0:
                expires = now + float(expires_in)
            else:  # no expires_in: the JWT's own exp (read, not verified: it is ours, from the provider)
                try:
                    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
                except jwt.InvalidTokenError:
                    exp = None
                expires = float(exp) if isinstance(exp, int | float) else now + 60.0
            self._token, self._renew_at = token, _renew_at(now, expires)
            return token


async def bearer_for_call(service: TokenSource) -> str | None:
    """The token an outgoing call carries: the current caller's inside a call, else the process's."""
    principal = current_principal()
    if principal is not None:
        return principal.token
    return await service.token()


def _with_bearer(details: grpc.aio.ClientCallDetails, token: str | None) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or [])
    if token is None or any(k == "authorization" for k, _ in metadata):
        return details
    metadata.append(("authorization", f"Bearer {token}"))
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _BearerUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_bearer(details, await bearer_for_call(self._source)), request)


class _BearerUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(_with_bearer(details, await bearer_for_call(self._source)), request)


class _BearerStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        token = await bearer_for_call(self._source)
        return await continuation(_with_bearer(details, token), request_iterator)


class _BearerStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        token = await bearer_for_call(self._source)
        return await continuation(_with_bearer(details, token), request_iterator)


def bearer_interceptors(source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors adding ``authorization: Bearer …`` to every call of a channel (all shapes)."""
    return [
        _BearerUnaryUnary(source),
        _BearerUnaryStream(source),
        _BearerStreamUnary(source),
        _BearerStreamStream(source),
    ]
