"""Scoring files of sentence pairs: CSV, TSV, JSON Lines and Parquet in and out, in chunks, resumable.

    ko-sts score INPUT OUTPUT [--model TAG|DIR] [--sentence1 COL] [--sentence2 COL] [--on-bad-rows skip]
    python -m serving.files score INPUT OUTPUT ...          # the same, without installing the command

Every input column is kept and ``score``, ``similar`` (``score >= 3.0``) and ``truncated`` are added,
computed by the service's own scorer (:func:`models.scorer.load_served_scorer`, what
:meth:`serving.settings.Settings.scorer` builds): the same tokeniser, the same forward passes cut by the
same token budget, on ONNX Runtime or PyTorch, CPU or CUDA.

The input is read as a stream (pyarrow's CSV and JSON readers, Parquet batches) and cut into chunks of
``--chunk-rows`` rows; memory stays flat whatever the file's size. A thread reads, checks and tokenises
chunk N+1 while the forward passes of chunk N run (from before the model has loaded; on a GPU in worker
processes, so that tokenising never holds the GIL the passes' launches need), and passes are kept in flight
across chunks (:meth:`models.scorer.Scorer.launch_passes`), so a GPU is not drained between chunks; there,
full passes replay CUDA graphs (:func:`models.scorer.plan_pass_graphs`). Each scored chunk
is written as a part under ``OUTPUT.parts/`` and committed to its ``manifest.json``; a run that stops
(killed, power lost) starts again from the first chunk not committed, and the finished parts are joined
into OUTPUT at the end. See docs/files.md.

The scoring path imports neither BentoML nor pandas: given a model package folder it runs with numpy,
tokenizers, pyarrow, tqdm and the runtime (onnxruntime or torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.backends import Backend, CpuActivations, Device, TorchDtype, resolve_device
from models.package import PackageError, check_package
from models.pairs import EncodedRows
from models.scorer import (
    DEFAULT_BATCH_ROWS,
    PASSES_IN_FLIGHT,
    PairCodec,
    Scorer,
    compile_model,
    load_served_scorer,
    plan_pass_graphs,
)
from models.scoring import SIMILAR_THRESHOLD, Symmetry

logger = logging.getLogger("ko_sts.files")

Format = Literal["csv", "tsv", "jsonl", "parquet"]
BadRows = Literal["stop", "skip"]
SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
ADDED_COLUMNS = ("score", "similar", "truncated")
DEFAULT_PACKAGE = Path(__file__).resolve().parents[1] / "models" / "default"
STORE_MODEL = "ko-sts"  # models.store.MODEL_NAME (not imported: that module needs BentoML)
DEFAULT_CHUNK_ROWS = 8192
READ_BLOCK_BYTES = 1 << 22  # pyarrow CSV/JSON block: about 4 MB of text at a time
MANIFEST = "manifest.json"
PARTS_LOG = "parts.jsonl"
MANIFEST_VERSION = 1
PREPARED_AHEAD = 2  # chunks read, checked and tokenised ahead of the forward passes
WRITES_AHEAD = 2  # scored chunks waiting for the writer
# --compile's default: compile (PyTorch on a GPU) for inputs of at least this many rows. On the H200 compiling
# took 6 s (Inductor's cache warm) to 40 s (a fresh machine) and made passes about 13% faster (43.6k -> 49.4k
# pairs/s for KoELECTRA-base): it pays from about 2M pairs warm, 14M cold.
COMPILE_FROM_ROWS = 5_000_000


# What turns ``tokenizers``' own parallelism off in TOKENIZERS_PARALLELISM (its utils/parallelism.rs, lowercased).
TOKENIZERS_OFF = ("", "off", "false", "f", "no", "n", "0")


def default_tokenizer_threads() -> int:
    """Threads checking and tokenising chunks. ``tokenizers`` spreads each chunk over every core itself, so two
    threads (one on 2 cores) keep the cores busy, one tokenising while the other turns its encodings into arrays
    (which holds the GIL). Where ``TOKENIZERS_PARALLELISM`` turns that off, half the cores, 1 to 8.
    """
    half = (os.cpu_count() or 2) // 2
    parallel = os.environ.get("TOKENIZERS_PARALLELISM", "true").lower() not in TOKENIZERS_OFF
    return max(1, min(2 if parallel else 8, half))


class FileScoringError(ValueError):
    """A problem with the input, the output or the options that the user can fix; the message says how."""


# --- formats ---------------------------------------------------------------------------------------------------


def file_format(path: Path, given: str | None = None) -> Format:
    """The format named by ``given``, else by the file's suffix."""
    if given:
        if given not in get_args(Format):
            raise FileScoringError(f"unknown format {given!r}; choose one of: {', '.join(get_args(Format))}")
        return given  # type: ignore[return-value]
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise FileScoringError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r} (known: {', '.join(SUFFIXES)}); "
            "name it with --input-format / --output-format"
        )
    return found


