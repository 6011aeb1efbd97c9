"""Save training curves and continual-learning accuracy matrices as PNG files.

Both helpers draw on a bare :class:`matplotlib.figure.Figure` with the Agg canvas,
never through :mod:`matplotlib.pyplot`: they work on headless machines and inside
Dask/Ray workers, leave the caller's pyplot backend and open figures untouched, and
import matplotlib only when called (``import tlestimators`` stays cheap).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["history_to_dict", "plot_accuracy_matrix", "plot_history"]

# Bookkeeping columns skorch writes into every epoch row; they are not curves.
_SKIP_KEYS = frozenset({"epoch", "batches", "dur", "train_batch_count", "valid_batch_count"})


def _new_figure(figsize, dpi):
    # Figure + FigureCanvasAgg instead of pyplot: no global backend switch, no
    # figure registry to leak from, safe in threads and worker processes.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    path = Path(path)
    if path.suffix.lower() not in ("", ".png"):
        raise ValueError(f"path must name a .png file, got {str(path)!r}")
    if path.suffix == "":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_figsize(figsize, dpi):
    try:
        w, h = (float(v) for v in figsize)
    except (TypeError, ValueError):
        raise ValueError(f"figsize must be a pair of positive numbers (inches), got {figsize!r}") from None
    if not (w > 0 and h > 0):
        raise ValueError(f"figsize must be a pair of positive numbers (inches), got {figsize!r}")
    if not isinstance(dpi, numbers.Real) or isinstance(dpi, bool) or dpi <= 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    return (w, h)


def _find_history(obj):
    """Return the skorch History (or list of epoch dicts) held by ``obj``."""
    # A Pipeline: the history lives on its final step.
    steps = getattr(obj, "steps", None)
    if isinstance(steps, list) and steps and isinstance(steps[-1], tuple):
        return _find_history(steps[-1][1])
    for attr in ("history_", "net_", "history"):
        value = getattr(obj, attr, None)
        if value is None:
            continue
        if attr == "net_":
            value = getattr(value, "history", None)
            if value is None:
                continue
        return value
    return None


def history_to_dict(history_or_estimator):
    """Turn a training history into ``{key: 1-D float array over epochs}``.

    Parameters
    ----------
    history_or_estimator : skorch History, list of dict, dict or estimator
        A :class:`skorch.history.History`, a list with one dict per epoch (the
        same thing), a mapping ``{key: sequence}``, a fitted estimator that
        exposes ``history_`` or ``net_.history`` (every tlestimators estimator
        trained through skorch does), a skorch net, or a
        :class:`~sklearn.pipeline.Pipeline` ending in one of those.

    Returns
    -------
    curves : dict of str to ndarray of shape (n_epochs,)
        One entry per numeric column. Epochs where a column is missing (for
        instance ``valid_loss`` without a validation split on some epochs) are
        NaN, so every array has the same length. skorch's bookkeeping columns
        (``epoch``, ``batches``, ``dur``, ``*_batch_count``) and boolean ``*_best`` flags are left out.

    Raises
    ------
    TypeError
        If no history can be found in ``history_or_estimator``.
    ValueError
        If the history has no epochs.
    """
    obj = history_or_estimator
    if isinstance(obj, Mapping):
        curves = {}
        for key, values in obj.items():
            arr = np.asarray(values, dtype=float)
            if arr.ndim != 1:
                raise ValueError(
                    f"history_or_estimator[{key!r}] must be a 1-D sequence of numbers, "
                    f"got shape {arr.shape}"
                )
            curves[str(key)] = arr
        if not curves or max(len(v) for v in curves.values()) == 0:
            raise ValueError("history_or_estimator has no epochs to plot")
        return curves

    if not isinstance(obj, Sequence) or isinstance(obj, (str, bytes)):
        found = _find_history(obj)
        if found is None:
            raise TypeError(
                "history_or_estimator must be a skorch History, a list of per-epoch dicts, "
                "a mapping of curves, or a fitted estimator exposing `history_` or "
                f"`net_.history`; got {type(obj).__name__}"
            )
        if not isinstance(found, Sequence):
            raise TypeError(
                f"the history found on {type(obj).__name__} is a {type(found).__name__}, "
                "expected a skorch History (a list of per-epoch dicts)"
            )
        obj = found

    rows = list(obj)
    # One History per experience (continual learning): concatenate them in order.
    if rows and all(isinstance(r, Sequence) and not isinstance(r, (str, bytes)) for r in rows):
        rows = [epoch for part in rows for epoch in part]
    if not rows:
        raise ValueError("history_or_estimator has no epochs to plot (is the estimator fitted?)")
    if not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("history_or_estimator must hold one dict per epoch (skorch History rows)")

    keys = []
    for row in rows:
        for key, value in row.items():
            if key in _SKIP_KEYS or key in keys:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            keys.append(key)
    return {
        key: np.array(
            [
                float(r[key])
                if isinstance(r.get(key), numbers.Real) and not isinstance(r.get(key), bool)
                else np.nan
                for r in rows
            ]
        )
        for key in keys
    }


def plot_history(
    history_or_estimator, path, keys=None, *, title=None, figsize=(6.4, 4.0), dpi=100
):
    """Plot training curves (losses, and any other scores) over epochs to a PNG.

    Losses go on the left panel; other numeric columns (``valid_acc``, custom
    scoring callbacks) go on a right panel with their own scale, so a loss in the
    hundreds does not flatten an accuracy in [0, 1].

    Parameters
    ----------
    history_or_estimator : skorch History, list of dict, dict or estimator
        What to plot; see :func:`history_to_dict` for the accepted forms
        (``FineTuneClassifier().fit(X, y)`` itself works).
    path : str or path-like
        Where to write the PNG (``.png`` is appended when there is no suffix;
        parent folders are created).
    keys : list of str, default=None
        Columns to plot. ``None`` plots every numeric column.
    title : str, default=None
        Figure title.
    figsize : tuple of float, default=(6.4, 4.0)
        Figure size in inches; the PNG is ``figsize * dpi`` pixels.
    dpi : float, default=100
        Resolution in dots per inch.

    Returns
    -------
    path : pathlib.Path
        The PNG written.

    Raises
    ------
    ValueError
        If a name in ``keys`` is not in the history (the message lists those
        that are), or the history is empty.
    TypeError
        If no history can be found in ``history_or_estimator``.

    See Also
    --------
    plot_accuracy_matrix : Heatmap of a continual-learning accuracy matrix.

    Examples
    --------
    >>> from tlestimators.plotting import plot_history
    >>> history = [{"epoch": 1, "train_loss": 0.9, "valid_loss": 1.0, "valid_acc": 0.5},
    ...            {"epoch": 2, "train_loss": 0.5, "valid_loss": 0.7, "valid_acc": 0.8}]
    >>> plot_history(history, "/tmp/history.png").name
    'history.png'
    """
    figsize = _check_figsize(figsize, dpi)
    curves = history_to_dict(history_or_estimator)
    if keys is None:
        keys = list(curves)
    else:
        if isinstance(keys, str):
            keys = [keys]
        keys = list(keys)
        missing = [k for k in keys if k not in curves]
        if missing:
            raise ValueError(
                f"keys {missing!r} not found in the history; available columns: {sorted(curves)}"
            )
    if not keys:
        raise ValueError("history_or_estimator has no numeric columns to plot")
    path = _check_path(path)

    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if "loss" not in k]
    panels = [p for p in (losses, others) if p]
    fig = _new_figure(figsize, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for key in panel:
            values = curves[key]
            epochs = np.arange(1, len(values) + 1)
            # Markers keep a single-epoch history visible.
            ax.plot(epochs, values, marker="o" if len(values) < 30 else None, ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if panel is losses else "score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_accuracy_matrix(
    matrix, path, labels=None, *, title=None, figsize=(5.0, 4.5), dpi=100, fmt=".2f"
):
    """Draw a continual-learning accuracy matrix as an annotated heatmap PNG.

    Row ``i`` is the model after training on experience ``i``; column ``j`` is
    its accuracy on experience ``j``'s test set (the convention of
    Lopez-Paz & Ranzato, 2017, and :mod:`tlestimators.metrics`' continual
    metrics). Entries not evaluated yet (the upper triangle, in class-incremental
    runs) may be NaN and are left blank.

    Parameters
    ----------
    matrix : array-like of shape (n_experiences, n_experiences)
        Accuracies, normally in [0, 1]; NaN marks a cell not evaluated.
    path : str or path-like
        Where to write the PNG (``.png`` is appended when there is no suffix).
    labels : list of str, default=None
        One name per experience (``"exp 0"``, ``"exp 1"``, ... when ``None``).
    title : str, default=None
        Figure title.
    figsize : tuple of float, default=(5.0, 4.5)
        Figure size in inches; the PNG is ``figsize * dpi`` pixels.
    dpi : float, default=100
        Resolution in dots per inch.
    fmt : str, default=".2f"
        Format spec of the annotated values.

    Returns
    -------
    path : pathlib.Path
        The PNG written.

    Raises
    ------
    ValueError
        If ``matrix`` is not a square 2-D array of numbers, holds an infinite
        value, or ``labels`` does not have one entry per experience.

    See Also
    --------
    plot_history : Training curves over epochs.

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.

    Examples
    --------
    >>> from tlestimators.plotting import plot_accuracy_matrix
    >>> R = [[0.95, float("nan")], [0.70, 0.93]]
    >>> plot_accuracy_matrix(R, "/tmp/acc.png", labels=["task A", "task B"]).name
    'acc.png'
    """
    figsize = _check_figsize(figsize, dpi)
    try:
        R = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"matrix must be a square 2-D array of numbers, got {type(matrix).__name__}"
        ) from None
    if R.ndim != 2:
        raise ValueError(f"matrix must be a square 2-D array, got an array with shape {R.shape}")
    if R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(
            f"matrix must be a square 2-D array (n_experiences, n_experiences), got shape {R.shape}"
        )
    if np.isinf(R).any():
        raise ValueError("matrix must hold finite accuracies (NaN marks a cell not evaluated), got inf")
    n = R.shape[0]
    if labels is None:
        labels = [f"exp {i}" for i in range(n)]
    else:
        if isinstance(labels, str):
            raise ValueError(f"labels must be a list of {n} names, got the string {labels!r}")
        labels = [str(label) for label in labels]
        if len(labels) != n:
            raise ValueError(
                f"labels must have one name per experience ({n}), got {len(labels)}: {labels!r}"
            )
    path = _check_path(path)

    finite = R[np.isfinite(R)]
    # Accuracies live in [0, 1]; widen the scale only if the caller passes percentages.
    vmax = 1.0 if finite.size == 0 or finite.max() <= 1.0 else float(finite.max())
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0

    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(R), cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="accuracy")
    ax.set_xticks(range(n), labels=labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training on")
    threshold = vmin + 0.6 * (vmax - vmin)
    for i in range(n):
        for j in range(n):
            if np.isfinite(R[i, j]):
                ax.text(
                    j, i, format(R[i, j], fmt), ha="center", va="center", fontsize="small",
                    color="black" if R[i, j] > threshold else "white",
                )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
