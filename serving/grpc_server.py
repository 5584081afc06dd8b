"""The gRPC API (``proto/ko_sts/v1/similarity.proto``), served next to BentoML's HTTP inside each worker.

BentoML 1.4's ``@bentoml.service`` serves no gRPC, so each ``bentoml serve`` worker runs a
``grpc.aio`` server of its own, on a thread with its own event loop, and its calls go into the
worker's :class:`~serving.engine.ScoringEngine`: the same loaded model, queue and cross-request
batching as HTTP, the same input rules (:mod:`serving.inputs`) and the same error table
(:data:`serving.errors.ERROR_TABLE`). The engine answers with ``concurrent.futures`` futures, which
any event loop can await, so the two protocols share nothing else.

Lifecycle (see ``service.py``): the server binds at the start of the worker's ``__init__``, before
the model loads, and answers health checks NOT_SERVING; :meth:`GrpcServer.serve` routes calls to
the warmed-up model and turns SERVING. SIGTERM or SIGINT turn it NOT_SERVING at once and stop it
taking calls, while calls in flight get ``grace_s`` to finish (HTTP drains at the same time);
the service's shutdown hook waits for that before it closes the engine.

Several workers (``KO_STS_WORKERS``) bind the same port with ``SO_REUSEPORT``, and the kernel
spreads new connections over them; one worker binds without it, so that a port already in use
fails the start instead of sharing connections with another process.

Every call runs in a tracing span of BentoML's tracer, as an HTTP request does: its id is the
call's request id, sent back as trailing metadata ``x-request-id`` and found in the ``span=``
field of the log lines about the call (one access line per call, as BentoML writes for HTTP).
Requests are parsed here rather than by grpcio, so that bytes that are not a valid message (a
string that is not UTF-8) get ``INVALID_ARGUMENT`` like any other bad input. With an API key
(:mod:`serving.auth`) every ``Similarity`` call needs ``authorization: Bearer <key>`` metadata;
health and reflection stay open, for probes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from ko_sts.v1 import similarity_pb2 as pb
from ko_sts.v1 import similarity_pb2_grpc as pb_grpc
from models.scoring import SIMILAR_THRESHOLD
from serving.auth import ApiKey
from serving.errors import CALLER_ERRORS, Malformed, ServiceError, Unavailable
from serving.frontend import Frontend
from serving.inputs import InputRules, check_pairs, check_rank, rank_order
from serving.schemas import ModelInfo

logger = logging.getLogger("bentoml.ko_sts.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Similarity"].full_name  # ko_sts.v1.Similarity
MODEL_METADATA = "x-ko-sts-model"  # the model tag, as HTTP's X-Ko-Sts-Model header
ERROR_METADATA = "ko-sts-error"  # the error kind, as HTTP's {"error": ...}
RETRY_METADATA = "retry-after"  # seconds, as HTTP's Retry-After header
REQUEST_ID_METADATA = "x-request-id"  # as HTTP's X-Request-ID header


@dataclass(frozen=True)
class GrpcOptions:
    """Where and how the gRPC server listens (``KO_STS_GRPC_*`` settings).

    Args:
        host, port: the address to bind, e.g. ``[::]`` and 50051.
        grace_s: on shutdown, how long calls in flight may take to finish before they are cancelled.
        reuse_port: bind with ``SO_REUSEPORT`` (several workers share the port).
        max_message_bytes: larger requests are refused by gRPC itself (``RESOURCE_EXHAUSTED``).
        api_key: the key every ``Similarity`` call must send, or None.
        access_log: log one line per call, as BentoML's access log does for HTTP.
    """

    host: str = "[::]"
    port: int = 50051
    grace_s: float = 30.0
    reuse_port: bool = False
    max_message_bytes: int = InputRules().body_limit
    api_key: ApiKey | None = None
    access_log: bool = True


@dataclass(frozen=True)
class ServedModel:
    """What the gRPC API serves: the worker's scoring front, its input rules and what it says about its model."""

    frontend: Frontend
    rules: InputRules
    info: ModelInfo


