"""The gRPC API: its generated code, the server in-process (lifecycle, deadlines, errors), then `bentoml serve`.

In-process tests run the real :class:`serving.grpc_server.GrpcServer` and a real grpcio client,
in front of the tiny model's engine held behind a gate (so that "in flight" is certain) or a fake
front that fails on demand. The slow tests start `bentoml serve` once, with HTTP and gRPC on
free ports, and compare the two protocols call by call.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ko_sts import GrpcClient, HttpClient
from ko_sts.v1 import similarity_pb2 as pb
from ko_sts.v1 import similarity_pb2_grpc as pb_grpc
from serving.engine import EngineSettings, ScoringEngine
from serving.errors import (
    ERROR_TABLE,
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    QueueTimeout,
    ServiceError,
    TooLarge,
    Unavailable,
)
from serving.frontend import Frontend, Scored
from serving.grpc_server import GrpcOptions, GrpcServer, ServedModel
from serving.inputs import InputRules
from serving.schemas import ModelInfo
from tests.conftest import KLUE_DEV, REPO
from tests.engine_doubles import Rounds, behind_gate, wait_for
from tests.live_service import serve
from training.data import read_pairs

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PAIRS = [(row.sentence1, row.sentence2) for row in read_pairs(KLUE_DEV).head(64).itertuples()]
INFO = ModelInfo(tag="ko-sts:test", backend="onnx", device="cpu", base_model="tiny", metrics={"onnx_int8": {}})


def _request(pairs) -> pb.ScoreRequest:
    return pb.ScoreRequest(pairs=[pb.SentencePair(sentence1=a, sentence2=b) for a, b in pairs])


def _health(channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_generated_code_matches_the_proto():
    result = subprocess.run(
        [sys.executable, "proto/generate.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# --- in-process: the server class, a real client ------------------------------------------------


@contextmanager
def local_server(grace_s: float = 10.0):
    server = GrpcServer(GrpcOptions(host="127.0.0.1", port=0, grace_s=grace_s))
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, channel
    finally:
        channel.close()
        asyncio.run(server.stop())


@pytest.fixture
def gated_engine(scorer):
    """The tiny model's front over an engine whose forward passes wait for ``runtime.gate``."""
    gated_scorer, runtime = behind_gate(scorer)
    observer = Rounds()
    engine = ScoringEngine(gated_scorer, EngineSettings(), observer)
    yield Frontend(gated_scorer, engine), runtime, observer
    runtime.gate.set()
    engine.close()


