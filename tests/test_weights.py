"""PyTorch weights rebuilt from ONNX exports, and the store doing it for ONNX-only packages."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file

from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR
from models.package import has_torch_weights
from models.scorer import load_scorer
from models.store import save_package
from models.weights import WEIGHTS_FILE, float_weights_from_onnx
from tests.conftest import KLUE_DEV
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(40).itertuples()]


def test_float_export_gives_back_every_parameter_exactly(trained_package):
    rebuilt = float_weights_from_onnx(trained_package / ONNX_SUBDIR / ONNX_FP32)
    original = load_file(str(trained_package / WEIGHTS_FILE))
    assert set(rebuilt) == set(original)
    for name, value in original.items():
        assert np.array_equal(rebuilt[name], value.astype(np.float32)), name


def test_int8_export_gives_every_parameter_within_its_quantisation_step(trained_package):
    rebuilt = float_weights_from_onnx(trained_package / ONNX_SUBDIR / ONNX_INT8)
    original = load_file(str(trained_package / WEIGHTS_FILE))
    assert set(rebuilt) == set(original)
    for name, value in original.items():
        step = np.abs(value).max() / 127 if value.ndim == 2 else 0.0  # per-block scales are finer than this
        assert np.abs(rebuilt[name] - value).max() <= step + 1e-6, name


def test_an_onnx_only_package_is_stored_with_weights_that_serve_like_its_int8_export(trained_package, tmp_path):
    onnx_only = shutil.copytree(trained_package, tmp_path / "onnx-only", ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.rmtree(onnx_only / ONNX_SUBDIR)
    (onnx_only / ONNX_SUBDIR).mkdir()
    shutil.copy2(trained_package / ONNX_SUBDIR / ONNX_INT8, onnx_only / ONNX_SUBDIR / ONNX_INT8)
    assert not has_torch_weights(onnx_only)
    stored = save_package(onnx_only)
    path = stored.path_of(WEIGHTS_FILE)
    assert stored.info.labels["backends"] == "onnx,torch"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert not has_torch_weights(onnx_only), "the package itself stays as it was"
    torch = load_scorer(stored.path, "torch", device="cpu")
    int8 = load_scorer(stored.path, "onnx", device="cpu")
    assert np.max(np.abs(torch.score(PAIRS) - int8.score(PAIRS))) < 0.05
    cpu_only = save_package(onnx_only, torch_weights=False)
    assert cpu_only.tag != stored.tag and not has_torch_weights(cpu_only.path)
    with pytest.raises(FileNotFoundError, match="KO_STS_BACKEND=onnx"):
        load_scorer(cpu_only.path, "torch", device="cpu")
