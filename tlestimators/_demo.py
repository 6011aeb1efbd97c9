"""The showcase behind ``tlestimators demo`` with no ``--data``: scikit-learn's digits.

One table, one row per strategy family, each measured in the run against its naive
baseline on data that ships with scikit-learn:

* **strategy search** -- :class:`~tlestimators.TransferSearchCV` over a raw-pixel
  logistic regression and frozen ``efficientnet_lite0`` probes at 32 and 64 px, vs the
  fixed choice "frozen probe at 64 px";
* **continual stream** -- digits as 5 experiences of 2 classes; a
  :class:`~tlestimators.RehearsalLearner` without memory (naive fine-tuning) vs with a
  replay memory of 200 examples;
* **domain shift** -- the target is the digits with less contrast, more brightness
  and noise (``0.5 x + 5 + N(0, 1)``, clipped to [0, 16]); source-only logistic
  regression vs DANN whose strength is chosen without target labels
  (:class:`~tlestimators.model_selection.DomainAdaptationSearchCV`).

The chosen model of the search is then saved with :func:`tlestimators.save` and a few
held-out digits are predicted with ``tlestimators predict``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["flatten_pixels", "run_digits_showcase"]

# pixels of the digits target domain: less contrast, brighter, noisy
SHIFT_SCALE, SHIFT_OFFSET, SHIFT_NOISE = 0.5, 5.0, 1.0


def flatten_pixels(X):
    """Images ``(n, h, w[, c])`` -> rows of pixels scaled to [0, 1] (float32)."""
    X = np.asarray(X)
    return X.reshape(len(X), -1).astype(np.float32) / 255.0


def _pixel_model(seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(FunctionTransformer(flatten_pixels), StandardScaler(),
                         LogisticRegression(max_iter=2000, random_state=seed))


def _probe(size, seed):
    from sklearn.linear_model import LogisticRegression

    from tlestimators.estimators.frozen import FrozenFeatureClassifier

    # a linear probe with a fixed C (the default head cross-validates 10 values of C in
    # 5 folds, which costs more than the embeddings here and changes little on digits)
    return FrozenFeatureClassifier(
        "efficientnet_lite0", backbone_kwargs={"img_size": size},
        head=LogisticRegression(max_iter=300, random_state=seed), random_state=seed,
        device="cpu")


def _acc(model, X, y):
    return float(np.mean(np.asarray(model.predict(X)) == np.asarray(y)))


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _log(msg):
    print(f"  {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- (a) search
def search_vs_fixed(images, y, tr, te, *, sizes=(32, 64), fixed_size=64, cv=3, seed=0):
    """TransferSearchCV over pixels and frozen probes vs the fixed frozen probe."""
    import warnings

    from tlestimators.estimators.search import TransferSearchCV

    cands = [("pixels + logistic regression", _pixel_model(seed))]
    cands += [(f"probe[efficientnet_lite0@{s}px]", _probe(s, seed)) for s in sizes]
    search = TransferSearchCV(cands, budget=120.0, cv=cv, random_state=seed)
    with warnings.catch_warnings():
        # log(0) of a confident pixel model's probabilities while scoring: harmless here
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        search.fit(images[tr], y[tr])
    fixed = _probe(fixed_size, seed).fit(images[tr], y[tr])  # embeddings come from the cache
    return {
        "search": search,
        "pick": search.best_params_["candidate"],
        "pick_acc": _acc(search, images[te], y[te]),
        "fixed": f"probe[efficientnet_lite0@{fixed_size}px]",
        "fixed_acc": _acc(fixed, images[te], y[te]),
    }


# --------------------------------------------------------------------------- (b) stream
def continual_stream(X, y, tr, te, *, n_experiences=5, memory=200, max_epochs=5, seed=0):
    """Class-incremental digits: naive (no memory) vs replay; final average accuracy."""
    from tlestimators.estimators.rehearsal import RehearsalLearner

    classes = np.unique(y)
    groups = np.array_split(classes, n_experiences)
    out = {}
    for name, size in (("naive", 0), ("replay", memory)):
        model = RehearsalLearner("mlp", memory_size=size, max_epochs=max_epochs, lr=1e-3,
                                 random_state=seed, device="cpu")
        for g in groups:
            rows = tr[np.isin(y[tr], g)]
            model.partial_fit(X[rows], y[rows])
        # average over experiences of the accuracy on that experience's held-out classes
        accs = [_acc(model, X[te[np.isin(y[te], g)]], y[te[np.isin(y[te], g)]]) for g in groups]
        out[name] = float(np.mean(accs))
    return out


# --------------------------------------------------------------------------- (c) shift
def shift_digits(X, seed=0):
    """The target domain: ``0.5 x + 5 + N(0, 1)`` clipped to the digits' [0, 16]."""
    rng = np.random.default_rng(seed)
    Xt = SHIFT_SCALE * X + SHIFT_OFFSET + rng.normal(0.0, SHIFT_NOISE, size=X.shape)
    return np.clip(Xt, 0.0, 16.0).astype(np.float32)


