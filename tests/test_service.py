"""The BentoML service, started with `bentoml serve` and called over HTTP."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from models.scorer import load_scorer
from models.store import package_version, save_package
from tests.conftest import DEFAULT_PACKAGE, KLUE_DEV
from tests.live_service import serve
from training.data import read_pairs

pytestmark = pytest.mark.slow
DEV = read_pairs(KLUE_DEV)
PAIRS = [{"sentence1": r.sentence1, "sentence2": r.sentence2} for r in DEV.head(64).itertuples()]


@pytest.fixture(scope="module", params=["tiny", "default"])
def served(request, tmp_path_factory):
    """A `bentoml serve` process on the tiny fine-tuned package or on the shipped default."""
    package = request.getfixturevalue("trained_package") if request.param == "tiny" else DEFAULT_PACKAGE
    tag = save_package(package).tag  # what `make serve` does for models/default
    assert tag.version == package_version(package)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # these tests check answers, not overload: on a slow shared CI machine, 32 concurrent requests can
    # exceed the CPU's default queue bound (48 pairs) or timeout (2 s), which would answer 429 or 503 by design
    env = {"KO_STS_BACKEND": "onnx", "KO_STS_QUEUE_TIMEOUT_MS": "60000"}
    with serve(str(tag), log, env) as server:
        yield server.http, package, str(tag)


def test_scores_come_back_in_order_and_match_the_model(served):
    client, package, _ = served
    response = client.post("/score", json={"pairs": PAIRS})
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == len(PAIRS)
    expected = load_scorer(package, "onnx", device="cpu").score([(p["sentence1"], p["sentence2"]) for p in PAIRS])
    scores = np.array([r["score"] for r in results])
    assert scores == pytest.approx(expected, abs=1e-4)
    assert all(r["similar"] == (r["score"] >= 3.0) for r in results)
    assert all(0.0 <= r["score"] <= 5.0 for r in results)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answers(served):
    client, _, _ = served
    before = _batch_count(client)
    requests = [PAIRS[i : i + 4] for i in range(0, 64, 4)] * 2
    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(lambda pairs: client.post("/score", json={"pairs": pairs}), requests))
    single = {
        (p["sentence1"], p["sentence2"]): r["score"]
        for p, r in zip(PAIRS, client.post("/score", json={"pairs": PAIRS}).json())
    }
    for pairs, response in zip(requests, responses):
        assert response.status_code == 200
        got = [r["score"] for r in response.json()]
        # length buckets: a pair is computed on the same shape whatever its batch-mates
        assert got == pytest.approx([single[(p["sentence1"], p["sentence2"])] for p in pairs], abs=1e-6)
    batches = _batch_count(client) - before - 1
    assert 1 <= batches < len(requests), "the engine merged no requests"


def _batch_count(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(v) for v in re.findall(r"^ko_sts_batch_size_count(?:\{[^}]*\})? (\S+)", text, flags=re.MULTILINE))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pairs": []}, "pairs"),
        ({}, "pairs"),
        ({"pairs": [{"sentence2": "나"}]}, "sentence1"),
        ({"pairs": [{"sentence1": 3, "sentence2": "나"}]}, "sentence1"),
        ({"pairs": [{"sentence1": "가", "sentence2": ""}]}, "sentence2"),
        ({"pairs": [{"sentence1": "가", "sentence2": "   "}]}, "sentence2"),
        ({"pairs": "가"}, "pairs"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(served, body, field):
    client, _, _ = served
    response = client.post("/score", json=body)
    assert 400 <= response.status_code < 500
    assert field in response.text


def test_health_metrics_and_model_info(served):
    client, package, tag = served
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert 'endpoint="/score"' in client.get("/metrics").text
    response = client.post("/model_info")
    info = response.json()
    assert response.headers["x-ko-sts-model"] == tag
    assert info["tag"] == tag and info["backend"] == "onnx" and info["device"] == "cpu"
    if package == DEFAULT_PACKAGE:  # a name users can look up, not a path on the machine that trained it
        assert info["base_model"].startswith("intfloat/multilingual-e5-small")
    assert "validation" in info["metrics"]["pytorch"] and "dev" in info["metrics"]["onnx_int8"]
