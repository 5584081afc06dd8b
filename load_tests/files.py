"""Benchmark of ``ko-sts score`` (serving/files.py): the command against the bare scorer, its memory, Ray's scaling.

    python -m load_tests.files --out load_tests/results/$(date +%F)-files                 # CPU, all parts
    python -m load_tests.files --backend torch --device cuda --repeats 3 --out results-gpu   # on a GPU machine

What it measures, each on the same model and scorer settings (``load_served_scorer``, as the service builds):

- **ceiling**: ``Scorer.score`` in this process on the file's pairs, in calls of ``--chunk-rows`` pairs, no file
  reading or writing: what tokenising, the model and batching alone do; **model only**: ``Scorer.forward`` on
  the same pairs tokenised beforehand (the forward passes alone), per chunk and in one call over all rows (the
  stricter: no chunk ends where the GPU drains). The scorer is built as the command builds its own (compiled, CUDA
  graphs: ``--compile``, ``--cuda-graphs``, by default as the command decides).
- **command**: ``python -m serving.files score`` on a CSV of the same pairs, in a subprocess; its own
  pairs/s (``--stats``, model loading excluded) and its wall time. Ceiling and command runs alternate
  (``--repeats``), so that a neighbour's load falls on both; medians are reported.
- **rss**: peak RSS (``wait4``'s ``ru_maxrss``) of the command on a ``--rss-rows`` CSV, stopped after
  ``--rss-seconds`` (resumable, so stopping is a normal event), with its RSS sampled over time to show it flat.
- **ray**: ``serving.files_ray`` on a local Ray (``ray.init(num_cpus=...)``) with 1 and then 2 CPU workers.

Pairs are KLUE-STS train's, repeated to the size asked for. Writes ``results.json`` and ``results.md`` into
``--out``. Needs numpy, tokenizers, pyarrow, tqdm and the runtime (onnxruntime, or torch for ``--backend
torch``); not BentoML, nor pandas. The shipped default has no PyTorch weights: for ``--backend torch`` they are
rebuilt from its int8 file into a temporary copy (that needs ``onnx`` and ``safetensors``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
KLUE_TRAIN = REPO / "data/klue-sts/klue_sts_train.jsonl"
DEFAULT_MODEL = REPO / "models/default"


def klue_pairs(source: Path) -> pa.Table:
    """KLUE-STS train's (guid, sentence1, sentence2) as a table."""
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pa.table({key: [row[key] for row in rows] for key in ("guid", "sentence1", "sentence2")})


def write_pairs(base: pa.Table, rows: int, path: Path) -> Path:
    """Writes ``rows`` pairs (``base`` repeated, with a row id) as CSV or Parquet, a block at a time."""
    block = 65536
    writer = None
    try:
        for start in range(0, rows, block):
            count = min(block, rows - start)
            index = pa.array([(start + i) % base.num_rows for i in range(count)])
            table = base.take(index)
            table = table.add_column(0, "id", pa.array(range(start, start + count), pa.int64()))
            if writer is None:
                writer = (
                    pq.ParquetWriter(path, table.schema)
                    if path.suffix == ".parquet"
                    else pa_csv.CSVWriter(path, table.schema)
                )
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path


def package_for(model: Path, backend: str, scratch: Path) -> Path:
    """The package to score with: for PyTorch, a copy with weights rebuilt from the int8 file if it has none."""
    from models.package import has_torch_weights

    if backend != "torch" or has_torch_weights(model):
        return model
    from models.backends import ONNX_INT8, ONNX_SUBDIR
    from models.weights import write_torch_weights

    copy = scratch / "model-with-torch-weights"
    shutil.copytree(model, copy)
    write_torch_weights(copy, copy / ONNX_SUBDIR / ONNX_INT8)
    return copy


def scorer_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--backend", args.backend, "--device", args.device, "--chunk-rows", str(args.chunk_rows)]
    if args.max_batch_tokens:
        flags += ["--max-batch-tokens", str(args.max_batch_tokens)]
    if args.tokenizer_threads:
        flags += ["--tokenizer-threads", str(args.tokenizer_threads)]
    if args.tokenizer_processes is not None:
        flags += ["--tokenizer-processes" if args.tokenizer_processes else "--no-tokenizer-processes"]
    flags += ["--cuda-graphs" if args.cuda_graphs else "--no-cuda-graphs"]
    return [*flags, "--compile" if args.compile else "--no-compile"]


