"""BentoML service: Korean sentence-pair similarity, batched by the project's own engine.

    bentoml serve            # from the repository root; settings from KO_STS_* variables

``KoSTS`` is the front: HTTP (BentoML) and gRPC, input rules, tokenising and answers, in as many
worker processes as the host's cores warrant. On a GPU the model lives in a composed service of
its own, ``ScoringModel``: one process per GPU that loads the model, batches the rows of every
front and does nothing but GPU work; fronts send it token arrays over a Unix socket
(``serving/link.py``). On a CPU the engine runs inside the front worker (``KO_STS_MODEL_PROCESS``
decides). The model and its scoring live in ``models/``; batching, input rules and errors in
``serving/`` (see ``serving/engine.py``). In front of BentoML's routes, ``serving/http.py`` adds
request ids and checks the API key and the body; before any worker starts, the stored model's
files are verified, and the process that runs the model checks its scores against the ones
recorded at export (``serving/startup.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from starlette.responses import JSONResponse

from models.package import base_model_name, metrics_by_runtime, read_metadata
from models.scoring import SIMILAR_THRESHOLD
from serving.engine import ScoringEngine
from serving.errors import CALLER_ERRORS, ServiceError
from serving.frontend import Frontend
from serving.grpc_server import ServedModel, start_grpc
from serving.http import RequestGuard, error_response
from serving.inputs import check_pairs, check_rank, rank_order
from serving.link import Links, LinkServer, runner_uri, socket_path
from serving.metrics import TokenizerMetrics
from serving.schemas import ModelInfo, PairScore, RankedCandidate, SentencePair, request_models
from serving.settings import Settings
from serving.startup import check_parity, check_stored_model, pin_gpu, start_engine

logger = logging.getLogger("bentoml.ko_sts")

MODEL_HEADER = "X-Ko-Sts-Model"
JSON = ContentType("application/json")  # stated, so BentoML need not derive it from a JSON schema per answer
LINK_GRACE_S = 120.0  # a front stays alive this long without its model process (restarting) before liveness fails

settings = Settings()
REQUESTS = request_models(settings.input_rules())
MODEL = bentoml.models.BentoModel(settings.model_tag)


@bentoml.service(traffic={"timeout": 60}, workers=settings.gpu_workers)
class ScoringModel:
    """Owns the GPU: loads the model, batches the rows every front sends and runs the forward passes."""

    model = MODEL

    def __init__(self) -> None:
        index = bentoml.server_context.worker_index or 1
        if settings.gpu_workers > 1:
            logger.info("model process %d of %d takes GPU %s", index, settings.gpu_workers, pin_gpu(index))
        self.engine = start_engine(settings, self.model.path, str(self.model.tag))
        uri = runner_uri(ScoringModel.name)
        self.link = LinkServer(self.engine, socket_path(uri, index), self.status) if uri else None
        gc.freeze()  # what start-up built lives as long as the process: later collections need not scan it

    def __is_alive__(self) -> bool:
        return self.engine.alive and (self.link is None or self.link.alive)

    @bentoml.api
    def status(self) -> dict:
        """The engine's state: device, liveness, measured throughput and queue."""
        return {
            "alive": self.engine.alive,
            "device": self.engine.scorer.device,
            "runtime": self.engine.scorer.runtime.description,
            "tokens_per_s": round(self.engine.tokens_per_s),
            "queued_pairs": self.engine.queued_pairs,
        }

    @bentoml.on_shutdown
    async def close(self) -> None:
        if self.link:
            self.link.close()
        await asyncio.to_thread(self.engine.close)


