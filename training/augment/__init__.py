"""Hard negatives and paraphrase positives from training sentences.

    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/hard-negatives/klue_sts_train.jsonl \\
        --per-kind 1000 --seed 13
    python -m training.augment data/klue-sts/klue_sts_train.jsonl outputs/paraphrases/klue_sts_train.jsonl \\
        --per-kind 1000 --seed 13 --kinds paraphrases,negation_lexical

Every unique sentence of a pair file goes through the rules of the chosen kinds, each giving a
pair (original, rewritten). By default (and for `make hard-negatives`, byte for byte as before the
other kinds existed) six rules (:mod:`training.augment.rules`) write hard negatives with a low
label; training on them teaches the cross-encoder that sharing a topic is not sharing a meaning
(issue 10). The rules:

* ``negation``: the sentence-final predicate is negated (``좋았어요`` -> ``좋지 않았어요``,
  ``추진한다`` -> ``추진하지 않는다``, ``있습니다`` <-> ``없습니다``, ``숙소입니다`` ->
  ``숙소가 아닙니다``);
* ``antonym``: one word is replaced by its antonym in the same inflected form (``넓어요`` ->
  ``좁아요``, ``깨끗하고`` -> ``더럽고``, ``증가했다`` -> ``감소했다``);
* ``number``: one number, counted amount, time of day or weekday is changed (``3박`` ->
  ``5박``, ``두 명`` -> ``네 명``, ``오전`` -> ``오후``);
* ``entity``: one named place, country, family member or company is replaced by another of
  its kind (``서울로`` -> ``부산으로``, ``엄마가`` -> ``아빠가``, ``네이버`` -> ``카카오``);
* ``role``: the subject and the object (or recipient) are swapped when both are people or
  organisations (``호스트가 게스트에게`` -> ``게스트가 호스트에게``);
* ``intent``: the same topic, another question or request: the question word changes
  (``언제`` -> ``어디서``) or one service noun is replaced by another of its domain
  (``환불은`` -> ``배송은``, ``체크인 시간`` -> ``체크아웃 시간``).

``--kinds`` (a comma list; ``negatives`` and ``paraphrases`` name groups) adds the others (issue
16). A negative by a second method, unlike the templates above:

* ``negation_lexical`` (1.0): a lexical opposite anywhere but the sentence-final predicate
  (``수 있는`` -> ``수 없는``, ``아는`` -> ``모르는``, ``가능한`` -> ``불가능한``), or ``-면 돼요``
  -> ``-면 안 돼요``.

Paraphrase positives (:mod:`training.augment.paraphrases`), the same meaning in other words with
a high label, so that a small edit is not learnt to mean "different":

* ``register`` (5.0): the sentence-final predicate in another speech level (``깨끗했어요`` <->
  ``깨끗했습니다``, ``확대한다`` -> ``확대합니다``, ``좋아`` -> ``좋아요``, ``집입니다`` ->
  ``집이에요``), the subject honorific after a listed person (``호스트분이 친절했어요`` ->
  ``호스트분이 친절하셨어요``), a politer request or 요 in a question (``알려줘`` ->
  ``알려주세요``, ``몇 시야?`` -> ``몇 시예요?``);
* ``synonym`` (4.6): one predicate, noun or adverb replaced by a synonym in the same form
  (``증가했다`` -> ``늘어났다``, ``깨끗해요`` -> ``청결해요``, ``숙소가`` -> ``숙박 시설이``,
  ``매우`` -> ``아주``), from ``wordlists/synonyms.yaml``;
* ``word_order`` (4.8): two one-word phrases next to each other change places, a marked time
  with a place, recipient or object, or a recipient or place with an object (``오전에 서울에서``
  -> ``서울에서 오전에``, ``호스트에게 선물을`` -> ``선물을 호스트에게``); the predicate stays last;
* ``passive`` (4.5): a listed agent, the object before the predicate and a listed Sino-Korean 하다
  verb become a 되다 passive (``정부가 새 정책을 발표했다`` -> ``정부에 의해 새 정책이 발표되었다``).

Inflected forms are generated forward by a small conjugator (:class:`hangul.Predicate`) from known
stems and matched exactly, never guessed backwards from the surface, and a rule that is
unsure skips the sentence: questions and requests are not negated, already negated
clauses are left alone, ambiguous stems (``들었다``: 듣다 or 들다) are not touched. Rewrites
are deterministic for a seed. The output is JSON Lines with ``sentence1`` (original),
``sentence2`` (rewritten), ``label``, ``kind`` and ``source_location``, readable by
:func:`training.data.read_pairs`, e.g. as an ``extra_train_files`` entry. Pass the
validation split as ``--exclude`` so that its sentences do not reach training through their
rewritten twins.

The package, by concern: :mod:`~training.augment.hangul` (syllables, the conjugator, particles,
words), :mod:`~training.augment.rules` (one function per negative rule),
:mod:`~training.augment.paraphrases` (one function per paraphrase rule),
:mod:`~training.augment.wordlists` (the content words, read from ``wordlists/*.yaml``, each file
with its provenance) and :mod:`~training.augment.generate` (labels, sampling, the command line).
"""

from training.augment.generate import (
    EXTRA_NEGATIVE_KINDS,
    KIND_LABELS,
    NEGATIVE_KINDS,
    PARAPHRASE_KINDS,
    augment,
    generate,
    main,
    unique_sentences,
)
from training.augment.hangul import Predicate
from training.augment.paraphrases import change_register, reorder_phrases, swap_synonym, to_passive
from training.augment.rules import (
    change_intent,
    change_number,
    negate,
    negate_lexical,
    swap_antonym,
    swap_entity,
    swap_roles,
)
from training.augment.wordlists import (
    AGENTS,
    ANTONYM_ADVERBS,
    ANTONYM_NOUNS,
    ANTONYM_PREDICATES,
    CITIES,
    ENTITY_GROUPS,
    INTENT_DOMAINS,
    QUESTION_WORDS,
)

__all__ = [
    "AGENTS",
    "ANTONYM_ADVERBS",
    "ANTONYM_NOUNS",
    "ANTONYM_PREDICATES",
    "CITIES",
    "EXTRA_NEGATIVE_KINDS",
    "ENTITY_GROUPS",
    "INTENT_DOMAINS",
    "KIND_LABELS",
    "NEGATIVE_KINDS",
    "PARAPHRASE_KINDS",
    "QUESTION_WORDS",
    "Predicate",
    "augment",
    "change_intent",
    "change_register",
    "change_number",
    "generate",
    "main",
    "negate",
    "negate_lexical",
    "reorder_phrases",
    "swap_antonym",
    "swap_entity",
    "swap_roles",
    "swap_synonym",
    "to_passive",
    "unique_sentences",
]
