"""Test doubles for the serving engine: runtimes held at a gate or failing on demand, an observer of rounds."""

from __future__ import annotations

import asyncio
import threading
import time

from models.backends import Runtime
from models.scorer import Scorer


class GatedRuntime(Runtime):
    """The real runtime behind a gate: passes wait until the test opens it, and are counted."""

    def __init__(self, inner: Runtime):
        self.inner = inner
        self.backend, self.device, self.input_names = inner.backend, inner.device, inner.input_names
        self.description = inner.description
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.rows_run = 0

    def launch(self, rows, width, pad_id):
        self.entered.set()
        self.gate.wait(timeout=30)
        self.rows_run += len(rows)
        return self.inner.launch(rows, width, pad_id)


class SlowRuntime(Runtime):
    """The real runtime, each pass taking at least ``seconds`` (a device busy that long)."""

    def __init__(self, inner: Runtime, seconds: float):
        self.inner, self.seconds = inner, seconds
        self.backend, self.device, self.input_names = inner.backend, inner.device, inner.input_names
        self.description = inner.description

    def launch(self, rows, width, pad_id):
        time.sleep(self.seconds)
        return self.inner.launch(rows, width, pad_id)


class Rounds:
    """An engine observer that records what each round held."""

    def __init__(self):
        self.rounds: list[int] = []
        self.refused: list[str] = []

    def request_done(self, queue_s, inference_s):
        assert min(queue_s, inference_s) >= 0

    def round_done(self, pairs, rows, tokens, padded_tokens, passes):
        assert padded_tokens >= tokens and passes >= 1
        self.rounds.append(pairs)

    def queue_changed(self, queued_pairs):
        assert queued_pairs >= 0

    def request_refused(self, reason):
        self.refused.append(reason)


def behind_gate(scorer: Scorer) -> tuple[Scorer, GatedRuntime]:
    """``scorer`` over its own runtime behind a gate (closed until the test sets ``runtime.gate``)."""
    runtime = GatedRuntime(scorer.runtime)
    return over(scorer, runtime), runtime


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class DeviceLost(RuntimeError):
    """What a CUDA error that poisons the device looks like to the engine (the double calls it fatal)."""


class FailingRuntime(Runtime):
    """The real runtime, except that the next passes raise the errors queued in ``errors``."""

    def __init__(self, inner: Runtime, errors: list[BaseException]):
        self.inner = inner
        self.backend, self.device, self.input_names = inner.backend, inner.device, inner.input_names
        self.description = inner.description
        self.errors = errors

    def launch(self, rows, width, pad_id):
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.launch(rows, width, pad_id)

    def failure(self, error):
        return "fatal" if isinstance(error, DeviceLost) else self.inner.failure(error)


def over(scorer: Scorer, runtime: Runtime) -> Scorer:
    """``scorer`` with another runtime."""
    return Scorer(runtime, scorer.tokenizer, scorer.settings, scorer.limits)


async def cancel_while_waiting(score, engine, runtime, pairs):
    """Holds ``pairs[0]`` at the gate, queues ``pairs[1:9]`` behind it and cancels them; returns the held answer.

    ``score(pairs)`` is the coroutine under test (through the engine, or the link in front of it).
    """
    held = asyncio.create_task(score(pairs[:1]))
    await asyncio.to_thread(runtime.entered.wait, 10)
    gone = asyncio.create_task(score(pairs[1:9]))
    await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 8)
    gone.cancel()
    await asyncio.to_thread(wait_for, lambda: engine.queued_pairs == 0)
    runtime.gate.set()
    return await held
