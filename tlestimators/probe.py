"""A convex linear probe: multinomial logistic regression with its regularisation chosen by CV.

:class:`LinearProbeCV` is what scikit-learn users write by hand on frozen embeddings,
``make_pipeline(StandardScaler(), LogisticRegressionCV())``, in one estimator that also
runs on a GPU and hands back its solution as a ``torch.nn.Linear`` on the raw features
(so a fine-tuning head can start from it, as LP-FT does).

The objective is scikit-learn's, on scaled features ``Z = (X - mean_) / scale_``
(per-feature standardisation or one global scale, chosen by the same CV as ``C``)::

    C * sum_i s_i * log_loss(y_i, W z_i + b) + 0.5 * ||W||_F^2

binomial (one weight vector) for two classes and multinomial (one vector per class,
symmetric parametrisation) for more, with the intercept not penalised: the solution at a
given ``C`` is that of ``LogisticRegression(C=C)`` on the scaled features. It is
solved full batch by L-BFGS (scipy's L-BFGS-B, as scikit-learn's ``lbfgs``) on a loss and
gradient computed in torch, on the GPU when there is one; warm-started along the path of
``Cs`` from strong to weak regularisation in every fold (float32: it only ranks the Cs),
and refit in float64 on the CPU (float32 on CUDA).

This module sits low in the package (layer 2): it imports torch, numpy and scikit-learn
only, so that estimators of every kind can use it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import numbers
import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, check_cv
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

__all__ = ["LinearProbeCV", "clear_fit_memo", "fit_logistic", "global_scale",
           "zero_unresolved_features"]


#: Fitted probes of this process by a digest of everything their fit depends on. The
#: same fit asked again (in a search, every fine-tuning candidate's LP-FT probe stage on
#: a fold is one fit on the same fold's cached embeddings; or a user fitting two
#: FineTuneClassifiers on the same data) is copied from here instead of solved again. A
#: few hundred KB per entry (coefficients and the CV scores); :func:`clear_fit_memo`
#: empties it, as does clearing the feature cache; 0 turns it off.
FIT_MEMO_SIZE = 32
_FIT_MEMO: OrderedDict = OrderedDict()
_MEMO_LOCK = threading.Lock()


def clear_fit_memo() -> None:
    """Forget the fitted probes of :class:`LinearProbeCV` kept in this process (see
    ``FIT_MEMO_SIZE``); the next identical fit solves again."""
    with _MEMO_LOCK:
        _FIT_MEMO.clear()


def zero_unresolved_features(X):
    """``X`` with every feature whose spread is below the float resolution of its rows
    set to 0, for a probe that initialises a head the backbone then trains under (LP-FT,
    a DA head's warm start).

    all-MiniLM-L6-v2's unit-norm embeddings, for one, have dimensions that are ~1e-33 on
    every text. ``StandardScaler`` divides such a feature by its ~1e-33 spread, so the
    probe's weight on the raw feature is ~1e31: harmless while the backbone is frozen
    (the feature never moves, and :class:`LinearProbeCV` keeps the hand-written
    pipeline's exact standardisation for the frozen case), but once the backbone trains
    the first step moves that feature by orders of magnitude more than its spread and
    the logits explode (LP-FT on TREC: training loss 0.04 -> 335 on the second batch).
    Zeroed, the feature is constant, gets scale 1 and weight 0.
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.floating) or X.size == 0:
        return X
    res = np.finfo(X.dtype).eps * float(np.abs(X).max())
    dead = X.astype(np.float64).std(axis=0) < res
    if not dead.any():
        return X
    X = X.copy()
    X[:, dead] = 0
    return X


_BLAS = threading.local()


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread inside (re-entrant: a nested use costs nothing).

    L-BFGS-B's own vector updates are small BLAS calls: a multi-threaded BLAS pool only
    adds synchronisation (one LinearProbeCV fit on 100 x 1280: 0.4 s CPU with one BLAS
    thread, 17.9 s with two on a 2-core machine with one other busy process). Setting
    the limit costs ~1 ms (threadpoolctl inspects the loaded libraries), so a
    :class:`LinearProbeCV` fit sets it once around its 100 solves instead of per solve.
    """
    if getattr(_BLAS, "limited", False):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        _BLAS.limited = True
        try:
            yield
        finally:
            _BLAS.limited = False


def _resolve_device(device):
    """The torch device of ``device`` by the estimators' one rule
    (:func:`tlestimators._validation.resolve_device`: ``"auto"``/``None`` -> CUDA when
    available; CUDA asked for where there is none raises a ValueError naming it)."""
    from tlestimators._validation import resolve_device

    return torch.device(resolve_device(device))


def _loss_and_grad(W, b, X, y, Y, sw, inv_reg, binary, W0=None):
    """Mean weighted log-loss + penalty of the sklearn objective (scaled by 1 / sum(sw)).

    Gradients are written out rather than taken by autograd: it is the hot loop of the
    CV path and the closed forms halve its cost.
    """
    if binary:
        z = X @ W + b
        # softplus(z) - y z = log(1 + e^z) - y z, stable for large |z|
        loss = (sw * (torch.nn.functional.softplus(z) - y * z)).sum()
        g = sw * (torch.sigmoid(z) - y)
    else:
        z = X @ W.T + b
        logp = torch.log_softmax(z, dim=1)
        loss = -(sw * logp.gather(1, y[:, None]).squeeze(1)).sum()
        g = (logp.exp() - Y) * sw[:, None]
    D = W if W0 is None else W - W0
    loss = loss + 0.5 * inv_reg * (D * D).sum()
    gW = (g @ X if binary else g.T @ X) + inv_reg * D
    gb = g.sum(0)
    return loss, gW, gb


def fit_logistic(X, y, C, *, sample_weight=None, n_classes=None, coef=None, intercept=None,
                 max_iter=100, tol=1e-4, prior=None, multinomial=None):
    """Minimise scikit-learn's L2 logistic-regression objective by full-batch L-BFGS.

    scipy's L-BFGS-B (what scikit-learn's ``lbfgs`` solver runs, same options) steers;
    the loss and gradient are computed in torch on ``X``'s device and dtype, so a GPU
    does the passes over the data. (``torch.optim.LBFGS`` would do too, but building any
    torch optimizer imports ``torch._dynamo`` first, seconds on a loaded CPU.)

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, n_features)
        Features (already standardised if that is wanted), float64 or float32.
    y : torch.Tensor of shape (n_samples,)
        Class indices in ``[0, n_classes)``, int64.
    C : float
        Inverse regularisation strength, as in ``LogisticRegression``; ``np.inf`` for none.
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights (class weights already multiplied in).
    n_classes : int, default=None
        Number of classes; ``y.max() + 1`` when None. Two classes use the binomial loss.
    coef, intercept : torch.Tensor, default=None
        Warm start: shapes ``(n_features,)`` and ``()`` for two classes,
        ``(n_classes, n_features)`` and ``(n_classes,)`` otherwise.
    max_iter : int, default=100
        L-BFGS iterations.
    tol : float, default=1e-4
        Stop when every gradient entry of the objective scaled by ``1 / sum(sample_weight)``
        (scikit-learn's ``gtol``) is below ``tol``.
    prior : torch.Tensor, default=None
        Shrink the weights towards ``prior`` (shaped like ``coef``) instead of 0: the
        penalty is on ``coef - prior`` (the anchored few-shot probe's label-name prior).
    multinomial : bool, default=None
        Use the multinomial loss even for two classes (with ``coef`` of shape
        ``(2, n_features)``); ``None``/``False``: the binomial loss for two classes.

    Returns
    -------
    coef, intercept : torch.Tensor
        The solution, shaped like the warm start.
    n_iter : int
        Iterations used.
    converged : bool
        Whether the gradient criterion was met within ``max_iter``.
    """
    n, d = X.shape
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    binary = k == 2 and not multinomial
    sw = torch.ones(n, dtype=X.dtype, device=X.device) if sample_weight is None else sample_weight
    sw_sum = float(sw.sum())
    sw = sw / sw_sum
    inv_reg = 0.0 if not np.isfinite(C) else 1.0 / (C * sw_sum)
    if binary:
        yt = y.to(X.dtype)
        Y = None
        W = torch.zeros(d, dtype=X.dtype, device=X.device) if coef is None else coef.clone()
        b = torch.zeros((), dtype=X.dtype, device=X.device) if intercept is None else intercept.clone()
    else:
        yt = y
        Y = torch.nn.functional.one_hot(y, k).to(X.dtype)
        W = torch.zeros(k, d, dtype=X.dtype, device=X.device) if coef is None else coef.clone()
        b = torch.zeros(k, dtype=X.dtype, device=X.device) if intercept is None else intercept.clone()
    args = (X, yt, Y, sw, inv_reg, binary, prior)
    shape_W, n_W = W.shape, W.numel()

    def func(theta):
        # scipy drives L-BFGS in float64 on the host; the objective (all the work: two
        # passes over X) runs in torch on X's device and dtype
        t = torch.as_tensor(theta, device=X.device).to(X.dtype)
        with torch.no_grad():
            loss, gW, gb = _loss_and_grad(t[:n_W].view(shape_W), t[n_W:].view(b.shape), *args)
        g = torch.cat([gW.reshape(-1), gb.reshape(-1)]).double().cpu().numpy()
        return float(loss), g

    theta0 = torch.cat([W.reshape(-1), b.reshape(-1)]).double().cpu().numpy()
    with _one_blas_thread():
        res = minimize(func, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                                "ftol": 64 * float(np.finfo(np.float64).eps)})
    n_iter = int(res.nit)
    # L-BFGS also stops when the objective no longer decreases (ftol, as scikit-learn):
    # that is convergence too; only running out of iterations may not be
    converged = n_iter < max_iter or float(np.abs(res.jac).max()) <= tol
    theta = torch.as_tensor(res.x, device=X.device).to(X.dtype)
    W, b = theta[:n_W].view(shape_W).clone(), theta[n_W:].view(b.shape).clone()
    return W, b, n_iter, converged


class LinearProbeCV(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on scaled features, scaling and C chosen by stratified CV.

    The convex linear probe of transfer learning. With ``scaling="per_feature"`` it is
    ``make_pipeline(StandardScaler(), LogisticRegressionCV(Cs, cv))`` on the same
    features; the default, ``scaling="auto"``, lets the same CV also choose between that
    per-feature standardisation and one global scale that keeps the embedding's
    geometry (see Notes). It is solved full batch by L-BFGS (scipy's L-BFGS-B, as
    sklearn) on a loss computed in torch (on CUDA when available), with each fold's path warm-started from
    strong to weak regularisation (in float32: it only ranks the Cs). The chosen
    model is refit on all the data and exposed on the RAW features (the standardisation
    is folded into ``coef_`` and ``intercept_``), also as a ``torch.nn.Linear`` through
    :meth:`to_linear`.

    Parameters
    ----------
    Cs : int or array-like of float, default=10
        Inverse regularisation strengths tried. An int ``n`` means ``np.logspace(-4, 4, n)``
        (scikit-learn's grid); an array is used as given (sorted ascending).
    cv : int, cross-validation generator or iterable, default=5
        Stratified K-fold with this many folds for an int (reduced to the size of the
        smallest class when a class is smaller; with fewer than 2 members in some class no
        CV is run and the middle of the grid is used). Otherwise anything
        :func:`sklearn.model_selection.check_cv` accepts.
    scoring : {"accuracy", "neg_log_loss"}, default="accuracy"
        What the CV maximises (``LogisticRegressionCV``'s default is accuracy). Ties in
        accuracy are broken by the lower held-out log-loss.
    scaling : {"auto", "per_feature", "global"}, default="auto"
        How the features are scaled before the penalised fit (the penalty acts on the
        scaled features). ``"per_feature"``: every feature centred and divided by its own
        standard deviation (``StandardScaler``). ``"global"``: centred, then all divided
        by one number, the root mean square of the centred features, so directions
        keep their relative lengths, as in a ``LogisticRegression`` on the raw
        embeddings. ``"auto"``: both are cross-validated on the same folds; the
        scaling whose best held-out log-loss (mean over the folds, best over the Cs)
        is lower is kept, and its C is then chosen by ``scoring``. With no CV (a class
        with one member), ``"global"``.
    class_weight : dict, "balanced" or None, default=None
        Weights per class multiplied into the sample weights, as in scikit-learn.
    max_iter : int, default=100
        L-BFGS iterations per fit along the CV path (``LogisticRegressionCV``'s default).
        The final refit, solved to ``tol / 100``, may take ``10 * max_iter``: L-BFGS
        converges linearly, and a 100x smaller gradient takes several times the
        iterations on a weakly regularised problem (large ``C``, as many features as
        samples), where 100 iterations often do not reach even ``tol`` (scikit-learn's
        ``LogisticRegression(C=167)`` warns there too).
    tol : float, default=1e-4
        Gradient tolerance of each fit along the CV path (scikit-learn's ``gtol`` on its
        scaled objective); the final refit runs to ``tol / 100``. A
        :class:`~sklearn.exceptions.ConvergenceWarning` is raised when the refit stops at
        its iteration limit short of that tolerance. (A looser path, ``1e-3``, halves
        the cost, but weakly regularised fits then stop near their warm start, so a
        much larger C ties in CV with the one it started from and is refit as a
        different model: C=1e4 instead of 167 on a test problem.)
    device : str, torch.device or None, default="auto"
        Where to solve: "auto" (or None) takes CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Shuffles the stratified folds when given; None keeps the data order, as
        ``LogisticRegressionCV`` does.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    C_ : float
        The chosen inverse regularisation strength (on the scaled features).
    scaling_ : {"per_feature", "global"}
        The scaling used (the chosen one under ``scaling="auto"``).
    Cs_ : ndarray of shape (n_Cs,)
        The grid that was searched, ascending.
    cv_scores_ : ndarray of shape (n_folds, n_Cs)
        Held-out score (``scoring``) per fold and C under ``scaling_``; empty when no CV
        could run.
    cv_scores_by_scaling_ : dict of str to ndarray of shape (n_folds, n_Cs)
        The same for every scaling that was cross-validated (both under ``"auto"``).
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Weights on the raw features (binary: one row, the positive class, as in sklearn).
    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercepts on the raw features.
    mean_, scale_ : ndarray of shape (n_features,)
        The scaling used: the mean of each feature, and its standard deviation
        (``StandardScaler``'s; constant features get scale 1) under ``"per_feature"`` or
        the one global scale repeated under ``"global"``.
    n_iter_ : int
        L-BFGS iterations of the final refit.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined when X has string column names.

    See Also
    --------
    sklearn.linear_model.LogisticRegressionCV : the same model, solved by scipy.

    Notes
    -----
    The features are scaled once on all of ``X`` (not per fold), exactly what a
    pipeline with a ``StandardScaler`` in front of ``LogisticRegressionCV`` does.

    Why the scaling is chosen too: per-feature standardisation gives every embedding
    dimension the same prior weight, however little it varies. On a convnet's image
    embeddings the low-variance dimensions are mostly noise, and with few labels that
    costs accuracy against a plain ``LogisticRegression`` on the raw embeddings, which
    keeps the embedding's geometry. On sentence embeddings the standardised probe is
    as good or better. Neither wins everywhere, so by default the CV that chooses
    ``C`` also chooses the scaling; ``results/defaults.md`` has the measurements.

    A fit is deterministic given its rows, labels, weights, parameters and device, so the
    last ``FIT_MEMO_SIZE`` fits of the process are kept by a digest of those: the same fit
    asked again is copied instead of solved (with an integer ``cv`` and an integer or
    None ``random_state``). In a search over strategies the LP-FT probe stage of every
    fine-tuning candidate on a fold is the same fit on the same cached embeddings, and
    so is the probe stage of a ``FineTuneClassifier`` fitted again on the same data (a
    ``FrozenFeatureClassifier``'s probe is a different fit: it chooses the scaling,
    LP-FT's keeps ``"per_feature"``). A copied fit does not repeat the first one's
    warnings. :func:`clear_fit_memo` (or clearing the feature
    cache) forgets them, e.g. to time fits.

    References
    ----------
    Kumar, Raghunathan, Jones, Ma, Liang. "Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", ICLR 2022 (the linear probe that LP-FT starts from).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from tlestimators.probe import LinearProbeCV
    >>> X, y = load_iris(return_X_y=True)
    >>> probe = LinearProbeCV(device="cpu").fit(X, y)
    >>> round(probe.score(X, y), 2) >= 0.95
    True
    >>> probe.to_linear()
    Linear(in_features=4, out_features=3, bias=True)
    """

    _parameter_constraints: dict = {
        "Cs": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "cv": ["cv_object"],
        "scoring": [StrOptions({"accuracy", "neg_log_loss"})],
        "scaling": [StrOptions({"auto", "per_feature", "global"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
    }

    def __init__(self, *, Cs=10, cv=5, scoring="accuracy", scaling="auto", class_weight=None,
                 max_iter=100, tol=1e-4, device="auto", random_state=None):
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.scaling = scaling
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _grid(self):
        if isinstance(self.Cs, numbers.Integral):
            return np.logspace(-4, 4, int(self.Cs))
        Cs = np.sort(np.asarray(self.Cs, dtype=float).ravel())
        if Cs.size == 0 or not np.all(Cs > 0):
            raise ValueError(f"The 'Cs' parameter of LinearProbeCV must hold positive floats; got {self.Cs!r}.")
        return Cs

    def _folds(self, X, y_enc):
        counts = np.bincount(y_enc)
        if isinstance(self.cv, numbers.Integral):
            n_splits = min(int(self.cv), int(counts.min()))
            if n_splits < 2:
                return []
            shuffle = self.random_state is not None
            cv = StratifiedKFold(n_splits, shuffle=shuffle, random_state=self.random_state if shuffle else None)
        else:
            cv = check_cv(self.cv, y_enc, classifier=True)
        return list(cv.split(X, y_enc))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Standardise X, choose C by CV, refit on all of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (e.g. frozen embeddings).
        y : array-like of shape (n_samples,)
            Labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights per sample (the CV scores are weighted by them too).

        Returns
        -------
        self : LinearProbeCV
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        check_classification_targets(y)
        le = LabelEncoder().fit(y)
        self.classes_ = le.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"LinearProbeCV needs samples of at least 2 classes in y, but y contains only one "
                f"class: {self.classes_[0]!r}."
            )
        y_enc = le.transform(y)
        k = len(self.classes_)
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        key = self._memo_key(X, y_enc, sw)
        if key is not None:
            with _MEMO_LOCK:
                state = _FIT_MEMO.get(key)
                if state is not None:
                    _FIT_MEMO.move_to_end(key)
            if state is not None:  # this very fit was solved before in this process
                self.__dict__.update(copy.deepcopy(state))
                return self
        score_sw = sw.copy()
        if self.class_weight is not None:
            if isinstance(self.class_weight, dict) and not set(self.class_weight) <= set(self.classes_):
                raise ValueError(
                    f"The 'class_weight' dict of LinearProbeCV must have class labels as keys; "
                    f"classes are {list(self.classes_)}, got keys {list(self.class_weight)}."
                )
            cw = compute_class_weight(self.class_weight, classes=self.classes_, y=y, sample_weight=sw)
            sw = sw * cw[y_enc]

        Xf = X.astype(np.float64, copy=False)
        # StandardScaler's own statistics, so that the probe equals the hand-written
        # pipeline (its rule for near-constant features included)
        scaler = StandardScaler().fit(Xf)
        scalings = ("per_feature", "global") if self.scaling == "auto" else (self.scaling,)
        stats = {s: _scaling_stats(scaler, s) for s in scalings}

        device = _resolve_device(self.device)
        yt = torch.as_tensor(y_enc, dtype=torch.int64).to(device)
        sw32 = torch.as_tensor(sw, dtype=torch.float32).to(device)
        self.Cs_ = self._grid()
        folds = self._folds(X, y_enc)
        # one CV path per scaling, on the same folds: (scores, log-losses, solutions)
        with _one_blas_thread():
            paths = {s: self._cv_path((Xf - mean) / scale, device, yt, sw32, score_sw, y_enc, folds, k)
                     for s, (mean, scale) in stats.items()}
        del sw32

        if folds:
            # the scaling by its best mean held-out log-loss: one choice between two, made
            # on a proper score, which on small folds is far steadier than accuracy (on
            # 8 labels per class, choosing it by accuracy lost 2.3 points on digits)
            best_loss = {s: paths[s][1].mean(0).min() for s in scalings}
            scaling = min(scalings, key=best_loss.get)
            mean_acc, mean_loss = paths[scaling][0].mean(0), paths[scaling][1].mean(0)
            if self.scoring == "neg_log_loss":
                best = int(np.argmin(mean_loss))
            else:
                # ties in accuracy (common on small folds) go to the better-calibrated C
                tied = np.flatnonzero(mean_acc >= mean_acc.max() - 1e-12)
                best = int(tied[np.argmin(mean_loss[tied])])
            self.cv_scores_by_scaling_ = {
                s: paths[s][0] if self.scoring == "accuracy" else -paths[s][1] for s in scalings}
            fold_solutions = paths[scaling][2]
            W0 = torch.stack([sol[best][0] for sol in fold_solutions]).mean(0)
            b0 = torch.stack([sol[best][1] for sol in fold_solutions]).mean(0)
        else:
            # no CV (a class with one member): the middle of the grid, on the global
            # scaling unless one was asked for; one scale estimated from a handful of
            # rows is steadier than one per feature
            scaling = "global" if self.scaling == "auto" else self.scaling
            best = (len(self.Cs_) - 1) // 2
            self.cv_scores_by_scaling_ = {s: np.empty((0, len(self.Cs_))) for s in scalings}
            W0 = b0 = None
        del paths
        self.cv_scores_ = self.cv_scores_by_scaling_[scaling]
        self.scaling_ = scaling
        self.C_ = float(self.Cs_[best])
        self.mean_, self.scale_ = stats[scaling]
        Zs = (Xf - self.mean_) / self.scale_

        dtype = torch.float64 if device.type == "cpu" else torch.float32
        Z = torch.as_tensor(Zs, dtype=dtype).to(device)
        swt = torch.as_tensor(sw, dtype=dtype).to(device)
        W0, b0 = (None, None) if W0 is None else (W0.to(dtype), b0.to(dtype))
        # A gradient of 1e-4 can still be far from the optimum along weakly regularised
        # directions (seen: 0.3 in probability on SMS spam with a warm start), so the one
        # model that is kept is solved 100x tighter than the path. That takes more
        # iterations than the path's budget where the penalty is weak (the curvature along
        # directions the data do not pin down is only 1 / (C * n)): 213-414 on the
        # tests' C=167-1291 problems, where sklearn's LogisticRegression needs 120-281 to
        # reach even tol=1e-4 (and warns at its default 100). The refit gets 10x the path's budget; one
        # full-data solve, against the path's n_folds * n_Cs.
        refit_iter = 10 * self.max_iter
        W, b, self.n_iter_, converged = fit_logistic(Z, yt, self.C_, sample_weight=swt, n_classes=k, coef=W0,
                                                     intercept=b0, max_iter=refit_iter, tol=self.tol / 100)
        if not converged:
            warnings.warn(
                f"LinearProbeCV's final L-BFGS fit did not reach tol/100={self.tol / 100:g} in "
                f"10 * max_iter={refit_iter} iterations at C={self.C_:.3g}; increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        W = W.cpu().numpy().astype(np.float64).reshape(-1 if k == 2 else k, X.shape[1])
        W = W.reshape(1, -1) if k == 2 else W
        b = np.atleast_1d(b.cpu().numpy().astype(np.float64))
        self.coef_ = W / self.scale_
        self.intercept_ = b - self.coef_ @ self.mean_
        if key is not None:
            state = copy.deepcopy({k: v for k, v in vars(self).items() if k.endswith("_")})
            with _MEMO_LOCK:
                _FIT_MEMO[key] = state
                while len(_FIT_MEMO) > FIT_MEMO_SIZE:
                    _FIT_MEMO.popitem(last=False)
        return self

    def _cv_path(self, Zs, device, yt, sw32, score_sw, y_enc, folds, k):
        """Held-out accuracy and log-loss of every C on every fold (arrays of shape
        ``(n_folds, n_Cs)``) and each fold's solutions, on the scaled features ``Zs``.

        The path runs in float32: it only has to rank the Cs, and float32 halves the
        memory traffic that bounds every L-BFGS evaluation (the refit is float64 on the
        CPU). Each fold walks the grid from strong to weak regularisation, warm-started.
        """
        Z32 = torch.as_tensor(Zs, dtype=torch.float32).to(device)
        scores = np.empty((len(folds), len(self.Cs_)))
        losses = np.empty_like(scores)
        fold_solutions = []
        for f, (tr, te) in enumerate(folds):
            tr_t, te_t = torch.as_tensor(tr, device=device), torch.as_tensor(te, device=device)
            Z_tr, y_tr, sw_tr, Z_te = Z32[tr_t], yt[tr_t], sw32[tr_t], Z32[te_t]
            W = b = None
            sols = []
            w_te = score_sw[te]
            for j, C in enumerate(self.Cs_):
                W, b, _, _ = fit_logistic(Z_tr, y_tr, C, sample_weight=sw_tr, n_classes=k,
                                          coef=W, intercept=b, max_iter=self.max_iter, tol=self.tol)
                sols.append((W, b))
                logp = _log_proba_t(Z_te, W, b).double().cpu().numpy()
                scores[f, j] = np.average(logp.argmax(1) == y_enc[te], weights=w_te)
                losses[f, j] = -np.average(logp[np.arange(len(te)), y_enc[te]], weights=w_te)
            fold_solutions.append(sols)
        return scores, losses, fold_solutions

    def _memo_key(self, X, y_enc, sw):
        """A digest of everything this fit depends on (the rows, labels, weights, classes,
        parameters and device), or None when it cannot be told from them (a CV splitter
        or a RandomState: their state changes with use)."""
        if FIT_MEMO_SIZE <= 0 or not isinstance(self.cv, numbers.Integral) or not (
                self.random_state is None or isinstance(self.random_state, numbers.Integral)):
            return None
        h = hashlib.blake2b(digest_size=20)
        X = np.ascontiguousarray(X)
        for part in (X, np.ascontiguousarray(y_enc), np.ascontiguousarray(sw)):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(part.tobytes())
        params = sorted(self.get_params().items())
        h.update(repr((params, self.classes_.tolist(), str(_resolve_device(self.device)),
                       getattr(self, "feature_names_in_", None) is not None and
                       self.feature_names_in_.tolist())).encode())
        return h.digest()

    # -------------------------------------------------------------- predict
    def decision_function(self, X):
        """Logits on X: shape (n_samples,) for two classes (positive class), else (n_samples, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        z = X.astype(np.float64, copy=False) @ self.coef_.T + self.intercept_
        return z.ravel() if z.shape[1] == 1 else z

    def predict_log_proba(self, X):
        """Log class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        z = self.decision_function(X)
        if z.ndim == 1:
            z = np.c_[np.zeros_like(z), z]
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """Most probable class per row."""
        z = self.decision_function(X)
        idx = (z > 0).astype(int) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[idx]

    def to_linear(self, dtype=torch.float32):
        """The fitted probe as ``torch.nn.Linear(n_features, n_classes)`` on raw features.

        Its softmax equals :meth:`predict_proba`. For two classes it has two outputs
        ``(-z / 2, z / 2)`` with ``z`` the :meth:`decision_function`, so their difference is
        ``z``; for more classes its outputs are the decision function itself.
        """
        check_is_fitted(self)
        W, b = self.coef_, self.intercept_
        if W.shape[0] == 1:
            W = np.vstack([-W / 2, W / 2])
            b = np.r_[-b / 2, b / 2]
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W, dtype=dtype))
            lin.bias.copy_(torch.as_tensor(b, dtype=dtype))
        return lin


def global_scale(mean, var):
    """One scale for every feature: the root mean square of the centred features
    (``sqrt(mean(var))``), so the average feature has unit variance while the geometry
    of the representation (relative feature scales, distances up to a factor) is kept.
    1.0 when every feature is constant (to the float resolution of ``mean``). The rule
    of :class:`LinearProbeCV`'s ``scaling="global"`` and of the DA estimators'
    ``standardize="global"``."""
    rms = float(np.sqrt(np.mean(var)))
    tiny = 10 * np.finfo(np.float64).eps * max(1.0, float(np.abs(mean).max()))
    return rms if np.isfinite(rms) and rms > tiny else 1.0


def _scaling_stats(scaler, scaling):
    """``(mean, scale)`` vectors of a probe's input scaling from a fitted ``StandardScaler``.

    ``"per_feature"``: the scaler's own, every feature to unit variance. ``"global"``: the
    same centring, then :func:`global_scale` for all features (the average feature has
    unit variance, so the grid of ``C`` means about the same thing in both): the L2
    penalty then treats all directions of the embedding space alike, as a
    ``LogisticRegression`` on the raw embeddings does.
    """
    if scaling == "per_feature":
        return scaler.mean_, scaler.scale_
    return scaler.mean_, np.full_like(scaler.scale_, global_scale(scaler.mean_, scaler.var_))


def _log_proba_t(Z, W, b):
    if W.ndim == 1:
        z = Z @ W + b
        return torch.stack([-torch.nn.functional.softplus(z), -torch.nn.functional.softplus(-z)], dim=1)
    return torch.log_softmax(Z @ W.T + b, dim=1)
