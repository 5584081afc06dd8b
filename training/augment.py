"""Hard negatives from training sentences: the same topic and words, a different meaning.

    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/augment/hard_negatives.jsonl \\
        --per-kind 500 --seed 13

Every unique sentence of a pair file goes through four rules, each giving a pair (original,
rewritten) with a low label; training on them teaches the cross-encoder that sharing a topic
is not sharing a meaning (issue 10). The rules:

* ``negation``: the sentence-final predicate is negated (``좋았어요`` -> ``좋지 않았어요``,
  ``추진한다`` -> ``추진하지 않는다``, ``있습니다`` <-> ``없습니다``, ``숙소입니다`` ->
  ``숙소가 아닙니다``);
* ``antonym``: one word is replaced by its antonym from :data:`ANTONYM_PREDICATES` and
  :data:`ANTONYM_NOUNS` in the same inflected form (``넓어요`` -> ``좁아요``, ``깨끗하고`` ->
  ``더럽고``, ``증가했다`` -> ``감소했다``);
* ``number``: one number, counted amount, time of day or weekday is changed (``3박`` ->
  ``5박``, ``두 명`` -> ``네 명``, ``오전`` -> ``오후``);
* ``entity``: one named place, country, family member or company is replaced by another of
  its kind (``서울로`` -> ``부산으로``, ``엄마가`` -> ``아빠가``, ``네이버`` -> ``카카오``);
* ``role``: the subject and the object (or recipient) are swapped when both are people or
  organisations (``호스트가 게스트에게`` -> ``게스트가 호스트에게``);
* ``intent``: the same topic, another question or request: the question word changes
  (``언제`` -> ``어디서``) or one service noun is replaced by another of its domain
  (``환불은`` -> ``배송은``, ``체크인 시간`` -> ``체크아웃 시간``).

Inflected forms are generated forward by a small conjugator (:class:`Predicate`) from known
stems and matched exactly, never guessed backwards from the surface, and a rule that is
unsure skips the sentence: questions and requests are not negated, already negated
clauses are left alone, ambiguous stems (``들었다``: 듣다 or 들다) are not touched. Rewrites
are deterministic for a seed. The output is JSON Lines with ``sentence1`` (original),
``sentence2`` (rewritten), ``label``, ``kind`` and ``source_location``, readable by
:func:`training.data.read_pairs`, e.g. as an ``extra_train_files`` entry. Pass the
validation split as ``--exclude`` so that its sentences do not reach training through their
rewritten twins.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.data import SENTENCE_COLUMNS, read_pairs, write_pairs
from training.logs import configure_logging

logger = logging.getLogger("training.augment")

# Gold labels of the generated pairs on KLUE-STS's 0-5 scale. KLUE's guideline puts a pair
# whose core content differs below 3: 1 is "not equivalent, same topic", 2 "not equivalent,
# some details shared". A reversed polarity or an antonym contradicts the sentence (1.0);
# a changed number, time or place keeps the event and changes one detail of it (1.5).
NEGATION_LABEL = 1.0
ANTONYM_LABEL = 1.0
NUMBER_LABEL = 1.5
ENTITY_LABEL = 1.5
# Swapped roles reverse who does what to whom (1.2); another question on the same topic shares
# the topic and nothing else that was asked (1.5).
ROLE_LABEL = 1.2
INTENT_LABEL = 1.5
KIND_LABELS = {
    "negation": NEGATION_LABEL,
    "antonym": ANTONYM_LABEL,
    "number": NUMBER_LABEL,
    "entity": ENTITY_LABEL,
    "role": ROLE_LABEL,
    "intent": INTENT_LABEL,
}

# ---------------------------------------------------------------------------------------------
# Hangul syllables
# ---------------------------------------------------------------------------------------------

_FIRST, _LAST = 0xAC00, 0xD7A3
# Medial vowels by index (ㅏ = 0 ... ㅣ = 20) and the final consonants the conjugator uses.
_A, _AE, _YA, _EO, _E, _YEO, _YE, _O, _WA, _WAE, _OE = 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11
_U, _WEO, _EU, _I = 13, 14, 18, 20
_NONE, _N, _L, _B, _SS = 0, 4, 8, 17, 20  # final consonants (batchim)
_BRIGHT = (_A, _YA, _O)  # vowels that take -아 rather than -어


def _is_syllable(char: str) -> bool:
    return _FIRST <= ord(char) <= _LAST


def _split(char: str) -> tuple[int, int, int]:
    code = ord(char) - _FIRST
    return code // 588, (code % 588) // 28, code % 28


def _join(initial: int, medial: int, final: int) -> str:
    return chr(_FIRST + initial * 588 + medial * 28 + final)


def _final(char: str) -> int:
    return _split(char)[2] if _is_syllable(char) else _NONE


def _with_final(char: str, final: int) -> str:
    initial, medial, _ = _split(char)
    return _join(initial, medial, final)


def _is_hangul(text: str) -> bool:
    return bool(text) and all(_is_syllable(c) for c in text)


# ---------------------------------------------------------------------------------------------
# Conjugation
# ---------------------------------------------------------------------------------------------

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
        return _final(self.stem[-1]) == _NONE

    @property
    def _l_final(self) -> bool:
        return _final(self.stem[-1]) == _L

    def _replace_final(self, final: int) -> str:
        """The stem with its last final consonant replaced (ㄹ dropped before ㄴ, ㅂ, ㅅ)."""
        return self.stem[:-1] + _with_final(self.stem[-1], final)

    def _b_dropped(self) -> str:
        return self._replace_final(_NONE)

    def infinitive(self) -> str:
        """The -아/어 form: 좁아, 넓어, 깨끗해, 가까워, 빨라, 커, 봐, 돼, 보여."""
        stem, last = self.stem, self.stem[-1]
        initial, medial, final = _split(last)
        if self.irregular == "ㅂ":
            return self._b_dropped() + "워"
        if self.irregular == "르":
            before = stem[-2]
            return stem[:-2] + _with_final(before, _L) + ("라" if _split(before)[1] in _BRIGHT else "러")
        if final != _NONE:
            return stem + ("아" if medial in _BRIGHT else "어")
        if stem.endswith("하"):
            return stem[:-1] + "해"
        contracted = {_O: _WA, _U: _WEO, _I: _YEO, _OE: _WAE}
        if medial in (_A, _EO, _AE, _E, _YEO, _YE):
            return stem
        if medial in contracted:
            return stem[:-1] + _join(initial, contracted[medial], _NONE)
        if medial == _EU:  # 크 -> 커, 바쁘 -> 바빠, 예쁘 -> 예뻐
            bright = len(stem) > 1 and _split(stem[-2])[1] in _BRIGHT
            return stem[:-1] + _join(initial, _A if bright else _EO, _NONE)
        return stem + "어"  # 쉬어, 띄어

    def past(self) -> str:
        """The past stem: 좁았, 깨끗했, 가까웠, 빨랐, 컸, 봤."""
        infinitive = self.infinitive()
        return infinitive[:-1] + _with_final(infinitive[-1], _SS)

    def _honorific(self) -> str:
        if self.irregular == "ㅂ":
            return self._b_dropped() + "우시"
        if self._vowel_final or self.irregular == "르":
            return self.stem + "시"
        if self._l_final:
            return self._replace_final(_NONE) + "시"
        return self.stem + "으시"

    def form(self, key: str) -> str | None:
        """The inflected form for one of :data:`FORM_KEYS`, or None where it does not exist."""
        stem = self.stem
        vowel_like = self._vowel_final or self.irregular == "르"
        if key == "plain":
            if self.adjective:
                return stem + "다"
            return self._replace_final(_N) + "다" if vowel_like or self._l_final else stem + "는다"
        if key == "seumnida":
            return self._replace_final(_B) + "니다" if vowel_like or self._l_final else stem + "습니다"
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
            return (self._replace_final(_NONE) if self._l_final else stem) + "네요"
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
                return (self._replace_final(_NONE) if self._l_final else stem) + "는"
            if self.irregular == "ㅂ":
                return self._b_dropped() + "운"
            return self._replace_final(_N) if vowel_like or self._l_final else stem + "은"
        if key == "mod_past":
            if self.adjective:
                return None
            return self._replace_final(_N) if vowel_like or self._l_final else stem + "은"
        raise ValueError(f"unknown form key {key!r}; expected one of {', '.join(FORM_KEYS)}")

    def negated(self, key: str) -> str | None:
        """The long negation ``stem + 지 않-`` in the same form: 좁지 않아요, 닫지 않는다."""
        not_form = Predicate("않", self.adjective).form(key)
        return None if not_form is None else f"{self.stem}지 {not_form}"


# ---------------------------------------------------------------------------------------------
# Sentences and words
# ---------------------------------------------------------------------------------------------

_LEADING = "\"'“‘「『([<"
_TRAILING = ".,!?~…\"'”’」』)]>"
_QUESTION_WORDS = ("뭐", "무엇", "무슨", "언제", "어디", "누구", "누가", "왜", "어떻게", "어떤", "어때", "얼마", "몇")
_NEGATIVE_WORDS = ("안", "못", "안돼", "안됨", "못함")
_NEGATIVE_PARTS = ("않", "없", "아니", "못하", "모르", "말고", "말아", "마세요", "마십시오")
_SUBJECT_PARTICLES = ("이", "가", "은", "는", "도")
# 형편이 없다 (= terrible), 손색이 없다 (= flawless): idioms whose 있다 is not their opposite.
_IDIOMS_WITH_EOPDA = frozenset(
    ["형편이", "나위가", "틀림이", "손색이", "빈틈이", "두말할", "그지", "다름이", "끝이", "별수"]
)
_NO_NEGATION_ADVERBS = frozenset(
    ["좀", "조금", "다소", "약간", "살짝", "꽤", "이미", "벌써", "훨씬", "더욱", "가장", "제일"]
)
# Adverbs and nouns that end like a subject particle but are not a subject: 같이 있다 (be together).
_NOT_SUBJECTS = frozenset(
    ["같이", "많이", "가까이", "깨끗이", "높이", "깊이", "없이", "곳곳이", "일찍이", "정도", "특히"]
)


@dataclass(frozen=True)
class _Word:
    """One space-separated token split into leading punctuation, the word, trailing punctuation."""

    lead: str
    core: str
    trail: str

    @classmethod
    def of(cls, token: str) -> _Word:
        core = token.lstrip(_LEADING)
        lead = token[: len(token) - len(core)]
        stripped = core.rstrip(_TRAILING)
        return cls(lead, stripped, core[len(stripped) :])

    def replaced(self, core: str) -> str:
        return self.lead + core + self.trail


def _tokens(sentence: str) -> list[str]:
    return sentence.split()


def _with_token(tokens: list[str], index: int, replacement: str) -> str:
    return " ".join([*tokens[:index], replacement, *tokens[index + 1 :]])


def _is_question_or_request(sentence: str, words: list[_Word]) -> bool:
    if sentence.rstrip().endswith("?"):
        return True
    if any(w.core.startswith(_QUESTION_WORDS) for w in words):
        return True
    last = words[-1].core
    return last.endswith(("까", "니", "냐", "나요", "죠", "줘", "주세요", "십시오", "세요", "자", "시다", "라", "래"))


def _has_subject_before(words: list[_Word], index: int) -> bool:
    return index > 0 and words[index - 1].core.endswith(_SUBJECT_PARTICLES) and not words[index - 1].trail


def _particle_form(noun: str, tail: str) -> str:
    """Re-chooses a particle's allomorph after a different noun: 서울로 -> 부산으로, 내일은 -> 모레는."""
    final = _final(noun[-1])
    for consonant, vowel in _PARTICLE_PAIRS:
        for form in (consonant, vowel):
            if tail.startswith(form) and (len(form) > 1 or tail == form or tail[len(form) :] in _INVARIANT_TAILS):
                rest = tail[len(form) :]
                if consonant == "으로":
                    chosen = vowel if final in (_NONE, _L) else consonant
                else:
                    chosen = vowel if final == _NONE else consonant
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
_INVARIANT_TAILS = ("", "의", "에", "에서", "에도", "에는", "도", "만", "까지", "부터", "보다", "처럼", "에게")
_NOUN_TAILS = frozenset(
    [*_INVARIANT_TAILS, "이", "가", "을", "를", "은", "는", "과", "와", "으로", "로", "으로는", "로는", "이나", "나"]
)


