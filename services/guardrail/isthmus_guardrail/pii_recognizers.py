# ruff: noqa: RUF001  (typographic apostrophes and dashes are matched on purpose)
"""Multi-locale PII recognisers added to Presidio's (see :mod:`isthmus_guardrail.pii`).

Each is a plain regular-expression recogniser with its own checks (checksums, phone-number metadata,
context words of several languages matched on the raw text), so it needs no NLP artifacts: it runs in the
pattern prefilter and its findings do not depend on the English spaCy model's lemmas.

* ``PHONE_NUMBER`` — libphonenumber (``phonenumbers``) over many regions: a number valid for one of them,
  or a possible one written the way phone numbers are written (``+``/``00`` prefix, brackets, grouped
  digits) or after a phone word of the supported languages. Digit runs that are dates, cards (Luhn) or
  part of a longer token are not phone numbers.
* ``CREDIT_CARD`` — 12-19 digits, plain or grouped by spaces or dashes in any grouping (Amex 4-6-5
  too), with a Luhn check and an issuer prefix of a card scheme (Visa, Mastercard 51-55 *and* 2221-2720,
  Amex, Discover, Diners, JCB, Maestro, UnionPay), or any Luhn-valid number after a card word. Presidio's
  pattern misses 2-series Mastercards, JCB 2131/1800, 19-digit cards and 12-14-digit cards written in
  groups of four (Maestro, Visa 13, Diners 14: a last group shorter than three digits).
* ``DATE_OF_BIRTH`` — a date (numeric or with a month name in EN/DE/FR/ES/IT/NL/PT) with a birth word
  of one of those languages shortly before it. A date without one is not reported (it is a date).
* ``STREET_ADDRESS`` — a street line (street-type word of those languages, before or after the name,
  with a house number), a postcode with its town (DE/FR/ES/IT 5 digits, NL ``1234 AB``, BR ``12345-678``,
  US ``Town, ST 12345``, UK postcodes); adjacent parts are joined into one span.
* ``PERSON_NAME`` — a person's name given as personal data: introduced ("my name is", "I'm", "je
  m'appelle", "ich heiße"...), addressed ("Dear", "Hallo", "Bonjour"...), signed (after a closing such as
  "Regards," or on its own line under one), after a name label ("account holder", "Name:") or a title
  with a first name and a surname ("Mr Daniel Zuniga"). A title before a surname alone scores 0.4, below
  the default threshold ("Dr. Miller" in a paper, "What did Dr. Salton propose?" in a question). Names
  are capitalised words (with particles such as "van", "de", "da"); no list of names is used. spaCy's
  ``PERSON`` (every name the English NER finds, people-centred questions included) stays available.
* national ids with their checksums: ``FR_NIR`` (key 97), ``DE_TAX_ID`` (ISO 7064 MOD 11,10, spaced
  or not), ``NL_BSN`` (11-proof), ``BR_CPF`` (two check digits); Presidio's own ``UK_NINO``, ``ES_NIF``,
  ``ES_NIE`` and ``IT_FISCAL_CODE`` recognisers are registered for every language.

The word lists here are ordinary vocabulary of each language (street types, month names, greetings),
written for this module; none comes from a test-data generator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

#: regions whose national formats the phone recogniser knows
PHONE_REGIONS = (
    "US",
    "CA",
    "GB",
    "IE",
    "DE",
    "AT",
    "CH",
    "FR",
    "BE",
    "LU",
    "ES",
    "PT",
    "IT",
    "NL",
    "BR",
    "AU",
)

_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_LOWER = "a-zß-öø-ÿāăąćĉċčďđēĕėęěĝğġģĥħĩīĭįıĳĵķĺļľŀłńņňŋōŏőœŕŗřśŝşšţťŧũūŭůűųŵŷźżž"
_WORD = f"[{_UPPER}](?:[{_LOWER}]+|\\.)?(?:['’][{_UPPER}{_LOWER}][{_LOWER}]+)?(?:[{_UPPER}][{_LOWER}]+)?"
_NAME_WORD = f"{_WORD}(?:-{_WORD})*"
_PARTICLE = (
    r"(?:van|von|der|den|de|del|della|dei|di|da|das|dos|do|du|des|la|le|ter|ten|te|y|e|zu|bin|al|st\.?)"
)


class _Recognizer(EntityRecognizer):
    """A recogniser over the raw text (no NLP artifacts): subclasses yield ``(start, end, score)``."""

    ENTITY = ""

    def __init__(self, language: str = "en") -> None:
        super().__init__(
            supported_entities=[self.ENTITY],
            name=type(self).__name__,
            supported_language=language,
            context=[],
        )

    def load(self) -> None:
        pass

    def matches(self, text: str) -> Iterable[tuple[int, int, float]]:
        raise NotImplementedError

    def analyze(
        self, text: str, entities: Sequence[str], nlp_artifacts: Any = None
    ) -> list[RecognizerResult]:
        if self.ENTITY not in entities:
            return []
        results = []
        for start, end, score in self.matches(text):
            results.append(
                RecognizerResult(
                    entity_type=self.ENTITY,
                    start=start,
                    end=end,
                    score=score,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
            )
        return results


def _context_before(text: str, start: int, pattern: re.Pattern[str], window: int) -> bool:
    return pattern.search(text[max(0, start - window) : start]) is not None


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def luhn(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ---------------------------------------------------------------- dates

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    "januar|jänner|februar|märz|mai|juni|juli|oktober|dezember|"
    "janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|décembre|decembre|"
    "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|"
    "gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|"
    "januari|februari|maart|mei|augustus|"
    "janeiro|fevereiro|março|marco|maio|junho|julho|setembro|outubro|novembro|dezembro"
)
_YEAR = r"(?:19|20)\d{2}"
_DATE = re.compile(
    r"(?<![\w/.-])(?:"
    rf"\d{{1,2}}[./-]\d{{1,2}}[./-]{_YEAR}"  # 05/03/1985, 05.03.1985, 03-05-1985
    rf"|{_YEAR}[./-]\d{{1,2}}[./-]\d{{1,2}}"  # 1985-03-05
    rf"|(?:(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th|er|º|°)?\.?\s+(?:de\s+)?(?:{_MONTHS})\.?,?\s+(?:de\s+)?{_YEAR})"
    rf"|(?:(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+{_YEAR})"
    r")(?![\w/-])",
    re.IGNORECASE,
)
_BIRTH = re.compile(
    r"\b(?:born|birth|birthday|birthdate|d\.?\s?o\.?\s?b|b\.|"
    r"geboren|geburtsdatum|geburtstag|geb\.|"
    r"née?|naissance|anniversaire|"
    r"nacid[oa]|nac[ií]|nacimiento|cumpleaños|"
    r"nat[oa]|nascita|compleanno|"
    r"geboortedatum|verjaardag|"
    r"nascid[oa]|nasci|nascimento|aniversário)(?!\w)",
    re.IGNORECASE,
)


class IsthmusDateOfBirthRecognizer(_Recognizer):
    """A date with a birth word of EN/DE/FR/ES/IT/NL/PT in the 60 characters before it."""

    ENTITY = "DATE_OF_BIRTH"
    WINDOW = 60

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        for m in _DATE.finditer(text):
            if _context_before(text, m.start(), _BIRTH, self.WINDOW):
                yield m.start(), m.end(), 0.85


def date_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _DATE.finditer(text)]


# ---------------------------------------------------------------- cards

_CARD = re.compile(r"(?<![\w.,/-])\d{4}(?:[ -]?\d{1,7}){1,4}(?![\w-]|[.,/]\d)")
#: an IBAN-shaped token (country, check digits, then groups): digits inside one are not a card or phone
_IBAN_LIKE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")


def _inside(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


#: issuer prefixes of the card schemes (ISO/IEC 7812 IIN ranges as the schemes publish them)
_CARD_PREFIX = re.compile(
    r"^(?:4"  # Visa
    r"|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"  # Mastercard
    r"|3[47]"  # Amex
    r"|6011|64[4-9]|65|622"  # Discover, UnionPay co-branded
    r"|30[0-5]|309|36|38|39"  # Diners
    r"|35(?:2[89]|[3-8]\d)|2131|1800"  # JCB
    r"|5[06-9]|6\d"  # Maestro, UnionPay (62), others
    r")"
)


_CARD_WORD = re.compile(
    r"\b(?:card|cc|credit|debit|visa|mastercard|amex|maestro|jcb|discover|diners|karte|kreditkarte|carte|"
    r"cb|tarjeta|carta|kaart|creditcard|pinpas|cart[ãa]o)\w*",
    re.IGNORECASE,
)


class IsthmusCreditCardRecognizer(_Recognizer):
    ENTITY = "CREDIT_CARD"

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        ibans = [(m.start(), m.end()) for m in _IBAN_LIKE.finditer(text)]
        for m in _CARD.finditer(text):
            raw = m.group(0)
            if _inside(ibans, m.start(), m.end()):
                continue
            seps = set(re.findall(r"[ -]", raw))
            if len(seps) > 1:
                continue
            number = _digits(raw)
            if not 12 <= len(number) <= 19 or not luhn(number):
                continue
            if _CARD_PREFIX.match(number):
                yield m.start(), m.end(), 0.9
            elif _context_before(text, m.start(), _CARD_WORD, 40):
                yield m.start(), m.end(), 0.8  # a scheme this list lacks, called a card


# ---------------------------------------------------------------- phones

_PHONE_WORD = re.compile(
    r"\b(?:phone|telephone|tel|mobile|mob|cell|call|ring|reach|whatsapp|fax|"
    r"telefon|handy|mobil|rufnummer|anrufen|"
    r"t[ée]l[ée]phone|t[ée]l|portable|appel|rappel|joignable|"
    r"tel[ée]fono|m[óo]vil|llam|celular|"
    r"cellulare|chiama|"
    r"telefoon|mobiel|bel|"
    r"telefone|ligar|ligação|liga|contato)\w*",
    re.IGNORECASE,
)
_PHONE_SHAPE = re.compile(r"^(?:\+|00)|\(|\d[ .-]\d+[ .-]\d")
#: shapes of other numbers: US SSN, IPv4, BR CPF
_NOT_PHONE = re.compile(
    r"^(?:\d{3}-\d{2}-\d{4}|\d{5}-\d{3}|\d{1,3}(?:\.\d{1,3}){3}|\d{3}\.\d{3}\.\d{3}-\d{2}"
    r"|(?:1[89]|20)\d{2}\s?[-–/]\s?(?:1[89]|20)?\d{2}"  # a range of years
    r"|\d+[.,]\d+\s?[-–]\s?\d+[.,]\d+)$"  # a range of decimals
)
_TRUNK = re.compile(r"\(0\)")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension|poste|durchwahl)\s?\d{1,6}(?!\w)", re.IGNORECASE)


class IsthmusPhoneRecognizer(_Recognizer):
    """libphonenumber over :data:`PHONE_REGIONS` (see the module docstring for the scores)."""

    ENTITY = "PHONE_NUMBER"
    CONTEXT_WINDOW = 40

    def __init__(self, language: str = "en", regions: Sequence[str] = PHONE_REGIONS) -> None:
        super().__init__(language)
        self.regions = tuple(regions)

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        import phonenumbers

        if sum(c.isdigit() for c in text) < 7:
            return
        dates = date_spans(text)
        # digits of an IBAN or a card are not a phone number
        ibans = [(m.start(), m.end()) for m in _IBAN_LIKE.finditer(text)]
        ibans += [(s, e) for s, e, _ in IsthmusCreditCardRecognizer().matches(text)]
        # "+44 (0)20 ..." (the trunk prefix in brackets): read without it, offsets kept
        plain = _TRUNK.sub("   ", text)
        best: dict[tuple[int, int], float] = {}
        for region in self.regions:
            for m in phonenumbers.PhoneNumberMatcher(plain, region, leniency=phonenumbers.Leniency.POSSIBLE):
                start, end, raw = m.start, m.end, text[m.start : m.end]
                ext = _EXTENSION.match(text, end)
                if ext:
                    end = ext.end()
                if _NOT_PHONE.match(raw.strip(" ()[]")) or _inside(ibans, start, end):
                    continue
                digits = _digits(_EXTENSION.split(raw)[0])
                if len(digits) < 7 or any(s < end and start < e for s, e in dates):
                    continue
                if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "-/"):
                    continue
                if start > 1 and text[start - 1] in ".," and text[start - 2].isdigit():
                    continue  # the decimals of a number
                if raw.count("(") != raw.count(")"):
                    continue
                if re.search(r"\d[ -]$", text[max(0, start - 2) : start]):
                    continue  # the tail of a longer run of digit groups (a card number, an account)
                if end < len(text) and text[end].isalnum():
                    continue
                shaped = _PHONE_SHAPE.search(raw) is not None
                context = _context_before(text, start, _PHONE_WORD, self.CONTEXT_WINDOW)
                if phonenumbers.is_valid_number(m.number) and (shaped or context or len(digits) >= 9):
                    score = 0.75
                elif (shaped and len(digits) >= 8) or context:
                    score = 0.6
                else:
                    score = 0.3  # a bare run of digits is a phone number only with a phone word before it
                key = (start, end)
                best[key] = max(best.get(key, 0.0), score)
        yield from _drop_contained((s, e, sc) for (s, e), sc in best.items())


def _drop_contained(spans: Iterable[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """The spans not strictly inside another (the longest match wins)."""
    items = sorted(spans, key=lambda s: (s[0], -(s[1] - s[0])))
    out: list[tuple[int, int, float]] = []
    for s in items:
        if out and s[0] >= out[-1][0] and s[1] <= out[-1][1]:
            if s[2] > out[-1][2]:
                out[-1] = (out[-1][0], out[-1][1], s[2])
            continue
        out.append(s)
    return out


# ---------------------------------------------------------------- addresses

#: a capitalised word; a full stop only after an abbreviation ("St.", "Av."), not a sentence's end
_CAP = f"(?:[{_UPPER}][{_LOWER}]{{0,2}}\\.|[{_UPPER}][{_LOWER}'’]*)"
_CAPS = f"{_CAP}(?:[ -](?:{_PARTICLE}[ -])*{_CAP}){{0,4}}"
_NUM = r"\d{1,5}(?:\s?[a-zA-Z](?![\w]))?(?:[-/]\d{1,4}[a-zA-Z]?)?"
_EN_STREET = (
    r"street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|court|ct|boulevard|blvd|way|place|pl|square|sq|"
    r"terrace|close|crescent|parkway|pkwy|highway|hwy|circle|cir|trail|row|walk|grove|gardens|hill|park|"
    r"mews|green|rise|view|alley|route|rte|expressway|freeway|pike|plaza"
)
_PREFIX_STREET = (
    r"rue|avenue|av\.|boulevard|bd|bld|chemin|allée|allee|place|impasse|quai|route|cours|passage|square|"
    r"calle|c/|avenida|avda\.?|paseo|plaza|camino|carretera|ronda|travesía|traves[ií]a|glorieta|pasaje|"
    r"urbanizaci[oó]n|via|viale|piazza|piazzale|corso|vicolo|largo|strada|contrada|borgo|lungomare|"
    r"rua|travessa|pra[cç]a|alameda|rodovia|estrada|ladeira|avenida|"
    r"flat|apartment|apt\.?|suite|unit|studio"
)
#: street-type endings of German and Dutch compounds ("Hauptstraße", "Kerkstraat")
_SUFFIX_STREET = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|chaussee|"
    r"straat|laan|plein|gracht|kade|singel|dreef|steeg|plantsoen"
)
#: endings that end ordinary words too ("During 40", "Spring 2005"): an address only beside a postcode
_WEAK_SUFFIX_STREET = r"ring|steig|pfad|markt|hof|pad|baan|dijk|park|burg|veld|wal|haven|erf|lei|berg|tuin"
_STREET_PATTERNS = (
    # 12 Baker Street / 5, rue de la Paix / 1600 Pennsylvania Avenue NW
    re.compile(
        rf"(?<![\w-]){_NUM},?\s+(?:(?i:{_PREFIX_STREET})\s+(?:(?:{_PARTICLE})\s+)*{_CAPS}"
        rf"|{_CAPS}\s+(?i:{_EN_STREET})\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?)"
    ),
    # Calle Mayor 12 / Via Roma, 5 / Rua das Flores, 123
    re.compile(
        rf"(?<![\w-])(?i:{_PREFIX_STREET})\s+(?:(?:{_PARTICLE})\s+)*{_CAPS},?\s+(?:n[º°o.]\s*)?{_NUM}(?![\w])"
    ),
    # Hauptstraße 5 / Kerkstraat 12a / Am Markt 3
    re.compile(rf"(?<![\w-])[{_UPPER}][\w\-äöüß]*(?:{_SUFFIX_STREET})\s+{_NUM}(?![\w])"),
    re.compile(rf"(?<![\w-])(?:{_CAP}[ -]){{1,4}}(?:{_SUFFIX_STREET})\s+{_NUM}(?![\w])"),
)
_WEAK_STREET = re.compile(rf"(?<![\w-])[{_UPPER}][\w\-äöüß]*(?:{_WEAK_SUFFIX_STREET})\s+{_NUM}(?![\w])")
_POSTCODE_PATTERNS = (
    re.compile(rf"(?<![\w-])\d{{5}},?\s+{_CAPS}(?:\s*\([A-Z]{{2}}\))?"),  # 75001 Paris, 00100 Roma (RM)
    re.compile(rf"(?<![\w-])\d{{4}}\s?[A-Z]{{2}}(?![\w]),?\s+{_CAPS}"),  # 1234 AB Amsterdam
    re.compile(rf"(?<![\w-])\d{{4}}\s?[A-Z]{{2}}(?![\w])(?=,\s*{_CAP})"),  # 1234AB, Amsterdam
    re.compile(rf"(?<![\w-])\d{{5}}-\d{{3}}(?![\w-])(?:\s+{_CAPS}(?:\s*/\s*[A-Z]{{2}})?)?"),  # 12345-678 (BR)
    re.compile(
        rf"(?<![\w-])\d{{8}}\s+(?:{_PARTICLE}\s+)?{_CAPS}\s*/\s*[A-Z]{{2}}(?![\w])"
    ),  # 12345678 Town / UF
    re.compile(rf"{_CAPS},\s+(?:[A-Z]{{2}})\s+\d{{5}}(?:-\d{{4}})?(?![\w])"),  # Springfield, IL 62704
    re.compile(r"\b(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}\b"),  # US military
    re.compile(rf"{_CAPS},\s+\d{{5}}(?![\w])"),  # Valladolid, 29697
    re.compile(  # UK postcode
        r"(?<![\w-])(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
        r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]) [0-9][ABD-HJLNP-UW-Z]{2}(?![\w/])"
    ),
)
_STREET_LINE_BEFORE = re.compile(
    rf"(?<![\w-])\d{{1,5}}[A-Za-z]?,?\s+[{_UPPER}][^\n,;:!?]{{0,40}}(?:,\s*[{_UPPER}][^\n,;:!?]{{0,30}})?,\s*$"
)
_POSTCODE_STATE = (
    _POSTCODE_PATTERNS[4],
    _POSTCODE_PATTERNS[5],
    re.compile(rf"(?<![\w-])\d{{5}}-\d{{3}}\s+(?:{_PARTICLE}\s+)?{_CAPS}\s*/\s*[A-Z]{{2}}(?![\w])"),
)
#: what may stand between two parts of one address (a comma, a town, a district)
_ADDRESS_GAP = re.compile(rf"^(?:[\s,]*(?:{_CAPS}|\d{{1,5}}|[A-Z]\d|Puerta \d+|n[º°]\s*\d+)?[\s,]*)$")


class IsthmusStreetAddressRecognizer(_Recognizer):
    ENTITY = "STREET_ADDRESS"

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        parts = [(m.start(), m.end(), 0.7) for p in _STREET_PATTERNS for m in p.finditer(text)]
        parts += [(m.start(), m.end(), 0.4) for m in _WEAK_STREET.finditer(text)]
        parts += [(m.start(), m.end(), 0.6) for p in _POSTCODE_PATTERNS for m in p.finditer(text)]
        # a postcode with its town *and* state ("Springfield, IL 62704", "12345678 Town / SP") is an address
        parts += [(m.start(), m.end(), 0.8) for p in _POSTCODE_STATE for m in p.finditer(text)]
        if not parts:
            return
        dates = date_spans(text)
        parts = [p for p in parts if not any(s <= p[0] and p[1] <= e for s, e in dates)]
        parts.sort()
        merged: list[list[Any]] = []
        for start, end, score in parts:
            if merged and (
                start <= merged[-1][1]
                or (start - merged[-1][1] <= 40 and _ADDRESS_GAP.match(text[merged[-1][1] : start]))
            ):
                merged[-1][1] = max(merged[-1][1], end)
                merged[-1][2] = max(merged[-1][2], score) + 0.1  # two parts of an address agree
                continue
            merged.append([start, end, score])
        for start, end, score in merged:
            # a street line before the matched part ("72763 Kathy Plain, Moranborough, ND 23593")
            before = _STREET_LINE_BEFORE.search(text, max(0, start - 90), start)
            if before:
                start = before.start()
            yield start, end, min(1.0, score)


# ---------------------------------------------------------------- names

_TITLE = (
    r"mr|mrs|ms|miss|mx|dr|prof|sir|dame|herr|frau|hr|fr|m|mme|mlle|mm|me|monsieur|madame|mademoiselle|"
    r"sr|sra|srta|don|doña|dona|señor|señora|sig|sig\.ra|sigra|signor|signora|dott|dott\.ssa|ing|avv|"
    r"dhr|mevr|mw|heer|mevrouw|senhor|senhora|dra"
)
_INTRO = (
    # introductions
    r"my name is|my name's|name is|i am|i'm|im|this is|it's|here is|"
    r"mein name ist|ich heiße|ich heisse|ich bin|hier spricht|hier ist|am apparat|"
    r"je m'appelle|je m’appelle|je suis|mon nom est|ici|c'est|"
    r"me llamo|mi nombre es|soy|habla|"
    r"mi chiamo|il mio nome è|sono|"
    r"mijn naam is|ik heet|ik ben|u spreekt met|met|hier is|"
    r"meu nome é|me chamo|eu sou|sou|aqui é|aqui fala|"
    # salutations
    r"dear|hi|hello|hey|good morning|good afternoon|"
    r"sehr geehrte[rs]?(?:/r|\(r\))?|liebe[rs]?|hallo|guten tag|"
    r"bonjour|cher|chère|"
    r"hola|estimad[oa]s?|buenas|querid[oa]|"
    r"gentile|gentilissim[oa]|car[oa]|buongiorno|salve|ciao|"
    r"beste|geachte|goedendag|"
    r"olá|ola|oi|prezad[oa]|car[oa]|bom dia|"
    # on behalf of
    r"on behalf of|signed|regards from"
)
#: generic labels: followed by a colon or "is" ("Name: ...", "the customer is ...")
_LABEL = r"name|customer|client|kunde|nom|nombre|nome|naam|cliente"
#: labels that name a person whatever follows ("account name Jane Roe")
_PERSON_LABEL = (
    r"full name|account holder|account name|cardholder|card holder|"
    r"kontoinhaber(?:in)?|karteninhaber(?:in)?|vor- und nachname|"
    r"titulaire(?: du compte| de la carte)?|nom et prénom|"
    r"titular(?: de la cuenta| da conta| de la tarjeta| do cartão)?|nombre completo|nome completo|"
    r"intestatari[oa](?: del conto| della carta)?|"
    r"rekeninghouder|kaarthouder|volledige naam"
)
_CLOSING = (
    r"regards|kind regards|best regards|warm regards|best wishes|best|cheers|thanks|thank you|many thanks|"
    r"sincerely|yours sincerely|yours faithfully|yours truly|yours|"
    r"grüße|grüsse|viele grüße|beste grüße|liebe grüße|freundliche grüße|mit freundlichen grüßen|"
    r"mit freundlichen grüssen|mfg|lg|"
    r"cordialement|bien cordialement|bien à vous|salutations|merci|amitiés|"
    r"saludos|un saludo|atentamente|gracias|un abrazo|"
    r"cordiali saluti|distinti saluti|saluti|grazie|un saluto|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groeten|groet|mvg|bedankt|"
    r"atenciosamente|abraços|abraço|obrigad[oa]|cumprimentos|att\.?"
)
_FULL_NAME = rf"{_NAME_WORD}(?:\s+(?:{_PARTICLE}\s+)*{_NAME_WORD}){{0,4}}"
#: capitalised words that follow a greeting or a closing but are not names
_NOT_NAMES = frozenset(
    "sir sirs madam madame monsieur messieurs team support customer customers service services all there "
    "everyone everybody friends folks colleagues guys again and or the a an to for from of on in at is "
    "thanks thank please help hello hi dear regards best kind "
    "damen herren kundenservice kundendienst support-team team, "
    "équipe equipe service client clients mesdames "
    "señor señora señores equipo atención "
    "signore signora signori gentili servizio clienti "
    "heer mevrouw klantenservice "
    "senhor senhora senhores equipe atendimento "
    "i im i'm my we our you your it this that".split()
)
# cue words in any case; the name itself must be capitalised
_LABEL_NAME = re.compile(
    rf"(?<![\w])(?:(?i:{_LABEL})(?:[ \t]*:|\s+(?i:is|ist|est|es|è|é|was|war|era))"
    rf"|(?i:{_PERSON_LABEL})(?:[ \t]*:|\s+(?i:is|ist|est|es|è|é|was|war|era))?)[ \t]*"
    rf"(?:(?i:{_TITLE})\.?\s+)?(?P<name>{_FULL_NAME})"
)
#: a title before a first name and a surname ("Mr Daniel Zuniga"); a title before a surname alone
#: ("Dr. Miller", "What did Dr. Salton propose?") names someone, usually not the writer: below 0.5
_TITLE_NAME = re.compile(rf"(?<![\w.])(?i:{_TITLE})\.?\s+(?P<name>{_FULL_NAME})")
_CUE_NAME = re.compile(
    rf"(?<![\w])(?i:{_INTRO})\b[ \t]*[:,]?[ \t]*"
    rf"(?:(?i:{_TITLE})\.?\s+)?(?P<name>{_FULL_NAME})"
)
_SIGNED = re.compile(
    # the closing then a comma or a line break ("the best. Although" is no signature)
    rf"(?<![\w])(?i:{_CLOSING})(?:[ \t]*,[ \t]*(?:\r?\n[ \t]*)?|[ \t]*!?[ \t]*\r?\n[ \t]*)(?:[-–—][ \t]*)?"
    rf"(?:(?i:{_TITLE})\.?\s+)?(?P<name>{_FULL_NAME})"
)


def _trim_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The name's span without trailing non-name words; None if nothing name-like is left."""
    words = list(re.finditer(r"\S+", text[start:end]))
    kept: list[re.Match[str]] = []
    for w in words:
        token = w.group(0)
        bare = token.strip(".,;:!?").lower()
        if bare in _NOT_NAMES:
            break
        if not token[0].isupper() and not re.fullmatch(_PARTICLE, token):
            break
        kept.append(w)
    while kept and (not kept[-1].group(0)[0].isupper()):
        kept.pop()  # a trailing particle
    if not kept:
        return None
    return start + kept[0].start(), start + kept[-1].end()


