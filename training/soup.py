"""A greedy soup: several runs of one recipe averaged into one model, each run kept only if validation gains.

    python -m training.soup --runs RUN_DIR [RUN_DIR ...] --config CONFIG [--field value ...] --output_dir DIR

The runs (``training.train`` output folders: one recipe at several seeds) were fine-tuned from one
base, so their selected weights can be averaged (Wortsman et al., 2022, "Model soups"). Runs are
tried best first by their recorded selection score; each stays in the soup only if the uniform
average with it scores at least as high on the selection score (validation sets only, never dev).
The training arguments must be the runs' own, seed aside: they name the base, the data and the
sets scored. Writes what ``training.train`` writes (``model/``, ``run.json``, ``scores.npz``), with
the soup's ingredients and scores under ``soup`` in ``metadata.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.package import REPORT_DIR, read_metadata
from training.arguments import Arguments, parse_arguments, selection_score
from training.logs import configure_logging
from training.report import write_report
from training.train import (
    RUN_RECORD,
    RunSetup,
    TrainingResult,
    current_selection,
    dev_predictions,
    hyperparameters,
    mean_weights,
    prepare_run,
    save_model_package,
    score_every_set,
    write_run_record,
)

logger = logging.getLogger("training")

SEED_KEYS = ("seed", "data_seed")  # what may differ between the ingredients of one soup


@dataclass
class Ingredient:
    """One finished run: its folder, recorded selection score and selected weights (float32)."""

    run_dir: Path
    selection: float
    seed: int
    weights: dict[str, torch.Tensor]


def read_ingredient(run_dir: Path, recipe: dict) -> Ingredient:
    """Reads a finished run; refuses one trained with other settings than ``recipe`` (seeds aside)."""
    record_file = run_dir / RUN_RECORD
    weights_file = run_dir / "model" / "model.safetensors"
    if not record_file.is_file() or not weights_file.is_file():
        raise SystemExit(
            f"error: {run_dir} is not a finished training run (no {RUN_RECORD} or model/model.safetensors)"
        )
    record = json.loads(record_file.read_text(encoding="utf-8"))
    differing = sorted(
        key
        for key in {*record["hyperparameters"], *recipe}
        if key not in SEED_KEYS and record["hyperparameters"].get(key) != recipe.get(key)
    )
    if differing:
        shown = ", ".join(f"{k}: {record['hyperparameters'].get(k)!r} (run) vs {recipe.get(k)!r}" for k in differing)
        raise SystemExit(f"error: {run_dir} was trained with other settings than the arguments given: {shown}")
    weights = {
        name: tensor.float() if tensor.is_floating_point() else tensor
        for name, tensor in load_file(weights_file).items()
    }
    return Ingredient(run_dir, float(record["selection"]), int(record["hyperparameters"]["seed"]), weights)


def greedy_soup(run: RunSetup, ingredients: list[Ingredient]) -> dict:
    """Loads the greedy soup of ``ingredients`` into the run's model; returns what was tried and kept."""
    model, trainer, sets, weights = run.trainer.model, run.trainer, run.sets, run.weights
    ordered = sorted(ingredients, key=lambda ingredient: -ingredient.selection)
    model.load_state_dict(ordered[0].weights)
    best = current_selection(trainer, sets, weights)
    kept, tried = (
        [ordered[0]],
        [{"run": ordered[0].run_dir.name, "recorded": ordered[0].selection, "soup": best, "kept": True}],
    )
    for ingredient in ordered[1:]:
        model.load_state_dict(mean_weights([k.weights for k in [*kept, ingredient]]))
        score = current_selection(trainer, sets, weights)
        keep = score >= best
        logger.info(
            "soup + %s (selection %.4f alone): %.4f -> %.4f, %s",
            ingredient.run_dir.name,
            ingredient.selection,
            best,
            score,
            "kept" if keep else "left out",
        )
        tried.append({"run": ingredient.run_dir.name, "recorded": ingredient.selection, "soup": score, "kept": keep})
        if keep:
            kept, best = [*kept, ingredient], score
    model.load_state_dict(mean_weights([k.weights for k in ingredients]))
    uniform = current_selection(trainer, sets, weights)
    logger.info("uniform soup of all %d runs: selection %.4f (reported, not used)", len(ingredients), uniform)
    model.load_state_dict(mean_weights([k.weights for k in kept]))
    return {
        "method": "greedy, best first by recorded selection score; kept if the selection score does not fall",
        "tried": tried,
        "ingredients": [k.run_dir.name for k in kept],
        "seeds": [k.seed for k in kept],
        "best_single": ordered[0].selection,
        "greedy_selection": best,
        "uniform_selection": uniform,
    }


def make_soup(arguments: Arguments, run_dirs: list[Path]) -> TrainingResult:
    """The greedy soup of ``run_dirs``, scored on every set like a trained run."""
    recipe = hyperparameters(arguments)
    ingredients = [read_ingredient(run_dir, recipe) for run_dir in run_dirs]
    best = max(ingredients, key=lambda ingredient: ingredient.selection)
    arguments[3].seed = arguments[3].data_seed = best.seed  # what the package records: the first ingredient's seed
    started = time.monotonic()
    run = prepare_run(arguments)
    soup = greedy_soup(run, ingredients)
    scored = score_every_set(run, f"soup of {', '.join(soup['ingredients'])}")
    return TrainingResult(
        trainer=run.trainer,
        settings=run.settings,
        data=run.data,
        metrics=scored.metrics,
        metrics_by_source=scored.by_source,
        selection=selection_score(scored.metrics, run.weights),
        scores=scored.scores,
        epoch_scores={},
        history=[],
        best_epoch=None,
        averaging=None,
        runtime_s=time.monotonic() - started,
        soup=soup,
    )


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the soup's model package directory."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="training.train output folders")
    options, rest = parser.parse_known_args(argv)
    if len(options.runs) < 2:
        raise SystemExit("error: a soup needs 2 or more runs (--runs RUN_DIR RUN_DIR ...)")
    arguments = parse_arguments(rest)
    result = make_soup(arguments, options.runs)
    output_dir = Path(arguments[3].output_dir)
    package_dir = output_dir / "model"
    save_model_package(result, arguments, package_dir)
    write_run_record(result, arguments, output_dir)
    write_report(package_dir / REPORT_DIR, result.history, dev_predictions(result), read_metadata(package_dir))
    logger.info("soup package: %s", package_dir)
    return package_dir


if __name__ == "__main__":
    main()
