"""The guard: policy evaluation over the injection, PII and grounding checks.

Input (a user's question), in order of precedence:

1. any prompt-injection finding with ``score >= policy.injection_threshold`` and ``policy.block_injection``
   -> BLOCK;
2. PII found (``policy.pii_entities`` at ``policy.pii_threshold``) and ``policy.redact_pii`` -> REDACT,
   ``text`` with each entity replaced by ``<ENTITY>``;
3. otherwise ALLOW, ``text`` unchanged.

Output (an answer's sentences and the contexts they cite):

1. any grounding finding and ``policy.block_ungrounded`` -> BLOCK;
2. PII found and ``policy.redact_pii`` -> REDACT. Answers quote the tenant's own documents, which
   legitimately name people, so ``PERSON`` is never redacted in outputs; contact details and
   identifiers (e-mail, phone, card, IBAN, SSN, IP...) still are;
3. otherwise ALLOW, ``text`` = the sentences joined by single spaces.

Verdicts list every finding of every check, including weak injection signals below the threshold.
A BLOCK verdict's ``text`` is empty: nothing of a blocked message goes downstream.
"""

from __future__ import annotations

from collections.abc import Sequence

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import Action, Finding, Policy, Verdict
from isthmus_guardrail.grounding import check_grounding
from isthmus_guardrail.injection import detect_injection
from isthmus_guardrail.pii import PiiDetector

#: entities never redacted in answers (see the module docstring)
OUTPUT_PII_EXEMPT = frozenset({"PERSON"})


def _validate(policy: Policy) -> None:
    for name in ("injection_threshold", "pii_threshold", "grounding_threshold"):
        value = getattr(policy, name)
        if not 0.0 <= value <= 1.0:
            raise InvalidArgument(f"policy.{name} must be within [0, 1], got {value}")


class Guard:
    """InputGuard and OutputGuard. ``pii=None`` turns PII detection off (no spaCy model needed)."""

    def __init__(self, pii: PiiDetector | None) -> None:
        self._pii = pii

    def _find_pii(self, text: str, entities: Sequence[str], threshold: float) -> list[Finding]:
        if self._pii is None or not entities:
            return []
        return self._pii.find(text, entities, threshold)

    def validate_policy(self, policy: Policy) -> Policy:
        """``policy`` if every check can run with it (thresholds in [0, 1]; PII entities this detector
        knows, when PII detection is on), else :class:`InvalidArgument` naming what is wrong — so a bad
        policy is refused when it is stored, not on every later check."""
        _validate(policy)
        if self._pii is not None:
            unknown = sorted(set(policy.pii_entities) - self._pii.supported_entities)
            if unknown:
                raise InvalidArgument(
                    f"unknown PII entities {unknown}; supported: {sorted(self._pii.supported_entities)}"
                )
        return policy

    def check_input(self, text: str, policy: Policy) -> Verdict:
        """Raises :class:`InvalidArgument` for a non-string text or a policy threshold outside [0, 1]."""
        _validate(policy)
        injection = detect_injection(text)
        pii = self._find_pii(text, policy.pii_entities, policy.pii_threshold)
        findings = tuple(injection + pii)
        if policy.block_injection and any(f.score >= policy.injection_threshold for f in injection):
            return Verdict(Action.BLOCK, findings, "")
        if policy.redact_pii and pii and self._pii is not None:
            return Verdict(Action.REDACT, findings, self._pii.redact(text, pii))
        return Verdict(Action.ALLOW, findings, text)

    def check_output(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> Verdict:
        """Raises :class:`InvalidArgument` for a policy threshold outside [0, 1]."""
        _validate(policy)
        grounding = check_grounding(sentences, contexts, policy.grounding_threshold)
        answer = " ".join(s.text for s in sentences)
        entities = [e for e in policy.pii_entities if e not in OUTPUT_PII_EXEMPT]
        pii = self._find_pii(answer, entities, policy.pii_threshold)
        findings = tuple(grounding + pii)
        if grounding and policy.block_ungrounded:
            return Verdict(Action.BLOCK, findings, "")
        if policy.redact_pii and pii and self._pii is not None:
            return Verdict(Action.REDACT, findings, self._pii.redact(answer, pii))
        return Verdict(Action.ALLOW, findings, answer)
