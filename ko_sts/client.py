"""Clients of the ko-sts service over HTTP and gRPC, with the same methods and the same answers.

    from ko_sts import GrpcClient, HttpClient

    with HttpClient("http://localhost:3000") as client:          # or GrpcClient("localhost:50051")
        client.score([("오늘 날씨 좋다", "날씨가 맑네요")]).results[0].score
        client.rank("환불은 언제 되나요?", ["환불 기간이 궁금해요", "배송은 얼마나 걸려요?"], top_k=1)
        client.model_info().tag

Every call has a deadline (``timeout_s``, retries included). Only failures that are safe to retry
are retried, with exponential backoff and full jitter, never sooner than the service's
``Retry-After``: UNAVAILABLE / 503 (the service is starting, stopping, or its queue timed out)
and connections that could not be opened. RESOURCE_EXHAUSTED / 429 (the queue is full) is not
retried: retrying would feed the overload; the caller decides. Any other error is raised at once
as :class:`KoStsError`, whose ``kind`` is the same on both protocols.

The asyncio clients with the same methods are in :mod:`ko_sts.aio`; both share
:mod:`ko_sts.protocol` (requests, answers, errors, retries).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ko_sts.protocol import (
    DEFAULT_RETRY,
    Api,
    Call,
    GrpcApi,
    HttpAnswer,
    HttpApi,
    KoStsError,
    ModelInfo,
    PairLike,
    Policy,
    RankResult,
    Retry,
    ScoreResult,
    TransportFailures,
    grpc_errors,
    http_transport_errors,
)

if TYPE_CHECKING:
    import grpc
    import httpx

T = TypeVar("T")
C = TypeVar("C", bound="Client")
_sleep = time.sleep  # the wait between attempts (tests record it instead of waiting)


class Client(Policy):
    """What both sync clients share: the three calls, each inside its deadline and retry loop."""

    _api: Api

    def score(self, pairs: Iterable[PairLike], timeout_s: float | None = None) -> ScoreResult:
        """One result per pair, in order: ``(sentence1, sentence2)`` tuples or ``{"sentence1", "sentence2"}``."""
        return self._call(self._api.score(pairs), timeout_s)

    def rank(
        self, query: str, candidates: Sequence[str], top_k: int | None = None, timeout_s: float | None = None
    ) -> RankResult:
        """The candidates by descending similarity to ``query`` (ties by index), at most ``top_k``."""
        return self._call(self._api.rank(query, candidates, top_k), timeout_s)

    def model_info(self, timeout_s: float | None = None) -> ModelInfo:
        """The served model: tag, backend, device, base model and evaluation metrics."""
        return self._call(self._api.model_info(), timeout_s)

    def _call(self, call: Call[T], timeout_s: float | None) -> T:
        """Sends ``call`` until it succeeds, fails for good, or the deadline would pass."""
        deadline = self.deadline(timeout_s)
        while True:
            try:
                return self._send(call, deadline.left())
            except KoStsError as error:
                _sleep(deadline.wait_before_retry(error))

    def _send(self, call: Call[T], timeout_s: float) -> T:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HttpClient(Client):
    """The service's HTTP API (``POST /score``, ``/rank``, ``/model_info``) with httpx, on kept-alive connections.

    Args:
        url: e.g. ``http://localhost:3000``.
        timeout_s: each call's deadline, retries included (a call can pass its own ``timeout_s``).
        retry: how safe failures are retried.
        api_key: sent as ``Authorization: Bearer <key>`` when the service has one (``KO_STS_API_KEY``).
        transport: an ``httpx`` transport of your own (TLS settings, proxies, a mock in tests).
    """

    _api: HttpApi

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout_s: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        import httpx

        super().__init__(timeout_s, retry)
        self._api = HttpApi(api_key)
        self._http = httpx.Client(base_url=url, headers=self._api.headers, transport=transport)
        self._failures = TransportFailures((httpx.ConnectError,), (httpx.TimeoutException,), (httpx.TransportError,))

    def _send(self, call: Call[T], timeout_s: float) -> T:
        with http_transport_errors(timeout_s, self._failures):
            response = self._http.post(call.name, content=call.request, timeout=timeout_s)
        answer = HttpAnswer(response.status_code, response.reason_phrase, response.headers, response.content)
        return HttpApi.answer(call, answer)

    def close(self) -> None:
        self._http.close()


class GrpcClient(Client):
    """The service's gRPC API (``ko_sts.v1.Similarity``) with grpcio, on one channel.

    Args:
        target: e.g. ``localhost:50051`` (plaintext), or pass ``channel`` (TLS, load balancing, ...).
        timeout_s: each call's deadline, retries included (a call can pass its own ``timeout_s``).
        retry: how safe failures are retried.
        channel: a channel of your own instead of a plaintext one to ``target`` (closed with the client).
        api_key: sent as ``authorization: Bearer <key>`` metadata when the service has one (``KO_STS_API_KEY``).
    """

    _api: GrpcApi

    def __init__(
        self,
        target: str = "localhost:50051",
        timeout_s: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        channel: grpc.Channel | None = None,
        api_key: str | None = None,
    ):
        import grpc

        from ko_sts.v1 import similarity_pb2_grpc

        super().__init__(timeout_s, retry)
        self._api = GrpcApi(api_key)
        self._channel = channel if channel is not None else grpc.insecure_channel(target)
        self._stub: Any = similarity_pb2_grpc.SimilarityStub(self._channel)  # type: ignore[no-untyped-call]

    def _send(self, call: Call[T], timeout_s: float) -> T:
        with grpc_errors():
            reply = getattr(self._stub, call.name)(call.request, timeout=timeout_s, metadata=self._api.metadata)
        return call.read(reply)

    def close(self) -> None:
        self._channel.close()
