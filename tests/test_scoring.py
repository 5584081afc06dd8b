"""Score settings: activations, both orders, calibration, and config.json round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.scoring import Calibration, ScoreSettings, ScoreSettingsError


def test_identity_scores_are_clipped_to_zero_five():
    settings = ScoreSettings(activation="identity")
    assert settings.to_scores(np.array([[-1.0], [2.5], [7.0]])).tolist() == [0.0, 2.5, 5.0]


def test_sigmoid_scores_span_zero_to_five():
    settings = ScoreSettings(activation="sigmoid")
    assert settings.to_scores(np.array([0.0, -50.0, 50.0])) == pytest.approx([2.5, 0.0, 5.0])


def test_symmetric_rows_average_both_orders_before_calibration():
    calibration = Calibration(x=(0.0, 2.0, 5.0), y=(0.0, 3.0, 5.0))
    settings = ScoreSettings(activation="identity", symmetry="average", calibration=calibration)
    # rows: pair 0, pair 1, then pair 0 swapped, pair 1 swapped
    scores = settings.scores_from_rows(np.array([1.0, 4.0, 3.0, 5.0]))
    assert scores == pytest.approx([3.0, 3.0 + (4.5 - 2.0) * (2.0 / 3.0)])


def test_calibration_must_be_strictly_increasing_and_cover_the_scale():
    with pytest.raises(ScoreSettingsError, match="strictly increasing"):
        Calibration(x=(0.0, 2.0, 2.0, 5.0), y=(0.0, 1.0, 2.0, 5.0))
    with pytest.raises(ScoreSettingsError, match="strictly increasing"):
        Calibration(x=(0.0, 2.0, 5.0), y=(0.0, 3.0, 3.0))
    with pytest.raises(ScoreSettingsError, match="0-5"):
        Calibration(x=(1.0, 5.0), y=(0.0, 5.0))
    scores = np.linspace(0, 5, 50)
    calibrated = Calibration(x=(0.0, 1.0, 4.0, 5.0), y=(0.0, 2.0, 3.5, 5.0))(scores)
    assert np.all(np.diff(calibrated) > 0)  # rankings are kept


def test_settings_round_trip_through_config_json(tmp_path):
    settings = ScoreSettings("sigmoid", 96, "canonical", Calibration(x=(0.0, 5.0), y=(0.5, 4.5)))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "ko_sts": settings.to_dict()}))
    assert ScoreSettings.from_model_dir(tmp_path) == settings
    assert "calibration" not in ScoreSettings().to_dict()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ScoreSettingsError, match="not trained by ko-sts-serve"):
        ScoreSettings.from_model_dir(tmp_path)


def test_canonical_order_puts_the_shorter_sentence_first_and_runs_one_row_per_pair():
    settings = ScoreSettings(symmetry="canonical")
    assert settings.symmetric and settings.rows_per_pair == 1
    first, second = settings.order(["나", "가", "같다", "가나다"], ["가", "나", "같다", "하"])
    # swapped pairs give the same rows; as long: the smaller string first; else the shorter first
    assert (first, second) == (["가", "가", "같다", "하"], ["나", "나", "같다", "가나다"])
    assert settings.scores_from_rows(np.array([1.0, 2.0, 3.0])).tolist() == [1.0, 2.0, 3.0]


def test_orders_of_each_symmetry():
    first, second = ["b", "a"], ["a", "b"]
    assert ScoreSettings(symmetry="none").order(first, second) == (first, second)
    assert ScoreSettings(symmetry="average").order(first, second) == (first + second, second + first)
    assert [ScoreSettings(symmetry=s).rows_per_pair for s in ("none", "average", "canonical")] == [1, 2, 1]
    with pytest.raises(ScoreSettingsError, match="symmetry must be one of"):
        ScoreSettings(symmetry="sorted")


@pytest.mark.parametrize(("stored", "symmetry"), [({"symmetric": True}, "average"), ({"symmetric": False}, "none")])
def test_configs_with_the_former_symmetric_flag_still_load(tmp_path, stored, symmetry):
    config = {"model_type": "bert", "ko_sts": {"activation": "sigmoid", "max_length": 128, **stored}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    settings = ScoreSettings.from_model_dir(tmp_path)
    assert settings.symmetry == symmetry and settings.to_dict()["symmetry"] == symmetry
    assert "symmetric" not in settings.to_dict()
    assert ScoreSettings.from_dict({**config["ko_sts"], "symmetry": symmetry}) == settings  # both, agreeing
    with pytest.raises(ScoreSettingsError, match="keep symmetry"):
        ScoreSettings.from_dict({**config["ko_sts"], "symmetry": "canonical"})


def test_the_shipped_default_config_loads_as_canonical():
    assert ScoreSettings.from_model_dir(Path(__file__).resolve().parents[1] / "models/default").symmetry == "canonical"
