"""Bad requests, the API key and request ids, against `bentoml serve` of the tiny model over HTTP and gRPC.

One server for the module, with an API key and small limits (4 pairs, 50 characters), so that
every rule can be crossed cheaply. After each refusal a good request must still succeed; every
refusal is one log line that never holds the request's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import grpc
import pytest

from ko_sts.v1 import similarity_pb2 as pb
from serving.schemas import NOT_BLANK
from tests.engine_doubles import wait_for
from tests.live_service import Server, serve

pytestmark = pytest.mark.slow
KEY = "s3cret-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json", **AUTH}
SECRET_TEXT = "비밀문장은로그에남지않는다"  # request text that must never reach the log
GOOD = {"pairs": [{"sentence1": "오늘 날씨 좋다", "sentence2": "날씨가 맑네요"}]}
REQUEST_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture(scope="module")
def server(trained_package, tmp_path_factory) -> Iterator[Server]:
    from models.store import save_package

    env = {"KO_STS_API_KEY": KEY, "KO_STS_MAX_PAIRS_PER_REQUEST": "4", "KO_STS_MAX_SENTENCE_CHARS": "50"}
    with serve(str(save_package(trained_package).tag), tmp_path_factory.mktemp("hardening") / "serve.log", env) as s:
        yield s


def pairs(n: int, text: str = "가나다") -> list[dict[str, str]]:
    return [{"sentence1": text, "sentence2": "라마바"}] * n


BAD_REQUESTS = {
    # name: (route, headers over JSON's (None: left out), body, status, error kind, text the detail holds)
    "no-key": ("/score", {"Authorization": None}, GOOD, 401, "unauthenticated", "Bearer"),
    "wrong-key": ("/score", {"Authorization": "Bearer nope"}, GOOD, 401, "unauthenticated", "wrong API key"),
    "not-bearer": ("/score", {"Authorization": KEY}, GOOD, 401, "unauthenticated", "no API key"),
    "multipart-no-boundary": ("/score", {"Content-Type": "multipart/form-data"}, b"x", 415, "unsupported", "JSON"),
    "form": ("/score", {"Content-Type": "application/x-www-form-urlencoded"}, GOOD, 415, "unsupported", "JSON"),
    "latin-1": ("/score", {"Content-Type": "application/json; charset=latin-1"}, GOOD, 415, "unsupported", "UTF-8"),
    "not-json": ("/score", {}, b"{pairs: [", 400, "malformed", "not valid JSON"),
    "not-utf-8": ("/score", {}, b'{"pairs": [{"sentence1": "\xff\xfe", "sentence2": "a"}]}', 400, "malformed", "UTF-8"),
    "lone-surrogate": ("/score", {}, b'{"pairs": [{"sentence1": "\\ud800", "sentence2": "a"}]}', 400, "malformed", ""),
    "nested": ("/score", {}, b'{"pairs": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, "malformed", "nested"),
    "body-too-large": ("/score", {}, b" " * 40_000, 413, "too_large", "body: 40000 bytes"),
    "no-body": ("/score", {}, b"", 422, "invalid_input", "pairs: Field required"),
    "not-an-object": ("/score", {}, [GOOD], 422, "invalid_input", "body: Input should be"),
    "missing-field": ("/score", {}, {"pairs": [{"sentence1": "가"}]}, 422, "invalid_input", "pairs[0].sentence2"),
    "number": (
        "/score",
        {},
        {"pairs": [{"sentence1": 3, "sentence2": "나"}]},
        422,
        "invalid_input",
        "pairs[0].sentence1",
    ),
    "unknown-field": ("/score", {}, {**GOOD, SECRET_TEXT: 1}, 422, "invalid_input", "Extra inputs"),
    "empty-list": ("/score", {}, {"pairs": []}, 422, "invalid_input", "pairs: must hold at least one item"),
    "blank": ("/score", {}, {"pairs": pairs(1, " \u3000\n")}, 422, "invalid_input", "pairs[0].sentence1"),
    "blank-control": ("/score", {}, {"pairs": pairs(1, "\x1e\x85")}, 422, "invalid_input", "pairs[0].sentence1"),
    "too-many-pairs": ("/score", {}, {"pairs": pairs(5)}, 413, "too_large", "pairs: 5 items"),
    "long-sentence": ("/score", {}, {"pairs": pairs(1, SECRET_TEXT * 5)}, 413, "too_large", "pairs[0].sentence1: 65"),
    "rank-empty": ("/rank", {}, {"query": "가", "candidates": []}, 422, "invalid_input", "candidates"),
    "rank-top-k-0": ("/rank", {}, {"query": "가", "candidates": ["나"], "top_k": 0}, 422, "invalid_input", "top_k"),
    "rank-top-k-text": (
        "/rank",
        {},
        {"query": "가", "candidates": ["나"], "top_k": "1"},
        422,
        "invalid_input",
        "top_k",
    ),
    "rank-too-many": ("/rank", {}, {"query": "가", "candidates": ["나"] * 5}, 413, "too_large", "candidates: 5"),
    "rank-long-query": ("/rank", {}, {"query": "가" * 51, "candidates": ["나"]}, 413, "too_large", "query: 51"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_bad_request_gets_its_documented_status_and_a_good_one_still_works(server, name):
    route, headers, body, status, kind, detail = BAD_REQUESTS[name]
    if not isinstance(body, bytes):
        body = json.dumps(body, ensure_ascii=False).encode()
    headers = {name: value for name, value in {**JSON, **headers}.items() if value is not None}
    response = server.http.post(route, content=body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert set(answer) == {"error", "detail"} and isinstance(answer["detail"], str)
    assert answer["error"].startswith(kind) and detail in answer["detail"]
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    good = server.http.post("/score", json=GOOD, headers=AUTH)
    assert good.status_code == 200 and len(good.json()) == 1


def test_an_oversized_body_without_a_length_is_refused_while_it_streams(server):
    def chunks() -> Iterator[bytes]:
        yield b'{"pairs": ['
        for _ in range(1000):
            yield b'{"sentence1": "' + b"a" * 100 + b'", "sentence2": "b"},'

    response = server.http.post("/score", content=chunks(), headers=JSON)  # chunked: no Content-Length
    assert response.status_code == 413 and "more than the limit" in response.json()["detail"]


def test_refusals_are_one_log_line_each_with_the_request_id_and_never_the_text(server):
    response = server.http.post("/score", json={"pairs": pairs(1, SECRET_TEXT * 5)}, headers=AUTH)
    assert response.status_code == 413
    request_id = response.headers["x-request-id"]
    assert response.headers["x-bentoml-request-id"] == request_id

    def refusals() -> list[str]:
        lines = server.log_text().splitlines()
        return [line for line in lines if "refused /score" in line and f"span={request_id}" in line]

    wait_for(refusals)  # the log is written a moment after the answer
    log = server.log_text()
    assert len(refusals()) == 1 and "413 too_large" in refusals()[0]
    assert "Traceback" not in log and SECRET_TEXT not in log and KEY not in log


def test_every_http_response_has_a_request_id(server):
    seen = set()
    for method, route in [("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/docs.json")]:
        response = server.http.request(method, route)  # probes, metrics and the spec need no key
        assert response.status_code == 200, route
        seen.add(response.headers["x-request-id"])
    missing = server.http.get("/no-such-route")
    assert missing.status_code == 404
    seen.add(missing.headers["x-request-id"])
    scored = server.http.post("/score", json=GOOD, headers=AUTH)
    seen.add(scored.headers["x-request-id"])
    assert len(seen) == 6 and all(REQUEST_ID.fullmatch(value) for value in seen)


def test_the_spec_declares_the_limits_the_errors_and_the_key(server):
    spec = server.http.get("/docs.json").json()
    score = spec["paths"]["/score"]["post"]
    assert score["requestBody"]["required"] and score["security"] == [{"apiKey": []}]
    assert set(score["responses"]) == {"200", "400", "401", "413", "415", "422", "429", "500", "503", "504"}
    assert score["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "Retry-After" in score["responses"]["429"]["headers"]
    pair = spec["components"]["schemas"]["SentencePair"]["properties"]["sentence1"]
    assert (pair["minLength"], pair["maxLength"], pair["pattern"]) == (1, 50, NOT_BLANK)
    rank = spec["paths"]["/rank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert rank["properties"]["candidates"]["maxItems"] == 4 and rank["additionalProperties"] is False
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["error", "detail"]


def _call(server: Server, method: str, request: bytes, metadata: tuple = ()) -> tuple[object, dict]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(f"/ko_sts.v1.Similarity/{method}")
        try:
            reply, state = call.with_call(request, metadata=metadata, timeout=30)
            return reply, dict(state.trailing_metadata())
        except grpc.RpcError as error:
            return error, dict(error.trailing_metadata() or ())


def test_grpc_needs_the_key_and_answers_request_ids(server):
    request = pb.ScoreRequest(pairs=[pb.SentencePair(sentence1="가", sentence2="나")]).SerializeToString()
    refused, metadata = _call(server, "Score", request)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and metadata["ko-sts-error"] == "unauthenticated"
    refused, _ = _call(server, "Score", request, (("authorization", "Bearer nope"),))
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    reply, metadata = _call(server, "Score", request, (("authorization", f"Bearer {KEY}"),))
    assert len(pb.ScoreResponse.FromString(reply).results) == 1
    request_id = metadata["x-request-id"]
    assert REQUEST_ID.fullmatch(request_id)
    wait_for(lambda: any(f"span={request_id}" in line and "code=OK" in line for line in server.log_text().splitlines()))


@pytest.mark.parametrize(
    ("request_bytes", "code", "detail"),
    [
        (
            pb.ScoreRequest(pairs=[pb.SentencePair(sentence1="가", sentence2="나")])
            .SerializeToString()
            .replace("가".encode(), b"\xff\xfe\xfd"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "UTF-8",
        ),
        (b"\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "not a valid ko_sts.v1.ScoreRequest"),
        (
            pb.ScoreRequest(pairs=[pb.SentencePair(sentence1="가", sentence2="나")] * 5).SerializeToString(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pairs: 5 items",
        ),
        (b"a" * 40_000, grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ],
    ids=["not-utf-8", "not-protobuf", "too-many-pairs", "too-large"],
)
def test_grpc_bad_bytes_are_refused_and_a_good_call_still_works(server, request_bytes, code, detail):
    auth = (("authorization", f"Bearer {KEY}"),)
    refused, metadata = _call(server, "Score", request_bytes, auth)
    assert refused.code() == code and detail in refused.details()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert REQUEST_ID.fullmatch(metadata["x-request-id"])
    good = pb.ScoreRequest(pairs=[pb.SentencePair(sentence1="가", sentence2="나")]).SerializeToString()
    reply, _ = _call(server, "Score", good, auth)
    assert len(pb.ScoreResponse.FromString(reply).results) == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_python_client_sends_the_key(server, protocol):
    from ko_sts import GrpcClient, HttpClient, KoStsError

    def client(api_key: str | None):
        if protocol == "http":
            return HttpClient(str(server.http.base_url), api_key=api_key)
        return GrpcClient(server.grpc_target, api_key=api_key)

    with client(KEY) as keyed:
        assert len(keyed.score([("오늘 날씨 좋다", "날씨가 맑네요")]).results) == 1
    for wrong in (None, "not-the-key"):
        with client(wrong) as unkeyed, pytest.raises(KoStsError) as refused:
            unkeyed.score([("오늘 날씨 좋다", "날씨가 맑네요")])
        assert refused.value.kind == "unauthenticated" and not refused.value.retryable
