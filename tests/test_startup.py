"""The service refuses a damaged or mismatched model before it serves, naming the file and the fix.

Unit checks on copies of a stored entry (each damage the issue names), then `bentoml serve` itself:
it must exit with status 1 and print the reason, instead of serving or restarting workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest

from models.backends import ONNX_INT8, ONNX_SUBDIR
from models.package import read_metadata, write_metadata
from models.pairs import TOKENIZER_FILE
from models.scorer import load_scorer
from models.scoring import CONFIG_FILE, CONFIG_KEY
from models.store import MANIFEST_FILE, save_package, write_manifest
from serving.startup import ModelRefused, check_parity, check_stored_model, pin_gpu
from tests.conftest import REPO
from tests.live_service import free_port

ONNX_FILE = f"{ONNX_SUBDIR}/{ONNX_INT8}"


@pytest.fixture(scope="module")
def stored(trained_package) -> Path:
    """The tiny model as the store holds it (with its manifest), without PyTorch weights rebuilt."""
    return Path(save_package(trained_package, name="ko-sts-startup-test").path)


@pytest.fixture
def entry(stored, tmp_path) -> Path:
    """A private copy of the stored entry to damage."""
    return Path(shutil.copytree(stored, tmp_path / "entry"))


def _truncate(entry: Path) -> None:
    path = entry / ONNX_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(entry: Path) -> None:
    path = entry / ONNX_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_tokenizer(entry: Path) -> None:
    (entry / TOKENIZER_FILE).unlink()


def _drop_score_settings_then_restore_manifest(entry: Path) -> None:
    """A package stored without score settings: its manifest matches, the package check must catch it."""
    config = json.loads((entry / CONFIG_FILE).read_text())
    del config[CONFIG_KEY]
    (entry / CONFIG_FILE).write_text(json.dumps(config))
    write_manifest(entry)


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        (_truncate, [ONNX_FILE, "bytes", "truncated"]),
        (_flip_a_byte, [ONNX_FILE, "SHA-256"]),
        (_drop_tokenizer, [TOKENIZER_FILE, "missing"]),
        (_drop_score_settings_then_restore_manifest, [CONFIG_FILE]),
    ],
    ids=["truncated-onnx", "checksum-mismatch", "tokenizer-absent", "no-score-settings"],
)
def test_a_damaged_entry_is_refused_naming_the_file_and_the_fix(entry, damage, names):
    check_stored_model(entry, "ko-sts:v1")  # intact: passes
    damage(entry)
    with pytest.raises(ModelRefused) as refused:
        check_stored_model(entry, "ko-sts:v1")
    message = str(refused.value)
    assert all(name in message for name in names), message
    assert "bentoml models delete ko-sts:v1" in message and "KO_STS_MODEL_TAG" in message


def test_an_entry_stored_before_manifests_is_checked_for_its_files_only(entry, caplog):
    (entry / MANIFEST_FILE).unlink()
    check_stored_model(entry, "ko-sts:v1")
    assert "no manifest.json" in caplog.text
    _drop_tokenizer(entry)
    with pytest.raises(ModelRefused, match=TOKENIZER_FILE):
        check_stored_model(entry, "ko-sts:v1")


def _shift_reference(entry: Path, by: float) -> None:
    metadata = read_metadata(entry)
    scores = metadata["onnx"]["reference"]["scores"]
    scores[ONNX_INT8] = [s + by for s in scores[ONNX_INT8]]
    write_metadata(entry, metadata)


def test_the_parity_guard_passes_the_exported_runtime_and_refuses_scores_that_moved(entry):
    scorer = load_scorer(entry, "onnx", device="cpu")
    assert check_parity(scorer, entry, "ko-sts:v1") < 1e-4
    _shift_reference(entry, 0.05)
    with pytest.raises(ModelRefused, match=r"reference pairs.*up to 0\.05.*tolerance 0\.01"):
        check_parity(scorer, entry, "ko-sts:v1")


def test_the_parity_guard_warns_when_a_package_has_no_reference_scores(entry, caplog):
    metadata = read_metadata(entry)
    del metadata["onnx"]["reference"]
    write_metadata(entry, metadata)
    assert check_parity(load_scorer(entry, "onnx", device="cpu"), entry, "ko-sts:v1") is None
    assert "no reference scores" in caplog.text


def _serve_until_exit(tag: str) -> tuple[int, str]:
    bentoml_cli = os.path.join(os.path.dirname(sys.executable), "bentoml")
    env = {**os.environ, "KO_STS_MODEL_TAG": tag, "KO_STS_GRPC_ENABLED": "false"}
    try:
        done = subprocess.run(
            [bentoml_cli, "serve", "--port", str(free_port())],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"bentoml serve did not refuse the model; it kept running:\n{expired.output}")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated-onnx", "parity"])
def test_bentoml_serve_refuses_to_start_and_says_why(trained_package, tmp_path, damage):
    package = Path(shutil.copytree(trained_package, tmp_path / "package"))
    if damage == "parity":  # files intact and matching the manifest, but they do not score as recorded
        _shift_reference(package, 0.5)
    model = save_package(package, name="ko-sts-refused", torch_weights=False)
    if damage == "truncated-onnx":
        _truncate(Path(model.path))
    code, output = _serve_until_exit(str(model.tag))
    assert code == 1, output[-3000:]
    assert f"refusing to serve {model.tag}" in output
    assert (ONNX_FILE if damage == "truncated-onnx" else "onnx.reference") in output
    bentoml.models.delete(model.tag)


@pytest.mark.parametrize(
    ("visible", "index", "kept"), [("0,1,2,3", 1, "0"), ("4,5", 2, "5"), ("GPU-a,GPU-b", 2, "GPU-b"), ("0", 2, None)]
)
def test_each_model_process_keeps_its_own_gpu(monkeypatch, visible, index, kept):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert pin_gpu(index) == kept
    assert os.environ["CUDA_VISIBLE_DEVICES"] == (kept if kept is not None else visible)
