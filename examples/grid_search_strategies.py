"""Grid search over transfer strategies
====================================

Compare transfer strategies in one GridSearchCV.

The strategy is a hyper-parameter: one pipeline step is swapped between
``FrozenFeatureClassifier`` (linear and MLP heads) and ``FineTuneClassifier`` (the last
layer group, gradual unfreezing, everything). The frozen candidates share their
embeddings through the feature cache: every image is embedded once for all folds and
grid points. Data: sklearn's 8x8 digits, upsampled by the backbone's preprocessing.

Run ``TLE_FAST=1 python examples/grid_search_strategies.py`` for a seconds-long run.
"""

import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from tlestimators import FineTuneClassifier, FrozenFeatureClassifier

FAST = os.environ.get("TLE_FAST") == "1"
IMG = 32 if FAST else 48
N_TRAIN = 60 if FAST else 300
EPOCHS = 1 if FAST else 4

digits = load_digits()
images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
X, X_test, y, y_test = train_test_split(images, digits.target, train_size=N_TRAIN,
                                        test_size=300, stratify=digits.target, random_state=0)

common = {"backbone": "efficientnet_lite0", "backbone_kwargs": {"img_size": IMG},
          "random_state": 0}
frozen = FrozenFeatureClassifier(**common, max_epochs=10 if FAST else 60)
tuned = FineTuneClassifier(**common, lr=2e-3, backbone_lr=1e-3, max_epochs=EPOCHS,
                           augment=False)  # flips would turn digits into other digits

pipe = Pipeline([("clf", frozen)])
param_grid = [
    {"clf": [frozen], "clf__head": ["linear", "mlp"]},
    {"clf": [tuned], "clf__unfreeze": [1, "gradual", "all"]},
]
t = time.perf_counter()
search = GridSearchCV(pipe, param_grid, cv=StratifiedKFold(3, shuffle=True, random_state=0))
search.fit(X, y)
print(f"grid search over 5 strategies x 3 folds: {time.perf_counter() - t:.0f} s")

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
