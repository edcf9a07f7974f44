"""The gRPC edge of identity and access: one server interceptor applies the whole sequence to every call.

Installed by :class:`~isthmus_core.grpc.server.GrpcServer` between the error interceptor (which maps its
refusals to statuses) and admission (so a refused caller costs no admission slot). Per call:

1. health, reflection and ``stack.exempt_methods`` pass untouched;
2. authentication off (``stack.verifier`` None; the server then listens on loopback only): the handler
   runs as :data:`~isthmus_core.auth.identity.ANONYMOUS` with :class:`~isthmus_core.auth.context.AllowAll`
   and the request's ACL scope is trusted, as before;
3. the bearer token of the ``authorization`` metadata (``Bearer <token>``, any case) is verified
   (``UNAUTHENTICATED`` with the reason otherwise);
4. the method's rule (:func:`~isthmus_core.auth.methods.rule_for`; none → ``PERMISSION_DENIED``);
5. the tenant, from the request field the rule names (dotted path); for a client stream, from the first
   message naming it (a later message naming another tenant → ``PERMISSION_DENIED``); without one, the
   rule's ``when_empty`` says what the caller needs (``platform``: the permission for every tenant;
   ``any``: in at least one tenant);
6. the authorizer decides (``PERMISSION_DENIED``; the message never says whether the tenant exists: the
   decision does not look);
7. the request's ACL scope (``acl_field``) becomes the caller's own subject and groups when empty; a
   subset of them is kept; naming anyone else needs ``impersonate`` in that tenant (audited);
8. the tenant's request rate for the rule's family (``RESOURCE_EXHAUSTED`` with ``QuotaFailure``);
9. the handler runs inside :func:`~isthmus_core.auth.context.acting_as`, so what it calls is done with
   the caller's identity (the outbound interceptor forwards its token).

Audit records (``stack.audit``): ``authentication_failed``, ``permission_denied``, ``quota_exceeded``,
``impersonation``, and ``admin_action`` for methods marked admin (after the call, outcome ok or failed).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal

import grpc
import structlog
from google.protobuf.message import Message

from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import ANONYMOUS, Permission, Principal
from isthmus_core.auth.methods import MethodRule, rule_for
from isthmus_core.auth.stack import AuthStack
from isthmus_core.contracts.events import AuditKind, AuditRecorded
from isthmus_core.contracts.ids import PRINCIPAL_PATTERN, parse_tenant_id
from isthmus_core.errors import (
    InvalidArgument,
    IsthmusError,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
)
from isthmus_core.grpc.handlers import WrappingInterceptor, rewrap

log = structlog.get_logger("isthmus.auth")

#: a client stream is read this far (messages, bytes) for the message naming the tenant before the
#: call is decided without one (every Isthmus client stream names it in its first message)
PRELUDE_MAX_MESSAGES: Final = 4
PRELUDE_MAX_BYTES: Final = 1024 * 1024
#: the most ACL principals a rewritten scope holds (the request validation's limit)
MAX_ACL_PRINCIPALS: Final = 256
_ACL_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)
_BEARER = "bearer "
_ANONYMOUS_ACCESS: Final = Access(ANONYMOUS, AllowAll())

Outcome = Literal["ok", "denied", "failed"]


def bearer_token(metadata: Any) -> str:
    """The token of the call's ``authorization: Bearer <token>`` metadata, or :class:`Unauthenticated`."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if not values:
        raise Unauthenticated("no bearer token: send the metadata 'authorization: Bearer <token>'")
    if len(values) > 1:
        raise Unauthenticated("more than one authorization metadata entry")
    value = values[0]
    if not isinstance(value, str) or value[: len(_BEARER)].lower() != _BEARER:
        raise Unauthenticated("the authorization metadata is not 'Bearer <token>'")
    token = value[len(_BEARER) :].strip()
    if not token:
        raise Unauthenticated("the bearer token is empty")
    return token


