"""ko-sts score (serving/files.py) and its Ray stage (serving/files_ray.py), with the tiny model on real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.files import DEFAULT_PACKAGE, FileScoringError, Options, chunks, main, resolve_model, score_file
from serving.settings import Settings
from tests.conftest import KLUE_DEV, REPO

FORMATS = ["csv", "tsv", "jsonl", "parquet"]


def klue_rows(count: int) -> list[dict]:
    """KLUE-STS dev rows (repeated when more are asked for), with their own columns and a row number."""
    lines = [json.loads(line) for line in KLUE_DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for index in range(count):
        row = lines[index % len(lines)]
        rows.append({"id": index, "guid": row["guid"], "sentence1": row["sentence1"], "sentence2": row["sentence2"]})
    return rows


def write_rows(rows: list[dict], path, fmt: str) -> None:
    """Writes rows as the format would be written by anyone else (pandas for text, pyarrow for Parquet)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def read_rows(path, fmt: str) -> list[dict]:
    import pandas as pd

    if fmt == "csv":
        frame = pd.read_csv(path, keep_default_na=False)
    elif fmt == "tsv":
        frame = pd.read_csv(path, sep="\t", keep_default_na=False)
    elif fmt == "jsonl":
        frame = pd.read_json(path, lines=True)
    else:
        frame = pq.read_table(path).to_pandas()
    return frame.to_dict("records")


@pytest.fixture(scope="module")
def service_scorer(trained_package):
    """The scorer the service would build for the tiny model on the CPU (Settings.scorer)."""
    return Settings(backend="onnx", device="cpu").scorer(trained_package)


def options(source, target, package, **kwargs) -> Options:
    return Options(input=source, output=target, model=str(package), device="cpu", progress=False, **kwargs)


@pytest.mark.parametrize("fmt_in", FORMATS)
def test_each_format_in_and_out_keeps_every_column_and_scores_as_the_service(
    fmt_in, tmp_path, trained_package, service_scorer
):
    rows = klue_rows(45)
    source = tmp_path / f"pairs.{fmt_in}"
    write_rows(rows, source, fmt_in)
    fmt_out = FORMATS[(FORMATS.index(fmt_in) + 1) % len(FORMATS)]  # every format is written once too
    target = tmp_path / f"scored.{fmt_out}"

    # 6 chunks, the last short, tokenised by 3 threads and still written in input order
    summary = score_file(options(source, target, trained_package, chunk_rows=8, tokenizer_threads=3))

    assert summary["rows"] == 45 and summary["skipped"] == 0
    out = read_rows(target, fmt_out)
    assert [row["id"] for row in out] == list(range(45))
    assert set(out[0]) == {"id", "guid", "sentence1", "sentence2", "score", "similar", "truncated"}
    assert [(r["guid"], r["sentence1"], r["sentence2"]) for r in out] == [
        (r["guid"], r["sentence1"], r["sentence2"]) for r in rows
    ]
    expected = service_scorer.score([(r["sentence1"], r["sentence2"]) for r in rows])
    scores = np.array([float(r["score"]) for r in out])
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert [bool(r["similar"]) for r in out] == [bool(s >= 3.0) for s in scores]
    assert not os.path.exists(f"{target}.parts"), "the parts are removed once joined"


def test_openvino_with_int8_activations_scores_as_the_service_does_by_default(tmp_path, trained_package):
    rows = klue_rows(20)
    source = tmp_path / "pairs.csv"
    write_rows(rows, source, "csv")
    args = ["score", str(source), str(tmp_path / "scored.csv"), "--model", str(trained_package), "--device", "cpu"]
    assert main([*args, "--backend", "openvino", "--no-progress"]) == 0  # int8 activations by default, as served
    service = Settings(backend="openvino", device="cpu").scorer(trained_package)
    assert service.runtime.activations == "int8"
    expected = service.score([(r["sentence1"], r["sentence2"]) for r in rows])
    scores = [float(r["score"]) for r in read_rows(tmp_path / "scored.csv", "csv")]
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_tokenising_in_worker_processes_writes_what_threads_write(tmp_path, trained_package):
    source = tmp_path / "pairs.csv"
    write_rows(klue_rows(40), source, "csv")
    threads = score_file(options(source, tmp_path / "threads.csv", trained_package, chunk_rows=8))
    processes = score_file(
        options(source, tmp_path / "processes.csv", trained_package, chunk_rows=8, tokenizer_processes=True)
    )
    assert (threads["tokenised_in"], processes["tokenised_in"]) == ("threads", "processes")
    assert (tmp_path / "threads.csv").read_bytes() == (tmp_path / "processes.csv").read_bytes()


