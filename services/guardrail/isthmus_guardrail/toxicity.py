"""Toxicity: a profanity lexicon and insult/threat patterns over normalised text — offline and explainable.

Every finding names what matched (the lexicon term or the pattern) and where, with a fixed score per kind
so a policy's ``toxicity_threshold`` reads as a ladder:

====================  =====  ===========================================================================
code                  score  what
====================  =====  ===========================================================================
``toxicity.threat``    0.95  a threat or an incitement to self-harm aimed at the reader ("I will kill
                             you", "kill yourself", "I know where you live")
``toxicity.insult``    0.9   a slur (an identity attack, wherever it stands)
``toxicity.insult``    0.8   an insult addressed to the reader ("you are useless", "you idiot", "stupid
                             bot", "f*** you", "shut up")
``toxicity.profanity`` 0.7   a profane or vulgar term of the lexicon
``toxicity.profanity`` 0.3   a mild one ("damn", "crap", "wtf"): reported, below the default threshold
====================  =====  ===========================================================================

With the default threshold (0.5) everything but mild swearing blocks; a tenant that tolerates swearing but
not abuse sets ``toxicity_threshold`` to 0.75.

The lexicon is the word list shipped in the ``better-profanity`` wheel (MIT), less the words of it that are
ordinary, clinical or identity vocabulary ("organ", "sex", "kill", "jerk", "screw", "cock", "gay",
"retarded"...: :data:`ORDINARY`): flagging those would refuse medical and scientific questions and flag
people for naming who they are. Violence words are left to the threat patterns, which need a target.

Obfuscation: the text is normalised as for the injection rules (:func:`isthmus_guardrail.injection.
normalise`: zero-width characters dropped, full-width/styled letters and Cyrillic look-alikes folded,
accents stripped, leetspeak such as ``sh1t`` undone); then letters spelled apart (``f.u.c.k``, ``s h i
t``), masked with symbols (``f*ck``, ``sh#t``) and stretched (``fuuuck``) are matched too. Spans are in
the original text. Matching is by whole token, never by substring (no "Scunthorpe problem"), except the
root ``fuck``, which no ordinary word contains.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
from collections.abc import Iterable
from dataclasses import dataclass

from isthmus_core.ports.guard import Finding
from isthmus_guardrail.components import TOXICITY_PREFIX
from isthmus_guardrail.injection import Normalised, normalise

PROFANITY = TOXICITY_PREFIX + "profanity"
INSULT = TOXICITY_PREFIX + "insult"
THREAT = TOXICITY_PREFIX + "threat"

THREAT_SCORE = 0.95
SLUR_SCORE = 0.9
INSULT_SCORE = 0.8
PROFANITY_SCORE = 0.7
MILD_SCORE = 0.3
#: a masked or spelled-apart form is slightly less certain than the word itself
OBFUSCATED_FACTOR = 0.95

LEXICON_PACKAGE = "better-profanity"

#: words of the lexicon that are ordinary, clinical, scientific, identity, drug or violence vocabulary (or
#: common names): never findings on their own
ORDINARY: frozenset[str] = frozenset(
    """
    anal anus areole arian aryan asanchez auto autoerotic bdsm beastial bestial bestiality bimbo bimbos
    bondage breasts busty chink cipa clitoris cock cocks coon cow cowgirl cowgirls crotch cum cuming
    cumming deepthroat dink dinks dong dopey drunk dummy dyke dykes ejaculate ejaculated ejaculates
    ejaculating ejaculatings ejaculation enlargement erect erection erotic erotism extacy extasy facial
    fanny fat fingering flange floozy fondle foobar foreskin gae gai ganja gay gays gigolo glans god
    gonad gonads guido hebe hell hemp heroin herp herpes herpy hiv hitler hoar homey homo homoerotic
    hooch hookah hooker hooters hootch hump humped humping hymen inbred incest jerk jerked junkie junky
    kill kinbaku klan kkk knob labia lech len leper lesbians lmao lmfao loin loins lube lust lusting
    lusty maxi menses menstruate menstruation meth molest murder nad nads napalm nazi nazism negro nimrod
    ninny nipple nipples nob nude nudes omg opiate opium oral orally organ orgies orgy ovary ovum ovums
    paddy pantie panties panty pastie pasty pawn pcp pedophile pedophilia pedophiliac pee peepee
    penetrate penetration penial penile penis perversion peyote phalli phallic playboy pms pollock
    pornography pot potty prick pricks prig prostitute prude pubic pubis punky puss queer queero queers
    quicky racy rape raped raper raping rapist raunch rectal rectum rectus reefer reich retard retarded
    revue ritard rum rump ruski sadism sadist sandbar scantily schizo screw screwed screwing scrotum
    scum seaman seamen seduce semen sex sexual shag shibari shibary sissy slave sleaze sleazy slope
    smegma snatch sniper snuff sodom souse soused sperm steamy stoned strip stroke stupid suck sucked
    sucking tampon tawdry teat teste testee testes testical testicle testis thrust thug tinkle tit titi
    toke toots tramp transsexual trashy tush ugly undies unwed urinal urine uterus uzi vagina valium
    viagra virgin vixen vodka vomit voyeur vulgar vulva wad wang weed weiner weirdo whiz willies willy
    womb woody xx xxx yury dick sob naked asses niggle masochist nappy muff massa mams kinky moron hoor
    """.split()
)
#: multi-word entries of the lexicon that are ordinary phrases
ORDINARY_PHRASES: frozenset[str] = frozenset(
    {"deep throat", "cow girl", "cow girls", "strip club", "three some"}
)
#: mild swearing: reported at :data:`MILD_SCORE`
MILD: frozenset[str] = frozenset(
    """
    crap damn fart boob boobs booty wtf goddam goddamn goddamned godamn godamnit goddammit god-dam
    god-damned hooter horny horniest porn porno pornos p0rn pron bullshit piss pissed poop
    turd terd jackass doofus dumbass dumass fubar
    """.split()
)
#: multi-word mild terms and slurs
MILD_PHRASES: frozenset[str] = frozenset({"bull shit"})
SLUR_PHRASES: frozenset[str] = frozenset({"she male"})
#: slurs (identity attacks): :data:`INSULT` at :data:`SLUR_SCORE`
SLURS: frozenset[str] = frozenset(
    """
    fag fagg fagged fagging faggit faggitt faggot faggs fagot fagots fags gook gooks heeb honky injun jap
    japs kike kikes kyke kraut moolie n1g n1gg n1gga n1gger nig nigg nigg3r nigg4h nigga niggah niggas
    niggaz nigger niggers niglet paki polack spic spick spik spiks tard reetard r-tard rtard wetback
    whitey wigger wop tranny lezzie lezzies lezzy lezbo lezbos lesbo lesbos shemale
    """.split()
)

# ------------------------------------------------------------------------------------------------------
# insults and threats: patterns over normalised text

_INSULT_NOUNS = (
    r"idiots?|morons?|imbeciles?|cretins?|dimwits?|halfwits?|nitwits?|losers?|dumbass(?:es)?|jackass(?:es)?"
    r"|clowns?|fools?|bastards?|bitch(?:es)?|assholes?|dickheads?|pieces?\s+of\s+(?:shit|crap|garbage|trash)"
    r"|waste\s+of\s+(?:space|oxygen)"
)
_INSULT_ADJS = (
    r"stupid|dumb|useless|worthless|pathetic|idiotic|brainless|braindead|brain-dead|incompetent|retarded"
    r"|moronic|disgusting|ugly"
)
_TARGETS = r"bots?|assistants?|chatbots?|machines?|ai|programs?|things?|computers?|systems?|software"
_INTENSIFIERS = (
    r"(?:such|so|really|very|completely|complete|totally|total|utterly|utter|absolutely|absolute|just|an?"
    r"|real|big|little|fucking|damn)"
)

_INSULT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "addressed insult",
        re.compile(
            rf"\b(?:you|u|ya)(?:'re|\s+are|\s+r|re)?(?:\s+{_INTENSIFIERS}){{0,3}}\s+"
            rf"(?:(?:{_INSULT_ADJS})(?:\s+(?:{_INSULT_NOUNS}|{_TARGETS}))?|{_INSULT_NOUNS})\b"
        ),
    ),
    (
        "insulting the assistant",
        re.compile(rf"\b(?:this|that|the|stupid|your)\s+(?:{_INSULT_ADJS})\s+(?:{_TARGETS})\b"),
    ),
    (
        "exclamation of contempt",
        re.compile(rf"\b(?:what|such)\s+an?\s+(?:{_INSULT_ADJS}\s+)?(?:{_INSULT_NOUNS})\b"),
    ),
    (
        "abuse",
        re.compile(
            r"\b(?:shut\s+(?:the\s+(?:fuck|hell)\s+)?up|(?:screw|fuck|f\W{0,3}k|fck|fk)\s+(?:you|u|off|yourself)"
            r"|go\s+to\s+hell|you\s+suck|stfu|gfy|gtfo|foad|piss\s+off|eat\s+shit|bite\s+me)\b"
        ),
    ),
)

#: verbs of violence that are a threat whoever they are aimed at ("I will kill your family")
_CLEAR_HARM = r"kill|murder|stab|strangle|rape|torture|slaughter|behead|butcher|hunt\s+down|beat\s+up"
#: verbs that are a threat only aimed at the reader, not before an object ("I'll shoot you an email")
_AMBIGUOUS_HARM = r"shoot|hurt|burn|punch|smash|bomb|choke|destroy|beat|break"
_WILL = (
    r"\b(?:i|we)(?:'ll|'m\s+going\s+to|'m\s+gonna|\s+will|\s+am\s+going\s+to|\s+are\s+going\s+to"
    r"|'re\s+going\s+to|\s+shall|\s+gonna|\s+want\s+to|\s+wanna|\s+would\s+love\s+to|\s+am\s+gonna)"
    r"(?:\s+(?:personally|literally|really|just|come\s+and|come\s+to\s+your\s+house\s+and)){0,2}"
)
_THREAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "threat of violence",
        re.compile(
            rf"{_WILL}\s+(?:{_CLEAR_HARM})\s+(?:you|u|ya|your\s+\w+|all\s+of\s+you)\b"
            rf"|{_WILL}\s+(?:{_AMBIGUOUS_HARM})\s+(?:you|u|ya)\b"
            r"(?!\s+(?:an?|the|some|one|my|this|that|these|those|over|back|up|in|at|to|a\s+line)\b)"
        ),
    ),
    (
        "incitement to self-harm",
        re.compile(r"\b(?:kill|hang|shoot|off)\s+(?:yo)?urself\b|\bkys\b|\bgo\s+die\b"),
    ),
    (
        "death wish",
        re.compile(
            r"\byou(?:'re|\s+are)\s+(?:going\s+to|gonna)\s+die\b|\byou(?:'re|\s+are)\s+dead(?:\s+meat)?\b"
            r"|\byou(?:'ll|\s+will)\s+(?:die|pay\s+for\s+(?:this|that)|regret\s+(?:this|that|it))\b"
            r"|\byou\s+(?:deserve|should|ought|need)\s+to\s+(?:die|be\s+(?:killed|shot|raped|hurt))\b"
            r"|\b(?:i\s+)?hope\s+you\s+(?:die|get\s+(?:cancer|killed|shot|raped|hurt))\b"
        ),
    ),
    (
        "intimidation",
        re.compile(
            r"\bi\s+know\s+where\s+you\s+live\b|\bwatch\s+your\s+back\b|\byour\s+days\s+are\s+numbered\b"
        ),
    ),
)

# ------------------------------------------------------------------------------------------------------
# tokens and obfuscation

#: a token of normalised text: letters/digits with the symbols people mask letters with inside
_TOKEN = re.compile(r"[a-z0-9](?:[a-z0-9!+*#$@%]|['\-](?=[a-z0-9]))*[!+*#$@%]*")
#: single letters spelled apart: ``f.u.c.k``, ``s h i t``, ``f-u-c-k``
_SPELLED = re.compile(r"(?<![a-z0-9])[a-z](?:[\s._*\-]{1,2}[a-z]){2,}(?![a-z0-9])")
_MASK = re.compile(r"[*#%]")
#: what a masked word most likely is, in order ("f*ck" could also be the lexicon's "fack")
_COMMON = ("fuck", "shit", "cunt", "bitch", "piss", "dick", "twat", "wank", "slut", "whore", "crap", "damn")
_STRETCH = re.compile(r"([a-z])\1{2,}")


@dataclass(frozen=True, slots=True)
class _Term:
    word: str
    code: str
    score: float
    kind: str  # "profane term", "mild profanity", "slur"


class LexiconToxicityDetector:
    """The lexicon (less :data:`ORDINARY`) plus the insult and threat patterns (see the module docstring)."""

    def __init__(self, words: Iterable[str], *, lexicon: str = LEXICON_PACKAGE) -> None:
        self.lexicon = lexicon
        self._slurs = {normalise(w).text for w in SLURS | SLUR_PHRASES}
        self._mild = {normalise(w).text for w in MILD | MILD_PHRASES}
        self._terms: dict[str, _Term] = {}
        #: entries written spelled apart in the lexicon ("s.o.b."): matched only when spelled apart
        self._spelled: dict[str, _Term] = {}
        for raw in (*words, *sorted(SLURS | MILD)):  # the tiers' own spellings, if the lexicon lacks them
            key = " ".join(normalise(raw.strip()).text.split())
            if not key or "*" in key or key in ORDINARY or key in ORDINARY_PHRASES or key in self._terms:
                continue
            if re.fullmatch(r"[a-z](?:[._\-][a-z])+[._\-]?", key):
                self._spelled[re.sub(r"[._\-]", "", key)] = self._classify(re.sub(r"[._\-]", "", key))
                continue
            self._terms[key] = self._classify(key)
        phrases = sorted((k for k in self._terms if " " in k), key=len, reverse=True)
        self._phrases = (
            re.compile(
                r"(?<![a-z0-9])(?:"
                + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
                + r")(?![a-z0-9])"
            )
            if phrases
            else None
        )
        # masked forms ("f*ck") are matched against the single words of the lexicon of the same length
        self._by_length: dict[int, list[str]] = {}
        for key, term in self._terms.items():
            if term.score >= PROFANITY_SCORE and key.isalpha():
                self._by_length.setdefault(len(key), []).append(key)

    def _classify(self, key: str) -> _Term:
        if key in self._slurs:
            return _Term(key, INSULT, SLUR_SCORE, "slur")
        if key in self._mild:
            return _Term(key, PROFANITY, MILD_SCORE, "mild profanity")
        return _Term(key, PROFANITY, PROFANITY_SCORE, "profane term")

    def __len__(self) -> int:
        return len(self._terms)

    # ---- lexicon

    def _lookup(self, token: str) -> tuple[_Term, str] | None:
        """The term a token is, and how it was written (``""`` plain, else the obfuscation)."""
        bare = token.strip("!'-+@$%#")
        singular = bare[:-1] if bare.endswith("s") and len(bare) > 3 else bare
        for candidate in (token, bare, singular):
            if candidate in self._terms:
                return self._terms[candidate], ""
        if _STRETCH.search(bare):
            for repl in (r"\1\1", r"\1"):
                squeezed = _STRETCH.sub(repl, bare)
                if squeezed in self._terms:
                    return self._terms[squeezed], "stretched"
        core = bare.strip("*#%")  # a trailing '*' is a footnote mark, not a masked letter
        masked = _MASK.findall(core)
        letters = sum(c.isalpha() for c in core)
        if masked and letters >= 2 and len(masked) <= 3 and len(core) == len(bare):
            pattern = re.compile("".join("[a-z]" if c in "*#%" else re.escape(c) for c in core))
            hits = [w for w in self._by_length.get(len(core), ()) if pattern.fullmatch(w)]
            if hits:  # the commonest word it can be, else the first alphabetically
                best = next((w for w in _COMMON if w in hits), min(hits))
                return self._terms[best], "masked"
        if "fuck" in bare:
            return self._terms.get("fuck", _Term("fuck", PROFANITY, PROFANITY_SCORE, "profane term")), (
                "compound"
            )
        return None

    def _lexicon_findings(self, norm: Normalised, text: str) -> list[Finding]:
        found: list[Finding] = []
        seen: list[tuple[int, int]] = []

        def add(start: int, end: int, term: _Term, how: str) -> None:
            if any(s < end and start < e for s, e in seen):
                return
            seen.append((start, end))
            o_start, o_end = norm.span(start, end)
            score = term.score * (OBFUSCATED_FACTOR if how else 1.0)
            written = f", written {how} as {text[o_start:o_end]!r}" if how else ""
            found.append(
                Finding(
                    code=term.code,
                    message=f"{term.kind} {term.word!r} ({self.lexicon} word list{written})",
                    start=o_start,
                    end=o_end,
                    score=round(score, 4),
                )
            )

        if self._phrases is not None:
            for m in self._phrases.finditer(norm.text):
                add(m.start(), m.end(), self._terms[" ".join(m.group().split())], "")
        for m in _SPELLED.finditer(norm.text):
            joined = re.sub(r"[\s._*\-]", "", m.group())
            term = self._spelled.get(joined) or self._terms.get(joined)
            if term is not None:
                add(m.start(), m.end(), term, "spelled apart")
        for m in _TOKEN.finditer(norm.text):
            hit = self._lookup(m.group())
            if hit is not None:
                add(m.start(), m.end(), *hit)
        return found

    # ---- patterns

    @staticmethod
    def _pattern_findings(norm: Normalised, text: str) -> list[Finding]:
        found = []
        for code, score, patterns in (
            (THREAT, THREAT_SCORE, _THREAT_PATTERNS),
            (INSULT, INSULT_SCORE, _INSULT_PATTERNS),
        ):
            for name, pattern in patterns:
                for m in pattern.finditer(norm.text):
                    start, end = norm.span(m.start(), m.end())
                    snippet = " ".join(text[start:end].split())
                    found.append(
                        Finding(code=code, message=f"{name}: {snippet!r}", start=start, end=end, score=score)
                    )
        return found

    def findings(self, text: str) -> list[Finding]:
        """``toxicity.profanity|insult|threat`` findings with spans in ``text`` and scores, by position."""
        if not text:
            return []
        norm = normalise(text)
        found = self._pattern_findings(norm, text) + self._lexicon_findings(norm, text)
        return sorted(found, key=lambda f: (f.start or 0, -f.score, f.code))


def lexicon_words() -> list[str]:
    """The word list shipped in the ``better-profanity`` wheel (read when called, never at import)."""
    resource = importlib.resources.files("better_profanity").joinpath("profanity_wordlist.txt")
    return [line.strip() for line in resource.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_default() -> LexiconToxicityDetector:
    """The detector over the ``better-profanity`` word list (its version named in every finding)."""
    version = importlib.metadata.version(LEXICON_PACKAGE)
    return LexiconToxicityDetector(lexicon_words(), lexicon=f"{LEXICON_PACKAGE}@{version}")
