"""Fine-tuning end to end on the tiny encoder, and the pieces around it."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR
from models.cross_encoder import ScoreSettings, build_cross_encoder
from models.package import read_metadata
from tests.conftest import TINY_CONFIG
from training.arguments import parse_arguments
from training.data import file_sha256
from training.soup import average_weights
from training.trainer import layerwise_parameter_groups


def test_tiny_run_learns_and_records_everything(trained_package):
    metadata = read_metadata(trained_package)
    # a random 2-layer encoder on 2,000 pairs: far from useful, clearly above chance
    assert metadata["metrics"]["validation"]["pearson"] > 0.2
    assert set(metadata["metrics"]) == {"validation", "dev"}
    assert metadata["hyperparameters"]["pooling"] == "mean" and metadata["score_settings"]["symmetric"]
    assert metadata["hyperparameters"]["max_train_samples"] == 2000
    assert metadata["data"]["dev"][0]["sha256"] == file_sha256("data/klue-sts/klue_sts_dev.jsonl")
    assert metadata["best_epoch"] in (1.0, 2.0, 3.0)
    assert {"torch", "transformers", "onnxruntime"} <= set(metadata["versions"])


def test_selected_epoch_is_the_best_on_validation_not_dev(trained_package):
    history = json.loads((trained_package / "report/history.json").read_text())
    epochs = [e for e in history if "eval_validation_pearson" in e]
    assert len(epochs) == 3
    best = max(epochs, key=lambda e: e["eval_validation_pearson"])
    metadata = read_metadata(trained_package)
    assert metadata["best_epoch"] == best["epoch"]
    assert metadata["metrics"]["validation"]["pearson"] == pytest.approx(best["eval_validation_pearson"], abs=1e-6)


def test_export_writes_both_onnx_files_and_agrees_with_pytorch(trained_package):
    assert (trained_package / ONNX_SUBDIR / ONNX_FP32).is_file()
    assert (trained_package / ONNX_SUBDIR / ONNX_INT8).is_file()
    onnx = read_metadata(trained_package)["onnx"]
    assert onnx["parity_max_abs_delta"] < 1e-3
    assert onnx["parity_pairs"] == 1166 + 519
    # int8 noise is large next to this random model's narrow score range; the shipped model's
    # int8 accuracy is checked on the full dev set in test_default_model.py
    assert onnx["int8_max_abs_delta"]["dev"] < 0.25
    assert onnx["onnx_int8"]["validation"]["pearson"] > 0.1


def test_report_is_written_with_plots(trained_package):
    report = trained_package / "report"
    for name in ("README.md", "learning_curves.png", "dev_scatter.png", "history.json", "dev_predictions.json"):
        assert (report / name).stat().st_size > 0, name
    assert "| validation |" in (report / "README.md").read_text()


def test_config_file_and_flags_combine_and_mistakes_are_refused(tmp_path):
    model_args, data_args, _, args = parse_arguments(["--config", str(TINY_CONFIG), "--learning_rate", "3e-4"])
    assert args.learning_rate == 3e-4 and data_args.max_length == 64 and model_args.pooling == "cls"
    assert args.metric_for_best_model == "validation_pearson" and args.load_best_model_at_end
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.read_text() + "learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown key.*learning_rat"):
        parse_arguments(["--config", str(bad)])
    with pytest.raises(ValueError, match="never on dev"):
        parse_arguments(["--config", str(TINY_CONFIG), "--metric_for_best_model", "dev_pearson"])
    with pytest.raises(ValueError, match="pooling must be"):
        parse_arguments(["--config", str(TINY_CONFIG), "--pooling", "max"])


def test_layerwise_decay_gives_lower_layers_smaller_rates(tiny_base):
    model = build_cross_encoder(str(tiny_base), "cls", ScoreSettings())
    groups = layerwise_parameter_groups(model, learning_rate=1.0, weight_decay=0.0, decay=0.5, no_decay=set())
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.out_proj.weight"])] == 1.0
    assert rate[id(named["electra.encoder.layer.1.output.dense.weight"])] == 0.5
    assert rate[id(named["electra.encoder.layer.0.output.dense.weight"])] == 0.25
    assert rate[id(named["electra.embeddings.word_embeddings.weight"])] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_weight_average_is_elementwise_mean(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, value in ((first, 1.0), (second, 3.0)):
        folder.mkdir()
        save_file({"w": torch.full((2, 2), value, dtype=torch.float16)}, str(folder / "model.safetensors"))
    averaged = average_weights([first, second])
    assert averaged["w"].dtype == torch.float16 and torch.all(averaged["w"] == 2.0)
    save_file({"other": torch.zeros(1)}, str(second / "model.safetensors"))
    with pytest.raises(ValueError, match="not the same architecture"):
        average_weights([first, second])
    assert load_file(first / "model.safetensors")["w"][0, 0] == 1.0


def test_release_keeps_the_cpu_subset_and_writes_the_card_from_measurements(trained_package, tmp_path):
    from training.release import release

    target = release(trained_package, "Made by the test suite.", tmp_path / "default")
    assert sorted(p.name for p in target.iterdir()) == [
        "MODEL_CARD.md",
        "config.json",
        "metadata.json",
        "onnx",
        "report",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert [p.name for p in (target / "onnx").iterdir()] == ["model_quantized.onnx"]
    int8 = read_metadata(target)["onnx"]["onnx_int8"]["dev"]
    card = (target / "MODEL_CARD.md").read_text()
    assert f"Pearson {int8['pearson']:.4f}, F1 {int8['f1']:.4f}" in card and "Made by the test suite." in card
    no_export = tmp_path / "no-export"
    no_export.mkdir()
    (no_export / "metadata.json").write_text(json.dumps({"onnx": {}}))
    with pytest.raises(ValueError, match="python -m training.export"):
        release(no_export, "", tmp_path / "other")


def test_checkpoint_averaging_is_kept_only_when_validation_improves(tiny_base, tmp_path):
    from training.arguments import arguments_from_dict
    from training.train import fine_tune

    values = yaml.safe_load(TINY_CONFIG.read_text())
    values.update(
        model_name_or_path=str(tiny_base),
        output_dir=str(tmp_path),
        num_train_epochs=3,
        average_top_k=2,
        save_to_store=False,
        export_onnx=False,
        disable_tqdm=True,
    )
    result = fine_tune(arguments_from_dict(values))
    best_epoch = max(e["eval_validation_pearson"] for e in result.history if "eval_validation_pearson" in e)
    final = result.metrics["validation"]["pearson"]
    assert final >= best_epoch - 1e-6
    assert bool(result.averaged_checkpoints) == (final > best_epoch + 1e-6)
