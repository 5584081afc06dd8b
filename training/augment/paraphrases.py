"""The paraphrase rules, one function each: the same meaning in other words; None when unsure.

* :func:`change_register`: the sentence-final predicate in another speech level (``좋았어요`` <->
  ``좋았습니다``, ``추진한다`` -> ``추진합니다``, ``알려줘`` -> ``알려주세요``, ``뭐야`` -> ``뭐예요``);
* :func:`swap_synonym`: one word replaced by a synonym in the same form (``증가했다`` ->
  ``늘어났다``, ``깨끗해요`` -> ``청결해요``, ``숙소가`` -> ``숙박 시설이``, ``매우`` -> ``아주``);
* :func:`reorder_phrases`: two marked phrases next to each other change places: a time and a
  place, recipient or object, or a recipient and an object (``저녁에 서울에서 만나요`` ->
  ``서울에서 저녁에 만나요``); the predicate stays last;
* :func:`to_passive`: subject, object and a listed Sino-Korean 하다 verb become a 되다 passive
  (``정부가 새 정책을 발표했다`` -> ``정부에 의해 새 정책이 발표되었다``).

Like :mod:`training.augment.rules`, inflected forms are generated forward from known stems
(:class:`~training.augment.hangul.Predicate`) and a rule that is unsure skips the sentence; the
grammatical lists each rule needs are kept beside it, the content words in ``wordlists/synonyms.yaml``.
"""

from __future__ import annotations

import random
import re

from training.augment.hangul import (
    FINAL_N,
    FINAL_SS,
    NO_FINAL,
    NOUN_TAILS,
    Predicate,
    Word,
    final_consonant,
    is_hangul,
    is_question_or_request,
    is_syllable,
    particle_form,
    split_tokens,
    with_token,
)
from training.augment.rules import swap_index
from training.augment.wordlists import (
    AGENTS,
    HONORIFIC_SUBJECTS,
    NEGATION_ADJECTIVES,
    NEGATION_VERBS,
    SYNONYM_ADVERBS,
    SYNONYM_NOUNS,
    SYNONYM_PREDICATES,
)

# ---------------------------------------------------------------------------------------------
# Register (speech level)
# ---------------------------------------------------------------------------------------------

# Source form -> the form it is rewritten to: 합니다체 <-> 해요체, 한다체 -> 합니다체, 반말 -> 해요체.
_REGISTER_TARGETS = {
    "plain": "seumnida",
    "seumnida": "ayo",
    "ayo": "seumnida",
    "a": "ayo",
    "past_da": "past_seumnida",
    "past_seumnida": "past_ayo",
    "past_ayo": "past_seumnida",
    "past_a": "past_ayo",
    "si_seumnida": "si_ayo",
    "si_ayo": "si_seumnida",
    "si_past_ayo": "si_past_seumnida",
    "si_past_seumnida": "si_past_ayo",
}
# The subject honorific -(으)시- in the same speech level (verbs have no plain -세요 statement).
_HONORIFIC_TARGETS = {
    "seumnida": "si_seumnida",
    "ayo": "si_ayo",
    "past_ayo": "si_past_ayo",
    "past_seumnida": "si_past_seumnida",
}
# Stems whose honorific is another word (먹다 -> 드시다, 자다 -> 주무시다, 있다 -> 계시다) or none.
_NO_HONORIFIC_STEMS = ("먹", "자", "있", "없", "죽", "아프", "배고프", "말하", "데리", "묻", "보", "같")
_SUBJECT_ENDINGS = ("이", "가", "은", "는", "께서")
# In a question or a request only 요 is added (있어? -> 있어요?, 해 -> 해요): the sentence type stays.
_QUESTION_KEYS = ("a", "past_a")
# Final consonants of irregular stems (ㄷ 듣다, ㅅ 짓다, ㅎ 그렇다, ㅂ 춥다) the conjugator does not
# model: a stem ending in one is used only when it is listed as regular, or in the lexicon.
_IRREGULAR_FINALS = (7, 19, 27, 17)  # ㄷ, ㅅ, ㅎ, ㅂ
_REGULAR_STEMS = frozenset(
    ["받", "닫", "믿", "얻", "쏟", "뜯", "씻", "벗", "웃", "빼앗", "솟", "좋", "놓", "넣", "낳", "쌓", "닿"]
    + ["좁", "입", "잡", "씹", "뽑", "업", "접"]
)
# ㄹ stems that are also the -아/어 form of a ㄷ irregular (들어요: 들다 or 듣다, 걸어요: 걸다 or 걷다).
_AMBIGUOUS_STEMS = frozenset(["들", "걸", "물", "실", "깨달", "불", "일컬", "닫"])
# 위해, 대해, 통해: sentence-final only in a fragment, where 요 cannot be added.
_CONNECTIVE_STEMS = ("위하", "대하", "통하", "관하", "의하", "인하", "비하", "따르")
# Sentence-final -아요 of a verb after these is a suggestion (같이 가요 = let's go), not a statement.
_SUGGESTION_WORDS = ("같이", "함께", "우리", "우리는", "우리가", "다", "다같이")
_LEXICON_STEMS = {
    p.stem: p
    for p in [
        *(Predicate.parse(w, True) for w in NEGATION_ADJECTIVES),
        *(Predicate.parse(w, False) for w in NEGATION_VERBS),
    ]
}
# Their forms, since an irregular stem is not a prefix of its forms (빠르다: 빨랐어요).
_LEXICON_FORMS: dict[str, list[tuple[Predicate, str]]] = {}
for _predicate in _LEXICON_STEMS.values():
    for _key in _REGISTER_TARGETS:
        _surface = _predicate.form(_key)
        if _surface is not None:
            _LEXICON_FORMS.setdefault(_surface, []).append((_predicate, _key))
