"""Scale-out that really runs: GridSearchCV on a Dask LocalCluster and on Ray, with a
shared on-disk feature cache; estimators pickle for it; Accelerate trains on CPU.

The counting backbone below logs every row it embeds to ``<log_dir>/<pid>.log``, so
the tests see how many forward passes each worker process really made.
"""

import hashlib
import os
import pickle
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from tlestimators.backbones._mlp import MLPBackbone

HERE = Path(__file__).resolve().parent
N, D = 150, 10
GRID = {"head": ["linear", "mlp"], "lr": [5e-2, 1e-1]}
CV = 3


class CountingMLP(MLPBackbone):
    """An ``mlp`` backbone that records each embedded row (by content) per process."""

    def __init__(self, log_dir, in_features=D):
        super().__init__(in_features, hidden_sizes=(16,), seed=0)
        self.log_dir = str(log_dir)

    def forward(self, batch):
        digests = [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest()
                   for r in batch.detach().cpu().numpy()]
        with open(os.path.join(self.log_dir, f"{os.getpid()}.log"), "a") as f:
            f.write("".join(d + "\n" for d in digests))
        return super().forward(batch)


def forward_log(log_dir):
    """``{pid: Counter(row digest -> times embedded)}``."""
    return {
        p.stem: Counter(p.read_text().split())
        for p in Path(log_dir).glob("*.log")
    }


def _data():
    X, y = make_blobs(n_samples=N, centers=3, n_features=D, random_state=0, cluster_std=1.5)
    return X.astype(np.float32), y


def _search(log_dir, cache, n_jobs=None):
    from tlestimators import FrozenFeatureClassifier

    est = FrozenFeatureClassifier(
        CountingMLP(log_dir), max_epochs=5, batch_size=64, device="cpu",
        cache=str(cache), random_state=0,
    )
    return GridSearchCV(est, GRID, cv=CV, n_jobs=n_jobs)


@pytest.fixture(scope="module")
def worker_env():
    """Worker processes must import this module to unpickle CountingMLP."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), old]))
    yield
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: the same search in this process with n_jobs=1, timed."""
    from tlestimators.features import clear_feature_cache

    tmp = tmp_path_factory.mktemp("local")
    (tmp / "log").mkdir()
    clear_feature_cache()
    X, y = _data()
    t0 = time.perf_counter()
    search = _search(tmp / "log", tmp / "cache", n_jobs=1).fit(X, y)
    wall = time.perf_counter() - t0
    print(f"\n[scale-out] local n_jobs=1 GridSearchCV ({len(search.cv_results_['params'])} "
          f"candidates x {CV} folds + refit): {wall:.1f} s")
    clear_feature_cache()
    return search, forward_log(tmp / "log"), wall


def test_local_search_embeds_each_input_once(local_run):
    search, log, _ = local_run
    # 4 candidates x 3 folds x 150 rows + refit would be 1950 rows without the cache.
    (counts,) = log.values()
    assert sum(counts.values()) == N and max(counts.values()) == 1
    assert search.best_score_ > 0.9


def _check_cluster_run(search, log, local_search, n_workers):
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local_search.cv_results_["mean_test_score"],
        atol=0.02,
    )
    assert search.best_score_ > 0.9
    worker_pids = [pid for pid in log if pid != str(os.getpid())]
    assert worker_pids, "no backbone forward pass ran in a worker process"
    for pid, counts in log.items():
        # The shared cache directory: no process embeds the same input twice ...
        assert max(counts.values()) == 1, f"process {pid} embedded a row twice"
    total = sum(sum(c.values()) for c in log.values())
    # ... and the whole cluster computes each distinct input at most once per worker
    # (two workers may race on a row neither has seen), far below the 1950 rows that
    # 12 fits + refit would embed without a cache.
    assert total <= n_workers * N, total
    distinct = set().union(*log.values())
    assert len(distinct) == N


@pytest.mark.slow
def test_gridsearch_on_dask_cluster_shares_disk_cache(local_run, worker_env, tmp_path):
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask[distributed] not installed (the `distributed` extra)"
    )
    import joblib

    from tlestimators.distributed import check_shared_cache

    X, y = _data()
    (tmp_path / "log").mkdir()
    search = _search(tmp_path / "log", tmp_path / "cache")
    assert check_shared_cache(search, warn=False) == []
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        t0 = time.perf_counter()
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
        wall = time.perf_counter() - t0
        worker_pids = {str(p) for p in client.run(os.getpid).values()}
    print(f"\n[scale-out] Dask LocalCluster (2 workers x 1 thread) GridSearchCV: {wall:.1f} s "
          f"(local n_jobs=1: {local_run[2]:.1f} s)")
    log = forward_log(tmp_path / "log")
    assert set(log) - {str(os.getpid())} <= worker_pids
    _check_cluster_run(search, log, local_run[0], n_workers=2)
    # The refit in this process found every embedding on disk.
    assert str(os.getpid()) not in log


