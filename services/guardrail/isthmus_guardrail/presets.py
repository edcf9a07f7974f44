"""Named policies a tenant can take whole (``ApplyPolicyRef``, the Tenant resource's ``guardrailPolicyRef``).

* ``default`` — the built-in policy (:class:`~isthmus_core.ports.guard.Policy` as it comes): block
  injection and toxicity, redact PII in questions and answers (PERSON left out), block ungrounded
  answers, quarantine documents holding an injection, flag PII in documents.
* ``strict`` — for tenants that would rather refuse than risk: lower injection and toxicity thresholds,
  PERSON redacted too, PII masked in answers, an answer sentence the grounding model does not find
  entailed is blocked, PII in documents redacted before indexing.
* ``permissive`` — for trusted internal users: only confident injections are blocked; PII, toxicity and
  ungrounded answers are reported (flagged), not acted on; a poisoned chunk is quarantined alone, PII in
  documents only flagged.

Presets are values (no I/O): applying one stores it as a new policy version (source ``preset:<name>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.guard import DEFAULT_PII_ENTITIES, IngestScope, Policy, PolicyAction

_DEFAULT = Policy()

PRESETS: Final[Mapping[str, Policy]] = MappingProxyType(
    {
        "default": _DEFAULT,
        "strict": dataclasses.replace(
            _DEFAULT,
            injection_threshold=0.35,
            pii_entities=(*DEFAULT_PII_ENTITIES, *(() if "PERSON" in DEFAULT_PII_ENTITIES else ("PERSON",))),
            pii_threshold=0.4,
            grounding_threshold=0.7,
            toxicity_threshold=0.3,
            output_pii_action=PolicyAction.MASK,
            contradiction_threshold=0.4,
            entailment_threshold=0.5,
            ingest_injection_threshold=0.4,
            ingest_pii_action=PolicyAction.REDACT,
        ),
        "permissive": dataclasses.replace(
            _DEFAULT,
            injection_threshold=0.8,
            pii_action=PolicyAction.FLAG,
            block_toxicity=False,
            block_ungrounded=False,
            output_pii_action=PolicyAction.FLAG,
            contradiction_threshold=0.7,
            ingest_injection_threshold=0.8,
            ingest_scope=IngestScope.CHUNK,
        ),
    }
)


def preset(name: str) -> Policy:
    """The preset called ``name``, or :class:`InvalidArgument` naming the presets there are."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown policy preset {name!r}: one of {', '.join(sorted(PRESETS))}"
        ) from None
