"""`bentoml serve` in a subprocess for the tests that talk to a running service (hardening, fuzzing, clients).

    python -m tests.live_service --env-file PATH     # the tiny model served for the client tests

The command line serves the tests' tiny model (tests/conftest.py) with the client tests' settings,
writes the ``KO_STS_TEST_*`` variables that tell tests/test_client_service.py where it is, and
serves until SIGTERM: scripts/ci-client.sh runs that test module on other Pythons against it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

# The client tests' service: an API key (the clients send it), a small request limit (too_large is
# cheap to reach), and no queue refusals on a loaded machine (the tests script refusals themselves).
CLIENT_TEST_KEY = "client-test-key"
CLIENT_TEST_SETTINGS = {
    "KO_STS_BACKEND": "onnx",
    "KO_STS_API_KEY": CLIENT_TEST_KEY,
    "KO_STS_MAX_PAIRS_PER_REQUEST": "64",
    "KO_STS_QUEUE_TIMEOUT_MS": "60000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    http: httpx.Client
    grpc_target: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(tag: str, log: Path, env: dict[str, str] | None = None, ready_s: float = 180) -> Iterator[Server]:
    """`bentoml serve` of ``tag`` with HTTP and gRPC on free ports, ready (``/readyz`` 200), stopped afterwards."""
    http_port, grpc_port = free_port(), free_port()
    full_env = {**os.environ, "KO_STS_MODEL_TAG": tag, "KO_STS_GRPC_PORT": str(grpc_port), **(env or {})}
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    with open(log, "w") as output:
        process = subprocess.Popen(
            [bentoml, "serve", "--port", str(http_port)],
            cwd=REPO,
            env=full_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bentoml serve did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Server(process, client, f"127.0.0.1:{grpc_port}", log)
    finally:
        client.close()
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)


@contextmanager
def serve_for_clients(package: Path, log: Path) -> Iterator[dict[str, str]]:
    """`bentoml serve` of ``package`` with the client tests' settings; yields the ``KO_STS_TEST_*`` variables."""
    from models.store import save_package

    tag = str(save_package(package).tag)
    with serve(tag, log, env=CLIENT_TEST_SETTINGS) as server:
        yield {
            "KO_STS_TEST_HTTP_URL": str(server.http.base_url).rstrip("/"),
            "KO_STS_TEST_GRPC_TARGET": server.grpc_target,
            "KO_STS_TEST_API_KEY": CLIENT_TEST_KEY,
            "KO_STS_TEST_MAX_PAIRS": CLIENT_TEST_SETTINGS["KO_STS_MAX_PAIRS_PER_REQUEST"],
            "KO_STS_TEST_MODEL_TAG": tag,
        }


def main(argv: list[str] | None = None) -> int:
    from tests.conftest import build_tiny_base, train_tiny_package

    parser = argparse.ArgumentParser(description="Serves the tests' tiny model for the client tests until SIGTERM.")
    parser.add_argument("--env-file", type=Path, required=True, help="where to write the KO_STS_TEST_* variables")
    parser.add_argument("--workdir", type=Path, required=True, help="for the tiny model, its training and the log")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through serve()'s cleanup
    args.workdir.mkdir(parents=True, exist_ok=True)
    package = train_tiny_package(build_tiny_base(args.workdir / "tiny-base"), args.workdir / "tiny-run")
    with serve_for_clients(package, args.workdir / "serve.log") as variables:
        written = args.env_file.with_suffix(".partial")
        written.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
        written.rename(args.env_file)  # appears complete, or not at all
        print(f"serving {variables['KO_STS_TEST_MODEL_TAG']} for the client tests: {args.env_file}", flush=True)
        while True:
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
