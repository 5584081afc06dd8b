"""The serving engine: one bounded, deadline-aware queue in front of one scorer, shared by all protocols.

Requests are tokenised on a small thread pool as they arrive (``encode_batch`` runs outside the
GIL), then queued. One worker thread owns the model: whenever it is free it takes every queued
request, up to a round's token budget, in arrival order, sorts their rows by length, cuts them
into forward passes by ``max_batch_tokens`` and answers each request with its own scores. There
is no timer: a lone request starts at once, and under load batches grow by themselves while the
previous round runs (continuous batching, as text-embeddings-inference does). An optional
``batch_wait_ms`` trades latency for fuller batches.

Bounds: at most ``max_queued_pairs`` pairs wait (more is refused at once with
:class:`~serving.errors.Overloaded`; a request larger than the bound is taken only into an empty
queue); a request that waited ``queue_timeout_ms`` without starting is refused with
:class:`~serving.errors.QueueTimeout` at that moment, even while a round runs; a caller's own
deadline drops its work with :class:`~serving.errors.DeadlineExceeded`; work whose caller has
gone (a cancelled future) is skipped. HTTP and gRPC both call :meth:`ScoringEngine.score`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.pairs import EncodedPair
from models.scorer import Pair, Scorer
from serving.errors import DeadlineExceeded, Overloaded, QueueTimeout, ServiceError, Unavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """Queueing and batching settings (the service reads them from ``KO_STS_*`` variables).

    Args:
        batching: merge queued requests into shared forward passes; ``False`` runs each request
            on its own (for comparison).
        batch_wait_ms: how long a free worker waits for more requests before a round (0: none).
        max_round_tokens: most (unpadded) tokens taken from the queue for one round; the round
            is then cut into passes of ``Scorer.limits``. ``None``: four passes' worth.
        max_queued_pairs: most pairs waiting; beyond it new requests are refused (overload).
        queue_timeout_ms: a request not started within this time is refused (and not computed).
        tokenizer_threads: threads tokenising incoming requests.
    """

    batching: bool = True
    batch_wait_ms: float = 0.0
    max_round_tokens: int | None = None
    max_queued_pairs: int = 4096
    queue_timeout_ms: float = 2000.0
    tokenizer_threads: int = 2


class EngineObserver(Protocol):
    """Receives timings for metrics (the service records them as Prometheus histograms)."""

    def request_done(self, pairs: int, tokenize_s: float, queue_s: float, inference_s: float) -> None:
        """One request answered: how long it spent tokenising, queued and in its round."""

    def round_done(self, pairs: int, rows: int, tokens: int, padded_tokens: int, passes: int) -> None:
        """One round of forward passes finished."""

    def queue_changed(self, queued_pairs: int) -> None:
        """The number of pairs waiting changed."""

    def request_refused(self, reason: str) -> None:
        """A request was refused (``overloaded``, ``queue_timeout``, ``deadline``) or dropped (``cancelled``)."""


@dataclass(frozen=True)
class Scored:
    """The engine's answer to one request: a score per pair and whether its tokens were truncated."""

    scores: np.ndarray
    truncated: np.ndarray


@dataclass(eq=False)
class _Job:
    pairs: int
    rows: list[EncodedPair]
    future: Future
    enqueued: float
    deadline: float
    refusal: type[ServiceError]
    tokenize_s: float
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(len(row) for row in self.rows)


