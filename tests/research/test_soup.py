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
