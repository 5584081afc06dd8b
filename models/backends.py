"""Scoring backends: one ``score(pairs)`` over PyTorch or ONNX Runtime.

A model directory is a Hugging Face checkpoint written by ``training.train``: ``config.json``
(with the ``ko_sts`` score settings), tokenizer files, optionally ``model.safetensors``, and
the ONNX exports under ``onnx/`` (``model.onnx`` in float32, ``model_quantized.onnx`` in int8).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from transformers import AutoConfig, AutoTokenizer, BatchEncoding

from models.cross_encoder import ScoreSettings
from models.package import has_torch_weights
from models.pairs import encode_pairs

logger = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]
Device = Literal["auto", "cpu", "cuda"]
ONNX_SUBDIR = "onnx"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model_quantized.onnx"
DEFAULT_BATCH_SIZE = 32


class Scorer(ABC):
    """Scores sentence pairs with a fine-tuned cross-encoder; subclasses run the network."""

    backend: Backend
    tensor_type: str

    def __init__(self, model_dir: str | Path, batch_size: int | None = None):
        self.model_dir = Path(model_dir)
        self.settings = ScoreSettings.from_config(AutoConfig.from_pretrained(self.model_dir))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the network runs, e.g. ``cpu`` or ``cuda:0``."""

    @abstractmethod
    def _forward(self, encoding: BatchEncoding) -> np.ndarray:
        """Runs the network on one tokenised batch and returns its raw outputs, shape (n,)."""

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Returns one similarity in [0, 5] per ``(sentence1, sentence2)`` pair, in order."""
        if not pairs:
            return np.empty(0, dtype=np.float64)
        first = [pair[0] for pair in pairs]
        second = [pair[1] for pair in pairs]
        scores = self.settings.to_scores(self.logits(first, second))
        if self.settings.symmetric:
            scores = (scores + self.settings.to_scores(self.logits(second, first))) / 2.0
        return scores

    def logits(self, first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        """Raw network outputs for the pairs, in order.

        Pairs are grouped by length before batching so that little compute goes to padding.
        """
        order = np.argsort([len(a) + len(b) for a, b in zip(first, second)], kind="stable")
        outputs = np.empty(len(order), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoding = encode_pairs(
                self.tokenizer,
                [first[i] for i in batch],
                [second[i] for i in batch],
                max_length=self.settings.max_length,
                return_tensors=self.tensor_type,
            )
            outputs[batch] = self._forward(encoding)
        return outputs


class TorchScorer(Scorer):
    """PyTorch inference: CUDA in float16 when available (or asked for), else CPU in float32."""

    backend = "torch"
    tensor_type = "pt"

    def __init__(self, model_dir: str | Path, batch_size: int | None = None, device: Device = "auto"):
        import torch
        from transformers import AutoModelForSequenceClassification

        super().__init__(model_dir, batch_size)
        if not has_torch_weights(self.model_dir):
            raise FileNotFoundError(
                f"{self.model_dir} holds no PyTorch weights (it is an ONNX-only model, like the "
                "shipped default). Serve it with the ONNX backend (KO_STS_BACKEND=onnx) or train a "
                "model with `make train`, which stores both."
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU")
        dtype = torch.float16 if device == "cuda" else torch.float32
        self._torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, dtype=dtype)
        self.model.to(device).eval()

    @property
    def device(self) -> str:
        return str(self.model.device)

    def _forward(self, encoding: BatchEncoding) -> np.ndarray:
        with self._torch.inference_mode():
            logits = self.model(**encoding.to(self.model.device)).logits
        return logits.float().reshape(-1).cpu().numpy()


class OnnxScorer(Scorer):
    """ONNX Runtime inference: the int8 export on CPU, the float32 export on CUDA.

    Dynamic int8 quantisation scales activations over the whole input tensor, so in a batch a
    pair's score depends on its batch-mates (by up to 0.27 on the default model). The int8
    export therefore runs pair by pair unless ``batch_size`` says otherwise; on a CPU that is
    as fast as batching (no padding), and every pair gets the same score however it arrives.
    """

    backend = "onnx"
    tensor_type = "np"

    def __init__(
        self,
        model_dir: str | Path,
        batch_size: int | None = None,
        device: Device = "auto",
        onnx_file: str | None = None,
        intra_op_threads: int = 0,
    ):
        import onnxruntime as ort

        super().__init__(model_dir, batch_size)
        available = ort.get_available_providers()
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                "device 'cuda' was requested but ONNX Runtime has no CUDAExecutionProvider; "
                "install onnxruntime-gpu (requirements-gpu.txt)"
            )
        path = self._pick_file(device, onnx_file)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if batch_size is None and path.name == ONNX_INT8:
            self.batch_size = 1
        elif path.name == ONNX_INT8 and batch_size > 1:
            logger.warning("int8 in batches of %d: a pair's score will depend on its batch-mates", batch_size)
        self.onnx_path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._device = device
        logger.info("ONNX Runtime session on %s from %s, %d pair(s) per run", device, path, self.batch_size)

    def _pick_file(self, device: str, onnx_file: str | None) -> Path:
        folder = self.model_dir / ONNX_SUBDIR
        if onnx_file is not None:
            candidates = [onnx_file]
        elif device == "cuda":
            candidates = [ONNX_FP32, ONNX_INT8]  # dynamic int8 kernels are CPU-only
        else:
            candidates = [ONNX_INT8, ONNX_FP32]
        for name in candidates:
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(
            f"no ONNX export ({' or '.join(candidates)}) in {folder}; export one with "
            f"`python -m training.export {self.model_dir}` or serve with KO_STS_BACKEND=torch"
        )

    @property
    def device(self) -> str:
        return self._device

    def _forward(self, encoding: BatchEncoding) -> np.ndarray:
        feeds = {name: encoding[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feeds)[0].reshape(-1)


_SCORERS: dict[str, type[Scorer]] = {"onnx": OnnxScorer, "torch": TorchScorer}


def load_scorer(model_dir: str | Path, backend: Backend = "onnx", **options) -> Scorer:
    """Builds the scorer for ``backend`` (``onnx`` or ``torch``) over a model directory."""
    if backend not in _SCORERS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(get_args(Backend))}")
    return _SCORERS[backend](model_dir, **options)