def domain_shift(X, y, tr, te, *, lambdas=(0.3, 1.0), max_epochs=10, cv=2, seed=0):
    """Source-only logistic regression vs DANN chosen without target labels.

    Source: labeled digits ``tr``; target: the shifted digits ``te``, whose labels are
    used only to report accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tlestimators.estimators.dann import DANNAdapter
    from tlestimators.model_selection import DomainAdaptationSearchCV

    Xs, ys = X[tr], y[tr]
    Xt, yt = shift_digits(X[te], seed), y[te]
    src = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    src.fit(Xs, ys)
    # the paper's SGD recipe (DANNAdapter's defaults of 0.1): ~100 steps on 400 digits
    # are too few for the Adam default at lr=1e-3
    base = DANNAdapter("mlp", standardize="global", optimizer="sgd", lr=0.01,
                       max_epochs=max_epochs, random_state=seed, device="cpu")
    search = DomainAdaptationSearchCV(base, {"lambda_max": [0.0, *lambdas]}, cv=cv)
    search.fit(np.vstack([Xs, Xt]), np.r_[ys, np.full(len(Xt), -1)])
    return {
        "source_only": _acc(src, Xt, yt),
        "adapted": _acc(search, Xt, yt),
        "lambda": float(search.best_params_["lambda_max"]),
    }


# --------------------------------------------------------------------------- the demo
def run_digits_showcase(args, *, table, predict) -> int:
    """``table(headers, rows)`` formats the table; ``predict(args)`` is ``cmd_predict``."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = args.random_state
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8) grey
    X, y = d.data.astype(np.float32), d.target
    idx = np.arange(len(y))
    if args.limit is not None and args.limit < len(y):
        idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:args.limit])
    tr, te = train_test_split(idx, test_size=args.test_size, random_state=seed,
                              stratify=y[idx])
    print("data: sklearn digits: 1797 grey 8x8 images, 10 classes "
          f"({len(tr)} train / {len(te)} held out); torch threads: {torch.get_num_threads()}")
    t_all, c_all = time.perf_counter(), time.process_time()
    # one BLAS thread: the heads here are small, and on 2 busy cores OpenBLAS threads
    # spin-waiting for each other cost more CPU than the solves (13 s vs 0.35 s for one
    # logistic regression on 900 x 1280 embeddings at load 30)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _showcase(args, seed, images, X, y, tr, te, t_all, c_all, table=table,
                         predict=predict)


def _showcase(args, seed, images, X, y, tr, te, t_all, c_all, *, table, predict):
    import os
    import tempfile

    import torch

    import tlestimators as tle

    rows = []

    sizes = tuple(sorted({32, args.img_size}))  # probes at 32 px and --img-size (64)
    a, wall, cpu = _timed(lambda: search_vs_fixed(images, y, tr, te, sizes=sizes,
                                                  fixed_size=args.img_size, seed=seed))
    _log(f"done: strategy search in {wall:.1f} s (CPU {cpu:.1f} s)")
    rows.append(["strategy search (TransferSearchCV)", f"fixed: {a['fixed']}",
                 f"{a['fixed_acc']:.3f}", f"pick: {a['pick']}", f"{a['pick_acc']:.3f}",
                 f"{wall:.1f}"])
    # the small MLPs of the next two rows run faster on one thread than on two
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b, wall, cpu = _timed(lambda: continual_stream(X, y, tr, te, seed=seed))
        _log(f"done: continual stream in {wall:.1f} s (CPU {cpu:.1f} s)")
        b["wall"] = wall
        c, wall_c, cpu = _timed(lambda: domain_shift(X, y, tr, te, seed=seed))
        _log(f"done: domain shift in {wall_c:.1f} s (CPU {cpu:.1f} s)")
    finally:
        torch.set_num_threads(threads)
    rows.append(["continual stream: 5 experiences x 2 classes", "naive (memory 0)",
                 f"{b['naive']:.3f}", "replay (RehearsalLearner, memory 200)",
                 f"{b['replay']:.3f}", f"{b['wall']:.1f}"])
    # lambda=0 is DANN without its adversarial term: what it still adapts is the
    # standardisation on source + target rows, and the label says so
    adapted = (f"DANN, lambda={c['lambda']:g} chosen label-free" if c["lambda"] else
               "DANN search chose lambda=0 (no adversary; its standardisation on source + "
               "target rows adapts)")
    rows.append(["domain shift: digits -> 0.5x+5+noise", "source-only logistic regression",
                 f"{c['source_only']:.3f}", adapted, f"{c['adapted']:.3f}", f"{wall_c:.1f}"])
    print()
    print(table(["family", "naive baseline", "accuracy", "transfer strategy", "accuracy",
                  "time (s)"], rows))
    print("\nHeld-out accuracy; the continual row is the final average over the 5 "
          "experiences;\nthe domain-shift row is accuracy on the unlabeled target "
          "(labels used only to score).")
    if a["pick"].startswith("pixels"):
        print("The search picked raw pixels: digits are 8x8 pen strokes, far from the "
              "photos\nImageNet backbones learned from, so pixels beat frozen features "
              "here; on natural\nimages (--data DIR) the probes win.")
    else:
        print(f"The search picked {a['pick']}.")

    with tempfile.TemporaryDirectory() as tmp:
        path = tle.save(a["search"].best_estimator_, os.path.join(tmp, "digits-model"),
                        scores={"held-out accuracy": a["pick_acc"]})
        few = te[:5]
        npy = os.path.join(tmp, "five_digits.npy")
        np.save(npy, images[few])
        print(f"\nsaved the search's pick with tlestimators.save; `tlestimators predict "
              f"MODEL five_digits.npy` (true labels {y[few].tolist()}):")
        pred_args = type("A", (), {"model": str(path), "data": [npy], "text_column": "text",
                                   "output": None, "trust": []})()
        predict(pred_args)
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s wall, "
          f"{time.process_time() - c_all:.1f} s CPU")
    return 0
