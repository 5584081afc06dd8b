"""Hard negatives from a pair file's sentences: every rule on every unique sentence, labelled, sampled, written.

    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/hard-negatives/klue_sts_train.jsonl \\
        --per-kind 1000 --seed 13
"""

from __future__ import annotations

import argparse
import logging
import random
from collections import Counter
from pathlib import Path

import pandas as pd

from training.augment.rules import change_intent, change_number, negate, swap_antonym, swap_entity, swap_roles
from training.data import SENTENCE_COLUMNS, read_pairs, write_pairs
from training.logs import configure_logging

logger = logging.getLogger("training.augment")

# Gold labels of the generated pairs on KLUE-STS's 0-5 scale. KLUE's guideline puts a pair
# whose core content differs below 3: 1 is "not equivalent, same topic", 2 "not equivalent,
# some details shared". A reversed polarity or an antonym contradicts the sentence (1.0);
# a changed number, time or place keeps the event and changes one detail of it (1.5).
NEGATION_LABEL = 1.0
ANTONYM_LABEL = 1.0
NUMBER_LABEL = 1.5
ENTITY_LABEL = 1.5
# Swapped roles reverse who does what to whom (1.2); another question on the same topic shares
# the topic and nothing else that was asked (1.5).
ROLE_LABEL = 1.2
INTENT_LABEL = 1.5
KIND_LABELS = {
    "negation": NEGATION_LABEL,
    "antonym": ANTONYM_LABEL,
    "number": NUMBER_LABEL,
    "entity": ENTITY_LABEL,
    "role": ROLE_LABEL,
    "intent": INTENT_LABEL,
}


def _rng(seed: int, kind: str, sentence: str) -> random.Random:
    """A generator that depends only on the seed and the sentence, not on the order of the file."""
    return random.Random(f"{seed}:{kind}:{sentence}")


def unique_sentences(pairs: pd.DataFrame, name: str) -> list[tuple[str, str]]:
    """(sentence, where it first occurs) for every distinct sentence of a pair file, in file order."""
    seen: dict[str, str] = {}
    for location, first, second in zip(pairs["location"], pairs["sentence1"], pairs["sentence2"]):
        for column, sentence in zip(SENTENCE_COLUMNS, (first, second)):
            seen.setdefault(sentence.strip(), f"{name} {location} {column}")
    return list(seen.items())


def generate(sentences: list[tuple[str, str]], seed: int) -> dict[str, list[dict]]:
    """Every rewrite each rule makes, per kind, as output records; logs how often each rule applied."""
    found: dict[str, list[dict]] = {kind: [] for kind in KIND_LABELS}
    negation_rules: Counter[str] = Counter()
    for sentence, location in sentences:
        rewrites: dict[str, str | None] = {
            "antonym": swap_antonym(sentence),
            "number": change_number(sentence, _rng(seed, "number", sentence)),
            "entity": swap_entity(sentence, _rng(seed, "entity", sentence)),
            "role": swap_roles(sentence),
            "intent": change_intent(sentence, _rng(seed, "intent", sentence)),
        }
        negated = negate(sentence)
        rewrites["negation"] = negated[0] if negated else None
        if negated:
            negation_rules[negated[1]] += 1
        for kind, rewritten in rewrites.items():
            if rewritten is not None and rewritten != sentence:
                record = {"sentence1": sentence, "sentence2": rewritten, "label": KIND_LABELS[kind], "kind": kind}
                found[kind].append(record | {"source_location": location})
    for kind, records in found.items():
        logger.info("%s: applied to %d of %d sentences", kind, len(records), len(sentences))
    logger.info("negation by rule: %s", ", ".join(f"{rule} {n}" for rule, n in negation_rules.most_common()))
    return found


def augment(
    pairs: pd.DataFrame,
    name: str,
    per_kind: int | None = None,
    seed: int = 13,
    exclude: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Hard-negative pairs from a pair file's sentences, at most ``per_kind`` of each kind.

    Args:
        exclude: pairs whose sentences must not be used, e.g. a held-out validation split, so
            that no evaluated sentence reaches training through its rewritten twin.

    Returns:
        ``sentence1`` (original), ``sentence2`` (rewritten), ``label``, ``kind``, ``source_location``;
        pairs that already occur in ``pairs`` (in either order) are left out.
    """
    sentences = unique_sentences(pairs, name)
    if exclude is not None:
        held_out = {s.strip() for column in SENTENCE_COLUMNS for s in exclude[column]}
        sentences = [(s, where) for s, where in sentences if s not in held_out]
        logger.info("left out %d sentences of the excluded pairs", len(held_out))
    found = generate(sentences, seed)
    existing = set(zip(pairs["sentence1"], pairs["sentence2"])) | set(zip(pairs["sentence2"], pairs["sentence1"]))
    chosen = []
    for kind, records in found.items():
        records = [r for r in records if (r["sentence1"], r["sentence2"]) not in existing]
        if per_kind is not None and len(records) > per_kind:
            keep = sorted(random.Random(f"{seed}:{kind}").sample(range(len(records)), per_kind))
            records = [records[i] for i in keep]
        chosen.extend(records)
        logger.info("%s: %d pairs written (label %.1f)", kind, len(records), KIND_LABELS[kind])
    return pd.DataFrame(chosen, columns=["sentence1", "sentence2", "label", "kind", "source_location"])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Command-line entry point; returns the written pairs."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="KLUE-STS-format pair file (.jsonl, .json, .csv, .tsv)")
    parser.add_argument("output", type=Path, help="JSON Lines file to write")
    parser.add_argument("--per-kind", type=int, default=500, help="most pairs of each kind (0: all)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--exclude", type=Path, help="pair file whose sentences are not used (a validation split)")
    args = parser.parse_args(argv)
    if args.per_kind < 0:
        parser.error("--per-kind must be 0 (all) or positive")
    pairs = read_pairs(args.input)
    exclude = read_pairs(args.exclude) if args.exclude else None
    frame = augment(pairs, args.input.name, args.per_kind or None, args.seed, exclude)
    write_pairs(frame, args.output)
    logger.info("wrote %d pairs to %s", len(frame), args.output)
    return frame


if __name__ == "__main__":
    main()
