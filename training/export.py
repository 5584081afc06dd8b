"""Export a model package to ONNX, quantise it to int8 and check both against PyTorch.

    python -m training.export outputs/me5-small-ko/model

Writes ``onnx/model.onnx`` (float32, dynamic batch and sequence axes) and
``onnx/model_quantized.onnx`` (weight-only int8, for CPU serving: see :mod:`training.quantize`),
then scores the validation and dev sets with all three and records in ``metadata.json``: the
largest |PyTorch - ONNX| score difference, the metrics of each, the int8 model's largest and
99th-percentile difference from float32 per pair, its batch invariance, and reference scores of
fixed pairs for the service's start-up parity check, and the served model's accuracy per
category on the contrast set (``data/contrast``) with its minimal-pair accuracy on the project's
triples and on the held-out hand-written set (``report["minimal_pairs"]``). The validation split is rebuilt from the
training file and split seed recorded in the metadata (checked by hash).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

import models.cross_encoder  # noqa: F401  (registers the mean-pooling head with the Auto classes)
from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR, accepted_inputs
from models.package import read_metadata, write_metadata
from models.pairs import PairTokenizer
from models.scorer import Scorer, load_scorer
from training.contrast import CONTRAST_FILE, contrast_report, read_contrast, shipped_minimal_pairs
from training.evaluate import evaluation_sets, score_frame
from training.logs import configure_logging
from training.metrics import sts_metrics
from training.quantize import SCHEME, quantize_weights

logger = logging.getLogger("training.export")

OPSET = 17
PARITY_TOLERANCE = 1e-3  # on the 0-5 score scale, float32 ONNX against float32 PyTorch
BATCH_TOLERANCE = 1e-4  # a pair's int8 score alone against in a batch
BATCH_CHECK_PAIRS = 256
REFERENCE_PAIRS = [
    (
        "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.",
        "숙박시설의 위치는 쉽게 찾을 수 있고 한국의 대표적인 반지하 숙박시설입니다.",
    ),
    (
        "회사가 보낸 메일은 이 지메일이 아니라 다른 지메일 계정으로 전달해줘.",
        "사람들이 주로 네이버 메일을 쓰는 이유를 알려줘",
    ),
    ("오늘 서울 날씨는 맑습니다.", "오늘 서울은 비가 옵니다."),
    ("환불은 언제 받을 수 있나요?", "환불은 언제쯤 처리되나요?"),
    ("정부는 내년부터 청년 주거 지원을 확대한다.", "내년에 청년 주거 지원이 늘어난다."),
    ("알람 7시로 맞춰줘", "오늘 저녁 메뉴 추천해줘"),
]
EXAMPLE_PAIRS = [
    ("숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.", "숙박시설의 위치는 쉽게 찾을 수 있습니다."),
    ("좋아요", "별로예요"),
]


def export_onnx(package_dir: Path, name: str = ONNX_FP32, attention: str = "sdpa") -> Path:
    """Exports the float32 PyTorch model to ``onnx/<name>`` with dynamic batch and sequence axes.

    ``attention``: the transformers attention implementation traced; ``eager`` writes the
    attention pattern that ONNX Runtime's BERT fusions recognise (SDPA's is not fused).
    """
    model = AutoModelForSequenceClassification.from_pretrained(
        package_dir, dtype=torch.float32, attn_implementation=attention
    ).eval()
    arrays = PairTokenizer.from_dir(package_dir, max_length=64)(*zip(*EXAMPLE_PAIRS))
    # accepted_inputs() keeps forward()'s parameter order, which is how the exporter numbers graph inputs.
    names = list(accepted_inputs(model.forward))
    inputs = {name: torch.from_numpy(arrays[name]) for name in names}
    target = package_dir / ONNX_SUBDIR / name
    target.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript-based exporter: ONNX Runtime's quantiser cannot infer shapes of the
    # graphs the dynamo exporter writes for these models (torch 2.13, onnxruntime 1.31).
    torch.onnx.export(
        model,
        (),
        str(target),
        kwargs=inputs,
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    logger.info("exported %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def export_package(package_dir: Path, quantize: bool = True) -> dict:
    """Exports, quantises, checks parity and batch invariance, and records ONNX metrics in the metadata."""
    package_dir = Path(package_dir)
    metadata = read_metadata(package_dir)
    fp32_path = export_onnx(package_dir)
    scorers: dict[str, Scorer] = {
        "torch": load_scorer(package_dir, "torch", device="cpu"),
        "onnx_fp32": load_scorer(package_dir, "onnx", device="cpu", onnx_file=ONNX_FP32),
    }
    if quantize:
        quantize_weights(fp32_path, fp32_path.with_name(ONNX_INT8))
        scorers["onnx_int8"] = load_scorer(package_dir, "onnx", device="cpu", onnx_file=ONNX_INT8)
    sets = evaluation_sets(metadata)
    report: dict = {"opset": OPSET, "parity_max_abs_delta": 0.0, "parity_pairs": 0}
    int8: dict = {"scheme": SCHEME, "max_abs_delta": {}, "p99_abs_delta": {}}
    for set_name, frame in sets.items():
        scores = {name: score_frame(scorer, frame) for name, scorer in scorers.items()}
        delta = float(np.max(np.abs(scores["torch"] - scores["onnx_fp32"])))
        report["parity_max_abs_delta"] = max(report["parity_max_abs_delta"], delta)
        report["parity_pairs"] += len(frame)
        for name, values in scores.items():
            report.setdefault(name, {})[set_name] = sts_metrics(values, frame["label"].to_numpy())
        if quantize:
            difference = np.abs(scores["onnx_fp32"] - scores["onnx_int8"])
            int8["max_abs_delta"][set_name] = float(difference.max())
            int8["p99_abs_delta"][set_name] = float(np.percentile(difference, 99))
    logger.info(
        "ONNX parity: max |torch - onnx| = %.2e over %d pairs", report["parity_max_abs_delta"], report["parity_pairs"]
    )
    for name in scorers:
        for set_name, m in report[name].items():
            logger.info(
                "%-10s %-10s pearson %.4f  spearman %.4f  f1 %.4f", name, set_name, m["pearson"], m["spearman"], m["f1"]
            )
    if report["parity_max_abs_delta"] > PARITY_TOLERANCE:
        raise RuntimeError(
            f"ONNX export disagrees with PyTorch by {report['parity_max_abs_delta']:.2e} "
            f"(tolerance {PARITY_TOLERANCE:g}); the export is broken, do not ship it"
        )
    if quantize:
        frame = next(iter(sets.values())).head(BATCH_CHECK_PAIRS)
        int8["batch_invariance_max_abs_delta"] = _batch_dependence(scorers["onnx_int8"], frame)
        logger.info("int8 (%s): max |int8 - float32| per set %s", SCHEME, int8["max_abs_delta"])
        if int8["batch_invariance_max_abs_delta"] > BATCH_TOLERANCE:
            raise RuntimeError(
                f"int8 scores depend on their batch-mates by up to {int8['batch_invariance_max_abs_delta']:.2e} "
                f"(tolerance {BATCH_TOLERANCE:g}); do not ship this export"
            )
        report["int8"] = int8
    report["reference"] = reference_scores(scorers)
    if CONTRAST_FILE.is_file():
        served = scorers["onnx_int8" if quantize else "onnx_fp32"]
        frame = read_contrast(CONTRAST_FILE)
        contrast = contrast_report(served, frame, shipped_minimal_pairs(frame))
        report["contrast"] = contrast["contrast"]
        logger.info("contrast set (as served): %s", {k: round(v["accuracy"], 3) for k, v in report["contrast"].items()})
        if contrast["minimal_pairs"]:
            report["minimal_pairs"] = contrast["minimal_pairs"]
            for name, results in report["minimal_pairs"].items():
                logger.info(
                    "minimal pairs, %s (as served): %s", name, {k: round(v["accuracy"], 3) for k, v in results.items()}
                )
    metadata["onnx"] = report
    write_metadata(package_dir, metadata)
    return report


def _batch_dependence(scorer: Scorer, frame) -> float:
    """Largest change of a pair's score between scoring it in one batch with the others and alone."""
    pairs = list(zip(frame["sentence1"], frame["sentence2"]))
    together = scorer.score(pairs)
    alone = np.array([scorer.score([pair])[0] for pair in pairs])
    return float(np.max(np.abs(together - alone)))


def reference_scores(scorers: dict[str, Scorer]) -> dict:
    """Scores of fixed pairs by each runtime file, which the service checks at start-up (parity guard)."""
    files = {"torch": "torch", "onnx_fp32": ONNX_FP32, "onnx_int8": ONNX_INT8}
    return {
        "pairs": [list(pair) for pair in REFERENCE_PAIRS],
        "scores": {files[name]: scorer.score(REFERENCE_PAIRS).tolist() for name, scorer in scorers.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path, help="model package written by training.train")
    parser.add_argument("--no-quantize", action="store_true", help="export float32 only")
    args = parser.parse_args(argv)
    export_package(args.package_dir, quantize=not args.no_quantize)


if __name__ == "__main__":
    main()
