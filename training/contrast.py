"""Contrast test set: does the served model tell meaning from topic (issue 10)?

    python -m training.contrast models/default
    python -m training.contrast outputs/me5-small-ko/model --backend torch --device cuda --json
    python -m training.contrast pairs data/contrast/ko_minimal_pairs_train.jsonl outputs/minimal_pairs_train.jsonl

Scores every pair of ``data/contrast/ko_contrast.jsonl`` (see ``data/contrast/README.md``)
through the serving scorer and reports, per category, how often the served flag
(``score >= 3.0``) matches the expected one, with the pair count and the mean score.
Paraphrases should score high; negations, antonyms, changed numbers, entities or roles,
different intents and unrelated pairs should all stay below 3.

It also reports minimal-pair accuracy (issue 16): for one anchor sentence, its
meaning-preserving variant must score above its meaning-changing variant, the first at or
above 3.0 and the second below, so a model that calls nothing (or everything) similar scores
zero. Two sets of triples: the project's (each non-paraphrase pair of ``ko_contrast.jsonl``
with the paraphrase of its ``sentence1`` from ``ko_contrast_paraphrases.jsonl``) and the
held-out hand-written ``ko_minimal_pairs.jsonl``, which training selects on and never trains on.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models.scorer import load_scorer
from models.scoring import MAX_SCORE, SIMILAR_THRESHOLD
from training.data import MAX_REPORTED_PROBLEMS, DataValidationError, json_lines
from training.logs import configure_logging

logger = logging.getLogger("training.contrast")

CONTRAST_DIR = Path(__file__).resolve().parents[1] / "data/contrast"
CONTRAST_FILE = CONTRAST_DIR / "ko_contrast.jsonl"
PARAPHRASE_FILE = CONTRAST_DIR / "ko_contrast_paraphrases.jsonl"
MINIMAL_PAIR_FILE = CONTRAST_DIR / "ko_minimal_pairs.jsonl"
# Hand-written minimal pairs for *training* (same format as MINIMAL_PAIR_FILE, disjoint from every
# held-out file); `python -m training.contrast pairs` turns them into training pairs.
MINIMAL_PAIR_TRAIN_FILE = CONTRAST_DIR / "ko_minimal_pairs_train.jsonl"
MINIMAL_PAIR_TRAIN_SOURCE = "minimal_pairs_train"  # the ``source`` of those training pairs
HELD_OUT_FILES = (CONTRAST_FILE, PARAPHRASE_FILE, MINIMAL_PAIR_FILE)  # never trained on
CATEGORIES = ("paraphrase", "negation", "antonym", "number", "entity_role", "intent", "unrelated")
CHANGING_CATEGORIES = CATEGORIES[1:]  # a minimal pair's changing variant belongs to one of these
REQUIRED_KEYS = ("id", "category", "sentence1", "sentence2", "similar", "label", "note")
PARAPHRASE_KEYS = ("anchor", "preserving", "label", "note")
MINIMAL_PAIR_KEYS = (
    "id",
    "category",
    "anchor",
    "preserving",
    "changing",
    "preserving_label",
    "changing_label",
    "note",
)
TRIPLE_SENTENCES = ("anchor", "preserving", "changing")  # the sentence columns of a minimal-pair triple
TRIPLE_COLUMNS = ("category", *TRIPLE_SENTENCES, "preserving_label", "changing_label")


def _label_problem(key: str, label: object) -> str | None:
    """Why ``label`` is not a gold score on the 0-5 scale (None when it is one)."""
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        return f"{key} must be a number, got {label!r}"
    if not 0.0 <= label <= MAX_SCORE:
        return f"{key} {label:g} is outside 0-{MAX_SCORE:g}"
    return None


def _text_problems(record: dict, keys: tuple[str, ...]) -> list[str]:
    return [
        f"{key} must be a non-empty string"
        for key in keys
        if not isinstance(record[key], str) or not record[key].strip()
    ]


def _missing(record: dict, keys: tuple[str, ...]) -> list[str]:
    missing = [key for key in keys if key not in record]
    return [f"missing key(s) {', '.join(missing)}"] if missing else []


def _record_problems(record: dict) -> list[str]:
    """What is wrong with one parsed line of the contrast set (an empty list when nothing is)."""
    if missing := _missing(record, REQUIRED_KEYS):
        return missing
    problems = []
    if not isinstance(record["id"], str) or not record["id"].strip():
        problems.append("id must be a non-empty string")
    if record["category"] not in CATEGORIES:
        problems.append(f"category {record['category']!r} is not one of {', '.join(CATEGORIES)}")
    problems += _text_problems(record, ("sentence1", "sentence2"))
    if not isinstance(record["note"], str):
        problems.append("note must be a string")
    similar, label = record["similar"], record["label"]
    if not isinstance(similar, bool):
        problems.append(f"similar must be true or false, got {similar!r}")
    if problem := _label_problem("label", label):
        problems.append(problem)
    elif isinstance(similar, bool) and similar != (label >= SIMILAR_THRESHOLD):
        side = ">=" if label >= SIMILAR_THRESHOLD else "<"
        problems.append(f"label {label:g} is {side} {SIMILAR_THRESHOLD:g} but similar is {str(similar).lower()}")
    return problems


def _paraphrase_problems(record: dict) -> list[str]:
    """What is wrong with one line of a paraphrase file (an empty list when nothing is)."""
    if missing := _missing(record, PARAPHRASE_KEYS):
        return missing
    problems = _text_problems(record, ("anchor", "preserving"))
    if not isinstance(record["note"], str):
        problems.append("note must be a string")
    if not problems and record["anchor"].strip() == record["preserving"].strip():
        problems.append("preserving repeats the anchor")
    if problem := _label_problem("label", record["label"]):
        problems.append(problem)
    elif record["label"] < SIMILAR_THRESHOLD:
        problems.append(f"label {record['label']:g} is < {SIMILAR_THRESHOLD:g}: a paraphrase must be similar")
    return problems


def _minimal_pair_problems(record: dict) -> list[str]:
    """What is wrong with one line of a minimal-pair file (an empty list when nothing is)."""
    if missing := _missing(record, MINIMAL_PAIR_KEYS):
        return missing
    problems = []
    if not isinstance(record["id"], str) or not record["id"].strip():
        problems.append("id must be a non-empty string")
    if record["category"] not in CHANGING_CATEGORIES:
        problems.append(f"category {record['category']!r} is not one of {', '.join(CHANGING_CATEGORIES)}")
    problems += _text_problems(record, TRIPLE_SENTENCES)
    if not isinstance(record["note"], str):
        problems.append("note must be a string")
    if not problems:
        texts = [record[key].strip() for key in TRIPLE_SENTENCES]
        if len(set(texts)) < 3:
            problems.append("anchor, preserving and changing must be three different sentences")
    for key, similar in (("preserving_label", True), ("changing_label", False)):
        if problem := _label_problem(key, record[key]):
            problems.append(problem)
        elif (record[key] >= SIMILAR_THRESHOLD) != similar:
            side = ">=" if similar else "<"
            problems.append(f"{key} {record[key]:g} must be {side} {SIMILAR_THRESHOLD:g}")
    return problems


def _read_records(
    path: str | Path, keys: tuple[str, ...], problems_of: Callable[[dict], list[str]], unique: str
) -> pd.DataFrame:
    """Reads a JSON Lines file, checking every line with ``problems_of`` and that ``unique`` does not repeat.

    Returns:
        The columns ``keys`` plus ``location`` (``line N``), in file order.

    Raises:
        DataValidationError: naming the file and each bad line (up to ten) with its problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    records, problems, first_line = [], [], {}
    for number, record, problem in json_lines(path):
        found = [problem] if problem else problems_of(record)
        if not found and record[unique] in first_line:
            found = [f"{unique} {record[unique]!r} repeats line {first_line[record[unique]]}"]
        problems.extend(f"line {number}: {problem}" for problem in found)
        if not found:
            first_line[record[unique]] = number
            records.append({key: record[key] for key in keys} | {"location": f"line {number}"})
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = (
            f"\n  ... and {len(problems) - MAX_REPORTED_PROBLEMS} more" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        )
        raise DataValidationError(f"{path}: {len(problems)} problem(s):\n  {shown}{more}")
    if not records:
        raise DataValidationError(f"{path}: holds no pairs")
    return pd.DataFrame.from_records(records)


