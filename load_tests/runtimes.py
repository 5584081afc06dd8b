"""In-process scoring throughput of CPU backends side by side: ``Scorer.score`` on KLUE-STS dev.

    nice python -m load_tests.runtimes models/default --backends onnx,openvino --repeats 3 \
        --out load_tests/results/2026-12-03-cpu-openvino/in-process.md

Each backend gets the scorer the service builds (:meth:`serving.settings.Settings.scorer`: the CPU's
batch limits, ``KO_STS_THREADS``, the model's symmetry). The backends are timed in turn, each first in
turn, ``--repeats`` rounds, and the medians reported; on a shared machine only the ratios within one
run mean anything.
Also per backend: load (compile) time, batch invariance (max |score alone - score in the dev batch|
over the first ``--alone`` pairs), the start-up parity check's difference, and max |score - the first
backend's score| over dev.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from serving.settings import Settings
from serving.startup import check_parity
from training.data import read_pairs

DEV = Path(__file__).resolve().parents[1] / "data/klue-sts/klue_sts_dev.jsonl"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--backends", default="onnx,openvino", help="comma-separated KO_STS_BACKEND values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alone", type=int, default=100, help="pairs scored alone for the batch-invariance check")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    frame = read_pairs(DEV)
    pairs = list(zip(frame["sentence1"], frame["sentence2"]))
    backends = args.backends.split(",")
    scorers, rows = {}, {}
    for backend in backends:
        start = time.perf_counter()
        scorer = Settings(backend=backend, device="cpu").scorer(args.package_dir)
        load_s = time.perf_counter() - start
        scores = scorer.score(pairs)
        alone = np.array([scorer.score([pair])[0] for pair in pairs[: args.alone]])
        parity = check_parity(scorer, args.package_dir, str(args.package_dir))
        scorers[backend] = scorer
        rows[backend] = {
            "description": scorer.runtime.description,
            "load_s": load_s,
            "scores": scores,
            "batch": float(np.max(np.abs(alone - scores[: args.alone]))),
            "parity": parity,
        }
    times: dict[str, list[float]] = {backend: [] for backend in backends}
    for repeat in range(args.repeats):
        for backend in backends if repeat % 2 == 0 else backends[::-1]:  # each goes first in turn
            scorer = scorers[backend]
            start = time.perf_counter()
            scorer.score(pairs)
            times[backend].append(time.perf_counter() - start)

    first = backends[0]
    base = float(np.median(times[first]))
    lines = [
        f"KLUE-STS dev, {len(pairs)} pairs, `Scorer.score` in process, {args.package_dir}, the service's CPU scorer "
        f"({scorers[first].limits}); {args.repeats} rounds, each backend first in turn; medians; batch: first "
        f"{args.alone} pairs alone vs in the dev batch; parity: the start-up check's max |score - recorded|.",
        "",
        f"| backend | runtime | load s | pairs/s (runs) | vs {first} (per round) | batch max | parity max "
        f"| max vs {first} |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in backends:
        row, seconds = rows[backend], float(np.median(times[backend]))
        runs = ", ".join(f"{len(pairs) / t:.1f}" for t in times[backend])
        rounds = ", ".join(f"{a / b:.2f}" for a, b in zip(times[first], times[backend]))
        difference = float(np.max(np.abs(row["scores"] - rows[first]["scores"])))
        parity = "none recorded" if row["parity"] is None else f"{row['parity']:.1e}"
        lines.append(
            f"| {backend} | {row['description']} | {row['load_s']:.1f} | {len(pairs) / seconds:.1f} ({runs}) "
            f"| {base / seconds:.2f}x ({rounds}) | {row['batch']:.1e} | {parity} | {difference:.1e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
