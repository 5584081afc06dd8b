"""Load generation: request payloads, transports, and the closed-loop, open-loop and lone-pair drivers.

A :class:`Transport` sends one request and says how it went (``"ok"`` or an error label such
as ``"503"`` or ``"timeout"``); the drivers only time transports, so the same load runs over
HTTP (:class:`HttpTransport`), gRPC (:class:`GrpcTransport`) or straight into an in-process
engine (:class:`EngineTransport`). The HTTP and gRPC transports send ``score`` requests (a
request of N pairs) or ``rank`` requests (a query and N candidates: the first pair's sentence1
against every pair's sentence2).

Payloads are built before the clock starts (JSON bodies encoded once), so the client spends
its CPU on sending and receiving only. Latency is measured from when a request was due: in
closed loop that is when the previous one returned, in open loop its scheduled arrival time
(so a slow server cannot hide queueing by slowing the client down).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

Pair = tuple[str, str]
OK = "ok"
REFUSAL_S = 0.001  # what an in-process refusal costs its client: about an HTTP refusal's round trip on this host
APIS = ("score", "rank")
# refusals that must say when to retry (HTTP ``Retry-After``, gRPC ``retry-after`` trailing metadata)
RETRY_AFTER_CODES = frozenset({"429", "503", "RESOURCE_EXHAUSTED", "UNAVAILABLE"})
NO_RETRY_AFTER = " no-retry-after"


def refusal_label(code: str, retry_after: bool) -> str:
    """An error label: a 429/503 (RESOURCE_EXHAUSTED/UNAVAILABLE) without a retry hint gets ``NO_RETRY_AFTER``.

    On gRPC, an UNAVAILABLE raised by the channel itself (the connection broke) carries no hint
    either, so the label also tells a service's refusal from a transport failure.
    """
    return code + NO_RETRY_AFTER if code in RETRY_AFTER_CODES and not retry_after else code


def read_sentence_pairs(path: str | Path) -> list[Pair]:
    """Sentence pairs of a KLUE-STS file (``training.data.read_pairs``; plain JSON Lines without pandas)."""
    try:
        from training.data import read_pairs
    except ImportError:  # a GPU box with only the serving wheels: read JSON Lines directly
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(row["sentence1"], row["sentence2"]) for row in rows]
    frame = read_pairs(path)
    return list(zip(frame["sentence1"], frame["sentence2"]))


def request_pairs(pairs: Sequence[Pair], mix: int, count: int | None = None) -> list[list[Pair]]:
    """``count`` requests of ``mix`` pairs each, cycling through ``pairs`` (every pair used once by default)."""
    if count is None:
        count = max(1, -(-len(pairs) // mix))
    return [[pairs[(i * mix + j) % len(pairs)] for j in range(mix)] for i in range(count)]


class Transport(ABC):
    """One way of sending a scoring request (HTTP, gRPC, in-process)."""

    name: str

    @abstractmethod
    def prepare(self, pairs: Sequence[Pair]) -> Any:
        """Builds the request payload for ``pairs`` up front (not timed)."""

    @abstractmethod
    async def send(self, payload: Any) -> str:
        """Sends one request; returns ``"ok"`` (every pair scored) or an error label."""

    @abstractmethod
    async def start(self) -> None:
        """Opens connections (called inside the event loop that will send)."""

    @abstractmethod
    async def stop(self) -> None:
        """Closes connections."""

    async def counters(self) -> dict[str, float] | None:
        """Cumulative server-side counters (``ko_sts_*`` histogram sums and counts), if the server exposes them."""
        return None


class HttpTransport(Transport):
    """``POST /score`` with a JSON body over keep-alive HTTP/1.1 connections (one per request in flight).

    A minimal client on asyncio protocols: request bytes are built once in :meth:`prepare`, and a
    response is read by its ``Content-Length`` (or chunks). It costs a fraction of a general
    client's CPU per request, which matters when client and server share two cores.

    Args:
        base_url: e.g. ``http://127.0.0.1:3000``.
        timeout_s: a request not answered by then counts as ``timeout`` (its connection is closed).
        metrics: scrape ``/metrics`` for batch sizes and queue times (the service; not the baseline).
        api: ``score`` (``POST /score``) or ``rank`` (``POST /rank``, every candidate returned).
    """

    name = "http"

    def __init__(self, base_url: str, timeout_s: float = 60.0, metrics: bool = True, api: str = "score"):
        parsed = urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"{base_url!r}: give an http:// URL with a host, e.g. http://127.0.0.1:3000")
        if api not in APIS:
            raise ValueError(f"api {api!r}: choose one of {', '.join(APIS)}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.api = api
        self._head = f"Host: {parsed.netloc}\r\nUser-Agent: ko-sts-bench\r\n"
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    def prepare(self, pairs: Sequence[Pair]) -> tuple[bytes, int]:
        if self.api == "rank":
            body: dict[str, Any] = {"query": pairs[0][0], "candidates": [b for _, b in pairs]}
        else:
            body = {"pairs": [{"sentence1": a, "sentence2": b} for a, b in pairs]}
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        head = (
            f"POST /{self.api} HTTP/1.1\r\n{self._head}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return head.encode() + data, len(pairs)

    async def start(self) -> None:
        pass  # connections open on demand

    async def stop(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        self._all.clear()

    async def send(self, payload: tuple[bytes, int]) -> str:
        request, expected = payload
        try:
            status, body, head = await self._exchange(request)
        except TimeoutError:
            return "timeout"
        except OSError as error:  # refused, reset, closed mid-response
            return type(error).__name__
        if status != 200:
            return refusal_label(str(status), b"\r\nretry-after:" in head)
        # one "score" key per pair: a cheap check that every pair was answered
        return OK if body.count(b'"score"') == expected else "wrong_count"

    async def counters(self) -> dict[str, float] | None:
        if not self.metrics:
            return None
        try:
            status, body, _ = await self._exchange(f"GET /metrics HTTP/1.1\r\n{self._head}\r\n".encode())
        except (TimeoutError, OSError):
            return None
        return parse_prometheus_sums(body.decode()) if status == 200 else None

    async def _exchange(self, request: bytes) -> tuple[int, bytes, bytes]:
        """Sends one request on an idle connection (or a new one); returns its status, body and lower-cased head."""
        loop = asyncio.get_running_loop()
        connection = None
        while self._idle and connection is None:
            candidate = self._idle.pop()
            if candidate.open:
                connection = candidate
            else:
                self._all.discard(candidate)
        if connection is None:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
            self._all.add(connection)
        waiter = connection.send(request)
        timer = loop.call_later(self.timeout_s, connection.expire)
        try:
            status, body, head, reusable = await waiter
        except BaseException:
            connection.close()
            self._all.discard(connection)
            raise
        finally:
            timer.cancel()
        if reusable and connection.open:
            self._idle.append(connection)
        else:
            connection.close()
            self._all.discard(connection)
        return status, body, head


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, the response parsed as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.open = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.open = True

    def send(self, request: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        reusable = b"\r\nconnection: close" not in head
        start = end + 4
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            size = int(head[length_at + 17 : line_end if line_end > 0 else len(head)])
            if len(self.buffer) < start + size:
                return
            body = bytes(self.buffer[start : start + size])
            del self.buffer[: start + size]
        elif b"\r\ntransfer-encoding: chunked" in head:
            parsed = _dechunk(self.buffer, start)
            if parsed is None:
                return
            body, consumed = parsed
            del self.buffer[:consumed]
        else:
            return  # no length: not HTTP/1.1 as the servers here speak it; ends as a reset at close
        self.waiter.set_result((status, body, head, reusable))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection mid-response"))

    def expire(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(TimeoutError())
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start``: (body, bytes consumed), or None while incomplete."""
    body, position = bytearray(), start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None
        body += buffer[chunk_start : chunk_start + size]
        position = chunk_start + size + 2


