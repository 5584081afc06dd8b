"""`bentoml serve` with the model in a process of its own (as on a GPU), on the tiny model's PyTorch weights on CPU.

The fronts reach the model process over the link; these tests kill processes for real: a
killed model process is restarted by ``bentoml serve``, the fronts answer 503 with
``Retry-After`` meanwhile (never 500) and stay alive, and score again once it is back.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.live_service import serve

pytestmark = pytest.mark.slow
PAIRS = {"pairs": [{"sentence1": "오늘 날씨 좋다", "sentence2": "날씨가 맑네요"}]}
SEPARATE = {
    "KO_STS_BACKEND": "torch",
    "KO_STS_DEVICE": "cpu",
    "KO_STS_MODEL_PROCESS": "separate",
    "KO_STS_WORKERS": "2",
}


def _model_processes(root: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(root).children(recursive=True):
        try:
            line = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--service-name" in line and line[line.index("--service-name") + 1] == "ScoringModel":
            found.append(child)
    return found


@pytest.fixture(scope="module")
def separate(trained_package, tmp_path_factory):
    from models.store import save_package

    tag = str(save_package(trained_package).tag)
    log = tmp_path_factory.mktemp("separate") / "serve.log"
    with serve(tag, log, SEPARATE) as server:
        yield server


def test_the_fronts_score_through_the_model_process_and_say_where_it_runs(separate):
    response = separate.http.post("/score", json=PAIRS)
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()[0]["score"] <= 5.0
    info = separate.http.post("/model_info", json={}).json()
    assert info["backend"] == "torch" and info["device"] == "cpu"
    assert len(_model_processes(separate.process.pid)) == 1
    assert "link: connected to the model process" in separate.log_text()


def test_a_killed_model_process_is_restarted_and_the_fronts_answer_503_meanwhile(separate):
    (model,) = _model_processes(separate.process.pid)
    os.kill(model.pid, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        response = separate.http.post("/score", json=PAIRS)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.headers["Retry-After"] and response.json()["error"] == "unavailable"
            assert separate.http.get("/livez").status_code == 200  # a restart in progress is not death
        elif response.status_code == 200 and 503 in statuses:
            break
        time.sleep(0.05)
    assert set(statuses) <= {200, 503} and 503 in statuses and statuses[-1] == 200, statuses[-20:]
    (restarted,) = _model_processes(separate.process.pid)
    assert restarted.pid != model.pid
    assert separate.http.get("/readyz").status_code == 200