def ceiling(scorer, pairs: list[tuple[str, str]], chunk: int) -> float:
    """Pairs per second of ``Scorer.score`` over ``pairs`` in calls of ``chunk`` pairs."""
    started = time.perf_counter()
    for start in range(0, len(pairs), chunk):
        scorer.score(pairs[start : start + chunk])
    _sync(scorer)
    return len(pairs) / (time.perf_counter() - started)


def model_only(scorer, encoded: list) -> float:
    """Pairs per second of the forward passes alone (``Scorer.forward`` on rows tokenised beforehand)."""
    started = time.perf_counter()
    pairs = 0
    for rows in encoded:
        scorer.forward(rows)
        pairs += len(rows) // scorer.rows_per_pair
    _sync(scorer)
    return pairs / (time.perf_counter() - started)


def _sync(scorer) -> None:
    if scorer.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_command(source: Path, target: Path, model: Path, flags: list[str], stats: Path) -> dict:
    """One ``python -m serving.files score`` run; its summary plus wall time and peak RSS."""
    command = [sys.executable, "-m", "serving.files", "score", str(source), str(target), "--model", str(model)]
    command += [*flags, "--no-progress", "--overwrite", "--stats", str(stats)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    log = _drain(process)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{''.join(log)[-3000:]}")
    summary = json.loads(stats.read_text())
    return {**summary, "wall_s": round(time.perf_counter() - started, 2), "peak_rss_mib": usage.ru_maxrss / 1024}


def _drain(process: subprocess.Popen) -> list[str]:
    lines: list[str] = []
    thread = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    thread.start()
    return lines


def rss_run(source: Path, target: Path, model: Path, flags: list[str], seconds: float) -> dict:
    """The command on a big file for ``seconds``, then SIGTERM: peak RSS and RSS sampled every 2 s."""
    command = [sys.executable, "-m", "serving.files", "score", str(source), str(target), "--model", str(model)]
    command += [*flags, "--no-progress", "--overwrite"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    log = _drain(process)
    samples = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds and process.poll() is None:
        time.sleep(2)
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except FileNotFoundError:
            break
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        samples.append((round(time.perf_counter() - started, 1), round(rss / 1024, 1)))
    process.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(process.pid, 0)
    parts = Path(f"{target}.parts/parts.jsonl")
    done = sum(json.loads(line)["rows_in"] for line in parts.read_text().splitlines()) if parts.is_file() else 0
    shutil.rmtree(f"{target}.parts", ignore_errors=True)
    committed = [line for line in log if "committed" in line]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "rows_committed": done,
        "parts_committed": len(committed),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rss_samples_mib": samples,
    }


def ray_runs(source: Path, scratch: Path, model: Path, args: argparse.Namespace) -> list[dict]:
    """serving.files_ray on a local Ray with 1, then 2, CPU workers (one ONNX thread each)."""
    import ray

    from serving.files_ray import RayOptions, score_dataset

    env = {"PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, runtime_env={"env_vars": env})
    results = []
    try:
        for workers in (1, 2):
            options = RayOptions(
                input=str(source),
                output=str(scratch / f"ray-{workers}"),
                model=str(model),
                workers=workers,
                cpus_per_worker=args.ray_cpus_per_worker,
                device="cpu",
                batch_rows=args.ray_batch_rows,
            )
            results.append(score_dataset(options))
    finally:
        ray.shutdown()
    return results


def report(results: dict) -> str:
    lines = [f"# ko-sts score benchmark ({results['date']})", "", f"Machine: {results['machine']}", ""]
    compiled = ", compiled (torch.compile, here and in the command)" if results.get("compiled") else ""
    graphs = results.get("cuda_graphs")
    graphs = f", CUDA graphs of full passes ({graphs} widths planned, here and in the command)" if graphs else ""
    model = f"`{results['model']}`, {results['runtime']}{compiled}{graphs}"
    lines += [f"Model: {model}, chunks of {results['chunk_rows']} pairs.", ""]
    if "ceiling" in results:
        c, m, f = results["ceiling"], results["command"], results.get("model_only")
        whole = results.get("model_only_one_call")

        def row(what: str, runs: list[float]) -> str:
            return f"| {what} | {statistics.median(runs):.1f} | {', '.join(f'{r:.1f}' for r in runs)} |"

        lines += [
            f"## Throughput: {results['pairs']} pairs, {len(c['runs'])} alternating repeats, medians",
            "",
            "| what | pairs/s | runs |",
            "|---|---|---|",
            row(f"ceiling: `Scorer.score` in-process, calls of {results['chunk_rows']}", c["runs"]),
            *([row("model only: `Scorer.forward` on rows tokenised beforehand, per chunk", f["runs"])] if f else []),
            *([row("model only: `Scorer.forward` on all rows in one call", whole["runs"])] if whole else []),
            row("`ko-sts score` CSV -> CSV (scoring, model load excluded)", m["runs"]),
            row("`ko-sts score`, whole command wall time", m["wall_runs"]),
            "",
            f"Command / ceiling: **{m['median'] / c['median']:.2f}x** (paired per repeat: "
            f"{', '.join(f'{r:.2f}' for r in results['ratios'])}); whole command incl. start-up: "
            f"{m['wall_median'] / c['median']:.2f}x"
            + (f"; command / model only: {m['median'] / f['median']:.2f}x" if f else "")
            + (f" (per chunk), {m['median'] / whole['median']:.2f}x (one call)" if whole else "")
            + f". Peak RSS of these runs: {m['peak_rss_mib']:.0f} MiB.",
            "",
            "Where the command's passes thread spent its time, per repeat (seconds; `ko-sts score --stats`): "
            + "; ".join(", ".join(f"{name} {value:.2f}" for name, value in t.items()) for t in m.get("time_s", [])),
            "",
        ]
    if "rss" in results:
        r = results["rss"]
        flat = ", ".join(
            f"{t:.0f}s {v:.0f}" for t, v in r["rss_samples_mib"][:: max(1, len(r["rss_samples_mib"]) // 12)]
        )
        lines += [
            f"## Memory: a {results['rss_rows']:,}-row CSV",
            "",
            f"Chunks of {r['chunk_rows']} rows. Scored for {r['seconds']} s ({r['rows_committed']:,} rows committed "
            f"in {r['parts_committed']} parts), "
            f"then stopped (SIGTERM). Peak RSS **{r['peak_rss_mib']:.0f} MiB**. RSS over time (MiB): {flat}.",
            "",
        ]
    if "ray" in results:
        lines += [
            f"## Ray Data, local (`ray.init(num_cpus={results['args']['ray_cpus']})`), {results['ray_pairs']} pairs "
            f"(Parquet), CPU workers of one ONNX thread ({results['args']['ray_cpus_per_worker']} Ray CPU) each",
            "",
            "| workers | pairs/s (incl. actor start, read, write) | seconds |",
            "|---|---|---|",
        ]
        lines += [f"| {r['workers']} | {r['pairs_per_s']} | {r['seconds']} |" for r in results["ray"]]
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="package folder (default models/default)")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--max-batch-tokens", type=int, help="as the command's flag (default: the service's)")
    parser.add_argument("--pairs", type=int, help="pairs in the throughput file (default: 2000, 200000 on CUDA)")
    parser.add_argument("--chunk-rows", type=int, default=8192, help="the command's chunks and the ceiling's calls")
    parser.add_argument("--tokenizer-threads", type=int, help="the command's --tokenizer-threads (default: its own)")
    parser.add_argument(
        "--model-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the forward passes alone, on pairs tokenised beforehand",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="PyTorch on CUDA: compile the model in the command and in this process (ceiling, model-only passes) "
        "alike; default: as the command decides for a file of --pairs rows",
    )
    parser.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PyTorch on CUDA: CUDA graphs of full passes in the command and in this process alike (default: on, as "
        "in the command)",
    )
    parser.add_argument(
        "--tokenizer-processes",
        action=argparse.BooleanOptionalAction,
        help="the command's --tokenizer-processes (default: its own, on a GPU)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="alternating ceiling / command runs")
    parser.add_argument(
        "--rss-rows", type=int, help="rows of the memory run's CSV (0: no run; default: 1,000,000, none on CUDA)"
    )
    parser.add_argument("--rss-chunk-rows", type=int, help="the memory run's --chunk-rows (default: --chunk-rows)")
    parser.add_argument("--rss-seconds", type=float, default=180, help="how long the memory run scores")
    parser.add_argument(
        "--ray", action=argparse.BooleanOptionalAction, help="the Ray runs (CPU workers; default: on, off on CUDA)"
    )
    parser.add_argument("--ray-pairs", type=int, default=1000, help="pairs in the Ray runs' Parquet file")
    parser.add_argument("--ray-cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    parser.add_argument(
        "--ray-cpus-per-worker", type=float, default=0.5, help="below 1 leaves Ray CPUs to read and write"
    )
    parser.add_argument("--ray-batch-rows", type=int, default=256, help="rows per map_batches batch")
    parser.add_argument("--source", type=Path, default=KLUE_TRAIN, help="the pairs to repeat (JSON Lines)")
    parser.add_argument("--scratch", type=Path, help="where the generated files go (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cuda = args.device == "cuda"
    args.pairs = args.pairs if args.pairs is not None else (200_000 if cuda else 2000)
    args.rss_rows = args.rss_rows if args.rss_rows is not None else (0 if cuda else 1_000_000)
    args.ray = args.ray if args.ray is not None else not cuda
    from models.pairs import EncodedRows
    from models.scorer import compile_model, load_served_scorer, plan_pass_graphs
    from serving.files import COMPILE_FROM_ROWS, by_size

    args.compile = by_size(args.compile, args.pairs, COMPILE_FROM_ROWS)

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="ko-sts-files-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    base = klue_pairs(args.source)
    model = package_for(args.model, args.backend, scratch)
    flags = scorer_flags(args)
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f} at start",
        "model": str(args.model),
        "chunk_rows": args.chunk_rows,
        "pairs": args.pairs,
        "args": {k: str(v) for k, v in vars(args).items()},
    }

    scorer = load_served_scorer(model, args.backend, device=args.device, max_batch_tokens=args.max_batch_tokens)
    results["compiled"] = compile_model(scorer, args.compile)
    results["cuda_graphs"] = plan_pass_graphs(scorer) if args.cuda_graphs else 0
    results["runtime"] = scorer.runtime.description
    if args.pairs:
        source = write_pairs(base, args.pairs, scratch / "pairs.csv")
        table = pa_csv.read_csv(source)
        pairs = list(zip(table.column("sentence1").to_pylist(), table.column("sentence2").to_pylist()))
        scorer.score(pairs[: min(len(pairs), 256)])  # warm-up (CUDA graphs, allocator)
        chunked = range(0, len(pairs), args.chunk_rows)
        encoded = [scorer.encode(pairs[i : i + args.chunk_rows]) for i in chunked] if args.model_only else []
        whole = [EncodedRows.concat(encoded)] if encoded else []
        ceilings, forwards, wholes, commands, walls, ratios, rss, spent = [], [], [], [], [], [], [], []
        for repeat in range(args.repeats):
            ceilings.append(ceiling(scorer, pairs, args.chunk_rows))
            if args.model_only:
                forwards.append(model_only(scorer, encoded))
                wholes.append(model_only(scorer, whole))
            run = run_command(source, scratch / "scored.csv", model, flags, scratch / "stats.json")
            commands.append(run["pairs_per_s"])
            spent.append(run["time_s"])
            walls.append(args.pairs / run["wall_s"])
            ratios.append(commands[-1] / ceilings[-1])
            rss.append(run["peak_rss_mib"])
            print(f"repeat {repeat + 1}: ceiling {ceilings[-1]:.1f}, command {commands[-1]:.1f} pairs/s", flush=True)
        results["ceiling"] = {"runs": ceilings, "median": statistics.median(ceilings)}
        if forwards:
            results["model_only"] = {"runs": forwards, "median": statistics.median(forwards)}
            results["model_only_one_call"] = {"runs": wholes, "median": statistics.median(wholes)}
        del encoded, whole
        results["command"] = {
            "runs": commands,
            "median": statistics.median(commands),
            "wall_runs": walls,
            "wall_median": statistics.median(walls),
            "peak_rss_mib": max(rss),
            "time_s": spent,
        }
        results["ratios"] = ratios
    del scorer
    if args.rss_rows:
        big = write_pairs(base, args.rss_rows, scratch / "big.csv")
        results["rss_rows"] = args.rss_rows
        rss_flags = [*flags, "--chunk-rows", str(args.rss_chunk_rows or args.chunk_rows)]  # the last one counts
        results["rss"] = rss_run(big, scratch / "big-scored.csv", model, rss_flags, args.rss_seconds)
        results["rss"]["chunk_rows"] = args.rss_chunk_rows or args.chunk_rows
        print(f"rss: {results['rss']['peak_rss_mib']} MiB", flush=True)
    if args.ray:
        parquet = write_pairs(base, args.ray_pairs, scratch / "ray.parquet")
        results["ray_pairs"] = args.ray_pairs
        results["ray"] = ray_runs(parquet, scratch, model, args)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(report(results) + "\n", encoding="utf-8")
    print(report(results))
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
