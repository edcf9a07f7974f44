"""Which answers are sampled for online evaluation: a pure, deterministic choice from the answer id.

``sampled(answer_id, rate)`` hashes the id (BLAKE2b, 64 bits) into ``[0, 1)`` and keeps the answer when
the point is below ``rate``. The same answer is sampled or not wherever and however often it is decided
(a redelivery, a replay, another region), and a higher rate keeps every answer a lower one kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from hashlib import blake2b

_SCALE = float(1 << 64)


def sample_point(answer_id: str) -> float:
    """Where ``answer_id`` falls in ``[0, 1)``: uniform over ids, fixed for each."""
    digest = blake2b(answer_id.encode("utf-8"), digest_size=8, person=b"isthmus-sample").digest()
    return int.from_bytes(digest, "big") / _SCALE


def sampled(answer_id: str, rate: float) -> bool:
    """The answer is in the sampled share ``rate`` (0 = none, 1 = every answer)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return sample_point(answer_id) < rate


def sample_rate(tenant_id: str, default: float, per_tenant: Mapping[str, float]) -> float:
    """The tenant's own rate when it has one, else ``default``."""
    return per_tenant.get(tenant_id, default)
