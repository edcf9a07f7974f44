"""Per-tenant guardrail policies, persisted as one JSON file per tenant (defaults when absent)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.guard import Policy


class PolicyStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, tenant_id: str) -> Policy:
        path = self._root / f"{tenant_id}.json"
        if not path.exists():
            return Policy()
        data = json.loads(path.read_text())
        data["pii_entities"] = tuple(data.get("pii_entities", Policy().pii_entities))
        return Policy(**data)

    def put(self, tenant_id: str, policy: Policy) -> Policy:
        for name in ("injection_threshold", "pii_threshold", "grounding_threshold"):
            value = getattr(policy, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidArgument(f"{name} must be between 0 and 1, got {value}")
        data = dataclasses.asdict(policy)
        data["pii_entities"] = list(policy.pii_entities)
        (self._root / f"{tenant_id}.json").write_text(json.dumps(data, indent=2))
        return policy
