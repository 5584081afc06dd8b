"""Korean morphology for the hard-negative rules: Hangul syllables, a small conjugator, particles and words.

* syllables: composing and decomposing precomposed Hangul (initial, medial vowel, final consonant);
* :class:`Predicate`: inflected forms of a verb or adjective stem (regular, ㅂ and 르 irregulars),
  generated forward from the stem, and their long negation (``stem + 지 않-``);
* particles: the allomorph a particle takes after a noun (``서울로`` / ``부산으로``);
* words: a sentence's space-separated tokens with their punctuation kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass

_FIRST, _LAST = 0xAC00, 0xD7A3
# Medial vowels by index (ㅏ = 0 ... ㅣ = 20) and the final consonants the conjugator uses.
_A, _AE, _YA, _EO, _E, _YEO, _YE, _O, _WA, _WAE, _OE = 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11
_U, _WEO, _EU, _I = 13, 14, 18, 20
NO_FINAL, FINAL_N, FINAL_L, FINAL_B, FINAL_SS = 0, 4, 8, 17, 20  # final consonants (batchim)
_BRIGHT = (_A, _YA, _O)  # vowels that take -아 rather than -어


def is_syllable(char: str) -> bool:
    """A precomposed Hangul syllable (가-힣)."""
    return _FIRST <= ord(char) <= _LAST


def _split(char: str) -> tuple[int, int, int]:
    code = ord(char) - _FIRST
    return code // 588, (code % 588) // 28, code % 28


def _join(initial: int, medial: int, final: int) -> str:
    return chr(_FIRST + initial * 588 + medial * 28 + final)


def final_consonant(char: str) -> int:
    """Index of a syllable's final consonant (batchim), ``NO_FINAL`` for none or for a non-syllable."""
    return _split(char)[2] if is_syllable(char) else NO_FINAL


def with_final(char: str, final: int) -> str:
    """The syllable with another final consonant."""
    initial, medial, _ = _split(char)
    return _join(initial, medial, final)


def is_hangul(text: str) -> bool:
    """Non-empty and Hangul syllables only."""
    return bool(text) and all(is_syllable(c) for c in text)


FORM_KEYS = (
    "plain",  # 좁다 / 닫는다
    "seumnida",  # 좁습니다
    "ayo",  # 좁아요
    "a",  # 좁아 (casual; also the -아/어 connective)
    "past_da",  # 좁았다
    "past_seumnida",  # 좁았습니다
    "past_ayo",  # 좁았어요
    "past_a",  # 좁았어
    "neyo",  # 좁네요
    "past_neyo",  # 좁았네요
    "si_seumnida",  # 좁으십니다
    "si_ayo",  # 좁으세요 (adjectives only: a verb's -세요 is a request)
    "si_past_ayo",  # 좁으셨어요
    "si_past_seumnida",  # 좁으셨습니다
    "go",  # 좁고
    "jiman",  # 좁지만
    "aseo",  # 좁아서
    "ge",  # 좁게
    "myeon",  # 좁으면
    "mod",  # 좁은 / 닫는 (present modifier)
    "mod_past",  # 닫은 (verbs only)
)
FINAL_KEYS = (  # the sentence-final forms
    *("plain", "seumnida", "ayo", "a", "past_da", "past_seumnida", "past_ayo", "past_a", "neyo", "past_neyo"),
    *("si_seumnida", "si_ayo", "si_past_ayo", "si_past_seumnida"),
)