def parse_prometheus_sums(text: str, prefixes: tuple[str, ...] = ("ko_sts_",)) -> dict[str, float]:
    """``<name>_sum`` and ``<name>_count`` of histograms under ``prefixes``, summed over labels."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        if name.endswith(("_sum", "_count")):
            try:
                totals[name] = totals.get(name, 0.0) + float(value)
            except ValueError:
                continue
    return totals


class GrpcTransport(Transport):
    """``ko_sts.v1.Similarity`` ``Score`` (or ``Rank``) calls on grpc.aio channels, as gRPC clients would.

    One HTTP/2 connection carries every call of a channel (gRPC's usual pattern, where HTTP/1.1
    needs a connection per request); calls go round the channels. A connection is served by one
    front worker (they share the port), so a single channel measures one worker, as a single
    client would; several stand for several clients or a load balancer. Request messages are
    serialised in :meth:`prepare`, and replies are parsed to check that every pair was answered.

    Args:
        target: ``host:port`` of the gRPC server.
        timeout_s: each call's deadline; a call past it counts as ``timeout``.
        api: ``score`` or ``rank``.
        metrics_url: the service's HTTP address, whose ``/metrics`` gives batch sizes and queue times.
        channels: channels (each its own connection) the calls go round.
    """

    name = "grpc"

    def __init__(
        self,
        target: str,
        timeout_s: float = 60.0,
        api: str = "score",
        metrics_url: str | None = None,
        channels: int = 1,
    ):
        import grpc

        from ko_sts.v1 import similarity_pb2

        if api not in APIS:
            raise ValueError(f"api {api!r}: choose one of {', '.join(APIS)}")
        self._grpc = grpc
        self.target = target
        self.timeout_s = timeout_s
        self.api = api
        self._pb = similarity_pb2
        self._reply = similarity_pb2.RankResponse if api == "rank" else similarity_pb2.ScoreResponse
        self._metrics = HttpTransport(metrics_url, timeout_s=timeout_s) if metrics_url else None
        self.channels = channels
        self._channels: list = []
        self._calls: itertools.cycle | None = None

    def prepare(self, pairs: Sequence[Pair]) -> tuple[bytes, int]:
        pb = self._pb
        if self.api == "rank":
            request = pb.RankRequest(query=pairs[0][0], candidates=[b for _, b in pairs])
        else:
            request = pb.ScoreRequest(pairs=[pb.SentencePair(sentence1=a, sentence2=b) for a, b in pairs])
        return request.SerializeToString(), len(pairs)

    async def start(self) -> None:
        method = "Rank" if self.api == "rank" else "Score"
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own per channel
        self._channels = [self._grpc.aio.insecure_channel(self.target, options=options) for _ in range(self.channels)]
        calls = [channel.unary_unary(f"/ko_sts.v1.Similarity/{method}") for channel in self._channels]  # bytes
        self._calls = itertools.cycle(calls)
        for channel in self._channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=self.timeout_s)

    async def stop(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels = []
        if self._metrics is not None:
            await self._metrics.stop()

    async def send(self, payload: tuple[bytes, int]) -> str:
        request, expected = payload
        try:
            reply = await next(self._calls)(request, timeout=self.timeout_s)
        except self._grpc.aio.AioRpcError as error:
            code = error.code()
            if code == self._grpc.StatusCode.DEADLINE_EXCEEDED:
                return "timeout"
            trailing = error.trailing_metadata() or ()
            return refusal_label(code.name, any(key == "retry-after" for key, _ in trailing))
        return OK if len(self._reply.FromString(reply).results) == expected else "wrong_count"

    async def counters(self) -> dict[str, float] | None:
        return await self._metrics.counters() if self._metrics else None


class EngineTransport(Transport):
    """Straight into the service's :class:`serving.frontend.Frontend` and engine, in this process: no HTTP."""

    name = "in-process"

    def __init__(self, frontend, counters: Callable[[], dict[str, float]] | None = None):
        from serving.errors import ServiceError

        self.frontend = frontend
        self._counters = counters
        self._scoring_error = ServiceError

    def prepare(self, pairs: Sequence[Pair]) -> tuple[list[Pair], int]:
        return list(pairs), len(pairs)

    async def start(self) -> None:
        pass  # the engine is already running

    async def stop(self) -> None:
        pass  # the frontend's owner closes it

    async def send(self, payload: tuple[list[Pair], int]) -> str:
        pairs, expected = payload
        try:
            result = await self.frontend.score(pairs)
        except self._scoring_error as error:
            # refused before the front awaited anything: wait as long as a refusal takes over HTTP on this host
            # (about a millisecond), or clients that retry at once keep the event loop and the GIL from the engine
            await asyncio.sleep(REFUSAL_S)
            return str(error.status.http)
        scores = getattr(result, "scores", result)
        return OK if len(scores) == expected else "wrong_count"

    async def counters(self) -> dict[str, float] | None:
        return dict(self._counters()) if self._counters else None