# Requests of 주다 (알려줘, 해 주세요): one politeness level up.
_REQUEST_ENDINGS = (("줘", "주세요"), ("줄래", "줄래요"), ("주십시오", "주세요"), ("주세요", "주십시오"))
# Noun + 이다 in another level: (ending, noun ends in a consonant (True), a vowel (False) or either (None),
# the ending for a consonant-final noun, the ending for a vowel-final one).
_COPULA_LEVELS = (
    ("이었습니다", True, "이었어요", ""),
    ("였습니다", False, "", "였어요"),
    ("이었어요", True, "이었습니다", ""),
    ("였어요", False, "", "였습니다"),
    ("이었다", True, "이었습니다", ""),
    ("였다", False, "", "였습니다"),
    ("입니다", None, "이에요", "예요"),
    ("이에요", True, "입니다", ""),
    ("예요", False, "", "입니다"),
    ("이다", True, "입니다", ""),
    ("이야", True, "이에요", ""),
    ("야", False, "", "예요"),
)
# 보입니다 (보이다), 높입니다 (높이다): verbs that look like a noun + 이다.
_COPULA_VERB_ENDINGS = (
    "보", "줄", "높", "먹", "속", "죽", "붙", "끓", "쌓", "놓", "쓰", "모", "섞", "묶", "꺾", "깎", "덮", "녹", "숙",
    "늘", "절", "졸", "삭", "벌", "기울", "움직", "반짝", "망설", "끄덕", "속삭", "들", "맞", "아니", "하", "되", "해",
    "가", "와", "봐", "줘", "돼", "워", "러", "라", "져", "려", "해야", "어", "아",
)  # fmt: skip
# Casual 야 is a copula after these only (뭐야, 언제야, 몇 시야); elsewhere it may be a verb (해야).
_YA_NOUNS = frozenset(["뭐", "무엇", "언제", "어디", "누구", "얼마", "며칠"])
_YA_BEFORE = frozenset(["몇", "무슨", "어떤", "어느"])


