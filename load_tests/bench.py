"""Scripted benchmark: the same model and request mix through each server in turn, one report.

    python -m load_tests.bench                                    # CPU default (load_tests/configs/cpu.yaml)
    python -m load_tests.bench --config load_tests/configs/gpu.yaml --model outputs/koelectra/model
    python -m load_tests.bench --servers service,in-process --mixes 1 --concurrency 1,16 --seconds 3

Servers (see :mod:`load_tests.servers`): (a) ``service``, (b) ``baseline``, (c) ``unbatched``,
(d) ``in-process``, (e) ``model-only``, and the service over other APIs: (f) ``grpc``, (g) ``rank``,
(h) ``grpc-rank``. For each, in turn: start it, run a closed-loop
concurrency sweep per request mix, repeat the target points (medians), run open-loop arrival
rates, then time lone single pairs before and right after a saturating burst; stop it. The
in-process ceilings run first, so open-loop rates given as ``50%`` mean the same offered load
(half the in-process peak) for every server.

Writes ``results.json``, ``results.md`` and PNG plots into the output folder
(``load_tests/results/<timestamp>-<host>/`` by default). Flags override the YAML file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import platform
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from load_tests.gpu_memory import PeakGpuMemory
from load_tests.load import LoadDriver, read_sentence_pairs, request_pairs
from load_tests.report import write_report
from load_tests.servers import (
    REPO,
    HttpServer,
    InProcessEngine,
    ServerFailed,
    ServerKind,
    baseline_command,
    free_port,
    model_only,
    release_memory,
    server_kind,
    service_server,
)

logger = logging.getLogger("load_tests.bench")
DEFAULT_CONFIG = REPO / "load_tests/configs/cpu.yaml"
RESULTS_DIR = REPO / "load_tests/results"


def _option(default: Any, help: str, kind: str = "value"):
    """A config field: its default, its help text, and how its flag is parsed (value, ints, strs, env)."""
    metadata = {"help": help, "kind": kind}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class BenchConfig:
    """What to measure. Every field is a YAML key and a ``--flag`` (lists comma-separated)."""

    servers: list[str] = _option(
        ["service", "baseline", "unbatched", "in-process"],
        "servers to compare: service (a), baseline (b), unbatched (c), in-process (d), model-only (e), "
        "grpc (f), rank (g), grpc-rank (h)",
        "strs",
    )
    model: str = _option("ko-sts:latest", "model: a BentoML store tag or a model package folder (stored if needed)")
    baseline_model: str | None = _option(
        None, "package with PyTorch weights for the baseline (default: the model's own folder)"
    )
    backend: str = _option("onnx", "KO_STS_BACKEND of the service and the in-process ceilings: onnx, openvino or torch")
    device: str = _option("cpu", "KO_STS_DEVICE: cpu, cuda or auto; the baseline runs on the same device")
    baseline_dtype: str = _option("float32", "baseline's PyTorch dtype: float32 (the seed's) or float16 (CUDA)")
    env: dict[str, str] = _option(
        {}, "extra service settings, e.g. KO_STS_MAX_BATCH_TOKENS=16384 (flag: --env KEY=VALUE, repeatable)", "env"
    )
    host: str = _option("127.0.0.1", "address the HTTP servers listen on and the client connects to")
    service_url: str | None = _option(
        None, "measure an already-running service at this URL as server a instead of starting one"
    )
    grpc_channels: int = _option(1, "gRPC channels (connections) the client spreads its calls over (grpc, grpc-rank)")
    mixes: list[int] = _option([1, 16], "pairs per request, one sweep each", "ints")
    concurrency: list[int] = _option([1, 4, 16], "closed-loop concurrent clients (sweep points)", "ints")
    rates: list[str] = _option(
        ["50%"], "open-loop arrival rates in pairs/s, or N% of the in-process peak pairs/s for the mix", "strs"
    )
    seconds: float = _option(5.0, "measured seconds per point")
    warmup: float = _option(1.0, "seconds of the same load before each point's window")
    targets: list[str] = _option(["1x16"], "points repeated until they have `repeats` runs: MIXxCLIENTS", "strs")
    repeats: int = _option(3, "runs of each target point (the report gives medians)")
    burst_seconds: float = _option(5.0, "saturating burst between the two lone-pair probes (0: no probe)")
    burst_mix: int | None = _option(None, "pairs per request in the burst (default: the largest mix)")
    burst_concurrency: int | None = _option(None, "clients in the burst (default: the largest concurrency)")
    probe_requests: int = _option(100, "lone single-pair requests timed before and after the burst")
    max_in_flight: int = _option(1000, "open loop: arrivals beyond this many unanswered are counted as client_overflow")
    request_timeout: float = _option(60.0, "seconds before a request counts as a timeout")
    startup_timeout: float = _option(300.0, "seconds a server may take to become ready")
    data: str = _option("data/klue-sts/klue_sts_dev.jsonl", "sentence pairs, cycled (KLUE-STS dev)")
    output: str | None = _option(None, "output folder (default load_tests/results/<timestamp>-<host>)")

    def __post_init__(self) -> None:
        self.servers = [server_kind(name).name for name in self.servers]  # raises on an unknown name
        if not self.mixes or min(self.mixes) < 1:
            raise ValueError("mixes must be positive pair counts, e.g. --mixes 1,16,64")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("concurrency must be positive client counts, e.g. --concurrency 1,4,16")
        for rate in self.rates:
            _parse_rate(rate)
        for target in self.targets:
            _parse_target(target)
        if self.seconds <= 0 or self.warmup < 0 or self.repeats < 1:
            raise ValueError("seconds must be > 0, warmup >= 0 and repeats >= 1")

    @property
    def service_env(self) -> dict[str, str]:
        """``KO_STS_*`` variables of the service (a), and the same settings for c, d and e."""
        return {"KO_STS_BACKEND": self.backend, "KO_STS_DEVICE": self.device, **self.env}


def _parse_rate(rate: str) -> tuple[float, bool]:
    """``"250"`` -> (250.0, False) pairs/s; ``"50%"`` -> (0.5, True) of the reference peak."""
    text = str(rate).strip()
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise ValueError(
            f"rate {rate!r}: give pairs/s (e.g. 500) or a share of the in-process peak (e.g. 50%)"
        ) from None
    if value <= 0:
        raise ValueError(f"rate {rate!r} must be positive")
    return (value / 100.0, True) if text.endswith("%") else (value, False)


def _parse_target(target: str) -> tuple[int, int]:
    """``"64x16"`` -> (mix 64, 16 clients)."""
    try:
        mix, clients = (int(part) for part in str(target).lower().split("x"))
    except ValueError:
        raise ValueError(f"target {target!r}: write MIXxCLIENTS, e.g. 64x64 (64-pair requests, 64 clients)") from None
    return mix, clients


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """Defaults, then the YAML file (``--config``), then flags."""
    parser = argparse.ArgumentParser(
        prog="python -m load_tests.bench",
        description="Compare this service, the seed-design baseline and the in-process ceilings under the same load. "
        "Values come from the built-in defaults shown below, then the --config file, then these flags.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"YAML file (default {DEFAULT_CONFIG})")
    for item in dataclasses.fields(BenchConfig):
        flag = "--" + item.name.replace("_", "-")
        default = item.default_factory() if item.default is dataclasses.MISSING else item.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help = item.metadata["help"] + ("" if "default" in item.metadata["help"] else f" (default: {shown})")
        help = help.replace("%", "%%")
        action = "append" if item.metadata["kind"] == "env" else "store"
        parser.add_argument(flag, dest=item.name, action=action, default=argparse.SUPPRESS, help=help)
    args = vars(parser.parse_args(argv))
    values = yaml.safe_load(Path(args.pop("config")).read_text()) or {}
    unknown = set(values) - {item.name for item in dataclasses.fields(BenchConfig)}
    if unknown:
        parser.error(f"unknown key(s) in the config file: {', '.join(sorted(unknown))}")
    for item in dataclasses.fields(BenchConfig):
        if item.name in args:
            values[item.name] = _from_flag(item, args[item.name])
    try:
        return BenchConfig(**values)
    except (TypeError, ValueError) as error:
        parser.error(str(error))


def _from_flag(item: dataclasses.Field, value: Any) -> Any:
    kind = item.metadata["kind"]
    if kind == "env":
        pairs = [entry.split("=", 1) for entry in value]
        if any(len(pair) != 2 for pair in pairs):
            raise SystemExit(f"--env takes KEY=VALUE, got {value}")
        return dict(pairs)
    if kind in ("ints", "strs"):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        return [int(part) for part in parts] if kind == "ints" else parts
    if value.lower() in ("none", "null", ""):
        return None
    for name, convert in (("int", int), ("float", float)):
        if str(item.type).startswith(name):  # "int", "int | None", "float"
            return convert(value)
    return value


@dataclass
class ModelRef:
    """The benchmarked model: a store tag (for ``bentoml serve``) and a folder (everything else)."""

    spec: str
    folder: Path
    tag: str | None = None

    @classmethod
    def resolve(cls, spec: str, need_tag: bool) -> ModelRef:
        """A package folder is used as it is, or stored first when ``need_tag``; a tag is looked up in the store."""
        folder = Path(spec)
        if folder.is_dir():
            if not need_tag:
                return cls(spec, folder.resolve())
            from models.store import save_package

            spec = str(save_package(folder).tag)
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            stored = bentoml.models.get(spec)  # the stored copy: what the service loads
        except NotFound:
            raise SystemExit(
                f"model {spec!r} is neither a package folder nor in the model store; "
                "`bentoml models list` shows the stored ones, `python -m models.store PACKAGE` adds one"
            ) from None
        return cls(spec, Path(stored.path), str(stored.tag))


# Kinds measured on one running ``bentoml serve``, in turn, when they come one after the other: its HTTP and gRPC
# ports serve both APIs from the same engine, so another start (a minute on a GPU, compiling) would add nothing.
SHARED_SERVER = frozenset({"service", "grpc", "rank", "grpc-rank"})


def _api(kind: ServerKind) -> str:
    """The API a served kind's requests call: ``rank`` or ``score``."""
    return "rank" if kind.name in ("rank", "grpc-rank") else "score"


