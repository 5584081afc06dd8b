"""The pieces the Hugging Face ``Trainer`` needs for sentence-pair regression."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer

from models.cross_encoder import MAX_SCORE, ScoreSettings
from models.pairs import encode_pairs
from training.data import with_swapped_pairs
from training.metrics import sts_metrics

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


class PairDataset(Dataset):
    """Sentence pairs with float labels, as dicts for :class:`PairCollator`."""

    def __init__(self, pairs: pd.DataFrame):
        self.first = pairs["sentence1"].tolist()
        self.second = pairs["sentence2"].tolist()
        self.labels = pairs["label"].astype(np.float32).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"sentence1": self.first[index], "sentence2": self.second[index], "label": self.labels[index]}


class PairCollator:
    """Tokenises a batch of pairs with the shared :func:`models.pairs.encode_pairs`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = encode_pairs(
            self.tokenizer,
            [f["sentence1"] for f in features],
            [f["sentence2"] for f in features],
            max_length=self.max_length,
        )
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        return dict(batch)


def pair_dataset(frame: pd.DataFrame, settings: ScoreSettings) -> PairDataset:
    """Pairs as the model trains on and is scored on them: with ``settings.symmetric``, both orders."""
    return PairDataset(with_swapped_pairs(frame) if settings.symmetric else frame)


def served_scores(settings: ScoreSettings, logits: np.ndarray) -> np.ndarray:
    """Trainer predictions on a :func:`pair_dataset` -> one served score per pair."""
    scores = settings.to_scores(logits)
    if settings.symmetric:
        half = len(scores) // 2
        scores = (scores[:half] + scores[half:]) / 2.0
    return scores


def metrics_function(settings: ScoreSettings) -> Callable[[EvalPrediction], dict[str, float]]:
    """``compute_metrics`` for the Trainer: logits -> served scores -> Pearson, Spearman, F1."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        scores = served_scores(settings, prediction.predictions)
        labels = np.asarray(prediction.label_ids, dtype=np.float64).reshape(-1)[: len(scores)]
        return sts_metrics(scores, labels)

    return compute


def bce_loss(outputs, labels: torch.Tensor, num_items_in_batch: int | None = None) -> torch.Tensor:
    """Binary cross-entropy on labels scaled to 0-1 (the sentence-transformers STS recipe)."""
    logits = outputs["logits"].squeeze(-1).float()
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float() / MAX_SCORE)


def layerwise_parameter_groups(
    model: PreTrainedModel, learning_rate: float, weight_decay: float, decay: float, no_decay: set[str]
) -> list[dict]:
    """Parameter groups whose learning rate shrinks by ``decay`` per layer below the head.

    Embeddings get ``decay ** (L + 1)``, transformer layer ``i`` gets ``decay ** (L - i)`` and
    everything above the encoder (pooler, head) the full rate, for ``L`` hidden layers.
    """
    config = getattr(model.config, "encoder", model.config)
    num_layers = config.num_hidden_layers
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        match = _LAYER_INDEX.search(name)
        if match:
            depth = num_layers - int(match.group(1))
        elif "embeddings" in name:
            depth = num_layers + 1
        else:
            depth = 0
        key = (learning_rate * decay**depth, 0.0 if name in no_decay else weight_decay)
        groups.setdefault(key, []).append(parameter)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


class StsTrainer(Trainer):
    """``Trainer`` with optional layer-wise learning-rate decay."""

    def __init__(self, *args, layerwise_lr_decay: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.layerwise_lr_decay = layerwise_lr_decay

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.layerwise_lr_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        decay_names = set(self.get_decay_parameter_names(model))
        no_decay = {name for name, _ in model.named_parameters() if name not in decay_names}
        groups = layerwise_parameter_groups(
            model, self.args.learning_rate, self.args.weight_decay, self.layerwise_lr_decay, no_decay
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
