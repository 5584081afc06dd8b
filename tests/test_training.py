"""Fine-tuning end to end on the tiny encoder, and the pieces around it."""

from __future__ import annotations

import json
import logging
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerControl

from models.backends import ONNX_FP32, ONNX_INT8, ONNX_SUBDIR
from models.cross_encoder import ScoreSettings, build_cross_encoder
from models.package import file_sha256, read_metadata
from tests.conftest import DEFAULT_PACKAGE, REPO, TINY_CONFIG
from training.arguments import (
    arguments_from_dict,
    parse_arguments,
    recorded_selection_weights,
    selection_score,
    selection_weights,
    use_bf16,
)
from training.contrast import read_minimal_pairs
from training.train import hyperparameters
from training.trainer import SelectBestEpoch, StopAfterEpoch, TimeLimit, layerwise_parameter_groups

KORSTS_TRAIN = "data/korsts/korsts_train.jsonl"
MINIMAL_PAIRS = "data/contrast/ko_minimal_pairs.jsonl"
MAKEFILE = REPO / "Makefile"


def test_tiny_run_learns_and_records_everything(trained_package):
    metadata = read_metadata(trained_package)
    # a random 2-layer encoder on 2,000 pairs: far from useful, clearly above chance
    assert metadata["metrics"]["validation"]["pearson"] > 0.2
    assert set(metadata["metrics"]) == {"validation", "dev"}
    assert metadata["hyperparameters"]["pooling"] == "mean" and metadata["score_settings"]["symmetry"] == "average"
    assert metadata["hyperparameters"]["max_train_samples"] == 2000
    assert metadata["hyperparameters"]["split"] == "grouped"
    assert metadata["data"]["dev"][0]["sha256"] == file_sha256("data/klue-sts/klue_sts_dev.jsonl")
    assert metadata["best_epoch"] in (1.0, 2.0, 3.0)
    assert {"torch", "transformers", "onnxruntime"} <= set(metadata["versions"])
    assert len(metadata["metrics_by_source"]["dev"]) == 6
    assert sum(m["pairs"] for m in metadata["metrics_by_source"]["dev"].values()) == 519
    assert metadata["selection"]["score"] == pytest.approx(metadata["metrics"]["validation"]["balanced_pearson"])
    assert metadata["split"]["validation"] == pytest.approx(1166, abs=20)


def test_selected_epoch_is_the_best_on_validation_not_dev(trained_package):
    history = json.loads((trained_package / "report/history.json").read_text())
    epochs = [e for e in history if "eval_selection" in e]
    assert len(epochs) == 3
    best = max(epochs, key=lambda e: e["eval_selection"])
    metadata = read_metadata(trained_package)
    assert metadata["best_epoch"] == best["epoch"]
    assert metadata["metrics"]["validation"]["balanced_pearson"] == pytest.approx(best["eval_selection"], abs=1e-6)
    validation = {e["epoch"]: e["eval_validation_balanced_pearson"] for e in history if "eval_validation_pearson" in e}
    assert validation[best["epoch"]] == pytest.approx(best["eval_selection"])


def test_run_record_keeps_every_epochs_scores(trained_package):
    run_dir = trained_package.parent
    record = json.loads((run_dir / "run.json").read_text())
    assert (
        record["selection_metric"] == "balanced_pearson"
        and record["best_epoch"] == read_metadata(trained_package)["best_epoch"]
    )
    arrays = np.load(run_dir / "scores.npz")
    assert arrays["dev.epoch_scores"].shape == (3, 519)
    assert arrays["validation.epoch_scores"].shape[1] == len(arrays["validation.labels"])
    best = int(record["best_epoch"]) - 1
    np.testing.assert_allclose(arrays["dev.scores"], arrays["dev.epoch_scores"][best], atol=1e-5)


def test_export_writes_both_onnx_files_and_agrees_with_pytorch(trained_package):
    assert (trained_package / ONNX_SUBDIR / ONNX_FP32).is_file()
    assert (trained_package / ONNX_SUBDIR / ONNX_INT8).is_file()
    metadata = read_metadata(trained_package)
    onnx = metadata["onnx"]
    assert onnx["parity_max_abs_delta"] < 1e-3
    assert onnx["parity_pairs"] == metadata["split"]["validation"] + 519
    # int8 noise is large next to this random model's narrow score range; the shipped model's
    # int8 accuracy is checked on the full dev set in test_default_model.py
    assert onnx["int8"]["max_abs_delta"]["dev"] < 0.25
    assert onnx["onnx_int8"]["validation"]["pearson"] > 0.1