# ---------------------------------------------------------------------------------------------
# Negation
# ---------------------------------------------------------------------------------------------

# Vowel-stem and irregular predicates that the regular-stem rule cannot recognise.
_NEGATION_LEXICON_ADJECTIVES = (
    "크다 바쁘다 예쁘다 나쁘다 아프다 슬프다 기쁘다 빠르다:르 다르다:르 느리다 비싸다 멋지다 흐리다 가깝다:ㅂ "
    "어렵다:ㅂ 쉽다:ㅂ 덥다:ㅂ 춥다:ㅂ 무겁다:ㅂ 가볍다:ㅂ 뜨겁다:ㅂ 차갑다:ㅂ 시끄럽다:ㅂ 더럽다:ㅂ 어둡다:ㅂ "
    "귀엽다:ㅂ 즐겁다:ㅂ 부드럽다:ㅂ 두껍다:ㅂ 무섭다:ㅂ 아쉽다:ㅂ 맵다:ㅂ 싱겁다:ㅂ 아름답다:ㅂ 길다 멀다"
).split()
_NEGATION_LEXICON_VERBS = (
    "가다 오다 보다 보이다 지내다 보내다 나오다 걸리다 머무르다:르 타다 자다 마시다 기다리다 켜다 끄다 열리다 "
    "들리다 생기다 어울리다 붐비다 바뀌다 다니다 떠나다 만나다 끝나다 일어나다 지키다 열다 만들다 울다 "
    "늘어나다 줄어들다 나아지다 좋아지다 나빠지다 커지다 작아지다 늘리다 줄이다 높이다 낮추다 올리다 내리다"
).split()
# 하다/되다 nouns whose negation is a formula rather than a contrast (감사합니다 -> 감사하지 않습니다).
_HA_EXCLUDED = frozenset(
    ["감사", "부탁", "수고", "죄송", "미안", "고생", "궁금", "소망", "기원", "못", "안", "잘못", "필요없", "말"]
)
_HA_EXCLUDED_ENDINGS = ("야", "게", "도록", "기로", "고", "지", "려", "러", "면", "서", "듯", "척", "체", "기", "긴")
# Regular-looking stems that are ambiguous (ㄷ irregular 듣다/들다) or whose negation is not a contrast.
_REGULAR_EXCLUDED = frozenset(["있", "없", "않", "알", "들", "걸", "물", "실", "깨달", "불", "일컬", "계시", "말"])
_REGULAR_KEYS = ("plain", "seumnida", "ayo", "past_da", "past_seumnida", "past_ayo", "past_a", "neyo", "past_neyo")
_HA_KEYS = (*_REGULAR_KEYS, "si_seumnida", "si_past_ayo", "si_past_seumnida")
# 이다 -> 아니다: (ending, needs a consonant-final noun (True), a vowel-final one (False) or either (None), negated)
_COPULA_ENDINGS = (
    ("이었습니다", True, "아니었습니다"),
    ("였습니다", False, "아니었습니다"),
    ("이었어요", True, "아니었어요"),
    ("였어요", False, "아니었어요"),
    ("이었다", True, "아니었다"),
    ("였다", False, "아니었다"),
    ("입니다", None, "아닙니다"),
    ("이에요", True, "아니에요"),
    ("예요", False, "아니에요"),
    ("에요", False, "아니에요"),
    ("이다", True, "아니다"),
    ("이야", True, "아니야"),
)
_COPULA_TO_NOT_HAVE = {
    "아닙니다": "없습니다",
    "아니었습니다": "없었습니다",
    "아니에요": "없어요",
    "아니었어요": "없었어요",
}
_COPULA_TO_NOT_HAVE |= {"아니다": "없다", "아니었다": "없었다", "아니야": "없어"}
# Nouns that are not negated with 아니다: bound nouns of modality (할 것이다 = will do) ...
_COPULA_EXCLUDED = frozenset(["것", "거", "게", "수", "셈", "터", "뿐", "따름", "전망", "모양", "듯", "법", "방침"])
# ... and -이다 verbs (보이다, 줄이다) that look like a noun + 이다.
_COPULA_VERB_ENDINGS = (
    "보", "줄", "높", "먹", "속", "죽", "붙", "끓", "쌓", "놓", "쓰", "모", "섞", "묶", "꺾", "깎", "덮", "녹", "숙",
    "늘", "절", "졸", "삭", "벌", "기울", "움직", "반짝", "망설", "끄덕", "속삭", "들", "맞", "아니", "하", "되",
)  # fmt: skip
# Plans after a modifier are negated with 없다: 지원할 계획이다 -> 지원할 계획이 없다.
_PLAN_NOUNS = frozenset(["계획", "예정", "생각", "의향"])


