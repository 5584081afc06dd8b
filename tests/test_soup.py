"""training.soup: runs of one recipe averaged, each kept only if validation does not fall."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_CONFIG
from training.soup import main as soup_main
from training.train import main as train_main
from training.train import mean_weights


def _recipe(base, output_dir, seed: int, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY_CONFIG),
        "--model_name_or_path",
        str(base),
        "--output_dir",
        str(output_dir),
        "--seed",
        str(seed),
        "--data_seed",
        str(seed),
        "--max_train_samples",
        "300",
        "--num_train_epochs",
        "1",
        "--symmetric",
        "true",
        "--symmetry",
        "canonical",
        "--save_to_store",
        "false",
        "--export_onnx",
        "false",
        "--disable_tqdm",
        "true",
        *extra,
    ]


@pytest.fixture(scope="module")
def three_runs(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("soup-runs")
    runs = [root / f"run-s{seed}" for seed in (1, 2, 3)]
    for seed, run in zip((1, 2, 3), runs):
        train_main(_recipe(tiny_base, run, seed))
    return runs


def _selection(run) -> float:
    return json.loads((run / "run.json").read_text())["selection"]


def test_the_soup_averages_the_kept_runs_and_never_scores_below_the_best_one(three_runs, tiny_base, tmp_path):
    package = soup_main(["--runs", *map(str, three_runs), *_recipe(tiny_base, tmp_path / "soup", 1)])
    metadata = json.loads((package / "metadata.json").read_text())
    soup = metadata["soup"]
    best = max(three_runs, key=_selection)
    assert [t["run"] for t in soup["tried"]][0] == best.name and soup["tried"][0]["kept"]
    assert len(soup["tried"]) == 3 and soup["ingredients"] == [t["run"] for t in soup["tried"] if t["kept"]]
    assert soup["best_single"] == pytest.approx(_selection(best))
    # greedy: an ingredient stays only if the score does not fall, so the soup is at least the best run
    assert metadata["selection"]["score"] >= _selection(best) - 1e-6
    assert metadata["selection"]["score"] == pytest.approx(soup["greedy_selection"], abs=1e-6)
    expected = mean_weights(
        [load_file(r / "model" / "model.safetensors") for r in three_runs if r.name in soup["ingredients"]]
    )
    saved = load_file(package / "model.safetensors")
    assert saved.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert "a soup" in (package / "report" / "README.md").read_text()


def test_a_run_of_another_recipe_is_refused_by_name(three_runs, tiny_base, tmp_path):
    with pytest.raises(SystemExit, match="learning_rate"):
        soup_main(
            ["--runs", *map(str, three_runs), *_recipe(tiny_base, tmp_path / "soup", 1, "--learning_rate", "5e-4")]
        )


def test_one_run_is_not_a_soup(three_runs, tiny_base, tmp_path):
    with pytest.raises(SystemExit, match="2 or more runs"):
        soup_main(["--runs", str(three_runs[0]), *_recipe(tiny_base, tmp_path / "soup", 1)])
