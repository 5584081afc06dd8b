"""Fine-tune a cross-encoder on Korean STS pairs, export it and save it into the model store.

    python -m training.train --config training/configs/me5-small-ko.yaml [--field value ...]

Writes ``<output_dir>/model/``: the Hugging Face checkpoint with its tokenizer, ``onnx/``
(float32 and int8), ``metadata.json`` (metrics, hyperparameters, data hashes, versions) and
``report/`` (learning curves, dev scatter, summary), then saves that folder into the BentoML
model store. The best epoch is chosen on the validation split of the training file, never on dev.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from transformers import AutoTokenizer, EarlyStoppingCallback, TrainerCallback, set_seed

from models.cross_encoder import ScoreSettings, build_cross_encoder
from models.logs import configure_logging
from models.package import REPORT_DIR, read_metadata, write_metadata
from training.arguments import SELECTION_METRIC, Arguments, DataArguments, parse_arguments
from training.data import (
    FileInfo,
    file_sha256,
    merge_duplicate_pairs,
    read_pairs,
    split_train_validation,
    warn_on_overlap,
)
from training.soup import WEIGHTS, average_weights
from training.trainer import (
    PairCollator,
    PairDataset,
    StsTrainer,
    bce_loss,
    metrics_function,
    pair_dataset,
    served_scores,
)

logger = logging.getLogger("training")


@dataclass
class PreparedData:
    """Every split a run uses, as validated DataFrames, and the files they came from."""

    train: pd.DataFrame
    validation: pd.DataFrame
    evaluation: dict[str, pd.DataFrame]  # reported, never selected on: "dev" and extra sets
    files: dict[str, list[FileInfo]] = field(default_factory=dict)


def prepare_data(data_args: DataArguments) -> PreparedData:
    """Reads and validates every file, merges duplicates and splits train 9:1 (seeded)."""
    base = merge_duplicate_pairs(read_pairs(data_args.train_file, data_args.label_column), data_args.train_file)
    train, validation = split_train_validation(base, data_args.validation_fraction, data_args.split_seed)
    if data_args.max_train_samples is not None:
        train = train.iloc[: data_args.max_train_samples]
    files = {"train": [_file_info(data_args.train_file, base)]}
    extra_frames = []
    for path in data_args.extra_train_files:
        extra = read_pairs(path)
        files.setdefault("extra_train", []).append(_file_info(path, extra))
        extra_frames.append(extra)
    if extra_frames:
        train = merge_duplicate_pairs(pd.concat([train, *extra_frames], ignore_index=True), "training data")
    evaluation = {}
    if data_args.dev_file:
        evaluation["dev"] = read_pairs(data_args.dev_file, data_args.label_column)
        files["dev"] = [_file_info(data_args.dev_file, evaluation["dev"])]
    for path in data_args.extra_eval_files:
        frame = read_pairs(path)
        evaluation[Path(path).stem] = frame
        files.setdefault("extra_eval", []).append(_file_info(path, frame))
    for name, frame in {"validation": validation, **evaluation}.items():
        warn_on_overlap(train, frame, name)
    logger.info(
        "data: %d training pairs, %d validation pairs, evaluation sets: %s",
        len(train),
        len(validation),
        ", ".join(f"{k} ({len(v)})" for k, v in evaluation.items()) or "none",
    )
    return PreparedData(train=train, validation=validation, evaluation=evaluation, files=files)


def _file_info(path: str, frame: pd.DataFrame) -> FileInfo:
    return FileInfo(path=str(path), sha256=file_sha256(path), rows=len(frame))


class EpochLogger(TrainerCallback):
    """Logs one readable line per evaluation set: each epoch's, then the selected model's."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for key in [k for k in metrics or {} if k.endswith("_pearson")]:
            prefix = key.removesuffix("_pearson")
            when = f"epoch {state.epoch:.0f}" if prefix.startswith("eval_") else "selected"
            logger.info(
                "%s %-12s loss %.4f  pearson %.4f  spearman %.4f  f1 %.4f",
                when,
                prefix.removeprefix("eval_"),
                metrics.get(f"{prefix}_loss", float("nan")),
                metrics[key],
                metrics[f"{prefix}_spearman"],
                metrics[f"{prefix}_f1"],
            )


