"""Scale-out helpers: joblib backends on Dask / Ray clusters, and a shared feature cache.

tlestimators estimators are plain scikit-learn estimators, so a
:class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_val_score` goes wide through joblib like any
other. :func:`parallel_backend` wraps the two cluster backends so one line picks
where the work runs::

    with parallel_backend("dask", n_workers=4):      # or "ray", or "loky"
        search.fit(X, y)

The in-memory feature cache (``cache=True``) lives in one process: on a cluster each
worker would compute the embeddings of the same images again. Give the estimators a
directory that every worker can read and write (``cache="/shared/tle-cache"``) and
each distinct input is embedded once for the whole cluster (up to concurrent first
requests); :func:`check_shared_cache` warns about estimators that would not share.

Multi-GPU training of a single model goes through Accelerate instead; see
:class:`AcceleratedFineTuneClassifier` and the "Scaling out" page of the user guide.
"""

from __future__ import annotations

import contextlib
import warnings

__all__ = ["parallel_backend", "check_shared_cache", "AcceleratedFineTuneClassifier"]  # noqa: F822


def __getattr__(name):
    # Lazy: the estimator imports torch, skorch and accelerate; the joblib helpers don't.
    if name == "AcceleratedFineTuneClassifier":
        from tlestimators.estimators.accelerated import AcceleratedFineTuneClassifier

        return AcceleratedFineTuneClassifier
    raise AttributeError(f"module 'tlestimators.distributed' has no attribute {name!r}")


_BACKENDS = ("dask", "ray", "loky", "threading", "multiprocessing", "sequential")


def check_shared_cache(estimator, *, warn=True):
    """List the parameters whose feature cache would not be shared by cluster workers.

    ``cache=True`` is the per-process in-memory cache: fine for ``n_jobs`` threads,
    but each worker *process* of a Dask / Ray / loky pool would compute the
    embeddings again. A directory path (``cache="/shared/dir"``) is shared.

    Parameters
    ----------
    estimator : estimator
        An estimator, :class:`~sklearn.pipeline.Pipeline` or search object; nested
        parameters (``clf__cache``) and estimators inside parameter values are
        inspected too.
    warn : bool, default=True
        Emit a :class:`UserWarning` naming the parameters.

    Returns
    -------
    names : list of str
        The (nested) parameter names set to ``cache=True``.

    Examples
    --------
    >>> from tlestimators.distributed import check_shared_cache
    >>> from sklearn.linear_model import LogisticRegression
    >>> check_shared_cache(LogisticRegression())
    []
    """
    found = []

    def visit(obj, prefix, depth):
        if depth > 8 or not hasattr(obj, "get_params"):
            return
        try:
            params = obj.get_params(deep=True)
        except TypeError:  # a class, not an instance
            return
        for name, value in params.items():
            full = prefix + name
            if name.rsplit("__", 1)[-1] == "cache" and value is True:
                if full not in found:
                    found.append(full)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    visit(item, f"{full}[{i}]__", depth + 1)
            elif hasattr(value, "get_params") and "__" not in name:
                visit(value, full + "__", depth + 1)

    visit(estimator, "", 0)
    # GridSearchCV's param_grid may carry the estimators that will actually be fit.
    grids = getattr(estimator, "param_grid", None) or getattr(estimator, "param_distributions", None)
    if grids is not None:
        for g, grid in enumerate(grids if isinstance(grids, list) else [grids]):
            for key, values in dict(grid).items():
                if key.rsplit("__", 1)[-1] == "cache" and any(v is True for v in values):
                    found.append(f"param_grid[{g}][{key!r}]")
                for v in values if isinstance(values, (list, tuple)) else []:
                    visit(v, f"param_grid[{g}][{key!r}]__", 1)
    if found and warn:
        warnings.warn(
            f"{found} use cache=True, the per-process in-memory feature cache: every worker "
            "process will compute the same embeddings again. Pass a directory all workers can "
            "reach, e.g. cache='/shared/tle-cache', to compute each input once.",
            UserWarning,
            stacklevel=2,
        )
    return found


