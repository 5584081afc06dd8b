"""Where a lone pair's time goes: the served path taken apart, one stage added at a time, in one process.

    python -m load_tests.latency outputs/koelectra-base-random --backend torch --device cuda

The model is started as the model process starts it (:func:`serving.startup.start_engine`: CUDA
graphs captured, warmed, calibrated); then one KLUE-STS pair is timed ``--calls`` times through
each stage in turn, each stage including the ones before it:

- ``tokenise``: :meth:`PairCodec.encode` of the pair;
- ``forward``: tokenise + :meth:`Scorer.forward` (host buffers, copy, the forward pass, logits back);
- ``engine``: tokenise + the engine's queue and its thread, awaited from an event loop;
- ``link``: the same rows through :mod:`serving.link` (a Unix socket, the link's loop threads);
- ``front``: :class:`serving.frontend.Frontend` over the link (tokenising in its thread pool).

The rest of a served call (HTTP or gRPC parsing, the answer, the client) is the bench's lone-pair
figure minus ``front``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import get_args

from models.backends import Backend
from serving.frontend import Frontend
from serving.link import LinkClient, LinkServer
from serving.settings import Settings
from serving.startup import start_engine

PAIR = (
    "숙소 위치는 찾기 쉽고 일반적인 한국의 반지하 숙소입니다.",
    "숙박시설의 위치는 쉽게 찾을 수 있고 한국의 대표적인 반지하 숙박시설입니다.",
)


async def _timed(call: Callable[[], Awaitable[object]], calls: int) -> dict[str, float]:
    for _ in range(20):
        await call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append(1000 * (time.perf_counter() - started))
    deciles = statistics.quantiles(latencies, n=10)
    return {"p50_ms": round(statistics.median(latencies), 3), "p90_ms": round(deciles[-1], 3)}


async def measure(settings: Settings, model_dir: str, calls: int) -> dict[str, dict[str, float]]:
    engine = start_engine(settings, model_dir, Path(model_dir).name)
    scorer = engine.scorer
    with tempfile.TemporaryDirectory() as folder:
        server = LinkServer(engine, Path(folder) / "link.sock", lambda: {"device": scorer.device})
        link = LinkClient(server.path)
        while not link.connected:
            await asyncio.sleep(0.01)
        front = Frontend(scorer, link, owns_rows=False)

        async def tokenise() -> object:
            return scorer.encode([PAIR])

        async def forward() -> object:
            return scorer.forward(scorer.encode([PAIR]))

        async def queued() -> object:
            return await engine.logits(scorer.encode([PAIR]), 1)

        async def linked() -> object:
            return await link.logits(scorer.encode([PAIR]), 1)

        async def fronted() -> object:
            return await front.score([PAIR])

        stages = {"tokenise": tokenise, "forward": forward, "engine": queued, "link": linked, "front": fronted}
        results = {name: await _timed(call, calls) for name, call in stages.items()}
        await front.close()
        link.close()
        server.close()
    engine.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a model package folder")
    parser.add_argument("--backend", default="torch", choices=get_args(Backend))
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per stage (after 20 untimed)")
    args = parser.parse_args(argv)
    settings = Settings(backend=args.backend, device=args.device)
    results = asyncio.run(measure(settings, args.model_dir, args.calls))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
