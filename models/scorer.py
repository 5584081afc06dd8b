"""One ``score(pairs)`` over any runtime: tokenise, cut forward passes by a token budget, map to scores.

Pairs are tokenised in one ``encode_batch_fast`` call into flat :class:`~models.pairs.EncodedRows`,
sorted by token length and cut into forward passes whose padded size (rows x padded length)
stays within ``max_batch_tokens``, the way text-embeddings-inference fills batches by
``max_batch_tokens``. A model that averages both sentence orders has both as rows of the same passes.
:class:`PairCodec` is the part without a network (pairs -> rows, logits -> scores): the serving
front processes use it alone, and :class:`Scorer` adds a runtime. The serving engine
(:mod:`serving.engine`) launches passes with :meth:`Scorer.launch_passes` too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.backends import (
    Backend,
    CpuActivations,
    Device,
    Pending,
    Runtime,
    TorchDtype,
    TorchRuntime,
    load_runtime,
)
from models.pairs import EncodedRows, PairTokenizer
from models.scoring import ScoreSettings, Symmetry, legacy_symmetry

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
PASSES_IN_FLIGHT = 2  # launched and not yet collected: the GPU runs one while the next is assembled
# Padded tokens per forward pass unless set (KO_STS_MAX_BATCH_TOKENS; the file scorer's --max-batch-tokens).
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}
DEFAULT_BATCH_ROWS = 1024
# CPU passes keep one padded length each (exact batch invariance); GPU passes mix lengths, padded to the longest
# (the rows are sorted, so little is padding) to a multiple of 8.
DEFAULT_LENGTH_BUCKET = {"cpu": 16, "cuda": 8}


@dataclass(frozen=True)
class BatchLimits:
    """How forward passes are cut.

    Args:
        max_batch_tokens: most padded tokens (rows x padded length) in one pass.
        max_batch_rows: most rows (tokenised sequences) in one pass.
        length_bucket: rows are padded to a multiple of this many tokens.
        mixed_lengths: rows of different padded lengths share a pass, padded to its longest (GPU).
            False keeps each pass to one padded length: a row is then computed on the same shape
            whatever its batch-mates, so its score cannot depend on them (float sums over padding
            change in the last bits, which int8 activation rounding can amplify).
    """

    max_batch_tokens: int = 4096
    max_batch_rows: int = 256
    length_bucket: int = 16
    mixed_lengths: bool = False

    def __post_init__(self) -> None:
        if min(self.max_batch_tokens, self.max_batch_rows, self.length_bucket) < 1:
            raise ValueError("max_batch_tokens, max_batch_rows and length_bucket must be at least 1")

    def padded(self, length: int | np.ndarray) -> int | np.ndarray:
        """The length a row of ``length`` tokens is padded to."""
        return -(-length // self.length_bucket) * self.length_bucket


def device_limits(
    device: str, max_batch_tokens: int | None = None, max_batch_rows: int = DEFAULT_BATCH_ROWS
) -> BatchLimits:
    """How the service cuts forward passes on ``device`` (``cpu``, ``cuda`` or ``cuda:N``); also the file scorer's."""
    key = defaults_key(device)
    return BatchLimits(
        max_batch_tokens=max_batch_tokens or DEFAULT_BATCH_TOKENS[key],
        max_batch_rows=max_batch_rows,
        length_bucket=DEFAULT_LENGTH_BUCKET[key],
        mixed_lengths=key == "cuda",
    )


def defaults_key(device: str | None) -> str:
    """Which column of the DEFAULT_* tables a runtime device takes: ``cpu``, else ``cuda`` (also when not known)."""
    return "cpu" if device == "cpu" else "cuda"


def plan_passes(lengths: np.ndarray, limits: BatchLimits) -> list[np.ndarray]:
    """Row indices of each forward pass: rows sorted by length and cut at the limits.

    A row longer than the token budget still gets a pass of its own.
    """
    order = np.argsort(lengths, kind="stable")
    widths = limits.padded(np.asarray(lengths, dtype=np.int64)[order])
    passes: list[np.ndarray] = []
    start = 0
    while start < len(order):
        window = widths[start : start + limits.max_batch_rows]
        if not limits.mixed_lengths:
            window = window[: np.searchsorted(window, window[0], side="right")]
        # padded tokens if the pass ended at each row: rising, since the rows are sorted by length
        tokens = np.arange(1, len(window) + 1) * window
        size = max(1, int(np.searchsorted(tokens, limits.max_batch_tokens, side="right")))
        passes.append(order[start : start + size])
        start += size
    return passes


