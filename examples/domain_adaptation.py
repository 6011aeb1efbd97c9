"""
Domain adaptation with unsupervised model selection
===================================================

Adapt a sentiment classifier from book reviews to kitchen-appliance reviews with DANN,
choosing the adversarial strength ``lambda_max`` without a single target label.

The data are the DANN paper's Amazon review files (5000-d unigram/bigram counts). The
source domain (books) is labeled; the target domain (kitchen) is not: its rows are
marked ``y == -1``. ``GridSearchCV`` compares ``lambda_max`` values (0 = no
adaptation) with deep embedded validation (DEV), which needs only source labels and
unlabeled target samples; ``SourceTargetKFold`` keeps both domains in every fold.
The target test labels are used at the very end, only to show what the choice was
worth.

Run: ``python examples/domain_adaptation.py`` (about a minute on 2 CPU cores);
``TLE_FAST=1`` runs a tiny version. Without the data (``$TLE_DATA``) it uses a
synthetic shifted problem instead.
"""

import os

import numpy as np
import torch
from scipy import sparse
from sklearn.model_selection import GridSearchCV

from tlestimators import DANNAdapter
from tlestimators.metrics import DeepEmbeddedValidationScorer, ImportanceWeightedScorer
from tlestimators.model_selection import SourceTargetKFold

FAST = os.environ.get("TLE_FAST") == "1"
torch.set_num_threads(1)  # a tiny MLP: extra threads only contend on a shared machine


def load():
    from tlestimators.datasets import DatasetNotFoundError, load_amazon

    try:
        Xs, ys = load_amazon("books")
        Xt, _ = load_amazon("kitchen")
        Xte, yte = load_amazon("kitchen", "test")
    except DatasetNotFoundError as exc:
        print(f"Amazon data not found ({exc}); using a synthetic shifted problem.")
        rng = np.random.default_rng(0)
        Xs = rng.normal(size=(500, 20)).astype(np.float32)
        ys = (Xs[:, 0] + Xs[:, 1] > 0).astype(int)
        Z = rng.normal(size=(1000, 20)).astype(np.float32)
        Xt, Xte, yte = Z[:500] * 1.5 + 2, Z[500:] * 1.5 + 2, (Z[500:, 0] + Z[500:, 1] > 0)
        return np.vstack([Xs, Xt]), np.r_[ys, -np.ones(500, int)], Xte, yte.astype(int)
    if FAST:
        Xs, ys, Xt, Xte, yte = Xs[:300], ys[:300], Xt[:300], Xte[:500], yte[:500]
    X = sparse.vstack([Xs, Xt]).tocsr().log1p()  # log counts
    y = np.r_[ys, -np.ones(Xt.shape[0], dtype=int)]  # -1: unlabeled target rows
    return X, y, Xte.log1p(), yte


X, y, X_test, y_test = load()
dann = DANNAdapter(
    backbone="mlp",
    backbone_kwargs={"hidden_sizes": (50,), "activation": "sigmoid"},  # the paper's net
    optimizer="adam", lr=1e-3, max_epochs=2 if FAST else 10, batch_size=64, random_state=0,
)
search = GridSearchCV(
    dann,
    {"lambda_max": [0.0, 0.3, 1.0]},
    cv=SourceTargetKFold(n_splits=2 if FAST else 3, random_state=0),
    scoring={"dev": DeepEmbeddedValidationScorer(), "iwv": ImportanceWeightedScorer()},
    refit="dev",  # select with DEV; IWV is shown alongside
)
search.fit(X, y)

print("lambda_max  DEV score  IWV score")
for lam, dev, iwv in zip(search.cv_results_["param_lambda_max"],
                         search.cv_results_["mean_test_dev"],
                         search.cv_results_["mean_test_iwv"]):
    print(f"{lam:>10}  {dev:9.4f}  {iwv:9.4f}")
best = search.best_estimator_
print(f"chosen lambda_max = {search.best_params_['lambda_max']} (no target labels used)")
print(f"domain-classifier accuracy at the end of training: {best.domain_accuracy_:.2f} "
      "(0.5 = domains indistinguishable)")
print(f"target test accuracy of the chosen model: {np.mean(best.predict(X_test) == y_test):.3f}")
