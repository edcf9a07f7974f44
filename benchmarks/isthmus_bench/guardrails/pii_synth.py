"""A synthetic multi-locale set of ordinary support messages holding PII, spans known by construction.

Values come from Faker (names, phone numbers in the locale's own formats, postal addresses, dates of
birth, cards of every brand, IBANs, e-mail and IP addresses, and the national ids Faker generates
correctly: US SSN, FR NIR, IT codice fiscale, ES DNI/NIE, NL BSN, BR CPF) and from this module for the
national ids Faker gets wrong or lacks (UK NINO: Faker only writes the invalid ``ZZ`` prefix; the German
Steuer-ID), each valid by its own checksum. Values are written as people write them: cards plain,
spaced or dashed; IBANs plain or in groups of four; dates in the locale's numeric and long forms.

Two banks of templates, written before the detector was developed and never changed after:

* ``dev`` — what the recognisers were developed against (seed 1 by default);
* ``test`` — other phrasings (and a different seed): the figures that are reported.

Each message is one template of the locale's language (or English, for a third of them) filled in;
``Message.spans`` lists ``(start, end, entity)`` of every value put in. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

#: the locales of the set and the language of their own templates
LOCALES: dict[str, str] = {
    "en_US": "en",
    "en_GB": "en",
    "de_DE": "de",
    "fr_FR": "fr",
    "es_ES": "es",
    "it_IT": "it",
    "nl_NL": "nl",
    "pt_BR": "pt",
}
#: the national id of each locale, by its detector entity name
NATIONAL_ID: dict[str, str] = {
    "en_US": "US_SSN",
    "en_GB": "UK_NINO",
    "de_DE": "DE_TAX_ID",
    "fr_FR": "FR_NIR",
    "es_ES": "ES_NIF",
    "it_IT": "IT_FISCAL_CODE",
    "nl_NL": "NL_BSN",
    "pt_BR": "BR_CPF",
}
#: the generic entity types of the templates (``{ID}`` is the locale's national id)
TYPES = (
    "PERSON",
    "PHONE_NUMBER",
    "STREET_ADDRESS",
    "DATE_OF_BIRTH",
    "CREDIT_CARD",
    "IBAN_CODE",
    "ID",
    "EMAIL_ADDRESS",
    "IP_ADDRESS",
)

# fmt: off
# ruff: noqa: E501  (one template a line)
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "dev": {
        "en": (
            "Hi, my name is {PERSON} and I can't log in to my account. Please call me on {PHONE_NUMBER}.",
            "Please update my delivery address to {STREET_ADDRESS}. Thanks, {PERSON}",
            "For verification: my date of birth is {DATE_OF_BIRTH} and my ID number is {ID}.",
            "I was charged twice on card {CREDIT_CARD}, can you refund it?",
            "Please send the refund to my account, IBAN {IBAN_CODE}.",
            "Dear {PERSON}, I still have not received an answer to my e-mail from {EMAIL_ADDRESS}.",
            "Our VPN blocks logins from {IP_ADDRESS}; could you whitelist it? Regards, {PERSON}",
            "I'm {PERSON}, born {DATE_OF_BIRTH}. You can reach me at {PHONE_NUMBER} or {EMAIL_ADDRESS}.",
            "My social security / national insurance number is {ID}, the card ends with {CREDIT_CARD}.",
            "Ship the replacement to {STREET_ADDRESS} and call {PHONE_NUMBER} on arrival.",
        ),
        "de": (
            "Hallo, mein Name ist {PERSON} und ich komme nicht in mein Konto. Bitte rufen Sie mich unter {PHONE_NUMBER} an.",
            "Bitte ändern Sie meine Lieferadresse auf {STREET_ADDRESS}. Viele Grüße, {PERSON}",
            "Zur Verifizierung: mein Geburtsdatum ist {DATE_OF_BIRTH}, meine Steuer-ID {ID}.",
            "Meine Karte {CREDIT_CARD} wurde doppelt belastet.",
            "Bitte überweisen Sie die Erstattung auf IBAN {IBAN_CODE}.",
            "Sehr geehrte/r {PERSON}, ich warte noch auf Antwort an {EMAIL_ADDRESS}.",
            "Ich bin {PERSON}, geboren am {DATE_OF_BIRTH}, Telefon {PHONE_NUMBER}.",
        ),
        "fr": (
            "Bonjour, je m'appelle {PERSON} et je n'arrive pas à me connecter. Rappelez-moi au {PHONE_NUMBER}.",
            "Merci de modifier mon adresse de livraison : {STREET_ADDRESS}. Cordialement, {PERSON}",
            "Pour vérification : date de naissance {DATE_OF_BIRTH}, numéro de sécurité sociale {ID}.",
            "Ma carte {CREDIT_CARD} a été débitée deux fois.",
            "Merci de rembourser sur mon IBAN {IBAN_CODE}.",
            "Je suis {PERSON}, né le {DATE_OF_BIRTH}, joignable au {PHONE_NUMBER} ou {EMAIL_ADDRESS}.",
        ),
        "es": (
            "Hola, me llamo {PERSON} y no puedo entrar en mi cuenta. Llámeme al {PHONE_NUMBER}.",
            "Cambien mi dirección de envío a {STREET_ADDRESS}. Saludos, {PERSON}",
            "Para verificar: fecha de nacimiento {DATE_OF_BIRTH}, DNI {ID}.",
            "Me han cobrado dos veces en la tarjeta {CREDIT_CARD}.",
            "Hagan el reembolso a la cuenta IBAN {IBAN_CODE}.",
            "Soy {PERSON}, nací el {DATE_OF_BIRTH}; mi correo es {EMAIL_ADDRESS}.",
        ),
        "it": (
            "Buongiorno, mi chiamo {PERSON} e non riesco ad accedere. Chiamatemi al {PHONE_NUMBER}.",
            "Vi prego di cambiare il mio indirizzo di consegna in {STREET_ADDRESS}. Cordiali saluti, {PERSON}",
            "Per la verifica: data di nascita {DATE_OF_BIRTH}, codice fiscale {ID}.",
            "Mi avete addebitato due volte sulla carta {CREDIT_CARD}.",
            "Rimborsate sull'IBAN {IBAN_CODE}, grazie.",
            "Sono {PERSON}, nato il {DATE_OF_BIRTH}, email {EMAIL_ADDRESS}.",
        ),
        "nl": (
            "Hallo, mijn naam is {PERSON} en ik kan niet inloggen. Bel me op {PHONE_NUMBER}.",
            "Wijzig mijn bezorgadres naar {STREET_ADDRESS}. Met vriendelijke groet, {PERSON}",
            "Ter verificatie: geboortedatum {DATE_OF_BIRTH}, BSN {ID}.",
            "Mijn kaart {CREDIT_CARD} is twee keer belast.",
            "Stort het bedrag terug op IBAN {IBAN_CODE}.",
            "Ik ben {PERSON}, geboren op {DATE_OF_BIRTH}, mail {EMAIL_ADDRESS}.",
        ),
        "pt": (
            "Olá, meu nome é {PERSON} e não consigo acessar minha conta. Me liguem no {PHONE_NUMBER}.",
            "Por favor alterem meu endereço de entrega para {STREET_ADDRESS}. Atenciosamente, {PERSON}",
            "Para verificação: data de nascimento {DATE_OF_BIRTH}, CPF {ID}.",
            "Fui cobrado duas vezes no cartão {CREDIT_CARD}.",
            "Façam o reembolso para o IBAN {IBAN_CODE}.",
            "Sou {PERSON}, nasci em {DATE_OF_BIRTH}, e-mail {EMAIL_ADDRESS}.",
        ),
    },
    "test": {
        "en": (
            "Hello support team, this is {PERSON}. My order never arrived at {STREET_ADDRESS}.",
            "Can someone ring me back at {PHONE_NUMBER}? It's about my subscription.",
            "The account holder is {PERSON}, DOB {DATE_OF_BIRTH}.",
            "Payment failed with card number {CREDIT_CARD} — expiry is fine.",
            "Bank details for the refund: {IBAN_CODE} (account name {PERSON}).",
            "Login attempts from {IP_ADDRESS} are not mine. Contact: {EMAIL_ADDRESS}",
            "Here is my SSN/NI number as requested: {ID}",
            "Best wishes,\n{PERSON}\n{PHONE_NUMBER}",
            "Please note my new address: {STREET_ADDRESS}. My birthday is {DATE_OF_BIRTH}.",
            "Mr {PERSON} asked us to use {CREDIT_CARD} for the renewal.",
        ),
        "de": (
            "Guten Tag, hier spricht {PERSON}. Meine Bestellung ist nie bei {STREET_ADDRESS} angekommen.",
            "Können Sie mich unter {PHONE_NUMBER} zurückrufen?",
            "Kontoinhaber: {PERSON}, Geburtsdatum {DATE_OF_BIRTH}.",
            "Die Zahlung mit Kartennummer {CREDIT_CARD} ist fehlgeschlagen.",
            "Bankverbindung für die Rückzahlung: {IBAN_CODE}",
            "Meine Steueridentifikationsnummer lautet {ID}.",
            "Mit freundlichen Grüßen\n{PERSON}\nTel. {PHONE_NUMBER}",
        ),
        "fr": (
            "Bonjour, ici {PERSON}. Ma commande n'est jamais arrivée au {STREET_ADDRESS}.",
            "Pouvez-vous me rappeler au {PHONE_NUMBER} ?",
            "Titulaire du compte : {PERSON}, née le {DATE_OF_BIRTH}.",
            "Le paiement avec la carte n° {CREDIT_CARD} a échoué.",
            "Coordonnées bancaires pour le remboursement : {IBAN_CODE}",
            "Mon numéro de sécu est le {ID}.",
            "Bien à vous,\n{PERSON}\nTél : {PHONE_NUMBER}",
        ),
        "es": (
            "Buenas, soy {PERSON}. Mi pedido nunca llegó a {STREET_ADDRESS}.",
            "¿Pueden devolverme la llamada al {PHONE_NUMBER}?",
            "Titular de la cuenta: {PERSON}, fecha de nacimiento: {DATE_OF_BIRTH}.",
            "El pago con la tarjeta número {CREDIT_CARD} ha fallado.",
            "Datos bancarios para la devolución: {IBAN_CODE}",
            "Mi NIF es {ID}.",
            "Un saludo,\n{PERSON}\nTel. {PHONE_NUMBER}",
        ),
        "it": (
            "Salve, sono {PERSON}. Il mio ordine non è mai arrivato in {STREET_ADDRESS}.",
            "Potete richiamarmi al numero {PHONE_NUMBER}?",
            "Intestatario del conto: {PERSON}, nata il {DATE_OF_BIRTH}.",
            "Il pagamento con la carta {CREDIT_CARD} non è andato a buon fine.",
            "Coordinate bancarie per il rimborso: {IBAN_CODE}",
            "Il mio codice fiscale è {ID}.",
            "Distinti saluti,\n{PERSON}\nTel. {PHONE_NUMBER}",
        ),
        "nl": (
            "Goedendag, u spreekt met {PERSON}. Mijn bestelling is nooit aangekomen op {STREET_ADDRESS}.",
            "Kunt u mij terugbellen op {PHONE_NUMBER}?",
            "Rekeninghouder: {PERSON}, geboortedatum {DATE_OF_BIRTH}.",
            "De betaling met kaartnummer {CREDIT_CARD} is mislukt.",
            "Bankgegevens voor de terugbetaling: {IBAN_CODE}",
            "Mijn burgerservicenummer is {ID}.",
            "Groeten,\n{PERSON}\nTel. {PHONE_NUMBER}",
        ),
        "pt": (
            "Oi, aqui é {PERSON}. Meu pedido nunca chegou na {STREET_ADDRESS}.",
            "Podem me retornar a ligação no {PHONE_NUMBER}?",
            "Titular da conta: {PERSON}, nascida em {DATE_OF_BIRTH}.",
            "O pagamento com o cartão número {CREDIT_CARD} falhou.",
            "Dados bancários para o reembolso: {IBAN_CODE}",
            "Meu CPF é {ID}.",
            "Abraços,\n{PERSON}\nTel. {PHONE_NUMBER}",
        ),
    },
}
# fmt: on

MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
           "octubre", "noviembre", "diciembre"),
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
           "oktober", "november", "december"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro",
           "outubro", "novembro", "dezembro"),
}  # fmt: skip

CARD_BRANDS = ("visa13", "visa16", "visa19", "mastercard", "amex", "discover", "diners", "jcb15", "jcb16",
               "maestro")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    locale: str
    text: str
    #: ``(start, end, entity)`` of every PII value in ``text``
    spans: tuple[tuple[int, int, str], ...]


def _date_of_birth(locale: str, day: dt.date, rng: random.Random) -> str:
    lang = LOCALES[locale]
    month = MONTHS[lang][day.month - 1]
    numeric = {
        "en_US": f"{day.month:02d}/{day.day:02d}/{day.year}",
        "en_GB": f"{day.day:02d}/{day.month:02d}/{day.year}",
        "de_DE": f"{day.day:02d}.{day.month:02d}.{day.year}",
        "nl_NL": f"{day.day:02d}-{day.month:02d}-{day.year}",
    }.get(locale, f"{day.day:02d}/{day.month:02d}/{day.year}")
    long = {
        "en_US": f"{month} {day.day}, {day.year}",
        "de_DE": f"{day.day}. {month} {day.year}",
        "es_ES": f"{day.day} de {month} de {day.year}",
        "pt_BR": f"{day.day} de {month} de {day.year}",
    }.get(locale, f"{day.day} {month} {day.year}")
    return rng.choice((numeric, numeric, long, day.isoformat()))


def _card(number: str, brand: str, rng: random.Random) -> str:
    style = rng.choice(("plain", "spaced", "dashed"))
    if style == "plain":
        return number
    sep = " " if style == "spaced" else "-"
    if brand == "amex" and len(number) == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return sep.join(groups)


def _iban(iban: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def uk_nino(rng: random.Random) -> str:
    """A UK National Insurance number with a valid prefix (HMRC's rules), spaced or not."""
    first = "ABCEGHJKLMNOPRSTWXYZ"
    second = "ABCEGHJKLMNPRSTWXYZ"
    while True:
        prefix = rng.choice(first) + rng.choice(second)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    digits = f"{rng.randrange(10**6):06d}"
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{prefix}{digits}{suffix}"
    return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"


def de_tax_id(rng: random.Random) -> str:
    """A German Steuer-Identifikationsnummer: 11 digits, first not 0, one digit twice (or thrice) among
    the first ten, ISO 7064 MOD 11,10 check digit."""
    while True:
        digits = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(9)]
        counts = sorted((digits.count(d) for d in set(digits)), reverse=True)
        if counts[0] in (2, 3) and counts.count(counts[0]) == 1:
            break
    product = 10
    for d in digits:
        total = (d + product) % 10 or 10
        product = (total * 2) % 11
    check = (11 - product) % 10
    number = "".join(map(str, digits)) + str(check)
    if rng.random() < 0.5:
        return number
    return f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"


