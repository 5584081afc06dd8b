"""Service settings: ``KO_STS_*`` environment variables, read once when the service starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.backends import Backend, CpuActivations, Device, TorchDtype
from models.scorer import (
    DEFAULT_BATCH_ROWS,
    BatchLimits,
    PairCodec,
    Scorer,
    defaults_key,
    device_limits,
    load_served_scorer,
)
from models.scoring import Symmetry, legacy_symmetry
from serving.auth import ApiKey
from serving.engine import EngineSettings
from serving.grpc_server import GrpcOptions
from serving.inputs import InputRules

# The forward-pass defaults (DEFAULT_BATCH_TOKENS when KO_STS_MAX_BATCH_TOKENS is unset, docs/serving.md "Settings";
# DEFAULT_LENGTH_BUCKET) live in models/scorer.py, shared with the file scorer (serving/files.py).
# Forward passes' worth of tokens the engine takes from the queue per round when KO_STS_ROUND_PASSES is unset.
# CPU: one, since passes run one after another on every core and a request that arrives during a round waits for
# all of it; CUDA: four, so that a round's passes overlap their copies and launches.
DEFAULT_ROUND_PASSES = {"cpu": 1, "cuda": 4}


class Settings(BaseSettings):
    """Every setting of the service, e.g. ``KO_STS_BACKEND=torch`` or ``KO_STS_MAX_BATCH_TOKENS=16384``."""

    model_config = SettingsConfigDict(env_prefix="KO_STS_")

    model_tag: str = Field("ko-sts:latest", description="model in the BentoML store; 'latest' is the newest")
    backend: Backend = Field(
        "openvino", description="'openvino' (OpenVINO, CPU only), 'onnx' (ONNX Runtime, the same int8 file), 'torch'"
    )
    device: Device = Field("auto", description="'auto' takes a CUDA GPU when the backend sees one")
    onnx_file: str | None = Field(
        None, description="ONNX file under onnx/ (default: model_quantized.onnx on CPU, model.onnx on CUDA)"
    )
    torch_dtype: TorchDtype = Field("auto", description="PyTorch weights' dtype: 'auto' is float16 on CUDA")
    symmetry: Literal["auto", "none", "average", "canonical"] = Field(
        "auto",
        description="sentence order: 'canonical' scores each pair once in an order fixed by its sentences (swapping "
        "them gives the same score, half the work of 'average'), 'average' scores both orders and averages them, "
        "'none' the order as given; 'auto': the model's own setting (config.json)",
    )
    symmetric: bool | None = Field(
        None, description="former setting: true is symmetry 'average', false 'none'; unset: KO_STS_SYMMETRY decides"
    )
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op or OpenVINO inference threads; 0 uses every core")
    cpu_activations: CpuActivations = Field(
        "int8",
        description="OpenVINO's activations: 'int8' (default) quantises them per group of 32 values of each row as a "
        "pass runs (int8 dot products on a CPU with AVX-512 VNNI: 1.67x the served pairs/s for the shipped model, "
        "within 0.04 of its float32 scores on KLUE-STS dev and the contrast set but 0.21 on one reference pair, "
        "still batch-invariant; float32 compute on CPUs without VNNI); 'float32' computes in float32 everywhere",
    )
    model_process: Literal["auto", "separate", "shared"] = Field(
        "auto",
        description="'separate': the model in a process of its own (one per GPU) fed by the front workers; "
        "'shared': the engine inside each front worker; 'auto': separate when the model may run on a GPU",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="front worker processes (HTTP, gRPC, tokenising); default: 1 when the model is shared, "
        "else half the cores, 2 to 8; with a shared model each worker has its own model copy and queue",
    )
    gpu_workers: int = Field(1, ge=1, description="model processes when separate (one per GPU)")
    cuda_graph_tokens: int = Field(
        16384, ge=0, description="CUDA graphs are captured for passes of up to this many padded tokens (0: none)"
    )
    torch_compile: bool = Field(
        True,
        description="PyTorch on CUDA: compile the model (torch.compile, fused kernels) before capturing CUDA graphs; "
        "start-up takes 15-30 s longer; where it fails (no C compiler) the model is served uncompiled, with a warning",
    )
    max_batch_tokens: int | None = Field(
        None, ge=1, description="most padded tokens in one forward pass (default: 2048 on CPU, 32768 on CUDA)"
    )
    max_batch_rows: int = Field(DEFAULT_BATCH_ROWS, ge=1, description="most sequences in one forward pass")
    batching: bool = Field(True, description="merge concurrent requests into shared forward passes")
    batch_wait_ms: float = Field(0.0, ge=0, description="how long a free worker waits for more requests")
    round_passes: int | None = Field(
        None, ge=1, description="passes' worth of tokens taken from the queue per round (default: 1 CPU, 4 CUDA)"
    )
    queue_timeout_ms: float = Field(
        2000.0,
        gt=0,
        description="a request not started by then is refused with 503; a request is refused with 429 when the "
        "work queued ahead of it would take longer at the measured throughput",
    )
    tokenizer_threads: int = Field(2, ge=1, description="threads tokenising incoming requests")
    max_pairs_per_request: int = Field(256, ge=1, description="most pairs (or rank candidates) in one request")
    max_sentence_chars: int = Field(2000, ge=1, description="most characters in one sentence")
    max_body_bytes: int | None = Field(
        None, ge=1, description="most bytes in an HTTP body or gRPC message (default: room for the largest request)"
    )
    api_key: SecretStr | None = Field(
        None, description="require 'Authorization: Bearer <key>' on the API (HTTP and gRPC); unset: no key"
    )
    grpc_enabled: bool = Field(True, description="serve gRPC next to HTTP in every worker")
    grpc_host: str = Field("[::]", description="address the gRPC server binds ('[::]': every interface)")
    grpc_port: int = Field(50051, ge=1, le=65535, description="gRPC port (HTTP's is `bentoml serve --port`)")
    grpc_grace_s: float = Field(30.0, ge=0, description="on shutdown, time gRPC calls in flight get to finish")
    access_log: bool | None = Field(
        None,
        description="one log line per HTTP request and gRPC call; unset: on with a shared model, off with a separate "
        "model process, where thousands of calls a second each cost a line (the metrics count every call either way)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Refuses settings that contradict each other, naming both."""
        if self.gpu_workers > 1 and not self.separate_model_process:
            raise ValueError(
                f"KO_STS_GPU_WORKERS={self.gpu_workers} needs the model in processes of its own, but "
                f"KO_STS_MODEL_PROCESS={self.model_process} (with KO_STS_BACKEND={self.backend}, "
                f"KO_STS_DEVICE={self.device}) keeps it in the front; set KO_STS_MODEL_PROCESS=separate"
            )
        if self.symmetric is not None and self.symmetry != "auto" and self.symmetry != legacy_symmetry(self.symmetric):
            raise ValueError(
                f"KO_STS_SYMMETRIC={str(self.symmetric).lower()} contradicts KO_STS_SYMMETRY={self.symmetry}; "
                "unset KO_STS_SYMMETRIC (KO_STS_SYMMETRY replaces it)"
            )
        if self.backend == "openvino" and self.device == "cuda":
            raise ValueError(
                "KO_STS_DEVICE=cuda contradicts KO_STS_BACKEND=openvino (the default), which serves on the CPU only; "
                "set KO_STS_BACKEND=torch (or onnx with onnxruntime-gpu) for a GPU"
            )
        if self.batch_wait_ms >= self.queue_timeout_ms:
            raise ValueError(
                f"KO_STS_BATCH_WAIT_MS={self.batch_wait_ms:g} is not below KO_STS_QUEUE_TIMEOUT_MS="
                f"{self.queue_timeout_ms:g}: every request would wait out the queue timeout; lower the wait"
            )
        return self

    @property
    def separate_model_process(self) -> bool:
        """Whether the model runs in a process of its own (``model_process``; auto: when it may use a GPU)."""
        if self.model_process != "auto":
            return self.model_process == "separate"
        return self.device == "cuda" or (self.backend == "torch" and self.device == "auto")

    @property
    def front_workers(self) -> int:
        """Front worker processes: ``workers``, else 1 beside a shared model, else half the cores (2 to 8).

        12 fronts on the 16-core H200 host measured the same as 8 within run-to-run noise
        (docs/benchmarks.md), so the rest of the cores stay with the model process and tokenizers.
        """
        if self.workers is not None:
            return self.workers
        return min(8, max(2, (os.cpu_count() or 2) // 2)) if self.separate_model_process else 1

    @property
    def access_lines(self) -> bool:
        """Whether each call writes an access log line (``access_log``; unset: only beside a shared model)."""
        return self.access_log if self.access_log is not None else not self.separate_model_process

    def batch_limits(self, device: str) -> BatchLimits:
        """How forward passes are cut on ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""
        return device_limits(device, self.max_batch_tokens, self.max_batch_rows)

    def scorer(self, model_dir: str | Path, device: Device | None = None) -> Scorer:
        """The scorer these settings describe over a model package (backend, device, dtype, limits, orders).

        ``device`` overrides the configured one (the start-up check scores on the CPU).
        """
        return load_served_scorer(
            model_dir,
            self.backend,
            device=device or self.device,
            onnx_file=self.onnx_file,
            threads=self.threads,
            dtype=self.torch_dtype,
            symmetry=self.symmetry_override,
            activations=self.cpu_activations,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_rows=self.max_batch_rows,
        )

    @property
    def symmetry_override(self) -> Symmetry | None:
        """The symmetry these settings impose on any model, or None to serve each model's own (``auto``)."""
        if self.symmetric is not None:
            return legacy_symmetry(self.symmetric)
        return None if self.symmetry == "auto" else self.symmetry

    def served_symmetry(self, model: Symmetry) -> Symmetry:
        """The symmetry served for a model whose ``config.json`` says ``model`` (see ``symmetry``)."""
        return self.symmetry_override or model

    def codec(self, model_dir: str | Path) -> PairCodec:
        """The package's pair codec with the served symmetry (:meth:`served_symmetry`)."""
        return PairCodec.for_package(model_dir, self.symmetry_override)

    def engine(self, device: str | None = None) -> EngineSettings:
        """The queueing settings of :class:`serving.engine.ScoringEngine` for a scorer on ``device``.

        ``device`` (``cpu``, ``cuda:0``) picks the default round size (:data:`DEFAULT_ROUND_PASSES`); None (not
        known) takes CUDA's.
        """
        key = defaults_key(device)
        passes = self.round_passes or DEFAULT_ROUND_PASSES[key]
        return EngineSettings(
            batching=self.batching,
            batch_wait_ms=self.batch_wait_ms,
            max_round_tokens=passes * self.batch_limits(key).max_batch_tokens,
            queue_timeout_ms=self.queue_timeout_ms,
        )

    def input_rules(self) -> InputRules:
        """Limits on one request, the same for HTTP and gRPC."""
        return InputRules(
            max_pairs=self.max_pairs_per_request,
            max_sentence_chars=self.max_sentence_chars,
            max_body_bytes=self.max_body_bytes,
        )

    def key(self) -> ApiKey | None:
        """The API key both protocols require, or None (the default: no key)."""
        return ApiKey(self.api_key.get_secret_value()) if self.api_key is not None else None

    def grpc(self) -> GrpcOptions | None:
        """Where the gRPC server listens; None when it is off. Several workers share the port (SO_REUSEPORT)."""
        if not self.grpc_enabled:
            return None
        return GrpcOptions(
            self.grpc_host,
            self.grpc_port,
            self.grpc_grace_s,
            reuse_port=self.front_workers > 1,
            max_message_bytes=self.input_rules().body_limit,
            api_key=self.key(),
            access_log=self.access_lines,
        )
