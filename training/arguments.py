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

logger = logging.getLogger("training")

SELECTION_METRIC = "validation_pearson"


@dataclass
class ModelArguments:
    """Which encoder to fine-tune and how its head and scores work."""

    model_name_or_path: str = field(
        metadata={"help": "Hugging Face model id or local directory of the pretrained encoder."}
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
        metadata={"help": "Train on both sentence orders and average both orders when scoring."},
    )

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.objective not in ("mse", "bce"):
            raise ValueError(f"objective must be 'mse' or 'bce', got {self.objective!r}")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}")


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
    label_column: str | None = field(default=None, metadata={"help": "Label column; detected when not given."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of train_file held out for model selection (9:1 by default)."}
    )
    split_seed: int = field(
        default=42, metadata={"help": "Seed of the train/validation split (kept fixed while tuning)."}
    )
    max_length: int = field(default=128, metadata={"help": "Token budget per pair; longer pairs are truncated."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training pairs after the split (quick runs, tests)."}
    )


@dataclass
class PipelineArguments:
    """What happens after fine-tuning: averaging, export, report and the model store."""

    average_top_k: int = field(
        default=0,
        metadata={"help": "Average the weights of the k best epoch checkpoints; kept only if validation improves."},
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many epochs without a better validation Pearson."}
    )
    export_onnx: bool = field(default=True, metadata={"help": "Export ONNX (float32 and int8) and check parity."})
    save_to_store: bool = field(default=True, metadata={"help": "Save the result into the BentoML model store."})
    model_name: str = field(default="ko-sts", metadata={"help": "Name of the model in the BentoML store."})
    save_dtype: str = field(
        default="float32", metadata={"help": "dtype of the saved PyTorch weights: float32, or float16 to halve them."}
    )


Arguments = tuple[ModelArguments, DataArguments, PipelineArguments, TrainingArguments]
_DATACLASSES = (ModelArguments, DataArguments, PipelineArguments, TrainingArguments)


def _finalise(arguments: Arguments) -> Arguments:
    """Applies what every run needs: per-epoch evaluation, selection on validation Pearson, bf16 on GPU."""
    model_args, data_args, pipeline, args = arguments
    if args.metric_for_best_model not in (None, SELECTION_METRIC):
        raise ValueError(
            f"metric_for_best_model must be {SELECTION_METRIC!r}: models are selected on the validation "
            "split of the training data, never on dev"
        )
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if args.bf16 and not bf16:
        logger.warning("bf16 needs a CUDA GPU with bfloat16 support; training in float32")
    # replace() runs TrainingArguments.__post_init__ again, which derives mixed precision etc.
    args = dataclasses.replace(
        args,
        eval_strategy="epoch",
        save_strategy="epoch",
        metric_for_best_model=SELECTION_METRIC,
        greater_is_better=True,
        load_best_model_at_end=True,
        label_names=["labels"],
        remove_unused_columns=False,  # the collator tokenises raw sentence columns
        dataloader_pin_memory=torch.cuda.is_available(),
        save_total_limit=None if pipeline.average_top_k > 1 else args.save_total_limit,
        bf16=bf16,
    )
    return model_args, data_args, pipeline, args


def parse_arguments(argv: list[str] | None = None) -> Arguments:
    """Parses ``--config FILE.yaml`` and any field flags; flags win over the file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(_DATACLASSES)
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
    return _finalise(HfArgumentParser(_DATACLASSES).parse_dict(values, allow_extra_keys=False))
