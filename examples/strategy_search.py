"""
Searching strategies within a budget
====================================

:class:`~tlestimators.TransferSearchCV` tries the transfer strategies that fit the data
(zero-shot from label descriptions, a frozen probe, a frozen MLP head, fine-tuning) by
cross-validation, within a time budget: cheap candidates are scored on every fold,
expensive ones by successive halving, stopping those that fall behind. The frozen
candidates share one embedding pass through the feature cache.

``report_`` has one row per candidate (score, cost, how far it got and why it stopped)
and ``plot_report`` draws score against cost, the chosen candidate starred.

Data: TREC question classification from ``$TLE_DATA/trec_question_classification``
when present, else a dozen hand-written questions (said so in the output).
``TLE_FAST=1`` (the docs gallery, the tests) searches 20 questions per class with a
30-second budget. The budget is wall time: on a loaded machine fewer candidates get to
run (the report says which stopped, and why).
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from tlestimators import TransferSearchCV
from tlestimators.datasets import DatasetNotFoundError, data_home, load_trec

FAST = os.environ.get("TLE_FAST") == "1"

CLASS_NAMES = {
    "ABBR": "an abbreviation", "DESC": "a description or a reason",
    "ENTY": "an entity: an object, animal, color or other thing",
    "HUM": "a person or an organization", "LOC": "a location or place",
    "NUM": "a number, date or amount",
}
HANDMADE = [
    ("What does NASA stand for?", "ABBR"), ("What is the abbreviation for kilogram?", "ABBR"),
    ("What does RAM stand for?", "ABBR"), ("Why is the sky blue?", "DESC"),
    ("What is a black hole?", "DESC"), ("How does a rainbow form?", "DESC"),
    ("What animal has the longest neck?", "ENTY"), ("What color is a ruby?", "ENTY"),
    ("What instrument did Miles Davis play?", "ENTY"), ("Who wrote Hamlet?", "HUM"),
    ("Which company makes the iPhone?", "HUM"), ("Who painted the Mona Lisa?", "HUM"),
    ("Where is the Eiffel Tower?", "LOC"), ("What is the capital of Peru?", "LOC"),
    ("Which river flows through Cairo?", "LOC"), ("How many legs does a spider have?", "NUM"),
    ("When did World War II end?", "NUM"), ("How tall is Mount Everest?", "NUM"),
]

try:
    Xall, yall = load_trec("train")
    Xte, yte = load_trec("test")
    per_class = 20 if FAST else 60
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(np.asarray(yall) == c), per_class,
                                     replace=False) for c in sorted(set(yall))])
    X, y = [Xall[i] for i in idx], np.asarray(yall)[idx]
    X_test, y_test = list(Xte), np.asarray(yte)
    print(f"data: TREC from {data_home()}, {per_class} questions per class, "
          f"{len(X_test)} test questions")
except DatasetNotFoundError as exc:
    print(f"TREC absent, using {len(HANDMADE)} hand-written questions instead: {exc}")
    X, y = [q for q, _ in HANDMADE], np.asarray([c for _, c in HANDMADE])
    X_test, y_test = X, y

# %%
# The search
# ----------
search = TransferSearchCV(backbones=["minilm"], class_names=CLASS_NAMES,
                          budget=30 if FAST else 300, cv=3, random_state=0)
search.fit(X, y)
print(search.report_.to_string(index=False))
print(f"chosen: {search.report_['candidate'].iloc[0]}; "
      f"test accuracy {search.score(X_test, y_test):.3f}")

# %%
# Score against cost
# ------------------
fig, ax = plt.subplots(figsize=(6.4, 4.2))
search.plot_report(ax=ax)
plt.show()
