"""training.quantize: the int8 file's compute setting."""

import onnx
from onnx import helper

from training.quantize import set_accuracy_level


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
