"""The pieces the Hugging Face ``Trainer`` needs for sentence-pair regression.

Pairs are tokenised once, when a dataset is built (the shared :class:`models.pairs.PairTokenizer`),
and only padded per batch. The selected epoch's weights are kept in memory
(:class:`SelectBestEpoch`) rather than written as checkpoints, and :class:`TimeLimit` ends a run
cleanly inside a time budget: both keep short runs (tuning trials) cheap. :class:`StopAfterEpoch`
ends one after a given epoch of a longer schedule.
"""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

from models.pairs import EncodedRows, PairTokenizer
from models.scoring import MAX_SCORE, ScoreSettings
from training.contrast import MINIMAL_PAIR_METRIC, TRIPLE_SENTENCES, minimal_pair_score
from training.data import with_swapped_pairs
from training.metrics import sts_metrics

logger = logging.getLogger("training")

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")
MARGIN_ROWS, ORDER_ROWS = "margin_rows", "order_rows"  # the collator's keys for paired rows (PairDataset)
PAIRED_ROWS = (MARGIN_ROWS, ORDER_ROWS)


class PairDataset(Dataset):
    """Tokenised sentence pairs with float labels: items ``pair`` (the item's rows, an
    :class:`~models.pairs.EncodedRows`), ``input_ids`` (their ids, which ``group_by_length``
    measures) and ``labels`` (one per row).

    An item is one pair, or with ``rows_per_item`` > 1 rows whose first half the collator pairs with their second
    half under the key ``paired``: ``margin_rows`` for a minimal-pair triple (:func:`triple_dataset`: the first
    half should score above the second), ``order_rows`` for one pair in both orders (:func:`pair_dataset` with
    ``orders_together``: both should score the same).
    """

    def __init__(self, pairs: EncodedRows, labels: np.ndarray, rows_per_item: int = 1, paired: str | None = None):
        if len(pairs) != len(labels) or len(labels) % rows_per_item:
            raise ValueError(f"{len(pairs)} pairs for {len(labels)} labels in items of {rows_per_item} rows")
        if (rows_per_item > 1) != (paired in PAIRED_ROWS):
            raise ValueError(f"items of {rows_per_item} rows need paired in {PAIRED_ROWS}, got {paired!r}")
        self.pairs = pairs
        self.labels = np.asarray(labels, dtype=np.float32)
        self.rows_per_item = rows_per_item
        self.paired = paired

    def __len__(self) -> int:
        return len(self.labels) // self.rows_per_item

    def __getitem__(self, index: int) -> dict:
        rows = slice(index * self.rows_per_item, (index + 1) * self.rows_per_item)
        pair = self.pairs[rows]
        item = {"pair": pair, "input_ids": pair.ids, "labels": self.labels[rows].tolist()}
        if self.paired:
            item["paired"] = self.paired
        return item


def pair_tokenizer(tokenizer: PreTrainedTokenizerBase, max_length: int) -> PairTokenizer:
    """The serving :class:`~models.pairs.PairTokenizer` over a copy of a transformers tokenizer's Rust backend.

    ``save_pretrained`` writes that backend as ``tokenizer.json``, which serving loads: training
    and serving tokenise with the same code and the same vocabulary.
    """
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    return PairTokenizer(backend, max_length, tokenizer.pad_token_id)


