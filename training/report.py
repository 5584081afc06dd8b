"""The training report: learning curves, a dev scatter plot and a markdown summary."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from models.cross_encoder import MAX_SCORE, SIMILAR_THRESHOLD
from models.logs import configure_logging
from models.package import REPORT_DIR, read_metadata

logger = logging.getLogger("training.report")

CURVES = "learning_curves.png"
SCATTER = "dev_scatter.png"
HISTORY = "history.json"
DEV_PREDICTIONS = "dev_predictions.json"
SUMMARY = "README.md"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _epoch_series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["epoch"], entry[key]) for entry in history if key in entry and "epoch" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(history: list[dict], path: Path) -> None:
    """Training and evaluation loss, and validation/dev Pearson, per epoch."""
    plt = _pyplot()
    figure, (loss_axis, pearson_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(*_epoch_series(history, "loss"), label="train (logged steps)", alpha=0.7)
    for name in ("validation", "dev"):
        epochs, values = _epoch_series(history, f"eval_{name}_loss")
        if values:
            loss_axis.plot(epochs, values, marker="o", label=name)
        epochs, values = _epoch_series(history, f"eval_{name}_pearson")
        if values:
            pearson_axis.plot(epochs, values, marker="o", label=name)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    pearson_axis.set(xlabel="epoch", ylabel="Pearson r", title="Pearson correlation")
    for axis in (loss_axis, pearson_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_dev_scatter(scores: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """Predicted against gold similarity on dev, with the F1 threshold drawn on both axes."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    axis.scatter(labels, scores, s=8, alpha=0.5)
    axis.plot([0, MAX_SCORE], [0, MAX_SCORE], color="grey", linewidth=1)
    axis.axvline(SIMILAR_THRESHOLD, color="red", linewidth=0.8, linestyle="--")
    axis.axhline(SIMILAR_THRESHOLD, color="red", linewidth=0.8, linestyle="--")
    axis.set(
        xlabel="gold similarity",
        ylabel="predicted similarity",
        xlim=(-0.1, 5.1),
        ylim=(-0.1, 5.1),
        title=f"dev: {len(labels)} pairs",
    )
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    rows = ["| set | Pearson | Spearman | F1 |", "|---|---:|---:|---:|"]
    rows += [f"| {name} | {m['pearson']:.4f} | {m['spearman']:.4f} | {m['f1']:.4f} |" for name, m in metrics.items()]
    return "\n".join(rows)


def _epoch_table(history: list[dict]) -> str:
    rows = ["| epoch | validation Pearson | dev Pearson | dev F1 |", "|---:|---:|---:|---:|"]
    for entry in history:
        if "eval_validation_pearson" in entry:
            rows.append(
                f"| {entry['epoch']:.0f} | {entry['eval_validation_pearson']:.4f} | "
                f"{entry.get('eval_dev_pearson', float('nan')):.4f} | {entry.get('eval_dev_f1', float('nan')):.4f} |"
            )
    return "\n".join(rows)


def write_report(
    report_dir: Path,
    history: list[dict],
    dev: tuple[np.ndarray, np.ndarray] | None,
    metadata: dict,
) -> Path:
    """Writes the raw history, dev predictions, plots and ``README.md``; returns the summary path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / HISTORY).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    if dev is not None:
        record = {"scores": np.asarray(dev[0]).tolist(), "labels": np.asarray(dev[1]).tolist()}
        (report_dir / DEV_PREDICTIONS).write_text(json.dumps(record) + "\n", encoding="utf-8")
    try:
        plot_learning_curves(history, report_dir / CURVES)
        if dev is not None:
            plot_dev_scatter(*dev, report_dir / SCATTER)
    except ImportError:
        logger.warning(
            "matplotlib is not installed: report written without plots; "
            "draw them later with `python -m training.report %s`",
            report_dir.parent,
        )
    hyper = "\n".join(f"| {k} | {v} |" for k, v in metadata["hyperparameters"].items())
    averaged = metadata["averaged_checkpoints"]
    averaged_note = f"; weights averaged over {', '.join(averaged)}" if averaged else ""
    summary = f"""# Training report

Base model: `{metadata["base_model"]}`; trained on {metadata["training"]["device"]} in
{metadata["training"]["runtime_s"] / 60:.1f} min; best epoch {metadata["best_epoch"]}
(selected on validation Pearson){averaged_note}.

## Final metrics (served scores, PyTorch)

{_metrics_table(metadata["metrics"])}

## Per epoch

{_epoch_table(history)}

![learning curves]({CURVES})
{"" if dev is None else f"![dev scatter]({SCATTER})"}

## Hyperparameters

| name | value |
|---|---|
{hyper}
"""
    path = report_dir / SUMMARY
    path.write_text(summary, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: rewrites a package's report from its recorded history."""
    configure_logging()
    parser = argparse.ArgumentParser(description="(Re)write the training report of a model package.")
    parser.add_argument("package_dir", type=Path)
    args = parser.parse_args(argv)
    report_dir = args.package_dir / REPORT_DIR
    history = json.loads((report_dir / HISTORY).read_text(encoding="utf-8"))
    dev = None
    if (report_dir / DEV_PREDICTIONS).is_file():
        record = json.loads((report_dir / DEV_PREDICTIONS).read_text(encoding="utf-8"))
        dev = (np.array(record["scores"]), np.array(record["labels"]))
    print(write_report(report_dir, history, dev, read_metadata(args.package_dir)))


if __name__ == "__main__":
    main()
