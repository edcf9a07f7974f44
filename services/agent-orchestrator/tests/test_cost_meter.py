"""The cost meter: usage priced from the settings' price table, counted per tenant and model, published
as one UsageRecorded per model."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from isthmus_agent_orchestrator.agents.cost import PriceMeter, merge_by_model
from isthmus_agent_orchestrator.agents.types import Usage
from isthmus_agent_orchestrator.settings import OrchestratorSettings, Price
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import decode_event, publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import UsageRecorded

PRICES = {
    "gpt-4o": Price(prompt_per_1k=0.0025, completion_per_1k=0.01),
    "claude": Price(prompt_per_1k=0.003, completion_per_1k=0.015),
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Published:
    def __init__(self) -> None:
        self.events: list[UsageRecorded] = []

    async def __call__(self, event: UsageRecorded) -> None:
        self.events.append(event)


def test_cost_is_tokens_over_a_thousand_times_the_price_per_kind() -> None:
    meter = PriceMeter(PRICES)
    usage = Usage("gpt-4o", prompt_tokens=1200, completion_tokens=300)
    assert meter.cost(usage) == pytest.approx(1.2 * 0.0025 + 0.3 * 0.01)
    assert meter.cost(Usage("claude", prompt_tokens=1000)) == pytest.approx(0.003)
    assert meter.cost(Usage("claude", completion_tokens=2000)) == pytest.approx(0.03)
    assert meter.cost(Usage("gpt-4o")) == 0.0


def test_a_model_without_a_price_costs_nothing() -> None:
    meter = PriceMeter(PRICES)
    assert meter.cost(Usage("llama-3-8b", prompt_tokens=5000, completion_tokens=5000)) == 0.0
    assert meter.cost(Usage("GPT-4o", prompt_tokens=5000)) == 0.0  # model names match exactly
    assert meter.price("llama-3-8b") is None


def test_prices_come_from_the_settings_table() -> None:
    s = OrchestratorSettings.model_validate(
        {"prices": {"m": {"prompt_per_1k": 0.5, "completion_per_1k": 2.0}}}
    )
    meter = PriceMeter(s.prices)
    assert meter.cost(Usage("m", prompt_tokens=2000, completion_tokens=500)) == pytest.approx(2.0)


def test_usages_merge_per_model_in_first_seen_order() -> None:
    usages = [
        Usage("claude", 10, 1, reported=True),
        Usage("gpt-4o", 100, 20),
        Usage("claude", 5, 2),
    ]
    merged = merge_by_model(usages)
    assert [(u.model, u.prompt_tokens, u.completion_tokens) for u in merged] == [
        ("claude", 15, 3),
        ("gpt-4o", 100, 20),
    ]
    assert merged[0].reported  # as Usage.add says
    assert usages[0].prompt_tokens == 10  # the inputs are not changed


async def test_record_counts_publishes_per_model_and_returns_the_total() -> None:
    published = Published()
    meter = PriceMeter(PRICES, published)
    tenant = "cost-acme"
    before = {
        (m, k): sample("isthmus_llm_tokens_total", tenant=tenant, model=m, kind=k)
        for m in ("gpt-4o", "claude", "llama")
        for k in ("prompt", "completion")
    }
    cost_before = {
        m: sample("isthmus_llm_cost_usd_total", tenant=tenant, model=m) for m in ("gpt-4o", "claude", "llama")
    }
    unpriced = sample("isthmus_llm_unpriced_usages_total", model="llama")
    usages = [
        Usage("gpt-4o", 1000, 100, reported=True),
        Usage("claude", 2000, 0),
        Usage("gpt-4o", 1000, 100, reported=True),
        Usage("llama", 50, 5),
        Usage("idle", 0, 0),  # no tokens: neither counted nor published
    ]
    total = await meter.record(tenant, "q" * 32, "plan-execute", usages, "user:ann")

    gpt = 2 * 0.0025 + 0.2 * 0.01
    claude = 2 * 0.003
    assert total == pytest.approx(gpt + claude)
    delta = {
        key: sample("isthmus_llm_tokens_total", tenant=tenant, model=key[0], kind=key[1]) - value
        for key, value in before.items()
    }
    assert delta == {
        ("gpt-4o", "prompt"): 2000,
        ("gpt-4o", "completion"): 200,
        ("claude", "prompt"): 2000,
        ("claude", "completion"): 0,
        ("llama", "prompt"): 50,
        ("llama", "completion"): 5,
    }
    costs = {
        m: sample("isthmus_llm_cost_usd_total", tenant=tenant, model=m) - v for m, v in cost_before.items()
    }
    assert costs == pytest.approx({"gpt-4o": gpt, "claude": claude, "llama": 0.0})
    assert sample("isthmus_llm_unpriced_usages_total", model="llama") == unpriced + 1
    assert sample("isthmus_llm_tokens_total", tenant=tenant, model="idle", kind="prompt") == 0

    assert [(e.model, e.prompt_tokens, e.completion_tokens, e.reported) for e in published.events] == [
        ("gpt-4o", 2000, 200, True),
        ("claude", 2000, 0, False),
        ("llama", 50, 5, False),
    ]
    assert [e.cost_usd for e in published.events] == pytest.approx([gpt, claude, 0.0])
    expected = (tenant, "q" * 32, "plan-execute", "user:ann")
    assert {(e.tenant_id, e.question_id, e.graph, e.principal) for e in published.events} == {expected}
    assert len({e.idempotency_key for e in published.events}) == 3  # one per model: replays dedupe


async def test_record_with_no_usage_publishes_nothing() -> None:
    published = Published()
    assert await PriceMeter(PRICES, published).record("acme", "q1", "rag", [], "user:ann") == 0.0
    assert published.events == []


async def test_usage_recorded_goes_on_the_usage_topic() -> None:
    bus = InProcessBus()
    meter = PriceMeter(PRICES, publisher(bus, topics.USAGE_RECORDED))
    await bus.start()
    try:
        await meter.record("acme", "q1", "react", [Usage("claude", 1000, 1000, reported=True)], "user:ann")
    finally:
        await bus.stop()
    [message] = bus.messages(topics.USAGE_RECORDED.name)
    event = decode_event(topics.USAGE_RECORDED, message)
    assert (event.tenant_id, event.question_id, event.graph, event.model) == ("acme", "q1", "react", "claude")
    assert event.cost_usd == pytest.approx(0.018) and event.reported