def _lexicon(lemmas: Iterable[str], adjective: bool) -> list[Predicate]:
    return [Predicate.parse(lemma, adjective) for lemma in lemmas]


def _surface_index(predicates: Iterable[Predicate], keys: Iterable[str]) -> dict[str, list[tuple[Predicate, str]]]:
    index: dict[str, list[tuple[Predicate, str]]] = {}
    keys = tuple(keys)
    for predicate in predicates:
        for key in keys:
            surface = predicate.form(key)
            if surface is not None:
                index.setdefault(surface, []).append((predicate, key))
    return index


_NEGATION_INDEX = _surface_index(
    [*_lexicon(_NEGATION_LEXICON_ADJECTIVES, True), *_lexicon(_NEGATION_LEXICON_VERBS, False)],
    [k for k in FINAL_KEYS if k != "a"],
)
_NEGATION_INDEX_CASUAL = _surface_index(_lexicon(_NEGATION_LEXICON_ADJECTIVES, True), ["a"])


def _negate_ha(word: str, before: _Word | None = None) -> set[str]:
    """X하다 / X되다 predicates: 추천합니다 -> 추천하지 않습니다, 확대된다 -> 확대되지 않는다."""
    normalised = word.replace("하였", "했").replace("되었", "됐")
    results = set()
    for cut in range(1, len(normalised)):
        noun = normalised[:cut]
        if noun in _HA_EXCLUDED or noun.endswith(_HA_EXCLUDED_ENDINGS) or not _is_hangul(noun):
            continue
        for auxiliary in ("하", "되"):
            for adjective in (True, False):
                predicate = Predicate(noun + auxiliary, adjective)
                for key in _HA_KEYS:
                    if predicate.form(key) == normalised:
                        results.add(predicate.negated(key))
    return results


def _negate_regular(word: str, before: _Word | None = None) -> set[str]:
    """Consonant-final regular stems: 좋았습니다 -> 좋지 않았습니다, 받는다 -> 받지 않는다."""
    results = set()
    for cut in range(1, len(word)):
        stem = word[:cut]
        compound_exist = stem in ("맛있", "재미있", "멋있")
        if stem in _REGULAR_EXCLUDED or stem.endswith(("없", "않")):
            continue
        if _final(stem[-1]) in (_NONE, _N, _SS) and not compound_exist:
            continue
        for adjective in (True, False):
            predicate = Predicate(stem, adjective)
            for key in _REGULAR_KEYS:
                if predicate.form(key) == word:
                    results.add(predicate.negated(key))
    return results


def _negate_lexicon(word: str, before: _Word | None = None) -> set[str]:
    """Listed vowel-stem and irregular predicates: 가까워요 -> 가깝지 않아요, 갔어요 -> 가지 않았어요."""
    matches = _NEGATION_INDEX.get(word, []) + _NEGATION_INDEX_CASUAL.get(word, [])
    return {predicate.negated(key) for predicate, key in matches}


def _negate_exist(word: str, before: _Word | None) -> set[str]:
    """있다 <-> 없다 after a subject or 수 (갈 수 있다 -> 갈 수 없다); 하고 있다 -> 하고 있지 않다."""
    results = set()
    for stem, other in (("있", "없"), ("없", "있")):
        if not word.startswith(stem):
            continue
        predicate = Predicate(stem, adjective=True)
        for key in _REGULAR_KEYS:
            if predicate.form(key) != word or before is None or before.trail:
                continue
            subject = before.core.endswith(_SUBJECT_PARTICLES) and before.core not in _NOT_SUBJECTS
            if before.core == "수" or (subject and not (stem == "없" and before.core in _IDIOMS_WITH_EOPDA)):
                results.add(other + word[1:])
            elif stem == "있" and before.core.endswith(("고", "어", "아", "여", "져", "해", "돼")):
                results.add(predicate.negated(key))
    return results


def _negate_liking(word: str, before: _Word | None) -> set[str]:
    """마음에 들다 (to like), the one reading of 들었다 that is certain: 마음에 들었어요 -> 마음에 들지 않았어요."""
    if before is None or before.core not in ("마음에", "맘에"):
        return set()
    like = Predicate("들", adjective=False)
    return {like.negated(key) for key in _REGULAR_KEYS if like.form(key) == word}