def test_chunks_are_exact_whatever_the_reader_batches():
    table = pa.table({"n": list(range(23))})
    batches = table.to_batches(max_chunksize=5)
    cut = list(chunks(iter(batches), 7))
    assert [t.num_rows for t in cut] == [7, 7, 7, 2]
    assert sum((t.column("n").to_pylist() for t in cut), []) == list(range(23))


@pytest.mark.parametrize(
    ("parallelism", "cores", "threads"),
    [(None, 16, 2), ("true", 2, 1), ("false", 16, 8), ("0", 6, 3), ("false", 1, 1)],
)
def test_tokenising_threads_follow_whether_tokenizers_parallelises_itself(monkeypatch, parallelism, cores, threads):
    from serving.files import default_tokenizer_threads

    if parallelism is None:
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    else:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", parallelism)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_tokenizer_threads() == threads


def test_an_empty_sentence_stops_the_run_naming_its_row(tmp_path, trained_package):
    rows = klue_rows(12)
    rows[9]["sentence2"] = "   "
    source = tmp_path / "pairs.csv"
    write_rows(rows, source, "csv")
    with pytest.raises(FileScoringError, match=r"row 10 \(line 11, after the header\): sentence2 is empty"):
        score_file(options(source, tmp_path / "out.csv", trained_package, chunk_rows=4))
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_sentence_in_json_lines_names_its_line(tmp_path, trained_package):
    rows = klue_rows(6)
    del rows[2]["sentence1"]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(FileScoringError, match=r"row 3 \(line 3\): sentence1 is missing"):
        score_file(options(source, tmp_path / "out.jsonl", trained_package))


def test_bad_rows_can_be_skipped_and_are_listed(tmp_path, trained_package, service_scorer):
    rows = klue_rows(20)
    rows[0]["sentence1"] = ""
    rows[13]["sentence2"] = None
    source = tmp_path / "pairs.parquet"
    write_rows(rows, source, "parquet")
    target = tmp_path / "out.csv"

    summary = score_file(options(source, target, trained_package, chunk_rows=6, on_bad_rows="skip"))

    assert summary["skipped"] == 2 and summary["rows"] == 20
    out = read_rows(target, "csv")
    assert [r["id"] for r in out] == [i for i in range(20) if i not in (0, 13)]
    listed = [json.loads(line) for line in (tmp_path / "out.csv.skipped.jsonl").read_text().splitlines()]
    assert listed == [
        {"row": 1, "column": "sentence1", "problem": "empty"},
        {"row": 14, "column": "sentence2", "problem": "missing"},
    ]
    kept = [rows[r["id"]] for r in out]
    expected = service_scorer.score([(r["sentence1"], r["sentence2"]) for r in kept])
    np.testing.assert_allclose([r["score"] for r in out], expected, atol=1e-6)


def test_wrong_columns_and_an_existing_output_are_refused_with_the_fix(tmp_path, trained_package, capsys):
    source = tmp_path / "pairs.csv"
    write_rows(klue_rows(3), source, "csv")
    args = ["score", str(source), str(tmp_path / "o.csv"), "--model", str(trained_package), "--sentence1", "q"]
    assert main(args) == 2
    assert "no column 'q'" in capsys.readouterr().err
    (tmp_path / "taken.csv").write_text("x\n")
    with pytest.raises(FileScoringError, match="--overwrite"):
        score_file(options(source, tmp_path / "taken.csv", trained_package))
    # a runtime that cannot load the model: its message, not a traceback (the shipped default has no PyTorch weights)
    args = ["score", str(source), str(tmp_path / "o.csv"), "--model", str(DEFAULT_PACKAGE), "--backend", "torch"]
    assert main([*args, "--device", "cpu"]) == 2
    assert "holds no PyTorch weights" in capsys.readouterr().err