def test_a_smoke_run_is_stored_under_its_own_name_never_as_ko_sts(trained_package):
    import bentoml

    from models.store import MODEL_NAME, package_version

    version = package_version(trained_package)
    assert bentoml.models.get(f"ko-sts-smoke:{version}").info.metadata["best_epoch"] >= 1
    assert MODEL_NAME != "ko-sts-smoke"  # what `make serve` resolves (ko-sts:latest) is another name


def test_report_is_written_with_plots(trained_package):
    report = trained_package / "report"
    for name in ("README.md", "learning_curves.png", "dev_scatter.png", "history.json", "dev_predictions.json"):
        assert (report / name).stat().st_size > 0, name
    summary = (report / "README.md").read_text()
    assert "| validation |" in summary and "## Per source" in summary and "| paraKQC-para |" in summary


def test_config_file_and_flags_combine_and_mistakes_are_refused(tmp_path):
    model_args, data_args, pipeline, args = parse_arguments(["--config", str(TINY_CONFIG), "--learning_rate", "3e-4"])
    assert args.learning_rate == 3e-4 and data_args.max_length == 64 and model_args.pooling == "cls"
    assert args.metric_for_best_model == "selection" and pipeline.selection_metric == "balanced_pearson"
    assert args.save_strategy == "no" and not args.load_best_model_at_end  # selected weights stay in memory
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.read_text() + "learning_rat: 0.1\n")
    with pytest.raises(ValueError, match="unknown key.*learning_rat"):
        parse_arguments(["--config", str(bad)])
    with pytest.raises(ValueError, match="never on dev"):
        parse_arguments(["--config", str(TINY_CONFIG), "--metric_for_best_model", "dev_pearson"])
    with pytest.raises(ValueError, match="pooling must be"):
        parse_arguments(["--config", str(TINY_CONFIG), "--pooling", "max"])
    with pytest.raises(ValueError, match="split must be one of"):
        parse_arguments(["--config", str(TINY_CONFIG), "--split", "sorted"])
    with pytest.raises(ValueError, match="selection_metric must be one of"):
        parse_arguments(["--config", str(TINY_CONFIG), "--selection_metric", "dev_pearson"])


def test_bf16_false_is_respected_on_a_bf16_gpu(monkeypatch):
    assert not parse_arguments(["--config", str(TINY_CONFIG), "--bf16", "false"])[3].bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert not use_bf16(False)
    assert use_bf16(None) and use_bf16(True)  # unset: bf16 wherever the GPU supports it


def test_selection_weights_with_the_contrast_validation_weight():
    weights = selection_weights("balanced_pearson", ["data/a.jsonl"], 0.2, MINIMAL_PAIRS, 0.3)
    assert weights == pytest.approx(
        {
            ("validation", "balanced_pearson"): 0.5,
            ("validation_a", "pearson"): 0.2,
            ("contrast_validation", "minimal_pair_accuracy"): 0.3,
        }
    )
    metrics = {
        "validation": {"balanced_pearson": 0.8},
        "validation_a": {"pearson": 0.5},
        "contrast_validation": {"minimal_pair_accuracy": 0.9},
    }
    assert selection_score(metrics, weights) == pytest.approx(0.4 + 0.1 + 0.27)
    # without extra files the extra weight is unused; the contrast weight still applies
    assert selection_weights("pearson", [], 0.5, MINIMAL_PAIRS, 0.25) == pytest.approx(
        {("validation", "pearson"): 0.75, ("contrast_validation", "minimal_pair_accuracy"): 0.25}
    )
    # a file with weight 0: evaluated and reported, not selected on
    assert selection_weights("pearson", [], 0.0, MINIMAL_PAIRS, 0.0) == {("validation", "pearson"): 1.0}


@pytest.mark.parametrize(
    ("extra", "contrast", "message"),
    [
        (0.6, 0.4, r"selection_extra_weight \(0.6\) \+ contrast_validation_weight \(0.4\) = 1, must be below 1"),
        (0.5, 0.7, "= 1.2, must be below 1"),
    ],
)
def test_selection_weights_summing_to_one_are_refused(extra, contrast, message):
    with pytest.raises(ValueError, match=message):
        selection_weights("pearson", ["data/a.jsonl"], extra, MINIMAL_PAIRS, contrast)
    values = yaml.safe_load(TINY_CONFIG.read_text()) | {
        "output_dir": "unused",
        "extra_validation_files": [KORSTS_TRAIN],
        "selection_extra_weight": extra,
        "contrast_validation_file": MINIMAL_PAIRS,
        "contrast_validation_weight": contrast,
    }
    with pytest.raises(ValueError, match="must be below 1"):
        arguments_from_dict(values)


