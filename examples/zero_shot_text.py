"""
Zero-shot and few-shot text classification with label descriptions
===================================================================

:class:`~tlestimators.ZeroShotTextClassifier` classifies questions with no training
labels at all: each label is described in words, the descriptions are embedded with the
``minilm`` sentence encoder, and a question gets the label whose description is most
similar. A few labeled questions per class then refine the class weights
(``few_shot="prototype"``), and a :class:`~tlestimators.FrozenFeatureClassifier` given the
same few labels shows what the text prior is worth.

The figure plots test accuracy against the number of labels per class.

Data: TREC question classification from ``$TLE_DATA/trec_question_classification``
(6 coarse classes) when present, else a dozen hand-written questions (said so in the
output). ``TLE_FAST=1`` (the docs gallery, the tests) scores 300 test questions at 1, 4
and 16 labels per class: about 20 s on 2 CPU cores.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from tlestimators import FrozenFeatureClassifier, ZeroShotTextClassifier
from tlestimators.datasets import DatasetNotFoundError, data_home, load_trec

FAST = os.environ.get("TLE_FAST") == "1"

CLASS_NAMES = {
    "ABBR": "an abbreviation: what an acronym or a short form stands for",
    "DESC": "a description: a definition, an explanation, a reason why or the manner how",
    "ENTY": "an entity: an animal, plant, object, color, food, product, event, language or "
            "other thing",
    "HUM": "a person or a group of people: who someone is, a name, a title or an organization",
    "LOC": "a location: a place, city, country, state, mountain, river or address",
    "NUM": "a number: a count, date, year, distance, amount of money, percentage or speed",
}
TEMPLATES = ["A question asking for {}."]

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
        n_test = 300 if FAST else len(Xte)
        print(f"data: TREC from {data_home()} ({len(Xtr)} training questions to draw from, "
              f"{n_test} test questions)")
        return np.asarray(Xtr, dtype=object), np.asarray(ytr), list(Xte[:n_test]), \
            np.asarray(yte[:n_test]), True
    except DatasetNotFoundError as exc:
        print(f"TREC absent, using {len(HANDMADE)} hand-written questions instead: {exc}")
        X = np.asarray([q for q, _ in HANDMADE], dtype=object)
        y = np.asarray([c for _, c in HANDMADE])
        return X, y, list(X), y, False


Xtr, ytr, Xte, yte, real = load()
labels = np.unique(ytr)

# %%
# Zero-shot: only the label set is learned; the descriptions do the work.
bare = ZeroShotTextClassifier(device="cpu").fit(None, labels)
described = ZeroShotTextClassifier(class_names=CLASS_NAMES, templates=TEMPLATES, device="cpu")
described.fit(None, labels)
zero_bare, zero_desc = bare.score(Xte, yte), described.score(Xte, yte)
print(f"zero-shot, bare label codes:   {zero_bare:.3f}")
print(f"zero-shot, label descriptions: {zero_desc:.3f}")
print("one prompt:", described.prompts_["LOC"][0])

# %%
# Few-shot: k labelled questions per class
# -----------------------------------------
# The same draws feed the description-initialised prototypes (``few_shot="prototype"``,
# the mixing weight chosen by cross-validation) and a
# :class:`~tlestimators.FrozenFeatureClassifier` that sees the labels but no text prior.
shots = ([1, 2, 4, 8, 16] if not FAST else [1, 4, 16]) if real else [1]
n_draws = 3 if real else 1
few, scratch = {}, {}
for k in shots:
    few[k], scratch[k] = [], []
    for seed in range(n_draws):
        rng = np.random.default_rng(seed)
        idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), k, replace=False)
                              for c in labels])
        X_k, y_k = list(Xtr[idx]), ytr[idx]
        f = ZeroShotTextClassifier(class_names=CLASS_NAMES, templates=TEMPLATES,
                                   few_shot="prototype", random_state=seed, device="cpu")
        few[k].append(f.fit(X_k, y_k).score(Xte, yte))
        scratch[k].append(FrozenFeatureClassifier("minilm", random_state=seed, device="cpu")
                          .fit(X_k, y_k).score(Xte, yte))
    print(f"{k:2d} per class: few-shot prototypes {np.mean(few[k]):.3f}, "
          f"FrozenFeatureClassifier (no text prior) {np.mean(scratch[k]):.3f} "
          f"(mean of {n_draws} draws; last alpha {f.few_shot_alpha_})")

# %%
# Accuracy against labels per class
# ---------------------------------
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for name, res in (("few-shot prototypes + descriptions", few),
                  ("FrozenFeatureClassifier, no text prior", scratch)):
    m = [np.mean(res[k]) for k in shots]
    sd = [np.std(res[k]) for k in shots]
    ax.errorbar(shots, m, yerr=sd, marker="o", capsize=3, label=name)
ax.axhline(zero_desc, color="C2", ls="--", label=f"zero-shot, descriptions ({zero_desc:.2f})")
ax.axhline(zero_bare, color="C3", ls=":", label=f"zero-shot, bare codes ({zero_bare:.2f})")
ax.axhline(1 / len(labels), color="grey", lw=0.8, label="chance")
ax.set_xscale("log", base=2)
ax.set_xticks(shots, [str(k) for k in shots])
ax.minorticks_off()
ax.set_xlabel("labelled questions per class")
ax.set_ylabel("test accuracy")
ax.set_title("TREC question type, minilm embeddings" if real else "hand-written questions")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %%
# The descriptions are worth several labelled examples per class; the gap closes as
# labels accumulate, which is when a plain classifier on the embeddings (or
# fine-tuning) takes over. :doc:`The zero-shot guide </user_guide/zero_shot>` has the same curve
# from ``benchmarks/bench_zeroshot.py`` on all 500 test questions and more draws.
