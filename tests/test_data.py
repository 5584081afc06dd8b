"""Reading, validating, merging and writing pair files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import KLUE_DEV, REPO
from training.data import DataValidationError, merge_duplicate_pairs, read_pairs, with_swapped_pairs, write_pairs


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_shipped_klue_dev_reads_real_labels():
    pairs = read_pairs(KLUE_DEV)
    assert len(pairs) == 519
    first = json.loads(KLUE_DEV.read_text(encoding="utf-8").splitlines()[0])
    assert pairs.loc[0, "label"] == pytest.approx(first["real_label"])  # unrounded gold, not `label`
    assert pairs["label"].between(0, 5).all()


def test_shipped_korsts_reads_score_column():
    pairs = read_pairs(REPO / "data/korsts/korsts_dev.jsonl")
    assert len(pairs) == 1500
    assert pairs.loc[0, "label"] == 5.0


def test_sources_come_from_klue_source_korsts_genre_or_are_unknown(tmp_path):
    assert set(read_pairs(KLUE_DEV)["source"]) == {
        "airbnb-rtt",
        "airbnb-sampled",
        "policy-rtt",
        "policy-sampled",
        "paraKQC-para",
        "paraKQC-sampled",
    }
    korsts = read_pairs(REPO / "data/korsts/korsts_dev.jsonl")["source"]
    assert set(korsts) == {"korsts-main-captions", "korsts-main-news", "korsts-main-forums"}
    mine = write_jsonl(
        tmp_path / "mine.jsonl",
        [{"sentence1": "가", "sentence2": "나", "score": 1}, {"sentence1": "다", "sentence2": "라", "score": 2}],
    )
    assert read_pairs(mine)["source"].tolist() == ["unknown", "unknown"]
    blank = write_jsonl(tmp_path / "blank.jsonl", [{"sentence1": "가", "sentence2": "나", "score": 1, "source": " "}])
    assert read_pairs(blank)["source"].tolist() == ["unknown"]


def test_klue_official_json_list_with_nested_labels(tmp_path):
    path = tmp_path / "klue-sts-v1.1_dev.json"
    path.write_text(
        json.dumps(
            [
                {
                    "guid": "a",
                    "sentence1": "가",
                    "sentence2": "나",
                    "labels": {"label": 3.7, "real-label": 3.714, "binary-label": 1},
                },
                {
                    "guid": "b",
                    "sentence1": "다",
                    "sentence2": "라",
                    "labels": {"label": 0.0, "real-label": 0.0, "binary-label": 0},
                },
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    pairs = read_pairs(path)
    assert pairs["label"].tolist() == [3.714, 0.0]
    assert pairs["location"].tolist() == ["item 1", "item 2"]


def test_csv_and_tsv_with_score_column(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text('sentence1,sentence2,score\n"쉼표, 있는 문장",둘째,4.5\n', encoding="utf-8")
    assert read_pairs(csv).loc[0, ["sentence1", "label"]].tolist() == ["쉼표, 있는 문장", 4.5]
    tsv = tmp_path / "sts-dev.tsv"
    tsv.write_text('genre\tsentence1\tsentence2\tscore\nnews\t"따옴표" 문장\t둘째\t2.0\n', encoding="utf-8")
    assert read_pairs(tsv).loc[0, "sentence1"] == '"따옴표" 문장'


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sentence1": "", "sentence2": "나", "score": 1}, "line 2: sentence1 is empty"),
        ({"sentence1": "  ", "sentence2": "나", "score": 1}, "line 2: sentence1 is empty"),
        ({"sentence2": "나", "score": 1}, "line 2: sentence1 is missing"),
        ({"sentence1": "가", "sentence2": None, "score": 1}, "line 2: sentence2 is missing"),
        ({"sentence1": "가", "sentence2": "나", "score": "high"}, "line 2: score 'high' is not a number"),
        ({"sentence1": "가", "sentence2": "나", "score": 5.5}, "line 2: score 5.5 is outside 0-5"),
        ({"sentence1": "가", "sentence2": "나", "score": -1}, "line 2: score -1 is outside 0-5"),
        ({"sentence1": "가", "sentence2": "나", "score": True}, "line 2: score True is not a number"),
        ({"sentence1": "가", "sentence2": "나", "score": None}, "line 2: score is missing"),
    ],
)
def test_bad_rows_are_named_with_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"sentence1": "가", "sentence2": "나", "score": 2}, row])
    with pytest.raises(DataValidationError) as error:
        read_pairs(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_all_problems_are_counted_and_the_first_ten_listed(tmp_path):
    rows = [{"sentence1": "", "sentence2": "나", "score": 9} for _ in range(8)]
    with pytest.raises(DataValidationError, match=r"16 problem\(s\)") as error:
        read_pairs(write_jsonl(tmp_path / "bad.jsonl", rows))
    assert "... and 6 more" in str(error.value)


def test_broken_json_line_and_missing_columns_and_unknown_type(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"sentence1": "가", "sentence2": "나", "score": 1}\n{"sentence1": \n', encoding="utf-8")
    with pytest.raises(DataValidationError, match="line 2: not valid JSON"):
        read_pairs(broken)
    no_label = write_jsonl(tmp_path / "nolabel.jsonl", [{"sentence1": "가", "sentence2": "나"}])
    with pytest.raises(DataValidationError, match="missing column.*real_label or labels.real-label or score or label"):
        read_pairs(no_label)
    with pytest.raises(DataValidationError, match="unsupported file type '.txt'"):
        (tmp_path / "pairs.txt").write_text("x", encoding="utf-8")
        read_pairs(tmp_path / "pairs.txt")
    with pytest.raises(DataValidationError, match="no such file"):
        read_pairs(tmp_path / "absent.jsonl")


def test_duplicate_pairs_merge_into_the_mean_label(caplog):
    pairs = pd.DataFrame(
        {
            "sentence1": ["가", "가", "다", "가"],
            "sentence2": ["나", "나", "라", "나"],
            "label": [1.0, 2.0, 4.0, 3.0],
            "location": ["line 1", "line 2", "line 3", "line 4"],
        }
    )
    merged = merge_duplicate_pairs(pairs.assign(source=["s1", "s2", "s3", "s4"]), "pairs.jsonl")
    assert merged["source"].tolist() == ["s1", "s3"]
    assert merged[["sentence1", "sentence2", "label", "location"]].values.tolist() == [
        ["가", "나", 2.0, "line 1"],
        ["다", "라", 4.0, "line 3"],
    ]
    assert "3 rows repeat 1 sentence pairs (1 with different labels)" in caplog.text


def test_shipped_train_duplicates_are_the_seven_known_pairs():
    raw = read_pairs(REPO / "data/klue-sts/klue_sts_train.jsonl")
    assert len(raw) == 11668
    assert len(merge_duplicate_pairs(raw, "train")) == 11668 - 7


def test_swapped_pairs_follow_the_originals():
    pairs = pd.DataFrame({"sentence1": ["가"], "sentence2": ["나"], "label": [2.0], "location": ["line 1"]})
    both = with_swapped_pairs(pairs)
    assert both[["sentence1", "sentence2"]].values.tolist() == [["가", "나"], ["나", "가"]]
    assert both["label"].tolist() == [2.0, 2.0]


def test_written_pairs_read_back(tmp_path):
    pairs = pd.DataFrame(
        {"sentence1": ["숙소가 깨끗해요."], "sentence2": ["숙소가 더러워요."], "label": [1.0], "kind": ["antonym"]}
    )
    path = write_pairs(pairs, tmp_path / "new" / "pairs.jsonl")
    assert path.read_text(encoding="utf-8") == (
        '{"sentence1": "숙소가 깨끗해요.", "sentence2": "숙소가 더러워요.", "label": 1.0, "kind": "antonym"}\n'
    )
    assert read_pairs(path)[["sentence1", "sentence2", "label"]].values.tolist() == [
        ["숙소가 깨끗해요.", "숙소가 더러워요.", 1.0]
    ]
