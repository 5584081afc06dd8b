"""The hard-negative rules, one function each; every one returns the rewritten sentence, or None when unsure.

* :func:`negate`: the sentence-final predicate negated (``좋았어요`` -> ``좋지 않았어요``);
* :func:`swap_antonym`: one word replaced by its antonym in the same form (``넓어요`` -> ``좁아요``);
* :func:`change_number`: one number, counted amount, time of day or weekday changed;
* :func:`swap_entity`: one city, country, family member or company replaced by another;
* :func:`swap_roles`: subject and object (or recipient) swapped when both are people or organisations;
* :func:`change_intent`: in a question or request, another question word or service noun;
* :func:`negate_lexical`: a lexical opposite inside the sentence (``수 있는`` -> ``수 없는``,
  ``아는`` -> ``모르는``, ``가능한`` -> ``불가능한``, ``-면 돼요`` -> ``-면 안 돼요``).

Inflected forms come from :mod:`training.augment.hangul`, the content words from
:mod:`training.augment.wordlists`; the closed grammatical lists each rule needs (particles,
endings, stems it must not touch) are kept here, beside the rule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from training.augment.hangul import (
    FINAL_KEYS,
    FINAL_L,
    FINAL_N,
    FINAL_SS,
    FORM_KEYS,
    NO_FINAL,
    NOUN_TAILS,
    SUBJECT_PARTICLES,
    Predicate,
    Word,
    final_consonant,
    has_subject_before,
    is_hangul,
    is_question_or_request,
    is_syllable,
    particle_form,
    split_tokens,
    with_token,
)
from training.augment.wordlists import (
    AGENTS,
    ANTONYM_ADVERBS,
    ANTONYM_NOUNS,
    ANTONYM_PREDICATES,
    CITIES,
    CITY_NEXT_WORDS,
    ENTITY_GROUPS,
    INTENT_DOMAINS,
    NEGATION_ADJECTIVES,
    NEGATION_VERBS,
    QUESTION_WORDS,
    AntonymNoun,
    AntonymPair,
)

# ---------------------------------------------------------------------------------------------
# Negation
# ---------------------------------------------------------------------------------------------

_NEGATIVE_WORDS = ("안", "못", "안돼", "안됨", "못함")
_NEGATIVE_PARTS = ("않", "없", "아니", "못하", "모르", "말고", "말아", "마세요", "마십시오")
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
    [*_lexicon(NEGATION_ADJECTIVES, True), *_lexicon(NEGATION_VERBS, False)],
    [k for k in FINAL_KEYS if k != "a"],
)
_NEGATION_INDEX_CASUAL = _surface_index(_lexicon(NEGATION_ADJECTIVES, True), ["a"])


def _negate_ha(word: str, before: Word | None = None) -> set[str]:
    """X하다 / X되다 predicates: 추천합니다 -> 추천하지 않습니다, 확대된다 -> 확대되지 않는다."""
    normalised = word.replace("하였", "했").replace("되었", "됐")
    results = set()
    for cut in range(1, len(normalised)):
        noun = normalised[:cut]
        if noun in _HA_EXCLUDED or noun.endswith(_HA_EXCLUDED_ENDINGS) or not is_hangul(noun):
            continue
        for auxiliary in ("하", "되"):
            for adjective in (True, False):
                predicate = Predicate(noun + auxiliary, adjective)
                for key in _HA_KEYS:
                    if predicate.form(key) == normalised:
                        results.add(predicate.negated(key))
    return results


def _negate_regular(word: str, before: Word | None = None) -> set[str]:
    """Consonant-final regular stems: 좋았습니다 -> 좋지 않았습니다, 받는다 -> 받지 않는다."""
    results = set()
    for cut in range(1, len(word)):
        stem = word[:cut]
        compound_exist = stem in ("맛있", "재미있", "멋있")
        if stem in _REGULAR_EXCLUDED or stem.endswith(("없", "않")):
            continue
        if final_consonant(stem[-1]) in (NO_FINAL, FINAL_N, FINAL_SS) and not compound_exist:
            continue
        for adjective in (True, False):
            predicate = Predicate(stem, adjective)
            for key in _REGULAR_KEYS:
                if predicate.form(key) == word:
                    results.add(predicate.negated(key))
    return results


def _negate_lexicon(word: str, before: Word | None = None) -> set[str]:
    """Listed vowel-stem and irregular predicates: 가까워요 -> 가깝지 않아요, 갔어요 -> 가지 않았어요."""
    matches = _NEGATION_INDEX.get(word, []) + _NEGATION_INDEX_CASUAL.get(word, [])
    return {predicate.negated(key) for predicate, key in matches}


def _negate_exist(word: str, before: Word | None) -> set[str]:
    """있다 <-> 없다 after a subject or 수 (갈 수 있다 -> 갈 수 없다); 하고 있다 -> 하고 있지 않다."""
    results = set()
    for stem, other in (("있", "없"), ("없", "있")):
        if not word.startswith(stem):
            continue
        predicate = Predicate(stem, adjective=True)
        for key in _REGULAR_KEYS:
            if predicate.form(key) != word or before is None or before.trail:
                continue
            subject = before.core.endswith(SUBJECT_PARTICLES) and before.core not in _NOT_SUBJECTS
            if before.core == "수" or (subject and not (stem == "없" and before.core in _IDIOMS_WITH_EOPDA)):
                results.add(other + word[1:])
            elif stem == "있" and before.core.endswith(("고", "어", "아", "여", "져", "해", "돼")):
                results.add(predicate.negated(key))
    return results


def _negate_liking(word: str, before: Word | None) -> set[str]:
    """마음에 들다 (to like), the one reading of 들었다 that is certain: 마음에 들었어요 -> 마음에 들지 않았어요."""
    if before is None or before.core not in ("마음에", "맘에"):
        return set()
    like = Predicate("들", adjective=False)
    return {like.negated(key) for key in _REGULAR_KEYS if like.form(key) == word}


def _negate_copula(word: str, before: Word | None) -> set[str]:
    """Noun + 이다 -> 아니다: 숙소입니다 -> 숙소가 아닙니다; after a modifier 할 계획이다 -> 할 계획이 없다."""
    for ending, consonant, negated in _COPULA_ENDINGS:
        if not word.endswith(ending):
            continue
        noun = word[: -len(ending)]
        if not noun or not is_syllable(noun[-1]) or not re.fullmatch(r"[가-힣0-9]+", noun):
            return set()
        noun_consonant = final_consonant(noun[-1]) != NO_FINAL
        if consonant is not None and consonant != noun_consonant:
            continue
        if noun in _COPULA_EXCLUDED or noun.endswith(_COPULA_VERB_ENDINGS) or noun.endswith(("것", "거")):
            return set()
        if ending in ("였습니다", "였어요", "였다", "에요") and noun.endswith("이"):
            return set()  # 이였다 / 이에요 misspelled: the noun is not certain
        particle = "이" if noun_consonant else "가"
        after_modifier = before is not None and bool(before.core) and final_consonant(before.core[-1]) == FINAL_L
        if noun in _PLAN_NOUNS and after_modifier:
            return {f"{noun}{particle} {_COPULA_TO_NOT_HAVE[negated]}"}
        return {f"{noun}{particle} {negated}"}
    return set()


NEGATION_RULES: dict[str, Callable[[str, Word | None], set[str]]] = {
    "하다/되다": _negate_ha,
    "lexicon": _negate_lexicon,
    "regular stem": _negate_regular,
    "있다/없다": _negate_exist,
    "마음에 들다": _negate_liking,
    "이다": _negate_copula,
}


def negate(sentence: str) -> tuple[str, str] | None:
    """Negates the sentence-final predicate; returns (rewritten sentence, rule) or None when unsure."""
    tokens = split_tokens(sentence)
    if not tokens:
        return None
    words = [Word.of(t) for t in tokens]
    last = words[-1]
    if not is_hangul(last.core) or last.lead or is_question_or_request(sentence, words):
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
    return with_token(tokens, len(tokens) - 1, last.replaced(rewritten)), rule


# ---------------------------------------------------------------------------------------------
# Antonyms
# ---------------------------------------------------------------------------------------------

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

    def fits(self, words: list[Word], index: int) -> bool:
        if self.needs_subject and not has_subject_before(words, index):
            return False
        return not self.after or (index > 0 and words[index - 1].core.startswith(self.after))


# 하루라도 빨리, 최대한 빨리 (= as soon as possible): 천천히 would not be the opposite.
_ANTONYM_BLOCKED_AFTER = {"빨리": ("하루라도", "한시라도", "최대한", "가능한", "되도록", "조속히")}


def swap_index(pairs: Iterable[AntonymPair], adverbs: Iterable[tuple[str, str]]) -> dict[str, _Swap]:
    """Surface form -> its swap; surfaces that two pairs would swap differently are dropped."""
    index: dict[str, _Swap] = {}
    clashes: set[str] = set()

    def add(source: str, swap: _Swap) -> None:
        if source in index and index[source].target != swap.target:
            clashes.add(source)
        index.setdefault(source, swap)

    for pair in pairs:
        first = Predicate.parse(pair.first, pair.adjective[0])
        second = Predicate.parse(pair.second, pair.adjective[1])
        directions = [(first, second, "first")] + ([] if pair.one_way else [(second, first, "second")])
        for source, target, side in directions:
            stem = target.stem.removesuffix("하")
            for key in pair.keys:
                source_form, target_form = source.form(key), target.form(key)
                if source_form and target_form:
                    add(source_form, _Swap(target_form, stem, side in pair.needs_subject, pair.after))
    for source, target in adverbs:
        add(source, _Swap(target, target))
        add(target, _Swap(source, source))
    for surface in clashes:
        del index[surface]
    return index


_ANTONYM_INDEX = swap_index(ANTONYM_PREDICATES, ANTONYM_ADVERBS)
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
            derived = tail.startswith(_DERIVED_TAILS) and tail[1:] in NOUN_TAILS
            same_final = (final_consonant(root[-1]) == NO_FINAL) == (final_consonant(target[-1]) == NO_FINAL)
            copula = tail in _COPULA_TAILS and same_final
            noun_tail = (tail in NOUN_TAILS and tail != "도") or derived or copula  # 청결도, 만족도: nouns
            if (tails in ("verb", "all") and verb_tail) or (tails in ("noun", "all") and noun_tail):
                new_tail = tail if verb_tail or derived or copula else particle_form(target, tail)
                candidates.add((target + new_tail, target))
    return candidates.pop() if len(candidates) == 1 else None


def swap_antonym(sentence: str) -> str | None:
    """Replaces the last word found in the antonym dictionaries by its antonym, same form.

    Skips a word whose antonym the sentence already holds (장점과 단점 -> 장점과 장점).
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
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
            return with_token(tokens, index, word.replaced(found[0]))
    return None


