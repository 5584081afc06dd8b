"""Saving model packages into the BentoML model store.

    python -m models.store PACKAGE_DIR [--name ko-sts]

The version is derived from the package's content, so saving the same package twice is a
no-op: ``make serve`` uses this to import ``models/default`` only when it is absent. The
package folder is copied as it is; its ``metadata.json`` becomes the store entry's metadata
(``bentoml models get ko-sts:<version>`` shows it). A package without PyTorch weights (the
shipped default) gets them rebuilt from its int8 export in the stored copy, so that it also
serves on a GPU (:mod:`models.weights`; ``--no-torch-weights`` skips this, e.g. for a CPU-only image).

Every stored copy gets ``manifest.json``: the size and SHA-256 of each of its files, written once
the copy is complete. :func:`verify_manifest` checks a stored copy against it (the service does
at start-up), so a truncated, changed or missing file is found before anything is served.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from models.backends import ONNX_INT8, ONNX_SUBDIR
from models.package import PackageError, file_sha256, has_torch_weights, read_metadata

logger = logging.getLogger("models.store")

MODEL_NAME = "ko-sts"
DEFAULT_PACKAGE = Path(__file__).parent / "default"
MANIFEST_FILE = "manifest.json"
BENTOML_FILES = frozenset({"model.yaml"})  # written and rewritten by BentoML itself, not part of the package


def _package_files(model_dir: Path) -> list[Path]:
    skipped = BENTOML_FILES | {MANIFEST_FILE}
    return sorted(p for p in model_dir.rglob("*") if p.is_file() and p.relative_to(model_dir).as_posix() not in skipped)


def write_manifest(model_dir: str | Path) -> Path:
    """Writes ``manifest.json``: every file's size and SHA-256 (BentoML's ``model.yaml`` aside)."""
    model_dir = Path(model_dir)
    files = {
        path.relative_to(model_dir).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in _package_files(model_dir)
    }
    target = model_dir / MANIFEST_FILE
    target.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n", encoding="utf-8")
    return target


def verify_manifest(model_dir: str | Path) -> bool:
    """Checks every file listed in ``manifest.json``: present, same size, same SHA-256.

    Returns False when the copy has no manifest (stored before manifests existed); files that
    are not listed are ignored.

    Raises:
        PackageError: naming the first file that is missing, truncated or changed.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        return False
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError) as error:
        raise PackageError(f"{path} cannot be read ({error})") from None
    for name, expected in files.items():
        target = model_dir / name
        if not target.is_file():
            raise PackageError(f"{target} is missing (listed in {MANIFEST_FILE})")
        size = target.stat().st_size
        if size != expected["bytes"]:
            raise PackageError(f"{target} has {size} bytes, {expected['bytes']} when it was stored (truncated?)")
        if file_sha256(target) != expected["sha256"]:
            raise PackageError(f"{target}: SHA-256 differs from the one recorded when it was stored")
    return True


def package_version(package_dir: Path) -> str:
    """A short content hash of every file in the package (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _without_none(value):
    """BentoML metadata takes no None; metadata.json in the package keeps the full record."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def save_package(package_dir: str | Path, name: str = MODEL_NAME, torch_weights: bool = True) -> bentoml.Model:
    """Copies a model package into the store under ``name``; returns the (new or existing) entry.

    Args:
        package_dir: the model package.
        name: the model's name in the store.
        torch_weights: rebuild PyTorch weights from the int8 export when the package has none.
    """
    package_dir = Path(package_dir)
    metadata = read_metadata(package_dir)
    int8 = package_dir / ONNX_SUBDIR / ONNX_INT8
    rebuild = torch_weights and not has_torch_weights(package_dir) and int8.is_file()
    version = package_version(package_dir)
    if not torch_weights and not has_torch_weights(package_dir):
        version += "-onnx"  # the same package stored without rebuilt PyTorch weights is another entry
    tag = bentoml.Tag(name, version)
    try:
        existing = bentoml.models.get(tag)
        logger.info("%s is already in the model store (%s)", tag, existing.path)
        return existing
    except NotFound:
        pass
    labels = {
        "base_model": Path(metadata["base_model"]).name,
        "backends": "onnx,torch" if has_torch_weights(package_dir) or rebuild else "onnx",
    }
    metadata = {**metadata, "versions": {**metadata.get("versions", {}), "bentoml": bentoml.__version__}}
    with bentoml.models.create(tag, labels=labels, metadata=_without_none(metadata)) as model:
        shutil.copytree(package_dir, model.path, dirs_exist_ok=True)
        if rebuild:
            from models.weights import write_torch_weights

            write_torch_weights(model.path, int8)
        write_manifest(model.path)
    stored = bentoml.models.get(tag)  # ``model.path`` was a staging folder, gone once the entry is saved
    logger.info("saved %s to the model store (%s)", stored.tag, stored.path)
    return stored


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description="Save a ko-sts model package into the BentoML model store.")
    parser.add_argument(
        "package_dir",
        type=Path,
        nargs="?",
        default=DEFAULT_PACKAGE,
        help="package folder (default: the shipped models/default)",
    )
    parser.add_argument("--name", default=MODEL_NAME, help=f"model name in the store (default {MODEL_NAME})")
    parser.add_argument(
        "--no-torch-weights",
        dest="torch_weights",
        action="store_false",
        help="do not rebuild PyTorch weights from the int8 export (CPU/ONNX-only deployments)",
    )
    args = parser.parse_args(argv)
    print(save_package(args.package_dir, args.name, args.torch_weights).tag)


if __name__ == "__main__":
    main()