def read_contrast(path: str | Path = CONTRAST_FILE) -> pd.DataFrame:
    """Reads and validates a contrast file: one JSON object per line with :data:`REQUIRED_KEYS`.

    Returns:
        The columns of :data:`REQUIRED_KEYS` plus ``location`` (``line N``), in file order.

    Raises:
        DataValidationError: naming the file and each bad line (up to ten) with its problem.
    """
    frame = _read_records(path, REQUIRED_KEYS, _record_problems, "id")
    frame["label"] = frame["label"].astype(np.float64)
    return frame


def read_paraphrases(path: str | Path = PARAPHRASE_FILE) -> pd.DataFrame:
    """Reads and validates a paraphrase file: one meaning-preserving ``preserving`` per ``anchor``.

    Returns:
        The columns of :data:`PARAPHRASE_KEYS` plus ``location``, in file order.

    Raises:
        DataValidationError: naming each bad line (missing keys, empty sentences, a label
        outside 0-5 or below 3.0, a repeated anchor).
    """
    frame = _read_records(path, PARAPHRASE_KEYS, _paraphrase_problems, "anchor")
    frame["label"] = frame["label"].astype(np.float64)
    return frame


def read_minimal_pairs(path: str | Path = MINIMAL_PAIR_FILE) -> pd.DataFrame:
    """Reads and validates a minimal-pair file: one triple (anchor, preserving, changing) per line.

    Returns:
        The columns of :data:`MINIMAL_PAIR_KEYS` plus ``location``, in file order.

    Raises:
        DataValidationError: naming each bad line (missing keys, unknown category, empty or
        repeated sentences, ``preserving_label`` below 3.0 or ``changing_label`` at or above it,
        a repeated id).
    """
    frame = _read_records(path, MINIMAL_PAIR_KEYS, _minimal_pair_problems, "id")
    for key in ("preserving_label", "changing_label"):
        frame[key] = frame[key].astype(np.float64)
    return frame


