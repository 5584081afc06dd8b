"""Model packages in the BentoML model store."""

from __future__ import annotations

import shutil

import bentoml

from models.package import read_metadata
from models.store import MODEL_NAME, package_version, save_package


def test_saving_is_idempotent_and_keeps_the_package(trained_package):
    first = save_package(trained_package)
    again = save_package(trained_package)
    assert first.tag == again.tag and first.tag.name == MODEL_NAME
    stored = bentoml.models.get(first.tag)
    assert read_metadata(stored.path)["metrics"] == read_metadata(trained_package)["metrics"]
    assert stored.info.labels["backends"] == "onnx,torch"
    assert stored.info.metadata["versions"]["bentoml"] == bentoml.__version__
    assert "label_column" not in stored.info.metadata["hyperparameters"]  # None values cannot be stored


def test_changed_package_gets_a_new_version_that_becomes_latest(trained_package, tmp_path):
    changed = shutil.copytree(trained_package, tmp_path / "changed")
    (changed / "report" / "note.txt").write_text("retrained")
    assert package_version(changed) != package_version(trained_package)
    new = save_package(changed)
    assert bentoml.models.get(f"{MODEL_NAME}:latest").tag == new.tag
