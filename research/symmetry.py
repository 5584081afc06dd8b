"""Canonical order against both-orders averaging (issue 15, item 1), on a model package as served.

    nice python -m research.symmetry models/default --out research/results/symmetry.md

Scores KLUE-STS dev, KorSTS dev, the contrast set and the package's parity (reference) pairs with
each :data:`models.scoring.SYMMETRIES` setting on the service's CPU runtime (``serving.settings``; ``KO_STS_*``
variables apply), and times canonical against
averaging on dev, interleaved, several repeats, medians (ratios only: the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.package import read_metadata, reference_scores
from models.scorer import Scorer
from research.report import finish
from training.contrast import CONTRAST_FILE, contrast_accuracy, read_contrast
from training.data import read_pairs
from training.metrics import sts_metrics

REPO = Path(__file__).resolve().parents[1]
SETS = {"KLUE-STS dev": REPO / "data/klue-sts/klue_sts_dev.jsonl", "KorSTS dev": REPO / "data/korsts/korsts_dev.jsonl"}
SYMMETRIES = ("average", "canonical", "none")


def pairs_of(frame) -> list[tuple[str, str]]:
    return list(zip(frame["sentence1"], frame["sentence2"]))


def with_symmetry(scorer: Scorer, symmetry: str) -> Scorer:
    return Scorer(scorer.runtime, scorer.tokenizer, replace(scorer.settings, symmetry=symmetry), scorer.limits)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from serving.settings import Settings

    base = Settings().scorer(args.package_dir, device="cpu")  # as the service scores on the CPU (KO_STS_* apply)
    scorers = {name: with_symmetry(base, name) for name in SYMMETRIES}
    lines = [f"Model: `{args.package_dir}`, {base.runtime.description}, CPU batch limits {base.limits}.", ""]

    lines += ["| set | symmetry | rows per pair | Pearson | Spearman | F1 (3.0) | max \\|score - average\\| |"]
    lines += ["|---|---|---:|---:|---:|---:|---:|"]
    for set_name, path in SETS.items():
        frame = read_pairs(path)
        labels = frame["label"].to_numpy()
        scores = {name: scorer.score(pairs_of(frame)) for name, scorer in scorers.items()}
        for name, values in scores.items():
            m = sts_metrics(values, labels)
            delta = np.max(np.abs(values - scores["average"]))
            lines.append(
                f"| {set_name} | {name} | {scorers[name].rows_per_pair} | {m['pearson']:.4f} | {m['spearman']:.4f} "
                f"| {m['f1']:.4f} | {delta:.4f} |"
            )

    frame = read_contrast(CONTRAST_FILE)
    accuracy = {name: contrast_accuracy(scorer.score(pairs_of(frame)), frame) for name, scorer in scorers.items()}
    lines += ["", "Contrast set (`data/contrast`), accuracy of the served `similar` flag / mean score:", ""]
    lines += ["| category | pairs | " + " | ".join(SYMMETRIES) + " |", "|---|---:|" + "---:|" * len(SYMMETRIES)]
    for category, m in accuracy["average"].items():
        cells = " | ".join(
            f"{accuracy[n][category]['accuracy']:.3f} / {accuracy[n][category]['mean_score']:.2f}" for n in SYMMETRIES
        )
        lines.append(f"| {category} | {m['pairs']} | {cells} |")

    reference = reference_scores(read_metadata(args.package_dir), "model.onnx")
    if reference is not None:
        pairs, float32 = reference
        lines += [
            "",
            f"Parity pairs (`metadata.json` onnx.reference, {len(pairs)} pairs; the recorded float32 scores "
            "average both orders):",
            "",
        ]
        lines += [
            "| symmetry | max \\|served - recorded float32\\| | max \\|swapped - as given\\| |",
            "|---|---:|---:|",
        ]
        swapped = [(b, a) for a, b in pairs]
        for name, scorer in scorers.items():
            given = scorer.score(pairs)
            to_float32 = np.max(np.abs(given - np.asarray(float32)))
            lines.append(f"| {name} | {to_float32:.4f} | {np.max(np.abs(given - scorer.score(swapped))):.2e} |")

    dev = pairs_of(read_pairs(SETS["KLUE-STS dev"]))
    times: dict[str, list[float]] = {name: [] for name in ("average", "canonical")}
    for _ in range(args.repeats):
        for name in times:
            start = time.perf_counter()
            scorers[name].score(dev)
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    lines += ["", f"Throughput on KLUE-STS dev ({len(dev)} pairs, {args.repeats} interleaved repeats, medians):", ""]
    lines += ["| symmetry | pairs/s | relative |", "|---|---:|---:|"]
    for name, seconds in median.items():
        lines.append(f"| {name} | {len(dev) / seconds:.0f} | {median['average'] / seconds:.2f}x |")
    return finish(lines, args.out)


if __name__ == "__main__":
    main()