def test_contrast_weight_needs_its_file_and_a_range():
    with pytest.raises(ValueError, match="contrast_validation_file is unset"):
        selection_weights("pearson", [], 0.0, None, 0.2)
    values = yaml.safe_load(TINY_CONFIG.read_text()) | {"output_dir": "unused", "contrast_validation_weight": 1.0}
    with pytest.raises(ValueError, match=r"contrast_validation_weight must be in \[0, 1\), got 1.0"):
        arguments_from_dict(values)


def test_recorded_selection_weights_of_old_and_new_packages():
    old = {"selection_metric": "pearson", "extra_validation_files": [], "selection_extra_weight": 0.0}
    assert recorded_selection_weights(old) == {("validation", "pearson"): 1.0}
    assert recorded_selection_weights({}) == {("validation", "pearson"): 1.0}
    new = old | {"contrast_validation_file": MINIMAL_PAIRS, "contrast_validation_weight": 0.2}
    assert recorded_selection_weights(new) == pytest.approx(
        {("validation", "pearson"): 0.8, ("contrast_validation", "minimal_pair_accuracy"): 0.2}
    )


def test_training_pairs_sharing_a_contrast_sentence_are_dropped(caplog):
    import pandas as pd

    from training.contrast import read_contrast, read_minimal_pairs, read_paraphrases
    from training.train import drop_contrast_sentences

    contrast = read_contrast().iloc[0]
    paraphrase = read_paraphrases().iloc[0]
    triple = read_minimal_pairs().iloc[0]
    train = pd.DataFrame(
        {
            "sentence1": ["새 문장입니다.", contrast["sentence2"], "다른 문장이에요.", "하나 더.", triple["changing"]],
            "sentence2": ["또 다른 문장.", "아무 문장.", f" {paraphrase['preserving']} ", "마지막.", "끝."],
            "label": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    with caplog.at_level(logging.INFO, logger="training"):
        kept = drop_contrast_sentences(train)
    assert kept["label"].tolist() == [1.0, 4.0]
    assert "contrast files: dropped 3 training pairs" in caplog.text


def test_constants_agree_between_arguments_and_contrast():
    from training import arguments, contrast

    assert (arguments.CONTRAST_VALIDATION, arguments.MINIMAL_PAIR_METRIC) == (
        contrast.CONTRAST_VALIDATION,
        contrast.MINIMAL_PAIR_METRIC,
    )


def test_bf16_without_a_gpu_falls_back_to_float32(caplog):
    assert not parse_arguments(["--config", str(TINY_CONFIG)])[3].bf16
    with caplog.at_level(logging.WARNING, logger="training"):
        assert not use_bf16(True)
    assert "training in float32" in caplog.text


def test_selection_score_weighs_validation_and_extra_validation_sets():
    assert selection_weights("balanced_pearson", [], 0.25) == {("validation", "balanced_pearson"): 1.0}
    weights = selection_weights("pearson", ["data/a.jsonl", "data/b.jsonl"], 0.2)
    assert weights == {
        ("validation", "pearson"): 0.8,
        ("validation_a", "pearson"): 0.1,
        ("validation_b", "pearson"): 0.1,
    }
    metrics = {"validation": {"pearson": 0.9}, "validation_a": {"pearson": 0.5}, "validation_b": {"pearson": 0.7}}
    assert selection_score(metrics, weights) == pytest.approx(0.72 + 0.05 + 0.07)


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


def test_best_epoch_weights_are_kept_in_memory_and_restored():
    model = torch.nn.Linear(2, 1)
    callback = SelectBestEpoch("eval_selection", keep=2, patience=2)
    control = TrainerControl()
    for epoch, score in enumerate((0.5, 0.8, 0.7, 0.6), start=1):
        torch.nn.init.constant_(model.weight, float(epoch))
        callback.on_evaluate(None, SimpleNamespace(epoch=float(epoch)), control, {"eval_selection": score}, model=model)
        callback.on_evaluate(None, SimpleNamespace(epoch=float(epoch)), control, {"eval_dev_pearson": 1.0}, model=model)
    assert [(score, epoch) for score, epoch, _ in callback.best] == [(0.8, 2.0), (0.7, 3.0)]
    assert control.should_training_stop  # two epochs without a better score
    callback.on_train_end(None, None, control, model=model)
    assert torch.all(model.weight == 2.0) and callback.best_epoch == 2.0


def test_time_limit_stops_after_the_epoch_that_would_overrun():
    limit = TimeLimit(stop_at=time.time() + 3600)
    control = TrainerControl()
    limit.on_epoch_begin(None, None, control)
    limit.on_epoch_end(None, SimpleNamespace(epoch=1.0), control)
    assert not control.should_training_stop
    limit.stop_at = time.time() + 0.5
    limit._epoch_started = time.time() - 1.0  # an epoch takes 1 s: the next one would end too late
    limit.on_epoch_end(None, SimpleNamespace(epoch=2.0), control)
    assert control.should_training_stop and limit.stopped


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]  # no staging folder left behind
    assert [p.name for p in (target / "onnx").iterdir()] == ["model_quantized.onnx"]
    int8 = read_metadata(target)["onnx"]["onnx_int8"]["dev"]
    card = (target / "MODEL_CARD.md").read_text()
    assert f"Pearson {int8['pearson']:.4f}, F1 {int8['f1']:.4f}" in card and "Made by the test suite." in card
    assert "near-duplicate" in card and "| paraKQC-para |" in card
    no_export = tmp_path / "no-export"
    no_export.mkdir()
    (no_export / "metadata.json").write_text(json.dumps({"onnx": {}}))
    with pytest.raises(ValueError, match="python -m training.export"):
        release(no_export, "", tmp_path / "other")


def test_the_card_names_a_students_soft_labels(trained_package):
    from training.release import model_card

    metadata = read_metadata(trained_package)
    assert "soft labels" not in model_card(metadata, "", 1.0)
    metadata["data"]["soft_labels"] = [{"path": "outputs/distill/soft.jsonl", "sha256": "ab" * 32, "rows": 26267}]
    assert "soft labels (soft.jsonl, 26,267 pairs, sha256 abababababab)" in model_card(metadata, "", 1.0)


def test_an_oversized_release_leaves_the_current_default_in_place(trained_package, tmp_path, monkeypatch):
    import training.release

    target = tmp_path / "default"
    target.mkdir()
    (target / "MODEL_CARD.md").write_text("the current default")
    monkeypatch.setattr(training.release, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="over the 0 MB budget.*unchanged"):
        training.release.release(trained_package, "too big", target)
    assert (target / "MODEL_CARD.md").read_text() == "the current default"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]


