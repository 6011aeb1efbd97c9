"""
Learning new classes without forgetting the old ones
=====================================================

A classifier must learn the ten digits two at a time, as if a new pair of categories
arrived every quarter. Plain fine-tuning on each new pair forgets everything before it;
:class:`~tlestimators.RehearsalLearner` mixes a small replay memory of past examples
into every update and keeps most of what it knew. The accuracy matrix after each
experience shows the difference, and the continual-learning metrics summarise it.

Data: scikit-learn's 8x8 digits (no download). ``TLE_FAST=1`` runs a tiny version.
"""

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tlestimators import RehearsalLearner
from tlestimators.metrics import evaluate_stream
from tlestimators.plotting import plot_accuracy_matrix

FAST = os.environ.get("TLE_FAST") == "1"
N_EXP = 3 if FAST else 5

# %%
# A class-incremental stream: experience k brings digits 2k and 2k+1.
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
pairs = [(2 * k, 2 * k + 1) for k in range(N_EXP)]
train = [(Xtr[np.isin(ytr, p)], ytr[np.isin(ytr, p)]) for p in pairs]
test = [(Xte[np.isin(yte, p)], yte[np.isin(yte, p)]) for p in pairs]

# %%
# The same small network twice: without memory (naive fine-tuning) and with a
# class-balanced memory of 200 examples. ``partial_fit`` is called once per experience;
# ``evaluate_stream`` scores every test set after each one.
common = dict(backbone_kwargs={"hidden_sizes": (64 if FAST else 256,), "dropout": 0.3},
              lr=3e-3 if FAST else 1e-3, max_epochs=3 if FAST else 10, batch_size=32, device="cpu",
              random_state=0)
naive = evaluate_stream(RehearsalLearner("mlp", memory_size=0, **common), train, test)
replay = evaluate_stream(
    RehearsalLearner("mlp", memory_size=200, policy="class_balanced", **common), train, test
)

for name, ev in (("naive fine-tuning", naive), ("replay, memory 200", replay)):
    s = ev.summary()
    print(f"{name:20s} final accuracy {s['average_accuracy']:.3f}  "
          f"forgetting {s['average_forgetting']:.3f}  BWT {s['backward_transfer']:+.3f}  "
          f"training {s['fit_time']:.1f} s")

# %%
# Row i of the matrix is the model after experience i, column j its accuracy on the
# digits of experience j. Naive fine-tuning has a bright diagonal and a dark lower
# triangle (forgotten); replay keeps the lower triangle bright.
print(np.round(replay.matrix, 2))
out = Path(os.environ.get("TLE_OUT", tempfile.gettempdir()))
labels = [f"{a}-{b}" for a, b in pairs]
path = plot_accuracy_matrix(replay.matrix, out / "continual_accuracy_matrix.png", labels=labels,
                            title="replay, memory 200")
print("accuracy matrix written to", path)

# %%
# The memory is part of the fitted state: inspect it, pickle the learner mid-stream and
# continue later with exactly the same result.
learner = replay.estimator
print(learner.memory_)
print("examples per class in memory:", learner.memory_.class_counts())
