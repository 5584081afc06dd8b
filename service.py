"""BentoML service: Korean sentence-pair similarity, batched by the project's own engine.

    bentoml serve            # from the repository root; settings from KO_STS_* variables

The service wires settings, the model from the store and the API; scoring, batching, input
rules and errors live in ``models/`` (see ``models/engine.py``).
"""

from __future__ import annotations

import logging

import bentoml
from starlette.responses import JSONResponse

from models.engine import ScoringEngine
from models.errors import ScoringError
from models.inputs import check_pairs, check_rank, rank_order
from models.package import base_model_name, metrics_by_runtime, read_metadata
from models.scoring import SIMILAR_THRESHOLD
from serving.grpc_server import ServedModel, start_grpc
from serving.metrics import PrometheusObserver
from serving.schemas import ModelInfo, PairScore, RankedCandidate, SentencePair
from serving.settings import Settings

logger = logging.getLogger("bentoml.ko_sts")

MODEL_HEADER = "X-Ko-Sts-Model"
WARM_UP_PAIRS = [
    ("숙소 위치는 찾기 쉬워요.", "숙소를 쉽게 찾을 수 있었어요."),
    ("오늘 날씨 어때?", "환불은 언제 되나요?"),
]

settings = Settings()


@bentoml.service(traffic={"timeout": 60}, workers=settings.workers)
class KoSTS:
    """Scores Korean sentence pairs with a fine-tuned cross-encoder from the model store."""

    model = bentoml.models.BentoModel(settings.model_tag)

    def __init__(self) -> None:
        # gRPC (KO_STS_GRPC_PORT, 50051) starts now and answers NOT_SERVING until the model is warm
        self.grpc = start_grpc(settings.grpc())
        path = self.model.path
        scorer = settings.scorer(path)
        self.engine = ScoringEngine(scorer, settings.engine(), PrometheusObserver())
        self.rules = settings.input_rules()
        self.tag = str(self.model.tag)
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

    @bentoml.api
    async def score(self, pairs: list[SentencePair], ctx: bentoml.Context) -> list[PairScore]:
        """One score per pair, in request order."""
        try:
            result = await self.engine.score(check_pairs([(p.sentence1, p.sentence2) for p in pairs], self.rules))
        except ScoringError as error:
            return self._error(error, ctx)
        ctx.response.headers[MODEL_HEADER] = self.tag
        return [
            PairScore(score=float(s), similar=bool(s >= SIMILAR_THRESHOLD), truncated=bool(t))
            for s, t in zip(result.scores, result.truncated)
        ]

    @bentoml.api
    async def rank(
        self, query: str, candidates: list[str], ctx: bentoml.Context, top_k: int | None = None
    ) -> list[RankedCandidate]:
        """Candidates by descending similarity to the query (ties by index), at most ``top_k``."""
        try:
            result = await self.engine.score(check_rank(query, candidates, top_k, self.rules))
        except ScoringError as error:
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

    def _error(self, error: ScoringError, ctx: bentoml.Context) -> JSONResponse:
        """The JSON error answer, with the status of models.errors.ERROR_TABLE (BentoML applies ctx's)."""
        ctx.response.status_code = error.status.http
        if error.retry_after_s is not None:
            ctx.response.headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
        ctx.response.headers[MODEL_HEADER] = self.tag
        return JSONResponse({"error": error.kind.value, "detail": error.message}, status_code=error.status.http)


def _dev_metrics(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """The served runtime's KLUE-STS dev figures for the start-up log line, e.g. 'pearson 0.887, f1 0.814'."""
    runtime = "onnx_int8" if settings.backend == "onnx" else "pytorch"
    dev = metrics.get(runtime, {}).get("dev") or metrics.get("pytorch", {}).get("dev")
    return f"pearson {dev['pearson']:.3f}, f1 {dev['f1']:.3f}" if dev else "not measured"