def _resolve(msg: Any, path: str) -> tuple[Any, str] | None:
    """The message holding the last field of a dotted ``path`` and that field's name; None when an
    intermediate message is not set (or ``msg`` is not a message)."""
    *parents, last = path.split(".")
    for name in parents:
        if not isinstance(msg, Message) or name not in msg.DESCRIPTOR.fields_by_name:
            return None
        if not msg.HasField(name):
            return None
        msg = getattr(msg, name)
    if not isinstance(msg, Message) or last not in msg.DESCRIPTOR.fields_by_name:
        return None  # a rule naming a field the request lacks: as if empty (fails closed)
    return msg, last


def tenant_of(request: Any, path: str | None) -> str | None:
    """The tenant a request names at ``path`` (None: no such field, or empty), parsed."""
    if path is None:
        return None
    found = _resolve(request, path)
    if found is None:
        return None
    value = getattr(found[0], found[1], "")
    if not isinstance(value, str) or not value:
        return None
    return parse_tenant_id(value)


def _undecodable(request: Any, method: str) -> InvalidArgument:
    """Bytes that are not the request type (the validation interceptor's placeholder says why)."""
    return InvalidArgument(str(getattr(request, "reason", f"the request to {method} does not decode")))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Gate:
    """The decisions for one method (its rule is looked up once, when the method is first wrapped)."""

    def __init__(self, stack: AuthStack, method: str, rule: MethodRule | None) -> None:
        self.stack = stack
        self.method = method
        self.rule = rule

    # -- audit ------------------------------------------------------------------------------------------

    def audit(
        self,
        kind: AuditKind,
        context: grpc.aio.ServicerContext,
        *,
        principal: Principal | None = None,
        tenant: str | None = None,
        outcome: Outcome = "denied",
        reason: str = "",
        details: dict[str, str] | None = None,
    ) -> None:
        try:
            self.stack.audit.record(
                AuditRecorded(
                    tenant_id=tenant or "",
                    idempotency_key=uuid.uuid4().hex,
                    kind=kind,
                    principal=principal.subject if principal is not None else "",
                    method=_short(self.method, 256),
                    outcome=outcome,
                    reason=_short(reason, 2048),
                    details=details or {},
                    peer=_short(context.peer() or "", 256),
                    region=self.stack.region,
                )
            )
        except Exception:  # an audit record must never change the call's outcome
            log.exception("could not record an audit event", kind=kind, method=self.method)

    # -- the sequence -----------------------------------------------------------------------------------

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        verifier = self.stack.verifier
        assert verifier is not None
        try:
            return await verifier.verify(bearer_token(context.invocation_metadata()))
        except IsthmusError as exc:  # Unauthenticated, or Unavailable (the issuer's keys unreachable)
            outcome: Outcome = "denied" if isinstance(exc, Unauthenticated) else "failed"
            self.audit("authentication_failed", context, outcome=outcome, reason=exc.reason)
            raise

    def deny(
        self,
        context: grpc.aio.ServicerContext,
        principal: Principal,
        tenant: str | None,
        reason: str,
        kind: AuditKind = "permission_denied",
        details: dict[str, str] | None = None,
    ) -> PermissionDenied:
        self.audit(kind, context, principal=principal, tenant=tenant, reason=reason, details=details)
        return PermissionDenied(reason)

    def authorize(self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None) -> None:
        """The permission of the rule, in ``tenant`` or per ``when_empty``; then the tenant's rate."""
        rule = self.rule
        if rule is None:
            raise self.deny(context, principal, tenant, f"no access rule for {self.method}: refused")
        authorizer = self.stack.authorizer
        permission = rule.permission
        if tenant is not None:
            allowed = authorizer.allowed(principal, tenant, permission)
            where = f"in tenant {tenant!r}"
        elif rule.when_empty == "platform":
            allowed = authorizer.allowed(principal, None, permission)
            where = "for every tenant (the request names no tenant)"
        else:
            allowed = authorizer.allowed_anywhere(principal, permission)
            where = "in any tenant"
        if not allowed:
            reason = f"{principal.subject!r} lacks the permission {permission.value!r} {where}"
            raise self.deny(context, principal, tenant, reason)

    def check_rate(self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None) -> None:
        if tenant is None or self.rule is None:
            return
        try:
            self.stack.quotas.check_rate(tenant, self.rule.family)
        except QuotaExceeded as exc:
            details = {"family": self.rule.family}
            self.audit(
                "quota_exceeded",
                context,
                principal=principal,
                tenant=tenant,
                reason=exc.reason,
                details=details,
            )
            raise

    def scope_acl(
        self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None, request: Any
    ) -> None:
        """The request's ACL scope: the caller's own principals, a subset of them, or (``impersonate``)
        others."""
        path = self.rule.acl_field if self.rule is not None else None
        if path is None:
            return
        found = _resolve(request, path)
        if found is None:
            return
        parent, name = found
        scope = getattr(parent, name)
        requested = list(scope.principals)
        own = [p for p in principal.acl_principals if _ACL_PRINCIPAL.fullmatch(p)][:MAX_ACL_PRINCIPALS]
        if not requested:
            scope.principals.extend(own)
            return
        others = sorted(set(requested) - set(own))
        if not others:
            return
        named = ",".join(others)
        if not self.stack.authorizer.allowed(principal, tenant, Permission.IMPERSONATE):
            reason = f"{principal.subject!r} may not search as other principals in tenant {tenant!r}"
            raise self.deny(context, principal, tenant, reason, "impersonation", {"principals": named})
        self.audit(
            "impersonation",
            context,
            principal=principal,
            tenant=tenant,
            outcome="ok",
            reason=f"{principal.subject!r} searches as {named}",
            details={"principals": _short(named, 2048)},
        )

    def admitted(self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None) -> None:
        """After the call of an admin method (``outcome``: ok)."""
        if self.rule is not None and self.rule.admin:
            self.audit("admin_action", context, principal=principal, tenant=tenant, outcome="ok")

    def failed(
        self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None, exc: BaseException
    ) -> None:
        if self.rule is not None and self.rule.admin:
            reason = exc.reason if isinstance(exc, IsthmusError) else type(exc).__name__
            self.audit(
                "admin_action", context, principal=principal, tenant=tenant, outcome="failed", reason=reason
            )

    # -- client streams ---------------------------------------------------------------------------------

    async def prelude(self, requests: AsyncIterator[Any]) -> tuple[list[Any], str | None]:
        """The first messages of a client stream, up to the one naming the tenant (bounded), and it."""
        path = self.rule.tenant_field if self.rule is not None else None
        read: list[Any] = []
        size = 0
        if path is None:
            return read, None
        async for request in requests:
            read.append(request)
            if not isinstance(request, Message):
                raise InvalidArgument(
                    getattr(request, "reason", f"the request to {self.method} does not decode")
                )
            tenant = tenant_of(request, path)
            if tenant is not None:
                return read, tenant
            size += request.ByteSize()
            if len(read) >= PRELUDE_MAX_MESSAGES or size >= PRELUDE_MAX_BYTES:
                break
        return read, None

    async def rest(
        self,
        context: grpc.aio.ServicerContext,
        principal: Principal,
        tenant: str | None,
        read: list[Any],
        requests: AsyncIterator[Any],
    ) -> AsyncIterator[Any]:
        """The whole stream for the handler: what :meth:`prelude` read, then the rest, each message
        checked to name no other tenant (and its ACL scope, if it has one, scoped)."""
        path = self.rule.tenant_field if self.rule is not None else None
        for request in read:
            self._scope_message(context, principal, tenant, request)
            yield request
        async for request in requests:
            if isinstance(request, Message):
                named = tenant_of(request, path)
                if named is not None and named != tenant:
                    reason = f"a later message of the stream names tenant {named!r}, not {tenant or ''!r}"
                    raise self.deny(context, principal, tenant, reason)
                self._scope_message(context, principal, tenant, request)
            yield request

    def _scope_message(
        self, context: grpc.aio.ServicerContext, principal: Principal, tenant: str | None, request: Any
    ) -> None:
        path = self.rule.acl_field if self.rule is not None else None
        if path is None or not isinstance(request, Message):
            return
        found = _resolve(request, path)
        if found is not None and found[0].HasField(found[1]):  # a stream's message without a scope: none
            self.scope_acl(context, principal, tenant, request)


