"""Soft labels from teacher ensembles and k-fold teachers (training.distill) and their use as training labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import read_pairs, write_pairs
from training.distill import out_of_fold_pairs, repaired_pairs, soft_labels
from training.train import apply_soft_labels

SENTENCES = [
    "숙소가 깨끗하고 조용했어요.",
    "숙소가 깨끗하고 조용해서 좋았어요.",
    "정부는 내년 예산을 늘리기로 했다.",
    "정부가 내년 예산을 확대하기로 결정했다.",
    "메일을 다른 계정으로 전달해줘.",
    "이 메일을 다른 주소로 보내줘.",
    "호스트가 아주 친절했습니다.",
    "집주인이 정말 친절했어요.",
]


def fold_run(folder, first, second, gold, teacher):
    folder.mkdir(parents=True)
    np.savez(
        folder / "scores.npz",
        **{
            "cv_fold.sentence1": np.array(first),
            "cv_fold.sentence2": np.array(second),
            "cv_fold.labels": np.array(gold, dtype=np.float32),
            "cv_fold.scores": np.array(teacher, dtype=np.float32),
            "cv_fold.sources": np.array(["s"] * len(first)),
        },
    )
    return folder


def test_out_of_fold_labels_mix_teacher_and_gold(tmp_path):
    a = fold_run(tmp_path / "fold-0", SENTENCES[0:2], SENTENCES[2:4], [4.0, 1.0], [3.0, 2.0])
    b = fold_run(tmp_path / "fold-1", SENTENCES[4:6], SENTENCES[6:8], [0.0, 5.0], [1.0, 4.0])
    pairs = soft_labels([a, b], weight=0.25)
    assert pairs["label"].tolist() == pytest.approx([3.75, 1.25, 0.25, 4.75])
    assert list(pairs.columns) == ["sentence1", "sentence2", "label", "source"]
    path = write_pairs(pairs, tmp_path / "soft.jsonl")
    assert read_pairs(path)["label"].tolist() == pytest.approx([3.75, 1.25, 0.25, 4.75])
    with pytest.raises(ValueError, match="weight must be between 0 and 1"):
        soft_labels([a, b], weight=1.5)


def test_folds_that_overlap_are_refused(tmp_path):
    a = fold_run(tmp_path / "fold-0", SENTENCES[0:2], SENTENCES[2:4], [4.0, 1.0], [3.0, 2.0])
    b = fold_run(tmp_path / "fold-1", SENTENCES[0:1], SENTENCES[2:3], [4.0], [3.5])
    with pytest.raises(ValueError, match="more than one teacher's fold"):
        out_of_fold_pairs([a, b])
    (tmp_path / "plain").mkdir()
    np.savez(tmp_path / "plain" / "scores.npz", **{"validation.scores": np.zeros(2)})
    with pytest.raises(ValueError, match="not a cross-validation run"):
        out_of_fold_pairs([tmp_path / "plain"])


def test_repaired_pairs_join_sentences_of_different_pairs_only():
    pairs = pd.DataFrame({"sentence1": SENTENCES[0::2], "sentence2": SENTENCES[1::2]})
    new = repaired_pairs(pairs, count=8, seed=0)
    own = set(zip(pairs["sentence1"], pairs["sentence2"])) | set(zip(pairs["sentence2"], pairs["sentence1"]))
    assert len(new) > 0
    assert not own & set(zip(new["sentence1"], new["sentence2"]))
    partner = {s: i for i, row in pairs.iterrows() for s in (row["sentence1"], row["sentence2"])}
    assert all(partner[a] != partner[b] for a, b in zip(new["sentence1"], new["sentence2"]))


def test_soft_labels_replace_training_labels_and_add_new_pairs():
    train = pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1.0, 2.0], "source": ["x", "x"]})
    soft = pd.DataFrame(
        {"sentence1": ["a", "e"], "sentence2": ["c", "f"], "label": [1.5, 0.5], "source": ["distill", "repaired"]}
    )
    relabelled, added = apply_soft_labels(train, soft)
    assert relabelled["label"].tolist() == [1.5, 2.0] and relabelled["source"].tolist() == ["x", "x"]
    assert added[["sentence1", "sentence2", "label"]].values.tolist() == [["e", "f", 0.5]]


def test_ensemble_labels_every_training_pair_of_a_recipe(trained_package, tmp_path):
    """--recipe: the mean of the teachers' served scores labels the recipe's own training pairs."""
    from models.scorer import load_scorer
    from training.distill import Ensemble, ensemble_report, recipe_pairs

    teachers = []
    for name in ("seed-1", "seed-2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model").symlink_to(trained_package, target_is_directory=True)
        teachers.append(tmp_path / name)
    ensemble = Ensemble(teachers, "cpu")
    pairs = soft_labels(teachers, weight=0.25, recipe="training/configs/tiny.yaml", ensemble=ensemble)
    gold = recipe_pairs("training/configs/tiny.yaml")
    assert len(pairs) == len(gold) == 400
    served = load_scorer(trained_package, "torch", device="cpu").score(list(zip(gold["sentence1"], gold["sentence2"])))
    expected = np.clip(0.25 * np.asarray(served) + 0.75 * gold["gold"].to_numpy(), 0.0, 5.0)
    assert pairs["label"].to_numpy() == pytest.approx(expected, abs=1e-5)
    report = ensemble_report(ensemble, ["data/klue-sts/klue_sts_dev.jsonl"])
    assert set(report["klue_sts_dev"]) >= {"pearson", "f1"}
    assert report["contrast_set"]["minimal_pairs"]["held_out"]["all"]["triples"] > 0
    with pytest.raises(FileNotFoundError, match="no model/"):
        Ensemble([tmp_path], "cpu")
