"""KLUE-STS metrics: Pearson and Spearman correlation, and F1 of the binarised scores."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score

from models.cross_encoder import SIMILAR_THRESHOLD


def sts_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman and F1 (KLUE's definition: prediction and gold both binarised at >= 3.0).

    Correlations of a constant prediction are undefined and reported as 0.0.
    """
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions for {labels.size} labels")
    constant = np.ptp(predictions) == 0 or np.ptp(labels) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(predictions, labels).statistic),
        "spearman": 0.0 if constant else float(spearmanr(predictions, labels).statistic),
        "f1": float(f1_score(labels >= SIMILAR_THRESHOLD, predictions >= SIMILAR_THRESHOLD, zero_division=0.0)),
    }