class IsthmusPersonNameRecognizer(_Recognizer):
    """Names introduced, addressed, signed, titled or labelled (see the module docstring)."""

    ENTITY = "PERSON_NAME"

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        for pattern, score in ((_LABEL_NAME, 0.7), (_CUE_NAME, 0.7), (_SIGNED, 0.7), (_TITLE_NAME, 0.6)):
            for m in pattern.finditer(text):
                span = _trim_name(text, m.start("name"), m.end("name"))
                if span is None:
                    continue
                name = text[span[0] : span[1]]
                if not name[0].isupper() or (name.isupper() and len(name) > 3):
                    continue  # a name starts with a capital; an all-caps word is an acronym
                surname_only = len(re.findall(rf"[{_UPPER}][{_LOWER}]+", name)) < 2
                found.append((span[0], span[1], 0.4 if pattern is _TITLE_NAME and surname_only else score))
        # a title just before a found name belongs to it (Mr Smith, Dr. Jones)
        yield from _drop_contained(found)


# ---------------------------------------------------------------- national ids


class _IdRecognizer(_Recognizer):
    PATTERN: re.Pattern[str]
    SCORE = 0.85

    def valid(self, raw: str) -> bool:
        raise NotImplementedError

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        for m in self.PATTERN.finditer(text):
            if self.valid(m.group(0)):
                yield m.start(), m.end(), self.SCORE


