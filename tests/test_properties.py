"""Property tests (hypothesis): the data loader, the pair tokeniser and the input rules, on generated inputs."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.pairs import EncodedRows, PairTokenizer
from serving.errors import InvalidInput, TooLarge
from serving.inputs import InputRules, check_pairs, check_sentence
from training.data import DataValidationError, read_pairs

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
TEXT = st.characters(blacklist_categories=("Cs",))  # any character a JSON or UTF-8 file can hold
# a sentence the loader keeps: some visible text; tabs and newlines are kept out of TSV (QUOTE_NONE)
SENTENCE = st.text(st.one_of(HANGUL, TEXT), min_size=1, max_size=40).filter(
    lambda s: s.strip() and not re.search(r"[\t\n\r\x0b\x0c\x1c-\x1f\x85\u2028\u2029]", s)
)
LABEL = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)
ROWS = st.lists(st.tuples(SENTENCE, SENTENCE, LABEL), min_size=1, max_size=20)


def _write(path: Path, rows: list[tuple[str, str, float]]) -> None:
    if path.suffix == ".jsonl":
        lines = [json.dumps({"sentence1": a, "sentence2": b, "label": y}, ensure_ascii=False) for a, b, y in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif path.suffix == ".json":
        records = [{"sentence1": a, "sentence2": b, "labels": {"real-label": y}} for a, b, y in rows]
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    else:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with open(path, "w", encoding="utf-8", newline="") as handle:
            if delimiter == "\t":  # the loader reads TSV unquoted: quotes and backslashes are plain text
                writer = csv.writer(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE, quotechar=None)
            else:
                writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(["sentence1", "sentence2", "label"])
            writer.writerows([(a, b, repr(y)) for a, b, y in rows])


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv"])
@EXAMPLES
@given(rows=ROWS)
def test_the_loader_reads_back_every_valid_row_unchanged(tmp_path, suffix, rows):
    path = tmp_path / f"pairs{suffix}"
    _write(path, rows)
    frame = read_pairs(path)
    assert list(zip(frame["sentence1"], frame["sentence2"])) == [(a, b) for a, b, _ in rows]
    assert frame["label"].tolist() == pytest.approx([y for _, _, y in rows])
    assert frame["label"].between(0.0, 5.0).all()


@EXAMPLES
@given(rows=ROWS, bad=st.data())
def test_the_loader_names_the_line_of_every_bad_row(tmp_path, rows, bad):
    index = bad.draw(st.integers(0, len(rows) - 1))
    problem = bad.draw(st.sampled_from(["blank", "label_high", "label_text"]))
    a, b, y = rows[index]
    rows = list(rows)
    if problem == "blank":
        rows[index] = (a, bad.draw(st.sampled_from(["", " ", "\u3000"])), y)
    elif problem == "label_high":
        rows[index] = (a, b, bad.draw(st.floats(min_value=5.001, max_value=1e6)))
    path = tmp_path / "pairs.jsonl"
    _write(path, rows)
    if problem == "label_text":
        lines = path.read_text(encoding="utf-8").splitlines()
        record = json.loads(lines[index])
        record["label"] = "high"
        lines[index] = json.dumps(record, ensure_ascii=False)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataValidationError, match=rf"line {index + 1}: "):
        read_pairs(path)


@pytest.fixture(scope="module")
def tokenizer(tiny_base) -> PairTokenizer:
    return PairTokenizer.from_dir(tiny_base, max_length=24)


@EXAMPLES
@given(pairs=st.lists(st.tuples(st.text(TEXT, max_size=80), st.text(TEXT, max_size=80)), min_size=1, max_size=8))
def test_pair_tokens_fit_the_budget_and_say_when_they_were_cut(tokenizer, pairs):
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    encoded = tokenizer.encode(first, second)
    unlimited = PairTokenizer(tokenizer.tokenizer.__class__.from_str(tokenizer.tokenizer.to_str()), 10**6, 0)
    full = unlimited.encode(first, second)
    assert len(encoded.ids) == len(encoded.type_ids) == encoded.offsets[-1]
    for i in range(len(pairs)):
        row, whole = encoded[i : i + 1], full[i : i + 1]
        assert row.tokens <= tokenizer.max_length
        assert row.truncated[0] == (whole.tokens > tokenizer.max_length)
        if not row.truncated[0]:
            assert row.ids.tolist() == whole.ids.tolist()
        assert set(row.type_ids.tolist()) <= {0, 1}
    alone = [tokenizer.encode([a], [b]) for a, b in pairs]  # a pair's tokens never depend on its batch-mates
    assert [r.ids.tolist() for r in alone] == [encoded[i : i + 1].ids.tolist() for i in range(len(pairs))]
    assert EncodedRows.concat(alone).ids.tolist() == encoded.ids.tolist()
    order = np.arange(len(pairs))[::-1]
    assert encoded[order][order].ids.tolist() == encoded.ids.tolist()  # gathering rows keeps each row whole
    batch = tokenizer.pad(encoded)
    assert batch["input_ids"].shape == (len(pairs), encoded.lengths.max())
    assert batch["attention_mask"].sum(axis=1).tolist() == encoded.lengths.tolist()
    assert batch["input_ids"][batch["attention_mask"] == 1].tolist() == encoded.ids.tolist()


@settings(max_examples=300, deadline=None)
@given(value=st.text(TEXT, max_size=30))
def test_a_sentence_is_refused_exactly_when_the_spec_pattern_says_it_is_blank(value):
    rules = InputRules(max_sentence_chars=20)
    blank = re.search(r"\S", value) is None  # the OpenAPI spec's pattern for a sentence
    try:
        assert check_sentence(value, "s", rules) == value
        refused = None
    except InvalidInput:
        refused = "blank"
    except TooLarge:
        refused = "long"
    assert (refused == "blank") == blank
    assert (refused == "long") == (not blank and len(value) > 20)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 12), limit=st.integers(1, 10))
def test_the_pair_count_rule(count, limit):
    pairs = [("가", "나")] * count
    rules = InputRules(max_pairs=limit)
    if count == 0:
        with pytest.raises(InvalidInput, match="pairs: must hold at least one item"):
            check_pairs(pairs, rules)
    elif count > limit:
        with pytest.raises(TooLarge, match=f"pairs: {count} items, more than the limit of {limit}"):
            check_pairs(pairs, rules)
    else:
        assert check_pairs(pairs, rules) == pairs


@settings(max_examples=50, deadline=None)
@given(pairs=st.integers(1, 64), chars=st.integers(1, 3000))
def test_the_default_body_limit_holds_the_largest_request_the_rules_allow(pairs, chars):
    rules = InputRules(max_pairs=pairs, max_sentence_chars=chars)
    sentence = "\ud7a3" * chars  # json.dumps writes each as a 6-byte escape
    body = json.dumps({"pairs": [{"sentence1": sentence, "sentence2": sentence}] * pairs}, indent=2)
    assert len(body.encode()) <= rules.body_limit
    assert math.isclose(InputRules().body_limit, 6_192_928)
