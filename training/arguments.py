"""Training configuration: three dataclasses of our own plus Hugging Face ``TrainingArguments``.

A run is described by one YAML file (``training/configs/*.yaml``) whose keys are the fields
below or any ``TrainingArguments`` field; flags on the command line override the file, e.g.
``python -m training.train --config training/configs/me5-small-ko.yaml --learning_rate 3e-5``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

from models.scoring import SYMMETRIES, Symmetry, legacy_symmetry
from training.splits import SplitSettings

logger = logging.getLogger("training")

SELECTION_METRICS = ("balanced_pearson", "pearson", "spearman")


@dataclass
class ModelArguments:
    """Which encoder to fine-tune and how its head and scores work."""

    model_name_or_path: str = field(
        metadata={"help": "Hugging Face model id or local directory of the pretrained encoder."}
    )
    base_model_name: str | None = field(
        default=None,
        metadata={
            "help": "The encoder's public name (e.g. its hub id) when model_name_or_path is a local copy; "
            "recorded with the model and reported by the service's model_info."
        },
    )
    pooling: str = field(
        default="cls",
        metadata={"help": "'cls': the architecture's own classification head; 'mean': masked mean pooling."},
    )
    objective: str = field(
        default="mse",
        metadata={"help": "'mse' on 0-5 labels, or 'bce' on labels scaled to 0-1 with a sigmoid output."},
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={"help": "Learning rate multiplier per layer below the top (1.0 = same rate everywhere)."},
    )
    symmetric: bool = field(
        default=False,
        metadata={"help": "Train on both sentence orders and score pairs independently of their order (symmetry)."},
    )
    symmetry: str | None = field(
        default=None,
        metadata={
            "help": "How a symmetric model scores a pair: 'average' (both orders, averaged) or 'canonical' (once, the "
            "shorter sentence first); unset: 'average' when symmetric, else 'none'. Evaluation follows it."
        },
    )
    rdrop_alpha: float = field(
        default=0.0,
        metadata={
            "help": "R-Drop: each batch runs twice (two dropout masks) and the squared difference of the two "
            "0-1 scores, times this weight, is added to the loss (0 = off)."
        },
    )

    minimal_pair_margin_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the minimal-pair margin term (0 = off; needs minimal_pair_train_file): per training "
            "triple, max(0, minimal_pair_margin - (score(anchor, preserving) - score(anchor, changing))) on 0-1 "
            "scores, averaged over the batch's triples, is added to the loss."
        },
    )
    minimal_pair_margin: float = field(
        default=0.2, metadata={"help": "The margin on 0-1 scores (0.2 = one point of the 0-5 scale)."}
    )
    order_consistency_weight: float = field(
        default=0.0,
        metadata={
            "help": "Symmetric models: each training pair's two orders go into the same batch, and the squared "
            "difference of their 0-1 scores, times this weight, is added to the loss, so that one order scores as "
            "both averaged do (what symmetry 'canonical' needs; 0 = off). A batch then holds both orders of "
            "per_device_train_batch_size pairs: halve it to keep the rows per step."
        },
    )

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.objective not in ("mse", "bce"):
            raise ValueError(f"objective must be 'mse' or 'bce', got {self.objective!r}")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}")
        if self.rdrop_alpha < 0:
            raise ValueError(f"rdrop_alpha must be 0 (off) or positive, got {self.rdrop_alpha}")
        if self.minimal_pair_margin_weight < 0 or not 0.0 <= self.minimal_pair_margin <= 1.0:
            raise ValueError(
                f"minimal_pair_margin_weight must be 0 (off) or positive and minimal_pair_margin in [0, 1], got "
                f"{self.minimal_pair_margin_weight} and {self.minimal_pair_margin}"
            )
        if self.order_consistency_weight < 0 or (self.order_consistency_weight and not self.symmetric):
            raise ValueError(
                f"order_consistency_weight must be 0 (off), or positive for a symmetric model (symmetric: true), got "
                f"{self.order_consistency_weight} with symmetric: {self.symmetric}"
            )
        if self.symmetry not in (None, *SYMMETRIES):
            raise ValueError(f"symmetry must be one of {', '.join(SYMMETRIES)} or unset, got {self.symmetry!r}")
        if self.symmetry is not None and (self.symmetry != "none") != self.symmetric:
            raise ValueError(
                f"symmetry {self.symmetry!r} contradicts symmetric: {self.symmetric}; set symmetric: true for "
                "'average' or 'canonical', false for 'none'"
            )

    @property
    def score_symmetry(self) -> Symmetry:
        """How the trained model scores pairs (``symmetry``, else what ``symmetric`` implies)."""
        return self.symmetry or legacy_symmetry(self.symmetric)


@dataclass
class DataArguments:
    """Where the pairs come from and how they are split and tokenised."""

    train_file: str = field(metadata={"help": "Training pairs (.json KLUE format, .jsonl, .csv or .tsv)."})
    dev_file: str | None = field(
        default=None, metadata={"help": "Benchmark set reported every epoch (KLUE-STS dev); never used for selection."}
    )
    extra_train_files: list[str] = field(
        default_factory=list, metadata={"help": "More training pairs (e.g. KorSTS train), added after the split."}
    )
    extra_eval_files: list[str] = field(
        default_factory=list, metadata={"help": "Out-of-domain sets reported at the end (e.g. KorSTS dev)."}
    )
    extra_validation_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Files whose held-out slice (extra_validation_fraction, split like train_file) is another "
            "validation set, `validation_<stem>`, evaluated every epoch and weighted into selection by "
            "selection_extra_weight (e.g. KorSTS train: selection that also values out-of-domain pairs). Pairs "
            "sharing a sentence with the slice are dropped from extra training files."
        },
    )
    extra_validation_fraction: float = field(
        default=0.2, metadata={"help": "Share of each extra_validation_files file held out."}
    )
    contrast_validation_file: str | None = field(
        default=None,
        metadata={
            "help": "Hand-written minimal-pair triples (data/contrast/ko_minimal_pairs.jsonl): their distinct pairs "
            "are the `contrast_validation` set, evaluated every epoch, whose minimal-pair accuracy "
            "(`eval_contrast_validation_minimal_pair_accuracy`) is weighted into selection by "
            "contrast_validation_weight. Never trained on: training pairs sharing a sentence with any contrast "
            "file are dropped."
        },
    )
    minimal_pair_train_file: str | None = field(
        default=None,
        metadata={
            "help": "Minimal-pair triples to train on, in the format of data/contrast/ko_minimal_pairs.jsonl (e.g. "
            "data/contrast/ko_minimal_pairs_train.jsonl): each adds its (anchor, preserving) and (anchor, changing) "
            "pairs with their labels, and the margin term of minimal_pair_margin_weight. Triples sharing a sentence "
            "with a held-out, evaluation or contrast set are dropped."
        },
    )
    label_column: str | None = field(default=None, metadata={"help": "Label column; detected when not given."})
    split: str = field(
        default="grouped",
        metadata={
            "help": "'grouped': pairs linked by equal or near-duplicate sentences stay on one side, folds "
            "stratified by source and label bin; 'random': a seeded shuffle (the first default model's split). "
            "See training/splits.py."
        },
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of train_file held out for model selection (grouped: one of round(1/x) folds)."},
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the train/validation split (kept fixed while tuning)."}
    )
    near_duplicate_threshold: float = field(
        default=0.8,
        metadata={"help": "Grouped split: sentences whose character 3-gram TF-IDF cosine reaches this are linked."},
    )
    cv_folds: int = field(
        default=0,
        metadata={
            "help": "Cross-validation: split what validation leaves into this many folds (grouped like `split`) "
            "and hold out fold `cv_fold` as the `cv_fold` set (0 = off). Epochs are still selected on validation."
        },
    )
    cv_fold: int = field(default=0, metadata={"help": "Which cross-validation fold to hold out (0-based)."})
    random_holdout_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Also hold out this share of train_file at random as `validation_random` (the old scheme's "
            "validation), reported every epoch and never selected on: research.selection compares the schemes."
        },
    )
    soft_label_file: str | None = field(
        default=None,
        metadata={
            "help": "Pairs with teacher labels (training.distill): they replace the labels of the same training "
            "pairs; pairs not in train_file are added as training pairs. Held-out pairs keep gold labels."
        },
    )
    exclude_held_out_sentences: bool = field(
        default=True,
        metadata={
            "help": "Drop extra and soft-label training pairs that share a sentence with a held-out set "
            "(augmented pairs built from train_file's sentences would leak)."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Token budget per pair; longer pairs are truncated."})
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use only the first N pairs of train_file after the split (quick runs, tests); the pairs of "
            "extra_train_files and those a soft_label_file adds come on top of them."
        },
    )

    def split_settings(self) -> SplitSettings:
        """The split fields as :class:`training.splits.SplitSettings` (validated)."""
        return SplitSettings(
            split=self.split,
            validation_fraction=self.validation_fraction,
            split_seed=self.split_seed,
            near_duplicate_threshold=self.near_duplicate_threshold,
            cv_folds=self.cv_folds,
            cv_fold=self.cv_fold,
            random_holdout_fraction=self.random_holdout_fraction,
        )

    def extra_validation_settings(self) -> SplitSettings:
        """How the held-out slice of each extra_validation_files file is cut."""
        return SplitSettings(
            split=self.split,
            validation_fraction=self.extra_validation_fraction,
            split_seed=self.split_seed,
            near_duplicate_threshold=self.near_duplicate_threshold,
        )


@dataclass
class PipelineArguments:
    """What happens after fine-tuning: averaging, export, report and the model store."""

    selection_metric: str = field(
        default="balanced_pearson",
        metadata={
            "help": "Validation metric that selects the epoch (and recipes, merges): balanced_pearson (each "
            "label bin weighs the same), pearson or spearman. Always on validation, never on dev."
        },
    )
    selection_extra_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the extra validation sets (their mean Pearson) in the selection score; the "
            "validation split's selection_metric gets the rest."
        },
    )
    contrast_validation_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight, in [0, 1), of contrast_validation_file's minimal-pair accuracy in the selection score; "
            "with selection_extra_weight it must sum below 1 (the validation split's selection_metric gets the rest)."
        },
    )
    average_top_k: int = field(
        default=0,
        metadata={
            "help": "Average the weights of the k best epochs (kept in memory); kept only if validation improves."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many epochs without a better validation selection metric."}
    )
    save_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "Also write a checkpoint (weights and optimizer) every epoch. The selected weights are kept "
            "in memory either way; checkpoints only cost time unless you resume from them."
        },
    )
    stop_after_epoch: int | None = field(
        default=None,
        metadata={
            "help": "End training after this epoch while keeping the learning-rate schedule of num_train_epochs "
            "(the shipped default's run was cut so, after epoch 5 of 6, by its time budget)."
        },
    )
    stop_at: float | None = field(
        default=None,
        metadata={"help": "Unix time: stop after the epoch at which another epoch would end past it (time budgets)."},
    )
    export_onnx: bool = field(default=True, metadata={"help": "Export ONNX (float32 and int8) and check parity."})
    save_to_store: bool = field(default=True, metadata={"help": "Save the result into the BentoML model store."})
    model_name: str = field(default="ko-sts", metadata={"help": "Name of the model in the BentoML store."})
    save_dtype: str = field(
        default="float32", metadata={"help": "dtype of the saved PyTorch weights: float32, or float16 to halve them."}
    )

    def __post_init__(self) -> None:
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"selection_metric must be one of {', '.join(SELECTION_METRICS)}; got {self.selection_metric!r}"
            )
        if self.save_dtype not in ("float32", "float16"):
            raise ValueError(f"save_dtype must be 'float32' or 'float16', got {self.save_dtype!r}")
        if self.stop_after_epoch is not None and self.stop_after_epoch < 1:
            raise ValueError(f"stop_after_epoch must be 1 or more (or unset), got {self.stop_after_epoch}")
        if not 0.0 <= self.selection_extra_weight < 1.0:
            raise ValueError(f"selection_extra_weight must be in [0, 1), got {self.selection_extra_weight}")
        if not 0.0 <= self.contrast_validation_weight < 1.0:
            raise ValueError(f"contrast_validation_weight must be in [0, 1), got {self.contrast_validation_weight}")


Arguments = tuple[ModelArguments, DataArguments, PipelineArguments, TrainingArguments]
_DATACLASSES = (ModelArguments, DataArguments, PipelineArguments, TrainingArguments)


SELECTION = "selection"  # the score that selects epochs, trials and merges: eval_selection during training


CONTRAST_VALIDATION = "contrast_validation"  # as training.contrast names the set and its metric
MINIMAL_PAIR_METRIC = "minimal_pair_accuracy"


def selection_weights(
    selection_metric: str,
    extra_validation_files: list[str],
    extra_weight: float,
    contrast_validation_file: str | None = None,
    contrast_weight: float = 0.0,
) -> dict[tuple[str, str], float]:
    """``{(set, metric): weight}`` of the selection score: validation's metric, plus the extra validation
    sets' Pearson (``extra_weight`` shared), plus the held-out minimal-pair accuracy (``contrast_weight``).

    Raises:
        ValueError: when the weights in use sum to 1 or more (validation would get nothing), or a
        contrast weight is set without a contrast validation file.
    """
    extra = extra_weight if extra_validation_files else 0.0
    if contrast_weight and not contrast_validation_file:
        raise ValueError(
            f"contrast_validation_weight is {contrast_weight:g} but contrast_validation_file is unset; set it "
            "(data/contrast/ko_minimal_pairs.jsonl) or set the weight to 0"
        )
    if extra + contrast_weight >= 1.0:
        raise ValueError(
            f"selection_extra_weight ({extra:g}) + contrast_validation_weight ({contrast_weight:g}) = "
            f"{extra + contrast_weight:g}, must be below 1: the validation split's {selection_metric} gets the rest"
        )
    weights = {("validation", selection_metric): 1.0 - extra - contrast_weight}
    if extra:
        share = extra / len(extra_validation_files)
        weights |= {(f"validation_{Path(path).stem}", "pearson"): share for path in extra_validation_files}
    if contrast_weight:
        weights[(CONTRAST_VALIDATION, MINIMAL_PAIR_METRIC)] = contrast_weight
    return weights


def run_selection_weights(arguments: Arguments) -> dict[tuple[str, str], float]:
    """:func:`selection_weights` of a run's arguments."""
    _, data_args, pipeline, _ = arguments
    return selection_weights(
        pipeline.selection_metric,
        data_args.extra_validation_files,
        pipeline.selection_extra_weight,
        data_args.contrast_validation_file,
        pipeline.contrast_validation_weight,
    )


