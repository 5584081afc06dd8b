"""Heads and their score settings in transformers configs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.cross_encoder import MeanPoolingCrossEncoder, build_cross_encoder
from models.scoring import ScoreSettings
from training.trainer import pair_tokenizer


def _encode(tokenizer, first, second, max_length):
    arrays = pair_tokenizer(tokenizer, max_length)(first, second)
    return {name: torch.from_numpy(arrays[name]) for name in ("input_ids", "attention_mask", "token_type_ids")}


def test_settings_round_trip_through_config_and_missing_settings_are_explained(tiny_base):
    model = build_cross_encoder(str(tiny_base), "cls", ScoreSettings(max_length=77, symmetry="canonical"))
    assert ScoreSettings.from_config(model.config) == ScoreSettings(max_length=77, symmetry="canonical")
    with pytest.raises(ValueError, match="not trained by ko-sts-serve"):
        ScoreSettings.from_config(AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1).config)


def test_mean_pooling_model_saves_and_loads_through_auto_class(tiny_base, tmp_path):
    model = build_cross_encoder(str(tiny_base), "mean", ScoreSettings()).eval()
    assert isinstance(model, MeanPoolingCrossEncoder)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MeanPoolingCrossEncoder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    batch = _encode(tokenizer, ["숙소가 좋아요"], ["숙소 좋네요"], max_length=32)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_does_not_change_a_pairs_output(tiny_base, pooling):
    model = build_cross_encoder(str(tiny_base), pooling, ScoreSettings()).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    alone = _encode(tokenizer, ["짧다"], ["짧아"], max_length=64)
    padded = _encode(
        tokenizer, ["짧다", "이 문장은 훨씬 더 길어서 패딩을 만든다"], ["짧아", "두 번째 문장도 길다"], max_length=64
    )
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        assert model(**alone).logits[0] == pytest.approx(model(**padded).logits[0], abs=1e-5)


def test_unknown_pooling_lists_the_choices(tiny_base):
    with pytest.raises(ValueError, match="'cls', 'mean'"):
        build_cross_encoder(str(tiny_base), "max", ScoreSettings())


def test_a_half_precision_checkpoint_is_loaded_for_training_in_float32(tiny_base, tmp_path):
    """Continuing from a float16 package (the store's GPU weights) must not train float16 weights."""
    half = build_cross_encoder(str(tiny_base), "cls", ScoreSettings()).half()
    half.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"
    reloaded = build_cross_encoder(str(tmp_path), "cls", ScoreSettings())
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
