"""Per-tenant quotas from the access file, counted with the ``limits`` library (in memory, per process).

* **Requests per second per RPC family** (``requests_per_s``, keys are ``MethodRule.family``): a moving
  window per (tenant, family), checked by the auth interceptor on every call.
* **Documents and bytes stored** (``max_documents``, ``max_bytes``): ingestion checks them against its
  registry (one per deployment) before storing a document.
* **LLM tokens per UTC day** (``llm_tokens_per_day``): the orchestrator checks the budget before a
  generation and charges the tokens after it; the count starts over at midnight UTC.

With several replicas each process counts its own calls, so rates and token budgets are divided by
``[common] quota_replicas`` (the chart sets it to the Deployment's replicas): N replicas together allow
the tenant's quota when the load is spread evenly (a rate r becomes r/N per process — e.g. 5 per 3 s
for r = 5, N = 3 — so the average holds exactly; a budget B becomes floor(B/N)). Storage quotas are
not divided.

Every refusal is :class:`~isthmus_core.errors.QuotaExceeded`: the gRPC edge sends RESOURCE_EXHAUSTED with
a ``QuotaFailure`` (subject ``tenant:<t>/<quota>[/<family>]``) and, when the quota refills, a
``RetryInfo`` (the rate window's reset; the next UTC midnight for tokens; none for storage).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from isthmus_core.auth.access_file import AccessFileReloader, AccessSource, Quota, access_file_path
from isthmus_core.errors import QuotaExceeded

if TYPE_CHECKING:
    from isthmus_core.auth.stack import QuotaGate
    from isthmus_core.settings import CommonSettings

_DAY_S: Final = 86_400
#: the shortest delay a refusal tells a caller to wait (the window may reset as the refusal is built)
_MIN_RETRY_S: Final = 0.001


class _Storage(MemoryStorage):
    """``limits``' in-memory storage, its expiry sweep run inline at most once a second.

    The stock storage starts a timer thread to sweep expired entries on nearly every hit once the
    previous timer ran (10 ms later): at a few calls a second that is a thread start per call, about
    0.2 ms on the hot path. Counting is unchanged; only the housekeeping moves."""

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the stock timer start
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            sweep: Callable[[], None] | None = getattr(self, "_MemoryStorage__expire_events", None)
            if sweep is not None:
                sweep()


def per_replica_rate(rate: int, replicas: int) -> tuple[int, int]:
    """``rate`` requests per second shared by ``replicas`` processes, as (amount, window seconds) for
    one process: exactly rate/replicas on average (5 over 3 → 5 per 3 s; 10 over 2 → 5 per 1 s)."""
    g = math.gcd(rate, replicas)
    return rate // g, replicas // g


def per_replica_budget(budget: int, replicas: int) -> int:
    """A daily token budget's share of one process: floor(budget / replicas), at least 1 unless 0."""
    return 0 if budget == 0 else max(1, budget // replicas)


def _utc_day(now: float) -> tuple[str, float]:
    """The UTC date of ``now`` and the seconds until the next UTC midnight."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    return day.isoformat(), midnight - now


class TenantQuotas:
    """:class:`~isthmus_core.auth.stack.QuotaGate` with each tenant's quota from the access file (so a
    changed file changes the limits; a changed rate starts a fresh window). ``clock`` (epoch seconds)
    decides the UTC day of the token budgets; rate windows run on the real clock (``limits``')."""

    def __init__(
        self, source: AccessSource, *, replicas: int = 1, clock: Callable[[], float] = time.time
    ) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self._source = source
        self.replicas = replicas
        self._clock = clock
        self._storage = _Storage()
        self._rates = MovingWindowRateLimiter(self._storage)
        self._items: dict[int, RateLimitItem] = {}

    def _quota(self, tenant: str) -> Quota | None:
        return self._source.current().quota(tenant) if tenant else None

    def _rate_item(self, rate: int) -> RateLimitItem:
        item = self._items.get(rate)
        if item is None:
            amount, window_s = per_replica_rate(rate, self.replicas)
            item = self._items[rate] = RateLimitItemPerSecond(amount, window_s, namespace="isthmus-rate")
        return item

    def _share(self, item: RateLimitItem) -> str:
        if self.replicas == 1:
            return ""
        return f" (this replica's share of {self.replicas}: {item.amount} per {item.get_expiry()} s)"

    def check_rate(self, tenant: str, family: str) -> None:
        quota = self._quota(tenant)
        rate = None if quota is None else quota.requests_per_s.get(family)
        if rate is None:
            return
        item = self._rate_item(rate)
        if self._rates.hit(item, tenant, family):
            return
        reset_at, _ = self._rates.get_window_stats(item, tenant, family)
        retry = max(reset_at - time.time(), _MIN_RETRY_S)
        limit = f"{rate} {family} requests per second"
        raise QuotaExceeded(
            f"tenant {tenant!r} is over its quota of {limit}; retry in {retry:.3f} s",
            [(f"tenant:{tenant}/requests_per_s/{family}", f"at most {limit}{self._share(item)}")],
            retry_after_s=retry,
        )

    def check_storage(self, tenant: str, documents: int, stored_bytes: int, incoming_bytes: int) -> None:
        quota = self._quota(tenant)
        if quota is None:
            return
        violations: list[tuple[str, str]] = []
        if quota.max_documents is not None and documents + 1 > quota.max_documents:
            violations.append(
                (
                    f"tenant:{tenant}/max_documents",
                    f"{documents} of at most {quota.max_documents} documents stored: one more does not fit",
                )
            )
        if quota.max_bytes is not None and stored_bytes + incoming_bytes > quota.max_bytes:
            violations.append(
                (
                    f"tenant:{tenant}/max_bytes",
                    f"{stored_bytes} of at most {quota.max_bytes} bytes stored: {incoming_bytes} more "
                    "do not fit",
                )
            )
        if violations:
            raise QuotaExceeded(
                f"tenant {tenant!r} is over its storage quota: " + "; ".join(d for _, d in violations),
                violations,
            )

    def _budget(self, tenant: str) -> int | None:
        quota = self._quota(tenant)
        if quota is None or quota.llm_tokens_per_day is None:
            return None
        return per_replica_budget(quota.llm_tokens_per_day, self.replicas)

    def tokens_used(self, tenant: str) -> int:
        """LLM tokens this process charged to ``tenant`` today (UTC)."""
        day, _ = _utc_day(self._clock())
        return self._storage.get(f"isthmus-tokens/{tenant}/{day}")

    def check_tokens(self, tenant: str) -> None:
        budget = self._budget(tenant)
        if budget is None:
            return
        day, until_midnight = _utc_day(self._clock())
        used = self._storage.get(f"isthmus-tokens/{tenant}/{day}")
        if used < budget:
            return
        share = "" if self.replicas == 1 else f" (this replica's share of {self.replicas}: {budget})"
        raise QuotaExceeded(
            f"tenant {tenant!r} has used its LLM token budget for today (UTC): {used} tokens of "
            f"{budget}; it refills at midnight UTC",
            [
                (
                    f"tenant:{tenant}/llm_tokens_per_day",
                    f"at most {budget} LLM tokens per UTC day{share}; {used} used",
                )
            ],
            retry_after_s=max(until_midnight, _MIN_RETRY_S),
        )

    def charge_tokens(self, tenant: str, tokens: int) -> None:
        if not tenant or tokens <= 0:
            return
        day, until_midnight = _utc_day(self._clock())
        # kept a little past the day's end, then dropped by the sweep; counted even past the budget
        self._storage.incr(f"isthmus-tokens/{tenant}/{day}", until_midnight + 60, amount=tokens)


def build_quota_gate(common: CommonSettings, source: AccessSource | None = None) -> QuotaGate:
    """The quota gate of a process: quotas from ``common.access_file`` (default
    ``<data_dir>/access.toml``), re-read when the file changes, divided by ``common.quota_replicas``;
    ``source`` shares one reloader with :func:`isthmus_core.auth.policy.build_authorizer`."""
    return TenantQuotas(
        source or AccessFileReloader(access_file_path(common)), replicas=common.quota_replicas
    )