@dataclass
class Window:
    """What one measurement window saw.

    ``served`` counts successful requests that completed inside the window (throughput);
    ``statuses`` and ``latencies`` describe the window's requests: in closed loop those that
    completed inside it, in open loop those due inside it, whenever they completed.
    """

    seconds: float
    pairs_per_request: int
    served: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    statuses: Counter = field(default_factory=Counter)
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    counters_before: dict[str, float] | None = None
    counters_after: dict[str, float] | None = None

    def record(self, status: str, latency: float) -> None:
        self.statuses[status] += 1
        if status == OK:
            self.latencies.append(latency)

    def summary(self) -> dict[str, Any]:
        """Throughput, latency percentiles (ms), errors by label, mean batch size, CPU (cores)."""
        lat = np.asarray(self.latencies) * 1000.0
        pairs = self.served * self.pairs_per_request
        percentiles = np.percentile(lat, [50, 90, 99]) if len(lat) else [float("nan")] * 3
        return {
            "requests": sum(self.statuses.values()),
            "ok": self.statuses.get(OK, 0),
            "requests_per_s": self.served / self.seconds,
            "pairs_per_s": pairs / self.seconds,
            "p50_ms": float(percentiles[0]),
            "p90_ms": float(percentiles[1]),
            "p99_ms": float(percentiles[2]),
            "mean_ms": float(lat.mean()) if len(lat) else float("nan"),
            "max_ms": float(lat.max()) if len(lat) else float("nan"),
            "errors": {k: v for k, v in sorted(self.statuses.items()) if k != OK},
            "client_cpu": self.client_cpu_s / self.seconds,
            "server_cpu": None if self.server_cpu_s is None else self.server_cpu_s / self.seconds,
            # CPU of client and server together per pair served: robust to other work on a shared machine
            "cpu_ms_per_pair": 1000.0 * (self.client_cpu_s + (self.server_cpu_s or 0.0)) / pairs if pairs else None,
            **self._server_means(),
        }

    def _server_means(self) -> dict[str, float | None]:
        """Means over the window of the service's histograms: pairs per round, tokenising, queue and round time."""
        metrics = (
            ("mean_batch_pairs", "ko_sts_batch_size", 1.0),
            ("mean_tokenize_ms", "ko_sts_tokenization_duration_seconds", 1000.0),
            ("mean_queue_ms", "ko_sts_queue_duration_seconds", 1000.0),
            ("mean_inference_ms", "ko_sts_inference_duration_seconds", 1000.0),
        )
        before, after = self.counters_before, self.counters_after
        means: dict[str, float | None] = {key: None for key, _, _ in metrics}
        if not before or not after:
            return means
        for key, metric, scale in metrics:
            count = after.get(metric + "_count", 0.0) - before.get(metric + "_count", 0.0)
            if count > 0:
                means[key] = scale * (after.get(metric + "_sum", 0.0) - before.get(metric + "_sum", 0.0)) / count
        return means


