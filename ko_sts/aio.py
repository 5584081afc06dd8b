"""asyncio clients of the ko-sts service: the methods, answers, errors and retries of :mod:`ko_sts.client`.

    from ko_sts import AsyncGrpcClient, AsyncHttpClient

    async with AsyncHttpClient("http://localhost:3000") as client:     # or AsyncGrpcClient("localhost:50051")
        result = await client.score([("오늘 날씨 좋다", "날씨가 맑네요")])
        best = await client.rank("환불은 언제 되나요?", ["환불 기간이 궁금해요", "배송은 얼마나 걸려요?"], top_k=1)

One client serves any number of concurrent calls on its connections (HTTP keep-alive with
aiohttp, one gRPC channel with grpc.aio); make it once and share it. It may be made outside any
event loop; it opens its connections in, and belongs to, the event loop of its first call. Waiting
never blocks the loop: the calls, and the waits between retries, are awaited. Cancelling a call
(``task.cancel()``, ``asyncio.wait_for``) raises ``asyncio.CancelledError`` in the caller at once,
also in the middle of a retry wait, and cancels the request in flight (HTTP closes the request's
connection; gRPC cancels the call on the service, which drops work it has not started). A call's
``timeout_s`` bounds each attempt whole: connecting, sending and reading the answer.
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
    import aiohttp
    import grpc.aio
    from yarl import URL

T = TypeVar("T")
C = TypeVar("C", bound="AsyncClient")
_sleep = asyncio.sleep  # the wait between attempts (tests record it instead of waiting)


class AsyncClient(Policy):
    """What both asyncio clients share: the three calls of :class:`ko_sts.client.Client`, awaited."""

    _api: Api
    _loop: asyncio.AbstractEventLoop | None = None

    def _in_own_loop(self) -> bool:
        """Whether this client has been opened already; raises when called from another event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            return False
        if loop is not self._loop:
            raise RuntimeError(f"an {type(self).__name__} serves the event loop of its first call; make one per loop")
        return True

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
    """The service's HTTP API with ``aiohttp``, on kept-alive connections opened in the loop of the first call.

    Args: as :class:`ko_sts.client.HttpClient`, but ``connector``: an ``aiohttp.BaseConnector`` of your
    own (TLS settings, connection limits), made in the event loop the client will serve, and closed
    with the client.
    """

    _api: HttpApi

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout_s: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        api_key: str | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ):
        import aiohttp
        from yarl import URL

        super().__init__(timeout_s, retry)
        self._api = HttpApi(api_key)
        self._url = URL(url)
        self._routes: dict[str, URL] = {}  # route -> its URL, parsed once
        self._proxy = _environment_proxy(self._url)
        self._connector = connector
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout
        self._failures = TransportFailures(
            (aiohttp.ClientConnectorError,),  # DNS, refused, TLS handshake: nothing was sent
            (asyncio.TimeoutError,),  # the call's total timeout, or aiohttp's ServerTimeoutError
            (aiohttp.ClientError,),
        )

    def _open(self) -> aiohttp.ClientSession:
        """The session, opened now if this is the first call (aiohttp binds its connections to the loop)."""
        if not self._in_own_loop() or self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(headers=self._api.headers, connector=self._connector)
        return self._session

    async def _send(self, call: Call[T], timeout_s: float) -> T:
        session = self._open()
        with http_transport_errors(timeout_s, self._failures):
            async with session.post(
                self._routes.get(call.name) or self._routes.setdefault(call.name, self._url / call.name.lstrip("/")),
                data=call.request,
                proxy=self._proxy,
                timeout=self._timeout(total=timeout_s),
            ) as response:
                answer = HttpAnswer(response.status, response.reason or "", response.headers, await response.read())
        return HttpApi.answer(call, answer)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        elif self._connector is not None:
            await self._connector.close()


def _environment_proxy(url: URL) -> str | None:
    """The proxy that the environment names for ``url`` (``HTTP_PROXY``, ``NO_PROXY``, ...), as httpx uses it.

    Read once, when the client is made: aiohttp's ``trust_env`` would read it, and ``~/.netrc``, on every call.
    """
    import urllib.request

    if not url.host or urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


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

    def _bound_stub(self) -> Any:
        """The stub on this client's channel, opened now if this is the first call (grpc.aio binds it to the loop)."""
        if not self._in_own_loop() or self._stub is None:
            import grpc.aio

            from ko_sts.v1 import similarity_pb2_grpc

            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self._target)
            self._stub = similarity_pb2_grpc.SimilarityStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def _send(self, call: Call[T], timeout_s: float) -> T:
        method = getattr(self._bound_stub(), call.name)
        with grpc_errors():
            reply = await method(call.request, timeout=timeout_s, metadata=self._api.metadata)
        return call.read(reply)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