@dataclass
class Input:
    """An input file opened as a stream of record batches."""

    path: Path
    format: Format
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    rows: int | None  # known (Parquet) or estimated from lines (text formats): for the progress bar only


def open_input(path: Path, fmt: Format, columns: tuple[str, str]) -> Input:
    """Opens ``path`` for streaming; the sentence columns are read as text, the others as they are."""
    if not path.is_file():
        raise FileScoringError(f"{path}: no such file")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        _check_columns(path, schema.names, columns)
        return Input(path, fmt, schema, parquet.iter_batches(batch_size=65536), parquet.metadata.num_rows)
    if fmt == "jsonl":
        from pyarrow import json as pa_json

        options = pa_json.ParseOptions(
            explicit_schema=pa.schema([(name, pa.string()) for name in columns]), unexpected_field_behavior="infer"
        )
        reader = pa_json.open_json(
            path, read_options=pa_json.ReadOptions(block_size=READ_BLOCK_BYTES), parse_options=options
        )
        _check_columns(path, reader.schema.names, columns, present=_jsonl_keys(path))
        return Input(path, fmt, reader.schema, iter(reader), _count_lines(path))
    from pyarrow import csv

    parse = csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
    read = csv.ReadOptions(block_size=READ_BLOCK_BYTES)
    with csv.open_csv(path, read_options=read, parse_options=parse) as peek:
        names = peek.schema.names
    _check_columns(path, names, columns)
    # every column as text: values come out exactly as written, and no block can disagree with the first's types
    convert = csv.ConvertOptions(column_types={name: pa.string() for name in names}, strings_can_be_null=False)
    reader = csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    return Input(path, fmt, reader.schema, iter(reader), max(0, _count_lines(path) - 1))


def _check_columns(path: Path, names: list[str], columns: tuple[str, str], present: set[str] | None = None) -> None:
    found = set(names) if present is None else present
    missing = [name for name in columns if name not in found]
    if missing:
        raise FileScoringError(
            f"{path}: no column {', '.join(repr(m) for m in missing)} (it has: {', '.join(sorted(found)) or 'none'}); "
            "name the sentence columns with --sentence1 and --sentence2"
        )
    taken = [name for name in ADDED_COLUMNS if name in names]
    if taken:
        raise FileScoringError(
            f"{path} already has a column {', '.join(repr(t) for t in taken)}, which the output adds; rename it first"
        )


def _jsonl_keys(path: Path) -> set[str]:
    """The keys of the first JSON Lines record (the reader's schema always has the sentence columns)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return set(json.loads(line))
                except ValueError as error:
                    raise FileScoringError(f"{path}: line 1 is not JSON ({error})") from None
    return set()


def _count_lines(path: Path) -> int:
    """Newlines in a file (a row count for the progress bar; a quoted field over several lines counts more)."""
    count = 0
    last = b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def write_part(table: pa.Table, path: Path, fmt: Format, header: bool) -> None:
    """Writes one scored chunk; text parts after the first have no header, so that parts join by concatenation."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as handle:
            for record in table.to_pylist():
                handle.write(json.dumps(record, ensure_ascii=False, default=str))
                handle.write("\n")
    else:
        from pyarrow import csv

        options = csv.WriteOptions(include_header=header, delimiter="\t" if fmt == "tsv" else ",")
        csv.write_csv(table, path, options)


def join_parts(parts: list[Path], target: Path, fmt: Format) -> None:
    """Joins the parts, in order, into ``target``, one part in memory at a time."""
    if fmt != "parquet":
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        return
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])
    with pq.ParquetWriter(target, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part).cast(schema))


# --- the rows of a chunk ---------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """One chunk of input rows on its way through: checked and tokenised, then scored, then written."""

    index: int
    first_row: int  # 1-based number of its first row in the input
    rows_in: int
    table: pa.Table  # the rows kept, every input column
    skipped: list[dict[str, Any]]
    rows: Any = None  # models.pairs.EncodedRows of the kept pairs
    logits: np.ndarray | None = None
    passes_out: int = 0
    launched: bool = False

    @property
    def done(self) -> bool:
        return self.launched and self.passes_out == 0


