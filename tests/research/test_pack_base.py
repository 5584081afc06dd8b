"""research/experiments/pack_base.py: a trained encoder packed to int8 rows and unpacked again."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from transformers import AutoModel

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("pack_base", REPO / "research/experiments/pack_base.py")
pack_base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack_base)


def test_pack_and_unpack_keep_every_weight_within_half_a_step(tiny_base, tmp_path):
    packed = tmp_path / "base.npz"
    counts = pack_base.pack(tiny_base, packed)
    assert counts["int8"] > 0 and counts["float32"] > 0
    out = tmp_path / "unpacked"
    original = load_file(tiny_base / "model.safetensors")
    assert pack_base.unpack(packed, out) == len(original)
    restored = load_file(out / "model.safetensors")
    for name, weight in original.items():
        weight = weight.astype(np.float32)
        step = np.abs(weight).max(axis=-1, keepdims=True) / 127.0 if weight.ndim == 2 else 0.0
        assert np.all(np.abs(restored[name] - weight) <= step / 2 + 1e-7), name
    assert (out / "config.json").read_text() == (tiny_base / "config.json").read_text()
    assert (out / "tokenizer.json").is_file()
    AutoModel.from_pretrained(out)  # loads as a model folder
