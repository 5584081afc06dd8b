"""The ko_sts clients, sync and asyncio: answers, errors and retries over HTTP (a scripted server on
loopback, which both HTTP libraries, httpx and aiohttp, talk to for real) and gRPC (the real server
class in-process), then what only asyncio has: cancellation and a loop never blocked.

Every test of answers, errors and retries runs for both styles (``tests/client_styles.py``): the two
must behave the same. Which failures are retried must match the service's error table. The clients
against `bentoml serve` of the tiny model, on every supported Python: tests/test_client_service.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest

import ko_sts.aio
import ko_sts.client
from ko_sts import AsyncGrpcClient, AsyncHttpClient, KoStsError, PairScore, RankedCandidate, Retry
from ko_sts.protocol import KIND_OF_GRPC_CODE, KIND_OF_HTTP_STATUS, RETRY_GRPC_CODES, RETRY_HTTP_STATUSES
from serving.errors import ERROR_TABLE, ErrorKind, Overloaded, Unavailable
from serving.frontend import Scored
from serving.grpc_server import ServedModel
from serving.inputs import InputRules
from tests.client_styles import STYLES, make_client
from tests.engine_doubles import wait_for
from tests.test_grpc import INFO, local_server

PAIRS = [("오늘 날씨 좋다", "날씨가 맑네요"), ("환불은 언제 되나요?", "배송은 얼마나 걸려요?")]


@pytest.fixture(params=STYLES)
def style(request) -> str:
    return request.param


def test_the_client_retries_exactly_what_the_error_table_calls_retryable():
    for kind, status in ERROR_TABLE.items():
        assert (status.http in RETRY_HTTP_STATUSES) == status.retry, kind
        assert (status.grpc in RETRY_GRPC_CODES) == status.retry, kind
    for http, kind in KIND_OF_HTTP_STATUS.items():
        assert http == 400 or ERROR_TABLE[ErrorKind(kind)].http == http  # 400: BentoML's own validation
    for code, kind in KIND_OF_GRPC_CODE.items():
        assert ERROR_TABLE[ErrorKind(kind)].grpc == code


def test_backoff_waits_out_retry_after_plus_capped_jitter():
    retry = Retry(attempts=5, base_s=0.1, max_s=0.3)
    for n in range(5):
        delays = [retry.delay(n, None) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= min(0.3, 0.1 * 2**n)
    assert all(2.0 <= retry.delay(0, 2.0) <= 2.1 for _ in range(100))


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The waits between attempts, recorded instead of waited (both styles)."""
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr("ko_sts.client._sleep", waited.append)
    monkeypatch.setattr("ko_sts.aio._sleep", record)
    return waited


