"""Grid search over transfer strategies
====================================

Compare transfer strategies in one GridSearchCV.

The strategy is a hyper-parameter: one pipeline step is swapped between
``FrozenFeatureClassifier`` (linear and MLP heads) and ``FineTuneClassifier`` (the last
layer group, gradual unfreezing, everything). The frozen candidates share their
embeddings through the feature cache: every image is embedded once for all folds and
grid points. Data: sklearn's 8x8 digits, upsampled by the backbone's preprocessing.

The figure plots each candidate's cross-validated accuracy against its fit time.
``TLE_FAST=1`` (the docs gallery, the tests) uses 150 images at 48 px, two folds and
two fine-tuning candidates of 3 epochs, to stay under 30 s on 2 CPU cores; the full run
uses 400 images at 64 px, three folds and three fine-tuning candidates of 8 epochs.
"""

import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from tlestimators import FineTuneClassifier, FrozenFeatureClassifier

FAST = os.environ.get("TLE_FAST") == "1"
IMG = 48 if FAST else 64
N_TRAIN = 150 if FAST else 400
EPOCHS = 3 if FAST else 8

digits = load_digits()
images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
X, X_test, y, y_test = train_test_split(images, digits.target, train_size=N_TRAIN,
                                        test_size=300, stratify=digits.target, random_state=0)

common = {"backbone": "efficientnet_lite0", "backbone_kwargs": {"img_size": IMG},
          "random_state": 0}
frozen = FrozenFeatureClassifier(**common)
# the default fine-tuning recipe (LP-FT, backbone lr 1e-4)
tuned = FineTuneClassifier(**common, max_epochs=EPOCHS,
                           augment=False)  # flips would turn digits into other digits

pipe = Pipeline([("clf", frozen)])
param_grid = [
    {"clf": [frozen], "clf__head": ["linear", "mlp"]},
    {"clf": [tuned], "clf__unfreeze": [1, "all"] if FAST else [1, "gradual", "all"]},
]
t = time.perf_counter()
search = GridSearchCV(pipe, param_grid, cv=StratifiedKFold(2 if FAST else 3, shuffle=True,
                                                           random_state=0))
search.fit(X, y)
n_cand = len(search.cv_results_["params"])
print(f"grid search over {n_cand} strategies x {search.n_splits_} folds: "
      f"{time.perf_counter() - t:.0f} s")

res = search.cv_results_
rows = []
for i, p in enumerate(res["params"]):
    setting = (f"head={p['clf__head']!r}" if "clf__head" in p
               else f"unfreeze={p['clf__unfreeze']!r}")
    rows.append((res["mean_test_score"][i], res["std_test_score"][i], res["mean_fit_time"][i],
                 f"{type(p['clf']).__name__}({setting})"))
print(f"{'strategy':<44} {'cv accuracy':>12} {'fit s':>7}")
for mean, std, fit_s, name in sorted(rows, reverse=True):
    print(f"{name:<44} {mean:>6.3f}+-{std:.3f} {fit_s:>7.1f}")
best = search.best_params_
print(f"best: {type(best['clf']).__name__} -> test accuracy {search.score(X_test, y_test):.3f}")

# %%
# Score against cost
# ------------------
# Each candidate's cross-validated accuracy against its mean fit time. The frozen
# candidates' times are small because they share the cached embeddings: after the first
# fold, a frozen fit is a head fit.
fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
for mean, std, fit_s, name in rows:
    frozen_row = name.startswith("Frozen")
    ax.errorbar(fit_s, mean, yerr=std, fmt="o" if frozen_row else "s", capsize=3,
                color="C0" if frozen_row else "C1")
    ax.annotate(name.replace("Classifier", ""), (fit_s, mean), textcoords="offset points",
                xytext=(5, 4), fontsize=7)
i = search.best_index_
ax.plot(res["mean_fit_time"][i], res["mean_test_score"][i], "r*", ms=16, label="chosen")
ax.set_xscale("log")
ax.set_xlabel("mean fit time per fold, s (log scale)")
ax.set_ylabel("cross-validated accuracy")
ax.set_title("Transfer strategies on digits: accuracy against cost")
ax.grid(alpha=0.3)
ax.legend(loc="lower right")
plt.show()
