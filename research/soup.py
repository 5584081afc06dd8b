"""Merge several fine-tuned runs into one model by averaging their weights (a "model soup").

    python -m research.soup [--greedy] outputs/soup outputs/run-a/model outputs/run-b/model ...

The runs must share architecture and score settings (e.g. one config trained with different
``data_seed`` values). The average is kept only if its selection score (the runs'
``selection_metric`` on validation, with any extra validation sets) beats every component's;
otherwise the best component is written instead. Either way one model is
served, not an ensemble. The choice and every candidate's metrics go into ``metadata.json``.
``--greedy`` (Wortsman et al., 2022) first picks the components: tried best first by their
recorded selection score, each stays only if the average with it scores at least as high.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.package import REPORT_DIR, read_metadata, write_metadata
from models.scorer import load_scorer
from training.arguments import recorded_selection_weights, selection_score
from training.evaluate import evaluate_scorer, evaluation_sets, score_frame
from training.logs import configure_logging
from training.metrics import metrics_by_source

logger = logging.getLogger("research.soup")

WEIGHTS = "model.safetensors"


def average_weights(packages: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the packages' weights, computed in float32, stored in the first's dtype."""
    states = [load_file(package / WEIGHTS) for package in packages]
    names = set(states[0])
    for package, state in zip(packages[1:], states[1:]):
        if set(state) != names:
            raise ValueError(f"{package} has different weights from {packages[0]}: not the same architecture")
    return {name: torch.stack([s[name].float() for s in states]).mean(0).to(states[0][name].dtype) for name in names}


def greedy_components(
    packages: list[Path], sets: dict[str, pd.DataFrame], scratch: Path, device: str = "auto"
) -> tuple[list[Path], list[dict]]:
    """The greedy soup's components: best first by recorded selection score, each kept only if the average of the
    kept ones with it scores at least as high on the selection score (validation only); and what was tried."""
    ordered = sorted(packages, key=lambda p: -(read_metadata(p).get("selection", {}).get("score") or 0.0))
    weights = recorded_selection_weights(read_metadata(ordered[0])["hyperparameters"])
    selection_sets = {name: sets[name] for name, _ in weights}

    def score(components: list[Path]) -> float:
        if len(components) > 1:
            shutil.copytree(components[0], scratch, ignore=shutil.ignore_patterns(WEIGHTS, "onnx", REPORT_DIR))
            save_file(average_weights(components), str(scratch / WEIGHTS), metadata={"format": "pt"})
        scorer = load_scorer(scratch if len(components) > 1 else components[0], "torch", device=device)
        shutil.rmtree(scratch, ignore_errors=True)
        return selection_score(evaluate_scorer(scorer, selection_sets), weights)

    kept, best = [ordered[0]], score(ordered[:1])
    tried = [{"package": str(ordered[0]), "selection": best, "kept": True}]
    for package in ordered[1:]:
        with_it = score([*kept, package])
        logger.info(
            "greedy soup + %s: selection %.4f -> %.4f, %s",
            package,
            best,
            with_it,
            "kept" if with_it >= best else "left out",
        )
        tried.append({"package": str(package), "selection": with_it, "kept": with_it >= best})
        if with_it >= best:
            kept, best = [*kept, package], with_it
    return kept, tried


def make_soup(output_dir: Path, packages: list[Path], device: str = "auto", greedy: bool = False) -> dict:
    """Writes the better of (weight average, best component) to ``output_dir``; returns its metadata.

    With ``greedy`` the average is of the greedy soup's components (``greedy_components``) only.
    """
    settings = {json.dumps(read_metadata(p)["score_settings"], sort_keys=True) for p in packages}
    if len(settings) != 1:
        raise ValueError("the runs have different score settings (objective, max_length, symmetric); cannot merge")
    metadata = read_metadata(packages[0])
    sets = evaluation_sets(metadata)
    if "validation" not in sets:
        raise FileNotFoundError("the training file is needed to rebuild the validation split that decides the merge")
    tried = None
    if greedy:
        everything = packages
        packages, tried = greedy_components(packages, sets, output_dir.with_name(output_dir.name + ".scratch"), device)

    candidates = {str(p): evaluate_scorer(load_scorer(p, "torch", device=device), sets) for p in packages}
    if output_dir.exists():
        shutil.rmtree(output_dir)
    if len(packages) > 1:  # a greedy soup that kept the best run alone has nothing to average
        shutil.copytree(packages[0], output_dir, ignore=shutil.ignore_patterns(WEIGHTS, "onnx", REPORT_DIR))
        save_file(average_weights(packages), str(output_dir / WEIGHTS), metadata={"format": "pt"})
        candidates["soup"] = evaluate_scorer(load_scorer(output_dir, "torch", device=device), sets)

    weights = recorded_selection_weights(metadata["hyperparameters"])
    score = {name: selection_score(metrics, weights) for name, metrics in candidates.items()}
    best_component = max(packages, key=lambda p: score[str(p)])
    keep_soup = "soup" in score and score["soup"] > score[str(best_component)]
    logger.info(
        "soup of %d: selection score %s vs best component %.4f -> %s",
        len(packages),
        f"{score['soup']:.4f}" if "soup" in score else "none (one component)",
        score[str(best_component)],
        "soup kept" if keep_soup else "best component kept",
    )
    if keep_soup:
        shutil.copytree(best_component / REPORT_DIR, output_dir / REPORT_DIR)
    else:
        shutil.rmtree(output_dir, ignore_errors=True)
        shutil.copytree(best_component, output_dir, ignore=shutil.ignore_patterns("onnx"))
    metadata = read_metadata(output_dir)
    metadata["metrics"] = candidates["soup" if keep_soup else str(best_component)]
    metadata["selection"] = {
        **metadata.get("selection", {}),
        "score": score["soup" if keep_soup else str(best_component)],
    }
    metadata.pop("onnx", None)  # onnx/ is not copied: export the result again
    if keep_soup:
        scorer = load_scorer(output_dir, "torch", device=device)
        metadata["metrics_by_source"] = {
            name: metrics_by_source(score_frame(scorer, frame), frame["label"].to_numpy(), frame["source"].tolist())
            for name, frame in sets.items()
        }
        metadata.pop("calibration", None)
    metadata["soup"] = {
        **({"greedy": tried, "runs": [str(p) for p in everything]} if greedy else {}),
        "components": [str(p) for p in packages],
        "kept": "average" if keep_soup else f"component {best_component}",
        "candidates": candidates,
        "component_hyperparameters": {str(p): read_metadata(p)["hyperparameters"] for p in packages},
    }
    write_metadata(output_dir, metadata)
    return metadata


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("packages", type=Path, nargs="+", help="model packages written by training.train")
    parser.add_argument("--device", default="auto", help="where to score the candidates: auto, cpu or cuda")
    parser.add_argument("--greedy", action="store_true", help="average only the greedy soup's components")
    args = parser.parse_args(argv)
    if len(args.packages) < 2:
        parser.error("a soup needs at least two packages")
    make_soup(args.output_dir, args.packages, args.device, args.greedy)


if __name__ == "__main__":
    main()
