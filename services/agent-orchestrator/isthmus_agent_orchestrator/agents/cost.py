"""What a request's LLM calls cost: :class:`PriceMeter` (a
:class:`~isthmus_agent_orchestrator.agents.types.CostMeter`).

A usage costs ``prompt_tokens / 1000 * prompt_per_1k + completion_tokens / 1000 * completion_per_1k`` by
the price table (``prices``: model -> ``settings.Price``, USD per 1,000 tokens); a model the table does
not list costs 0 and is counted in ``isthmus_llm_unpriced_usages_total``.
:meth:`PriceMeter.record` counts a request's tokens and cost per tenant and model
(``isthmus_llm_tokens_total{tenant,model,kind}``, ``isthmus_llm_cost_usd_total{tenant,model}``) and
publishes one ``UsageRecorded`` per model (``isthmus.usage.recorded.v1``, kept 400 days: billing).

Pure: no I/O library (publishing is an injected callable, the typed bus publisher of the topic).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from isthmus_agent_orchestrator.agents.types import Usage
from isthmus_core.contracts.events import UsageRecorded
from isthmus_core.telemetry.metrics import LLM_COST_USD, LLM_TOKENS, LLM_UNPRICED

#: field limits of UsageRecorded (a longer value is cut rather than failing the answer)
_MAX_MODEL = 256
_MAX_PRINCIPAL = 512
_MAX_QUESTION_ID = 64


class Price(Protocol):
    """USD per 1,000 tokens of one model (``settings.Price``; a Protocol here so this module stays free of
    the settings' imports)."""

    @property
    def prompt_per_1k(self) -> float: ...

    @property
    def completion_per_1k(self) -> float: ...


class PriceMeter:
    """Prices usage from ``prices`` (model -> USD per 1,000 prompt and completion tokens, exact model
    names), counts it in metrics and publishes it with ``publish`` (``None``: metrics only)."""

    def __init__(
        self,
        prices: Mapping[str, Price],
        publish: Callable[[UsageRecorded], Awaitable[None]] | None = None,
    ) -> None:
        self._prices = dict(prices)
        self._publish = publish

    def price(self, model: str) -> Price | None:
        """The model's price, ``None`` when the table does not list it."""
        return self._prices.get(model)

    def cost(self, usage: Usage) -> float:
        """USD of ``usage`` (0 for a model without a price)."""
        price = self._prices.get(usage.model)
        if price is None:
            return 0.0
        return (
            usage.prompt_tokens / 1000 * price.prompt_per_1k
            + usage.completion_tokens / 1000 * price.completion_per_1k
        )

    async def record(
        self, tenant_id: str, question_id: str, graph: str, usages: Sequence[Usage], principal: str
    ) -> float:
        """Count and publish one request's usages (merged per model; models without tokens skipped);
        the request's total cost in USD."""
        total = 0.0
        for usage in merge_by_model(usages):
            if not usage.tokens:
                continue
            cost = self.cost(usage)
            total += cost
            if usage.model not in self._prices:
                LLM_UNPRICED.labels(usage.model).inc()
            LLM_TOKENS.labels(tenant_id, usage.model, "prompt").inc(usage.prompt_tokens)
            LLM_TOKENS.labels(tenant_id, usage.model, "completion").inc(usage.completion_tokens)
            LLM_COST_USD.labels(tenant_id, usage.model).inc(cost)
            if self._publish is not None:
                await self._publish(
                    UsageRecorded(
                        tenant_id=tenant_id,
                        idempotency_key=f"{tenant_id}/{question_id}/usage/{usage.model}"[:512],
                        question_id=question_id[:_MAX_QUESTION_ID],
                        graph=graph[:64],
                        model=usage.model[:_MAX_MODEL],
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                        cost_usd=cost,
                        reported=usage.reported,
                        principal=principal[:_MAX_PRINCIPAL],
                    )
                )
        return total


def merge_by_model(usages: Sequence[Usage]) -> list[Usage]:
    """One usage per model, in the order models first appear (tokens summed; ``reported`` as
    :meth:`Usage.add` says). The inputs are not changed."""
    merged: dict[str, Usage] = {}
    for usage in usages:
        into = merged.get(usage.model)
        if into is None:
            merged[usage.model] = Usage(
                usage.model, usage.prompt_tokens, usage.completion_tokens, usage.reported
            )
        else:
            into.add(usage)
    return list(merged.values())