def bad_rows(table: pa.Table, columns: tuple[str, str]) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Rows whose sentence is missing (null) or empty (blank): a mask over the table and (index, column, what)."""
    bad = np.zeros(table.num_rows, dtype=bool)
    found: list[tuple[int, str, str]] = []
    for name in columns:
        values = table.column(name)
        missing = pc.is_null(values).to_numpy(zero_copy_only=False)
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            values = pc.cast(values, pa.string())
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False).to_numpy(zero_copy_only=False)
        for index in np.flatnonzero((missing | blank) & ~bad):
            found.append((int(index), name, "missing" if missing[index] else "empty"))
        bad |= missing | blank
    found.sort()
    return bad, found


def prepare(
    table: pa.Table, index: int, first_row: int, columns: tuple[str, str], on_bad_rows: BadRows, input_path: Path
) -> Chunk:
    """Checks a chunk's sentences; stops at the first bad row, or (``skip``) leaves such rows out and lists them."""
    rows_in = table.num_rows
    mask, found = bad_rows(table, columns)
    skipped = []
    if found:
        row, name, what = found[0]
        if on_bad_rows == "stop":
            raise FileScoringError(
                f"{input_path}: {row_name(first_row + row, input_path)}: {name} is {what}; fix the row, or pass "
                "--on-bad-rows skip to leave such rows out (they are listed in OUTPUT.skipped.jsonl)"
            )
        skipped = [{"row": first_row + r, "column": n, "problem": w} for r, n, w in found]
        table = table.filter(pa.array(~mask))
    return Chunk(index, first_row, rows_in, table, skipped)


def row_name(row: int, path: Path) -> str:
    """How an error names an input row: its 1-based number, and its line where the format has one line per row."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt in ("csv", "tsv"):
        return f"row {row} (line {row + 1}, after the header)"
    if fmt == "jsonl":
        return f"row {row} (line {row})"
    return f"row {row}"


def sentences(table: pa.Table, name: str) -> list[str]:
    values = table.column(name)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    return values.to_pylist()


def chunks(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Regroups record batches of any size into tables of exactly ``size`` rows (the last one fewer)."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, size).combine_chunks()
            rest = table.slice(size)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held).combine_chunks()


def scored_table(scorer: Scorer, chunk: Chunk) -> pa.Table:
    """The chunk's rows with ``score``, ``similar`` and ``truncated`` added."""
    if chunk.table.num_rows == 0:
        scores, truncated = np.empty(0, dtype=np.float64), np.empty(0, dtype=bool)
    else:
        scores, truncated = scorer.to_scores(chunk.logits), scorer.truncated(chunk.rows)
    return add_scores(chunk.table, scores, truncated)


def add_scores(table: pa.Table, scores: np.ndarray, truncated: np.ndarray) -> pa.Table:
    scores = np.asarray(scores, dtype=np.float64)
    return (
        table.append_column("score", pa.array(scores, pa.float64()))
        .append_column("similar", pa.array(scores >= SIMILAR_THRESHOLD, pa.bool_()))
        .append_column("truncated", pa.array(np.asarray(truncated, dtype=bool), pa.bool_()))
    )


def score_table(scorer: Scorer, table: pa.Table, columns: tuple[str, str]) -> pa.Table:
    """Scores every row of a table whose sentences are present (no bad rows); used by the Ray stage."""
    pairs = list(zip(sentences(table, columns[0]), sentences(table, columns[1])))
    if not pairs:
        return add_scores(table, np.empty(0), np.empty(0, dtype=bool))
    rows = scorer.encode(pairs)
    return add_scores(table, scorer.to_scores(scorer.forward(rows)), scorer.truncated(rows))


# --- the run: parts, manifest, resume --------------------------------------------------------------------------


@dataclass
class Options:
    """What a run is asked to do; what must not change between a run and its resumption is in :meth:`identity`."""

    input: Path
    output: Path
    model: str | None = None
    sentence1: str = "sentence1"
    sentence2: str = "sentence2"
    input_format: str | None = None
    output_format: str | None = None
    on_bad_rows: BadRows = "stop"
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    backend: Backend = "onnx"
    device: Device = "auto"
    onnx_file: str | None = None
    dtype: TorchDtype = "auto"
    threads: int = 0
    cpu_activations: CpuActivations = "int8"
    compile: bool | None = None  # None: when the input has at least COMPILE_FROM_ROWS rows
    cuda_graphs: bool = True
    tokenizer_threads: int = field(default_factory=default_tokenizer_threads)
    tokenizer_processes: bool | None = None  # None: on a GPU
    symmetry: Symmetry | None = None
    max_batch_tokens: int | None = None
    max_batch_rows: int = DEFAULT_BATCH_ROWS
    overwrite: bool = False
    progress: bool = True
    stats: Path | None = None

    @property
    def columns(self) -> tuple[str, str]:
        return (self.sentence1, self.sentence2)