def _stems(word: str) -> list[Predicate]:
    """Every stem the conjugator can inflect that ``word`` may be a form of, as a verb and as an adjective.

    A noun + 하/되 (깨끗해요: 깨끗하), 주다 and its compounds (알려줬어요: 알려주), and
    consonant-final regular stems, with 있 and the future 겠 (설치하겠); not a past stem (좋았),
    whose 아요 would be wrong. The lexicon's vowel and irregular stems are in :data:`_LEXICON_FORMS`.
    """
    stems: dict[tuple[str, bool], Predicate] = {}
    for cut in range(len(word)):
        prefix = word[:cut]
        for auxiliary in ("하", "되", "주"):
            for adjective in (True, False) if auxiliary != "주" else (False,):
                stems.setdefault((prefix + auxiliary, adjective), Predicate(prefix + auxiliary, adjective))
        if not prefix or prefix.endswith(("하", "되", "주")):
            continue
        final = final_consonant(prefix[-1])
        if prefix in _LEXICON_STEMS:
            continue  # in _LEXICON_FORMS
        if final == FINAL_SS and not prefix.endswith(("있", "겠")):
            continue  # a past stem: 좋았 + 아요 is not 좋았어요
        if final in (NO_FINAL, FINAL_N) or prefix in _AMBIGUOUS_STEMS:
            continue
        elif final in _IRREGULAR_FINALS and prefix[-1:] not in _REGULAR_STEMS and prefix not in _REGULAR_STEMS:
            continue
        else:
            for adjective in (True, False):
                stems[(prefix, adjective)] = Predicate(prefix, adjective)
    return list(stems.values())


def _predicate_levels(
    word: str, keys: tuple[str, ...], suggestion: bool, targets: dict[str, str] = _REGISTER_TARGETS
) -> set[str]:
    results = set()
    matches = [(predicate, key) for predicate in _stems(word) for key in keys if predicate.form(key) == word]
    matches += [(predicate, key) for predicate, key in _LEXICON_FORMS.get(word, ()) if key in keys]
    honorific = targets is _HONORIFIC_TARGETS
    for predicate, key in matches:
        if key == "a" and predicate.stem.endswith(_CONNECTIVE_STEMS):
            continue
        if key == "ayo" and not predicate.adjective and suggestion:
            continue
        if honorific and (
            predicate.stem.endswith(_NO_HONORIFIC_STEMS) or final_consonant(predicate.stem[-1]) == FINAL_SS
        ):
            continue  # 먹었 is a past stem, not a stem: 먹었으세요
        target = predicate.form(targets[key])
        if target is not None and target != word:
            results.add(target)
    return results


def _copula_levels(word: str, before: Word | None, question: bool) -> set[str]:
    for ending, consonant, after_consonant, after_vowel in _COPULA_LEVELS:
        if not word.endswith(ending):
            continue
        noun = word[: -len(ending)]
        if not noun or not is_syllable(noun[-1]) or not re.fullmatch(r"[가-힣0-9]+", noun):
            return set()
        noun_consonant = final_consonant(noun[-1]) != NO_FINAL
        if consonant is not None and consonant != noun_consonant:
            continue
        if noun.endswith(_COPULA_VERB_ENDINGS) or (ending.startswith(("였", "예")) and noun.endswith("이")):
            return set()  # 보입니다 is a verb; 이였다, 이예요 are misspelt and their noun unsure
        if question and ending not in ("이야", "야"):
            return set()
        if ending == "야" and noun not in _YA_NOUNS and (before is None or before.core not in _YA_BEFORE):
            return set()
        if noun.endswith("것") and ending == "입니다":
            return {noun[:-1] + "거예요"}  # 것이에요 is correct but unspoken
        if noun.endswith("거") and ending == "예요":
            return {noun[:-1] + "것입니다"}
        return {noun + (after_consonant if noun_consonant else after_vowel)}
    return set()


def _honorific_subject(words: list[Word]) -> bool:
    """Whether the last subject before the final predicate is a listed person (호스트분이 ... 친절했어요)."""
    for word in reversed(words[:-1]):
        for ending in _SUBJECT_ENDINGS:
            noun = word.core.removesuffix(ending)
            if word.core.endswith(ending) and noun:
                return not word.trail and (noun in HONORIFIC_SUBJECTS or noun.removesuffix("분") in HONORIFIC_SUBJECTS)
    return False


