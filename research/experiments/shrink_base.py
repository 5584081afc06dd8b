"""A shallower encoder for a smaller distilled student: some of a BERT-like model's layers, kept in order.

    python research/experiments/shrink_base.py BASE OUT                # every other layer (0, 2, 4, ...)
    python research/experiments/shrink_base.py BASE OUT --keep 0,1,2,3

Issue 15's lever on the CPU: a student with half the layers runs each pass in about half the time. Every
other layer of the teacher is the usual start for a half-depth student (DistilBERT's). BASE is a base
encoder or a model package (a sequence-classification model keeps its head); the embeddings, the pooler,
the head and every other file of BASE (tokenizer, metadata) are kept, except exported ONNX files, which
no longer match. Then train the student from OUT, e.g. round4.sh's student stage with STUDENT_BASE=OUT.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

import models.cross_encoder  # noqa: F401  (registers the mean-pooling head with the Auto classes)

logger = logging.getLogger("shrink_base")
WEIGHTS = {"model.safetensors", "pytorch_model.bin", "config.json"}
STALE = {"onnx"}  # exported from the full depth


def shrink(base: Path, out: Path, keep: list[int] | None = None) -> Path:
    """Writes to ``out`` the model of ``base`` with only the layers ``keep`` (default: every other one)."""
    package = getattr(AutoConfig.from_pretrained(base), "ko_sts", None) is not None  # a package's score settings
    model = (AutoModelForSequenceClassification if package else AutoModel).from_pretrained(base)
    layers = model.base_model.encoder.layer
    keep = keep if keep is not None else list(range(0, len(layers), 2))
    if not keep or sorted(set(keep)) != keep or keep[-1] >= len(layers) or keep[0] < 0:
        raise SystemExit(f"--keep {keep}: give rising layer numbers from 0 to {len(layers) - 1}")
    model.base_model.encoder.layer = torch.nn.ModuleList(layers[i] for i in keep)
    # the mean-pooling cross-encoder describes its backbone in a nested config
    getattr(model.config, "encoder", model.config).num_hidden_layers = len(keep)
    out.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if item.name in WEIGHTS or item.name in STALE:
            continue
        copy = shutil.copytree if item.is_dir() else shutil.copy2
        copy(item, out / item.name)
    model.save_pretrained(out)
    logger.info("%s: layers %s of %d kept -> %s", base, keep, len(layers), out)
    return out


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="a base encoder or a model package (transformers folder)")
    parser.add_argument("out", type=Path, help="where the shallower model goes")
    parser.add_argument("--keep", help="layers to keep, comma-separated, from 0 (default: every other one)")
    args = parser.parse_args(argv)
    keep = [int(layer) for layer in args.keep.split(",")] if args.keep else None
    shrink(args.base, args.out, keep)


if __name__ == "__main__":
    main()
