"""The vocabulary trim (training.vocab_trim) on a tiny Unigram tokenizer and BERT, and the base-model check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import Unigram
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from tests.conftest import KLUE_DEV
from training.base_model import BaseModelUnavailable, require_base_model
from training.vocab_trim import TOKENIZER_CONFIG, choose_pieces, corpus_sentences, main, trim

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


@pytest.fixture(scope="module")
def full_model(tmp_path_factory) -> Path:
    """An XLM-R-style folder: a Unigram tokenizer trained on KLUE-STS dev, ``<mask>`` last, a 1-layer BERT."""
    folder = tmp_path_factory.mktemp("full-unigram")
    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=2000, special_tokens=SPECIALS, unk_token="<unk>")
    tokenizer.train_from_iterator(corpus_sentences([KLUE_DEV]), trainer)
    tokenizer.add_special_tokens(["<mask>"])  # the last id, as in XLM-R
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    spec = json.loads(tokenizer.to_str())
    spec["model"]["vocab"].append(["<mask>", 0.0])
    (folder / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG), encoding="utf-8")
    config = BertConfig(
        vocab_size=len(spec["model"]["vocab"]),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The first 20 dev pairs: the corpus whose pieces must all be kept."""
    path = tmp_path_factory.mktemp("corpus") / "pairs.jsonl"
    path.write_text("".join(KLUE_DEV.read_text(encoding="utf-8").splitlines(keepends=True)[:20]), encoding="utf-8")
    return path


def _spec(folder: Path) -> dict:
    return json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))


def test_the_trim_keeps_what_korean_needs_and_tokenises_as_before(full_model, corpus, tmp_path):
    full = _spec(full_model)
    vocab = full["model"]["vocab"]
    sentences = corpus_sentences([corpus])
    _, everything = choose_pieces(full, sentences, len(vocab))
    size = len(vocab) - everything["by_score"] + 10  # room for the ten best-scoring other pieces

    record = main([str(full_model), str(tmp_path / "trimmed"), "--size", str(size), "--corpus", str(corpus)])

    trimmed = _spec(tmp_path / "trimmed")
    kept = trimmed["model"]["vocab"]
    assert record["vocabulary"] == {"before": len(vocab), "after": size, "pieces": {**everything, "by_score": 10}}
    assert len(kept) == size and record["tokenisation_changed"] == 0
    assert [piece for piece, _ in kept[:4]] == SPECIALS and kept[-1][0] == "<mask>"
    assert trimmed["model"]["unk_id"] == 3 and [t["id"] for t in trimmed["added_tokens"]] == [0, 1, 2, 3, size - 1]
    assert trimmed["post_processor"]["special_tokens"]["</s>"]["ids"] == [2]
    old_id = {piece: i for i, (piece, _) in enumerate(vocab)}
    ids = [old_id[piece] for piece, _ in kept]
    assert ids == sorted(ids) and all(score == vocab[old_id[piece]][1] for piece, score in kept)  # order and scores

    before, after = Tokenizer.from_str(json.dumps(full)), Tokenizer.from_str(json.dumps(trimmed))
    for sentence in sentences:
        assert after.encode(sentence).tokens == before.encode(sentence).tokens
    used = {p for s in sentences for p in before.encode(s, add_special_tokens=False).tokens}
    syllables = [p for p, _ in vocab if len(p.removeprefix("▁")) == 1 and "가" <= p[-1] <= "힣" and p not in used]
    assert syllables and all(p in old_id and p in dict(kept) for p in syllables)  # kept though the corpus lacks them
    leftover = sorted((score, -i) for i, (piece, score) in enumerate(vocab) if piece not in used | set(syllables))
    best_ten = {vocab[-i][0] for _, i in leftover[-10:]}
    assert best_ten <= {piece for piece, _ in kept}

    weights = load_file(tmp_path / "trimmed" / "model.safetensors")
    original = load_file(full_model / "model.safetensors")
    name = "embeddings.word_embeddings.weight"
    assert torch.equal(weights[name], original[name][torch.tensor(ids)])
    assert torch.equal(weights["encoder.layer.0.output.dense.weight"], original["encoder.layer.0.output.dense.weight"])
    assert AutoModel.from_pretrained(tmp_path / "trimmed").config.vocab_size == size
    loaded = AutoTokenizer.from_pretrained(tmp_path / "trimmed")  # as training.train loads a base
    first, second = sentences[:2]
    assert loaded(first, second)["input_ids"] == after.encode(first, second).ids
    backend = Tokenizer.from_str(loaded.backend_tokenizer.to_str())  # what training.trainer.pair_tokenizer wraps
    assert backend.encode(first, second).ids == after.encode(first, second).ids


def test_a_budget_below_the_pieces_korean_needs_is_refused(full_model, corpus, tmp_path):
    with pytest.raises(ValueError, match="over --size 50: raise --size"):
        trim(str(full_model), tmp_path / "out", size=50, corpus=[corpus])
    assert not (tmp_path / "out").exists()


def test_only_unigram_vocabularies_are_trimmed(tiny_base, corpus, tmp_path):
    with pytest.raises(ValueError, match="WordPiece model; this rule trims SentencePiece Unigram ones"):
        trim(str(tiny_base), tmp_path / "out", size=100, corpus=[corpus])


def test_a_missing_base_stops_with_both_ways_out(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for name in ("monologg/koelectra-base-v3-discriminator", str(tmp_path / "no-such-folder"), "../shared/nowhere"):
        with pytest.raises(BaseModelUnavailable) as caught:
            require_base_model(name)
        message = str(caught.value)
        assert f"cannot start from base model {name!r}" in message
        assert "unset HF_HUB_OFFLINE" in message and "--model_name_or_path DIR" in message
    assert "HF_HUB_OFFLINE is set and the model is not in the local cache" in str(
        pytest.raises(BaseModelUnavailable, require_base_model, "intfloat/multilingual-e5-small").value
    )
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(BaseModelUnavailable, match="holds no config.json"):
        require_base_model(str(tmp_path / "not-a-model"))
    with pytest.raises(BaseModelUnavailable):
        trim("monologg/koelectra-base-v3-discriminator", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_local_folder_needs_no_hub(tiny_base, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert require_base_model(str(tiny_base)) == "folder"
