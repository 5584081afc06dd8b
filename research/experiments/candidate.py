"""Round 4's release check for a run that `research/experiments/round4.sh` sent back (`send_back`).

    python -m research.experiments.candidate /work/.device/N --package outputs/candidate

Rule step 2 (research/results/round4/README.md, "Rule for the next block"): the candidate replaces the
shipped default only if, **as served** (int8 ONNX on the CPU), its round-4 score beats the default's by at least
``--margin`` (the recipe's seed sd) and its dev Pearson passes the CI floor. This script

1. assembles the package in ``--package``: the run's json files (``choice.tar.gz``: config, tokenizer,
   metadata) and its float16 weight parts (``model-NN.safetensors``) as one float32 ``model.safetensors``;
   a run sent back without its training report gets one rebuilt: its history from the call's
   ``results.tar.gz`` (the run's ``run.json``), dev scored here by the float32 package (PyTorch on the CPU);
2. exports it as training does (:func:`training.export.export_package`: ONNX, int8, and the metrics of the
   int8 model on the validation sets, dev, KorSTS dev and the contrast sets, in ``metadata.json``);
3. scores both models the same way: 0.65 x validation balanced Pearson + 0.25 x KorSTS-train hold-out Pearson +
   0.1 x held-out minimal-pair accuracy, all of the int8 model (the default's minimal pairs are scored here
   when its export predates them), and prints the table and the decision. Releasing stays a separate step
   (``python -m training.release PACKAGE --notes FILE``).

``--rule level`` applies block 6's rule instead (issue 15: a model that serves each pair once must not be worse than
the default): no figure of :data:`LEVEL_TOLERANCE` lower than the default's by more than its tolerance, and every
contrast-set category within one pair of the default's. Given an exported package instead of a sent-back folder,
steps 1-2 are skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.package import REPORT_DIR, read_metadata
from models.scorer import load_scorer
from training.contrast import contrast_report, read_contrast, shipped_minimal_pairs
from training.data import read_pairs
from training.export import export_package
from training.report import write_report

WEIGHTS = {"validation balanced Pearson": 0.65, "KorSTS hold-out Pearson": 0.25, "held-out minimal pairs": 0.1}
DEV_FLOOR = 0.86  # tests/test_default_model.py: the CI floor of the shipped default's dev Pearson
LEVEL_TOLERANCE = {  # block 6's rule (research/results/round4/README.md): how far under the default each may fall
    "round-4 score": 0.002,
    "KLUE-STS dev Pearson": 0.002,
    "KLUE-STS dev F1": 0.003,
    "KorSTS dev Pearson": 0.003,
}
CONTRAST_PAIRS = 1  # ... and every contrast-set category within this many pairs, either way


def assemble(sent_back: Path, package: Path) -> Path:
    """The package of a sent-back run: its json files and its weight parts joined, in float32."""
    parts = sorted(sent_back.glob("model-[0-9][0-9].safetensors"))
    if not (sent_back / "choice.tar.gz").is_file() or not parts:
        raise SystemExit(f"{sent_back}: expected choice.tar.gz and model-NN.safetensors (round4.sh send_back)")
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    with tarfile.open(sent_back / "choice.tar.gz") as archive:
        archive.extractall(package, filter="data")
    weights: dict[str, torch.Tensor] = {}
    for part in parts:
        weights.update(load_file(part))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, package / "model.safetensors")
    return package


def rebuild_report(sent_back: Path, package: Path) -> None:
    """The training report of a run sent back without one (send_back before it carried ``report/``)."""
    if (package / REPORT_DIR).is_dir():
        return
    metadata = read_metadata(package)
    with tarfile.open(sent_back / "results.tar.gz") as archive:
        records = [json.load(archive.extractfile(m)) for m in archive.getmembers() if m.name.endswith("/run.json")]
    [record] = [r for r in records if r["selection"] == metadata["selection"]["score"]]
    dev = read_pairs(metadata["data"]["dev"][0]["path"])
    scores = load_scorer(package, "torch", device="cpu").score(list(zip(dev["sentence1"], dev["sentence2"])))
    write_report(package / REPORT_DIR, record["history"], (scores, dev["label"].to_numpy()), metadata)


def served_figures(package: Path) -> dict[str, float]:
    """The int8 model's figures of the rule, and dev, KorSTS dev and the project's minimal pairs (reported)."""
    onnx = read_metadata(package)["onnx"]
    int8 = onnx["onnx_int8"]
    minimal = onnx.get("minimal_pairs")
    if not minimal:  # exported before minimal pairs were recorded: score them now, as served
        frame = read_contrast()
        minimal = contrast_report(load_scorer(package, "onnx"), frame, shipped_minimal_pairs(frame))["minimal_pairs"]
    figures = {
        "validation balanced Pearson": int8["validation"]["balanced_pearson"],
        "KorSTS hold-out Pearson": int8["validation_korsts_train"]["pearson"],
        "held-out minimal pairs": minimal["held_out"]["all"]["accuracy"],
    }
    figures["round-4 score"] = sum(WEIGHTS[name] * figures[name] for name in WEIGHTS)
    figures["KLUE-STS dev Pearson"] = int8["dev"]["pearson"]
    figures["KLUE-STS dev F1"] = int8["dev"]["f1"]
    figures["KorSTS dev Pearson"] = int8["korsts_dev"]["pearson"]
    figures["project minimal pairs"] = minimal["project"]["all"]["accuracy"]
    figures["contrast (all)"] = onnx["contrast"]["all"]["accuracy"]
    return figures


def contrast_pairs(package: Path) -> dict[str, int]:
    """Pairs scored right per contrast-set category, as served (the int8 export's ``contrast``)."""
    contrast = read_metadata(package)["onnx"]["contrast"]
    return {name: round(c["accuracy"] * c["pairs"]) for name, c in contrast.items() if name != "all"}


def level_decision(
    candidate: dict[str, float],
    default: dict[str, float],
    candidate_pairs: dict[str, int],
    default_pairs: dict[str, int],
) -> tuple[bool, str]:
    """Block 6's rule: nothing in :data:`LEVEL_TOLERANCE` under the default's by more than its tolerance, and
    every contrast category within :data:`CONTRAST_PAIRS` of the default's."""
    misses = [
        f"{name} {candidate[name]:.4f} < {default[name] - tolerance:.4f}"
        for name, tolerance in LEVEL_TOLERANCE.items()
        if candidate[name] < default[name] - tolerance
    ]
    misses += [
        f"contrast {name}: {candidate_pairs.get(name, 0)} pairs against {right}"
        for name, right in default_pairs.items()
        if abs(candidate_pairs.get(name, 0) - right) > CONTRAST_PAIRS
    ]
    if misses:
        return False, "keep the default: " + "; ".join(misses)
    return True, "release: level with the default on every figure of the rule and every contrast category"


def decision(candidate: dict[str, float], default: dict[str, float], margin: float) -> tuple[bool, str]:
    gain = candidate["round-4 score"] - default["round-4 score"]
    if gain < margin:
        return False, f"keep the default: the round-4 score gains {gain:+.4f}, less than the margin {margin:.4f}"
    if candidate["KLUE-STS dev Pearson"] < DEV_FLOOR:
        return False, f"keep the default: dev {candidate['KLUE-STS dev Pearson']:.4f} is under the CI floor {DEV_FLOOR}"
    return True, f"release: the round-4 score gains {gain:+.4f} (margin {margin:.4f}) and dev passes the floor"


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sent_back", type=Path, help="the folder round4.sh's send_back filled")
    parser.add_argument("--package", type=Path, default=Path("outputs/candidate"), help="where to assemble it")
    parser.add_argument("--against", type=Path, default=Path("models/default"), help="the shipped default")
    parser.add_argument("--margin", type=float, default=0.004, help="the recipe's seed sd of the round-4 score")
    parser.add_argument(
        "--rule", choices=("gain", "level"), default="gain", help="gain: issue 16's margin; level: block 6's (issue 15)"
    )
    args = parser.parse_args(argv)
    if "onnx" in (read_metadata(args.sent_back) if (args.sent_back / "metadata.json").is_file() else {}):
        package = args.sent_back  # already assembled and exported
    else:
        package = assemble(args.sent_back, args.package)
        rebuild_report(args.sent_back, package)
        export_package(package)
    candidate, default = served_figures(package), served_figures(args.against)
    print(f"| as served (int8) | {package} | {args.against} |\n|---|---:|---:|")
    for name in candidate:
        print(f"| {name} | {candidate[name]:.4f} | {default[name]:.4f} |")
    pairs = contrast_pairs(package), contrast_pairs(args.against)
    for name in pairs[1]:
        print(f"| contrast {name} (pairs) | {pairs[0].get(name, 0)} | {pairs[1][name]} |")
    if args.rule == "level":
        release, why = level_decision(candidate, default, *pairs)
    else:
        release, why = decision(candidate, default, args.margin)
    print(f"\n{why}")
    return release


if __name__ == "__main__":
    main()
