"""Build a tiny random ELECTRA encoder with a WordPiece tokenizer trained on the shipped data.

    python -m training.tiny_model outputs/tiny-electra

It stands in for a pretrained encoder wherever the real one is out of reach: the tests and a
smoke run of the whole pipeline (``make train CONFIG=training/configs/tiny.yaml``) use it. It
learns a little in a few hundred steps but is no model to serve.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece
from transformers import ElectraConfig, ElectraModel, PreTrainedTokenizerFast, set_seed

from training.data import read_pairs
from training.logs import configure_logging

logger = logging.getLogger("training.tiny_model")

DEFAULT_CORPUS = Path("data/klue-sts/klue_sts_train.jsonl")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _sentences(corpus: Path) -> Iterator[str]:
    pairs = read_pairs(corpus)
    yield from pairs["sentence1"]
    yield from pairs["sentence2"]


def train_wordpiece(corpus: Path, vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on the sentences of a pair file."""
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(
        _sentences(corpus), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def build_tiny_electra(output_dir: Path, corpus: Path = DEFAULT_CORPUS, vocab_size: int = 4000, seed: int = 0) -> Path:
    """Writes a tiny random ``ElectraModel`` and its tokenizer to ``output_dir``."""
    set_seed(seed)
    tokenizer = train_wordpiece(corpus, vocab_size)
    config = ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=64,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    ElectraModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    logger.info("tiny ELECTRA (%d-token vocabulary) written to %s", len(tokenizer), output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="pair file to train the tokenizer on")
    args = parser.parse_args(argv)
    build_tiny_electra(args.output_dir, args.corpus)


if __name__ == "__main__":
    main()