class GrpcMetrics:
    """Prometheus metrics of the gRPC calls (HTTP calls are BentoML's ``bentoml_service_*``)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        from serving.metrics import LATENCY_BUCKETS

        self.calls = Counter("ko_sts_grpc_requests", "gRPC calls answered, by method and code", ["method", "code"])
        self.in_progress = Gauge(
            "ko_sts_grpc_requests_in_progress", "gRPC calls being served", ["method"], multiprocess_mode="livesum"
        )
        self.latency = Histogram(
            "ko_sts_grpc_request_duration_seconds", "Time to answer a gRPC call", ["method"], buckets=LATENCY_BUCKETS
        )


class SimilarityServicer(pb_grpc.SimilarityServicer):
    """``ko_sts.v1.Similarity``: translates calls to the engine and errors to status codes."""

    def __init__(
        self, metrics: GrpcMetrics | None = None, api_key: ApiKey | None = None, access_log: bool = True
    ) -> None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        self.model: ServedModel | None = None  # set once the model is loaded and warm
        self.metrics = metrics
        self.api_key = api_key
        self.access_log = access_log
        self.tracer = BentoMLContainer.tracer_provider.get().get_tracer(__name__)

    async def Score(self, request: pb.ScoreRequest | Malformed, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        async def answer(model: ServedModel) -> pb.ScoreResponse:
            pairs = check_pairs([(p.sentence1, p.sentence2) for p in request.pairs], model.rules)
            result = await model.frontend.score(pairs, timeout_s=_time_left(context))
            return pb.ScoreResponse(
                results=[
                    pb.PairScore(score=float(s), similar=bool(s >= SIMILAR_THRESHOLD), truncated=bool(t))
                    for s, t in zip(result.scores, result.truncated)
                ],
                model_tag=model.info.tag,
            )

        return await self._answer("Score", request, context, answer)

    async def Rank(self, request: pb.RankRequest | Malformed, context: grpc.aio.ServicerContext) -> pb.RankResponse:
        async def answer(model: ServedModel) -> pb.RankResponse:
            top_k = request.top_k if request.HasField("top_k") else None
            pairs = check_rank(request.query, list(request.candidates), top_k, model.rules)
            result = await model.frontend.score(pairs, timeout_s=_time_left(context))
            return pb.RankResponse(
                results=[
                    pb.RankedCandidate(
                        index=int(i),
                        score=float(result.scores[i]),
                        similar=bool(result.scores[i] >= SIMILAR_THRESHOLD),
                        truncated=bool(result.truncated[i]),
                    )
                    for i in rank_order(result.scores, top_k)
                ],
                model_tag=model.info.tag,
            )

        return await self._answer("Rank", request, context, answer)

    async def ModelInfo(
        self, request: pb.ModelInfoRequest | Malformed, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfoResponse:
        async def answer(model: ServedModel) -> pb.ModelInfoResponse:
            info = model.info
            metrics = {
                runtime: pb.RuntimeMetrics(sets={name: pb.Metrics(values=values) for name, values in sets.items()})
                for runtime, sets in info.metrics.items()
            }
            return pb.ModelInfoResponse(
                model_tag=info.tag,
                backend=info.backend,
                device=info.device,
                base_model=info.base_model,
                metrics=metrics,
            )

        return await self._answer("ModelInfo", request, context, answer)

    async def _answer(
        self,
        method: str,
        request: Message | Malformed,
        context: grpc.aio.ServicerContext,
        answer: Callable[[ServedModel], Awaitable[Any]],
    ) -> Any:
        """Runs ``answer`` in a tracing span; a failure becomes its table's status code, with metadata.

        Every answer carries the request id (``x-request-id``); a failure also its kind, the model
        tag and, when a retry may help, ``retry-after``.
        """
        started, code = time.perf_counter(), "OK"
        if self.metrics:
            self.metrics.in_progress.labels(method).inc()
        metadata = dict(context.invocation_metadata() or ())
        parent = propagate.extract(metadata)  # a caller's W3C traceparent joins its trace
        with self.tracer.start_as_current_span(f"gRPC {method}", context=parent, kind=SpanKind.SERVER) as span:
            request_id = (REQUEST_ID_METADATA, format(span.get_span_context().span_id, "016x"))
            try:
                model = self.model
                try:
                    if self.api_key is not None:
                        self.api_key.check(metadata.get("authorization"))
                    if isinstance(request, Malformed):
                        raise request
                    if model is None:
                        raise Unavailable("the model is still loading; retry shortly", retry_after_s=1.0)
                    response = await answer(model)
                    context.set_trailing_metadata((request_id,))
                    return response
                except ServiceError as error:
                    failure = error
                except asyncio.CancelledError:  # the caller went away or its deadline passed: the engine drops it
                    code = "CANCELLED"
                    raise
                except Exception:
                    logger.exception("gRPC %s failed", method)
                    failure = ServiceError("internal error; the service's log has the details")
                code = failure.status.grpc
                trailing = [request_id, (ERROR_METADATA, failure.kind.value)]
                if failure.retry_after_s is not None:
                    trailing.append((RETRY_METADATA, str(max(1, round(failure.retry_after_s)))))
                if model is not None:
                    trailing.append((MODEL_METADATA, model.info.tag))
                if failure.kind in CALLER_ERRORS:
                    logger.info("refused gRPC %s: %s %s: %s", method, code, failure.kind.value, failure.log_message)
                await context.abort(grpc.StatusCode[code], failure.message, trailing_metadata=tuple(trailing))
            finally:
                elapsed = time.perf_counter() - started
                if self.access_log:
                    logger.info("gRPC %s (peer=%s) (code=%s) %.3fms", method, context.peer(), code, elapsed * 1000)
                if self.metrics:
                    self.metrics.in_progress.labels(method).dec()
                    self.metrics.calls.labels(method, code).inc()
                    self.metrics.latency.labels(method).observe(elapsed)


class _HealthServicer(health.aio.HealthServicer):
    """``grpc.health.v1.Health`` whose Watch streams end (after sending NOT_SERVING) once shutdown starts.

    The stock Watch never ends, so every watching client would hold the graceful stop for its whole
    grace. This Watch follows its own record of the statuses (``Check`` keeps the stock one) and
    returns once it has sent the shutdown's NOT_SERVING; no write is ever interrupted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, int] = {}
        self._stopping = False
        self._changed = asyncio.Condition()

    async def set(self, service: str, status: int) -> None:
        await super().set(service, status)
        async with self._changed:
            if not self._stopping:
                self._statuses[service] = status
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        async with self._changed:
            self._stopping = True
            self._statuses = dict.fromkeys(self._statuses, health_pb2.HealthCheckResponse.NOT_SERVING)
            self._changed.notify_all()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        sent = None
        async with self._changed:
            while True:
                status = self._statuses.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                if status != sent:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    sent = status
                if self._stopping:
                    return
                await self._changed.wait()


