"""Soft labels from a k-fold ensemble, for training one student model (knowledge distillation).

    python -m research.distill --teachers outputs/cv/fold-0 ... --output soft.jsonl \
        [--augment hard_negatives.jsonl ...] [--repair 5000] [--weight 0.5]

The teachers are the ``cv_folds`` runs of one recipe (``training.train`` output folders with
``run.json``, ``scores.npz`` and ``model/``). Written, one JSON object per line
(``sentence1, sentence2, label, source``), for ``soft_label_file``:

* every training pair, labelled ``weight * teacher + (1 - weight) * gold`` where the teacher is
  the fold model that did not train on it (out-of-fold, so no teacher has seen the pair);
* ``--augment`` files' pairs (e.g. ``training.augment``'s hard negatives), labelled the same way
  with the file's label as gold and the mean of all fold models as teacher;
* ``--repair N`` new pairs: training sentences each paired with its most similar sentence from
  another training pair (character 3-gram TF-IDF), labelled by the ensemble alone.

The teachers' held-out validation pairs are never written: they stay the student's validation.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from models.scoring import MAX_SCORE
from training.data import read_pairs, write_pairs
from training.logs import configure_logging
from training.splits import char_tfidf, normalise_sentence

logger = logging.getLogger("research.distill")

REPAIR_MAX_SIMILARITY = 0.8  # closer pairs are near-duplicates: nothing new to learn


def out_of_fold_pairs(teachers: list[Path]) -> pd.DataFrame:
    """The training pairs with gold labels and their out-of-fold teacher scores (``cv_fold`` sets)."""
    frames = []
    for folder in teachers:
        arrays = np.load(folder / "scores.npz")
        if "cv_fold.scores" not in arrays:
            raise ValueError(f"{folder} is not a cross-validation run (no cv_fold set): train it with --cv_folds")
        frames.append(
            pd.DataFrame(
                {
                    "sentence1": arrays["cv_fold.sentence1"],
                    "sentence2": arrays["cv_fold.sentence2"],
                    "gold": arrays["cv_fold.labels"].astype(np.float64),
                    "teacher": arrays["cv_fold.scores"].astype(np.float64),
                    "source": arrays["cv_fold.sources"],
                }
            )
        )
    pairs = pd.concat(frames, ignore_index=True)
    repeated = pairs.duplicated(["sentence1", "sentence2"]).sum()
    if repeated:
        raise ValueError(f"{repeated} pairs are in more than one teacher's fold: the folds are not one partition")
    return pairs


def repaired_pairs(pairs: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """Up to ``count`` new pairs: a training sentence and its most similar sentence of another pair."""
    sentences = pd.concat([pairs["sentence1"], pairs["sentence2"]], ignore_index=True)
    owner = np.concatenate([np.arange(len(pairs)), np.arange(len(pairs))])
    keys = sentences.map(normalise_sentence)
    unique = ~keys.duplicated()
    sentences, owner, keys = sentences[unique].to_numpy(), owner[unique.to_numpy()], keys[unique].to_numpy()
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(sentences))[: min(count, len(sentences))]
    matrix = char_tfidf(list(keys))
    transposed = matrix.T.tocsr()
    partner = np.empty(len(chosen), dtype=np.int64)
    best = np.empty(len(chosen))
    for start in range(0, len(chosen), 1000):
        rows = chosen[start : start + 1000]
        similarity = (matrix[rows] @ transposed).toarray()
        similarity[owner[rows][:, None] == owner[None, :]] = -1.0  # not its own pair's sentences
        similarity[similarity >= REPAIR_MAX_SIMILARITY] = -1.0
        partner[start : start + len(rows)] = similarity.argmax(axis=1)
        best[start : start + len(rows)] = similarity.max(axis=1)
    keep = best > 0
    new = pd.DataFrame({"sentence1": sentences[chosen][keep], "sentence2": sentences[partner][keep]})
    new = new[~new.duplicated()].reset_index(drop=True)
    existing = set(zip(pairs["sentence1"], pairs["sentence2"])) | set(zip(pairs["sentence2"], pairs["sentence1"]))
    return new[[pair not in existing for pair in zip(new["sentence1"], new["sentence2"])]].reset_index(drop=True)


def ensemble_scores(teachers: list[Path], frame: pd.DataFrame, device: str) -> np.ndarray:
    """Mean served score of every teacher's model on the frame's pairs."""
    from models.scorer import load_scorer

    pairs = list(zip(frame["sentence1"], frame["sentence2"]))
    return np.mean([load_scorer(folder / "model", "torch", device=device).score(pairs) for folder in teachers], axis=0)


def soft_labels(
    teachers: list[Path],
    augment: list[Path] = (),
    repair: int = 0,
    weight: float = 0.5,
    device: str = "auto",
    seed: int = 0,
) -> pd.DataFrame:
    """Every soft-labelled pair: out-of-fold training pairs, augmented pairs, re-paired sentences."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, got {weight}")
    oof = out_of_fold_pairs(teachers)
    frames = [oof.assign(label=weight * oof["teacher"] + (1 - weight) * oof["gold"])]
    for path in augment:
        extra = read_pairs(path)
        teacher = ensemble_scores(teachers, extra, device)
        frames.append(extra.assign(label=weight * teacher + (1 - weight) * extra["label"]))
        logger.info("%s: %d augmented pairs labelled by %d teachers", path, len(extra), len(teachers))
    if repair:
        new = repaired_pairs(oof, repair, seed)
        frames.append(new.assign(label=ensemble_scores(teachers, new, device), source="repaired"))
        logger.info("%d re-paired training sentences labelled by %d teachers", len(new), len(teachers))
    pairs = pd.concat(frames, ignore_index=True)[["sentence1", "sentence2", "label", "source"]]
    pairs["label"] = pairs["label"].clip(0.0, MAX_SCORE)
    return pairs


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", type=Path, nargs="+", required=True, help="cross-validation run folders")
    parser.add_argument("--output", type=Path, required=True, help="JSONL to write (the student's soft_label_file)")
    parser.add_argument("--augment", type=Path, nargs="*", default=[], help="augmented pair files to label")
    parser.add_argument("--repair", type=int, default=0, help="how many re-paired training sentences to add")
    parser.add_argument("--weight", type=float, default=0.5, help="teacher share of a label (the rest: gold)")
    parser.add_argument("--device", default="auto", help="where the teachers score: auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pairs = soft_labels(args.teachers, args.augment, args.repair, args.weight, args.device, args.seed)
    write_pairs(pairs, args.output)
    logger.info("%d soft-labelled pairs written to %s", len(pairs), args.output)


if __name__ == "__main__":
    main()