def test_by_default_the_newest_stored_model_scores_as_the_service_would(tmp_path, trained_package):
    import bentoml

    from models.store import save_package

    save_package(trained_package)
    model_dir, name = resolve_model(None)
    assert name == str(bentoml.models.get("ko-sts:latest").tag) and model_dir != DEFAULT_PACKAGE
    rows = klue_rows(10)
    source = tmp_path / "pairs.jsonl"
    write_rows(rows, source, "jsonl")

    summary = score_file(Options(input=source, output=tmp_path / "out.jsonl", device="cpu", progress=False))

    assert summary["model"] == name
    expected = (
        Settings(backend="onnx", device="cpu").scorer(model_dir).score([(r["sentence1"], r["sentence2"]) for r in rows])
    )
    np.testing.assert_allclose([r["score"] for r in read_rows(tmp_path / "out.jsonl", "jsonl")], expected, atol=1e-6)


def test_the_command_scores_a_package_without_bentoml_installed(tmp_path, trained_package):
    """The GPU benchmark machine may lack BentoML: given a package folder, the command must not need it."""
    source = tmp_path / "pairs.tsv"
    write_rows(klue_rows(5), source, "tsv")
    hide = (
        "import sys, runpy\n"
        "from importlib.abc import MetaPathFinder\n"
        "class NoBento(MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('bentoml', 'pandas', 'pydantic_settings'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoBento())\n"
        "sys.argv = ['ko-sts', *sys.argv[1:]]\n"
        "runpy.run_module('serving.files', run_name='__main__')\n"
    )
    args = ["score", str(source), str(tmp_path / "out.parquet"), "--model", str(trained_package), "--no-progress"]
    done = subprocess.run([sys.executable, "-c", hide, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 5


@pytest.mark.slow
def test_a_killed_run_resumes_without_rescoring_or_duplicating_rows(tmp_path, trained_package):
    source = tmp_path / "pairs.csv"
    write_rows(klue_rows(3000), source, "csv")
    command = [sys.executable, "-m", "serving.files", "score", str(source)]
    flags = ["--model", str(trained_package), "--device", "cpu", "--chunk-rows", "100", "--no-progress"]
    whole = tmp_path / "whole.csv"
    subprocess.run([*command, str(whole), *flags], cwd=REPO, check=True, capture_output=True, timeout=600)

    target = tmp_path / "resumed.csv"
    run = subprocess.Popen([*command, str(target), *flags], cwd=REPO, stderr=subprocess.PIPE, text=True)
    for line in run.stderr:  # the log says each committed part: kill once two are
        if "committed part-000001" in line:
            run.send_signal(signal.SIGKILL)
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "the run ended before it was killed: give it more rows"
    parts = (tmp_path / "resumed.csv.parts/parts.jsonl").read_text().splitlines()
    committed = sum(json.loads(part)["rows_in"] for part in parts)
    assert 200 <= committed < 3000 and not target.exists()

    stats = tmp_path / "stats.json"
    again = subprocess.run(
        [*command, str(target), *flags, "--stats", str(stats)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(stats.read_text())
    assert summary["rows"] == 3000
    assert summary["pairs_scored_this_run"] == summary["rows_this_run"] == 3000 - committed
    spent = summary["time_s"]
    assert set(spent) == {"first_chunk", "waiting_input", "launching", "waiting_model", "waiting_writer"}
    assert 0 < spent["first_chunk"] <= spent["waiting_input"] + 0.01
    assert 0 < sum(spent.values()) - spent["first_chunk"] <= summary["seconds"]
    assert target.read_bytes() == whole.read_bytes()
    assert not (tmp_path / "resumed.csv.parts").exists()


@pytest.mark.slow
def test_ray_data_stage_scores_like_the_command(tmp_path, trained_package, service_scorer):
    ray = pytest.importorskip("ray")
    from serving.files_ray import RayOptions, score_dataset

    rows = klue_rows(300)
    rows[7]["sentence1"] = ""
    source = tmp_path / "pairs.parquet"
    write_rows(rows, source, "parquet")
    env = {"PYTHONPATH": str(REPO), "BENTOML_HOME": os.environ["BENTOML_HOME"], "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, object_store_memory=200 << 20)
    try:
        summary = score_dataset(
            RayOptions(
                input=str(source),
                output=str(tmp_path / "scored"),
                model=str(trained_package),
                workers=2,
                device="cpu",
                batch_rows=64,
                cpus_per_worker=0.5,  # two actors leave a CPU for reading and writing
                on_bad_rows="skip",
            )
        )
    finally:
        ray.shutdown()
    assert summary["rows"] == 299
    out = pq.read_table(tmp_path / "scored").to_pylist()
    out.sort(key=lambda r: r["id"])
    assert [r["id"] for r in out] == [i for i in range(300) if i != 7]
    kept = [rows[r["id"]] for r in out]
    expected = service_scorer.score([(r["sentence1"], r["sentence2"]) for r in kept])
    np.testing.assert_allclose([r["score"] for r in out], expected, atol=1e-6)
    assert {"guid", "similar", "truncated"} <= set(out[0])


def test_the_command_compiles_only_pytorch_on_a_gpu_for_long_inputs_or_when_told(trained_package):
    from models.scorer import compile_model, load_served_scorer, plan_pass_graphs
    from serving.files import COMPILE_FROM_ROWS, build_parser, gpu_choices

    parse = lambda *flags: build_parser().parse_args(["score", "in.csv", "out.csv", *flags])  # noqa: E731
    assert parse().compile is None and parse("--compile").compile is True and parse("--no-compile").compile is False
    compiles = lambda rows: gpu_choices(Options(input=REPO, output=REPO), on_gpu=True, rows=rows).compile  # noqa: E731
    assert compiles(COMPILE_FROM_ROWS) and not compiles(COMPILE_FROM_ROWS - 1)
    assert not compiles(None)  # not known: not worth 6-40 s on a guess
    scorer = load_served_scorer(trained_package, "torch", device="cpu")
    assert compile_model(scorer, True) is False  # on the CPU there is nothing to compile: eager PyTorch scores
    assert plan_pass_graphs(scorer) == 0 and not scorer.runtime.graphs  # nor CUDA graphs to capture


def test_on_a_gpu_the_command_tokenises_in_processes_and_replays_graphs_unless_told_not_to(tmp_path):
    from serving.files import GpuChoices, build_parser, gpu_choices

    def parse(*flags: str) -> Options:
        given = vars(build_parser().parse_args(["score", "in.csv", "out.csv", *flags]))
        return Options(input=tmp_path, output=tmp_path, **{k: given[k] for k in GpuChoices.__dataclass_fields__})

    long = 10**6
    assert gpu_choices(parse(), on_gpu=True, rows=1).cuda_graphs  # captured as passes need them: no size rule
    assert gpu_choices(parse(), on_gpu=True, rows=None).cuda_graphs
    assert not gpu_choices(parse("--no-cuda-graphs"), on_gpu=True, rows=long).cuda_graphs
    assert gpu_choices(parse(), on_gpu=True, rows=1).tokenizer_processes
    assert not gpu_choices(parse(), on_gpu=False, rows=long).tokenizer_processes
    assert gpu_choices(parse("--tokenizer-processes"), on_gpu=False, rows=1).tokenizer_processes
    assert not gpu_choices(parse("--no-tokenizer-processes"), on_gpu=True, rows=1).tokenizer_processes
