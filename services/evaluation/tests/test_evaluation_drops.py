"""Drop detection (pure): recent vs baseline means past the allowance (a tenant's own first), both windows
with enough samples; raised once, recovered when back within the allowance; unwatched metrics ignored."""

from __future__ import annotations

from isthmus_evaluation.drops import DropCheck, DropKey, Summary, allowance, check_drops

FAITH: DropKey = ("acme", "faithfulness", "")
RELEVANCE: DropKey = ("acme", "answer_relevance", "")
MAX = {"faithfulness": 0.1, "answer_relevance": 0.2}


def check(
    recent: dict[DropKey, Summary],
    baseline: dict[DropKey, Summary],
    raised: set[DropKey] | None = None,
    tenant_max: dict[str, dict[str, float]] | None = None,
    min_samples: int = 5,
) -> DropCheck:
    return check_drops(
        recent,
        baseline,
        raised or set(),
        max_drop=MAX,
        tenant_max_drop=tenant_max or {},
        min_samples=min_samples,
    )


def test_a_drop_past_the_allowance_is_raised_with_its_figures() -> None:
    found = check(
        {FAITH: Summary(0.6, 8), RELEVANCE: Summary(0.75, 8)},
        {FAITH: Summary(0.9, 30), RELEVANCE: Summary(0.9, 30)},
    )
    [d] = found.raised  # relevance fell 0.15, within its 0.2
    assert d.key == FAITH and (d.baseline, d.current, d.threshold, d.samples, d.baseline_samples) == (
        0.9,
        0.6,
        0.1,
        8,
        30,
    )
    assert abs(d.drop - 0.3) < 1e-12
    assert found.recovered == []


def test_a_drop_within_the_allowance_or_a_rise_is_not_raised() -> None:
    assert check({FAITH: Summary(0.85, 8)}, {FAITH: Summary(0.9, 8)}).raised == []
    assert check({FAITH: Summary(1.0, 8)}, {FAITH: Summary(0.5, 8)}).raised == []


def test_too_few_samples_in_either_window_decide_nothing() -> None:
    assert check({FAITH: Summary(0.1, 4)}, {FAITH: Summary(0.9, 50)}).raised == []
    assert check({FAITH: Summary(0.1, 50)}, {FAITH: Summary(0.9, 4)}).raised == []
    assert check({FAITH: Summary(0.1, 50)}, {}).raised == []
    # nor does a raised drop recover for lack of samples
    assert check({FAITH: Summary(0.9, 1)}, {FAITH: Summary(0.9, 50)}, raised={FAITH}).recovered == []


def test_a_raised_drop_is_not_raised_again_and_recovers_within_the_allowance() -> None:
    assert check({FAITH: Summary(0.5, 8)}, {FAITH: Summary(0.9, 8)}, raised={FAITH}).raised == []
    found = check({FAITH: Summary(0.88, 8)}, {FAITH: Summary(0.9, 8)}, raised={FAITH})
    assert found.raised == [] and found.recovered == [FAITH]


def test_a_tenants_own_allowance_overrides_and_unwatched_metrics_are_ignored() -> None:
    strict = {"acme": {"faithfulness": 0.01, "context_precision": 0.05}}
    assert [
        d.key for d in check({FAITH: Summary(0.85, 8)}, {FAITH: Summary(0.9, 8)}, tenant_max=strict).raised
    ] == [FAITH]
    precision: DropKey = ("acme", "context_precision", "")
    other: DropKey = ("globex", "context_precision", "")
    recent = {precision: Summary(0.1, 8), other: Summary(0.1, 8)}
    baseline = {precision: Summary(0.9, 8), other: Summary(0.9, 8)}
    assert [d.key for d in check(recent, baseline, tenant_max=strict).raised] == [
        precision
    ]  # globex: unwatched
    # a raised drop of a metric no longer watched is forgotten
    assert check({}, {}, raised={other}).recovered == [other]


def test_allowance() -> None:
    assert allowance("acme", "faithfulness", MAX, {}) == 0.1
    assert allowance("acme", "faithfulness", MAX, {"acme": {"faithfulness": 0.3}}) == 0.3
    assert allowance("globex", "faithfulness", MAX, {"acme": {"faithfulness": 0.3}}) == 0.1
    assert allowance("acme", "ndcg_at_10", MAX, {}) is None
