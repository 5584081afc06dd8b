"""The link between the front processes and the process that owns the GPU: token arrays over a Unix socket.

Front workers parse HTTP and gRPC, check inputs and tokenise; they send each request's rows as
compact arrays (lengths int32, ids int32, segment ids int8) to the GPU owner, whose engine
(:mod:`serving.engine`) batches the rows of every front together and answers with one float32
logit per row. Frames are length-prefixed and carry a request id, so one connection per front
carries many requests at once.

BentoML's own hop between composed services (``bentoml.depends``) is an HTTP call through
Starlette and BentoML's serialisers on both ends; measured beside this link
(``load_tests/hop.py``, figures in ``load_tests/README.md``), it costs several times more per
call, in latency and in the GPU owner's CPU, which is the one process that must never be busy.
So ``bentoml serve`` still starts, watches and restarts the GPU owner as a composed service, and
its requests travel here. The socket lives in the folder where ``bentoml serve`` puts its
composed services' sockets, so that several servers on one host never meet.

Both ends run their socket on an event loop of their own, in a thread, so that HTTP, gRPC and
the engine can reach them from any thread. A front that loses its connection fails the requests
it had in flight with 503 (retry) and reconnects; the owner drops the work of a front that went
away.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from models.pairs import EncodedRows
from serving.engine import Job, ScoringEngine
from serving.errors import ErrorKind, ServiceError, Unavailable, error_of

logger = logging.getLogger("bentoml.ko_sts.link")

SCORE, CANCEL, PING, RESULT, ERROR, PONG = range(1, 7)
_SIZE = struct.Struct("<I")
_SCORE = struct.Struct("<BQIIId")  # kind, id, pairs, rows, tokens, client deadline (time.monotonic; inf: none)
_ID = struct.Struct("<BQ")  # kind, id: CANCEL, PING, PONG (then JSON)
_RESULT = struct.Struct("<BQI")  # kind, id, rows (then float32 logits)
_ERROR = struct.Struct("<BQBd")  # kind, id, error kind, retry after (nan: none) (then the UTF-8 message)
_KINDS = list(ErrorKind)
SOCKET_NAME = "ko-sts-link-{index}.sock"
RECONNECT_S = 0.2
UNREACHABLE = "the model process is not reachable yet (starting or restarting); retry shortly"


def socket_path(runner_uri: str, index: int = 1) -> Path:
    """The link socket of GPU owner ``index``, beside the composed service's own socket (``file:///...sock``)."""
    scheme, _, path = runner_uri.partition("://")
    if scheme not in ("file", "unix"):
        raise ValueError(
            f"the model service listens on {runner_uri}, not a Unix socket: the link needs the model process on "
            "this host (unset BENTOML_NO_UDS)"
        )
    return Path(path).parent / SOCKET_NAME.format(index=index)


class _LoopThread:
    """An event loop running in a daemon thread of its own."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        """Runs ``coroutine`` on the loop and waits for it from another thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def encode_score(request_id: int, rows: EncodedRows, pairs: int, client_deadline: float) -> bytes:
    lengths = rows.lengths.astype(np.int32)
    header = _SCORE.pack(SCORE, request_id, pairs, len(rows), rows.tokens, client_deadline)
    body = b"".join(
        (header, lengths.tobytes(), rows.ids.astype(np.int32, copy=False).tobytes(), rows.type_ids.tobytes())
    )
    return _SIZE.pack(len(body)) + body


def decode_score(frame: bytes) -> tuple[int, EncodedRows, int, float]:
    _, request_id, pairs, count, tokens, client_deadline = _SCORE.unpack_from(frame)
    at = _SCORE.size
    lengths = np.frombuffer(frame, dtype=np.int32, count=count, offset=at)
    at += 4 * count
    ids = np.frombuffer(frame, dtype=np.int32, count=tokens, offset=at)
    type_ids = np.frombuffer(frame, dtype=np.int8, count=tokens, offset=at + 4 * tokens)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] != tokens:
        raise ValueError(f"frame {request_id}: row lengths add up to {offsets[-1]} tokens, not {tokens}")
    return request_id, EncodedRows(ids, type_ids, offsets, np.zeros(count, dtype=bool)), pairs, client_deadline


def _frame(body: bytes) -> bytes:
    return _SIZE.pack(len(body)) + body


def _error_frame(request_id: int, error: BaseException) -> bytes:
    if not isinstance(error, ServiceError):
        logger.error("scoring failed", exc_info=error)
        error = ServiceError("internal error; the service's log has the details")
    retry = math.nan if error.retry_after_s is None else error.retry_after_s
    header = _ERROR.pack(ERROR, request_id, _KINDS.index(error.kind), retry)
    return _frame(header + error.message.encode())


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _SIZE.unpack(await reader.readexactly(_SIZE.size))
    return await reader.readexactly(size)


