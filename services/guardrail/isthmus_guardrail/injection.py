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
