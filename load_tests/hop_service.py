"""Services for measuring the hop from a front to the model process (``load_tests/hop.py`` starts them).

``Front`` answers the same question, the sum of a small int32 array, three ways: ``local`` (in the
front itself), ``stock`` (through BentoML's composed-service call, ``bentoml.depends``) and ``link``
(through :mod:`serving.link`, as the service's fronts reach the GPU owner). ``Owner`` is the
composed service on the other side; it does nothing but add, so the difference is the hop.
"""

from __future__ import annotations

import math
import os
import time

import bentoml
import numpy as np

from models.pairs import EncodedRows
from serving.engine import Job
from serving.link import LinkClient, LinkServer, runner_uri, socket_path


class SumEngine:
    """What the link server calls an engine: answers each request at once with one logit, the sum of its ids."""

    def submit(self, rows: EncodedRows, pairs: int, timeout_s: float | None = None) -> Job:
        job = Job(rows, pairs, time.monotonic(), math.inf, math.inf)
        job.future.set_result(np.array([rows.ids.sum()], dtype=np.float32))
        return job

    def withdraw(self, job: Job) -> None:
        pass

    def cancel(self, job: Job) -> None:
        pass


def _rows(ids: list[list[int]]) -> EncodedRows:
    array = np.asarray(ids, dtype=np.int32)
    lengths = np.full(len(array), array.shape[1], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return EncodedRows(array.reshape(-1), np.zeros(array.size, np.int8), offsets, np.zeros(len(array), bool))


@bentoml.service(workers=1)
class Owner:
    def __init__(self) -> None:
        uri = runner_uri("Owner")
        self.link = LinkServer(SumEngine(), socket_path(uri), dict) if uri else None

    @bentoml.api
    def total(self, ids: np.ndarray) -> int:
        return int(ids.sum())


@bentoml.service(workers=int(os.environ.get("HOP_FRONTS", "1")))
class Front:
    owner = bentoml.depends(Owner)

    def __init__(self) -> None:
        self.channel = LinkClient(socket_path(runner_uri("Owner")))

    @bentoml.api
    async def local(self, ids: list[list[int]]) -> int:
        return int(np.asarray(ids, dtype=np.int32).sum())

    @bentoml.api
    async def stock(self, ids: list[list[int]]) -> int:
        return await self.owner.to_async.total(np.asarray(ids, dtype=np.int32))

    @bentoml.api
    async def link(self, ids: list[list[int]]) -> int:
        return int((await self.channel.logits(_rows(ids), 1))[0])
