"""Block 6's release rule for a model that serves each pair once (research.experiments.candidate, --rule level)."""

from __future__ import annotations

from research.experiments.candidate import LEVEL_TOLERANCE, level_decision

DEFAULT = {
    "round-4 score": 0.8936,
    "KLUE-STS dev Pearson": 0.8762,
    "KLUE-STS dev F1": 0.8327,
    "KorSTS dev Pearson": 0.8461,
}
PAIRS = {"paraphrase": 38, "negation": 41, "unrelated": 41}


def test_level_with_the_default_within_every_tolerance_releases():
    candidate = {name: value - LEVEL_TOLERANCE[name] for name, value in DEFAULT.items()}  # each at its edge
    release, why = level_decision(candidate, DEFAULT, {**PAIRS, "paraphrase": 37, "unrelated": 42}, PAIRS)
    assert release, why


def test_one_figure_past_its_tolerance_keeps_the_default_and_says_which():
    candidate = {**DEFAULT, "KLUE-STS dev F1": DEFAULT["KLUE-STS dev F1"] - LEVEL_TOLERANCE["KLUE-STS dev F1"] - 1e-4}
    release, why = level_decision(candidate, DEFAULT, PAIRS, PAIRS)
    assert not release and "KLUE-STS dev F1" in why and "Pearson" not in why


def test_a_contrast_category_two_pairs_off_either_way_keeps_the_default():
    for moved in (36, 40):
        release, why = level_decision(DEFAULT, DEFAULT, {**PAIRS, "paraphrase": moved}, PAIRS)
        assert not release and f"paraphrase: {moved} pairs against 38" in why
    release, why = level_decision(DEFAULT, DEFAULT, {"paraphrase": 38, "negation": 41}, PAIRS)  # a category missing
    assert not release and "unrelated: 0 pairs" in why
