"""PyTorch weights rebuilt from an int8 ONNX export, so that an ONNX-only package can serve on a GPU.

The shipped default model holds only ``onnx/model_quantized.onnx`` (the repository's size
budget has no room for float weights). Its int8 weights and their per-channel scales are all a
float checkpoint needs: :func:`float_weights_from_onnx` dequantises every weight and names it as
the Hugging Face model does, and :func:`write_torch_weights` saves them as ``model.safetensors``
(float16), which :class:`models.backends.TorchRuntime` loads like any checkpoint. The model
store does this once, when a package is stored (``python -m models.store``).

Both ONNX Runtime quantisation formats are read: dynamic (``MatMulInteger`` / ``Gather`` on
``*_quantized`` initializers) and static QDQ (``DequantizeLinear`` on initializers), and the export's own
formats: ``MatMulNBits`` and embedding tables stored as uint8 rows (``*_uint8``, with ``*_row_scale`` and
``*_row_zero``: :func:`training.quantize.quantize_embeddings`). Weights
the exporter named after graph nodes (``onnx::MatMul_123``) get their parameter name from the
node's module scope (``/bert/encoder/layer.0/attention/self/query/MatMul`` ->
``bert.encoder.layer.0.attention.self.query.weight``); MatMul weights are stored transposed.
Needs ``onnx`` and ``safetensors``, not torch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
_MATMULS = {"MatMul", "MatMulInteger", "Gemm"}
_QUANTIZED_SUFFIX = "_quantized"
ROW_SUFFIXES = ("_uint8", "_row_scale", "_row_zero")  # a table stored as uint8 rows: bytes, scale and zero point


def _param_name(initializer: str, consumer_node: str) -> str:
    """The Hugging Face parameter name of a weight initializer (``*_matmul``: a Gemm weight rewritten as MatMul)."""
    if not initializer.startswith("onnx::"):
        return initializer.removesuffix("_matmul")
    scope = consumer_node.rsplit("/", 1)[0].strip("/")
    if not scope:
        raise ValueError(f"cannot tell which parameter {initializer} is: node {consumer_node!r} has no module scope")
    return scope.replace("/", ".") + ".weight"


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    values = q.astype(np.float32)
    if zero_point is not None:
        values -= _along(zero_point.astype(np.float32), axis, q.ndim)
    return values * _along(scale.astype(np.float32), axis, q.ndim)


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Reshapes per-channel values to broadcast along ``axis`` (scalars broadcast as they are)."""
    if values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def float_weights_from_onnx(path: str | Path) -> dict[str, np.ndarray]:
    """Every parameter of an (int8 or float) ONNX export as float32 arrays, keyed by Hugging Face name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:  # static QDQ: weight -> DQ -> op
            (user,) = consumers[node.output[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zero_point = arrays.get(node.input[2]) if len(node.input) > 2 else None
            weight = _dequantize(arrays[node.input[0]], arrays[node.input[1]], zero_point, axis)
            _add(state, _base(node.input[0]), user, weight)
        elif node.op_type in ("MatMulInteger", "Gather"):  # dynamic int8: the op reads the int8 weight itself
            name = node.input[1 if node.op_type == "MatMulInteger" else 0]
            if name in arrays and name.endswith(_QUANTIZED_SUFFIX):
                base = _base(name)
                weight = _dequantize(arrays[name], arrays[base + "_scale"], arrays.get(base + "_zero_point"), axis=1)
                _add(state, base, node, weight)
            elif name in arrays and name.endswith(ROW_SUFFIXES[0]):  # uint8 rows: (q - zero) * scale per row
                base = name.removesuffix(ROW_SUFFIXES[0])
                scale, zero = (arrays[base + suffix] for suffix in ROW_SUFFIXES[1:])
                _add(state, base, node, (arrays[name].astype(np.float32) - zero) * scale)
        elif node.op_type == "MatMulNBits":  # weight-only blockwise: B is (N, blocks, block), already [out, in]
            _add_nbits(state, node, arrays)
        elif node.op_type == "MatMul" and node.input[1] in arrays:  # float weights of an unquantised MatMul
            _add(state, node.input[1], node, arrays[node.input[1]])
    for name, value in arrays.items():  # float parameters (LayerNorm, biases, unquantised weights)
        if value.dtype == np.float32 and not name.startswith("onnx::") and "." in name:
            derived = name.endswith(("_scale", "_zero_point", "_scales", *ROW_SUFFIXES))
            if not derived and _param_name(name, "") not in state:
                state[_param_name(name, "")] = value
    if not state:
        raise ValueError(f"{path}: found no weights")
    return state


def _add_nbits(state: dict[str, np.ndarray], node, arrays: dict[str, np.ndarray]) -> None:
    attributes = {a.name: a.i for a in node.attribute if a.type == a.INT}
    bits, n, k = attributes["bits"], attributes["N"], attributes["K"]
    if bits != 8:
        raise ValueError(f"{node.name}: only 8-bit MatMulNBits weights can be rebuilt, got {bits}-bit")
    packed = arrays[node.input[1]].astype(np.float32)  # (N, blocks, block_size) uint8
    scales = arrays[node.input[2]].reshape(n, -1, 1)
    zero_point = 2 ** (bits - 1)
    if len(node.input) > 3 and node.input[3]:
        zero_point = arrays[node.input[3]].reshape(n, -1, 1).astype(np.float32)
    weight = ((packed - zero_point) * scales).reshape(n, -1)[:, :k]
    name = node.input[1].rsplit("_Q", 1)[0]
    state[_param_name(name, node.name)] = np.ascontiguousarray(weight)


def _base(initializer: str) -> str:
    return initializer[: -len(_QUANTIZED_SUFFIX)] if initializer.endswith(_QUANTIZED_SUFFIX) else initializer


def _add(state: dict[str, np.ndarray], initializer: str, user, weight: np.ndarray) -> None:
    name = _param_name(initializer, user.name)
    state[name] = np.ascontiguousarray(weight.T) if user.op_type in _MATMULS else weight


def write_torch_weights(package_dir: str | Path, onnx_path: str | Path, dtype: str = "float16") -> Path:
    """Writes ``model.safetensors`` into ``package_dir`` from the weights of ``onnx_path``."""
    from safetensors.numpy import save_file

    state = {name: value.astype(dtype) for name, value in float_weights_from_onnx(onnx_path).items()}
    target = Path(package_dir) / WEIGHTS_FILE
    save_file(state, str(target), metadata={"format": "pt", "source": Path(onnx_path).name})
    target.chmod(0o644)  # readable by a service running as another user than the one who stored it
    logger.info("rebuilt %d %s tensors from %s into %s", len(state), dtype, Path(onnx_path).name, target)
    return target