@contextlib.contextmanager
def parallel_backend(
    backend="dask",
    *,
    n_jobs=-1,
    client=None,
    address=None,
    n_workers=None,
    threads_per_worker=1,
    **backend_params,
):
    """Run joblib-parallel work (``GridSearchCV``, ``cross_val_score``) on a cluster.

    A thin layer over :func:`joblib.parallel_backend` that also starts (and stops)
    a local cluster when none is given, so the same code runs on a laptop and on a
    real cluster.

    Parameters
    ----------
    backend : {"dask", "ray", "loky", "threading", "multiprocessing", "sequential"}, \
default="dask"
        Where the work runs. ``"dask"`` needs ``dask[distributed]``, ``"ray"`` needs
        ``ray`` (both in the ``distributed`` extra).
    n_jobs : int, default=-1
        Default ``n_jobs`` for joblib calls inside the block (``-1``: all workers).
    client : dask.distributed.Client, default=None
        Dask only: the client to use. By default the current client, else a client
        of a new ``LocalCluster`` (or of ``address``).
    address : str, default=None
        Dask: scheduler address (``"tcp://host:8786"``); Ray: cluster address
        (``"auto"`` for a running cluster). ``None`` starts a local one.
    n_workers : int, default=None
        Workers of a locally started cluster (Dask ``LocalCluster`` workers, Ray
        ``num_cpus``). ``None`` lets the library choose (one per core).
    threads_per_worker : int, default=1
        Dask ``LocalCluster`` only. torch already uses several threads per process.
    **backend_params : dict
        Passed to :func:`joblib.parallel_backend`.

    Yields
    ------
    client : dask.distributed.Client or None
        The Dask client (``None`` for the other backends).

    Raises
    ------
    ValueError
        If ``backend`` is not one of the names above.
    ImportError
        If the backend's library is not installed (the message names the extra).

    See Also
    --------
    check_shared_cache : Warn about estimators whose feature cache is per process.

    Notes
    -----
    Estimators and data are pickled to the workers: every tlestimators estimator
    pickles cleanly (no lambdas, open files or CUDA state). Give estimators a feature
    cache directory that all workers can reach so frozen embeddings are computed
    once, not once per worker.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from tlestimators.distributed import parallel_backend
    >>> X, y = [[0.0], [1.0], [0.1], [0.9]] * 5, [0, 1, 0, 1] * 5
    >>> with parallel_backend("threading", n_jobs=2):
    ...     scores = cross_val_score(LogisticRegression(), X, y, cv=2)
    >>> scores.mean()
    np.float64(1.0)
    """
    import joblib

    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}")

    with contextlib.ExitStack() as stack:
        dask_client = None
        if backend == "dask":
            try:
                from dask.distributed import Client, LocalCluster, get_client
            except ImportError as exc:
                raise ImportError(
                    "backend='dask' needs dask.distributed: pip install 'tlestimators[distributed]'"
                ) from exc
            dask_client = client
            if dask_client is None and address is None:
                with contextlib.suppress(ValueError):
                    dask_client = get_client()
            if dask_client is None:
                if address is None:
                    cluster = stack.enter_context(
                        LocalCluster(
                            n_workers=n_workers,
                            threads_per_worker=threads_per_worker,
                            processes=True,
                            host="127.0.0.1",
                            dashboard_address=None,
                        )
                    )
                    dask_client = stack.enter_context(Client(cluster))
                else:
                    dask_client = stack.enter_context(Client(address))
            # joblib's dask backend uses the current client; make ours current.
            stack.enter_context(dask_client.as_current())
        elif backend == "ray":
            try:
                import ray
                from ray.util.joblib import register_ray
            except ImportError as exc:
                raise ImportError(
                    "backend='ray' needs ray: pip install 'tlestimators[distributed]'"
                ) from exc
            register_ray()
            if not ray.is_initialized():
                ray.init(
                    address=address or "local",
                    num_cpus=n_workers if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                )
                stack.callback(ray.shutdown)
        stack.enter_context(joblib.parallel_backend(backend, n_jobs=n_jobs, **backend_params))
        yield dask_client
