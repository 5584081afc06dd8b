"""Where the served time goes: py-spy over every process of ``bentoml serve`` while it is under load.

    python -m load_tests.profile --model outputs/koelectra-base-random --env KO_STS_BACKEND=torch \\
        --env KO_STS_DEVICE=cuda --mix 64 --clients 256 --seconds 10 --output load_tests/results/profile

Starts the service (as the benchmark does), drives it with closed-loop load from this process,
and meanwhile samples each of its processes (the front workers, the model process and
``bentoml serve`` itself) with ``py-spy record --native`` (needs py-spy, and root or ptrace
rights). Writes each process's collapsed stacks (``<role>-<pid>.txt``, flame-graph input) and
``profile.md``: per process, how busy it was, and the functions where its samples end and that
they pass through.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import shutil
import subprocess
import time
from pathlib import Path

from load_tests.bench import ModelRef
from load_tests.load import LoadDriver, read_sentence_pairs, request_pairs
from load_tests.servers import REPO, service_server

logger = logging.getLogger("load_tests.profile")
TOP = 25


def roles(root_pid: int) -> dict[int, str]:
    """The processes of a ``bentoml serve``: pid -> ``serve``, ``front-N`` or ``model-N``."""
    import psutil

    root = psutil.Process(root_pid)
    found = {root_pid: "serve"}
    for child in root.children(recursive=True):
        try:
            line = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "_bentoml_impl.worker.service" not in line:
            continue
        worker = line[line.index("--worker-id") + 1] if "--worker-id" in line else "?"
        name = line[line.index("--service-name") + 1] if "--service-name" in line else ""
        found[child.pid] = f"{'model' if name == 'ScoringModel' else 'front'}-{worker}"
    return found


def cpu_seconds(processes: dict[int, str]) -> dict[str, float]:
    """Each process's CPU time so far (user + system), by role."""
    import psutil

    times = {}
    for pid, role in processes.items():
        cpu = psutil.Process(pid).cpu_times()
        times[role] = cpu.user + cpu.system
    return times


def summarise(path: Path, seconds: float, rate: int) -> str:
    """A process's busy share and its top functions, from py-spy's collapsed stacks (``frame;frame count``)."""
    leaves: collections.Counter = collections.Counter()
    through: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        leaves[frames[-1]] += samples
        for frame in set(frames[1:]):  # the first frame is the thread
            through[frame] += samples
    lines = [f"### {path.stem}", "", f"{total} samples, about {total / (seconds * rate):.2f} busy threads", ""]
    for title, counter in (("where samples end (self)", leaves), ("what samples pass through (total)", through)):
        lines += [f"{title}:", "", "| share | function |", "|---:|---|"]
        lines += [f"| {n / max(total, 1):.1%} | `{frame[:140]}` |" for frame, n in counter.most_common(TOP)]
        lines.append("")
    return "\n".join(lines)


async def drive(
    url: str, pairs, mix: int, clients: int, seconds: float, processes: dict[int, str]
) -> tuple[dict, dict[str, float]]:
    """Closed-loop load after a warm-up: the window's summary and each process's CPU seconds in it."""
    from load_tests.load import HttpTransport

    transport = HttpTransport(url, timeout_s=60)
    await transport.start()
    try:
        payloads = [transport.prepare(p) for p in request_pairs(pairs, mix)]
        driver = LoadDriver(transport)
        await driver.closed_loop(payloads, mix, clients, 2.0, 0.0)  # warm-up
        before = cpu_seconds(processes)
        window = await driver.closed_loop(payloads, mix, clients, seconds, 0.0)
        after = cpu_seconds(processes)
        return window.summary(), {role: after[role] - before[role] for role in before}
    finally:
        await transport.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m load_tests.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="store tag or package folder (stored first)")
    parser.add_argument("--env", action="append", default=[], help="service setting KEY=VALUE (repeatable)")
    parser.add_argument("--mix", type=int, default=64, help="pairs per request")
    parser.add_argument("--clients", type=int, default=256, help="closed-loop clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds sampled")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--data", default="data/klue-sts/klue_sts_train.jsonl", help="sentence pairs, cycled")
    parser.add_argument("--output", type=Path, default=REPO / "load_tests/results/profile")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not installed: pip install py-spy")
    args.output.mkdir(parents=True, exist_ok=True)
    env = dict(entry.split("=", 1) for entry in args.env)
    model = ModelRef.resolve(args.model, need_tag=True)
    server = service_server("127.0.0.1", {**env, "KO_STS_MODEL_TAG": model.tag}, args.output / "server.log")
    server.start(600)
    try:
        processes = roles(server.process.pid)
        logger.info("profiling %s", ", ".join(f"{role} ({pid})" for pid, role in processes.items()))
        samplers = [
            subprocess.Popen(
                [
                    *("py-spy", "record", "--native", "--format", "raw", "--rate", str(args.rate)),
                    *("--duration", str(int(args.seconds)), "--pid", str(pid)),
                    *("--output", str(args.output / f"{role}-{pid}.txt")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            for pid, role in processes.items()
        ]
        time.sleep(0.5)
        pairs = read_sentence_pairs(REPO / args.data)
        load, spent = asyncio.run(drive(server.url, pairs, args.mix, args.clients, args.seconds, processes))
        for sampler in samplers:
            sampler.wait(timeout=120)
    finally:
        server.stop()
    head = [
        f"# Profile: {args.mix}-pair requests, {args.clients} clients, {args.seconds:g} s",
        "",
        f"Load: {load['pairs_per_s']:.0f} pairs/s, p50 {load['p50_ms']:.1f} ms, errors {load['errors'] or 'none'}; "
        f"settings {env}; model {model.tag}",
        "",
        "CPU per request (user + system, over the window): "
        + ", ".join(f"{role} {1000 * seconds / max(load['requests'], 1):.2f} ms" for role, seconds in spent.items()),
        "",
    ]
    profiles = sorted(args.output.glob("*-*.txt"))
    body = [summarise(path, args.seconds, args.rate) for path in profiles]
    (args.output / "profile.md").write_text("\n".join(head + body) + "\n", encoding="utf-8")
    logger.info("profile: %s", args.output / "profile.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
