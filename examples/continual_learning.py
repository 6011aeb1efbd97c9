"""
Learning new classes without forgetting the old ones
=====================================================

A classifier must learn the ten digits two at a time, as if a new pair of categories
arrived every quarter. Plain fine-tuning on each new pair forgets everything before it;
:class:`~tlestimators.RehearsalLearner` mixes a small replay memory of past examples
into every update and keeps most of what it knew. The accuracy matrix after each
experience shows the difference, and the continual-learning metrics summarise it.

Data: scikit-learn's 8x8 digits (bundled with scikit-learn, nothing to download).
``TLE_FAST=1`` (the docs gallery, the tests) trains fewer epochs: about 15 s on 2 CPU cores.
"""

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tlestimators import RehearsalLearner
from tlestimators.metrics import evaluate_stream
from tlestimators.plotting import plot_accuracy_matrix

FAST = os.environ.get("TLE_FAST") == "1"
N_EXP = 5  # the fast run (TLE_FAST=1, the docs gallery) trains less, on the same stream

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
# digits of experience j. Naive fine-tuning keeps only the diagonal (the pair it just
# learned) and forgets the lower triangle; replay keeps the lower triangle bright.
labels = [f"{a}-{b}" for a, b in pairs]
fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
for ax, (name, ev) in zip(axes, (("naive fine-tuning", naive), ("replay, memory 200", replay))):
    R = np.asarray(ev.matrix, dtype=float)
    im = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if R[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), [f"after {lab}" for lab in labels])
    ax.set_xlabel("evaluated on digits")
    ax.set_title(f"{name}: final accuracy {ev.summary()['average_accuracy']:.2f}")
fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy")
plt.show()

# %%
# The same matrix as a file, for reports: :func:`~tlestimators.plotting.plot_accuracy_matrix`
# draws it without pyplot (safe in worker processes and on headless machines).
out = Path(os.environ.get("TLE_OUT", tempfile.gettempdir()))
path = plot_accuracy_matrix(replay.matrix, out / "continual_accuracy_matrix.png", labels=labels,
                            title="replay, memory 200")
print("accuracy matrix written to", path)

# %%
# The memory is part of the fitted state: inspect it, pickle the learner mid-stream and
# continue later with exactly the same result.
learner = replay.estimator
print(learner.memory_)
print("examples per class in memory:", learner.memory_.class_counts())
