"""A model package: one folder that training writes and every later step reads.

It holds a Hugging Face checkpoint (``config.json`` with the ``ko_sts`` score settings, the
tokenizer, ``model.safetensors`` unless the package is ONNX-only), ``onnx/`` exports,
``metadata.json`` (metrics, hyperparameters, data hashes, versions) and ``report/``. The same
folder is what the BentoML model store keeps and what ``models/default/`` ships.
"""

from __future__ import annotations

import json
from pathlib import Path

METADATA_FILE = "metadata.json"
REPORT_DIR = "report"


def has_torch_weights(package_dir: str | Path) -> bool:
    """Whether the package holds PyTorch weights (ONNX-only packages, like the default, do not)."""
    folder = Path(package_dir)
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def read_metadata(package_dir: str | Path) -> dict:
    """Reads a package's ``metadata.json``."""
    path = Path(package_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {package_dir} is not a ko-sts model package")
    return json.loads(path.read_text(encoding="utf-8"))


def write_metadata(package_dir: str | Path, metadata: dict) -> None:
    """Writes ``metadata.json`` into a package."""
    text = json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    (Path(package_dir) / METADATA_FILE).write_text(text, encoding="utf-8")


def base_model_name(metadata: dict) -> str:
    """The base encoder's public name (a hub id users can look up), else where training found it."""
    return metadata.get("base_model_name") or metadata["base_model"]


def metrics_by_runtime(metadata: dict) -> dict[str, dict[str, dict[str, float]]]:
    """Evaluation metrics keyed by runtime: ``pytorch`` (training) and, once exported, ``onnx_fp32``/``onnx_int8``."""
    exported = metadata.get("onnx", {})
    return {"pytorch": metadata["metrics"], **{k: exported[k] for k in ("onnx_fp32", "onnx_int8") if k in exported}}
