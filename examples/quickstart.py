"""
Quickstart: frozen features vs fine-tuning
==========================================

Three ways to use a pretrained image backbone (EfficientNet-Lite0, ImageNet weights from
the ``weights`` extra) on a small labelled set, sklearn's 8x8 digits upsampled by the
backbone's preprocessing:

1. :class:`~tlestimators.BackboneEmbedder` in front of any sklearn model (here logistic
   regression);
2. :class:`~tlestimators.FrozenFeatureClassifier`: frozen backbone + a trained head;
3. :class:`~tlestimators.FineTuneClassifier`: the backbone is updated too (warm-up
   then cosine; see :ref:`fine_tuning` for gradual unfreezing and layer-wise decay).

Then a learning curve: how test accuracy grows with the number of labels per class for
the frozen and the fine-tuned backbone, which is the measurement behind the
:ref:`choosing` advice ("start frozen; fine-tune once there are enough labels").

The embeddings of step 1 are cached, so step 2 and every frozen point of the curve
reuse them. ``TLE_FAST=1`` (what the docs gallery and the tests run) uses 48 px inputs,
up to 10 labels per class and 20 fine-tuning steps per point, to stay under 30 s on 2 CPU
cores; the full run (``TLE_FAST=0``) uses 64 px, 150 steps and up to 100 labels per class.
"""

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

import tlestimators as tle
from tlestimators.features import feature_cache

FAST = os.environ.get("TLE_FAST", "0") == "1"
IMG = 48 if FAST else 64
STEPS = 20 if FAST else 150  # optimizer steps per fine-tuning run (batch 32)
N_MAIN = 10 if FAST else 20  # labels per class of the first section
torch.manual_seed(0)

digits = load_digits()
images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8) grey uint8
X_pool, X_test, y_pool, y_test = train_test_split(
    images, digits.target, test_size=300, stratify=digits.target, random_state=0,
)
backbone_kwargs = {"img_size": IMG}


def per_class(n):
    """The first ``n`` pool images of each digit (nested: bigger sets contain smaller)."""
    idx = np.concatenate([np.flatnonzero(y_pool == c)[:n] for c in range(10)])
    return X_pool[idx], y_pool[idx]


def fine_tune(X, y):
    """Same budget of optimizer steps whatever the number of images."""
    epochs = max(2, int(np.ceil(STEPS * 32 / len(y))))
    return tle.FineTuneClassifier(
        # the default recipe: LP-FT (head from the frozen probe), head lr 1e-3, backbone
        # lr 1e-4; a backbone rate of 1e-3 wrecks the probe's features in a few steps
        "efficientnet_lite0", backbone_kwargs=backbone_kwargs,
        max_epochs=epochs, augment=False,  # flips would turn digits into other digits
        random_state=0,
    ).fit(X, y)


X_train, y_train = per_class(N_MAIN)

# %%
# Three estimators on a few labels per class
# ------------------------------------------
t = time.perf_counter()
emb = tle.BackboneEmbedder("efficientnet_lite0", backbone_kwargs=backbone_kwargs)
pipe = make_pipeline(emb, LogisticRegression(max_iter=2000)).fit(X_train, y_train)
print(f"embedder + logistic regression: {pipe.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s)")

t = time.perf_counter()
frozen = tle.FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=backbone_kwargs,
                                     random_state=0).fit(X_train, y_train)
print(f"frozen backbone + default head:  {frozen.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s; cache hits so far: {feature_cache().hits})")

t = time.perf_counter()
tuned = fine_tune(X_train, y_train)
print(f"fine-tuned backbone:             {tuned.score(X_test, y_test):.3f} "
      f"({time.perf_counter() - t:.1f} s, {len(tuned.net_.history)} epochs)")
print("predicted:", tuned.predict(X_test[:10]), "true:", y_test[:10])

# %%
# Learning curve: frozen vs fine-tuned
# ------------------------------------
# Every point trains on the first ``n`` images of each digit. The frozen points cost one
# head fit each (their embeddings are already cached); the fine-tuned points get the same
# budget of optimizer steps whatever ``n``, so the curve compares data, not compute.
sizes = [2, 5, 10] if FAST else [2, 5, 10, 20, 50, 100]
curve = {"frozen backbone": [], "fine-tuned backbone": []}
t = time.perf_counter()
for n in sizes:
    Xn, yn = per_class(n)
    f = frozen if n == N_MAIN else tle.FrozenFeatureClassifier(
        "efficientnet_lite0", backbone_kwargs=backbone_kwargs, random_state=0).fit(Xn, yn)
    ft = tuned if n == N_MAIN else fine_tune(Xn, yn)
    curve["frozen backbone"].append(f.score(X_test, y_test))
    curve["fine-tuned backbone"].append(ft.score(X_test, y_test))
    print(f"{n:3d} labels per class: frozen {curve['frozen backbone'][-1]:.3f}, "
          f"fine-tuned {curve['fine-tuned backbone'][-1]:.3f}")
print(f"learning curve: {time.perf_counter() - t:.1f} s")

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for name, accs in curve.items():
    ax.plot(sizes, accs, marker="o", label=name)
ax.axhline(0.1, color="grey", ls=":", label="chance")
ax.set_xscale("log")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.minorticks_off()
ax.set_xlabel("labelled images per class")
ax.set_ylabel("test accuracy (300 digits)")
ax.set_title(f"EfficientNet-Lite0 on 8x8 digits at {IMG} px, {STEPS} fine-tuning steps")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %%
# The frozen features are the safer bet with a handful of labels; fine-tuning needs
# enough images (and steps) to move the backbone towards the new domain. The full-size
# run (``TLE_FAST=0``: 64 px, 150 steps per point, up to 100 labels per class) and
# ``benchmarks/bench_transfer.py`` (figure in :ref:`fine_tuning`) show where the curves
# cross; the fast run the gallery executes is too short to reach it.
