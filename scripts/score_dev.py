"""Scores KLUE-STS dev through a running service over HTTP and checks it against the model card.

    .venv/bin/python scripts/score_dev.py http://127.0.0.1:3000

The stated figures come from the served model itself (``/model_info``: the metrics its package
recorded for the runtime, ``onnx_int8`` by default); the check fails when dev Pearson (or every
metric named by ``--check``) falls more than ``--tolerance`` below them (the same 0.005 as
tests/test_default_model.py); a shortfall in another stated metric is printed as a warning.
Prints one JSON line with the measured and stated metrics. Used by scripts/check-image.sh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data import read_pairs  # noqa: E402
from training.metrics import sts_metrics  # noqa: E402

KLUE_DEV = REPO / "data/klue-sts/klue_sts_dev.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the service, e.g. http://127.0.0.1:3000")
    parser.add_argument("--runtime", default="onnx_int8", help="whose stated metrics to compare with (model_info)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="how far below the stated figure is a failure")
    parser.add_argument("--check", default="pearson", help="comma-separated metrics that must reach the card")
    parser.add_argument("--chunk", type=int, default=64, help="pairs per request")
    args = parser.parse_args(argv)

    dev = read_pairs(KLUE_DEV)
    pairs = [{"sentence1": a, "sentence2": b} for a, b in zip(dev["sentence1"], dev["sentence2"])]
    started = time.perf_counter()
    scores: list[float] = []
    with httpx.Client(base_url=args.url, timeout=120) as client:
        info = client.post("/model_info", json={})
        info.raise_for_status()
        info = info.json()
        for i in range(0, len(pairs), args.chunk):
            response = client.post("/score", json={"pairs": pairs[i : i + args.chunk]})
            if response.status_code != 200:
                print(f"POST /score: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
                return 1
            scores.extend(result["score"] for result in response.json())
    seconds = time.perf_counter() - started

    measured = sts_metrics(np.asarray(scores), dev["label"].to_numpy())
    stated = info["metrics"].get(args.runtime, {}).get("dev")
    report = {
        "model": info["tag"],
        "backend": info["backend"],
        "device": info["device"],
        "pairs": len(scores),
        "seconds": round(seconds, 1),
        "dev": {k: round(float(v), 4) for k, v in measured.items()},
        "stated": {k: round(float(stated[k]), 4) for k in ("pearson", "f1")} if stated else None,
    }
    print(json.dumps(report))
    if stated is None:
        print(f"the model states no {args.runtime} dev metrics (model_info: {list(info['metrics'])})", file=sys.stderr)
        return 1
    required = args.check.split(",")
    short = [k for k in ("pearson", "f1") if measured[k] < stated[k] - args.tolerance]
    for k in short:
        level = "FAIL" if k in required else "warning"
        print(f"{level}: dev {k} {measured[k]:.4f} is below the model card's {stated[k]:.4f} - {args.tolerance}")
    return 1 if set(short) & set(required) else 0


if __name__ == "__main__":
    sys.exit(main())