# ---------------------------------------------------------------------------------------------
# Numbers, times, places, roles, intents
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
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    options: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        core = word.core
        ordinal = index > 0 and words[index - 1].core == "제"  # 제 3자 (= third party), 제 2의
        for match in _NUMBER.finditer(core if not ordinal else ""):
            before, after = core[: match.start()], core[match.end() :]
            if before or not after or not (is_syllable(after[0]) or after[0] == "%") or re.search(r"\d", after):
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
            if core.startswith(source) and (tail in NOUN_TAILS or tail == "중") and target not in sentence:
                options.append((index, target + particle_form(target, tail)))
        for day in _WEEKDAYS:
            if core.startswith(day) and core[len(day) :] in NOUN_TAILS:
                others = [d for d in _WEEKDAYS if d not in sentence]  # 토요일과 일요일 -> not 토요일과 토요일
                if others:
                    options.append((index, rng.choice(others) + core[len(day) :]))
    if not options:
        return None
    index, replacement = rng.choice(options)
    return with_token(tokens, index, words[index].replaced(replacement))


_CITY_TAILS = NOUN_TAILS | {
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


def _city_options(words: list[Word]) -> list[tuple[int, str, str, tuple[str, ...]]]:
    options = []
    for index, word in enumerate(words):
        for city in CITIES:
            tail = word.core[len(city) :]
            if not word.core.startswith(city) or tail not in _CITY_TAILS or (city == "제주" and tail.startswith("도")):
                continue
            following = words[index + 1].core if index + 1 < len(words) else ""
            if not tail and not following.startswith(CITY_NEXT_WORDS):
                continue  # 서울 여의도, 서울 동대문, 대구 경북: the next word may be a place in or beside the city
            options.append((index, city, tail, CITIES))
    return options


def _lexicon_options(
    words: list[Word], groups: Iterable[tuple[str, ...]], tails: frozenset[str] = NOUN_TAILS
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
    words: list[Word],
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
    new_tail = tail if tail[:1] in ("시", "역", "행") else particle_form(target, tail)
    return with_token(tokens, index, words[index].replaced(target + new_tail))


def swap_entity(sentence: str, rng: random.Random) -> str | None:
    """Replaces one city, country, family member or company by another the sentence does not mention."""
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    return _replace_option(sentence, tokens, words, _city_options(words) + _lexicon_options(words, ENTITY_GROUPS), rng)


_AGENT_SUBJECT_TAILS = frozenset(["이", "가", "은", "는"])
_AGENT_OBJECT_TAILS = frozenset(["을", "를", "에게", "한테", "에게서", "한테서"])
_ROLE_MAX_DISTANCE = 3  # 호스트는 총 세 번 손님을: further apart, the object may belong to another clause


def swap_roles(sentence: str) -> str | None:
    """Swaps a subject and a later object or recipient when both are people or organisations.

    ``호스트가 게스트에게 환불을 요청했어요`` -> ``게스트가 호스트에게 환불을 요청했어요``; each
    noun keeps its position's particle in the form that fits it (``정부가 국민을`` -> ``국민이 정부를``).
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    subjects = _lexicon_options(words, [AGENTS], _AGENT_SUBJECT_TAILS)
    objects = _lexicon_options(words, [AGENTS], _AGENT_OBJECT_TAILS)
    for s_index, subject, s_tail, _ in subjects:
        for o_index, obj, o_tail, _ in objects:
            if not 0 < o_index - s_index <= _ROLE_MAX_DISTANCE or subject == obj:
                continue
            if any(w.trail for w in words[s_index:o_index]) or words[o_index - 1].core.endswith("의"):
                continue  # a comma between them, or the object is a modifier's (확진 환자를 위한)
            swapped = list(tokens)
            swapped[s_index] = words[s_index].replaced(obj + particle_form(obj, s_tail))
            swapped[o_index] = words[o_index].replaced(subject + particle_form(subject, o_tail))
            return " ".join(swapped)
    return None


def change_intent(sentence: str, rng: random.Random) -> str | None:
    """Asks for something else on the same topic: another question word or another service noun.

    Only questions and requests are changed: in a statement, ``시간`` -> ``가격`` rarely reads as
    another intent.
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    if not is_question_or_request(sentence, words):
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
            options += [(index, other + particle_form(other, tail)) for other in others]
    if not options:
        return None
    index, replacement = rng.choice(options)
    return with_token(tokens, index, words[index].replaced(replacement))


# ---------------------------------------------------------------------------------------------
# Lexical negation: a lexical opposite inside the sentence, unlike the templates above
# ---------------------------------------------------------------------------------------------

# Forms of the pairs below that are swapped; 알아서 (= at one's discretion), 알게 (되다), 안 (= not),
# 가능하면 (= if possible), 가능한 (한) (= as ... as possible) are idioms and left out.
_LEXICAL_KEYS = tuple(k for k in FORM_KEYS if k not in ("aseo", "ge", "mod_past", "myeon", "si_ayo"))
_LEXICAL_PAIRS = (
    (Predicate("있"), Predicate("없"), "subject"),  # 주차할 수 있는 -> 주차할 수 없는; not 하고 있는
    (Predicate("알", adjective=False), Predicate("모르", adjective=False, irregular="르"), ""),
    (Predicate("가능하"), Predicate("불가능하"), "not_idiom"),
)
_LEXICAL_INDEX: dict[str, tuple[str, str]] = {}
for _first, _second, _context in _LEXICAL_PAIRS:
    for _key in _LEXICAL_KEYS:
        for _source, _target in ((_first, _second), (_second, _first)):
            _surface, _other = _source.form(_key), _target.form(_key)
            if _surface and _other:
                _LEXICAL_INDEX.setdefault(_surface, (_other, _context))
# 가능한 한, 가능한 빨리 (= as soon as possible): no opposite.
_POSSIBLE_IDIOM_NEXT = ("한", "빨리", "많이", "범위", "조속히", "신속히", "최대한")
# -면 되다 (it is enough to) -> -면 안 되다 (must not): the one reading of 되다 whose 안 되다 is certain.
_SUFFICE_FORMS = frozenset(Predicate("되", adjective=False).form(k) for k in ("plain", "seumnida", "ayo", "a"))


def negate_lexical(sentence: str, rng: random.Random) -> str | None:
    """Replaces a lexical opposite inside the sentence: 있다/없다, 알다/모르다, 가능하다/불가능하다, -면 (안) 되다.

    Unlike :func:`negate`, the word may be anywhere but the sentence-final predicate
    (``주차할 수 있는 곳이 많아요`` -> ``주차할 수 없는 곳이 많아요``, ``아는 사람이`` ->
    ``모르는 사람이``), and the opposite is another word rather than ``지 않다``; only ``-면 되다``
    is negated at the end (``예약하면 돼요`` -> ``예약하면 안 돼요``). A word after 안/못 is left alone.
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    options: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        previous = words[index - 1] if index > 0 else None
        if previous is not None and (previous.core in _NEGATIVE_WORDS or previous.trail):
            continue
        if word.core in _SUFFICE_FORMS and previous is not None and previous.core.endswith("면"):
            if not previous.core.endswith(("으면서", "면서")):
                options.append((index, f"안 {word.core}"))
            continue
        if index == len(words) - 1 or word.core not in _LEXICAL_INDEX:
            continue  # the sentence-final predicate is the templates' (negate)
        target, context = _LEXICAL_INDEX[word.core]
        if context == "subject":
            subject = previous is not None and previous.core.endswith(SUBJECT_PARTICLES)
            if not (previous is not None and previous.core == "수") and not (
                subject and previous.core not in _NOT_SUBJECTS and previous.core not in _IDIOMS_WITH_EOPDA
            ):
                continue
        if context == "not_idiom" and words[index + 1].core.startswith(_POSSIBLE_IDIOM_NEXT):
            continue
        if word.core in ("알고", "모르고") and words[index + 1].core.startswith(("싶", "보니", "보면", "봤")):
            continue  # 알고 싶다 (= want to know) has no 모르고 싶다; 알고 보니 (= as it turned out)
        options.append((index, target))
    if not options:
        return None
    index, replacement = rng.choice(options)
    return with_token(tokens, index, words[index].replaced(replacement))