def project_triples(contrast: pd.DataFrame, paraphrases: pd.DataFrame) -> pd.DataFrame:
    """The project's minimal pairs: each non-paraphrase pair of the contrast set as a triple
    (``sentence1``, its paraphrase, ``sentence2``), with :data:`TRIPLE_COLUMNS`.

    Raises:
        DataValidationError: when a ``sentence1`` has no paraphrase or a paraphrase's anchor is
        no ``sentence1`` of a non-paraphrase pair (each named).
    """
    pairs = contrast[contrast["category"] != "paraphrase"]
    by_anchor = paraphrases.set_index("anchor")
    missing = [f"{i} ({s})" for i, s in zip(pairs["id"], pairs["sentence1"]) if s not in by_anchor.index]
    stray = [
        f"{where}: {a}"
        for a, where in zip(paraphrases["anchor"], paraphrases["location"])
        if a not in set(pairs["sentence1"])
    ]
    problems = [f"no paraphrase for the sentence1 of {item}" for item in missing]
    problems += [f"paraphrase anchor is no sentence1 of a non-paraphrase pair: {item}" for item in stray]
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        raise DataValidationError(f"contrast set and paraphrases disagree, {len(problems)} problem(s):\n  {shown}")
    matched = by_anchor.loc[pairs["sentence1"]]
    return pd.DataFrame(
        {
            "category": pairs["category"].to_numpy(),
            "anchor": pairs["sentence1"].to_numpy(),
            "preserving": matched["preserving"].to_numpy(),
            "changing": pairs["sentence2"].to_numpy(),
            "preserving_label": matched["label"].to_numpy(dtype=np.float64),
            "changing_label": pairs["label"].to_numpy(dtype=np.float64),
        }
    )


