"""Heal a base encoder: continued masked-language-model training on the recipe's own training sentences.

    python -m training.heal --config training/configs/me5-small-ko.yaml \\
        --model_name_or_path ../shared/models/me5-small-ko --output_dir outputs/bases/me5-small-ko-healed

me5-small-ko (``../shared/models/me5-small-ko``) is multilingual-e5-small rebuilt from 4-bit weights:
every linear layer and the word embeddings went through 4-bit rounding and were never trained
afterwards. Continued MLM training on Korean text lets the encoder repair that rounding before it is
fine-tuned for STS.

The text is every unique sentence of the pairs the recipe (``--config``) trains on: the training part
of ``train_file`` and its ``extra_train_files`` with held-out sentences dropped, exactly as
:func:`training.train.prepare_data` builds them, so validation, dev and the contrast sets are never
seen; ``--text_files`` adds plain-text files (one sentence per line). Training runs in two phases with
Hugging Face's ``Trainer`` and ``DataCollatorForLanguageModeling``: the MLM head (new: the base ships
none; its decoder is tied to the word embeddings) alone for ``--head_epochs``, then everything for
``--num_train_epochs``. The masked-token loss and accuracy on the recipe's validation sentences are
measured before and after and written with the settings to ``OUTPUT_DIR/heal.json``. The output
folder holds the encoder alone (``BertModel`` weights, the head dropped) and the tokenizer: pass it
as ``--model_name_or_path`` to ``training.train``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)

from training.arguments import parse_arguments, use_bf16
from training.base_model import require_base_model
from training.logs import configure_logging
from training.train import prepare_data

logger = logging.getLogger("training.heal")


@dataclass(frozen=True)
class HealSettings:
    """How long and how hard the encoder is trained; recorded in ``heal.json``."""

    num_train_epochs: float = 8.0
    head_epochs: float = 1.0
    learning_rate: float = 5e-5
    head_learning_rate: float = 5e-4
    batch_size: int = 128
    mlm_probability: float = 0.15
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 13


class SentenceDataset(Dataset):
    """Tokenised sentences (no special-pair handling: each sentence is one ``<s> ... </s>`` sequence)."""

    def __init__(self, sentences: list[str], tokenizer, max_length: int) -> None:
        encoded = tokenizer(sentences, truncation=True, max_length=max_length)
        self.items = [{"input_ids": ids} for ids in encoded["input_ids"]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def unique_sentences(*frames: pd.DataFrame) -> list[str]:
    """Every distinct non-empty sentence of the pair frames, in first-seen order."""
    seen: dict[str, None] = {}
    for frame in frames:
        for column in ("sentence1", "sentence2"):
            for sentence in frame[column]:
                if isinstance(sentence, str) and sentence.strip():
                    seen.setdefault(sentence.strip(), None)
    return list(seen)


def read_text_files(paths: list[Path]) -> list[str]:
    """Non-empty lines of plain-text files."""
    lines: list[str] = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"--text_files: {path} is not a file")
        lines.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return lines


def corpus(config: Path, text_files: list[Path]) -> tuple[list[str], list[str]]:
    """(training sentences, validation sentences) of a training recipe, plus ``text_files`` in training.

    Sentences of any held-out or evaluation set are removed from the training text, whatever their source.
    """
    _, data_args, _, _ = parse_arguments(["--config", str(config), "--output_dir", "unused"])
    data = prepare_data(data_args)
    validation = unique_sentences(data.validation)
    held_out = set(unique_sentences(*data.held_out.values(), *data.evaluation.values()))
    extra = read_text_files(text_files)
    train = list(dict.fromkeys(s for s in unique_sentences(data.train) + extra if s not in held_out))
    logger.info(
        "heal text: %d training sentences (%d lines of text files), %d validation sentences; %d held-out kept out",
        len(train),
        len(extra),
        len(validation),
        len(held_out),
    )
    return train, validation


def _arguments(output_dir: Path, settings: HealSettings, epochs: float, learning_rate: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size * 2,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        lr_scheduler_type="linear",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=use_bf16(None),
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )


def masked_accuracy(trainer: Trainer, dataset: Dataset, seed: int) -> dict[str, float]:
    """Masked-token loss and top-1 accuracy on ``dataset`` with a fixed masking seed (comparable before/after)."""
    set_seed(seed)
    predictions = trainer.predict(dataset)
    ids, labels = predictions.predictions, predictions.label_ids
    mask = labels != -100
    correct = (ids == labels)[mask]  # argmax ids already (_argmax_ids)
    return {
        "loss": float(predictions.metrics["test_loss"]),
        "accuracy": float(correct.mean()),
        "tokens": int(mask.sum()),
    }


def _argmax_ids(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keep argmax ids only: the full vocabulary logits of every token would not fit in host memory."""
    return logits.argmax(-1)