@pytest.mark.slow
def test_parallel_backend_helper_runs_cross_val_on_local_dask(worker_env, tmp_path):
    pytest.importorskip("dask.distributed", reason="the `distributed` extra is not installed")
    from sklearn.model_selection import cross_val_score

    from tlestimators import FrozenFeatureClassifier
    from tlestimators.distributed import parallel_backend

    X, y = _data()
    (tmp_path / "log").mkdir()
    est = FrozenFeatureClassifier(CountingMLP(tmp_path / "log"), max_epochs=5, lr=5e-2, device="cpu",
                                  cache=str(tmp_path / "cache"), random_state=0)
    with parallel_backend("dask", n_workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        scores = cross_val_score(est, X, y, cv=3)
    assert scores.min() > 0.85
    log = forward_log(tmp_path / "log")
    assert str(os.getpid()) not in log  # the folds ran on the workers


@pytest.mark.slow
def test_gridsearch_on_ray_shares_disk_cache(local_run, worker_env, tmp_path):
    pytest.importorskip("ray", reason="ray not installed (the `distributed` extra)")
    from tlestimators.distributed import parallel_backend

    X, y = _data()
    (tmp_path / "log").mkdir()
    search = _search(tmp_path / "log", tmp_path / "cache")
    t0 = time.perf_counter()
    with parallel_backend("ray", n_workers=2, n_jobs=2):
        search.fit(X, y)
    wall = time.perf_counter() - t0
    print(f"\n[scale-out] Ray local (2 CPUs) GridSearchCV incl. ray start: {wall:.1f} s "
          f"(local n_jobs=1: {local_run[2]:.1f} s)")
    _check_cluster_run(search, forward_log(tmp_path / "log"), local_run[0], n_workers=2)


def test_check_shared_cache_names_in_memory_caches():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tlestimators import FrozenFeatureClassifier
    from tlestimators.distributed import check_shared_cache

    pipe = make_pipeline(StandardScaler(), FrozenFeatureClassifier("mlp"))
    with pytest.warns(UserWarning, match=r"frozenfeatureclassifier__cache.*cache='/shared"):
        assert check_shared_cache(pipe) == ["frozenfeatureclassifier__cache"]
    grid = GridSearchCV(FrozenFeatureClassifier("mlp", cache="/tmp/x"), {"cache": [True]})
    assert check_shared_cache(grid, warn=False) == ["param_grid[0]['cache']"]
    assert check_shared_cache(FrozenFeatureClassifier("mlp", cache=False), warn=False) == []


def test_parallel_backend_rejects_unknown_backend():
    from tlestimators.distributed import parallel_backend

    with pytest.raises(ValueError, match=r"backend must be one of .*'dask'.*got 'spark'"):
        with parallel_backend("spark"):
            pass


def test_fitted_frozen_classifier_pickles_without_live_state(tmp_path):
    """What the cluster ships: a fitted estimator round-trips through pickle and predicts
    the same, and holds no open file, lambda or CUDA tensor."""
    from tlestimators import FrozenFeatureClassifier

    X, y = _data()
    (tmp_path / "log").mkdir()
    # head="mlp": a skorch net (the default probe head holds numpy arrays only)
    est = FrozenFeatureClassifier(CountingMLP(tmp_path / "log"), head="mlp", max_epochs=5,
                                  device="cpu", cache=str(tmp_path / "cache"),
                                  random_state=0).fit(X, y)
    blob = pickle.dumps(est)  # plain pickle: fails on lambdas and open handles
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    # Nothing device-bound travels: every tensor of the fitted state is on the CPU.
    tensors = [*again.net_.module_.state_dict().values(), *again.backbone_.state_dict().values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert len(blob) < 5_000_000


# ---------------------------------------------------------------- Accelerate
def _counting_accelerator_cls():
    accelerate = pytest.importorskip(
        "accelerate", reason="accelerate not installed (the `distributed` extra)"
    )

    class CountingAccelerator(accelerate.Accelerator):
        """Counts the backward passes that really went through the accelerator."""

        n_backward = 0
        n_prepared = 0

        def backward(self, loss, **kwargs):
            type(self).n_backward += 1
            return super().backward(loss, **kwargs)

        def prepare(self, *args, **kwargs):
            type(self).n_prepared += len(args)
            return super().prepare(*args, **kwargs)

    return CountingAccelerator


def test_accelerated_finetune_trains_through_accelerate_on_cpu():
    from tlestimators.distributed import AcceleratedFineTuneClassifier
    from tlestimators.estimators.accelerated import AcceleratedTransferNet

    acc_cls = _counting_accelerator_cls()
    X, y = _data()
    clf = AcceleratedFineTuneClassifier(
        "mlp", accelerator=acc_cls(cpu=True), backbone_kwargs={"hidden_sizes": (32,)},
        lr=1e-2, max_epochs=8, batch_size=32, random_state=0,
    ).fit(X, y)
    assert isinstance(clf.net_, AcceleratedTransferNet)
    assert clf.accelerator_ is clf.accelerator
    # every training batch went through accelerator.backward: 8 epochs x 5 batches
    assert acc_cls.n_backward == 8 * 5
    assert acc_cls.n_prepared >= 3  # criterion/module, optimizer, data loaders
    losses = clf.net_.history[:, "train_loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert clf.score(X, y) > 0.9
    # unwrapped after training: a plain module, predicts like any estimator
    assert not clf.net_._wrapped_with_accelerator
    assert type(clf.net_.module_).__name__ == "TransferModule"


def test_finetune_classifier_takes_an_accelerator_and_validates_it():
    from accelerate import Accelerator
    from sklearn.base import clone

    from tlestimators import FineTuneClassifier
    from tlestimators.estimators._base import TransferNet
    from tlestimators.estimators.accelerated import AcceleratedTransferNet

    X, y = _data()
    common = dict(backbone_kwargs={"hidden_sizes": (16,)}, lr=1e-2, max_epochs=3, random_state=0)
    plain = FineTuneClassifier("mlp", **common).fit(X, y)
    assert plain.accelerator_ is None
    assert type(plain.net_) is TransferNet
    acc = Accelerator(cpu=True)
    est = FineTuneClassifier("mlp", accelerator=acc, **common)
    assert clone(est).get_params()["max_epochs"] == 3
    est.fit(X, y)
    assert est.accelerator_ is acc and isinstance(est.net_, AcceleratedTransferNet)
    with pytest.raises(TypeError, match=r"accelerator must be None or an accelerate.Accelerator, "
                                        r"got str: 'gpu'"):
        FineTuneClassifier("mlp", accelerator="gpu").fit(X, y)


def test_accelerated_finetune_builds_a_default_accelerator():
    from tlestimators import FineTuneClassifier
    from tlestimators.distributed import AcceleratedFineTuneClassifier
    from tlestimators.estimators.accelerated import AcceleratedTransferNet

    assert set(AcceleratedFineTuneClassifier().get_params()) == set(
        FineTuneClassifier().get_params()
    )
    X, y = _data()
    clf = AcceleratedFineTuneClassifier(
        "mlp", backbone_kwargs={"hidden_sizes": (16,)}, max_epochs=2, random_state=0
    ).fit(X, y)
    assert clf.accelerator is None and clf.accelerator_ is not None
    assert isinstance(clf.net_, AcceleratedTransferNet)


def _fitted(kind, tmp_path):
    from accelerate import Accelerator

    from tlestimators import FineTuneClassifier, FrozenFeatureClassifier
    from tlestimators.distributed import AcceleratedFineTuneClassifier

    X, y = _data()
    common = dict(backbone_kwargs={"hidden_sizes": (16,)}, lr=1e-2, max_epochs=3,
                  random_state=0)
    if kind == "frozen":
        est = FrozenFeatureClassifier("mlp", cache=str(tmp_path / "c"), device="cpu", **common)
    elif kind == "finetune":
        est = FineTuneClassifier("mlp", device="cpu", **common)
    else:
        est = AcceleratedFineTuneClassifier("mlp", accelerator=Accelerator(cpu=True), **common)
    return est.fit(X, y), X


@pytest.mark.parametrize("kind", ["frozen", "finetune", "accelerated"])
def test_fitted_estimators_pickle_for_workers(kind, tmp_path):
    """What joblib/Dask/Ray ship: plain pickle (no lambdas, open handles, prepared
    accelerate wrappers), tensors on the CPU, same predictions after the round trip."""
    pytest.importorskip("accelerate", reason="the `distributed` extra is not installed")
    est, X = _fitted(kind, tmp_path)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), atol=1e-6)
    # every module the fitted estimator holds (backbone_, a skorch net's module_, ...)
    import torch

    modules = [getattr(v, "module_", v) for v in vars(again).values()]
    tensors = [t for m in modules if isinstance(m, torch.nn.Module)
               for t in m.state_dict().values()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    # and an unfitted clone too (what GridSearchCV sends before fitting): it arrives with
    # the same parameters, unfitted, and fits to the same model in the worker
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    sent = pickle.loads(pickle.dumps(clone(est)))
    simple = (str, int, float, bool, type(None), tuple, dict)
    assert {k: v for k, v in sent.get_params(deep=False).items() if isinstance(v, simple)} == {
        k: v for k, v in est.get_params(deep=False).items() if isinstance(v, simple)}
    with pytest.raises(NotFittedError):
        sent.predict(X)
    y = _data()[1]
    np.testing.assert_allclose(sent.fit(X, y).predict_proba(X), est.predict_proba(X), atol=1e-5)


_DDP_SCRIPT = '''
import os, pickle, sys
import numpy as np
from accelerate import Accelerator
from sklearn.datasets import make_blobs
from tlestimators.distributed import AcceleratedFineTuneClassifier

X, y = make_blobs(n_samples=160, centers=3, n_features=10, random_state=0, cluster_std=1.5)
X = X.astype(np.float32)
acc = Accelerator(cpu=True)
clf = AcceleratedFineTuneClassifier(
    "mlp", accelerator=acc, backbone_kwargs={"hidden_sizes": (32,)}, lr=1e-2,
    max_epochs=6, batch_size=16, random_state=0).fit(X, y)
out = sys.argv[1]
w = np.concatenate([v.flatten().numpy() for v in clf.net_.module_.state_dict().values()])
np.save(os.path.join(out, f"weights{acc.process_index}.npy"), w)
with open(os.path.join(out, f"rank{acc.process_index}.txt"), "w") as f:
    f.write(f"{acc.num_processes} {len(clf.net_.history[-1, 'batches'])}")
if acc.is_main_process:
    with open(os.path.join(out, "model.pkl"), "wb") as f:
        pickle.dump(clf, f)
# a clean end, as the user guide's script: without it a rank that exits while the other
# still writes can abort in gloo's teardown ("terminate called without an active
# exception", seen once in about 12 runs on a loaded 2-core machine)
acc.wait_for_everyone()
acc.end_training()
'''


@pytest.mark.slow
def test_accelerated_finetune_data_parallel_over_two_processes(tmp_path):
    """Two CPU processes (gloo), as ``accelerate launch`` / torchrun start them: each
    trains on half the batches, gradients are averaged (identical weights after), and
    the main process saves a model that loads and predicts."""
    pytest.importorskip("accelerate", reason="the `distributed` extra is not installed")
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "train.py"
    script.write_text(_DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port), str(script), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for rank in (0, 1):
        n_proc, n_batches = (tmp_path / f"rank{rank}.txt").read_text().split()
        assert n_proc == "2"
        assert n_batches == "5"  # 160 samples / 16 per batch = 10 batches, split in two
    np.testing.assert_array_equal(
        np.load(tmp_path / "weights0.npy"), np.load(tmp_path / "weights1.npy")
    )
    with open(tmp_path / "model.pkl", "rb") as f:
        clf = pickle.load(f)
    X, y = make_blobs(n_samples=160, centers=3, n_features=10, random_state=0, cluster_std=1.5)
    assert clf.score(X.astype(np.float32), y) > 0.9


def test_gradual_unfreezing_refused_with_several_processes(monkeypatch):
    accelerate = pytest.importorskip("accelerate", reason="the `distributed` extra is not installed")
    from tlestimators.distributed import AcceleratedFineTuneClassifier

    acc = accelerate.Accelerator(cpu=True)
    monkeypatch.setattr(type(acc), "num_processes", property(lambda self: 4))
    X, y = _data()
    with pytest.raises(ValueError, match=r"unfreeze='gradual' is not supported with several "
                                         r"processes \(num_processes=4\)"):
        AcceleratedFineTuneClassifier("mlp", accelerator=acc, unfreeze="gradual").fit(X, y)
