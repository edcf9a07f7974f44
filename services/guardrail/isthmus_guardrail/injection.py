"""Prompt-injection heuristics: transparent, table-driven rules over normalised text.

Every rule is a regular expression with a score in [0, 1] and a description; a finding names the rule that
matched (``rule <code>/<name>``), the matched span in the *original* text and the score. A learned
classifier can later add findings under the same codes; these rules stay as the explainable floor.

Normalisation, before matching (offsets are mapped back to the original text):

* format characters (Unicode category ``Cf``: zero-width spaces/joiners, soft hyphens, bidi controls)
  are dropped;
* each character is NFKC-folded (full-width and styled letters become ASCII), accents are stripped and
  the text is case-folded;
* a handful of Cyrillic/Greek look-alikes are mapped to Latin letters;
* leetspeak-light: ``0 1 3 4 5 7 @ $`` become ``o i e a s t a s`` when they touch a letter
  (``1gn0r3`` -> ``ignore``; ``version 1.0`` is left alone).

Verb-led rules (ignore instructions, reveal the prompt) are *damped* (score halved) when the words just
before the verb mark a question or a report rather than an order ("why do LLMs ignore previous
instructions?"), unless they address the assistant ("you must ignore ...", "I want you to ignore ...").

Other languages: the override ("ignore/forget the previous instructions"), forget-everything,
reveal-your-prompt, no-restrictions and developer-mode phrases have rules in French, German, Spanish,
Italian, Portuguese and Dutch (on the folded text: "précédentes" matches "precedentes"); like the English
ones, an override needs a qualifier ("previous", "above", "system") or an all/your word, so "ignorez les
règles de grammaire" is not one. "Pretend the rules above don't exist" (and its FR/ES/IT/PT/DE/NL
forms) is an override too.

Base64 blobs (40+ characters) that decode to text are reported as ``prompt_injection.encoded_payload``;
the decoded text is scanned with the same rules and the blob scores as high as what it hides.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.guard import Finding

PREFIX = "prompt_injection."
IGNORE_INSTRUCTIONS = PREFIX + "ignore_instructions"
ROLE_OVERRIDE = PREFIX + "role_override"
SYSTEM_PROMPT_EXFILTRATION = PREFIX + "system_prompt_exfiltration"
DELIMITER_INJECTION = PREFIX + "delimiter_injection"
ENCODED_PAYLOAD = PREFIX + "encoded_payload"

#: score of a base64 blob that decodes to text but hides no other rule's match
ENCODED_TEXT_SCORE = 0.6
MIN_BASE64_CHARS = 40
DAMPING = 0.5

# --------------------------------------------------------------------------------------------------
# normalisation

_LOOKALIKES = str.maketrans(
    # Cyrillic and Greek letters that look Latin, and typographic apostrophes
    "\u0430\u0432\u0435\u043a\u043c\u043d\u043e\u0440\u0441\u0442"
    "\u0443\u0445\u0456\u0458\u0455\u0501\u051b\u051d\u04bb\u0261"
    "\u03b1\u03b2\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7"
    "\u2019\u2018\u02bc",
    "abekmhopctyxijsdqwhgabeikvoptux'''",
)
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}


@dataclass(frozen=True, slots=True)
class Normalised:
    """Normalised text and, for each of its characters, the index of the original character."""

    text: str
    origin: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original-text span covering normalised characters ``[start, end)``."""
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> Normalised:
    """Fold ``text`` for matching (see the module docstring), keeping a map back to original offsets."""
    chars: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        if unicodedata.category(c) == "Cf":
            continue
        folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", c))
        for d in folded.casefold().translate(_LOOKALIKES):
            if unicodedata.category(d) == "Mn":
                continue
            chars.append(d)
            origin.append(i)
    for j, c in enumerate(chars):
        if c in _LEET:
            before = chars[j - 1] if j > 0 else ""
            after = chars[j + 1] if j + 1 < len(chars) else ""
            if before.isalpha() or after.isalpha():
                chars[j] = _LEET[c]
    return Normalised("".join(chars), tuple(origin))


# --------------------------------------------------------------------------------------------------
# rules

#: a scorer receives the match and the normalised text and returns a score (None: not a finding)
Scorer = Callable[[re.Match[str], str], float | None]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    pattern: re.Pattern[str]
    description: str
    score: float | Scorer
    #: halve the score when the verb is reported or asked about rather than ordered
    damp_non_imperative: bool = False


