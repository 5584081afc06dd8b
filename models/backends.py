"""Inference runtimes: one forward pass over a padded batch, on ONNX Runtime, OpenVINO or PyTorch.

A model package (see :mod:`models.package`) holds ``onnx/model_quantized.onnx`` (int8, the CPU
default), optionally ``onnx/model.onnx`` (float32) and PyTorch weights (``model.safetensors``;
for the shipped default they are rebuilt from the int8 export when it is stored, see
:mod:`models.weights`). A runtime only runs the network: tokenising, batching and turning
outputs into scores belong to :class:`models.scorer.Scorer`.

OpenVINO runs the same int8 ONNX file on the CPU. ONNX Runtime and OpenVINO never import torch;
PyTorch (and transformers) are imported only when the torch backend is chosen, OpenVINO only when
the openvino backend is.
"""

from __future__ import annotations

import bisect
import inspect
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from models.package import has_torch_weights
from models.pairs import EncodedRows

logger = logging.getLogger(__name__)

Backend = Literal["onnx", "openvino", "torch"]
Device = Literal["auto", "cpu", "cuda"]
TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]
CpuActivations = Literal["int8", "float32"]
"""OpenVINO's activations on the CPU: ``int8``, quantised per group of 32 values along each row as a pass runs (int8
dot products where the CPU has AVX-512 VNNI, else float32 compute), or ``float32``."""
ONNX_SUBDIR = "onnx"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model_quantized.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

Pending = Callable[[], np.ndarray]
"""What :meth:`Runtime.launch` returns: call it to wait for the logits, shape (n,)."""
Failure = Literal["transient", "fatal", "error"]
"""How a failed pass leaves its runtime: ``transient``, the next pass may work (out of memory); ``fatal``, the
device is unusable until the process restarts (a CUDA error poisons its context); ``error``, anything else."""


class Runtime(ABC):
    """Runs a cross-encoder on tokenised rows and returns one raw logit per row."""

    backend: Backend
    device: str
    input_names: tuple[str, ...]
    description: str

    @abstractmethod
    def launch(self, rows: EncodedRows, width: int, pad_id: int) -> Pending:
        """Starts a forward pass over ``rows`` padded to at least ``width`` tokens; the returned callable waits for it.

        A GPU runtime returns before the pass has run, so the caller can assemble the next one meanwhile.
        """

    def forward(self, rows: EncodedRows, width: int, pad_id: int) -> np.ndarray:
        """Runs a forward pass to completion."""
        return self.launch(rows, width, pad_id)()

    def failure(self, error: BaseException) -> Failure:
        """What a pass's exception means for the next pass (see :data:`Failure`)."""
        return "transient" if isinstance(error, MemoryError) else "error"


def _graph_inputs(path: Path, names: Iterable[str]) -> tuple[str, ...]:
    """An ONNX graph's input names, refused unless each is one of :data:`MODEL_INPUTS`."""
    names = tuple(names)
    unknown = set(names) - set(MODEL_INPUTS)
    if unknown:
        raise ValueError(f"{path}: unexpected graph input(s) {', '.join(sorted(unknown))}")
    return names


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

        device = resolve_device("onnx", device)
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "device 'cuda' was requested but ONNX Runtime has no CUDAExecutionProvider; "
                "install onnxruntime-gpu (requirements/onnxruntime-gpu.txt) or use KO_STS_BACKEND=torch"
            )
        self.path = _pick_onnx_file(Path(model_dir), device, onnx_file)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.input_names = _graph_inputs(self.path, (i.name for i in self.session.get_inputs()))
        self.device = device
        self.description = f"onnxruntime {ort.__version__} {self.path.name} on {device}"
        self._buffers = HostBuffers(lambda size: np.empty(size, dtype=np.int64))

    def launch(self, rows: EncodedRows, width: int, pad_id: int) -> Pending:
        alone = len(rows) == 1  # MLAS multiplies one row on another kernel, whose sums round otherwise (4e-5)
        batch = EncodedRows.concat([rows, rows]) if alone else rows
        inputs = batch.pad(width, pad_id, out=self._buffers.take(len(batch) * width))
        logits = self.session.run(None, {name: inputs[name] for name in self.input_names})[0].reshape(-1)
        logits = logits[: len(rows)]
        return lambda: logits


OPENVINO_PIN = "openvino==2026.4.1"  # as in requirements/serving.in