def _negate_copula(word: str, before: _Word | None) -> set[str]:
    """Noun + 이다 -> 아니다: 숙소입니다 -> 숙소가 아닙니다; after a modifier 할 계획이다 -> 할 계획이 없다."""
    for ending, consonant, negated in _COPULA_ENDINGS:
        if not word.endswith(ending):
            continue
        noun = word[: -len(ending)]
        if not noun or not _is_syllable(noun[-1]) or not re.fullmatch(r"[가-힣0-9]+", noun):
            return set()
        noun_consonant = _final(noun[-1]) != _NONE
        if consonant is not None and consonant != noun_consonant:
            continue
        if noun in _COPULA_EXCLUDED or noun.endswith(_COPULA_VERB_ENDINGS) or noun.endswith(("것", "거")):
            return set()
        if ending in ("였습니다", "였어요", "였다", "에요") and noun.endswith("이"):
            return set()  # 이였다 / 이에요 misspelled: the noun is not certain
        particle = "이" if noun_consonant else "가"
        after_modifier = before is not None and bool(before.core) and _final(before.core[-1]) == _L
        if noun in _PLAN_NOUNS and after_modifier:
            return {f"{noun}{particle} {_COPULA_TO_NOT_HAVE[negated]}"}
        return {f"{noun}{particle} {negated}"}
    return set()


NEGATION_RULES: dict[str, Callable[[str, _Word | None], set[str]]] = {
    "하다/되다": _negate_ha,
    "lexicon": _negate_lexicon,
    "regular stem": _negate_regular,
    "있다/없다": _negate_exist,
    "마음에 들다": _negate_liking,
    "이다": _negate_copula,
}


def negate(sentence: str) -> tuple[str, str] | None:
    """Negates the sentence-final predicate; returns (rewritten sentence, rule) or None when unsure."""
    tokens = _tokens(sentence)
    if not tokens:
        return None
    words = [_Word.of(t) for t in tokens]
    last = words[-1]
    if not _is_hangul(last.core) or last.lead or _is_question_or_request(sentence, words):
        return None
    if any(w.core in _NEGATIVE_WORDS or any(p in w.core for p in _NEGATIVE_PARTS) for w in words[:-1]):
        return None
    if "어쩔 수" in sentence or "수밖에" in sentence:
        return None  # 어쩔 수 없다 (= cannot be helped) has no positive
    before = words[-2] if len(words) > 1 else None
    if before is not None and before.core.endswith(("다고", "라고", "냐고", "자고", "다며", "라며")):
        return None  # a reported statement: negating the reporting verb is not the contrast we want
    if before is not None and before.core in _NO_NEGATION_ADVERBS:
        return None  # 좀 멀지 않았다, 이미 예약하지 않았다: unidiomatic
    outcomes = {}
    for rule, apply in NEGATION_RULES.items():
        for rewritten in apply(last.core, before):
            outcomes.setdefault(rewritten, rule)
    if len(outcomes) != 1:
        return None
    (rewritten, rule), *_ = outcomes.items()
    return _with_token(tokens, len(tokens) - 1, last.replaced(rewritten)), rule


# ---------------------------------------------------------------------------------------------
# Antonyms
# ---------------------------------------------------------------------------------------------

# Swapped forms unless a pair says otherwise: not the casual -아/어 (좋아, 커: also connectives and
# 꺼 = 것) and not a verb's past modifier (연, 끈, 운, 민 are also nouns); pairs that are safe add them.
_DEFAULT_KEYS = tuple(k for k in FORM_KEYS if k not in ("a", "mod_past"))
_PREDICATE_KEYS = tuple(k for k in FINAL_KEYS if k != "a") + ("go", "jiman", "aseo", "myeon")


@dataclass(frozen=True)
class AntonymPair:
    """Two predicates with opposite meanings, swapped in the same inflected form.

    Args:
        first, second: lemmas, ``"가깝다:ㅂ"`` for an ㅂ irregular and ``"빠르다:르"`` for a 르 one.
        adjective: part of speech of each side (an adjective may pair with a verb: 한산하다/붐비다).
        keys: the forms that are swapped (:data:`FORM_KEYS`); others are ambiguous or unidiomatic.
        one_way: only ``first`` -> ``second`` (지다 is also "to bear"; 내리다 also "to get off").
        needs_subject: sides (``"first"``, ``"second"``) recognised only right after a subject
            particle (싸다 is also "to pack", 적다 also "to write down").
        after: when given, the word before must start with one of these (문을 열다 opens a door,
            회의를 열다 holds a meeting, which has no 닫다).
    """

    first: str
    second: str
    adjective: tuple[bool, bool] = (True, True)
    keys: tuple[str, ...] = _DEFAULT_KEYS
    one_way: bool = False
    needs_subject: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


def _adjectives(*pairs: tuple[str, str], **options) -> list[AntonymPair]:
    return [AntonymPair(a, b, **options) for a, b in pairs]


def _verbs(*pairs: tuple[str, str], **options) -> list[AntonymPair]:
    return [AntonymPair(a, b, adjective=(False, False), **options) for a, b in pairs]


