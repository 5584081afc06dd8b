"""Weight soups (research.soup): the element-wise mean of several runs' weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from research.soup import average_weights


def test_weight_average_is_elementwise_mean(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, value in ((first, 1.0), (second, 3.0)):
        folder.mkdir()
        save_file({"w": torch.full((2, 2), value, dtype=torch.float16)}, str(folder / "model.safetensors"))
    averaged = average_weights([first, second])
    assert averaged["w"].dtype == torch.float16 and torch.all(averaged["w"] == 2.0)
    save_file({"other": torch.zeros(1)}, str(second / "model.safetensors"))
    with pytest.raises(ValueError, match="not the same architecture"):
        average_weights([first, second])
    assert load_file(first / "model.safetensors")["w"][0, 0] == 1.0


def _copy_with(package, folder, recorded: float, noise: float):
    """A copy of ``package`` whose weights have Gaussian noise of scale ``noise`` and whose recorded score is given."""
    import shutil

    from models.package import read_metadata, write_metadata

    shutil.copytree(package, folder, ignore=shutil.ignore_patterns("onnx"))
    generator = torch.Generator().manual_seed(0)
    weights = {
        name: t + noise * torch.randn(t.shape, generator=generator) if t.is_floating_point() else t
        for name, t in load_file(folder / "model.safetensors").items()
    }
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    metadata = read_metadata(folder)
    metadata["selection"] = {**metadata.get("selection", {}), "score": recorded}
    metadata.pop("onnx", None)
    write_metadata(folder, metadata)
    return folder


def test_the_greedy_soup_leaves_out_a_run_that_lowers_validation(trained_package, tmp_path):
    from research.soup import make_soup

    best = _copy_with(trained_package, tmp_path / "best", recorded=0.9, noise=0.0)
    twin = _copy_with(trained_package, tmp_path / "twin", recorded=0.8, noise=0.0)  # averaging with it changes nothing
    broken = _copy_with(trained_package, tmp_path / "broken", recorded=0.85, noise=1.0)  # its average scores lower
    metadata = make_soup(tmp_path / "soup", [broken, twin, best], device="cpu", greedy=True)
    tried = metadata["soup"]["greedy"]
    assert [t["package"] for t in tried] == [str(best), str(broken), str(twin)]  # best first by recorded score
    assert [t["kept"] for t in tried] == [True, False, True]
    assert tried[1]["selection"] < tried[0]["selection"] == tried[2]["selection"]
    assert metadata["soup"]["components"] == [str(best), str(twin)]
    for name, tensor in load_file(best / "model.safetensors").items():
        assert torch.equal(load_file(tmp_path / "soup" / "model.safetensors")[name], tensor), name
    assert not (tmp_path / "soup.scratch").exists()


def test_a_greedy_soup_that_keeps_the_best_run_alone_writes_that_run(trained_package, tmp_path):
    from research.soup import make_soup

    best = _copy_with(trained_package, tmp_path / "best", recorded=0.9, noise=0.0)
    broken = _copy_with(trained_package, tmp_path / "broken", recorded=0.85, noise=1.0)
    metadata = make_soup(tmp_path / "soup", [broken, best], device="cpu", greedy=True)
    assert [t["kept"] for t in metadata["soup"]["greedy"]] == [True, False]
    assert metadata["soup"]["components"] == [str(best)] and metadata["soup"]["kept"] == f"component {best}"
    assert "soup" not in metadata["soup"]["candidates"]
    for name, tensor in load_file(best / "model.safetensors").items():
        assert torch.equal(load_file(tmp_path / "soup" / "model.safetensors")[name], tensor), name
