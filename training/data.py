"""Reading, checking and writing Korean STS pair files.

Every reader returns a DataFrame with the columns ``sentence1``, ``sentence2``, ``label``
(float, 0-5), ``source`` (KLUE-STS's ``source``, ``korsts-<genre>`` for KorSTS, else
``unknown``; metrics are also reported per source) and ``location`` (where the row came from,
for error messages). Supported:

* KLUE-STS as KLUE publishes it: a JSON list whose items hold nested ``labels``;
* JSON Lines (the KLUE-STS and KorSTS copies under ``data/``, or your own);
* CSV or TSV with a header holding ``sentence1``, ``sentence2`` and a label column.

The label column is ``real_label`` (KLUE's unrounded gold), ``labels.real-label``, ``score``
(KorSTS) or ``label``, whichever comes first, unless one is named explicitly.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.scoring import MAX_SCORE

logger = logging.getLogger(__name__)

SENTENCE_COLUMNS = ("sentence1", "sentence2")
LABEL_COLUMNS = ("real_label", "labels.real-label", "score", "label")
UNKNOWN_SOURCE = "unknown"
MAX_REPORTED_PROBLEMS = 10


class DataValidationError(ValueError):
    """A data file that cannot be used; the message names the file, the rows and the fix."""


@dataclass(frozen=True)
class FileInfo:
    """Provenance of one data file, kept in the model store's metadata."""

    path: str
    sha256: str
    rows: int