def heal(
    model_name_or_path: str,
    train_sentences: list[str],
    validation_sentences: list[str],
    output_dir: Path,
    settings: HealSettings,
) -> dict:
    """Trains the MLM head, then the whole encoder; saves the encoder and tokenizer; returns the report."""
    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    model: PreTrainedModel = AutoModelForMaskedLM.from_pretrained(model_name_or_path, dtype=torch.float32)
    model.tie_weights()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=settings.mlm_probability)
    train = SentenceDataset(train_sentences, tokenizer, settings.max_length)
    validation = SentenceDataset(validation_sentences, tokenizer, settings.max_length)
    base = model.base_model
    report: dict = {"base": model_name_or_path, "settings": settings.__dict__, "sentences": len(train_sentences)}
    report["tokens"] = int(sum(len(item["input_ids"]) for item in train.items))

    def trainer(epochs: float, learning_rate: float) -> Trainer:
        return Trainer(
            model=model,
            args=_arguments(output_dir, settings, epochs, learning_rate),
            train_dataset=train,
            data_collator=collator,
            preprocess_logits_for_metrics=_argmax_ids,
        )

    started = time.monotonic()
    base.requires_grad_(False)
    model.get_output_embeddings().requires_grad_(False)  # tied to the word embeddings: the encoder's
    head = trainer(settings.head_epochs, settings.head_learning_rate)
    report["before"] = masked_accuracy(head, validation, settings.seed)
    logger.info("before healing (validation sentences): %s", report["before"])
    if settings.head_epochs > 0:
        head.train()
        report["head_only"] = masked_accuracy(head, validation, settings.seed)
        logger.info("MLM head trained alone: %s", report["head_only"])
    model.requires_grad_(True)
    full = trainer(settings.num_train_epochs, settings.learning_rate)
    full.train()
    report["after"] = masked_accuracy(full, validation, settings.seed)
    report["minutes"] = round((time.monotonic() - started) / 60, 2)
    logger.info("after healing (validation sentences): %s; %.1f min", report["after"], report["minutes"])

    shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)  # save_strategy "no": only the Trainer's empty folder
    output_dir.mkdir(parents=True, exist_ok=True)
    base.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "heal.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> dict:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the training recipe whose sentences heal the base")
    parser.add_argument("--model_name_or_path", help="the base (default: the config's model_name_or_path)")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--text_files", type=Path, nargs="*", default=[], help="more text, one sentence per line")
    for name, value in HealSettings().__dict__.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = parser.parse_args(argv)
    settings = HealSettings(**{name: getattr(args, name) for name in HealSettings().__dict__})
    base = (
        args.model_name_or_path
        or parse_arguments(["--config", str(args.config), "--output_dir", "unused"])[0].model_name_or_path
    )
    require_base_model(base)
    train, validation = corpus(args.config, args.text_files)
    report = heal(base, train, validation, args.output_dir, settings)
    print(json.dumps({k: report[k] for k in ("before", "after", "minutes")}, indent=2))
    return report


if __name__ == "__main__":
    main()
