"""A model package: one folder that training writes and every later step reads.

It holds a Hugging Face checkpoint (``config.json`` with the ``ko_sts`` score settings, the
tokenizer, ``model.safetensors`` unless the package is ONNX-only), ``onnx/`` exports,
``metadata.json`` (metrics, hyperparameters, data hashes, versions) and ``report/``. The same
folder is what the BentoML model store keeps and what ``models/default/`` ships.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

METADATA_FILE = "metadata.json"
REPORT_DIR = "report"
TORCH_REFERENCE = "torch"  # the key of PyTorch's reference scores (ONNX files are keyed by file name)


class PackageError(ValueError):
    """A model package that cannot be served as it is; the message names the file and the fix."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def check_package(package_dir: str | Path) -> None:
    """Checks that a package has what every backend reads: metadata, score settings and a tokenizer that loads.

    Raises:
        PackageError: naming the file that is missing or unreadable.
    """
    from tokenizers import Tokenizer

    from models.pairs import TOKENIZER_FILE
    from models.scoring import CONFIG_FILE, ScoreSettings

    folder = Path(package_dir)
    for name in (METADATA_FILE, CONFIG_FILE, TOKENIZER_FILE):
        if not (folder / name).is_file():
            raise PackageError(f"{folder / name} is missing")
    try:
        read_metadata(folder)
    except ValueError as error:
        raise PackageError(f"{folder / METADATA_FILE} cannot be read ({error})") from None
    try:
        ScoreSettings.from_model_dir(folder)  # ScoreSettingsError is a ValueError
    except ValueError as error:
        raise PackageError(f"{folder / CONFIG_FILE}: {error}") from None
    try:
        Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as error:  # the tokenizers library raises plain Exceptions
        raise PackageError(f"{folder / TOKENIZER_FILE} cannot be read ({error})") from None


def reference_scores(metadata: dict, runtime_file: str) -> tuple[list[tuple[str, str]], list[float]] | None:
    """Pairs and the scores export recorded for ``runtime_file`` (``model.onnx``, ``torch``, ...), or None.

    ``training.export`` stores them under ``onnx.reference``; the service compares its own scores
    of the same pairs with them before it serves (the parity guard).
    """
    reference = metadata.get("onnx", {}).get("reference") or {}
    scores = reference.get("scores", {}).get(runtime_file)
    if not scores:
        return None
    return [(first, second) for first, second in reference["pairs"]], scores


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