class IsthmusFrNirRecognizer(_IdRecognizer):
    """French social security number (NIR): sex, year, month, department (2A/2B), commune, order, key."""

    ENTITY = "FR_NIR"
    SCORE = 0.95  # a mod-97 key: one random number in 97 passes
    PATTERN = re.compile(
        r"(?<![\w+-])[12]\s?\d{2}\s?(?:0[1-9]|1[0-2]|[2-9]\d)\s?(?:\d{2}|2[AB])\s?\d{3}\s?\d{3}\s?\d{2}(?![\w-])"
    )

    def valid(self, raw: str) -> bool:
        s = raw.replace(" ", "").upper()
        body = s[:13].replace("2A", "19").replace("2B", "18")
        return int(s[13:]) == 97 - int(body) % 97


class IsthmusDeTaxIdRecognizer(_IdRecognizer):
    """German Steuer-Identifikationsnummer: 11 digits, ISO 7064 MOD 11,10, one digit repeated."""

    ENTITY = "DE_TAX_ID"
    PATTERN = re.compile(r"(?<![\w+-])(?<!\+\d)(?<!\+\d\d)[1-9]\d(?:\s?\d{3}){3}(?![\w-])")

    def valid(self, raw: str) -> bool:
        digits = [int(c) for c in raw if c.isdigit()]
        if len(digits) != 11:
            return False
        counts = [digits[:10].count(d) for d in set(digits[:10])]
        if max(counts) not in (2, 3) or counts.count(max(counts)) != 1:
            return False
        product = 10
        for d in digits[:10]:
            product = (((d + product) % 10 or 10) * 2) % 11
        return (11 - product) % 10 == digits[10]


