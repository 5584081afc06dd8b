"""CPU speed of two model packages side by side on the served path (e.g. 12 layers against a 6-layer shrink).

    python research/experiments/depth_speed.py PACKAGE_A PACKAGE_B [--backend openvino] [--pairs 512]

Each package is scored through ``load_served_scorer`` (as the service builds it) on KLUE-STS dev pairs, in
calls of 1, 16 and 64 pairs, alternating the two packages, 3 repeats; prints the medians and B/A. A package
without ``onnx/model_quantized.onnx`` (a fresh shrink_base.py output) is exported and quantised first as
training's export does, without its metrics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from models.backends import ONNX_INT8, ONNX_SUBDIR
from models.scorer import load_served_scorer
from training.export import export_onnx
from training.quantize import quantize_weights

REPO = Path(__file__).resolve().parents[2]
KLUE_DEV = REPO / "data/klue-sts/klue_sts_dev.jsonl"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", type=Path, nargs=2)
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnx"])
    parser.add_argument("--pairs", type=int, default=512)
    args = parser.parse_args(argv)
    for package in args.packages:
        if not (package / ONNX_SUBDIR / ONNX_INT8).is_file():
            fp32 = export_onnx(package)
            quantize_weights(fp32, fp32.with_name(ONNX_INT8))
    rows = [json.loads(line) for line in KLUE_DEV.read_text(encoding="utf-8").splitlines()][: args.pairs]
    pairs = [(row["sentence1"], row["sentence2"]) for row in rows]
    scorers = {str(p): load_served_scorer(p, args.backend, device="cpu") for p in args.packages}
    for scorer in scorers.values():
        scorer.score(pairs[:64])  # warm-up
    for size in (1, 16, 64):
        runs: dict[str, list[float]] = {name: [] for name in scorers}
        for _ in range(3):
            for name, scorer in scorers.items():
                started = time.perf_counter()
                for start in range(0, len(pairs), size):
                    scorer.score(pairs[start : start + size])
                runs[name].append(len(pairs) / (time.perf_counter() - started))
        a, b = (statistics.median(r) for r in runs.values())
        print(f"calls of {size}: {a:.1f} / {b:.1f} pairs/s, B/A {b / a:.2f}x", flush=True)


if __name__ == "__main__":
    main()