@dataclass
class _Started:
    """A server the bench started, with the GPU memory sampler that runs from before its start to its stop."""

    server: Any
    kind: str  # the kind it was started for
    memory: PeakGpuMemory | None

    def stop(self) -> None:
        self.server.stop()
        if self.memory is not None:
            self.memory.stop()


class Bench:
    """Runs one benchmark and collects its results (a plain dict written by :mod:`load_tests.report`)."""

    def __init__(self, config: BenchConfig, output: Path):
        self.config = config
        self.output = output
        self._running: _Started | None = None  # a bentoml serve kept for the next kinds
        self.pairs = read_sentence_pairs(REPO / config.data)
        self.results: dict[str, Any] = {
            "config": dataclasses.asdict(config),
            "machine": machine_info(),
            "started": datetime.now().isoformat(timespec="seconds"),
            "servers": {},
            "points": [],
            "probes": [],
            "model_only": None,
            "failures": [],
            "notes": [],
        }

    def run(self) -> dict[str, Any]:
        config = self.config
        kinds = [server_kind(name) for name in config.servers]
        served = {"unbatched", "grpc", "rank", "grpc-rank"}  # bentoml serve of the stored model
        need_tag = bool(served & set(config.servers)) or ("service" in config.servers and not config.service_url)
        model = ModelRef.resolve(config.model, need_tag)
        self.results["model"] = {"spec": model.spec, "tag": model.tag, "folder": str(model.folder)}
        # the in-process ceilings first: open-loop rates given in % refer to the in-process peak
        for kind in sorted(kinds, key=lambda k: k.key not in ("d", "e")):
            logger.info("== %s (%s): %s", kind.key, kind.name, kind.description)
            entry = {"key": kind.key, "description": kind.description, "ready_after_s": None, "runtime": None}
            self.results["servers"][kind.name] = entry
            if not self._shared_server(kind):
                self._stop_running()
            if kind.name == "model-only":
                self._model_only(model, entry)
            else:
                self._serve_and_measure(kind, model, entry)
        self._stop_running()
        self.results["finished"] = datetime.now().isoformat(timespec="seconds")
        self.results["machine"]["load_average_end"] = _load_average()
        return self.results

    def _model_only(self, model: ModelRef, entry: dict) -> None:
        config = self.config
        try:
            result = model_only(model.folder, config.service_env, self.pairs, config.seconds, config.warmup)
        except Exception as error:  # reported, not hidden
            self._failed("model-only", "run", error)
            return
        finally:
            release_memory()
        entry["runtime"] = result.pop("description")
        self.results["model_only"] = result
        logger.info(
            "model-only: %.0f pairs/s (%d passes, %.2f ms each)",
            result["pairs_per_s"],
            result["passes"],
            result["mean_pass_ms"],
        )

    def _server(self, kind: ServerKind, model: ModelRef):
        config = self.config
        log = self.output / f"server-{kind.key}-{kind.name}.log"
        if kind.name == "in-process":
            return InProcessEngine(model.folder, config.service_env)
        if kind.name == "baseline":
            from models.package import has_torch_weights

            folder = Path(config.baseline_model).resolve() if config.baseline_model else model.folder
            if not has_torch_weights(folder):
                raise ServerFailed(
                    f"{folder} holds no PyTorch weights (model.safetensors), which the seed design needs; "
                    "pass --baseline-model PACKAGE with a package that has them"
                )
            env = {"SEED_MODEL_DIR": str(folder), "SEED_DEVICE": config.device, "SEED_DTYPE": config.baseline_dtype}
            what = f"torch {config.baseline_dtype} eager on {config.device}, {folder}"
            port = free_port(config.host)
            return HttpServer(baseline_command(config.host, port), env, config.host, port, log, False, what)
        env = {**config.service_env, "KO_STS_MODEL_TAG": model.tag or ""}
        if kind.name == "unbatched":
            env["KO_STS_BATCHING"] = "false"
        grpc = kind.name in ("grpc", "grpc-rank")
        return service_server(config.host, env, log, api=_api(kind), grpc=grpc, grpc_channels=config.grpc_channels)

    def _shared_server(self, kind: ServerKind) -> bool:
        """Whether ``kind`` is measured on the running ``bentoml serve`` that the kinds before it started."""
        return kind.name in SHARED_SERVER and not (kind.name == "service" and self.config.service_url)

    def _stop_running(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None

    def _serve_and_measure(self, kind: ServerKind, model: ModelRef, entry: dict) -> None:
        config = self.config
        shared = self._shared_server(kind)
        if shared and self._running is not None:
            started = self._running
            server = started.server.over(grpc=kind.name.startswith("grpc"), api=_api(kind))
            entry["runtime"] = getattr(server, "description", None) or None
            entry["shared_with"] = started.kind
            logger.info("%s: measured on the server started for %s", kind.name, started.kind)
        else:
            if kind.name == "service" and config.service_url:
                server = ExternalServer(config.service_url)
            else:
                try:
                    server = self._server(kind, model)
                except Exception as error:
                    self._failed(kind.name, "start", error)
                    return
            # sampled from before the start: the server's start-up (compiling, CUDA graphs) is part of its peak
            started = _Started(server, kind.name, PeakGpuMemory().start() if config.device == "cuda" else None)
            try:
                entry["ready_after_s"] = round(server.start(config.startup_timeout), 1)
                entry["runtime"] = getattr(server, "description", None) or None
                logger.info("%s ready after %.1f s", kind.name, entry["ready_after_s"])
            except Exception as error:
                self._failed(kind.name, "start", error)
                started.stop()
                return
        measured = self._measure_on(kind, server)
        if started.memory is not None:
            entry["gpu_memory_peak_mib"] = started.memory.peak  # the server's, from its start to now
        if measured and shared:
            self._running = started  # kept for the next kinds; stopped once they are measured
        else:  # not shared, or it failed (a server that failed its points is not measured again)
            started.stop()
            self._running = None

    def _measure_on(self, kind: ServerKind, server) -> bool:
        """Measures ``kind``'s points on a started server; False if it failed."""
        try:
            asyncio.run(self._measure(kind, server))
            return True
        except Exception as error:
            tail = getattr(server, "log_tail", lambda: "")()
            self._failed(kind.name, "load", error, tail)
            return False

    async def _measure(self, kind: ServerKind, server) -> None:
        config = self.config
        transport = server.transport(config.request_timeout)
        await transport.start()
        try:
            driver = LoadDriver(transport, server.cpu_seconds, drain_s=config.request_timeout)
            mixes = sorted(set(config.mixes) | {1} | {mix for mix, _ in map(_parse_target, config.targets)})
            payloads = {mix: [transport.prepare(p) for p in request_pairs(self.pairs, mix)] for mix in mixes}

            async def closed(mix: int, clients: int) -> None:
                window = await driver.closed_loop(payloads[mix], mix, clients, config.seconds, config.warmup)
                server.check_alive()
                self._record(kind, mix, "closed", window.summary(), concurrency=clients)

            for mix in config.mixes:  # warm up every request shape (not recorded)
                await driver.closed_loop(payloads[mix], mix, max(config.concurrency), config.warmup, 0.0)
            for mix in config.mixes:
                for clients in config.concurrency:
                    await closed(mix, clients)
            for target in config.targets:
                mix, clients = _parse_target(target)
                while len(self._point(kind.name, mix, "closed", clients)["runs"]) < config.repeats:
                    await closed(mix, clients)
            for mix in config.mixes:
                for rate in sorted(config.rates, key=lambda r: self._rate_pairs_s(kind, mix, r)):
                    pairs_s = self._rate_pairs_s(kind, mix, rate)
                    window = await driver.open_loop(
                        payloads[mix], mix, pairs_s / mix, config.seconds, config.warmup, config.max_in_flight
                    )
                    server.check_alive()
                    summary = window.summary()
                    self._record(kind, mix, "open", summary, rate_pairs_s=pairs_s, rate=str(rate))
                    if summary["pairs_per_s"] < 0.8 * pairs_s:
                        # higher rates would only pile up more work in the server and delay the next point
                        self.results["notes"].append(
                            f"{kind.name}: open loop, mix {mix}: served {summary['pairs_per_s']:.0f} of "
                            f"{pairs_s:.0f} pairs/s offered; higher rates skipped"
                        )
                        break
            if config.burst_seconds > 0 and config.probe_requests > 0:
                await self._probe(kind, driver, payloads, server)
        finally:
            await transport.stop()

    async def _probe(self, kind: ServerKind, driver: LoadDriver, payloads: dict, server) -> None:
        """Lone single pairs at rest, a saturating burst, lone single pairs again at once."""
        config = self.config
        mix = config.burst_mix or max(config.mixes)
        clients = config.burst_concurrency or max(config.concurrency)
        if mix not in payloads:
            payloads[mix] = [driver.transport.prepare(p) for p in request_pairs(self.pairs, mix)]
        before = await driver.lone_pairs(payloads[1], config.probe_requests)
        burst = await driver.closed_loop(payloads[mix], mix, clients, config.burst_seconds, 0.0)
        after = await driver.lone_pairs(payloads[1], config.probe_requests)
        server.check_alive()
        probe = {
            "server": kind.name,
            "key": kind.key,
            "burst": {"mix": mix, "concurrency": clients, "seconds": config.burst_seconds, **burst.summary()},
            "before": _latency_stats(before),
            "after": _latency_stats(after),
        }
        self.results["probes"].append(probe)
        logger.info(
            "%s lone pair p50 %.2f ms before, %.2f ms after a burst (first after: %.2f ms)",
            kind.name,
            probe["before"]["p50_ms"],
            probe["after"]["p50_ms"],
            probe["after"]["first_ms"],
        )

    def _rate_pairs_s(self, kind: ServerKind, mix: int, rate: str) -> float:
        value, relative = _parse_rate(rate)
        if not relative:
            return value
        reference = self._peak("in-process", mix) or self._peak(kind.name, mix)
        if not reference:
            raise ServerFailed(f"rate {rate} needs a closed-loop peak for mix {mix}, and none was measured")
        return value * reference

    def _peak(self, server: str, mix: int) -> float | None:
        points = self.results["points"]
        values = [p["pairs_per_s"] for p in points if (p["server"], p["mix"], p["mode"]) == (server, mix, "closed")]
        return max(values) if values else None

    def _point(self, server: str, mix: int, mode: str, concurrency: int | None = None, rate: str | None = None) -> dict:
        for point in self.results["points"]:
            if (point["server"], point["mix"], point["mode"], point.get("concurrency"), point.get("rate")) == (
                server,
                mix,
                mode,
                concurrency,
                rate,
            ):
                return point
        point = {"server": server, "mix": mix, "mode": mode, "concurrency": concurrency, "rate": rate, "runs": []}
        self.results["points"].append(point)
        return point

    def _record(self, kind: ServerKind, mix: int, mode: str, summary: dict, concurrency=None, rate=None, **extra):
        point = self._point(kind.name, mix, mode, concurrency, rate)
        point.update(extra)
        point["key"] = kind.key
        point["runs"].append({**summary, "load_1m": (_load_average() or [None])[0]})
        point.update(_medians(point["runs"]))
        load = f"{concurrency} clients" if mode == "closed" else f"open {extra['rate_pairs_s']:.0f} pairs/s"
        logger.info(
            "%s mix %d, %s: %.0f pairs/s, p50 %.2f ms, p99 %.2f ms, errors %s, client CPU %.2f cores%s",
            kind.name,
            mix,
            load,
            summary["pairs_per_s"],
            summary["p50_ms"],
            summary["p99_ms"],
            summary["errors"] or "none",
            summary["client_cpu"],
            "" if summary["mean_batch_pairs"] is None else f", batch {summary['mean_batch_pairs']:.1f} pairs",
        )

    def _failed(self, server: str, phase: str, error: BaseException, log_tail: str = "") -> None:
        message = f"{type(error).__name__}: {error}"
        if log_tail and log_tail not in message:
            message += f"\n{log_tail}"
        logger.error("%s failed (%s): %s", server, phase, message)
        self.results["failures"].append({"server": server, "phase": phase, "message": message})


class ExternalServer:
    """A service already running elsewhere (``--service-url``): measured, never started or stopped."""

    cpu_seconds = None

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.description = f"external {self.url}"

    def start(self, timeout_s: float) -> float:
        return 0.0

    def transport(self, timeout_s: float):
        from load_tests.load import HttpTransport

        return HttpTransport(self.url, timeout_s=timeout_s)

    def check_alive(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _medians(runs: list[dict]) -> dict:
    """The median of every numeric field over repeated runs; errors and counts summed."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if key == "errors":
            total: dict[str, int] = {}
            for run in runs:
                for label, count in run["errors"].items():
                    total[label] = total.get(label, 0) + count
            merged[key] = total
        elif key in ("requests", "ok"):
            merged[key] = sum(run[key] for run in runs)
        elif isinstance(value, int | float) or value is None:
            values = [run[key] for run in runs if run[key] is not None]
            merged[key] = statistics.median(values) if values else None
    return merged


def _latency_stats(latencies_ms: list[float]) -> dict:
    ok = sorted(x for x in latencies_ms if x == x)  # NaN marks a failed request
    if not ok:
        nan = float("nan")
        return {
            "p50_ms": nan,
            "p90_ms": nan,
            "max_ms": nan,
            "first_ms": nan,
            "first10_max_ms": nan,
            "failed": len(latencies_ms),
        }
    quantiles = statistics.quantiles(ok, n=10, method="inclusive") if len(ok) > 1 else [ok[0]] * 9
    return {
        "p50_ms": statistics.median(ok),
        "p90_ms": quantiles[8],
        "max_ms": ok[-1],
        "first_ms": latencies_ms[0],
        "first10_max_ms": max(latencies_ms[:10]),
        "failed": len(latencies_ms) - len(ok),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Host, cores, GPU and versions, recorded with every result."""
    info = {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_start": _load_average(),
        "gpu": None,
    }
    try:
        import subprocess

        gpus = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if gpus.returncode == 0 and gpus.stdout.strip():
            info["gpu"] = gpus.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for module in ("bentoml", "onnxruntime", "torch", "transformers", "aiohttp", "fastapi", "uvicorn"):
        try:
            from importlib.metadata import version

            versions[module] = version(module)
        except Exception:
            versions[module] = None
    info["versions"] = versions
    return info


def default_output() -> Path:
    return RESULTS_DIR / f"{datetime.now():%Y%m%d-%H%M%S}-{socket.gethostname()}"


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and writes the report; returns 1 if a server failed, else 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    output = Path(config.output) if config.output else default_output()
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = Bench(config, output).run()
    results["wall_s"] = round(time.monotonic() - started, 1)
    write_report(results, output)
    logger.info("report: %s (%.0f s)", output / "results.md", results["wall_s"])
    if results["failures"]:
        logger.warning("%d failure(s); see results.md", len(results["failures"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