def test_health_is_not_serving_until_the_model_is_served_and_once_shutdown_starts(gated_engine):
    front, runtime, _ = gated_engine
    with local_server(grace_s=3600) as (server, channel):
        stub = pb_grpc.SimilarityStub(channel)
        assert _health(channel) == NOT_SERVING and _health(channel, "ko_sts.v1.Similarity") == NOT_SERVING
        with pytest.raises(grpc.RpcError) as loading:
            stub.Score(_request(PAIRS[:1]), timeout=5)
        assert loading.value.code() == grpc.StatusCode.UNAVAILABLE
        metadata = dict(loading.value.trailing_metadata())
        assert re.fullmatch(r"[0-9a-f]{16}", metadata.pop("x-request-id"))
        assert metadata == {"ko-sts-error": "unavailable", "retry-after": "1"}

        server.serve(ServedModel(front, InputRules(), INFO))
        assert _health(channel) == SERVING and _health(channel, "ko_sts.v1.Similarity") == SERVING
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        in_flight = stub.Score.future(_request(PAIRS[:3]), timeout=30)
        assert runtime.entered.wait(10)  # the call is in the engine, held at the gate

        server.drain()
        assert next(watch).status == NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stub.Score(_request(PAIRS[:1]), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no new calls once draining
        runtime.gate.set()
        assert len(in_flight.result(timeout=30).results) == 3  # the call in flight finishes
        assert [r.status for r in watch][-1:] in ([], [NOT_SERVING])  # the Watch stream ends with the server
        # nothing is left in flight to hold the grace (an hour): stopping ends at once, not at the hang guard
        asyncio.run(asyncio.wait_for(server.stop(), timeout=60))


def test_a_passed_deadline_drops_the_work(gated_engine, scorer):
    front, runtime, observer = gated_engine
    with local_server() as (server, channel):
        server.serve(ServedModel(front, InputRules(), INFO))
        stub = pb_grpc.SimilarityStub(channel)
        holder = stub.Score.future(_request(PAIRS[:1]), timeout=30)
        assert runtime.entered.wait(10)  # the worker is busy with the first call
        with pytest.raises(grpc.RpcError) as late:
            stub.Score(_request(PAIRS[1:9]), timeout=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        runtime.gate.set()
        assert len(holder.result(timeout=30).results) == 1
        wait_for(lambda: {"deadline", "cancelled"} & set(observer.refused))
        assert runtime.rows_run == scorer.rows_per_pair * 1  # the late call's 8 pairs never ran
        wait_for(lambda: observer.rounds)  # the round is observed after its answer went out: on a busy host, later
        assert observer.rounds == [1]


class FailingFrontend:
    """A scoring front that raises ``error`` for every request."""

    def __init__(self, error: Exception):
        self.error = error

    async def score(self, pairs, timeout_s=None) -> Scored:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        Overloaded("the queue holds 4096 pairs", retry_after_s=1.0),
        QueueTimeout("waited 2000 ms", retry_after_s=1.0),
        DeadlineExceeded("the request's deadline passed"),
        Unavailable("the service is shutting down"),
        InvalidInput("pairs[0].sentence1: must contain text"),
        TooLarge("pairs: 300 items"),
        RuntimeError("a bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_failure_gets_its_error_table_code_and_metadata(error):
    with local_server() as (server, channel):
        server.serve(ServedModel(FailingFrontend(error), InputRules(), INFO))
        stub = pb_grpc.SimilarityStub(channel)
        for call, request in [
            (stub.Score, _request(PAIRS[:2])),
            (stub.Rank, pb.RankRequest(query="가", candidates=["나", "다"])),
        ]:
            with pytest.raises(grpc.RpcError) as failed:
                call(request, timeout=10)
            expected = (
                error
                if isinstance(error, ServiceError)
                else ServiceError("internal error; the service's log has the details")
            )
            status = ERROR_TABLE[expected.kind]
            assert failed.value.code().name == status.grpc
            metadata = dict(failed.value.trailing_metadata())
            assert metadata["ko-sts-error"] == expected.kind.value and metadata["x-ko-sts-model"] == "ko-sts:test"
            assert metadata.get("retry-after") == ("1" if expected.retry_after_s else None)
            assert failed.value.details() == expected.message  # a bug's own message stays in the log


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("score", "pairs"),
        ("score_blank", "pairs[1].sentence2"),
        ("score_many", "pairs: 5 items"),
        ("rank_empty", "candidates"),
        ("rank_blank_query", "query"),
        ("rank_top_k", "top_k"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(call, field):
    requests = {
        "score": lambda stub: stub.Score(pb.ScoreRequest()),
        "score_blank": lambda stub: stub.Score(_request([("가", "나"), ("가", "  ")])),
        "score_many": lambda stub: stub.Score(_request(PAIRS[:5])),
        "rank_empty": lambda stub: stub.Rank(pb.RankRequest(query="가")),
        "rank_blank_query": lambda stub: stub.Rank(pb.RankRequest(query=" ", candidates=["나"])),
        "rank_top_k": lambda stub: stub.Rank(pb.RankRequest(query="가", candidates=["나"], top_k=0)),
    }
    with local_server() as (server, channel):
        server.serve(ServedModel(FailingFrontend(AssertionError("never scored")), InputRules(max_pairs=4), INFO))
        with pytest.raises(grpc.RpcError) as bad:
            requests[call](pb_grpc.SimilarityStub(channel))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad.value.details()


def test_a_busy_port_fails_the_start_unless_workers_share_it():
    first = GrpcServer(GrpcOptions(host="127.0.0.1", port=0))
    first.start()
    try:
        with pytest.raises(RuntimeError, match="port in use"):
            GrpcServer(GrpcOptions(host="127.0.0.1", port=first.port)).start()  # one worker: fail loudly
    finally:
        asyncio.run(first.stop())
    shared = [GrpcServer(GrpcOptions(host="127.0.0.1", port=first.port, reuse_port=True)) for _ in range(2)]
    try:
        assert [server.start() for server in shared] == [first.port] * 2  # KO_STS_WORKERS > 1: SO_REUSEPORT
    finally:
        for server in shared:
            asyncio.run(server.stop())


# --- `bentoml serve`: HTTP and gRPC from one process -------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen
    http: httpx.Client
    channel: grpc.Channel
    grpc_target: str
    tag: str


@pytest.fixture(scope="module")
def served(trained_package, tmp_path_factory):
    """`bentoml serve` of the tiny package, HTTP and gRPC on free ports (started once for this module)."""
    from models.store import save_package

    tag = str(save_package(trained_package).tag)
    log = tmp_path_factory.mktemp("serve-grpc") / "serve.log"
    # a loaded CI machine must not turn load into refusals
    env = {"KO_STS_BACKEND": "onnx", "KO_STS_QUEUE_TIMEOUT_MS": "60000"}
    with serve(tag, log, env) as server, grpc.insecure_channel(server.grpc_target) as channel:
        yield Served(server.process, server.http, channel, server.grpc_target, tag)


def _metric(client: httpx.Client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    pattern = rf"^{name}(?:\{{[^}}]*{re.escape(labels)}[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


@pytest.mark.slow
def test_served_health_reflection_and_model_info(served):
    client, channel, tag = served.http, served.channel, served.tag
    assert _health(channel) == SERVING and _health(channel, "ko_sts.v1.Similarity") == SERVING
    database = ProtoReflectionDescriptorDatabase(channel)
    assert {"ko_sts.v1.Similarity", "grpc.health.v1.Health"} <= set(database.get_services())
    methods = DescriptorPool(database).FindServiceByName("ko_sts.v1.Similarity").methods_by_name
    assert set(methods) == {"Score", "Rank", "ModelInfo"}
    info = pb_grpc.SimilarityStub(channel).ModelInfo(pb.ModelInfoRequest(), timeout=10)
    http_info = client.post("/model_info").json()
    assert info.model_tag == tag == http_info["tag"]
    assert (info.backend, info.device, info.base_model) == (
        http_info["backend"],
        http_info["device"],
        http_info["base_model"],
    )
    assert dict(info.metrics["onnx_int8"].sets["dev"].values) == http_info["metrics"]["onnx_int8"]["dev"]


@pytest.mark.slow
def test_served_score_matches_http_and_names_the_model(served):
    client, channel, tag = served.http, served.channel, served.tag
    reply = pb_grpc.SimilarityStub(channel).Score(_request(PAIRS), timeout=60)
    http = client.post("/score", json={"pairs": [{"sentence1": a, "sentence2": b} for a, b in PAIRS]})
    assert http.status_code == 200 and http.headers["x-ko-sts-model"] == tag == reply.model_tag
    assert [(r.score, r.similar, r.truncated) for r in reply.results] == [
        (r["score"], r["similar"], r["truncated"]) for r in http.json()
    ]
    assert any(r.truncated for r in reply.results)  # the tiny model's 64-token budget cuts a few dev pairs


@pytest.mark.slow
def test_served_rank_orders_by_score_then_index_and_matches_http(served):
    client, channel, tag = served.http, served.channel, served.tag
    stub = pb_grpc.SimilarityStub(channel)
    query = PAIRS[0][0]
    candidates = [b for _, b in PAIRS[:12]] + [PAIRS[0][1], PAIRS[3][1]]  # repeats tie with their first copy
    ranked = stub.Rank(pb.RankRequest(query=query, candidates=candidates), timeout=60)
    assert ranked.model_tag == tag and sorted(r.index for r in ranked.results) == list(range(len(candidates)))
    keys = [(-r.score, r.index) for r in ranked.results]
    assert keys == sorted(keys)  # descending score, ties by the lower index
    position = {r.index: i for i, r in enumerate(ranked.results)}
    assert position[12] == position[0] + 1 and position[13] == position[3] + 1
    scored = stub.Score(_request([(query, c) for c in candidates]), timeout=60)  # the query is sentence1
    assert [r.score for r in ranked.results] == [scored.results[r.index].score for r in ranked.results]
    top = stub.Rank(pb.RankRequest(query=query, candidates=candidates, top_k=3), timeout=60)
    http = client.post("/rank", json={"query": query, "candidates": candidates, "top_k": 3})
    assert [(r.index, r.score, r.similar, r.truncated) for r in top.results] == [
        (r["index"], r["score"], r["similar"], r["truncated"]) for r in http.json()
    ]
    assert [r.index for r in top.results] == [r.index for r in ranked.results[:3]]


@pytest.mark.slow
@pytest.mark.parametrize(
    "grpc_request",
    [
        pb.ScoreRequest(),
        _request([("가", "나"), ("", "나")]),
        pb.RankRequest(query="가", candidates=["나", "   "], top_k=1),
        pb.RankRequest(query="가", candidates=["나"], top_k=0),
    ],
    ids=["empty-pairs", "empty-sentence", "blank-candidate", "top-k-0"],
)
def test_served_bad_input_gets_the_same_rule_as_http(served, grpc_request):
    client, channel = served.http, served.channel
    stub = pb_grpc.SimilarityStub(channel)
    if isinstance(grpc_request, pb.ScoreRequest):
        call, route = stub.Score, "/score"
        body = {"pairs": [{"sentence1": p.sentence1, "sentence2": p.sentence2} for p in grpc_request.pairs]}
    else:
        call, route = stub.Rank, "/rank"
        body = {"query": grpc_request.query, "candidates": list(grpc_request.candidates), "top_k": grpc_request.top_k}
    with pytest.raises(grpc.RpcError) as bad:
        call(grpc_request, timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    http = client.post(route, json=body)
    assert http.status_code == 422 and http.json() == {"error": "invalid_input", "detail": bad.value.details()}


@pytest.mark.slow
def test_served_concurrent_grpc_calls_are_batched(served):
    client, channel = served.http, served.channel
    stub = pb_grpc.SimilarityStub(channel)
    before = _metric(client, "ko_sts_batch_size_count")
    requests = [PAIRS[i : i + 4] for i in range(0, 64, 4)] * 2
    futures = [stub.Score.future(_request(pairs), timeout=60) for pairs in requests]
    replies = [future.result() for future in futures]
    single = {pair: r.score for pair, r in zip(PAIRS, stub.Score(_request(PAIRS), timeout=60).results)}
    for pairs, reply in zip(requests, replies):
        assert [r.score for r in reply.results] == pytest.approx([single[p] for p in pairs], abs=1e-6)
    rounds = _metric(client, "ko_sts_batch_size_count") - before - 1
    assert rounds < len(requests), f"{len(requests)} concurrent gRPC calls took {rounds} rounds: none merged"
    assert _metric(client, "ko_sts_grpc_requests_total", 'code="OK",method="Score"') >= len(requests) + 1


@pytest.mark.slow
def test_served_deadline_is_deadline_exceeded_and_the_work_is_dropped(served):
    client, channel = served.http, served.channel
    stub = pb_grpc.SimilarityStub(channel)
    long_pairs = [(a * 8, b * 8) for a, b in PAIRS]  # truncated to the model's budget: full-length rows
    scored_before = _metric(client, "ko_sts_batch_size_sum")
    rounds_before = _metric(client, "ko_sts_batch_size_count")
    load = [stub.Score.future(_request(long_pairs * 4), timeout=120) for _ in range(4)]  # keeps the worker busy
    wait_for(lambda: _metric(client, "ko_sts_batch_size_count") > rounds_before)  # 4 x 16 rounds have begun
    with pytest.raises(grpc.RpcError) as late:
        stub.Score(_request(PAIRS[:16]), timeout=0.05)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert all(len(future.result().results) == 256 for future in load)

    def scored() -> float:
        return _metric(client, "ko_sts_batch_size_sum") - scored_before

    wait_for(lambda: scored() >= 4 * 256)  # rounds are counted just after their callers are answered
    probe = stub.Score(_request(PAIRS[:1]), timeout=60)  # queued after the late call, had it stayed: FIFO
    assert len(probe.results) == 1
    wait_for(lambda: scored() >= 4 * 256 + 1)
    assert scored() == 4 * 256 + 1  # the late call's 16 pairs were dropped, never scored


@pytest.mark.slow
def test_served_clients_give_the_same_answers_over_http_and_grpc(served):
    with HttpClient(str(served.http.base_url), timeout_s=60) as http, GrpcClient(served.grpc_target) as rpc:
        assert http.score(PAIRS[:8]) == rpc.score(PAIRS[:8])
        assert http.score(PAIRS[:8]).model_tag == served.tag
        candidates = [b for _, b in PAIRS[:10]]
        assert http.rank(PAIRS[0][0], candidates, top_k=4) == rpc.rank(PAIRS[0][0], candidates, top_k=4)
        assert http.model_info() == rpc.model_info()


@pytest.mark.slow
def test_served_sigterm_lets_calls_in_flight_finish_and_exits_cleanly(served):
    """Runs last: it stops the module's server."""
    process, channel = served.process, served.channel
    stub = pb_grpc.SimilarityStub(channel)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
    assert next(watch).status == SERVING
    long_pairs = [(a * 8, b * 8) for a, b in PAIRS]
    futures = [stub.Score.future(_request(long_pairs * 4), timeout=120) for _ in range(6)]
    rounds_before = _metric(served.http, "ko_sts_batch_size_count")
    wait_for(lambda: _metric(served.http, "ko_sts_batch_size_count") > rounds_before)  # the calls are being scored
    process.send_signal(signal.SIGTERM)
    in_flight = [not future.done() for future in futures]
    assert any(in_flight), "the calls finished before SIGTERM: nothing was in flight"
    assert next(watch).status == NOT_SERVING
    assert all(len(future.result(timeout=120).results) == 256 for future in futures)  # in flight: finished
    assert process.wait(timeout=60) == 0
