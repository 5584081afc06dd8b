"""Service settings: device-dependent defaults, and settings that contradict each other refused with both names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import Settings


def test_the_model_gets_its_own_process_where_it_may_use_a_gpu():
    assert not Settings(backend="onnx", device="cpu").separate_model_process
    assert Settings(backend="torch", device="auto").separate_model_process
    assert Settings(backend="onnx", device="cuda").separate_model_process
    assert not Settings(backend="torch", device="cuda", model_process="shared").separate_model_process
    assert Settings(backend="onnx", device="cpu").front_workers == 1
    assert 2 <= Settings(backend="torch", device="cuda").front_workers <= 8
    cpu, gpu = Settings().batch_limits("cpu"), Settings().batch_limits("cuda:0")
    assert (cpu.length_bucket, cpu.mixed_lengths, cpu.max_batch_tokens) == (16, False, 2048)
    assert (gpu.length_bucket, gpu.mixed_lengths, gpu.max_batch_tokens) == (8, True, 32768)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"gpu_workers": 2, "backend": "onnx", "device": "cpu"}, ("KO_STS_GPU_WORKERS=2", "KO_STS_MODEL_PROCESS")),
        ({"batch_wait_ms": 3000, "queue_timeout_ms": 2000}, ("KO_STS_BATCH_WAIT_MS=3000", "KO_STS_QUEUE_TIMEOUT_MS")),
        ({"symmetric": True, "symmetry": "canonical"}, ("KO_STS_SYMMETRIC=true", "KO_STS_SYMMETRY=canonical")),
    ],
)
def test_contradicting_settings_are_refused_naming_both(values, names):
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    assert all(name in str(refused.value) for name in names)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KO_STS_GPU_WORKERS", "2")
    monkeypatch.setenv("KO_STS_MODEL_PROCESS", "separate")
    monkeypatch.setenv("KO_STS_CUDA_GRAPH_TOKENS", "0")
    settings = Settings()
    assert (settings.gpu_workers, settings.cuda_graph_tokens, settings.separate_model_process) == (2, 0, True)


def test_access_lines_default_to_on_beside_a_shared_model_and_off_beside_a_separate_one():
    assert Settings(backend="onnx", device="cpu").access_lines
    assert not Settings(backend="torch", device="cuda").access_lines
    assert Settings(backend="torch", device="cuda", access_log=True).access_lines
    assert not Settings(backend="onnx", device="cpu", access_log=False).access_lines
    assert not Settings(backend="torch", device="cuda").grpc().access_log


@pytest.mark.parametrize(
    ("values", "model", "served"),
    [
        ({}, "average", "average"),  # the default: the model's own setting
        ({}, "none", "none"),
        ({}, "canonical", "canonical"),
        ({"symmetry": "average"}, "average", "average"),
        ({"symmetry": "none"}, "average", "none"),
        ({"symmetry": "canonical"}, "none", "canonical"),
        ({"symmetric": True}, "none", "average"),  # the former setting keeps its meaning
        ({"symmetric": False}, "average", "none"),
    ],
)
def test_the_served_symmetry_follows_the_setting_then_the_model(values, model, served):
    assert Settings(**values).served_symmetry(model) == served


def test_the_shipped_model_scores_each_pair_once_by_default_and_averaging_is_a_setting():
    # level with averaging on validation, dev +0.0033 (research/experiments/default-model.md)
    default = Path(__file__).resolve().parents[1] / "models/default"
    assert Settings().codec(default).settings.symmetry == "canonical"
    assert Settings().codec(default).rows_per_pair == 1
    averaged = Settings(symmetry="average").codec(default)
    assert averaged.rows_per_pair == 2 and averaged.settings.symmetry == "average"