def test_saving_in_float16_leaves_the_trained_model_in_float32(tiny_base, tmp_path):
    from training.train import save_model_package

    arguments = parse_arguments(
        ["--config", str(TINY_CONFIG), "--model_name_or_path", str(tiny_base), "--save_dtype", "float16"]
    )
    model = build_cross_encoder(str(tiny_base), "cls", ScoreSettings())
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    from transformers import AutoTokenizer

    result = SimpleNamespace(
        trainer=SimpleNamespace(model=model, processing_class=AutoTokenizer.from_pretrained(tiny_base)),
        settings=ScoreSettings(),
        metrics={},
        metrics_by_source={},
        selection=0.0,
        best_epoch=1.0,
        averaged_checkpoints=[],
        averaging=None,
        data=SimpleNamespace(train=[0] * 3, held_out={}, files={}),
        runtime_s=1.0,
        stopped_by_time_limit=False,
    )
    save_model_package(result, arguments, tmp_path / "model")
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert all(t.dtype == torch.float16 for t in saved.values() if t.is_floating_point())
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == before[name].dtype and torch.equal(tensor, before[name]), name


@pytest.fixture(scope="module")
def options_run(tiny_base, tmp_path_factory):
    """One short run with most options on: held-out sets of every kind, soft labels, training triples with
    the margin term, R-Drop, averaging."""
    from training.train import fine_tune

    output_dir = tmp_path_factory.mktemp("options-run")
    soft = output_dir / "soft.jsonl"
    soft.write_text(
        "".join(
            json.dumps({"sentence1": f"새로운 문장 {i}입니다.", "sentence2": f"다른 문장 {i}입니다.", "label": 0.5})
            + "\n"
            for i in range(20)
        ),
        encoding="utf-8",
    )
    triples = output_dir / "triples.jsonl"
    held_out_anchor = read_minimal_pairs(MINIMAL_PAIRS)["anchor"].iloc[0]
    triples.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"t-{i:03d}",
                    "category": "negation",
                    "anchor": held_out_anchor if i == 0 else f"오늘 회의는 {i}층에서 열려요.",
                    "preserving": f"오늘 미팅은 {i}층에서 합니다.",
                    "changing": f"오늘 회의는 {i}층에서 안 열려요.",
                    "preserving_label": 4.6,
                    "changing_label": 1.0,
                    "note": "test",
                },
                ensure_ascii=False,
            )
            + "\n"
            for i in range(13)
        ),
        encoding="utf-8",
    )
    values = yaml.safe_load(TINY_CONFIG.read_text())
    values.update(
        model_name_or_path=str(tiny_base),
        output_dir=str(output_dir),
        minimal_pair_train_file=str(triples),
        minimal_pair_margin_weight=1.0,
        max_train_samples=300,
        num_train_epochs=2,
        average_top_k=2,
        symmetric=True,
        objective="bce",
        rdrop_alpha=1.0,
        random_holdout_fraction=0.05,
        cv_folds=4,
        cv_fold=1,
        extra_validation_files=[KORSTS_TRAIN],
        selection_extra_weight=0.25,
        contrast_validation_file=MINIMAL_PAIRS,
        contrast_validation_weight=0.25,
        soft_label_file=str(soft),
        save_to_store=False,
        export_onnx=False,
        disable_tqdm=True,
    )
    arguments = arguments_from_dict(values)
    return arguments, fine_tune(arguments)


