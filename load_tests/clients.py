"""The Python clients under load: sync against asyncio, pairs/s at the same number of concurrent callers.

    python -m tests.live_service --env-file /tmp/ko-sts.env --workdir /tmp/ko-sts &   # the tiny model, served
    python -m load_tests.clients --env-file /tmp/ko-sts.env                           # about 2 minutes
    python -m load_tests.clients --http-url http://localhost:3000 --grpc-target localhost:50051

Each of the four clients of ``ko_sts`` (HTTP and gRPC; sync and asyncio) is driven by ``--callers``
callers (16) that share ONE client, as an application shares one: sync callers are threads, asyncio
callers are tasks on one event loop. Every caller sends single-pair ``score`` calls in a closed loop
(the next as soon as its answer arrives) for ``--seconds`` after a warm-up; ``--repeats`` rounds run
each protocol's sync and async clients back to back (which goes first alternates, and so does the
protocol), and the report gives the medians, the client process's CPU, and the median of each
round's async / sync ratio: neighbours in time share the machine's load, which on a shared machine
moves more than the clients differ. The service is the same for all, so the differences are the
clients'.
Writes ``results.json`` and ``results.md`` to ``--output``. Needs only the client (``ko_sts`` and its
dependencies), so it runs where applications run: in a venv holding the ko-sts-client wheel too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ko_sts import AsyncGrpcClient, AsyncHttpClient, GrpcClient, HttpClient

REPO = Path(__file__).resolve().parents[1]
CLIENTS = {
    "http sync": HttpClient,
    "http async": AsyncHttpClient,
    "grpc sync": GrpcClient,
    "grpc async": AsyncGrpcClient,
}


@dataclass
class Run:
    client: str
    repeat: int
    calls: int
    seconds: float
    pairs_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_cores: float
    client_cpu_ms_per_call: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(name: str, repeat: int, latencies: list[float], seconds: float, cpu_s: float) -> Run:
    ordered = sorted(latencies)
    return Run(
        name,
        repeat,
        len(ordered),
        seconds,
        len(ordered) / seconds,  # single-pair calls: pairs = calls
        1000 * ordered[len(ordered) // 2],
        1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        cpu_s / seconds,
        1000 * cpu_s / max(len(ordered), 1),
    )


def drive_sync(client: Any, pairs: list[tuple[str, str]], callers: int, seconds: float) -> tuple[list[float], float]:
    """``callers`` threads calling ``client.score`` until ``seconds`` pass; returns latencies and CPU seconds."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    def caller(offset: int) -> None:
        n = offset
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            client.score([pairs[n % len(pairs)]])
            latencies.append(time.perf_counter() - started)  # list.append is atomic under the GIL
            n += callers

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    cpu = _cpu_s()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, _cpu_s() - cpu


async def drive_async(
    client: Any, pairs: list[tuple[str, str]], callers: int, seconds: float
) -> tuple[list[float], float]:
    """``callers`` tasks awaiting ``client.score`` until ``seconds`` pass; returns latencies and CPU seconds."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def caller(offset: int) -> None:
        n = offset
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            await client.score([pairs[n % len(pairs)]])
            latencies.append(time.perf_counter() - started)
            n += callers

    cpu = _cpu_s()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return latencies, _cpu_s() - cpu


def measure(name: str, address: str, api_key: str | None, args: argparse.Namespace, repeat: int, pairs) -> Run:
    """One client, made once: a warm-up, then the measured window."""
    client = CLIENTS[name](address, api_key=api_key, timeout_s=60)
    if name.split()[1] == "sync":
        with client:
            drive_sync(client, pairs, args.callers, args.warmup)
            latencies, cpu = drive_sync(client, pairs, args.callers, args.seconds)
    else:

        async def both() -> tuple[list[float], float]:
            async with client:
                await drive_async(client, pairs, args.callers, args.warmup)
                return await drive_async(client, pairs, args.callers, args.seconds)

        latencies, cpu = asyncio.run(both())
    return _run(name, repeat, latencies, args.seconds, cpu)


def summary(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Per client: the median of each figure over the repeats."""
    figures = ("pairs_per_s", "p50_ms", "p99_ms", "client_cpu_cores", "client_cpu_ms_per_call")
    return {
        name: {f: statistics.median(getattr(r, f) for r in runs if r.client == name) for f in figures}
        for name in CLIENTS
    }


