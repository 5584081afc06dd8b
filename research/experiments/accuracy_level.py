"""Re-measure the shipped default after setting its MatMulNBits accuracy level (issue 15, item 2).

    nice python -m research.experiments.accuracy_level models/default --float32 outputs/cpu_runtimes/package

The package has no float32 weights, so this is not a full ``training.export``: the int8 weights
stay as they are, only ``accuracy_level`` changes (:func:`training.quantize.set_accuracy_level`), and
the ONNX int8 figures in ``metadata.json`` are measured again as served (both orders averaged):
metrics per set, the contrast set, batch invariance, the parity guard's reference scores and the
largest difference per pair from ``--float32`` (the int8 weights dequantised and exported again by
``research.cpu_runtimes``: the original float32 is not in the package, so the PyTorch and ONNX
float32 rows recorded by the export are kept as they were). The model card is written again from
the metadata (:func:`training.release.model_card`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR
from models.package import read_metadata, write_metadata
from models.scorer import load_scorer
from training.contrast import CONTRAST_FILE, contrast_accuracy, read_contrast
from training.evaluate import evaluation_sets, score_frame
from training.export import REFERENCE_PAIRS, _batch_dependence
from training.metrics import sts_metrics
from training.quantize import ACCURACY_LEVEL, SCHEME, set_accuracy_level
from training.release import model_card

CHANGE = """
Issue 15 (2026-12-02, `python -m research.experiments.accuracy_level`): the int8 file's
`MatMulNBits` accuracy level went from 4 (int8 dot products on activations quantised at run
time) to 0 (float32 compute on the same int8 weights): 1.27x the pairs/s on 2 AVX2 cores, and
every score exactly the float32 score of the int8 weights. The int8 rows, the contrast table and
the int8-against-float32 differences under "Limits" were measured again, against those int8
weights dequantised to float32 (the original float32 weights are not in the package); the
PyTorch and ONNX float32 rows are the original export's."""


def card_notes(card: str) -> str:
    """The "How it was made" notes of a model card, as training.release wrote them."""
    start = card.index("## How it was made\n\n") + len("## How it was made\n\n")
    notes = card[start : card.index("\n\nTraining report:", start)]
    return notes.split("\n\nIssue 15 (")[0] + "\n" + CHANGE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument(
        "--float32", type=Path, required=True, help="a package with onnx/model.onnx of the same weights"
    )
    args = parser.parse_args(argv)
    set_accuracy_level(args.package_dir / ONNX_SUBDIR / ONNX_INT8, ACCURACY_LEVEL)
    metadata = read_metadata(args.package_dir)
    served = load_scorer(args.package_dir, "onnx", device="cpu", onnx_file=ONNX_INT8)
    float32 = load_scorer(args.float32, "onnx", device="cpu", onnx_file=ONNX_FP32)
    onnx = metadata["onnx"]
    int8 = {
        "scheme": SCHEME,
        "float32_reference": "the int8 weights dequantised to float32 (the original float32 is not in the package)",
        "max_abs_delta": {},
        "p99_abs_delta": {},
    }
    sets = evaluation_sets(metadata)
    for name, frame in sets.items():
        scores = score_frame(served, frame)
        onnx["onnx_int8"][name] = sts_metrics(scores, frame["label"].to_numpy())
        difference = np.abs(scores - score_frame(float32, frame))
        int8["max_abs_delta"][name] = float(difference.max())
        int8["p99_abs_delta"][name] = float(np.percentile(difference, 99))
        print(name, onnx["onnx_int8"][name], int8["max_abs_delta"][name], flush=True)
    int8["batch_invariance_max_abs_delta"] = _batch_dependence(served, next(iter(sets.values())).head(256))
    onnx["int8"] = int8
    onnx["reference"]["scores"][ONNX_INT8] = served.score(REFERENCE_PAIRS).tolist()
    frame = read_contrast(CONTRAST_FILE)
    onnx["contrast"] = contrast_accuracy(score_frame(served, frame), frame)
    write_metadata(args.package_dir, metadata)
    size = sum(p.stat().st_size for p in args.package_dir.rglob("*") if p.is_file()) / 1e6
    card_path = args.package_dir / "MODEL_CARD.md"
    card = model_card(metadata, card_notes(card_path.read_text(encoding="utf-8")), size)
    card_path.write_text(card, encoding="utf-8")
    print("batch invariance", int8["batch_invariance_max_abs_delta"], "contrast", onnx["contrast"]["all"])


if __name__ == "__main__":
    main()
