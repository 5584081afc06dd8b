"""Overload, recovery and worker-kill measurements of ``bentoml serve`` (issue 9).

    export BENTOML_HOME=$(mktemp -d)             # a throw-away model store; models/default is stored into it
    python -m load_tests.overload                # every phase, about 15 minutes on 2 cores
    python -m load_tests.overload --phases capacity,overload --overload-seconds 20     # a quick look
    python -m load_tests.overload --alternative KO_STS_QUEUE_TIMEOUT_MS=500            # other queue settings

Phases, on the same model and requests (KLUE-STS dev, ``--mix`` pairs per request):

- ``capacity``: closed loop (``--clients``), ``--capacity-runs`` runs; the median pairs/s is *the capacity*.
- ``overload``: lone pairs at rest; open-loop Poisson arrivals at ``--factor`` x capacity for
  ``--overload-seconds`` over HTTP; the moment arrivals stop, a closed loop at the capacity load
  (``--clients``) for ``--recovery-seconds``; lone pairs again. Per ``--window`` seconds: offered,
  ok, refusals by code (a 429/503 without ``Retry-After`` is labelled ``no-retry-after``), latency
  of refusals and of accepted requests, goodput, the engine's queue and the server's memory.
- ``grpc``: the same over gRPC (its own closed-loop capacity first), ``--grpc-seconds`` long.
- ``alternative``: for each ``--alternative`` setting, a server with it, overloaded at the same rate.
- ``kill-1``: closed loop at capacity on the one-worker server; ``kill -9`` of its worker at
  ``--kill-at`` s: errors, the longest time without a successful answer, restart and readiness.
- ``kill-2``, ``kill-2-grpc``: the same with ``KO_STS_WORKERS=2`` over HTTP, then over one gRPC
  channel (the worker holding its connection is the one killed).

Writes ``results.json`` and ``results.md`` (and the servers' logs) into ``--output``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal
import statistics
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from load_tests.bench import ModelRef, _load_average, machine_info
from load_tests.load import OK, GrpcTransport, LoadDriver, read_sentence_pairs, request_pairs
from load_tests.servers import REPO, HttpServer, service_server

logger = logging.getLogger("load_tests.overload")
PHASES = ("capacity", "overload", "grpc", "alternative", "kill-1", "kill-2", "kill-2-grpc")
SERVING_LINE = re.compile(rb"\] serving ko-sts")  # each worker logs it once its model is loaded and warm
DEFAULT_OUTPUT = REPO / "load_tests/results/2026-11-29-overload"
RECOVERY_SPAN_S = 4.0  # throughput windows for "back to 90%": a CPU round of 16 single pairs takes about 1-2 s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Phases: " + ", ".join(PHASES))
    add = parser.add_argument
    add("--phases", default=",".join(PHASES), help="comma-separated phases to run (default: all)")
    add("--model", default="models/default", help="model package folder (stored first) or store tag")
    add("--host", default="127.0.0.1")
    add("--env", action="append", default=[], metavar="KEY=VALUE", help="a KO_STS_* setting for every server")
    add("--mix", type=int, default=1, help="pairs per request")
    add("--clients", type=int, default=16, help="closed-loop clients (capacity, recovery and kill phases)")
    add("--capacity-runs", type=int, default=3)
    add("--capacity-seconds", type=float, default=10.0)
    add("--capacity", type=float, default=None, help="pairs/s: skip measuring it (the capacity phase)")
    add("--factor", type=float, default=3.0, help="open-loop arrivals as a multiple of the capacity")
    add("--overload-seconds", type=float, default=60.0)
    add("--grpc-seconds", type=float, default=30.0)
    add("--recovery-seconds", type=float, default=15.0)
    add("--window", type=float, default=5.0, help="seconds per row of the overload timelines")
    add("--probe-requests", type=int, default=20, help="lone single pairs timed before and after a burst")
    add(
        "--alternative",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="settings of one alternative server (repeatable), e.g. KO_STS_QUEUE_TIMEOUT_MS=500",
    )
    add("--kill-seconds", type=float, default=40.0, help="closed-loop length of a kill phase")
    add("--kill-at", type=float, default=12.0, help="seconds into a kill phase when a worker gets SIGKILL")
    add("--request-timeout", type=float, default=30.0, help="seconds before a request counts as a timeout")
    add("--startup-timeout", type=float, default=300.0)
    add("--data", default="data/klue-sts/klue_sts_dev.jsonl")
    add("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.phases = [p for p in args.phases.split(",") if p]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    args.env = _env(args.env)
    args.alternative = [_env(a.split(",")) for a in args.alternative]
    return args


def _env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("KO_STS_"):
            raise SystemExit(f"{item!r}: give KO_STS_NAME=VALUE")
        env[key] = value
    return env


# ---------------------------------------------------------------------------------------------------------------
# Watching the server: memory and CPU per process, the engine's queue and refusals, workers (re)started


class Monitor:
    """Samples the server's processes (RSS, CPU time), its ``/metrics`` and its log until stopped."""

    def __init__(self, server: HttpServer, t0: float, period_s: float = 0.5):
        self.server = server
        self.t0 = t0
        self.period_s = period_s
        self.samples: list[dict[str, Any]] = []
        self.ready_lines: list[float] = []  # when each "serving" log line was seen (s from t0)
        self.new_workers: dict[int, float] = {}  # worker pid -> when it was first seen (s from t0)
        self._log_offset = server.log_path.stat().st_size if server.log_path.exists() else 0
        self._known = set(worker_pids(server))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import psutil

        processes: dict[int, Any] = {}
        server_cpu: dict[int, float] = {}  # last CPU seconds of every server process seen (killed ones too)
        me = psutil.Process()
        tick = 0
        while True:
            now = time.perf_counter() - self.t0
            sample: dict[str, Any] = {"t": round(now, 2), "workers": {}}
            try:
                root = psutil.Process(self.server.process.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            rss = 0
            for proc in tree:
                proc = processes.setdefault(proc.pid, proc)
                try:
                    memory, cpu = proc.memory_info().rss, proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                rss += memory
                server_cpu[proc.pid] = cpu.user + cpu.system
                if proc.pid != self.server.process.pid:
                    sample["workers"][proc.pid] = [round(memory / 2**20, 1), round(cpu.user + cpu.system, 2)]
                    if proc.pid not in self._known:
                        self._known.add(proc.pid)
                        self.new_workers[proc.pid] = now
            sample["rss_mb"] = round(rss / 2**20, 1)
            # CPU seconds so far: the machine's, the server's, this client's (the rest is other people's work)
            machine = psutil.cpu_times()
            own = me.cpu_times()
            sample["cpu_s"] = {
                "machine": machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal,
                "server": sum(server_cpu.values()),
                "client": own.user + own.system,
            }
            self._read_log(now)
            if tick % 2 == 0:  # /metrics once a second
                metrics = await asyncio.to_thread(scrape_metrics, self.server.url)
                if metrics is not None:
                    sample.update(metrics)
            self.samples.append(sample)
            tick += 1
            await asyncio.sleep(self.period_s)

    def _read_log(self, now: float) -> None:
        try:
            with open(self.server.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read()
        except OSError:
            return
        cut = text.rfind(b"\n") + 1  # whole lines only
        self._log_offset += cut
        self.ready_lines += [now] * len(SERVING_LINE.findall(text[:cut]))

    def cores(self) -> dict[str, float] | None:
        """Cores used over the monitored time by the server, this client, and every other process."""
        if len(self.samples) < 2:
            return None
        first, last = self.samples[0], self.samples[-1]
        span = last["t"] - first["t"]
        used = {k: (last["cpu_s"][k] - first["cpu_s"][k]) / span for k in ("machine", "server", "client")}
        return {
            "server": round(used["server"], 2),
            "client": round(used["client"], 2),
            "others": round(used["machine"] - used["server"] - used["client"], 2),
        }

    def between(self, a: float, b: float, key: str) -> list[float]:
        return [s[key] for s in self.samples if a <= s["t"] < b and s.get(key) is not None]


def scrape_metrics(url: str) -> dict[str, Any] | None:
    """The engine's queued pairs (gauge, summed over workers) and refusals by reason, from ``/metrics``."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=2) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    queued, refused = 0.0, {}
    for line in text.splitlines():
        if line.startswith("ko_sts_queue_pairs"):
            queued += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ko_sts_refused_requests_total"):
            reason = re.search(r'reason="([^"]+)"', line)
            if reason:
                refused[reason.group(1)] = refused.get(reason.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return {"queue_pairs": queued, "refused": refused}


def worker_pids(server: HttpServer) -> list[int]:
    """The ``bentoml serve`` worker processes (children of the serve process), oldest first."""
    import psutil

    try:
        children = psutil.Process(server.process.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c.pid for c in sorted(children, key=lambda c: c.create_time())]


def busiest_worker(server: HttpServer, port: int) -> int | None:
    """The worker holding the most established client connections on ``port`` (HTTP or gRPC)."""
    counts = connection_counts(server, port)
    busiest = max(counts, key=counts.get, default=None)
    return busiest if busiest is not None and counts[busiest] > 0 else None


def connection_counts(server: HttpServer, port: int) -> dict[int, int]:
    """Established client connections on ``port`` per worker."""
    import psutil

    counts = {}
    for pid in worker_pids(server):
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts[pid] = sum(1 for c in connections if c.laddr and c.laddr.port == port and c.status == "ESTABLISHED")
    return counts


# ---------------------------------------------------------------------------------------------------------------
# Timelines


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000.0, 1) if values else None


def _status_group(status: str) -> str:
    return status.split(" ")[0]


def overload_windows(trace, t0: float, seconds: float, window: float, mix: int, monitor: Monitor) -> list[dict]:
    """Per window of arrivals: offered, outcomes by label, latency of each outcome, goodput, queue and memory."""
    rows = []
    for k in range(math.ceil(seconds / window - 1e-9)):
        a, b = t0 + k * window, t0 + min((k + 1) * window, seconds)
        due = [e for e in trace if a <= e[0] < b]
        statuses = Counter(e[2] for e in due)
        latencies: dict[str, list[float]] = {}
        for start, done, status in due:
            latencies.setdefault(_status_group(status), []).append(done - start)
        span = b - a
        served = sum(1 for e in trace if e[2] == OK and a <= e[1] < b)
        ra, rb = a - monitor.t0, b - monitor.t0
        queue = monitor.between(ra, rb, "queue_pairs")
        rss = monitor.between(ra, rb, "rss_mb")
        rows.append(
            {
                "t_s": round(k * window, 1),
                "offered": len(due),
                "offered_per_s": round(len(due) / span, 1),
                "statuses": dict(sorted(statuses.items())),
                "latency_ms": {
                    code: {"p50": _pct(v, 50), "p99": _pct(v, 99), "max": _pct(v, 100)}
                    for code, v in sorted(latencies.items())
                },
                "goodput_pairs_s": round(served * mix / span, 1),
                "queue_pairs_max": max(queue) if queue else None,
                "rss_mb_max": max(rss) if rss else None,
            }
        )
    return rows


def goodput_bins(trace, t0: float, a: float, b: float, mix: int, width: float = 1.0) -> list[list[float]]:
    """``[t, pairs/s]`` of successful completions in ``width``-second bins from ``t0 + a`` to ``t0 + b``."""
    done = np.array([e[1] - t0 for e in trace if e[2] == OK])
    edges = np.arange(a, b + 1e-9, width)
    counts, _ = np.histogram(done, bins=edges)
    return [[round(float(t), 2), round(float(c) * mix / width, 1)] for t, c in zip(edges[:-1], counts)]


def sliding_rate(trace, t0: float, a: float, b: float, mix: int, span: float = 2.0, step: float = 0.25):
    """``(t, pairs/s)`` of successful completions in ``[t, t + span)`` for t from ``a`` to ``b - span``."""
    done = np.sort(np.array([e[1] - t0 for e in trace if e[2] == OK]))
    out = []
    t = a
    while t + span <= b + 1e-9:
        count = np.searchsorted(done, t + span) - np.searchsorted(done, t)
        out.append((round(t, 2), count * mix / span))
        t += step
    return out


def longest_gap(trace, t0: float, a: float, b: float) -> float:
    """The longest stretch (s) in ``[a, b]`` with no successful completion."""
    done = sorted(e[1] - t0 for e in trace if e[2] == OK and a <= e[1] - t0 <= b)
    points = [a, *done, b]
    return round(max(y - x for x, y in zip(points, points[1:])), 2)


def latency_stats(latencies_ms: list[float]) -> dict[str, Any]:
    ok = [x for x in latencies_ms if x == x]
    if not ok:
        return {"p50_ms": None, "max_ms": None, "first_ms": None, "failed": len(latencies_ms)}
    return {
        "p50_ms": round(statistics.median(ok), 1),
        "max_ms": round(max(ok), 1),
        "first_ms": round(latencies_ms[0], 1) if latencies_ms[0] == latencies_ms[0] else None,
        "failed": len(latencies_ms) - len(ok),
    }


# ---------------------------------------------------------------------------------------------------------------
# The run


class Overload:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.output: Path = args.output
        self.pairs = read_sentence_pairs(REPO / args.data)
        self.results: dict[str, Any] = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": machine_info(),
            "started": datetime.now().isoformat(timespec="seconds"),
            "capacity": None,
            "overload": [],
            "recoveries": [],
            "kills": [],
            "failures": [],
        }
        self.model: ModelRef | None = None

    # servers ------------------------------------------------------------------------------------------------

    def server(self, name: str, env: dict[str, str]) -> HttpServer:
        """``bentoml serve`` with ``env`` on free ports, ready; driven over HTTP (gRPC: :meth:`_grpc_transport`)."""
        env = {**self.args.env, **env, "KO_STS_MODEL_TAG": self.model.tag}
        server = service_server(self.args.host, env, self.output / f"server-{name}.log")
        ready = server.start(self.args.startup_timeout)
        logger.info("%s ready after %.1f s (%s)", name, ready, server.description)
        self.results.setdefault("servers", {})[name] = {
            "env": env,
            "ready_after_s": round(ready, 1),
            "runtime": server.description,
        }
        return server

    def run(self) -> dict[str, Any]:
        args = self.args
        self.model = ModelRef.resolve(args.model, need_tag=True)
        self.results["model"] = {"spec": self.model.spec, "tag": self.model.tag}
        if args.capacity:
            self.results["capacity"] = {"http": {"pairs_per_s": args.capacity, "given": True}}
        phases = set(args.phases)
        if phases & {"capacity", "overload", "grpc", "kill-1"}:
            self._guarded("default", {}, self._default_server)
        if "alternative" in phases:
            for i, alternative in enumerate(args.alternative):
                self._guarded(f"alternative-{i + 1}", alternative, self._alternative_server)
        if phases & {"kill-2", "kill-2-grpc"}:
            self._guarded("two-workers", {"KO_STS_WORKERS": "2"}, self._two_workers)
        self.results["finished"] = datetime.now().isoformat(timespec="seconds")
        self.results["machine"]["load_average_end"] = _load_average()
        return self.results

    def _guarded(self, name: str, env: dict[str, str], body) -> None:
        server = None
        try:
            server = self.server(name, env)
            asyncio.run(body(server, name))
        except Exception as error:  # reported, and the next server still runs
            logger.exception("%s failed", name)
            tail = server.log_tail() if server else ""
            self.results["failures"].append({"server": name, "error": repr(error), "log_tail": tail})
        finally:
            if server is not None:
                server.stop()

    def _capacity(self) -> float:
        capacity = (self.results.get("capacity") or {}).get("http", {}).get("pairs_per_s")
        if not capacity:
            raise RuntimeError("no capacity: run the capacity phase or pass --capacity")
        return capacity

    # phases --------------------------------------------------------------------------------------------------

    async def _default_server(self, server: HttpServer, name: str) -> None:
        args, phases = self.args, set(self.args.phases)
        transport = server.transport(args.request_timeout)
        await transport.start()
        try:
            payloads = [transport.prepare(p) for p in request_pairs(self.pairs, args.mix)]
            singles = [transport.prepare(p) for p in request_pairs(self.pairs, 1)]
            if "capacity" in phases:
                self.results["capacity"] = {"http": await self._measure_capacity(server, transport, payloads)}
            if "overload" in phases:
                await self._overload(server, name, transport, payloads, singles, "http", args.overload_seconds)
        finally:
            await transport.stop()
        if "grpc" in phases:
            transport = self._grpc_transport(server)
            await transport.start()
            try:
                payloads = [transport.prepare(p) for p in request_pairs(self.pairs, args.mix)]
                singles = [transport.prepare(p) for p in request_pairs(self.pairs, 1)]
                capacity = await self._measure_capacity(server, transport, payloads, runs=1)
                self.results["capacity"]["grpc"] = capacity
                await self._overload(
                    server, name, transport, payloads, singles, "grpc", args.grpc_seconds, capacity["pairs_per_s"]
                )
            finally:
                await transport.stop()
        if "kill-1" in phases:
            await self._kill(server, name, "kill-1", grpc=False)

    async def _alternative_server(self, server: HttpServer, name: str) -> None:
        args = self.args
        transport = server.transport(args.request_timeout)
        await transport.start()
        try:
            payloads = [transport.prepare(p) for p in request_pairs(self.pairs, args.mix)]
            singles = [transport.prepare(p) for p in request_pairs(self.pairs, 1)]
            await self._warm(transport, payloads)
            await self._overload(server, name, transport, payloads, singles, "http", args.overload_seconds)
        finally:
            await transport.stop()

    async def _two_workers(self, server: HttpServer, name: str) -> None:
        phases = set(self.args.phases)
        if "kill-2" in phases:
            await self._kill(server, name, "kill-2", grpc=False)
        if "kill-2-grpc" in phases:
            await self._kill(server, name, "kill-2-grpc", grpc=True)

    def _grpc_transport(self, server: HttpServer) -> GrpcTransport:
        """One gRPC channel to ``server``'s gRPC port (its ``/metrics`` over HTTP)."""
        target = f"{self.args.host}:{server.env['KO_STS_GRPC_PORT']}"
        return GrpcTransport(target, timeout_s=self.args.request_timeout, metrics_url=server.url)

    async def _warm(self, transport, payloads) -> None:
        await LoadDriver(transport).closed_loop(payloads, self.args.mix, self.args.clients, 3.0, 0.0)

    async def _measure_capacity(self, server: HttpServer, transport, payloads, runs: int | None = None) -> dict:
        args = self.args
        driver = LoadDriver(transport, server.cpu_seconds, drain_s=args.request_timeout)
        await self._warm(transport, payloads)
        results = []
        for _ in range(runs or args.capacity_runs):
            window = await driver.closed_loop(payloads, args.mix, args.clients, args.capacity_seconds, 1.0)
            server.check_alive()
            summary = window.summary()
            results.append({k: summary[k] for k in ("pairs_per_s", "p50_ms", "p99_ms", "errors", "server_cpu")})
            logger.info(
                "%s capacity run: %.1f pairs/s, p50 %.0f ms", transport.name, summary["pairs_per_s"], summary["p50_ms"]
            )
        return {
            "pairs_per_s": round(statistics.median(r["pairs_per_s"] for r in results), 2),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 1),
            "clients": args.clients,
            "mix": args.mix,
            "seconds": args.capacity_seconds,
            "runs": results,
        }

    async def _overload(
        self, server, name, transport, payloads, singles, protocol, seconds, capacity: float | None = None
    ) -> None:
        """Lone pairs; open loop at factor x capacity; a closed loop from the moment arrivals stop; lone pairs."""
        args = self.args
        capacity = capacity or self._capacity()
        rate_rps = args.factor * capacity / args.mix
        probe = LoadDriver(transport)
        before = await probe.lone_pairs(singles, args.probe_requests)
        burst_trace: list = []
        recovery_trace: list = []
        burst = LoadDriver(transport, server.cpu_seconds, drain_s=args.request_timeout, trace=burst_trace)
        recovery = LoadDriver(transport, drain_s=args.request_timeout, trace=recovery_trace)
        t0 = time.perf_counter()
        monitor = Monitor(server, t0)
        monitor.start()
        logger.info(
            "%s %s: %.1f requests/s (%.1f pairs/s) for %.0f s", name, protocol, rate_rps, rate_rps * args.mix, seconds
        )

        async def recover() -> Any:
            await asyncio.sleep(max(0.0, t0 + seconds - time.perf_counter()))
            return await recovery.closed_loop(payloads, args.mix, args.clients, args.recovery_seconds, 0.0)

        try:
            recovery_task = asyncio.ensure_future(recover())
            window = await burst.open_loop(payloads, args.mix, rate_rps, seconds, 0.0, max_in_flight=100_000)
            recovered = await recovery_task
            after = await probe.lone_pairs(singles, args.probe_requests)
            await asyncio.sleep(1.0)
        finally:
            await monitor.stop()
        server.check_alive()
        end = t0 + seconds
        summary = window.summary()
        windows = overload_windows(burst_trace, t0, seconds, args.window, args.mix, monitor)
        totals = Counter(e[2] for e in burst_trace if t0 <= e[0] < end)
        latencies: dict[str, list[float]] = {}
        for start, done, status in burst_trace:
            latencies.setdefault(_status_group(status), []).append(done - start)
        rss = [s["rss_mb"] for s in monitor.samples]
        burst_rss = monitor.between(0, seconds, "rss_mb")
        queue = monitor.between(0, seconds, "queue_pairs")
        refused_counters = [s["refused"] for s in monitor.samples if "refused" in s]
        # time until the closed loop started at the burst's end serves >= 90% of the capacity (2-s windows)
        target = 0.9 * capacity
        rates = sliding_rate(recovery_trace, end, 0.0, args.recovery_seconds, args.mix, span=RECOVERY_SPAN_S)
        back = next((t for t, rate in rates if rate >= target), None)
        later = [rate for t, rate in rates if back is not None and t >= back]
        record = {
            "server": name,
            "protocol": protocol,
            "env": server.env,
            "capacity_pairs_s": capacity,
            "offered_pairs_s": round(rate_rps * args.mix, 1),
            "seconds": seconds,
            "totals": dict(sorted(totals.items())),
            "goodput_pairs_s": round(summary["pairs_per_s"], 1),
            # the engine's own means over the burst (from /metrics): time queued and in its round, pairs per round
            "engine_means": {
                k: None if summary[k] is None else round(summary[k], 1)
                for k in ("mean_queue_ms", "mean_inference_ms", "mean_batch_pairs", "server_cpu", "client_cpu")
            },
            "latency_ms": {
                code: {"p50": _pct(v, 50), "p99": _pct(v, 99), "max": _pct(v, 100)}
                for code, v in sorted(latencies.items())
            },
            "windows": windows,
            "queue_pairs_max": max(queue) if queue else None,
            "rss_mb": {
                "before": rss[0] if rss else None,
                "burst_max": max(burst_rss) if burst_rss else None,
                "burst_first_5s_max": max(monitor.between(0, 5, "rss_mb"), default=None),
                "burst_last_5s_max": max(monitor.between(seconds - 5, seconds, "rss_mb"), default=None),
                "after": rss[-1] if rss else None,
            },
            "engine_refusals": _delta(refused_counters[0], refused_counters[-1]) if len(refused_counters) > 1 else None,
            "recovery": {
                "clients": args.clients,
                "target_pairs_s": round(target, 1),
                "back_to_90pct_after_s": back,
                "min_4s_rate_after_back": round(min(later), 1) if later else None,
                "closed_loop_summary": {
                    k: recovered.summary()[k] for k in ("pairs_per_s", "p50_ms", "p99_ms", "errors")
                },
                "first_latencies_ms": [round((d - s) * 1000, 0) for s, d, st in sorted(recovery_trace)[: args.clients]],
                "goodput_bins": goodput_bins(burst_trace + recovery_trace, end, -5.0, args.recovery_seconds, args.mix),
            },
            "cores": monitor.cores(),
            "lone_pair_before": latency_stats(before),
            "lone_pair_after": latency_stats(after),
        }
        self.results["overload"].append(record)
        logger.info(
            "%s %s: goodput %.1f pairs/s of %.1f offered; %s; back to 90%% after %s s; RSS max %s MB",
            name,
            protocol,
            record["goodput_pairs_s"],
            record["offered_pairs_s"],
            record["totals"],
            back,
            record["rss_mb"]["burst_max"],
        )

    async def _kill(self, server: HttpServer, name: str, phase: str, grpc: bool) -> None:
        """Closed loop at capacity; SIGKILL one worker at kill_at; what the clients saw and when it came back."""
        args = self.args
        transport = self._grpc_transport(server) if grpc else server.transport(args.request_timeout)
        await transport.start()
        trace: list = []
        try:
            payloads = [transport.prepare(p) for p in request_pairs(self.pairs, args.mix)]
            await self._warm(transport, payloads)
            workers = worker_pids(server)
            driver = LoadDriver(transport, drain_s=args.request_timeout, trace=trace)
            t0 = time.perf_counter()
            monitor = Monitor(server, t0)
            monitor.start()
            kill: dict[str, Any] = {}

            async def killer() -> None:
                await asyncio.sleep(max(0.0, t0 + args.kill_at - time.perf_counter()))
                port = int(server.env["KO_STS_GRPC_PORT"]) if grpc else int(server.url.rsplit(":", 1)[1])
                kill["connections"] = connection_counts(server, port)
                victim = busiest_worker(server, port) or workers[0]
                kill["pid"] = victim
                kill["t"] = round(time.perf_counter() - t0, 2)
                os.kill(victim, signal.SIGKILL)
                logger.info("%s: SIGKILL to worker %d at %.1f s", phase, victim, kill["t"])
                kill["readyz"] = await readyz_after(server.url, t0, args.kill_seconds)

            kill_task = asyncio.ensure_future(killer())
            await driver.closed_loop(payloads, args.mix, args.clients, args.kill_seconds, 0.0)
            await kill_task
            await asyncio.sleep(1.0)
            await monitor.stop()
        finally:
            await transport.stop()
        server.check_alive()
        tk = kill["t"]
        before = [r for t, r in sliding_rate(trace, t0, 2.0, tk, args.mix, span=RECOVERY_SPAN_S)]
        baseline = statistics.mean(before) if before else 0.0
        after = sliding_rate(trace, t0, tk, args.kill_seconds, args.mix, span=RECOVERY_SPAN_S)
        back = next((t for t, rate in after if rate >= 0.9 * baseline), None)
        last = sliding_rate(trace, t0, args.kill_seconds - 10.0, args.kill_seconds, args.mix, span=10.0)
        errors = Counter(e[2] for e in trace if e[2] != OK)
        error_times = [e[1] - t0 for e in trace if e[2] != OK]
        new = {pid: t for pid, t in monitor.new_workers.items()}
        ready_after = [t for t in monitor.ready_lines if t > tk]
        final = monitor.samples[-1]["workers"] if monitor.samples else {}
        cpu_window = [s for s in monitor.samples if s["t"] >= args.kill_seconds - 10]
        cpu_last_10s = {}
        if len(cpu_window) > 1:
            for pid in cpu_window[-1]["workers"]:
                first = next((s["workers"][pid][1] for s in cpu_window if pid in s["workers"]), None)
                if first is not None:
                    span = cpu_window[-1]["t"] - cpu_window[0]["t"]
                    cpu_last_10s[pid] = round((cpu_window[-1]["workers"][pid][1] - first) / span, 2)
        record = {
            "phase": phase,
            "server": name,
            "protocol": "grpc" if grpc else "http",
            "workers_before": workers,
            "killed_pid": kill["pid"],
            "kill_at_s": tk,
            "clients": args.clients,
            "seconds": args.kill_seconds,
            "baseline_pairs_s": round(baseline, 1),
            "baseline_min_4s": round(min(before), 1) if before else None,
            "errors": dict(sorted(errors.items())),
            "errors_first_last_s": [round(min(error_times) - tk, 2), round(max(error_times) - tk, 2)]
            if error_times
            else None,
            # the first 4-s window starting after the kill with >= 90% of the baseline: its start
            "throughput_back_to_90pct_after_s": round(back - tk, 2) if back is not None else None,
            "min_4s_pairs_s_after_kill": round(min(r for _, r in after), 1) if after else None,
            "last_10s_pairs_s": round(last[0][1], 1) if last else None,
            "connections_at_kill": kill.get("connections"),
            "cores": monitor.cores(),
            "longest_gap_without_success_s": longest_gap(trace, t0, tk, args.kill_seconds),
            "longest_gap_before_kill_s": longest_gap(trace, t0, 2.0, tk),
            "new_worker_seen_after_s": {pid: round(t - tk, 2) for pid, t in new.items()},
            "new_worker_ready_after_s": round(ready_after[0] - tk, 2) if ready_after else None,
            "readyz": kill.get("readyz"),
            "worker_cpu_cores_last_10s": cpu_last_10s,
            "workers_at_end": sorted(final),
            "goodput_bins": goodput_bins(trace, t0, 0.0, args.kill_seconds, args.mix),
        }
        self.results["kills"].append(record)
        logger.info(
            "%s: errors %s; longest gap %.2f s; throughput back after %s s; new worker ready after %s s",
            phase,
            record["errors"],
            record["longest_gap_without_success_s"],
            record["throughput_back_to_90pct_after_s"],
            record["new_worker_ready_after_s"],
        )


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(set(before) | set(after))}


