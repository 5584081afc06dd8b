"""Scoring Parquet files on a Ray cluster: the file scorer's scoring as one Ray Data ``map_batches`` stage.

    ray job submit --working-dir . -- python -m serving.files_ray INPUT OUTPUT_DIR --workers 8 --gpus-per-worker 1

INPUT is a Parquet file or folder (local, or any filesystem Ray Data reads: ``s3://``, ``gs://``); OUTPUT_DIR
gets the scored rows as Parquet files: every input column plus ``score``, ``similar`` and ``truncated``. Each
worker is an actor (:class:`ScoreBatches`) that loads the model once, the way the service does
(:func:`models.scorer.load_served_scorer`), and scores batches with the same code as ``ko-sts score``
(:func:`serving.files.score_table`). One actor per GPU, or per ``--cpus-per-worker`` CPUs. See docs/files.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import pyarrow as pa

from models.backends import Backend, Device, TorchDtype
from models.scoring import Symmetry
from serving.files import BadRows, FileScoringError, bad_rows, resolve_model, score_table

logger = logging.getLogger("ko_sts.files_ray")

DEFAULT_BATCH_ROWS = 8192


@dataclass
class RayOptions:
    input: str
    output: str
    model: str | None = None
    sentence1: str = "sentence1"
    sentence2: str = "sentence2"
    on_bad_rows: BadRows = "stop"
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_rows: int = DEFAULT_BATCH_ROWS
    backend: Backend = "onnx"
    device: Device = "auto"
    onnx_file: str | None = None
    dtype: TorchDtype = "auto"
    symmetry: Symmetry | None = None
    max_batch_tokens: int | None = None


class ScoreBatches:
    """A Ray Data actor: loads the model once, then scores every batch it is given (pyarrow tables)."""

    def __init__(self, options: dict[str, Any]):
        from models.scorer import load_served_scorer

        self.options = RayOptions(**options)
        model_dir, self.model_name = resolve_model(self.options.model)  # on the worker's node: its store, its paths
        gpu = self.options.gpus_per_worker > 0
        self.scorer = load_served_scorer(
            model_dir,
            self.options.backend,
            device="cuda" if gpu and self.options.device == "auto" else self.options.device,
            onnx_file=self.options.onnx_file,
            threads=0 if gpu else max(1, int(self.options.cpus_per_worker)),
            dtype=self.options.dtype,
            symmetry=self.options.symmetry,
            max_batch_tokens=self.options.max_batch_tokens,
        )
        self.columns = (self.options.sentence1, self.options.sentence2)

    def __call__(self, batch: pa.Table) -> pa.Table:
        mask, found = bad_rows(batch, self.columns)
        if found:
            if self.options.on_bad_rows == "stop":
                index, name, what = found[0]
                row = {
                    key: value for key, value in batch.slice(index, 1).to_pylist()[0].items() if key not in self.columns
                }
                raise FileScoringError(
                    f"a row has {name} {what} (its other columns: {json.dumps(row, ensure_ascii=False, default=str)}); "
                    "fix it, or pass --on-bad-rows skip to leave such rows out"
                )
            batch = batch.filter(pa.array(~mask))
        return score_table(self.scorer, batch, self.columns)


def score_dataset(options: RayOptions) -> dict[str, Any]:
    """Reads INPUT, scores it with ``options.workers`` actors and writes OUTPUT; ``ray.init`` must have run."""
    import ray

    started = time.perf_counter()
    cpus = ray.cluster_resources().get("CPU", 0)
    if options.workers * options.cpus_per_worker > cpus - 1:
        logger.warning(
            "--workers %d x --cpus-per-worker %g leaves less than one of the cluster's %g CPUs for reading and "
            "writing: Ray Data waits until one frees (for ever, on a fixed cluster); use --cpus-per-worker %g",
            options.workers,
            options.cpus_per_worker,
            cpus,
            max(0.1, (cpus - 1) / options.workers),
        )
    dataset = ray.data.read_parquet(options.input)
    missing = [c for c in (options.sentence1, options.sentence2) if c not in dataset.schema().names]
    if missing:
        names = ", ".join(dataset.schema().names)
        raise FileScoringError(
            f"{options.input}: no column {', '.join(map(repr, missing))} (it has: {names}); "
            "name them with --sentence1 and --sentence2"
        )
    # blocks of one batch each, so that every actor gets work (a small file is otherwise one block, one actor);
    # streaming, not a shuffle
    dataset = dataset.repartition(target_num_rows_per_block=options.batch_rows)
    scored = dataset.map_batches(
        ScoreBatches,
        fn_constructor_args=(asdict(options),),
        batch_size=options.batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_gpus=options.gpus_per_worker or None,
        num_cpus=options.cpus_per_worker,
    )
    scored.write_parquet(options.output)
    seconds = time.perf_counter() - started
    rows = ray.data.read_parquet(options.output).count()
    summary = {
        "input": options.input,
        "output": options.output,
        "workers": options.workers,
        "rows": rows,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(rows / seconds, 1),
    }
    logger.info("scored %d pairs into %s in %.1f s with %d workers", rows, options.output, seconds, options.workers)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score a Parquet dataset on a Ray cluster with ko-sts actors (docs/files.md). Run it with "
        "`ray job submit --working-dir . -- python -m serving.files_ray ...`, or directly for a local Ray."
    )
    parser.add_argument("input", help="Parquet file or folder (local path, s3://, gs://, ...)")
    parser.add_argument("output", help="folder for the scored Parquet files")
    parser.add_argument(
        "--model",
        help="package folder or store tag, as seen on every worker node (default: the node's newest ko-sts model, "
        "else the shipped models/default from the job's working directory)",
    )
    parser.add_argument("--sentence1", default="sentence1")
    parser.add_argument("--sentence2", default="sentence2")
    parser.add_argument("--on-bad-rows", choices=get_args(BadRows), default="stop")
    parser.add_argument("--workers", type=int, default=1, help="scoring actors: one per GPU, or per CPU slot")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (1 on a GPU cluster)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per actor (its ONNX threads on CPU)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows per map_batches batch")
    parser.add_argument("--backend", choices=get_args(Backend), default="onnx")
    parser.add_argument("--device", choices=get_args(Device), default="auto")
    parser.add_argument("--onnx-file")
    parser.add_argument("--dtype", choices=get_args(TorchDtype), default="auto")
    parser.add_argument("--symmetry", choices=get_args(Symmetry))
    parser.add_argument("--max-batch-tokens", type=int)
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, as set by ray job submit)")
    parser.add_argument("--stats", type=Path, help="also write the run's summary here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = vars(build_parser().parse_args(argv))
    address, stats = args.pop("address"), args.pop("stats")
    options = RayOptions(**args)
    import ray

    ray.init(address=address)
    try:
        summary = score_dataset(options)
    except FileScoringError as error:
        print(f"serving.files_ray: error: {error}", file=sys.stderr)
        return 2
    if stats:
        stats.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
