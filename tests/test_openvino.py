"""OpenVINO on the CPU over the tiny fine-tuned package's int8 ONNX file: agreement with ONNX Runtime, batching,
selection through the settings and the error when openvino is missing. openvino is a serving dependency: these
tests fail, never skip, where it is not installed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml

from models.backends import ONNX_INT8, OnnxRuntime, OpenVinoRuntime, load_runtime
from models.scorer import BatchLimits, load_scorer
from serving.settings import Settings
from serving.startup import PARITY_TOLERANCE, check_parity
from tests.conftest import DEFAULT_PACKAGE, KLUE_DEV, REPO
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(80).itertuples()]


LIMITS = BatchLimits(max_batch_tokens=1024)


@pytest.fixture(scope="module")
def openvino_scorer(trained_package):
    return load_scorer(trained_package, "openvino", device="cpu", limits=LIMITS)  # int8 activations


@pytest.fixture(scope="module")
def float32_scorer(trained_package):
    return load_scorer(trained_package, "openvino", device="cpu", limits=LIMITS, activations="float32")


def test_openvino_runs_the_int8_file_and_scores_as_onnx_runtime(trained_package, openvino_scorer, float32_scorer):
    assert isinstance(openvino_scorer.runtime, OpenVinoRuntime)
    assert openvino_scorer.runtime.path.name == ONNX_INT8
    assert openvino_scorer.runtime.activations == "int8" and float32_scorer.runtime.activations == "float32"
    onnx = load_scorer(trained_package, "onnx", device="cpu", limits=LIMITS).score(PAIRS)
    assert np.max(np.abs(float32_scorer.score(PAIRS) - onnx)) <= 1e-4
    # int8 activations (int8 dot products where the CPU has VNNI, else float32): issue 15's per-pair bound
    assert np.max(np.abs(openvino_scorer.score(PAIRS) - onnx)) <= 0.1


def test_openvino_logits_have_onnx_runtimes_shape_and_dtype(trained_package, openvino_scorer):
    rows = openvino_scorer.encode(PAIRS[:5])
    width = int(rows.lengths.max())
    pad_id = openvino_scorer.tokenizer.pad_id
    ours = openvino_scorer.runtime.forward(rows, width, pad_id)
    theirs = OnnxRuntime(trained_package, device="cpu").forward(rows, width, pad_id)
    assert ours.shape == theirs.shape == (len(rows),)
    assert ours.dtype == theirs.dtype == np.float32


@pytest.mark.parametrize("activations", ["int8", "float32"])
def test_a_pairs_openvino_score_does_not_depend_on_its_batch_mates(request, activations):
    scorer = request.getfixturevalue("openvino_scorer" if activations == "int8" else "float32_scorer")
    batched = scorer.score(PAIRS)
    alone = np.array([scorer.score([pair])[0] for pair in PAIRS[:16]])
    assert np.max(np.abs(batched[:16] - alone)) <= 1e-4
    assert scorer.score([]).shape == (0,)


def test_openvino_is_chosen_through_the_settings_and_passes_the_start_up_parity_check(trained_package, monkeypatch):
    monkeypatch.setenv("KO_STS_BACKEND", "openvino")
    monkeypatch.setenv("KO_STS_THREADS", "1")
    settings = Settings()
    assert settings.backend == "openvino"
    assert not settings.separate_model_process
    scorer = settings.scorer(trained_package, device="cpu")
    assert isinstance(scorer.runtime, OpenVinoRuntime)
    assert scorer.runtime.model.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(scorer.runtime.model.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert scorer.runtime.model.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == 32  # int8 activations
    delta = check_parity(scorer, trained_package, "tiny:test")
    assert delta is not None and delta <= PARITY_TOLERANCE["int8-activations"]
    monkeypatch.setenv("KO_STS_CPU_ACTIVATIONS", "float32")
    scorer = Settings().scorer(trained_package, device="cpu")
    assert scorer.runtime.model.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == 0
    delta = check_parity(scorer, trained_package, "tiny:test")
    assert delta is not None and delta <= PARITY_TOLERANCE["onnx"]


def test_openvino_is_the_served_cpu_default():
    assert Settings(device="cpu").backend == "openvino"
    assert yaml.safe_load((REPO / "bentofile.yaml").read_text())["docker"]["env"]["KO_STS_BACKEND"] == "openvino"


@pytest.mark.parametrize("activations, tolerance", [("int8", "int8-activations"), ("float32", "onnx")])
def test_the_shipped_model_passes_its_parity_check_on_openvino(activations, tolerance):
    scorer = Settings(backend="openvino", cpu_activations=activations).scorer(DEFAULT_PACKAGE)
    delta = check_parity(scorer, DEFAULT_PACKAGE, "ko-sts:default")
    assert delta is not None and delta <= PARITY_TOLERANCE[tolerance]


def test_a_missing_openvino_names_the_pip_command(trained_package, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install openvino==\d"):
        load_runtime(trained_package, "openvino", device="cpu")


def test_openvino_refuses_a_gpu(trained_package):
    with pytest.raises(RuntimeError, match="CPU only"):
        load_runtime(trained_package, "openvino", device="cuda")
    with pytest.raises(ValueError, match="KO_STS_DEVICE=cuda contradicts KO_STS_BACKEND=openvino"):
        Settings(device="cuda")
