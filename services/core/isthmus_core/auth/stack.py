"""The auth parts one process shares: built once by the runtime, handed to the gRPC edge and to modules.

``ModuleContext.auth`` gives a module the quota gate (ingestion checks storage quotas, the orchestrator
LLM token budgets) and the audit sink (admin actions a module performs itself, erasures). Protocols
here; adapters in :mod:`.policy`, :mod:`.quotas`, :mod:`.audit`; :func:`build_stack` (in
:mod:`.wiring`) picks them from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from isthmus_core.auth.context import AllowAll, Authorizer
from isthmus_core.auth.identity import Principal
from isthmus_core.contracts.events import AuditRecorded


class TokenVerifier(Protocol):
    """Bearer token → verified :class:`Principal`; raises :class:`~isthmus_core.errors.Unauthenticated`
    with the reason (expired, wrong audience, unknown key...)."""

    async def verify(self, token: str, *, at: float | None = None) -> Principal:
        """``at``: the time (epoch seconds) the token must be valid at — a Kafka record's broker
        timestamp for a producer's token; None = now."""
        ...


class QuotaGate(Protocol):
    """Per-tenant quotas (limits from the access file). Each ``check_*`` raises
    :class:`~isthmus_core.errors.QuotaExceeded` (with the violated quota and, when it refills, when to
    retry); none blocks."""

    def check_rate(self, tenant: str, family: str) -> None:
        """One request of an RPC family (``MethodRule.family``) for the tenant: counted, or refused."""
        ...

    def check_storage(self, tenant: str, documents: int, stored_bytes: int, incoming_bytes: int) -> None:
        """Before storing one more document of ``incoming_bytes`` next to what the tenant has."""
        ...

    def check_tokens(self, tenant: str) -> None:
        """Before a generation: the tenant's LLM token budget for the day is not spent."""
        ...

    def charge_tokens(self, tenant: str, tokens: int) -> None:
        """After a generation: count the tokens it used."""
        ...


class AuditSink(Protocol):
    """Where audit records go (the audit topic). ``record`` never blocks and never raises: a record it
    cannot send is logged with its content and counted (``isthmus_audit_records_total{outcome}``)."""

    def record(self, event: AuditRecorded) -> None: ...


class NoQuotas:
    def check_rate(self, tenant: str, family: str) -> None:
        return None

    def check_storage(self, tenant: str, documents: int, stored_bytes: int, incoming_bytes: int) -> None:
        return None

    def check_tokens(self, tenant: str) -> None:
        return None

    def charge_tokens(self, tenant: str, tokens: int) -> None:
        return None


class ListAudit:
    """Keeps records in a list (unit tests; the fake of :class:`AuditSink`)."""

    def __init__(self) -> None:
        self.records: list[AuditRecorded] = []

    def record(self, event: AuditRecorded) -> None:
        self.records.append(event)


@dataclass
class AuthStack:
    """``verifier`` None = authentication off (loopback only)."""

    verifier: TokenVerifier | None = None
    authorizer: Authorizer = field(default_factory=AllowAll)
    quotas: QuotaGate = field(default_factory=NoQuotas)
    audit: AuditSink = field(default_factory=ListAudit)
    exempt_methods: frozenset[str] = frozenset()
    region: str = ""

    @property
    def enabled(self) -> bool:
        return self.verifier is not None
