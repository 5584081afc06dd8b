"""BentoML service: Korean sentence-pair similarity, batched by the project's own engine.

    bentoml serve            # from the repository root; settings from KO_STS_* variables

The service wires settings, the model from the store and the API; the model and its scoring live
in ``models/``, batching, input rules and errors in ``serving/`` (see ``serving/engine.py``). In front of BentoML's routes,
``serving/http.py`` adds request ids and checks the API key and the body; before any worker
starts, the stored model's files are verified, and each worker checks its scores against the
ones recorded at export (``serving/startup.py``).
"""

from __future__ import annotations

import logging

import bentoml
from starlette.responses import JSONResponse

from models.package import base_model_name, metrics_by_runtime, read_metadata
from models.scoring import SIMILAR_THRESHOLD
from serving.engine import ScoringEngine
from serving.errors import CALLER_ERRORS, ServiceError
from serving.grpc_server import ServedModel, start_grpc
from serving.http import RequestGuard, error_response
from serving.inputs import check_pairs, check_rank, rank_order
from serving.metrics import PrometheusObserver
from serving.schemas import ModelInfo, PairScore, RankedCandidate, SentencePair, request_models
from serving.settings import Settings
from serving.startup import check_parity, check_stored_model

logger = logging.getLogger("bentoml.ko_sts")

MODEL_HEADER = "X-Ko-Sts-Model"
WARM_UP_PAIRS = [
    ("숙소 위치는 찾기 쉬워요.", "숙소를 쉽게 찾을 수 있었어요."),
    ("오늘 날씨 어때?", "환불은 언제 되나요?"),
]

settings = Settings()
REQUESTS = request_models(settings.input_rules())
MODEL = bentoml.models.BentoModel(settings.model_tag)


@bentoml.service(traffic={"timeout": 60}, workers=settings.workers)
class KoSTS:
    """Scores Korean sentence pairs with a fine-tuned cross-encoder from the model store."""

    model = MODEL

    @bentoml.on_deployment
    def check_model() -> None:
        """In ``bentoml serve``'s main process, before any worker: refuse a damaged or mismatched model.

        The parity guard runs here on the CPU, so that a model that does not score as exported stops
        ``bentoml serve`` (exit 1) instead of failing each worker's start in turn; a worker on another
        device (a GPU) checks again there.
        """
        stored = MODEL.resolve()
        check_stored_model(stored.path, str(stored.tag))
        check_parity(settings.scorer(stored.path, device="cpu"), stored.path, str(stored.tag))

    def __init__(self) -> None:
        # gRPC (KO_STS_GRPC_PORT, 50051) starts now and answers NOT_SERVING until the model is warm
        self.grpc = start_grpc(settings.grpc())
        path = self.model.path
        self.tag = str(self.model.tag)
        scorer = settings.scorer(path)
        if scorer.device != "cpu":  # on the CPU, check_model has just scored the same runtime
            check_parity(scorer, path, self.tag)
        self.engine = ScoringEngine(scorer, settings.engine(scorer.device), PrometheusObserver())
        self.rules = settings.input_rules()
        self.metadata = read_metadata(path)
        self.info = ModelInfo(
            tag=self.tag,
            backend=settings.backend,
            device=scorer.device,
            base_model=base_model_name(self.metadata),
            metrics=metrics_by_runtime(self.metadata),
        )
        self.engine.score_blocking(WARM_UP_PAIRS)  # ready only once a first batch has been scored
        if self.grpc:
            self.grpc.serve(ServedModel(self.engine, self.rules, self.info))
        logger.info(
            "serving %s (%s; dev %s) with %s, %s",
            self.tag,
            self.info.base_model,
            _dev_metrics(self.info.metrics),
            scorer.runtime.description,
            scorer.limits,
        )

    @bentoml.on_shutdown
    async def close(self) -> None:
        if self.grpc:  # draining since SIGTERM, like HTTP; the engine serves both until both are done
            await self.grpc.stop()
        self.engine.close()

    @bentoml.api(input_spec=REQUESTS.score)
    async def score(self, pairs: list[SentencePair], ctx: bentoml.Context) -> list[PairScore]:
        """One score per pair, in request order."""
        try:
            result = await self.engine.score(check_pairs([(p.sentence1, p.sentence2) for p in pairs], self.rules))
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
    ) -> list[RankedCandidate]:
        """Candidates by descending similarity to the query (ties by index), at most ``top_k``."""
        try:
            result = await self.engine.score(check_rank(query, candidates, top_k, self.rules))
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
    def model_info(self, ctx: bentoml.Context) -> ModelInfo:
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
    runtime = "onnx_int8" if settings.backend == "onnx" else "pytorch"
    dev = metrics.get(runtime, {}).get("dev") or metrics.get("pytorch", {}).get("dev")
    return f"pearson {dev['pearson']:.3f}, f1 {dev['f1']:.3f}" if dev else "not measured"


KoSTS.add_asgi_middleware(
    RequestGuard,
    routes={api.route: api.input_spec for api in KoSTS.apis.values()},
    rules=settings.input_rules(),
    api_key=settings.key(),
    spec=lambda: KoSTS.openapi_spec.asdict(),
)
