"""Score calibration: a strictly increasing map, fitted on held-out predictions, stored with the model.

    python -m research.calibrate outputs/run/model                       # fit on its validation split
    python -m research.calibrate outputs/run/model --predictions outputs/cv/fold*/scores.npz   # out-of-fold

The map is an isotonic regression of the gold labels on the served scores (both orders already
averaged, exactly what the service computes before calibrating), made strictly increasing: one
knot per isotonic block at the block's mean score, the ends at 0 and 5, and a small blend with the
identity so that flat blocks still rise. Strictly increasing means rankings, hence Spearman, never
change; what moves is where scores fall against the 3.0 threshold, and Pearson. The knots go into
the package's ``config.json`` (``ko_sts.calibration``), applied with ``numpy.interp`` by every
backend (:class:`models.scoring.Calibration`). Fit on validation or out-of-fold predictions, never
on dev; metrics without and with the map are recorded in ``metadata.json`` under ``calibration``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.package import read_metadata, write_metadata
from models.scoring import CONFIG_FILE, CONFIG_KEY, MAX_SCORE, Calibration, ScoreSettings
from training.logs import configure_logging
from training.metrics import balanced_weights, metrics_by_source, sts_metrics

logger = logging.getLogger("research.calibrate")

IDENTITY_BLEND = 0.01  # share of the identity in the map: the least slope of a flat isotonic block
WEIGHTINGS = ("balanced", "none")


def fit_calibration(
    scores: np.ndarray, labels: np.ndarray, weighting: str = "balanced", blend: float = IDENTITY_BLEND
) -> Calibration:
    """Fits a strictly increasing piecewise-linear map from served scores to labels.

    Args:
        scores: held-out served scores (uncalibrated), 0-5.
        labels: their gold labels, 0-5.
        weighting: ``balanced`` weighs each label bin the same (the selection metric's prior), ``none`` each pair.
        blend: share of the identity mixed in, which keeps the map strictly increasing.
    """
    from sklearn.isotonic import IsotonicRegression

    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
    if not 0.0 < blend < 1.0:
        raise ValueError(f"blend must be in (0, 1), got {blend}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if scores.shape != labels.shape or len(scores) < 10:
        raise ValueError(f"need at least 10 held-out scores with one label each, got {len(scores)} and {len(labels)}")
    weights = balanced_weights(labels) if weighting == "balanced" else np.ones_like(labels)
    isotonic = IsotonicRegression(y_min=0.0, y_max=MAX_SCORE, out_of_bounds="clip").fit(
        scores, labels, sample_weight=weights
    )
    fitted = isotonic.predict(scores)
    # one knot per block of equal fitted value, at the block's weighted mean score
    values, block = np.unique(fitted, return_inverse=True)
    centres = np.bincount(block, weights=weights * scores) / np.bincount(block, weights=weights)
    inside = (centres > 0.0) & (centres < MAX_SCORE)
    x = np.concatenate([[0.0], centres[inside], [MAX_SCORE]])
    y = np.concatenate([[values[0]], values[inside], [values[-1]]])
    x, keep = np.unique(x, return_index=True)
    y = (1.0 - blend) * y[keep] + blend * x
    return Calibration(x=tuple(float(v) for v in x), y=tuple(float(v) for v in y))


def calibration_record(
    calibration: Calibration,
    raw_scores: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    fitted_on: str,
    weighting: str,
    fit_pairs: int | None = None,
) -> dict:
    """What ``metadata.json`` keeps: how the map was fitted, its size, and each set's metrics without and with it."""
    return {
        "fitted_on": fitted_on,
        "weighting": weighting,
        "fit_pairs": int(fit_pairs if fit_pairs is not None else len(raw_scores.get("validation", []))),
        "knots": len(calibration.x),
        "metrics": {
            name: {
                "uncalibrated": sts_metrics(scores, labels[name]),
                "calibrated": sts_metrics(calibration(scores), labels[name]),
            }
            for name, scores in raw_scores.items()
        },
    }


def held_out_predictions(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels from runs' ``scores.npz``: the ``cv_fold`` set where present (out-of-fold), else validation."""
    scores, labels = [], []
    for path in paths:
        record = json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
        if record.get("calibration"):
            raise ValueError(f"{path.parent} was calibrated already: fit on uncalibrated runs' predictions")
        arrays = np.load(path)
        name = "cv_fold" if "cv_fold.scores" in arrays else "validation"
        scores.append(arrays[f"{name}.scores"])
        labels.append(arrays[f"{name}.labels"])
    return np.concatenate(scores), np.concatenate(labels)


def calibrate_package(
    package_dir: Path, predictions: list[Path] | None = None, weighting: str = "balanced", device: str = "auto"
) -> dict:
    """Fits a calibration for a package, writes it into ``config.json`` and records metrics in ``metadata.json``.

    Without ``predictions`` the map is fitted on the package's validation split, rebuilt from
    the recorded training file. Recorded ONNX metrics are dropped: re-run ``training.export``.
    """
    from models.scorer import load_scorer
    from training.evaluate import evaluation_sets, score_frame

    metadata = read_metadata(package_dir)
    settings = ScoreSettings.from_model_dir(package_dir)
    sets = evaluation_sets(metadata)
    scorer = load_scorer(package_dir, "torch", device=device, dtype="float32")
    scorer.settings = replace(settings, calibration=None)
    raw = {name: score_frame(scorer, frame) for name, frame in sets.items()}
    labels = {name: frame["label"].to_numpy() for name, frame in sets.items()}
    if predictions:
        fit_scores, fit_labels = held_out_predictions(predictions)
        fitted_on = f"out-of-fold predictions of {len(predictions)} runs"
    elif "validation" in raw:
        fit_scores, fit_labels, fitted_on = raw["validation"], labels["validation"], "validation"
    else:
        raise FileNotFoundError("no validation split to fit on (training file missing); pass --predictions")
    calibration = fit_calibration(fit_scores, fit_labels, weighting)
    config_path = package_dir / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = replace(settings, calibration=calibration).to_dict()
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    record = calibration_record(calibration, raw, labels, fitted_on, weighting, fit_pairs=len(fit_scores))
    metadata["calibration"] = record
    metadata["score_settings"] = config[CONFIG_KEY]
    for name, frame in sets.items():
        calibrated = calibration(raw[name])
        metadata["metrics"][name] = {**metadata["metrics"].get(name, {}), **sts_metrics(calibrated, labels[name])}
        metadata.setdefault("metrics_by_source", {})[name] = metrics_by_source(
            calibrated, labels[name], frame["source"].tolist()
        )
    if metadata.pop("onnx", None) is not None:
        logger.warning("ONNX metrics dropped (scores changed): run `python -m training.export %s`", package_dir)
    write_metadata(package_dir, metadata)
    for name, m in record["metrics"].items():
        logger.info(
            "%-12s pearson %.4f -> %.4f   f1 %.4f -> %.4f",
            name,
            m["uncalibrated"]["pearson"],
            m["calibrated"]["pearson"],
            m["uncalibrated"]["f1"],
            m["calibrated"]["f1"],
        )
    return record


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--predictions", type=Path, nargs="*", help="runs' scores.npz to fit on (out-of-fold)")
    parser.add_argument("--weighting", default="balanced", choices=WEIGHTINGS)
    parser.add_argument("--device", default="auto", help="where to score: auto, cpu or cuda")
    args = parser.parse_args(argv)
    calibrate_package(args.package_dir, args.predictions, args.weighting, args.device)


if __name__ == "__main__":
    main()
