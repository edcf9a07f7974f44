"""The default policy's PII entities on hand-written multi-locale support messages (not the benchmark's
Faker set), the genuine questions they must leave alone, and masking/redaction of overlapping findings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from isthmus_core.ports.guard import DEFAULT_PII_ENTITIES, Action, Finding, Policy
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.pii import PiiDetector
from isthmus_guardrail.pii_recognizers import (
    IsthmusBrCpfRecognizer,
    IsthmusDeTaxIdRecognizer,
    IsthmusFrNirRecognizer,
    IsthmusNlBsnRecognizer,
    luhn,
)

# (text, entity, the value that must be found)
FOUND = [
    # names given as personal data, in the languages of the set
    ("Hi, my name is Jane Roe and I can't log in.", "PERSON_NAME", "Jane Roe"),
    ("Dear Mr Okafor, thanks for the quick reply.", "PERSON_NAME", "Okafor"),
    ("Ich heiße Jürgen Müller-Lüdenscheidt und brauche Hilfe.", "PERSON_NAME", "Jürgen Müller-Lüdenscheidt"),
    ("Bonjour, je m'appelle Hélène de la Tour.", "PERSON_NAME", "Hélène de la Tour"),
    ("Hola, me llamo José Ángel Ruiz.", "PERSON_NAME", "José Ángel Ruiz"),
    ("Mijn naam is Pieter van der Berg, ik kan niet inloggen.", "PERSON_NAME", "Pieter van der Berg"),
    ("Obrigado pela ajuda.\nAtenciosamente,\nJoão da Silva", "PERSON_NAME", "João da Silva"),
    ("Mrs Adaeze Okonkwo asked us to renew the plan.", "PERSON_NAME", "Adaeze Okonkwo"),
    ("Card holder: Lars Øberg", "PERSON_NAME", "Lars Øberg"),
    # phones in national and international formats
    ("Please call me on (415) 555-2671 after five.", "PHONE_NUMBER", "(415) 555-2671"),
    ("Rufen Sie mich unter 030 12345678 an.", "PHONE_NUMBER", "030 12345678"),
    ("Rappelez-moi au 06 12 34 56 78.", "PHONE_NUMBER", "06 12 34 56 78"),
    ("You can reach me at +44 20 7946 0958.", "PHONE_NUMBER", "+44 20 7946 0958"),
    ("Llámeme al +34 612 345 678.", "PHONE_NUMBER", "+34 612 345 678"),
    # postal addresses
    (
        "Ship it to 221B Baker Street, London NW1 6XE please.",
        "STREET_ADDRESS",
        "221B Baker Street, London NW1 6XE",
    ),
    ("Meine neue Adresse: Hauptstraße 12, 10115 Berlin.", "STREET_ADDRESS", "Hauptstraße 12, 10115 Berlin"),
    ("Livraison au 8, rue des Lilas, 69003 Lyon.", "STREET_ADDRESS", "8, rue des Lilas, 69003 Lyon"),
    ("Envíenlo a Calle Mayor 5, 28013 Madrid.", "STREET_ADDRESS", "Calle Mayor 5, 28013 Madrid"),
    (
        "Deliver to 1600 Elm Road, Springfield, IL 62704.",
        "STREET_ADDRESS",
        "1600 Elm Road, Springfield, IL 62704",
    ),
    # dates of birth
    ("For verification, my date of birth is 03/14/1979.", "DATE_OF_BIRTH", "03/14/1979"),
    ("Ich bin am 5. März 1985 geboren, geb. 05.03.1985.", "DATE_OF_BIRTH", "05.03.1985"),
    ("Née le 12 janvier 1990 à Lyon.", "DATE_OF_BIRTH", "12 janvier 1990"),
    # cards: 2-series Mastercard and 19-digit Visa (Presidio's pattern missed both), Amex 4-6-5
    ("Charge card 2221 0000 0000 0009 please.", "CREDIT_CARD", "2221 0000 0000 0009"),
    ("Amex 3782 822463 10005 was declined.", "CREDIT_CARD", "3782 822463 10005"),
    ("Card 4000-0000-0000-0000-006 was charged twice.", "CREDIT_CARD", "4000-0000-0000-0000-006"),
    # national ids, checksums valid
    ("My NI number is AB 12 34 56 C.", "UK_NINO", "AB 12 34 56 C"),
    ("Mi DNI es 12345678Z.", "ES_NIF", "12345678Z"),
    ("Codice fiscale RSSMRA85T10A562S, grazie.", "IT_FISCAL_CODE", "RSSMRA85T10A562S"),
    ("Numéro de sécurité sociale : 1 84 12 76 451 089 46.", "FR_NIR", "1 84 12 76 451 089 46"),
    ("Meine Steuer-ID ist 86095742719.", "DE_TAX_ID", "86095742719"),
    ("Mijn BSN is 111222333.", "NL_BSN", "111222333"),
    ("Meu CPF é 529.982.247-25.", "BR_CPF", "529.982.247-25"),
]

#: genuine questions and document sentences that must not be redacted (people, dates, numbers, places)
CLEAN = [
    "What did Marie Curie discover about radium in 1898?",
    "Who is Claude Shannon and what is information theory?",
    "In 1978 Collier presented some hypothetical data on the economics of online services.",
    "The 1972-1979 citation data of 1712 papers were analysed at Mach 5 and 101.3 kPa.",
    "Bradford's distribution was fitted for 11 databases in the United States.",
    "When was the Wright Flyer first flown, and who was born in Dayton, Ohio?",
    "Dear reader, the boundary layer thickens along the 12 m plate.",
    "Hello, how many vacation days do new employees get?",
    "The IBM 5520 Administrative System and the IBM System/370 were compared.",
    "Thanks, that solved it.",
    "What did Dr. Salton propose for automatic indexing?",
    "Patterns of Name Ordering among Authors of Scientific Papers",
    "Although it was the best. During 40 months of follow-up, C57BL/6 mice gained weight.",
]


@pytest.fixture(scope="module")
def detector() -> Iterator[PiiDetector]:
    yield PiiDetector()


def test_the_default_entities_cover_what_users_expect_and_are_all_supported(detector: PiiDetector) -> None:
    expected = {"PERSON_NAME", "PHONE_NUMBER", "EMAIL_ADDRESS", "STREET_ADDRESS", "DATE_OF_BIRTH"}
    expected |= {"CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "UK_NINO", "ES_NIF", "IT_FISCAL_CODE"}
    expected |= {"FR_NIR", "DE_TAX_ID", "NL_BSN", "BR_CPF"}
    assert expected <= set(DEFAULT_PII_ENTITIES)
    assert set(DEFAULT_PII_ENTITIES) <= detector.supported_entities
    assert "PERSON" not in DEFAULT_PII_ENTITIES  # spaCy's PERSON (every name) stays opt-in
    assert Guard(pii=detector).validate_policy(Policy()) == Policy()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "entity", "value"), FOUND, ids=[f"{e}-{i}" for i, (_, e, _) in enumerate(FOUND)]
)
def test_the_default_policy_finds_the_value(
    detector: PiiDetector, text: str, entity: str, value: str
) -> None:
    findings = detector.find(text, DEFAULT_PII_ENTITIES, 0.5)
    assert (f"pii.{entity}", value) in [(f.code, text[f.start : f.end]) for f in findings]
    for f in findings:
        assert text[f.start : f.end] not in f.message  # findings travel in events: never the value


@pytest.mark.slow
@pytest.mark.parametrize("text", CLEAN)
def test_genuine_questions_and_sentences_have_no_findings(detector: PiiDetector, text: str) -> None:
    assert detector.find(text, DEFAULT_PII_ENTITIES, 0.5) == []


@pytest.mark.slow
def test_the_default_guard_redacts_a_multi_locale_message() -> None:
    guard = Guard(pii=PiiDetector())
    text = "Hallo, mein Name ist Anna Schmidt, Telefon +49 30 901820, IBAN DE89 3704 0044 0532 0130 00."
    verdict = guard.check_input(text, Policy())
    assert verdict.action is Action.REDACT
    assert verdict.text == "Hallo, mein Name ist <PERSON_NAME>, Telefon <PHONE_NUMBER>, IBAN <IBAN_CODE>."


@pytest.mark.slow
def test_a_number_is_one_thing(detector: PiiDetector) -> None:
    """A Steuer-ID is not also a phone number, a card's digits are not also a phone number."""
    for text, entity in [
        ("Meine Steuer-ID lautet 86 095 742 719.", "pii.DE_TAX_ID"),
        ("Card 3782 822463 10005 was declined.", "pii.CREDIT_CARD"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please.", "pii.IBAN_CODE"),
    ]:
        assert [f.code for f in detector.find(text, DEFAULT_PII_ENTITIES, 0.5)] == [entity], text


@pytest.mark.slow
def test_the_new_recognisers_need_no_nlp(detector: PiiDetector) -> None:
    """The default entities are all patterns: a clean question costs no spaCy call, and a message with PII
    goes through the slim pipeline (no NER)."""
    calls: list[str] = []
    engines = [detector._slim_analyzer.nlp_engine, detector._analyzer.nlp_engine]
    with pytest.MonkeyPatch.context() as mp:
        for engine in engines:
            real = engine.process_text

            def counting(text: str, language: str, real: Any = real, which: Any = engine) -> Any:
                calls.append("slim" if which is engines[0] else "full")
                return real(text, language)

            mp.setattr(engine, "process_text", counting)
        assert detector.find(CLEAN[0] + " (no nlp)", DEFAULT_PII_ENTITIES, 0.5) == []
        assert calls == []
        assert detector.find(FOUND[0][0] + " (slim)", DEFAULT_PII_ENTITIES, 0.5)
        assert calls == ["slim"]


# ---- checksums (no spaCy)


@pytest.mark.parametrize(
    ("recognizer", "good", "bad"),
    [
        (IsthmusFrNirRecognizer, "184127645108946", "184127645108947"),
        (IsthmusDeTaxIdRecognizer, "86095742719", "86095742718"),
        (IsthmusNlBsnRecognizer, "111222333", "111222334"),
        (IsthmusBrCpfRecognizer, "529.982.247-25", "529.982.247-26"),
    ],
)
def test_national_ids_need_their_check_digits(recognizer: Any, good: str, bad: str) -> None:
    r = recognizer()
    assert r.valid(good)
    assert not r.valid(bad)


def test_luhn() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")


# ---- masking and redaction of overlapping findings


def _f(entity: str, start: int, end: int, score: float = 0.9) -> Finding:
    return Finding(code=f"pii.{entity}", message=entity, start=start, end=end, score=score)


@pytest.mark.slow
def test_mask_merges_overlapping_findings_before_keeping_the_last_characters(detector: PiiDetector) -> None:
    text = "id 1234567890123456789 end"
    # two findings over one value: masked per finding, the first one's "last four" would stay visible
    findings = [_f("CREDIT_CARD", 3, 15), _f("PHONE_NUMBER", 12, 22)]
    assert detector.mask(text, findings) == "id ***************6789 end"


@pytest.mark.slow
def test_mask_hides_a_short_value_whole(detector: PiiDetector) -> None:
    text = "I'm Ann Li, card 4111 1111 1111 1111."
    masked = detector.mask(text, [_f("PERSON_NAME", 4, 10), _f("CREDIT_CARD", 17, 36)])
    assert masked == "I'm *** **, card **** **** **** 1111."


@pytest.mark.slow
def test_redact_gives_overlapping_findings_one_placeholder(detector: PiiDetector) -> None:
    text = "call 86 095 742 719 now"
    # partly overlapping findings of two entities: one placeholder, the higher-scoring entity's
    findings = [_f("PHONE_NUMBER", 5, 15, 0.6), _f("DE_TAX_ID", 8, 19, 0.85)]
    assert detector.redact(text, findings) == "call <DE_TAX_ID> now"
