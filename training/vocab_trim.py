"""Trim a SentencePiece-Unigram encoder's vocabulary to the pieces Korean text needs (me5-small-ko's rule).

    python -m training.vocab_trim intfloat/multilingual-e5-small outputs/me5-small-ko

multilingual-e5-small carries 250,002 pieces for about a hundred languages: 96 MB of its 118M
parameters are word embeddings. Kept here, in the source's order and with their Unigram scores
(so that the kept pieces segment text exactly as before), are ``--size`` pieces (15,861 by
default, which keeps the int8 model under 30 MB):

1. the special tokens (``<s> <pad> </s> <unk>`` stay ids 0-3, ``<mask>`` the last id);
2. every piece the full tokenizer produces on the ``--corpus`` files (default: KLUE-STS and
   KorSTS train and dev under ``data/``) and on the e5 prefixes ``query: `` and ``passage: ``;
3. every single-character piece, with and without ``▁``, of Hangul syllables and jamo, printable
   ASCII, general, CJK and full-width punctuation, and common symbols (arrows, shapes, ℃, ①, ★);
4. then the pieces with the highest Unigram scores among those left, up to ``--size``.

The embedding rows of the kept pieces are copied with the same id mapping; every other weight
is unchanged. This is the rule of ``../shared/models/me5-small-ko`` (its MODEL_CARD.md), whose
corpus also held KLUE-NLI, KLUE-NER and KLUE-DP dev and KorNLI (XNLI): pass them with
``--corpus`` to come closer; with the data in this repository, step 2 keeps fewer pieces and
step 4 more. The command checks that every corpus sentence tokenises to the same pieces as with
the full vocabulary and writes what it kept to ``vocab_trim.json`` beside the model.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer

from models.package import file_sha256
from training.base_model import require_base_model
from training.data import SENTENCE_COLUMNS, read_pairs
from training.logs import configure_logging

logger = logging.getLogger("training.vocab_trim")

SIZE = 15_861
DEFAULT_CORPUS = (
    "data/klue-sts/klue_sts_train.jsonl",
    "data/klue-sts/klue_sts_dev.jsonl",
    "data/korsts/korsts_train.jsonl",
    "data/korsts/korsts_dev.jsonl",
)
E5_PREFIXES = ("query: ", "passage: ")
METASPACE = "\u2581"
# Code point ranges whose single-character pieces are kept whether or not the corpus uses them.
SINGLE_CHARACTERS = (
    (0xAC00, 0xD7A3),  # Hangul syllables
    (0x1100, 0x11FF),  # Hangul jamo
    (0x3130, 0x318F),  # Hangul compatibility jamo
    (0xA960, 0xA97F),  # Hangul jamo extended-A
    (0xD7B0, 0xD7FF),  # Hangul jamo extended-B
    (0x0020, 0x007E),  # printable ASCII
    (0x2000, 0x206F),  # general punctuation
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x2100, 0x214F),  # letterlike symbols (℃, №)
    (0x2190, 0x21FF),  # arrows
    (0x2460, 0x24FF),  # enclosed alphanumerics (①)
    (0x25A0, 0x25FF),  # geometric shapes (■, ○)
    (0x2600, 0x26FF),  # miscellaneous symbols (★, ☎)
)
TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizerFast",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "model_max_length": 512,
}
SPECIAL_TOKENS_MAP = {k: v for k, v in TOKENIZER_CONFIG.items() if k.endswith("_token")}
RECORD = "vocab_trim.json"


def corpus_sentences(paths: Iterable[str | Path]) -> list[str]:
    """The distinct sentences of pair files, in file order."""
    sentences: dict[str, None] = {}
    for path in paths:
        pairs = read_pairs(path)
        for column in SENTENCE_COLUMNS:
            sentences.update(dict.fromkeys(pairs[column]))
    return list(sentences)


def single_character_pieces(vocab: Sequence[tuple[str, float]]) -> set[int]:
    """Ids of the pieces that are one character of :data:`SINGLE_CHARACTERS`, alone or after ``▁``."""
    chars = {chr(code) for low, high in SINGLE_CHARACTERS for code in range(low, high + 1)}
    return {i for i, (piece, _) in enumerate(vocab) if piece.removeprefix(METASPACE) in chars and piece != METASPACE}


def choose_pieces(tokenizer: dict, sentences: Sequence[str], size: int) -> tuple[list[int], dict[str, int]]:
    """The ids to keep (ascending) and how many each step of the rule added."""
    model = tokenizer["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"the tokenizer is a {model.get('type')} model; this rule trims SentencePiece Unigram ones")
    vocab = model["vocab"]
    full = Tokenizer.from_str(json.dumps(tokenizer))
    steps: dict[str, set[int]] = {"special": {token["id"] for token in tokenizer["added_tokens"]} | {model["unk_id"]}}
    used = {
        i for encoding in full.encode_batch([*sentences, *E5_PREFIXES], add_special_tokens=False) for i in encoding.ids
    }
    steps["corpus"] = used - steps["special"]
    steps["single_characters"] = single_character_pieces(vocab) - steps["special"] - steps["corpus"]
    kept = set().union(*steps.values())
    if len(kept) > size:
        raise ValueError(
            f"the special, corpus and single-character pieces alone are {len(kept)}, over --size {size}: "
            "raise --size or use a smaller corpus"
        )
    rest = sorted((i for i in range(len(vocab)) if i not in kept), key=lambda i: (-vocab[i][1], i))
    steps["by_score"] = set(rest[: size - len(kept)])
    kept |= steps["by_score"]
    return sorted(kept), {name: len(ids) for name, ids in steps.items()}


def trimmed_tokenizer(tokenizer: dict, kept: Sequence[int]) -> dict:
    """``tokenizer.json`` with only the kept pieces (same scores, same order) and every id renumbered."""
    new_id = {old: new for new, old in enumerate(kept)}
    trimmed = json.loads(json.dumps(tokenizer))
    model = trimmed["model"]
    model["vocab"] = [tokenizer["model"]["vocab"][i] for i in kept]
    model["unk_id"] = new_id[model["unk_id"]]
    for token in trimmed["added_tokens"]:
        token["id"] = new_id[token["id"]]
    processor = trimmed.get("post_processor") or {}
    for special in processor.get("special_tokens", {}).values():  # TemplateProcessing
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("sep", "cls"):  # RobertaProcessing / BertProcessing: [token, id]
        if key in processor:
            processor[key][1] = new_id[processor[key][1]]
    if trimmed.get("padding"):
        trimmed["padding"]["pad_id"] = new_id[trimmed["padding"]["pad_id"]]
    return trimmed


def changed_sentences(full: Tokenizer, trimmed: Tokenizer, sentences: Sequence[str]) -> int:
    """How many sentences the trimmed tokenizer splits into other pieces than the full one."""
    before = full.encode_batch(list(sentences), add_special_tokens=False)
    after = trimmed.encode_batch(list(sentences), add_special_tokens=False)
    return sum(a.tokens != b.tokens for a, b in zip(before, after))


def _tokenizer_file(source: str) -> Path:
    if Path(source).is_dir():
        return Path(source) / "tokenizer.json"
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source, "tokenizer.json"))


def trim(source: str, output: Path, size: int = SIZE, corpus: Sequence[str | Path] = DEFAULT_CORPUS) -> dict:
    """Writes the trimmed model, tokenizer and ``vocab_trim.json`` to ``output``; returns that record."""
    import torch
    from transformers import AutoModel

    require_base_model(source)
    tokenizer = json.loads(_tokenizer_file(source).read_text(encoding="utf-8"))
    sentences = corpus_sentences(corpus)
    kept, steps = choose_pieces(tokenizer, sentences, size)
    trimmed = trimmed_tokenizer(tokenizer, kept)
    changed = changed_sentences(
        Tokenizer.from_str(json.dumps(tokenizer)), Tokenizer.from_str(json.dumps(trimmed)), sentences
    )
    if changed:
        raise RuntimeError(f"the trimmed vocabulary splits {changed} corpus sentences differently; nothing written")

    model = AutoModel.from_pretrained(source)
    old = model.get_input_embeddings()
    new_id = {old_id: new for new, old_id in enumerate(kept)}
    padding = new_id.get(old.padding_idx) if old.padding_idx is not None else None
    embeddings = torch.nn.Embedding(len(kept), old.embedding_dim, padding_idx=padding)
    embeddings.weight.data = old.weight.data[torch.tensor(kept)].clone()
    model.set_input_embeddings(embeddings)
    model.config.vocab_size = len(kept)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(model.config, name, None) is not None:
            setattr(model.config, name, new_id[getattr(model.config, name)])
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    (output / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False), encoding="utf-8")
    (output / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n", encoding="utf-8")
    (output / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2) + "\n", encoding="utf-8")
    record = {
        "source": source,
        "vocabulary": {"before": len(tokenizer["model"]["vocab"]), "after": len(kept), "pieces": steps},
        "corpus": [{"path": str(path), "sha256": file_sha256(path)} for path in corpus],
        "corpus_sentences": len(sentences),
        "tokenisation_changed": changed,
    }
    (output / RECORD).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info(
        "%s: %d -> %d pieces (%s); %d corpus sentences tokenise as before; written to %s",
        source,
        record["vocabulary"]["before"],
        len(kept),
        ", ".join(f"{name} {count}" for name, count in steps.items()),
        len(sentences),
        output,
    )
    return record


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="hub id or folder of the encoder (e.g. intfloat/multilingual-e5-small)")
    parser.add_argument("output", type=Path, help="folder to write the trimmed encoder to")
    parser.add_argument("--size", type=int, default=SIZE, help=f"pieces to keep (default {SIZE:,})")
    parser.add_argument("--corpus", nargs="+", default=list(DEFAULT_CORPUS), help="pair files whose pieces are kept")
    args = parser.parse_args(argv)
    return trim(args.source, args.output, args.size, args.corpus)


if __name__ == "__main__":
    main()