class Manifest:
    """``OUTPUT.parts/``: ``manifest.json`` says what the run is (written once), ``parts.jsonl`` which parts are
    committed, one line appended and synced per part (a line cut short by a crash is dropped when read back).
    """

    def __init__(self, folder: Path, identity: dict[str, Any], parts: list[dict[str, Any]] | None = None):
        self.folder = folder
        self.identity = identity
        self.parts = parts or []
        self.rows_done = sum(part["rows_in"] for part in self.parts)

    @classmethod
    def create(cls, folder: Path, identity: dict[str, Any]) -> Manifest:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PARTS_LOG).write_bytes(b"")
        _write_atomic(folder / MANIFEST, json.dumps({"version": MANIFEST_VERSION, "identity": identity}, indent=1))
        return cls(folder, identity)

    @classmethod
    def load(cls, folder: Path) -> tuple[Manifest, int]:
        """The committed parts and the manifest's version; a torn last line of ``parts.jsonl`` is cut off."""
        head = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        log = folder / PARTS_LOG
        data = log.read_bytes() if log.is_file() else b""
        parts, good = [], 0
        for line in data.splitlines(keepends=True):
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("torn")
                parts.append(json.loads(line))
            except ValueError:
                break
            good += len(line)
        if good != len(data):
            with open(log, "r+b") as handle:
                handle.truncate(good)
        return cls(folder, head.get("identity", {}), parts), head.get("version", 0)

    def commit(self, part: dict[str, Any]) -> None:
        with open(self.folder / PARTS_LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(part) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.parts.append(part)
        self.rows_done += part["rows_in"]


def _write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def skipped_file(output: Path) -> Path:
    return output.with_name(output.name + ".skipped.jsonl")


def resolve_model(model: str | None) -> tuple[Path, str]:
    """The model package to score with and how to name it: a package folder, a store tag, or by default the newest
    ``ko-sts`` model in the BentoML store (what ``bentoml serve`` serves), else the shipped ``models/default``.
    """
    if model is not None and Path(model).is_dir():
        check_package(model)
        return Path(model), str(Path(model))
    try:
        import bentoml
        from bentoml.exceptions import NotFound
    except ImportError:
        if model is None:
            logger.info("BentoML is not installed: scoring with the shipped %s", DEFAULT_PACKAGE)
            return DEFAULT_PACKAGE, "models/default"
        raise FileScoringError(
            f"--model {model}: not a folder, and a model-store tag needs BentoML (not installed); pass a package folder"
        ) from None
    tag = model or f"{STORE_MODEL}:latest"
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        if model is None:
            logger.info("no %s model in the BentoML store: scoring with the shipped %s", STORE_MODEL, DEFAULT_PACKAGE)
            return DEFAULT_PACKAGE, "models/default"
        raise FileScoringError(f"--model {model}: no such folder, and no such tag in the BentoML store") from None
    from serving.startup import ModelRefused, check_stored_model  # the service's own check of a stored copy

    try:
        check_stored_model(stored.path, str(stored.tag))
    except ModelRefused as error:
        raise FileScoringError(str(error)) from None
    return Path(stored.path), str(stored.tag)


def _identity(options: Options, fmt_in: Format, fmt_out: Format, model_name: str) -> dict[str, Any]:
    stat = options.input.stat()
    return {
        "input": str(options.input.resolve()),
        "input_bytes": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_format": fmt_in,
        "output_format": fmt_out,
        "columns": list(options.columns),
        "chunk_rows": options.chunk_rows,
        "on_bad_rows": options.on_bad_rows,
        "model": model_name,
        "backend": options.backend,
        "symmetry": options.symmetry,
        "onnx_file": options.onnx_file,
        "cpu_activations": options.cpu_activations,
    }


def _start_or_resume(options: Options, identity: dict[str, Any]) -> Manifest:
    """A fresh manifest, or the one of an interrupted run of the same job (its uncommitted files removed)."""
    folder = parts_folder(options.output)
    if options.overwrite:
        shutil.rmtree(folder, ignore_errors=True)
    elif options.output.exists() and not folder.exists():
        raise FileScoringError(f"{options.output} exists; pass --overwrite to replace it")
    if (folder / MANIFEST).is_file():
        manifest, version = Manifest.load(folder)
        if version != MANIFEST_VERSION or manifest.identity != identity:
            changed = sorted(k for k in identity if manifest.identity.get(k) != identity[k])
            raise FileScoringError(
                f"{folder} holds an unfinished run of another job (it differs in: {', '.join(changed) or 'version'}); "
                "rerun with the same input and options to finish it, or pass --overwrite to start again"
            )
        keep = {MANIFEST, PARTS_LOG} | {p["file"] for p in manifest.parts} | {p["skipped_file"] for p in manifest.parts}
        for stray in folder.iterdir():
            if stray.name not in keep:
                stray.unlink()
        if manifest.parts:
            logger.info("resuming: %d rows of %s already scored in %s", manifest.rows_done, options.input, folder)
        return manifest
    return Manifest.create(folder, identity)


def by_size(given: bool | None, rows: int | None, from_rows: int) -> bool:
    """An option whose default depends on the input's size: ``given`` where the user gave it, else whether an input
    of ``rows`` rows (None: not known, so not worth it on a guess) reaches ``from_rows``."""
    return given if given is not None else rows is not None and rows >= from_rows


@dataclass(frozen=True)
class GpuChoices:
    """What a run does on a GPU beyond the service's scorer, each decided by the options or else by default."""

    compile: bool
    cuda_graphs: bool
    tokenizer_processes: bool


def gpu_choices(options: Options, on_gpu: bool, rows: int | None) -> GpuChoices:
    """The options' choices, and where they leave one open: compile from COMPILE_FROM_ROWS rows, tokenising in
    processes on a GPU. Each matters only for PyTorch on a GPU (CUDA graphs too), except the processes, which any
    runtime on a GPU can use.
    """
    return GpuChoices(
        compile=by_size(options.compile, rows, COMPILE_FROM_ROWS),
        cuda_graphs=options.cuda_graphs,
        tokenizer_processes=options.tokenizer_processes if options.tokenizer_processes is not None else on_gpu,
    )


Encode = Callable[[list[tuple[str, str]]], EncodedRows]


def _prepare_chunk(table: pa.Table, index: int, first_row: int, encode: Encode, options: Options) -> Chunk:
    """One chunk checked (bad rows) and tokenised."""
    chunk = prepare(table, index, first_row, options.columns, options.on_bad_rows, options.input)
    if chunk.table.num_rows:
        pairs = list(zip(sentences(chunk.table, options.sentence1), sentences(chunk.table, options.sentence2)))
        chunk.rows = encode(pairs)
    return chunk


_WORKER_CODEC: PairCodec | None = None


def _start_worker(codec: PairCodec) -> None:
    global _WORKER_CODEC
    _WORKER_CODEC = codec


def _encode_in_worker(pairs: list[tuple[str, str]]) -> EncodedRows:
    assert _WORKER_CODEC is not None, "the worker was started without its codec"
    return _WORKER_CODEC.encode(pairs)


class Tokenizers:
    """Where chunks are tokenised: in this process, or in worker processes started at once (they start while the
    model loads). In this process the tokenising threads share the GIL with the thread launching forward passes;
    on a GPU, where launching must keep pace with the model, that held the passes back (docs/files.md).
    """

    def __init__(self, codec: PairCodec, processes: int = 0):
        self._codec = codec
        self._pool: ProcessPoolExecutor | None = None
        if processes:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(codec,)
            )
            for _ in range(processes):  # each submission starts a worker while none is idle
                self._pool.submit(int)

    def encode(self, pairs: list[tuple[str, str]]) -> EncodedRows:
        if self._pool is None:
            return self._codec.encode(pairs)
        return self._pool.submit(_encode_in_worker, pairs).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class _Prepared:
    """Reads chunks on a thread of its own and has them checked and tokenised, a bounded number ahead of the scoring."""

    END = object()

    def __init__(self, tables: Iterator[pa.Table], start_index: int, first_row: int, encode: Encode, options: Options):
        self._queue: queue.Queue = queue.Queue(maxsize=PREPARED_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(tables, start_index, first_row, encode, options), name="ko-sts-read", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, tables: Iterator[pa.Table], index: int, first_row: int, encode: Encode, options: Options) -> None:
        # Reading stays on this thread; checking and tokenising (``encode_batch_fast`` runs outside the GIL)
        # spread over ``options.tokenizer_threads``, the chunks handed on in input order.
        # The first chunk is tokenised alone, on every core, so that the passes start as soon as they can.
        pool = ThreadPoolExecutor(options.tokenizer_threads, thread_name_prefix="ko-sts-tokenize")
        ahead: deque[Future] = deque()
        alone = True
        try:
            for table in tables:
                ahead.append(pool.submit(_prepare_chunk, table, index, first_row, encode, options))
                index += 1
                first_row += table.num_rows
                if alone or len(ahead) > options.tokenizer_threads:
                    alone = False
                    if not self._put(ahead.popleft().result()):
                        return
            while ahead:
                if not self._put(ahead.popleft().result()):
                    return
            self._put(self.END)
        except BaseException as error:  # handed to the scoring thread, which raises it
            self._put(error)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            item = self._queue.get()
            if item is self.END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def skip_rows(tables: Iterator[pa.Table], count: int) -> Iterator[pa.Table]:
    """Drops the first ``count`` whole chunks' rows (a resumed run's committed ones); chunks are read, not scored."""
    skipped = 0
    for table in tables:
        if skipped < count:
            skipped += table.num_rows
            continue
        yield table


