"""Input rules for scoring and ranking requests, applied identically by every protocol.

HTTP and gRPC parse their own wire formats into plain strings, then call these checks, so a
bad request gets the same message (naming the field and the rule) and the same error kind,
mapped to status codes by :data:`serving.errors.ERROR_TABLE`.

Over-long sentences: a sentence over ``max_sentence_chars`` characters is refused; within that
limit, a pair longer than the model's token budget is truncated (longest sentence first) and
the response says so (``truncated``). A blank sentence is one that ``str.strip`` empties (the
OpenAPI spec declares the same rule as a pattern: ``serving.schemas.NOT_BLANK``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.scorer import Pair
from serving.errors import InvalidInput, TooLarge


@dataclass(frozen=True)
class InputRules:
    """Limits on one request.

    Args:
        max_pairs: most pairs in one ``score`` request, and most candidates in one ``rank`` request.
        max_sentence_chars: most characters in one sentence (protects the tokenizer from megabytes).
        max_body_bytes: most bytes in one HTTP body or gRPC message; None: :attr:`body_limit`'s default.
    """

    max_pairs: int = 256
    max_sentence_chars: int = 2000
    max_body_bytes: int | None = None

    @property
    def body_limit(self) -> int:
        """Most bytes in one request: by default room for the largest request within the other limits.

        That is every sentence at the limit, each character written as a 6-byte JSON escape
        (``\\uXXXX``, what ``json.dumps`` writes by default), plus room for keys and spacing:
        6,192,928 bytes with the default limits.
        """
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return (2 * self.max_pairs + 1) * (6 * self.max_sentence_chars + 64) + 4096


def check_sentence(value: object, field: str, rules: InputRules) -> str:
    """Returns ``value`` if it is a sentence the service accepts, else raises naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{field}: must contain text, not only whitespace")
    if len(value) > rules.max_sentence_chars:
        raise TooLarge(f"{field}: {len(value)} characters, more than the limit of {rules.max_sentence_chars}")
    return value


def _check_count(count: int, field: str, rules: InputRules) -> None:
    if count == 0:
        raise InvalidInput(f"{field}: must hold at least one item")
    if count > rules.max_pairs:
        raise TooLarge(f"{field}: {count} items, more than the limit of {rules.max_pairs} per request; split it")


def check_pairs(pairs: Sequence[tuple[object, object]], rules: InputRules) -> list[Pair]:
    """Checks a ``score`` request's ``(sentence1, sentence2)`` pairs."""
    _check_count(len(pairs), "pairs", rules)
    return [
        (check_sentence(first, f"pairs[{i}].sentence1", rules), check_sentence(second, f"pairs[{i}].sentence2", rules))
        for i, (first, second) in enumerate(pairs)
    ]


def check_rank(query: object, candidates: Sequence[object], top_k: int | None, rules: InputRules) -> list[Pair]:
    """Checks a ``rank`` request; returns the ``(query, candidate)`` pairs to score."""
    query = check_sentence(query, "query", rules)
    _check_count(len(candidates), "candidates", rules)
    if top_k is not None and top_k < 1:
        raise InvalidInput(f"top_k: must be at least 1 when given, got {top_k}")
    return [(query, check_sentence(c, f"candidates[{i}]", rules)) for i, c in enumerate(candidates)]


def rank_order(scores: np.ndarray, top_k: int | None) -> np.ndarray:
    """Candidate indices by descending score, ties broken by the lower index, cut to ``top_k``."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    return order if top_k is None else order[:top_k]
