"""Pair tokenisation shared by training and every scoring backend, on the Rust ``tokenizers`` API.

Serving imports neither torch nor transformers: the model's ``tokenizer.json`` is loaded with
``tokenizers`` directly and pairs are encoded in one ``encode_batch_fast`` call (which runs in
parallel outside the GIL). Its rows come out as :class:`EncodedRows`: every row's token ids back
to back in one flat array with row offsets, so that selecting, joining, sending and padding rows
are numpy operations, not loops over rows. Training tokenises through the same class, so that
both see identical ids.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILES = ("tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class EncodedRows:
    """Tokenised sequences (``[CLS] first [SEP] second [SEP]`` or the model's own template), unpadded.

    Row ``i``'s tokens are ``ids[offsets[i]:offsets[i + 1]]``.

    Args:
        ids: int32 token ids of every row, back to back.
        type_ids: int8 segment ids, aligned with ``ids``.
        offsets: int64, one more than there are rows; ``offsets[0] == 0``.
        truncated: bool per row: its tokens were cut to fit ``max_length``.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    offsets: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row (int64)."""
        return np.diff(self.offsets)

    @property
    def tokens(self) -> int:
        """Tokens in all rows."""
        return int(self.offsets[-1] - self.offsets[0])

    def __getitem__(self, rows: slice | np.ndarray) -> EncodedRows:
        """The rows of a slice (views, no copy) or of an index array (gathered, in that order)."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step != 1:
                raise ValueError("EncodedRows takes contiguous slices; pass an index array for other selections")
            stop = max(start, stop)
            offsets = self.offsets[start : stop + 1]
            first, last = int(offsets[0]), int(offsets[-1])
            return EncodedRows(
                self.ids[first:last], self.type_ids[first:last], offsets - first, self.truncated[start:stop]
            )
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        source = np.arange(offsets[-1], dtype=np.int64) + np.repeat(self.offsets[rows] - offsets[:-1], lengths)
        return EncodedRows(self.ids[source], self.type_ids[source], offsets, self.truncated[rows])

    @staticmethod
    def concat(parts: Sequence[EncodedRows]) -> EncodedRows:
        """The rows of ``parts``, one after another."""
        if len(parts) == 1:
            return parts[0]
        lengths = np.concatenate([part.lengths for part in parts])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return EncodedRows(
            np.concatenate([part.ids for part in parts]),
            np.concatenate([part.type_ids for part in parts]),
            offsets,
            np.concatenate([part.truncated for part in parts]),
        )

    def pad(self, width: int, pad_id: int, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Right-padded int64 ``input_ids``, ``attention_mask`` and ``token_type_ids`` of shape (rows, width).

        ``out`` reuses buffers (flat int64 arrays of at least rows x width elements each, e.g. pinned
        host memory): the answer's arrays are then views of them.
        """
        if self.lengths.max(initial=0) > width:
            raise ValueError(f"a row of {int(self.lengths.max())} tokens does not fit a width of {width}")
        shape = (len(self), width)
        size = shape[0] * shape[1]
        if out is None:
            out = {name: np.empty(size, dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        ids, mask, type_ids = (
            out[name][:size].reshape(shape) for name in ("input_ids", "attention_mask", "token_type_ids")
        )
        valid = np.arange(width) < self.lengths[:, None]  # row-major order of the valid cells is the tokens' order
        ids.fill(pad_id)
        ids[valid] = self.ids
        np.copyto(mask, valid)
        type_ids.fill(0)
        type_ids[valid] = self.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}


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

    def encode(self, first: Sequence[str], second: Sequence[str]) -> EncodedRows:
        """Tokenises ``(first[i], second[i])`` pairs, in order."""
        if len(first) != len(second):
            raise ValueError(f"got {len(first)} first sentences but {len(second)} second sentences")
        encodings = self.tokenizer.encode_batch_fast(list(zip(first, second)))
        rows = len(encodings)
        offsets = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(e) for e in encodings), dtype=np.int64, count=rows), out=offsets[1:])
        tokens = int(offsets[-1])
        chain = itertools.chain.from_iterable
        return EncodedRows(
            ids=np.fromiter(chain(e.ids for e in encodings), dtype=np.int32, count=tokens),
            type_ids=np.fromiter(chain(e.type_ids for e in encodings), dtype=np.int8, count=tokens),
            offsets=offsets,
            truncated=np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=rows),
        )

    def pad(self, rows: EncodedRows, width: int | None = None) -> dict[str, np.ndarray]:
        """Right-pads rows to ``width`` (default: the longest): input ids, attention mask and type ids."""
        return rows.pad(width or int(rows.lengths.max(initial=1)), self.pad_id)

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
