"""Paraphrase positives: each rule on concrete Korean, what it leaves alone, the synonym list, ``--kinds``."""

from __future__ import annotations

import hashlib
import json
import random

import pandas as pd
import pytest

from tests.test_augment import SOURCE as NEGATIVE_SOURCE
from training.augment import (
    EXTRA_NEGATIVE_KINDS,
    KIND_LABELS,
    NEGATIVE_KINDS,
    PARAPHRASE_KINDS,
    augment,
    change_register,
    main,
    negate_lexical,
    reorder_phrases,
    swap_synonym,
    to_passive,
)
from training.augment.wordlists import SYNONYM_ADVERBS, SYNONYM_NOUNS, SYNONYM_PREDICATES, read_wordlist
from training.data import read_pairs


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("숙소가 정말 깨끗했어요.", "숙소가 정말 깨끗했습니다."),  # 해요체 -> 합니다체, a contracted 하다
        ("전망이 좋았습니다.", "전망이 좋았어요."),  # 합니다체 -> 해요체
        ("방이 넓어요.", "방이 넓습니다."),  # regular stem
        ("지하철역과 가까워요.", "지하철역과 가깝습니다."),  # ㅂ irregular from the lexicon
        ("정부는 내년부터 지원을 확대한다.", "정부는 내년부터 지원을 확대합니다."),  # 한다체 -> 합니다체
        ("정말 좋아.", "정말 좋아요."),  # 반말 -> 해요체
        ("이 숙소는 최고의 집입니다.", "이 숙소는 최고의 집이에요."),  # 이다
        ("좋을 것입니다.", "좋을 거예요."),
        ("내일 날씨 알려줘", "내일 날씨 알려주세요"),  # a request gains politeness only
        ("지금 몇 시야?", "지금 몇 시예요?"),
        ("몇 시에 일어나야 해?", "몇 시에 일어나야 해요?"),  # a question gains 요 only
        ("호스트분이 정말 친절했어요.", "호스트분이 정말 친절하셨어요."),  # subject honorific
        ("사장님이 방을 바꿔줬어요.", "사장님이 방을 바꿔주셨어요."),
        ("선생님이 밥을 먹었어요.", "선생님이 밥을 먹었습니다."),  # 먹다 -> 드시다: no -시-, the level changes
    ],
)
def test_register(sentence, expected):
    assert change_register(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "음악을 들어요.",  # 들다 or 듣다: 듭니다 or 듣습니다
        "노래를 듣습니다.",  # ㄷ irregular: not modelled
        "날씨가 그렇습니다.",  # ㅎ irregular
        "같이 가요.",  # a suggestion, not a statement
        "내일 날씨 어때?",  # a question in a form it does not know
        "정말 좋았던 숙소",  # no predicate at the end
        "호스트가 준 쿠키가 맛있었어요",  # the subject of 맛있다 is the cookie: no honorific
    ],
)
def test_register_skips_what_it_is_unsure_of(sentence):
    rewritten = change_register(sentence)
    assert rewritten is None or "시" not in rewritten.split()[-1], rewritten


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("인구가 크게 증가했다.", "인구가 크게 늘어났다."),  # Sino-Korean -> native, same form
        ("화장실이 깨끗해요.", "화장실이 청결해요."),
        ("방이 넓어요.", "방이 널찍해요."),  # needs its subject
        ("메일 보내줘", "이메일 보내줘"),  # a bare noun before the next word
        ("숙소가 좋았어요.", "숙박 시설이 좋았어요."),  # the particle follows the new noun
        ("리스본에서 제일 인기 있는 곳이에요.", "리스본에서 가장 인기 있는 곳이에요."),  # adverb
        ("가격이 상승했다.", "가격이 올랐다."),  # 르 irregular
    ],
)
def test_synonym(sentence, expected):
    assert swap_synonym(sentence, random.Random(0)) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "넓은 범위를 다룬다.",  # 넓다 only of a subject
        "스팸 메일과 이메일을 지워줘",  # the synonym is already there
        "가격이 올랐다.",  # one way: 올랐다 is also "climbed"
        "메일함을 비워줘",  # a longer word
    ],
)
def test_synonym_leaves_unsafe_words_alone(sentence):
    assert swap_synonym(sentence, random.Random(0)) is None