class PairCollator:
    """Pads a batch of pre-tokenised pairs with the shared :class:`models.pairs.PairTokenizer`.

    Args:
        tokenizer: the pair tokenizer (its ``pad``).
        input_names: the inputs the model's ``forward`` takes (see :func:`models.backends.accepted_inputs`).
    """

    def __init__(self, tokenizer: PairTokenizer, input_names: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.input_names = input_names

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        arrays = self.tokenizer.pad(EncodedRows.concat([f["pair"] for f in features]))
        batch = {name: torch.from_numpy(arrays[name]) for name in self.input_names}
        batch["labels"] = torch.tensor([label for f in features for label in f["labels"]], dtype=torch.float32)
        paired: dict[str, list[tuple[int, int]]] = {}  # margin_rows: (higher, lower); order_rows: (a, b), (b, a)
        start = 0
        for feature in features:
            rows = len(feature["labels"])
            if "paired" in feature:
                half = rows // 2
                paired.setdefault(feature["paired"], []).extend((start + i, start + half + i) for i in range(half))
            start += rows
        batch |= {key: torch.tensor(rows, dtype=torch.long) for key, rows in paired.items()}
        return batch


def pair_dataset(
    frame: pd.DataFrame,
    settings: ScoreSettings,
    tokenizer: PairTokenizer,
    training: bool = False,
    orders_together: bool = False,
) -> PairDataset:
    """Pairs, tokenised: to train on (a symmetric model, ``average`` or ``canonical``, trains on both orders) or,
    by default, to score as the service does (:meth:`models.scoring.ScoreSettings.order`).

    ``orders_together`` (training a symmetric model): one item per pair holding both its orders, paired as
    ``order_rows`` for the order-consistency term; otherwise each order is an item of its own.
    """
    if training and orders_together:
        if not settings.symmetric:
            raise ValueError("orders_together needs a symmetric model: one order per pair has nothing to pair")
        first = [x for a, b in zip(frame["sentence1"], frame["sentence2"]) for x in (a, b)]
        second = [x for a, b in zip(frame["sentence1"], frame["sentence2"]) for x in (b, a)]
        labels = np.repeat(frame["label"].to_numpy(), 2)
        return PairDataset(tokenizer.encode(first, second), labels, rows_per_item=2, paired=ORDER_ROWS)
    if training:
        rows = with_swapped_pairs(frame) if settings.symmetric else frame
        encoded = tokenizer.encode(rows["sentence1"].tolist(), rows["sentence2"].tolist())
        return PairDataset(encoded, rows["label"].to_numpy())
    first, second = settings.order(frame["sentence1"].tolist(), frame["sentence2"].tolist())
    labels = np.tile(frame["label"].to_numpy(), settings.rows_per_pair)
    return PairDataset(tokenizer.encode(first, second), labels)


def triple_dataset(triples: pd.DataFrame, settings: ScoreSettings, tokenizer: PairTokenizer) -> PairDataset:
    """Minimal-pair triples to train on: one item per triple holding its (anchor, preserving) rows, then its
    (anchor, changing) rows (both orders each for a symmetric model), labelled per row."""
    anchors, preserving, changing = (triples[c].tolist() for c in TRIPLE_SENTENCES)
    if settings.symmetric:
        first = [x for a, p, c in zip(anchors, preserving, changing) for x in (a, p, a, c)]
        second = [x for a, p, c in zip(anchors, preserving, changing) for x in (p, a, c, a)]
    else:
        first = [x for a in anchors for x in (a, a)]
        second = [x for p, c in zip(preserving, changing) for x in (p, c)]
    half = len(first) // len(triples) // 2
    labels = np.repeat(np.stack([triples["preserving_label"], triples["changing_label"]], axis=1), half, axis=1)
    return PairDataset(tokenizer.encode(first, second), labels.reshape(-1), rows_per_item=2 * half, paired=MARGIN_ROWS)


def served_scores(settings: ScoreSettings, logits: np.ndarray) -> np.ndarray:
    """Trainer predictions on a :func:`pair_dataset` -> one served score per pair."""
    return settings.scores_from_rows(logits)


def bce_loss(outputs, labels: torch.Tensor, num_items_in_batch: int | None = None) -> torch.Tensor:
    """Binary cross-entropy on labels scaled to 0-1 (the sentence-transformers STS recipe)."""
    logits = outputs["logits"].squeeze(-1).float()
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float() / MAX_SCORE)