def change_register(sentence: str) -> str | None:
    """The sentence-final predicate in another speech level; None when its stem or ending is unsure.

    A statement whose subject is a listed person gains the honorific -(으)시- (``호스트가
    친절했어요`` -> ``호스트가 친절하셨어요``); other statements move between 합니다체 and 해요체
    (한다체 and 반말 go to the polite levels); a question or request only gains 요 or a politer
    주다 (``알려줘`` -> ``알려주세요``).
    """
    tokens = split_tokens(sentence)
    if not tokens:
        return None
    words = [Word.of(t) for t in tokens]
    last = words[-1]
    if not is_hangul(last.core) or last.lead:
        return None
    before = words[-2] if len(words) > 1 else None
    question = is_question_or_request(sentence, words)
    outcomes: set[str] = set()
    for ending, politer in _REQUEST_ENDINGS:
        if last.core.endswith(ending):
            outcomes.add(last.core[: -len(ending)] + politer)
            break
    if not outcomes and not question and _honorific_subject(words):
        outcomes = _predicate_levels(last.core, tuple(_HONORIFIC_TARGETS), False, _HONORIFIC_TARGETS)
        if len(outcomes) != 1:
            outcomes = set()
    if not outcomes:
        keys = _QUESTION_KEYS if question else tuple(_REGISTER_TARGETS)
        suggestion = any(w.core in _SUGGESTION_WORDS for w in words[:-1])
        outcomes = _predicate_levels(last.core, keys, suggestion) | _copula_levels(last.core, before, question)
    if len(outcomes) != 1:
        return None
    return with_token(tokens, len(tokens) - 1, last.replaced(outcomes.pop()))


# ---------------------------------------------------------------------------------------------
# Synonyms
# ---------------------------------------------------------------------------------------------

_SYNONYM_INDEX = swap_index(SYNONYM_PREDICATES, SYNONYM_ADVERBS)


