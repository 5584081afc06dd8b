"""Held-out splits of a training file that model selection can trust, and how much they leak.

    python -m training.splits --train_file data/klue-sts/klue_sts_train.jsonl \
        --dev_file data/klue-sts/klue_sts_dev.jsonl

Two schemes (``DataArguments.split``):

* ``random``: a seeded shuffle, cut 9:1 (what the first default model used);
* ``grouped``: pairs that share a sentence, or a near-duplicate of one (cosine of character
  3-gram TF-IDF vectors at or above ``near_duplicate_threshold``), form one group, and a group
  never straddles training and validation; groups are dealt into folds stratified by source
  and label bin, so every fold has the training file's mix of sources and of the 0-5 scale.
  Validation is fold 0 of ``round(1 / validation_fraction)`` folds; cross-validation splits
  the rest into ``cv_folds`` folds the same way.

The command prints how many held-out pairs have a near-duplicate sentence among the training
pairs, for both schemes and for the benchmark's dev set (the leakage the scheme removes).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from training.data import SENTENCE_COLUMNS, merge_duplicate_pairs, read_pairs
from training.logs import configure_logging
from training.metrics import label_bins

logger = logging.getLogger("training.splits")

SPLIT_SCHEMES = ("random", "grouped")
LEAKAGE_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
_NON_WORD = re.compile(r"[\W_]+")
_CHUNK = 4000
_GROUP_CACHE: dict[tuple, np.ndarray] = {}


def normalise_sentence(sentence: str) -> str:
    """NFKC, lower case, no spaces or punctuation: the form near-duplicates are compared in."""
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", sentence).lower())


def char_tfidf(sentences: Sequence[str]) -> sp.csr_matrix:
    """L2-normalised TF-IDF vectors of character 3-grams (rows: sentences), for cosine similarity."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(3, 3), sublinear_tf=True, dtype=np.float32)
    return vectorizer.fit_transform(sentences).tocsr()


