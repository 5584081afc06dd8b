"""Heads, score settings and pair tokenisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.cross_encoder import MeanPoolingCrossEncoder, ScoreSettings, build_cross_encoder
from models.pairs import encode_pairs


def test_identity_scores_are_clipped_to_zero_five():
    settings = ScoreSettings(activation="identity")
    assert settings.to_scores(np.array([[-1.0], [2.5], [7.0]])).tolist() == [0.0, 2.5, 5.0]


def test_sigmoid_scores_span_zero_to_five():
    settings = ScoreSettings(activation="sigmoid")
    assert settings.to_scores(np.array([0.0, -50.0, 50.0])) == pytest.approx([2.5, 0.0, 5.0])


def test_settings_round_trip_through_config_and_missing_settings_are_explained(tiny_base):
    model = build_cross_encoder(str(tiny_base), "cls", ScoreSettings(max_length=77, symmetric=True))
    assert ScoreSettings.from_config(model.config) == ScoreSettings(max_length=77, symmetric=True)
    with pytest.raises(ValueError, match="not trained by ko-sts-serve"):
        ScoreSettings.from_config(AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=1).config)


def test_mean_pooling_model_saves_and_loads_through_auto_class(tiny_base, tmp_path):
    model = build_cross_encoder(str(tiny_base), "mean", ScoreSettings()).eval()
    assert isinstance(model, MeanPoolingCrossEncoder)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MeanPoolingCrossEncoder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    batch = encode_pairs(tokenizer, ["숙소가 좋아요"], ["숙소 좋네요"], max_length=32)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_does_not_change_a_pairs_output(tiny_base, pooling):
    model = build_cross_encoder(str(tiny_base), pooling, ScoreSettings()).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    alone = encode_pairs(tokenizer, ["짧다"], ["짧아"], max_length=64)
    padded = encode_pairs(
        tokenizer, ["짧다", "이 문장은 훨씬 더 길어서 패딩을 만든다"], ["짧아", "두 번째 문장도 길다"], max_length=64
    )
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        assert model(**alone).logits[0] == pytest.approx(model(**padded).logits[0], abs=1e-5)


def test_pairs_are_truncated_to_max_length(tiny_base):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    batch = encode_pairs(tokenizer, ["가 " * 100], ["나 " * 100], max_length=20)
    assert batch["input_ids"].shape == (1, 20)
    with pytest.raises(ValueError, match="2 first sentences but 1 second"):
        encode_pairs(tokenizer, ["a", "b"], ["c"], max_length=20)


def test_unknown_pooling_lists_the_choices(tiny_base):
    with pytest.raises(ValueError, match="'cls', 'mean'"):
        build_cross_encoder(str(tiny_base), "max", ScoreSettings())
