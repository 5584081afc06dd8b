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
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
PairLike = tuple[str, str] | Mapping[str, str]

# What the client retries: the service's retryable failures (serving.errors.ERROR_TABLE, retry=True).
RETRY_HTTP_STATUSES = frozenset({503})
RETRY_GRPC_CODES = frozenset({"UNAVAILABLE"})
# The error kind of a status when the body or metadata does not say it (e.g. a proxy answered).
KIND_OF_HTTP_STATUS = {
    400: "malformed",
    401: "unauthenticated",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "overloaded",
    503: "unavailable",
    504: "deadline_exceeded",
}
KIND_OF_GRPC_CODE = {
    "INVALID_ARGUMENT": "invalid_input",
    "UNAUTHENTICATED": "unauthenticated",
    "RESOURCE_EXHAUSTED": "overloaded",
    "UNAVAILABLE": "unavailable",
    "DEADLINE_EXCEEDED": "deadline_exceeded",
}


@dataclass(frozen=True)
class PairScore:
    """The similarity of one pair: ``score`` from 0 (unrelated) to 5 (same meaning), ``similar`` = score >= 3."""

    score: float
    similar: bool
    truncated: bool  # the pair was longer than the model's token budget and was cut


@dataclass(frozen=True)
class RankedCandidate:
    """One candidate of a ranking: its position in the request, and its similarity to the query."""

    index: int
    score: float
    similar: bool
    truncated: bool


@dataclass(frozen=True)
class ScoreResult:
    """One result per pair, in request order, and the tag of the model that scored them."""

    results: list[PairScore]
    model_tag: str


@dataclass(frozen=True)
class RankResult:
    """Candidates by descending score (ties: lower index first), at most ``top_k``, and the model tag."""

    results: list[RankedCandidate]
    model_tag: str


@dataclass(frozen=True)
class ModelInfo:
    """What the service serves: tag, backend, device, base model, runtime -> evaluation set -> metric."""

    tag: str
    backend: str
    device: str
    base_model: str
    metrics: dict[str, dict[str, dict[str, float]]]


class KoStsError(Exception):
    """A failed call.

    Attributes:
        kind: ``invalid_input``, ``too_large``, ``overloaded``, ``queue_timeout``, ``deadline_exceeded``,
            ``unavailable``, ``unauthenticated``, ``internal`` (the service's error kinds) or ``transport``.
        message: what went wrong and what to do, from the service when it answered.
        status: the HTTP status or gRPC code name, if the service answered.
        retry_after_s: the wait the service asked for, if any.
        model_tag: the model tag the service named, if any.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        status: int | str | None = None,
        retry_after_s: float | None = None,
        model_tag: str | None = None,
        retryable: bool = False,
    ):
        super().__init__(f"{kind}: {message}" + (f" ({status})" if status is not None else ""))
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.model_tag = model_tag
        self.retryable = retryable


@dataclass(frozen=True)
class Retry:
    """Retries of safe failures: up to ``attempts`` tries, waiting ``base_s * 2**n`` (capped) with full jitter.

    A service's ``Retry-After`` is waited out first (plus jitter, so that clients do not return in step).
    ``Retry(attempts=1)`` never retries.
    """

    attempts: int = 3
    base_s: float = 0.1
    max_s: float = 2.0

    def delay(self, retry: int, retry_after_s: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first)."""
        jitter = random.uniform(0.0, min(self.max_s, self.base_s * 2**retry))
        return (retry_after_s or 0.0) + jitter


