"""asyncio clients of the ko-sts service: the methods, answers, errors and retries of :mod:`ko_sts.client`.

    from ko_sts import AsyncGrpcClient, AsyncHttpClient

    async with AsyncHttpClient("http://localhost:3000") as client:     # or AsyncGrpcClient("localhost:50051")
        result = await client.score([("오늘 날씨 좋다", "날씨가 맑네요")])
        best = await client.rank("환불은 언제 되나요?", ["환불 기간이 궁금해요", "배송은 얼마나 걸려요?"], top_k=1)

One client serves any number of concurrent calls on its connections (HTTP keep-alive, one gRPC
channel); make it once and share it. It belongs to the event loop it is first used in. Waiting
never blocks the loop: the calls, and the waits between retries, are awaited. Cancelling a call
(``task.cancel()``, ``asyncio.wait_for``) raises ``asyncio.CancelledError`` in the caller at once,
also in the middle of a retry wait, and cancels the request in flight (gRPC cancels the call on
the service, which drops work it has not started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ko_sts.protocol import (
    DEFAULT_RETRY,
    Api,
    Call,
    GrpcApi,
    HttpApi,
    KoStsError,
    ModelInfo,
    PairLike,
    Policy,
    RankResult,
    Retry,
    ScoreResult,
    grpc_errors,
    http_transport_errors,
)

if TYPE_CHECKING:
    import grpc.aio
    import httpx

T = TypeVar("T")
C = TypeVar("C", bound="AsyncClient")
_sleep = asyncio.sleep  # the wait between attempts (tests record it instead of waiting)


class AsyncClient(Policy):
    """What both asyncio clients share: the three calls of :class:`ko_sts.client.Client`, awaited."""

    _api: Api

    async def score(self, pairs: Iterable[PairLike], timeout_s: float | None = None) -> ScoreResult:
        """As :meth:`ko_sts.client.Client.score`."""
        return await self._call(self._api.score(pairs), timeout_s)

    async def rank(
        self, query: str, candidates: Sequence[str], top_k: int | None = None, timeout_s: float | None = None
    ) -> RankResult:
        """As :meth:`ko_sts.client.Client.rank`."""
        return await self._call(self._api.rank(query, candidates, top_k), timeout_s)

    async def model_info(self, timeout_s: float | None = None) -> ModelInfo:
        """As :meth:`ko_sts.client.Client.model_info`."""
        return await self._call(self._api.model_info(), timeout_s)

    async def _call(self, call: Call[T], timeout_s: float | None) -> T:
        deadline = self.deadline(timeout_s)
        while True:
            try:
                return await self._send(call, deadline.left())
            except KoStsError as error:
                await _sleep(deadline.wait_before_retry(error))

    async def _send(self, call: Call[T], timeout_s: float) -> T:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: C) -> C:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncHttpClient(AsyncClient):
    """The service's HTTP API with ``httpx.AsyncClient``, on kept-alive connections.

    Args: as :class:`ko_sts.client.HttpClient` (``transport``: an ``httpx.AsyncBaseTransport``).
    """

    _api: HttpApi

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout_s: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        import httpx

        super().__init__(timeout_s, retry)
        self._api = HttpApi(api_key)
        self._http = httpx.AsyncClient(base_url=url, headers=self._api.headers, transport=transport)

    async def _send(self, call: Call[T], timeout_s: float) -> T:
        with http_transport_errors(timeout_s):
            response = await self._http.post(call.name, json=call.request, timeout=timeout_s)
        return HttpApi.answer(call, response)

    async def close(self) -> None:
        await self._http.aclose()


class AsyncGrpcClient(AsyncClient):
    """The service's gRPC API with ``grpc.aio``, on one channel, opened in the event loop of the first call.

    Args: as :class:`ko_sts.client.GrpcClient` (``channel``: a ``grpc.aio.Channel``).
    """

    _api: GrpcApi

    def __init__(
        self,
        target: str = "localhost:50051",
        timeout_s: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        channel: grpc.aio.Channel | None = None,
        api_key: str | None = None,
    ):
        super().__init__(timeout_s, retry)
        self._api = GrpcApi(api_key)
        self._target = target
        self._channel = channel
        self._stub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bound_stub(self) -> Any:
        """The stub on this client's channel, opened now if this is the first call (grpc.aio binds it to the loop)."""
        loop = asyncio.get_running_loop()
        if self._stub is None:
            import grpc.aio

            from ko_sts.v1 import similarity_pb2_grpc

            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self._target)
            self._stub = similarity_pb2_grpc.SimilarityStub(self._channel)  # type: ignore[no-untyped-call]
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("an AsyncGrpcClient serves the event loop of its first call; make one per loop")
        return self._stub

    async def _send(self, call: Call[T], timeout_s: float) -> T:
        method = getattr(self._bound_stub(), call.name)
        with grpc_errors():
            reply = await method(call.request, timeout=timeout_s, metadata=self._api.metadata)
        return call.read(reply)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