class IsthmusNlBsnRecognizer(_IdRecognizer):
    """Dutch burgerservicenummer: 9 digits passing the 11-proof (weights 9..2, -1)."""

    ENTITY = "NL_BSN"
    PATTERN = re.compile(r"(?<![\w.,-])(?:\d{4}\.?\d{2}\.?\d{3}|\d{3}\.\d{3}\.\d{3})(?![\w-]|[.,]\d)")
    #: nine digits are many things and the 11-proof passes one in eleven: an id word must come first
    CONTEXT = re.compile(
        r"\b(?:bsn|burgerservice\w*|sofi\w*|id|ids|identification|identity|national|social|ssn|citizen|"
        r"personal|nummer|number|nr|no)\b",
        re.IGNORECASE,
    )

    def matches(self, text: str) -> Iterator[tuple[int, int, float]]:
        for start, end, score in super().matches(text):
            yield start, end, score if _context_before(text, start, self.CONTEXT, 40) else 0.3

    def valid(self, raw: str) -> bool:
        d = [int(c) for c in raw if c.isdigit()]
        if len(d) != 9 or len(set(d)) < 3:
            return False
        total = sum(w * x for w, x in zip(range(9, 1, -1), d[:8], strict=True)) - d[8]
        return total % 11 == 0 and total != 0


