"""The front <-> model-process link on the tiny model: scores, errors, cancellation, a lost and a dead model process."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from models.pairs import EncodedRows
from serving.engine import EngineSettings, ScoringEngine
from serving.errors import Overloaded, QueueTimeout, Unavailable
from serving.link import LinkClient, Links, LinkServer, decode_score, encode_score
from tests.conftest import KLUE_DEV
from tests.engine_doubles import DeviceLost, FailingRuntime, behind_gate, cancel_while_waiting, over, wait_for
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(32).itertuples()]


def _status(engine: ScoringEngine) -> dict:
    return {"alive": engine.alive, "device": engine.scorer.device}


@pytest.fixture
def short_path():
    """A socket path short enough for AF_UNIX (pytest's tmp paths can be too long)."""
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="ko-sts-link-"))
    return folder / "link.sock"


def _linked(engine: ScoringEngine, path):
    server = LinkServer(engine, path, lambda: _status(engine))
    client = Links([path])
    wait_for(lambda: client.clients[0].connected)
    return server, client


def test_rows_travel_as_flat_arrays_and_come_back_whole(scorer):
    rows = scorer.encode(PAIRS[:5])
    frame = encode_score(7, rows, 5, math.inf)
    request_id, decoded, pairs, deadline = decode_score(frame[4:])
    assert (request_id, pairs, deadline) == (7, 5, math.inf)
    assert decoded.ids.tolist() == rows.ids.tolist() and decoded.offsets.tolist() == rows.offsets.tolist()
    assert decoded.type_ids.tolist() == rows.type_ids.tolist()


def test_scores_through_the_link_equal_the_scorers_and_the_model_tells_its_device(scorer, short_path):
    engine = ScoringEngine(scorer, EngineSettings())
    server, links = _linked(engine, short_path)

    async def main():
        parts = [PAIRS[i : i + 4] for i in range(0, 32, 4)]
        logits = await asyncio.gather(*(links.logits(scorer.encode(p), len(p)) for p in parts))
        return np.concatenate([scorer.to_scores(x) for x in logits]), await links.ping()

    try:
        scores, status = asyncio.run(main())
    finally:
        links.close()
        server.close()
        engine.close()
    assert scores == pytest.approx(scorer.score(PAIRS), abs=1e-5)
    assert status == {"alive": True, "device": "cpu"}


def test_refusals_cross_the_link_with_their_kind_and_retry_after(gated, short_path):
    scorer, runtime = gated
    engine = ScoringEngine(scorer, EngineSettings(queue_timeout_ms=150))
    server, links = _linked(engine, short_path)

    async def main():
        holder = asyncio.create_task(links.logits(scorer.encode(PAIRS[:1]), 1))
        await asyncio.to_thread(runtime.entered.wait, 10)
        engine.tokens_per_s = 1.0  # nothing more can wait
        waiting = asyncio.create_task(links.logits(scorer.encode(PAIRS[1:3]), 2))
        await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 2)
        with pytest.raises(Overloaded) as refused:
            await links.logits(scorer.encode(PAIRS[3:5]), 2)
        with pytest.raises(QueueTimeout) as late:  # refused at its deadline by the model process's own timer
            await waiting
        runtime.gate.set()
        await holder
        return refused.value, late.value

    try:
        refused, late = asyncio.run(main())
    finally:
        links.close()
        server.close()
        engine.close()
    assert refused.status.http == 429 and refused.retry_after_s >= 1
    assert late.status.http == 503 and late.retry_after_s == 1


def test_a_cancelled_caller_cancels_its_work_in_the_model_process(gated, short_path):
    scorer, runtime = gated
    engine = ScoringEngine(scorer, EngineSettings())
    server, links = _linked(engine, short_path)

    async def score(pairs):
        return await links.logits(scorer.encode(pairs), len(pairs))

    try:
        held = asyncio.run(cancel_while_waiting(score, engine, runtime, PAIRS))
        assert held.shape == (scorer.rows_per_pair,)  # logits: one per row
    finally:
        links.close()
        server.close()
        engine.close()
    assert runtime.rows_run == scorer.rows_per_pair


def test_a_lost_model_process_fails_work_in_flight_with_503_and_the_link_reconnects(gated, short_path):
    scorer, runtime = gated
    engine = ScoringEngine(scorer, EngineSettings())
    server, links = _linked(engine, short_path)
    try:

        async def lost():
            request = asyncio.create_task(links.logits(scorer.encode(PAIRS[:1]), 1))
            await asyncio.to_thread(runtime.entered.wait, 10)
            server.close()  # the model process goes away with the request in flight
            with pytest.raises(Unavailable) as failed:
                await request
            return failed.value

        failure = asyncio.run(lost())
        assert failure.status.http == 503 and failure.retry_after_s
        wait_for(lambda: not links.clients[0].connected)
        with pytest.raises(Unavailable, match="not reachable"):
            asyncio.run(links.logits(scorer.encode(PAIRS[:1]), 1))
        runtime.gate.set()
        server = LinkServer(engine, short_path, lambda: _status(engine))  # restarted
        wait_for(lambda: links.clients[0].connected)
        assert asyncio.run(links.logits(scorer.encode(PAIRS[:2]), 2)).shape == (2 * scorer.rows_per_pair,)
    finally:
        runtime.gate.set()
        links.close()
        server.close()
        engine.close()


def test_a_dead_device_reaches_the_fronts_liveness(scorer, short_path):
    runtime = FailingRuntime(scorer.runtime, [DeviceLost("CUDA error: an illegal memory access was encountered")])
    engine = ScoringEngine(over(scorer, runtime), EngineSettings())
    server, links = _linked(engine, short_path)

    async def main():
        with pytest.raises(Unavailable):
            await links.logits(scorer.encode(PAIRS[:2]), 2)
        return await links.ping()

    try:
        status = asyncio.run(main())
    finally:
        links.close()
        server.close()
        engine.close()
    assert status["alive"] is False


def test_an_unreachable_model_process_is_refused_at_once(short_path):
    client = LinkClient(short_path)
    try:
        rows = EncodedRows(np.zeros(3, np.int32), np.zeros(3, np.int8), np.array([0, 3]), np.zeros(1, bool))
        with pytest.raises(Unavailable, match="not reachable") as refused:
            client.submit(rows, 1)
        assert refused.value.retry_after_s == 1.0 and client.running
    finally:
        client.close()


@pytest.fixture
def gated(scorer):
    scorer, runtime = behind_gate(scorer)
    yield scorer, runtime
    runtime.gate.set()
