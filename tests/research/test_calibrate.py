"""Score calibration: fitted strictly increasing, stored as plain numbers, applied by every backend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.stats import spearmanr

from models.package import read_metadata
from models.scorer import load_scorer
from models.scoring import Calibration, ScoreSettings
from research.calibrate import calibrate_package, fit_calibration
from training.evaluate import evaluation_sets, score_frame
from training.metrics import sts_metrics


def squashed(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A model that ranks well but compresses the scale towards 2.5 (its 3.0 crossing is off)."""
    return np.clip(2.5 + 0.4 * (labels - 2.5) + rng.normal(0, 0.3, len(labels)), 0, 5)


def test_fit_is_strictly_increasing_over_0_to_5_and_keeps_rankings():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 2000)
    scores = squashed(labels, rng)
    calibration = fit_calibration(scores, labels, weighting="none")
    x, y = np.array(calibration.x), np.array(calibration.y)
    assert x[0] == 0.0 and x[-1] == 5.0 and 0.0 <= y[0] and y[-1] <= 5.0
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) > 0)
    grid = np.linspace(0, 5, 5001)
    assert np.all(np.diff(calibration(grid)) > 0)
    calibrated = calibration(scores)
    assert spearmanr(calibrated, scores).statistic == pytest.approx(1.0)
    before, after = sts_metrics(scores, labels), sts_metrics(calibrated, labels)
    assert after["spearman"] == pytest.approx(before["spearman"])
    assert np.abs(calibrated - labels).mean() < np.abs(scores - labels).mean() - 0.2


def test_calibration_fixes_f1_at_the_threshold_on_held_out_pairs():
    rng = np.random.default_rng(1)
    fit_labels, test_labels = rng.uniform(0, 5, 2000), rng.uniform(0, 5, 2000)
    calibration = fit_calibration(squashed(fit_labels, rng), fit_labels)
    test_scores = squashed(test_labels, rng)
    assert sts_metrics(calibration(test_scores), test_labels)["f1"] > sts_metrics(test_scores, test_labels)["f1"] + 0.05


def test_constant_blocks_and_bad_input():
    labels = np.array([0.0] * 20 + [5.0] * 20)
    scores = np.linspace(0.0, 5.0, 40)
    calibration = fit_calibration(scores, labels)  # isotonic gives two flat blocks: still strictly increasing
    assert np.all(np.diff(calibration.y) > 0) and calibration(np.array([0.0]))[0] >= 0.0
    with pytest.raises(ValueError, match="at least 10"):
        fit_calibration(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="weighting"):
        fit_calibration(scores, labels, weighting="uniform")


def test_calibrating_a_package_stores_knots_that_every_scorer_applies(trained_package, tmp_path):
    package = tmp_path / "model"
    shutil.copytree(trained_package, package)
    raw_settings = ScoreSettings.from_model_dir(package)
    sets = evaluation_sets(read_metadata(package))
    raw = {name: score_frame(load_scorer(package, "torch", device="cpu"), frame) for name, frame in sets.items()}

    record = calibrate_package(package, device="cpu")
    stored = json.loads((package / "config.json").read_text())["ko_sts"]["calibration"]
    calibration = Calibration(x=tuple(stored["x"]), y=tuple(stored["y"]))
    assert ScoreSettings.from_model_dir(package).calibration == calibration
    assert ScoreSettings.from_model_dir(package).symmetric == raw_settings.symmetric
    for backend in ("torch", "onnx"):
        scorer = load_scorer(package, backend, device="cpu", onnx_file="model.onnx" if backend == "onnx" else None)
        np.testing.assert_allclose(score_frame(scorer, sets["dev"]), calibration(raw["dev"]), atol=2e-3)
    metadata = read_metadata(package)
    assert metadata["calibration"] == record and record["fitted_on"] == "validation"
    assert record["metrics"]["dev"]["uncalibrated"]["pearson"] == pytest.approx(
        sts_metrics(raw["dev"], sets["dev"]["label"].to_numpy())["pearson"], abs=1e-3
    )
    assert metadata["metrics"]["dev"]["f1"] == pytest.approx(record["metrics"]["dev"]["calibrated"]["f1"])
    assert "onnx" not in metadata  # stale once scores change: exported again before release
