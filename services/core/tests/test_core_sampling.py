"""The online-evaluation sample choice: deterministic per answer id, close to the rate over many ids,
nested across rates."""

from __future__ import annotations

import uuid

import pytest

from isthmus_core.sampling import sample_point, sample_rate, sampled


def test_the_same_id_is_decided_the_same_way_every_time() -> None:
    ids = [uuid.UUID(int=i).hex for i in range(200)]
    first = [sampled(i, 0.3) for i in ids]
    assert first == [sampled(i, 0.3) for i in ids]
    assert [sample_point(i) for i in ids] == [sample_point(i) for i in ids]


def test_the_sampled_share_is_close_to_the_rate() -> None:
    ids = [uuid.UUID(int=i * 7919).hex for i in range(5000)]
    share = sum(sampled(i, 0.1) for i in ids) / len(ids)
    assert share == pytest.approx(0.1, abs=0.02)


def test_a_higher_rate_keeps_every_answer_a_lower_one_kept() -> None:
    ids = [f"answer-{i}" for i in range(1000)]
    low = {i for i in ids if sampled(i, 0.05)}
    high = {i for i in ids if sampled(i, 0.5)}
    assert low and low < high


def test_rates_zero_and_one_and_beyond() -> None:
    ids = [f"a{i}" for i in range(100)]
    assert not any(sampled(i, 0.0) for i in ids) and not any(sampled(i, -1.0) for i in ids)
    assert all(sampled(i, 1.0) for i in ids) and all(sampled(i, 2.0) for i in ids)
    assert all(0.0 <= sample_point(i) < 1.0 for i in ids)


def test_a_tenant_rate_overrides_the_default() -> None:
    assert sample_rate("acme", 0.1, {"acme": 1.0}) == 1.0
    assert sample_rate("globex", 0.1, {"acme": 1.0}) == 0.1
