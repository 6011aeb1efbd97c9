"""
Zero-shot and few-shot text classification with label descriptions
===================================================================

:class:`~tlestimators.ZeroShotTextClassifier` classifies questions with no training
labels at all: each label is described in words, the descriptions are embedded with the
``minilm`` sentence encoder, and a question gets the label whose description is most
similar. A few labeled questions per class then refine the class weights
(``few_shot="prototype"``), and a :class:`~tlestimators.FrozenFeatureClassifier` given the
same few labels shows what the text prior is worth.

Data: TREC question classification from ``$TLE_DATA/trec_question_classification``
(6 coarse classes) when present, else a dozen hand-written questions (said so in the
output). ``TLE_FAST=1`` runs a tiny version.
"""

# %%
import os

import numpy as np

from tlestimators import FrozenFeatureClassifier, ZeroShotTextClassifier
from tlestimators.datasets import DatasetNotFoundError, load_trec

FAST = os.environ.get("TLE_FAST") == "1"

DESCRIPTIONS = {
    "ABBR": "an abbreviation: what an acronym or a short form stands for",
    "DESC": "a description: a definition, an explanation, a reason why or the manner how",
    "ENTY": "an entity: an animal, plant, object, color, food, product, event, language or "
            "other thing",
    "HUM": "a person or a group of people: who someone is, a name, a title or an organization",
    "LOC": "a location: a place, city, country, state, mountain, river or address",
    "NUM": "a number: a count, date, year, distance, amount of money, percentage or speed",
}

HANDMADE = [
    ("What does NASA stand for?", "ABBR"), ("What is the abbreviation for kilogram?", "ABBR"),
    ("Why is the sky blue?", "DESC"), ("What is a black hole?", "DESC"),
    ("What animal has the longest neck?", "ENTY"), ("What color is a ruby?", "ENTY"),
    ("Who wrote Hamlet?", "HUM"), ("Which company makes the iPhone?", "HUM"),
    ("Where is the Eiffel Tower?", "LOC"), ("What is the capital of Peru?", "LOC"),
    ("How many legs does a spider have?", "NUM"), ("When did World War II end?", "NUM"),
]


def load():
    try:
        Xtr, ytr = load_trec("train")
        Xte, yte = load_trec("test")
        n_test = 60 if FAST else len(Xte)
        return np.asarray(Xtr, dtype=object), np.asarray(ytr), list(Xte[:n_test]), \
            np.asarray(yte[:n_test]), f"TREC ({n_test} test questions)"
    except DatasetNotFoundError as exc:
        print(f"TREC absent, using {len(HANDMADE)} hand-written questions instead: {exc}")
        X = np.asarray([q for q, _ in HANDMADE], dtype=object)
        y = np.asarray([c for _, c in HANDMADE])
        return X, y, list(X), y, "hand-written questions"


Xtr, ytr, Xte, yte, source = load()
print(f"data: {source}")

# %%
# Zero-shot: only the label set is learned; the descriptions do the work.
bare = ZeroShotTextClassifier(device="cpu").fit(None, np.unique(ytr))
described = ZeroShotTextClassifier(label_descriptions=DESCRIPTIONS,
                                   templates=["A question asking for {}."], device="cpu")
described.fit(None, np.unique(ytr))
print(f"zero-shot, bare label codes:      {bare.score(Xte, yte):.3f}")
print(f"zero-shot, label descriptions:    {described.score(Xte, yte):.3f}")
print("one prompt:", described.prompts_["LOC"][0])

# %%
# Few-shot: k labeled questions per class refine the description weights.
k = 1 if source.startswith("hand") else (4 if FAST else 8)
rng = np.random.default_rng(0)
idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), k, replace=False)
                      for c in np.unique(ytr)])
few = ZeroShotTextClassifier(label_descriptions=DESCRIPTIONS,
                             templates=["A question asking for {}."], few_shot="prototype",
                             random_state=0, device="cpu").fit(list(Xtr[idx]), ytr[idx])
print(f"few-shot prototypes, {k} per class: {few.score(Xte, yte):.3f} "
      f"(alpha chosen by CV: {few.few_shot_alpha_})")
scratch = FrozenFeatureClassifier("minilm", max_epochs=100, lr=1e-2, random_state=0,
                                  device="cpu").fit(list(Xtr[idx]), ytr[idx])
print(f"FrozenFeatureClassifier, same {k} per class, no text prior: "
      f"{scratch.score(Xte, yte):.3f}")
