"""Pair tokenisation shared by training and every scoring backend, on the Rust ``tokenizers`` API.

Serving imports neither torch nor transformers: the model's ``tokenizer.json`` is loaded with
``tokenizers`` directly, pairs are encoded in one ``encode_batch`` call (which runs in parallel
outside the GIL) and padded into numpy arrays only when a forward pass is assembled. Training
tokenises through the same class, so that both see identical ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILES = ("tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class EncodedPair:
    """One tokenised sequence: ``[CLS] first [SEP] second [SEP]`` (or the model's own template)."""

    ids: np.ndarray  # int64, unpadded
    type_ids: np.ndarray  # int64, unpadded
    truncated: bool  # tokens were cut to fit max_length

    def __len__(self) -> int:
        return len(self.ids)


class PairTokenizer:
    """Encodes sentence pairs, truncated longest-first to ``max_length`` tokens, and pads batches.

    Args:
        tokenizer: the model's Rust tokenizer (``tokenizer.json``).
        max_length: token budget of one pair (``ScoreSettings.max_length``).
        pad_id: id written into padding positions.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = pad_id
        tokenizer.no_padding()  # batches are padded when a forward pass is assembled
        tokenizer.enable_truncation(max_length, strategy="longest_first")

    @classmethod
    def from_dir(cls, model_dir: str | Path, max_length: int) -> PairTokenizer:
        """Loads ``tokenizer.json`` from a model directory (as ``save_pretrained`` writes it)."""
        model_dir = Path(model_dir)
        path = model_dir / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the model package has no fast tokenizer; re-save it with "
                "`AutoTokenizer.from_pretrained(...).save_pretrained(...)` (transformers) or retrain it"
            )
        tokenizer = Tokenizer.from_file(str(path))
        return cls(tokenizer, max_length, _pad_id(tokenizer, model_dir))

    def encode(self, first: Sequence[str], second: Sequence[str]) -> list[EncodedPair]:
        """Tokenises ``(first[i], second[i])`` pairs, in order."""
        if len(first) != len(second):
            raise ValueError(f"got {len(first)} first sentences but {len(second)} second sentences")
        encodings: list[Encoding] = self.tokenizer.encode_batch(list(zip(first, second)))
        return [
            EncodedPair(np.asarray(e.ids, dtype=np.int64), np.asarray(e.type_ids, dtype=np.int64), bool(e.overflowing))
            for e in encodings
        ]

    def pad(self, pairs: Sequence[EncodedPair], width: int | None = None) -> dict[str, np.ndarray]:
        """Right-pads sequences to ``width`` (default: the longest): input ids, attention mask and type ids."""
        width = width or max(len(p) for p in pairs)
        ids = np.full((len(pairs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(pairs), width), dtype=np.int64)
        type_ids = np.zeros((len(pairs), width), dtype=np.int64)
        for row, pair in enumerate(pairs):
            ids[row, : len(pair)] = pair.ids
            mask[row, : len(pair)] = 1
            type_ids[row, : len(pair)] = pair.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}

    def __call__(self, first: Sequence[str], second: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenises and pads in one step (training batches, tests)."""
        return self.pad(self.encode(first, second))


def _pad_id(tokenizer: Tokenizer, model_dir: Path) -> int:
    """The pad token's id: from the tokenizer's own padding settings, else the saved special tokens."""
    if tokenizer.padding is not None:
        return tokenizer.padding["pad_id"]
    for name in SPECIAL_TOKENS_FILES:
        path = model_dir / name
        if path.is_file():
            token = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            token = token.get("content") if isinstance(token, dict) else token
            if token is not None and tokenizer.token_to_id(token) is not None:
                return tokenizer.token_to_id(token)
    raise ValueError(f"{model_dir}: no pad token in {TOKENIZER_FILE} or {', '.join(SPECIAL_TOKENS_FILES)}")
