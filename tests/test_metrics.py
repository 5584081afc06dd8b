"""KLUE-STS metrics against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import f1_score

from training.metrics import MIN_SOURCE_PAIRS, balanced_weights, metrics_by_source, sts_metrics, weighted_pearson


def test_correlations_match_numpy_on_random_scores():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 300)
    predictions = labels + rng.normal(0, 1, 300)
    metrics = sts_metrics(predictions, labels)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(predictions, labels)[0, 1], abs=1e-12)
    assert metrics["spearman"] == pytest.approx(np.corrcoef(rankdata(predictions), rankdata(labels))[0, 1], abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(labels >= 3, predictions >= 3))


def test_f1_binarises_both_sides_at_three_inclusive():
    labels = np.array([3.0, 2.99, 4.0, 0.0])
    predictions = np.array([3.0, 3.0, 2.5, 0.0])
    # gold positives: 3.0, 4.0; predicted positives: 3.0 (true), 3.0 (false); one miss (4.0)
    metrics = sts_metrics(predictions, labels)
    precision, recall = 1 / 2, 1 / 2
    assert metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_constant_predictions_give_zero_correlation_not_nan():
    metrics = sts_metrics(np.full(5, 2.0), np.arange(5.0))
    assert metrics == {"pearson": 0.0, "spearman": 0.0, "f1": 0.0, "balanced_pearson": 0.0}


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        sts_metrics(np.zeros(3), np.zeros(2))


def test_balanced_weights_give_every_label_bin_the_same_weight():
    labels = np.array([0.0, 0.2, 0.5, 0.9, 1.5, 3.5, 4.0, 5.0])  # bins 0,0,0,0,1,3,4,4 (bin 2 empty)
    weights = balanced_weights(labels)
    assert weights.sum() == pytest.approx(1.0)
    totals = np.bincount([0, 0, 0, 0, 1, 3, 4, 4], weights=weights, minlength=5)
    assert totals[[0, 1, 3, 4]] == pytest.approx([0.25] * 4) and totals[2] == 0


def test_weighted_pearson_matches_numpy_and_balanced_pearson_discounts_the_crowded_bin():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=200), rng.normal(size=200)
    assert weighted_pearson(x, y, np.ones(200)) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    # 900 easy pairs near 0 predicted well, 100 spread over 1-5 predicted badly: plain Pearson flatters
    labels = np.concatenate([rng.uniform(0, 0.9, 900), rng.uniform(1, 5, 100)])
    predictions = np.concatenate([labels[:900], rng.uniform(1, 5, 100)])
    metrics = sts_metrics(predictions, labels)
    assert metrics["pearson"] > 0.7 and metrics["balanced_pearson"] < metrics["pearson"] - 0.2


def test_metrics_by_source_leave_out_small_sources():
    rng = np.random.default_rng(2)
    labels = rng.uniform(0, 5, 60)
    sources = ["a"] * 30 + ["b"] * 25 + ["c"] * (MIN_SOURCE_PAIRS - 5)
    predictions = labels + rng.normal(0, 0.5, 60)
    report = metrics_by_source(predictions, labels, sources)
    assert set(report) == {"a", "b"} and report["a"]["pairs"] == 30
    mask = np.array(sources) == "b"
    assert report["b"]["pearson"] == pytest.approx(sts_metrics(predictions[mask], labels[mask])["pearson"])
    assert report["b"]["pearson"] != pytest.approx(sts_metrics(predictions, labels)["pearson"])