def _fr_nir(raw: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return raw
    return f"{raw[0]} {raw[1:3]} {raw[3:5]} {raw[5:7]} {raw[7:10]} {raw[10:13]} {raw[13:]}"


def _national_id(locale: str, fake: object, rng: random.Random) -> str:
    f: object = fake
    kind = NATIONAL_ID[locale]
    if kind == "UK_NINO":
        return uk_nino(rng)
    if kind == "DE_TAX_ID":
        return de_tax_id(rng)
    if kind == "ES_NIF":
        return str(f.nif() if rng.random() < 0.7 else f.nie())  # type: ignore[attr-defined]
    if kind == "BR_CPF":
        return str(f.cpf())  # type: ignore[attr-defined]
    if kind == "FR_NIR":
        return _fr_nir(str(f.ssn()), rng)  # type: ignore[attr-defined]
    return str(f.ssn())  # type: ignore[attr-defined]  # US SSN, IT codice fiscale, NL BSN


def _slot_value(locale: str, fake: object, rng: random.Random, entity: str) -> str:
    f: object = fake
    if entity == "PERSON":
        return str(f.name())  # type: ignore[attr-defined]
    if entity == "PHONE_NUMBER":
        return str(f.phone_number())  # type: ignore[attr-defined]
    if entity == "STREET_ADDRESS":
        return re.sub(r"\s*\n\s*", ", ", str(f.address()).strip())  # type: ignore[attr-defined]
    if entity == "DATE_OF_BIRTH":
        return _date_of_birth(locale, f.date_of_birth(minimum_age=18, maximum_age=90), rng)  # type: ignore[attr-defined]
    if entity == "CREDIT_CARD":
        brand = rng.choice(CARD_BRANDS)
        return _card(str(f.credit_card_number(brand)), brand, rng)  # type: ignore[attr-defined]
    if entity == "IBAN_CODE":
        return _iban(str(f.iban()), rng)  # type: ignore[attr-defined]
    if entity == "ID":
        return _national_id(locale, fake, rng)
    if entity == "EMAIL_ADDRESS":
        return str(f.email())  # type: ignore[attr-defined]
    if entity == "IP_ADDRESS":
        return str(f.ipv4() if rng.random() < 0.7 else f.ipv6())  # type: ignore[attr-defined]
    raise ValueError(entity)


_SLOT = re.compile(r"\{([A-Z_]+)\}")


def fill(template: str, locale: str, value: Callable[[str], str]) -> Message:
    """``template`` with each ``{ENTITY}`` slot replaced by ``value(ENTITY)``; the spans recorded."""
    out: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = length = 0
    for m in _SLOT.finditer(template):
        out.append(template[pos : m.start()])
        length += m.start() - pos
        slot = m.group(1)
        text = value(slot)
        entity = NATIONAL_ID[locale] if slot == "ID" else slot
        spans.append((length, length + len(text), entity))
        out.append(text)
        length += len(text)
        pos = m.end()
    out.append(template[pos:])
    return Message(locale, "".join(out), tuple(spans))


def generate(bank: str = "test", seed: int = 2, per_locale: int = 150) -> list[Message]:
    """``per_locale`` messages of every locale, from the ``dev`` or ``test`` template bank."""
    from faker import Faker

    templates = TEMPLATES[bank]
    messages = []
    for i, (locale, lang) in enumerate(LOCALES.items()):
        rng = random.Random(f"{seed}:{locale}")
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + i)
        for n in range(per_locale):
            # a third of each locale's messages are in English (people write to support in English too)
            pool = templates["en"] if lang != "en" and n % 3 == 2 else templates[lang]
            template = pool[n % len(pool)] if n < len(pool) else rng.choice(pool)
            messages.append(fill(template, locale, functools.partial(_slot_value, locale, fake, rng)))
    return messages


if __name__ == "__main__":
    for message in generate("dev", 1, 3):
        print(message.locale, repr(message.text))
        for start, end, entity in message.spans:
            print("   ", entity, repr(message.text[start:end]))