@dataclass
class TrainingResult:
    """What a finished fine-tuning leaves: the trainer (with the selected model loaded) and its metrics."""

    trainer: StsTrainer
    settings: ScoreSettings
    data: PreparedData
    metrics: dict[str, dict[str, float]]
    history: list[dict]
    best_epoch: float | None
    averaged_checkpoints: list[str]
    runtime_s: float


def fine_tune(arguments: Arguments, callbacks: list[TrainerCallback] | None = None) -> TrainingResult:
    """Trains, selects the best epoch on validation Pearson and evaluates every set."""
    model_args, data_args, pipeline, args = arguments
    set_seed(args.seed)
    data = prepare_data(data_args)
    settings = ScoreSettings(
        activation="sigmoid" if model_args.objective == "bce" else "identity",
        max_length=data_args.max_length,
        symmetric=model_args.symmetric,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = build_cross_encoder(model_args.model_name_or_path, model_args.pooling, settings)

    eval_sets = {"validation": pair_dataset(data.validation, settings)}
    if "dev" in data.evaluation:
        eval_sets["dev"] = pair_dataset(data.evaluation["dev"], settings)
    all_callbacks = [EpochLogger(), *(callbacks or [])]
    if pipeline.early_stopping_patience:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=pipeline.early_stopping_patience))
    trainer = StsTrainer(
        model=model,
        args=args,
        train_dataset=pair_dataset(data.train, settings),
        eval_dataset=eval_sets,
        data_collator=PairCollator(tokenizer, data_args.max_length),
        processing_class=tokenizer,
        compute_metrics=metrics_function(settings),
        compute_loss_func=bce_loss if model_args.objective == "bce" else None,
        callbacks=all_callbacks,
        layerwise_lr_decay=model_args.layerwise_lr_decay,
    )
    started = time.monotonic()
    trainer.train()
    runtime = time.monotonic() - started

    best_epoch = _best_epoch(trainer)
    averaged: list[str] = []
    if pipeline.average_top_k > 1:
        averaged = _average_best_checkpoints(trainer, pipeline.average_top_k, eval_sets["validation"])
    metrics = {
        name: _strip_prefix(trainer.evaluate(pair_dataset(frame, settings), metric_key_prefix=name), name)
        for name, frame in {"validation": data.validation, **data.evaluation}.items()
    }
    return TrainingResult(
        trainer=trainer,
        settings=settings,
        data=data,
        metrics=metrics,
        history=trainer.state.log_history,
        best_epoch=best_epoch,
        averaged_checkpoints=averaged,
        runtime_s=runtime,
    )


def _strip_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    keep = ("pearson", "spearman", "f1", "loss")
    return {k: float(metrics[f"{prefix}_{k}"]) for k in keep if f"{prefix}_{k}" in metrics}


def _best_epoch(trainer: StsTrainer) -> float | None:
    step = trainer.state.best_global_step
    return next((e["epoch"] for e in trainer.state.log_history if e.get("step") == step and "epoch" in e), None)