def test_synonym_is_deterministic_for_a_seed_and_varies_with_it():
    sentence = "숙소가 매우 깨끗하고 호스트가 친절해요."
    outputs = {swap_synonym(sentence, random.Random(seed)) for seed in range(20)}
    assert swap_synonym(sentence, random.Random(3)) == swap_synonym(sentence, random.Random(3))
    assert len(outputs) > 1 and None not in outputs


def test_synonym_list_is_large_and_consistent():
    raw = read_wordlist("synonyms")
    entries = sum(len(g["pairs"]) for g in raw["predicates"] + raw["nouns"]) + len(raw["adverbs"])
    assert entries >= 80
    sources = [w for pair in SYNONYM_PREDICATES for w in (pair.first, *(() if pair.one_way else (pair.second,)))]
    assert len(sources) == len(set(sources)), (
        "a predicate swapped by two pairs: its surfaces would clash and be dropped"
    )
    assert len(SYNONYM_NOUNS) == len(set(SYNONYM_NOUNS)) and len(SYNONYM_ADVERBS) >= 10


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("오전에 서울에서 회의가 있어요.", "서울에서 오전에 회의가 있어요."),  # time and place
        ("호스트에게 선물을 드렸어요.", "선물을 호스트에게 드렸어요."),  # recipient and object
        ("15일 정부청사에서 협약을 체결했다.", "정부청사에서 15일 협약을 체결했다."),  # a date before a place
        ("저녁에 약속을 잡았어요.", "약속을 저녁에 잡았어요."),  # time and object
        ("마당에서 커피를 즐길 수 있어요.", "커피를 마당에서 즐길 수 있어요."),  # place and object
        ("3시부터 회의실에서 회의가 있어요.", "회의실에서 3시부터 회의가 있어요."),
    ],
)
def test_word_order(sentence, expected):
    assert reorder_phrases(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "프라하에서 16일 동안 머물렀습니다.",  # 16일 동안: a duration
        "내일 일정에서 하나를 빼줘.",  # 내일 modifies 일정
        "오늘 날씨를 알려줘",  # today's weather
        "열리는 회의에서 저녁에 발표한다.",  # 회의에서 ends a longer noun phrase
        "저녁에 약속을 잡을 것이다.",  # the object of a modifier clause (잡을 것)
        "저녁에 서울에서",  # no predicate to keep in place
        "다음에도 이곳에서 숙박하기를 희망합니다.",  # the place is the nominalised verb's
        "역, 세느강, 에펠탑을 근방에서 볼 수 있었어요.",  # the object ends a list
        "2020학년도 수능에서 부정행위를 했다.",  # 수능에서 ends a longer noun phrase
    ],
)
def test_word_order_leaves_unclear_phrases_alone(sentence):
    assert reorder_phrases(sentence) is None


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("정부가 새 정책을 발표했다.", "정부에 의해 새 정책이 발표되었다."),
        ("정부는 지원 방안을 추진한다.", "정부에 의해 지원 방안이 추진된다."),
        ("정부는 지난 1일 계획을 발표했습니다.", "정부에 의해 지난 1일 계획이 발표되었습니다."),
    ],
)
def test_passive(sentence, expected):
    assert to_passive(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "정부가 기업과 머리를 맞대 백신을 개발한다.",  # the agent also does 맞대
        "정부가 정책을 발표하지 않았다.",  # negated
        "정부가 정책을 발표했니?",  # a question
        "새 정부가 정책을 발표했다.",  # the subject is a longer noun phrase
        "학생이 숙제를 했다.",  # 하다 alone is not a listed verbal noun
    ],
)
def test_passive_leaves_other_sentences_alone(sentence):
    assert to_passive(sentence) is None


SOURCE = pd.DataFrame(
    {
        "sentence1": ["숙소가 정말 깨끗했어요.", "오전에 서울에서 회의가 있어요.", "정부가 새 정책을 발표했다."],
        "sentence2": ["호스트분이 정말 친절했어요.", "방이 넓어요.", "인구가 크게 증가했다."],
        "label": [3.0, 0.0, 0.0],
        "location": ["line 1", "line 2", "line 3"],
    }
)