class LoadDriver:
    """Runs timed load through one transport.

    Args:
        transport: how requests are sent.
        cpu_seconds: CPU seconds used so far by the server's processes (``None`` when it is this process).
        drain_s: after a window, how long to wait for requests still in flight before cancelling them.
        trace: if given, every request of the closed and open loops is appended to it as
            ``(due, done, status)`` (``time.perf_counter`` seconds; ``due`` as in the latency),
            warm-up included: for timelines (``load_tests/overload.py``).
    """

    def __init__(
        self,
        transport: Transport,
        cpu_seconds: Callable[[], float] | None = None,
        drain_s: float = 60.0,
        trace: list[tuple[float, float, str]] | None = None,
    ):
        self.transport = transport
        self.cpu_seconds = cpu_seconds
        self.drain_s = drain_s
        self.trace = trace

    async def closed_loop(self, payloads: Sequence[Any], mix: int, concurrency: int, seconds: float, warmup: float):
        """``concurrency`` clients, each sending its next request as soon as the last one returns."""
        window = Window(seconds, mix)
        start = time.perf_counter() + warmup
        end = start + seconds

        async def client(k: int) -> None:
            i = k
            while (sent := time.perf_counter()) < end:
                status = await self.transport.send(payloads[i % len(payloads)])
                done = time.perf_counter()
                if self.trace is not None:
                    self.trace.append((sent, done, status))
                i += concurrency
                if start <= done <= end:
                    window.record(status, done - sent)
                    window.served += status == OK

        await self._run(window, [client(k) for k in range(concurrency)], start, end)
        return window

    async def open_loop(
        self, payloads: Sequence[Any], mix: int, rate_rps: float, seconds: float, warmup: float, max_in_flight: int
    ):
        """Poisson arrivals at ``rate_rps`` requests/s whatever the server does (up to ``max_in_flight`` unanswered).

        Requests due in the window are waited for (up to ``drain_s`` after it) so that a server
        falling behind shows as latency, not as missing requests.
        """
        window = Window(seconds, mix)
        start = time.perf_counter() + warmup
        end = start + seconds
        rng = np.random.default_rng(0)
        in_flight: dict[asyncio.Task, float] = {}

        async def one(payload: Any, due: float) -> None:
            status = await self.transport.send(payload)
            done = time.perf_counter()
            if self.trace is not None:
                self.trace.append((due, done, status))
            if start <= due < end:
                window.record(status, done - due)
            window.served += status == OK and start <= done <= end

        async def arrivals() -> None:
            due, i = start - warmup, 0
            while due < end:
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                if len(in_flight) >= max_in_flight:
                    if due >= start:
                        window.statuses["client_overflow"] += 1  # the server fell this far behind
                else:
                    task = asyncio.create_task(one(payloads[i % len(payloads)], due))
                    in_flight[task] = due
                    task.add_done_callback(in_flight.pop)
                i += 1
                due += rng.exponential(1.0 / rate_rps)
            if in_flight:
                await asyncio.wait(list(in_flight), timeout=max(0.0, end + self.drain_s - time.perf_counter()))
            late = dict(in_flight)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(list(late))
            abandoned = sum(start <= due < end for due in late.values())
            if abandoned:
                window.statuses["abandoned"] += abandoned

        await self._run(window, [arrivals()], start, end)
        return window

    async def lone_pairs(self, payloads: Sequence[Any], count: int) -> list[float]:
        """Latencies (ms) of ``count`` requests sent one at a time, each after the previous returned."""
        latencies = []
        for i in range(count):
            sent = time.perf_counter()
            status = await self.transport.send(payloads[i % len(payloads)])
            latencies.append((time.perf_counter() - sent) * 1000.0 if status == OK else float("nan"))
        return latencies

    async def _run(self, window: Window, jobs: list, start: float, end: float) -> None:
        """Runs the jobs; snapshots CPU time and server counters at the window's edges; drains the rest."""
        process_cpu = time.process_time

        async def edges() -> None:
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            window.counters_before = await self.transport.counters()
            client0, server0 = process_cpu(), self.cpu_seconds() if self.cpu_seconds else None
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            window.client_cpu_s = process_cpu() - client0
            if server0 is not None:
                window.server_cpu_s = self.cpu_seconds() - server0
            window.counters_after = await self.transport.counters()

        tasks = [asyncio.ensure_future(job) for job in [*jobs, edges()]]
        # open-loop arrivals drain themselves within drain_s; the margin is for their cleanup
        _, pending = await asyncio.wait(tasks, timeout=end - time.perf_counter() + self.drain_s + 5.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            window.statuses["abandoned"] += len(pending)  # closed-loop clients still waiting for an answer
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
