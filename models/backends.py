"""Inference runtimes: one forward pass over a padded batch, on ONNX Runtime or PyTorch.

A model package (see :mod:`models.package`) holds ``onnx/model_quantized.onnx`` (int8, the CPU
default), optionally ``onnx/model.onnx`` (float32) and PyTorch weights (``model.safetensors``;
for the shipped default they are rebuilt from the int8 export when it is stored, see
:mod:`models.weights`). A runtime only runs the network: tokenising, batching and turning
outputs into scores belong to :class:`models.scorer.Scorer`.

ONNX Runtime never imports torch; PyTorch (and transformers) are imported only when the torch
backend is chosen.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from models.package import has_torch_weights

logger = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]
Device = Literal["auto", "cpu", "cuda"]
TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]
ONNX_SUBDIR = "onnx"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model_quantized.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Pending = Callable[[], np.ndarray]
"""What :meth:`Runtime.launch` returns: call it to wait for the logits, shape (n,)."""


class Runtime(ABC):
    """Runs a cross-encoder on padded int64 batches and returns one raw logit per row."""

    backend: Backend
    device: str
    input_names: tuple[str, ...]
    description: str

    @abstractmethod
    def launch(self, batch: dict[str, np.ndarray]) -> Pending:
        """Starts a forward pass; the returned callable waits for it (GPU passes overlap CPU work)."""

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Runs a forward pass to completion."""
        return self.launch(batch)()


class OnnxRuntime(Runtime):
    """ONNX Runtime: the int8 export on CPU, the float32 export on CUDA.

    Args:
        model_dir: the model package.
        device: ``auto`` takes CUDA when onnxruntime-gpu is installed and sees a GPU.
        onnx_file: a file under ``onnx/``; by default ``model_quantized.onnx`` on CPU and
            ``model.onnx`` on CUDA (int8 kernels are CPU-only).
        threads: intra-op threads; 0 lets ONNX Runtime use every core.
    """

    backend = "onnx"

    def __init__(self, model_dir: str | Path, device: Device = "auto", onnx_file: str | None = None, threads: int = 0):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                "device 'cuda' was requested but ONNX Runtime has no CUDAExecutionProvider; "
                "install onnxruntime-gpu (requirements/serve-gpu.txt) or use KO_STS_BACKEND=torch"
            )
        self.path = _pick_onnx_file(Path(model_dir), device, onnx_file)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        unknown = set(self.input_names) - set(MODEL_INPUTS)
        if unknown:
            raise ValueError(f"{self.path}: unexpected graph input(s) {', '.join(sorted(unknown))}")
        self.device = device
        self.description = f"onnxruntime {ort.__version__} {self.path.name} on {device}"

    def launch(self, batch: dict[str, np.ndarray]) -> Pending:
        logits = self.session.run(None, {name: batch[name] for name in self.input_names})[0].reshape(-1)
        return lambda: logits


def _pick_onnx_file(model_dir: Path, device: str, onnx_file: str | None) -> Path:
    folder = model_dir / ONNX_SUBDIR
    if onnx_file is not None:
        candidates = [onnx_file]
    elif device == "cuda":
        candidates = [ONNX_FP32, ONNX_INT8]
    else:
        candidates = [ONNX_INT8, ONNX_FP32]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"no ONNX export ({' or '.join(candidates)}) in {folder}; export one with "
        f"`python -m training.export {model_dir}` or serve with KO_STS_BACKEND=torch"
    )


class TorchRuntime(Runtime):
    """PyTorch: CUDA in float16 (or bfloat16) with SDPA attention, else CPU in float32.

    On CUDA each pass copies its batch from pinned memory without blocking and returns before
    the GPU finishes, so the caller can assemble the next batch meanwhile.
    """

    backend = "torch"

    def __init__(self, model_dir: str | Path, device: Device = "auto", dtype: TorchDtype = "auto"):
        import torch
        from transformers import AutoModelForSequenceClassification

        import models.cross_encoder  # noqa: F401  (registers the mean-pooling head with the Auto classes)

        model_dir = Path(model_dir)
        if not has_torch_weights(model_dir):
            raise FileNotFoundError(
                f"{model_dir} holds no PyTorch weights. A package stored with `python -m models.store` gets "
                "them rebuilt from its int8 export; store it again, or serve it with KO_STS_BACKEND=onnx."
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU")
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        self._torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=getattr(torch, dtype), attn_implementation="sdpa"
        )
        self.model.to(device).eval()
        self.input_names = accepted_inputs(self.model.forward)
        self.device = str(self.model.device)
        self.description = f"torch {torch.__version__} {dtype} on {self.device}"

    def launch(self, batch: dict[str, np.ndarray]) -> Pending:
        torch = self._torch
        cuda = self.model.device.type == "cuda"
        inputs = {}
        for name in self.input_names:
            tensor = torch.from_numpy(batch[name])
            inputs[name] = tensor.pin_memory().to(self.model.device, non_blocking=True) if cuda else tensor
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float().reshape(-1)
        if not cuda:
            result = logits.numpy()
            return lambda: result
        host = logits.to("cpu", non_blocking=True)
        done = torch.cuda.Event()
        done.record()

        def wait() -> np.ndarray:
            done.synchronize()
            return host.numpy()

        return wait


def accepted_inputs(forward: Callable) -> tuple[str, ...]:
    """The tokenizer outputs a PyTorch model's ``forward`` takes (``token_type_ids`` when it has them).

    Tokenizers whose models have no segment embeddings give all-zero type ids, which equal
    the models' default, so passing them whenever ``forward`` accepts them is always right.
    """
    parameters = inspect.signature(forward).parameters
    return tuple(name for name in MODEL_INPUTS if name in parameters)


def load_runtime(
    model_dir: str | Path,
    backend: Backend = "onnx",
    device: Device = "auto",
    onnx_file: str | None = None,
    threads: int = 0,
    dtype: TorchDtype = "auto",
) -> Runtime:
    """Builds the runtime for ``backend`` (``onnx`` or ``torch``) over a model package."""
    if backend == "onnx":
        return OnnxRuntime(model_dir, device=device, onnx_file=onnx_file, threads=threads)
    if backend == "torch":
        return TorchRuntime(model_dir, device=device, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(get_args(Backend))}")