def test_paraphrase_kinds_are_labelled_high_and_deterministic():
    first = augment(SOURCE, "src.jsonl", seed=7, kinds=PARAPHRASE_KINDS)
    pd.testing.assert_frame_equal(first, augment(SOURCE, "src.jsonl", seed=7, kinds=PARAPHRASE_KINDS))
    assert set(first["kind"]) == set(PARAPHRASE_KINDS)
    assert (first["label"] >= 4.5).all() and (first["label"] == first["kind"].map(KIND_LABELS)).all()
    assert max(KIND_LABELS[k] for k in (*NEGATIVE_KINDS, *EXTRA_NEGATIVE_KINDS)) < 2


def test_default_kinds_are_the_hard_negatives_alone():
    default = augment(SOURCE, "src.jsonl", seed=7)
    explicit = augment(SOURCE, "src.jsonl", seed=7, kinds=NEGATIVE_KINDS)
    pd.testing.assert_frame_equal(default, explicit)
    assert set(default["kind"]) <= set(NEGATIVE_KINDS)
    both = augment(SOURCE, "src.jsonl", seed=7, kinds=(*PARAPHRASE_KINDS, *NEGATIVE_KINDS))
    negatives = both[both["kind"].isin(NEGATIVE_KINDS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(negatives, default)  # adding kinds changes no negative


# SHA-256 of the default output for SOURCE + test_augment's SOURCE (31 pairs), as written by the
# generator before the paraphrase kinds existed (commit b6f276c): the default must not move.
DEFAULT_OUTPUT_SHA256 = "b688d8c9922919fa91bc0141d216454f084ec9a4ad3501b44495f8fa94dee2b5"


def test_default_output_is_what_it_was_before_the_paraphrase_kinds():
    frame = augment(pd.concat([SOURCE, NEGATIVE_SOURCE], ignore_index=True), "src.jsonl", seed=13)
    text = frame.to_json(orient="records", lines=True, force_ascii=False)
    assert len(frame) == 31
    assert hashlib.sha256(text.encode()).hexdigest() == DEFAULT_OUTPUT_SHA256


def test_kinds_on_the_command_line(tmp_path):
    source = tmp_path / "train.jsonl"
    source.write_text(SOURCE.drop(columns="location").to_json(orient="records", lines=True, force_ascii=False))
    output = tmp_path / "paraphrases.jsonl"
    written = main([str(source), str(output), "--per-kind", "0", "--kinds", "register,synonym", "--seed", "3"])
    assert set(written["kind"]) == {"register", "synonym"}
    pairs = read_pairs(output)
    assert ("방이 넓어요.", "방이 넓습니다.") in set(zip(pairs["sentence1"], pairs["sentence2"]))
    record = json.loads(output.read_text(encoding="utf-8").splitlines()[0])
    assert set(record) == {"sentence1", "sentence2", "label", "kind", "source_location"}
    grouped = main([str(source), str(tmp_path / "all.jsonl"), "--per-kind", "0", "--kinds", "paraphrases"])
    assert set(grouped["kind"]) == set(PARAPHRASE_KINDS)
    excluded = main(
        [str(source), str(tmp_path / "ex.jsonl"), "--kinds", "register", "--exclude", str(source), "--per-kind", "0"]
    )
    assert excluded.empty
    with pytest.raises(SystemExit):
        main([str(source), str(tmp_path / "x.jsonl"), "--kinds", "registr"])


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("주차할 수 있는 곳이 많아요.", "주차할 수 없는 곳이 많아요."),  # inside the sentence, after 수
        ("에어컨이 있는 방이 좋아요.", "에어컨이 없는 방이 좋아요."),  # after a subject
        ("잘 모르는 부분이 있었어요.", "잘 아는 부분이 있었어요."),  # 르 irregular
        ("체크인이 가능한 시간을 알려줘", "체크인이 불가능한 시간을 알려줘"),
        ("예약하면 돼요.", "예약하면 안 돼요."),  # -면 되다, the one final form it negates
    ],
)
def test_lexical_negation(sentence, expected):
    assert negate_lexical(sentence, random.Random(0)) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "가능한 빨리 와주세요.",  # as soon as possible
        "하고 있는 일이 많다.",  # progressive 있다
        "안 되는 것도 있어요.",  # already negated; the final 있어요 is negate's
        "먹으면서 보면 안 돼.",  # already 안
        "메일 코드를 알고 싶어",  # 알고 싶다
    ],
)
def test_lexical_negation_leaves_idioms_and_the_final_predicate_alone(sentence):
    assert negate_lexical(sentence, random.Random(0)) is None