def recorded_selection_weights(hyperparameters: dict) -> dict[tuple[str, str], float]:
    """:func:`selection_weights` from a package's recorded hyperparameters (older packages: validation Pearson,
    no contrast weight)."""
    return selection_weights(
        hyperparameters.get("selection_metric", "pearson"),
        hyperparameters.get("extra_validation_files", []),
        hyperparameters.get("selection_extra_weight", 0.0),
        hyperparameters.get("contrast_validation_file"),
        hyperparameters.get("contrast_validation_weight", 0.0),
    )


def selection_score(metrics: dict[str, dict[str, float]], weights: dict[tuple[str, str], float]) -> float:
    """The weighted selection score of per-set metrics."""
    return float(sum(metrics[set_name][metric] * weight for (set_name, metric), weight in weights.items()))


def use_bf16(requested: bool | None) -> bool:
    """Whether to train in bf16 autocast: ``bf16`` unset means on a CUDA GPU that supports it; false means never."""
    if requested is False:
        return False
    capable = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if requested and not capable:
        logger.warning("bf16 needs a CUDA GPU with bfloat16 support; training in float32")
    return capable


def _finalise(arguments: Arguments) -> Arguments:
    """Applies what every run needs: per-epoch evaluation, selection on validation, bf16 where asked and possible."""
    model_args, data_args, pipeline, args = arguments
    data_args.split_settings()  # validates the split fields
    run_selection_weights(arguments)  # validates the selection weights together
    if args.metric_for_best_model not in (None, SELECTION, f"eval_{SELECTION}"):
        raise ValueError(
            f"metric_for_best_model must be left unset (set selection_metric and selection_extra_weight "
            f"instead, got {args.metric_for_best_model!r}): models are selected on held-out splits of the "
            "training data, never on dev"
        )
    bf16 = use_bf16(args.bf16)
    # replace() runs TrainingArguments.__post_init__ again, which derives mixed precision etc.
    args = dataclasses.replace(
        args,
        eval_strategy="epoch",
        save_strategy="epoch" if pipeline.save_checkpoints else "no",
        metric_for_best_model=SELECTION,
        greater_is_better=True,
        load_best_model_at_end=False,  # the selected epoch's weights are kept in memory (train.SelectBestEpoch)
        label_names=["labels"],
        remove_unused_columns=False,  # items are pre-tokenised pairs, padded by the collator
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=bf16,
    )
    return model_args, data_args, pipeline, args


def parse_arguments(argv: list[str] | None = None) -> Arguments:
    """Parses ``--config FILE.yaml`` and any field flags; flags win over the file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(_DATACLASSES)
    parser.set_defaults(bf16=None)  # unset: bf16 wherever the GPU supports it (use_bf16)
    config: dict = {}
    if "--config" in argv:
        index = argv.index("--config")
        config_path = Path(argv[index + 1])
        del argv[index : index + 2]
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown key(s) {', '.join(unknown)}; see --help for the fields")
        parser.set_defaults(**config)
        for action in parser._actions:  # the file satisfies required fields
            if action.dest in config:
                action.required = False
    return _finalise(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False))


def arguments_from_dict(values: dict) -> Arguments:
    """Builds the four dataclasses from one flat dict of field values (used by tuning and tests)."""
    values = {"bf16": None, **values}  # unset: bf16 wherever the GPU supports it (use_bf16)
    return _finalise(HfArgumentParser(_DATACLASSES).parse_dict(values, allow_extra_keys=False))