def json_lines(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(number, object, None)`` per line holding a JSON object, ``(number, None, problem)`` per bad line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, None, f"not valid JSON ({error.msg})"
                continue
            if not isinstance(record, dict):
                yield number, None, f"expected a JSON object, got {type(record).__name__}"
                continue
            yield number, record, None


def _read_json_lines(path: Path) -> pd.DataFrame:
    records, locations = [], []
    for number, record, problem in json_lines(path):
        if problem:
            raise DataValidationError(f"{path}: line {number}: {problem}")
        records.append(record)
        locations.append(f"line {number}")
    frame = pd.json_normalize(records) if records else pd.DataFrame()
    frame["location"] = locations
    return frame


def _read_json_list(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8") as handle:
            records = json.load(handle)
    except json.JSONDecodeError as error:
        raise DataValidationError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataValidationError(
            f"{path}: expected a JSON list of objects (KLUE's format); use .jsonl for one object per line"
        )
    frame = pd.json_normalize(records) if records else pd.DataFrame()
    frame["location"] = [f"item {i}" for i in range(1, len(records) + 1)]
    return frame


def _read_delimited(path: Path, separator: str) -> pd.DataFrame:
    quoting = csv.QUOTE_NONE if separator == "\t" else csv.QUOTE_MINIMAL
    try:
        frame = pd.read_csv(path, sep=separator, quoting=quoting, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataValidationError(
            f"{path}: cannot be parsed as {'TSV' if separator == chr(9) else 'CSV'}: {error}"
        ) from None
    frame["location"] = [f"line {i}" for i in range(2, len(frame) + 2)]
    return frame


def read_pairs(path: str | Path, label_column: str | None = None) -> pd.DataFrame:
    """Reads a pair file into ``sentence1, sentence2, label, source, location`` and validates every row.

    Raises:
        DataValidationError: naming the file, each bad row (up to ten) and its problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        frame = _read_json_lines(path)
    elif suffix == ".json":
        frame = _read_json_list(path)
    elif suffix in (".csv", ".tsv"):
        frame = _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise DataValidationError(f"{path}: unsupported file type {suffix!r}; use .json, .jsonl, .csv or .tsv")
    if frame.empty or len(frame.columns) <= 1:
        raise DataValidationError(f"{path}: holds no rows")

    missing = [column for column in SENTENCE_COLUMNS if column not in frame.columns]
    if label_column is None:
        label_column = next((column for column in LABEL_COLUMNS if column in frame.columns), None)
        if label_column is None:
            missing.append(" or ".join(LABEL_COLUMNS))
    elif label_column not in frame.columns:
        missing.append(label_column)
    if missing:
        found = ", ".join(c for c in frame.columns if c != "location")
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)}; found: {found}")

    pairs = frame[[*SENTENCE_COLUMNS, "location"]].copy()
    pairs["label"] = frame[label_column]
    pairs = _validate(pairs, path, label_column)
    pairs.insert(3, "source", _sources(frame).to_numpy())
    return pairs


def _sources(frame: pd.DataFrame) -> pd.Series:
    """KLUE's ``source``, KorSTS's ``genre`` as ``korsts-<genre>``, a contrast set's ``category``, else ``unknown``."""
    if "source" in frame.columns:
        sources = frame["source"]
    elif "genre" in frame.columns:
        sources = "korsts-" + frame["genre"].astype(str)
    elif "category" in frame.columns:
        sources = frame["category"]
    else:
        return pd.Series(UNKNOWN_SOURCE, index=frame.index)
    return sources.map(lambda v: v if isinstance(v, str) and v.strip() else UNKNOWN_SOURCE).astype(str)


def _validate(pairs: pd.DataFrame, path: Path, label_column: str) -> pd.DataFrame:
    problems: list[str] = []
    for column in SENTENCE_COLUMNS:
        values = pairs[column]
        bad = ~values.map(lambda v: isinstance(v, str) and bool(v.strip()))
        for location, value in zip(pairs.loc[bad, "location"], values[bad]):
            problems.append(f"{location}: {column} is {'empty' if isinstance(value, str) else 'missing'}")

    raw = pairs["label"]
    numeric = pd.to_numeric(raw.map(lambda v: v if not isinstance(v, bool) else None), errors="coerce")
    for location, value in zip(pairs.loc[numeric.isna(), "location"], raw[numeric.isna()]):
        missing = (
            value is None
            or (isinstance(value, float) and np.isnan(value))
            or (isinstance(value, str) and not value.strip())
        )
        problems.append(f"{location}: {label_column} " + ("is missing" if missing else f"{value!r} is not a number"))
    out_of_range = numeric.notna() & ((numeric < 0) | (numeric > MAX_SCORE))
    for location, value in zip(pairs.loc[out_of_range, "location"], numeric[out_of_range]):
        problems.append(f"{location}: {label_column} {value:g} is outside 0-{MAX_SCORE:g}")

    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = (
            f"\n  ... and {len(problems) - MAX_REPORTED_PROBLEMS} more" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        )
        raise DataValidationError(f"{path}: {len(problems)} problem(s); fix or remove these rows:\n  {shown}{more}")
    pairs["label"] = numeric.astype(np.float64)
    return pairs.reset_index(drop=True)


def merge_duplicate_pairs(pairs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Merges rows with the same (sentence1, sentence2) into one row with the mean label."""
    keys = list(SENTENCE_COLUMNS)
    duplicated = pairs.duplicated(keys, keep=False)
    if not duplicated.any():
        return pairs
    groups = pairs[duplicated].groupby(keys, sort=False)["label"]
    conflicting = int((groups.nunique() > 1).sum())
    logger.warning(
        "%s: %d rows repeat %d sentence pairs (%d with different labels); merged each into one row with the mean label",
        name,
        int(duplicated.sum()),
        groups.ngroups,
        conflicting,
    )
    others = {column: (column, "first") for column in pairs.columns if column not in (*keys, "label")}
    merged = pairs.groupby(keys, sort=False, as_index=False).agg(label=("label", "mean"), **others)
    return merged[pairs.columns]


def warn_on_overlap(train: pd.DataFrame, evaluation: pd.DataFrame, name: str) -> None:
    """Logs sentence pairs that occur both in training data and in an evaluation set."""
    keys = list(SENTENCE_COLUMNS)
    shared = train[keys].merge(evaluation[keys].drop_duplicates(), on=keys)
    if len(shared):
        logger.warning("%d training pairs also occur in %s: its scores will be optimistic", len(shared), name)


def with_swapped_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Returns the pairs followed by the same pairs in the other sentence order."""
    swapped = pairs.rename(columns={"sentence1": "sentence2", "sentence2": "sentence1"})
    return pd.concat([pairs, swapped[pairs.columns]], ignore_index=True)


def write_pairs(pairs: pd.DataFrame, path: str | Path) -> Path:
    """Writes pairs as JSON Lines, one object per row (UTF-8, Korean kept readable); ``read_pairs`` reads them back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in pairs.to_dict(orient="records"):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
