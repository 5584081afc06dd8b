"""One ``score(pairs)`` over any runtime: tokenise, cut forward passes by a token budget, map to scores.

Pairs are tokenised in one ``encode_batch`` call, sorted by token length and cut into forward
passes whose padded size (rows x longest row) stays within ``max_batch_tokens``, the way
text-embeddings-inference fills batches by ``max_batch_tokens``. A symmetric model's two
sentence orders are rows of the same passes. The serving engine (:mod:`serving.engine`) calls
the same pieces on the pairs of many requests at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.backends import Backend, Device, Pending, Runtime, TorchDtype, load_runtime
from models.pairs import EncodedPair, PairTokenizer
from models.scoring import ScoreSettings

logger = logging.getLogger(__name__)

Pair = tuple[str, str]


@dataclass(frozen=True)
class BatchLimits:
    """How forward passes are cut.

    Args:
        max_batch_tokens: most padded tokens (rows x padded length) in one pass.
        max_batch_rows: most rows (tokenised sequences) in one pass.
        length_bucket: rows are padded to a multiple of this many tokens, and only rows of the
            same padded length share a pass. A row is then computed on the same shape whatever
            its batch-mates, so its score cannot depend on them (float sums over padding change
            in the last bits, which int8 activation rounding can amplify), and a GPU sees few
            distinct shapes. 1 turns this off: a pass is padded to its longest row.
    """

    max_batch_tokens: int = 4096
    max_batch_rows: int = 256
    length_bucket: int = 16

    def __post_init__(self) -> None:
        if min(self.max_batch_tokens, self.max_batch_rows, self.length_bucket) < 1:
            raise ValueError("max_batch_tokens, max_batch_rows and length_bucket must be at least 1")

    def padded(self, length: int) -> int:
        """The length a row of ``length`` tokens is padded to."""
        return -(-length // self.length_bucket) * self.length_bucket


def plan_passes(lengths: np.ndarray, limits: BatchLimits) -> list[np.ndarray]:
    """Row indices of each forward pass: rows sorted by length, one padded length per pass, cut at the limits.

    A row longer than the token budget still gets a pass of its own.
    """
    order = np.argsort(lengths, kind="stable")
    passes: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        rows = end - start
        width = limits.padded(int(lengths[order[end - 1]]))
        bucketed = limits.length_bucket > 1 and rows > 1
        new_width = bucketed and width != limits.padded(int(lengths[order[end - 2]]))
        too_big = rows * width > limits.max_batch_tokens or rows > limits.max_batch_rows
        if (too_big or new_width) and rows > 1:
            passes.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        passes.append(order[start:])
    return passes


class Scorer:
    """Scores sentence pairs with a fine-tuned cross-encoder package.

    Args:
        runtime: the network (:func:`models.backends.load_runtime`).
        tokenizer: the package's pair tokenizer.
        settings: the package's score settings (``config.json``).
        limits: how forward passes are cut.
    """

    def __init__(self, runtime: Runtime, tokenizer: PairTokenizer, settings: ScoreSettings, limits: BatchLimits):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.settings = settings
        self.limits = limits

    @classmethod
    def for_package(
        cls,
        model_dir: str | Path,
        runtime: Runtime,
        limits: BatchLimits | None = None,
        symmetric: bool | None = None,
    ) -> Scorer:
        """The scorer of a model package over a loaded runtime.

        Args:
            symmetric: score both sentence orders (True) or only the given one (False); None keeps
                the model's own setting (``config.json``).
        """
        settings = ScoreSettings.from_model_dir(model_dir)
        if symmetric is not None:
            settings = replace(settings, symmetric=symmetric)
        limits = limits or BatchLimits()
        orders = "both orders" if settings.symmetric else "one order"
        logger.info("scorer: %s, %s, %s", runtime.description, limits, orders)
        return cls(runtime, PairTokenizer.from_dir(model_dir, settings.max_length), settings, limits)

    @property
    def device(self) -> str:
        """Where the network runs, e.g. ``cpu`` or ``cuda:0``."""
        return self.runtime.device

    @property
    def rows_per_pair(self) -> int:
        """Sequences the network runs per pair: 2 for a symmetric model (both orders), else 1."""
        return 2 if self.settings.symmetric else 1

    def encode(self, pairs: Sequence[Pair]) -> list[EncodedPair]:
        """Tokenised rows for the pairs: each pair as given, then (symmetric models) each swapped."""
        first = [pair[0] for pair in pairs]
        second = [pair[1] for pair in pairs]
        if self.settings.symmetric:
            first, second = first + second, second + first
        return self.tokenizer.encode(first, second)

    def forward(self, rows: Sequence[EncodedPair]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Raw logits for tokenised rows, in order, and the row indices of each forward pass.

        Each pass is launched before the previous one's logits are collected, so on a GPU the
        next batch is padded and copied while the current one computes.
        """
        logits = np.empty(len(rows), dtype=np.float32)
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        passes = plan_passes(lengths, self.limits)
        in_flight: tuple[np.ndarray, Pending] | None = None
        for indices in passes:
            batch = [rows[i] for i in indices]
            width = self.limits.padded(max(len(row) for row in batch))
            pending = self.runtime.launch(self.tokenizer.pad(batch, width))
            if in_flight is not None:
                logits[in_flight[0]] = in_flight[1]()
            in_flight = (indices, pending)
        if in_flight is not None:
            logits[in_flight[0]] = in_flight[1]()
        return logits, passes

    def truncated(self, rows: Sequence[EncodedPair]) -> np.ndarray:
        """Per pair of :meth:`encode`'s rows: whether either order was cut to ``max_length`` tokens."""
        flags = np.fromiter((row.truncated for row in rows), dtype=bool, count=len(rows))
        return flags.reshape(self.rows_per_pair, -1).any(axis=0)

    def to_scores(self, logits: np.ndarray) -> np.ndarray:
        """Logits of :meth:`encode`'s rows -> one served score per pair."""
        return self.settings.scores_from_rows(logits)

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Returns one similarity in [0, 5] per ``(sentence1, sentence2)`` pair, in order."""
        if not pairs:
            return np.empty(0, dtype=np.float64)
        return self.to_scores(self.forward(self.encode(pairs))[0])


def load_scorer(
    model_dir: str | Path,
    backend: Backend = "onnx",
    device: Device = "auto",
    onnx_file: str | None = None,
    limits: BatchLimits | None = None,
    threads: int = 0,
    dtype: TorchDtype = "auto",
) -> Scorer:
    """A :class:`Scorer` over a model package, on ONNX Runtime (default) or PyTorch."""
    runtime = load_runtime(model_dir, backend, device=device, onnx_file=onnx_file, threads=threads, dtype=dtype)
    return Scorer.for_package(model_dir, runtime, limits)
