"""KLUE-STS metrics: Pearson and Spearman correlation, F1 of the binarised scores, and variants for selection.

``balanced_pearson`` weighs each label bin (0-1, 1-2, 2-3, 3-4, 4-5) equally. KLUE-STS train is
dominated by near-zero pairs (37% below 1.0, mostly pairs of unrelated sentences that are easy to
score), which pushes a plain Pearson on a split of train to about 0.97 and leaves little room to
tell recipes apart; the equal-weight version counts every part of the scale the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score

from models.scoring import SIMILAR_THRESHOLD

MIN_SOURCE_PAIRS = 10  # per-source metrics of fewer pairs are not reported
LABEL_BIN_EDGES = (1.0, 2.0, 3.0, 4.0)  # bins [0,1) [1,2) [2,3) [3,4) [4,5]


def label_bins(labels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bin index 0-4 of each 0-5 label: [0,1) [1,2) [2,3) [3,4) [4,5]."""
    return np.digitize(np.asarray(labels, dtype=np.float64), LABEL_BIN_EDGES)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Weights that give every non-empty label bin the same total weight (summing to 1)."""
    bins = label_bins(labels)
    counts = np.bincount(bins, minlength=5).astype(np.float64)
    present = np.count_nonzero(counts)
    return 1.0 / (present * counts[bins])


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` with observation weights; 0.0 when either is constant."""
    weights = weights / weights.sum()
    dx, dy = x - weights @ x, y - weights @ y
    denominator = np.sqrt((weights @ dx**2) * (weights @ dy**2))
    return 0.0 if denominator == 0 else float((weights @ (dx * dy)) / denominator)


def sts_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman, F1 (KLUE's: prediction and gold both binarised at >= 3.0) and balanced Pearson.

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
        "balanced_pearson": 0.0 if constant else weighted_pearson(predictions, labels, balanced_weights(labels)),
    }


def metrics_by_source(
    predictions: np.ndarray, labels: np.ndarray, sources: Sequence[str]
) -> dict[str, dict[str, float]]:
    """:func:`sts_metrics` and the pair count per source, for sources with at least ``MIN_SOURCE_PAIRS`` pairs."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    sources = np.asarray(sources, dtype=object)
    report = {}
    for source in sorted(set(sources)):
        mask = sources == source
        if mask.sum() >= MIN_SOURCE_PAIRS:
            report[str(source)] = {**sts_metrics(predictions[mask], labels[mask]), "pairs": int(mask.sum())}
    return report
