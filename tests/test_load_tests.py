"""Smoke tests of the benchmark harness (load_tests/): every output written, every point measured, no errors.

Timings are never asserted: these runs are a second per point on a shared CI machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load_tests.bench import BenchConfig, main, parse_args

QUICK = [
    *("--mixes", "1,4", "--concurrency", "1,2", "--targets", "1x2", "--repeats", "2"),
    *("--rates", "50%", "--seconds", "0.5", "--warmup", "0.2", "--burst-seconds", "0.5", "--probe-requests", "5"),
]


def _run(package: Path, output: Path, servers: str) -> dict:
    code = main(["--servers", servers, "--model", str(package), "--output", str(output), *QUICK])
    results = json.loads((output / "results.json").read_text())
    assert code == 0, results["failures"]
    return results


def _check(results: dict, output: Path, servers: list[str]) -> None:
    assert results["failures"] == []
    for server in servers:
        points = {(p["mix"], p["mode"], p["concurrency"]): p for p in results["points"] if p["server"] == server}
        closed = {(mix, clients) for mix, mode, clients in points if mode == "closed"}
        assert closed == {(1, 1), (1, 2), (4, 1), (4, 2)}, server
        assert len(points[(1, "closed", 2)]["runs"]) == 2  # the target point, repeated
        assert sum(mode == "open" for _, mode, _ in points) == 2  # one rate per mix
        for point in points.values():
            assert point["errors"] == {}, (server, point)
            assert point["ok"] > 0 and point["pairs_per_s"] > 0
        assert [p["server"] for p in results["probes"]].count(server) == 1
    markdown = (output / "results.md").read_text()
    assert "## Peak throughput" in markdown and "## Lone single pair" in markdown
    for mix in (1, 4):
        assert (output / f"throughput-latency-mix{mix}.png").stat().st_size > 10_000
        assert f"throughput-latency-mix{mix}.png" in markdown


def test_config_from_yaml_then_flags(tmp_path):
    config_file = tmp_path / "bench.yaml"
    config_file.write_text("servers: [a, d]\nmixes: [1, 64]\nseconds: 2\nenv: {KO_STS_MAX_BATCH_TOKENS: '512'}\n")
    config = parse_args(["--config", str(config_file), "--concurrency", "1,8", "--env", "KO_STS_BATCHING=false"])
    assert config.servers == ["service", "in-process"]
    assert (config.mixes, config.concurrency, config.seconds) == ([1, 64], [1, 8], 2.0)
    assert config.env == {"KO_STS_BATCHING": "false"}  # a flag replaces the file's value
    with pytest.raises(ValueError, match="MIXxCLIENTS"):
        BenchConfig(targets=["64"])
    with pytest.raises(ValueError, match="unknown server"):
        BenchConfig(servers=["triton"])


def test_in_process_ceilings(trained_package, tmp_path):
    results = _run(trained_package, tmp_path / "out", "in-process,model-only")
    _check(results, tmp_path / "out", ["in-process"])
    assert results["model_only"]["pairs_per_s"] > 0
    batches = [p["mean_batch_pairs"] for p in results["points"] if p["server"] == "in-process"]
    assert all(b is not None and b >= 1 for b in batches)


def test_latency_stages_each_add_to_the_last(trained_package, capsys):
    from load_tests.latency import main as latency

    assert latency([str(trained_package), "--backend", "onnx", "--device", "cpu", "--calls", "5"]) == 0
    stages = json.loads(capsys.readouterr().out)
    assert list(stages) == ["tokenise", "forward", "engine", "link", "front"]
    assert all(0 < stage["p50_ms"] <= stage["p90_ms"] for stage in stages.values())


@pytest.mark.slow
def test_http_service_and_seed_baseline(trained_package, tmp_path):
    """`bentoml serve` (over HTTP, then gRPC on the same running server) and the seed-design FastAPI app, started,
    loaded and stopped by the harness."""
    results = _run(trained_package, tmp_path / "out", "service,grpc,baseline,in-process")
    _check(results, tmp_path / "out", ["service", "grpc", "baseline", "in-process"])
    service = [p for p in results["points"] if p["server"] in ("service", "grpc")]
    assert all(p["mean_batch_pairs"] is not None for p in service)  # scraped from /metrics
    assert all(p["server_cpu"] is not None for p in service)
    assert (tmp_path / "out/server-a-service.log").is_file()
    assert results["servers"]["grpc"]["shared_with"] == "service"  # one start for both protocols
    assert not (tmp_path / "out/server-f-grpc.log").exists()
    assert "running (service's)" in (tmp_path / "out/results.md").read_text()


@pytest.mark.slow
def test_clients_benchmark_measures_the_four_clients(client_service, tmp_path):
    from load_tests.clients import CLIENTS
    from load_tests.clients import main as clients

    variables = tmp_path / "service.env"
    variables.write_text("".join(f"{name}={value}\n" for name, value in client_service.items()))
    quick = ["--callers", "4", "--seconds", "0.5", "--warmup", "0.2", "--repeats", "2"]
    assert clients(["--env-file", str(variables), "--output", str(tmp_path / "out"), *quick]) == 0
    results = json.loads((tmp_path / "out/results.json").read_text())
    measured = sorted((run["client"], run["repeat"]) for run in results["runs"])
    assert measured == sorted((client, repeat) for client in CLIENTS for repeat in (0, 1))
    assert all(r["calls"] > 0 and r["pairs_per_s"] > 0 for r in results["runs"])
    assert {p: len(r) for p, r in results["async_over_sync_per_round"].items()} == {"http": 2, "grpc": 2}
    assert results["model"] == client_service["KO_STS_TEST_MODEL_TAG"]
    assert "| grpc async |" in (tmp_path / "out/results.md").read_text()


def test_in_process_engine_serves_the_services_symmetry(trained_package):
    from load_tests.servers import InProcessEngine, load_service_scorer

    env = {"KO_STS_BACKEND": "onnx", "KO_STS_DEVICE": "cpu", "KO_STS_SYMMETRY": "canonical"}
    engine = InProcessEngine(trained_package, env)
    engine.start(timeout_s=60)
    try:
        assert engine.frontend.codec.settings.symmetry == "canonical"  # KO_STS_SYMMETRY, not the package's own
        scorer, _ = load_service_scorer(trained_package, env)
        assert scorer.settings.symmetry == "canonical"  # the model-only ceiling scores the same way
    finally:
        engine.stop()