async def readyz_after(url: str, t0: float, until: float) -> dict[str, Any]:
    """Polls ``/readyz`` every 0.2 s until ``until`` (s from t0): the first failure and the first success after it."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    first_fail = back = None
    fails = 0
    while time.perf_counter() - t0 < until:
        ok = await asyncio.to_thread(ready)
        now = round(time.perf_counter() - t0, 2)
        if not ok:
            fails += 1
            first_fail = first_fail if first_fail is not None else now
        elif first_fail is not None and back is None:
            back = now
        await asyncio.sleep(0.2)
    return {"first_failure_s": first_fail, "ok_again_s": back, "failed_polls": fails}


# ---------------------------------------------------------------------------------------------------------------
# Report


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    cfg, machine = results["config"], results["machine"]
    lines = [
        "# Overload, recovery and worker kills",
        "",
        f"Started {results['started']}, finished {results.get('finished')}; model `{results['model']['tag']}` "
        f"(`{cfg['model']}`); {machine['cpu_count']} cores, load average {machine['load_average_start']} at start, "
        f"{machine.get('load_average_end')} at end; {cfg['mix']} pair(s) per request; "
        f"`python -m load_tests.overload {' '.join(sys.argv[1:])}`.",
        "",
    ]
    capacity = results.get("capacity") or {}
    if capacity:
        lines += [
            "## Capacity (closed loop)",
            "",
            "| protocol | clients | runs (pairs/s) | median pairs/s | p50 ms |",
            "|---|---:|---|---:|---:|",
        ]
        for protocol, c in capacity.items():
            runs = ", ".join(f"{r['pairs_per_s']:.1f}" for r in c.get("runs", []))
            lines.append(
                f"| {protocol} | {c.get('clients', '-')} | {runs or 'given'} | {c['pairs_per_s']:.1f} | "
                f"{_fmt(c.get('p50_ms'))} |"
            )
        lines.append("")
    for o in results["overload"]:
        settings = {k: v for k, v in o["env"].items() if k not in ("KO_STS_MODEL_TAG", "KO_STS_GRPC_PORT")}
        lines += [
            f"## Overload: {o['server']}, {o['protocol']}, {o['offered_pairs_s']} pairs/s offered "
            f"({o['offered_pairs_s'] / o['capacity_pairs_s']:.1f}x {o['capacity_pairs_s']:.1f}) "
            f"for {o['seconds']:.0f} s",
            "",
            f"Settings: {settings or 'defaults'}. Outcomes: {o['totals']}; goodput {o['goodput_pairs_s']} pairs/s; "
            f"engine refusals (from /metrics) {o['engine_refusals']}; queue max {_fmt(o['queue_pairs_max'])} pairs; "
            f"engine means over the burst {o['engine_means']}; "
            f"server RSS {o['rss_mb']['before']} MB before, max {o['rss_mb']['burst_max']} MB during "
            f"(first 5 s {o['rss_mb']['burst_first_5s_max']}, last 5 s {o['rss_mb']['burst_last_5s_max']}), "
            f"{o['rss_mb']['after']} MB after. CPU cores used meanwhile: {o['cores']} (others: other people's "
            "processes on this shared machine).",
            "",
            "Latency over the whole burst (ms, from the scheduled arrival): "
            + "; ".join(
                f"{code}: p50 {v['p50']}, p99 {v['p99']}, max {v['max']}" for code, v in o["latency_ms"].items()
            ),
            "",
        ]
        codes = sorted({_status_group(s) for w in o["windows"] for s in w["statuses"]} - {OK})
        labels = sorted({s for w in o["windows"] for s in w["statuses"]} - {OK})
        head = ["t s", "offered/s", "ok", *labels, "ok p50", "ok p99"]
        for code in codes:
            head += [f"{code} p50", f"{code} p99"]
        head += ["goodput pairs/s", "queue max", "RSS MB"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
        for w in o["windows"]:
            row = [_fmt(w["t_s"]), _fmt(w["offered_per_s"], 1), str(w["statuses"].get(OK, 0))]
            row += [str(w["statuses"].get(label, 0)) for label in labels]
            lat = w["latency_ms"]
            row += [_fmt(lat.get(OK, {}).get("p50")), _fmt(lat.get(OK, {}).get("p99"))]
            for code in codes:
                row += [_fmt(lat.get(code, {}).get("p50")), _fmt(lat.get(code, {}).get("p99"))]
            row += [_fmt(w["goodput_pairs_s"], 1), _fmt(w["queue_pairs_max"]), _fmt(w["rss_mb_max"])]
            lines.append("| " + " | ".join(row) + " |")
        r = o["recovery"]
        lines += [
            "",
            f"After the burst, {r['clients']} closed-loop clients: back to >= 90% of capacity ({r['target_pairs_s']} "
            f"pairs/s over a 4-s window) from **{_fmt(r['back_to_90pct_after_s'], 2)} s** after the burst (lowest "
            f"4-s rate after that {_fmt(r['min_4s_rate_after_back'], 1)}); their first latencies "
            f"{r['first_latencies_ms']} ms; "
            f"closed loop {r['closed_loop_summary']}.",
            "Goodput per second around the burst's end (all successful answers; t=0 is when arrivals stop): "
            + ", ".join(f"{t:g}: {v:g}" for t, v in r["goodput_bins"]),
            "",
            f"Lone pair before: {o['lone_pair_before']}; after: {o['lone_pair_after']} (ms).",
            "",
        ]
    if results["kills"]:
        lines += [
            "## Worker kills (closed loop at capacity load, SIGKILL to one worker)",
            "",
            "| phase | protocol | workers | connections per worker at kill | killed at s | baseline pairs/s (min 4-s) "
            "| errors (client) | error span s after kill | longest gap without success s (before kill) | 4-s rate >= "
            "90% from s | min 4-s pairs/s | last 10 s pairs/s | new process after s | new worker ready after s "
            "| /readyz | worker CPU last 10 s (cores) |",
            "|---|---|---:|---|---:|---|---|---|---|---:|---:|---:|---|---:|---|---|",
        ]
        for k in results["kills"]:
            lines.append(
                f"| {k['phase']} | {k['protocol']} | {len(k['workers_before'])} | {k['connections_at_kill']} | "
                f"{k['kill_at_s']} | {k['baseline_pairs_s']} ({k['baseline_min_4s']}) | {k['errors'] or 'none'} | "
                f"{k['errors_first_last_s'] or '-'} | {k['longest_gap_without_success_s']} "
                f"({k['longest_gap_before_kill_s']}) | {_fmt(k['throughput_back_to_90pct_after_s'], 2)} | "
                f"{k['min_4s_pairs_s_after_kill']} | {k['last_10s_pairs_s']} | "
                f"{list(k['new_worker_seen_after_s'].values())} | "
                f"{_fmt(k['new_worker_ready_after_s'])} | {k['readyz']} | {k['worker_cpu_cores_last_10s']} |"
            )
        lines.append("")
        for k in results["kills"]:
            lines.append(f"- {k['phase']}: CPU cores used {k['cores']} (others: other people's processes)")
        for k in results["kills"]:
            lines.append(
                f"- {k['phase']} goodput per second (kill at {k['kill_at_s']} s): "
                + ", ".join(f"{t:g}: {v:g}" for t, v in k["goodput_bins"])
            )
        lines.append("")
    for failure in results["failures"]:
        lines += [f"**Failure** ({failure['server']}): {failure['error']}", "", "```", failure["log_tail"], "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if "BENTOML_HOME" not in os.environ:
        logger.warning("BENTOML_HOME is unset: the model goes into the default store (~/bentoml)")
    started = time.monotonic()
    results = Overload(args).run()
    results["wall_s"] = round(time.monotonic() - started, 1)
    (args.output / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (args.output / "results.md").write_text(markdown(results))
    logger.info("report: %s (%.0f s)", args.output / "results.md", results["wall_s"])
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