def distinct_pairs(triples: pd.DataFrame) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """The distinct pairs to score for a set of triples, and per triple the index of its
    (anchor, preserving) and of its (anchor, changing) pair in that list."""
    pairs: dict[tuple[str, str], int] = {}
    preserving, changing = [], []
    for anchor, kept, changed in zip(triples["anchor"], triples["preserving"], triples["changing"]):
        preserving.append(pairs.setdefault((anchor, kept), len(pairs)))
        changing.append(pairs.setdefault((anchor, changed), len(pairs)))
    return list(pairs), np.array(preserving, dtype=np.int64), np.array(changing, dtype=np.int64)


CONTRAST_VALIDATION = "contrast_validation"  # the held-out minimal-pair set's name among the evaluation sets
MINIMAL_PAIR_METRIC = "minimal_pair_accuracy"  # its metric: minimal_pair_accuracy(...)["all"]["accuracy"]


def minimal_pair_frame(triples: pd.DataFrame) -> pd.DataFrame:
    """The distinct pairs of a set of triples as an STS pair frame (``sentence1``, ``sentence2``,
    ``label``, ``source`` = ``contrast-<category>``, ``location``), for evaluation during training.

    ``frame.attrs["minimal_pairs"]`` holds, per triple, the row of its preserving and of its
    changing pair, which :func:`minimal_pair_score` needs.
    """
    pairs, preserving, changing = distinct_pairs(triples)
    labels, sources = np.zeros(len(pairs)), [""] * len(pairs)
    for kind, index in (("preserving", preserving), ("changing", changing)):
        labels[index] = triples[f"{kind}_label"].to_numpy(dtype=np.float64)
        for row, category in zip(index, triples["category"]):
            sources[row] = sources[row] or ("contrast-paraphrase" if kind == "preserving" else f"contrast-{category}")
    frame = pd.DataFrame(
        {
            "sentence1": [first for first, _ in pairs],
            "sentence2": [second for _, second in pairs],
            "label": labels,
            "source": sources,
            "location": [f"pair {number}" for number in range(1, len(pairs) + 1)],
        }
    )
    frame.attrs["minimal_pairs"] = {"preserving": preserving, "changing": changing}
    return frame


def read_minimal_pair_validation(path: str | Path) -> pd.DataFrame:
    """:func:`minimal_pair_frame` of a minimal-pair file (the ``contrast_validation_file`` of training)."""
    return minimal_pair_frame(read_minimal_pairs(path))


def minimal_pair_score(frame: pd.DataFrame, scores: np.ndarray) -> float | None:
    """Minimal-pair accuracy (all triples) from the scores of a :func:`minimal_pair_frame`'s rows;
    None for a frame without triples."""
    index = frame.attrs.get("minimal_pairs")
    if index is None:
        return None
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return float(minimal_pair_passes(scores[index["preserving"]], scores[index["changing"]]).mean())


def contrast_sentences(paths: list[str | Path] | None = None) -> set[str]:
    """Every sentence of the contrast files that exist (default: the three under ``data/contrast``),
    which must never reach training."""
    readers = {CONTRAST_FILE: read_contrast, PARAPHRASE_FILE: read_paraphrases, MINIMAL_PAIR_FILE: read_minimal_pairs}
    sentences: set[str] = set()
    for path in paths if paths is not None else list(readers):
        path = Path(path)
        if not path.is_file():
            continue
        frame = readers.get(path, read_minimal_pairs)(path)
        columns = [c for c in ("sentence1", "sentence2", *TRIPLE_SENTENCES) if c in frame]
        sentences |= {s for column in columns for s in frame[column]}
    return sentences