class _Client:
    """What both clients share: a deadline per call and the retry loop."""

    def __init__(self, timeout_s: float, retry: Retry):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.retry = retry

    def _call(self, attempt: Callable[[float], T], timeout_s: float | None) -> T:
        """Runs ``attempt(seconds_left)`` until it succeeds, fails for good, or the deadline would pass."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        retry = 0
        while True:
            try:
                return attempt(max(deadline - time.monotonic(), 0.001))
            except KoStsError as error:
                if not error.retryable or retry + 1 >= self.retry.attempts:
                    raise
                wait = self.retry.delay(retry, error.retry_after_s)
                if time.monotonic() + wait >= deadline:
                    raise
                time.sleep(wait)
                retry += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


def _pairs(pairs: Iterable[PairLike]) -> list[tuple[str, str]]:
    """``(sentence1, sentence2)`` tuples or ``{"sentence1": ..., "sentence2": ...}`` mappings -> tuples."""
    return [(p["sentence1"], p["sentence2"]) if isinstance(p, Mapping) else (p[0], p[1]) for p in pairs]


class HttpClient(_Client):
    """The service's HTTP API (``POST /score``, ``/rank``, ``/model_info``) with httpx.

    Args:
        url: e.g. ``http://localhost:3000``.
        timeout_s: each call's deadline, retries included (a call can pass its own ``timeout_s``).
        retry: how safe failures are retried.
        api_key: sent as ``Authorization: Bearer <key>`` when the service has one (``KO_STS_API_KEY``).
    """

    def __init__(
        self,
        url: str = "http://localhost:3000",
        timeout_s: float = 30.0,
        retry: Retry = Retry(),
        api_key: str | None = None,
    ):
        import httpx

        super().__init__(timeout_s, retry)
        self._httpx = httpx
        self._http = httpx.Client(base_url=url, headers=_authorization(api_key, "Authorization"))

    def score(self, pairs: Iterable[PairLike], timeout_s: float | None = None) -> ScoreResult:
        """One result per pair, in order."""
        body = {"pairs": [{"sentence1": a, "sentence2": b} for a, b in _pairs(pairs)]}
        data, tag = self._call(lambda left: self._post("/score", body, left), timeout_s)
        return ScoreResult([PairScore(**item) for item in data], tag)

    def rank(
        self, query: str, candidates: Sequence[str], top_k: int | None = None, timeout_s: float | None = None
    ) -> RankResult:
        """The candidates by descending similarity to ``query`` (ties by index), at most ``top_k``."""
        body: dict[str, Any] = {"query": query, "candidates": list(candidates)}
        if top_k is not None:
            body["top_k"] = top_k
        data, tag = self._call(lambda left: self._post("/rank", body, left), timeout_s)
        return RankResult([RankedCandidate(**item) for item in data], tag)

    def model_info(self, timeout_s: float | None = None) -> ModelInfo:
        """The served model."""
        data, _ = self._call(lambda left: self._post("/model_info", {}, left), timeout_s)
        return ModelInfo(**data)

    def close(self) -> None:
        self._http.close()

    def _post(self, route: str, body: dict, timeout_s: float) -> tuple[Any, str]:
        httpx = self._httpx
        try:
            response = self._http.post(route, json=body, timeout=timeout_s)
        except httpx.ConnectError as error:  # nothing was sent: as safe to retry as a 503
            raise KoStsError("unavailable", f"cannot connect: {error}", retryable=True) from error
        except httpx.TimeoutException as error:
            raise KoStsError("deadline_exceeded", f"no answer within {timeout_s:.3g} s") from error
        except httpx.TransportError as error:
            raise KoStsError("transport", str(error)) from error
        tag = response.headers.get("x-ko-sts-model", "")
        if response.status_code == 200:
            return response.json(), tag
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        kind = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(kind, str) or " " in kind:  # BentoML's own errors put a message in "error"
            kind = KIND_OF_HTTP_STATUS.get(response.status_code, "internal")
        detail = payload.get("detail") or payload.get("error") if isinstance(payload, dict) else None
        retry_after = response.headers.get("retry-after")
        raise KoStsError(
            kind,
            str(detail or response.text[:500] or response.reason_phrase),
            status=response.status_code,
            retry_after_s=_seconds(retry_after),
            model_tag=tag or None,
            retryable=response.status_code in RETRY_HTTP_STATUSES,
        )


class GrpcClient(_Client):
    """The service's gRPC API (``ko_sts.v1.Similarity``) with grpcio.

    Args:
        target: e.g. ``localhost:50051`` (plaintext), or pass ``channel`` (TLS, load balancing, ...).
        timeout_s: each call's deadline, retries included (a call can pass its own ``timeout_s``).
        retry: how safe failures are retried.
        channel: a channel of your own instead of a plaintext one to ``target``.
        api_key: sent as ``authorization: Bearer <key>`` metadata when the service has one (``KO_STS_API_KEY``).
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        timeout_s: float = 30.0,
        retry: Retry = Retry(),
        channel: Any = None,
        api_key: str | None = None,
    ):
        import grpc

        from ko_sts.v1 import similarity_pb2, similarity_pb2_grpc

        super().__init__(timeout_s, retry)
        self._grpc = grpc
        self._pb = similarity_pb2
        self._channel = channel if channel is not None else grpc.insecure_channel(target)
        self._stub = similarity_pb2_grpc.SimilarityStub(self._channel)
        self._metadata = tuple(_authorization(api_key, "authorization").items())

    def score(self, pairs: Iterable[PairLike], timeout_s: float | None = None) -> ScoreResult:
        """One result per pair, in order."""
        pb = self._pb
        request = pb.ScoreRequest(pairs=[pb.SentencePair(sentence1=a, sentence2=b) for a, b in _pairs(pairs)])
        response = self._call(lambda left: self._invoke(self._stub.Score, request, left), timeout_s)
        results = [PairScore(r.score, r.similar, r.truncated) for r in response.results]
        return ScoreResult(results, response.model_tag)

    def rank(
        self, query: str, candidates: Sequence[str], top_k: int | None = None, timeout_s: float | None = None
    ) -> RankResult:
        """The candidates by descending similarity to ``query`` (ties by index), at most ``top_k``."""
        if top_k is not None and top_k < 0:  # uint32 on the wire; the service names the rule for 0
            raise KoStsError("invalid_input", f"top_k: must be at least 1 when given, got {top_k}")
        request = self._pb.RankRequest(query=query, candidates=list(candidates), top_k=top_k)
        response = self._call(lambda left: self._invoke(self._stub.Rank, request, left), timeout_s)
        results = [RankedCandidate(r.index, r.score, r.similar, r.truncated) for r in response.results]
        return RankResult(results, response.model_tag)

    def model_info(self, timeout_s: float | None = None) -> ModelInfo:
        """The served model."""
        request = self._pb.ModelInfoRequest()
        response = self._call(lambda left: self._invoke(self._stub.ModelInfo, request, left), timeout_s)
        metrics = {
            runtime: {name: dict(values.values) for name, values in sets.sets.items()}
            for runtime, sets in response.metrics.items()
        }
        return ModelInfo(response.model_tag, response.backend, response.device, response.base_model, metrics)

    def close(self) -> None:
        self._channel.close()

    def _invoke(self, method: Any, request: Any, timeout_s: float) -> Any:
        try:
            return method(request, timeout=timeout_s, metadata=self._metadata)
        except self._grpc.RpcError as error:
            code = error.code().name
            metadata = dict(error.trailing_metadata() or ())
            raise KoStsError(
                metadata.get("ko-sts-error") or KIND_OF_GRPC_CODE.get(code, code.lower()),
                error.details() or code,
                status=code,
                retry_after_s=_seconds(metadata.get("retry-after")),
                model_tag=metadata.get("x-ko-sts-model"),
                retryable=code in RETRY_GRPC_CODES,
            ) from None


def _authorization(api_key: str | None, name: str) -> dict[str, str]:
    """The header (or gRPC metadata key, lower case) carrying an API key; empty without a key."""
    return {name: f"Bearer {api_key}"} if api_key else {}


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is not used by the service)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
