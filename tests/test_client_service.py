"""The four clients (HTTP, gRPC; sync, asyncio) against `bentoml serve` of the tiny model.

Two ways to run: in `make test`, where this module starts the service from the tiny model of
tests/conftest.py; and in scripts/ci-client.sh, on Python 3.10 to 3.13, each in a clean environment
holding only the ko-sts-client wheel and pytest, against one service started from the main .venv
(``KO_STS_TEST_*`` variables say where, ``KO_STS_CLIENT_INSTALLED=1`` that the wheel is under
test). So this module imports nothing of the server. Retries, and calls held in flight, go through
a scripted proxy in front of the service (tests/service_front.py); every answer comes from the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import importlib.resources
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import ko_sts
from ko_sts import AsyncGrpcClient, AsyncHttpClient, KoStsError, Retry
from tests.client_styles import PROTOCOLS, STYLES, make_client
from tests.service_front import front

REPO = Path(__file__).resolve().parents[1]
PAIRS = [
    ("숙소 위치는 찾기 쉬운 반지하 숙소입니다.", "숙박시설의 위치는 쉽게 찾을 수 있어요."),
    ("회사 메일은 다른 지메일 계정으로 전달해줘.", "사람들이 주로 네이버 메일을 쓰는 이유를 알려줘"),
    ("오늘 날씨 좋다", "날씨가 맑네요"),
    ("환불은 언제 받을 수 있나요?", "환불은 언제쯤 처리되나요?"),
]
QUERY = "환불은 언제 받을 수 있나요?"
CANDIDATES = ["배송은 보통 며칠 걸리나요?", "환불은 언제쯤 처리되나요?", "환불 받으려면 얼마나 기다려요?", "날씨 좋다"]
INSTALLED = os.environ.get("KO_STS_CLIENT_INSTALLED") == "1"


@dataclass(frozen=True)
class Service:
    """Where the service is, and the settings the tests rely on (tests/live_service.py, CLIENT_TEST_SETTINGS)."""

    http_url: str
    grpc_target: str
    api_key: str
    max_pairs: int
    tag: str

    @classmethod
    def from_variables(cls, variables: dict[str, str]) -> Service:
        return cls(
            variables["KO_STS_TEST_HTTP_URL"],
            variables["KO_STS_TEST_GRPC_TARGET"],
            variables["KO_STS_TEST_API_KEY"],
            int(variables["KO_STS_TEST_MAX_PAIRS"]),
            variables["KO_STS_TEST_MODEL_TAG"],
        )

    def address(self, protocol: str) -> str:
        return self.http_url if protocol == "http" else self.grpc_target


@pytest.fixture(scope="module")
def service(client_service) -> Service:
    assert not INSTALLED or "KO_STS_TEST_HTTP_URL" in os.environ, "the installed wheel is tested on a running service"
    return Service.from_variables(client_service)


@pytest.fixture(params=[(s, p) for s in STYLES for p in PROTOCOLS], ids="-".join)
def kind(request) -> tuple[str, str]:
    """(style, protocol): every test that takes it runs for the four clients."""
    return request.param


@dataclass(frozen=True)
class CountingRetry(Retry):
    """The default retries, recording each wait they chose."""

    waits: list[float] = field(default_factory=list, compare=False)

    def delay(self, retry: int, retry_after_s: float | None) -> float:
        wait = super().delay(retry, retry_after_s)
        self.waits.append(wait)
        return wait


def test_the_client_under_test_is_the_one_this_run_means():
    """With KO_STS_CLIENT_INSTALLED=1, the wheel's package with its .proto; else the repository's package."""
    package = Path(ko_sts.__file__).resolve().parent
    proto = REPO / "proto/ko_sts/v1/similarity.proto"
    if INSTALLED:
        assert REPO not in package.parents, f"testing {package}, not the installed wheel"
        assert importlib.metadata.version("ko-sts-client") == ko_sts.__version__
        shipped = importlib.resources.files("ko_sts.v1").joinpath("similarity.proto")
        assert shipped.read_bytes() == proto.read_bytes()
    else:
        assert package == REPO / "ko_sts"


@pytest.mark.slow
def test_the_four_clients_give_the_services_answers(service):
    raw = httpx.Client(base_url=service.http_url, headers={"authorization": f"Bearer {service.api_key}"})
    with raw:
        scored = raw.post("/score", json={"pairs": [{"sentence1": a, "sentence2": b} for a, b in PAIRS]})
        ranked = raw.post("/rank", json={"query": QUERY, "candidates": CANDIDATES, "top_k": 3})
        info = raw.post("/model_info", json={}).json()
    answers = {}
    for style in STYLES:
        for protocol in PROTOCOLS:
            with make_client(style, protocol, service.address(protocol), api_key=service.api_key) as client:
                answers[style, protocol] = (
                    client.score(PAIRS),
                    client.rank(QUERY, CANDIDATES, top_k=3),
                    client.model_info(),
                    client.score([(QUERY, candidate) for candidate in CANDIDATES]),
                )
    score, rank, model, query_scores = answers["sync", "http"]
    assert [dataclasses.asdict(r) for r in score.results] == scored.json()
    assert [dataclasses.asdict(r) for r in rank.results] == ranked.json()
    assert dataclasses.asdict(model) == info
    assert score.model_tag == rank.model_tag == model.tag == service.tag
    for key, answer in answers.items():
        assert answer == answers["sync", "http"], key  # same results, same tag, on every client
    by_score = sorted(range(len(CANDIDATES)), key=lambda i: (-query_scores.results[i].score, i))
    assert [c.index for c in rank.results] == by_score[:3]
    assert [c.score for c in rank.results] == [query_scores.results[i].score for i in by_score[:3]]


@pytest.mark.slow
def test_a_blank_sentence_is_invalid_input_and_not_retried(service, kind):
    style, protocol = kind
    retry = CountingRetry()
    with make_client(style, protocol, service.address(protocol), api_key=service.api_key, retry=retry) as client:
        with pytest.raises(KoStsError) as bad:
            client.score([PAIRS[0], ("가", "   ")])
    error = bad.value
    assert error.kind == "invalid_input" and "pairs[1].sentence2" in error.message
    assert error.status == {"http": 422, "grpc": "INVALID_ARGUMENT"}[protocol]
    assert not error.retryable and retry.waits == []


@pytest.mark.slow
def test_more_pairs_than_the_limit_is_too_large(service, kind):
    style, protocol = kind
    with make_client(style, protocol, service.address(protocol), api_key=service.api_key) as client:
        with pytest.raises(KoStsError) as big:
            client.score([PAIRS[0]] * (service.max_pairs + 1))
        assert len(client.score([PAIRS[0]] * service.max_pairs).results) == service.max_pairs
    assert big.value.kind == "too_large" and str(service.max_pairs) in big.value.message


@pytest.mark.slow
def test_a_missing_or_wrong_key_is_unauthenticated(service, kind):
    style, protocol = kind
    for key in (None, "not-the-key"):
        with make_client(style, protocol, service.address(protocol), api_key=key) as client:
            with pytest.raises(KoStsError) as refused:
                client.model_info()
        assert refused.value.kind == "unauthenticated" and not refused.value.retryable


@pytest.mark.slow
def test_a_deadline_that_passes_before_the_answer_is_deadline_exceeded_and_not_retried(service, kind):
    style, protocol = kind
    retry = CountingRetry()
    with front(protocol, service.address(protocol), ["hold"]) as proxy:  # no answer before the client gives up
        address = proxy.address
        with make_client(style, protocol, address, api_key=service.api_key, retry=retry, timeout_s=0.5) as client:
            with pytest.raises(KoStsError) as late:
                client.score(PAIRS)
    assert late.value.kind == "deadline_exceeded" and retry.waits == [] and proxy.calls == 1


@pytest.mark.slow
def test_unavailable_is_retried_and_then_answered_by_the_model(service, kind):
    style, protocol = kind
    retry = CountingRetry()
    with front(protocol, service.address(protocol), ["unavailable", "unavailable"]) as proxy:
        with make_client(style, protocol, proxy.address, api_key=service.api_key, retry=retry) as client:
            result = client.score(PAIRS)
    assert len(result.results) == len(PAIRS) and result.model_tag == service.tag
    assert proxy.calls == 3 and len(retry.waits) == 2  # two refusals waited out, the third call served


@pytest.mark.slow
def test_overloaded_is_never_retried(service, kind):
    style, protocol = kind
    retry = CountingRetry()
    with front(protocol, service.address(protocol), ["overloaded"]) as proxy:
        with make_client(style, protocol, proxy.address, api_key=service.api_key, retry=retry) as client:
            with pytest.raises(KoStsError) as full:
                client.score(PAIRS)
            assert len(client.score(PAIRS).results) == len(PAIRS)  # the caller decides when to come back
    assert (full.value.kind, full.value.retry_after_s, full.value.retryable) == ("overloaded", 1.0, False)
    assert proxy.calls == 2 and retry.waits == []


@pytest.mark.slow
def test_a_service_that_cannot_be_reached_is_retried_then_unavailable(kind):
    style, protocol = kind
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    address = f"http://127.0.0.1:{port}" if protocol == "http" else f"127.0.0.1:{port}"
    retry = CountingRetry(attempts=3, base_s=0.01)
    with make_client(style, protocol, address, retry=retry, timeout_s=30) as client:
        with pytest.raises(KoStsError) as down:
            client.model_info()
    assert down.value.kind == "unavailable" and down.value.retryable and len(retry.waits) == 2


# --- asyncio only ---------------------------------------------------------------------------------

ASYNC_CLIENTS = {"http": AsyncHttpClient, "grpc": AsyncGrpcClient}


def _while_a_call_is_held(service: Service, protocol: str, then) -> None:
    """Starts an async ``score`` call that the front holds, then awaits ``then(client, call, front)``."""
    with front(protocol, service.address(protocol), ["hold"]) as proxy:

        async def main() -> None:
            async with ASYNC_CLIENTS[protocol](proxy.address, api_key=service.api_key) as client:
                call = asyncio.ensure_future(client.score(PAIRS))
                assert await asyncio.get_running_loop().run_in_executor(None, proxy.held.wait, 30)
                await then(client, call, proxy)

        asyncio.run(main())


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_async_call_in_flight_leaves_the_loop_free_and_can_be_cancelled(service, protocol):
    async def then(client, call, proxy) -> None:
        assert (await client.model_info()).tag == service.tag  # the same client, meanwhile
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        if protocol == "grpc":  # the cancel reached the other end: the call ended there too
            assert await asyncio.get_running_loop().run_in_executor(None, proxy.cancelled.wait, 10)
        assert len((await client.score(PAIRS)).results) == len(PAIRS)  # and the client goes on

    _while_a_call_is_held(service, protocol, then)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wait_for_ends_a_call_in_flight_with_asyncio_timeout_error(service, protocol):
    async def then(client, call, proxy) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, timeout=0.1)
        assert call.cancelled()

    _while_a_call_is_held(service, protocol, then)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_concurrent_async_calls_share_the_clients_connections(service, protocol):
    pairs = [[PAIRS[i % len(PAIRS)]] * (1 + i % 5) for i in range(16)]
    with front(protocol, service.address(protocol)) as proxy:

        async def main() -> list:
            async with ASYNC_CLIENTS[protocol](proxy.address, api_key=service.api_key) as client:
                answers = []
                for _ in range(3):  # three rounds of 16 concurrent calls
                    answers += await asyncio.gather(*(client.score(p) for p in pairs))
                return answers

        answers = asyncio.run(main())
    assert [len(a.results) for a in answers] == [len(p) for p in pairs] * 3
    assert proxy.calls == 48
    if protocol == "http":
        assert proxy.connections <= 16  # kept alive: a second and third round open none
    else:
        assert len(set(proxy.peers)) == 1  # one channel, one connection