@dataclass(frozen=True)
class Seen:
    """A request the scripted server received."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class ScriptedHttp:
    """An HTTP/1.1 server on loopback (keep-alive) whose requests get ``script``'s answers in turn, the last
    one repeated: an ``httpx.Response`` is written as it is; ``"hang"`` answers nothing for 2 s, ``"garble"``
    writes what is not HTTP and closes. With ``"refuse"`` first, the port is bound but not listening (a
    connection is refused) until :meth:`listen`, which the test's retry wait calls."""

    def __init__(self, script: list[Any]):
        self.script = script
        self.seen: list[Seen] = []
        self.connections = 0
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                scripted.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = scripted.script[min(len(scripted.seen), len(scripted.script)) - 1]
                if answer == "hang":
                    threading.Event().wait(2.0)
                    self.close_connection = True
                elif answer == "garble":
                    self.wfile.write(b"this is not HTTP\r\n\r\n")
                    self.close_connection = True
                else:
                    self.send_response(answer.status_code)
                    for name, value in {**answer.headers, "content-length": str(len(answer.content))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a hung answer has closed its socket

            def process_request(self, request: Any, client_address: Any) -> None:
                scripted.connections += 1
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        if script[0] == "refuse":
            script.pop(0)
        else:
            self.listen()

    def listen(self) -> None:
        if not self.thread.is_alive():
            self.server.server_activate()
            self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def _first(action, wait):
    """``wait`` (recorded, sync or async), after ``action``."""

    def wait_after(seconds: float) -> Any:
        action()
        return wait(seconds)

    return wait_after


@pytest.fixture
def http_client(style, sleeps, monkeypatch):
    """Makes HTTP clients of scripted servers: ``http_client(script, **options)`` -> the client, requests seen."""
    with ExitStack() as stack:

        def make(script: list, **options):
            server = ScriptedHttp(list(script))
            stack.callback(server.stop)
            for module in (ko_sts.client, ko_sts.aio):  # a retry wait lets a refusing server listen
                monkeypatch.setattr(module, "_sleep", _first(server.listen, module._sleep))
            client = make_client(style, "http", server.url, **options)
            return stack.enter_context(client), server.seen

        yield make


OK_SCORES = httpx.Response(
    200,
    json=[{"score": 4.2, "similar": True, "truncated": False}, {"score": 0.5, "similar": False, "truncated": True}],
    headers={"X-Ko-Sts-Model": "ko-sts:abc"},
)


def _error(status: int, kind: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"X-Ko-Sts-Model": "ko-sts:abc", **({"Retry-After": retry_after} if retry_after else {})}
    return httpx.Response(status, json={"error": kind, "detail": f"{kind} detail"}, headers=headers)


def test_http_score_sends_pairs_and_reads_results_and_model(sleeps, http_client):
    client, seen = http_client([OK_SCORES])
    result = client.score([PAIRS[0], {"sentence1": PAIRS[1][0], "sentence2": PAIRS[1][1]}])
    assert result.results == [PairScore(4.2, True, False), PairScore(0.5, False, True)]
    assert result.model_tag == "ko-sts:abc"
    assert seen[0].path == "/score" and seen[0].headers["content-type"] == "application/json"
    assert httpx.Response(200, content=seen[0].body).json() == {
        "pairs": [{"sentence1": a, "sentence2": b} for a, b in PAIRS]
    }


def test_http_rank_sends_top_k_only_when_given(sleeps, http_client):
    ranked = httpx.Response(200, json=[{"index": 1, "score": 3.5, "similar": True, "truncated": False}])
    client, seen = http_client([ranked])
    assert client.rank("q", ["a", "b"], top_k=1).results == [RankedCandidate(1, 3.5, True, False)]
    client.rank("q", ["a", "b"])
    bodies = [httpx.Response(200, content=r.body).json() for r in seen]
    assert bodies == [{"query": "q", "candidates": ["a", "b"], "top_k": 1}, {"query": "q", "candidates": ["a", "b"]}]


def test_http_sends_the_api_key_as_a_bearer_token(sleeps, http_client):
    client, seen = http_client([OK_SCORES], api_key="s3cret")
    client.score(PAIRS)
    assert seen[0].headers["authorization"] == "Bearer s3cret"


def test_http_503_is_retried_after_retry_after(sleeps, http_client):
    client, seen = http_client([_error(503, "queue_timeout", "1"), OK_SCORES])
    assert len(client.score(PAIRS).results) == 2
    assert len(seen) == 2 and len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.1


def test_a_connection_that_cannot_be_opened_is_retried(sleeps, http_client):
    client, seen = http_client(["refuse", OK_SCORES])
    assert len(client.score(PAIRS).results) == 2 and len(sleeps) == 1 and len(seen) == 1


@pytest.mark.parametrize(
    ("response", "kind"),
    [(_error(429, "overloaded", "1"), "overloaded"), (_error(422, "invalid_input"), "invalid_input")],
)
def test_http_429_and_bad_input_are_never_retried(sleeps, http_client, response, kind):
    client, seen = http_client([response, OK_SCORES])
    with pytest.raises(KoStsError) as failed:
        client.score(PAIRS)
    assert failed.value.kind == kind and failed.value.message == f"{kind} detail"
    assert failed.value.model_tag == "ko-sts:abc" and not failed.value.retryable
    assert len(seen) == 1 and sleeps == []


def test_retries_stop_after_the_last_attempt_or_before_the_deadline(sleeps, http_client):
    client, seen = http_client([_error(503, "unavailable")], retry=Retry(attempts=3))
    with pytest.raises(KoStsError, match="unavailable"):
        client.score(PAIRS)
    assert len(seen) == 3 and len(sleeps) == 2
    client, seen = http_client([_error(503, "unavailable", "30")], timeout_s=5)
    with pytest.raises(KoStsError) as failed:
        client.score(PAIRS)  # waiting 30 s would pass the 5 s deadline: give up at once
    assert failed.value.retry_after_s == 30 and len(seen) == 1


def test_an_error_without_the_services_body_gets_its_status_kind(sleeps, http_client):
    proxy_400 = httpx.Response(400, json={"error": "Bad request from a proxy", "detail": [{"loc": ["pairs"]}]})
    client, _ = http_client([proxy_400])
    with pytest.raises(KoStsError) as failed:
        client.score(PAIRS)
    assert failed.value.kind == "malformed" and failed.value.status == 400 and not failed.value.retryable


def test_http_transport_failures_are_errors_of_their_own_kind(sleeps, http_client):
    client, seen = http_client(["hang", "garble"], timeout_s=0.3)
    with pytest.raises(KoStsError) as late:
        client.score(PAIRS)
    with pytest.raises(KoStsError) as garbled:
        client.score(PAIRS)
    assert (late.value.kind, garbled.value.kind) == ("deadline_exceeded", "transport")
    assert len(seen) == 2 and sleeps == []  # the request may have been served: never retried


class ScriptedEngine:
    """Raises the scripted errors in turn, then scores every pair 4.0 once ``gate`` is open (open by default).

    Records its calls, whether one has reached the gate (``entered``), and calls cancelled while held there.
    """

    def __init__(self, errors: list[Exception], delay_s: float = 0.0):
        self.errors = list(errors)
        self.calls = 0
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.cancelled = 0

    async def score(self, pairs, timeout_s=None) -> Scored:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.entered.set()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Scored(np.full(len(pairs), 4.0), np.zeros(len(pairs), dtype=bool))


@pytest.fixture
def grpc_server():
    """Starts in-process gRPC servers in front of an engine: ``grpc_server(engine)`` -> target."""
    with ExitStack() as stack:

        def start(engine: ScriptedEngine) -> str:
            server, _ = stack.enter_context(local_server())
            server.serve(ServedModel(engine, InputRules(), INFO))
            return f"127.0.0.1:{server.port}"

        yield start


@pytest.fixture
def grpc_client(style, grpc_server):
    """Makes clients of in-process servers: ``grpc_client(engine, **client_options)``."""
    with ExitStack() as stack:

        def make(engine: ScriptedEngine, **options):
            return stack.enter_context(make_client(style, "grpc", grpc_server(engine), **options))

        yield make


def test_grpc_unavailable_is_retried_after_retry_after(sleeps, grpc_client):
    engine = ScriptedEngine([Unavailable("shutting down", retry_after_s=2.0)])
    client = grpc_client(engine)
    result = client.score(PAIRS)
    assert result.results == [PairScore(4.0, True, False)] * 2 and result.model_tag == INFO.tag
    assert engine.calls == 2 and len(sleeps) == 1 and 2.0 <= sleeps[0] <= 2.1
    ranked = client.rank("q", ["a", "b", "c"], top_k=2)
    assert [c.index for c in ranked.results] == [0, 1]  # equal scores: by index
    assert client.model_info().tag == INFO.tag


def test_grpc_resource_exhausted_is_never_retried(sleeps, grpc_client):
    engine = ScriptedEngine([Overloaded("the queue is full", retry_after_s=1.0)])
    client = grpc_client(engine)
    with pytest.raises(KoStsError) as failed:
        client.score(PAIRS)
    error = failed.value
    assert (error.kind, error.status, error.retry_after_s, error.model_tag) == (
        "overloaded",
        "RESOURCE_EXHAUSTED",
        1.0,
        INFO.tag,
    )
    assert error.message == "the queue is full" and engine.calls == 1 and sleeps == []
    with pytest.raises(KoStsError) as bad:
        client.rank("q", [" "])
    assert bad.value.kind == "invalid_input" and "candidates[0]" in bad.value.message
    with pytest.raises(KoStsError, match="top_k"):
        client.rank("q", ["a"], top_k=-1)  # uint32 on the wire: refused before it is sent


def test_grpc_deadline_covers_the_call_and_is_not_retried(sleeps, grpc_client):
    engine = ScriptedEngine([], delay_s=2.0)
    client = grpc_client(engine, timeout_s=0.3)
    with pytest.raises(KoStsError) as late:
        client.score(PAIRS)
    assert late.value.kind == "deadline_exceeded" and engine.calls == 1 and sleeps == []


def test_grpc_without_a_server_retries_then_says_unavailable(sleeps, style):
    with local_server() as (server, _):
        port = server.port  # free again once this server has stopped
    with make_client(style, "grpc", f"127.0.0.1:{port}", timeout_s=10, retry=Retry(attempts=2)) as client:
        with pytest.raises(KoStsError) as down:
            client.model_info()
    assert down.value.kind == "unavailable" and down.value.retryable and len(sleeps) == 1


def test_timeout_s_must_be_positive(style):
    for protocol, address in (("http", "http://ko-sts.test"), ("grpc", "127.0.0.1:1")):
        with pytest.raises(ValueError, match="timeout_s must be positive"):
            make_client(style, protocol, address, timeout_s=0)


# --- asyncio only: the loop, cancellation, wait_for ----------------------------------------------


@pytest.fixture
def held(grpc_server):
    """An engine holding every call at its gate until the test opens it, and its server's target."""
    engine = ScriptedEngine([])
    engine.gate.clear()
    yield engine, grpc_server(engine)
    engine.gate.set()


async def _until(condition) -> None:
    """Waits for what the server's threads do, without blocking the loop."""
    await asyncio.get_running_loop().run_in_executor(None, wait_for, condition)


def test_async_calls_do_not_block_the_loop_and_share_one_channel(held):
    engine, target = held

    async def main() -> None:
        async with AsyncGrpcClient(target) as client:
            scoring = asyncio.create_task(client.score(PAIRS))
            await _until(engine.entered.is_set)  # the score call waits in the engine
            assert (await client.model_info()).tag == INFO.tag  # another call on the same client meanwhile
            assert not scoring.done()
            engine.gate.set()
            assert len((await scoring).results) == 2

    asyncio.run(main())


def test_a_cancelled_call_raises_cancelled_error_and_cancels_the_work(held):
    engine, target = held

    async def main() -> None:
        async with AsyncGrpcClient(target) as client:
            scoring = asyncio.create_task(client.score(PAIRS))
            await _until(engine.entered.is_set)
            scoring.cancel()
            with pytest.raises(asyncio.CancelledError):
                await scoring
            await _until(lambda: engine.cancelled == 1)  # the service dropped the call
            engine.gate.set()
            assert len((await client.score(PAIRS)).results) == 2  # the client goes on serving

    asyncio.run(main())


def test_wait_for_ends_a_call_with_asyncio_timeout_error(held):
    engine, target = held

    async def main() -> None:
        async with AsyncGrpcClient(target) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.score(PAIRS), timeout=0.2)
            await _until(lambda: engine.cancelled == 1)

    asyncio.run(main())


