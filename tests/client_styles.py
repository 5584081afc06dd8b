"""One test body for the sync and the asyncio clients: ``make_client(style, protocol, address, **options)``.

An asyncio client is driven through :class:`Blocking`, which runs each of its calls to the end on an
event loop of its own, so that a test asserts the same answers, errors and retries for both styles.
Runs on every Python the client supports (3.10 on): it imports nothing of the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ko_sts import AsyncGrpcClient, AsyncHttpClient, GrpcClient, HttpClient

STYLES = ("sync", "async")
PROTOCOLS = ("http", "grpc")
CLIENTS = {
    ("sync", "http"): HttpClient,
    ("sync", "grpc"): GrpcClient,
    ("async", "http"): AsyncHttpClient,
    ("async", "grpc"): AsyncGrpcClient,
}


class Blocking:
    """An asyncio client whose calls block until done, each on this object's own event loop."""

    def __init__(self, client: Any):
        self.client = client
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(method(*args, **kwargs))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.client.close())
        finally:
            self.loop.close()

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def make_client(style: str, protocol: str, address: str, **options: Any) -> Any:
    """A client of ``protocol`` (``http``: ``address`` is a URL; ``grpc``: host:port) in ``style``, ready to call."""
    client = CLIENTS[style, protocol](address, **options)
    return Blocking(client) if style == "async" else client
