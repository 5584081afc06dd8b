"""The front's scoring path on the tiny model: scores and truncation per pair, and requests racing the shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.engine import EngineSettings, ScoringEngine
from serving.errors import Overloaded, Unavailable
from serving.frontend import INLINE_PAIRS, Frontend
from tests.conftest import KLUE_DEV
from tests.engine_doubles import behind_gate, wait_for
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(16).itertuples()]
POOLED = INLINE_PAIRS + 1  # pairs in a request that is tokenised in the pool


class HeldCodec:
    """The tiny model's codec, whose tokenising waits until the test lets it go."""

    def __init__(self, codec):
        self.codec = codec
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode(self, pairs):
        self.entered.set()
        self.release.wait(timeout=30)
        return self.codec.encode(pairs)

    def __getattr__(self, name):
        return getattr(self.codec, name)


def test_scores_and_truncation_come_back_per_pair(scorer):
    engine = ScoringEngine(scorer, EngineSettings())
    front = Frontend(scorer, engine)
    try:
        result = asyncio.run(front.score(PAIRS))
    finally:
        asyncio.run(front.close())
    assert result.scores == pytest.approx(scorer.score(PAIRS), abs=1e-6)
    assert result.truncated.tolist() == scorer.truncated(scorer.encode(PAIRS)).tolist()


def test_requests_racing_the_shutdown_are_refused_as_unavailable_not_failed(scorer):
    codec = HeldCodec(scorer)
    engine = ScoringEngine(scorer, EngineSettings())
    front = Frontend(codec, engine, tokenizer_threads=1)

    async def main():
        tokenising = asyncio.create_task(front.score(PAIRS[:POOLED]))  # holds the only tokenizer thread
        await asyncio.to_thread(codec.entered.wait, 10)
        waiting = asyncio.create_task(front.score(PAIRS[POOLED : 2 * POOLED]))  # queued behind it in the pool
        await asyncio.sleep(0)
        closing = asyncio.create_task(front.close())
        await asyncio.sleep(0)
        codec.release.set()
        results = await asyncio.gather(tokenising, waiting, return_exceptions=True)
        await closing
        late = await asyncio.gather(front.score(PAIRS[:1]), return_exceptions=True)
        return [*results, *late]

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes[1:]), outcomes
    assert isinstance(outcomes[0], Unavailable) or outcomes[0].scores.shape == (POOLED,)


class ThreadRecordingCodec:
    """The tiny model's codec, noting the thread that tokenises each request."""

    def __init__(self, codec):
        self.codec = codec
        self.threads: list[str] = []

    def encode(self, pairs):
        self.threads.append(threading.current_thread().name)
        return self.codec.encode(pairs)

    def __getattr__(self, name):
        return getattr(self.codec, name)


def test_small_requests_are_tokenised_on_the_event_loop_and_large_ones_in_the_pool(scorer):
    codec = ThreadRecordingCodec(scorer)
    engine = ScoringEngine(scorer, EngineSettings())
    front = Frontend(codec, engine)

    async def main():
        small = await front.score(PAIRS[:INLINE_PAIRS])
        large = await front.score(PAIRS[:POOLED])
        return threading.current_thread().name, small, large

    try:
        loop_thread, small, large = asyncio.run(main())
    finally:
        asyncio.run(front.close())
    assert codec.threads[0] == loop_thread
    assert codec.threads[1].startswith("ko-sts-tokenize")
    assert small.scores == pytest.approx(large.scores[:INLINE_PAIRS], abs=1e-6)


def test_a_request_the_queue_cannot_take_is_refused_before_it_is_tokenised(scorer):
    gated, runtime = behind_gate(scorer)
    engine = ScoringEngine(gated, EngineSettings(queue_timeout_ms=1000))
    codec = ThreadRecordingCodec(gated)  # one entry per request tokenised
    front = Frontend(codec, engine)

    async def main():
        held = asyncio.create_task(front.score(PAIRS[:1]))  # the worker takes it and waits at the gate
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 0 and len(codec.threads) == 1)
        queued = asyncio.create_task(front.score(PAIRS[1:5]))
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 4)
        engine.tokens_per_s = 1.0  # measured: the queued rows are far more than a second's work
        with pytest.raises(Overloaded) as refused:
            await front.score(PAIRS[5:9])
        encoded = len(codec.threads)
        runtime.gate.set()
        await asyncio.gather(held, queued)
        return refused.value, encoded

    try:
        refused, encoded = asyncio.run(main())
    finally:
        runtime.gate.set()
        asyncio.run(front.close())
    assert refused.status.http == 429
    assert encoded == 2  # the held and the queued requests; the refused one was never tokenised
