"""Scoring backends over the tiny fine-tuned package."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.backends import ONNX_FP32, OnnxScorer, TorchScorer, load_scorer
from tests.conftest import KLUE_DEV
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(80).itertuples()]


@pytest.fixture(scope="module")
def torch_scorer(trained_package):
    return TorchScorer(trained_package, device="cpu", batch_size=16)


def test_onnx_float32_matches_pytorch(trained_package, torch_scorer):
    onnx = OnnxScorer(trained_package, device="cpu", onnx_file=ONNX_FP32, batch_size=16)
    assert np.max(np.abs(onnx.score(PAIRS) - torch_scorer.score(PAIRS))) < 1e-4


def test_onnx_int8_stays_close_to_pytorch(trained_package, torch_scorer):
    onnx = load_scorer(trained_package, "onnx", device="cpu")
    assert onnx.onnx_path.name == "model_quantized.onnx"
    assert np.max(np.abs(onnx.score(PAIRS) - torch_scorer.score(PAIRS))) < 0.1


def test_int8_scores_do_not_depend_on_batch_mates(trained_package):
    int8 = load_scorer(trained_package, "onnx", device="cpu")
    assert int8.batch_size == 1
    assert int8.score(PAIRS[:12]).tolist() == [int8.score([pair])[0] for pair in PAIRS[:12]]


def test_scores_keep_request_order_whatever_the_batching(torch_scorer):
    together = torch_scorer.score(PAIRS)
    one_by_one = np.array([torch_scorer.score([pair])[0] for pair in PAIRS[:10]])
    assert together[:10] == pytest.approx(one_by_one, abs=1e-5)
    assert torch_scorer.score([]).shape == (0,)
    assert ((together >= 0) & (together <= 5)).all()


def test_symmetric_scoring_averages_both_orders(trained_package, tmp_path):
    swapped = [(b, a) for a, b in PAIRS[:5]]
    symmetric = OnnxScorer(trained_package, device="cpu", onnx_file=ONNX_FP32)
    assert symmetric.settings.symmetric
    assert symmetric.score(PAIRS[:5]) == pytest.approx(symmetric.score(swapped), abs=1e-6)
    one_way = shutil.copytree(trained_package, tmp_path / "one-way")
    config = (one_way / "config.json").read_text()
    (one_way / "config.json").write_text(config.replace('"symmetric": true', '"symmetric": false'))
    scorer = OnnxScorer(one_way, device="cpu", onnx_file=ONNX_FP32)
    assert not scorer.settings.symmetric
    assert np.max(np.abs(scorer.score(PAIRS[:5]) - scorer.score(swapped))) > 1e-4


def test_unknown_backend_and_missing_files_say_what_to_do(trained_package, tmp_path):
    with pytest.raises(ValueError, match="choose one of: onnx, torch"):
        load_scorer(trained_package, "tensorrt")
    onnx_only = shutil.copytree(trained_package, tmp_path / "onnx-only", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(FileNotFoundError, match="KO_STS_BACKEND=onnx"):
        TorchScorer(onnx_only)
    torch_only = shutil.copytree(trained_package, tmp_path / "torch-only", ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(FileNotFoundError, match="python -m training.export"):
        OnnxScorer(torch_only)
