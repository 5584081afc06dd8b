"""The table of round 4's `variants` stage (research/experiments/round4.sh) from the calls' results archives.

    python -m research.experiments.variants_table \
        4-bit=research/results/round4/block2/call1-results.tar.gz \
        healed=research/results/round4/block2/call2-results.tar.gz \
        4-bit=research/results/round4/block2/call4-results.tar.gz

Each run's metadata.json (selection and held-out metrics) and contrast.json (`training.contrast`, PyTorch float32)
are read from the archives; runs of the same base and variant are pooled: mean (sample sd) over seeds. The
round-4 score is the round-4 recipe's selection weights applied to the same figures (0.65 x validation balanced
Pearson + 0.25 x KorSTS-train hold-out Pearson + 0.1 x held-out minimal-pair accuracy), so variants that were
selected without the minimal pairs can be ranked with them.
"""

from __future__ import annotations

import json
import statistics
import sys
import tarfile
from collections import defaultdict

from research.experiments.candidate import WEIGHTS  # the release rule's weights: one definition

COLUMNS = {  # column: (metadata or contrast, path)
    "selection": ("m", ("selection", "score")),
    "round-4 score": ("r4", ()),
    "val. bal. Pearson": ("m", ("metrics", "validation", "balanced_pearson")),
    "KorSTS hold-out": ("m", ("metrics", "validation_korsts_train", "pearson")),
    "dev": ("m", ("metrics", "dev", "pearson")),
    "dev F1": ("m", ("metrics", "dev", "f1")),
    "KorSTS dev": ("m", ("metrics", "korsts_dev", "pearson")),
    "contrast (all)": ("c", ("contrast", "all", "accuracy")),
    "min. pairs, project": ("c", ("minimal_pairs", "project", "all", "accuracy")),
    "project paraphrase": ("c", ("minimal_pairs", "project", "paraphrase", "accuracy")),
    "min. pairs, held out": ("c", ("minimal_pairs", "held_out", "all", "accuracy")),
}

RULE_COLUMNS = {  # the release rule's figures (candidate.WEIGHTS) among the columns
    "validation balanced Pearson": "val. bal. Pearson",
    "KorSTS hold-out Pearson": "KorSTS hold-out",
    "held-out minimal pairs": "min. pairs, held out",
}


def _get(record: dict, path: tuple[str, ...]) -> float:
    for key in path:
        record = record[key]
    return float(record)


def runs(archive: str) -> dict[str, list[dict[str, float]]]:
    """Figures of every run in one archive, by variant (the run folder's name without its ``-sN``)."""
    found: dict[str, dict[str, dict]] = defaultdict(dict)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.removeprefix("./").split("/")
            if len(parts) == 3 and parts[1] == "model" and parts[2] in ("metadata.json", "contrast.json"):
                found[parts[0]][parts[2][0]] = json.load(tar.extractfile(member))
    by_variant: dict[str, list[dict[str, float]]] = defaultdict(list)
    for run, files in sorted(found.items()):
        if set(files) != {"m", "c"}:
            continue
        row = {name: _get(files[src], path) for name, (src, path) in COLUMNS.items() if src != "r4"}
        row["round-4 score"] = sum(weight * row[RULE_COLUMNS[name]] for name, weight in WEIGHTS.items())
        by_variant[run.rsplit("-s", 1)[0]].append(row)
    return by_variant


def table(pooled: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    lines = ["| base | variant | runs | " + " | ".join(COLUMNS) + " |", "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for (base, variant), rows in pooled.items():
        cells = []
        for name in COLUMNS:
            values = [row[name] for row in rows]
            sd = f" ({statistics.stdev(values):.4f})" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4f}{sd}")
        lines.append(f"| {base} | {variant} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    pooled: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for argument in argv:
        base, _, archive = argument.partition("=")
        for variant, rows in runs(archive).items():
            pooled[(base, variant)].extend(rows)
    print(table(dict(sorted(pooled.items()))))


if __name__ == "__main__":
    main(sys.argv[1:])
