"""Random model packages in a real architecture's shape: benchmark subjects where the weights are out of reach.

    python -m load_tests.subjects koelectra-base outputs/koelectra-base-random
    python -m models.store outputs/koelectra-base-random

Speed depends on the shape (layers, hidden size, vocabulary, sequence lengths), not on the
weights, so a random KoELECTRA-base (``monologg/koelectra-base-v3-discriminator``'s config:
12 layers, hidden 768, a 35,000-row embedding table) times like the real one. The tokenizer is a
WordPiece trained on KLUE-STS train with a vocabulary small enough that pairs come out as long
as KoELECTRA's tokenizer makes them (about 41 tokens on KLUE-STS train; a 35,000-piece
vocabulary fitted to this corpus alone would give 25 and flatter the benchmark). Its scores
mean nothing: never serve one of these to users (store them under another name than ko-sts).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from models.package import write_metadata
from models.scoring import ScoreSettings

logger = logging.getLogger("load_tests.subjects")

SHAPES = {
    "koelectra-base": {
        "vocab_size": 35000,
        "embedding_size": 768,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "tokenizer_vocab_size": 3500,  # 43 tokens per KLUE-STS train pair, against 41 for KoELECTRA's
    },
}
MAX_LENGTH = 128  # the KoELECTRA recipe's budget is 120; 128 keeps the same padding behaviour


def build_subject(shape: str, output_dir: Path, seed: int = 0) -> Path:
    """Writes a random cross-encoder package of ``shape`` (see :data:`SHAPES`) to ``output_dir``."""
    from transformers import ElectraConfig, ElectraForSequenceClassification, set_seed

    from training.tiny_model import DEFAULT_CORPUS, train_wordpiece

    set_seed(seed)
    sizes = dict(SHAPES[shape])
    tokenizer = train_wordpiece(DEFAULT_CORPUS, sizes.pop("tokenizer_vocab_size"))
    config = ElectraConfig(**sizes, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    settings = ScoreSettings(activation="identity", max_length=MAX_LENGTH, symmetry="none")
    settings.save_to(config)
    model = ElectraForSequenceClassification(config)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    write_metadata(
        output_dir,
        {
            "base_model": f"random weights in the {shape} shape (a speed subject, not a model)",
            "score_settings": settings.to_dict(),
            "metrics": {},
        },
    )
    logger.info("random %s (%d parameters) written to %s", shape, model.num_parameters(), output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_subject(args.shape, args.output_dir, args.seed)


if __name__ == "__main__":
    main()
