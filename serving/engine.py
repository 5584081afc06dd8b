"""The serving engine: one bounded, deadline-aware queue in front of one scorer, fed by every protocol.

Requests arrive as tokenised rows (:class:`~models.pairs.EncodedRows`, flat arrays) and wait in
arrival order. One worker thread owns the model: it takes queued rows up to a round's token
budget, sorts them by length, cuts them into forward passes by ``max_batch_tokens`` and
launches them, keeping one pass in flight while it collects the previous one, delivers its
logits and assembles the next round, so that a GPU is never drained between rounds (continuous
batching, as text-embeddings-inference does). There is no timer: a lone request starts at once,
and under load rounds grow by themselves while the previous one runs.

A request larger than a round is split across rounds: while other requests wait, one request
takes at most half a round, so single pairs keep flowing beside a 256-pair request on a CPU.

Admission is sized by time, not by a pair count: a request is refused at once with
:class:`~serving.errors.Overloaded` (429) when the work queued ahead of it, each request
counted up to one slice (half a round), would take longer than the queue timeout at the
throughput the engine has measured; so nothing is refused while the device could still clear
the queue in time. Fronts ask before they tokenise (:meth:`ScoringEngine.admit`), so a refusal costs no tokenising.
A request not started ``queue_timeout_ms`` after it arrived is refused with
:class:`~serving.errors.QueueTimeout` (503) at that moment; a caller's own deadline drops its
remaining work with :class:`~serving.errors.DeadlineExceeded`; a cancelled request is dropped.

A round that fails fails its own requests only. An error the runtime calls transient (out of
GPU memory) is answered 503 and the next round runs; one it calls fatal (a CUDA error that
leaves the device unusable) marks the engine dead (:attr:`ScoringEngine.alive`), which fails
liveness so that the process is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.backends import Pending
from models.pairs import EncodedRows
from models.scorer import PASSES_IN_FLIGHT, Scorer
from serving.errors import DeadlineExceeded, Overloaded, QueueTimeout, ServiceError, Unavailable

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 0.5  # throughput is re-measured over windows of at least this long in which work kept waiting
# (only rounds that left work behind count: small rounds of whatever arrived measure the arrivals, not the device,
# and a rate measured on them refused the next burst while the device idled)
SHUTTING_DOWN = "the service is shutting down; retry on another replica"


@dataclass(frozen=True)
class EngineSettings:
    """Queueing and batching settings (the service reads them from ``KO_STS_*`` variables).

    Args:
        batching: merge queued requests into shared forward passes; ``False`` runs each request
            on its own (for comparison).
        batch_wait_ms: how long a free worker waits for more requests before a round (0: none).
        max_round_tokens: most (unpadded) tokens taken from the queue for one round; the round
            is then cut into passes of ``Scorer.limits``. ``None``: four passes' worth.
        queue_timeout_ms: a request not started within this time is refused (and not computed);
            also the most work, in time at the measured throughput, that may wait.
    """

    batching: bool = True
    batch_wait_ms: float = 0.0
    max_round_tokens: int | None = None
    queue_timeout_ms: float = 2000.0


class EngineObserver(Protocol):
    """Receives timings for metrics (the service records them as Prometheus histograms)."""

    def request_done(self, queue_s: float, inference_s: float) -> None:
        """One request answered: how long it waited before its first round, then until its last."""

    def round_done(self, pairs: int, rows: int, tokens: int, padded_tokens: int, passes: int) -> None:
        """One round of forward passes finished."""

    def queue_changed(self, queued_pairs: int) -> None:
        """The number of pairs waiting changed."""

    def request_refused(self, reason: str) -> None:
        """A request was refused (``overloaded``, ``queue_timeout``, ``deadline``, ``unavailable``) or dropped
        (``cancelled``)."""


@dataclass(eq=False)
class Job:
    """One request's rows in the engine, taken slice by slice; its future gets the rows' logits."""

    rows: EncodedRows
    pairs: int
    enqueued: float
    deadline: float  # to start: the queue timeout or the caller's deadline, whichever is first
    client_deadline: float
    future: Future = field(default_factory=Future)
    taken: int = 0  # rows handed to rounds
    done: int = 0  # rows whose logits are in
    started: float | None = None
    cancelled: bool = False
    logits: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.logits = np.empty(len(self.rows), dtype=np.float32)

    @property
    def remaining_tokens(self) -> int:
        return int(self.rows.offsets[-1] - self.rows.offsets[self.taken])

    def rows_within(self, tokens: int) -> int:
        """The end of the longest run of untaken rows within ``tokens`` (at least one row)."""
        end = int(np.searchsorted(self.rows.offsets, self.rows.offsets[self.taken] + tokens, side="right")) - 1
        return min(len(self.rows), max(end, self.taken + 1))


@dataclass(eq=False)
class _Round:
    jobs: list[tuple[Job, int, int]]  # each job's rows [start, end) in this round, in the round's row order
    rows: EncodedRows
    backlogged: bool = False  # work was left waiting when the round was taken: its budget, not arrivals, sized it
    logits: np.ndarray = field(init=False)
    padded_tokens: int = 0
    passes: int = 0
    uncollected: int = 0
    failed: bool = False

    def __post_init__(self) -> None:
        self.logits = np.empty(len(self.rows), dtype=np.float32)


class ScoringEngine:
    """Owns the queue and the worker thread in front of a :class:`~models.scorer.Scorer`.

    Use :meth:`logits` from asyncio code, or :meth:`submit` and :meth:`withdraw` from any thread
    (the GPU owner's link server does); call :meth:`close` to stop (waiting requests are refused
    as unavailable).
    """

    def __init__(self, scorer: Scorer, settings: EngineSettings, observer: EngineObserver | None = None):
        self.scorer = scorer
        self.settings = settings
        self.observer = observer
        self.max_round_tokens = settings.max_round_tokens or 4 * scorer.limits.max_batch_tokens
        self.slice_tokens = max(1, self.max_round_tokens // 2)
        self.tokens_per_s = 0.0  # measured by calibrate(), then while work keeps waiting
        self.fatal: BaseException | None = None
        self._queue: deque[Job] = deque()
        self._ahead_tokens = 0  # queued jobs' remaining tokens, each counted up to one slice
        self._queued_rows = 0
        self._queued_pairs = 0.0
        self._condition = threading.Condition()
        self._closed = False
        self._window: tuple[float, int] | None = None  # (start, tokens since) while backlogged
        self._backlogged = False  # the last round taken left work waiting
        self._worker = threading.Thread(target=self._run, name="ko-sts-engine", daemon=True)
        self._worker.start()

    def __str__(self) -> str:
        return f"{self.scorer.runtime.description}, {self.scorer.limits}"

    @property
    def queued_pairs(self) -> int:
        """Pairs waiting for the worker (a split request counts its untaken share)."""
        return round(self._queued_pairs)

    @property
    def alive(self) -> bool:
        """False once the worker thread has died or the device failed beyond recovery (liveness)."""
        return self.fatal is None and (self._worker.is_alive() or self._closed)

    def calibrate(self, rows: EncodedRows, repeats: int = 2) -> float:
        """Scores ``rows`` ``repeats`` times through the queue; the last run's tokens/s seed admission.

        Give it about a round of typical rows; the first run also warms the runtime up.
        """
        for _ in range(repeats):
            started = time.perf_counter()
            self.submit(rows, len(rows)).future.result()
            elapsed = time.perf_counter() - started
        self.tokens_per_s = rows.tokens / max(elapsed, 1e-6)
        logger.info(
            "engine: %.0f tokens/s measured on %d rows; a round takes up to %d tokens, admission up to %.1f s of work",
            self.tokens_per_s,
            len(rows),
            self.max_round_tokens,
            self.settings.queue_timeout_ms / 1000.0,
        )
        return self.tokens_per_s

    def submit(
        self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None
    ) -> Job:
        """Queues ``rows`` (``pairs`` pairs' worth) or refuses them at once; thread-safe.

        Args:
            timeout_s: the caller's own deadline, counted from ``arrived`` (default: now).
            arrived: when the request arrived (``time.monotonic()``), e.g. before it was tokenised.

        Raises:
            Overloaded: the work queued ahead would not clear within the queue timeout.
            Unavailable: the engine is closed or dead.
        """
        now = time.monotonic()
        arrived = now if arrived is None else arrived
        client_deadline = arrived + timeout_s if timeout_s is not None else math.inf
        job = Job(
            rows=rows,
            pairs=pairs,
            enqueued=now,
            deadline=min(now + self.settings.queue_timeout_ms / 1000.0, client_deadline),
            client_deadline=client_deadline,
        )
        with self._condition:
            self._admit()
            self._queue.append(job)
            self._track(job, +1)
            self._condition.notify()
        self._queue_changed()
        return job

    def admit(self) -> None:
        """Raises what :meth:`submit` would refuse any request with now; thread-safe.

        Admission depends on the work queued ahead, never on the request itself, so a front asks before it
        tokenises: under overload a refused request then costs no tokenising, which the passes need the cores for.
        :meth:`submit` asks again.
        """
        with self._condition:
            self._admit()

    def withdraw(self, job: Job) -> None:
        """Refuses ``job`` if it is still waiting to start and its deadline has passed; thread-safe.

        Callers invoke it at the job's deadline, so a request is refused at that moment, not when
        the round before it ends. A started job is left to finish.
        """
        with self._condition:
            if job.started is not None or job not in self._queue:
                return
            self._remove(job)
        self._queue_changed()
        self._expire(job, time.monotonic())

    def cancel(self, job: Job) -> None:
        """Drops what is left of ``job`` (its caller has gone); thread-safe."""
        with self._condition:
            job.cancelled = True
            if job in self._queue:
                self._remove(job)
                self._refused("cancelled")
        self._queue_changed()
        job.future.cancel()

    async def logits(self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None):
        """The rows' logits through the queue, from asyncio code; cancelling the caller drops the work."""
        job = self.submit(rows, pairs, timeout_s, arrived)
        return await wait_for_job(job, self.withdraw, self.cancel)

    def close(self) -> None:
        """Stops the worker once its round ends; requests still waiting are refused. Blocks: call it from a thread."""
        with self._condition:
            self._closed = True
            waiting = list(self._queue)
            for job in waiting:
                self._remove(job)
            self._condition.notify_all()
        for job in waiting:
            _fail(job.future, Unavailable(SHUTTING_DOWN))
        self._worker.join(timeout=30)

    # -- admission and bookkeeping (under the condition's lock) --

    def _admit(self) -> None:
        if self._closed:
            self._refused("unavailable")
            raise Unavailable(SHUTTING_DOWN)
        if not self.alive:
            self._refused("unavailable")
            raise Unavailable("the model's device failed; the service is restarting, retry shortly", retry_after_s=5.0)
        if not self._queue or self.tokens_per_s <= 0:
            return
        wait_s = self._ahead_tokens / self.tokens_per_s
        limit_s = self.settings.queue_timeout_ms / 1000.0
        if wait_s > limit_s:
            self._refused("overloaded")
            raise Overloaded(
                f"about {wait_s:.1f} s of work is queued ahead of this request, more than the queue timeout "
                f"({limit_s:g} s); retry later with backoff or add replicas",
                retry_after_s=max(1.0, wait_s - limit_s),
            )

    def _track(self, job: Job, sign: int) -> None:
        """Adds (+1) or removes (-1) a queued job's untaken work from the totals."""
        remaining = len(job.rows) - job.taken
        self._ahead_tokens += sign * min(job.remaining_tokens, self.slice_tokens)
        self._queued_rows += sign * remaining
        self._queued_pairs += sign * remaining * job.pairs / max(1, len(job.rows))

    def _remove(self, job: Job) -> None:
        self._queue.remove(job)
        self._track(job, -1)

    # -- the worker --

    def _take_round(self, block: bool) -> list[tuple[Job, int, int]] | None:
        """Takes queued rows up to the round's budget, waiting for work if ``block``; [] if none, None once closed."""
        while True:
            with self._condition:
                while not self._queue and not self._closed and block:
                    self._condition.wait()
                if self._closed:
                    return None
                if self.settings.batch_wait_ms > 0 and block:
                    end = time.monotonic() + self.settings.batch_wait_ms / 1000.0
                    while sum(j.remaining_tokens for j in self._queue) < self.max_round_tokens and not self._closed:
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        self._condition.wait(left)
                now = time.monotonic()
                late = [j for j in self._queue if now > (j.deadline if j.started is None else j.client_deadline)]
                for job in late:
                    self._remove(job)
                taken = self._slices(now)
                self._backlogged = bool(self._queue)
            for job in late:
                self._expire(job, now)
            if late or taken:
                self._queue_changed()
            if taken or not block:
                return taken

    def _slices(self, now: float) -> list[tuple[Job, int, int]]:
        """Rows of queued jobs up to the round's budget: jobs not started yet first, then in arrival order; a job
        takes at most a slice while others wait, then what is left of the budget. Jobs that have not started
        go first so that large requests, taking turns, do not keep later ones past their queue timeout."""
        budget = self.max_round_tokens
        taken: dict[Job, tuple[int, int]] = {}
        caps = (self.slice_tokens, budget) if len(self._queue) > 1 else (budget,)
        for cap in caps:
            for job in sorted(self._queue, key=lambda job: job.started is not None):
                if budget <= 0 or job.taken == len(job.rows):
                    break
                end = job.rows_within(min(cap, budget))
                tokens = int(job.rows.offsets[end] - job.rows.offsets[job.taken])
                if tokens > budget and taken:
                    break  # its next row does not fit: it leads the next round
                self._track(job, -1)
                start = taken.get(job, (job.taken, 0))[0]
                taken[job] = (start, end)
                job.taken = end
                if job.started is None:
                    job.started = now
                budget -= tokens
                if job.taken == len(job.rows):
                    self._queue.remove(job)
                else:
                    self._track(job, +1)
                if not self.settings.batching:
                    return [(j, s, e) for j, (s, e) in taken.items()]
        return [(job, start, end) for job, (start, end) in taken.items()]

    def _run(self) -> None:
        in_flight: deque[tuple[_Round, np.ndarray, Pending, int]] = deque()
        try:
            while True:
                taken = self._take_round(block=not in_flight)
                if taken is None:
                    break
                if not taken:  # nothing new: collect what runs, and measure from scratch once idle
                    self._collect(in_flight.popleft())
                    if not in_flight:
                        self._window = None
                    continue
                rows = EncodedRows.concat([job.rows[start:end] for job, start, end in taken])
                round_ = _Round(taken, rows, backlogged=self._backlogged)
                if self._window is None:
                    self._window = (time.monotonic(), 0)
                try:
                    for indices, pending in self.scorer.launch_passes(round_.rows):
                        lengths = round_.rows.lengths[indices]
                        round_.padded_tokens += len(indices) * int(self.scorer.limits.padded(int(lengths.max())))
                        round_.passes += 1
                        round_.uncollected += 1
                        in_flight.append((round_, indices, pending, int(lengths.sum())))
                        if len(in_flight) >= PASSES_IN_FLIGHT:
                            self._collect(in_flight.popleft())
                except Exception as error:  # a broken pass fails its round's requests, never the worker
                    self._fail_round(round_, error)
            while in_flight:
                self._collect(in_flight.popleft())
        except BaseException as error:  # the worker must not die silently: liveness reports it
            logger.exception("the engine's worker stopped")
            self.fatal = error
            self._fail_everything(Unavailable("the model's worker failed; the service is restarting, retry shortly"))
            raise

    def _collect(self, launched: tuple[_Round, np.ndarray, Pending, int]) -> None:
        round_, indices, pending, tokens = launched
        round_.uncollected -= 1
        if round_.failed:
            return
        try:
            round_.logits[indices] = pending()
        except Exception as error:
            self._fail_round(round_, error)
            return
        self._measure(tokens, round_.backlogged)
        if round_.uncollected == 0:
            self._deliver(round_)

    def _measure(self, tokens: int, backlogged: bool) -> None:
        """Throughput over windows of backlogged rounds (the device, not the arrivals, set the pace)."""
        if not backlogged:
            self._window = None  # a window starts again with the next round
        if self._window is None:
            return
        start, total = self._window
        total += tokens
        now = time.monotonic()
        if now - start < RATE_WINDOW_S:
            self._window = (start, total)
            return
        if self._queue:
            rate = total / (now - start)
            self.tokens_per_s = rate if self.tokens_per_s <= 0 else 0.5 * self.tokens_per_s + 0.5 * rate
        self._window = (now, 0)

    def _deliver(self, round_: _Round) -> None:
        finished = time.monotonic()
        offset = 0
        for job, start, end in round_.jobs:
            job.logits[start:end] = round_.logits[offset : offset + end - start]
            offset += end - start
            job.done += end - start
            if job.done == len(job.rows) and not job.cancelled:
                if _succeed(job.future, job.logits) and self.observer:
                    self.observer.request_done(job.started - job.enqueued, finished - job.started)
        if self.observer:
            pairs = sum((end - start) * job.pairs / len(job.rows) for job, start, end in round_.jobs)
            self.observer.round_done(
                round(pairs), len(round_.rows), round_.rows.tokens, round_.padded_tokens, round_.passes
            )

    def _fail_round(self, round_: _Round, error: Exception) -> None:
        """Fails every request with rows in the round (and drops their other rows); the next round runs."""
        round_.failed = True
        failure = self.scorer.runtime.failure(error)
        if failure == "fatal":
            logger.critical("the device failed; the engine stops serving: %s", error)
            self.fatal = error
            answer: ServiceError = Unavailable(
                "the model's device failed; the service is restarting, retry shortly", retry_after_s=5.0
            )
        elif failure == "transient":
            logger.warning("a round of %d rows failed and will not be retried: %s", len(round_.rows), error)
            answer = Unavailable("the model ran out of device memory for this round; retry", retry_after_s=1.0)
        else:
            logger.error("a round of %d rows failed", len(round_.rows), exc_info=error)
            answer = ServiceError("internal error; the service's log has the details")
        with self._condition:
            for job, _, _ in round_.jobs:
                if job in self._queue:
                    self._remove(job)
        self._queue_changed()
        for job, _, _ in round_.jobs:
            _fail(job.future, answer)
        if self.fatal is not None:
            self._fail_everything(answer)

    def _fail_everything(self, answer: ServiceError) -> None:
        with self._condition:
            waiting = list(self._queue)
            for job in waiting:
                self._remove(job)
        self._queue_changed()
        for job in waiting:
            _fail(job.future, answer)

    def _expire(self, job: Job, now: float) -> None:
        """Fails a job past its deadline: not started in time (the queue's or its caller's), or its caller's passed."""
        if job.started is None and job.deadline < job.client_deadline:
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
            self.observer.queue_changed(self.queued_pairs)

    def _refused(self, reason: str) -> None:
        if self.observer:
            self.observer.request_refused(reason)


async def wait_for_job(job: Job, withdraw, cancel):
    """Awaits ``job``'s logits from asyncio code: refused at its start deadline if still waiting, dropped if
    the awaiting task is cancelled."""
    answer = asyncio.wrap_future(job.future)
    try:
        done, _ = await asyncio.wait({answer}, timeout=max(0.0, job.deadline - time.monotonic()))
        if not done:
            withdraw(job)
        return await answer
    except asyncio.CancelledError:  # the caller went away: the worker skips what is left
        cancel(job)
        raise


def _succeed(future: Future, value: np.ndarray) -> bool:
    try:
        future.set_result(value)
        return True
    except InvalidStateError:  # cancelled meanwhile
        return False


def _fail(future: Future, error: BaseException) -> None:
    """Fails a future unless its caller has already cancelled it."""
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass
