"""research/experiments/shrink_base.py: a shallower student's start, from a base or a package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

from models.scorer import load_scorer

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("shrink_base", REPO / "research/experiments/shrink_base.py")
shrink_base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shrink_base)


def test_the_kept_layers_are_the_base_layers_renumbered(tiny_base, tmp_path):
    out = shrink_base.shrink(tiny_base, tmp_path / "one", keep=[1])
    original, shrunk = load_file(tiny_base / "model.safetensors"), load_file(out / "model.safetensors")
    renamed = {name.replace(".layer.1.", ".layer.0."): w for name, w in original.items() if ".layer.0." not in name}
    assert set(shrunk) == set(renamed)
    for name, weight in shrunk.items():
        assert (weight == renamed[name]).all(), name
    assert (out / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()
    with pytest.raises(SystemExit, match="rising layer numbers"):
        shrink_base.shrink(tiny_base, tmp_path / "bad", keep=[1, 0])


def test_a_package_keeps_its_head_and_drops_its_stale_onnx(trained_package, tmp_path):
    out = shrink_base.shrink(trained_package, tmp_path / "student")  # every other layer: layer 0 of the tiny 2
    assert not (out / "onnx").exists() and (out / "metadata.json").is_file()
    original, shrunk = load_file(trained_package / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(shrunk) == {name for name in original if ".layer.1." not in name}  # the trained head among them
    for name, weight in shrunk.items():
        assert (weight == original[name]).all(), name
    scorer = load_scorer(out, "torch", device="cpu")
    assert len(scorer.runtime.model.base_model.encoder.layer) == 1
    assert torch.isfinite(torch.tensor(scorer.score([("오늘 날씨가 좋다", "날씨가 맑다")]))).all()