def test_every_held_out_set_is_scored_every_epoch(options_run):
    _, result = options_run
    held = {"validation", "validation_random", "cv_fold", "validation_korsts_train", "contrast_validation"}
    assert set(result.data.held_out) == held
    assert len(result.data.train) == 300 + 20  # the soft-label file's new pairs are added
    for name in [*held, "dev"]:
        assert len(result.epoch_scores[name]) == 2 and len(result.epoch_scores[name][0]) == len(result.sets()[name])
    keys = lambda f: set(zip(f["sentence1"], f["sentence2"]))  # noqa: E731
    train = keys(result.data.train)
    assert all(not train & keys(frame) for frame in result.data.held_out.values())
    weights = selection_weights("balanced_pearson", [KORSTS_TRAIN], 0.25, MINIMAL_PAIRS, 0.25)
    assert result.selection == pytest.approx(selection_score(result.metrics, weights))
    # the held-out minimal pairs: one accuracy per epoch in the log, and the selected model's
    accuracy = result.metrics["contrast_validation"]["minimal_pair_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    logged = [e for e in result.history if "eval_contrast_validation_minimal_pair_accuracy" in e]
    assert len(logged) == 2
    triples = read_minimal_pairs(MINIMAL_PAIRS)
    # distinct pairs: one preserving pair per anchor, one changing pair per triple
    assert len(result.sets()["contrast_validation"]) == triples["anchor"].nunique() + len(triples)


def test_training_triples_skip_held_out_sentences_and_are_recorded(options_run):
    _, result = options_run
    assert len(result.data.triples) == 12  # the triple whose anchor is a held-out sentence is dropped
    assert not set(result.data.triples["anchor"]) & set(read_minimal_pairs(MINIMAL_PAIRS)["anchor"])
    assert result.data.files["minimal_pair_train"][0].rows == 12


def test_a_margin_weight_without_triples_is_refused(tiny_base, tmp_path):
    from training.train import fine_tune

    values = yaml.safe_load(TINY_CONFIG.read_text())
    values.update(model_name_or_path=str(tiny_base), output_dir=str(tmp_path), minimal_pair_margin_weight=0.5)
    with pytest.raises(ValueError, match="minimal_pair_train_file is unset"):
        fine_tune(arguments_from_dict(values))


def test_a_triple_is_one_item_whose_preserving_rows_are_paired_with_its_changing_rows(tiny_base):
    import pandas as pd
    from transformers import AutoTokenizer

    from training.trainer import PairCollator, margin_loss, pair_dataset, pair_tokenizer, triple_dataset

    pairs = pair_tokenizer(AutoTokenizer.from_pretrained(tiny_base), 32)
    settings = ScoreSettings(activation="sigmoid", max_length=32, symmetry="average")
    triples = pd.DataFrame(
        {"anchor": ["문을 열어 줘."], "preserving": ["문 좀 열어 줄래?"], "changing": ["문을 닫아 줘."]}
        | {"preserving_label": [4.5], "changing_label": [1.0]}
    )
    items = triple_dataset(triples, settings, pairs)
    assert len(items) == 1 and items[0]["labels"] == [4.5, 4.5, 1.0, 1.0]
    plain = pair_dataset(
        pd.DataFrame({"sentence1": ["가"], "sentence2": ["나"], "label": [2.0]}), settings, pairs, training=True
    )
    batch = PairCollator(pairs, ("input_ids", "attention_mask"))([plain[0], items[0], plain[1]])
    assert batch["labels"].tolist() == [2.0, 4.5, 4.5, 1.0, 1.0, 2.0]
    assert batch["margin_rows"].tolist() == [[1, 3], [2, 4]]  # (a, p) over (a, c); (p, a) over (c, a)
    assert "margin_rows" not in PairCollator(pairs, ("input_ids",))([plain[0]])
    unit = torch.tensor([0.5, 0.9, 0.4, 0.5, 0.8, 0.5])
    assert margin_loss(unit, batch["margin_rows"], 0.2).item() == pytest.approx((0.0 + 0.6) / 2)


def _loss_with_and_without(tiny_base, tmp_path, symmetry: str, make_items, key: str, **weights):
    """The trainer's loss on a batch of ``make_items(settings, pairs)``'s first two items, with and without its paired
    rows under ``key``, for a tiny model without dropout; also every row's 0-1 score and those paired rows."""
    from transformers import AutoTokenizer, TrainingArguments

    from training.trainer import PairCollator, StsTrainer, pair_tokenizer

    settings = ScoreSettings(activation="sigmoid", max_length=32, symmetry=symmetry)
    model = build_cross_encoder(str(tiny_base), "cls", settings)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the same forward twice
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1][-1]
    with torch.no_grad():
        head.weight.mul_(1000.0)  # a random head scores every row about 0.5: spread the rows apart
    pairs = pair_tokenizer(AutoTokenizer.from_pretrained(tiny_base), 32)
    items = make_items(settings, pairs)
    batch = PairCollator(pairs, ("input_ids", "attention_mask", "token_type_ids"))([items[0], items[1]])
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = StsTrainer(model=model, args=args, settings=settings, objective="bce", **weights)
    model.train()
    plain = trainer.compute_loss(model, {k: v for k, v in batch.items() if k != key})
    with_term = trainer.compute_loss(model, dict(batch))
    unit = torch.sigmoid(model(**{k: v for k, v in batch.items() if k not in ("labels", key)})["logits"])
    return plain, with_term, unit.squeeze(-1), batch[key]


