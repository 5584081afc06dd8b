"""Runtimes and the scorer over the tiny fine-tuned package: agreement, order, batching, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.backends import ONNX_FP32, ONNX_INT8, load_runtime
from models.scorer import BatchLimits, load_scorer, plan_passes
from tests.conftest import DEFAULT_PACKAGE, KLUE_DEV
from training.data import read_pairs

PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(80).itertuples()]


@pytest.fixture(scope="module")
def torch_scorer(trained_package):
    return load_scorer(trained_package, "torch", device="cpu", limits=BatchLimits(max_batch_tokens=512))


def test_onnx_float32_matches_pytorch(trained_package, torch_scorer):
    onnx = load_scorer(trained_package, "onnx", device="cpu", onnx_file=ONNX_FP32)
    assert np.max(np.abs(onnx.score(PAIRS) - torch_scorer.score(PAIRS))) < 1e-4


def test_onnx_int8_is_the_cpu_default_and_stays_close_to_pytorch(trained_package, torch_scorer):
    int8 = load_scorer(trained_package, "onnx", device="cpu")
    assert int8.runtime.path.name == ONNX_INT8
    assert np.max(np.abs(int8.score(PAIRS) - torch_scorer.score(PAIRS))) < 0.1


@pytest.mark.parametrize("onnx_file", [ONNX_INT8, ONNX_FP32])
def test_a_pairs_score_does_not_depend_on_its_batch_mates(trained_package, onnx_file):
    batched = load_scorer(trained_package, "onnx", device="cpu", onnx_file=onnx_file)
    alone = [batched.score([pair])[0] for pair in PAIRS[:16]]
    assert np.max(np.abs(batched.score(PAIRS)[:16] - alone)) <= 1e-4


def test_a_row_alone_is_computed_as_in_a_batch():
    """A one-row pass runs beside a copy of its row: MLAS's one-row kernel rounds otherwise (4e-5 on the default)."""
    scorer = load_scorer(DEFAULT_PACKAGE, "onnx", device="cpu")
    rows = scorer.encode(PAIRS[:24])
    together = scorer.forward(rows)
    alone = np.array([scorer.forward(rows[i : i + 1])[0] for i in range(len(rows))])
    assert np.array_equal(alone, together)


def test_scores_keep_request_order_whatever_the_passes(torch_scorer):
    together = torch_scorer.score(PAIRS)
    one_by_one = np.array([torch_scorer.score([pair])[0] for pair in PAIRS[:10]])
    assert together[:10] == pytest.approx(one_by_one, abs=1e-5)
    reversed_order = torch_scorer.score(PAIRS[::-1])[::-1]
    assert together == pytest.approx(reversed_order, abs=1e-5)
    assert torch_scorer.score([]).shape == (0,)
    assert ((together >= 0) & (together <= 5)).all()


def test_passes_are_cut_by_padded_tokens_and_rows():
    lengths = np.array([10, 50, 12, 11, 49, 200, 9])
    limits = BatchLimits(max_batch_tokens=100, max_batch_rows=3, length_bucket=1, mixed_lengths=True)
    passes = plan_passes(lengths, limits)
    assert sorted(np.concatenate(passes).tolist()) == list(range(7))
    for indices in passes:
        assert len(indices) <= 3
        assert len(indices) == 1 or len(indices) * lengths[indices].max() <= 100
    assert [lengths[p].tolist() for p in passes] == [[9, 10, 11], [12, 49], [50], [200]]


def test_rows_share_a_pass_only_with_rows_of_the_same_padded_length():
    limits = BatchLimits(max_batch_tokens=1000, max_batch_rows=8, length_bucket=16)
    lengths = np.array([17, 30, 15, 32, 33, 1])
    passes = plan_passes(lengths, limits)
    assert [lengths[p].tolist() for p in passes] == [[1, 15], [17, 30, 32], [33]]
    assert [limits.padded(n) for n in (1, 16, 17, 33)] == [16, 16, 32, 48]


def test_symmetric_scoring_averages_both_orders_in_the_same_passes(trained_package, tmp_path):
    swapped = [(b, a) for a, b in PAIRS[:5]]
    symmetric = load_scorer(trained_package, "onnx", device="cpu", onnx_file=ONNX_FP32)
    assert symmetric.settings.symmetric and symmetric.rows_per_pair == 2
    rows = symmetric.encode(PAIRS[:5])
    assert len(rows) == 10 and rows[5:6].ids.tolist() == symmetric.encode(swapped)[0:1].ids.tolist()
    assert symmetric.score(PAIRS[:5]) == pytest.approx(symmetric.score(swapped), abs=1e-6)
    one_way = shutil.copytree(trained_package, tmp_path / "one-way")
    config = json.loads((one_way / "config.json").read_text())
    config["ko_sts"]["symmetry"] = "none"
    (one_way / "config.json").write_text(json.dumps(config))
    scorer = load_scorer(one_way, "onnx", device="cpu", onnx_file=ONNX_FP32)
    assert not scorer.settings.symmetric and len(scorer.encode(PAIRS[:5])) == 5
    assert np.max(np.abs(scorer.score(PAIRS[:5]) - scorer.score(swapped))) > 1e-4


def test_canonical_scoring_runs_one_row_per_pair_and_ignores_the_order(trained_package):
    swapped = [(b, a) for a, b in PAIRS[:5]]
    canonical = load_scorer(trained_package, "onnx", device="cpu", symmetry="canonical")
    assert canonical.settings.symmetric and canonical.rows_per_pair == 1
    rows = canonical.encode(PAIRS[:5])
    assert len(rows) == 5 and rows.ids.tolist() == canonical.encode(swapped).ids.tolist()
    assert canonical.score(PAIRS[:5]).tolist() == canonical.score(swapped).tolist()  # identical, not just close
    first, second = sorted(PAIRS[0], key=lambda sentence: (len(sentence), sentence))
    assert rows[0:1].ids.tolist() == canonical.tokenizer.encode([first], [second]).ids.tolist()
    assert canonical.truncated(rows).shape == (5,)


def test_truncation_is_reported_per_pair(trained_package):
    scorer = load_scorer(trained_package, "onnx", device="cpu")
    long = " ".join(["숙소가 아주 깨끗하고 위치가 좋아요"] * 40)
    rows = scorer.encode([PAIRS[0], (long, "짧은 문장")])
    assert scorer.truncated(rows).tolist() == [False, True]
    assert rows.lengths.max() == scorer.settings.max_length


def test_unknown_backend_and_missing_files_say_what_to_do(trained_package, tmp_path):
    with pytest.raises(ValueError, match="choose one of: onnx, openvino, torch"):
        load_runtime(trained_package, "tensorrt")
    onnx_only = shutil.copytree(trained_package, tmp_path / "onnx-only", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(FileNotFoundError, match="KO_STS_BACKEND=onnx"):
        load_runtime(onnx_only, "torch")
    torch_only = shutil.copytree(trained_package, tmp_path / "torch-only", ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(FileNotFoundError, match="python -m training.export"):
        load_runtime(torch_only, "onnx")