def _alt(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


_IGNORE_VERB = _alt(
    "ignore", "disregard", "forget", "bypass", "override", "overlook", "neglect", "abandon", "discard",
    r"set\s+aside", r"do\s+not\s+follow", r"don'?t\s+follow", r"stop\s+following",
)  # fmt: skip
_QUALIFIERS = (
    "previous", "prior", "above", "earlier", "preceding", "foregoing", "former", "original", "initial",
    "system", "developer", "hidden",
)  # fmt: skip
_POSSESSIVE = ("your", "all", "any", "every", "each", "ur")
_FILLERS = (
    *_QUALIFIERS, *_POSSESSIVE, "of", "the", "these", "those", "my", "our", "its", "given", "safety", "old",
    "existing", "current", "default",
)  # fmt: skip
_RULE_NOUN = _alt(
    r"instructions?", r"prompts?", r"rules?", r"directions?", r"directives?", r"guidelines?",
    r"guardrails?", r"constraints?", r"restrictions?", r"commands?", r"context", r"programming",
    r"polic(?:y|ies)", r"safeguards?",
)  # fmt: skip


def _score_ignore(m: re.Match[str], _: str) -> float | None:
    words = set(m.group("mid").split())
    if words & set(_QUALIFIERS):
        return 0.95
    if words & set(_POSSESSIVE):
        return 0.8
    return None  # "ignore the rules of grammar": an object, not an override


_EXFIL_VERB = _alt(
    "reveal", "print", "output", "repeat", "leak", "dump", "recite", "disclose", "expose", "echo",
    "paste", r"spell\s+out", r"write\s+out", r"copy", "show", "display", "tell", "give", "share", "list",
    "return", "what", r"what'?s",
)  # fmt: skip
_STRONG_EXFIL_VERBS = frozenset(
    {"reveal", "print", "output", "repeat", "leak", "dump", "recite", "disclose", "expose", "echo", "paste"}
)
_SECRET_WORDS = frozenset(
    {"system", "hidden", "secret", "initial", "original", "internal", "developer", "confidential", "pre",
     "real", "actual", "underlying", "prompt", "preprompt", "pre-prompt"}
)  # fmt: skip


def _score_exfiltration(m: re.Match[str], _: str) -> float | None:
    verb = m.group("verb").split()[0]
    strong = verb in _STRONG_EXFIL_VERBS or verb in {"spell", "write", "copy"}
    owner = m.group("owner").split()[-1]
    words = {w.rstrip("s") for w in (m.group("adjs") + " " + m.group("target")).split()}
    specific = bool(words & _SECRET_WORDS)
    if owner in {"your", "ur"}:
        if specific:
            return 0.95
        return 0.8 if strong else 0.6
    if specific:  # "the system prompt"
        return 0.8 if strong else 0.45
    return None  # "show me the instructions for the VPN client"


_RULES: tuple[Rule, ...] = (
    # ---- ignore previous instructions
    Rule(
        IGNORE_INSTRUCTIONS,
        "override_instructions",
        re.compile(
            rf"\b{_IGNORE_VERB}(?P<mid>(?:\s+{_alt(*_FILLERS)}){{1,5}})\s+{_RULE_NOUN}\b",
        ),
        "asks to ignore the instructions it was given",
        _score_ignore,
        damp_non_imperative=True,
    ),
    Rule(
        IGNORE_INSTRUCTIONS,
        "ignore_the_above",
        re.compile(
            rf"\b{_IGNORE_VERB}\s+(?:all\s+(?:of\s+)?|everything\s+)?(?:the\s+|that\s+)?"
            r"(?:above|foregoing|preceding|previous|prior)\b(?=\s*(?:$|[.,;:!\-]|and\b|then\b|instead\b))"
        ),
        "asks to ignore everything above",
        0.85,
        damp_non_imperative=True,
    ),
    Rule(
        IGNORE_INSTRUCTIONS,
        "forget_everything",
        re.compile(
            r"\bforget\s+(?:everything|all(?:\s+of\s+it)?|what)\s+(?:you\s+(?:were|have\s+been|'ve\s+been)"
            r"\s+(?:told|taught|instructed|given)|above|before|so\s+far|(?:you\s+)?know)\b"
        ),
        "asks to forget what it was told",
        0.9,
        damp_non_imperative=True,
    ),
    # ---- role override / jailbreak personas
    Rule(
        ROLE_OVERRIDE,
        "jailbreak_persona",
        re.compile(
            r"\b(?:act|behave|respond|answer|reply|roleplay|role-play|pose)\s+(?:as|like)\s+(?:an?\s+|the\s+)?"
            r"(?:dan|stan|dude|aim|unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|amoral"
            r"|unethical|(?:ai|model|assistant)\s+(?:without|with\s+no)\s+(?:rules|restrictions|filters))\b"
        ),
        "asks it to act as an unrestricted persona",
        0.95,
    ),
    Rule(
        ROLE_OVERRIDE,
        "do_anything_now",
        re.compile(r"\bdo\s+anything\s+now\b"),
        "invokes the 'Do Anything Now' (DAN) jailbreak",
        0.95,
    ),
    Rule(
        ROLE_OVERRIDE,
        "special_mode",
        re.compile(
            r"\b(?:enable|activate|enter|switch\s+(?:on|to|into)|turn\s+on|you\s+are\s+(?:now\s+)?in)\s+"
            r"(?:the\s+)?(?:developer|dev|god|jailbreak|jailbroken|dan|unrestricted|debug|admin|sudo)\s+mode\b"
        ),
        "asks to switch into a privileged mode",
        0.9,
    ),
    Rule(
        ROLE_OVERRIDE,
        "unrestricted_you",
        re.compile(
            r"\byou\s+(?:are|will\s+be|have\s+become|are\s+now)\s+(?:now\s+)?(?:completely\s+|totally\s+)?"
            r"(?:unrestricted|unfiltered|uncensored|jailbroken|free\s+(?:of|from)\s+(?:all\s+|any\s+)?"
            r"(?:rules|restrictions|filters|guidelines|limits))\b"
            r"|\byou\s+(?:have|follow|obey)\s+(?:no|zero)\s+(?:rules|restrictions|filters|guidelines|limits"
            r"|limitations)\b"
        ),
        "tells it that it has no rules",
        0.9,
    ),
    Rule(
        ROLE_OVERRIDE,
        "you_are_now",
        re.compile(
            r"\b(?:you\s+are\s+now|you're\s+now|from\s+now\s+on,?\s+you\s+(?:are|will|must|shall))\s+"
            r"(?:an?|the|my|called|named|known\s+as|going\s+to\s+be|playing|acting|dan)\b"
        ),
        "assigns it a new identity",
        0.8,
    ),
    Rule(
        ROLE_OVERRIDE,
        "new_identity_weak",
        re.compile(
            r"\b(?:you\s+are\s+now|from\s+now\s+on|pretend\s+(?:that\s+)?(?:you\s+are|you're|to\s+be)"
            r"|act\s+as\s+(?:an?|my|the)\b)"
        ),
        "role-play wording (weak signal on its own)",
        0.35,
    ),
    # ---- system prompt exfiltration
    Rule(
        SYSTEM_PROMPT_EXFILTRATION,
        "reveal_prompt",
        re.compile(
            rf"\b(?P<verb>{_EXFIL_VERB})(?:\s+(?:me|us|back|out|verbatim|exactly|is|are|was|were)){{0,3}}"
            r"\s+(?P<owner>your|ur|the|all\s+(?:of\s+)?your|all\s+(?:of\s+)?the)"
            r"(?P<adjs>(?:\s+(?:entire|full|complete|exact|whole|original|initial|hidden|secret|internal"
            r"|system|developer|confidential|first|pre|real|actual|underlying|current|verbatim)){0,3})"
            r"\s+(?P<target>prompts?|system\s+prompts?|pre-?prompts?|instructions?|rules|guidelines"
            r"|directives|configuration|config|system\s+messages?)\b"
        ),
        "asks it to reveal its prompt or instructions",
        _score_exfiltration,
        damp_non_imperative=True,
    ),
    Rule(
        SYSTEM_PROMPT_EXFILTRATION,
        "repeat_above",
        re.compile(
            r"\b(?:repeat|print|output|copy|write|recite|echo)\s+(?:back\s+)?(?:everything|all|the\s+"
            r"(?:text|words|content|lines|messages?)|the\s+previous\s+(?:text|messages?)|what\s+is)\s+"
            r"(?:written\s+)?(?:above|before\s+(?:this|my\s+message)|so\s+far|starting\s+with)\b"
        ),
        "asks it to repeat the text that precedes the user's message",
        0.85,
        damp_non_imperative=True,
    ),
    # ---- fake chat-template / role delimiters
    Rule(
        DELIMITER_INJECTION,
        "chat_template_token",
        re.compile(
            r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|end_of_turn|start_header_id"
            r"|end_header_id|eot_id|begin_of_text|end|fim_prefix)\s*\|>"
            r"|<\s*/?\s*(?:start_of_turn|end_of_turn)\s*>|<<\s*/?\s*sys\s*>>|\[\s*/?\s*inst\s*\]"
        ),
        "contains a chat-template control token",
        0.95,
    ),
    Rule(
        DELIMITER_INJECTION,
        "special_token",
        re.compile(r"<\|[a-z_]{2,30}\|>"),
        "contains a special-token-like marker <|...|>",
        0.8,
    ),
    Rule(
        DELIMITER_INJECTION,
        "role_header",
        re.compile(
            r"(?m)^[ \t>]*(?:#{1,6}[ \t]*|\[[ \t]*|\*\*[ \t]*|<[ \t]*)(?:new[ \t]+)?(?:system|developer|admin"
            r"|assistant|instructions?|system[ \t]+prompt|system[ \t]+message)[ \t]*(?:\]|\*\*|>)?[ \t]*:"
            r"|^[ \t]*\[(?:system|developer|admin)\]"
            r"|<\s*/?\s*(?:system|system_prompt|sys|instructions|admin)\s*>"
        ),
        "contains a fake role header such as '### system:' or '<system>'",
        0.9,
    ),
    Rule(
        DELIMITER_INJECTION,
        "banner",
        re.compile(
            r"(?:-{3,}|={3,}|\*{3,})[ \t]*(?:(?:begin|end|start|new)[ \t]+)?(?:system|admin|developer)"
            r"(?:[ \t]+(?:prompt|message|instructions?|override))?[ \t]*(?:-{3,}|={3,}|\*{3,})"
        ),
        "contains a fake system banner",
        0.85,
    ),
    Rule(
        DELIMITER_INJECTION,
        "bare_role_line",
        re.compile(r"(?m)^[ \t]*(?:system|assistant)[ \t]*:"),
        "a line starts with 'system:' or 'assistant:' (weak signal on its own)",
        0.45,
    ),
)


# ---- other languages (FR, DE, ES, IT, PT, NL), on the folded text (accents stripped: "précédentes" ->
# "precedentes", "Anweisungen" stays, "instruções" -> "instrucoes"). Each language gives the imperative
# verbs of "ignore/forget", filler words, the nouns for instructions/rules and the qualifiers that make
# it an override ("previous", "above", "system"); as in English, an override needs a qualifier (0.95) or
# an "all/your" word (0.8): "ignorez les règles de grammaire" is not one.


@dataclass(frozen=True, slots=True)
class _Lang:
    code: str
    verbs: tuple[str, ...]
    fillers: tuple[str, ...]
    nouns: tuple[str, ...]
    qualifiers: tuple[str, ...]
    alls: tuple[str, ...]


_LANGS = (
    _Lang(
        "fr",
        (
            r"ignor(?:e|ez|er|es)",
            r"oubli(?:e|ez|er|es)",
            r"ne\s+(?:tiens|tenez|tenir)\s+(?:pas|plus)\s+compte",
            r"fai(?:s|tes)\s+abstraction",
            r"contourn(?:e|ez|er)",
            r"outrepass(?:e|ez|er)",
            r"abandonn(?:e|ez|er)",
            r"ne\s+(?:suis|suivez)\s+(?:pas|plus)",
        ),
        (
            "toutes",
            "toute",
            "tous",
            "tout",
            "les",
            "des",
            "de",
            "du",
            "vos",
            "tes",
            "ces",
            "mes",
            "la",
            "le",
            "ta",
            "ton",
            "votre",
            "cette",
            "ce",
            "l'ensemble",
        ),
        (
            r"instructions?",
            r"consignes?",
            r"regles?",
            r"directives?",
            r"indications?",
            r"ordres?",
            r"commandes?",
            r"contraintes?",
            r"restrictions?",
            r"prompts?",
            r"invites?",
            r"politiques?",
            r"limites?",
            r"garde-fous",
        ),
        (
            r"precedent(?:e|es|s)?",
            r"anterieur(?:e|es|s)?",
            r"ci-dessus",
            r"plus\s+haut",
            r"initial(?:e|es|aux)?",
            r"(?:du\s+)?systeme",
            r"d'origine",
            r"originale?s?",
            r"cachee?s?",
            r"du\s+developpeur",
            r"donnee?s?",
        ),
        ("toutes", "tous", "vos", "tes", "votre", "ton", "ta"),
    ),
    _Lang(
        "de",
        (
            r"ignorier(?:e|en|t)?",
            r"vergiss",
            r"vergesst",
            r"vergessen",
            r"missachte(?:n|t)?",
            r"ubergeh(?:e|en|t)?",
            r"umgeh(?:e|en|t)?",
            r"verwirf",
            r"verwerfen",
            r"befolge(?:n)?\s+nicht",
        ),
        (
            "sie",
            "alle",
            "allen",
            "die",
            "der",
            "den",
            "des",
            "deine",
            "deiner",
            "deinen",
            "ihre",
            "ihren",
            "eure",
            "euren",
            "diese",
            "dieser",
            "jegliche",
            "samtliche",
            "samtlichen",
            "bitte",
            "einfach",
            "jetzt",
            "nun",
        ),
        (
            r"anweisung(?:en)?",
            r"instruktion(?:en)?",
            r"regeln?",
            r"vorgaben?",
            r"befehle?",
            r"richtlinien?",
            r"anordnung(?:en)?",
            r"prompts?",
            r"system-?prompts?",
            r"einschrankung(?:en)?",
            r"beschrankung(?:en)?",
            r"vorschrift(?:en)?",
            r"direktiven?",
        ),
        (
            r"vorherig(?:e|en|er)?",
            r"vorig(?:e|en|er)?",
            r"obig(?:e|en|er)?",
            r"bisherig(?:e|en|er)?",
            r"fruher(?:e|en)?",
            r"ursprunglich(?:e|en)?",
            r"vorangegangen(?:e|en)?",
            r"vorstehend(?:e|en)?",
            r"vorgegeben(?:e|en)?",
            r"versteckt(?:e|en)?",
            r"system",
            r"oben",
            r"zuvor",
        ),
        (
            "alle",
            "allen",
            "deine",
            "deinen",
            "deiner",
            "ihre",
            "ihren",
            "samtliche",
            "samtlichen",
            "jegliche",
        ),
    ),
    _Lang(
        "es",
        (
            r"ignor(?:a|ad|ar|e|en)",
            r"olvid(?:a|ad|ar|e|en)",
            r"omit(?:e|a|an|ir)",
            r"descart(?:a|e|en|ar)",
            r"haz\s+caso\s+omiso",
            r"hagan?\s+caso\s+omiso",
            r"no\s+(?:sigas|siga|sigan|obedezcas|cumplas)",
            r"salt(?:a|ate|ese)",
        ),
        (
            "todas",
            "todos",
            "toda",
            "todo",
            "las",
            "los",
            "la",
            "el",
            "tus",
            "sus",
            "de",
            "del",
            "a",
            "al",
            "estas",
            "estos",
            "esas",
            "esos",
            "mis",
        ),
        (
            r"instrucciones?",
            r"instruccion",
            r"reglas?",
            r"indicaciones?",
            r"directrices?",
            r"ordenes?",
            r"normas?",
            r"restricciones?",
            r"prompts?",
            r"consignas?",
            r"pautas?",
            r"limitaciones?",
            r"politicas?",
        ),
        (
            r"anteriores?",
            r"previas?",
            r"previos?",
            r"de\s+arriba",
            r"precedentes?",
            r"iniciales?",
            r"originales?",
            r"del\s+sistema",
            r"de\s+sistema",
            r"ocultas?",
            r"dadas?",
        ),
        ("todas", "todos", "tus", "sus"),
    ),
    _Lang(
        "it",
        (
            r"ignora(?:re|te)?",
            r"dimentica(?:re|te)?",
            r"scorda(?:re|te)?",
            r"trascura(?:re|te)?",
            r"non\s+(?:seguire|seguite|rispettare|rispettate)",
            r"non\s+tenere\s+conto",
            r"tralascia(?:re|te)?",
            r"aggira(?:re|te)?",
        ),
        (
            "tutte",
            "tutti",
            "tutto",
            "le",
            "gli",
            "i",
            "la",
            "il",
            "tue",
            "tuoi",
            "sue",
            "vostre",
            "di",
            "delle",
            "dei",
            "degli",
            "della",
            "queste",
            "questi",
            "mie",
        ),
        (
            r"istruzion[ei]",
            r"regol[ae]",
            r"indicazion[ei]",
            r"direttiv[ae]",
            r"ordini",
            r"restrizion[ei]",
            r"prompt",
            r"linee\s+guida",
            r"vincoli",
            r"norm[ae]",
            r"limitazion[ei]",
            r"consegn[ae]",
        ),
        (
            r"precedent[ei]",
            r"sopra",
            r"(?:di\s+)?prima",
            r"inizial[ei]",
            r"original[ei]",
            r"del\s+sistema",
            r"di\s+sistema",
            r"nascost[ei]",
            r"ricevut[ei]",
            r"dat[ei]",
        ),
        ("tutte", "tutti", "tue", "tuoi", "vostre"),
    ),
    _Lang(
        "pt",
        (
            r"ignor(?:e|a|ar|em)",
            r"esquec(?:a|er|am)",
            r"desconsider(?:e|a|ar|em)",
            r"descart(?:e|a|ar|em)",
            r"nao\s+(?:siga|sigas|sigam|obedeca|cumpra)",
            r"pule",
        ),
        (
            "todas",
            "todos",
            "toda",
            "tudo",
            "as",
            "os",
            "a",
            "o",
            "suas",
            "seus",
            "tuas",
            "teus",
            "de",
            "das",
            "dos",
            "estas",
            "estes",
            "essas",
            "esses",
            "minhas",
        ),
        (
            r"instruc(?:oes|ao)",
            r"regras?",
            r"orientac(?:oes|ao)",
            r"diretrizes?",
            r"ordens",
            r"comandos?",
            r"restric(?:oes|ao)",
            r"prompts?",
            r"normas?",
            r"limitac(?:oes|ao)",
            r"politicas?",
        ),
        (
            r"anteriores?",
            r"previas?",
            r"acima",
            r"iniciais",
            r"originais",
            r"do\s+sistema",
            r"de\s+sistema",
            r"ocultas?",
            r"dadas?",
            r"recebidas?",
        ),
        ("todas", "todos", "suas", "seus", "tuas", "teus"),
    ),
    _Lang(
        "nl",
        (r"negeer", r"negeren", r"vergeet", r"vergeten", r"omzeil", r"omzeilen", r"volg\s+niet"),
        ("alle", "al", "de", "het", "je", "jouw", "uw", "deze", "die", "mijn", "gewoon", "nu"),
        (
            r"instructies?",
            r"regels?",
            r"aanwijzingen?",
            r"richtlijnen?",
            r"opdrachten?",
            r"prompts?",
            r"beperkingen?",
            r"voorschriften?",
            r"bevelen?",
            r"systeemprompts?",
        ),
        (
            r"eerdere",
            r"vorige",
            r"voorgaande",
            r"bovenstaande",
            r"oorspronkelijke",
            r"originele",
            r"systeem",
            r"verborgen",
            r"gegeven",
            r"hierboven",
            r"eerder",
        ),
        ("alle", "al", "je", "jouw", "uw"),
    ),
)


def _ml_override_score(lang: _Lang) -> Scorer:
    qualifier = re.compile(r"\b(?:" + "|".join(lang.qualifiers) + r")\b")
    alls = frozenset(lang.alls)

    def score(m: re.Match[str], _: str) -> float | None:
        if qualifier.search(m.group()):
            return 0.95
        if set(m.group("mid").split()) & alls:
            return 0.8
        return None

    return score


def _ml_override_rule(lang: _Lang) -> Rule:
    fill = _alt(*(re.escape(w) for w in lang.fillers))
    qual = _alt(*lang.qualifiers)
    pattern = re.compile(
        rf"\b{_alt(*lang.verbs)}(?P<mid>(?:\s+(?:{fill}|{qual}))*)\s+(?:l'|d')?{_alt(*lang.nouns)}"
        rf"(?:\s+(?:{qual})){{0,2}}\b"
    )
    return Rule(
        IGNORE_INSTRUCTIONS,
        f"override_instructions_{lang.code}",
        pattern,
        f"asks to ignore the instructions it was given ({lang.code})",
        _ml_override_score(lang),
    )


_ML_OWNERS = frozenset(
    {"ton", "tes", "votre", "vos", "dein", "deine", "deinen", "ihr", "ihre", "ihren", "tu", "tus", "su",
     "sus", "tuo", "tua", "tue", "tuoi", "seu", "sua", "seus", "suas", "je", "jouw", "uw"}
)  # fmt: skip


def _score_reveal_ml(m: re.Match[str], _: str) -> float | None:
    specific = bool(m.group("qual")) or re.search(r"system|systeem|sistema", m.group()) is not None
    yours = m.group("owner").split()[-1] in _ML_OWNERS
    if specific:
        return 0.9 if yours else 0.8
    return 0.75 if yours else None  # "montrez-moi les instructions d'installation"


_ML_RULES: tuple[Rule, ...] = (
    *(_ml_override_rule(lang) for lang in _LANGS),
    Rule(
        IGNORE_INSTRUCTIONS,
        "forget_everything_ml",
        re.compile(
            r"\b(?:oubli(?:e|ez)\s+tout(?:\s+ce\s+(?:que|qu'on|qui))?|vergiss\s+alles|vergessen\s+sie\s+alles"
            r"|olvid(?:a|e|en)\s+todo(?:\s+lo\s+(?:que|anterior))?|dimentica(?:te)?\s+tutto"
            r"|esquec(?:a|am)\s+tudo|vergeet\s+alles)\b"
        ),
        "asks to forget what it was told (FR/DE/ES/IT/PT/NL)",
        0.85,
    ),
    Rule(
        SYSTEM_PROMPT_EXFILTRATION,
        "reveal_prompt_ml",
        re.compile(
            r"\b(?:revel(?:e|ez|er)|montr(?:e|ez)(?:-moi)?|affich(?:e|ez)|donn(?:e|ez)(?:-moi)?|repet(?:e|ez)"
            r"|divulgu(?:e|ez)|dis(?:-moi)?|dites(?:-moi)?"
            r"|zeig(?:e|en)?|gib|geben|nenne|verrate|verraten|wiederhole|wiederholen|gib\s+aus"
            r"|revela(?:me)?|muestra(?:me)?|dime|di|repite|imprime|dame|ensename|escribe"
            r"|rivela(?:mi)?|mostra(?:mi)?|dimmi|ripeti|stampa|dammi|scrivi"
            r"|revele|mostre|diga|repita|imprima|escreva|me\s+mostre|me\s+diga|me\s+de"
            r"|toon|geef|herhaal|onthul|vertel|laat\s+zien)"
            r"(?:\s+(?:moi|nous|mir|uns|sie|me|mij|ons|exactement|genau|exactamente|esattamente|exatamente"
            r"|letterlijk)){0,2}"
            r"\s+(?P<owner>ton|tes|votre|vos|le|la|les|l'|dein(?:e|en)?|ihr(?:e|en)?|den|die|das|tu|tus|su|sus"
            r"|el|las|los|il\s+tuo|la\s+tua|le\s+tue|i\s+tuoi|il|le|i|tuo|tua|tue|tuoi|o\s+seu|a\s+sua"
            r"|as\s+suas|os\s+seus|seu|sua|seus|suas|o|a|os|as|je|jouw|uw|de|het)"
            r"\s*(?:prompt|invite|instructions|consignes|message|system-?prompt|systemnachricht|anweisungen"
            r"|instruktionen|instrucciones|mensaje|istruzioni|messaggio|instrucoes|mensagem|systeemprompt"
            r"|instructies|systeembericht)"
            r"(?P<qual>\s+(?:systeme|du\s+systeme|initiales?|cachees?|secret(?:e|es)?|internes?|d'origine"
            r"|originales?|del\s+sistema|de\s+sistema|iniciales?|ocultas?|secretas?|di\s+sistema|iniziali"
            r"|nascoste|segrete|originali|do\s+sistema|iniciais|originais|verborgen|geheime?))?"
        ),
        "asks it to reveal its prompt or instructions (FR/DE/ES/IT/PT/NL)",
        _score_reveal_ml,
    ),
    Rule(
        ROLE_OVERRIDE,
        "unrestricted_ml",
        re.compile(
            r"\b(?:tu\s+es|vous\s+etes|agis\s+comme|agissez\s+comme|du\s+bist|sie\s+sind|handle\s+als"
            r"|eres|actua\s+como|sei|comportati\s+come|agisci\s+come|voce\s+e|aja\s+como|je\s+bent"
            r"|gedraag\s+je\s+als|ben\s+je)\b.{0,60}?"
            r"\b(?:sans|ohne|sin|senza|sem|zonder)\s+(?:aucune?s?\s+|jegliche\s+|keine\s+|ninguna?\s+"
            r"|alcuna?\s+|nenhuma?\s+|enige\s+)?(?:restrictions?|limites?|regles|filtres?|censure"
            r"|einschrankungen|regeln|filter|zensur|restricciones|reglas|filtros|censura|restrizioni|regole"
            r"|filtri|restricoes|regras|beperkingen|regels|filters|censuur)\b"
        ),
        "tells it that it has no rules (FR/DE/ES/IT/PT/NL)",
        0.9,
    ),
    Rule(
        ROLE_OVERRIDE,
        "special_mode_ml",
        re.compile(
            r"\b(?:mode\s+(?:developpeur|dan|sans\s+restriction|jailbreak)|entwicklermodus|dan-modus"
            r"|modo\s+(?:desarrollador|desenvolvedor|dan|sin\s+restricciones|sem\s+restricoes)"
            r"|modalita\s+(?:sviluppatore|dan)|ontwikkelaarsmodus|dan-modus)\b"
        ),
        "names a privileged 'developer/DAN mode' (FR/DE/ES/IT/PT/NL)",
        0.85,
    ),
    Rule(
        IGNORE_INSTRUCTIONS,
        "pretend_no_rules",
        re.compile(
            rf"\b(?:pretend|imagine|assume|suppose|act\s+as\s+if|behave\s+as\s+if|as\s+if|let'?s\s+say)"
            rf"(?:\s+that)?(?:\s+(?:the|your|all|any|these|those|my|our|of)){{0,3}}"
            rf"(?:\s+(?:{_alt(*_QUALIFIERS)}|safety|content))*\s+{_RULE_NOUN}"
            r"(?:\s+(?:above|before|you\s+(?:were\s+)?(?:were\s+)?given|you\s+have))?"
            r"\s+(?:don'?t|do\s+not|didn'?t|did\s+not|doesn'?t|does\s+not|no\s+longer|never|won'?t|wouldn'?t)"
            r"\s+(?:exist|existed|apply|applied|matter|count|bind)\b"
            r"|\b(?:fai(?:s|tes)\s+comme\s+si|imagin(?:e|ez)\s+que|haz\s+como\s+si|imagina\s+que"
            r"|fai\s+finta\s+che|finja\s+que|tu\s+so,?\s+als\s+(?:ob|gabe)|doe\s+alsof)\b.{0,60}?"
            r"\b(?:n'exist|ne\s+s'appliqu|no\s+exist|no\s+se\s+aplica|non\s+esist|nao\s+exist"
            r"|keine\s+(?:regeln|anweisungen)|niet\s+bestaan|geen\s+regels)"
        ),
        "asks it to pretend its rules do not exist",
        0.9,
    ),
)
_RULES = _RULES + _ML_RULES

# the words just before a verb that make it a question or a report rather than an order
_NON_IMPERATIVE_CUES = frozenset(
    {"why", "how", "when", "whether", "if", "does", "do", "did", "can", "could", "may", "might", "would",
     "should", "will", "not", "never", "often", "sometimes", "usually", "it", "they", "he", "she",
     "we", "people", "users", "user", "employees", "model", "models", "llm", "llms", "chatbot", "chatbots",
     "bot", "bots", "agents", "agent", "system", "systems", "attackers", "attacker", "that", "which"}
)  # fmt: skip
_ADDRESSED = re.compile(
    r"(?:\byou|\bu)\s+(?:must|should|will|shall|need\s+to|have\s+to|are\s+to|gotta|can|could|would)"
    r"(?:\s+(?:now|please|just|simply))?\s*$|\bi\s+(?:want|need|order|command|instruct)\s+you\s+to\s*$"
    r"|\b(?:please|now|just|simply|kindly)\s*$"
)
_CLAUSE_BREAK = re.compile(r"[.!?;:\n,\"()\[\]]")


def _is_non_imperative(norm: str, start: int) -> bool:
    head = norm[max(0, start - 80) : start]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    clause = head[breaks[-1].end() :] if breaks else head
    if _ADDRESSED.search(clause):
        return False
    words = re.findall(r"[a-z']+", clause)[-6:]
    return any(w in _NON_IMPERATIVE_CUES for w in words)


def _snippet(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _rule_findings(text: str) -> list[Finding]:
    norm = normalise(text)
    findings = []
    for rule in _RULES:
        for m in rule.pattern.finditer(norm.text):
            if m.end() == m.start():
                continue
            score = rule.score(m, norm.text) if callable(rule.score) else rule.score
            if score is None:
                continue
            note = ""
            if rule.damp_non_imperative and _is_non_imperative(norm.text, m.start()):
                score *= DAMPING
                note = " (damped: worded as a question or report, not an order)"
            start, end = norm.span(m.start(), m.end())
            findings.append(
                Finding(
                    code=rule.code,
                    message=f"rule {rule.code}/{rule.name}: {rule.description}: "
                    f"{_snippet(text[start:end])!r}{note}",
                    start=start,
                    end=end,
                    score=round(score, 4),
                )
            )
    return findings


_BASE64_RUN = re.compile(rf"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{{{MIN_BASE64_CHARS},}}={{0,2}}")


def _decode_text(blob: str) -> str | None:
    """The text a base64 (or base64url) blob decodes to, or None if it is not text."""
    core = blob.rstrip("=")
    if len(core) % 4 == 1:
        return None
    padded = core + "=" * (-len(core) % 4)
    try:
        if "-" in core or "_" in core:
            if "+" in core or "/" in core:
                return None
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\r\t")
    if not decoded or printable / len(decoded) < 0.95 or not any(c.isalpha() for c in decoded):
        return None
    return decoded


def _encoded_findings(text: str) -> list[Finding]:
    findings = []
    for m in _BASE64_RUN.finditer(text):
        decoded = _decode_text(m.group())
        if decoded is None:
            continue
        hidden = _rule_findings(decoded)
        top = max(hidden, key=lambda f: f.score, default=None)
        if top is not None and top.score > ENCODED_TEXT_SCORE:
            score = top.score
            detail = f"and the decoded text matches {top.code} (score {top.score:.2f})"
        else:
            score = ENCODED_TEXT_SCORE
            detail = "which could hide instructions"
        findings.append(
            Finding(
                code=ENCODED_PAYLOAD,
                message=f"rule {ENCODED_PAYLOAD}/base64_text: a {len(m.group())}-character base64 blob "
                f"decodes to text, {detail}",
                start=m.start(),
                end=m.end(),
                score=round(score, 4),
            )
        )
    return findings


def _overlaps(a: Finding, b: Finding) -> bool:
    assert a.start is not None and a.end is not None and b.start is not None and b.end is not None
    return a.start < b.end and b.start < a.end


def detect_injection(text: str) -> list[Finding]:
    """Prompt-injection findings in ``text``, sorted by position (then by score, highest first).

    Overlapping matches under the same code are reported once, by the highest-scoring rule. Scores below
    0.5 are weak signals (listed for transparency, not meant to block on their own).
    Raises :class:`InvalidArgument` if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"text to check must be a string, got {type(text).__name__}")
    candidates = sorted(_rule_findings(text) + _encoded_findings(text), key=lambda f: -f.score)
    kept: list[Finding] = []
    for f in candidates:
        if any(k.code == f.code and _overlaps(k, f) for k in kept):
            continue
        kept.append(f)
    kept.sort(key=lambda f: (f.start or 0, -f.score, f.code))
    return kept
