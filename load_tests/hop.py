"""The cost of the hop from a front to the model process: BentoML's composed-service call against the link.

    python -m load_tests.hop                      # about a minute; --fronts 8 on a larger host

Starts ``bentoml serve`` of ``load_tests/hop_service.py`` and times the same request (a (2, 48)
int32 array, answered with its sum) answered in the front (``local``), through ``bentoml.depends``
(``stock``) and through :mod:`serving.link` (``link``): p50 and p90 of one client calling in turn,
and calls/s of ``--clients`` concurrent clients (failed calls counted, not timed). The hop's
cost is a route's figure minus ``local``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from load_tests.servers import REPO, free_port

ROUTES = ("local", "stock", "link")


async def measure(url: str, route: str, clients: int, calls: int, seconds: float) -> dict:
    import aiohttp

    body = json.dumps({"ids": [list(range(48)), list(range(48, 96))]}).encode()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(url) as session:
        failed = 0

        async def call() -> None:
            nonlocal failed
            async with session.post(f"/{route}", data=body, headers=headers) as response:
                await response.read()
                failed += response.status != 200

        for _ in range(50):
            await call()
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await call()
            latencies.append(1000 * (time.perf_counter() - started))
        done, end = 0, time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await call()
                done += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    deciles = statistics.quantiles(latencies, n=10)
    return {
        "p50_ms": statistics.median(latencies),
        "p90_ms": deciles[8],
        "calls_per_s": done / seconds,
        "failed": failed,
        "calls": 50 + calls + done,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests.hop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fronts", type=int, default=1, help="front worker processes")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for calls/s")
    parser.add_argument("--calls", type=int, default=300, help="calls timed one at a time")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of concurrent calls")
    parser.add_argument("--output", help="also write the table to this file (Markdown)")
    parser.add_argument("--log", default=os.devnull, help="the services' log")
    args = parser.parse_args(argv)
    port = free_port()
    env = {**os.environ, "HOP_FRONTS": str(args.fronts)}
    command = [sys.executable, "-m", "bentoml", "serve", "load_tests.hop_service:Front", "--port", str(port)]
    log = open(args.log, "w")
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the hop services did not start")
            time.sleep(0.5)
        time.sleep(1.0)  # the links connect in the background
        results = {r: asyncio.run(measure(url, r, args.clients, args.calls, args.seconds)) for r in ROUTES}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    local = results["local"]
    lines = [
        f"Hop from a front to the model process ({args.fronts} front(s), {os.cpu_count()} cores; "
        f"one client: p50/p90; {args.clients} clients: calls/s)",
        "",
        "| route | p50 ms | p90 ms | hop p50 ms | calls/s | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for route, r in results.items():
        hop = r["p50_ms"] - local["p50_ms"]
        lines.append(
            f"| {route} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {hop:.2f} | {r['calls_per_s']:.0f} "
            f"| {r['failed']} of {r['calls']} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
