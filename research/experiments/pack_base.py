"""Pack a trained encoder (e.g. the healed base) small enough to travel to the GPU machine, and unpack it there.

    python research/experiments/pack_base.py pack MODEL_DIR OUT.npz      # where it was trained
    python research/experiments/pack_base.py unpack OUT.npz MODEL_DIR    # in the next GPU call

A GPU call carries at most 64 MiB and the healed me5-small-ko is 55 MB in float16, too much beside
the wheels and the checkout; healing again costs 2.4-2.9 minutes of every call (round 4). Packed,
every 2-D float tensor of at least ``MIN_ROWS`` rows is int8 with one float32 scale per row
(symmetric absmax: ``w = q * scale``, error at most ``scale / 2`` per weight, about 1/16 of the 4-bit
rounding the base came from); everything else (biases, LayerNorm, small tables) stays float32.
The config and tokenizer files beside the weights are stored too. Needs numpy and safetensors only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

MIN_ROWS = 64
SIDECARS = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "heal.json")


def pack(model_dir: Path, out: Path) -> dict[str, int]:
    """Writes ``out`` (npz, no pickle); returns how many tensors went to int8 and how many stayed float32."""
    arrays: dict[str, np.ndarray] = {}
    counts = {"int8": 0, "float32": 0}
    for name, weight in load_file(model_dir / "model.safetensors").items():
        weight = weight.astype(np.float32)
        if weight.ndim == 2 and weight.shape[0] >= MIN_ROWS:
            scale = np.abs(weight).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            arrays[f"{name}.q"] = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
            arrays[f"{name}.scale"] = scale.astype(np.float32)
            counts["int8"] += 1
        else:
            arrays[name] = weight
            counts["float32"] += 1
    sidecars = {f: (model_dir / f).read_text(encoding="utf-8") for f in SIDECARS if (model_dir / f).is_file()}
    arrays["__sidecars__"] = np.frombuffer(json.dumps(sidecars).encode(), dtype=np.uint8)
    np.savez_compressed(out, **arrays)
    return counts


def unpack(packed: Path, model_dir: Path) -> int:
    """Writes ``model_dir`` (float32 safetensors and the stored sidecar files); returns the tensor count."""
    data = np.load(packed, allow_pickle=False)
    tensors = {}
    for key in data.files:
        if key == "__sidecars__" or key.endswith(".scale"):
            continue
        if key.endswith(".q"):
            name = key[: -len(".q")]
            tensors[name] = data[key].astype(np.float32) * data[f"{name}.scale"]
        else:
            tensors[key] = data[key]
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, model_dir / "model.safetensors", metadata={"format": "pt"})
    for name, text in json.loads(data["__sidecars__"].tobytes().decode()).items():
        (model_dir / name).write_text(text, encoding="utf-8")
    return len(tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.action == "pack":
        counts = pack(args.source, args.target)
        print(f"{args.target}: {args.target.stat().st_size / 1e6:.1f} MB; {counts}")
    else:
        print(f"{args.target}: {unpack(args.source, args.target)} tensors, float32")


if __name__ == "__main__":
    main()
