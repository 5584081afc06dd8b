"""Which fixed order should canonical scoring use? Four rules against both orders averaged (issue 15, item 1).

    nice python -m research.canonical_rules models/default --out research/results/symmetry-orders.md

Scores every pair of the shipped default's own validation sets (its student recipe's split, as training holds
them out) and of KLUE-STS and KorSTS dev in both orders, as the service scores on the CPU, then Pearson of one order
per pair chosen by each rule, and by chance (1,000 random choices: mean and sd), minus Pearson of the average. The
rule is chosen on the validation sets; dev is reported.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.scoring import canonical_first
from research.report import finish
from research.symmetry import pairs_of, with_symmetry
from training.arguments import parse_arguments
from training.data import read_pairs
from training.metrics import sts_metrics
from training.train import prepare_data

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "training/configs/me5-small-ko-mp-student.yaml"
SOFT_LABELS = REPO / "research/results/round4/block3/call1-mp-soft.jsonl.gz"  # the shipped student's soft labels
RULES: dict[str, Callable[[str, str], bool]] = {  # whether the first sentence goes first
    "shorter first": canonical_first,  # the rule models.scoring uses since this study
    "longer first": lambda a, b: (len(a), a) >= (len(b), b),
    "string order": lambda a, b: a <= b,
    "hash": lambda a, b: hashlib.sha256(f"{a}\0{b}".encode()).digest() <= hashlib.sha256(f"{b}\0{a}".encode()).digest(),
}


def validation_sets() -> dict:
    """The shipped default's held-out validation sets, rebuilt from its recipe and kept soft labels."""
    with tempfile.TemporaryDirectory() as work:
        soft = Path(work) / "soft.jsonl"
        with gzip.open(SOFT_LABELS) as source, open(soft, "wb") as target:
            shutil.copyfileobj(source, target)
        _, data_args, _, _ = parse_arguments(
            ["--config", str(RECIPE), "--soft_label_file", str(soft), "--output_dir", str(Path(work) / "run")]
        )
        held_out = prepare_data(data_args).held_out
    return {"validation": held_out["validation"], "KorSTS hold-out": held_out["validation_korsts_train"]}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from serving.settings import Settings

    scorer = with_symmetry(Settings().scorer(args.package_dir, device="cpu"), "none")
    sets = {
        **validation_sets(),
        "KLUE-STS dev": read_pairs(REPO / "data/klue-sts/klue_sts_dev.jsonl"),
        "KorSTS dev": read_pairs(REPO / "data/korsts/korsts_dev.jsonl"),
    }
    lines = [
        f"Model: `{args.package_dir}`, {scorer.runtime.description}. Pearson of one order per pair minus Pearson of "
        "both orders averaged; the rule is chosen on the first two (validation) sets.",
        "",
        "| set | pairs | averaged | " + " | ".join(RULES) + " | random order: mean (sd) |",
        "|---|---:|---:|" + "---:|" * (len(RULES) + 1),
    ]
    for name, frame in sets.items():
        labels, pairs = frame["label"].to_numpy(), pairs_of(frame)
        given, swapped = scorer.score(pairs), scorer.score([(b, a) for a, b in pairs])
        average = sts_metrics((given + swapped) / 2, labels)["pearson"]
        rng = np.random.default_rng(0)
        choices = [np.array([rule(a, b) for a, b in pairs]) for rule in RULES.values()]
        choices += [rng.random(len(pairs)) < 0.5 for _ in range(1000)]
        losses = np.array([sts_metrics(np.where(c, given, swapped), labels)["pearson"] - average for c in choices])
        rules, chance = losses[: len(RULES)], losses[len(RULES) :]
        lines.append(
            f"| {name} | {len(pairs)} | {average:.4f} | "
            + " | ".join(f"{value:+.4f}" for value in rules)
            + f" | {chance.mean():+.4f} ({chance.std():.4f}) |"
        )
    return finish(lines, args.out)


if __name__ == "__main__":
    main()
