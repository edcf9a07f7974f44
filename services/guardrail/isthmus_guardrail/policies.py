"""Per-tenant guardrail policies, persisted as one JSON file per tenant (defaults when absent).

A tenant id names a file here only after :func:`~isthmus_core.contracts.ids.parse_tenant_id` (no
separator, no dot-dot), and the resolved path is checked to stay inside the policies directory too.

Every check reads its tenant's policy, so a policy read once is kept in memory; this store is the only
writer of its directory (the guardrail runs one replica, its policies on its own volume), and
:meth:`PolicyStore.put` and :meth:`PolicyStore.delete` update what is kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from datetime import datetime
from pathlib import Path

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.guard import BannedTopic, IngestScope, Policy, PolicyAction


def policy_from_dict(data: dict[str, object]) -> Policy:
    """A policy from its JSON form (``dataclasses.asdict``); fields it lacks take the defaults."""
    known = {f.name for f in dataclasses.fields(Policy)}
    fields: dict[str, object] = {k: v for k, v in data.items() if k in known}
    for name in ("pii_entities", "ingest_pii_entities"):
        if name in fields:
            fields[name] = tuple(fields[name])  # type: ignore[arg-type]
    if fields.get("output_pii_entities") is not None:
        fields["output_pii_entities"] = tuple(fields["output_pii_entities"])  # type: ignore[arg-type]
    for name in ("pii_action", "output_pii_action", "ingest_injection_action", "ingest_pii_action"):
        if name in fields:
            fields[name] = PolicyAction(str(fields[name]))
    if "ingest_scope" in fields:
        fields["ingest_scope"] = IngestScope(str(fields["ingest_scope"]))
    if "banned_topics" in fields:
        fields["banned_topics"] = tuple(BannedTopic(**t) for t in fields["banned_topics"])  # type: ignore[attr-defined]
    return Policy(**fields)  # type: ignore[arg-type]


class PolicyStore:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._kept: dict[TenantId, Policy] = {}

    def path(self, tenant_id: TenantId) -> Path:
        """The policy file of ``tenant_id``, or InvalidArgument if it would fall outside the directory."""
        tenant = parse_tenant_id(tenant_id)
        path = (self._root / f"{tenant}.json").resolve()
        if path.parent != self._root:
            raise InvalidArgument(f"tenant_id {tenant_id!r} does not name a policy file in {self._root}")
        return path

    def get(self, tenant_id: TenantId) -> Policy:
        kept = self._kept.get(tenant_id)
        if kept is not None:
            return kept
        path = self.path(tenant_id)
        if not path.exists():
            policy = Policy()
        else:
            policy = policy_from_dict(json.loads(path.read_text()))
        self._kept[parse_tenant_id(tenant_id)] = policy
        return policy

    def put(self, tenant_id: TenantId, policy: Policy) -> Policy:
        path = self.path(tenant_id)
        for name in ("injection_threshold", "pii_threshold", "grounding_threshold"):
            value = getattr(policy, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidArgument(f"{name} must be between 0 and 1, got {value}")
        data = dataclasses.asdict(policy)
        data["pii_entities"] = list(policy.pii_entities)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # readers never see half a file
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
        self._kept[parse_tenant_id(tenant_id)] = policy
        return policy

    def delete(self, tenant_id: TenantId, written_before: datetime | None = None) -> bool:
        """Remove the tenant's policy (its tenant was deleted); True if there was one.

        With ``written_before`` (the deletion event's time) a policy written later is kept: it belongs
        to a tenant created again since, and a replayed or late deletion event must not remove it.
        """
        path = self.path(tenant_id)
        self._kept.pop(parse_tenant_id(tenant_id), None)
        try:
            if written_before is not None and path.stat().st_mtime >= written_before.timestamp():
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True
