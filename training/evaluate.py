"""Scoring a model package's evaluation sets through the serving code path.

    python -m training.evaluate outputs/me5-small-ko/model --backend onnx

The sets are rebuilt from the files recorded in the package's ``metadata.json`` (checked by
hash): the held-out sets of the training file (same scheme, fraction and seed: ``validation``
and any ``validation_random`` or ``cv_fold``), the held-out minimal pairs (``contrast_validation``,
which also gets ``minimal_pair_accuracy``), dev, and the extra evaluation files. Scores come
from :mod:`models.scorer`, i.e. exactly what the service returns.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from models.package import file_sha256, read_metadata
from models.scorer import Scorer, load_scorer
from training.contrast import CONTRAST_VALIDATION, MINIMAL_PAIR_METRIC, minimal_pair_score, read_minimal_pair_validation
from training.data import merge_duplicate_pairs, read_pairs
from training.logs import configure_logging
from training.metrics import sts_metrics
from training.splits import SplitSettings, split_pairs

logger = logging.getLogger("training.evaluate")


def _unchanged(info: dict) -> bool:
    path = Path(info["path"])
    if path.is_file() and file_sha256(path) == info["sha256"]:
        return True
    logger.warning("%s is missing or differs from the file the model was trained with; skipped", path)
    return False


def evaluation_sets(metadata: dict) -> dict[str, pd.DataFrame]:
    """Rebuilds the held-out sets, ``dev`` and extra evaluation sets from a package's metadata."""
    hyper, files = metadata["hyperparameters"], metadata["data"]
    sets: dict[str, pd.DataFrame] = {}
    for info in filter(_unchanged, files.get("train", [])):
        pairs = merge_duplicate_pairs(read_pairs(info["path"], hyper.get("label_column")), info["path"])
        held_out = split_pairs(pairs, SplitSettings.from_dict(hyper))
        del held_out["train"]
        sets.update(held_out)
    for info in filter(_unchanged, files.get("extra_validation", [])):
        pairs = merge_duplicate_pairs(read_pairs(info["path"]), info["path"])
        settings = SplitSettings.from_dict({**hyper, "validation_fraction": hyper["extra_validation_fraction"]})
        settings = replace(settings, cv_folds=0, random_holdout_fraction=0.0)
        sets[f"validation_{Path(info['path']).stem}"] = split_pairs(pairs, settings)["validation"]
    for info in filter(_unchanged, files.get("contrast_validation", [])):
        sets[CONTRAST_VALIDATION] = read_minimal_pair_validation(info["path"])
    for info in filter(_unchanged, files.get("dev", [])):
        sets["dev"] = read_pairs(info["path"], hyper.get("label_column"))
    for info in filter(_unchanged, files.get("extra_eval", [])):
        sets[Path(info["path"]).stem] = read_pairs(info["path"])
    if not sets:
        raise FileNotFoundError("none of the evaluation files recorded in metadata.json is present")
    return sets


def score_frame(scorer: Scorer, frame: pd.DataFrame) -> np.ndarray:
    """Served scores for every pair of a DataFrame, in order."""
    return scorer.score(list(zip(frame["sentence1"], frame["sentence2"])))


def evaluate_scorer(scorer: Scorer, sets: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Pearson, Spearman and F1 of a scorer on each set, and minimal-pair accuracy on a set of triples."""
    metrics = {}
    for name, frame in sets.items():
        scores = score_frame(scorer, frame)
        metrics[name] = sts_metrics(scores, frame["label"].to_numpy())
        if (accuracy := minimal_pair_score(frame, scores)) is not None:
            metrics[name][MINIMAL_PAIR_METRIC] = accuracy
    return metrics


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints the metrics as JSON."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--backend", default="onnx", help="onnx or torch")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    scorer = load_scorer(args.package_dir, args.backend, device=args.device)
    metrics = evaluate_scorer(scorer, evaluation_sets(read_metadata(args.package_dir)))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
