"""Compare finished runs side by side: a markdown table of their metrics, deltas to the first.

    python -m training.compare outputs/baseline/model outputs/symmetric/model ...

Selection decisions read the validation columns; dev and other sets are for reporting.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.package import read_metadata

COLUMNS = (
    ("validation", "pearson"),
    ("validation", "f1"),
    ("dev", "pearson"),
    ("dev", "f1"),
    ("korsts_dev", "pearson"),
)


def comparison_table(packages: list[Path]) -> str:
    """One row per package: metrics, difference to the first package, best epoch and run time."""
    records = [(package, read_metadata(package)) for package in packages]
    root = Path(os.path.commonpath([p.resolve() for p in packages])) if len(packages) > 1 else packages[0].parent
    base = records[0][1]["metrics"]
    header = "| run | " + " | ".join(f"{s} {m}" for s, m in COLUMNS) + " | best epoch | minutes |"
    rows = [header, "|---|" + "---:|" * (len(COLUMNS) + 2)]
    for package, metadata in records:
        cells = []
        for set_name, metric in COLUMNS:
            value = metadata["metrics"].get(set_name, {}).get(metric)
            reference = base.get(set_name, {}).get(metric)
            if value is None:
                cells.append("")
            elif package is packages[0] or reference is None:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} ({value - reference:+.4f})")
        name = str(package.resolve().relative_to(root)).removesuffix("/model") or package.name
        minutes = metadata.get("training", {}).get("runtime_s", 0) / 60
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {metadata.get('best_epoch')} | {minutes:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", type=Path, nargs="+", help="model packages; the first is the reference")
    args = parser.parse_args(argv)
    print(comparison_table(args.packages))


if __name__ == "__main__":
    main()
