"""Fine-tune a cross-encoder on Korean STS pairs, export it and save it into the model store.

    python -m training.train --config training/configs/me5-small-ko.yaml [--field value ...]

Writes ``<output_dir>/model/``: the Hugging Face checkpoint with its tokenizer, ``onnx/``
(float32 and int8), ``metadata.json`` (metrics overall and per source, hyperparameters, data
hashes, versions) and ``report/`` (learning curves, dev scatter, summary), then saves that
folder into the BentoML model store. ``<output_dir>/run.json`` and ``scores.npz`` keep the run's
per-epoch metrics and scores (what the studies in ``research/`` read). The best epoch is chosen on
the validation split of the training file, never on dev.
"""

from __future__ import annotations

import json
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
from torch.utils.data import ConcatDataset
from transformers import AutoTokenizer, TrainerCallback, set_seed

from models.backends import accepted_inputs
from models.cross_encoder import build_cross_encoder
from models.package import REPORT_DIR, file_sha256, read_metadata, write_metadata
from models.scoring import ScoreSettings
from training.arguments import (
    Arguments,
    DataArguments,
    parse_arguments,
    run_selection_weights,
    selection_score,
)
from training.base_model import BaseModelUnavailable, require_base_model
from training.contrast import (
    CONTRAST_VALIDATION,
    HELD_OUT_FILES,
    MINIMAL_PAIR_METRIC,
    TRIPLE_SENTENCES,
    contrast_sentences,
    minimal_pair_score,
    read_minimal_pair_validation,
    read_minimal_pairs,
)
from training.data import FileInfo, merge_duplicate_pairs, read_pairs, warn_on_overlap
from training.logs import configure_logging
from training.metrics import metrics_by_source, sts_metrics
from training.splits import (
    drop_pairs_sharing_sentences,
    normalise_sentence,
    normalised_sentences,
    sharing_sentences,
    split_pairs,
)
from training.trainer import (
    PairCollator,
    PairDataset,
    SelectBestEpoch,
    StopAfterEpoch,
    StsTrainer,
    TimeLimit,
    pair_dataset,
    pair_tokenizer,
    served_scores,
    triple_dataset,
)

logger = logging.getLogger("training")

RUN_RECORD = "run.json"
RUN_SCORES = "scores.npz"


@dataclass
class PreparedData:
    """Every split a run uses, as validated DataFrames, and the files they came from."""

    train: pd.DataFrame
    held_out: dict[str, pd.DataFrame]  # "validation" (selects); maybe validation_<file>, validation_random, cv_fold,
    # contrast_validation (distinct pairs of the minimal-pair triples; frame.attrs["minimal_pairs"] indexes them)
    evaluation: dict[str, pd.DataFrame]  # reported, never selected on: "dev" and extra sets
    files: dict[str, list[FileInfo]] = field(default_factory=dict)
    triples: pd.DataFrame | None = None  # minimal-pair triples to train on (minimal_pair_train_file)

    @property
    def validation(self) -> pd.DataFrame:
        return self.held_out["validation"]