def near_duplicate_edges(sentences: Sequence[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of sentences whose 3-gram TF-IDF cosine is at least ``threshold``."""
    matrix = char_tfidf(sentences)
    transposed = matrix.T.tocsr()
    rows, cols = [], []
    for start in range(0, matrix.shape[0], _CHUNK):
        block = (matrix[start : start + _CHUNK] @ transposed).tocoo()
        keep = (block.data >= threshold) & (block.row + start < block.col)
        rows.append(block.row[keep] + start)
        cols.append(block.col[keep])
    return np.concatenate(rows), np.concatenate(cols)


def pair_groups(pairs: pd.DataFrame, threshold: float) -> np.ndarray:
    """Group id of every pair: connected components of pairs linked by equal or near-duplicate sentences.

    ``threshold`` >= 1 links equal (normalised) sentences only. Cached per content and threshold.
    """
    first = [normalise_sentence(s) for s in pairs["sentence1"]]
    second = [normalise_sentence(s) for s in pairs["sentence2"]]
    key = (hashlib.sha256("\n".join(first + second).encode()).hexdigest(), threshold)
    if key in _GROUP_CACHE:
        return _GROUP_CACHE[key]
    unique, index = np.unique(np.asarray(first + second, dtype=object), return_inverse=True)
    n = len(pairs)
    rows, cols = [index[:n]], [index[n:]]  # a pair links its own two sentences
    if threshold < 1.0:
        near_rows, near_cols = near_duplicate_edges(list(unique), threshold)
        rows.append(near_rows)
        cols.append(near_cols)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(unique), len(unique)))
    _, component = connected_components(graph, directed=False)
    groups = component[index[:n]]
    _GROUP_CACHE[key] = groups
    return groups


def stratified_group_folds(groups: np.ndarray, strata: Sequence, n_folds: int, seed: int) -> np.ndarray:
    """Fold 0..n_folds-1 of every row; a group stays in one fold, each stratum is spread evenly.

    Groups go, largest first and in seeded random order within a size, to the fold holding the
    fewest rows of the group's stratum (that of its first row), then the fewest rows overall.
    """
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    rng = np.random.default_rng(seed)
    group_ids, first_row, group_of_row = np.unique(groups, return_index=True, return_inverse=True)
    if len(group_ids) < n_folds:
        raise ValueError(f"{len(group_ids)} groups cannot fill {n_folds} folds")
    sizes = np.bincount(group_of_row)
    stratum_of_row, _ = pd.factorize(pd.Series(list(strata)), sort=True)
    group_stratum = stratum_of_row[first_row]
    order = rng.permutation(len(group_ids))
    order = order[np.argsort(-sizes[order], kind="stable")]
    per_stratum = np.zeros((group_stratum.max() + 1, n_folds))
    totals = np.zeros(n_folds)
    tie_break = rng.permutation(n_folds)
    fold_of_group = np.empty(len(group_ids), dtype=np.int64)
    for group in order:
        stratum = group_stratum[group]
        fold = np.lexsort((tie_break, totals, per_stratum[stratum]))[0]
        fold_of_group[group] = fold
        per_stratum[stratum, fold] += sizes[group]
        totals[fold] += sizes[group]
    return fold_of_group[group_of_row]


def strata(pairs: pd.DataFrame) -> list[str]:
    """Source and label bin of each pair, the classes folds are stratified by."""
    sources = pairs["source"] if "source" in pairs else pd.Series("unknown", index=pairs.index)
    return [f"{s}/{b}" for s, b in zip(sources, label_bins(pairs["label"]))]


def grouped_folds(pairs: pd.DataFrame, n_folds: int, seed: int, threshold: float) -> np.ndarray:
    """:func:`stratified_group_folds` over :func:`pair_groups`, stratified by source and label bin."""
    return stratified_group_folds(pair_groups(pairs, threshold), strata(pairs), n_folds, seed)


def split_train_validation(
    pairs: pd.DataFrame, validation_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic shuffled split into (train, validation); the same seed gives the same split."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    size = max(1, round(len(pairs) * validation_fraction))
    validation = pairs.iloc[np.sort(order[:size])].reset_index(drop=True)
    train = pairs.iloc[np.sort(order[size:])].reset_index(drop=True)
    return train, validation


def random_folds(n_rows: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold of every row for a seeded random partition into near-equal folds."""
    order = np.random.default_rng(seed).permutation(n_rows)
    folds = np.empty(n_rows, dtype=np.int64)
    folds[order] = np.arange(n_rows) % n_folds
    return folds


@dataclass(frozen=True)
class SplitSettings:
    """How a training file is cut into training and held-out pairs (the ``DataArguments`` fields of the same names)."""

    split: str = "grouped"
    validation_fraction: float = 0.1
    split_seed: int = 42
    near_duplicate_threshold: float = 0.8
    cv_folds: int = 0
    cv_fold: int = 0
    random_holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.split not in SPLIT_SCHEMES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_SCHEMES)}; got {self.split!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be between 0 and 1, got {self.validation_fraction}")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ValueError(f"cv_folds must be 0 (no cross-validation) or at least 2, got {self.cv_folds}")
        if self.cv_folds and not 0 <= self.cv_fold < self.cv_folds:
            raise ValueError(f"cv_fold must be in 0..{self.cv_folds - 1}, got {self.cv_fold}")
        if not 0.0 <= self.random_holdout_fraction < 0.5:
            raise ValueError(f"random_holdout_fraction must be in [0, 0.5), got {self.random_holdout_fraction}")

    @classmethod
    def from_dict(cls, values: dict) -> SplitSettings:
        """From recorded hyperparameters; metadata older than the grouped scheme used the random split."""
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        known.setdefault("split", "random")
        return cls(**known)


def split_pairs(pairs: pd.DataFrame, settings: SplitSettings) -> dict[str, pd.DataFrame]:
    """Cuts a training file's pairs into ``train`` and held-out sets, each with a fresh index.

    Held out: ``validation`` (selects epochs, recipes and merges), with ``random_holdout_fraction``
    also ``validation_random`` (a random share of what is left: the old scheme's validation, for
    comparing schemes on the same runs), with ``cv_folds`` also ``cv_fold`` (fold ``cv_fold`` of
    what is left, grouped like the scheme).
    """
    if settings.split == "random":
        train, validation = split_train_validation(pairs, settings.validation_fraction, settings.split_seed)
    else:
        n_folds = max(2, round(1.0 / settings.validation_fraction))
        folds = grouped_folds(pairs, n_folds, settings.split_seed, settings.near_duplicate_threshold)
        train = pairs[folds != 0].reset_index(drop=True)
        validation = pairs[folds == 0].reset_index(drop=True)
    held_out = {"validation": validation}
    if settings.random_holdout_fraction > 0:
        size = max(1, round(len(pairs) * settings.random_holdout_fraction))
        order = np.random.default_rng(settings.split_seed + 1).permutation(len(train))
        held_out["validation_random"] = train.iloc[np.sort(order[:size])].reset_index(drop=True)
        train = train.iloc[np.sort(order[size:])].reset_index(drop=True)
    if settings.cv_folds:
        if settings.split == "random":
            folds = random_folds(len(train), settings.cv_folds, settings.split_seed + 2)
        else:
            folds = grouped_folds(train, settings.cv_folds, settings.split_seed + 2, settings.near_duplicate_threshold)
        held_out["cv_fold"] = train[folds == settings.cv_fold].reset_index(drop=True)
        train = train[folds != settings.cv_fold].reset_index(drop=True)
    return {"train": train, **held_out}


def normalised_sentences(frames: list[pd.DataFrame]) -> set[str]:
    """Every sentence (normalised) of the pair sets ``frames``."""
    return {normalise_sentence(s) for frame in frames for c in SENTENCE_COLUMNS for s in frame[c]}


def sharing_sentences(frame: pd.DataFrame, columns: tuple[str, ...], held: set[str]) -> np.ndarray:
    """Per row of ``frame``: whether any of its ``columns`` holds a sentence whose normalised form is in ``held``."""
    shares = np.zeros(len(frame), dtype=bool)
    for column in columns:
        shares |= frame[column].map(normalise_sentence).isin(held).to_numpy()
    return shares


def drop_pairs_sharing_sentences(pairs: pd.DataFrame, held_out: list[pd.DataFrame], name: str) -> pd.DataFrame:
    """Drops pairs with a sentence (normalised) of a held-out set: augmented pairs built from its sentences leak."""
    shares = sharing_sentences(pairs, SENTENCE_COLUMNS, normalised_sentences(held_out))
    if shares.any():
        logger.info("%s: dropped %d pairs that share a sentence with a held-out set", name, int(shares.sum()))
    return pairs[~shares].reset_index(drop=True)


def nearest_training_similarity(train: pd.DataFrame, held_out: pd.DataFrame) -> np.ndarray:
    """Per held-out pair: the highest 3-gram TF-IDF cosine of either sentence to any training sentence."""
    train_sentences = [normalise_sentence(s) for s in pd.concat([train["sentence1"], train["sentence2"]])]
    held_sentences = [normalise_sentence(s) for s in pd.concat([held_out["sentence1"], held_out["sentence2"]])]
    matrix = char_tfidf(train_sentences + held_sentences)
    train_part, held_part = matrix[: len(train_sentences)].T.tocsr(), matrix[len(train_sentences) :]
    best = np.concatenate(
        [
            np.asarray((held_part[start : start + _CHUNK] @ train_part).max(axis=1).todense()).ravel()
            for start in range(0, held_part.shape[0], _CHUNK)
        ]
    )
    return best.reshape(2, -1).max(axis=0)


def leakage_table(
    train_pairs: pd.DataFrame,
    dev: pd.DataFrame | None,
    settings: Sequence[SplitSettings],
    thresholds: Sequence[float] = LEAKAGE_THRESHOLDS,
) -> str:
    """Markdown: share of held-out pairs whose nearest training sentence is at least each similarity."""
    header = "| held-out set | pairs | " + " | ".join(f">= {t:g}" for t in thresholds) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(thresholds)]

    def row(name: str, train: pd.DataFrame, held: pd.DataFrame) -> str:
        nearest = nearest_training_similarity(train, held)
        return f"| {name} | {len(held)} | " + " | ".join(f"{np.mean(nearest >= t):.1%}" for t in thresholds) + " |"

    for setting in settings:
        parts = split_pairs(train_pairs, setting)
        rows.append(row(f"validation, {setting.split} split", parts["train"], parts["validation"]))
    if dev is not None:
        rows.append(row("dev (against all of train)", train_pairs, dev))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints the leakage table."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--dev_file")
    parser.add_argument("--validation_fraction", type=float, default=0.1)
    parser.add_argument("--split_seed", type=int, default=42)
    parser.add_argument("--near_duplicate_threshold", type=float, default=SplitSettings.near_duplicate_threshold)
    args = parser.parse_args(argv)
    pairs = merge_duplicate_pairs(read_pairs(args.train_file), args.train_file)
    dev = read_pairs(args.dev_file) if args.dev_file else None
    common = {"validation_fraction": args.validation_fraction, "split_seed": args.split_seed}
    schemes = [
        SplitSettings(split="random", **common),
        SplitSettings(split="grouped", near_duplicate_threshold=args.near_duplicate_threshold, **common),
    ]
    print(leakage_table(pairs, dev, schemes))


if __name__ == "__main__":
    main()
