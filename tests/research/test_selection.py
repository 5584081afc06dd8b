"""Rank agreement of validation schemes with dev, and cross-validation summaries (research.selection)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research.selection import (
    NEW,
    OLD,
    Run,
    cv_table,
    load_runs,
    rank_analysis,
    rank_table,
    report,
    scheme_scores,
)
from training.metrics import balanced_weights, weighted_pearson


def synthetic_runs(n_runs: int = 12, seed: int = 0) -> list[Run]:
    """Recipes of rising quality; the grouped validation tracks dev, the random one is dominated by noise."""
    rng = np.random.default_rng(seed)
    labels = {
        name: rng.uniform(0, 5, size) for name, size in (("validation", 400), ("validation_random", 400), ("dev", 300))
    }
    shared_noise = {name: rng.normal(0, 1, len(values)) for name, values in labels.items()}
    runs = []
    for index, noise in enumerate(np.linspace(1.5, 0.5, n_runs)):
        epoch_scores = {}
        for name, values in labels.items():
            if name == "validation_random":  # its ranking of recipes has nothing to do with their quality
                epochs = [values + rng.normal(0, 1.0, len(values)) * rng.uniform(0.5, 1.5) for _ in range(3)]
            else:
                epochs = [values + noise * (shared_noise[name] + 0.3 * rng.normal(0, 1, len(values))) for _ in range(3)]
            epoch_scores[name] = np.stack(epochs)
        runs.append(Run(name=f"run-{index}", epoch_scores=epoch_scores, labels=labels))
    return runs


def test_scheme_picks_its_best_epoch_and_reports_dev_there():
    runs = synthetic_runs(3)
    validation, dev = scheme_scores(runs, NEW)
    for run, value, dev_value in zip(runs, validation, dev):
        labels = run.labels["validation"]
        curve = [weighted_pearson(s, labels, balanced_weights(labels)) for s in run.epoch_scores["validation"]]
        epoch = int(np.argmax(curve))
        assert value == pytest.approx(curve[epoch])
        assert dev_value == pytest.approx(np.corrcoef(run.epoch_scores["dev"][epoch], run.labels["dev"])[0, 1])


def test_a_scheme_that_tracks_dev_beats_one_that_does_not():
    analysis = rank_analysis(synthetic_runs(), bootstrap=100)
    new_rho, old_rho = analysis["point"][NEW.label][0], analysis["point"][OLD.label][0]
    assert new_rho > 0.8 and new_rho > old_rho + 0.3
    assert analysis["samples"][NEW.label].shape == (100, 3)
    table = rank_table(analysis)
    assert "New minus old" in table and "P(new > old)" in table and NEW.label in table


def test_runs_on_different_splits_are_not_compared():
    runs = synthetic_runs(4)
    runs[2].labels = {**runs[2].labels, "dev": runs[2].labels["dev"][::-1].copy()}
    with pytest.raises(ValueError, match="do not share the same dev set"):
        rank_analysis(runs, bootstrap=5)
    with pytest.raises(ValueError, match="at least 3 runs"):
        rank_analysis(synthetic_runs(2), bootstrap=5)


def write_run(folder, run: Run, metrics: dict | None = None, sets=("validation", "validation_random", "dev")):
    folder.mkdir(parents=True)
    arrays = {}
    for name in sets:
        arrays[f"{name}.epoch_scores"] = run.epoch_scores[name]
        arrays[f"{name}.labels"] = run.labels[name]
        arrays[f"{name}.scores"] = run.epoch_scores[name][-1]
    np.savez(folder / "scores.npz", **arrays)
    (folder / "run.json").write_text(json.dumps({"metrics": metrics or {}}))


def test_runs_without_both_validation_splits_are_skipped(tmp_path):
    runs = synthetic_runs(2)
    write_run(tmp_path / "a", runs[0])
    write_run(tmp_path / "b", runs[1], sets=("validation", "dev"))
    loaded = load_runs([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert [run.name for run in loaded] == [str(tmp_path / "a")]


def test_cross_validation_table_gives_mean_spread_and_the_fold_ensemble(tmp_path):
    rng = np.random.default_rng(3)
    dev_labels = rng.uniform(0, 5, 200)
    for fold, value in enumerate((0.80, 0.90)):
        folder = tmp_path / "recipe" / f"fold-{fold}"
        folder.mkdir(parents=True)
        metrics = {
            "cv_fold": {"pearson": value, "balanced_pearson": value - 0.1, "f1": 0.7},
            "validation": {"balanced_pearson": 0.8},
            "dev": {"pearson": value},
        }
        (folder / "run.json").write_text(json.dumps({"metrics": metrics}))
        np.savez(folder / "scores.npz", **{"dev.scores": dev_labels + rng.normal(0, 1, 200), "dev.labels": dev_labels})
    table = cv_table([tmp_path / "recipe"])
    row = table.splitlines()[-1]
    assert row.startswith("| recipe | 2 | 0.7500 ± 0.0707 | 0.8500 ± 0.0707 |")


def test_report_from_run_folders_adds_the_out_of_domain_check(tmp_path):
    runs = synthetic_runs(6)
    for index, run in enumerate(runs):
        quality = 0.5 + 0.05 * index
        metrics = {"validation_korsts_train": {"pearson": quality}, "korsts_dev": {"pearson": quality - 0.01}}
        write_run(tmp_path / run.name, run, metrics)
    text = report(load_runs(sorted(tmp_path.iterdir())), bootstrap=20, cv_folders=[])
    assert "6 runs" in text and NEW.label in text
    assert "| validation_korsts_train | korsts_dev | 6 | +1.000 |" in text