def test_the_margin_term_is_added_to_the_loss_of_batches_with_triples(tiny_base, tmp_path):
    import pandas as pd

    from training.trainer import margin_loss, triple_dataset

    triples = pd.DataFrame(
        {"anchor": ["문을 열어 줘.", "비가 와요."], "preserving": ["문 좀 열어 줄래?", "비가 내려요."]}
        | {"changing": ["문을 닫아 줘.", "비가 안 와요."], "preserving_label": [4.5, 4.8], "changing_label": [1.0, 1.0]}
    )
    plain, with_margin, unit, rows = _loss_with_and_without(
        tiny_base,
        tmp_path,
        "average",
        lambda settings, pairs: triple_dataset(triples, settings, pairs),
        "margin_rows",
        margin_weight=2.0,
        margin=1.0,
    )
    expected = plain + 2.0 * margin_loss(unit, rows, 1.0)
    assert with_margin.item() == pytest.approx(expected.item(), rel=1e-5) and with_margin > plain


def test_orders_together_make_one_item_per_pair_whose_two_orders_are_paired(tiny_base):
    import pandas as pd
    from transformers import AutoTokenizer

    from training.trainer import PairCollator, order_loss, pair_dataset, pair_tokenizer, triple_dataset

    pairs = pair_tokenizer(AutoTokenizer.from_pretrained(tiny_base), 32)
    settings = ScoreSettings(activation="sigmoid", max_length=32, symmetry="canonical")
    frame = pd.DataFrame({"sentence1": ["가", "다"], "sentence2": ["나", "라"], "label": [2.0, 4.0]})
    items = pair_dataset(frame, settings, pairs, training=True, orders_together=True)
    assert len(items) == 2 and items[1]["labels"] == [4.0, 4.0]
    assert items[1]["pair"].ids.tolist() == pairs.encode(["다", "라"], ["라", "다"]).ids.tolist()
    triples = pd.DataFrame(
        {"anchor": ["문을 열어 줘."], "preserving": ["문 좀 열어 줄래?"], "changing": ["문을 닫아 줘."]}
        | {"preserving_label": [4.5], "changing_label": [1.0]}
    )
    batch = PairCollator(pairs, ("input_ids",))([items[0], triple_dataset(triples, settings, pairs)[0], items[1]])
    assert batch["order_rows"].tolist() == [[0, 1], [6, 7]] and batch["margin_rows"].tolist() == [[2, 4], [3, 5]]
    assert order_loss(torch.tensor([0.2, 0.6, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]), batch["order_rows"]).item() == (
        pytest.approx((0.16 + 0.0) / 2)
    )
    with pytest.raises(ValueError, match="needs a symmetric model"):
        pair_dataset(
            frame, ScoreSettings(activation="sigmoid", max_length=32), pairs, training=True, orders_together=True
        )
    with pytest.raises(ValueError, match="order_consistency_weight must be 0"):
        parse_arguments(["--config", str(TINY_CONFIG), "--symmetric", "false", "--order_consistency_weight", "1"])


