"""Hard negatives: conjugation, each rewrite rule on concrete Korean, the word lists, determinism, the output."""

from __future__ import annotations

import json
import random
import re

import pandas as pd
import pytest

from training.augment import (
    ANTONYM_ADVERBS,
    ANTONYM_NOUNS,
    ANTONYM_PREDICATES,
    CITIES,
    ENTITY_GROUPS,
    KIND_LABELS,
    NEGATIVE_KINDS,
    Predicate,
    augment,
    change_intent,
    change_number,
    main,
    negate,
    swap_antonym,
    swap_entity,
    swap_roles,
)
from training.augment.wordlists import WORDLISTS, antonym_predicates
from training.data import read_pairs


@pytest.mark.parametrize(
    ("lemma", "adjective", "key", "expected"),
    [
        ("좁다", True, "ayo", "좁아요"),
        ("넓다", True, "past_seumnida", "넓었습니다"),
        ("가깝다:ㅂ", True, "ayo", "가까워요"),
        ("가깝다:ㅂ", True, "mod", "가까운"),
        ("빠르다:르", True, "past_ayo", "빨랐어요"),
        ("멀다", True, "seumnida", "멉니다"),
        ("멀다", True, "mod", "먼"),
        ("크다", True, "ayo", "커요"),
        ("바쁘다", True, "past_ayo", "바빴어요"),
        ("깨끗하다", True, "si_past_ayo", "깨끗하셨어요"),
        ("좋다", True, "myeon", "좋으면"),
        ("맛있다", True, "mod", "맛있는"),
        ("열다", False, "plain", "연다"),
        ("열다", False, "mod", "여는"),
        ("닫다", False, "plain", "닫는다"),
        ("보다", False, "ayo", "봐요"),
        ("되다", False, "past_da", "됐다"),
        ("보이다", False, "past_seumnida", "보였습니다"),
    ],
)
def test_conjugation(lemma, adjective, key, expected):
    assert Predicate.parse(lemma, adjective).form(key) == expected


