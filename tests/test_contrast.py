"""The Korean contrast set (data/contrast) and its per-category accuracy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from training import contrast as contrast_module
from training.contrast import CATEGORIES, CONTRAST_FILE, contrast_accuracy, read_contrast
from training.data import DataValidationError

REFERENCE_FILES = [
    REPO / "data/klue-sts/klue_sts_train.jsonl",
    REPO / "data/klue-sts/klue_sts_dev.jsonl",
    *sorted((REPO / "data/korsts").glob("*.jsonl")),
]
GOOD = {
    "id": "negation-001",
    "category": "negation",
    "sentence1": "방이 넓어요.",
    "sentence2": "방이 넓지 않아요.",
    "similar": False,
    "label": 1.0,
    "note": "넓다 -> 넓지 않다",
}


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def as_line(record):
    return json.dumps(record, ensure_ascii=False)


@pytest.fixture(scope="module")
def shipped():
    return read_contrast(CONTRAST_FILE)


def test_shipped_set_is_valid_and_covers_every_category(shipped):
    assert len(shipped) >= 245
    counts = shipped["category"].value_counts()
    assert sorted(counts.index) == sorted(CATEGORIES)
    assert counts.min() >= 35, counts.to_dict()


def test_shipped_labels_follow_the_categories(shipped):
    assert (shipped["similar"] == (shipped["category"] == "paraphrase")).all()
    by_category = shipped.groupby("category")["label"]
    assert by_category.min()["paraphrase"] >= 3.5
    assert by_category.max()["unrelated"] <= 0.5
    contrasts = shipped[~shipped["category"].isin(["paraphrase", "unrelated"])]
    assert contrasts["label"].between(0.5, 2.5).all()
    assert (shipped["id"].str.rsplit("-", n=1).str[0] == shipped["category"]).all()


def test_shipped_pairs_are_distinct_in_either_order(shipped):
    pairs = {frozenset(p) for p in zip(shipped["sentence1"], shipped["sentence2"])}
    assert len(pairs) == len(shipped)
    assert (shipped["sentence1"] != shipped["sentence2"]).all()


def test_shipped_set_shares_no_pair_or_sentence_with_klue_or_korsts(shipped):
    pairs, sentences = set(), set()
    for path in REFERENCE_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            first, second = record["sentence1"].strip(), record["sentence2"].strip()
            pairs |= {(first, second), (second, first)}
            sentences |= {first, second}
    ours = list(zip(shipped["sentence1"].str.strip(), shipped["sentence2"].str.strip()))
    assert [pair for pair in ours if pair in pairs] == []
    assert [s for pair in ours for s in pair if s in sentences] == []


def test_contrast_accuracy_by_hand():
    frame = pd.DataFrame(
        {
            "category": ["negation", "negation", "negation", "paraphrase", "paraphrase"],
            "similar": [False, False, False, True, True],
        }
    )
    # negation flags: F, T (3.0 is similar), T -> 1 of 3 right; paraphrase flags: F, T -> 1 of 2 right
    scores = np.array([1.0, 3.0, 4.5, 2.9, 4.0])
    results = contrast_accuracy(scores, frame)
    assert list(results) == ["paraphrase", "negation", "all"]  # CATEGORIES order, then all
    assert results["negation"] == pytest.approx({"pairs": 3, "accuracy": 1 / 3, "mean_score": 8.5 / 3})
    assert results["paraphrase"] == pytest.approx({"pairs": 2, "accuracy": 0.5, "mean_score": 3.45})
    assert results["all"] == pytest.approx({"pairs": 5, "accuracy": 0.4, "mean_score": 15.4 / 5})


def test_contrast_accuracy_needs_one_score_per_pair():
    frame = pd.DataFrame({"category": ["intent"], "similar": [False]})
    with pytest.raises(ValueError, match="2 scores for 1 pairs"):
        contrast_accuracy(np.array([1.0, 2.0]), frame)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (as_line({k: v for k, v in GOOD.items() if k != "note"} | {"id": "x"}), "line 2: missing key(s) note"),
        (as_line(GOOD | {"id": "x", "category": "sarcasm"}), "line 2: category 'sarcasm' is not one of paraphrase"),
        (as_line(GOOD | {"id": "x", "similar": "false"}), "line 2: similar must be true or false, got 'false'"),
        (as_line(GOOD | {"id": "x", "label": 7}), "line 2: label 7 is outside 0-5"),
        (as_line(GOOD | {"id": "x", "label": True}), "line 2: label must be a number"),
        (as_line(GOOD | {"id": "x", "label": 2.0, "similar": True}), "line 2: label 2 is < 3 but similar is true"),
        (as_line(GOOD | {"id": "x", "label": 3.0}), "line 2: label 3 is >= 3 but similar is false"),
        (as_line(GOOD | {"id": "x", "sentence2": "  "}), "line 2: sentence2 must be a non-empty string"),
        (as_line(GOOD), "line 2: id 'negation-001' repeats line 1"),
        ('{"id": "x", ', "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
    ],
)
def test_validation_names_the_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [as_line(GOOD), line])
    with pytest.raises(DataValidationError) as error:
        read_contrast(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_validation_lists_every_bad_line(tmp_path):
    lines = [as_line(GOOD), as_line(GOOD | {"id": "b", "label": -1}), "", as_line(GOOD | {"id": "c", "category": "x"})]
    with pytest.raises(DataValidationError, match="2 problem") as error:
        read_contrast(write_jsonl(tmp_path / "bad.jsonl", lines))
    assert "line 2: label -1 is outside 0-5" in str(error.value)
    assert "line 4: category 'x'" in str(error.value)


def test_read_contrast_keeps_order_and_locations(tmp_path):
    second = GOOD | {"id": "paraphrase-001", "category": "paraphrase", "similar": True, "label": 4}
    frame = read_contrast(write_jsonl(tmp_path / "ok.jsonl", [as_line(GOOD), "", as_line(second)]))
    assert frame["id"].tolist() == ["negation-001", "paraphrase-001"]
    assert frame["location"].tolist() == ["line 1", "line 3"]
    assert frame["label"].dtype == np.float64


class FixedScorer:
    """Stands in for the served scorer: one fixed score per sentence2."""

    def __init__(self, by_sentence2):
        self.by_sentence2 = by_sentence2
        self.calls = []

    def score(self, pairs):
        self.calls.append(list(pairs))
        return np.array([self.by_sentence2[second] for _, second in pairs])


def test_cli_scores_the_file_with_the_serving_scorer(tmp_path, monkeypatch, capsys):
    records = [
        GOOD,
        GOOD | {"id": "negation-002", "sentence2": "방이 좁아요."},
        GOOD
        | {
            "id": "paraphrase-001",
            "category": "paraphrase",
            "sentence2": "방이 널찍해요.",
            "similar": True,
            "label": 4,
        },
    ]
    path = write_jsonl(tmp_path / "set.jsonl", [as_line(r) for r in records])
    scorer = FixedScorer({"방이 넓지 않아요.": 3.5, "방이 좁아요.": 0.5, "방이 널찍해요.": 4.5})
    loaded = []
    monkeypatch.setattr(contrast_module, "load_scorer", lambda *args, **kwargs: loaded.append((args, kwargs)) or scorer)

    results = contrast_module.main(["pkg", "--backend", "torch", "--device", "cpu", "--file", str(path)])
    table = capsys.readouterr().out
    assert loaded[0][0][1] == "torch" and loaded[0][1] == {"device": "cpu"}
    assert scorer.calls == [[(r["sentence1"], r["sentence2"]) for r in records]]
    assert "| paraphrase | 1 | 1.000 | 4.50 |" in table
    assert "| negation | 2 | 0.500 | 2.00 |" in table
    assert "| **all** | 3 | 0.667 | 2.83 |" in table
    assert results["all"]["accuracy"] == pytest.approx(2 / 3)

    contrast_module.main(["pkg", "--file", str(path), "--json"])
    assert json.loads(capsys.readouterr().out)["negation"] == {"pairs": 2, "accuracy": 0.5, "mean_score": 2.0}