def prepare_data(data_args: DataArguments) -> PreparedData:
    """Reads and validates every file, merges duplicates and holds out validation (see :mod:`training.splits`)."""
    base = merge_duplicate_pairs(read_pairs(data_args.train_file, data_args.label_column), data_args.train_file)
    parts = split_pairs(base, data_args.split_settings())
    train = parts.pop("train")
    held_out = parts
    if data_args.max_train_samples is not None:
        train = train.iloc[: data_args.max_train_samples]
    files = {"train": [_file_info(data_args.train_file, base)]}
    for path in data_args.extra_validation_files:
        pairs = merge_duplicate_pairs(read_pairs(path), path)
        files.setdefault("extra_validation", []).append(_file_info(path, pairs))
        held_out[f"validation_{Path(path).stem}"] = split_pairs(pairs, data_args.extra_validation_settings())[
            "validation"
        ]
    if data_args.contrast_validation_file:
        path = data_args.contrast_validation_file
        held_out[CONTRAST_VALIDATION] = read_minimal_pair_validation(path)
        files["contrast_validation"] = [_file_info(path, held_out[CONTRAST_VALIDATION])]
    extra_frames = []
    for path in data_args.extra_train_files:
        extra = read_pairs(path)
        files.setdefault("extra_train", []).append(_file_info(path, extra))
        if data_args.exclude_held_out_sentences:
            extra = drop_pairs_sharing_sentences(extra, list(held_out.values()), path)
        extra_frames.append(extra)
    if data_args.soft_label_file:
        soft = read_pairs(data_args.soft_label_file)
        files["soft_labels"] = [_file_info(data_args.soft_label_file, soft)]
        train, added = apply_soft_labels(train, soft)
        if data_args.exclude_held_out_sentences:
            added = drop_pairs_sharing_sentences(added, list(held_out.values()), data_args.soft_label_file)
        extra_frames.append(added)
    if extra_frames:
        train = merge_duplicate_pairs(pd.concat([train, *extra_frames], ignore_index=True), "training data")
    train = drop_contrast_sentences(train, data_args.contrast_validation_file)
    evaluation = {}
    if data_args.dev_file:
        evaluation["dev"] = read_pairs(data_args.dev_file, data_args.label_column)
        files["dev"] = [_file_info(data_args.dev_file, evaluation["dev"])]
    for path in data_args.extra_eval_files:
        frame = read_pairs(path)
        evaluation[Path(path).stem] = frame
        files.setdefault("extra_eval", []).append(_file_info(path, frame))
    for name, frame in {**held_out, **evaluation}.items():
        warn_on_overlap(train, frame, name)
    triples = None
    if data_args.minimal_pair_train_file:
        path = data_args.minimal_pair_train_file
        triples = training_triples(path, [*held_out.values(), *evaluation.values()], data_args.contrast_validation_file)
        files["minimal_pair_train"] = [_file_info(path, triples)]
    logger.info(
        "data: %d training pairs; held out (%s split): %s; evaluation sets: %s",
        len(train),
        data_args.split,
        ", ".join(f"{k} ({len(v)})" for k, v in held_out.items()),
        ", ".join(f"{k} ({len(v)})" for k, v in evaluation.items()) or "none",
    )
    return PreparedData(train=train, held_out=held_out, evaluation=evaluation, files=files, triples=triples)


def _contrast_paths(contrast_validation_file: str | None) -> list[str | Path]:
    """The held-out contrast files (the contrast set, its paraphrases, the held-out minimal pairs) and
    ``contrast_validation_file``."""
    return [*HELD_OUT_FILES, *([contrast_validation_file] if contrast_validation_file else [])]


def drop_contrast_sentences(train: pd.DataFrame, contrast_validation_file: str | None = None) -> pd.DataFrame:
    """Training pairs without any sentence of the contrast files (:func:`_contrast_paths`): those are test
    and selection data only."""
    sentences = contrast_sentences(_contrast_paths(contrast_validation_file))
    if not sentences:
        return train
    frame = pd.DataFrame({"sentence1": sorted(sentences), "sentence2": sorted(sentences)})
    kept = drop_pairs_sharing_sentences(train, [frame], "training data")
    logger.info(
        "contrast files: dropped %d training pairs sharing a sentence with them (%d sentences)",
        len(train) - len(kept),
        len(sentences),
    )
    return kept


def training_triples(path: str, held: list[pd.DataFrame], contrast_validation_file: str | None = None) -> pd.DataFrame:
    """The minimal-pair triples of ``path`` that share no sentence (normalised) with the ``held`` pair sets
    or the contrast files."""
    triples = read_minimal_pairs(path)
    banned = normalised_sentences(held)
    banned |= {normalise_sentence(s) for s in contrast_sentences(_contrast_paths(contrast_validation_file))}
    shares = sharing_sentences(triples, TRIPLE_SENTENCES, banned)
    if shares.all():
        raise ValueError(f"{path}: every triple shares a sentence with a held-out or contrast set; none is left")
    if shares.any():
        logger.info("%s: dropped %d triples sharing a sentence with a held-out or contrast set", path, shares.sum())
    return triples[~shares].reset_index(drop=True)


