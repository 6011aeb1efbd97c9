"""
Grid search over transfer strategies on a Dask cluster
======================================================

The same :class:`~sklearn.model_selection.GridSearchCV` runs first in this process
(``n_jobs=1``) and then on a Dask cluster through joblib's ``"dask"`` backend. Only
the backend changes: the estimators, the grid and the data are identical, and so are
the cross-validation scores.

On a real cluster, connect a :class:`dask.distributed.Client` to the scheduler's
address instead of starting a :class:`~dask.distributed.LocalCluster`; with Ray, use
``parallel_backend("ray")`` from :mod:`tlestimators.distributed`.

The frozen-feature candidates use ``cache=<directory>``: the in-memory feature cache
lives in one process, so on a cluster each worker would embed the same images again.
A directory every worker can reach (a shared file system on a real cluster) makes each
image be embedded once for the whole cluster, as the counts printed at the end show.

Data: the ants-vs-bees images from ``$TLE_DATA/hymenoptera`` when present, else
synthetic images (said so in the output). ``TLE_FAST=1`` (the docs gallery, the
tests) runs a small version on 64 hymenoptera images at 32 px.
"""

# %%
import os
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

import tlestimators as tle
from tlestimators.datasets import DatasetNotFoundError, load_hymenoptera
from tlestimators.distributed import check_shared_cache

FAST = os.environ.get("TLE_FAST") == "1"
IMG = 32 if FAST else 64  # small inputs keep this under two minutes on 2 CPU cores


def load_images():
    """Hymenoptera file paths when the data is there, else synthetic two-class images."""
    try:
        paths, labels = load_hymenoptera("train")
        n = 64 if FAST else 160
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(paths))[:n]
        return [paths[i] for i in keep], np.asarray(labels)[keep], f"hymenoptera ({n} images)"
    except DatasetNotFoundError as exc:
        print(f"hymenoptera absent, using synthetic images instead: {exc}")
    rng = np.random.default_rng(0)
    n = 24 if FAST else 120
    y = np.arange(n) % 2
    X = rng.integers(0, 120, size=(n, IMG, IMG, 3), dtype=np.uint8)
    X[y == 1, :, :, 0] += 100  # class 1 is redder: learnable from frozen features
    return X, y, f"synthetic ({n} images)"


def make_search(cache_dir):
    """Frozen features with two heads, and fine-tuning of the last layer group: the
    strategy is a hyper-parameter of one grid search."""
    backbone_kwargs = {"img_size": IMG}
    frozen = tle.FrozenFeatureClassifier(
        "efficientnet_lite0", backbone_kwargs=backbone_kwargs, cache=str(cache_dir),
        max_epochs=10 if FAST else 30, lr=1e-2, device="cpu", random_state=0,
    )
    tuned = tle.FineTuneClassifier(
        "efficientnet_lite0", backbone_kwargs=backbone_kwargs, unfreeze=1,
        max_epochs=1 if FAST else 2, batch_size=32, lr=1e-3, device="cpu", random_state=0,
    )
    param_grid = [{"clf": [frozen], "clf__head": ["linear", "mlp"]}]
    if not FAST:  # the smoke test skips the (slow) fine-tuning candidate
        param_grid.append({"clf": [tuned]})
    cv = StratifiedKFold(n_splits=2 if FAST else 3, shuffle=True, random_state=0)
    search = GridSearchCV(Pipeline([("clf", frozen)]), param_grid, cv=cv)
    # Every estimator that will be fit uses the directory cache: nothing to warn about.
    assert check_shared_cache(search, warn=False) == []
    return search


def describe(params):
    clf = type(params["clf"]).__name__
    return clf + (f"(head={params['clf__head']!r})" if "clf__head" in params else "")


def main():
    X, y, what = load_images()
    print(f"data: {what}")

    # Locally, one job.
    t0 = time.perf_counter()
    local = make_search(tempfile.mkdtemp(prefix="tle-cache-")).fit(X, y)
    local_s = time.perf_counter() - t0
    print(f"local n_jobs=1: {local_s:.1f} s; best {describe(local.best_params_)}, "
          f"score {local.best_score_:.3f}")

    # On a Dask cluster: two worker processes on this machine (on a real cluster,
    # ``Client("tcp://scheduler:8786")``). A fresh cache directory, so the cluster
    # starts as cold as the local run did.
    from dask.distributed import Client, LocalCluster

    cache_dir = Path(tempfile.mkdtemp(prefix="tle-cache-"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        t0 = time.perf_counter()
        with joblib.parallel_backend("dask"):
            remote = make_search(cache_dir).fit(X, y)
        dask_s = time.perf_counter() - t0
    print(f"dask, 2 workers: {dask_s:.1f} s (cluster start-up not included); best "
          f"{describe(remote.best_params_)}, score {remote.best_score_:.3f}")

    print("cross-validation accuracy, same splits:")
    for params, a, b in zip(local.cv_results_["params"], local.cv_results_["mean_test_score"],
                            remote.cv_results_["mean_test_score"]):
        print(f"  {describe(params):45s} local {a:.3f}   dask {b:.3f}")
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=0.05
    )

    # The shared cache: every fold and frozen candidate on either worker read the same
    # embeddings from this directory.
    shards = sorted(cache_dir.rglob("*.emb.npy"))
    rows = sum(np.load(s, mmap_mode="r").shape[0] for s in shards)
    print(f"shared cache: {len(shards)} shard files holding {rows} rows for {len(X)} images")

    # Same scores, different place: the cross-validation accuracy of every candidate,
    # locally and on the cluster, and what each run cost.
    import matplotlib.pyplot as plt

    names = [describe(p).replace("Classifier", "") for p in local.cv_results_["params"]]
    xs = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained",
                                   gridspec_kw={"width_ratios": [3, 1]})
    ax1.bar(xs - 0.2, local.cv_results_["mean_test_score"], 0.4, label="local, n_jobs=1")
    ax1.bar(xs + 0.2, remote.cv_results_["mean_test_score"], 0.4, label="dask, 2 workers")
    ax1.set_xticks(xs, names, fontsize=8)
    ax1.set_ylabel("cross-validated accuracy")
    ax1.legend(fontsize=8, loc="lower right")
    ax2.bar(["local", "dask"], [local_s, dask_s], color=["C0", "C1"])
    ax2.set_ylabel("search wall time, s")
    fig.suptitle(f"GridSearchCV on {what}: same scores, locally and on Dask")
    plt.show()


# Worker processes re-import this script: only the guarded block runs the searches.
if __name__ == "__main__":
    main()