@bentoml.service(
    traffic={"timeout": 60}, workers=settings.front_workers, logging={"access": {"enabled": settings.access_lines}}
)
class KoSTS:
    """Scores Korean sentence pairs with a fine-tuned cross-encoder from the model store."""

    model = MODEL
    if settings.separate_model_process:
        scoring_model = bentoml.depends(ScoringModel)

    @bentoml.on_deployment
    def check_model() -> None:
        """In ``bentoml serve``'s main process, before any worker: refuse a damaged or mismatched model.

        The parity guard runs here on the CPU, so that a model that does not score as exported stops
        ``bentoml serve`` (exit 1) instead of failing each worker's start in turn; a process serving on
        a GPU checks again there.
        """
        stored = MODEL.resolve()
        check_stored_model(stored.path, str(stored.tag))
        check_parity(settings.scorer(stored.path, device="cpu"), stored.path, str(stored.tag))

    def __init__(self) -> None:
        # gRPC (KO_STS_GRPC_PORT, 50051) starts now and answers NOT_SERVING until the model is ready
        self.grpc = start_grpc(settings.grpc())
        path = self.model.path
        self.tag = str(self.model.tag)
        self.metadata = read_metadata(path)
        self.info = ModelInfo(
            tag=self.tag,
            backend=settings.backend,
            device="not known yet (the model process is starting)",
            base_model=base_model_name(self.metadata),
            metrics=metrics_by_runtime(self.metadata),
        )
        owned = True
        if not settings.separate_model_process:
            self.engine: ScoringEngine | None = start_engine(settings, path, self.tag)
            rows = self.engine
        elif isinstance(self.scoring_model, ScoringModel.inner):  # not under `bentoml serve`: the model in this process
            self.engine, owned = self.scoring_model.engine, False
            rows = self.engine
        else:
            self.engine = None
            paths = [socket_path(runner_uri(ScoringModel.name), i + 1) for i in range(settings.gpu_workers)]
            rows = Links(paths, on_status=self._model_status)
        if self.engine is not None:
            self.info.device = self.engine.scorer.device
        self.rules = settings.input_rules()
        codec = settings.codec(path)
        self.frontend = Frontend(codec, rows, settings.tokenizer_threads, TokenizerMetrics(), owns_rows=owned)
        if self.grpc:
            self.grpc.serve(ServedModel(self.frontend, self.rules, self.info))
        logger.info(
            "serving %s (%s; dev %s) with %s", self.tag, self.info.base_model, _dev_metrics(self.info.metrics), rows
        )
        gc.freeze()  # what start-up built lives as long as the process: later collections need not scan it

    def _model_status(self, status: dict) -> None:
        """The model process's status, as its link connects: the device it runs on."""
        self.info.device = status["device"]

    async def __is_ready__(self) -> bool:
        """Ready once the model answers: in this process at once, else when the link reaches the model process."""
        if self.engine is not None:
            return True
        status = await self.frontend.rows.ping()
        return bool(status and status["alive"])

    async def __is_alive__(self) -> bool:
        """Dead when the engine's worker or device failed, or the model process stayed unreachable or dead."""
        if self.engine is not None:
            return self.engine.alive
        links = self.frontend.rows
        if not links.running:
            return False
        status = await links.ping()
        if status is not None:
            return bool(status["alive"])
        return time.monotonic() - links.disconnected_since < LINK_GRACE_S

    @bentoml.on_shutdown
    async def close(self) -> None:
        if self.grpc:  # draining since SIGTERM, like HTTP; the engine serves both until both are done
            await self.grpc.stop()
        await self.frontend.close()

    @bentoml.api(input_spec=REQUESTS.score)
    async def score(self, pairs: list[SentencePair], ctx: bentoml.Context) -> Annotated[list[PairScore], JSON]:
        """One score per pair, in request order."""
        try:
            result = await self.frontend.score(check_pairs([(p.sentence1, p.sentence2) for p in pairs], self.rules))
        except Exception as error:
            return self._error(error, ctx)
        ctx.response.headers[MODEL_HEADER] = self.tag
        return [
            PairScore(score=float(s), similar=bool(s >= SIMILAR_THRESHOLD), truncated=bool(t))
            for s, t in zip(result.scores, result.truncated)
        ]

    @bentoml.api(input_spec=REQUESTS.rank)
    async def rank(
        self, query: str, candidates: list[str], ctx: bentoml.Context, top_k: int | None = None
    ) -> Annotated[list[RankedCandidate], JSON]:
        """Candidates by descending similarity to the query (ties by index), at most ``top_k``."""
        try:
            result = await self.frontend.score(check_rank(query, candidates, top_k, self.rules))
        except Exception as error:
            return self._error(error, ctx)
        ctx.response.headers[MODEL_HEADER] = self.tag
        return [
            RankedCandidate(
                index=int(i),
                score=float(result.scores[i]),
                similar=bool(result.scores[i] >= SIMILAR_THRESHOLD),
                truncated=bool(result.truncated[i]),
            )
            for i in rank_order(result.scores, top_k)
        ]

    @bentoml.api
    def model_info(self, ctx: bentoml.Context) -> Annotated[ModelInfo, JSON]:
        """The served model's tag, backend, device, base model and evaluation metrics."""
        ctx.response.headers[MODEL_HEADER] = self.tag
        return self.info

    def _error(self, error: Exception, ctx: bentoml.Context) -> JSONResponse:
        """The JSON error answer, with the status of serving.errors.ERROR_TABLE (BentoML applies ctx's).

        An error that is not a :class:`ServiceError` is a bug: logged with its traceback, answered 500.
        """
        if not isinstance(error, ServiceError):
            logger.error("scoring failed", exc_info=error)
            error = ServiceError("internal error; the service's log has the details")
        elif error.kind in CALLER_ERRORS:
            route, status = ctx.request.url.path, error.status.http
            logger.info("refused %s: %d %s: %s", route, status, error.kind.value, error.log_message)
        response = error_response(error)
        ctx.response.status_code = response.status_code
        ctx.response.headers[MODEL_HEADER] = self.tag
        return response


def _dev_metrics(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """The served runtime's KLUE-STS dev figures for the start-up log line, e.g. 'pearson 0.887, f1 0.814'."""
    runtime = "pytorch" if settings.backend == "torch" else "onnx_int8"  # OpenVINO runs the int8 ONNX file too
    dev = metrics.get(runtime, {}).get("dev") or metrics.get("pytorch", {}).get("dev")
    return f"pearson {dev['pearson']:.3f}, f1 {dev['f1']:.3f}" if dev else "not measured"


KoSTS.add_asgi_middleware(
    RequestGuard,
    routes={api.route: api.input_spec for api in KoSTS.apis.values()},
    rules=settings.input_rules(),
    api_key=settings.key(),
    spec=lambda: KoSTS.openapi_spec.asdict(),
)