class IsthmusBrCpfRecognizer(_IdRecognizer):
    """Brazilian CPF: 11 digits (``123.456.789-09`` or plain) with two mod-11 check digits."""

    ENTITY = "BR_CPF"
    PATTERN = re.compile(r"(?<![\w.,+-])(?:\d{3}\.\d{3}\.\d{3}-\d{2}|\d{11})(?![\w-])")

    def valid(self, raw: str) -> bool:
        d = [int(c) for c in raw if c.isdigit()]
        if len(set(d)) == 1:
            return False
        for n in (9, 10):
            check = sum(x * w for x, w in zip(d[:n], range(n + 1, 1, -1), strict=True)) * 10 % 11 % 10
            if check != d[n]:
                return False
        return True


def isthmus_recognizers(language: str) -> list[Any]:
    """The recognisers this module adds (and Presidio's country-specific ones it registers for
    ``language``); see the module docstring."""
    from presidio_analyzer.predefined_recognizers import (
        EsNieRecognizer,
        EsNifRecognizer,
        ItFiscalCodeRecognizer,
        UkNinoRecognizer,
    )

    ours: list[Callable[[str], Any]] = [
        IsthmusPhoneRecognizer,
        IsthmusCreditCardRecognizer,
        IsthmusDateOfBirthRecognizer,
        IsthmusStreetAddressRecognizer,
        IsthmusPersonNameRecognizer,
        IsthmusFrNirRecognizer,
        IsthmusDeTaxIdRecognizer,
        IsthmusNlBsnRecognizer,
        IsthmusBrCpfRecognizer,
    ]
    presidio = [
        UkNinoRecognizer(supported_language=language),
        EsNifRecognizer(supported_language=language),
        EsNieRecognizer(supported_language=language),
        ItFiscalCodeRecognizer(supported_language=language),
    ]
    return [make(language) for make in ours] + presidio


#: Presidio's recognisers that :func:`isthmus_recognizers` replaces
REPLACED = ("PhoneRecognizer", "CreditCardRecognizer")
