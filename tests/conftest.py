"""Shared fixtures: one tiny ELECTRA, fine-tuned once per session, in a throwaway model store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Every test talks to a temporary BentoML store, never the user's ~/bentoml: one per session, although this
# module runs twice (pytest loads it as ``conftest``, test modules import it as ``tests.conftest``). A second
# store would leave BentoML in this process on the first and every `bentoml serve` started later on the second.
if "KO_STS_TESTS_BENTOML_HOME" not in os.environ:
    os.environ["KO_STS_TESTS_BENTOML_HOME"] = tempfile.mkdtemp(prefix="ko-sts-test-bentoml-")
os.environ["BENTOML_HOME"] = os.environ["KO_STS_TESTS_BENTOML_HOME"]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "training/configs/tiny.yaml"
KLUE_DEV = REPO / "data/klue-sts/klue_sts_dev.jsonl"
DEFAULT_PACKAGE = REPO / "models/default"


@pytest.fixture(scope="session", autouse=True)
def _repo_cwd():
    """Configs name data files relative to the repository root."""
    previous = os.getcwd()
    os.chdir(REPO)
    yield
    os.chdir(previous)


def build_tiny_base(directory: Path) -> Path:
    """A random 2-layer ELECTRA with a WordPiece vocabulary trained on the shipped KLUE-STS."""
    from training.tiny_model import build_tiny_electra

    return build_tiny_electra(directory)


def train_tiny_package(base: Path, output_dir: Path) -> Path:
    """The tiny encoder fine-tuned through the real CLI: train, report, ONNX export, model store.

    Mean pooling, BCE and both sentence orders: options the reference config leaves off
    (the shipped model uses the last two).
    """
    from training.train import main

    return main(
        [
            "--config",
            str(TINY_CONFIG),
            "--model_name_or_path",
            str(base),
            "--output_dir",
            str(output_dir),
            "--pooling",
            "mean",
            "--objective",
            "bce",
            "--symmetric",
            "true",
            "--max_train_samples",
            "2000",
            "--num_train_epochs",
            "3",
            "--disable_tqdm",
            "true",
        ]
    )


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def trained_package(tiny_base, tmp_path_factory) -> Path:
    """The tiny model's package (:func:`train_tiny_package`), trained once per session."""
    return train_tiny_package(tiny_base, tmp_path_factory.mktemp("tiny-run"))


@pytest.fixture(scope="session")
def client_service(request, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Where the client tests' service is: the ``KO_STS_TEST_*`` variables (tests/live_service.py).

    From the environment when scripts/ci-client.sh started it for another Python; else `bentoml serve`
    of the tiny model, started here once for the session.
    """
    if "KO_STS_TEST_HTTP_URL" in os.environ:
        yield {name: value for name, value in os.environ.items() if name.startswith("KO_STS_TEST_")}
        return
    from tests.live_service import serve_for_clients

    package = request.getfixturevalue("trained_package")
    with serve_for_clients(package, tmp_path_factory.mktemp("client-service") / "serve.log") as variables:
        yield variables


@pytest.fixture(scope="module")
def scorer(trained_package):
    """The tiny fine-tuned model's ONNX scorer on the CPU, with small passes (1,024 tokens)."""
    from models.scorer import BatchLimits, load_scorer

    return load_scorer(trained_package, "onnx", device="cpu", limits=BatchLimits(max_batch_tokens=1024))
