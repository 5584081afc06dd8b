"""Interactive load for people: watch the service under load in Locust's web UI.

    make serve                                                    # in one shell
    locust -f load_tests/locustfile.py --host http://localhost:3000

then open http://localhost:8089, pick the number of users and a spawn rate. Headless, for
30 s with 16 users:

    locust -f load_tests/locustfile.py --host http://localhost:3000 --headless -u 16 -r 16 -t 30s

Each user sends its next request as soon as the last one returns (users = concurrent
clients, as in the benchmark's closed loop): single-pair requests, and 16- and 64-pair
requests less often (weights 6 : 3 : 1), from KLUE-STS dev. Locust reports each size
separately (``/score [16 pairs]``). A response that does not hold one score per pair fails.

For a repeatable comparison with the baselines and the in-process ceilings, use the scripted
benchmark (``make bench``, ``load_tests/README.md``): its client is lighter than Locust's,
which matters on a small machine.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from locust import FastHttpUser, constant, task

DEV = Path(__file__).resolve().parents[1] / "data/klue-sts/klue_sts_dev.jsonl"
PAIRS = [
    {"sentence1": row["sentence1"], "sentence2": row["sentence2"]}
    for row in map(json.loads, DEV.read_text(encoding="utf-8").splitlines())
]


class ScoringUser(FastHttpUser):
    """One client of ``POST /score``."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.pairs = itertools.cycle(PAIRS)

    def _score(self, size: int) -> None:
        body = {"pairs": [next(self.pairs) for _ in range(size)]}
        name = f"/score [{size} pair{'s' if size > 1 else ''}]"
        with self.client.post("/score", json=body, name=name, catch_response=True) as response:
            if response.status_code == 200 and len(response.json()) != size:
                response.failure(f"expected {size} scores, got {len(response.json())}")

    @task(6)
    def single_pair(self) -> None:
        self._score(1)

    @task(3)
    def sixteen_pairs(self) -> None:
        self._score(16)

    @task(1)
    def sixty_four_pairs(self) -> None:
        self._score(64)