def test_long_negation_follows_part_of_speech():
    assert Predicate("좁").negated("plain") == "좁지 않다"
    assert Predicate("닫", adjective=False).negated("plain") == "닫지 않는다"
    assert Predicate("친절하").negated("si_past_ayo") == "친절하지 않으셨어요"


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("숙소가 정말 깨끗했어요.", "숙소가 정말 깨끗하지 않았어요."),  # 하다
        ("정부는 내년부터 청년 월세 지원을 확대한다.", "정부는 내년부터 청년 월세 지원을 확대하지 않는다."),
        ("이번 정책은 다음 달부터 시행됩니다.", "이번 정책은 다음 달부터 시행되지 않습니다."),  # 되다
        ("호스트분이 정말 친절하셨어요.", "호스트분이 정말 친절하지 않으셨어요."),  # honorific
        ("전망이 너무 좋았어요.", "전망이 너무 좋지 않았어요."),  # regular stem
        ("아이는 채소를 잘 먹는다.", "아이는 채소를 잘 먹지 않는다."),
        ("지하철역과 가까워요.", "지하철역과 가깝지 않아요."),  # ㅂ irregular from the lexicon
        ("오후부터 비가 옵니다.", "오후부터 비가 오지 않습니다."),  # vowel stem from the lexicon
        ("방에 에어컨이 있어요.", "방에 에어컨이 없어요."),  # 있다 -> 없다
        ("주차 공간이 없습니다.", "주차 공간이 있습니다."),
        ("다음에도 이 숙소에서 묵을 수 있습니다.", "다음에도 이 숙소에서 묵을 수 없습니다."),
        ("숙소는 조용한 주택가에 위치해 있어요.", "숙소는 조용한 주택가에 위치해 있지 않아요."),
        ("가격 대비 훌륭한 숙소입니다.", "가격 대비 훌륭한 숙소가 아닙니다."),  # 이다 -> 아니다
        ("정말 행복한 시간이었어요.", "정말 행복한 시간이 아니었어요."),
        ("정부는 올해 안에 관련 법안을 마련할 계획이다.", "정부는 올해 안에 관련 법안을 마련할 계획이 없다."),
        ("동네가 마음에 들었어요.", "동네가 마음에 들지 않았어요."),
    ],
)
def test_negation(sentence, expected):
    assert negate(sentence)[0] == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "내일 서울 날씨 어때?",  # a question
        "이 숙소 체크인 시간이 언제야",  # a question without a question mark
        "거실 불 꺼 줘.",  # a request
        "이 숙소는 별로 좋지 않았어요.",  # already negated
        "다른 사람의 이야기를 들었습니다.",  # 듣다 or 들다
        "도와주셔서 감사합니다.",  # a formula
        "문제는 해결하기 어렵다고 밝혔다.",  # reported speech
        "방이 좀 추웠습니다.",  # 좀 춥지 않았다 is unidiomatic
        "저는 내일 서울에 갈 것입니다.",  # 것이 아니다 would not negate the plan
        "욕실의 배수가 형편이 없었습니다.",  # an idiom with no positive
        "좋아 보이는 방 ^^",  # not a predicate at the end
    ],
)
def test_negation_skips_what_it_is_unsure_of(sentence):
    assert negate(sentence) is None


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("방이 생각보다 넓어요.", "방이 생각보다 좁아요."),
        ("화장실이 깨끗하고 수건이 넉넉했어요.", "화장실이 더럽고 수건이 넉넉했어요."),
        ("지하철역과 가까운 숙소예요.", "지하철역과 먼 숙소예요."),
        ("음식이 정말 맛있었습니다.", "음식이 정말 맛없었습니다."),
        ("올해 수출이 지난해보다 증가했다.", "올해 수출이 지난해보다 감소했다."),
        ("정부는 기준금리를 인상했다.", "정부는 기준금리를 인하했다."),
        ("호스트분이 정말 친절하셨어요.", "호스트분이 정말 불친절하셨어요."),
        ("규제 완화를 추진한다.", "규제 강화를 추진한다."),
        ("주식으로 이익을 봤다.", "주식으로 손해를 봤다."),  # particle 을 -> 를
        ("창문을 열고 잤어요.", "창문을 닫고 잤어요."),
        ("불 켜 줘.", "불 꺼 줘."),
        ("물가가 올랐다.", "물가가 내렸다."),
        ("요즘 채소 가격이 싸요.", "요즘 채소 가격이 비싸요."),
        ("청결도가 높았어요.", "청결도가 낮았어요."),  # 청결도 is a noun, not 청결 + 도
        ("아침 일찍 출발했어요.", "아침 늦게 출발했어요."),
    ],
)
def test_antonym(sentence, expected):
    assert swap_antonym(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "산에 올랐다.",  # 오르다 needs a subject: 산에 오르다 has no 내리다
        "짐을 쌌어요.",  # 싸다 = to pack
        "방이 안 넓어요.",  # already negated
        "장점과 단점이 있어요.",  # the antonym is already there
        "첫 인상이 강렬했어요.",  # 인상 = impression: swapped only before 하다/되다
        "호스트가 필요할 때 도와줍니다.",  # 불필요할 때 is not idiomatic
        "온라인 콘서트를 열었습니다.",  # 열다 = to hold (an event): no 닫다
        "하루라도 빨리 오세요.",  # 하루라도 빨리 = as soon as possible
        "6층에 가까운 계단을 올라야 해요.",  # 6층에 가깝다 = nearly six floors
        "우산 사려면 얼마나 필요해?",  # 얼마나 필요해 = how much do you need
    ],
)
def test_antonym_skips_ambiguous_words(sentence):
    assert swap_antonym(sentence) is None


def test_antonym_dictionary_has_at_least_sixty_pairs():
    assert len(ANTONYM_PREDICATES) + len(ANTONYM_NOUNS) + len(ANTONYM_ADVERBS) >= 60


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("내일 날씨 알려줘.", "모레 날씨 알려줘."),
        ("오후에 비가 와요.", "오전에 비가 와요."),
        ("내일은 쉬어요.", "모레는 쉬어요."),  # 은 -> 는 after a vowel
    ],
)
def test_number_swaps_times(sentence, expected):
    assert change_number(sentence, random.Random(0)) == expected


@pytest.mark.parametrize(
    ("sentence", "pattern", "old"),
    [
        ("제주도에서 3박 묵었어요.", r"제주도에서 ([1-7])박 묵었어요\.", "3"),
        ("두 명이 왔어요.", r"(한|세|네|다섯|여섯|일곱|여덟|아홉|열) 명이 왔어요\.", "두"),
        ("입장료는 1,500원이에요.", r"입장료는 (\d{1,3}(?:,\d{3})*)원이에요\.", "1,500"),
        ("수출이 8.5% 늘었다.", r"수출이 (\d+\.\d)% 늘었다\.", "8.5"),
        ("내일 볼까 모레 볼까 3시에 정하자.", r"내일 볼까 모레 볼까 (\d+)시에 정하자\.", "3"),  # not 모레 ... 모레
        ("회의는 오후 3시에 시작해요.", r"회의는 (?:오후 (1[0-2]|[1-9])시|(오전) 3시)에 시작해요\.", "3"),
    ],
)
def test_number_changes_one_value_in_range(sentence, pattern, old):
    for seed in range(10):
        changed = change_number(sentence, random.Random(seed))
        match = re.fullmatch(pattern, changed)
        assert match, changed
        assert old not in [g for g in match.groups() if g]


