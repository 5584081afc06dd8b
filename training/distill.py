"""Soft labels from a teacher ensemble, for training one student model (knowledge distillation).

    python -m training.distill --teachers outputs/r4/run-s1 ... --recipe CONFIG --output soft.jsonl \
        [--augment more_pairs.jsonl ...] [--repair 5000] [--weight 0.5] [--report teacher.json]

The teachers are ``training.train`` output folders (each with ``model/``). Two ways to label:

* ``--recipe CONFIG`` (an ensemble of any runs: seeds and recipes): every training pair of the
  recipe (its training split and ``extra_train_files``, exactly as :func:`training.train.prepare_data`
  builds them) is labelled ``weight * teacher + (1 - weight) * gold``, the teacher being the mean
  served score of all teachers;
* without it, the teachers are the ``cv_folds`` runs of one recipe (``run.json``, ``scores.npz``):
  every training pair is labelled by the fold model that did not train on it (out-of-fold).

Then ``--augment`` files' pairs are labelled the same way with the file's label as gold and the
ensemble mean as teacher, and ``--repair N`` adds new pairs (training sentences each paired with its
most similar sentence from another training pair, character 3-gram TF-IDF) labelled by the ensemble
alone. Written, one JSON object per line (``sentence1, sentence2, label, source``), for
``soft_label_file``: train the student with the recipe's ``extra_train_files`` emptied, since the
soft-label file holds them. Held-out validation pairs are never written. ``--report`` writes the
ensemble's own figures (dev, KorSTS dev, the contrast set and its minimal pairs), for comparison
with the student.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from models.scoring import MAX_SCORE
from training.data import read_pairs, write_pairs
from training.logs import configure_logging
from training.splits import char_tfidf, normalise_sentence

logger = logging.getLogger("training.distill")

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


class Ensemble:
    """The teachers' models, loaded once; ``score(pairs)`` is their mean served score."""

    def __init__(self, teachers: list[Path], device: str = "auto") -> None:
        from models.scorer import load_scorer

        missing = [str(folder) for folder in teachers if not (folder / "model").is_dir()]
        if missing:
            raise FileNotFoundError(f"no model/ in teacher folder(s) {', '.join(missing)}: pass training.train outputs")
        self.scorers = [load_scorer(folder / "model", "torch", device=device) for folder in teachers]

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.mean([np.asarray(scorer.score(pairs), dtype=np.float64) for scorer in self.scorers], axis=0)

    def frame_scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score(list(zip(frame["sentence1"], frame["sentence2"])))


def recipe_pairs(config: Path) -> pd.DataFrame:
    """The training pairs of a recipe (split, extra files, held-out sentences dropped) with gold labels."""
    from training.arguments import parse_arguments
    from training.train import prepare_data

    _, data_args, _, _ = parse_arguments(["--config", str(config), "--output_dir", "unused"])
    train = prepare_data(data_args).train
    return train.rename(columns={"label": "gold"})[["sentence1", "sentence2", "gold", "source"]]


def ensemble_report(ensemble: Ensemble, files: list[Path]) -> dict:
    """The ensemble's STS metrics on each labelled file and its contrast report (per category, minimal pairs)."""
    from training.contrast import CONTRAST_FILE, contrast_report, read_contrast, shipped_minimal_pairs
    from training.metrics import sts_metrics

    report = {
        Path(path).stem: sts_metrics(ensemble.frame_scores(frame := read_pairs(path)), frame["label"]) for path in files
    }
    report["contrast_set"] = contrast_report(ensemble, read_contrast(CONTRAST_FILE), shipped_minimal_pairs())
    return report


def soft_labels(
    teachers: list[Path],
    augment: list[Path] = (),
    repair: int = 0,
    weight: float = 0.5,
    device: str = "auto",
    seed: int = 0,
    recipe: Path | None = None,
    ensemble: Ensemble | None = None,
) -> pd.DataFrame:
    """Every soft-labelled pair: training pairs (the recipe's, or out-of-fold), augmented pairs, re-paired sentences."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, got {weight}")
    if ensemble is None and (recipe is not None or augment or repair):
        ensemble = Ensemble(teachers, device)
    if recipe is not None:
        base = recipe_pairs(recipe)
        base = base.assign(teacher=ensemble.frame_scores(base))
        logger.info("%s: %d training pairs labelled by %d teachers", recipe, len(base), len(teachers))
    else:
        base = out_of_fold_pairs(teachers)
    frames = [base.assign(label=weight * base["teacher"] + (1 - weight) * base["gold"])]
    for path in augment:
        extra = read_pairs(path)
        teacher = ensemble.frame_scores(extra)
        frames.append(extra.assign(label=weight * teacher + (1 - weight) * extra["label"]))
        logger.info("%s: %d augmented pairs labelled by %d teachers", path, len(extra), len(teachers))
    if repair:
        new = repaired_pairs(base, repair, seed)
        frames.append(new.assign(label=ensemble.frame_scores(new), source="repaired"))
        logger.info("%d re-paired training sentences labelled by %d teachers", len(new), len(teachers))
    pairs = pd.concat(frames, ignore_index=True)[["sentence1", "sentence2", "label", "source"]]
    pairs["label"] = pairs["label"].clip(0.0, MAX_SCORE)
    return pairs


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", type=Path, nargs="+", required=True, help="training.train output folders")
    parser.add_argument("--recipe", type=Path, help="label this config's training pairs by the ensemble mean")
    parser.add_argument("--report", type=Path, help="write the ensemble's dev, KorSTS dev and contrast figures here")
    parser.add_argument("--report-files", type=Path, nargs="*", default=[], help="labelled files for --report")
    parser.add_argument("--output", type=Path, required=True, help="JSONL to write (the student's soft_label_file)")
    parser.add_argument("--augment", type=Path, nargs="*", default=[], help="augmented pair files to label")
    parser.add_argument("--repair", type=int, default=0, help="how many re-paired training sentences to add")
    parser.add_argument("--weight", type=float, default=0.5, help="teacher share of a label (the rest: gold)")
    parser.add_argument("--device", default="auto", help="where the teachers score: auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ensemble = (
        Ensemble(args.teachers, args.device) if args.recipe or args.augment or args.repair or args.report else None
    )
    pairs = soft_labels(
        args.teachers, args.augment, args.repair, args.weight, args.device, args.seed, args.recipe, ensemble
    )
    write_pairs(pairs, args.output)
    logger.info("%d soft-labelled pairs written to %s", len(pairs), args.output)
    if args.report:
        report = {"teachers": [str(t) for t in args.teachers], **ensemble_report(ensemble, args.report_files)}
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        logger.info("teacher ensemble figures written to %s", args.report)


if __name__ == "__main__":
    main()