def round_ratios(runs: list[Run], protocol: str) -> list[float]:
    """Each round's async / sync pairs/s for ``protocol`` (the two ran back to back)."""
    by_round = {(r.repeat, r.client): r.pairs_per_s for r in runs}
    rounds = sorted({r.repeat for r in runs})
    return [by_round[n, f"{protocol} async"] / by_round[n, f"{protocol} sync"] for n in rounds]


def report(medians: dict[str, dict[str, float]], ratios: dict[str, list[float]], args, tag: str) -> str:
    lines = [
        "# Python clients: sync against asyncio",
        "",
        f"Model `{tag}`; {args.callers} concurrent callers sharing one client, single-pair `score` calls in a",
        f"closed loop; {args.seconds:g} s per point after {args.warmup:g} s of warm-up, medians of {args.repeats} "
        f"rounds; client and service on one machine ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {args.load[0]:.1f} before and {args.load[1]:.1f} after; "
        f"Python {platform.python_version()}). Command: `{' '.join(['python -m load_tests.clients', *args.argv])}`.",
        "",
        "| client | pairs/s | p50 ms | p99 ms | client CPU (cores) | client CPU per call (ms) | async / sync |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, figures in medians.items():
        protocol, style = name.split()
        ratio = statistics.median(ratios[protocol]) if style == "async" else None
        each = ", ".join(f"{r:.2f}" for r in ratios[protocol])
        lines.append(
            f"| {name} | {figures['pairs_per_s']:.1f} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} "
            f"| {figures['client_cpu_cores']:.2f} | {figures['client_cpu_ms_per_call']:.2f} "
            f"| {f'{ratio:.2f} (median of {each})' if ratio else ''} |"
        )
    return "\n".join(lines) + "\n"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """The sentence pairs of a KLUE-STS JSON Lines file."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["sentence1"], row["sentence2"]) for row in rows]


def _variables(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, help="KO_STS_TEST_* variables of python -m tests.live_service")
    parser.add_argument("--http-url", help="the service's HTTP URL (instead of --env-file)")
    parser.add_argument("--grpc-target", help="the service's gRPC host:port (instead of --env-file)")
    parser.add_argument("--api-key", help="the service's API key, if it has one")
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=Path, default=REPO / "data/klue-sts/klue_sts_dev.jsonl")
    parser.add_argument("--output", type=Path, default=REPO / f"load_tests/results/{time.strftime('%Y-%m-%d')}-clients")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.env_file:
        variables = _variables(args.env_file)
        args.http_url = args.http_url or variables["KO_STS_TEST_HTTP_URL"]
        args.grpc_target = args.grpc_target or variables["KO_STS_TEST_GRPC_TARGET"]
        args.api_key = args.api_key or variables.get("KO_STS_TEST_API_KEY")
    if not (args.http_url and args.grpc_target):
        parser.error("give --env-file, or --http-url and --grpc-target")
    pairs = read_pairs(args.pairs)
    addresses: dict[str, str] = {"http": args.http_url, "grpc": args.grpc_target}
    with HttpClient(args.http_url, api_key=args.api_key) as probe:
        tag = probe.model_info().tag
    runs: list[Run] = []
    load_before = os.getloadavg()[0]
    for repeat in range(args.repeats):
        protocols = ["http", "grpc"] if repeat % 2 == 0 else ["grpc", "http"]
        styles = ["sync", "async"] if repeat % 4 < 2 else ["async", "sync"]
        for name in (f"{protocol} {style}" for protocol in protocols for style in styles):
            run = measure(name, addresses[name.split()[0]], args.api_key, args, repeat, pairs)
            print(f"round {repeat + 1}: {name:10} {run.pairs_per_s:7.1f} pairs/s  p50 {run.p50_ms:6.1f} ms", flush=True)
            runs.append(run)
    args.load = (load_before, os.getloadavg()[0])
    medians = summary(runs)
    ratios = {protocol: round_ratios(runs, protocol) for protocol in addresses}
    args.output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "async_over_sync_per_round": ratios,
        "model": tag,
        "callers": args.callers,
        "runs": [asdict(r) for r in runs],
        "medians": medians,
    }
    (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(medians, ratios, args, tag)
    (args.output / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