class PairCodec:
    """Pairs -> tokenised rows and logits -> served scores: a model package's rules, without its network.

    Args:
        tokenizer: the package's pair tokenizer.
        settings: the package's score settings (``config.json``).
    """

    def __init__(self, tokenizer: PairTokenizer, settings: ScoreSettings):
        self.tokenizer = tokenizer
        self.settings = settings

    @classmethod
    def for_package(cls, model_dir: str | Path, symmetry: Symmetry | bool | None = None) -> PairCodec:
        """The codec of a model package.

        Args:
            symmetry: how sentence order is treated (:attr:`ScoreSettings.symmetry`: ``none``, ``average`` or
                ``canonical``; True/False, the former flag, mean ``average``/``none``); None keeps the model's own
                setting (``config.json``).
        """
        settings = ScoreSettings.from_model_dir(model_dir)
        if symmetry is not None:
            settings = replace(settings, symmetry=legacy_symmetry(symmetry) if isinstance(symmetry, bool) else symmetry)
        return cls(PairTokenizer.from_dir(model_dir, settings.max_length), settings)

    @property
    def rows_per_pair(self) -> int:
        """Sequences the network runs per pair: 2 when both orders are averaged, else 1."""
        return self.settings.rows_per_pair

    def encode(self, pairs: Sequence[Pair]) -> EncodedRows:
        """Tokenised rows for the pairs (:meth:`ScoreSettings.order`): as given, canonical, or both orders."""
        first, second = self.settings.order([pair[0] for pair in pairs], [pair[1] for pair in pairs])
        return self.tokenizer.encode(first, second)

    def truncated(self, rows: EncodedRows) -> np.ndarray:
        """Per pair of :meth:`encode`'s rows: whether any of its rows was cut to ``max_length`` tokens."""
        return rows.truncated.reshape(self.rows_per_pair, -1).any(axis=0)

    def to_scores(self, logits: np.ndarray) -> np.ndarray:
        """Logits of :meth:`encode`'s rows -> one served score per pair."""
        return self.settings.scores_from_rows(logits)


