"""Continual-learning metrics: accuracy matrix, average accuracy, forgetting, BWT/FWT.

All metrics read an accuracy matrix ``R`` of shape ``(T, T)``: ``R[i, j]`` is the
accuracy on experience ``j``'s test set of the model after it learnt experiences
``0..i`` (the convention of Lopez-Paz & Ranzato 2017). :func:`evaluate_stream` builds
it by training an estimator one experience at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "evaluate_stream",
    "StreamEvaluation",
    "accuracy_matrix",
    "average_accuracy",
    "average_forgetting",
    "backward_transfer",
    "forward_transfer",
    "continual_summary",
]


def _check_matrix(R, min_experiences=1, name="R"):
    try:
        R = np.asarray(R, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a square 2-D array of accuracies.") from None
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(
            f"{name} must be a square (n_experiences, n_experiences) array, got shape {R.shape}."
        )
    if R.shape[0] < min_experiences:
        raise ValueError(
            f"{name} has {R.shape[0]} experience(s); this metric needs at least "
            f"{min_experiences}."
        )
    if np.isnan(np.diag(R)).any() or np.isnan(R[-1]).any():
        raise ValueError(
            f"{name} must hold the diagonal and the last row (NaN found there); evaluate "
            "every test set after every experience."
        )
    return R


def average_accuracy(R, after=None):
    """Mean accuracy over the experiences learnt so far.

    ``after=None`` (default) uses the final model: ``mean_j R[T-1, j]``. ``after=i``
    gives ``mean_{j<=i} R[i, j]``, the accuracy on the ``i + 1`` experiences seen at
    that point.

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017 (ACC).
    """
    R = _check_matrix(R)
    i = R.shape[0] - 1 if after is None else int(after)
    if not 0 <= i < R.shape[0]:
        raise ValueError(f"after must be in [0, {R.shape[0] - 1}], got {after!r}.")
    return float(np.mean(R[i, : i + 1]))


def average_forgetting(R):
    """Mean over old experiences of the drop from their best to their final accuracy.

    ``f_j = max_{j <= l < T-1} R[l, j] - R[T-1, j]`` for ``j < T-1``, averaged. Higher
    means more forgetting; 0 means none.

    References
    ----------
    .. [1] A. Chaudhry, P. K. Dokania, T. Ajanthan, P. H. S. Torr, "Riemannian Walk for
       Incremental Learning", ECCV 2018.
    """
    R = _check_matrix(R, 2)
    T = R.shape[0]
    f = [np.nanmax(R[j : T - 1, j]) - R[T - 1, j] for j in range(T - 1)]
    return float(np.mean(f))


def backward_transfer(R):
    """BWT: ``mean_{j<T-1} (R[T-1, j] - R[j, j])``; negative values are forgetting.

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.
    """
    R = _check_matrix(R, 2)
    T = R.shape[0]
    return float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R, baseline=None):
    """FWT: ``mean_{j>=1} (R[j-1, j] - b_j)``, how much learning the past helps an
    experience before it is learnt.

    Parameters
    ----------
    R : array-like of shape (T, T)
        Accuracy matrix; its superdiagonal ``R[j-1, j]`` must be evaluated.
    baseline : array-like of shape (T,), default=None
        ``b_j``, the accuracy on experience ``j`` of a model that learnt nothing
        relevant (GEM uses a randomly initialised one). ``None`` uses 0, so FWT is the
        mean zero-shot accuracy on the next experience. In class-incremental streams a
        model cannot predict classes it has not seen, so FWT is 0 there.

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.
    """
    R = _check_matrix(R, 2)
    T = R.shape[0]
    sup = np.asarray([R[j - 1, j] for j in range(1, T)])
    if np.isnan(sup).any():
        raise ValueError(
            "forward_transfer needs R[j-1, j] (each test set scored before its experience "
            "is learnt); evaluate_stream fills it."
        )
    if baseline is None:
        b = np.zeros(T)
    else:
        b = np.asarray(baseline, dtype=float).ravel()
        if b.shape != (T,):
            raise ValueError(f"baseline must have one value per experience ({T}), got {b.shape}.")
    return float(np.mean(sup - b[1:]))


def continual_summary(R, baseline=None):
    """``{"average_accuracy", "average_forgetting", "backward_transfer",
    "forward_transfer"}`` of ``R`` (the last three are NaN for a single experience)."""
    R = _check_matrix(R)
    out = {"average_accuracy": average_accuracy(R)}
    if R.shape[0] < 2:
        out.update(average_forgetting=np.nan, backward_transfer=np.nan, forward_transfer=np.nan)
        return out
    out["average_forgetting"] = average_forgetting(R)
    out["backward_transfer"] = backward_transfer(R)
    try:
        out["forward_transfer"] = forward_transfer(R, baseline)
    except ValueError:
        out["forward_transfer"] = np.nan
    return out


@dataclass
class StreamEvaluation:
    """What :func:`evaluate_stream` returns.

    Attributes
    ----------
    matrix : ndarray of shape (T, T)
        ``matrix[i, j]``: score on test set ``j`` after learning experiences ``0..i``.
    fit_times : ndarray of shape (T,)
        Seconds spent in ``partial_fit`` per experience.
    estimator : estimator
        The estimator after the whole stream.
    """

    matrix: np.ndarray
    fit_times: np.ndarray
    estimator: object = field(repr=False, default=None)

    @property
    def average_accuracy(self):
        return average_accuracy(self.matrix)

    @property
    def average_forgetting(self):
        return average_forgetting(self.matrix)

    @property
    def backward_transfer(self):
        return backward_transfer(self.matrix)

    @property
    def forward_transfer(self):
        return forward_transfer(self.matrix)

    def summary(self, baseline=None):
        """:func:`continual_summary` of the matrix plus the total fit time."""
        out = continual_summary(self.matrix, baseline)
        out["fit_time"] = float(np.sum(self.fit_times))
        return out


def _check_stream(stream, name):
    if stream is None:
        return None
    try:
        stream = list(stream)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of (X, y) pairs.") from None
    if not stream:
        raise ValueError(f"{name} is empty: expected at least one (X, y) experience.")
    for i, exp in enumerate(stream):
        if not isinstance(exp, (tuple, list)) or len(exp) != 2:
            raise ValueError(f"{name}[{i}] must be an (X, y) pair, got {type(exp).__name__}.")
    return stream


def evaluate_stream(estimator, train_stream, test_stream=None, *, scoring=None, task_ids=False,
                    partial_fit_params=None, clone=True):
    """Learn a stream one experience at a time and score every test set after each.

    Parameters
    ----------
    estimator : estimator with ``partial_fit``
        E.g. :class:`~tlestimators.RehearsalLearner`, or any sklearn estimator with
        ``partial_fit`` (pass ``partial_fit_params={"classes": all_labels}`` for those
        that need every class up front).
    train_stream : sequence of (X, y)
        The experiences, in order.
    test_stream : sequence of (X, y), default=None
        One test set per experience; ``None`` scores on the training experiences.
    scoring : str or callable, default=None
        sklearn scorer (``None``: the estimator's ``score``, accuracy for classifiers).
    task_ids : bool, default=False
        Pass ``task_id=j`` to ``partial_fit`` and to the scorer's predictions
        (task-incremental evaluation; the estimator must accept ``task_id``).
    partial_fit_params : dict, default=None
        Extra keyword arguments for every ``partial_fit`` call.
    clone : bool, default=True
        Work on ``sklearn.base.clone(estimator)`` rather than the estimator itself.

    Returns
    -------
    StreamEvaluation
        ``matrix[i, j]`` is the score on test set ``j`` after experience ``i``, including
        test sets of experiences not learnt yet (the upper triangle, used by forward
        transfer).

    See Also
    --------
    average_accuracy, average_forgetting, backward_transfer, forward_transfer
    tlestimators.plotting.plot_accuracy_matrix : The matrix as a PNG heatmap.

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import RehearsalLearner
    >>> from tlestimators.metrics import evaluate_stream
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6)).astype("float32"); y = np.arange(300) % 3
    >>> X[np.arange(300), y] += 4
    >>> stream = [(X[y == c], y[y == c]) for c in range(3)]
    >>> ev = evaluate_stream(RehearsalLearner(memory_size=30, max_epochs=3,
    ...                      random_state=0), stream)
    >>> ev.matrix.shape
    (3, 3)
    """
    from sklearn.base import clone as sk_clone
    from sklearn.metrics import check_scoring

    train_stream = _check_stream(train_stream, "train_stream")
    test_stream = _check_stream(test_stream, "test_stream") or train_stream
    if len(test_stream) != len(train_stream):
        raise ValueError(
            f"test_stream has {len(test_stream)} experiences but train_stream has "
            f"{len(train_stream)}; give one test set per experience."
        )
    if not hasattr(estimator, "partial_fit"):
        raise TypeError(
            f"{type(estimator).__name__} has no partial_fit; evaluate_stream needs an "
            "estimator that learns one experience at a time."
        )
    est = sk_clone(estimator) if clone else estimator
    T = len(train_stream)
    params = dict(partial_fit_params or {})
    scorer = check_scoring(est, scoring=scoring) if scoring is not None else None
    R = np.full((T, T), np.nan)
    times = np.zeros(T)

    def score(j, X, y):
        if task_ids:
            if scorer is not None:
                raise ValueError("task_ids=True works with scoring=None (the estimator's score).")
            return est.score(X, y, task_id=j)
        if scorer is not None:
            return scorer(est, X, y)
        return est.score(X, y)

    for i, (X, y) in enumerate(train_stream):
        t0 = time.perf_counter()
        if task_ids:
            est.partial_fit(X, y, task_id=i, **params)
        else:
            est.partial_fit(X, y, **params)
        times[i] = time.perf_counter() - t0
        for j, (Xt, yt) in enumerate(test_stream):
            if task_ids and j > i:
                continue  # no head for a task that has not been given yet
            try:
                R[i, j] = score(j, Xt, yt)
            except ValueError:
                if j <= i:
                    raise
                # a scorer may refuse labels unseen so far (e.g. log-loss); leave NaN
    return StreamEvaluation(matrix=R, fit_times=times, estimator=est)


def accuracy_matrix(estimator, train_stream, test_stream=None, **kwargs):
    """The accuracy matrix of :func:`evaluate_stream` (``R[i, j]``, shape ``(T, T)``)."""
    return evaluate_stream(estimator, train_stream, test_stream, **kwargs).matrix
