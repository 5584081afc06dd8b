"""Hand-written training data: the minimal pairs (data/contrast/ko_minimal_pairs_train.jsonl) and the paraphrase
pairs (data/contrast/ko_paraphrases_train.jsonl). Both are disjoint from every held-out file and kept by training's
contrast filter; the triples are turned into training pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from training.contrast import (
    CONTRAST_FILE,
    MINIMAL_PAIR_FILE,
    MINIMAL_PAIR_TRAIN_FILE,
    MINIMAL_PAIR_TRAIN_SOURCE,
    PARAPHRASE_FILE,
    contrast_sentences,
    main,
    minimal_pair_training_pairs,
    read_contrast,
    read_minimal_pairs,
    read_paraphrases,
    write_training_pairs,
)
from training.data import DataValidationError, read_pairs, write_pairs
from training.splits import char_tfidf, normalise_sentence
from training.train import drop_contrast_sentences

TRIPLE_SENTENCES = ("anchor", "preserving", "changing")
PAIR_SENTENCES = ("sentence1", "sentence2")
PARAPHRASE_TRAIN_FILE = REPO / "data/contrast/ko_paraphrases_train.jsonl"
PARAPHRASE_TRAIN_SOURCE = "paraphrases_train"
KLUE_DEV = REPO / "data/klue-sts/klue_sts_dev.jsonl"
KORSTS_HELD_OUT = sorted(
    path for path in (REPO / "data/korsts").glob("*.jsonl") if path.stem.endswith(("_dev", "_test"))
)
CHANGING_LABELS = {  # the changing labels per category, as in the held-out file
    "negation": (0.8, 1.5),
    "antonym": (0.8, 1.5),
    "number": (1.5, 2.0),
    "entity_role": (1.0, 2.0),
    "intent": (0.8, 1.8),
}
NEAR_COPY = 0.8  # character 3-gram TF-IDF cosine from which an anchor counts as a copy of a held-out one


@pytest.fixture(scope="module")
def train_triples() -> pd.DataFrame:
    return read_minimal_pairs(MINIMAL_PAIR_TRAIN_FILE)


@pytest.fixture(scope="module")
def paraphrase_records() -> pd.DataFrame:
    return pd.read_json(PARAPHRASE_TRAIN_FILE, lines=True)


@pytest.fixture(scope="module", params=["minimal pairs", "paraphrase pairs"])
def training_sentences(request) -> list[str]:
    """Every sentence of one hand-written training file."""
    if request.param == "minimal pairs":
        return sorted(_sentences(read_minimal_pairs(MINIMAL_PAIR_TRAIN_FILE), TRIPLE_SENTENCES))
    return sorted(_sentences(read_pairs(PARAPHRASE_TRAIN_FILE), PAIR_SENTENCES))


def _sentences(frame: pd.DataFrame, columns) -> set[str]:
    return {s for column in columns if column in frame for s in frame[column]}


def test_the_minimal_pair_file_is_valid_and_large_enough(train_triples):
    counts = train_triples["category"].value_counts()
    assert len(train_triples) >= 400, counts.to_dict()
    assert set(counts.index) == set(CHANGING_LABELS)
    assert train_triples["id"].str.fullmatch(r"mpt-\d{3,}").all()
    assert train_triples["preserving_label"].between(4.0, 5.0).all()
    for category, (low, high) in CHANGING_LABELS.items():
        labels = train_triples.loc[train_triples["category"] == category, "changing_label"]
        assert labels.between(low, high).all(), (category, labels.min(), labels.max())
    # a preserving variant is shared by the anchor's triples: one per anchor
    assert (train_triples.groupby("anchor")["preserving"].nunique() == 1).all()


def test_no_sentence_is_in_a_held_out_file(training_sentences):
    held_out = [
        read_contrast(CONTRAST_FILE),
        read_paraphrases(PARAPHRASE_FILE),
        read_minimal_pairs(MINIMAL_PAIR_FILE),
        read_pairs(KLUE_DEV),
    ]
    assert KORSTS_HELD_OUT, "no KorSTS dev or test file under data/korsts"
    held_out += [read_pairs(path) for path in KORSTS_HELD_OUT]
    columns = ("sentence1", "sentence2", *TRIPLE_SENTENCES)
    forbidden = {normalise_sentence(s) for frame in held_out for s in _sentences(frame, columns)}
    assert not [s for s in training_sentences if normalise_sentence(s) in forbidden]


def test_no_anchor_is_a_near_copy_of_a_held_out_anchor(train_triples):
    held_out = sorted(
        set(read_minimal_pairs(MINIMAL_PAIR_FILE)["anchor"])
        | set(read_paraphrases(PARAPHRASE_FILE)["anchor"])
        | set(read_contrast(CONTRAST_FILE)["sentence1"])
    )
    anchors = sorted(set(train_triples["anchor"]))
    matrix = char_tfidf(anchors + held_out)
    cosine = (matrix[: len(anchors)] @ matrix[len(anchors) :].T).toarray()
    worst = cosine.max(axis=1)
    near = [
        (anchors[i], held_out[int(cosine[i].argmax())], float(worst[i])) for i in np.flatnonzero(worst >= NEAR_COPY)
    ]
    assert not near


def test_no_sentence_is_a_near_copy_of_a_held_out_contrast_sentence(training_sentences):
    """Stricter than the anchors: no training sentence is a near-copy of any sentence of the
    three held-out contrast files."""
    frames = [read_contrast(CONTRAST_FILE), read_paraphrases(PARAPHRASE_FILE), read_minimal_pairs(MINIMAL_PAIR_FILE)]
    columns = ("sentence1", "sentence2", *TRIPLE_SENTENCES)
    held_out = sorted(set().union(*(_sentences(frame, columns) for frame in frames)))
    sentences = training_sentences
    matrix = char_tfidf(sentences + held_out)
    cosine = (matrix[: len(sentences)] @ matrix[len(sentences) :].T).toarray()
    near = [(sentences[i], held_out[int(cosine[i].argmax())]) for i in np.flatnonzero(cosine.max(axis=1) >= NEAR_COPY)]
    assert not near


def test_pairs_command_writes_each_distinct_pair_once(train_triples, tmp_path):
    output = tmp_path / "pairs.jsonl"
    main(["pairs", str(MINIMAL_PAIR_TRAIN_FILE), str(output)])
    pairs = read_pairs(output)
    anchors = train_triples.drop_duplicates("anchor")
    assert len(pairs) == len(anchors) + len(train_triples)
    assert (pairs["source"] == MINIMAL_PAIR_TRAIN_SOURCE).all()
    written = {(a, b): label for a, b, label in zip(pairs["sentence1"], pairs["sentence2"], pairs["label"])}
    for row in train_triples.itertuples():
        assert written[(row.anchor, row.preserving)] == row.preserving_label
        assert written[(row.anchor, row.changing)] == row.changing_label
    assert len(written) == len(pairs)


def test_minimal_pair_training_pairs_by_hand():
    triples = pd.DataFrame(
        {
            "anchor": ["불 켜 줘.", "불 켜 줘."],
            "preserving": ["조명 좀 켜 줄래?", "조명 좀 켜 줄래?"],
            "changing": ["불 꺼 줘.", "불 켜지 마."],
            "preserving_label": [4.7, 4.7],
            "changing_label": [1.0, 0.9],
        }
    )
    pairs = minimal_pair_training_pairs(triples)
    assert pairs.to_dict(orient="list") == {
        "sentence1": ["불 켜 줘."] * 3,
        "sentence2": ["조명 좀 켜 줄래?", "불 꺼 줘.", "불 켜지 마."],
        "label": [4.7, 1.0, 0.9],
        "source": [MINIMAL_PAIR_TRAIN_SOURCE] * 3,
    }


def test_held_out_files_cannot_become_training_pairs(tmp_path):
    with pytest.raises(DataValidationError, match="held out of training"):
        write_training_pairs(MINIMAL_PAIR_FILE, tmp_path / "out.jsonl")
    copy = tmp_path / "copy.jsonl"
    copy.write_text(MINIMAL_PAIR_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataValidationError, match="also in the held-out contrast files"):
        write_training_pairs(copy, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_training_keeps_the_new_pairs_and_drops_the_held_out_ones(train_triples):
    assert not contrast_sentences() & _sentences(train_triples, TRIPLE_SENTENCES)
    new = minimal_pair_training_pairs(train_triples)
    held = read_minimal_pairs(MINIMAL_PAIR_FILE)
    old = minimal_pair_training_pairs(held, source="held_out")
    contrast = read_contrast(CONTRAST_FILE)
    contrast_pairs = contrast[["sentence1", "sentence2", "label"]].assign(source="contrast")
    paraphrases = read_paraphrases(PARAPHRASE_FILE)
    paraphrase_pairs = pd.DataFrame(
        {"sentence1": paraphrases["anchor"], "sentence2": paraphrases["preserving"], "label": paraphrases["label"]}
    ).assign(source="paraphrases")
    train = pd.concat([new, old, contrast_pairs, paraphrase_pairs], ignore_index=True)
    kept = drop_contrast_sentences(train)
    assert kept["source"].value_counts().to_dict() == {MINIMAL_PAIR_TRAIN_SOURCE: len(new)}
    # also with the held-out file named as contrast_validation_file, as the round configs do
    kept = drop_contrast_sentences(train, str(MINIMAL_PAIR_FILE))
    assert kept["source"].value_counts().to_dict() == {MINIMAL_PAIR_TRAIN_SOURCE: len(new)}


def test_prepare_data_trains_on_the_pairs_and_not_on_the_held_out_ones(tmp_path):
    """End to end: the written pairs as an extra training file survive training's data preparation,
    with the held-out minimal pairs as the selection set."""
    from training.arguments import DataArguments
    from training.train import prepare_data

    klue = read_pairs(REPO / "data/klue-sts/klue_sts_train.jsonl").head(300)
    held = read_minimal_pairs(MINIMAL_PAIR_FILE)
    leaked = minimal_pair_training_pairs(held, source="held_out")  # must be dropped
    train_file = write_pairs(
        pd.concat([klue, leaked], ignore_index=True).drop(columns="location"), tmp_path / "t.jsonl"
    )
    pairs = tmp_path / "pairs.jsonl"
    written = write_training_pairs(MINIMAL_PAIR_TRAIN_FILE, pairs)
    data_args = DataArguments(
        train_file=str(train_file),
        extra_train_files=[str(pairs)],
        contrast_validation_file=str(MINIMAL_PAIR_FILE),
        split="random",
    )
    data = prepare_data(data_args)
    sources = data.train["source"].value_counts().to_dict()
    assert sources[MINIMAL_PAIR_TRAIN_SOURCE] == len(written)
    assert "held_out" not in sources


def test_the_paraphrase_file_is_valid(paraphrase_records):
    assert len(paraphrase_records) >= 400
    assert list(paraphrase_records.columns) == ["id", "source", "sentence1", "sentence2", "label", "note"]
    assert paraphrase_records["id"].str.fullmatch(r"ppt-\d{3,}").all() and paraphrase_records["id"].is_unique
    assert (paraphrase_records["source"] == PARAPHRASE_TRAIN_SOURCE).all()
    assert paraphrase_records["label"].between(4.0, 5.0).all()
    assert (paraphrase_records["note"].str.len() > 0).all()
    sentences = zip(paraphrase_records["sentence1"], paraphrase_records["sentence2"])
    pairs = {frozenset(map(normalise_sentence, pair)) for pair in sentences}
    assert len(pairs) == len(paraphrase_records) and all(len(p) == 2 for p in pairs)


def test_training_keeps_every_paraphrase_pair(paraphrase_records, tmp_path):
    """The block-5 recipe's extra training file, through training's data preparation: nothing dropped."""
    import yaml

    from training.arguments import DataArguments
    from training.train import prepare_data

    config = yaml.safe_load((REPO / "research/configs/me5-small-ko-mpp.yaml").read_text(encoding="utf-8"))
    assert str(PARAPHRASE_TRAIN_FILE.relative_to(REPO)) in config["extra_train_files"]
    klue = read_pairs(REPO / "data/klue-sts/klue_sts_train.jsonl").head(300).drop(columns="location")
    data_args = DataArguments(
        train_file=str(write_pairs(klue, tmp_path / "t.jsonl")),
        extra_train_files=[str(PARAPHRASE_TRAIN_FILE)],
        contrast_validation_file=str(MINIMAL_PAIR_FILE),
        split="random",
    )
    sources = prepare_data(data_args).train["source"].value_counts()
    assert sources[PARAPHRASE_TRAIN_SOURCE] == len(paraphrase_records)
