"""`bentoml serve` in a subprocess for the tests that talk to a running service (hardening, fuzzing)."""

from __future__ import annotations

import os
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
