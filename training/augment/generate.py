"""Hard negatives (and, with ``--kinds``, paraphrase positives) from a pair file's sentences.

Every chosen rule runs on every unique sentence; the rewrites are labelled, sampled and written.

    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/hard-negatives/klue_sts_train.jsonl \\
        --per-kind 1000 --seed 13
    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/paraphrases/klue_sts_train.jsonl \\
        --per-kind 1000 --seed 13 --kinds register,synonym,word_order,passive
"""

from __future__ import annotations

import argparse
import logging
import random
from collections import Counter
from pathlib import Path

import pandas as pd

from training.augment.paraphrases import change_register, reorder_phrases, swap_synonym, to_passive
from training.augment.rules import (
    change_intent,
    change_number,
    negate,
    negate_lexical,
    swap_antonym,
    swap_entity,
    swap_roles,
)
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
# A lexical opposite (수 있는 -> 수 없는, 아는 -> 모르는) contradicts what it is said of, like negation.
NEGATION_LEXICAL_LABEL = 1.0
# Paraphrases keep the meaning. KLUE's 5 is "equivalent in meaning and in importance of details";
# a speech-level change (좋았어요 -> 좋았습니다) or two adverbials in another order change no
# content (5.0, 4.8: the order moves the emphasis); a synonym and the 에 의해 passive are
# near-equivalent, with a shade of register or focus of their own (4.6, 4.5).
REGISTER_LABEL = 5.0
WORD_ORDER_LABEL = 4.8
SYNONYM_LABEL = 4.6
PASSIVE_LABEL = 4.5
KIND_LABELS = {
    "negation": NEGATION_LABEL,
    "antonym": ANTONYM_LABEL,
    "number": NUMBER_LABEL,
    "entity": ENTITY_LABEL,
    "role": ROLE_LABEL,
    "intent": INTENT_LABEL,
    "negation_lexical": NEGATION_LEXICAL_LABEL,
    "register": REGISTER_LABEL,
    "synonym": SYNONYM_LABEL,
    "word_order": WORD_ORDER_LABEL,
    "passive": PASSIVE_LABEL,
}
# The kinds written without ``--kinds``: the six hard negatives, so that the default output (and
# `make hard-negatives`) stays byte for byte what it was before the paraphrase kinds.
NEGATIVE_KINDS = ("negation", "antonym", "number", "entity", "role", "intent")
# Negatives by a second method, unlike the templates: written when asked for (--kinds).
EXTRA_NEGATIVE_KINDS = ("negation_lexical",)
PARAPHRASE_KINDS = ("register", "synonym", "word_order", "passive")


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


def _rewrite(kind: str, sentence: str, seed: int) -> str | None:
    """One rule's rewrite of a sentence (negation has its own call, which also names the sub-rule)."""
    rules = {
        "antonym": lambda: swap_antonym(sentence),
        "number": lambda: change_number(sentence, _rng(seed, "number", sentence)),
        "entity": lambda: swap_entity(sentence, _rng(seed, "entity", sentence)),
        "role": lambda: swap_roles(sentence),
        "intent": lambda: change_intent(sentence, _rng(seed, "intent", sentence)),
        "negation_lexical": lambda: negate_lexical(sentence, _rng(seed, "negation_lexical", sentence)),
        "register": lambda: change_register(sentence),
        "synonym": lambda: swap_synonym(sentence, _rng(seed, "synonym", sentence)),
        "word_order": lambda: reorder_phrases(sentence),
        "passive": lambda: to_passive(sentence),
    }
    return rules[kind]()


def generate(
    sentences: list[tuple[str, str]], seed: int, kinds: tuple[str, ...] = NEGATIVE_KINDS
) -> dict[str, list[dict]]:
    """Every rewrite each chosen rule makes, per kind (in :data:`KIND_LABELS` order), as output records."""
    unknown = sorted(set(kinds) - set(KIND_LABELS))
    if unknown:
        raise ValueError(f"unknown kinds {', '.join(unknown)}; choose from {', '.join(KIND_LABELS)}")
    found: dict[str, list[dict]] = {kind: [] for kind in KIND_LABELS if kind in kinds}
    negation_rules: Counter[str] = Counter()
    for sentence, location in sentences:
        rewrites: dict[str, str | None] = {kind: _rewrite(kind, sentence, seed) for kind in found if kind != "negation"}
        if "negation" in found:
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
    if "negation" in found:
        logger.info("negation by rule: %s", ", ".join(f"{rule} {n}" for rule, n in negation_rules.most_common()))
    return found


def augment(
    pairs: pd.DataFrame,
    name: str,
    per_kind: int | None = None,
    seed: int = 13,
    exclude: pd.DataFrame | None = None,
    kinds: tuple[str, ...] = NEGATIVE_KINDS,
) -> pd.DataFrame:
    """Hard-negative (or paraphrase) pairs from a pair file's sentences, at most ``per_kind`` of each kind.

    Args:
        kinds: the rules to run (:data:`KIND_LABELS`); by default the six hard negatives.
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
    found = generate(sentences, seed, kinds)
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
    parser.add_argument(
        "--kinds",
        default=",".join(NEGATIVE_KINDS),
        help=f"comma-separated kinds to write, of {', '.join(KIND_LABELS)}; `paraphrases` stands for "
        f"{', '.join(PARAPHRASE_KINDS)} and `negatives` for the default, {', '.join(NEGATIVE_KINDS)}",
    )
    args = parser.parse_args(argv)
    if args.per_kind < 0:
        parser.error("--per-kind must be 0 (all) or positive")
    groups = {"negatives": NEGATIVE_KINDS, "paraphrases": PARAPHRASE_KINDS}
    names = [name.strip() for name in args.kinds.split(",") if name.strip()]
    kinds = tuple(kind for name in names for kind in groups.get(name, (name,)))
    unknown = sorted(set(kinds) - set(KIND_LABELS))
    if unknown or not kinds:
        allowed = ", ".join([*KIND_LABELS, *groups])
        parser.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from {allowed}")
    pairs = read_pairs(args.input)
    exclude = read_pairs(args.exclude) if args.exclude else None
    frame = augment(pairs, args.input.name, args.per_kind or None, args.seed, exclude, kinds)
    write_pairs(frame, args.output)
    logger.info("wrote %d pairs to %s", len(frame), args.output)
    return frame


if __name__ == "__main__":
    main()