def apply_soft_labels(train: pd.DataFrame, soft: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training pairs with labels replaced where ``soft`` has the pair, and ``soft``'s other pairs."""
    keys = ["sentence1", "sentence2"]
    soft = soft.drop_duplicates(keys, keep="last")
    merged = train.merge(soft[[*keys, "label"]].rename(columns={"label": "soft"}), on=keys, how="left")
    relabelled = merged["soft"].notna()
    train = train.assign(label=np.where(relabelled, merged["soft"], train["label"]))
    in_train = soft.merge(train[keys], on=keys, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    added = soft[~in_train].reset_index(drop=True)
    logger.info("soft labels: %d training pairs relabelled, %d pairs added", int(relabelled.sum()), len(added))
    return train, added


def _file_info(path: str, frame: pd.DataFrame) -> FileInfo:
    return FileInfo(path=str(path), sha256=file_sha256(path), rows=len(frame))


def _log_metrics(when: str, name: str, metrics: dict[str, float]) -> None:
    logger.info(
        "%s %-17s loss %.4f  pearson %.4f  balanced %.4f  spearman %.4f  f1 %.4f%s",
        when,
        name,
        metrics.get("loss", float("nan")),
        metrics["pearson"],
        metrics["balanced_pearson"],
        metrics["spearman"],
        metrics["f1"],
        f"  minimal pairs {metrics[MINIMAL_PAIR_METRIC]:.4f}" if MINIMAL_PAIR_METRIC in metrics else "",
    )


class EpochLogger(TrainerCallback):
    """Logs one readable line per evaluation set and epoch."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for key in [k for k in metrics or {} if k.startswith("eval_") and k.endswith("_balanced_pearson")]:
            prefix = key.removesuffix("_balanced_pearson")
            values = {k.removeprefix(f"{prefix}_"): v for k, v in metrics.items() if k.startswith(f"{prefix}_")}
            _log_metrics(f"epoch {state.epoch:.0f}", prefix.removeprefix("eval_"), values)


@dataclass
class TrainingResult:
    """What a finished fine-tuning leaves: the trainer (with the selected model loaded), metrics and scores."""

    trainer: StsTrainer
    settings: ScoreSettings
    data: PreparedData
    metrics: dict[str, dict[str, float]]
    metrics_by_source: dict[str, dict[str, dict[str, float]]]
    selection: float  # the selection score of the selected model (selection_metric, extra validation sets)
    scores: dict[str, np.ndarray]  # served scores of the selected model, per set
    epoch_scores: dict[str, list[np.ndarray]]  # served scores per epoch, per set evaluated during training
    history: list[dict]
    best_epoch: float | None
    averaging: dict | None
    runtime_s: float
    stopped_by_time_limit: bool = False

    @property
    def averaged_checkpoints(self) -> list[str]:
        """Epochs whose weights were averaged into the model (empty when averaging was not kept)."""
        if not self.averaging or not self.averaging["kept"]:
            return []
        return [f"epoch-{epoch:g}" for epoch in self.averaging["epochs"]]

    def sets(self) -> dict[str, pd.DataFrame]:
        """Every scored set: held out, then evaluation."""
        return {**self.data.held_out, **self.data.evaluation}


def fine_tune(arguments: Arguments, callbacks: list[TrainerCallback] | None = None) -> TrainingResult:
    """Trains, selects the best epoch on validation and scores every set with the selected model."""
    model_args, data_args, pipeline, args = arguments
    if model_args.minimal_pair_margin_weight and not data_args.minimal_pair_train_file:
        raise ValueError(
            f"minimal_pair_margin_weight is {model_args.minimal_pair_margin_weight:g} but minimal_pair_train_file "
            "is unset: name the triples to train on (e.g. data/contrast/ko_minimal_pairs_train.jsonl) or set it to 0"
        )
    require_base_model(model_args.model_name_or_path)  # before anything slow: a missing base stops at once
    set_seed(args.seed)
    data = prepare_data(data_args)
    settings = ScoreSettings(
        activation="sigmoid" if model_args.objective == "bce" else "identity",
        max_length=data_args.max_length,
        symmetry=model_args.score_symmetry,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    pairs = pair_tokenizer(tokenizer, data_args.max_length)
    model = build_cross_encoder(model_args.model_name_or_path, model_args.pooling, settings)

    sets = {name: pair_dataset(frame, settings, pairs) for name, frame in {**data.held_out, **data.evaluation}.items()}
    weights = run_selection_weights(arguments)
    selection = SelectBestEpoch(
        "eval_selection", keep=pipeline.average_top_k, patience=pipeline.early_stopping_patience
    )
    time_limit = TimeLimit(pipeline.stop_at) if pipeline.stop_at else None
    stops = [
        *([time_limit] if time_limit else []),
        *([StopAfterEpoch(pipeline.stop_after_epoch)] if pipeline.stop_after_epoch else []),
    ]
    orders_together = model_args.order_consistency_weight > 0
    train_dataset = pair_dataset(data.train, settings, pairs, training=True, orders_together=orders_together)
    if data.triples is not None:
        train_dataset = ConcatDataset([train_dataset, triple_dataset(data.triples, settings, pairs)])
    trainer = StsTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset={name: sets[name] for name in [*data.held_out, "dev"] if name in sets},
        data_collator=PairCollator(pairs, accepted_inputs(model.forward)),
        processing_class=tokenizer,
        callbacks=[EpochLogger(), selection, *stops, *(callbacks or [])],
        settings=settings,
        selection_weights=weights,
        minimal_pairs={name: frame for name, frame in data.held_out.items() if "minimal_pairs" in frame.attrs},
        objective=model_args.objective,
        layerwise_lr_decay=model_args.layerwise_lr_decay,
        rdrop_alpha=model_args.rdrop_alpha,
        margin_weight=model_args.minimal_pair_margin_weight,
        margin=model_args.minimal_pair_margin,
        order_weight=model_args.order_consistency_weight,
    )
    started = time.monotonic()
    trainer.train()
    runtime = time.monotonic() - started

    averaging = None
    if pipeline.average_top_k > 1:
        averaging = _average_best_epochs(trainer, selection, sets, weights)
    frames = {**data.held_out, **data.evaluation}
    scores, metrics, by_source = {}, {}, {}
    for name, frame in frames.items():
        output = trainer.predict(sets[name], metric_key_prefix=name)
        scores[name] = served_scores(settings, output.predictions)
        metrics[name] = {
            **sts_metrics(scores[name], frame["label"].to_numpy()),
            "loss": float(output.metrics[f"{name}_loss"]),
        }
        if (accuracy := minimal_pair_score(frame, scores[name])) is not None:
            metrics[name][MINIMAL_PAIR_METRIC] = accuracy
        by_source[name] = metrics_by_source(scores[name], frame["label"].to_numpy(), frame["source"].tolist())
    for name in [*data.held_out, "dev"]:
        if name in metrics:
            _log_metrics(f"selected (epoch {selection.best_epoch})", name, metrics[name])
    logger.info("selection score %.4f (%s)", selection_score(metrics, weights), _describe(weights))
    return TrainingResult(
        trainer=trainer,
        settings=settings,
        data=data,
        metrics=metrics,
        metrics_by_source=by_source,
        selection=selection_score(metrics, weights),
        scores=scores,
        epoch_scores=trainer.epoch_scores,
        history=trainer.state.log_history,
        best_epoch=selection.best_epoch,
        averaging=averaging,
        runtime_s=runtime,
        stopped_by_time_limit=bool(time_limit and time_limit.stopped),
    )


def _describe(weights: dict[tuple[str, str], float]) -> str:
    return " + ".join(f"{w:g} x {s} {m}" for (s, m), w in weights.items())


def _selection_now(trainer: StsTrainer, sets: dict[str, PairDataset], weights: dict[tuple[str, str], float]) -> float:
    """The selection score of the trainer's current weights."""
    names = {set_name for set_name, _ in weights}
    metrics = {name: _strip(trainer.evaluate(sets[name], metric_key_prefix=name), name) for name in names}
    return selection_score(metrics, weights)


def _strip(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(f"{prefix}_"): v for k, v in metrics.items() if k.startswith(f"{prefix}_")}


def _average_best_epochs(
    trainer: StsTrainer, selection: SelectBestEpoch, sets: dict[str, PairDataset], weights: dict[tuple[str, str], float]
) -> dict:
    """Averages the weights of the best epochs kept in memory; keeps the average only if selection improves.

    Returns what was tried: the epochs, the selection score of the best single epoch and of the
    average, and whether the average was kept.
    """
    epochs = [epoch for _, epoch, _ in selection.best]
    if len(selection.best) < 2:
        logger.warning("weight averaging needs 2+ evaluated epochs, found %d; skipped", len(selection.best))
        return {"epochs": epochs, "kept": False, "skipped": "fewer than 2 epochs"}
    single = _selection_now(trainer, sets, weights)
    best_weights = selection.best[0][2]
    states = [weights for _, _, weights in selection.best]
    average = {
        name: torch.stack([s[name].float() for s in states]).mean(0).to(tensor.dtype)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in best_weights.items()
    }
    trainer.model.load_state_dict(average)
    averaged = _selection_now(trainer, sets, weights)
    kept = averaged > single
    logger.info(
        "averaged epochs %s: selection score %.4f -> %.4f (%s)",
        ", ".join(f"{e:g}" for e in epochs),
        single,
        averaged,
        "kept" if kept else "discarded",
    )
    if not kept:
        trainer.model.load_state_dict(best_weights)
    return {
        "epochs": epochs,
        "validation_single": float(single),
        "validation_average": float(averaged),
        "kept": bool(kept),
    }


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
        "data_seed",
        "bf16",
        "optim",
        "max_grad_norm",
    )
    return {
        **asdict(model_args),
        **{k: v for k, v in asdict(data_args).items() if k not in ("train_file", "dev_file")},
        "selection_metric": pipeline.selection_metric,
        "selection_extra_weight": pipeline.selection_extra_weight,
        "contrast_validation_weight": pipeline.contrast_validation_weight,
        "average_top_k": pipeline.average_top_k,
        "early_stopping_patience": pipeline.early_stopping_patience,
        "stop_after_epoch": pipeline.stop_after_epoch,
        **{k: getattr(args, k) for k in training_keys},
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model's numbers (ONNX ones when installed: GPU boxes may lack them)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name, distributions in (("onnx", ("onnx",)), ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))):
        versions[name] = "not installed"
        for distribution in distributions:
            try:
                versions[name] = version(distribution)
                break
            except PackageNotFoundError:
                continue
    return versions


def save_model_package(result: TrainingResult, arguments: Arguments, package_dir: Path) -> dict:
    """Saves the selected model, tokenizer and ``metadata.json`` into ``package_dir``.

    With ``save_dtype: float16`` a half-precision copy of the weights is written; the trainer's
    model keeps its own weights, so whatever runs after saving still sees the trained model.
    """
    _, _, pipeline, _ = arguments
    if package_dir.exists():
        shutil.rmtree(package_dir)
    model = result.trainer.model
    result.settings.save_to(model.config)
    state_dict = None
    if pipeline.save_dtype == "float16":
        state_dict = {n: t.half() if t.is_floating_point() else t for n, t in model.state_dict().items()}
    model.save_pretrained(package_dir, state_dict=state_dict)
    result.trainer.processing_class.save_pretrained(package_dir)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    metadata = {
        "base_model": arguments[0].model_name_or_path,
        "base_model_name": arguments[0].base_model_name or arguments[0].model_name_or_path,
        "score_settings": result.settings.to_dict(),
        "hyperparameters": hyperparameters(arguments),
        "metrics": result.metrics,
        "metrics_by_source": result.metrics_by_source,
        "selection": {"score": result.selection, "weights": _describe(run_selection_weights(arguments))},
        "best_epoch": result.best_epoch,
        "averaged_checkpoints": result.averaged_checkpoints,
        "averaging": result.averaging,
        "split": {name: len(frame) for name, frame in {"train": result.data.train, **result.data.held_out}.items()},
        "data": {k: [asdict(f) for f in v] for k, v in result.data.files.items()},
        "training": {
            "device": device,
            "runtime_s": round(result.runtime_s, 1),
            "saved_dtype": pipeline.save_dtype,
            "stopped_by_time_limit": result.stopped_by_time_limit,
        },
        "versions": package_versions(),
    }
    write_metadata(package_dir, metadata)
    return metadata


def write_run_record(result: TrainingResult, arguments: Arguments, run_dir: Path) -> Path:
    """Writes ``run.json`` (metrics, history) and ``scores.npz`` (per-set scores, labels, pairs) into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "hyperparameters": hyperparameters(arguments),
        "selection_metric": arguments[2].selection_metric,
        "selection": result.selection,
        "best_epoch": result.best_epoch,
        "metrics": result.metrics,
        "metrics_by_source": result.metrics_by_source,
        "averaging": result.averaging,
        "history": [entry for entry in result.history if any(k.startswith("eval_") for k in entry)],
        "runtime_s": round(result.runtime_s, 1),
        "stopped_by_time_limit": result.stopped_by_time_limit,
    }
    (run_dir / RUN_RECORD).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    arrays = {}
    for name, frame in result.sets().items():
        arrays[f"{name}.labels"] = frame["label"].to_numpy(np.float32)
        arrays[f"{name}.scores"] = np.asarray(result.scores[name], dtype=np.float32)
        arrays[f"{name}.sources"] = frame["source"].to_numpy(str)
        if name in result.data.held_out:
            arrays[f"{name}.sentence1"] = frame["sentence1"].to_numpy(str)
            arrays[f"{name}.sentence2"] = frame["sentence2"].to_numpy(str)
        if result.epoch_scores.get(name):
            arrays[f"{name}.epoch_scores"] = np.stack(result.epoch_scores[name])
    np.savez_compressed(run_dir / RUN_SCORES, **arrays)
    return run_dir / RUN_RECORD


def dev_predictions(result: TrainingResult) -> tuple[np.ndarray, np.ndarray] | None:
    """Served scores and gold labels on dev, for the report's scatter plot."""
    if "dev" not in result.data.evaluation:
        return None
    return result.scores["dev"], result.data.evaluation["dev"]["label"].to_numpy()


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the model package directory."""
    configure_logging()
    arguments = parse_arguments(argv)
    pipeline, args = arguments[2], arguments[3]
    try:
        result = fine_tune(arguments)
    except BaseModelUnavailable as error:
        raise SystemExit(f"error: {error}") from None
    package_dir = Path(args.output_dir) / "model"
    save_model_package(result, arguments, package_dir)
    write_run_record(result, arguments, Path(args.output_dir))

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