class LinkServer:
    """The GPU owner's end: takes rows from any number of fronts into its engine, answers with logits.

    Args:
        engine: the owner's engine.
        path: the Unix socket to listen on (a stale file there is replaced).
        status: what a ``PING`` is answered with (a JSON-able dict, e.g. the device and liveness).
    """

    def __init__(self, engine: ScoringEngine, path: Path, status: Callable[[], dict[str, Any]]):
        self.engine = engine
        self.path = path
        self.status = status
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = _LoopThread("ko-sts-link-server")
        path.unlink(missing_ok=True)
        self._server = self._loop.run(asyncio.start_unix_server(self._serve, path=str(path)), timeout=30)
        logger.info("link: the model takes requests on %s", path)

    @property
    def alive(self) -> bool:
        return self._loop.thread.is_alive()

    def close(self) -> None:
        """Stops listening and drops the fronts' connections (they fail what they had in flight with 503)."""

        async def shut() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()

        self._loop.run(shut(), timeout=10)
        self._loop.stop()
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        jobs: dict[int, Job] = {}
        self._writers.add(writer)
        try:
            while True:
                frame = await _read_frame(reader)
                kind = frame[0]
                if kind == SCORE:
                    self._score(frame, jobs, writer)
                elif kind == CANCEL:
                    job = jobs.pop(_ID.unpack_from(frame)[1], None)
                    if job is not None:
                        self.engine.cancel(job)
                elif kind == PING:
                    writer.write(_frame(_ID.pack(PONG, _ID.unpack_from(frame)[1]) + json.dumps(self.status()).encode()))
                else:
                    raise ValueError(f"unknown frame kind {kind}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the front went away
        except Exception:
            logger.exception("link: dropping a front's connection")
        finally:
            self._writers.discard(writer)
            for job in list(jobs.values()):
                self.engine.cancel(job)
            writer.close()

    def _score(self, frame: bytes, jobs: dict[int, Job], writer: asyncio.StreamWriter) -> None:
        request_id, rows, pairs, client_deadline = decode_score(frame)
        timeout_s = None if math.isinf(client_deadline) else client_deadline - time.monotonic()
        try:
            job = self.engine.submit(rows, pairs, timeout_s)
        except ServiceError as error:
            writer.write(_error_frame(request_id, error))
            return
        jobs[request_id] = job
        loop = asyncio.get_running_loop()
        expiry = loop.call_at(job.deadline, self.engine.withdraw, job) if math.isfinite(job.deadline) else None

        def answer(future: Future) -> None:
            if expiry is not None:
                expiry.cancel()
            if jobs.pop(request_id, None) is None or future.cancelled():
                return  # cancelled by the front, or its connection is gone
            error = future.exception()
            if error is not None:
                writer.write(_error_frame(request_id, error))
            else:
                logits = future.result()
                writer.write(_frame(_RESULT.pack(RESULT, request_id, len(logits)) + logits.tobytes()))

        job.future.add_done_callback(lambda future: loop.call_soon_threadsafe(answer, future))


class LinkClient:
    """A front's end: sends rows to the GPU owner and awaits their logits, from any thread's event loop.

    It connects in the background and reconnects after a loss; while it is not connected,
    requests are refused at once with 503 (retry).

    Args:
        path: the owner's link socket.
        on_status: called (on the link's thread) with the owner's status each time the link connects.
    """

    def __init__(self, path: Path, on_status: Callable[[dict[str, Any]], None] | None = None):
        self.path = path
        self.on_status = on_status
        self.connected = False
        self.disconnected_since = time.monotonic()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self._loop = _LoopThread("ko-sts-link")
        self._task = asyncio.run_coroutine_threadsafe(self._connect_forever(), self._loop.loop)

    @property
    def running(self) -> bool:
        """The link's thread and its connection task are alive (whether or not the owner is reachable)."""
        return self._loop.thread.is_alive() and not self._task.done()

    def admit(self) -> None:
        """Refuses at once (503) while the link is closed or the owner unreachable; the owner's engine does the rest."""
        if self._closed:
            raise Unavailable("the service is shutting down; retry on another replica")
        if not self.connected:
            raise Unavailable(UNREACHABLE, retry_after_s=1.0)

    def submit(self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None):
        """Sends the rows; returns (request id, a future of their logits). Thread-safe."""
        self.admit()
        arrived = time.monotonic() if arrived is None else arrived
        deadline = math.inf if timeout_s is None else arrived + timeout_s
        request_id = next(self._ids)
        future: Future = Future()
        frame = encode_score(request_id, rows, pairs, deadline)
        self._loop.loop.call_soon_threadsafe(self._send, request_id, frame, future)
        return request_id, future

    async def logits(self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None):
        """The rows' logits, from asyncio code on any loop; cancelling the caller cancels the work on the owner."""
        request_id, future = self.submit(rows, pairs, timeout_s, arrived)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._loop.loop.call_soon_threadsafe(self._cancel, request_id)
            raise

    async def ping(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """The owner's status (its ``PING`` answer), or None when it does not answer in time."""
        if not self.connected:
            return None
        request_id = next(self._ids)
        future: Future = Future()
        self._loop.loop.call_soon_threadsafe(self._send, request_id, _frame(_ID.pack(PING, request_id)), future)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except (TimeoutError, ServiceError):
            self._loop.loop.call_soon_threadsafe(self._pending.pop, request_id, None)
            return None

    def close(self) -> None:
        """Fails what is in flight as unavailable and stops the link's thread (quick: no waiting on the owner)."""
        self._closed = True
        self._loop.loop.call_soon_threadsafe(self._task.cancel)
        self._loop.run(self._drop(Unavailable("the service is shutting down; retry on another replica")), timeout=10)
        self._loop.stop()

    def _send(self, request_id: int, frame: bytes, future: Future) -> None:
        if self._writer is None:
            future.set_exception(Unavailable(UNREACHABLE, retry_after_s=1.0))
            return
        self._pending[request_id] = future
        self._writer.write(frame)

    def _cancel(self, request_id: int) -> None:
        if self._pending.pop(request_id, None) is not None and self._writer is not None:
            self._writer.write(_frame(_ID.pack(CANCEL, request_id)))

    async def _connect_forever(self) -> None:
        logged = False
        while not self._closed:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                if not logged:
                    logger.info("link: waiting for the model process at %s", self.path)
                    logged = True
                await asyncio.sleep(RECONNECT_S)
                continue
            logged = False
            self._writer, self.connected = writer, True
            logger.info("link: connected to the model process at %s", self.path)
            hello = asyncio.ensure_future(self._hello())
            try:
                await self._read(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                logger.warning(
                    "link: lost the model process; failing %d requests in flight, reconnecting", len(self._pending)
                )
            finally:
                hello.cancel()
                self.connected, self._writer = False, None
                self.disconnected_since = time.monotonic()
                writer.close()
                await self._drop(Unavailable("the model process restarted while scoring; retry", retry_after_s=1.0))

    async def _hello(self) -> None:
        """Asks a newly connected owner for its status and passes it on."""
        request_id = next(self._ids)
        future: Future = Future()
        self._send(request_id, _frame(_ID.pack(PING, request_id)), future)
        status = await asyncio.wrap_future(future)
        if self.on_status:
            self.on_status(status)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            frame = await _read_frame(reader)
            kind, request_id = _ID.unpack_from(frame)
            future = self._pending.pop(request_id, None)
            if future is None or future.done():
                continue  # cancelled meanwhile
            if kind == RESULT:
                (count,) = _RESULT.unpack_from(frame)[2:]
                future.set_result(np.frombuffer(frame, dtype=np.float32, count=count, offset=_RESULT.size))
            elif kind == ERROR:
                _, _, error_kind, retry = _ERROR.unpack_from(frame)
                message = frame[_ERROR.size :].decode()
                future.set_exception(error_of(_KINDS[error_kind], message, None if math.isnan(retry) else retry))
            elif kind == PONG:
                future.set_result(json.loads(frame[_ID.size :]))

    async def _drop(self, error: ServiceError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


class Links:
    """A front's links to every GPU owner (one per GPU); each request goes to the one with the fewest in flight.

    Args:
        paths: the owners' link sockets.
        on_status: called with an owner's status each time its link connects.
    """

    def __init__(self, paths: list[Path], on_status: Callable[[dict[str, Any]], None] | None = None):
        self.clients = [LinkClient(path, on_status) for path in paths]

    def __str__(self) -> str:
        return "the model process at " + ", ".join(str(client.path) for client in self.clients)

    @property
    def running(self) -> bool:
        return all(client.running for client in self.clients)

    @property
    def disconnected_since(self) -> float:
        """Since when no owner has been reachable (now, while one is)."""
        if any(client.connected for client in self.clients):
            return time.monotonic()
        return max(client.disconnected_since for client in self.clients)

    def _reachable(self) -> list[LinkClient]:
        """The connected clients, or all of them while none is (they then refuse at once)."""
        return [client for client in self.clients if client.connected] or self.clients

    def admit(self) -> None:
        """Refuses at once (503) while no owner is reachable."""
        self._reachable()[0].admit()

    async def logits(self, rows: EncodedRows, pairs: int, timeout_s: float | None = None, arrived: float | None = None):
        client = min(self._reachable(), key=lambda c: len(c._pending))
        return await client.logits(rows, pairs, timeout_s, arrived)

    async def ping(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """Every reachable owner's status merged: alive only if all are; None if none answers."""
        answers = [a for a in await asyncio.gather(*(c.ping(timeout_s) for c in self.clients)) if a is not None]
        if not answers:
            return None
        return {"alive": all(a["alive"] for a in answers), "device": ", ".join(a["device"] for a in answers)}

    def close(self) -> None:
        for client in self.clients:
            client.close()


def runner_uri(service_name: str) -> str | None:
    """Where ``bentoml serve`` started the composed service ``service_name`` (its ``BENTOML_RUNNER_MAP``)."""
    mapping = json.loads(os.environ.get("BENTOML_RUNNER_MAP", "{}"))
    return mapping.get(service_name)
