"""Start-up checks: the service refuses a model that is damaged or does not score as it did when exported.

:func:`start_engine` builds the engine of the process that runs the model (the GPU owner, or a
CPU front worker) and makes it ready before the process says so: loaded, checked, its CUDA graphs
captured, warmed up and its throughput measured.

Two checks, each failing with :class:`ModelRefused`, whose message names the file and the fix:

- :func:`check_stored_model`, in ``bentoml serve``'s main process before any worker starts
  (``@bentoml.on_deployment``): every file matches the manifest written when the model was
  stored (:func:`models.store.verify_manifest`), and the files every backend reads are there and
  readable (:func:`models.package.check_package`). ``bentoml serve`` then exits with status 1.
- :func:`check_parity`, in the main process on the CPU and again in each worker that serves on
  a GPU: the fixed pairs that ``training.export`` scored are scored again, with the runtime file
  that will serve, and must agree with the recorded scores within :data:`PARITY_TOLERANCE`. A
  refusing worker fails its start (in a container ``bentoml serve`` then exits 1; elsewhere
  BentoML starts the worker again, and it refuses again).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from bentoml.exceptions import BentoMLException

from models.backends import TorchRuntime, cuda_graph_shapes
from models.package import TORCH_REFERENCE, PackageError, check_package, read_metadata, reference_scores
from models.pairs import EncodedRows
from models.scorer import Scorer, compile_model
from models.scoring import ScoreSettings
from models.store import verify_manifest
from serving.engine import EngineObserver, ScoringEngine
from serving.metrics import EngineMetrics

if TYPE_CHECKING:
    from serving.settings import Settings

logger = logging.getLogger("bentoml.ko_sts")

# Largest |served - recorded| reference score (0-5 scale) by how the network runs; measured on the
# shipped model (docs/operations.md): the int8 ONNX file reproduces its scores exactly on the CPU
# that exported it, leaving room for other CPUs' kernels; PyTorch weights rebuilt from the int8
# file differ from the exported ones by up to 0.0066, float16 adds up to 0.0025 over 300 dev pairs
# and bfloat16 up to 0.022; OpenVINO's int8 activations (on a CPU with VNNI) up to 0.033 over the 519 dev pairs
# and 0.21 on one reference pair of the shipped model (a short antonym pair). A wrong or damaged model moves
# scores by tenths or more.
PARITY_TOLERANCE = {"onnx": 0.01, "int8-activations": 0.25, "float32": 0.02, "float16": 0.05, "bfloat16": 0.1}


class ModelRefused(BentoMLException):
    """The model cannot be served; ``bentoml serve`` prints the message and exits with status 1."""


def store_fix(tag: str) -> str:
    """How to replace a damaged store entry."""
    return (
        f"the stored copy of {tag} is damaged or incomplete: delete it (`bentoml models delete {tag}`) and store "
        "the package again (`python -m models.store PACKAGE_DIR`; `make import-default` for the shipped model), "
        "or serve another version with KO_STS_MODEL_TAG"
    )


def check_stored_model(model_dir: str | Path, tag: str) -> None:
    """Refuses a store entry whose files do not match its manifest or lack what serving reads."""
    try:
        verified = verify_manifest(model_dir)
        check_package(model_dir)
    except PackageError as error:
        raise ModelRefused(f"refusing to serve {tag}: {error}; {store_fix(tag)}") from None
    if not verified:
        logger.warning("%s has no manifest.json, so its files were not verified; store it again to add one", tag)


def check_parity(scorer: Scorer, model_dir: str | Path, tag: str) -> float | None:
    """Scores the package's reference pairs with ``scorer``'s runtime; refuses if they moved past the tolerance.

    The model's own score settings are used (``KO_STS_SYMMETRY`` may change the served ones).
    Returns the largest difference, or None when the package has no reference scores for this
    runtime file (exported before the guard existed: a warning, not a refusal).
    """
    runtime = scorer.runtime
    torch = isinstance(runtime, TorchRuntime)  # else an ONNX file, run by ONNX Runtime or OpenVINO
    key = TORCH_REFERENCE if torch else Path(runtime.path).name
    reference = reference_scores(read_metadata(model_dir), key)
    if reference is None:
        logger.warning(
            "%s has no reference scores for %s, so its parity was not checked; re-export it with "
            "`python -m training.export PACKAGE_DIR` and store it again",
            tag,
            key,
        )
        return None
    pairs, expected = reference
    own = Scorer(runtime, scorer.tokenizer, ScoreSettings.from_model_dir(model_dir), scorer.limits)
    delta = float(np.max(np.abs(own.score(pairs) - np.asarray(expected))))
    if torch:
        dtype = str(runtime.model.dtype).removeprefix("torch.")
    else:  # the ONNX file on ONNX Runtime, or on OpenVINO with float32 or int8 activations
        dtype = "int8-activations" if getattr(runtime, "activations", "float32") == "int8" else "onnx"
    tolerance = PARITY_TOLERANCE[dtype]
    if delta > tolerance:
        raise ModelRefused(
            f"refusing to serve {tag}: {runtime.description} scores the {len(pairs)} reference pairs of "
            f"{Path(model_dir) / 'metadata.json'} (onnx.reference, {key}) up to {delta:.3g} away from the recorded "
            f"scores (tolerance {tolerance:g}): the model files, tokenizer or runtime do not match what was "
            "exported; re-export the package (`python -m training.export PACKAGE_DIR`) and store it again, "
            "or serve another version with KO_STS_MODEL_TAG"
        )
    logger.info("parity: %s within %.2g of the recorded %s scores (tolerance %g)", tag, delta, key, tolerance)
    return delta


def pin_gpu(worker_index: int) -> str | None:
    """Gives model process ``worker_index`` (1-based) a GPU of its own, before anything initialises CUDA.

    BentoML hands every worker of a service the same devices (``CUDA_VISIBLE_DEVICES``); with one
    model process per GPU, worker ``i`` keeps only the ``i``-th of them (of every GPU when unset).
    Returns the device it kept, or None when there are fewer GPUs than workers' indices.
    """
    import os
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        visible = ",".join(str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU "))
    devices = [device for device in visible.split(",") if device.strip()]
    if len(devices) < worker_index:
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[worker_index - 1]
    return devices[worker_index - 1]


WARM_UP_PAIRS = [
    ("숙소 위치는 찾기 쉬워요.", "숙소를 쉽게 찾을 수 있었어요."),
    ("오늘 날씨 어때?", "환불은 언제 되나요?"),
    ("회의가 다음 주 화요일로 연기되었습니다.", "다음 주 화요일에 회의가 열리는 것으로 일정이 바뀌었어요."),
]


def start_engine(
    settings: Settings, model_dir: str | Path, tag: str, observer: EngineObserver | None = None
) -> ScoringEngine:
    """The engine of the process that runs the model, ready to serve.

    The runtime is loaded as ``settings`` say (``observer`` gets the engine's timings; default:
    Prometheus); on a GPU it is compiled (``torch_compile``), its scores are checked against the
    exported ones (the CPU's were checked in ``bentoml serve``'s main process) and CUDA graphs are
    captured for small passes; then a round's worth of rows is scored twice, which warms every kernel
    up and measures the throughput that admission starts from.
    """
    started = time.monotonic()
    scorer = settings.scorer(model_dir)
    compile_model(scorer, settings.torch_compile)
    if scorer.device != "cpu":
        check_parity(scorer, model_dir, tag)  # the model as it will run: compiled, when it compiled
    if isinstance(scorer.runtime, TorchRuntime) and scorer.device != "cpu" and settings.cuda_graph_tokens:
        width = int(scorer.limits.padded(scorer.settings.max_length))
        shapes = cuda_graph_shapes(width, scorer.limits.max_batch_rows, settings.cuda_graph_tokens)
        captured = time.monotonic()
        scorer.runtime.capture_graphs(shapes, scorer.tokenizer.pad_id)
        logger.info("captured %d CUDA graphs in %.1f s", len(shapes), time.monotonic() - captured)
    engine = ScoringEngine(scorer, settings.engine(scorer.device), observer or EngineMetrics())
    sample = scorer.encode(WARM_UP_PAIRS)
    engine.calibrate(EncodedRows.concat([sample] * max(1, engine.max_round_tokens // max(1, sample.tokens))))
    logger.info("%s ready in %.1f s: %s", tag, time.monotonic() - started, engine)
    return engine
