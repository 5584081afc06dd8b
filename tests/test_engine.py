"""The serving engine on the tiny model: batching across requests, bounds, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.engine import EngineSettings, ScoringEngine
from serving.errors import DeadlineExceeded, Overloaded, QueueTimeout, Unavailable
from tests.conftest import KLUE_DEV
from tests.engine_doubles import Rounds, behind_gate, wait_for
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(48).itertuples()]


@pytest.fixture
def gated(scorer):
    scorer, runtime = behind_gate(scorer)
    yield scorer, runtime
    runtime.gate.set()


def _engine(scorer, observer=None, **settings) -> ScoringEngine:
    return ScoringEngine(scorer, EngineSettings(**settings), observer)


def test_concurrent_requests_share_rounds_and_each_gets_its_own_scores(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer)
    requests = [PAIRS[i : i + 3] for i in range(0, 48, 3)]

    async def main():
        first = asyncio.create_task(engine.score(requests[0]))
        await asyncio.to_thread(runtime.entered.wait, 10)  # the worker holds the first request at the gate
        rest = [asyncio.create_task(engine.score(r)) for r in requests[1:]]
        await asyncio.sleep(0.2)
        runtime.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        results = asyncio.run(main())
    finally:
        engine.close()
    expected = scorer.score(PAIRS)
    truncated = scorer.truncated(scorer.encode(PAIRS))
    assert 0 < truncated.sum() < len(PAIRS)  # the tiny model's 64-token budget cuts a few dev pairs
    for i, result in enumerate(results):
        assert result.scores == pytest.approx(expected[3 * i : 3 * i + 3], abs=1e-4)
        assert result.truncated.tolist() == truncated[3 * i : 3 * i + 3].tolist()
    assert observer.rounds[0] == 3 and sum(observer.rounds) == 48
    assert len(observer.rounds) < len(requests), "the queued requests were not merged"


def test_without_batching_each_request_runs_alone(scorer):
    observer = Rounds()
    engine = _engine(scorer, observer, batching=False)

    async def main():
        return await asyncio.gather(*(engine.score(PAIRS[i : i + 4]) for i in range(0, 24, 4)))

    try:
        asyncio.run(main())
    finally:
        engine.close()
    assert observer.rounds == [4] * 6


def test_a_full_queue_refuses_at_once_and_recovers(gated):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer, max_queued_pairs=8)
    pool = [threading.Thread(target=engine.score_blocking, args=(PAIRS[:4],)) for _ in range(3)]
    try:
        pool[0].start()  # taken by the worker, held at the gate
        assert runtime.entered.wait(10)
        for thread in pool[1:]:  # these two fill the queue
            thread.start()
        wait_for(lambda: engine.queued_pairs == 8)
        with pytest.raises(Overloaded, match="at most 8") as refused:
            engine.score_blocking(PAIRS[:1])
        assert refused.value.status.http == 429 and refused.value.retry_after_s
        runtime.gate.set()
        for thread in pool:
            thread.join(timeout=30)
        assert engine.score_blocking(PAIRS[:2]).scores.shape == (2,)
    finally:
        engine.close()
    assert observer.refused == ["overloaded"]


@pytest.mark.parametrize("caller", ["thread", "asyncio"])
def test_requests_that_wait_too_long_are_refused_at_the_timeout_not_computed(gated, caller):
    scorer, runtime = gated
    observer = Rounds()
    engine = _engine(scorer, observer, queue_timeout_ms=100)
    holder = threading.Thread(target=engine.score_blocking, args=(PAIRS[:1],))
    late = {}
    score = engine.score_blocking if caller == "thread" else lambda pairs: asyncio.run(engine.score(pairs))
    try:
        holder.start()
        assert runtime.entered.wait(10)
        waiter = threading.Thread(target=_capture, args=(late, score, PAIRS[1:5]))
        waiter.start()
        wait_for(lambda: engine.queued_pairs == 4)
        waiter.join(timeout=5)  # refused while the round before it still runs (the gate is closed)
        assert not waiter.is_alive() and engine.queued_pairs == 0
        runtime.gate.set()
        holder.join(timeout=30)
    finally:
        runtime.gate.set()
        engine.close()
    assert isinstance(late["error"], QueueTimeout) and late["error"].status.http == 503
    assert runtime.rows_run == scorer.rows_per_pair * 1  # only the first request was computed
    assert observer.refused == ["queue_timeout"]


def test_a_request_larger_than_the_queue_bound_is_taken_into_an_empty_queue(scorer):
    engine = _engine(scorer, max_queued_pairs=4)
    try:
        assert engine.score_blocking(PAIRS[:12]).scores.shape == (12,)
    finally:
        engine.close()


def test_a_callers_deadline_drops_its_work(gated):
    scorer, runtime = gated
    engine = _engine(scorer)
    holder = threading.Thread(target=engine.score_blocking, args=(PAIRS[:1],))
    try:
        holder.start()
        assert runtime.entered.wait(10)
        late = {}
        waiter = threading.Thread(target=_capture, args=(late, engine.score_blocking, PAIRS[1:3], 0.05))
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

    async def main():
        holder = asyncio.create_task(engine.score(PAIRS[:1]))
        await asyncio.to_thread(runtime.entered.wait, 10)
        gone = asyncio.create_task(engine.score(PAIRS[1:9]))
        await asyncio.sleep(0.2)
        gone.cancel()
        await asyncio.sleep(0.05)
        runtime.gate.set()
        return await holder

    try:
        assert asyncio.run(main()).scores.shape == (1,)
        wait_for(lambda: "cancelled" in observer.refused)
    finally:
        engine.close()
    assert runtime.rows_run == scorer.rows_per_pair * 1


def test_closing_refuses_waiting_requests_and_finishes_the_running_round(gated):
    scorer, runtime = gated
    engine = _engine(scorer)
    running, waiting = {}, {}
    holder = threading.Thread(target=_capture, args=(running, engine.score_blocking, PAIRS[:1]))
    holder.start()
    assert runtime.entered.wait(10)
    waiter = threading.Thread(target=_capture, args=(waiting, engine.score_blocking, PAIRS[1:3]))
    waiter.start()
    wait_for(lambda: engine.queued_pairs == 2)
    closer = threading.Thread(target=engine.close)
    closer.start()
    waiter.join(timeout=30)
    assert isinstance(waiting["error"], Unavailable)
    runtime.gate.set()
    closer.join(timeout=30)
    holder.join(timeout=30)
    assert running["result"].scores.shape == (1,)
    with pytest.raises(Unavailable):
        engine.score_blocking(PAIRS[:1])


def _capture(into: dict, function, *args):
    try:
        into["result"] = function(*args)
    except Exception as error:  # the test inspects it
        into["error"] = error