@dataclass(frozen=True)
class Predicate:
    """A verb or adjective stem that conjugates regularly, or with the ㅂ or 르 irregularity.

    Args:
        stem: the dictionary form without 다 (``좁``, ``가깝``, ``빠르``, ``깨끗하``).
        adjective: adjectives take ``-다``/``-은`` where verbs take ``-는다``/``-는``.
        irregular: ``"ㅂ"`` (가깝다 -> 가까워) or ``"르"`` (빠르다 -> 빨라); other irregular
            stems (ㄷ, ㅅ, ㅎ) are deliberately not supported.
    """

    stem: str
    adjective: bool = True
    irregular: str = ""

    @classmethod
    def parse(cls, lemma: str, adjective: bool = True) -> Predicate:
        """``"가깝다:ㅂ"`` -> ``Predicate("가깝", adjective, "ㅂ")``."""
        word, _, irregular = lemma.partition(":")
        return cls(word.removesuffix("다"), adjective, irregular)

    @property
    def _vowel_final(self) -> bool:
        return final_consonant(self.stem[-1]) == NO_FINAL

    @property
    def _l_final(self) -> bool:
        return final_consonant(self.stem[-1]) == FINAL_L

    def _replace_final(self, final: int) -> str:
        """The stem with its last final consonant replaced (ㄹ dropped before ㄴ, ㅂ, ㅅ)."""
        return self.stem[:-1] + with_final(self.stem[-1], final)

    def _b_dropped(self) -> str:
        return self._replace_final(NO_FINAL)

    def infinitive(self) -> str:
        """The -아/어 form: 좁아, 넓어, 깨끗해, 가까워, 빨라, 커, 봐, 돼, 보여."""
        stem, last = self.stem, self.stem[-1]
        initial, medial, final = _split(last)
        if self.irregular == "ㅂ":
            return self._b_dropped() + "워"
        if self.irregular == "르":
            before = stem[-2]
            return stem[:-2] + with_final(before, FINAL_L) + ("라" if _split(before)[1] in _BRIGHT else "러")
        if final != NO_FINAL:
            return stem + ("아" if medial in _BRIGHT else "어")
        if stem.endswith("하"):
            return stem[:-1] + "해"
        contracted = {_O: _WA, _U: _WEO, _I: _YEO, _OE: _WAE}
        if medial in (_A, _EO, _AE, _E, _YEO, _YE):
            return stem
        if medial in contracted:
            return stem[:-1] + _join(initial, contracted[medial], NO_FINAL)
        if medial == _EU:  # 크 -> 커, 바쁘 -> 바빠, 예쁘 -> 예뻐
            bright = len(stem) > 1 and _split(stem[-2])[1] in _BRIGHT
            return stem[:-1] + _join(initial, _A if bright else _EO, NO_FINAL)
        return stem + "어"  # 쉬어, 띄어

    def past(self) -> str:
        """The past stem: 좁았, 깨끗했, 가까웠, 빨랐, 컸, 봤."""
        infinitive = self.infinitive()
        return infinitive[:-1] + with_final(infinitive[-1], FINAL_SS)

    def _honorific(self) -> str:
        if self.irregular == "ㅂ":
            return self._b_dropped() + "우시"
        if self._vowel_final or self.irregular == "르":
            return self.stem + "시"
        if self._l_final:
            return self._replace_final(NO_FINAL) + "시"
        return self.stem + "으시"

    def form(self, key: str) -> str | None:
        """The inflected form for one of :data:`FORM_KEYS`, or None where it does not exist."""
        stem = self.stem
        vowel_like = self._vowel_final or self.irregular == "르"
        if key == "plain":
            if self.adjective:
                return stem + "다"
            return self._replace_final(FINAL_N) + "다" if vowel_like or self._l_final else stem + "는다"
        if key == "seumnida":
            return self._replace_final(FINAL_B) + "니다" if vowel_like or self._l_final else stem + "습니다"
        if key == "ayo":
            return self.infinitive() + "요"
        if key == "a":
            return self.infinitive()
        if key.startswith("past_"):
            endings = {
                "past_da": "다",
                "past_seumnida": "습니다",
                "past_ayo": "어요",
                "past_a": "어",
                "past_neyo": "네요",
            }
            return self.past() + endings[key]
        if key == "neyo":
            return (self._replace_final(NO_FINAL) if self._l_final else stem) + "네요"
        if key.startswith("si_"):
            if key == "si_ayo" and not self.adjective:
                return None
            honorific = self._honorific()
            endings = {
                "si_seumnida": "십니다",
                "si_ayo": "세요",
                "si_past_ayo": "셨어요",
                "si_past_seumnida": "셨습니다",
            }
            return honorific[:-1] + endings[key]
        if key in ("go", "jiman", "ge"):
            return stem + {"go": "고", "jiman": "지만", "ge": "게"}[key]
        if key == "aseo":
            return self.infinitive() + "서"
        if key == "myeon":
            if self.irregular == "ㅂ":
                return self._b_dropped() + "우면"
            return stem + ("면" if vowel_like or self._l_final else "으면")
        if key == "mod":
            if not self.adjective or stem.endswith(("있", "없")):
                return (self._replace_final(NO_FINAL) if self._l_final else stem) + "는"
            if self.irregular == "ㅂ":
                return self._b_dropped() + "운"
            return self._replace_final(FINAL_N) if vowel_like or self._l_final else stem + "은"
        if key == "mod_past":
            if self.adjective:
                return None
            return self._replace_final(FINAL_N) if vowel_like or self._l_final else stem + "은"
        raise ValueError(f"unknown form key {key!r}; expected one of {', '.join(FORM_KEYS)}")

    def negated(self, key: str) -> str | None:
        """The long negation ``stem + 지 않-`` in the same form: 좁지 않아요, 닫지 않는다."""
        not_form = Predicate("않", self.adjective).form(key)
        return None if not_form is None else f"{self.stem}지 {not_form}"


