"""Continued MLM training of a base encoder (training.heal) on the recipe's own training sentences."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModel

from training.data import read_pairs
from training.heal import corpus, main

TINY_CONFIG = "training/configs/tiny.yaml"


def test_heal_text_holds_no_held_out_or_evaluation_sentence():
    train, validation = corpus(TINY_CONFIG, [])
    dev = read_pairs("data/klue-sts/klue_sts_dev.jsonl")
    held_out = set(validation) | set(dev["sentence1"]) | set(dev["sentence2"])
    assert len(train) > 500 and len(validation) > 50
    assert not held_out & set(train)
    assert len(set(train)) == len(train)


def test_heal_trains_the_encoder_and_saves_it_for_fine_tuning(tiny_base, tmp_path):
    out = tmp_path / "healed"
    text = tmp_path / "more.txt"
    text.write_text("추가 문장 하나입니다.\n\n추가 문장 둘입니다.\n", encoding="utf-8")
    report = main(
        ["--config", TINY_CONFIG, "--model_name_or_path", str(tiny_base), "--output_dir", str(out),
         "--text_files", str(text), "--num_train_epochs", "2", "--head_epochs", "1", "--batch_size", "32",
         "--learning_rate", "1e-3", "--head_learning_rate", "1e-3", "--max_length", "32"]
    )  # fmt: skip
    assert report["after"]["loss"] < report["head_only"]["loss"] < report["before"]["loss"]
    assert report["sentences"] == len(corpus(TINY_CONFIG, [text])[0])
    assert json.loads((out / "heal.json").read_text(encoding="utf-8"))["after"] == report["after"]
    assert not (out / "checkpoints").exists()
    healed = AutoModel.from_pretrained(out)
    before = AutoModel.from_pretrained(tiny_base)
    assert type(healed) is type(before)
    saved = load_file(out / "model.safetensors")
    assert not any(name.startswith(("generator_", "lm_head", "cls.")) for name in saved)  # the MLM head is dropped
    changed = [
        name for name, weight in healed.state_dict().items() if not torch.equal(weight, before.state_dict()[name])
    ]
    assert any("encoder.layer" in name for name in changed) and any("word_embeddings" in name for name in changed)
