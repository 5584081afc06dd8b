"""The training report: learning curves, a dev scatter plot and a markdown summary."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from models.package import REPORT_DIR, read_metadata
from models.scoring import MAX_SCORE, SIMILAR_THRESHOLD
from training.logs import configure_logging

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


def _cell(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else ""


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    rows = ["| set | Pearson | balanced Pearson | Spearman | F1 |", "|---|---:|---:|---:|---:|"]
    rows += [
        f"| {name} | " + " | ".join(_cell(m, k) for k in ("pearson", "balanced_pearson", "spearman", "f1")) + " |"
        for name, m in metrics.items()
    ]
    return "\n".join(rows)


def source_table(by_source: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: Pearson / F1 / pairs per source (rows) and set (columns)."""
    names = [name for name, sources in by_source.items() if sources]
    sources = sorted({source for name in names for source in by_source[name]})
    rows = ["| source | " + " | ".join(f"{n} Pearson | {n} F1 | {n} pairs" for n in names) + " |"]
    rows.append("|---|" + "---:|---:|---:|" * len(names))
    for source in sources:
        cells = []
        for name in names:
            m = by_source[name].get(source)
            cells += ["", "", ""] if m is None else [f"{m['pearson']:.4f}", f"{m['f1']:.4f}", str(m["pairs"])]
        rows.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def calibration_table(record: dict) -> str:
    """Markdown: each set's Pearson and F1 without and with the calibration."""
    rows = ["| set | Pearson | calibrated | F1 | calibrated |", "|---|---:|---:|---:|---:|"]
    for name, m in record["metrics"].items():
        raw, calibrated = m["uncalibrated"], m["calibrated"]
        values = (raw["pearson"], calibrated["pearson"], raw["f1"], calibrated["f1"])
        rows.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    return "\n".join(rows)


def _epoch_table(history: list[dict], selection_metric: str) -> str:
    columns = [
        ("eval_validation_" + selection_metric, f"validation {selection_metric}"),
        ("eval_validation_pearson", "validation Pearson"),
        ("eval_validation_random_pearson", "random-split validation Pearson"),
        ("eval_dev_pearson", "dev Pearson"),
        ("eval_dev_f1", "dev F1"),
    ]
    columns = list(dict.fromkeys(c for c in columns if any(c[0] in e for e in history)))
    rows = ["| epoch | " + " | ".join(label for _, label in columns) + " |", "|---:|" + "---:|" * len(columns)]
    epochs: dict[float, dict] = {}  # the Trainer logs each evaluation set as its own entry
    for entry in history:
        if "epoch" in entry and any(key.startswith("eval_") for key in entry):
            epochs.setdefault(entry["epoch"], {}).update(entry)
    for epoch, entry in epochs.items():
        if "eval_validation_pearson" in entry:
            rows.append(f"| {epoch:.0f} | " + " | ".join(_cell(entry, key) for key, _ in columns) + " |")
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
    selection_metric = metadata["hyperparameters"].get("selection_metric", "pearson")
    split = metadata["hyperparameters"].get("split", "random")
    averaging = metadata.get("averaging")
    averaged_note = ""
    if averaging and "validation_average" in averaging:
        averaged_note = (
            f"; weights of epochs {', '.join(f'{e:g}' for e in averaging['epochs'])} averaged: validation "
            f"{averaging['validation_single']:.4f} -> {averaging['validation_average']:.4f}, "
            + ("kept" if averaging["kept"] else "discarded")
        )
    sections = ""
    if metadata.get("metrics_by_source"):
        sections += f"\n## Per source\n\n{source_table(metadata['metrics_by_source'])}\n"
    if metadata.get("calibration"):
        record = metadata["calibration"]
        sections += (
            f"\n## Calibration\n\nA strictly increasing map with {record['knots']} knots, fitted on "
            f"{record['fitted_on']} ({record['fit_pairs']} pairs, {record['weighting']} weighting); the final "
            f"metrics above are calibrated.\n\n{calibration_table(record)}\n"
        )
    summary = f"""# Training report

Base model: `{metadata["base_model"]}`; trained on {metadata["training"]["device"]} in
{metadata["training"]["runtime_s"] / 60:.1f} min; best epoch {metadata["best_epoch"]}
(selected on validation {selection_metric}, {split} split){averaged_note}.

## Final metrics (served scores, PyTorch)

{metrics_table(metadata["metrics"])}
{sections}
## Per epoch

{_epoch_table(history, selection_metric)}

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
