"""The serving engine on the tiny model: batching across requests, splitting, admission, deadlines, failures."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.engine import RATE_WINDOW_S, EngineSettings, ScoringEngine
from serving.errors import DeadlineExceeded, Overloaded, QueueTimeout, ServiceError, Unavailable
from tests.conftest import KLUE_DEV
from tests.engine_doubles import (
    DeviceLost,
    FailingRuntime,
    Rounds,
    SlowRuntime,
    behind_gate,
    cancel_while_waiting,
    over,
    wait_for,
)
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(64).itertuples()]


@pytest.fixture
def gated(scorer):
    scorer, runtime = behind_gate(scorer)
    yield scorer, runtime
    runtime.gate.set()


def _engine(scorer, observer=None, **settings) -> ScoringEngine:
    return ScoringEngine(scorer, EngineSettings(**settings), observer)


async def _score(engine: ScoringEngine, pairs, timeout_s=None) -> np.ndarray:
    rows = engine.scorer.encode(pairs)
    return engine.scorer.to_scores(await engine.logits(rows, len(pairs), timeout_s))


def _blocking(engine: ScoringEngine, pairs, timeout_s=None) -> np.ndarray:
    return asyncio.run(_score(engine, pairs, timeout_s))


def _capture(into: dict, function, *args):
    try:
        into["result"] = function(*args)
    except Exception as error:  # the test inspects it
        into["error"] = error


def _held(engine: ScoringEngine, runtime) -> threading.Thread:
    """A one-pair request that the worker has taken and holds at the runtime's gate."""
    holder = threading.Thread(target=_blocking, args=(engine, PAIRS[:1]))
    holder.start()
    assert runtime.entered.wait(10)
    return holder


def test_concurrent_requests_share_rounds_and_each_gets_its_own_scores(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer)
    requests = [PAIRS[i : i + 3] for i in range(0, 48, 3)]

    async def main():
        first = asyncio.create_task(_score(engine, requests[0]))
        await asyncio.to_thread(runtime.entered.wait, 10)  # the worker holds the first request at the gate
        rest = [asyncio.create_task(_score(engine, r)) for r in requests[1:]]
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 45)
        runtime.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        results = asyncio.run(main())
    finally:
        engine.close()
    expected = scorer.score(PAIRS[:48])
    for i, result in enumerate(results):
        assert result == pytest.approx(expected[3 * i : 3 * i + 3], abs=1e-4)
    assert observer.rounds[0] == 3 and sum(observer.rounds) == 48
    assert len(observer.rounds) < len(requests), "the queued requests were not merged"


def test_without_batching_each_request_runs_alone(scorer):
    observer = Rounds()
    engine = _engine(scorer, observer, batching=False)

    async def main():
        return await asyncio.gather(*(_score(engine, PAIRS[i : i + 4]) for i in range(0, 24, 4)))

    try:
        asyncio.run(main())
    finally:
        engine.close()
    assert observer.rounds == [4] * 6


def test_a_request_larger_than_a_round_is_split_and_does_not_hold_back_a_later_one(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer, max_round_tokens=512)
    big, small = PAIRS[1:41], PAIRS[41:42]
    assert scorer.encode(big).tokens > 3 * engine.max_round_tokens
    finished = []

    async def request(pairs, name):
        scores = await _score(engine, pairs)
        finished.append(name)
        return scores

    async def main():
        holder = asyncio.create_task(request(PAIRS[:1], "holder"))
        await asyncio.to_thread(runtime.entered.wait, 10)
        large = asyncio.create_task(request(big, "big"))
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == len(big))
        single = asyncio.create_task(request(small, "small"))
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == len(big) + 1)
        runtime.gate.set()
        return await asyncio.gather(holder, large, single)

    try:
        _, big_scores, _ = asyncio.run(main())
    finally:
        engine.close()
    assert finished == ["holder", "small", "big"]
    assert big_scores == pytest.approx(scorer.score(big), abs=1e-4)  # its slices were put back together
    assert len(observer.rounds) >= 5 and sum(observer.rounds) == len(big) + 2