DYNAMIC_QUANTIZATION_GROUPS = {"int8": "32", "float32": "0"}  # OpenVINO's group size per CpuActivations


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU, on the package's int8 ONNX file (or another file under ``onnx/``).

    The graph is compiled once with dynamic shapes; OpenVINO keeps its kernels per input shape
    itself (graphs reshaped to each pass's static shape measured the same, after about a second
    of compiling per shape). With ``activations="int8"`` (the default) a pass's activations are
    quantised per group of 32 values of each row
    (``DYNAMIC_QUANTIZATION_GROUP_SIZE``), never over the batch, so a row's score still does not
    depend on its batch-mates, and on a CPU with AVX-512 VNNI the matrix products run in int8:
    1.74x the pairs/s for the shipped model, at most 0.033 from float32 on a KLUE-STS dev pair and
    0.039 on the contrast set, but 0.21 on one of its six reference pairs
    (``research/results/cpu_runtimes-vnni-bf16.md``); without VNNI, or with ``activations="float32"``,
    OpenVINO computes in float32 on the int8 weights.
    Never bf16 (a row then moved by 2.3e-4 with its batch-mates). One stream runs each pass on
    every thread, not pinned to cores.

    Args:
        model_dir: the model package.
        device: ``auto`` or ``cpu``; OpenVINO is served on the CPU only.
        onnx_file: a file under ``onnx/``; by default ``model_quantized.onnx``.
        threads: inference threads; 0 lets OpenVINO use every core (as ONNX Runtime's ``threads``).
        activations: :data:`CpuActivations`.
    """

    backend = "openvino"

    def __init__(
        self,
        model_dir: str | Path,
        device: Device = "auto",
        onnx_file: str | None = None,
        threads: int = 0,
        activations: CpuActivations = "int8",
    ):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeError(
                f"KO_STS_BACKEND=openvino needs the openvino package, which is not installed: "
                f"`pip install {OPENVINO_PIN}` (requirements/serving.txt has it), or serve with KO_STS_BACKEND=onnx"
            ) from None
        if device not in ("auto", "cpu"):
            raise RuntimeError(
                f"device {device!r} was requested but the openvino backend serves on the CPU only; "
                "use KO_STS_DEVICE=cpu, or KO_STS_BACKEND=torch (or onnx with onnxruntime-gpu) for a GPU"
            )
        self.path = _pick_onnx_file(Path(model_dir), "cpu", onnx_file)
        config = {
            "INFERENCE_PRECISION_HINT": "f32",  # not bf16 where the CPU has it: batch-variant
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_QUANTIZATION_GROUPS[activations],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "ENABLE_CPU_PINNING": "NO",  # the cores are shared with tokenising and HTTP: unpinned measured steadier
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        self.model = ov.Core().compile_model(str(self.path), "CPU", config)
        self.input_names = _graph_inputs(self.path, (port.any_name for port in self.model.inputs))
        self.device = "cpu"
        self.activations = activations
        self.description = f"openvino {ov.__version__} {self.path.name} on cpu, {activations} activations"
        self._request = self.model.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one pass at a time
        self._buffers = HostBuffers(lambda size: np.empty(size, dtype=np.int64))

    def launch(self, rows: EncodedRows, width: int, pad_id: int) -> Pending:
        with self._lock:
            inputs = rows.pad(width, pad_id, out=self._buffers.take(len(rows) * width))
            self._request.infer({name: inputs[name] for name in self.input_names})
            logits = self._request.get_output_tensor(0).data.reshape(-1).astype(np.float32)  # a copy
        return lambda: logits


class HostBuffers:
    """Flat int64 arrays for padded inputs, reused from pass to pass and grown when a pass needs more.

    Args:
        allocate: ``allocate(size)`` returns a flat int64 array (numpy, or pinned memory seen as numpy).
    """

    def __init__(self, allocate: Callable[[int], np.ndarray]):
        self._allocate = allocate
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, size: int) -> dict[str, np.ndarray]:
        """Arrays of at least ``size`` elements for each model input."""
        if not self._arrays or len(self._arrays[MODEL_INPUTS[0]]) < size:
            self._arrays = {name: self._allocate(max(size, 1)) for name in MODEL_INPUTS}
        return self._arrays


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

    Attention masks are built without looking at their values (:data:`STATIC_SDPA`), so a pass
    never waits for the GPU: on CUDA each pass pads its rows into pinned host memory, copies them
    without blocking and returns before the GPU finishes, while the caller assembles the next.
    Passes whose shape fits one of the CUDA graphs captured by :meth:`capture_graphs` (or planned by
    :meth:`plan_graphs`) replay it (one launch instead of hundreds); other passes run eagerly.
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
        device = resolve_device("torch", device)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU")
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        self._torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, dtype=getattr(torch, dtype), attn_implementation=register_static_sdpa()
        )
        self.model.to(device).eval()
        self._forward: Callable[..., Any] = self.model  # the module, or its compiled form (:meth:`compile`)
        self.input_names = accepted_inputs(self.model.forward)
        self.device = str(self.model.device)
        self.description = f"torch {torch.__version__} {dtype} on {self.device}"
        self.graphs: dict[tuple[int, int], CapturedPass] = {}
        self._planned: dict[tuple[int, int], int] = {}  # graphs not captured yet (:meth:`plan_graphs`): eager passes
        self._pad_id = 0
        self._cuda = self.model.device.type == "cuda"
        self._graph_pool = torch.cuda.graph_pool_handle() if self._cuda else None
        self._capture_stream = torch.cuda.Stream() if self._cuda else None
        self._slots = [_PinnedSlot(torch) for _ in range(PINNED_SLOTS)] if self._cuda else []
        self._next_slot = 0
        self._buffers = HostBuffers(lambda size: np.empty(size, dtype=np.int64))

    def launch(self, rows: EncodedRows, width: int, pad_id: int) -> Pending:
        torch = self._torch
        if not self._cuda:
            batch = rows.pad(width, pad_id, out=self._buffers.take(len(rows) * width))
            with torch.inference_mode():
                result = self._forward(**{name: torch.from_numpy(batch[name]) for name in self.input_names})
            logits = result.logits.float().reshape(-1).numpy().copy()
            return lambda: logits
        graph = self._graph_for(len(rows), width)
        shape = graph.shape if graph is not None else (len(rows), width)
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        host = slot.fill(rows, shape, pad_id)
        with torch.inference_mode(), self._attention():
            if graph is not None:
                for name in self.input_names:
                    graph.inputs[name].copy_(host[name], non_blocking=True)
                slot.copied.record()
                graph.graph.replay()
                logits = graph.logits
            else:
                inputs = {name: host[name].to(self.model.device, non_blocking=True) for name in self.input_names}
                slot.copied.record()
                logits = self._forward(**inputs).logits.float().reshape(-1)
            return slot.fetch(logits, len(rows))

    def failure(self, error: BaseException) -> Failure:
        torch = self._torch
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
            return "transient"
        if self._cuda and ("CUDA error" in str(error) or isinstance(error, getattr(torch, "AcceleratorError", ()))):
            return "fatal"
        return super().failure(error)

    def compile(self, pad_id: int) -> None:
        """Runs the model through ``torch.compile`` (Inductor: layer norms, GELU and residual adds fused into
        fewer kernels), with dynamic shapes so that passes of any size share a few compilations.

        It compiles at once, on a small pass, and raises (keeping the model uncompiled) where it cannot,
        e.g. without a C compiler for Triton. Call it before :meth:`capture_graphs`, whose graphs then
        record the fused kernels. It took 15-30 s on an H200 (Inductor's cache shortens later starts).
        """
        compiled = self._torch.compile(self.model, dynamic=True)
        with self._torch.inference_mode(), self._attention():
            compiled(**self._static_inputs(2, 16, pad_id))
        self._forward = compiled

    def _static_inputs(self, rows: int, width: int, pad_id: int) -> dict[str, Any]:
        """Device tensors of one (rows, width) pass, all padding that attends to every token: warm-ups, graphs."""
        torch, device = self._torch, self.model.device
        inputs = {
            "input_ids": torch.full((rows, width), pad_id, dtype=torch.int64, device=device),
            "attention_mask": torch.ones((rows, width), dtype=torch.int64, device=device),
            "token_type_ids": torch.zeros((rows, width), dtype=torch.int64, device=device),
        }
        return {name: inputs[name] for name in self.input_names}

    def capture_graphs(self, shapes: Iterable[tuple[int, int]], pad_id: int) -> None:
        """Captures a CUDA graph of the forward pass for each (rows, width) now; later passes that fit one replay it.

        All graphs share one memory pool (only one runs at a time), so they cost about the largest one's
        activations. A pass of ``r`` rows of at most ``w`` tokens replays the smallest graph with at least
        ``r`` rows and ``w`` tokens, its extra rows and columns padding. Each shape first runs twice
        eagerly, so that its kernels choose their algorithms (and compile) outside the capture.
        """
        if not self._cuda:
            return
        torch = self._torch
        for rows, width in sorted(set(shapes), key=lambda shape: -shape[0] * shape[1]):
            inputs = self._static_inputs(rows, width, pad_id)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode(), self._attention():
                for _ in range(2):
                    self._forward(**inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graphs[(rows, width)] = self._capture(inputs)
            self._planned.pop((rows, width), None)
        torch.cuda.synchronize()
        self._index_graphs()

    def plan_graphs(self, shapes: Iterable[tuple[int, int]], pad_id: int) -> None:
        """Plans a CUDA graph for each (rows, width), captured when passes come to need it: the first pass of a
        planned shape runs eagerly (real work, which also warms its kernels up) and the second captures the
        graph and replays it, without waiting for the passes in flight. Unlike :meth:`capture_graphs`, nothing
        runs ahead of the passes and shapes no pass needs are never captured.
        """
        if not self._cuda:
            return
        self._pad_id = pad_id
        for shape in shapes:
            if shape not in self.graphs:
                self._planned.setdefault(shape, 0)
        self._index_graphs()

    def _capture(self, inputs: dict[str, Any]) -> CapturedPass:
        """Records one forward pass over ``inputs`` as a CUDA graph, on a stream of its own and into the graphs'
        shared pool. Recording runs nothing, so the passes in flight need not finish first (``torch.cuda.graph``
        would synchronise the device and empty the allocator's cache); the capture is the calling thread's only
        (other threads may use the GPU meanwhile)."""
        torch = self._torch
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(self._capture_stream), torch.inference_mode(), self._attention():
            graph.capture_begin(self._graph_pool, capture_error_mode="thread_local")
            try:
                logits = self._forward(**inputs).logits.float().reshape(-1)
            finally:
                graph.capture_end()
        return CapturedPass(graph, inputs, logits)

    def _index_graphs(self) -> None:
        shapes = [*self.graphs, *self._planned]
        self._graph_rows = sorted({rows for rows, _ in shapes})
        self._graph_widths = sorted({width for _, width in shapes})

    def _attention(self) -> Any:
        """SDPA without cuDNN's kernel: cuDNN builds (compiles, with NVRTC) a plan for every new batch shape,
        which a server meets all the time; memory-efficient attention takes masks at any shape."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])

    def _graph_for(self, rows: int, width: int) -> CapturedPass | None:
        """The graph a pass replays, captured here on a planned shape's second pass; None: the pass runs eagerly."""
        if not (self.graphs or self._planned):
            return None
        r = bisect.bisect_left(self._graph_rows, rows)
        w = bisect.bisect_left(self._graph_widths, width)
        if r == len(self._graph_rows) or w == len(self._graph_widths):
            return None
        shape = (self._graph_rows[r], self._graph_widths[w])
        if shape in self._planned:
            if self._planned[shape] < EAGER_PASSES_BEFORE_CAPTURE:
                self._planned[shape] += 1
                return None
            del self._planned[shape]
            self.graphs[shape] = self._capture(self._static_inputs(*shape, self._pad_id))
        return self.graphs.get(shape)


EAGER_PASSES_BEFORE_CAPTURE = 1  # a planned graph's shape runs eagerly this many times, then is captured


GRAPH_ROWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
GRAPH_WIDTHS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def cuda_graph_shapes(max_width: int, max_rows: int, max_tokens: int) -> list[tuple[int, int]]:
    """(rows, width) shapes worth a CUDA graph: a pass pads to at most 1.5x its rows and its width.

    Widths reach the first that holds ``max_width`` (the longest padded row); rows stop at ``max_rows``;
    rows x width stays within ``max_tokens`` (larger passes keep the GPU busy enough to run eagerly).
    """
    widths = [w for w in GRAPH_WIDTHS if w < max_width] + [next((w for w in GRAPH_WIDTHS if w >= max_width), max_width)]
    return [(r, w) for r in GRAPH_ROWS if r <= max_rows for w in widths if r * w <= max_tokens]


@dataclass
class CapturedPass:
    """A CUDA graph of one forward pass: its static inputs (filled before each replay) and its logits."""

    graph: Any
    inputs: dict[str, Any]
    logits: Any

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.inputs["input_ids"].shape)


PINNED_SLOTS = 3  # host buffers in rotation: more than the passes a caller keeps in flight (2)


class _PinnedSlot:
    """Pinned host memory for one pass: its padded inputs on the way in, its logits on the way out."""

    def __init__(self, torch: Any):
        self._torch = torch
        self._buffers = HostBuffers(lambda size: torch.empty(size, dtype=torch.int64, pin_memory=True).numpy())
        self._logits = torch.empty(0, dtype=torch.float32, pin_memory=True)
        self.copied = torch.cuda.Event()
        self.done = torch.cuda.Event()

    def fill(self, rows: EncodedRows, shape: tuple[int, int], pad_id: int) -> dict[str, Any]:
        """Pads ``rows`` into the slot as tensors of ``shape``; rows beyond ``len(rows)`` are padding rows."""
        self.copied.synchronize()  # the copies of this slot's previous pass have left it
        total, width = shape
        arrays = self._buffers.take(total * width)
        rows.pad(width, pad_id, out=arrays)
        filler = slice(len(rows) * width, total * width)
        arrays["input_ids"][filler] = pad_id
        arrays["attention_mask"][filler] = 0
        arrays["attention_mask"][filler][::width] = 1  # a padding row attends to one token, never to none (NaN)
        arrays["token_type_ids"][filler] = 0
        tensor = self._torch.from_numpy
        return {name: tensor(array[: total * width]).view(total, width) for name, array in arrays.items()}

    def fetch(self, logits: Any, rows: int) -> Pending:
        """Copies the first ``rows`` logits to the host without blocking; the returned callable waits for them."""
        self.done.synchronize()  # the slot's previous logits have been read
        if len(self._logits) < rows:
            self._logits = self._torch.empty(max(rows, 1), dtype=self._torch.float32, pin_memory=True)
        host = self._logits[:rows]
        host.copy_(logits[:rows], non_blocking=True)
        self.done.record()
        done = self.done

        def wait() -> np.ndarray:
            done.synchronize()
            return host.numpy().copy()

        return wait


STATIC_SDPA = "ko_sts_sdpa"


def register_static_sdpa() -> str:
    """Registers :data:`STATIC_SDPA` with transformers and returns its name.

    It is PyTorch's SDPA attention with transformers' own SDPA mask, except that the mask is always
    built: transformers' ``sdpa`` first checks whether a batch has any padding (``mask.all()``),
    which waits for the GPU to finish every earlier pass and cannot be captured in a CUDA graph.
    """
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def static_sdpa_mask(*args: Any, **kwargs: Any) -> Any:
        return sdpa_mask(*args, **{**kwargs, "allow_is_bidirectional_skip": False})

    AttentionInterface.register(STATIC_SDPA, sdpa_attention_forward)
    AttentionMaskInterface.register(STATIC_SDPA, static_sdpa_mask)
    return STATIC_SDPA


def accepted_inputs(forward: Callable) -> tuple[str, ...]:
    """The tokenizer outputs a PyTorch model's ``forward`` takes (``token_type_ids`` when it has them).

    Tokenizers whose models have no segment embeddings give all-zero type ids, which equal
    the models' default, so passing them whenever ``forward`` accepts them is always right.
    """
    parameters = inspect.signature(forward).parameters
    return tuple(name for name in MODEL_INPUTS if name in parameters)


def resolve_device(backend: Backend, device: Device) -> Literal["cpu", "cuda"]:
    """Where a runtime of ``backend`` runs when asked for ``device``: ``auto`` takes CUDA when the runtime sees a
    GPU (ONNX Runtime's CUDA provider, from onnxruntime-gpu; PyTorch's CUDA), else the CPU; OpenVINO runs on the CPU.
    """
    if device != "auto":
        return device
    if backend == "onnx":
        import onnxruntime as ort

        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def load_runtime(
    model_dir: str | Path,
    backend: Backend = "onnx",
    device: Device = "auto",
    onnx_file: str | None = None,
    threads: int = 0,
    dtype: TorchDtype = "auto",
    activations: CpuActivations = "int8",
) -> Runtime:
    """Builds the runtime for ``backend`` (``onnx``, ``openvino`` or ``torch``) over a model package;
    ``activations`` is OpenVINO's (:data:`CpuActivations`)."""
    if backend == "onnx":
        return OnnxRuntime(model_dir, device=device, onnx_file=onnx_file, threads=threads)
    if backend == "openvino":
        return OpenVinoRuntime(model_dir, device=device, onnx_file=onnx_file, threads=threads, activations=activations)
    if backend == "torch":
        return TorchRuntime(model_dir, device=device, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(get_args(Backend))}")
