"""What the sync and async clients share, with no I/O: answers, errors, retries and each call's request.

A call is a :class:`Call`: what to send (an HTTP route and JSON body, or a gRPC method and
message) and how to read the answer. :class:`HttpApi` and :class:`GrpcApi` build them; the
clients in :mod:`ko_sts.client` (sync, httpx) and :mod:`ko_sts.aio` (asyncio, aiohttp) only send
them, inside one :class:`Deadline` per call that decides which failures are retried and how long
to wait. An HTTP library's answer becomes an :class:`HttpAnswer`, and its failures are named by
one :class:`TransportFailures`, so that both HTTP libraries give the same results and errors.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

T = TypeVar("T")
PairLike = tuple[str, str] | Mapping[str, str]

MODEL_HEADER = "x-ko-sts-model"
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


# --- answers ------------------------------------------------------------------------------------


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


# --- errors -------------------------------------------------------------------------------------


class KoStsError(Exception):
    """A failed call.

    Attributes:
        kind: ``invalid_input``, ``too_large``, ``overloaded``, ``queue_timeout``, ``deadline_exceeded``,
            ``unavailable``, ``unauthenticated``, ``internal`` (the service's error kinds) or ``transport``.
        message: what went wrong and what to do, from the service when it answered.
        status: the HTTP status or gRPC code name, if the service answered.
        retry_after_s: the wait the service asked for, if any.
        model_tag: the model tag the service named, if any.
        retryable: whether the failure is one the client retries (and did, until its tries or deadline ran out).
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
class HttpAnswer:
    """An HTTP answer as both clients read it, whichever library received it (httpx, aiohttp).

    ``headers`` is the library's own case-insensitive mapping; ``body`` the whole body, read.
    """

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_error(answer: HttpAnswer) -> KoStsError:
    """The error of an HTTP answer other than 200: the service's kind and detail, or the status's kind."""
    try:
        payload = answer.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError alike
        payload = {}
    kind = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(kind, str) or " " in kind:  # BentoML's own errors put a message in "error"
        kind = KIND_OF_HTTP_STATUS.get(answer.status, "internal")
    detail = payload.get("detail") or payload.get("error") if isinstance(payload, dict) else None
    return KoStsError(
        kind,
        str(detail or answer.body[:500].decode("utf-8", "replace") or answer.reason),
        status=answer.status,
        retry_after_s=_seconds(answer.headers.get("retry-after")),
        model_tag=answer.headers.get(MODEL_HEADER) or None,
        retryable=answer.status in RETRY_HTTP_STATUSES,
    )


@dataclass(frozen=True)
class TransportFailures:
    """An HTTP library's exceptions for: a connection that could not be opened (nothing was sent),
    no answer within the deadline, and any other failure to get an answer."""

    not_connected: tuple[type[BaseException], ...]
    too_late: tuple[type[BaseException], ...]
    other: tuple[type[BaseException], ...]


@contextmanager
def http_transport_errors(timeout_s: float, failures: TransportFailures) -> Iterator[None]:
    """Turns an HTTP library's failures to reach the service into :class:`KoStsError` (both clients alike)."""
    try:
        yield
    except failures.not_connected as error:  # nothing was sent: as safe to retry as a 503
        raise KoStsError("unavailable", f"cannot connect: {error}", retryable=True) from error
    except failures.too_late as error:
        raise KoStsError("deadline_exceeded", f"no answer within {timeout_s:.3g} s") from error
    except failures.other as error:
        raise KoStsError("transport", str(error) or type(error).__name__) from error


class RpcFailure(Protocol):
    """What grpcio's errors carry, sync (``grpc.RpcError``) and asyncio (``grpc.aio.AioRpcError``) alike."""

    def code(self) -> Any: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


@contextmanager
def grpc_errors() -> Iterator[None]:
    """Turns grpcio's failed calls into :class:`KoStsError` (``grpc.aio.AioRpcError`` is a ``grpc.RpcError`` too)."""
    import grpc

    try:
        yield
    except grpc.RpcError as error:  # also a grpc.Call (sync) or an AioRpcError: code, details, metadata
        raise grpc_error(cast(RpcFailure, error)) from None


def grpc_error(error: RpcFailure) -> KoStsError:
    """The error of a failed gRPC call: its code, message and the service's trailing metadata."""
    code: str = error.code().name
    metadata = {str(key): str(value) for key, value in (error.trailing_metadata() or ())}
    return KoStsError(
        metadata.get("ko-sts-error") or KIND_OF_GRPC_CODE.get(code, code.lower()),
        error.details() or code,
        status=code,
        retry_after_s=_seconds(metadata.get("retry-after")),
        model_tag=metadata.get(MODEL_HEADER),
        retryable=code in RETRY_GRPC_CODES,
    )


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP-date form is not used by the service)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


# --- retries and deadlines ----------------------------------------------------------------------


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


DEFAULT_RETRY = Retry()


class Deadline:
    """One call's deadline, across all its attempts, and what to do after each failure."""

    def __init__(self, retry: Retry, timeout_s: float):
        self.retry = retry
        self.at = time.monotonic() + timeout_s
        self.retries = 0

    def left(self) -> float:
        """Seconds left for the next attempt (never zero: a transport reads 0 as "no timeout")."""
        return max(self.at - time.monotonic(), 0.001)

    def wait_before_retry(self, error: KoStsError) -> float:
        """Seconds to wait before trying again after ``error``; raises ``error`` when it must not be retried:
        a failure that is not safe to retry, the last attempt's failure, or one whose wait would pass the deadline.
        """
        if not error.retryable or self.retries + 1 >= self.retry.attempts:
            raise error
        wait = self.retry.delay(self.retries, error.retry_after_s)
        if time.monotonic() + wait >= self.at:
            raise error
        self.retries += 1
        return wait