def minimal_pair_training_pairs(triples: pd.DataFrame, source: str = MINIMAL_PAIR_TRAIN_SOURCE) -> pd.DataFrame:
    """Training pairs from minimal-pair triples: (anchor, preserving, ``preserving_label``) once per
    distinct pair, then (anchor, changing, ``changing_label``) per triple (each distinct pair once),
    in file order; columns ``sentence1, sentence2, label, source`` as ``training.data.write_pairs``
    writes them."""
    rows: dict[tuple[str, str], float] = {}
    for anchor, kept, changed, kept_label, changed_label in zip(
        triples["anchor"],
        triples["preserving"],
        triples["changing"],
        triples["preserving_label"],
        triples["changing_label"],
    ):
        rows.setdefault((anchor, kept), float(kept_label))
        rows.setdefault((anchor, changed), float(changed_label))
    return pd.DataFrame(
        {
            "sentence1": [first for first, _ in rows],
            "sentence2": [second for _, second in rows],
            "label": list(rows.values()),
            "source": source,
        }
    )


def write_training_pairs(path: str | Path, output: str | Path) -> pd.DataFrame:
    """Reads a minimal-pair file for training, checks it against the held-out files and writes
    :func:`minimal_pair_training_pairs` to ``output`` (JSON Lines).

    Raises:
        DataValidationError: for a held-out file (:data:`HELD_OUT_FILES`) or triples sharing a
        sentence with one of them.
    """
    from training.data import write_pairs

    path = Path(path)
    if any(path.resolve() == held_out.resolve() for held_out in HELD_OUT_FILES):
        raise DataValidationError(f"{path} is held out of training; it cannot become training pairs")
    triples = read_minimal_pairs(path)
    held_out = contrast_sentences(list(HELD_OUT_FILES))
    shared = sorted({s for key in TRIPLE_SENTENCES for s in triples[key]} & held_out)
    if shared:
        shown = "\n  ".join(shared[:MAX_REPORTED_PROBLEMS])
        raise DataValidationError(f"{path}: {len(shared)} sentence(s) also in the held-out contrast files:\n  {shown}")
    pairs = minimal_pair_training_pairs(triples)
    write_pairs(pairs, output)
    logger.info("wrote %d training pairs from %d triples to %s", len(pairs), len(triples), output)
    return pairs


def minimal_pair_passes(preserving: np.ndarray, changing: np.ndarray) -> np.ndarray:
    """Per triple: the preserving variant scores above the changing one, at or above 3.0, and the changing below."""
    preserving, changing = np.asarray(preserving, dtype=np.float64), np.asarray(changing, dtype=np.float64)
    return (preserving > changing) & (preserving >= SIMILAR_THRESHOLD) & (changing < SIMILAR_THRESHOLD)


def minimal_pair_accuracy(
    triples: pd.DataFrame, preserving: np.ndarray, changing: np.ndarray
) -> dict[str, dict[str, float]]:
    """Minimal-pair accuracy of scored triples.

    Args:
        triples: ``category``, ``anchor`` and ``preserving`` per triple.
        preserving: the score of (anchor, preserving) per triple.
        changing: the score of (anchor, changing) per triple.

    Returns:
        ``paraphrase``: the share of distinct (anchor, preserving) pairs scoring >= 3.0 and their
        count (``pairs``); then per category (in :data:`CATEGORIES` order, then any others) and
        ``all``: the share of triples that pass :func:`minimal_pair_passes` and their count
        (``triples``). A model scoring everything low or everything high gets 0 in every row
        but ``paraphrase``.
    """
    preserving = np.asarray(preserving, dtype=np.float64).reshape(-1)
    changing = np.asarray(changing, dtype=np.float64).reshape(-1)
    if not len(preserving) == len(changing) == len(triples):
        raise ValueError(f"got {len(preserving)} and {len(changing)} scores for {len(triples)} triples")
    passed = minimal_pair_passes(preserving, changing)
    kept = pd.DataFrame({"anchor": triples["anchor"].to_numpy(), "preserving": triples["preserving"].to_numpy()})
    first = ~kept.duplicated().to_numpy()
    results = {
        "paraphrase": {"pairs": int(first.sum()), "accuracy": float((preserving[first] >= SIMILAR_THRESHOLD).mean())}
    }
    categories = triples["category"].to_numpy()
    present = [c for c in CATEGORIES if c in set(categories)] + sorted(set(categories) - set(CATEGORIES))
    for name, mask in [(c, categories == c) for c in present] + [("all", np.ones(len(triples), dtype=bool))]:
        results[name] = {"triples": int(mask.sum()), "accuracy": float(passed[mask].mean())}
    return results


