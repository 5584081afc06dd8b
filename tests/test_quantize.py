"""training.quantize: the int8 file's compute setting and its embedding rows."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.quantize import quantize_embeddings, set_accuracy_level


def _levels(path) -> list[list[int]]:
    return [
        [a.i for a in node.attribute if a.name == "accuracy_level"]
        for node in onnx.load(str(path)).graph.node
        if node.op_type == "MatMulNBits"
    ]


def test_set_accuracy_level_writes_the_attribute_whether_or_not_the_quantiser_left_it_out(tmp_path):
    nodes = [
        helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft", K=4, N=2, bits=8),
        helper.make_node("MatMulNBits", ["y", "w", "s"], ["z"], domain="com.microsoft", K=4, N=2, accuracy_level=4),
        helper.make_node("Relu", ["z"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))

    set_accuracy_level(path, 4)
    assert _levels(path) == [[4], [4]]
    set_accuracy_level(path, 0)
    assert _levels(path) == [[0], [0]]
    kept = {a.name for a in onnx.load(str(path)).graph.node[0].attribute}
    assert kept == {"K", "N", "bits", "accuracy_level"}


def test_embedding_rows_keep_their_own_scale(tmp_path):
    """A row of small values next to a row of large ones comes back within half its own step, not the table's."""
    rng = np.random.default_rng(0)
    table = np.stack([rng.normal(0, 1e-3, 8), rng.normal(0, 10.0, 8), np.zeros(8)]).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(table, "table")],
    )
    source, target = tmp_path / "float.onnx", tmp_path / "uint8.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(source))
    quantize_embeddings(source, target)

    stored = {init.name: init.data_type for init in onnx.load(str(target)).graph.initializer}
    assert stored["table_uint8"] == TensorProto.UINT8 and "table" not in stored
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    ids = np.array([0, 1, 2, 1, 0])
    [rows] = session.run(None, {"ids": ids})
    steps = (np.maximum(table.max(1), 0) - np.minimum(table.min(1), 0)) / 255
    assert np.all(np.abs(rows - table[ids]) <= steps[ids, None] / 2 + 1e-7)
    assert np.abs(rows[0] - table[0]).max() < 1e-5  # one scale for the table would have zeroed this row
    assert np.all(rows[2] == 0)