class Policy:
    """Each call's deadline (``timeout_s``, retries included) and how safe failures are retried."""

    def __init__(self, timeout_s: float, retry: Retry):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.retry = retry

    def deadline(self, timeout_s: float | None) -> Deadline:
        """The deadline of a call that gives ``timeout_s`` (None: the client's own)."""
        return Deadline(self.retry, timeout_s or self.timeout_s)


# --- calls --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call, ready to send: ``name`` is the HTTP route or the gRPC method, ``request`` the JSON body
    (UTF-8 bytes) or message, and ``read`` turns the answer (an :class:`HttpAnswer` with status 200, or
    the reply message) into the result."""

    name: str
    request: Any
    read: Callable[[Any], T]


class Api(Protocol):
    """The service's three calls, built for one protocol."""

    def score(self, pairs: Iterable[PairLike]) -> Call[ScoreResult]: ...

    def rank(self, query: str, candidates: Sequence[str], top_k: int | None) -> Call[RankResult]: ...

    def model_info(self) -> Call[ModelInfo]: ...


def _pairs(pairs: Iterable[PairLike]) -> list[tuple[str, str]]:
    """``(sentence1, sentence2)`` tuples or ``{"sentence1": ..., "sentence2": ...}`` mappings -> tuples."""
    return [(p["sentence1"], p["sentence2"]) if isinstance(p, Mapping) else (p[0], p[1]) for p in pairs]


class HttpApi:
    """``POST /score``, ``/rank`` and ``/model_info``: JSON bodies, and results from 200 answers.

    ``headers`` go with every request: the body's type, and the API key as ``Authorization: Bearer <key>``.
    """

    def __init__(self, api_key: str | None = None):
        self.headers = {"Content-Type": "application/json", **_authorization(api_key, "Authorization")}

    def score(self, pairs: Iterable[PairLike]) -> Call[ScoreResult]:
        body = {"pairs": [{"sentence1": a, "sentence2": b} for a, b in _pairs(pairs)]}
        return Call("/score", _json(body), lambda r: ScoreResult([PairScore(**item) for item in r.json()], _tag(r)))

    def rank(self, query: str, candidates: Sequence[str], top_k: int | None) -> Call[RankResult]:
        body: dict[str, Any] = {"query": query, "candidates": list(candidates)}
        if top_k is not None:
            body["top_k"] = top_k
        return Call("/rank", _json(body), lambda r: RankResult([RankedCandidate(**i) for i in r.json()], _tag(r)))

    def model_info(self) -> Call[ModelInfo]:
        return Call("/model_info", b"{}", lambda r: ModelInfo(**r.json()))

    @staticmethod
    def answer(call: Call[T], answer: HttpAnswer) -> T:
        """The result of a 200 answer; any other status raises its :class:`KoStsError`."""
        if answer.status != 200:
            raise http_error(answer)
        return call.read(answer)


def _json(body: Any) -> bytes:
    """A request body: compact UTF-8 JSON (as httpx writes ``json=``)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _tag(answer: HttpAnswer) -> str:
    return str(answer.headers.get(MODEL_HEADER, ""))


class GrpcApi:
    """``ko_sts.v1.Similarity``'s ``Score``, ``Rank`` and ``ModelInfo``: request messages, results from replies.

    ``metadata`` goes with every call (the API key as ``authorization: Bearer <key>``, if any).
    """

    def __init__(self, api_key: str | None = None):
        from ko_sts.v1 import similarity_pb2

        self.pb = similarity_pb2
        self.metadata = tuple(_authorization(api_key, "authorization").items())

    def score(self, pairs: Iterable[PairLike]) -> Call[ScoreResult]:
        pb = self.pb
        request = pb.ScoreRequest(pairs=[pb.SentencePair(sentence1=a, sentence2=b) for a, b in _pairs(pairs)])
        return Call("Score", request, _score_result)

    def rank(self, query: str, candidates: Sequence[str], top_k: int | None) -> Call[RankResult]:
        if top_k is not None and top_k < 0:  # uint32 on the wire; the service names the rule for 0
            raise KoStsError("invalid_input", f"top_k: must be at least 1 when given, got {top_k}")
        return Call("Rank", self.pb.RankRequest(query=query, candidates=list(candidates), top_k=top_k), _rank_result)

    def model_info(self) -> Call[ModelInfo]:
        return Call("ModelInfo", self.pb.ModelInfoRequest(), _model_info)


def _score_result(reply: Any) -> ScoreResult:
    return ScoreResult([PairScore(r.score, r.similar, r.truncated) for r in reply.results], reply.model_tag)


def _rank_result(reply: Any) -> RankResult:
    results = [RankedCandidate(r.index, r.score, r.similar, r.truncated) for r in reply.results]
    return RankResult(results, reply.model_tag)


def _model_info(reply: Any) -> ModelInfo:
    metrics = {
        runtime: {name: dict(values.values) for name, values in sets.sets.items()}
        for runtime, sets in reply.metrics.items()
    }
    return ModelInfo(reply.model_tag, reply.backend, reply.device, reply.base_model, metrics)


def _authorization(api_key: str | None, name: str) -> dict[str, str]:
    """The header (or gRPC metadata key, lower case) carrying an API key; empty without a key."""
    return {name: f"Bearer {api_key}"} if api_key else {}
