"""KLUE-STS metrics against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import f1_score

from training.metrics import sts_metrics


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
    assert metrics == {"pearson": 0.0, "spearman": 0.0, "f1": 0.0}


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        sts_metrics(np.zeros(3), np.zeros(2))
