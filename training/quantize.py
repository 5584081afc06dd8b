"""Int8 ONNX for CPU serving, with ONNX Runtime's own quantisers, batch-invariant by construction.

Weights only: every weight MatMul becomes ``MatMulNBits`` (8-bit, symmetric, one scale per block
of ``block_size`` input channels) and the embedding tables are stored as uint8 with a scale and zero
point per row, gathered with the row and applied after the lookup (standard ONNX ops, so OpenVINO reads
them too; one scale for a whole table, as ``quantize_dynamic`` does, moved the round-4 default's dev
scores up to 0.098 alone). ``accuracy_level`` 0 computes in float32 on the int8 weights: nothing is
quantised at run time, so a score is the float32 score of the int8 weights, whatever the pair is
batched with (the dynamic int8 of ``quantize_dynamic``, which scales activations over the whole
batch, moved scores by up to 0.27 and differed from float32 by up to 1.16).

The choice was measured on the shipped model of the time (2 CPU cores, ONNX Runtime 1.31; docs/serving.md,
"How requests are served"): static QDQ int8 with per-tensor activation scales lost the model (dev Pearson 0.63,
outlier channels in the post-LayerNorm activations), MatMulNBits 8-bit kept it (dev 0.8868
against 0.8871 in float32, largest difference 0.078 on the 0-5 scale) at about a quarter of float32's size.
Accuracy level 4 (int8 dot products, activations quantised per row and block at run time) was the
level until issue 15: on this CPU (AVX2, no VNNI) it ran 0.79x as fast as level 0 and moved dev
scores up to 0.13 from float32 (``research/cpu_runtimes.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

from models.weights import ROW_SUFFIXES

logger = logging.getLogger(__name__)

BLOCK_SIZE = 128  # 32 is slightly more accurate but its scales push the shipped model over 30 MB
ACCURACY_LEVEL = 0  # float32 compute on the int8 weights: faster than level 4 on AVX2 and exactly float32's scores
SCHEME = (
    f"weight-only int8: MatMulNBits (8-bit, block {BLOCK_SIZE}, accuracy level {ACCURACY_LEVEL}: float32 compute), "
    "uint8 embeddings (a scale and zero point per row)"
)


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Gives ``graph`` these nodes and drops the initializers none of them reads."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrites ``Gemm(A, W, b)`` with a constant ``W`` as ``MatMul`` + ``Add``, which the weight quantiser takes.

    The exporter writes ``nn.Linear`` on 2-D inputs (pooler, classifier) as ``Gemm``.
    """
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0 and not attributes.get("transA")
        )
        if node.op_type != "Gemm" or not plain or node.input[1] not in weights:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if attributes.get("transB"):
            weight = weight.T
        name = node.input[1] + "_matmul"
        graph.initializer.append(numpy_helper.from_array(weight.copy(), name))
        product = node.output[0] + "_matmul"
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=node.name + "_MatMul"))
        nodes.append(helper.make_node("Add", [product, node.input[2]], list(node.output), name=node.name + "_Add"))
    _replace_nodes(graph, nodes)
    return model


def _row_uint8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric uint8 per row: ``(q - zero) * scale`` gives each row back within half its own step."""
    low, high = np.minimum(table.min(axis=1), 0.0), np.maximum(table.max(axis=1), 0.0)
    scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
    zero = np.round(-low / scale).astype(np.float32)
    quantised = np.clip(np.round(table / scale[:, None]) + zero[:, None], 0, 255).astype(np.uint8)
    return quantised, scale[:, None], zero[:, None]


def quantize_embeddings(source: Path, target: Path) -> None:
    """Writes ``source`` with every float table that a ``Gather`` looks rows up in (the embeddings) stored as
    uint8 per row: the lookup gathers the row's bytes, scale and zero point, then ``(q - zero) * scale``."""
    model = onnx.load(str(source))
    graph = model.graph
    tables = {
        init.name: init
        for init in graph.initializer
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2
    }
    lookups = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in tables]
    by_rows = {id(n) for n in lookups if all(a.name != "axis" or a.i == 0 for a in n.attribute)}
    replaced: dict[str, tuple[str, str, str]] = {}
    for name in dict.fromkeys(n.input[0] for n in lookups if id(n) in by_rows):
        quantised, scale, zero = _row_uint8(numpy_helper.to_array(tables[name]).astype(np.float32))
        names = tuple(name + suffix for suffix in ROW_SUFFIXES)  # the names models.weights reads back
        for tensor_name, array in zip(names, (quantised, scale, zero)):
            graph.initializer.append(numpy_helper.from_array(array, tensor_name))
        replaced[name] = names
    nodes = []
    for node in graph.node:
        if id(node) not in by_rows:
            nodes.append(node)
            continue
        (data, scale, zero), indices, out = replaced[node.input[0]], node.input[1], node.output[0]
        nodes += [
            helper.make_node("Gather", [data, indices], [f"{out}_uint8"], name=f"{node.name}_uint8"),
            helper.make_node("Cast", [f"{out}_uint8"], [f"{out}_float"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [zero, indices], [f"{out}_zero"], name=f"{node.name}_zero"),
            helper.make_node("Sub", [f"{out}_float", f"{out}_zero"], [f"{out}_centred"]),
            helper.make_node("Gather", [scale, indices], [f"{out}_scale"], name=f"{node.name}_scale"),
            helper.make_node("Mul", [f"{out}_centred", f"{out}_scale"], [out], name=f"{node.name}_dequantised"),
        ]
    _replace_nodes(graph, nodes)
    onnx.save(model, str(target))


def quantize_weights(
    fp32_path: Path, target: Path, block_size: int = BLOCK_SIZE, accuracy_level: int = ACCURACY_LEVEL
) -> Path:
    """Writes the weight-only int8 model of ``fp32_path`` to ``target``."""
    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=accuracy_level,
        bits=8,
        op_types_to_quantize=("MatMul",),
    )
    quantizer = MatMulNBitsQuantizer(gemm_to_matmul(onnx.load(str(fp32_path))), algo_config=config)
    quantizer.process()
    matmuls = target.with_name(target.stem + ".matmul.onnx")
    quantizer.model.save_model_to_file(str(matmuls), use_external_data_format=False)
    try:
        quantize_embeddings(matmuls, target)
    finally:
        matmuls.unlink()
    logger.info("quantised %s (%.1f MB): %s", target, target.stat().st_size / 1e6, SCHEME)
    return target


def set_accuracy_level(path: Path, level: int = ACCURACY_LEVEL) -> Path:
    """Sets every ``MatMulNBits`` of an int8 export to ``accuracy_level`` in place (the weights stay as they are)."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":  # the quantiser leaves the attribute out when it is 0, its default
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("accuracy_level", level)])
    onnx.save(model, str(path))
    return path
