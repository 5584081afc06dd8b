"""Prometheus metrics of the engine and the front, next to BentoML's own ``bentoml_service_*`` on ``/metrics``.

``prometheus_client`` is imported when a service instance is created, after BentoML has set up
its multiprocess metrics directory (importing it earlier would hide these metrics). The GPU
owner records the engine's metrics, each front worker its tokenisation; BentoML's ``/metrics``
on the HTTP port gathers every process's.
"""

from __future__ import annotations

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


def _seconds(name: str, what: str):
    from prometheus_client import Histogram

    return Histogram(f"ko_sts_{name}_duration_seconds", what, buckets=LATENCY_BUCKETS)


class TokenizerMetrics:
    """A front's tokenisation time per request."""

    def __init__(self) -> None:
        self.tokenize = _seconds("tokenization", "Time a request spent being tokenised")

    def tokenized(self, seconds: float) -> None:
        self.tokenize.observe(seconds)


class EngineMetrics:
    """Records :class:`serving.engine.ScoringEngine` timings as Prometheus histograms."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.queue = _seconds("queue", "Time a request waited in the engine's queue before its first forward pass")
        self.inference = _seconds("inference", "Time from a request's first round to its last")
        self.batch_pairs = Histogram(
            "ko_sts_batch_size",
            "Pairs scored in one round of forward passes (all requests merged)",
            buckets=SIZE_BUCKETS,
        )
        self.batch_tokens = Histogram(
            "ko_sts_batch_padded_tokens", "Padded tokens computed in one round of forward passes", buckets=TOKEN_BUCKETS
        )
        self.padding = Counter("ko_sts_padding_tokens", "Padding tokens computed (padded minus real tokens)")
        self.queued = Gauge("ko_sts_queue_pairs", "Pairs waiting in the engine's queue", multiprocess_mode="livesum")
        self.refused = Counter("ko_sts_refused_requests", "Requests refused or dropped by the engine", ["reason"])

    def request_done(self, queue_s: float, inference_s: float) -> None:
        self.queue.observe(queue_s)
        self.inference.observe(inference_s)

    def round_done(self, pairs: int, rows: int, tokens: int, padded_tokens: int, passes: int) -> None:
        self.batch_pairs.observe(pairs)
        self.batch_tokens.observe(padded_tokens)
        self.padding.inc(padded_tokens - tokens)

    def queue_changed(self, queued_pairs: int) -> None:
        self.queued.set(queued_pairs)

    def request_refused(self, reason: str) -> None:
        self.refused.labels(reason=reason).inc()
