"""A proxy that the client tests put between a client and the live service, on loopback.

It answers the first calls as scripted, forwards the rest to the service, and counts what it saw:
``unavailable`` (503 / UNAVAILABLE, ``Retry-After: 0``), ``overloaded`` (429 / RESOURCE_EXHAUSTED),
``hold`` (keep the call until ``release`` is set or the client gives up, then forward it). So a
retry, a refusal that must not be retried, or a call in flight happen for certain, while every
answer that is not scripted comes from the real model. Standard library, httpx and grpcio only:
it runs wherever the client's tests do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx

HOLD_S = 30.0  # the longest a held call waits for release
REFUSALS = {
    "unavailable": (503, grpc.StatusCode.UNAVAILABLE, "0"),
    "overloaded": (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "1"),
}


class Front:
    """What both fronts share: the script, the counts and the release of held calls."""

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.calls = 0
        self.held = threading.Event()  # a call is being held
        self.release = threading.Event()
        self.cancelled = threading.Event()  # a held call's client gave up (gRPC)
        self.lock = threading.Lock()

    def next_action(self) -> str:
        with self.lock:
            self.calls += 1
            return self.script.pop(0) if self.script else "forward"


class HttpFront(Front):
    """HTTP/1.1 with keep-alive in front of the service's URL; ``connections`` counts TCP connections."""

    def __init__(self, service_url: str, script: list[str]):
        super().__init__(script)
        self.connections = 0
        self.upstream = httpx.Client(base_url=service_url, timeout=60)
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                action = front.next_action()
                if action in REFUSALS:
                    status, _, retry_after = REFUSALS[action]
                    content = json.dumps({"error": action, "detail": f"the front said {action}"}).encode()
                    self._answer(status, {"content-type": "application/json", "retry-after": retry_after}, content)
                    return
                if action == "hold":
                    front.held.set()
                    front.release.wait(HOLD_S)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                reply = front.upstream.post(self.path, content=body, headers=headers)
                kept = ("content-type", "x-ko-sts-model", "retry-after")
                self._answer(reply.status_code, {k: v for k, v in reply.headers.items() if k in kept}, reply.content)

            def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for name, value in {**headers, "content-length": str(len(content))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64  # 16 clients connect at once; socketserver's 5 overflows (failed connections)
            block_on_close = False  # kept-alive connections must not hold the test's end

            def process_request(self, request: Any, client_address: Any) -> None:
                front.connections += 1
                super().process_request(request, client_address)

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a held call has closed its socket

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()


class GrpcFront(Front):
    """A gRPC server forwarding ``ko_sts.v1.Similarity`` calls as bytes; ``peers`` lists each call's client address."""

    def __init__(self, service_target: str, script: list[str]):
        super().__init__(script)
        self.peers: list[str] = []
        self.upstream = grpc.insecure_channel(service_target)
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(self._handler(method))
            for method in ("Score", "Rank", "ModelInfo")
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("ko_sts.v1.Similarity", handlers),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"

    def _handler(self, method: str):
        forward = self.upstream.unary_unary(f"/ko_sts.v1.Similarity/{method}")  # bytes in, bytes out

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.peers.append(context.peer())
            action = self.next_action()
            if action in REFUSALS:
                _, code, retry_after = REFUSALS[action]
                context.set_trailing_metadata((("ko-sts-error", action), ("retry-after", retry_after)))
                context.abort(code, f"the front said {action}")
            if action == "hold":
                self.held.set()
                while not self.release.wait(0.02):
                    if not context.is_active():  # the client cancelled the call
                        self.cancelled.set()
                        return b""
            try:
                key = [(item.key, item.value) for item in context.invocation_metadata() if item.key == "authorization"]
                return forward(request, timeout=60, metadata=key)
            except grpc.RpcError as error:
                context.set_trailing_metadata(error.trailing_metadata() or ())
                context.abort(error.code(), error.details() or "")

        return handle

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.release.set()
        self.server.stop(grace=None)
        self.upstream.close()


@contextmanager
def front(protocol: str, service_address: str, script: list[str] = ()) -> Iterator[Any]:
    """An :class:`HttpFront` (``protocol`` ``http``: URLs) or :class:`GrpcFront` (host:port), started; its own
    address is ``.address``."""
    proxy = HttpFront(service_address, list(script)) if protocol == "http" else GrpcFront(service_address, list(script))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
