"""Per-step and per-epoch overheads of a training run that do not depend on the GPU, measured on the CPU.

    PYTHONPATH=. python research/experiments/overhead.py --model ../shared/models/me5-small-ko

Times, single-threaded and interleaved (median of repeats), on KLUE-STS train batches of 32:

* a batch from the old collator (tokenise + pad) and from the new one (pad pre-tokenised pairs);
* the one-off cost of pre-tokenising every training pair;
* an epoch-end checkpoint as ``save_strategy: epoch`` wrote it (weights + AdamW state, as
  ``save_only_model: false``), against the in-memory copy of the weights that replaced it.

The GPU side (one me5-small step, about 10 ms when launch-bound) is estimated, not measured here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.backends import accepted_inputs
from training.data import read_pairs
from training.trainer import PairCollator, pair_tokenizer


def _median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="../shared/models/me5-small-ko")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = read_pairs("data/klue-sts/klue_sts_train.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)
    pair_tok = pair_tokenizer(tokenizer, 128)
    collator = PairCollator(pair_tok, accepted_inputs(model.forward))
    first, second = pairs["sentence1"].tolist(), pairs["sentence2"].tolist()

    started = time.perf_counter()
    encoded = pair_tok.encode(first, second)
    pretokenise_s = time.perf_counter() - started
    batch = slice(0, args.batch)
    raw = list(zip(first[batch], second[batch]))
    features = [{"pair": p, "input_ids": p.ids, "labels": 1.0} for p in encoded[batch]]

    def old_collate():
        arrays = pair_tok(*zip(*raw))
        return {name: torch.from_numpy(arrays[name]) for name in collator.input_names}

    old_ms = _median_ms(old_collate, args.repeats)
    new_ms = _median_ms(lambda: collator(features), args.repeats)

    optimizer = torch.optim.AdamW(model.parameters())
    model(**old_collate()).logits.sum().backward()
    optimizer.step()  # materialise the AdamW state a checkpoint holds
    with tempfile.TemporaryDirectory() as folder:

        def checkpoint():
            model.save_pretrained(Path(folder) / "ckpt")
            torch.save(optimizer.state_dict(), Path(folder) / "ckpt" / "optimizer.pt")

        checkpoint_ms = _median_ms(checkpoint, 5)
    snapshot_ms = _median_ms(lambda: {k: v.detach().clone() for k, v in model.state_dict().items()}, 5)
    steps = -(-2 * len(pairs) // args.batch)  # symmetric: both orders
    print(f"| what | time | per symmetric epoch ({steps} steps of {args.batch}) |")
    print("|---|---:|---:|")
    print(f"| collate, tokenise + pad (old) | {old_ms:.2f} ms/batch | {old_ms * steps / 1e3:.1f} s |")
    print(f"| collate, pad only (new) | {new_ms:.2f} ms/batch | {new_ms * steps / 1e3:.1f} s |")
    print(f"| pre-tokenise all {len(pairs)} pairs once (new) | {pretokenise_s * 1e3:.0f} ms | - |")
    print(f"| epoch checkpoint, weights + AdamW state (old) | {checkpoint_ms:.0f} ms | {checkpoint_ms / 1e3:.1f} s |")
    print(f"| in-memory copy of the weights (new, CPU) | {snapshot_ms:.0f} ms | {snapshot_ms / 1e3:.2f} s |")


if __name__ == "__main__":
    main()
