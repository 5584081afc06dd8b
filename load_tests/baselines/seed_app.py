"""The seed project's serving design, kept as the benchmark's baseline (server b): not for production.

    SEED_MODEL_DIR=PACKAGE uvicorn load_tests.baselines.seed_app:app --port 8000

A plain FastAPI app: the Hugging Face checkpoint loaded with ``AutoModelForSequenceClassification``
and ``AutoTokenizer``, and for every request one tokenizer call and one eager PyTorch forward
over that request's pairs alone (no batching across requests, no length bucketing, no ONNX).
The endpoint is a plain ``def``, so FastAPI runs concurrent requests on its thread pool and
their forwards contend for the same cores, as in the seed.

It speaks this service's API (``POST /score`` with ``{"pairs": [{"sentence1", "sentence2"}]}``,
a list of ``{"score", "similar"}`` back), so the same load drives both. Settings:

- ``SEED_MODEL_DIR``: a model package with PyTorch weights (``model.safetensors``).
- ``SEED_DEVICE``: ``cpu`` (default), ``cuda`` or ``auto`` (CUDA when PyTorch sees a GPU).
- ``SEED_DTYPE``: ``float32`` (default: the seed ran plain fp32 eager) or ``float16`` (CUDA).
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import models.cross_encoder  # noqa: F401  (registers the mean-pooling head; the seed had only the cls head)
from models.scoring import SIMILAR_THRESHOLD, ScoreSettings

MODEL_DIR = os.environ["SEED_MODEL_DIR"]
DEVICE = os.environ.get("SEED_DEVICE", "cpu")
if DEVICE == "auto":
    DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = getattr(torch, os.environ.get("SEED_DTYPE", "float32"))

settings = ScoreSettings.from_model_dir(MODEL_DIR)
tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
model = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR, dtype=DTYPE).to(DEVICE).eval()

app = FastAPI(title="ko-sts seed baseline")


class SentencePair(BaseModel):
    sentence1: str
    sentence2: str


class ScoreRequest(BaseModel):
    pairs: list[SentencePair]


class PairScore(BaseModel):
    score: float
    similar: bool


@app.get("/readyz")
def ready() -> dict:
    """The model is loaded at import, so the app is ready once uvicorn serves."""
    return {"ready": True}


@app.post("/score")
def score(request: ScoreRequest) -> list[PairScore]:
    """One forward pass over this request's pairs."""
    inputs = tokenizer(
        [p.sentence1 for p in request.pairs],
        [p.sentence2 for p in request.pairs],
        padding=True,
        truncation=True,
        max_length=settings.max_length,
        return_tensors="pt",
    ).to(DEVICE)
    with torch.no_grad():
        logits = model(**inputs).logits.float().cpu().numpy()
    # The seed scored one sentence order only; a symmetric model's served score (the mean over
    # both orders) therefore differs slightly from this one, at half the compute.
    scores = settings.to_scores(logits)
    return [PairScore(score=float(s), similar=bool(s >= SIMILAR_THRESHOLD)) for s in scores]
