"""Request and response models of the HTTP API (the OpenAPI spec is generated from them).

Pydantic checks only the shape of a request (types, required and unknown fields); the content
rules (non-blank text, request and sentence limits) are checked by :mod:`serving.inputs`, the same
code the gRPC server calls, so that both protocols refuse the same way. The request models still
*declare* those rules in their JSON schema (``minLength``, ``maxItems``, ...), built from the
service's :class:`~serving.inputs.InputRules`, so that the OpenAPI spec says what is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from models.scoring import SIMILAR_THRESHOLD
from serving.errors import ErrorKind
from serving.inputs import InputRules

SIMILAR = f"score >= {SIMILAR_THRESHOLD:g} (KLUE-STS's binary label)"
TRUNCATED = "the pair was longer than the model's token budget and was cut (longest sentence first)"
# "holds a character that str.strip keeps" (serving.inputs' rule), as a JSON Schema pattern. Not r"\S":
# JSON Schema patterns are ECMA-262, whose \s lacks U+001C-U+001F and U+0085 and has U+FEFF, so
# "\x1e" would match r"\S" yet be refused as blank. These are exactly the characters of str.isspace.
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class SentencePair(BaseModel):
    """Two sentences to compare."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sentence1: str
    sentence2: str


@dataclass(frozen=True)
class RequestModels:
    """The request bodies of ``POST /score`` and ``POST /rank`` under one set of input rules."""

    score: type[BaseModel]
    rank: type[BaseModel]


def request_models(rules: InputRules) -> RequestModels:
    """Strict request models (no unknown fields, no type coercion) whose schema states ``rules``."""
    sentence = {"minLength": 1, "maxLength": rules.max_sentence_chars, "pattern": NOT_BLANK}
    items = {"minItems": 1, "maxItems": rules.max_pairs}
    strict = ConfigDict(extra="forbid", strict=True)

    # a subclass named like its base, so that the spec's component keeps the name SentencePair
    pair = type(
        "SentencePair",
        (SentencePair,),
        {"model_config": ConfigDict(**strict, json_schema_extra=_properties(sentence1=sentence, sentence2=sentence))},
    )

    class ScoreRequest(BaseModel):
        model_config = strict

        pairs: list[pair] = Field(json_schema_extra=items)  # type: ignore[valid-type]

    class RankRequest(BaseModel):
        model_config = strict

        query: str = Field(json_schema_extra=sentence)
        candidates: list[Annotated[str, WithJsonSchema({"type": "string", **sentence})]] = Field(
            json_schema_extra=items
        )
        top_k: Annotated[int | None, WithJsonSchema({"type": "integer", "minimum": 1, "nullable": True})] = Field(
            None, description="keep the best top_k candidates; absent or null: all"
        )

    return RequestModels(score=ScoreRequest, rank=RankRequest)


def _properties(**extra: dict[str, Any]) -> Any:
    """A ``json_schema_extra`` that adds keywords to the named properties of a model's schema."""

    def update(schema: dict[str, Any]) -> None:
        for name, keywords in extra.items():
            schema["properties"][name].update(keywords)

    return update


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
    """Body of every error answer of the API routes."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorKind = Field(description="the error kind (README, API: the error table)")
    detail: str = Field(description="what is wrong, naming the field and the limit, and what to do")
