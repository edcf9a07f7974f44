"""The guard: a tenant policy applied to the findings of the checks it composes.

The checks (:mod:`isthmus_guardrail.components`) only find; this module decides. Each is optional
(``None`` = off): the transparent injection rules always run, the learned injection model, the grounding
(NLI) model, toxicity, banned topics and PII run when given.

Input (a question, an agent step), first match wins:

1. an injection finding (rules or model) with ``score >= policy.injection_threshold`` and
   ``policy.block_injection`` -> BLOCK;
2. a toxicity finding with ``score >= policy.toxicity_threshold`` and ``policy.block_toxicity`` -> BLOCK;
3. a banned-topic finding (each topic has its threshold) -> BLOCK;
4. PII of ``policy.pii_entities`` (at ``policy.pii_threshold``) and ``policy.redact_pii``: per
   ``policy.pii_action`` -> BLOCK, REDACT (``<ENTITY>``), REDACT with masking (``****1234``), or ALLOW
   with the findings (flag);
5. otherwise ALLOW, ``text`` unchanged.

Output (an answer's sentences and the contexts they cite):

1. a lexical grounding finding, or a grounding-model finding (contradicted; not entailed when the policy
   sets an entailment threshold), and ``policy.block_ungrounded`` -> BLOCK;
2. toxicity and banned topics as on input -> BLOCK;
3. PII of ``policy.output_entities()`` per ``policy.output_pii_action`` (answers quote the tenant's own
   documents, which legitimately name people: PERSON is left out by default);
4. otherwise ALLOW, ``text`` = the sentences joined by single spaces.

Ingest (each chunk of a document, before it is indexed; nothing when ``policy.scan_ingest`` is off):
injection findings at ``policy.ingest_injection_threshold`` take ``policy.ingest_injection_action``, PII
of ``policy.ingest_pii_entities`` takes ``policy.ingest_pii_action``; the strongest wins: BLOCK
(quarantine) > REDACT (redacted/masked text indexed; an injection span becomes ``<PROMPT_INJECTION>``) >
FLAG (indexed with a flag) > ALLOW.

Verdicts list every finding of every check, including weak injection signals below the threshold.
A BLOCK verdict's ``text`` is empty: nothing of a blocked message goes downstream.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Literal

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import (
    Action,
    ChunkVerdict,
    Finding,
    IngestScope,
    Policy,
    PolicyAction,
    Verdict,
)
from isthmus_guardrail.components import (
    GroundingModel,
    InjectionModel,
    TopicMatcher,
    ToxicityDetector,
)
from isthmus_guardrail.grounding import check_grounding
from isthmus_guardrail.injection import detect_injection
from isthmus_guardrail.pii import PiiDetector

#: where an input text comes from: a person, or a document (a tool's result, a fetched page)
Origin = Literal["user", "document"]
ORIGINS: tuple[Origin, ...] = ("user", "document")
#: the placeholder of a redacted injection span in an indexed chunk
INJECTION_PLACEHOLDER = "<PROMPT_INJECTION>"
#: policy fields that are probabilities or similarities
UNIT_FIELDS = (
    "injection_threshold",
    "pii_threshold",
    "grounding_threshold",
    "toxicity_threshold",
    "contradiction_threshold",
    "entailment_threshold",
    "ingest_injection_threshold",
)
#: policy fields that are a :class:`PolicyAction`
ACTION_FIELDS = ("pii_action", "output_pii_action", "ingest_injection_action", "ingest_pii_action")
_ACTION_VALUES = frozenset(a.value for a in PolicyAction)
_SCOPE_VALUES = frozenset(s.value for s in IngestScope)
#: a banned topic's name (its findings are ``topic.<name>``)
TOPIC_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TOPICS = 100
MAX_TOPIC_DESCRIPTION = 2000


def threshold_errors(policy: Policy) -> list[str]:
    """One message per threshold outside [0, 1]."""
    errors = [
        f"policy.{name} must be within [0, 1], got {getattr(policy, name)}"
        for name in UNIT_FIELDS
        if not 0.0 <= getattr(policy, name) <= 1.0
    ]
    errors += [
        f"policy.banned_topics[{t.name!r}].threshold must be within [0, 1], got {t.threshold}"
        for t in policy.banned_topics
        if not 0.0 <= t.threshold <= 1.0
    ]
    return errors


def validate_thresholds(policy: Policy) -> None:
    """InvalidArgument naming every threshold outside [0, 1] (all of them at once)."""
    errors = threshold_errors(policy)
    if errors:
        raise InvalidArgument("; ".join(errors))


def policy_errors(policy: Policy) -> list[str]:
    """Everything wrong with ``policy`` that needs no detector: thresholds, actions, the ingest scope,
    banned topics (one message each)."""
    errors = threshold_errors(policy)
    actions = ", ".join(a.value for a in PolicyAction)
    errors += [
        f"policy.{name} must be one of {actions}, got {getattr(policy, name)!r}"
        for name in ACTION_FIELDS
        if getattr(policy, name) not in _ACTION_VALUES
    ]
    if policy.ingest_scope not in _SCOPE_VALUES:
        scopes = ", ".join(s.value for s in IngestScope)
        errors.append(f"policy.ingest_scope must be one of {scopes}, got {policy.ingest_scope!r}")
    seen: set[str] = set()
    for i, topic in enumerate(policy.banned_topics):
        if not TOPIC_NAME.fullmatch(topic.name):
            errors.append(
                f"policy.banned_topics[{i}].name must be 1-64 letters, digits, '_', '.' or '-', "
                f"got {topic.name!r}"
            )
        elif topic.name in seen:
            errors.append(f"policy.banned_topics[{i}].name {topic.name!r} is used twice")
        seen.add(topic.name)
        if not topic.description.strip():
            errors.append(f"policy.banned_topics[{i}].description must not be empty")
        elif len(topic.description) > MAX_TOPIC_DESCRIPTION:
            errors.append(
                f"policy.banned_topics[{i}].description has at most {MAX_TOPIC_DESCRIPTION} characters"
            )
    if len(policy.banned_topics) > MAX_TOPICS:
        errors.append(f"policy.banned_topics: at most {MAX_TOPICS} topics, got {len(policy.banned_topics)}")
    return errors


class Guard:
    """InputGuard, OutputGuard and ChunkGuard over the given checks (``None`` = that check is off)."""

    def __init__(
        self,
        pii: PiiDetector | None,
        *,
        injection_model: InjectionModel | None = None,
        grounding_model: GroundingModel | None = None,
        toxicity: ToxicityDetector | None = None,
        topics: TopicMatcher | None = None,
    ) -> None:
        self._pii = pii
        self._injection_model = injection_model
        self._grounding_model = grounding_model
        self._toxicity = toxicity
        self._topics = topics

    # ---- policy

    def validate_policy(self, policy: Policy) -> Policy:
        """``policy`` if every check can run with it, else :class:`InvalidArgument` naming everything
        that is wrong at once — so a bad policy is refused when it is stored, not on every later check.

        Checked: thresholds in [0, 1]; actions one of :class:`PolicyAction` and the ingest scope one of
        :class:`IngestScope` (given as their names, e.g. from a request, they come back as the enums);
        banned topics named (letters, digits, ``_.-``; unique) and described; PII entities this detector
        knows, when PII detection is on."""
        errors = policy_errors(policy)
        if self._pii is not None:
            supported = self._pii.supported_entities
            for name, asked in (
                ("pii_entities", policy.pii_entities),
                ("output_pii_entities", policy.output_pii_entities or ()),
                ("ingest_pii_entities", policy.ingest_pii_entities),
            ):
                unknown = sorted(set(asked) - supported)
                if unknown:
                    errors.append(f"policy.{name}: unknown PII entities {unknown}")
            if any("unknown PII entities" in e for e in errors):
                errors.append(f"supported PII entities: {sorted(supported)}")
        if errors:
            raise InvalidArgument("; ".join(errors))
        changes: dict[str, object] = {
            name: PolicyAction(value)
            for name in ACTION_FIELDS
            if not isinstance(value := getattr(policy, name), PolicyAction)
        }
        if not isinstance(policy.ingest_scope, IngestScope):
            changes["ingest_scope"] = IngestScope(policy.ingest_scope)
        return dataclasses.replace(policy, **changes) if changes else policy  # type: ignore[arg-type]

    # ---- findings

    def _find_pii(self, text: str, entities: Sequence[str], threshold: float) -> list[Finding]:
        if self._pii is None or not entities:
            return []
        return self._pii.find(text, entities, threshold)

    def _injection(self, texts: Sequence[str], stage: str) -> list[list[Finding]]:
        found = [detect_injection(t) for t in texts]
        if self._injection_model is not None and texts:
            model = self._injection_model.findings(texts, "input" if stage == "input" else "ingest")
            found = [rules + learned for rules, learned in zip(found, model, strict=True)]
        return found

    def _harm(self, text: str, policy: Policy) -> tuple[list[Finding], bool]:
        """Toxicity and banned-topic findings, and whether they block."""
        toxic = self._toxicity.findings(text) if self._toxicity is not None else []
        topical = (
            self._topics.findings(text, policy.banned_topics)
            if self._topics is not None and policy.banned_topics
            else []
        )
        blocks = bool(topical) or (
            policy.block_toxicity and any(f.score >= policy.toxicity_threshold for f in toxic)
        )
        return toxic + topical, blocks

    def _apply_pii(
        self, text: str, findings: Sequence[Finding], pii: Sequence[Finding], action: PolicyAction
    ) -> Verdict:
        if action is PolicyAction.BLOCK:
            return Verdict(Action.BLOCK, tuple(findings), "")
        if action is PolicyAction.FLAG or self._pii is None:
            return Verdict(Action.ALLOW, tuple(findings), text)
        hidden = self._pii.mask(text, pii) if action is PolicyAction.MASK else self._pii.redact(text, pii)
        return Verdict(Action.REDACT, tuple(findings), hidden)

    # ---- stages

    def check_input(self, text: str, policy: Policy, origin: Origin = "user") -> Verdict:
        """``origin`` "document" (a tool's result, a fetched page) checks injection at the ingest operating
        point and ``policy.ingest_injection_threshold``, as documents are. Raises :class:`InvalidArgument`
        for a policy threshold outside [0, 1]."""
        validate_thresholds(policy)
        document = origin == "document"
        injection = self._injection([text], "ingest" if document else "input")[0]
        threshold = policy.ingest_injection_threshold if document else policy.injection_threshold
        harm, harmful = self._harm(text, policy)
        pii = self._find_pii(text, policy.pii_entities, policy.pii_threshold)
        findings = (*injection, *harm, *pii)
        if policy.block_injection and any(f.score >= threshold for f in injection):
            return Verdict(Action.BLOCK, findings, "")
        if harmful:
            return Verdict(Action.BLOCK, findings, "")
        if policy.redact_pii and pii:
            return self._apply_pii(text, findings, pii, policy.pii_action)
        return Verdict(Action.ALLOW, findings, text)

    def check_output(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> Verdict:
        """Raises :class:`InvalidArgument` for a policy threshold outside [0, 1]."""
        validate_thresholds(policy)
        grounding = check_grounding(sentences, contexts, policy.grounding_threshold)
        if self._grounding_model is not None and policy.grounding_model and sentences:
            grounding += self._grounding_model.findings(sentences, contexts, policy)
        answer = " ".join(s.text for s in sentences)
        harm, harmful = self._harm(answer, policy) if answer else ([], False)
        pii = self._find_pii(answer, policy.output_entities(), policy.pii_threshold)
        findings = (*grounding, *harm, *pii)
        if grounding and policy.block_ungrounded:
            return Verdict(Action.BLOCK, findings, "")
        if harmful:
            return Verdict(Action.BLOCK, findings, "")
        if policy.redact_pii and pii:
            return self._apply_pii(answer, findings, pii, policy.output_pii_action)
        return Verdict(Action.ALLOW, findings, answer)

    def scan_chunks(self, chunks: Sequence[tuple[int, str]], policy: Policy) -> tuple[ChunkVerdict, ...]:
        """One verdict per ``(index, text)`` chunk, in order (see the module docstring, *Ingest*)."""
        validate_thresholds(policy)
        if not policy.scan_ingest:
            return tuple(ChunkVerdict(i, Action.ALLOW, (), text) for i, text in chunks)
        injections = self._injection([text for _, text in chunks], "ingest")
        return tuple(
            self._scan_one(index, text, injection, policy)
            for (index, text), injection in zip(chunks, injections, strict=True)
        )

    def _scan_one(self, index: int, text: str, injection: list[Finding], policy: Policy) -> ChunkVerdict:
        hits = [f for f in injection if f.score >= policy.ingest_injection_threshold]
        pii = self._find_pii(text, policy.ingest_pii_entities, policy.pii_threshold)
        findings = (*injection, *pii)
        actions = []
        if hits:
            actions.append(policy.ingest_injection_action)
        if pii:
            actions.append(policy.ingest_pii_action)
        if PolicyAction.BLOCK in actions:
            return ChunkVerdict(index, Action.BLOCK, findings, "")
        hiding = {PolicyAction.REDACT, PolicyAction.MASK}
        if hiding & set(actions):
            out = text
            if hits and policy.ingest_injection_action in hiding:
                out = _replace_spans(out, hits)
                # spans moved: find the PII again in what is left
                pii = self._find_pii(out, policy.ingest_pii_entities, policy.pii_threshold) if pii else []
            if pii and policy.ingest_pii_action in hiding and self._pii is not None:
                mask = policy.ingest_pii_action is PolicyAction.MASK
                out = self._pii.mask(out, pii) if mask else self._pii.redact(out, pii)
            return ChunkVerdict(index, Action.REDACT, findings, out)
        if actions:
            return ChunkVerdict(index, Action.FLAG, findings, text)
        return ChunkVerdict(index, Action.ALLOW, findings, text)


def _replace_spans(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each finding's span replaced by :data:`INJECTION_PLACEHOLDER` (overlaps merged)."""
    spans = sorted((f.start, f.end) for f in findings if f.start is not None and f.end is not None)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if not merged:
        return INJECTION_PLACEHOLDER
    for start, end in reversed(merged):
        text = text[:start] + INJECTION_PLACEHOLDER + text[end:]
    return text
