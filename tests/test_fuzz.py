"""Schemathesis against `bentoml serve`, driven by the OpenAPI spec the service publishes (`GET /docs.json`).

Every operation in the spec (``/score``, ``/rank``, ``/model_info`` and the probes) gets the
coverage phase (each boundary of the schema, just inside and just outside: lengths, item counts,
types, missing and unknown fields, no API key, unexpected methods) and then the fuzzing phase
(random valid *and* invalid requests). Every answer must pass all of schemathesis's checks: never
a 5xx, a status code, content type, headers and body the spec documents, invalid requests refused
(400, 401, 413, 415 or 422), valid ones accepted, and nothing answered without the API key.

Two servers, both with an API key and small limits (4 pairs, 50 characters, so that requests
cross them often): the tiny fine-tuned model, at least :data:`TINY_MIN_CASES` requests, and the
shipped model (``models/default``), a smaller sample. Each test counts the requests it made and
fails if there were too few, or if ``/score`` or ``/rank`` saw no invalid data or missed one of
the answers 200, 401, 413 and 422, so that it cannot pass without having fuzzed. Neither a
Hypothesis example database nor schemathesis's cache (``.schemathesis/``) is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.conftest import DEFAULT_PACKAGE
from tests.live_service import Server, serve

pytestmark = pytest.mark.slow
KEY = "fuzz-key-0123456789abcdef"
ENV = {
    "KO_STS_API_KEY": KEY,
    "KO_STS_MAX_PAIRS_PER_REQUEST": "4",
    "KO_STS_MAX_SENTENCE_CHARS": "50",
    # answers, not overload: on a slow shared machine a request can wait longer than the default
    # queue timeout (2 s), which is answered 503 by design
    "KO_STS_QUEUE_TIMEOUT_MS": "60000",
}
REFUSALS = ["400", "401", "413", "415", "422"]  # the statuses an invalid request may get (serving/http.py)
TINY_MIN_CASES = 2000
DEFAULT_MIN_CASES = 200


@dataclass
class Tally:
    """The requests one test made, by operation, generation mode (positive/negative) and status."""

    minimum: int
    requests: Counter = field(default_factory=Counter)

    def add(self, case: schemathesis.Case, status: int) -> None:
        self.requests[case.operation.label, case.meta.generation.mode.value, status] += 1

    def by(self, index: int) -> Counter:
        totals: Counter = Counter()
        for key, count in self.requests.items():
            totals[key[index]] += count
        return totals

    def check(self) -> None:
        operations, modes = self.by(0), self.by(1)
        print(f"\n{sum(operations.values())} requests: {dict(operations)}; {dict(modes)}; statuses {dict(self.by(2))}")
        assert sum(operations.values()) >= self.minimum, f"fewer requests than {self.minimum}: {dict(operations)}"
        for route in ("POST /score", "POST /rank"):
            statuses = {status for (label, _, status) in self.requests if label == route}
            negative = sum(n for (label, mode, _), n in self.requests.items() if (label, mode) == (route, "negative"))
            assert negative and {200, 401, 413, 422} <= statuses, f"{route}: {negative} negative, statuses {statuses}"


def fuzz_config(max_examples: int) -> SchemathesisConfig:
    """Coverage and fuzzing phases, valid and invalid data, every check; nothing stored on disk.

    ``max_examples``: fuzzing requests per operation (``/model_info`` takes no input: a few dozen).
    """
    return SchemathesisConfig.from_dict(
        {
            "cache": {"enabled": False},  # else failures are recorded under .schemathesis/
            "auth": {"openapi": {"apiKey": {"bearer": KEY}}},
            "generation": {"mode": "all", "database": "none", "max-examples": max_examples},
            "phases": {
                "examples": {"enabled": False},  # the spec has none
                "stateful": {"enabled": False},  # no links between operations
                # re-sending each accepted request without the key and with a wrong one would triple
                # the fuzzing phase's requests; the coverage phase's accepted requests are re-sent
                "fuzzing": {"checks": {"ignored_auth": {"enabled": False}}},
            },
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
            "operations": [{"include-name": "POST /model_info", "generation": {"max-examples": min(max_examples, 50)}}],
        }
    )


def load_spec(server: Server, max_examples: int, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    # schemathesis 4.32.5's from_fixture(...).parametrize() reads Node._nodeid, which pytest 9.2 no longer has
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    base_url = str(server.http.base_url).rstrip("/")
    return schemathesis.openapi.from_url(f"{base_url}/docs.json", config=fuzz_config(max_examples))


@pytest.fixture(scope="module")
def tiny_server(trained_package, tmp_path_factory) -> Iterator[Server]:
    from models.store import save_package

    with serve(str(save_package(trained_package).tag), tmp_path_factory.mktemp("fuzz") / "tiny.log", ENV) as s:
        yield s


@pytest.fixture(scope="module")
def default_server(tmp_path_factory) -> Iterator[Server]:
    from models.store import save_package

    with serve(str(save_package(DEFAULT_PACKAGE).tag), tmp_path_factory.mktemp("fuzz") / "default.log", ENV) as s:
        yield s


@pytest.fixture
def tiny_spec(tiny_server, request) -> schemathesis.BaseSchema:
    return load_spec(tiny_server, 1000, request)


@pytest.fixture
def default_spec(default_server, request) -> schemathesis.BaseSchema:
    return load_spec(default_server, 40, request)


@pytest.fixture
def tiny_tally() -> Iterator[Tally]:
    tally = Tally(TINY_MIN_CASES)
    yield tally
    tally.check()


@pytest.fixture
def default_tally() -> Iterator[Tally]:
    tally = Tally(DEFAULT_MIN_CASES)
    yield tally
    tally.check()


@schemathesis.pytest.from_fixture("tiny_spec").parametrize()
def test_the_tiny_model_answers_generated_requests_as_its_spec_says(case, tiny_tally):
    response = case.call()
    tiny_tally.add(case, response.status_code)
    case.validate_response(response)


@schemathesis.pytest.from_fixture("default_spec").parametrize()
def test_the_shipped_model_answers_generated_requests_as_its_spec_says(case, default_tally):
    response = case.call()
    default_tally.add(case, response.status_code)
    case.validate_response(response)