def test_the_order_term_is_added_to_the_loss_of_batches_with_both_orders(tiny_base, tmp_path):
    import pandas as pd

    from training.trainer import order_loss, pair_dataset

    frame = pd.DataFrame(
        {
            "sentence1": ["비가 와요.", "문을 열어 줘."],
            "sentence2": ["비가 내려요.", "문 좀 열어 줄래?"],
            "label": [4.8, 4.5],
        }
    )
    plain, with_order, unit, rows = _loss_with_and_without(
        tiny_base,
        tmp_path,
        "canonical",
        lambda settings, pairs: pair_dataset(frame, settings, pairs, training=True, orders_together=True),
        "order_rows",
        order_weight=3.0,
    )
    expected = plain + 3.0 * order_loss(unit, rows)
    assert with_order.item() == pytest.approx(expected.item(), rel=1e-5) and with_order > plain


def test_weight_averaging_records_what_it_tried(options_run):
    """Averaging that ran and was rejected differs from averaging that never ran."""
    _, result = options_run
    averaging = result.averaging
    assert averaging is not None and sorted(averaging["epochs"]) == [1.0, 2.0]
    assert averaging["kept"] == (averaging["validation_average"] > averaging["validation_single"])
    assert result.selection == pytest.approx(
        averaging["validation_average"] if averaging["kept"] else averaging["validation_single"], abs=1e-6
    )
    assert bool(result.averaged_checkpoints) == averaging["kept"]


def test_stop_after_epoch_ends_the_run_but_not_its_schedule():
    stop = StopAfterEpoch(5)
    control = TrainerControl()
    for epoch in (1.0, 2.0, 3.0, 4.0):
        stop.on_epoch_end(SimpleNamespace(num_train_epochs=6), SimpleNamespace(epoch=epoch), control)
        assert not control.should_training_stop
    stop.on_epoch_end(SimpleNamespace(num_train_epochs=6), SimpleNamespace(epoch=5.0), control)
    assert control.should_training_stop
    with pytest.raises(ValueError, match="stop_after_epoch must be 1 or more"):
        parse_arguments(["--config", str(TINY_CONFIG), "--stop_after_epoch", "0"])


def _make_variable(name: str) -> str:
    line = next(line for line in MAKEFILE.read_text().splitlines() if re.match(rf"{name} \??:?=", line))
    return line.split("=", 1)[1].strip()


def test_the_student_recipe_is_the_one_the_shipped_default_recorded():
    """make reproduce-default: the student's config, from the recorded base, gives every recorded hyperparameter."""
    shipped = read_metadata(DEFAULT_PACKAGE)
    recorded = shipped["hyperparameters"]
    arguments = parse_arguments(
        [
            *("--config", _make_variable("STUDENT_CONFIG")),
            *("--model_name_or_path", recorded["model_name_or_path"]),
            *("--base_model_name", recorded["base_model_name"]),
        ]
    )
    ours = hyperparameters(arguments)
    assert ours["stop_after_epoch"] == 5 and ours["num_train_epochs"] == 6
    assert max(e["epoch"] for e in json.loads((DEFAULT_PACKAGE / "report/history.json").read_text())) == 5
    # bf16 is used wherever the GPU has it (the shipped run's H200 had)
    assert {k for k in recorded if ours[k] != recorded[k]} == {"bf16"}
    assert ours["soft_label_file"] == _make_variable("SOFT_LABELS")