def score_triples(scorer, triples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Scores of (anchor, preserving) and (anchor, changing) per triple, each distinct pair scored once."""
    pairs, preserving, changing = distinct_pairs(triples)
    scores = np.asarray(scorer.score(pairs), dtype=np.float64).reshape(-1)
    return scores[preserving], scores[changing]


def contrast_accuracy(scores: np.ndarray, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per category (in :data:`CATEGORIES` order, then any others) and ``all``: the share of pairs
    whose served flag ``score >= 3.0`` equals ``similar``, the pair count and the mean score.

    ``all`` pools every pair, so it weighs categories by their size.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(frame):
        raise ValueError(f"got {len(scores)} scores for {len(frame)} pairs")
    correct = (scores >= SIMILAR_THRESHOLD) == frame["similar"].to_numpy(dtype=bool)
    categories = frame["category"].to_numpy()
    present = [c for c in CATEGORIES if c in set(categories)] + sorted(set(categories) - set(CATEGORIES))
    results = {}
    for name, mask in [(c, categories == c) for c in present] + [("all", np.ones(len(frame), dtype=bool))]:
        results[name] = {
            "pairs": int(mask.sum()),
            "accuracy": float(correct[mask].mean()),
            "mean_score": float(scores[mask].mean()),
        }
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table: category, pairs, accuracy, mean score."""
    rows = ["| category | pairs | accuracy | mean score |", "|---|---:|---:|---:|"]
    for name, metrics in results.items():
        label = f"**{name}**" if name == "all" else name
        rows.append(f"| {label} | {metrics['pairs']} | {metrics['accuracy']:.3f} | {metrics['mean_score']:.2f} |")
    return "\n".join(rows)


def format_minimal_pair_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`minimal_pair_accuracy`: row, count (pairs or triples), accuracy."""
    rows = ["| category | count | minimal-pair accuracy |", "|---|---:|---:|"]
    for name, metrics in results.items():
        if name == "paraphrase":
            rows.append(
                f"| paraphrase (pairs >= {SIMILAR_THRESHOLD:g}) | {metrics['pairs']} | {metrics['accuracy']:.3f} |"
            )
        else:
            label = f"**{name}**" if name == "all" else name
            rows.append(f"| {label} | {metrics['triples']} | {metrics['accuracy']:.3f} |")
    return "\n".join(rows)


def contrast_report(
    scorer,
    contrast: pd.DataFrame,
    minimal_pairs: dict[str, pd.DataFrame],
) -> dict:
    """Per-category accuracy of the contrast set and minimal-pair accuracy of each set of triples.

    Every distinct pair of all the sets is scored once, in one call to ``scorer.score``.

    Returns:
        ``{"contrast": contrast_accuracy(...), "minimal_pairs": {name: minimal_pair_accuracy(...)}}``.
    """
    pairs: dict[tuple[str, str], int] = {}
    contrast_index = [pairs.setdefault(pair, len(pairs)) for pair in zip(contrast["sentence1"], contrast["sentence2"])]
    triple_index = {}
    for name, triples in minimal_pairs.items():
        own, preserving, changing = distinct_pairs(triples)
        where = np.array([pairs.setdefault(pair, len(pairs)) for pair in own], dtype=np.int64)
        triple_index[name] = (where[preserving], where[changing])
    scores = np.asarray(scorer.score(list(pairs)), dtype=np.float64).reshape(-1)
    return {
        "contrast": contrast_accuracy(scores[contrast_index], contrast),
        "minimal_pairs": {
            name: minimal_pair_accuracy(minimal_pairs[name], scores[kept], scores[changed])
            for name, (kept, changed) in triple_index.items()
        },
    }


def shipped_minimal_pairs(contrast: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The shipped sets of triples that are present: ``project`` (contrast set with its paraphrases)
    and ``held_out`` (``ko_minimal_pairs.jsonl``)."""
    sets = {}
    if PARAPHRASE_FILE.is_file():
        contrast = read_contrast(CONTRAST_FILE) if contrast is None else contrast
        sets["project"] = project_triples(contrast, read_paraphrases(PARAPHRASE_FILE))
    if MINIMAL_PAIR_FILE.is_file():
        sets["held_out"] = read_minimal_pairs(MINIMAL_PAIR_FILE)[list(TRIPLE_COLUMNS)]
    return sets


MINIMAL_PAIR_TITLES = {
    "project": "the project's set (ko_contrast.jsonl with ko_contrast_paraphrases.jsonl)",
    "held_out": "held out of training (ko_minimal_pairs.jsonl)",
}


def format_report(report: dict) -> str:
    """Markdown: the per-category table, then one minimal-pair table per set of triples."""
    parts = [format_table(report["contrast"])]
    for name, results in report.get("minimal_pairs", {}).items():
        parts += [f"Minimal pairs, {MINIMAL_PAIR_TITLES.get(name, name)}:", format_minimal_pair_table(results)]
    return "\n\n".join(parts)


def pairs_main(argv: list[str]) -> pd.DataFrame:
    """``python -m training.contrast pairs TRIPLES OUTPUT``: :func:`write_training_pairs`."""
    parser = argparse.ArgumentParser(
        prog="python -m training.contrast pairs",
        description="Training pairs (source minimal_pairs_train) from a hand-written minimal-pair file for training.",
    )
    parser.add_argument("triples", type=Path, help="minimal-pair triples (JSON Lines), not a held-out file")
    parser.add_argument("output", type=Path, help="pair file to write (JSON Lines)")
    args = parser.parse_args(argv)
    return write_training_pairs(args.triples, args.output)


def main(argv: list[str] | None = None) -> dict | pd.DataFrame:
    """Command-line entry point: prints the tables (or JSON) and returns :func:`contrast_report`'s dict;
    ``pairs TRIPLES OUTPUT`` writes training pairs instead (:func:`pairs_main`) and returns them."""
    configure_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pairs"]:
        return pairs_main(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="`python -m training.contrast pairs TRIPLES OUTPUT` writes training pairs from a hand-written "
        "minimal-pair file for training (data/contrast/ko_minimal_pairs_train.jsonl) instead.",
    )
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--file", type=Path, default=CONTRAST_FILE, help="contrast set (JSON Lines)")
    parser.add_argument(
        "--paraphrases", type=Path, default=PARAPHRASE_FILE, help="a paraphrase of each sentence1 of --file"
    )
    parser.add_argument(
        "--minimal-pairs", type=Path, default=MINIMAL_PAIR_FILE, help="held-out minimal-pair triples (JSON Lines)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown tables")
    args = parser.parse_args(argv)
    frame = read_contrast(args.file)
    triples = {
        "project": project_triples(frame, read_paraphrases(args.paraphrases)),
        "held_out": read_minimal_pairs(args.minimal_pairs)[list(TRIPLE_COLUMNS)],
    }
    scorer = load_scorer(args.package_dir, args.backend, device=args.device)
    report = contrast_report(scorer, frame, triples)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return report


if __name__ == "__main__":
    main()