def _anonymous(fn: Callable[..., Any], streaming_out: bool) -> Callable[..., Any]:
    if streaming_out:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with acting_as(_ANONYMOUS_ACCESS):
                async for item in fn(request, context):
                    yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with acting_as(_ANONYMOUS_ACCESS):
            return await fn(request, context)

    return unary


def _unary_in(gate: _Gate, fn: Callable[..., Any], streaming_out: bool) -> Callable[..., Any]:
    async def admit(request: Any, context: grpc.aio.ServicerContext) -> tuple[Principal, str | None]:
        principal = await gate.authenticate(context)
        if gate.rule is not None and not isinstance(request, Message):
            raise _undecodable(request, gate.method)
        tenant = tenant_of(request, gate.rule.tenant_field) if gate.rule is not None else None
        gate.authorize(context, principal, tenant)
        gate.scope_acl(context, principal, tenant, request)
        gate.check_rate(context, principal, tenant)
        return principal, tenant

    if streaming_out:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal, tenant = await admit(request, context)
            with acting_as(Access(principal, gate.stack.authorizer)):
                try:
                    async for item in fn(request, context):
                        yield item
                except BaseException as exc:
                    gate.failed(context, principal, tenant, exc)
                    raise
            gate.admitted(context, principal, tenant)

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        principal, tenant = await admit(request, context)
        with acting_as(Access(principal, gate.stack.authorizer)):
            try:
                result = await fn(request, context)
            except BaseException as exc:
                gate.failed(context, principal, tenant, exc)
                raise
        gate.admitted(context, principal, tenant)
        return result

    return unary


