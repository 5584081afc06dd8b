"""Pair tokenisation shared by training and every scoring backend."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import BatchEncoding, PreTrainedTokenizerBase


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    first: Sequence[str],
    second: Sequence[str],
    max_length: int,
    return_tensors: str = "pt",
) -> BatchEncoding:
    """Tokenises sentence pairs as one cross-encoder input each.

    Pairs are padded to the longest in the batch and truncated longest-first to ``max_length``
    tokens, exactly as during training.
    """
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} first sentences but {len(second)} second sentences")
    return tokenizer(
        list(first),
        list(second),
        padding=True,
        truncation="longest_first",
        max_length=max_length,
        return_tensors=return_tensors,
    )