_VERB = (False, False)
_OPENINGS = ("문", "창문", "창", "현관", "가게", "매장", "상점", "식당", "마트", "뚜껑", "커튼", "서랍", "금고")
ANTONYM_PREDICATES: list[AntonymPair] = [
    *_adjectives(
        ("넓다", "좁다"),
        ("높다", "낮다"),
        ("길다", "짧다"),
        ("깊다", "얕다"),
        ("두껍다:ㅂ", "얇다"),
        ("무겁다:ㅂ", "가볍다:ㅂ"),
        ("쉽다:ㅂ", "어렵다:ㅂ"),
        ("덥다:ㅂ", "춥다:ㅂ"),
        ("뜨겁다:ㅂ", "차갑다:ㅂ"),
        ("밝다", "어둡다:ㅂ"),
        ("가깝다:ㅂ", "멀다"),
        ("빠르다:르", "느리다"),
        ("맛있다", "맛없다"),
        ("재미있다", "재미없다"),
        ("깨끗하다", "더럽다:ㅂ"),
        ("깔끔하다", "지저분하다"),
        ("조용하다", "시끄럽다:ㅂ"),
        ("좋다", "나쁘다"),
        ("기쁘다", "슬프다"),
        ("맑다", "흐리다"),
        ("즐겁다:ㅂ", "괴롭다:ㅂ"),
        ("부드럽다:ㅂ", "거칠다"),
        ("푹신하다", "딱딱하다"),
        ("바쁘다", "한가하다"),
        ("뚱뚱하다", "날씬하다"),
        ("건조하다", "습하다"),
        ("배부르다:르", "배고프다"),
        ("만족스럽다:ㅂ", "불만스럽다:ㅂ"),
        ("익숙하다", "낯설다"),
    ),
    AntonymPair("크다", "작다", keys=_PREDICATE_KEYS + ("mod",)),  # not 크게 (= greatly) or 커서 (= grew up)
    AntonymPair("많다", "적다", keys=_PREDICATE_KEYS, needs_subject=("second",)),  # 적은 사람 is unidiomatic
    AntonymPair("비슷하다", "다르다:르", keys=_PREDICATE_KEYS + ("ge",)),  # 다른 = other
    AntonymPair("굵다", "가늘다", keys=_PREDICATE_KEYS + ("ge",)),  # 가는 = going
    AntonymPair("따뜻하다", "차갑다:ㅂ", one_way=True),
    AntonymPair("튼튼하다", "약하다", one_way=True),
    AntonymPair("비싸다", "싸다", needs_subject=("second",)),
    AntonymPair("짜다", "싱겁다:ㅂ", needs_subject=("first",)),
    AntonymPair("한산하다", "붐비다", adjective=(True, False)),
    *_verbs(
        ("늘리다", "줄이다"),
        ("높이다", "낮추다"),
        ("입다", "벗다"),
        ("얻다", "잃다"),
        ("채우다", "비우다"),
        ("좋아하다", "싫어하다"),
        ("시작되다", "끝나다"),
        ("늘어나다", "줄어들다"),
        ("좋아지다", "나빠지다"),
        ("커지다", "작아지다"),
        ("넓어지다", "좁아지다"),
        ("많아지다", "적어지다"),
        ("높아지다", "낮아지다"),
        ("길어지다", "짧아지다"),
        ("빨라지다", "느려지다"),
        ("밝아지다", "어두워지다"),
        ("쉬워지다", "어려워지다"),
        keys=_DEFAULT_KEYS + ("mod_past",),
    ),
    *_verbs(("켜다", "끄다"), ("웃다", "울다"), ("밀다", "당기다")),
    *_verbs(("열다", "닫다"), ("열리다", "닫히다"), after=_OPENINGS),
    AntonymPair("켜다", "끄다", adjective=_VERB, keys=("a",), one_way=True),  # 불 켜 줘 -> 불 꺼 줘
    AntonymPair("이기다", "지다", adjective=_VERB, one_way=True),
    AntonymPair("올리다", "내리다", adjective=_VERB, keys=_DEFAULT_KEYS + ("mod_past",), one_way=True),
    AntonymPair("오르다:르", "내리다", adjective=_VERB, one_way=True, needs_subject=("first",)),
    AntonymPair("늘다", "줄다", adjective=_VERB, keys=("ayo", "past_da", "past_seumnida", "past_ayo", "go")),
    AntonymPair("사다", "팔다", adjective=_VERB, keys=("ayo", "past_da", "past_seumnida", "past_ayo")),
]


@dataclass(frozen=True)
class AntonymNoun:
    """Two Sino-Korean (or loan) roots, swapped with their 하다/되다 ending or particle.

    ``tails``: ``"verb"`` swaps only before 하다/되다 (인상 is also "impression"), ``"noun"``
    only before particles (최대한 is "as much as possible"), ``"all"`` both;
    ``excluded_tails``: endings that make the swap unidiomatic.
    """

    first: str
    second: str
    tails: str = "all"
    one_way: bool = False
    excluded_tails: tuple[str, ...] = ()


ANTONYM_NOUNS: list[AntonymNoun] = [
    *(
        AntonymNoun(a, b)
        for a, b in (
            ("증가", "감소"),
            ("상승", "하락"),
            ("확대", "축소"),
            ("강화", "약화"),
            ("흑자", "적자"),
            ("호황", "불황"),
            ("입금", "출금"),
            ("출국", "입국"),
            ("가입", "탈퇴"),
            ("합격", "불합격"),
            ("승리", "패배"),
            ("성공", "실패"),
            ("허용", "금지"),
            ("상향", "하향"),
            ("급증", "급감"),
            ("증액", "감액"),
            ("증원", "감원"),
            ("장점", "단점"),
            ("이익", "손해"),
            ("참석", "불참"),
            ("출근", "퇴근"),
            ("승차", "하차"),
            ("입실", "퇴실"),
            ("체크인", "체크아웃"),
            ("긍정적", "부정적"),
            ("낙관적", "비관적"),
            ("적극적", "소극적"),
            ("강세", "약세"),
            ("개장", "폐장"),
            ("개점", "폐점"),
            ("친절", "불친절"),
            ("청결", "불결"),
            ("만족", "불만족"),
            ("행복", "불행"),
        )
    ),
    *(
        AntonymNoun(a, b, tails="verb")
        for a, b in (
            ("인상", "인하"),
            ("찬성", "반대"),
            ("포함", "제외"),
            ("입장", "퇴장"),
            ("편리", "불편"),
            ("안전", "위험"),
            ("충분", "부족"),
            ("정확", "부정확"),
            ("공정", "불공정"),
            ("유리", "불리"),
            ("강", "약"),
            ("간단", "복잡"),
            ("부유", "가난"),
        )
    ),
    AntonymNoun("편", "불편", tails="verb", one_way=True),
    # 규제 완화 -> 규제 강화 (강화 itself pairs with 약화); 필요할 때 and 가능한 빨리 (= as soon as possible) stay.
    AntonymNoun("완화", "강화", one_way=True),
    AntonymNoun("필요", "불필요", tails="verb", excluded_tails=("할",)),
    AntonymNoun("가능", "불가능", tails="verb", excluded_tails=("한",)),
    AntonymNoun("최대", "최소", tails="noun"),
]
ANTONYM_ADVERBS: list[tuple[str, str]] = [("일찍", "늦게"), ("빨리", "천천히")]

_VERB_TAIL_STARTS = ("하", "한", "할", "함", "합", "해", "했", "되", "된", "될", "됨", "됩", "돼", "됐")
_DERIVED_TAILS = ("세", "폭")  # 증가세, 인상폭
_COPULA_TAILS = frozenset(["인", "이다", "입니다", "이고", "이며", "이었다", "이었습니다", "이에요", "이었어요"])


@dataclass(frozen=True)
class _Swap:
    """One surface form's antonym and the context it needs."""

    target: str
    stem: str  # the antonym's stem: a sentence that already holds it is left alone
    needs_subject: bool = False
    after: tuple[str, ...] = ()

    def fits(self, words: list[_Word], index: int) -> bool:
        if self.needs_subject and not _has_subject_before(words, index):
            return False
        return not self.after or (index > 0 and words[index - 1].core.startswith(self.after))


# 하루라도 빨리, 최대한 빨리 (= as soon as possible): 천천히 would not be the opposite.
_ANTONYM_BLOCKED_AFTER = {"빨리": ("하루라도", "한시라도", "최대한", "가능한", "되도록", "조속히")}


def _build_antonym_index() -> dict[str, _Swap]:
    """Surface form -> its swap; surfaces that two pairs would swap differently are dropped."""
    index: dict[str, _Swap] = {}
    clashes: set[str] = set()

    def add(source: str, swap: _Swap) -> None:
        if source in index and index[source].target != swap.target:
            clashes.add(source)
        index.setdefault(source, swap)

    for pair in ANTONYM_PREDICATES:
        first = Predicate.parse(pair.first, pair.adjective[0])
        second = Predicate.parse(pair.second, pair.adjective[1])
        directions = [(first, second, "first")] + ([] if pair.one_way else [(second, first, "second")])
        for source, target, side in directions:
            stem = target.stem.removesuffix("하")
            for key in pair.keys:
                source_form, target_form = source.form(key), target.form(key)
                if source_form and target_form:
                    add(source_form, _Swap(target_form, stem, side in pair.needs_subject, pair.after))
    for source, target in ANTONYM_ADVERBS:
        add(source, _Swap(target, target))
        add(target, _Swap(source, source))
    for surface in clashes:
        del index[surface]
    return index