@pytest.mark.parametrize(
    "sentence",
    [
        "KF94 마스크를 착용하세요.",
        "3박 4일 일정이었어요.",
        "10:30에 만나요.",
        "3~5명이 적당해요.",
        "코로나19 확진자",
        "단 한 명의 손님도 없었어요.",  # 단 한 명도 = not a single one
        "제 3자에게 열쇠를 받았어요.",  # 제3자 = a third party
    ],
)
def test_number_leaves_identifiers_ranges_and_linked_counts(sentence):
    assert change_number(sentence, random.Random(0)) is None


def test_number_picks_a_weekday_the_sentence_does_not_hold():
    for seed in range(10):
        changed = change_number("토요일과 일요일에는 쉬어요.", random.Random(seed))
        first, second = re.fullmatch(r"(\w+)과 (\w+)에는 쉬어요\.", changed).groups()
        assert first != second


def test_entity_swaps_a_city_with_the_right_particle():
    changed = swap_entity("서울로 출장을 가요.", random.Random(0))
    city, particle = re.fullmatch(r"(\w+?)(으로|로) 출장을 가요\.", changed).groups()
    assert city in CITIES and city != "서울"
    assert particle == ("로" if (ord(city[-1]) - 0xAC00) % 28 in (0, 8) else "으로")
    assert swap_entity("제주도에 가요.", random.Random(0)) is None  # 제주도 vs 제주 + 도 (also)
    assert swap_entity("서울대에 다녀요.", random.Random(0)) is None
    assert swap_entity("회의는 서울 여의도에서 열렸다.", random.Random(0)) is None  # 여의도 is in Seoul
    assert swap_entity("대구 센터를 써서 대구에서 치료한다.", random.Random(0)) is None  # both or neither


@pytest.mark.parametrize(
    ("sentence", "pattern", "old"),
    [
        ("엄마가 저녁을 차려 주셨어.", r"(\w+?)(이|가) 저녁을 차려 주셨어\.", "엄마"),
        ("미국 정부가 관세를 올렸다.", r"(\w+) 정부가 관세를 올렸다\.", "미국"),
        ("네이버 메일 확인해 줘.", r"(\w+) 메일 확인해 줘\.", "네이버"),
    ],
)
def test_entity_swaps_a_person_country_or_company(sentence, pattern, old):
    for seed in range(5):
        match = re.fullmatch(pattern, swap_entity(sentence, random.Random(seed)))
        new = match.group(1)
        group = next(g for g in ENTITY_GROUPS if old in g)
        assert new in group and new != old
        if match.lastindex == 2:
            assert match.group(2) == ("가" if (ord(new[-1]) - 0xAC00) % 28 == 0 else "이")


@pytest.mark.parametrize("sentence", ["한국어를 배워요.", "딸기가 맛있어요.", "보고 싶어, 엄마.", "중국집에서 먹자."])
def test_entity_leaves_longer_words_and_bare_names_alone(sentence):
    assert swap_entity(sentence, random.Random(0)) is None


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("호스트가 게스트에게 환불을 요청했어요.", "게스트가 호스트에게 환불을 요청했어요."),
        ("정부가 국민을 지원한다.", "국민이 정부를 지원한다."),
        ("주인은 매우 친절하고 손님을 배려합니다.", "손님은 매우 친절하고 주인을 배려합니다."),
    ],
)
def test_roles_swap_with_their_particles(sentence, expected):
    assert swap_roles(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "아이가 밥을 먹었다.",  # 밥 is no agent
        "정부는, 국민을 위해 일한다.",  # a comma between them
        "정부는 최대 172명의 확진 환자를 위한 침대를 확보했습니다.",  # too far; 환자 is the modifier's
    ],
)
def test_roles_left_alone_without_two_agents_of_one_clause(sentence):
    assert swap_roles(sentence) is None


