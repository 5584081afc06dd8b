"""Request and response models of the HTTP API (the OpenAPI spec is generated from them).

Only the shape is declared here; content rules (non-empty text, request and sentence limits)
are checked by :mod:`models.inputs`, the same code the gRPC server calls.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.scoring import SIMILAR_THRESHOLD

SIMILAR = f"score >= {SIMILAR_THRESHOLD:g} (KLUE-STS's binary label)"
TRUNCATED = "the pair was longer than the model's token budget and was cut (longest sentence first)"


class SentencePair(BaseModel):
    """Two sentences to compare."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sentence1: str
    sentence2: str


class PairScore(BaseModel):
    """Similarity of one pair: ``score`` from 0 (unrelated) to 5 (same meaning)."""

    score: float = Field(ge=0.0, le=5.0)
    similar: bool = Field(description=SIMILAR)
    truncated: bool = Field(description=TRUNCATED)


class RankedCandidate(BaseModel):
    """One candidate of a ``rank`` request, by descending score."""

    index: int = Field(ge=0, description="position of the candidate in the request")
    score: float = Field(ge=0.0, le=5.0)
    similar: bool = Field(description=SIMILAR)
    truncated: bool = Field(description=TRUNCATED)


class ModelInfo(BaseModel):
    """What this replica serves."""

    tag: str
    backend: str
    device: str
    base_model: str
    metrics: dict[str, dict[str, dict[str, float]]] = Field(
        description="runtime (pytorch, onnx_fp32, onnx_int8) -> evaluation set -> metric"
    )


class ErrorBody(BaseModel):
    """Body of every error this service answers itself."""

    error: str = Field(description="the error kind, e.g. invalid_input, too_large, overloaded")
    detail: str = Field(description="what is wrong and what to do")
