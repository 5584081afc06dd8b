"""The word lists the rules draw from, read from ``wordlists/*.yaml`` (each file says where it comes from).

Content words live in the data files: antonym and synonym pairs, the negation lexicon, cities
and other names, agents, question words and service nouns. Closed grammatical lists (particles, endings,
stems a rule must not touch) stay beside the rule that uses them in :mod:`training.augment.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from training.augment.hangul import FINAL_KEYS, FORM_KEYS

WORDLISTS = Path(__file__).resolve().parent / "wordlists"

# The forms an antonym pair swaps unless it says otherwise (``forms: [default]``): not the casual
# -아/어 (좋아, 커: also connectives and 꺼 = 것) and not a verb's past modifier (연, 끈, 운, 민 are
# also nouns); pairs that are safe add them.
DEFAULT_FORMS = tuple(k for k in FORM_KEYS if k not in ("a", "mod_past"))
# ``forms: [predicate]``: the sentence-final forms but -아/어, and the connectives 고, 지만, 아서, 면.
PREDICATE_FORMS = tuple(k for k in FINAL_KEYS if k != "a") + ("go", "jiman", "aseo", "myeon")
_FORM_GROUPS = {"default": DEFAULT_FORMS, "predicate": PREDICATE_FORMS}


@dataclass(frozen=True)
class AntonymPair:
    """Two predicates with opposite meanings (or, in ``synonyms.yaml``, the same), swapped in the same inflected form.

    Args:
        first, second: lemmas, ``"가깝다:ㅂ"`` for an ㅂ irregular and ``"빠르다:르"`` for a 르 one.
        adjective: part of speech of each side (an adjective may pair with a verb: 한산하다/붐비다).
        keys: the forms that are swapped (:data:`~training.augment.hangul.FORM_KEYS`); others are
            ambiguous or unidiomatic.
        one_way: only ``first`` -> ``second`` (지다 is also "to bear"; 내리다 also "to get off").
        needs_subject: sides (``"first"``, ``"second"``) recognised only right after a subject
            particle (싸다 is also "to pack", 적다 also "to write down").
        after: when given, the word before must start with one of these (문을 열다 opens a door,
            회의를 열다 holds a meeting, which has no 닫다).
    """

    first: str
    second: str
    adjective: tuple[bool, bool] = (True, True)
    keys: tuple[str, ...] = DEFAULT_FORMS
    one_way: bool = False
    needs_subject: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class AntonymNoun:
    """Two Sino-Korean (or loan) roots, swapped with their 하다/되다 ending or particle.

    ``tails``: ``"verb"`` swaps only before 하다/되다 (인상 is also "impression"), ``"noun"``
    only before particles (최대한 is "as much as possible"), ``"all"`` both;
    ``excluded_tails``: endings that make the swap unidiomatic.
    """

    first: str
    second: str
    tails: str = "all"
    one_way: bool = False
    excluded_tails: tuple[str, ...] = ()


def read_wordlist(name: str) -> dict:
    """One ``wordlists/NAME.yaml`` file as a dict."""
    path = WORDLISTS / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _checked(group: dict, allowed: set[str], where: str) -> dict:
    unknown = sorted(set(group) - allowed)
    if unknown or "pairs" not in group:
        options = ", ".join(sorted(allowed - {"pairs"}))
        raise ValueError(f"{where}: a group needs `pairs` and takes {options}; got {group}")
    return group


def _forms(spec: list[str], where: str) -> tuple[str, ...]:
    forms: tuple[str, ...] = ()
    for item in spec:
        if item not in _FORM_GROUPS and item not in FORM_KEYS:
            raise ValueError(f"{where}: unknown form {item!r}; use default, predicate or one of {', '.join(FORM_KEYS)}")
        forms += _FORM_GROUPS.get(item, (item,))
    return forms


def antonym_predicates(groups: list[dict], where: str = "antonyms.yaml predicates") -> list[AntonymPair]:
    """Every pair of the ``predicates`` groups, in file order, with its group's options."""
    pairs = []
    for group in groups:
        group = _checked(group, {"pairs", "part", "forms", "one_way", "needs_subject", "after"}, where)
        sides = group.get("part", "adjective").split()
        if len(sides) == 1:
            sides *= 2
        options = {
            "adjective": tuple(side == "adjective" for side in sides),
            "keys": _forms(group.get("forms", ["default"]), where),
            "one_way": bool(group.get("one_way", False)),
            "needs_subject": tuple(group.get("needs_subject", ())),
            "after": tuple(group.get("after", ())),
        }
        pairs += [AntonymPair(first, second, **options) for first, second in group["pairs"]]
    return pairs


def antonym_nouns(groups: list[dict], where: str = "antonyms.yaml nouns") -> list[AntonymNoun]:
    """Every pair of the ``nouns`` groups, in file order, with its group's options."""
    pairs = []
    for group in groups:
        group = _checked(group, {"pairs", "tails", "one_way", "excluded_tails"}, where)
        options = {
            "tails": group.get("tails", "all"),
            "one_way": bool(group.get("one_way", False)),
            "excluded_tails": tuple(group.get("excluded_tails", ())),
        }
        pairs += [AntonymNoun(first, second, **options) for first, second in group["pairs"]]
    return pairs


_antonyms = read_wordlist("antonyms")
ANTONYM_PREDICATES: list[AntonymPair] = antonym_predicates(_antonyms["predicates"])
ANTONYM_NOUNS: list[AntonymNoun] = antonym_nouns(_antonyms["nouns"])
ANTONYM_ADVERBS: list[tuple[str, str]] = [tuple(pair) for pair in _antonyms["adverbs"]]

_negation = read_wordlist("negation")
NEGATION_ADJECTIVES: tuple[str, ...] = tuple(_negation["adjectives"])
NEGATION_VERBS: tuple[str, ...] = tuple(_negation["verbs"])

_entities = read_wordlist("entities")
CITIES: tuple[str, ...] = tuple(_entities["cities"])
CITY_NEXT_WORDS: tuple[str, ...] = tuple(_entities["city_next_words"])
ENTITY_GROUPS: tuple[tuple[str, ...], ...] = tuple(tuple(names) for names in _entities["groups"].values())

_agents = read_wordlist("agents")
AGENTS: tuple[str, ...] = tuple(_agents["agents"])
HONORIFIC_SUBJECTS: tuple[str, ...] = tuple(_agents["honorific"])

_synonyms = read_wordlist("synonyms")
SYNONYM_PREDICATES: list[AntonymPair] = antonym_predicates(_synonyms["predicates"], "synonyms.yaml predicates")
SYNONYM_ADVERBS: list[tuple[str, str]] = [tuple(pair) for pair in _synonyms["adverbs"]]


def synonym_nouns(groups: list[dict], where: str = "synonyms.yaml nouns") -> list[tuple[str, str]]:
    """(noun, its synonym) in both directions unless a group is ``one_way``, in file order."""
    swaps = []
    for group in groups:
        group = _checked(group, {"pairs", "one_way"}, where)
        for first, second in group["pairs"]:
            swaps.append((first, second))
            if not group.get("one_way", False):
                swaps.append((second, first))
    return swaps


SYNONYM_NOUNS: list[tuple[str, str]] = synonym_nouns(_synonyms["nouns"])

_intents = read_wordlist("intents")
QUESTION_WORDS: tuple[str, ...] = tuple(_intents["question_words"])
INTENT_DOMAINS: tuple[tuple[tuple[str, ...], ...], ...] = tuple(
    tuple(tuple(synonyms) for synonyms in domain) for domain in _intents["domains"].values()
)
