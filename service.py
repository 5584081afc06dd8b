"""BentoML service: Korean sentence-pair similarity with adaptive batching.

bentoml serve            # from the repository root; settings from KO_STS_* variables
"""

from __future__ import annotations

import logging
from typing import Annotated

import bentoml
from pydantic import AfterValidator, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.backends import Backend, Device, load_scorer
from models.cross_encoder import SIMILAR_THRESHOLD
from models.package import metrics_by_runtime, read_metadata

logger = logging.getLogger("bentoml.ko_sts")


class Settings(BaseSettings):
    """Service settings, read from ``KO_STS_*`` environment variables (e.g. ``KO_STS_BACKEND=torch``)."""

    model_config = SettingsConfigDict(env_prefix="KO_STS_")

    model_tag: str = Field("ko-sts:latest", description="model in the BentoML store; 'latest' is the newest")
    backend: Backend = Field("onnx", description="'onnx' (ONNX Runtime) or 'torch' (PyTorch)")
    device: Device = Field("auto", description="'auto' takes a CUDA GPU when the backend sees one")
    onnx_file: str | None = Field(
        None, description="ONNX file under onnx/ (default: model_quantized.onnx on CPU, model.onnx on CUDA)"
    )
    max_batch_size: int = Field(64, ge=1, description="most pairs the adaptive batcher puts in one batch")
    max_latency_ms: int = Field(10_000, ge=1, description="latency budget of a batch before requests are refused")
    inference_batch_size: int | None = Field(
        None,
        ge=1,
        description="pairs per forward pass; default 1 for the int8 ONNX model (exact per-pair scores), else 32",
    )


def _has_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain text, not only whitespace")
    return value


Sentence = Annotated[str, Field(min_length=1, strict=True), AfterValidator(_has_text)]


class SentencePair(BaseModel):
    """Two sentences to compare."""

    sentence1: Sentence
    sentence2: Sentence


class PairScore(BaseModel):
    """Similarity of one pair: ``score`` from 0 (unrelated) to 5 (same meaning)."""

    score: float = Field(ge=0.0, le=5.0)
    similar: bool = Field(description=f"score >= {SIMILAR_THRESHOLD} (KLUE-STS's binary label)")


class ModelInfo(BaseModel):
    """What this replica serves."""

    tag: str
    backend: str
    device: str
    base_model: str
    metrics: dict[str, dict[str, dict[str, float]]] = Field(
        description="runtime (pytorch, onnx_fp32, onnx_int8) -> evaluation set -> metric"
    )


settings = Settings()


@bentoml.service(traffic={"timeout": 60})
class KoSTS:
    """Scores Korean sentence pairs with a fine-tuned cross-encoder from the model store."""

    model = bentoml.models.BentoModel(settings.model_tag)

    def __init__(self) -> None:
        options = {"device": settings.device, "batch_size": settings.inference_batch_size}
        if settings.backend == "onnx":
            options["onnx_file"] = settings.onnx_file
        self.scorer = load_scorer(self.model.path, settings.backend, **options)
        self.metadata = read_metadata(self.model.path)
        logger.info("serving %s with %s on %s", self.model.tag, settings.backend, self.scorer.device)

    @bentoml.api(batchable=True, max_batch_size=settings.max_batch_size, max_latency_ms=settings.max_latency_ms)
    def score(self, pairs: Annotated[list[SentencePair], Field(min_length=1)]) -> list[PairScore]:
        """Returns one score per pair, in request order."""
        scores = self.scorer.score([(pair.sentence1, pair.sentence2) for pair in pairs])
        return [PairScore(score=float(s), similar=bool(s >= SIMILAR_THRESHOLD)) for s in scores]

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """The served model's tag, backend, device, base model and evaluation metrics."""
        return ModelInfo(
            tag=str(self.model.tag),
            backend=settings.backend,
            device=self.scorer.device,
            base_model=self.metadata["base_model"],
            metrics=metrics_by_runtime(self.metadata),
        )
