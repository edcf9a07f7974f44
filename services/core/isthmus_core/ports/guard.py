"""Guard port: checks on inputs (injection, PII), ingested chunks, and outputs (grounding).

Conformance: :mod:`isthmus_core.testing.guard_conformance`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from isthmus_core.ports.generator import AnswerSentence, Context


class Action(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # e.g. "prompt_injection.ignore_instructions", "pii.EMAIL_ADDRESS", "grounding.unsupported"
    message: str
    start: int | None = None
    end: int | None = None
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    findings: tuple[Finding, ...] = ()
    #: the text to use downstream (PII replaced by placeholders when action is REDACT)
    text: str = ""
    #: the :attr:`Policy.version` the check applied ("" when not known)
    policy_version: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-tenant guardrail policy."""

    block_injection: bool = True
    injection_threshold: float = 0.5
    redact_pii: bool = True
    #: PERSON is opt-in: redacting names in questions would stop people-centred questions from
    #: retrieving anything; tenants that need it add it to their policy
    pii_entities: tuple[str, ...] = (
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_SSN",
        "IP_ADDRESS",
    )
    pii_threshold: float = 0.5
    #: fraction of an answer sentence's content words that must appear in its cited spans
    grounding_threshold: float = 0.6
    block_ungrounded: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The policy's content hash (16 hex digits): two policies with the same settings have the same
        version, any change gives another (answers' provenance names the policy their checks applied)."""
        content = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()[:16]


@runtime_checkable
class InputGuard(Protocol):
    def check_input(self, text: str, policy: Policy) -> Verdict: ...


@runtime_checkable
class OutputGuard(Protocol):
    def check_output(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> Verdict:
        """BLOCK (or drop, per policy) answers whose sentences are not supported by their citations."""