def swap_synonym(sentence: str, rng: random.Random) -> str | None:
    """Replaces one listed predicate, adverb or noun by its synonym in the same form; None if none is listed.

    A noun keeps its particle in the allomorph that fits the synonym (``숙소가`` -> ``숙박 시설이``);
    a word whose synonym the sentence already holds is left alone.
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    options: list[tuple[int, str, str]] = []  # (index, replacement, the synonym's stem or noun)
    for index, word in enumerate(words):
        swap = _SYNONYM_INDEX.get(word.core)
        if swap is not None and swap.fits(words, index):
            options.append((index, swap.target, swap.stem))
        for source, target in SYNONYM_NOUNS:
            tail = word.core[len(source) :]
            if not word.core.startswith(source) or tail not in NOUN_TAILS:
                continue
            if not tail and (index + 1 == len(words) or word.trail):
                continue  # a bare noun must lead into the next word
            options.append((index, target + particle_form(target, tail), target))
    options = [o for o in options if o[2] not in " ".join(tokens[: o[0]] + tokens[o[0] + 1 :])]
    if not options:
        return None
    index, replacement, _ = rng.choice(options)
    return with_token(tokens, index, words[index].replaced(replacement))


# ---------------------------------------------------------------------------------------------
# Word order
# ---------------------------------------------------------------------------------------------

# Time nouns that, with 에, are a time adverbial (오전에, 주말에; also 3시에, 5월에).
_TIME_NOUNS = (
    "오늘", "내일", "모레", "어제", "오전", "오후", "아침", "저녁", "밤", "새벽", "주말", "평일", "연말", "연초",
    "올해", "내년", "작년", "지난해", "월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일",
)  # fmt: skip
_TIME_NUMBER = re.compile(r"\d+(?:시|월|일|년)(?:에|에는|부터|까지)")
# Place and recipient phrases: a noun + one of these (서울에서, 호스트에게, 친구한테).
_PLACE_TAILS = ("에서",)
_RECIPIENT_TAILS = ("에게", "한테")
_OBJECT_TAILS = ("을", "를")
# The phrase pairs that may change places: a time with a place, recipient or object; a recipient
# or a place with an object (호스트에게 선물을 <-> 선물을 호스트에게, 식당에서 밥을 <-> 밥을 식당에서);
# a bare date before a place.
_MOVABLE_PAIRS = (
    {"time", "place"},
    {"time", "recipient"},
    {"time", "object"},
    {"recipient", "object"},
    {"place", "object"},
    {"place", "recipient"},
    {"date", "place"},
)
# A phrase may move only when the word before it ends a phrase of its own (or it starts the
# sentence): after a modifier (열리는 회의에서) the phrase is part of a longer noun phrase.
_PHRASE_ENDS = ("가", "를", "에", "에서", "에게", "께서", "한테", "께", "로", "는", "은")  # not 도: 학년도
_NOT_PHRASE_NOUNS = frozenset(["중", "것", "거", "수", "때", "곳", "데", "안", "밖", "앞", "뒤", "위", "사이", "동안"])
# The object of these final words is a modifier's (받을 것이다), not a phrase that can move.
_BOUND_FINALS = ("것", "거", "수", "예정", "계획", "생각", "방침", "전망", "뿐", "듯", "줄")


def _phrase_kind(word: Word) -> str | None:  # noqa: PLR0911
    """``time``, ``date``, ``place``, ``recipient`` or ``object`` for a one-word phrase that can move, else None.

    A bare time word is left out (내일 일정에서 = "in tomorrow's schedule", 오늘 날씨를 = "today's
    weather"): only a time with 에 (오전에, 3시에) is an adverbial for certain. A bare date (15일) is
    ``date``: an adverbial only before a place (15일 청사에서), not before 동안.
    """
    core = word.core
    if word.lead or word.trail or not core:
        return None
    if _TIME_NUMBER.fullmatch(core):
        return "time"
    if re.fullmatch(r"\d+일", core):
        return "date"
    for tail in ("에", "에는", "부터", "까지"):
        if core.endswith(tail) and core[: -len(tail)] in _TIME_NOUNS:
            return "time"
    for tails, kind in ((_PLACE_TAILS, "place"), (_RECIPIENT_TAILS, "recipient"), (_OBJECT_TAILS, "object")):
        for tail in tails:
            noun = core[: -len(tail)]
            if core.endswith(tail) and len(noun) >= 2 and is_hangul(noun) and noun not in _NOT_PHRASE_NOUNS:
                if kind != "object" and (noun in _TIME_NOUNS or noun.endswith(("에", "으로", "로"))):
                    return None
                if kind == "object" and tail == "을" and final_consonant(noun[-1]) in (NO_FINAL, FINAL_SS, 6, 15):
                    return None  # a vowel-final noun takes 를; 좋았을, 괜찮을 are modifiers
                if kind == "object" and noun.endswith(("하기", "되기", "것")):
                    return None  # 이곳에서 숙박하기를: the place belongs to the nominalised verb
                return kind
    return None


def reorder_phrases(sentence: str) -> str | None:
    """Swaps two one-word phrases next to each other before the predicate (:data:`_MOVABLE_PAIRS`).

    ``오전에 서울에서 회의가 있어요`` -> ``서울에서 오전에 회의가 있어요``; ``호스트에게 선물을
    드렸어요`` -> ``선물을 호스트에게 드렸어요``. Both phrases are one word and clearly marked, the first is
    not the end of a longer noun phrase, and the predicate never moves.
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    if len(words) < 3:
        return None
    for index in range(len(words) - 2):
        kinds = {_phrase_kind(words[index]), _phrase_kind(words[index + 1])}
        if len(kinds) != 2 or not any(kinds <= allowed for allowed in _MOVABLE_PAIRS):
            continue
        if _phrase_kind(words[index]) == "place" and _phrase_kind(words[index + 1]) == "date":
            continue  # 프라하에서 16일 동안: a bare date moves only from the front
        if index > 0:
            previous = words[index - 1]
            if previous.trail or not previous.core.endswith(_PHRASE_ENDS) or previous.core.endswith(("는", "은")):
                continue  # 좋은 / 가는 are modifiers; 역, 세느강, 에펠탑을: a list
        if "object" in kinds and words[-1].core.startswith(_BOUND_FINALS):
            continue
        swapped = list(tokens)
        swapped[index], swapped[index + 1] = tokens[index + 1], tokens[index]
        return " ".join(swapped)
    return None


# ---------------------------------------------------------------------------------------------
# Passive
# ---------------------------------------------------------------------------------------------

# Sino-Korean verbal nouns whose 하다 verb takes an object and whose 되다 form is its passive.
_PASSIVE_NOUNS = frozenset(
    [
        "발표", "개최", "실시", "시행", "도입", "추진", "결정", "승인", "공개", "발견", "선정", "채택", "개발",
        "설치", "건설", "출시", "지정", "발행", "제정", "체결", "폐지", "확정", "수립", "검토", "마련",
        "확대", "강화", "제공", "운영", "완화", "연장", "발급", "구축", "조성", "배포", "지급", "신설", "개정",
        "개편", "점검", "확충", "보급", "적용", "해제", "시작", "개최", "구성", "배치", "실행", "편성",
    ]
)  # fmt: skip
_PASSIVE_KEYS = ("plain", "seumnida", "past_da", "past_seumnida", "past_ayo", "ayo")
_ORGANISATIONS = frozenset(AGENTS)
# A connective verb between subject and object (구성해, 고려해, 발표하고, 맞대) has the agent as its
# subject too, which the passive would leave dangling; 위해, 대해, 통해 do not.
_AGENT_CONNECTIVES = ("해", "고", "며", "여", "서", "대", "워", "어", "아")
_TOPIC_CONNECTIVES = frozenset(["위해", "대해", "통해", "관해", "의해", "따라", "인해", "위하여", "대하여", "통하여"])


def to_passive(sentence: str) -> str | None:
    """``정부가 새 정책을 발표했다`` -> ``정부에 의해 새 정책이 발표되었다``; None unless the pattern is certain.

    The subject is the one listed agent with 이/가/은/는 and becomes ``에 의해``; the object is the
    word with 을/를 right before the predicate and takes 이/가 (its noun phrase, however long,
    stays where it is); the predicate is a listed verbal noun + 하다 and becomes 되다 in the same
    form. Negated sentences and questions are left alone.
    """
    tokens = split_tokens(sentence)
    words = [Word.of(t) for t in tokens]
    if len(words) < 3 or is_question_or_request(sentence, words):
        return None
    last, obj = words[-1], words[-2]
    if last.lead or obj.lead or obj.trail or not is_hangul(last.core):
        return None
    passive = None
    for noun in _PASSIVE_NOUNS:
        if not last.core.startswith(noun):
            continue
        active = Predicate(noun + "하", adjective=False)
        for key in _PASSIVE_KEYS:
            if active.form(key) == last.core.replace("하였", "했"):
                passive = Predicate(noun + "되", adjective=False).form(key).replace("됐", "되었")
    if passive is None:
        return None
    obj_tail = next((t for t in ("을", "를") if obj.core.endswith(t)), None)
    obj_noun = obj.core[:-1] if obj_tail else ""
    if not obj_tail or len(obj_noun) < 2 or not is_hangul(obj_noun) or obj_noun in _NOT_PHRASE_NOUNS:
        return None
    if obj_tail == "을" and final_consonant(obj_noun[-1]) == NO_FINAL:
        return None
    subjects = [
        i
        for i, w in enumerate(words[:-2])
        if not w.lead and not w.trail and any(w.core == a + t for a in _ORGANISATIONS for t in ("이", "가", "은", "는"))
    ]
    if len(subjects) != 1:
        return None
    s = subjects[0]
    subject_noun = words[s].core[:-1]
    if any(w.trail for w in words[s:-1]) or any(w.core in ("안", "못") for w in words):
        return None
    if any(w.core.endswith(_AGENT_CONNECTIVES) and w.core not in _TOPIC_CONNECTIVES for w in words[s + 1 : -2]):
        return None  # 정부가 기업과 머리를 맞대 ... 개발한다: the agent also does the connected clause
    if s > 0 and not words[s - 1].trail and not words[s - 1].core.endswith(_PHRASE_ENDS):
        return None  # 올해 정부가: fine; 새 정부가: the subject is a longer noun phrase
    rewritten = list(tokens)
    rewritten[s] = f"{subject_noun}에 의해"
    rewritten[-2] = obj_noun + particle_form(obj_noun, "이")
    rewritten[-1] = last.replaced(passive)
    return " ".join(rewritten)