def test_requests_not_started_yet_take_their_first_slice_before_started_ones_continue(gated):
    """Large requests taking turns must not keep a later one from starting (and so past its queue timeout)."""
    scorer, runtime = gated
    engine = _engine(scorer, max_round_tokens=512)
    holder = _held(engine, runtime)
    try:
        jobs = {engine.submit(scorer.encode(PAIRS[i : i + 15]), 15) for i in (1, 16, 31, 46)}
        with engine._condition:
            rounds = [{job for job, _, _ in engine._slices(0.0)} for _ in range(2)]
        waiting = jobs - rounds[0]  # a full round holds a slice of two, and a row or so of a third
        assert waiting and waiting <= rounds[1]  # they go before the jobs that have started
        assert all(job.started is not None for job in jobs)
    finally:
        runtime.gate.set()
        holder.join(10)
        engine.close()


def test_admission_refuses_work_the_measured_throughput_cannot_clear_in_time_and_recovers(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer, queue_timeout_ms=2000)
    requests = [PAIRS[i : i + 5] for i in range(1, 21, 5)]
    counted = [min(scorer.encode(r).tokens, engine.slice_tokens) for r in requests]
    try:
        holder = _held(engine, runtime)
        engine.tokens_per_s = (counted[0] + counted[1]) / 1.9  # two requests ahead: 1.9 s of work, three: more
        waiting = [threading.Thread(target=_blocking, args=(engine, r)) for r in requests[:3]]
        for queued, thread in enumerate(waiting, start=1):
            thread.start()
            wait_for(lambda queued=queued: engine.queued_pairs == 5 * queued)
        with pytest.raises(Overloaded, match=r"queued ahead of this request, more than the queue timeout") as refused:
            _blocking(engine, requests[3])
        assert refused.value.status.http == 429 and refused.value.retry_after_s >= 1
        runtime.gate.set()
        for thread in [holder, *waiting]:
            thread.join(timeout=30)
        assert _blocking(engine, requests[3]).shape == (5,)  # the queue cleared: admitted again
    finally:
        engine.close()
    assert observer.refused == ["overloaded"]


def test_a_request_of_any_size_is_admitted_into_an_empty_queue(scorer):
    engine = _engine(scorer)
    engine.tokens_per_s = 1.0  # a second of work per token: nothing could wait
    try:
        assert _blocking(engine, PAIRS).shape == (len(PAIRS),)
    finally:
        engine.close()


def test_calibration_measures_the_throughput_admission_starts_from(scorer):
    engine = _engine(scorer)
    try:
        assert engine.calibrate(scorer.encode(PAIRS[:16])) > 0 and engine.tokens_per_s > 0
    finally:
        engine.close()


@pytest.mark.parametrize("caller", ["thread", "asyncio"])
def test_requests_that_wait_too_long_are_refused_at_the_timeout_not_computed(gated, caller):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer, queue_timeout_ms=100)
    late = {}
    try:
        holder = _held(engine, runtime)
        if caller == "thread":  # the GPU owner's link withdraws at the deadline from its own thread
            job = engine.submit(scorer.encode(PAIRS[1:5]), 4)
            wait_for(lambda: engine.queued_pairs == 4)
            threading.Timer(job.deadline - job.enqueued, engine.withdraw, args=(job,)).start()
            _capture(late, job.future.result, 5)
        else:
            waiter = threading.Thread(target=_capture, args=(late, _blocking, engine, PAIRS[1:5]))
            waiter.start()
            waiter.join(timeout=5)  # refused while the round before it still runs (the gate is closed)
            assert not waiter.is_alive()
        assert engine.queued_pairs == 0
        runtime.gate.set()
        holder.join(timeout=30)
    finally:
        runtime.gate.set()
        engine.close()
    assert isinstance(late["error"], QueueTimeout) and late["error"].status.http == 503
    assert runtime.rows_run == scorer.rows_per_pair * 1  # only the first request was computed
    assert observer.refused == ["queue_timeout"]