_LEADING = "\"'“‘「『([<"
_TRAILING = ".,!?~…\"'”’」』)]>"
_QUESTION_WORDS = ("뭐", "무엇", "무슨", "언제", "어디", "누구", "누가", "왜", "어떻게", "어떤", "어때", "얼마", "몇")
SUBJECT_PARTICLES = ("이", "가", "은", "는", "도")


@dataclass(frozen=True)
class Word:
    """One space-separated token split into leading punctuation, the word, trailing punctuation."""

    lead: str
    core: str
    trail: str

    @classmethod
    def of(cls, token: str) -> Word:
        core = token.lstrip(_LEADING)
        lead = token[: len(token) - len(core)]
        stripped = core.rstrip(_TRAILING)
        return cls(lead, stripped, core[len(stripped) :])

    def replaced(self, core: str) -> str:
        """The token with another word between the same punctuation."""
        return self.lead + core + self.trail


def split_tokens(sentence: str) -> list[str]:
    """The space-separated tokens of a sentence (rewrites are joined back with single spaces)."""
    return sentence.split()


def with_token(tokens: list[str], index: int, replacement: str) -> str:
    """The sentence with one token replaced."""
    return " ".join([*tokens[:index], replacement, *tokens[index + 1 :]])


def is_question_or_request(sentence: str, words: list[Word]) -> bool:
    """A question mark, a question word or a question or request ending."""
    if sentence.rstrip().endswith("?"):
        return True
    if any(w.core.startswith(_QUESTION_WORDS) for w in words):
        return True
    last = words[-1].core
    return last.endswith(("까", "니", "냐", "나요", "죠", "줘", "주세요", "십시오", "세요", "자", "시다", "라", "래"))


def has_subject_before(words: list[Word], index: int) -> bool:
    """Whether the word before ``index`` ends in a subject particle (no punctuation between)."""
    return index > 0 and words[index - 1].core.endswith(SUBJECT_PARTICLES) and not words[index - 1].trail


def particle_form(noun: str, tail: str) -> str:
    """Re-chooses a particle's allomorph after a different noun: 서울로 -> 부산으로, 내일은 -> 모레는."""
    final = final_consonant(noun[-1])
    for consonant, vowel in _PARTICLE_PAIRS:
        for form in (consonant, vowel):
            if tail.startswith(form) and (len(form) > 1 or tail == form or tail[len(form) :] in INVARIANT_TAILS):
                rest = tail[len(form) :]
                if consonant == "으로":
                    chosen = vowel if final in (NO_FINAL, FINAL_L) else consonant
                else:
                    chosen = vowel if final == NO_FINAL else consonant
                return chosen + rest
    return tail


_PARTICLE_PAIRS = (
    ("으로", "로"),
    ("이나", "나"),
    ("이랑", "랑"),
    ("이", "가"),
    ("을", "를"),
    ("은", "는"),
    ("과", "와"),
)
INVARIANT_TAILS = ("", "의", "에", "에서", "에도", "에는", "도", "만", "까지", "부터", "보다", "처럼", "에게")
NOUN_TAILS = frozenset(
    [*INVARIANT_TAILS, "이", "가", "을", "를", "은", "는", "과", "와", "으로", "로", "으로는", "로는", "이나", "나"]
)