_ANTONYM_INDEX = _build_antonym_index()
_NOUN_ROOTS: dict[str, list[tuple[str, AntonymNoun]]] = {}
for _pair in ANTONYM_NOUNS:
    _NOUN_ROOTS.setdefault(_pair.first, []).append((_pair.second, _pair))
    if not _pair.one_way:
        _NOUN_ROOTS.setdefault(_pair.second, []).append((_pair.first, _pair))


def _swap_noun(word: str) -> tuple[str, str] | None:
    """증가했다 -> (감소했다, 감소), 인상폭 -> (인하폭, 인하); None if the word is not a listed root."""
    candidates = set()
    for cut in range(len(word), 0, -1):
        root, tail = word[:cut], word[cut:]
        for target, pair in _NOUN_ROOTS.get(root, []):
            tails = pair.tails
            if pair.excluded_tails and tail.startswith(pair.excluded_tails):
                continue
            verb_tail = tail.startswith(_VERB_TAIL_STARTS)
            derived = tail.startswith(_DERIVED_TAILS) and tail[1:] in _NOUN_TAILS
            same_final = (_final(root[-1]) == _NONE) == (_final(target[-1]) == _NONE)
            copula = tail in _COPULA_TAILS and same_final
            noun_tail = (tail in _NOUN_TAILS and tail != "도") or derived or copula  # 청결도, 만족도: nouns
            if (tails in ("verb", "all") and verb_tail) or (tails in ("noun", "all") and noun_tail):
                new_tail = tail if verb_tail or derived or copula else _particle_form(target, tail)
                candidates.add((target + new_tail, target))
    return candidates.pop() if len(candidates) == 1 else None


def swap_antonym(sentence: str) -> str | None:
    """Replaces the last word found in the antonym dictionaries by its antonym, same form.

    Skips a word whose antonym the sentence already holds (장점과 단점 -> 장점과 장점).
    """
    tokens = _tokens(sentence)
    words = [_Word.of(t) for t in tokens]
    for index in range(len(words) - 1, -1, -1):
        word = words[index]
        if index > 0 and words[index - 1].core in _NEGATIVE_WORDS + ("덜", "별로"):
            continue
        if index + 1 < len(words) and words[index + 1].core.startswith(("않", "못")):
            continue
        if index > 0 and words[index - 1].core in _ANTONYM_BLOCKED_AFTER.get(word.core, ("얼마나", "얼마만큼")):
            continue  # 얼마나 필요해 (= how much do you need) has no 불필요 counterpart
        if index > 0 and re.fullmatch(r".*\d.*에", words[index - 1].core):
            continue  # 6층에 가까운 (= nearly six floors), 100%에 가깝다: an amount, not a distance
        swap = _ANTONYM_INDEX.get(word.core)
        found = (swap.target, swap.stem) if swap is not None and swap.fits(words, index) else None
        found = found or _swap_noun(word.core)
        if found is not None:
            others = " ".join(tokens[:index] + tokens[index + 1 :])
            if found[1] in others:
                continue
            return _with_token(tokens, index, word.replaced(found[0]))
    return None


# ---------------------------------------------------------------------------------------------
# Numbers, times, places
# ---------------------------------------------------------------------------------------------

_NATIVE_NUMERALS = ("한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열")
_NATIVE_COUNTERS = (
    "명", "개", "번", "잔", "시간", "시", "살", "장", "권", "마리", "곳", "가지", "달", "대", "벌", "켤레", "그릇",
    "병", "박", "사람", "군데", "층", "정거장", "정류장",
)  # fmt: skip
_WEEKDAYS = ("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일")
_SWAPS = {"오전": "오후", "오후": "오전", "내일": "모레", "모레": "내일"}
# Counters with a natural range for the new value, longest prefix first; None: no range (세대 = generation).
_RANGES: dict[str, tuple[int, int] | None] = {
    "분기": (1, 4), "세대": None, "학년": (1, 6), "시": (1, 23), "월": (1, 12), "박": (1, 7), "일": (1, 31),
    "층": (1, 20), "살": (1, 99), "세": (1, 99),
}  # fmt: skip
_LARGE_UNITS = ("천", "만", "억", "조")  # 6651억 -> 1조 9953억 would need a rewrite; keep below 10000
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def _unit_range(unit: str) -> tuple[int, int] | None:
    for prefix, bounds in _RANGES.items():
        if unit.startswith(prefix):
            return bounds
    return None


def _new_value(text: str, unit: str, rng: random.Random) -> str | None:
    """A different, plausible value for the number ``text`` followed by ``unit``."""
    value = float(text.replace(",", ""))
    decimals = len(text.split(".")[1]) if "." in text else 0
    if decimals:
        options = [value * 2, value / 2, value + 1] + ([value - 1] if value > 1 else [])
    elif unit.startswith("년") and 1900 <= value <= 2099:
        options = [value + d for d in (-3, -2, -1, 1, 2, 3)]
    elif (bounds := _unit_range(unit)) and value == int(value) and bounds[0] <= value <= bounds[1]:
        low, high = bounds
        if unit.startswith("시"):  # keep the half of the day: 3시 -> 9시, 15시 -> 20시
            low, high = (1, 12) if value <= 12 else (13, 23)
        if unit.startswith("일"):
            high = 28  # every month has a 28th
        options = list(range(low, high + 1))
    elif value <= 10:
        options = list(range(1, 11))
    else:
        options = [value * 2, value * 3, value / 2, value * 5, value / 5, value * 10]
        options = [v for v in options if v == int(v)]
    if unit.startswith("%"):
        options = [v for v in options if 0 < v <= 100]
    if unit.startswith(_LARGE_UNITS):
        options = [v for v in options if v < 10000]
    if unit.startswith(("대", "배")):
        options = [v for v in options if v != 1]  # 3대 신산업 (three major ...), 2배: 1대, 1배 are not idiomatic
    options = [v for v in options if v != value and v > 0]
    if not options:
        return None
    new = rng.choice(options)
    if decimals:
        return f"{new:.{decimals}f}"
    return f"{int(new):,}" if "," in text else str(int(new))