def test_the_teachers_recipe_is_the_students_but_for_its_training_pairs():
    """The five teachers and the student differ in their training pairs only (and where they write)."""
    teacher, student = (
        yaml.safe_load((REPO / _make_variable(name)).read_text()) for name in ("TEACHER_CONFIG", "STUDENT_CONFIG")
    )
    differing = {k for k in teacher.keys() | student.keys() if teacher.get(k) != student.get(k)}
    assert differing == {"extra_train_files", "soft_label_file", "output_dir"}
    assert teacher["extra_train_files"] == ["data/korsts/korsts_train.jsonl", _make_variable("HARD_NEGATIVES")]
    assert student["extra_train_files"] == [] and "soft_label_file" not in teacher


def test_make_train_fine_tunes_koelectra_from_the_hub():
    config = yaml.safe_load((REPO / _make_variable("CONFIG")).read_text())
    assert config["model_name_or_path"] == "monologg/koelectra-base-v3-discriminator"
    assert _make_variable("SMALL_HUB_MODEL") == "intfloat/multilingual-e5-small"


def test_a_base_model_out_of_reach_stops_training_before_reading_data(monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants

    import training.train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(training.train, "prepare_data", lambda *a: pytest.fail("data was read"))
    with pytest.raises(SystemExit) as caught:
        training.train.main(["--config", str(REPO / _make_variable("CONFIG")), "--output_dir", str(tmp_path / "run")])
    message = str(caught.value)
    assert "cannot start from base model 'monologg/koelectra-base-v3-discriminator'" in message
    assert "unset HF_HUB_OFFLINE" in message and "--model_name_or_path DIR" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_make_reproduce_default_rebuilds_the_shipped_training_data(tmp_path):
    """The hard negatives make writes hash as the teachers'; with them the teachers' data is the one they recorded,
    and with the kept soft labels the student's is the shipped split."""
    import gzip
    import tarfile

    from training.augment import main as augment
    from training.train import prepare_data

    rule = next(line for line in MAKEFILE.read_text().splitlines() if "-m training.augment $< $@" in line)
    flags = rule.split("$@", 1)[1].split()
    assert flags == ["--per-kind", "1000", "--seed", "13"]
    hard_negatives = tmp_path / "hn.jsonl"
    augment([str(REPO / "data/klue-sts/klue_sts_train.jsonl"), str(hard_negatives), *flags])

    def rebuilt(config: str, *flags: str) -> tuple[dict, dict]:
        data = prepare_data(parse_arguments(["--config", config, "--model_name_or_path", "unused", *flags])[1])
        files = {kind: [(f.sha256, f.rows) for f in files] for kind, files in data.files.items()}
        return {"train": len(data.train), **{k: len(v) for k, v in data.held_out.items()}}, files

    def recorded_files(metadata: dict) -> dict:
        return {kind: [(f["sha256"], f["rows"]) for f in files] for kind, files in metadata["data"].items()}

    block3 = REPO / "research/results/round4/block3"
    with tarfile.open(block3 / "call1-teacher-results.tar.gz") as archive:
        teacher = json.load(archive.extractfile("mp-s1/model/metadata.json"))
    korsts = "data/korsts/korsts_train.jsonl"
    split, files = rebuilt(_make_variable("TEACHER_CONFIG"), "--extra_train_files", korsts, str(hard_negatives))
    assert (split, files) == (teacher["split"], recorded_files(teacher))

    shipped = read_metadata(DEFAULT_PACKAGE)
    soft_labels = tmp_path / "mp-soft.jsonl"
    soft_labels.write_bytes(gzip.decompress((block3 / "call1-mp-soft.jsonl.gz").read_bytes()))
    split, files = rebuilt(_make_variable("STUDENT_CONFIG"), "--soft_label_file", str(soft_labels))
    assert (split, files) == (shipped["split"], recorded_files(shipped))
    assert split["train"] == 23720 and teacher["split"]["train"] == 19157