class Scorer(PairCodec):
    """Scores sentence pairs with a fine-tuned cross-encoder package.

    Args:
        runtime: the network (:func:`models.backends.load_runtime`).
        tokenizer: the package's pair tokenizer.
        settings: the package's score settings (``config.json``).
        limits: how forward passes are cut.
    """

    def __init__(self, runtime: Runtime, tokenizer: PairTokenizer, settings: ScoreSettings, limits: BatchLimits):
        super().__init__(tokenizer, settings)
        self.runtime = runtime
        self.limits = limits

    @classmethod
    def over(cls, codec: PairCodec, runtime: Runtime, limits: BatchLimits | None = None) -> Scorer:
        """A codec's scorer over a loaded runtime."""
        limits = limits or BatchLimits()
        orders = {"average": "both orders averaged", "canonical": "canonical order", "none": "order as given"}[
            codec.settings.symmetry
        ]
        logger.info("scorer: %s, %s, %s", runtime.description, limits, orders)
        return cls(runtime, codec.tokenizer, codec.settings, limits)

    @property
    def device(self) -> str:
        """Where the network runs, e.g. ``cpu`` or ``cuda:0``."""
        return self.runtime.device

    def launch_passes(self, rows: EncodedRows) -> Iterator[tuple[np.ndarray, Pending]]:
        """Launches the forward passes over ``rows`` one by one, as the caller asks for them.

        Yields each pass's row indices and what waits for its logits. A caller collects a pass
        before it has more than :data:`PASSES_IN_FLIGHT` uncollected, so that a GPU runs one
        pass while the next is padded and launched.
        """
        for indices in plan_passes(rows.lengths, self.limits):
            batch = rows[indices]
            width = int(self.limits.padded(int(batch.lengths.max())))
            yield indices, self.runtime.launch(batch, width, self.tokenizer.pad_id)

    def forward(self, rows: EncodedRows) -> np.ndarray:
        """Raw logits for tokenised rows, in order."""
        logits = np.empty(len(rows), dtype=np.float32)
        in_flight: list[tuple[np.ndarray, Pending]] = []
        for launched in self.launch_passes(rows):
            in_flight.append(launched)
            if len(in_flight) == PASSES_IN_FLIGHT:
                indices, pending = in_flight.pop(0)
                logits[indices] = pending()
        for indices, pending in in_flight:
            logits[indices] = pending()
        return logits

    def score(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Returns one similarity in [0, 5] per ``(sentence1, sentence2)`` pair, in order."""
        if not pairs:
            return np.empty(0, dtype=np.float64)
        return self.to_scores(self.forward(self.encode(pairs)))


def load_scorer(
    model_dir: str | Path,
    backend: Backend = "onnx",
    device: Device = "auto",
    onnx_file: str | None = None,
    limits: BatchLimits | None = None,
    threads: int = 0,
    dtype: TorchDtype = "auto",
    symmetry: Symmetry | bool | None = None,
    activations: CpuActivations = "int8",
) -> Scorer:
    """A :class:`Scorer` over a model package, on ONNX Runtime (default), OpenVINO or PyTorch (``activations``:
    OpenVINO's, :data:`~models.backends.CpuActivations`)."""
    runtime = load_runtime(
        model_dir, backend, device=device, onnx_file=onnx_file, threads=threads, dtype=dtype, activations=activations
    )
    return Scorer.over(PairCodec.for_package(model_dir, symmetry), runtime, limits)


def load_served_scorer(
    model_dir: str | Path,
    backend: Backend = "onnx",
    device: Device = "auto",
    onnx_file: str | None = None,
    threads: int = 0,
    dtype: TorchDtype = "auto",
    symmetry: Symmetry | bool | None = None,
    activations: CpuActivations = "int8",
    max_batch_tokens: int | None = None,
    max_batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Scorer:
    """The scorer the service builds (:meth:`serving.settings.Settings.scorer`): passes cut by :func:`device_limits`
    for the device the runtime landed on. The file scorer (:mod:`serving.files`) builds its own through here too.
    """
    runtime = load_runtime(
        model_dir, backend, device=device, onnx_file=onnx_file, threads=threads, dtype=dtype, activations=activations
    )
    codec = PairCodec.for_package(model_dir, symmetry)
    return Scorer.over(codec, runtime, device_limits(runtime.device, max_batch_tokens, max_batch_rows))


def compile_model(scorer: Scorer, enabled: bool = True) -> bool:
    """Compiles a scorer's PyTorch model where it runs on a GPU and ``enabled`` (``Settings.torch_compile``, the file
    command's ``--compile``) asks for it; where compiling fails, warns and leaves the model uncompiled (it scores the
    same, slower). Returns whether it compiled.
    """
    if not (enabled and isinstance(scorer.runtime, TorchRuntime) and scorer.device != "cpu"):
        return False
    compiling = time.monotonic()
    try:
        scorer.runtime.compile(scorer.tokenizer.pad_id)
    except Exception as error:  # any compiler failure: the uncompiled model serves the same scores
        logger.warning(
            "torch.compile failed (%s: %s); scoring with the model uncompiled, about 10-30%% slower. Install a C "
            "compiler (gcc) for Triton, or skip the attempt: KO_STS_TORCH_COMPILE=false for the service, "
            "--no-compile for ko-sts score",
            type(error).__name__,
            str(error).splitlines()[0][:300] if str(error) else "",
        )
        return False
    logger.info("compiled the model with torch.compile in %.1f s", time.monotonic() - compiling)
    return True


def plan_pass_graphs(scorer: Scorer) -> int:
    """Plans a CUDA graph of each full forward pass ``scorer``'s limits cut: one per padded width up to the model's
    ``max_length``, with as many rows as the token budget (and the row cap) allow. A full pass then replays its
    width's graph instead of launching hundreds of kernels one by one, which on PyTorch take about as long as the
    GPU's work on them (``ko-sts score``). Graphs are captured as passes come to need them
    (:meth:`~models.backends.TorchRuntime.plan_graphs`), so only the widths a file has cost a capture, and none
    runs ahead of the passes. Only a PyTorch runtime on a GPU plans any; returns how many graphs it planned.
    """
    if not (isinstance(scorer.runtime, TorchRuntime) and scorer.device != "cpu"):
        return 0
    limits = scorer.limits
    longest = int(limits.padded(scorer.settings.max_length))
    widths = range(limits.length_bucket, longest + 1, limits.length_bucket)
    shapes = [(min(limits.max_batch_rows, max(1, limits.max_batch_tokens // width)), width) for width in widths]
    scorer.runtime.plan_graphs(shapes, scorer.tokenizer.pad_id)
    return len(shapes)