def test_intent_changes_the_question_or_the_service_asked_about():
    seen = {change_intent("주문한 상품 환불은 언제 되나요?", random.Random(seed)) for seed in range(30)}
    assert "주문한 상품 배송은 언제 되나요?" in seen
    assert "주문한 상품 환불은 어디서 되나요?" in seen
    assert all(s.count("환불") + s.count("언제") == 1 for s in seen)  # exactly one of the two changed
    assert {change_intent("체크인 시간이 언제인가요?", random.Random(s)) for s in range(30)} >= {
        "체크아웃 시간이 언제인가요?"
    }
    # synonyms never replace one another: 요금 is 가격
    assert all("요금" not in change_intent("가격이 얼마인가요?", random.Random(s)) for s in range(30))


@pytest.mark.parametrize("sentence", ["체크인 시간이 빨라서 좋았어요.", "언제나 깨끗한 숙소입니다."])
def test_intent_leaves_statements_and_longer_words_alone(sentence):
    assert change_intent(sentence, random.Random(0)) is None


SOURCE = pd.DataFrame(
    {
        "sentence1": [
            "방이 넓고 깨끗했어요.",
            "정부는 내년부터 지원을 확대한다.",
            "서울로 3박 여행을 가요.",
            "내일 날씨 알려줘.",
            "호스트가 게스트에게 연락했어요.",
        ],
        "sentence2": [
            "숙소가 정말 좋았습니다.",
            "오후에 비가 와요.",
            "지하철역과 가까워요.",
            "두 명이 왔어요.",
            "환불은 언제 되나요?",
        ],
        "label": [3.0, 0.0, 0.0, 0.0, 0.0],
        "location": ["line 1", "line 2", "line 3", "line 4", "line 5"],
    }
)


def test_augment_is_deterministic_for_a_seed():
    first = augment(SOURCE, "src.jsonl", per_kind=2, seed=7)
    again = augment(SOURCE, "src.jsonl", per_kind=2, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert set(first["kind"]) == set(NEGATIVE_KINDS)
    assert first["kind"].value_counts().max() <= 2
    assert (first["label"] == first["kind"].map(KIND_LABELS)).all()
    assert (first["sentence1"] != first["sentence2"]).all()
    assert first["source_location"].str.match(r"src\.jsonl line \d sentence[12]$").all()


def test_output_file_is_training_data(tmp_path):
    source = tmp_path / "train.jsonl"
    source.write_text(SOURCE.drop(columns="location").to_json(orient="records", lines=True, force_ascii=False))
    output = tmp_path / "out" / "hard_negatives.jsonl"
    written = main([str(source), str(output), "--per-kind", "0", "--seed", "3"])
    pairs = read_pairs(output)
    assert len(pairs) == len(written) > 0
    assert pairs["label"].tolist() == written["label"].tolist()
    record = json.loads(output.read_text(encoding="utf-8").splitlines()[0])
    assert set(record) == {"sentence1", "sentence2", "label", "kind", "source_location"}
    assert ("방이 넓고 깨끗했어요.", "방이 넓고 깨끗하지 않았어요.") in set(zip(pairs["sentence1"], pairs["sentence2"]))


def test_excluded_sentences_are_not_rewritten():
    held_out = SOURCE.iloc[[0]]
    frame = augment(SOURCE, "src.jsonl", seed=7, exclude=held_out)
    used = set(frame["sentence1"])
    assert not used & {held_out["sentence1"].iloc[0], held_out["sentence2"].iloc[0]}
    assert "정부는 내년부터 지원을 확대한다." in used


def test_every_word_list_says_where_it_comes_from():
    files = sorted(WORDLISTS.glob("*.yaml"))
    assert [f.stem for f in files] == ["agents", "antonyms", "entities", "intents", "negation", "synonyms"]
    for path in files:
        header = path.read_text(encoding="utf-8").split("\n\n")[0]
        assert header.startswith("#") and "Provenance:" in header, path.name


def test_a_word_list_group_with_an_unknown_option_is_refused():
    with pytest.raises(ValueError, match="antonyms.yaml predicates: a group needs `pairs` and takes after"):
        antonym_predicates([{"pairs": [["넓다", "좁다"]], "one_wya": True}])
    with pytest.raises(ValueError, match="unknown form 'casual'"):
        antonym_predicates([{"pairs": [["넓다", "좁다"]], "forms": ["casual"]}])
    pair = antonym_predicates(
        [{"pairs": [["한산하다", "붐비다"]], "part": "adjective verb", "forms": ["predicate", "ge"]}]
    )
    assert pair[0].adjective == (True, False) and pair[0].keys[-1] == "ge"