class ScoringEngine:
    """Owns the queue and the worker thread in front of a :class:`~models.scorer.Scorer`.

    Use :meth:`score` from asyncio code (the services) or :meth:`score_blocking` from threads;
    call :meth:`close` to stop (waiting requests are refused as unavailable).
    """

    def __init__(self, scorer: Scorer, settings: EngineSettings, observer: EngineObserver | None = None):
        self.scorer = scorer
        self.settings = settings
        self.observer = observer
        self.max_round_tokens = settings.max_round_tokens or 4 * scorer.limits.max_batch_tokens
        self._queue: deque[_Job] = deque()
        self._queued_pairs = 0
        self._condition = threading.Condition()
        self._closed = False
        self._tokenizers = ThreadPoolExecutor(settings.tokenizer_threads, thread_name_prefix="ko-sts-tokenize")
        self._worker = threading.Thread(target=self._run, name="ko-sts-engine", daemon=True)
        self._worker.start()

    @property
    def queued_pairs(self) -> int:
        """Pairs waiting for the worker."""
        return self._queued_pairs

    async def score(self, pairs: Sequence[Pair], timeout_s: float | None = None) -> Scored:
        """Scores pairs through the queue; ``timeout_s`` is the caller's own deadline, if any."""
        started = time.monotonic()
        self._admit(len(pairs))
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._tokenizers, self.scorer.encode, pairs)
        job = self._enqueue(len(pairs), rows, started, timeout_s)
        answer = asyncio.wrap_future(job.future)
        try:
            done, _ = await asyncio.wait({answer}, timeout=_time_left(job))
        except asyncio.CancelledError:  # the caller went away: the worker skips the job
            answer.cancel()
            raise
        if not done:
            self._withdraw(job)
        return await answer

    def score_blocking(self, pairs: Sequence[Pair], timeout_s: float | None = None) -> Scored:
        """Scores pairs through the queue from a plain thread (tokenises in the calling thread)."""
        started = time.monotonic()
        self._admit(len(pairs))
        job = self._enqueue(len(pairs), self.scorer.encode(pairs), started, timeout_s)
        try:
            return job.future.result(timeout=_time_left(job))
        except TimeoutError:
            self._withdraw(job)
            return job.future.result()

    def close(self) -> None:
        """Stops the worker; requests still waiting are refused."""
        with self._condition:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._queued_pairs = 0
            self._condition.notify_all()
        for job in waiting:
            _fail(job.future, Unavailable("the service is shutting down; retry on another replica"))
        self._worker.join(timeout=30)
        self._tokenizers.shutdown(wait=False, cancel_futures=True)

    def _admit(self, pairs: int) -> None:
        if self._closed:
            raise Unavailable("the service is shutting down; retry on another replica")
        if self._queued_pairs and self._queued_pairs + pairs > self.settings.max_queued_pairs:
            self._refused("overloaded")
            raise Overloaded(
                f"the queue holds {self._queued_pairs} pairs and takes at most {self.settings.max_queued_pairs}; "
                "retry later with backoff or add replicas",
                retry_after_s=1.0,
            )

    def _enqueue(self, pairs: int, rows: list[EncodedPair], started: float, timeout_s: float | None) -> _Job:
        now = time.monotonic()
        queue_deadline = now + self.settings.queue_timeout_ms / 1000.0
        client_deadline = started + timeout_s if timeout_s is not None else float("inf")
        refusal = DeadlineExceeded if client_deadline < queue_deadline else QueueTimeout
        job = _Job(
            pairs=pairs,
            rows=rows,
            future=Future(),
            enqueued=now,
            deadline=min(queue_deadline, client_deadline),
            refusal=refusal,
            tokenize_s=now - started,
        )
        with self._condition:
            self._admit(pairs)
            self._queue.append(job)
            self._queued_pairs += pairs
            self._condition.notify()
        self._queue_changed()
        return job

    def _withdraw(self, job: _Job) -> None:
        """Refuses a job whose deadline passed while it waited, at once (not when the current round ends).

        A job the worker has already taken is left to finish.
        """
        with self._condition:
            if job not in self._queue:
                return
            self._queue.remove(job)
            self._queued_pairs -= job.pairs
        self._queue_changed()
        self._expire(job, time.monotonic())

    def _take_round(self) -> list[_Job]:
        """Waits for work, then takes queued jobs in arrival order up to the round's token budget."""
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if self._closed:
                return []
            if self.settings.batch_wait_ms > 0:
                end = time.monotonic() + self.settings.batch_wait_ms / 1000.0
                while sum(j.tokens for j in self._queue) < self.max_round_tokens and not self._closed:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(left)
            taken: list[_Job] = []
            tokens = 0
            while self._queue:
                job = self._queue[0]
                if taken and (not self.settings.batching or tokens + job.tokens > self.max_round_tokens):
                    break
                self._queue.popleft()
                self._queued_pairs -= job.pairs
                taken.append(job)
                tokens += job.tokens
        self._queue_changed()
        return taken

    def _run(self) -> None:
        while not self._closed:
            jobs = self._live(self._take_round())
            if not jobs:
                continue
            started = time.monotonic()
            rows = [row for job in jobs for row in job.rows]
            try:
                logits, passes = self.scorer.forward(rows)
            except Exception as error:  # a broken batch must not kill the worker
                logger.exception("forward pass over %d rows failed", len(rows))
                for job in jobs:
                    _fail(job.future, error)
                continue
            finished = time.monotonic()
            offset = 0
            for job in jobs:
                scores = self.scorer.to_scores(logits[offset : offset + len(job.rows)])
                offset += len(job.rows)
                job.future.set_result(Scored(scores, self.scorer.truncated(job.rows)))
                if self.observer:
                    self.observer.request_done(job.pairs, job.tokenize_s, started - job.enqueued, finished - started)
            if self.observer:
                lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
                padded = sum(len(p) * self.scorer.limits.padded(int(lengths[p].max())) for p in passes)
                pairs = sum(job.pairs for job in jobs)
                self.observer.round_done(pairs, len(rows), int(lengths.sum()), padded, len(passes))

    def _live(self, jobs: list[_Job]) -> list[_Job]:
        """Drops jobs whose caller has gone and refuses those past their deadline."""
        now = time.monotonic()
        live = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                self._refused("cancelled")
            elif now > job.deadline:
                self._expire(job, now)
            else:
                live.append(job)
        return live

    def _expire(self, job: _Job, now: float) -> None:
        """Fails a job that did not start before its deadline (the queue's or its caller's)."""
        if job.refusal is QueueTimeout:
            message = (
                f"waited {(now - job.enqueued) * 1000:.0f} ms in the queue without starting (limit "
                f"{self.settings.queue_timeout_ms:.0f} ms); the service is overloaded, retry later"
            )
            self._refused("queue_timeout")
            _fail(job.future, QueueTimeout(message, retry_after_s=1.0))
        else:
            self._refused("deadline")
            _fail(job.future, DeadlineExceeded("the request's deadline passed before it could be scored"))

    def _queue_changed(self) -> None:
        if self.observer:
            self.observer.queue_changed(self._queued_pairs)

    def _refused(self, reason: str) -> None:
        if self.observer:
            self.observer.request_refused(reason)


def _time_left(job: _Job) -> float:
    """Seconds until the job's deadline."""
    return max(0.0, job.deadline - time.monotonic())


def _fail(future: Future, error: BaseException) -> None:
    """Fails a future unless its caller has already cancelled it."""
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass
