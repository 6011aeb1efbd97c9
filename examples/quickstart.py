"""Quickstart: frozen features vs fine-tuning
==========================================

Three ways to use a pretrained image backbone (EfficientNet-Lite0) on a small labelled set (sklearn's 8x8
digits, upsampled by the backbone's preprocessing):

1. ``BackboneEmbedder`` in front of any sklearn model (here logistic regression);
2. ``FrozenFeatureClassifier``: frozen backbone + a head trained with skorch;
3. ``FineTuneClassifier``: the backbone is updated too (gradual unfreezing, layer-wise
   learning-rate decay, warm-up then cosine).

The embeddings of step 1 are cached, so step 2 does not compute them again.
Run ``TLE_FAST=1 python examples/quickstart.py`` for a seconds-long smoke run.
"""

import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

import tlestimators as tle
from tlestimators.features import feature_cache

FAST = os.environ.get("TLE_FAST") == "1"
IMG = 32 if FAST else 64
N_TRAIN = 60 if FAST else 400

digits = load_digits()
images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8) grey uint8
X_train, X_test, y_train, y_test = train_test_split(
    images, digits.target, train_size=N_TRAIN, test_size=200, stratify=digits.target,
    random_state=0,
)
backbone_kwargs = {"img_size": IMG}

t = time.perf_counter()
emb = tle.BackboneEmbedder("efficientnet_lite0", backbone_kwargs=backbone_kwargs)
pipe = make_pipeline(emb, LogisticRegression(max_iter=2000)).fit(X_train, y_train)
print(f"embedder + logistic regression: {pipe.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s)")

t = time.perf_counter()
frozen = tle.FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=backbone_kwargs,
                                     head="linear", max_epochs=10 if FAST else 60,
                                     random_state=0).fit(X_train, y_train)
print(f"frozen backbone + linear head:  {frozen.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s; cache hits so far: {feature_cache().hits})")

t = time.perf_counter()
tuned = tle.FineTuneClassifier(
    "efficientnet_lite0", backbone_kwargs=backbone_kwargs, unfreeze="gradual",
    unfreeze_every=1, lr=2e-3, backbone_lr=1e-3, layer_decay=0.8,
    max_epochs=1 if FAST else 6, augment=False,  # flips would turn digits into others
    random_state=0,
).fit(X_train, y_train)
print(f"fine-tuned (gradual unfreezing): {tuned.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s)")
print("unfrozen layer groups per epoch:", list(tuned.net_.history[:, "unfrozen_groups"]))
print("predicted:", tuned.predict(X_test[:10]), "true:", y_test[:10])
