"""Pair tokenisation: serving's Rust tokenizer gives the ids training and transformers give."""

from __future__ import annotations

import pandas as pd
import pytest
from transformers import AutoTokenizer

from models.pairs import PairTokenizer
from models.scorer import load_scorer
from models.scoring import ScoreSettings
from tests.conftest import DEFAULT_PACKAGE, KLUE_DEV
from training.data import read_pairs
from training.trainer import PairCollator, pair_dataset, pair_tokenizer

DEV = read_pairs(KLUE_DEV).head(64)
LONG = " ".join(["숙소가 아주 깨끗하고 위치가 좋아서 다음에도 묵고 싶어요"] * 20)


@pytest.fixture(params=["tiny", "default"])
def package(request):
    return request.getfixturevalue("trained_package") if request.param == "tiny" else DEFAULT_PACKAGE


def test_serving_training_and_transformers_tokenise_identically(package):
    first = [*DEV["sentence1"], LONG, "짧다"]
    second = [*DEV["sentence2"], "짧은 문장", LONG]
    max_length = 64
    served = PairTokenizer.from_dir(package, max_length)(first, second)
    hf = AutoTokenizer.from_pretrained(package)
    frame = pd.DataFrame({"sentence1": first, "sentence2": second, "label": 0.0})
    training = pair_tokenizer(hf, max_length)
    dataset = pair_dataset(frame, ScoreSettings(max_length=max_length), training)
    collated = PairCollator(training, ("input_ids", "attention_mask"))([dataset[i] for i in range(len(dataset))])
    reference = hf(first, second, padding=True, truncation="longest_first", max_length=max_length, return_tensors="np")
    for name in ("input_ids", "attention_mask"):
        assert (served[name] == reference[name]).all(), name
        assert (collated[name].numpy() == reference[name]).all(), name
    if "token_type_ids" in reference:
        assert (served["token_type_ids"] == reference["token_type_ids"]).all()
    assert served["input_ids"].shape[1] == max_length


def test_the_scorer_tokenises_with_the_packages_own_max_length(package):
    scorer = load_scorer(package, "onnx", device="cpu")
    rows = scorer.encode([(LONG, LONG)])
    assert set(rows.lengths.tolist()) == {scorer.settings.max_length}


def test_mismatched_sentence_lists_are_refused():
    tokenizer = PairTokenizer.from_dir(DEFAULT_PACKAGE, 32)
    with pytest.raises(ValueError, match="2 first sentences but 1 second"):
        tokenizer.encode(["a", "b"], ["c"])


@pytest.mark.parametrize(("symmetry", "rows"), [("none", 1), ("average", 2), ("canonical", 1)])
def test_training_scores_held_out_pairs_with_the_rows_the_service_runs(symmetry, rows):
    settings = ScoreSettings(max_length=64, symmetry=symmetry)
    hf = AutoTokenizer.from_pretrained(DEFAULT_PACKAGE)
    training = pair_tokenizer(hf, 64)
    frame = DEV.head(8)
    evaluated = pair_dataset(frame, settings, training)
    codec_rows = PairTokenizer.from_dir(DEFAULT_PACKAGE, 64).encode(
        *settings.order(frame["sentence1"].tolist(), frame["sentence2"].tolist())
    )
    assert len(evaluated) == rows * len(frame)
    assert [evaluated[i]["input_ids"].tolist() for i in range(len(evaluated))] == [
        codec_rows[i : i + 1].ids.tolist() for i in range(len(codec_rows))
    ]
    trained = pair_dataset(frame, settings, training, training=True)  # a symmetric model trains on both orders
    assert len(trained) == (1 if symmetry == "none" else 2) * len(frame)
