"""The front's scoring path: pairs -> tokenised rows (a small thread pool) -> an engine -> scores.

HTTP and gRPC both call :meth:`Frontend.score`. The rows go to a :class:`RowScorer`: the engine
in this process (the CPU deployment), or the GPU owner's engine over the link
(:class:`serving.link.LinkClient`). Tokenising runs in the front, beside HTTP parsing, so that
the process that owns the GPU does nothing but GPU work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.pairs import EncodedRows
from models.scorer import Pair, PairCodec
from serving.engine import SHUTTING_DOWN
from serving.errors import Unavailable


@dataclass(frozen=True)
class Scored:
    """The answer to one request: a score per pair and whether its tokens were truncated."""

    scores: np.ndarray
    truncated: np.ndarray


class RowScorer(Protocol):
    """Where a front's rows are scored: :class:`serving.engine.ScoringEngine` or :class:`serving.link.LinkClient`."""

    async def logits(
        self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None
    ) -> np.ndarray:
        """One logit per row; ``timeout_s`` is the caller's deadline counted from ``arrived``."""

    def admit(self) -> None:
        """Raises the refusal (429, 503) that any request would meet now, before it is tokenised."""

    def close(self) -> None:
        """Stops; work in flight is refused as unavailable (may block: the front calls it from a thread)."""


class TokenizerObserver(Protocol):
    def tokenized(self, seconds: float) -> None:
        """A request was tokenised in ``seconds``."""


INLINE_PAIRS = 4  # requests this small are tokenised on the event loop (0.1 ms a pair): no thread hop there and back


class Frontend:
    """Scores requests' pairs: tokenises them (off the event loop unless few), scores their rows, maps logits to scores.

    Args:
        codec: the model package's tokenizer and score settings.
        rows: the engine that scores the rows.
        tokenizer_threads: threads tokenising requests (``encode_batch_fast`` runs outside the GIL).
        owns_rows: :meth:`close` closes ``rows`` too (not when they belong to another service instance).
    """

    def __init__(
        self,
        codec: PairCodec,
        rows: RowScorer,
        tokenizer_threads: int = 2,
        observer: TokenizerObserver | None = None,
        owns_rows: bool = True,
    ):
        self.codec = codec
        self.rows = rows
        self.observer = observer
        self.owns_rows = owns_rows
        self._tokenizers = ThreadPoolExecutor(tokenizer_threads, thread_name_prefix="ko-sts-tokenize")
        self._closed = False

    async def score(self, pairs: Sequence[Pair], timeout_s: float | None = None) -> Scored:
        """Scores pairs; ``timeout_s`` is the caller's own deadline, if any."""
        arrived = time.monotonic()
        if self._closed:
            raise Unavailable(SHUTTING_DOWN)
        self.rows.admit()
        try:
            if len(pairs) <= INLINE_PAIRS:
                rows = self.codec.encode(pairs)
            else:
                rows = await asyncio.get_running_loop().run_in_executor(self._tokenizers, self.codec.encode, pairs)
        except (RuntimeError, asyncio.CancelledError) as error:
            # a request racing the shutdown: the pool refused it (RuntimeError) or dropped it while it waited
            # (its future cancelled, while this task itself was not)
            if not self._closed or asyncio.current_task().cancelling():
                raise
            raise Unavailable(SHUTTING_DOWN) from error
        if self.observer:
            self.observer.tokenized(time.monotonic() - arrived)
        logits = await self.rows.logits(rows, len(pairs), timeout_s, arrived)
        return Scored(self.codec.to_scores(logits), self.codec.truncated(rows))

    async def close(self) -> None:
        """Refuses new requests, fails waiting ones as unavailable, and stops, without blocking the event loop."""
        self._closed = True
        self._tokenizers.shutdown(wait=False, cancel_futures=True)
        if self.owns_rows:
            await asyncio.to_thread(self.rows.close)
