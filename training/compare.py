"""Compare finished runs side by side: markdown tables of their metrics, deltas to the first.

    python -m training.compare outputs/baseline/model outputs/symmetric/model ... [--sources validation dev]

The first table has the headline metrics; with ``--sources``, one more table per named set gives
Pearson per source (KLUE-STS: airbnb, policy, paraKQC; round-trip-translated or sampled).
Selection decisions read the validation columns; dev and other sets are for reporting.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.package import read_metadata

COLUMNS = (
    ("validation", "balanced_pearson"),
    ("validation", "pearson"),
    ("validation", "f1"),
    ("validation_random", "pearson"),
    ("dev", "pearson"),
    ("dev", "f1"),
    ("korsts_dev", "pearson"),
    ("korsts_dev", "f1"),
)


def _names(packages: list[Path]) -> list[str]:
    root = Path(os.path.commonpath([p.resolve() for p in packages])) if len(packages) > 1 else packages[0].parent
    return [str(p.resolve().relative_to(root)).removesuffix("/model") or p.name for p in packages]


def _cell(value: float | None, reference: float | None, first: bool) -> str:
    if value is None:
        return ""
    if first or reference is None:
        return f"{value:.4f}"
    return f"{value:.4f} ({value - reference:+.4f})"


def comparison_table(packages: list[Path]) -> str:
    """One row per package: metrics, difference to the first package, best epoch and run time."""
    records = [read_metadata(package) for package in packages]
    columns = [c for c in COLUMNS if any(c[0] in m["metrics"] for m in records)]
    base = records[0]["metrics"]
    header = "| run | " + " | ".join(f"{s} {m}" for s, m in columns) + " | best epoch | minutes |"
    rows = [header, "|---|" + "---:|" * (len(columns) + 2)]
    for index, (name, metadata) in enumerate(zip(_names(packages), records)):
        cells = [_cell(metadata["metrics"].get(s, {}).get(m), base.get(s, {}).get(m), index == 0) for s, m in columns]
        minutes = metadata.get("training", {}).get("runtime_s", 0) / 60
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {metadata.get('best_epoch')} | {minutes:.1f} |")
    return "\n".join(rows)


def source_comparison_table(packages: list[Path], set_name: str, metric: str = "pearson") -> str:
    """One row per package, one column per source of ``set_name``: the metric and its difference to the first."""
    records = [read_metadata(package).get("metrics_by_source", {}).get(set_name, {}) for package in packages]
    sources = sorted({source for record in records for source in record})
    rows = [f"| run ({set_name} {metric}) | " + " | ".join(sources) + " |", "|---|" + "---:|" * len(sources)]
    for index, (name, record) in enumerate(zip(_names(packages), records)):
        cells = [_cell(record.get(s, {}).get(metric), records[0].get(s, {}).get(metric), index == 0) for s in sources]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", type=Path, nargs="+", help="model packages; the first is the reference")
    parser.add_argument("--sources", nargs="*", default=[], help="sets to break down by source, e.g. validation dev")
    args = parser.parse_args(argv)
    tables = [comparison_table(args.packages)]
    tables += [source_comparison_table(args.packages, name) for name in args.sources]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