def order_loss(unit_scores: torch.Tensor, order_rows: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the 0-1 scores of ``order_rows``' pairs of rows (one pair, both orders)."""
    return torch.nn.functional.mse_loss(unit_scores[order_rows[:, 0]], unit_scores[order_rows[:, 1]])


def margin_loss(unit_scores: torch.Tensor, margin_rows: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge ``max(0, margin - (higher - lower))`` over ``margin_rows`` pairs of row indices (0-1 scores)."""
    higher, lower = unit_scores[margin_rows[:, 0]], unit_scores[margin_rows[:, 1]]
    return torch.nn.functional.relu(margin - (higher - lower)).mean()


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
    """``Trainer`` for pair regression: served-score metrics, layer-wise learning-rate decay, R-Drop.

    Metrics are computed on served scores (the settings' symmetry: both orders averaged, or canonical); during
    training the scores of every evaluation set are kept per epoch in :attr:`epoch_scores`
    (``{set: [scores of epoch 1, ...]}``) for later analysis (``research.selection``). After each
    evaluation of all sets, the weighted selection score is logged as ``eval_selection`` and
    passed to the callbacks.

    Args:
        settings: how logits become scores.
        selection_weights: ``{(set, metric): weight}`` of the selection score.
        minimal_pairs: evaluation sets of minimal-pair triples (:func:`training.contrast.minimal_pair_frame`,
            by name): their metrics also hold ``minimal_pair_accuracy``.
        objective: ``mse`` or ``bce`` (the loss on R-Drop's two passes).
        layerwise_lr_decay: learning-rate factor per layer below the head.
        rdrop_alpha: weight of R-Drop's consistency term (0 = off).
        margin_weight: weight of the minimal-pair margin term on batches with triples (0 = off).
        margin: the margin, on 0-1 scores.
        order_weight: weight of the order-consistency term on batches with pairs in both orders (0 = off).
    """

    def __init__(
        self,
        *args,
        settings: ScoreSettings,
        selection_weights: dict[tuple[str, str], float] | None = None,
        minimal_pairs: dict[str, pd.DataFrame] | None = None,
        objective: str = "mse",
        layerwise_lr_decay: float = 1.0,
        rdrop_alpha: float = 0.0,
        margin_weight: float = 0.0,
        margin: float = 0.2,
        order_weight: float = 0.0,
        **kwargs,
    ):
        self.settings = settings
        self.selection_weights = selection_weights or {("validation", "pearson"): 1.0}
        self.minimal_pairs = minimal_pairs or {}
        self.objective = objective
        self.layerwise_lr_decay = layerwise_lr_decay
        self.rdrop_alpha = rdrop_alpha
        self.margin_weight = margin_weight
        self.margin = margin
        self.order_weight = order_weight
        self.epoch_scores: dict[str, list[np.ndarray]] = {}
        self._metric_prefix = "eval"
        kwargs.setdefault("compute_loss_func", bce_loss if objective == "bce" else None)
        super().__init__(*args, compute_metrics=self._compute_metrics, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        # a dict of sets comes back here once per set, with the set's name in the prefix
        self._metric_prefix = metric_key_prefix
        metrics = super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        keys = {f"{metric_key_prefix}_{s}_{m}": w for (s, m), w in self.selection_weights.items()}
        if eval_dataset is None and all(key in metrics for key in keys):  # every set of this epoch
            score = {f"{metric_key_prefix}_selection": float(sum(metrics[k] * w for k, w in keys.items()))}
            metrics.update(score)
            self.log(score)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, score)
        return metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        self._metric_prefix = metric_key_prefix
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def _compute_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        scores = served_scores(self.settings, prediction.predictions)
        labels = np.asarray(prediction.label_ids, dtype=np.float64).reshape(-1)[: len(scores)]
        if self._metric_prefix.startswith("eval_"):  # an evaluation during training
            self.epoch_scores.setdefault(self._metric_prefix.removeprefix("eval_"), []).append(
                scores.astype(np.float32)
            )
        metrics = sts_metrics(scores, labels)
        frame = self.minimal_pairs.get(self._metric_prefix.removeprefix("eval_"))
        if frame is not None and len(frame) == len(scores):
            metrics[MINIMAL_PAIR_METRIC] = minimal_pair_score(frame, scores)
        return metrics

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        margin_rows, order_rows = inputs.pop(MARGIN_ROWS, None), inputs.pop(ORDER_ROWS, None)
        use_margin = bool(self.margin_weight) and margin_rows is not None
        use_order = bool(self.order_weight) and order_rows is not None
        if not (use_margin or use_order) or not model.training:
            return self._pair_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = self._pair_loss(model, inputs, True, num_items_in_batch)
        unit = self._unit_scores(outputs["logits"].squeeze(-1).float())
        if use_margin:
            loss = loss + self.margin_weight * margin_loss(unit, margin_rows, self.margin)
        if use_order:
            loss = loss + self.order_weight * order_loss(unit, order_rows)
        return (loss, outputs) if return_outputs else loss

    def _unit_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.objective == "bce" else logits / MAX_SCORE

    def _pair_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The regression loss (with R-Drop's term when it is on)."""
        if self.rdrop_alpha == 0 or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels").float()
        outputs = model(**{name: torch.cat([tensor, tensor]) for name, tensor in inputs.items()})
        first, second = outputs["logits"].squeeze(-1).float().chunk(2)
        if self.objective == "bce":
            task = sum(
                torch.nn.functional.binary_cross_entropy_with_logits(x, labels / MAX_SCORE) for x in (first, second)
            )
        else:
            task = sum(torch.nn.functional.mse_loss(x, labels) for x in (first, second))
        unit = self._unit_scores(first), self._unit_scores(second)
        loss = task / 2 + self.rdrop_alpha * torch.nn.functional.mse_loss(*unit)
        return (loss, {"logits": first.unsqueeze(-1)}) if return_outputs else loss

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


class SelectBestEpoch(TrainerCallback):
    """Keeps the weights of the ``keep`` best epochs in memory and loads the best one when training ends.

    Replaces ``load_best_model_at_end`` without checkpoint files; with ``patience`` it also stops
    training after that many evaluations without a better score.

    Args:
        metric: the selection score as logged during training, ``eval_selection``.
        keep: how many of the best epochs' weights to keep (``average_top_k``).
        patience: early-stopping patience in epochs, or None.
    """

    def __init__(self, metric: str, keep: int = 1, patience: int | None = None):
        self.metric = metric
        self.keep = max(1, keep)
        self.patience = patience
        self.best: list[tuple[float, float, dict[str, torch.Tensor]]] = []  # (score, epoch, weights), best first
        self.scores: list[tuple[float, float]] = []  # (epoch, score) of every evaluation
        self._waited = 0

    @property
    def best_epoch(self) -> float | None:
        return self.best[0][1] if self.best else None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.metric not in metrics:
            return
        score, epoch = float(metrics[self.metric]), float(state.epoch)
        self.scores.append((epoch, score))
        improved = not self.best or score > self.best[0][0]
        if len(self.best) < self.keep or score > self.best[-1][0]:
            weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
            self.best = sorted([*self.best, (score, epoch, weights)], key=lambda entry: -entry[0])[: self.keep]
        self._waited = 0 if improved else self._waited + 1
        if self.patience and self._waited >= self.patience:
            logger.info("early stopping: %d epochs without a better %s", self._waited, self.metric)
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.best:
            model.load_state_dict(self.best[0][2])


class TimeLimit(TrainerCallback):
    """Stops training after the epoch at which one more epoch would end past ``stop_at`` (Unix time)."""

    def __init__(self, stop_at: float):
        self.stop_at = stop_at
        self._epoch_started = time.time()
        self.stopped = False

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_started = time.time()

    def on_epoch_end(self, args, state, control, **kwargs):
        now = time.time()
        if now + 1.1 * (now - self._epoch_started) > self.stop_at and not control.should_training_stop:
            logger.warning("time budget: stopping after epoch %.0f (the best epoch so far is kept)", state.epoch)
            control.should_training_stop = True
            self.stopped = True


class StopAfterEpoch(TrainerCallback):
    """Stops training after epoch ``epoch``; the learning-rate schedule stays that of ``num_train_epochs``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.epoch >= self.epoch and not control.should_training_stop:
            logger.info("stop_after_epoch: stopping after epoch %.0f of %g", state.epoch, args.num_train_epochs)
            control.should_training_stop = True
