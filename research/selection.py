"""Does a validation scheme rank recipes the way held-out data does? Rank correlations with bootstrap intervals.

    python -m research.selection RUN_DIR... [--bootstrap 1000] [--csv runs.csv] [--cv CV_DIR...]

Every run (a ``training.train`` output folder or a tuning trial, with ``run.json`` and
``scores.npz``) that held out both the grouped validation split and a random one
(``random_holdout_fraction``) is one recipe seen by two schemes at once, on the same model:

* old: the random split, plain Pearson (what chose the first default model);
* new: the grouped, source- and label-stratified split, label-balanced Pearson;
* and the two mixed variants, to tell which change matters.

Each scheme picks every run's best epoch on its own validation set and metric, and scores the
recipe by it; the recipe's dev Pearson is that of the epoch the scheme picked. The table gives
each scheme's Spearman and Kendall correlation between its scores and dev's across recipes, with
95% bootstrap intervals that resample recipes, dev pairs and validation pairs together (dev
Pearson's own standard error is about 0.009), the new-minus-old difference, and the regret: how
much dev Pearson the scheme's favourite recipe gives up against dev's own favourite. Dev is used
here only to judge the schemes after the runs, never to choose anything.

With ``--cv``, folders of cross-validation runs (``cv_folds``; one sub-folder per fold) are
summarised: mean and spread over folds, and the fold models' ensemble on dev.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from training.logs import configure_logging
from training.metrics import balanced_weights, sts_metrics

logger = logging.getLogger("research.selection")


@dataclass(frozen=True)
class Scheme:
    """A way to score a recipe: which held-out set, which metric."""

    label: str
    set_name: str
    metric: str  # pearson or balanced_pearson


SCHEMES = (
    Scheme("old: random split, Pearson", "validation_random", "pearson"),
    Scheme("new: grouped split, balanced Pearson", "validation", "balanced_pearson"),
    Scheme("grouped split, Pearson", "validation", "pearson"),
    Scheme("random split, balanced Pearson", "validation_random", "balanced_pearson"),
)
OLD, NEW = SCHEMES[0], SCHEMES[1]


@dataclass
class Run:
    """One finished run: per-epoch scores of its held-out sets and of dev, with labels."""

    name: str
    epoch_scores: dict[str, np.ndarray]  # set -> (epochs, pairs)
    labels: dict[str, np.ndarray]


def load_runs(folders: list[Path], needed: tuple[str, ...] = ("validation", "validation_random", "dev")) -> list[Run]:
    """Reads runs that have per-epoch scores for every ``needed`` set; others are skipped with a note."""
    runs = []
    for folder in folders:
        path = folder / "scores.npz"
        if not path.is_file():
            logger.warning("%s: no scores.npz, skipped", folder)
            continue
        arrays = np.load(path)
        missing = [name for name in needed if f"{name}.epoch_scores" not in arrays]
        if missing:
            logger.info("%s: no per-epoch scores for %s, skipped", folder, ", ".join(missing))
            continue
        runs.append(
            Run(
                name=str(folder),
                epoch_scores={name: arrays[f"{name}.epoch_scores"].astype(np.float64) for name in needed},
                labels={name: arrays[f"{name}.labels"].astype(np.float64) for name in needed},
            )
        )
    return runs


def _row_pearson(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Pearson (weighted when given) of each row of ``scores`` (epochs, pairs) with ``labels``."""
    weights = np.full(labels.shape, 1.0 / len(labels)) if weights is None else weights / weights.sum()
    dx = scores - (scores @ weights)[:, None]
    dy = labels - weights @ labels
    denominator = np.sqrt((dx**2 @ weights) * (weights @ dy**2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (dx * dy) @ weights / denominator, 0.0)


def _metric_rows(scores: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    return _row_pearson(scores, labels, balanced_weights(labels) if metric == "balanced_pearson" else None)


def scheme_scores(
    runs: list[Run], scheme: Scheme, draws: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per run: the scheme's validation score (best epoch) and dev Pearson at that epoch.

    ``draws`` maps set names to resampled pair indices (the same draw for every run and scheme).
    """
    draws = draws or {}
    valid_index = draws.get(scheme.set_name, slice(None))
    dev_index = draws.get("dev", slice(None))
    validation, dev = [], []
    for run in runs:
        curve = _metric_rows(
            run.epoch_scores[scheme.set_name][:, valid_index], run.labels[scheme.set_name][valid_index], scheme.metric
        )
        epoch = int(np.argmax(curve))
        validation.append(curve[epoch])
        dev.append(_row_pearson(run.epoch_scores["dev"][epoch : epoch + 1, dev_index], run.labels["dev"][dev_index])[0])
    return np.asarray(validation), np.asarray(dev)


def _correlations(validation: np.ndarray, dev: np.ndarray) -> tuple[float, float, float]:
    """Spearman, Kendall and regret (best dev minus the dev of validation's favourite)."""
    if np.ptp(validation) == 0 or np.ptp(dev) == 0:
        return 0.0, 0.0, float(dev.max() - dev[np.argmax(validation)])
    return (
        float(spearmanr(validation, dev).statistic),
        float(kendalltau(validation, dev).statistic),
        float(dev.max() - dev[np.argmax(validation)]),
    )


def _same_sets(runs: list[Run]) -> None:
    for name in runs[0].labels:
        if any(not np.array_equal(run.labels[name], runs[0].labels[name]) for run in runs):
            raise ValueError(f"the runs do not share the same {name} set (split or file differs): cannot compare")


def rank_analysis(runs: list[Run], schemes=SCHEMES, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Point estimates and bootstrap intervals of each scheme's agreement with dev, and new minus old."""
    if len(runs) < 3:
        raise ValueError(f"need at least 3 runs (recipes) to correlate rankings, got {len(runs)}")
    _same_sets(runs)
    rng = np.random.default_rng(seed)
    point = {s.label: _correlations(*scheme_scores(runs, s)) for s in schemes}
    samples = {s.label: [] for s in schemes}
    sizes = {name: len(labels) for name, labels in runs[0].labels.items()}
    for _ in range(bootstrap):
        chosen = rng.integers(0, len(runs), len(runs))
        # one draw of recipes and of each set's pairs per replicate, shared by every scheme: paired differences
        draws = {name: rng.integers(0, size, size) for name, size in sizes.items()}
        for scheme in schemes:
            validation, dev = scheme_scores(runs, scheme, draws)
            samples[scheme.label].append(_correlations(validation[chosen], dev[chosen]))
    samples = {label: np.asarray(values) for label, values in samples.items()}
    return {"runs": len(runs), "bootstrap": bootstrap, "point": point, "samples": samples}


def _interval(values: np.ndarray) -> str:
    low, high = np.percentile(values, [2.5, 97.5])
    return f"[{low:+.2f}, {high:+.2f}]"


def rank_table(analysis: dict, schemes=SCHEMES) -> str:
    """Markdown: each scheme's Spearman/Kendall with dev and regret, then new minus old."""
    rows = [
        "| scheme | Spearman with dev | 95% interval | Kendall | 95% interval | regret (dev Pearson) |",
        "|---|---:|---|---:|---|---:|",
    ]
    for scheme in schemes:
        rho, tau, regret = analysis["point"][scheme.label]
        sample = analysis["samples"][scheme.label]
        rows.append(
            f"| {scheme.label} | {rho:+.3f} | {_interval(sample[:, 0])} | {tau:+.3f} | {_interval(sample[:, 1])} | "
            f"{regret:.4f} (bootstrap mean {sample[:, 2].mean():.4f}) |"
        )
    new, old = analysis["samples"][NEW.label], analysis["samples"][OLD.label]
    difference = new[:, 0] - old[:, 0]
    point = analysis["point"][NEW.label][0] - analysis["point"][OLD.label][0]
    return (
        "\n".join(rows) + f"\n\nNew minus old, Spearman: {point:+.3f}, 95% interval {_interval(difference)}, "
        f"P(new > old) = {np.mean(difference > 0):.2f} over {analysis['bootstrap']} bootstrap replicates "
        f"of {analysis['runs']} runs (recipes, dev pairs and validation pairs resampled together)."
    )


def run_rows(runs: list[Run], schemes=SCHEMES) -> list[dict]:
    """Per run: each scheme's validation score and the dev Pearson of the epoch it picks."""
    rows = [{"run": run.name} for run in runs]
    for scheme in schemes:
        validation, dev = scheme_scores(runs, scheme)
        for row, v, d in zip(rows, validation, dev):
            row[f"{scheme.set_name}/{scheme.metric}"] = round(float(v), 5)
            row[f"dev at its epoch ({scheme.set_name}/{scheme.metric})"] = round(float(d), 5)
    return rows


def _spread(metrics: list[dict], set_name: str, metric: str) -> str:
    values = np.array([m[set_name][metric] for m in metrics if set_name in m])
    if not len(values):
        return ""
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def cv_table(folders: list[Path]) -> str:
    """Markdown: per cross-validated recipe, fold metrics (mean and spread) and the fold ensemble on dev."""
    rows = [
        "| recipe | folds | fold balanced Pearson | fold Pearson | fold F1 | validation balanced Pearson "
        "| dev Pearson (mean of folds) | dev Pearson, fold ensemble | dev F1, fold ensemble |",
        "|---|---:|---|---|---|---|---|---:|---:|",
    ]
    for folder in folders:
        records = [
            (json.loads((f / "run.json").read_text(encoding="utf-8")), np.load(f / "scores.npz"))
            for f in sorted(folder.iterdir())
            if (f / "run.json").is_file()
        ]
        records = [(r, a) for r, a in records if "cv_fold" in r["metrics"]]
        if not records:
            continue

        metrics = [record["metrics"] for record, _ in records]
        ensemble = sts_metrics(np.mean([a["dev.scores"] for _, a in records], axis=0), records[0][1]["dev.labels"])
        cells = [
            _spread(metrics, "cv_fold", "balanced_pearson"),
            _spread(metrics, "cv_fold", "pearson"),
            _spread(metrics, "cv_fold", "f1"),
            _spread(metrics, "validation", "balanced_pearson"),
            _spread(metrics, "dev", "pearson"),
            f"{ensemble['pearson']:.4f}",
            f"{ensemble['f1']:.4f}",
        ]
        rows.append(f"| {folder.name} | {len(records)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def out_of_domain_table(folders: list[Path], bootstrap: int = 1000, seed: int = 0) -> str:
    """Markdown: does each extra validation slice rank runs like the matching benchmark set does?

    Uses the selected models' metrics in ``run.json`` (``validation_<stem>`` against e.g.
    ``korsts_dev``), with a bootstrap over runs only.
    """
    pairs = {"validation_korsts_train": "korsts_dev"}
    rows = ["| held-out slice | benchmark set | runs | Spearman | 95% interval |", "|---|---|---:|---:|---|"]
    rng = np.random.default_rng(seed)
    for held, benchmark in pairs.items():
        values = []
        for folder in folders:
            if not (folder / "run.json").is_file():
                continue
            metrics = json.loads((folder / "run.json").read_text(encoding="utf-8")).get("metrics", {})
            if held in metrics and benchmark in metrics:
                values.append((metrics[held]["pearson"], metrics[benchmark]["pearson"]))
        if len(values) < 3:
            continue
        x, y = np.array(values).T
        samples = []
        for _ in range(bootstrap):
            chosen = rng.integers(0, len(x), len(x))
            samples.append(_correlations(x[chosen], y[chosen])[0])
        rho = _correlations(x, y)[0]
        rows.append(f"| {held} | {benchmark} | {len(x)} | {rho:+.3f} | {_interval(np.array(samples))} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def report(runs: list[Run], bootstrap: int, cv_folders: list[Path]) -> str:
    """The whole markdown report."""
    text = "# Validation schemes against dev\n\n"
    if len(runs) >= 3:
        analysis = rank_analysis(runs, bootstrap=bootstrap)
        text += (
            f"{len(runs)} runs, each holding out the grouped and the random validation split. "
            "Each scheme ranks the runs by its own best-epoch score; dev Pearson is that of the epoch it picks.\n\n"
            + rank_table(analysis)
            + "\n"
        )
    else:
        text += f"Only {len(runs)} run(s) with both validation splits: no rank correlation.\n"
    out_of_domain = out_of_domain_table([Path(run.name) for run in runs], bootstrap)
    if out_of_domain:
        text += "\n## Out of domain: the KorSTS slice against KorSTS dev (selected models)\n\n" + out_of_domain + "\n"
    if cv_folders:
        text += "\n## Cross-validation\n\n" + cv_table(cv_folders) + "\n"
    return text


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints the markdown report."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="*", help="run folders (run.json + scores.npz)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--csv", type=Path, help="write every run's scheme scores here")
    parser.add_argument("--cv", type=Path, nargs="*", default=[], help="folders of cross-validation runs")
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    if args.csv and runs:
        rows = run_rows(runs)
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(report(runs, args.bootstrap, args.cv))


if __name__ == "__main__":
    main()