def test_cancelling_during_a_retry_wait_stops_at_once(grpc_server):
    """The service asks for a 30 s wait; a cancelled caller does not sit it out, nor try again."""
    engine = ScriptedEngine([Unavailable("loading", retry_after_s=30.0)])
    target = grpc_server(engine)

    async def main() -> None:
        async with AsyncGrpcClient(target, timeout_s=60) as client:
            waiting = asyncio.create_task(client.score(PAIRS))
            await _until(lambda: engine.calls == 1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

    asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert engine.calls == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_async_client_belongs_to_one_event_loop(protocol, grpc_server):
    if protocol == "http":
        server = ScriptedHttp([OK_SCORES])
        client = AsyncHttpClient(server.url)  # made outside any loop: its session opens in the first call's
    else:
        client = AsyncGrpcClient(grpc_server(ScriptedEngine([])))  # as an application's startup code may
    loop = asyncio.new_event_loop()
    try:
        assert len(loop.run_until_complete(client.score(PAIRS)).results) == 2
        with pytest.raises(RuntimeError, match="one per loop"):
            asyncio.run(client.score(PAIRS))
        loop.run_until_complete(client.close())
    finally:
        loop.close()
        if protocol == "http":
            server.stop()
            assert len(server.seen) == 1


def test_the_async_http_client_takes_the_proxy_the_environment_names(monkeypatch):
    """As httpx does (the sync client): HTTP_PROXY, unless NO_PROXY names the host; read once."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert AsyncHttpClient("http://ko-sts.test:3000")._proxy == "http://proxy.test:3128"
    assert AsyncHttpClient("http://127.0.0.1:3000")._proxy is None
    monkeypatch.delenv("HTTP_PROXY")
    assert AsyncHttpClient("http://ko-sts.test:3000")._proxy is None


def test_an_async_http_client_uses_and_closes_the_connector_it_is_given():
    import aiohttp

    server = ScriptedHttp([OK_SCORES])

    async def main() -> None:
        used = aiohttp.TCPConnector(limit=1)  # one connection: the calls take turns on it
        async with AsyncHttpClient(server.url, connector=used) as client:
            await asyncio.gather(*(client.score(PAIRS) for _ in range(3)))
        unused = aiohttp.TCPConnector()
        await AsyncHttpClient(server.url, connector=unused).close()  # closed even if no call opened it
        assert used.closed and unused.closed

    try:
        asyncio.run(main())
    finally:
        server.stop()
    assert len(server.seen) == 3 and server.connections == 1
