"""CPU runtimes for the shipped model side by side (issue 15, item 2): speed, batch invariance, accuracy.

    PYTHONPATH=outputs/ovlib nice python -m research.cpu_runtimes models/default --out research/results/cpu_runtimes.md

OpenVINO and NNCF are not serving dependencies; install them apart (``pip install --target outputs/ovlib
openvino nncf``) to run their rows, which are skipped when ``openvino`` cannot be imported.

The package holds only the int8 export, so the float32 reference is rebuilt from it: its weights
dequantised (:mod:`models.weights`) into a float32 checkpoint and exported again
(:func:`training.export.export_onnx`). Every variant is built from that float32 graph, and
measured with the service's CPU batch limits (``serving.settings``) and the given symmetry:

- pairs/s on KLUE-STS dev through :class:`models.scorer.Scorer` (tokenising included), all variants
  interleaved, ``--repeats`` rounds, medians; only ratios mean anything on a shared machine;
- batch invariance: max |score alone - score in the batch of all dev pairs| (bound 1e-4);
- max and 99th percentile |score - float32| per dev pair (bound 0.1), and dev Pearson / F1;
- max |score - recorded float32| on the package's parity pairs (``metadata.json`` onnx.reference), the only
  scores of the original float32 weights there are (recorded with both orders averaged).

The static int8 rows quantise activations too, with scales fixed by NNCF's calibration
(``nncf.quantize``, ``ModelType.TRANSFORMER``) on KLUE-STS train pairs (never dev), tokenised with the
run's symmetry and padded to the widths the scorer pads to: a row's score does not depend on its batch.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR, OnnxRuntime, Pending, Runtime
from models.package import read_metadata, reference_scores
from models.pairs import EncodedRows
from models.scorer import BatchLimits, PairCodec, Scorer
from research.report import finish
from training.data import read_pairs
from training.metrics import sts_metrics

logger = logging.getLogger("research.cpu_runtimes")
REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "data/klue-sts/klue_sts_dev.jsonl"
TRAIN = REPO / "data/klue-sts/klue_sts_train.jsonl"
CALIBRATION_PAIRS = 300
BATCH_BOUND = 1e-4
FLOAT32_BOUND = 0.1
NUM_HEADS, HIDDEN = 12, 384
EAGER_FP32 = "model_eager.onnx"
_REPORTED = ("INFERENCE_PRECISION_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE")


def float32_package(package: Path, work: Path) -> Path:
    """A copy of ``package`` with float32 weights dequantised from its int8 export and ``onnx/model.onnx``."""
    from models.weights import write_torch_weights
    from training.export import export_onnx

    target = work / "package"
    if not (target / ONNX_SUBDIR / ONNX_FP32).is_file():
        shutil.copytree(package, target, dirs_exist_ok=True)
        write_torch_weights(target, package / ONNX_SUBDIR / ONNX_INT8, dtype="float32")
        export_onnx(target)
    if not (target / ONNX_SUBDIR / EAGER_FP32).is_file():
        export_onnx(target, EAGER_FP32, attention="eager")  # the graph ONNX Runtime's attention fusion matches
    return target


def fused(fp32: Path, target: Path, attention: str) -> Path:
    """ONNX Runtime's BERT fusions (attention, skip layer norm, bias GELU) on the float32 graph.

    ``attention``: ``Attention`` (Q, K and V packed in one float weight), ``MultiHeadAttention`` (Q, K, V
    stay MatMuls, which the weight quantiser takes) or ``none`` (no attention fusion). The embedding
    fusion is off, so that the embedding tables stay ``Gather`` (stored as uint8 by the quantiser).
    """
    from onnxruntime.transformers.fusion_options import AttentionOpType, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    if target.is_file():
        return target
    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False
    if attention == "none":
        options.enable_attention = False
    elif attention == "MultiHeadAttention":
        options.use_multi_head_attention = True
        options.attention_op_type = AttentionOpType.MultiHeadAttention
    model = optimize_model(
        str(fp32), "bert", num_heads=NUM_HEADS, hidden_size=HIDDEN, optimization_options=options, opt_level=0
    )
    logger.info("fusions (%s): %s", attention, model.get_fused_operator_statistics())
    model.save_model_to_file(str(target))
    return target


def int8(fp32: Path, target: Path) -> Path:
    """The shipped weight-only int8 scheme (:func:`training.quantize.quantize_weights`) on ``fp32``."""
    from training.quantize import quantize_weights

    if not target.is_file():
        quantize_weights(fp32, target)
    return target


def accuracy_level(source: Path, target: Path, level: int) -> Path:
    """``source`` with every ``MatMulNBits`` set to ``accuracy_level`` (0: float32 compute on the same int8 weights)."""
    import onnx

    if not target.is_file():
        model = onnx.load(str(source))
        for node in model.graph.node:
            if node.op_type == "MatMulNBits":
                for attribute in node.attribute:
                    if attribute.name == "accuracy_level":
                        attribute.i = level
        onnx.save(model, str(target))
    return target


def calibration_rows(codec: PairCodec, limits: BatchLimits, pairs: int = CALIBRATION_PAIRS) -> list[dict]:
    """Inputs for static quantisation: ``pairs`` KLUE-STS train pairs (seeded draw), tokenised by ``codec``.

    One row per item, padded to the width the scorer pads that row to (``limits.padded``): the input names,
    dtypes and widths the runtime gets, one row at a time so that no statistic mixes rows.
    """
    frame = read_pairs(TRAIN)
    picked = np.random.default_rng(0).choice(len(frame), size=min(pairs, len(frame)), replace=False)
    rows = codec.encode([(frame["sentence1"].iloc[i], frame["sentence2"].iloc[i]) for i in picked])
    return [
        rows[i : i + 1].pad(int(limits.padded(int(length))), codec.tokenizer.pad_id)
        for i, length in enumerate(rows.lengths)
    ]


def static_int8(
    source, target: Path, rows: Callable[[], list[dict]], smooth_quant: float | None, float_ops: tuple[str, ...] = ()
) -> None:
    """``nncf.quantize`` (``ModelType.TRANSFORMER``) of ``source`` (an OpenVINO or ONNX model) on ``rows``.

    ``smooth_quant``: SmoothQuant's alpha for MatMuls (NNCF's default for transformers is 0.95), None for none.
    ``float_ops``: patterns of node names left in float (NNCF's ignored scope).
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    items = rows()
    names = list(items[0])
    if hasattr(source, "graph"):  # ONNX: only the inputs the graph has
        names = [i.name for i in source.graph.input if i.name in items[0]]
    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1 if smooth_quant is None else smooth_quant)
    )
    quantized = nncf.quantize(
        source,
        nncf.Dataset(items, lambda item: {name: item[name] for name in names}),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(patterns=list(float_ops), validate=False) if float_ops else None,
        advanced_parameters=advanced,
    )
    if hasattr(quantized, "graph"):
        import onnx

        onnx.save(quantized, str(target))
    else:
        import openvino as ov

        ov.save_model(quantized, str(target), compress_to_fp16=False)


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU, on an ONNX file or an OpenVINO model, with the given CPU properties."""

    backend = "onnx"  # scored like ONNX for the parity keys; only the research script uses this class

    def __init__(self, model, config: dict, label: str):
        import openvino as ov

        core = ov.Core()
        self.path = Path(model) if isinstance(model, str) else None
        self.model = core.compile_model(model, "CPU", config)
        self.request = self.model.create_infer_request()
        self.input_names = tuple(port.any_name for port in self.model.inputs)
        self.device = "cpu"
        compiled = {key: str(self.model.get_property(key)) for key in config if key in _REPORTED}
        self.description = f"openvino {ov.__version__} {label} (compiled with {compiled})"
        logger.info("%s", self.description)

    def launch(self, rows: EncodedRows, width: int, pad_id: int) -> Pending:
        inputs = rows.pad(width, pad_id)
        self.request.infer({name: inputs[name] for name in self.input_names})
        logits = self.request.get_output_tensor(0).data.reshape(-1).astype(np.float32).copy()
        return lambda: logits


@dataclass
class Variant:
    name: str
    build: Callable[[], Runtime]
    size_mb: float | None = None
    runtime: Runtime | None = None
    error: str | None = None


def variants(package: Path, work: Path, calibration: Callable[[], list[dict]]) -> list[Variant]:
    fp32 = package / ONNX_SUBDIR / ONNX_FP32
    onnx_dir = package / ONNX_SUBDIR
    eager = onnx_dir / EAGER_FP32

    def ort(name: str, make: Callable[[], Path]) -> Variant:
        def build() -> Runtime:
            return OnnxRuntime(package, device="cpu", onnx_file=make().name)

        return Variant(name, build)

    shipped = onnx_dir / ONNX_INT8

    def fused_int8() -> Path:
        return int8(fused(eager, onnx_dir / "fused_mha.onnx", "MultiHeadAttention"), onnx_dir / "fused_mha_int8.onnx")

    found = [
        ort("ORT int8 MatMulNBits (shipped)", lambda: shipped),
        ort("ORT float32 (reference)", lambda: fp32),
        ort(
            "ORT MatMulNBits accuracy level 0 (shipped weights, float32 compute)",
            lambda: accuracy_level(shipped, onnx_dir / "int8_acc0.onnx", 0),
        ),
        ort("ORT fused float32 (Attention)", lambda: fused(eager, onnx_dir / "fused_attention.onnx", "Attention")),
        ort("ORT fused int8 (MultiHeadAttention)", fused_int8),
        ort(
            "ORT fused int8 (MultiHeadAttention), accuracy level 0",
            lambda: accuracy_level(fused_int8(), onnx_dir / "fused_mha_int8_acc0.onnx", 0),
        ),
        ort(
            "ORT fused int8 (Attention, QKV float)",
            lambda: int8(
                fused(eager, onnx_dir / "fused_attention.onnx", "Attention"), onnx_dir / "fused_attn_int8.onnx"
            ),
        ),
        ort(
            "ORT fused int8 (no attention fusion)",
            lambda: int8(fused(eager, onnx_dir / "fused_noattn.onnx", "none"), onnx_dir / "fused_noattn_int8.onnx"),
        ),
    ]
    try:
        import openvino as ov
    except ImportError:
        logger.warning("openvino is not importable: its rows are skipped")
        return found
    latency = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}

    def ov_int8_weights() -> Path:
        target = work / "ov_int8.xml"
        if not target.is_file():
            import nncf

            compressed = nncf.compress_weights(ov.Core().read_model(str(fp32)), mode=nncf.CompressWeightsMode.INT8_SYM)
            ov.save_model(compressed, str(target), compress_to_fp16=False)
        return target

    def openvino(name: str, make: Callable[[], Path], config: dict) -> Variant:
        return Variant(name, lambda: OpenVinoRuntime(str(make()), {**latency, **config}, name))

    found += [
        openvino("OpenVINO float32", lambda: fp32, {"INFERENCE_PRECISION_HINT": "f32"}),
        openvino("OpenVINO bf16 hint", lambda: fp32, {"INFERENCE_PRECISION_HINT": "bf16"}),
        openvino(
            "OpenVINO int8 weights (NNCF), f32 compute", ov_int8_weights, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}
        ),
        openvino(
            "OpenVINO int8 weights (NNCF), int8 dyn. quant. group 32",
            ov_int8_weights,
            {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"},
        ),
        openvino("OpenVINO on the shipped MatMulNBits file", lambda: shipped, {}),
    ]
    # The shipped file with each of the CPU's compute paths spelled out (the empty config above is whatever this
    # CPU's defaults are): f32 as served, bf16 (AVX512_BF16 or AMX), int8 activations quantised per group of 32
    # along each row (VNNI), never over the batch.
    for precision, group in (("f32", "0"), ("bf16", "0"), ("f32", "32"), ("bf16", "32")):
        config = {"INFERENCE_PRECISION_HINT": precision, "DYNAMIC_QUANTIZATION_GROUP_SIZE": group}
        found.append(
            openvino(f"OpenVINO shipped file, {precision}, dyn. quant. group {group}", lambda: shipped, config)
        )

    # the two activation-by-activation MatMuls of each attention (Q K^T and probabilities V) left in float32
    scores = (r".*/attention/self/MatMul(_1)?$",)

    def ov_static(smooth_quant: float | None) -> Callable[[], Path]:
        def make() -> Path:
            target = work / f"ov_static_sq{smooth_quant}.xml"
            if not target.is_file():
                static_int8(ov.Core().read_model(str(fp32)), target, calibration, smooth_quant)
            return target

        return make

    def qdq(smooth_quant: float | None, float_ops: tuple[str, ...] = (), label: str = "") -> Callable[[], Path]:
        """NNCF's QDQ ONNX of the float32 graph, embeddings then stored as uint8 (as the shipped file's are)."""

        def make() -> Path:
            target = onnx_dir / f"qdq_sq{smooth_quant}{label}.onnx"
            if not target.is_file():
                import onnx

                from training.quantize import quantize_embeddings

                full = work / target.name
                static_int8(onnx.load(str(fp32)), full, calibration, smooth_quant, float_ops)
                quantize_embeddings(full, target)
            return target

        return make

    found += [
        openvino("OpenVINO static int8 (NNCF, SmoothQuant 0.95)", ov_static(0.95), {}),
        openvino("OpenVINO static int8 (NNCF, no SmoothQuant)", ov_static(None), {}),
        ort("ORT static int8 QDQ (NNCF, SmoothQuant 0.95)", qdq(0.95)),
        openvino("OpenVINO on the QDQ file (NNCF, SmoothQuant 0.95)", qdq(0.95), {}),
        ort("ORT static int8 QDQ (NNCF, SmoothQuant 0.95), attention scores float", qdq(0.95, scores, "_scores")),
        openvino("OpenVINO on the QDQ file, attention scores float", qdq(0.95, scores, "_scores"), {}),
    ]
    return found


def size_mb(runtime: Runtime) -> float | None:
    """The model file's size; an OpenVINO model's ``.xml`` with its ``.bin``."""
    path = getattr(runtime, "path", None)
    if path is None:
        return None
    weights = path.with_suffix(".bin")
    return (path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" else 0)) / 1e6


def main(argv: list[str] | None = None) -> str:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--work", type=Path, default=REPO / "outputs/cpu_runtimes")
    parser.add_argument("--symmetry", default="canonical", help="none, average or canonical")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="substrings of the variant names to run")
    parser.add_argument("--base", help="a substring of the variant whose pairs/s the others are divided by (first)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from serving.settings import Settings

    args.work.mkdir(parents=True, exist_ok=True)
    package = float32_package(args.package_dir, args.work)
    shutil.copy2(args.package_dir / ONNX_SUBDIR / ONNX_INT8, package / ONNX_SUBDIR / ONNX_INT8)
    limits = Settings().batch_limits("cpu")
    codec = PairCodec.for_package(args.package_dir, args.symmetry)
    frame = read_pairs(DEV)
    pairs = list(zip(frame["sentence1"], frame["sentence2"]))
    labels = frame["label"].to_numpy()
    reference = reference_scores(read_metadata(args.package_dir), ONNX_FP32)

    chosen = [
        v
        for v in variants(package, args.work, functools.cache(lambda: calibration_rows(codec, limits)))
        if not args.only or any(s in v.name for s in args.only)
    ]
    scores: dict[str, np.ndarray] = {}
    rows: dict[str, dict] = {}
    scorers: dict[str, Scorer] = {}
    for variant in chosen:
        cache = args.work / f"{args.symmetry}-{re.sub(r'[^a-z0-9]+', '-', variant.name.lower()).strip('-')}.json"
        try:
            runtime = variant.build()
            scorer = Scorer(runtime, codec.tokenizer, codec.settings, limits)
            if cache.is_file():  # measured by an earlier run: only the timing is repeated
                row = json.loads(cache.read_text())
                scores[variant.name] = np.asarray(row.pop("scores"))
            else:
                scores[variant.name] = scorer.score(pairs)
        except Exception as error:  # a runtime or option this CPU does not have: recorded, not fatal
            logger.exception("%s failed", variant.name)
            variant.error = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            continue
        scorers[variant.name] = scorer
        if not cache.is_file():
            alone = np.array([scorer.score([pair])[0] for pair in pairs])
            row = {"size": size_mb(runtime), "batch": float(np.max(np.abs(alone - scores[variant.name])))}
            row.update(sts_metrics(scores[variant.name], labels))
            if reference is not None:
                averaged = Scorer(runtime, codec.tokenizer, replace(codec.settings, symmetry="average"), limits)
                row["parity"] = float(np.max(np.abs(averaged.score(reference[0]) - np.asarray(reference[1]))))
            cache.write_text(json.dumps({**row, "scores": scores[variant.name].tolist()}))
        rows[variant.name] = row
        logger.info("%s: %s", variant.name, row)
    float32 = scores.get("ORT float32 (reference)")
    for name, row in rows.items():
        if float32 is not None:
            difference = np.abs(scores[name] - float32)
            row["fp32_max"], row["fp32_p99"] = float(difference.max()), float(np.percentile(difference, 99))

    times: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.repeats):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scorer.score(pairs)
            times[name].append(time.perf_counter() - start)
    shipped = next((name for name in times if args.base and args.base in name), next(iter(times)))
    base = float(np.median(times[shipped]))
    lines = [
        f"KLUE-STS dev, {len(pairs)} pairs, symmetry `{args.symmetry}` ({codec.rows_per_pair} row(s) per pair), CPU "
        f"batch limits {limits}; {args.repeats} interleaved repeats, medians, x `{shipped}` (per round: the range of "
        "its ratio within each round); float32 = the int8 weights dequantised and exported again; parity = the "
        "package's recorded float32 scores (original weights, "
        "both orders averaged).",
        "",
        "| runtime | MB | pairs/s | vs shipped | per round | batch max | vs float32 max | p99 | parity max "
        "| dev Pearson | dev F1 | bounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant in chosen:
        if variant.error:
            lines.append(f"| {variant.name} | | | | | | | | | | | failed: {variant.error} |")
            continue
        row = rows[variant.name]
        seconds = float(np.median(times[variant.name]))
        rounds = np.asarray(times[shipped]) / np.asarray(times[variant.name])  # same round: the load both saw
        ok = row["batch"] <= BATCH_BOUND and row.get("fp32_max", 0.0) <= FLOAT32_BOUND
        bounds = ("yes" if ok else "no") if "fp32_max" in row else "unknown (no float32 row)"
        size = f"{row['size']:.1f}" if row["size"] else ""
        lines.append(
            f"| {variant.name} | {size} | {len(pairs) / seconds:.0f} | {base / seconds:.2f}x "
            f"| {rounds.min():.2f}-{rounds.max():.2f}x | {row['batch']:.1e} "
            f"| {row.get('fp32_max', float('nan')):.4f} | {row.get('fp32_p99', float('nan')):.4f} "
            f"| {row.get('parity', float('nan')):.4f} | {row['pearson']:.4f} | {row['f1']:.4f} "
            f"| {bounds} |"
        )
    return finish(lines, args.out)


if __name__ == "__main__":
    main()