def _stream_in(gate: _Gate, fn: Callable[..., Any], streaming_out: bool) -> Callable[..., Any]:
    async def admit(
        requests: Any, context: grpc.aio.ServicerContext
    ) -> tuple[Principal, str | None, AsyncIterator[Any]]:
        principal = await gate.authenticate(context)
        it = aiter(requests)
        read, tenant = await gate.prelude(it)
        gate.authorize(context, principal, tenant)
        gate.check_rate(context, principal, tenant)
        return principal, tenant, gate.rest(context, principal, tenant, read, it)

    if streaming_out:

        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal, tenant, checked = await admit(requests, context)
            with acting_as(Access(principal, gate.stack.authorizer)):
                try:
                    async for item in fn(checked, context):
                        yield item
                except BaseException as exc:
                    gate.failed(context, principal, tenant, exc)
                    raise
            gate.admitted(context, principal, tenant)

        return stream

    async def unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        principal, tenant, checked = await admit(requests, context)
        with acting_as(Access(principal, gate.stack.authorizer)):
            try:
                result = await fn(checked, context)
            except BaseException as exc:
                gate.failed(context, principal, tenant, exc)
                raise
        gate.admitted(context, principal, tenant)
        return result

    return unary


class AuthInterceptor(WrappingInterceptor):
    """Authenticate and authorize every Isthmus method with ``stack`` (see the module docstring)."""

    def __init__(self, stack: AuthStack) -> None:
        self._stack = stack

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method in self._stack.exempt_methods:
            return handler
        stack = self._stack
        gate = _Gate(stack, method, rule_for(method))

        def wrap(fn: Callable[..., Any], streaming_in: bool, streaming_out: bool) -> Callable[..., Any]:
            if not stack.enabled:
                return _anonymous(fn, streaming_out)
            return (_stream_in if streaming_in else _unary_in)(gate, fn, streaming_out)

        return rewrap(handler, wrap)