def _parser(message_type: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """A request deserializer that hands undecodable bytes to the servicer as a Malformed error."""

    def parse(data: bytes) -> Message | Malformed:
        try:
            return message_type.FromString(data)
        except DecodeError as error:
            return Malformed(
                f"request: not a valid {message_type.DESCRIPTOR.full_name} ({error}); strings must be UTF-8"
            )

    return parse


def _add_similarity(servicer: SimilarityServicer, server: grpc.aio.Server) -> None:
    """Registers ``ko_sts.v1.Similarity`` as the generated code does, with requests parsed by :func:`_parser`."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Similarity"].methods:
        request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_parser(request),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def _time_left(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds to the caller's deadline (the engine drops work not started by then), or None."""
    left = context.time_remaining()
    return None if left is None or left > 1e6 else max(left, 0.0)


class GrpcServer:
    """A ``grpc.aio`` server with health and reflection, on a thread with its own event loop.

    :meth:`start` binds and answers NOT_SERVING; :meth:`serve` turns SERVING; :meth:`drain`
    (thread-safe, also from a signal handler) turns NOT_SERVING and stops taking calls;
    ``await`` :meth:`stop` waits until the calls in flight have finished.
    """

    def __init__(self, options: GrpcOptions, metrics: GrpcMetrics | None = None) -> None:
        self.options = options
        self.servicer = SimilarityServicer(metrics, options.api_key, options.access_log)
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._health: _HealthServicer | None = None
        self._thread: threading.Thread | None = None
        self._stopped: Future = Future()
        self._draining = False
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> int:
        """Starts the server (NOT_SERVING) and returns its port once it is bound; raises if it cannot bind."""
        bound: Future = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(bound),), name="ko-sts-grpc", daemon=True)
        self._thread.start()
        self.port = bound.result(timeout=60)
        logger.info("gRPC on %s:%d (NOT_SERVING until the model is ready)", self.options.host, self.port)
        return self.port

    def serve(self, model: ServedModel) -> None:
        """Routes calls to ``model`` and reports SERVING."""
        self.servicer.model = model
        asyncio.run_coroutine_threadsafe(self._set_health(health_pb2.HealthCheckResponse.SERVING), self._loop).result(
            timeout=10
        )

    def drain(self) -> None:
        """Reports NOT_SERVING and stops taking calls; calls in flight get ``grace_s``. Returns at once."""
        if self._draining or self._loop is None:
            return
        self._draining = True
        try:
            self._loop.call_soon_threadsafe(self._start_draining)
        except RuntimeError:  # the loop has ended: the server never started, or has stopped
            pass

    async def stop(self) -> None:
        """Drains (if not yet) and waits until the server has stopped; awaitable from any event loop."""
        self.drain()
        await asyncio.wrap_future(self._stopped)
        self._thread.join(timeout=5)

    def drain_on_signals(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Drains as soon as the process is told to stop, then passes the signal on (uvicorn's handler).

        Without this, gRPC would only start draining after HTTP has (in the shutdown hook).
        """
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be set from the main thread; the shutdown hook still drains
        for number in signals:
            previous = signal.getsignal(number)

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                self.drain()
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    signal.signal(signum, signal.SIG_DFL)
                    signal.raise_signal(signum)

            signal.signal(number, handler)

    async def _run(self, bound: Future) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            server = grpc.aio.server(
                options=[
                    ("grpc.so_reuseport", int(self.options.reuse_port)),
                    ("grpc.max_receive_message_length", self.options.max_message_bytes),
                ]
            )
            self._health = _HealthServicer()
            _add_similarity(self.servicer, server)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
            await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            address = f"{self.options.host}:{self.options.port}"
            try:
                port = server.add_insecure_port(address)
            except RuntimeError as error:
                raise RuntimeError(
                    f"cannot bind gRPC to {address} ({error}): is the port in use? "
                    "Set KO_STS_GRPC_PORT to another one, or KO_STS_GRPC_ENABLED=false"
                ) from None
            await server.start()
        except BaseException as error:
            bound.set_exception(error)
            self._stopped.set_result(None)
            return
        self._server = server
        bound.set_result(port)
        try:
            await server.wait_for_termination()
        finally:
            self._stopped.set_result(None)

    async def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    def _start_draining(self) -> None:
        task = asyncio.ensure_future(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        logger.info("gRPC: NOT_SERVING, finishing calls in flight (up to %.0f s)", self.options.grace_s)
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.options.grace_s)


def start_grpc(options: GrpcOptions | None) -> GrpcServer | None:
    """The gRPC server of a ``bentoml serve`` worker, started and NOT_SERVING; None if off (``options`` None).

    Outside a BentoML worker (a script or test building the service class) nothing is started.
    """
    import bentoml

    if options is None or bentoml.server_context.worker_index is None:
        return None
    server = GrpcServer(options, GrpcMetrics())
    server.start()
    server.drain_on_signals()
    return server
