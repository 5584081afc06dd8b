"""Grouped, stratified splits and cross-validation folds (training.splits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import KLUE_DEV, REPO
from training.data import merge_duplicate_pairs, read_pairs
from training.metrics import label_bins
from training.splits import (
    SplitSettings,
    drop_pairs_sharing_sentences,
    nearest_training_similarity,
    normalise_sentence,
    pair_groups,
    split_pairs,
    split_train_validation,
    stratified_group_folds,
)

KLUE_TRAIN = REPO / "data/klue-sts/klue_sts_train.jsonl"


def frame(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sentence1", "sentence2", "label", "source"]).assign(
        location=[f"line {i}" for i in range(1, len(rows) + 1)]
    )


@pytest.fixture(scope="module")
def klue_train() -> pd.DataFrame:
    return merge_duplicate_pairs(read_pairs(KLUE_TRAIN), "train")


def test_normalised_sentences_ignore_case_spacing_and_punctuation():
    assert normalise_sentence("숙소 위치는, 좋아요!") == normalise_sentence("숙소위치는 좋아요") == "숙소위치는좋아요"
    assert normalise_sentence("ＡＢＣ") == "abc"  # NFKC folds full-width letters


def test_pairs_sharing_a_sentence_or_a_near_duplicate_form_one_group():
    pairs = frame(
        [
            ("오늘 날씨가 정말 좋네요.", "하늘이 맑습니다.", 3.0, "a"),
            ("오늘 날씨가 정말 좋네요!", "비가 옵니다.", 1.0, "a"),  # same sentence up to punctuation
            ("하늘이 맑습니다", "구름 한 점 없어요.", 3.5, "a"),  # shares pair 0's second sentence
            ("서울시는 내년 예산을 크게 늘리기로 했다.", "서울시는 내년 예산을 크게 늘리기로 결정했다.", 4.5, "b"),
            ("서울시는 내년 예산을 크게 늘리기로 했다고 밝혔다.", "전혀 다른 이야기입니다.", 0.0, "b"),
            ("고양이가 창가에서 잠을 잔다.", "강아지가 공원에서 뛰어논다.", 0.5, "c"),
        ]
    )
    groups = pair_groups(pairs, threshold=0.6)
    assert groups[0] == groups[1] == groups[2]
    assert groups[3] == groups[4]  # near-duplicate first sentences
    assert len({groups[0], groups[3], groups[5]}) == 3
    exact_only = pair_groups(pairs, threshold=1.0)
    assert exact_only[3] != exact_only[4] and exact_only[0] == exact_only[1]


def test_group_folds_keep_groups_whole_and_spread_each_stratum():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), rng.integers(1, 4, 300))
    strata = np.where(groups % 3 == 0, "x", np.where(groups % 3 == 1, "y", "z"))
    folds = stratified_group_folds(groups, strata, n_folds=5, seed=1)
    assert all(len(set(folds[groups == g])) == 1 for g in np.unique(groups))
    for stratum in ("x", "y", "z"):
        counts = np.bincount(folds[strata == stratum], minlength=5)
        assert counts.max() - counts.min() <= 3
    assert np.array_equal(folds, stratified_group_folds(groups, strata, 5, seed=1))
    assert not np.array_equal(folds, stratified_group_folds(groups, strata, 5, seed=2))
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_group_folds(groups, strata, 1, seed=1)


def test_random_scheme_is_the_first_default_models_split(klue_train):
    parts = split_pairs(klue_train, SplitSettings(split="random", validation_fraction=0.1, split_seed=42))
    train, validation = split_train_validation(klue_train, 0.1, 42)
    assert parts["train"].equals(train) and parts["validation"].equals(validation)


def test_grouped_split_has_no_near_duplicate_across_it_and_keeps_the_mix(klue_train):
    settings = SplitSettings(split="grouped", validation_fraction=0.1, split_seed=42)
    parts = split_pairs(klue_train, settings)
    train, validation = parts["train"], parts["validation"]
    assert len(train) + len(validation) == len(klue_train)
    assert abs(len(validation) - len(klue_train) / 10) < 20
    nearest = nearest_training_similarity(train, validation)
    assert nearest.max() < settings.near_duplicate_threshold
    random_validation = split_pairs(klue_train, SplitSettings(split="random"))["validation"]
    random_train = split_pairs(klue_train, SplitSettings(split="random"))["train"]
    assert (
        nearest_training_similarity(random_train, random_validation) >= settings.near_duplicate_threshold
    ).sum() > 10
    share = validation["source"].value_counts(normalize=True)
    overall = klue_train["source"].value_counts(normalize=True)
    assert (share - overall).abs().max() < 0.01
    bins = np.bincount(label_bins(validation["label"]), minlength=5) / len(validation)
    assert np.abs(bins - np.bincount(label_bins(klue_train["label"]), minlength=5) / len(klue_train)).max() < 0.01


def test_random_holdout_and_cross_validation_folds_partition_the_rest(klue_train):
    pairs = klue_train.iloc[:3000].reset_index(drop=True)
    keys = lambda f: set(zip(f["sentence1"], f["sentence2"]))  # noqa: E731
    folds = [
        split_pairs(pairs, SplitSettings(random_holdout_fraction=0.1, cv_folds=3, cv_fold=i, split_seed=7))
        for i in range(3)
    ]
    validation, holdout = keys(folds[0]["validation"]), keys(folds[0]["validation_random"])
    assert not validation & holdout and len(holdout) == 300
    held = [keys(f["cv_fold"]) for f in folds]
    assert all(not a & b for i, a in enumerate(held) for b in held[i + 1 :])
    assert set().union(*held) == keys(pairs) - validation - holdout
    for part, fold in zip(folds, held):
        assert keys(part["validation"]) == validation and not keys(part["train"]) & fold
        assert len(keys(part["train"])) + len(fold) + len(validation) + len(holdout) == len(pairs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split": "stratified"}, "split must be one of"),
        ({"validation_fraction": 0.0}, "between 0 and 1"),
        ({"cv_folds": 1}, "at least 2"),
        ({"cv_folds": 3, "cv_fold": 3}, r"cv_fold must be in 0\.\.2"),
        ({"random_holdout_fraction": 0.6}, "random_holdout_fraction"),
    ],
)
def test_bad_split_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        SplitSettings(**changes)


def test_settings_recorded_before_the_grouped_scheme_rebuild_the_random_split():
    assert SplitSettings.from_dict({"validation_fraction": 0.1, "split_seed": 3, "pooling": "cls"}).split == "random"


def test_split_is_nine_to_one_seeded_and_disjoint():
    pairs = read_pairs(KLUE_DEV)
    train, validation = split_train_validation(pairs, 0.1, seed=7)
    again_train, again_validation = split_train_validation(pairs, 0.1, seed=7)
    other_train, _ = split_train_validation(pairs, 0.1, seed=8)
    assert (len(train), len(validation)) == (467, 52)
    assert train.equals(again_train) and validation.equals(again_validation)
    assert not train.equals(other_train)
    assert set(train["location"]).isdisjoint(validation["location"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_train_validation(pairs, 1.0, seed=7)


def test_pairs_sharing_a_held_out_sentence_are_dropped():
    held_out = pd.DataFrame({"sentence1": ["숙소가 깨끗해요."], "sentence2": ["위치가 좋아요"]})
    extra = pd.DataFrame(
        {
            "sentence1": ["숙소가 깨끗해요", "방이 넓어요.", "호스트가 친절해요."],
            "sentence2": ["숙소가 깨끗하지 않아요.", "위치가 좋아요!", "호스트가 불친절해요."],
            "label": [1.0, 2.0, 1.0],
        }
    )
    kept = drop_pairs_sharing_sentences(extra, [held_out], "extra")
    assert kept["sentence1"].tolist() == ["호스트가 친절해요."]