def test_a_callers_deadline_drops_its_work(gated):
    scorer, runtime = gated
    engine = _engine(scorer)
    try:
        holder = _held(engine, runtime)
        late = {}
        waiter = threading.Thread(target=_capture, args=(late, _blocking, engine, PAIRS[1:3], 0.05))
        waiter.start()
        waiter.join(timeout=5)  # refused at its deadline, while the round before it still runs
        assert not waiter.is_alive()
        runtime.gate.set()
        holder.join(timeout=30)
    finally:
        runtime.gate.set()
        engine.close()
    assert isinstance(late["error"], DeadlineExceeded) and late["error"].status.grpc == "DEADLINE_EXCEEDED"


def test_cancelled_requests_are_skipped(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer)

    try:
        held = asyncio.run(cancel_while_waiting(lambda pairs: _score(engine, pairs), engine, runtime, PAIRS))
        assert held.shape == (1,)
    finally:
        engine.close()
    assert observer.refused == ["cancelled"]
    assert runtime.rows_run == scorer.rows_per_pair * 1


@pytest.mark.parametrize(
    ("error", "answer", "status"),
    [(MemoryError("out of device memory"), Unavailable, 503), (ValueError("a bug"), ServiceError, 500)],
)
def test_a_failed_round_fails_its_requests_only_and_the_next_round_runs(scorer, error, answer, status):
    runtime = FailingRuntime(scorer.runtime, [error])
    engine = _engine(over(scorer, runtime))
    try:
        with pytest.raises(answer) as failed:
            _blocking(engine, PAIRS[:2])
        assert failed.value.status.http == status
        assert _blocking(engine, PAIRS[:2]) == pytest.approx(scorer.score(PAIRS[:2]), abs=1e-4)
        assert engine.alive
    finally:
        engine.close()


def test_a_lost_device_fails_liveness_and_later_requests_are_refused(scorer):
    runtime = FailingRuntime(scorer.runtime, [DeviceLost("CUDA error: an illegal memory access was encountered")])
    engine = _engine(over(scorer, runtime))
    try:
        with pytest.raises(Unavailable):
            _blocking(engine, PAIRS[:2])
        assert not engine.alive
        with pytest.raises(Unavailable, match="restarting"):
            _blocking(engine, PAIRS[:2])
    finally:
        engine.close()


def test_closing_refuses_waiting_requests_and_finishes_the_running_round(gated):
    scorer, runtime = gated
    engine = _engine(scorer)
    running, waiting = {}, {}
    holder = threading.Thread(target=_capture, args=(running, _blocking, engine, PAIRS[:1]))
    holder.start()
    assert runtime.entered.wait(10)
    waiter = threading.Thread(target=_capture, args=(waiting, _blocking, engine, PAIRS[1:3]))
    waiter.start()
    wait_for(lambda: engine.queued_pairs == 2)
    closer = threading.Thread(target=engine.close)
    closer.start()
    waiter.join(timeout=30)
    assert isinstance(waiting["error"], Unavailable)
    runtime.gate.set()
    closer.join(timeout=30)
    holder.join(timeout=30)
    assert running["result"].shape == (1,)
    with pytest.raises(Unavailable):
        _blocking(engine, PAIRS[:1])


@pytest.mark.parametrize("backlogged", [False, True])
def test_only_rounds_that_leave_work_waiting_measure_the_throughput(scorer, backlogged):
    """One-pair requests arrive all the time (about ten during each pass), so the queue is never empty. Rounds
    that take all of it measure the arrivals, not the device, and must not lower the rate admission sizes the
    queue by; rounds held to their budget, with work left waiting, measure the device."""
    rows = scorer.encode(PAIRS[:1])
    budget = rows.tokens * (2 if backlogged else 1000)
    engine = _engine(over(scorer, SlowRuntime(scorer.runtime, 0.01)), max_round_tokens=budget)
    engine.tokens_per_s = unmeasured = 1e12
    jobs = []
    try:
        deadline = time.monotonic() + 4 * RATE_WINDOW_S
        while time.monotonic() < deadline:
            try:
                jobs.append(engine.submit(rows, 1))
            except Overloaded:  # once the backlog is measured as more than the queue timeout's worth
                pass
            time.sleep(0.001)
        for job in jobs:
            job.future.exception(timeout=30)
    finally:
        engine.close()
    if backlogged:
        assert engine.tokens_per_s < unmeasured / 2  # measured: each window's rate averaged in
    else:
        assert engine.tokens_per_s == unmeasured