def score_file(options: Options, scorer: Scorer | None = None) -> dict[str, Any]:
    """Scores ``options.input`` into ``options.output``; returns a summary (rows, skipped, seconds, pairs/s).

    ``scorer``: one already loaded (tests, benchmarks); by default it is loaded as the service would.
    """
    if options.chunk_rows < 1:
        raise FileScoringError(f"--chunk-rows {options.chunk_rows}: must be at least 1")
    if options.tokenizer_threads < 1:
        raise FileScoringError(f"--tokenizer-threads {options.tokenizer_threads}: must be at least 1")
    fmt_in = file_format(options.input, options.input_format)
    fmt_out = file_format(options.output, options.output_format)
    source = open_input(options.input, fmt_in, options.columns)
    model_dir, model_name = resolve_model(options.model)
    identity = _identity(options, fmt_in, fmt_out, model_name)
    manifest = _start_or_resume(options, identity)
    folder = parts_folder(options.output)
    if scorer is None:
        codec = PairCodec.for_package(model_dir, options.symmetry)
        on_gpu = resolve_device(options.backend, options.device) == "cuda"
    else:
        codec = PairCodec(scorer.tokenizer, scorer.settings)  # the codec alone: no runtime to send to workers
        on_gpu = scorer.device != "cpu"
    choices = gpu_choices(options, on_gpu, source.rows)
    # Reading and tokenising start here, while the model loads (workers too, when tokenising in processes).
    tokenizers = Tokenizers(codec, options.tokenizer_threads if choices.tokenizer_processes else 0)
    done = manifest.rows_done
    tables = skip_rows(chunks(source.batches, options.chunk_rows), done)
    prepared = _Prepared(tables, len(manifest.parts), done + 1, tokenizers.encode, options)
    try:
        if scorer is None:
            try:
                scorer = load_served_scorer(
                    model_dir,
                    options.backend,
                    device=options.device,
                    onnx_file=options.onnx_file,
                    threads=options.threads,
                    dtype=options.dtype,
                    activations=options.cpu_activations,
                    symmetry=options.symmetry,
                    max_batch_tokens=options.max_batch_tokens,
                    max_batch_rows=options.max_batch_rows,
                )
            except (FileNotFoundError, RuntimeError) as error:  # the runtimes' messages say what to do
                raise FileScoringError(f"{model_name} on {options.backend}, device {options.device}: {error}") from None
            compile_model(scorer, choices.compile)
            if choices.cuda_graphs:
                plan_pass_graphs(scorer)
        started = time.perf_counter()
        scored, spent = _score_chunks(options, source, scorer, prepared, manifest, folder, fmt_out)
        seconds = time.perf_counter() - started
    finally:
        prepared.close()
        tokenizers.close()
    _finish(options, manifest, folder, fmt_out, source.schema, scorer)
    skipped = sum(part["skipped"] for part in manifest.parts)
    graphs = len(getattr(scorer.runtime, "graphs", ()))
    summary = {
        "input": str(options.input),
        "output": str(options.output),
        "model": model_name,
        "runtime": scorer.runtime.description,
        "cuda_graphs": graphs,
        "tokenised_in": "processes" if choices.tokenizer_processes else "threads",
        "rows": manifest.rows_done,
        "rows_this_run": manifest.rows_done - done,
        "pairs_scored_this_run": scored,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "pairs_per_s": round(scored / seconds, 1) if seconds > 0 else None,
        "time_s": {name: round(value, 3) for name, value in spent.items()},
    }
    logger.info(
        "scored %d pairs into %s in %.1f s (%s pairs/s; waited %.1f s for tokenised chunks, the first after %.1f s, "
        "%.1f s for the model and %.1f s for the writer; launched passes for %.1f s)%s",
        scored,
        options.output,
        seconds,
        summary["pairs_per_s"],
        spent["waiting_input"],
        spent["first_chunk"],
        spent["waiting_model"],
        spent["waiting_writer"],
        spent["launching"],
        f"; {skipped} bad rows left out, listed in {skipped_file(options.output)}" if skipped else "",
    )
    if options.stats:
        options.stats.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _score_chunks(
    options: Options,
    source: Input,
    scorer: Scorer,
    prepared: _Prepared,
    manifest: Manifest,
    folder: Path,
    fmt_out: Format,
) -> tuple[int, dict[str, float]]:
    """The pipeline: read + check + tokenise (``prepared``, started while the model loaded) -> forward passes
    (here) -> output columns, write, commit (thread). Returns the pairs scored and where the passes' thread spent
    its time, in seconds: waiting for tokenised chunks (``waiting_input``; ``first_chunk`` is when the first came),
    assembling and launching passes (``launching``; a CPU runtime runs each pass as it is launched), waiting for
    their logits (``waiting_model``: on a GPU, the time it was ahead of the model) and for the parts ahead to be
    written (``waiting_writer``). The largest says what limits the run."""
    from tqdm import tqdm

    done = manifest.rows_done
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ko-sts-write")
    writes: deque[Future] = deque()
    in_flight: deque[tuple[Chunk, np.ndarray, Any]] = deque()
    waiting: deque[Chunk] = deque()  # chunks in input order, written as soon as the first ones are done
    bar = tqdm(
        total=source.rows,
        initial=done,
        unit=" pairs",
        unit_scale=True,
        smoothing=0.05,
        disable=not options.progress,
        dynamic_ncols=True,
    )
    scored = 0
    per_pair = scorer.rows_per_pair
    spent = dict.fromkeys(("first_chunk", "waiting_input", "launching", "waiting_model", "waiting_writer"), 0.0)
    started = time.perf_counter()

    def collect() -> None:
        nonlocal scored
        chunk, indices, pending = in_flight.popleft()
        with _timed(spent, "waiting_model"):
            logits = pending()
        chunk.logits[indices] = logits
        chunk.passes_out -= 1
        before = scored
        scored += len(indices)
        bar.update(scored // per_pair - before // per_pair)

    def flush() -> None:
        while waiting and waiting[0].done:
            chunk = waiting.popleft()
            if len(writes) >= WRITES_AHEAD:
                with _timed(spent, "waiting_writer"):
                    writes.popleft().result()
            writes.append(writer.submit(_commit, scorer, chunk, manifest, folder, fmt_out, not options.progress))
            bar.update(len(chunk.skipped))

    try:
        for chunk in _timed_iter(prepared, spent, "waiting_input"):
            spent["first_chunk"] = spent["first_chunk"] or time.perf_counter() - started
            waiting.append(chunk)
            if chunk.rows is not None:
                chunk.logits = np.empty(len(chunk.rows), dtype=np.float32)
                for indices, pending in _timed_iter(scorer.launch_passes(chunk.rows), spent, "launching"):
                    in_flight.append((chunk, indices, pending))
                    chunk.passes_out += 1
                    if len(in_flight) >= PASSES_IN_FLIGHT:
                        collect()
                        flush()
            chunk.launched = True
            flush()
        while in_flight:
            collect()
            flush()
        while writes:
            writes.popleft().result()
    finally:
        writer.shutdown(wait=True)
        bar.close()
    return scored // per_pair, spent


@contextmanager
def _timed(spent: dict[str, float], key: str) -> Iterator[None]:
    """Adds the seconds its block takes to ``spent[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        spent[key] += time.perf_counter() - start


def _timed_iter(items: Iterable[Any], spent: dict[str, float], key: str) -> Iterator[Any]:
    """``items``, adding the seconds each takes to come to ``spent[key]``."""
    items, end = iter(items), object()
    while True:
        with _timed(spent, key):
            item = next(items, end)
        if item is end:
            return
        yield item


def _commit(scorer: Scorer, chunk: Chunk, manifest: Manifest, folder: Path, fmt: Format, log: bool = False) -> None:
    """Builds a scored chunk's output columns (scores from its logits), writes it as a part and then records it in
    the manifest: a part is either committed or ignored. Runs on the writer thread, off the one launching passes.

    ``log``: say so in the log (without a progress bar, the log shows the progress).
    """
    table = scored_table(scorer, chunk)
    name = f"part-{chunk.index:06d}.{fmt}"
    staging = folder / (name + ".tmp")
    write_part(table, staging, fmt, header=chunk.index == 0)
    _fsync(staging)
    os.replace(staging, folder / name)
    skipped_name = f"part-{chunk.index:06d}.skipped.jsonl"
    if chunk.skipped:
        _write_atomic(folder / skipped_name, "".join(json.dumps(s) + "\n" for s in chunk.skipped))
    manifest.commit(
        {
            "file": name,
            "rows_in": chunk.rows_in,
            "rows_out": table.num_rows,
            "skipped": len(chunk.skipped),
            "skipped_file": skipped_name if chunk.skipped else "",
        }
    )
    if log:
        last = chunk.first_row + chunk.rows_in - 1
        logger.info("committed %s: rows %d-%d (%d rows done)", name, chunk.first_row, last, manifest.rows_done)


def _finish(options: Options, manifest: Manifest, folder: Path, fmt: Format, schema: pa.Schema, scorer: Scorer) -> None:
    """Joins the committed parts into OUTPUT (and the skipped rows into OUTPUT.skipped.jsonl), then removes them."""
    if not manifest.parts:  # an input without rows: the output still has the columns
        empty = Chunk(0, 1, 0, schema.empty_table(), [])
        empty.launched = True
        _commit(scorer, empty, manifest, folder, fmt)
    staging = options.output.with_name(options.output.name + ".tmp")
    join_parts([folder / p["file"] for p in manifest.parts], staging, fmt)
    _fsync(staging)
    skipped = [folder / p["skipped_file"] for p in manifest.parts if p["skipped_file"]]
    if skipped:
        join_parts(skipped, skipped_file(options.output), "jsonl")
    elif skipped_file(options.output).exists():
        skipped_file(options.output).unlink()
    os.replace(staging, options.output)
    shutil.rmtree(folder)


# --- command line ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ko-sts",
        description="Korean sentence-similarity scoring with the service's model, for files (docs/files.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score",
        help="score every pair of a CSV, TSV, JSON Lines or Parquet file",
        description="Scores every (sentence1, sentence2) row of INPUT into OUTPUT: every input column, plus score "
        "(0-5), similar (score >= 3.0) and truncated. Formats by suffix: .csv, .tsv, .jsonl, .parquet. An "
        "interrupted run, started again with the same arguments, continues where it stopped.",
    )
    score.add_argument("input", type=Path, help="the pairs: .csv, .tsv, .jsonl or .parquet")
    score.add_argument("output", type=Path, help="where the scored rows go (any of the same formats)")
    score.add_argument(
        "--model",
        help="a model package folder or a BentoML store tag (default: the newest ko-sts model in the store, "
        "else the shipped models/default)",
    )
    score.add_argument("--sentence1", default="sentence1", help="column of the first sentences (default sentence1)")
    score.add_argument("--sentence2", default="sentence2", help="column of the second sentences (default sentence2)")
    score.add_argument("--input-format", choices=get_args(Format), help="INPUT's format when its suffix does not say")
    score.add_argument("--output-format", choices=get_args(Format), help="OUTPUT's format when its suffix does not say")
    score.add_argument(
        "--on-bad-rows",
        choices=get_args(BadRows),
        default="stop",
        help="a row with a missing or empty sentence: stop with its row number (default), or skip it and list it "
        "in OUTPUT.skipped.jsonl",
    )
    score.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"rows read, scored and committed at a time (default {DEFAULT_CHUNK_ROWS}); memory grows with it",
    )
    score.add_argument("--backend", choices=get_args(Backend), default="onnx", help="onnx (default), openvino or torch")
    score.add_argument("--device", choices=get_args(Device), default="auto", help="auto (default), cpu or cuda")
    score.add_argument("--onnx-file", help="ONNX file under the package's onnx/ (default: int8 on CPU, fp32 on CUDA)")
    score.add_argument("--dtype", choices=get_args(TorchDtype), default="auto", help="PyTorch weights' dtype")
    score.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: every core)")
    score.add_argument(
        "--cpu-activations",
        choices=get_args(CpuActivations),
        default="int8",
        help="OpenVINO's activations, as the service's KO_STS_CPU_ACTIVATIONS: int8 (default) quantises them per "
        "row, int8 dot products on a CPU with AVX-512 VNNI (scores within about 0.04 of float32); float32",
    )
    score.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PyTorch on CUDA: compile the model first, as the service does: 6-40 s more at start for passes "
        f"about 13%% faster. Default: for inputs of {COMPILE_FROM_ROWS:,} rows or more, where that pays",
    )
    score.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PyTorch on CUDA: full passes replay a CUDA graph of their shape (captured on the shape's second pass) "
        "instead of launching kernel by kernel. Default: on",
    )
    score.add_argument(
        "--tokenizer-threads",
        type=int,
        default=default_tokenizer_threads(),
        help=f"threads checking and tokenising chunks (default here: {default_tokenizer_threads()}; 2, one on 2 "
        "cores, as tokenizers spreads each chunk over the cores itself; half the cores, 1 to 8, where "
        "TOKENIZERS_PARALLELISM=false)",
    )
    score.add_argument(
        "--tokenizer-processes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tokenise in --tokenizer-threads worker processes, not in this process, whose GIL the passes' launches "
        "need. Default: on a GPU",
    )
    score.add_argument(
        "--symmetry",
        choices=get_args(Symmetry),
        help="average both sentence orders, score one canonical order, or the given one (none); default: the model's",
    )
    score.add_argument(
        "--max-batch-tokens",
        type=int,
        help="padded tokens per forward pass (default: the service's, 2048 CPU, 32768 CUDA)",
    )
    score.add_argument(
        "--max-batch-rows",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        help=f"most rows per forward pass (default: the service's, {DEFAULT_BATCH_ROWS})",
    )
    score.add_argument("--overwrite", action="store_true", help="replace OUTPUT, and forget an unfinished run into it")
    score.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    score.add_argument("--stats", type=Path, help="also write the run's summary (rows, seconds, pairs/s) here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ko-sts``: the command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = vars(build_parser().parse_args(argv))
    args.pop("command")
    options = Options(**args)
    try:
        score_file(options)
    except (FileScoringError, PackageError) as error:
        print(f"ko-sts score: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"ko-sts score: interrupted; the chunks scored so far are kept in {parts_folder(options.output)}: "
            "run the same command again to go on",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
