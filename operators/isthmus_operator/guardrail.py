"""The guardrail's policy store, as the operator needs it: apply a Tenant's ``guardrailPolicyRef``.

:class:`PolicyApplier` is the port; :class:`GrpcPolicyApplier` calls the guardrail's ``ApplyPolicyRef``
over gRPC (endpoint: ``ISTHMUS_OPERATOR_GUARDRAIL_ENDPOINT``, or each region's endpoint) with the
operator's token; :class:`InMemoryPolicyApplier` is the fake for tests. ``ApplyPolicyRef`` is idempotent
(a preset whose content is already current stores nothing; a version already current stays current), so
the operator calls it on every reconcile and a handler retried by kopf converges.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import grpc

from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.auth.outbound import TokenSource
from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.status import from_rpc_error

#: the presets every guardrail knows (``isthmus_guardrail.presets``)
PRESETS = ("default", "strict", "permissive")


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """The tenant's current policy version after ``ApplyPolicyRef``."""

    #: ``v3`` (``default`` when the built-in default applies and nothing was stored)
    label: str
    version: int
    digest: str = ""
    #: what made it: ``preset:strict``, ``put``...
    source: str = ""


@runtime_checkable
class PolicyApplier(Protocol):
    async def apply(self, tenant_id: str, name: str, version: int | None) -> AppliedPolicy:
        """Make preset ``name`` (``version`` None) or stored version ``version`` the tenant's current
        policy. Unavailable: retry later; InvalidArgument / NotFound / FailedPrecondition: refused (an
        unknown preset, a version never stored: retrying cannot help)."""

    async def close(self) -> None: ...


class GrpcPolicyApplier:
    """The guardrail's ``ApplyPolicyRef`` over gRPC. The channel opens lazily, on the caller's event loop."""

    def __init__(self, endpoint: str, timeout_s: float = 5.0, tokens: TokenSource | None = None) -> None:
        if not endpoint or ":" not in endpoint:
            raise InvalidArgument(f"guardrail endpoint must be host:port, got {endpoint!r}")
        self.endpoint = endpoint
        self._tokens = tokens
        self._timeout = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.GuardrailServiceStub | None = None

    def _client(self) -> pb_grpc.GuardrailServiceStub:
        if self._stub is None:
            self._channel = open_channel(self.endpoint, self._tokens)
            self._stub = pb_grpc.GuardrailServiceStub(self._channel)
        return self._stub

    async def apply(self, tenant_id: str, name: str, version: int | None) -> AppliedPolicy:
        request = pb.ApplyPolicyRefRequest(tenant_id=tenant_id, name=name, version=version or 0)
        try:
            reply = await self._client().ApplyPolicyRef(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            err = from_rpc_error(exc)
            if isinstance(err, InvalidArgument | NotFound | FailedPrecondition):
                raise err from exc
            raise Unavailable(f"guardrail at {self.endpoint}: ApplyPolicyRef failed: {err.reason}") from exc
        return AppliedPolicy(
            label=reply.label or (f"v{reply.version}" if reply.version else "default"),
            version=int(reply.version),
            digest=reply.digest,
            source=reply.source,
        )

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()


@dataclass
class InMemoryPolicyApplier:
    """The fake: per tenant the stored versions (``(source, content)``) and the current one; a call log;
    ``fail_next`` Unavailable errors on demand. A preset's content is its name."""

    versions: dict[str, list[str]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str, int | None]] = field(default_factory=list)
    fail_next: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def apply(self, tenant_id: str, name: str, version: int | None) -> AppliedPolicy:
        async with self._lock:
            self.calls.append((tenant_id, name, version))
            if not is_tenant_id(tenant_id):
                raise InvalidArgument(f"invalid tenant id {tenant_id!r}")
            if self.fail_next > 0:
                self.fail_next -= 1
                raise Unavailable(f"in-memory guardrail: ApplyPolicyRef {tenant_id!r} failed (injected)")
            stored = self.versions.setdefault(tenant_id, [])
            if version:
                if version > len(stored):
                    raise NotFound(f"tenant {tenant_id!r} has no policy version {version}")
                self.current[tenant_id] = version
                return AppliedPolicy(f"v{version}", version, source=stored[version - 1])
            if name not in PRESETS:
                raise InvalidArgument(f"unknown policy preset {name!r}; the presets are {', '.join(PRESETS)}")
            source = f"preset:{name}"
            now = self.current.get(tenant_id)
            if now is None or stored[now - 1] != source:
                stored.append(source)
                self.current[tenant_id] = now = len(stored)
            return AppliedPolicy(f"v{now}", now, source=source)

    async def close(self) -> None:
        return None
