"""Contrast test set: does the served model tell meaning from topic (issue 10)?

    python -m training.contrast models/default
    python -m training.contrast outputs/me5-small-ko/model --backend torch --device cuda --json

Scores every pair of ``data/contrast/ko_contrast.jsonl`` (see ``data/contrast/README.md``)
through the serving scorer and reports, per category, how often the served flag
(``score >= 3.0``) matches the expected one, with the pair count and the mean score.
Paraphrases should score high; negations, antonyms, changed numbers, entities or roles,
different intents and unrelated pairs should all stay below 3.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from models.scorer import load_scorer
from models.scoring import MAX_SCORE, SIMILAR_THRESHOLD
from training.data import MAX_REPORTED_PROBLEMS, DataValidationError, json_lines
from training.evaluate import score_frame
from training.logs import configure_logging

logger = logging.getLogger("training.contrast")

CONTRAST_FILE = Path(__file__).resolve().parents[1] / "data/contrast/ko_contrast.jsonl"
CATEGORIES = ("paraphrase", "negation", "antonym", "number", "entity_role", "intent", "unrelated")
REQUIRED_KEYS = ("id", "category", "sentence1", "sentence2", "similar", "label", "note")


def _record_problems(record: dict) -> list[str]:
    """What is wrong with one parsed line (an empty list when nothing is)."""
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        return [f"missing key(s) {', '.join(missing)}"]
    problems = []
    if not isinstance(record["id"], str) or not record["id"].strip():
        problems.append("id must be a non-empty string")
    if record["category"] not in CATEGORIES:
        problems.append(f"category {record['category']!r} is not one of {', '.join(CATEGORIES)}")
    for key in ("sentence1", "sentence2"):
        if not isinstance(record[key], str) or not record[key].strip():
            problems.append(f"{key} must be a non-empty string")
    if not isinstance(record["note"], str):
        problems.append("note must be a string")
    similar, label = record["similar"], record["label"]
    if not isinstance(similar, bool):
        problems.append(f"similar must be true or false, got {similar!r}")
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        problems.append(f"label must be a number, got {label!r}")
    elif not 0.0 <= label <= MAX_SCORE:
        problems.append(f"label {label:g} is outside 0-{MAX_SCORE:g}")
    elif isinstance(similar, bool) and similar != (label >= SIMILAR_THRESHOLD):
        side = ">=" if label >= SIMILAR_THRESHOLD else "<"
        problems.append(f"label {label:g} is {side} {SIMILAR_THRESHOLD:g} but similar is {str(similar).lower()}")
    return problems


def read_contrast(path: str | Path = CONTRAST_FILE) -> pd.DataFrame:
    """Reads and validates a contrast file: one JSON object per line with :data:`REQUIRED_KEYS`.

    Returns:
        The columns of :data:`REQUIRED_KEYS` plus ``location`` (``line N``), in file order.

    Raises:
        DataValidationError: naming the file and each bad line (up to ten) with its problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    records, problems, first_line_of_id = [], [], {}
    for number, record, problem in json_lines(path):
        found = [problem] if problem else _record_problems(record)
        if not found and record["id"] in first_line_of_id:
            found = [f"id {record['id']!r} repeats line {first_line_of_id[record['id']]}"]
        problems.extend(f"line {number}: {problem}" for problem in found)
        if not found:
            first_line_of_id[record["id"]] = number
            records.append({key: record[key] for key in REQUIRED_KEYS} | {"location": f"line {number}"})
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = (
            f"\n  ... and {len(problems) - MAX_REPORTED_PROBLEMS} more" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        )
        raise DataValidationError(f"{path}: {len(problems)} problem(s):\n  {shown}{more}")
    if not records:
        raise DataValidationError(f"{path}: holds no pairs")
    frame = pd.DataFrame.from_records(records)
    frame["label"] = frame["label"].astype(np.float64)
    return frame


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


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Command-line entry point: prints the table (or JSON) and returns the results."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", type=Path)
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--file", type=Path, default=CONTRAST_FILE, help="contrast set (JSON Lines)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    frame = read_contrast(args.file)
    scorer = load_scorer(args.package_dir, args.backend, device=args.device)
    results = contrast_accuracy(score_frame(scorer, frame), frame)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return results


if __name__ == "__main__":
    main()
