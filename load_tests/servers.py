"""The servers a benchmark compares, each started in turn on this machine and stopped after.

- ``service`` (a) and ``unbatched`` (c): ``bentoml serve`` of this repository's ``service.py``;
  ``unbatched`` sets ``KO_STS_BATCHING=false`` (every request its own forward passes).
- ``grpc`` (f), ``rank`` (g), ``grpc-rank`` (h): the same ``bentoml serve`` driven over gRPC
  (``Score``), over HTTP ``POST /rank``, and over gRPC ``Rank`` (a query and MIX candidates).
- ``baseline`` (b): the seed project's design, ``load_tests/baselines/seed_app.py`` under uvicorn.
- ``in-process`` (d): the service's engine in this process, fed by asyncio submitters (no HTTP).
- ``model-only`` (e): the runtime's forward passes over batches padded up front (no tokenising,
  no queue): what the hardware gives.

HTTP servers run as subprocesses in their own process group on a free port; the benchmark
waits for ``/readyz`` and reports the log's tail when a server does not come up.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load_tests.load import EngineTransport, GrpcTransport, HttpTransport, Pair, Transport

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServerKind:
    key: str
    name: str
    description: str


SERVERS = {
    kind.name: kind
    for kind in (
        ServerKind("a", "service", "this service over HTTP (bentoml serve, engine with cross-request batching)"),
        ServerKind("b", "baseline", "seed design: FastAPI + uvicorn, one PyTorch forward per request, no batching"),
        ServerKind("c", "unbatched", "this service over HTTP with KO_STS_BATCHING=false (each request on its own)"),
        ServerKind("d", "in-process", "the service's engine in-process: asyncio submitters, no HTTP (ceiling)"),
        ServerKind("e", "model-only", "runtime forward passes over batches padded up front (model ceiling)"),
        ServerKind("f", "grpc", "this service over gRPC (Score on the same bentoml serve, engine shared with HTTP)"),
        ServerKind("g", "rank", "this service over HTTP, POST /rank: a query and MIX candidates per request"),
        ServerKind("h", "grpc-rank", "this service over gRPC, Rank: a query and MIX candidates per request"),
    )
}
BY_KEY = {kind.key: kind for kind in SERVERS.values()}


def server_kind(name: str) -> ServerKind:
    """Looks a server up by name (``service``) or letter (``a``)."""
    kind = SERVERS.get(name) or BY_KEY.get(name)
    if kind is None:
        choices = ", ".join(f"{k.key}/{k.name}" for k in SERVERS.values())
        raise ValueError(f"unknown server {name!r}; choose from {choices}")
    return kind


class ServerFailed(RuntimeError):
    """A server did not start, or died while being measured."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class HttpServer:
    """A server subprocess serving ``POST /score``.

    Args:
        command: the command line (run from the repository root).
        env: environment variables added to this process's environment.
        host, port: where it listens.
        log_path: its stdout and stderr.
        metrics: whether it exposes ``ko_sts_*`` metrics on ``/metrics``.
        api: the requests sent: ``score`` or ``rank``.
        grpc_address: ``host:port`` where the server also answers gRPC, if it does.
        grpc: send the requests over gRPC (to ``grpc_address``) instead of HTTP.
    """

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        host: str,
        port: int,
        log_path: Path,
        metrics: bool,
        description: str = "",
        api: str = "score",
        grpc_address: str | None = None,
        grpc: bool = False,
        grpc_channels: int = 1,
    ):
        if grpc and not grpc_address:
            raise ValueError("grpc=True needs the server's grpc_address")
        self.command = command
        self.api = api
        self.grpc_address = grpc_address
        self.grpc = grpc
        self.grpc_channels = grpc_channels
        self.env = env
        self.url = f"http://{host}:{port}"
        self.log_path = log_path
        self.metrics = metrics
        self.description = description
        self.process: subprocess.Popen | None = None
        self._processes: dict[int, Any] = {}

    def start(self, timeout_s: float) -> float:
        """Starts the process and waits until ``/readyz`` answers 200; returns the seconds it took."""
        started = time.monotonic()
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the workers too
            )
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as response:
                    if response.status == 200:
                        ready_after = time.monotonic() - started
                        self.description = self.description or self._model_info()
                        return ready_after
            except (urllib.error.URLError, OSError):
                pass
            if self.process.poll() is not None:
                code = self.process.returncode
                raise ServerFailed(f"exited with code {code} before it was ready:\n{self.log_tail()}")
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise ServerFailed(f"not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def _model_info(self) -> str:
        """What the service says it serves (``POST /model_info``), for the report."""
        request = urllib.request.Request(self.url + "/model_info", data=b"{}", method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                info = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return ""
        return f"{info.get('tag')}: {info.get('backend')} on {info.get('device')}"

    def transport(self, timeout_s: float) -> Transport:
        if self.grpc:
            metrics_url = self.url if self.metrics else None
            channels = self.grpc_channels
            return GrpcTransport(self.grpc_address, timeout_s, self.api, metrics_url=metrics_url, channels=channels)
        return HttpTransport(self.url, timeout_s=timeout_s, metrics=self.metrics, api=self.api)

    def over(self, grpc: bool, api: str) -> HttpServer:
        """This server (the same running process) driven over gRPC or HTTP with ``api``'s requests."""
        if grpc and not self.grpc_address:
            raise ValueError(f"{self.url} does not answer gRPC")
        view = copy.copy(self)
        view.grpc, view.api = grpc, api
        return view

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(f"exited with code {self.process.returncode} during the run:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by the server and all its child processes (NaN without psutil)."""
        try:
            import psutil
        except ImportError:  # psutil comes with bentoml; a bare GPU box may lack it
            return float("nan")

        total = 0.0
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        for process in processes:
            # keep Process objects: psutil reports a process's own time, and children come and go
            process = self._processes.setdefault(process.pid, process)
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        """Ends the server's process group: SIGTERM, then SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def bentoml_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of the repository's service, with the bentoml next to this Python."""
    script = Path(sys.executable).parent / "bentoml"
    executable = [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]
    return [*executable, "serve", "--host", host, "--port", str(port)]


def service_server(
    host: str,
    env: dict[str, str],
    log_path: Path,
    api: str = "score",
    grpc: bool = False,
    description: str = "",
    grpc_channels: int = 1,
) -> HttpServer:
    """``bentoml serve`` of this repository's service on free HTTP and gRPC ports, driven over HTTP or gRPC.

    ``env`` holds its ``KO_STS_*`` settings (``KO_STS_MODEL_TAG`` among them); the gRPC port is
    never the default 50051, which another server may hold.
    """
    port, grpc_port = free_port(host), free_port(host)
    env = {**env, "KO_STS_GRPC_PORT": str(grpc_port)}
    command = bentoml_command(host, port)
    return HttpServer(
        command,
        env,
        host,
        port,
        log_path,
        metrics=True,
        description=description,
        api=api,
        grpc_address=f"{host}:{grpc_port}",
        grpc=grpc,
        grpc_channels=grpc_channels,
    )


def baseline_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "load_tests.baselines.seed_app:app"),
        *("--host", host, "--port", str(port)),
    ]


def service_settings(env: dict[str, str]):
    """The service's own settings (``serving.settings.Settings``) from ``KO_STS_*`` variables, as it reads them."""
    from serving.settings import Settings

    return Settings(**{key[len("KO_STS_") :].lower(): value for key, value in env.items() if key.startswith("KO_STS_")})


def load_service_scorer(model_dir: Path, env: dict[str, str]):
    """The scorer exactly as ``service.py`` builds it (backend, device, dtype, threads, batch limits)."""
    settings = service_settings(env)
    return settings.scorer(model_dir), settings


class CountingObserver:
    """Keeps the engine's batch sizes and queue times as the cumulative sums the service exports."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def _add(self, metric: str, value: float) -> None:
        self.totals[metric + "_sum"] = self.totals.get(metric + "_sum", 0.0) + value
        self.totals[metric + "_count"] = self.totals.get(metric + "_count", 0.0) + 1

    def tokenized(self, seconds: float) -> None:
        self._add("ko_sts_tokenization_duration_seconds", seconds)

    def request_done(self, queue_s: float, inference_s: float) -> None:
        self._add("ko_sts_queue_duration_seconds", queue_s)
        self._add("ko_sts_inference_duration_seconds", inference_s)

    def round_done(self, pairs: int, rows: int, tokens: int, padded_tokens: int, passes: int) -> None:
        self._add("ko_sts_batch_size", pairs)

    def queue_changed(self, queued_pairs: int) -> None:
        pass

    def request_refused(self, reason: str) -> None:
        pass


class InProcessEngine:
    """The service's front and engine, built from the same settings, in this process (server d)."""

    def __init__(self, model_dir: Path, env: dict[str, str]):
        self.model_dir = model_dir
        self.env = env
        self.engine = None
        self.frontend = None
        self.observer = CountingObserver()
        self.description = ""

    def start(self, timeout_s: float) -> float:
        from serving.frontend import Frontend
        from serving.startup import start_engine

        started = time.monotonic()
        settings = service_settings(self.env)
        self.engine = start_engine(settings, self.model_dir, "in-process", self.observer)
        codec = settings.codec(self.model_dir)  # the served symmetry (KO_STS_SYMMETRY), as service.py builds it
        self.frontend = Frontend(codec, self.engine, settings.tokenizer_threads, self.observer)
        self.description = str(self.engine)
        return time.monotonic() - started

    def transport(self, timeout_s: float) -> Transport:
        return EngineTransport(self.frontend, counters=lambda: self.observer.totals)

    def check_alive(self) -> None:
        pass

    cpu_seconds = None  # the engine shares this process with the client

    def stop(self) -> None:
        if self.frontend is not None:
            asyncio.run(self.frontend.close())  # its tokenizer pool, then the engine
            self.engine = self.frontend = None
            release_memory()


def release_memory() -> None:
    """Frees a runtime dropped in this process (its threads, and on a GPU its cached memory)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_only(model_dir: Path, env: dict[str, str], pairs: list[Pair], seconds: float, warmup: float) -> dict:
    """Pairs/s of bare forward passes: rows tokenised, sorted by length and cut by the service's limits up front.

    With ``KO_STS_TORCH_COMPILE`` on a GPU the model is compiled as the service compiles it. Passes are
    launched the way the engine launches them (the next one before the previous one's
    logits are collected); the clock stops when the last logits are on the host, so on a GPU
    every pass counted has finished. On a GPU the answer also holds the peak of device memory the
    passes took (``torch.cuda.max_memory_reserved``).
    """
    from models.scorer import compile_model, plan_passes

    scorer, settings = load_service_scorer(model_dir, env)
    compile_model(scorer, settings.torch_compile)  # as the service's model process does (KO_STS_TORCH_COMPILE)
    rows = scorer.encode(pairs)
    passes = [(rows[indices], indices) for indices in plan_passes(rows.lengths, scorer.limits)]
    widths = [int(scorer.limits.padded(int(batch.lengths.max()))) for batch, _ in passes]
    runtime, pad_id = scorer.runtime, scorer.tokenizer.pad_id

    def sweep() -> None:
        pending = None
        for (batch, _), width in zip(passes, widths):
            launched = runtime.launch(batch, width, pad_id)
            if pending is not None:
                pending()
            pending = launched
        pending()

    torch = sys.modules.get("torch")
    cuda = torch is not None and scorer.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        sweep()
    sweeps = 0
    cpu0, started = time.process_time(), time.perf_counter()
    while sweeps == 0 or time.perf_counter() - started < seconds:
        sweep()
        sweeps += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    padded = sum(len(batch) * width for (batch, _), width in zip(passes, widths))
    return {
        "pairs": len(pairs),
        "pairs_per_s": sweeps * len(pairs) / elapsed,
        "rows_per_s": sweeps * len(rows) / elapsed,
        "passes": len(passes),
        "mean_pass_ms": 1000.0 * elapsed / (sweeps * len(passes)),
        "mean_batch_pairs": len(pairs) / len(passes),
        "padding": 1.0 - rows.tokens / padded,
        "client_cpu": cpu / elapsed,
        "device_memory_peak_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
        "description": f"{runtime.description}, {scorer.limits}",
    }
