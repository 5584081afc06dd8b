"""The Korean contrast set (data/contrast) and its per-category accuracy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from training import contrast as contrast_module
from training.contrast import (
    CATEGORIES,
    CONTRAST_FILE,
    MINIMAL_PAIR_FILE,
    PARAPHRASE_FILE,
    TRIPLE_COLUMNS,
    contrast_accuracy,
    contrast_report,
    distinct_pairs,
    minimal_pair_accuracy,
    project_triples,
    read_contrast,
    read_minimal_pairs,
    read_paraphrases,
    score_triples,
)
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
    paraphrases = write_jsonl(tmp_path / "p.jsonl", [as_line(PARAPHRASE | {"anchor": "방이 넓어요."})])
    minimal = write_jsonl(tmp_path / "mp.jsonl", [as_line(TRIPLE)])
    scorer = FixedScorer(
        {
            "방이 넓지 않아요.": 3.5,
            "방이 좁아요.": 0.5,
            "방이 널찍해요.": 4.5,
            "객실이 넓어요.": 4.0,
            "방이 작아요.": 1.0,
        }
    )
    loaded = []
    monkeypatch.setattr(contrast_module, "load_scorer", lambda *args, **kwargs: loaded.append((args, kwargs)) or scorer)

    files = ["--file", str(path), "--paraphrases", str(paraphrases), "--minimal-pairs", str(minimal)]
    results = contrast_module.main(["pkg", "--backend", "torch", "--device", "cpu", *files])
    table = capsys.readouterr().out
    assert loaded[0][0][1] == "torch" and loaded[0][1] == {"device": "cpu"}
    # one call, each distinct pair once: the contrast pairs, then the new (anchor, paraphrase) pairs
    assert scorer.calls == [
        [(r["sentence1"], r["sentence2"]) for r in records]
        + [("방이 넓어요.", "객실이 넓어요."), ("방은 넓어요.", "방이 널찍해요."), ("방은 넓어요.", "방이 작아요.")]
    ]
    assert "| paraphrase | 1 | 1.000 | 4.50 |" in table
    assert "| negation | 2 | 0.500 | 2.00 |" in table
    assert "| **all** | 3 | 0.667 | 2.83 |" in table
    assert results["contrast"]["all"]["accuracy"] == pytest.approx(2 / 3)
    # project: (넓어요, 객실이 넓어요 4.0) against 넓지 않아요 3.5 (fails: >= 3) and 좁아요 0.5 (passes)
    assert results["minimal_pairs"]["project"]["negation"] == {"triples": 2, "accuracy": 0.5}
    assert results["minimal_pairs"]["held_out"]["all"] == {"triples": 1, "accuracy": 1.0}
    assert "Minimal pairs, held out of training" in table

    contrast_module.main(["pkg", *files, "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["contrast"]["negation"] == {"pairs": 2, "accuracy": 0.5, "mean_score": 2.0}
    assert printed["minimal_pairs"]["project"]["paraphrase"] == {"pairs": 1, "accuracy": 1.0}


# ---------------------------------------------------------------------------------------------
# Minimal pairs (issue 16): ko_contrast_paraphrases.jsonl and ko_minimal_pairs.jsonl
# ---------------------------------------------------------------------------------------------

PARAPHRASE = {"anchor": "방이 넓어요.", "preserving": "객실이 넓어요.", "label": 4.6, "note": "방/객실"}
TRIPLE = {
    "id": "mp-001",
    "category": "antonym",
    "anchor": "방은 넓어요.",
    "preserving": "방이 널찍해요.",
    "changing": "방이 작아요.",
    "preserving_label": 4.5,
    "changing_label": 1.0,
    "note": "넓다/널찍하다; 넓다/작다",
}


@pytest.fixture(scope="module")
def paraphrases():
    return read_paraphrases(PARAPHRASE_FILE)


@pytest.fixture(scope="module")
def held_out():
    return read_minimal_pairs(MINIMAL_PAIR_FILE)


@pytest.fixture(scope="module")
def reference_sentences():
    sentences = set()
    for path in REFERENCE_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            sentences |= {record["sentence1"].strip(), record["sentence2"].strip()}
    return sentences


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            as_line({k: v for k, v in PARAPHRASE.items() if k != "label"} | {"anchor": "x"}),
            "line 2: missing key(s) label",
        ),
        (as_line(PARAPHRASE | {"anchor": "x", "label": 2.5}), "line 2: label 2.5 is < 3: a paraphrase must be similar"),
        (as_line(PARAPHRASE | {"anchor": "x", "label": 6}), "line 2: label 6 is outside 0-5"),
        (as_line(PARAPHRASE | {"anchor": "x", "label": "4"}), "line 2: label must be a number"),
        (as_line(PARAPHRASE | {"anchor": "x", "preserving": " "}), "line 2: preserving must be a non-empty string"),
        (as_line(PARAPHRASE | {"anchor": "x", "preserving": "x"}), "line 2: preserving repeats the anchor"),
        (as_line(PARAPHRASE), "line 2: anchor '방이 넓어요.' repeats line 1"),
        ("nope", "line 2: not valid JSON"),
    ],
)
def test_paraphrase_reader_names_the_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [as_line(PARAPHRASE), line])
    with pytest.raises(DataValidationError) as error:
        read_paraphrases(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            as_line({k: v for k, v in TRIPLE.items() if k != "changing"} | {"id": "x"}),
            "line 2: missing key(s) changing",
        ),
        (as_line(TRIPLE | {"id": "x", "category": "paraphrase"}), "line 2: category 'paraphrase' is not one of"),
        (as_line(TRIPLE | {"id": "x", "changing_label": 3.0}), "line 2: changing_label 3 must be < 3"),
        (as_line(TRIPLE | {"id": "x", "preserving_label": 2.9}), "line 2: preserving_label 2.9 must be >= 3"),
        (as_line(TRIPLE | {"id": "x", "preserving_label": None}), "line 2: preserving_label must be a number"),
        (as_line(TRIPLE | {"id": "x", "changing_label": -1}), "line 2: changing_label -1 is outside 0-5"),
        (
            as_line(TRIPLE | {"id": "x", "changing": "방이 널찍해요."}),
            "line 2: anchor, preserving and changing must be",
        ),
        (as_line(TRIPLE | {"id": "x", "anchor": ""}), "line 2: anchor must be a non-empty string"),
        (as_line(TRIPLE), "line 2: id 'mp-001' repeats line 1"),
        ("[]", "line 2: expected a JSON object, got list"),
    ],
)
def test_minimal_pair_reader_names_the_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [as_line(TRIPLE), line])
    with pytest.raises(DataValidationError) as error:
        read_minimal_pairs(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def _triples(categories, anchors=None, preserving=None):
    anchors = anchors or [f"a{i}" for i in range(len(categories))]
    preserving = preserving or [f"p{i}" for i in range(len(categories))]
    return pd.DataFrame({"category": categories, "anchor": anchors, "preserving": preserving})


def test_minimal_pair_accuracy_all_low_and_all_high_score_zero():
    triples = _triples(["negation", "negation", "number"])
    low = minimal_pair_accuracy(triples, np.full(3, 1.0), np.full(3, 0.5))
    high = minimal_pair_accuracy(triples, np.full(3, 4.9), np.full(3, 4.0))
    for results in (low, high):
        assert {name: row["accuracy"] for name, row in results.items() if name != "paraphrase"} == {
            "negation": 0.0,
            "number": 0.0,
            "all": 0.0,
        }
    assert low["paraphrase"]["accuracy"] == 0.0
    assert high["paraphrase"]["accuracy"] == 1.0


def test_minimal_pair_accuracy_by_hand():
    # 0 passes; 1: changing 3.2 is not below 3; 2: preserving 2.0 is not similar; 3: passes at the edges
    # (3.0 and 2.99); 4: ordering wrong, both >= 3. (Preserving >= 3 > changing implies the ordering, so a
    # wrong order always breaks a threshold too.)
    triples = _triples(
        ["negation", "negation", "intent", "intent", "intent"],
        anchors=["a", "a", "b", "b", "c"],
        preserving=["p", "p", "q", "q", "r"],
    )
    preserving = np.array([4.0, 4.0, 2.0, 3.0, 3.5])
    changing = np.array([1.0, 3.2, 1.0, 2.99, 4.5])
    results = minimal_pair_accuracy(triples, preserving, changing)
    assert list(results) == ["paraphrase", "negation", "intent", "all"]
    assert results["paraphrase"] == pytest.approx({"pairs": 3, "accuracy": 2 / 3})  # (a,p) 4.0, (b,q) 2.0, (c,r) 3.5
    assert results["negation"] == pytest.approx({"triples": 2, "accuracy": 0.5})
    assert results["intent"] == pytest.approx({"triples": 3, "accuracy": 1 / 3})
    assert results["all"] == pytest.approx({"triples": 5, "accuracy": 2 / 5})


def test_minimal_pair_accuracy_needs_ordering_not_only_sides():
    # both sides pass the threshold test on their own only when ordered; a tie or a wrong order is not counted
    triples = _triples(["antonym", "antonym"])
    results = minimal_pair_accuracy(triples, np.array([3.0, 3.0]), np.array([3.0, 2.0]))
    assert results["antonym"]["accuracy"] == 0.5
    with pytest.raises(ValueError, match="2 and 1 scores for 2 triples"):
        minimal_pair_accuracy(triples, np.array([1.0, 2.0]), np.array([1.0]))


def test_a_correct_scorer_gets_one_on_the_shipped_sets(shipped, paraphrases, held_out):
    sets = {"project": project_triples(shipped, paraphrases), "held_out": held_out[list(TRIPLE_COLUMNS)]}
    gold = {}
    for triples in sets.values():
        for row in triples.itertuples():
            gold[(row.anchor, row.preserving)] = row.preserving_label
            gold[(row.anchor, row.changing)] = row.changing_label
    gold |= {(a, b): label for a, b, label in zip(shipped["sentence1"], shipped["sentence2"], shipped["label"])}
    scorer = FixedScorer({})
    scorer.score = lambda pairs: np.array([gold[pair] for pair in pairs])
    report = contrast_report(scorer, shipped, sets)
    assert report["contrast"]["all"]["accuracy"] == 1.0
    for results in report["minimal_pairs"].values():
        assert all(row["accuracy"] == 1.0 for row in results.values()), results


def test_score_triples_scores_each_distinct_pair_once():
    triples = pd.DataFrame(
        {"anchor": ["a", "a", "b"], "preserving": ["p", "p", "q"], "changing": ["c1", "c2", "c1"], "category": "x"}
    )
    pairs, kept, changed = distinct_pairs(triples)
    assert pairs == [("a", "p"), ("a", "c1"), ("a", "c2"), ("b", "q"), ("b", "c1")]
    assert kept.tolist() == [0, 0, 3] and changed.tolist() == [1, 2, 4]
    scorer = FixedScorer({"p": 4.0, "c1": 1.0, "c2": 2.0, "q": 3.5})
    preserving, changing = score_triples(scorer, triples)
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 5
    assert preserving.tolist() == [4.0, 4.0, 3.5] and changing.tolist() == [1.0, 2.0, 1.0]


def test_project_triples_need_a_paraphrase_for_every_anchor(shipped, paraphrases):
    triples = project_triples(shipped, paraphrases)
    contrasts = shipped[shipped["category"] != "paraphrase"]
    assert len(triples) == len(contrasts)
    assert set(paraphrases["anchor"]) == set(contrasts["sentence1"])  # every anchor is a sentence1, none missing
    with pytest.raises(DataValidationError, match=r"no paraphrase for the sentence1 of negation-001"):
        project_triples(shipped, paraphrases.iloc[1:])
    stray = pd.concat([paraphrases, pd.DataFrame([PARAPHRASE | {"location": "line 999"}])], ignore_index=True)
    with pytest.raises(DataValidationError, match="line 999: 방이 넓어요."):
        project_triples(shipped, stray)


def test_shipped_paraphrases_are_similar_and_new(paraphrases, shipped):
    assert (paraphrases["label"] >= 3.9).all()
    assert paraphrases["preserving"].is_unique
    assert not set(paraphrases["preserving"]) & (set(shipped["sentence1"]) | set(shipped["sentence2"]))


def test_shipped_minimal_pairs_cover_every_category(held_out):
    counts = held_out["category"].value_counts()
    assert sorted(counts.index) == ["antonym", "entity_role", "intent", "negation", "number"]
    assert counts.min() >= 30, counts.to_dict()
    assert held_out["anchor"].nunique() >= 40
    per_anchor = held_out.groupby("anchor")
    assert per_anchor["preserving"].nunique().eq(1).all()  # one preserving variant per anchor
    assert per_anchor.size().between(3, 5).all()
    assert (held_out["preserving_label"] >= 3.9).all() and (held_out["changing_label"] < 3.0).all()
    assert (held_out["id"] == [f"mp-{i:03d}" for i in range(1, len(held_out) + 1)]).all()


def test_new_files_share_no_sentence_with_klue_korsts_or_each_other(
    shipped, paraphrases, held_out, reference_sentences
):
    contrast = set(shipped["sentence1"]) | set(shipped["sentence2"])
    written = set(paraphrases["preserving"].str.strip())
    held = {s.strip() for column in ("anchor", "preserving", "changing") for s in held_out[column]}
    assert sorted(written & reference_sentences) == []
    assert sorted(held & reference_sentences) == []
    assert sorted(held & (contrast | written)) == []
    assert sorted(written & contrast) == []


def test_model_card_shows_minimal_pairs_beside_the_categories():
    from training.release import _contrast_text

    contrast = {"negation": {"pairs": 1, "accuracy": 1.0, "mean_score": 1.0}}
    held = {"paraphrase": {"pairs": 1, "accuracy": 1.0}, "all": {"triples": 2, "accuracy": 0.5}}
    text = _contrast_text({"contrast": contrast, "minimal_pairs": {"held_out": held}})
    assert "| negation | 1 | 1.000 | 1.00 |" in text
    assert "Held out of training (ko_minimal_pairs.jsonl):" in text
    assert "| **all** | 2 | 0.500 |" in text and "| paraphrase (pairs >= 3) | 1 | 1.000 |" in text
    assert "Minimal pairs" not in _contrast_text({"contrast": contrast})  # older packages: the table alone


def test_minimal_pair_frame_scores_each_pair_once_and_gives_the_accuracy(held_out):
    from training.contrast import minimal_pair_frame, minimal_pair_score
    from training.evaluate import evaluate_scorer

    frame = minimal_pair_frame(held_out)
    assert len(frame) == held_out["anchor"].nunique() + len(held_out)  # one preserving pair per anchor
    assert not frame.duplicated(["sentence1", "sentence2"]).any()
    assert set(frame["source"]) == {"contrast-paraphrase"} | {f"contrast-{c}" for c in held_out["category"]}
    gold = frame["label"].to_numpy()
    assert minimal_pair_score(frame, gold) == 1.0
    assert minimal_pair_score(frame, np.full(len(frame), 4.0)) == 0.0
    assert minimal_pair_score(pd.DataFrame({"label": [1.0]}), [1.0]) is None  # an ordinary pair set
    scorer = FixedScorer({})
    scorer.score = lambda pairs: np.array([gold[i] for i in range(len(pairs))])
    metrics = evaluate_scorer(scorer, {"contrast_validation": frame})
    assert metrics["contrast_validation"]["minimal_pair_accuracy"] == 1.0