def change_number(sentence: str, rng: random.Random) -> str | None:
    """Changes one number, native numeral, 오전/오후, 내일/모레 or weekday; None if none is safe to change."""
    tokens = _tokens(sentence)
    words = [_Word.of(t) for t in tokens]
    options: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        core = word.core
        ordinal = index > 0 and words[index - 1].core == "제"  # 제 3자 (= third party), 제 2의
        for match in _NUMBER.finditer(core if not ordinal else ""):
            before, after = core[: match.start()], core[match.end() :]
            if before or not after or not (_is_syllable(after[0]) or after[0] == "%") or re.search(r"\d", after):
                continue  # part of an identifier, a range, a date or a time: KF94, 3~5명, 2021.3.5, 10:30, 3박4일
            next_days = after.startswith("박") and index + 1 < len(words) and re.match(r"\d+일", words[index + 1].core)
            last_nights = after.startswith("일") and index > 0 and re.fullmatch(r"\d+박", words[index - 1].core)
            if next_days or last_nights:
                continue  # 3박 4일: the nights and days must change together
            new = _new_value(match.group(), after, rng)
            if new is not None:
                options.append((index, core[: match.start()] + new + core[match.end() :]))
        if core in _NATIVE_NUMERALS and index + 1 < len(words) and not word.trail:
            following = words[index + 1].core
            not_even_one = core == "한" and (
                following.startswith("번") or following.endswith("도") or "단 한" in sentence
            )
            if following.startswith(_NATIVE_COUNTERS) and not not_even_one:  # 한 번 (= once, try), 단 한 명도
                others = [n for n in _NATIVE_NUMERALS if n != core]
                options.append((index, rng.choice(others)))
        for source, target in _SWAPS.items():
            tail = core[len(source) :]
            if core.startswith(source) and (tail in _NOUN_TAILS or tail == "중") and target not in sentence:
                options.append((index, target + _particle_form(target, tail)))
        for day in _WEEKDAYS:
            if core.startswith(day) and core[len(day) :] in _NOUN_TAILS:
                others = [d for d in _WEEKDAYS if d not in sentence]  # 토요일과 일요일 -> not 토요일과 토요일
                if others:
                    options.append((index, rng.choice(others) + core[len(day) :]))
    if not options:
        return None
    index, replacement = rng.choice(options)
    return _with_token(tokens, index, words[index].replaced(replacement))


CITIES = (
    "서울", "부산", "대구", "인천", "광주", "대전", "울산", "수원", "제주", "강릉", "여수", "속초", "춘천", "포항",
    "창원", "목포", "안동", "군산",
)  # fmt: skip
_CITY_TAILS = _NOUN_TAILS | {
    "시",
    "시는",
    "시가",
    "시의",
    "시에서",
    "역",
    "역에서",
    "역까지",
    "행",
    "에서는",
    "으로",
    "로",
}


# A bare city name is swapped only before a common noun (서울 날씨, 부산 지역), never before a
# word that may name a district or landmark of that city (서울 여의도, 대전 대덕구).
_CITY_GENERIC_NEXT = (
    "지역", "날씨", "시내", "시민", "도심", "시청", "강수량", "기온", "미세먼지", "대기질", "불쾌지수", "일출",
    "일몰", "여행", "출장", "공급", "집값", "아파트", "주택", "인구", "시장", "공항", "방문", "가는", "가려면",
)  # fmt: skip


# Interchangeable names of one kind; a name is matched as a whole word plus a particle, or bare
# before another word (미국 정부, 엄마 생일), never inside a longer word (한국어, 딸기).
ENTITY_GROUPS = (
    ("한국", "미국", "일본", "중국", "영국", "프랑스", "독일", "러시아", "베트남", "태국", "캐나다", "호주"),
    ("엄마", "아빠", "어머니", "아버지", "할머니", "할아버지", "언니", "오빠", "누나", "남동생", "여동생"),
    ("네이버", "카카오", "구글", "쿠팡", "삼성", "애플", "네이트", "유튜브", "넷플릭스"),
)  # fmt: skip


def _city_options(words: list[_Word]) -> list[tuple[int, str, str, tuple[str, ...]]]:
    options = []
    for index, word in enumerate(words):
        for city in CITIES:
            tail = word.core[len(city) :]
            if not word.core.startswith(city) or tail not in _CITY_TAILS or (city == "제주" and tail.startswith("도")):
                continue
            following = words[index + 1].core if index + 1 < len(words) else ""
            if not tail and not following.startswith(_CITY_GENERIC_NEXT):
                continue  # 서울 여의도, 서울 동대문, 대구 경북: the next word may be a place in or beside the city
            options.append((index, city, tail, CITIES))
    return options


def _lexicon_options(
    words: list[_Word], groups: Iterable[tuple[str, ...]], tails: frozenset[str] = _NOUN_TAILS
) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(index, name, particle, its group) for each word that is a group's name plus one of ``tails``."""
    options = []
    for index, word in enumerate(words):
        for group in groups:
            for name in group:
                tail = word.core[len(name) :]
                if not word.core.startswith(name) or tail not in tails:
                    continue
                if not tail and (index + 1 == len(words) or word.trail):
                    continue  # a bare name must lead into the next word
                options.append((index, name, tail, group))
    return options


def _replace_option(
    sentence: str,
    tokens: list[str],
    words: list[_Word],
    options: list[tuple[int, str, str, tuple[str, ...]]],
    rng: random.Random,
) -> str | None:
    """Replaces one option's name by another of its group that the sentence does not hold."""
    options = [option for option in options if sentence.count(option[1]) == 1]  # 대구 ... 대구에서: all or none
    if not options:
        return None
    index, name, tail, group = rng.choice(options)
    others = [other for other in group if other != name and other not in sentence]
    if not others:
        return None
    target = rng.choice(others)
    new_tail = tail if tail[:1] in ("시", "역", "행") else _particle_form(target, tail)
    return _with_token(tokens, index, words[index].replaced(target + new_tail))


def swap_entity(sentence: str, rng: random.Random) -> str | None:
    """Replaces one city, country, family member or company by another the sentence does not mention."""
    tokens = _tokens(sentence)
    words = [_Word.of(t) for t in tokens]
    return _replace_option(sentence, tokens, words, _city_options(words) + _lexicon_options(words, ENTITY_GROUPS), rng)


# People and organisations that can do something to one another; a role swap needs two of them.
AGENTS = (
    "호스트", "게스트", "손님", "고객", "직원", "사장님", "주인", "집주인", "정부", "국민", "시민", "주민", "기업",
    "회사", "학생", "선생님", "교사", "부모", "아이", "엄마", "아빠", "남편", "아내", "친구", "의사", "환자",
    "경찰", "판매자", "구매자", "소비자", "근로자", "노동자", "사업주", "국회", "대통령", "장관", "지자체", "청년",
    "남자", "여자", "남성", "여성", "소년", "소녀", "아기", "사람", "고양이", "강아지", "선수", "감독",
)  # fmt: skip
_AGENT_SUBJECT_TAILS = frozenset(["이", "가", "은", "는"])
_AGENT_OBJECT_TAILS = frozenset(["을", "를", "에게", "한테", "에게서", "한테서"])
_ROLE_MAX_DISTANCE = 3  # 호스트는 총 세 번 손님을: further apart, the object may belong to another clause


def swap_roles(sentence: str) -> str | None:
    """Swaps a subject and a later object or recipient when both are people or organisations.

    ``호스트가 게스트에게 환불을 요청했어요`` -> ``게스트가 호스트에게 환불을 요청했어요``; each
    noun keeps its position's particle in the form that fits it (``정부가 국민을`` -> ``국민이 정부를``).
    """
    tokens = _tokens(sentence)
    words = [_Word.of(t) for t in tokens]
    subjects = _lexicon_options(words, [AGENTS], _AGENT_SUBJECT_TAILS)
    objects = _lexicon_options(words, [AGENTS], _AGENT_OBJECT_TAILS)
    for s_index, subject, s_tail, _ in subjects:
        for o_index, obj, o_tail, _ in objects:
            if not 0 < o_index - s_index <= _ROLE_MAX_DISTANCE or subject == obj:
                continue
            if any(w.trail for w in words[s_index:o_index]) or words[o_index - 1].core.endswith("의"):
                continue  # a comma between them, or the object is a modifier's (확진 환자를 위한)
            swapped = list(tokens)
            swapped[s_index] = words[s_index].replaced(obj + _particle_form(obj, s_tail))
            swapped[o_index] = words[o_index].replaced(subject + _particle_form(subject, o_tail))
            return " ".join(swapped)
    return None