def _average_best_checkpoints(trainer: StsTrainer, k: int, validation: PairDataset) -> list[str]:
    """Averages the weights of the k best epochs; keeps the average only if validation Pearson improves."""
    key = f"eval_{SELECTION_METRIC}"
    scored = [(e[key], e["step"]) for e in trainer.state.log_history if key in e]
    best = sorted(scored, reverse=True)[:k]
    paths = [Path(trainer.args.output_dir) / f"checkpoint-{step}" for _, step in best]
    paths = [p for p in paths if (p / WEIGHTS).is_file()]
    if len(paths) < 2:
        logger.warning("checkpoint averaging needs 2+ saved checkpoints, found %d; skipped", len(paths))
        return []
    single = trainer.evaluate(validation, metric_key_prefix="validation")[SELECTION_METRIC]
    selected = {n: t.detach().clone() for n, t in trainer.model.state_dict().items()}
    trainer.model.load_state_dict({**selected, **average_weights(paths)})  # tied weights are saved once
    mean_score = trainer.evaluate(validation, metric_key_prefix="validation")[SELECTION_METRIC]
    if mean_score > single:
        logger.info("averaged %d checkpoints: validation Pearson %.4f -> %.4f (kept)", len(paths), single, mean_score)
        return [p.name for p in paths]
    logger.info("averaged %d checkpoints: validation Pearson %.4f -> %.4f (discarded)", len(paths), single, mean_score)
    trainer.model.load_state_dict(selected)
    return []


def hyperparameters(arguments: Arguments) -> dict:
    """The settings that define a run, as stored with the model."""
    model_args, data_args, pipeline, args = arguments
    training_keys = (
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "warmup_steps",
        "weight_decay",
        "lr_scheduler_type",
        "seed",
        "bf16",
        "optim",
        "max_grad_norm",
    )
    return {
        **asdict(model_args),
        **{k: v for k, v in asdict(data_args).items() if k not in ("train_file", "dev_file")},
        "average_top_k": pipeline.average_top_k,
        "early_stopping_patience": pipeline.early_stopping_patience,
        **{k: getattr(args, k) for k in training_keys},
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model's numbers."""
    import onnx
    import onnxruntime

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def save_model_package(result: TrainingResult, arguments: Arguments, package_dir: Path) -> dict:
    """Saves the selected model, tokenizer and ``metadata.json`` into ``package_dir``."""
    _, _, pipeline, args = arguments
    if package_dir.exists():
        shutil.rmtree(package_dir)
    model = result.trainer.model
    if pipeline.save_dtype == "float16":
        model = model.half()
    elif pipeline.save_dtype != "float32":
        raise ValueError(f"save_dtype must be 'float32' or 'float16', got {pipeline.save_dtype!r}")
    model.save_pretrained(package_dir)
    result.trainer.processing_class.save_pretrained(package_dir)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    metadata = {
        "base_model": arguments[0].model_name_or_path,
        "score_settings": asdict(result.settings),
        "hyperparameters": hyperparameters(arguments),
        "metrics": result.metrics,
        "best_epoch": result.best_epoch,
        "averaged_checkpoints": result.averaged_checkpoints,
        "data": {k: [asdict(f) for f in v] for k, v in result.data.files.items()},
        "training": {"device": device, "runtime_s": round(result.runtime_s, 1), "saved_dtype": pipeline.save_dtype},
        "versions": package_versions(),
    }
    write_metadata(package_dir, metadata)
    return metadata


def dev_predictions(result: TrainingResult) -> tuple[np.ndarray, np.ndarray] | None:
    """Served scores and gold labels on dev, for the report's scatter plot."""
    if "dev" not in result.data.evaluation:
        return None
    frame = result.data.evaluation["dev"]
    output = result.trainer.predict(pair_dataset(frame, result.settings), metric_key_prefix="dev")
    return served_scores(result.settings, output.predictions), frame["label"].to_numpy()


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the model package directory."""
    configure_logging()
    arguments = parse_arguments(argv)
    pipeline, args = arguments[2], arguments[3]
    result = fine_tune(arguments)
    package_dir = Path(args.output_dir) / "model"
    save_model_package(result, arguments, package_dir)

    from training.report import write_report

    write_report(package_dir / REPORT_DIR, result.history, dev_predictions(result), read_metadata(package_dir))
    if pipeline.export_onnx:
        from training.export import export_package

        export_package(package_dir)
    if pipeline.save_to_store:
        from models.store import save_package

        save_package(package_dir, pipeline.model_name)
    logger.info("model package: %s", package_dir)
    return package_dir


if __name__ == "__main__":
    main()
