"""The PyTorch runtime and the engine on a CUDA GPU: CUDA graphs, passes that never wait, out of memory.

Marked ``gpu``: deselected by default (CI has no GPU); on a GPU machine run ``pytest -m gpu``.
They fail, not skip, where PyTorch sees no GPU. The subject is a random KoELECTRA-base package
(:mod:`load_tests.subjects`): the shape the service is measured with.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from models.backends import cuda_graph_shapes
from models.scorer import BatchLimits, load_scorer
from serving.engine import EngineSettings, ScoringEngine
from serving.errors import Unavailable
from tests.conftest import DEFAULT_PACKAGE, KLUE_DEV
from training.data import read_pairs

pytestmark = pytest.mark.gpu
PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).itertuples()]
LIMITS = BatchLimits(max_batch_tokens=32768, length_bucket=8, mixed_lengths=True)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    import torch

    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA GPU that PyTorch sees (run them on the GPU machine: pytest -m gpu)")
    from load_tests.subjects import build_subject

    return build_subject("koelectra-base", tmp_path_factory.mktemp("subject"))


@pytest.fixture(scope="module")
def cuda_scorer(subject):
    scorer = load_scorer(subject, "torch", device="cuda", limits=LIMITS)
    shapes = cuda_graph_shapes(int(LIMITS.padded(scorer.settings.max_length)), LIMITS.max_batch_rows, 16384)
    scorer.runtime.capture_graphs(shapes, scorer.tokenizer.pad_id)
    return scorer


def test_graph_replays_compute_what_eager_passes_compute(subject, cuda_scorer):
    eager = load_scorer(subject, "torch", device="cuda", limits=LIMITS)
    assert cuda_scorer.runtime.graphs and not eager.runtime.graphs
    for size in (1, 2, 5, 37, 64, 200, 519):  # graph shapes with padding rows, and beyond the largest graph
        pairs = PAIRS[:size]
        graphed, reference = cuda_scorer.score(pairs), eager.score(pairs)
        assert np.max(np.abs(graphed - reference)) < 0.02, size


def test_the_file_commands_planned_graphs_are_captured_as_passes_need_them_and_score_what_eager_passes_score(subject):
    import torch

    from models.scorer import load_served_scorer, plan_pass_graphs

    graphed = load_served_scorer(subject, "torch", device="cuda")  # as ko-sts score builds it, 32k-token passes
    eager = load_served_scorer(subject, "torch", device="cuda")
    assert plan_pass_graphs(graphed) == 16 and not graphed.runtime.graphs  # widths 8 to 128, none captured yet
    pairs = PAIRS * 8  # 4,152 pairs: full passes of several widths, and short ones at their ends
    rows, reference = graphed.encode(pairs), eager.forward(eager.encode(pairs))
    torch.cuda.set_sync_debug_mode("error")  # capturing mid-run must not wait for the passes in flight
    try:
        first, second = graphed.forward(rows), graphed.forward(rows)  # a width's first full pass is eager
    finally:
        torch.cuda.set_sync_debug_mode("default")
    captured = set(graphed.runtime.graphs)
    assert captured and len(captured) < 16  # the widths this file's full passes have, not all 16
    assert max(np.max(np.abs(first - reference)), np.max(np.abs(second - reference))) < 0.02
    assert np.max(np.abs(graphed.score(pairs) - eager.score(pairs))) < 0.02  # replays only


def test_a_compiled_model_scores_what_the_eager_one_scores_in_graphs_and_beyond(subject, cuda_scorer):
    compiled = load_scorer(subject, "torch", device="cuda", limits=LIMITS)
    compiled.runtime.compile(compiled.tokenizer.pad_id)
    compiled.runtime.capture_graphs([(1, 64), (8, 64), (64, 64)], compiled.tokenizer.pad_id)
    for size in (1, 5, 64, 519):  # in a compiled graph, with padding rows, and compiled but eager
        pairs = PAIRS[:size]
        assert np.max(np.abs(compiled.score(pairs) - cuda_scorer.score(pairs))) < 0.02, size


def served_default_dev_pearson(package, device: str, compiled: bool) -> tuple[float, float]:
    """KLUE-STS dev Pearson of the shipped default as the model process serves it on ``device`` (float16 weights
    rebuilt from its int8 file on CUDA, compiled and in CUDA graphs when ``compiled``), and its card's float32 figure.
    """
    import shutil

    from models.backends import cuda_graph_shapes
    from models.package import read_metadata
    from models.scorer import load_served_scorer
    from models.weights import write_torch_weights

    shutil.copytree(DEFAULT_PACKAGE, package, dirs_exist_ok=True)
    write_torch_weights(package, package / "onnx/model_quantized.onnx", "float16" if device == "cuda" else "float32")
    scorer = load_served_scorer(package, "torch", device=device)
    if compiled:
        scorer.runtime.compile(scorer.tokenizer.pad_id)
        width = int(scorer.limits.padded(scorer.settings.max_length))
        scorer.runtime.capture_graphs(cuda_graph_shapes(width, 64, 16384), scorer.tokenizer.pad_id)
    dev = read_pairs(KLUE_DEV)
    scores = scorer.score(list(zip(dev["sentence1"], dev["sentence2"])))
    served = float(np.corrcoef(scores, dev["label"].to_numpy())[0, 1])
    return served, read_metadata(package)["metrics"]["dev"]["pearson"]


def test_the_shipped_default_compiled_on_the_gpu_scores_its_card(tmp_path):
    served, card = served_default_dev_pearson(tmp_path / "default", "cuda", compiled=True)
    assert abs(served - card) <= 0.003, (served, card)


def test_the_gpu_scores_what_the_cpu_scores_in_float32(subject, cuda_scorer):
    cpu = load_scorer(subject, "torch", device="cpu", limits=BatchLimits(max_batch_tokens=4096))
    assert np.max(np.abs(cuda_scorer.score(PAIRS[:128]) - cpu.score(PAIRS[:128]))) < 0.05


def test_launching_a_pass_never_waits_for_the_gpu(cuda_scorer):
    import torch

    rows = cuda_scorer.encode(PAIRS[:300])
    runtime = cuda_scorer.runtime
    for count in (3, 300):  # a graph replay, then an eager pass
        batch = rows[:count]
        width = int(cuda_scorer.limits.padded(int(batch.lengths.max())))
        runtime.launch(batch, width, cuda_scorer.tokenizer.pad_id)()  # the slot's events are recorded once
        torch.cuda.set_sync_debug_mode("error")
        try:
            pending = runtime.launch(batch, width, cuda_scorer.tokenizer.pad_id)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert pending().shape == (count,)


def test_out_of_device_memory_answers_503_and_the_next_round_works(subject):
    import torch

    limits = BatchLimits(max_batch_tokens=2**22, max_batch_rows=2**16)
    scorer = load_scorer(subject, "torch", device="cuda", limits=limits)
    engine = ScoringEngine(scorer, EngineSettings(max_round_tokens=2**22))
    _, total = torch.cuda.mem_get_info()
    budget = torch.cuda.memory_reserved() + 2**30  # a GiB more than the weights: a 1M-token pass cannot fit
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total))
    try:
        huge = [(" ".join(["숙소 위치는 찾기 쉬워요"] * 20), " ".join(["환불은 언제 되나요"] * 20))] * 8192

        async def score(pairs):
            return scorer.to_scores(await engine.logits(scorer.encode(pairs), len(pairs)))

        with pytest.raises(Unavailable, match="out of device memory") as refused:
            asyncio.run(score(huge))
        assert refused.value.status.http == 503
        assert asyncio.run(score(PAIRS[:4])) == pytest.approx(scorer.score(PAIRS[:4]), abs=0.02)
        assert engine.alive
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        engine.close()


def test_the_engine_on_the_gpu_answers_every_request_with_its_own_scores(cuda_scorer):
    engine = ScoringEngine(cuda_scorer, EngineSettings())
    requests = [PAIRS[i : i + 7] for i in range(0, 350, 7)]

    async def main():
        async def one(pairs):
            return cuda_scorer.to_scores(await engine.logits(cuda_scorer.encode(pairs), len(pairs)))

        return await asyncio.gather(*(one(r) for r in requests))

    try:
        results = asyncio.run(main())
    finally:
        engine.close()
    expected = cuda_scorer.score(PAIRS[:350])
    assert np.max(np.abs(np.concatenate(results) - expected)) < 0.02