# Question words that ask for different things; each stands alone as an adverb.
QUESTION_WORDS = ("언제", "어디서", "어떻게", "왜", "얼마나")
# Service nouns by domain: replacing one by another of its domain asks for something else on the
# same topic. Names in one tuple are synonyms and never replace one another.
INTENT_DOMAINS = (
    (("환불",), ("배송",), ("교환",), ("반품",), ("결제",), ("주문",), ("할인",), ("재입고",)),
    (("체크인", "입실"), ("체크아웃", "퇴실"), ("주차", "주차장"), ("조식",), ("와이파이",), ("수영장",)),
    (("가격", "요금", "비용"), ("위치", "장소"), ("시간",), ("방법",), ("기간",), ("절차",), ("조건",), ("대상",)),
    (("가입",), ("탈퇴",), ("로그인",), ("비밀번호",)),
    (("입금",), ("출금",), ("이체",), ("잔액",), ("대출",), ("적금",)),
)  # fmt: skip


def change_intent(sentence: str, rng: random.Random) -> str | None:
    """Asks for something else on the same topic: another question word or another service noun.

    Only questions and requests are changed: in a statement, ``시간`` -> ``가격`` rarely reads as
    another intent.
    """
    tokens = _tokens(sentence)
    words = [_Word.of(t) for t in tokens]
    if not _is_question_or_request(sentence, words):
        return None
    options: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        if word.core in QUESTION_WORDS:
            options += [(index, other) for other in QUESTION_WORDS if other != word.core and other not in sentence]
    for domain in INTENT_DOMAINS:
        for index, name, tail, synonyms in _lexicon_options(words, domain):
            if sentence.count(name) != 1:
                continue
            others = [group[0] for group in domain if group is not synonyms and group[0] not in sentence]
            options += [(index, other + _particle_form(other, tail)) for other in others]
    if not options:
        return None
    index, replacement = rng.choice(options)
    return _with_token(tokens, index, words[index].replaced(replacement))


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _rng(seed: int, kind: str, sentence: str) -> random.Random:
    """A generator that depends only on the seed and the sentence, not on the order of the file."""
    return random.Random(f"{seed}:{kind}:{sentence}")


def unique_sentences(pairs: pd.DataFrame, name: str) -> list[tuple[str, str]]:
    """(sentence, where it first occurs) for every distinct sentence of a pair file, in file order."""
    seen: dict[str, str] = {}
    for location, first, second in zip(pairs["location"], pairs["sentence1"], pairs["sentence2"]):
        for column, sentence in zip(SENTENCE_COLUMNS, (first, second)):
            seen.setdefault(sentence.strip(), f"{name} {location} {column}")
    return list(seen.items())


def generate(sentences: list[tuple[str, str]], seed: int) -> dict[str, list[dict]]:
    """Every rewrite each rule makes, per kind, as output records; logs how often each rule applied."""
    found: dict[str, list[dict]] = {kind: [] for kind in KIND_LABELS}
    negation_rules: Counter[str] = Counter()
    for sentence, location in sentences:
        rewrites: dict[str, str | None] = {
            "antonym": swap_antonym(sentence),
            "number": change_number(sentence, _rng(seed, "number", sentence)),
            "entity": swap_entity(sentence, _rng(seed, "entity", sentence)),
            "role": swap_roles(sentence),
            "intent": change_intent(sentence, _rng(seed, "intent", sentence)),
        }
        negated = negate(sentence)
        rewrites["negation"] = negated[0] if negated else None
        if negated:
            negation_rules[negated[1]] += 1
        for kind, rewritten in rewrites.items():
            if rewritten is not None and rewritten != sentence:
                record = {"sentence1": sentence, "sentence2": rewritten, "label": KIND_LABELS[kind], "kind": kind}
                found[kind].append(record | {"source_location": location})
    for kind, records in found.items():
        logger.info("%s: applied to %d of %d sentences", kind, len(records), len(sentences))
    logger.info("negation by rule: %s", ", ".join(f"{rule} {n}" for rule, n in negation_rules.most_common()))
    return found


def augment(
    pairs: pd.DataFrame,
    name: str,
    per_kind: int | None = None,
    seed: int = 13,
    exclude: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Hard-negative pairs from a pair file's sentences, at most ``per_kind`` of each kind.

    Args:
        exclude: pairs whose sentences must not be used, e.g. a held-out validation split, so
            that no evaluated sentence reaches training through its rewritten twin.

    Returns:
        ``sentence1`` (original), ``sentence2`` (rewritten), ``label``, ``kind``, ``source_location``;
        pairs that already occur in ``pairs`` (in either order) are left out.
    """
    sentences = unique_sentences(pairs, name)
    if exclude is not None:
        held_out = {s.strip() for column in SENTENCE_COLUMNS for s in exclude[column]}
        sentences = [(s, where) for s, where in sentences if s not in held_out]
        logger.info("left out %d sentences of the excluded pairs", len(held_out))
    found = generate(sentences, seed)
    existing = set(zip(pairs["sentence1"], pairs["sentence2"])) | set(zip(pairs["sentence2"], pairs["sentence1"]))
    chosen = []
    for kind, records in found.items():
        records = [r for r in records if (r["sentence1"], r["sentence2"]) not in existing]
        if per_kind is not None and len(records) > per_kind:
            keep = sorted(random.Random(f"{seed}:{kind}").sample(range(len(records)), per_kind))
            records = [records[i] for i in keep]
        chosen.extend(records)
        logger.info("%s: %d pairs written (label %.1f)", kind, len(records), KIND_LABELS[kind])
    return pd.DataFrame(chosen, columns=["sentence1", "sentence2", "label", "kind", "source_location"])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Command-line entry point; returns the written pairs."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="KLUE-STS-format pair file (.jsonl, .json, .csv, .tsv)")
    parser.add_argument("output", type=Path, help="JSON Lines file to write")
    parser.add_argument("--per-kind", type=int, default=500, help="most pairs of each kind (0: all)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--exclude", type=Path, help="pair file whose sentences are not used (a validation split)")
    args = parser.parse_args(argv)
    if args.per_kind < 0:
        parser.error("--per-kind must be 0 (all) or positive")
    pairs = read_pairs(args.input)
    exclude = read_pairs(args.exclude) if args.exclude else None
    frame = augment(pairs, args.input.name, args.per_kind or None, args.seed, exclude)
    write_pairs(frame, args.output)
    logger.info("wrote %d pairs to %s", len(frame), args.output)
    return frame


if __name__ == "__main__":
    main()
