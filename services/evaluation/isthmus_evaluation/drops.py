"""Drops of online answer quality: which to raise, which recovered. Pure: values in, values out.

A watched metric of a tenant (``online_max_drop``, overridden per tenant by ``online_tenant_max_drop``)
*drops* when its mean over the recent window is below its mean over the baseline window (the one just
before) by more than its allowance, both windows holding at least ``min_samples`` scored samples. A drop
is raised once; while it stays raised nothing more is raised for that (tenant, metric, bundle); it
*recovers* when both windows have enough samples again and the difference is within the allowance —
then a later drop is raised anew. Without enough samples nothing changes (neither raised nor recovered).

The comparison is relative to the recent past: a drop that lasts becomes the baseline itself after
``online_baseline_window_s``, and the metric is then seen as recovered at the level it dropped to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

#: (tenant, metric, model bundle — "" = every bundle together)
DropKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Summary:
    mean: float
    n: int


@dataclass(frozen=True, slots=True)
class Drop:
    key: DropKey
    baseline: float
    current: float
    threshold: float
    samples: int
    baseline_samples: int

    @property
    def drop(self) -> float:
        return self.baseline - self.current


@dataclass(frozen=True, slots=True)
class DropCheck:
    #: drops to raise now (not raised before)
    raised: list[Drop]
    #: raised drops whose metric is back within its allowance
    recovered: list[DropKey]


def allowance(
    tenant_id: str,
    metric: str,
    max_drop: Mapping[str, float],
    tenant_max_drop: Mapping[str, Mapping[str, float]],
) -> float | None:
    """The largest drop allowed for the tenant's metric; None = the metric is not watched."""
    own = tenant_max_drop.get(tenant_id, {})
    if metric in own:
        return own[metric]
    return max_drop.get(metric)


def check_drops(
    recent: Mapping[DropKey, Summary],
    baseline: Mapping[DropKey, Summary],
    raised: Collection[DropKey],
    *,
    max_drop: Mapping[str, float],
    tenant_max_drop: Mapping[str, Mapping[str, float]],
    min_samples: int,
) -> DropCheck:
    """The drops to raise and the raised drops that recovered (see the module docstring)."""
    to_raise: list[Drop] = []
    recovered: list[DropKey] = []
    for key in sorted(set(recent) | set(baseline) | set(raised)):
        tenant, metric, _ = key
        limit = allowance(tenant, metric, max_drop, tenant_max_drop)
        now, before = recent.get(key), baseline.get(key)
        if limit is None:
            if key in raised:  # no longer watched: forget it
                recovered.append(key)
            continue
        if now is None or before is None or now.n < min_samples or before.n < min_samples:
            continue
        dropped = before.mean - now.mean > limit
        if dropped and key not in raised:
            to_raise.append(Drop(key, before.mean, now.mean, limit, now.n, before.n))
        elif not dropped and key in raised:
            recovered.append(key)
    return DropCheck(to_raise, recovered)
