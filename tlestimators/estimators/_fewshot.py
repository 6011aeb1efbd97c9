"""Few-shot refinement of text-derived class weights, for the zero-shot classifiers.

A zero-shot classifier scores an input by ``logit_scale * cos(z, t_c)`` with ``t_c`` the
unit text embedding of class ``c`` (the rows of ``T``). Given a few labeled inputs
(unit embeddings ``Z``, class codes ``y``) these functions compute better weights:

- :func:`prototype_weights`: the mean labeled embedding per class (Tip-Adapter's cache in
  its simplest form, Zhang et al. 2022);
- :func:`anchored_probe`: multinomial logistic regression on ``logit_scale * Z @ W.T + b``
  started at ``W = T`` and pulled back to it by ``reg * ||W - T||^2``, solved by
  :func:`tlestimators.probe.fit_logistic` (full-batch L-BFGS, as CLIP's linear probes);
- :func:`mix` interpolates either with the text weights (WiSE-FT, Wortsman et al. 2022)
  and :func:`select_alpha` picks the mixing weight by stratified CV.

:func:`fit_few_shot` runs the whole recipe and is what the estimators call.
"""

from __future__ import annotations

import numpy as np
import torch

from tlestimators.probe import fit_logistic

__all__ = ["ALPHA_GRID", "normalize", "prototype_weights", "anchored_probe", "mix",
           "select_alpha", "fit_few_shot"]

#: Mixing weights tried by ``few_shot_alpha="auto"`` (0: zero-shot, 1: labeled data only).
ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def normalize(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(n, 1e-12)


def prototype_weights(Z, y, T):
    """Unit mean embedding of each class's labeled rows (the text weight for a class
    without any), and zero intercepts."""
    P = T.copy()
    for c in range(len(T)):
        if np.any(y == c):
            P[c] = normalize(Z[y == c].mean(axis=0))
    return P, np.zeros(len(T))


def anchored_probe(Z, y, T, *, logit_scale, reg, max_iter):
    """Logistic regression on ``logit_scale * Z @ W.T + b`` minimising
    ``mean cross-entropy + reg * ||W - T||^2``, started at ``W = T, b = 0``; returns
    ``W, b`` and the L-BFGS iterations.

    Convex and small (n_classes x embed_dim): full-batch L-BFGS, deterministic, no
    learning rate to tune. Two classes keep one weight vector per class (softmax), so
    that ``W`` stays comparable with ``T`` row by row.
    """
    n = len(y)
    X = torch.as_tensor(logit_scale * Z, dtype=torch.float64)
    Tt = torch.as_tensor(T, dtype=torch.float64)
    # fit_logistic's penalty is 0.5 / (C * n) * ||W - T||^2 on the mean loss
    C = np.inf if reg == 0 else 1.0 / (2.0 * reg * n)
    W, b, n_iter, _ = fit_logistic(X, torch.as_tensor(y, dtype=torch.int64), C, n_classes=len(T),
                                   coef=Tt, prior=Tt, multinomial=True, max_iter=max_iter, tol=1e-6)
    W, b = W.numpy(), b.numpy()
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        from tlestimators.exceptions import TrainingDivergedError

        raise TrainingDivergedError("the few-shot linear probe diverged (non-finite weights); "
                                    "increase reg.")
    return W, b, n_iter


def _weights(kind, Z, y, T, logit_scale, reg, max_iter):
    if kind == "prototype":
        return (*prototype_weights(Z, y, T), 0)
    return anchored_probe(Z, y, T, logit_scale=logit_scale, reg=reg, max_iter=max_iter)


def mix(kind, T, W, b, alpha):
    """``(1 - alpha) * T + alpha * W`` (renormalised for prototypes) and ``alpha * b``."""
    if kind == "prototype":
        return normalize((1 - alpha) * T + alpha * W), np.zeros(len(T))
    return (1 - alpha) * T + alpha * W, alpha * b


def select_alpha(kind, Z, y, T, *, logit_scale, reg, max_iter, seed=None):
    """The alpha of :data:`ALPHA_GRID` with the best stratified-CV accuracy (ties: the lower
    CV log-loss); 0.5 when some class has a single labeled row."""
    from scipy.special import log_softmax
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=len(T))
    k = int(min(5, counts[counts > 0].min()))
    if k < 2:
        return 0.5
    folds = StratifiedKFold(k, shuffle=True, random_state=0 if seed is None else seed)
    acc = np.zeros(len(ALPHA_GRID))
    nll = np.zeros(len(ALPHA_GRID))
    for tr, va in folds.split(Z, y):
        W, b, _ = _weights(kind, Z[tr], y[tr], T, logit_scale, reg, max_iter)
        for i, a in enumerate(ALPHA_GRID):
            Wa, ba = mix(kind, T, W, b, a)
            logits = logit_scale * Z[va] @ Wa.T + ba
            acc[i] += np.mean(logits.argmax(1) == y[va])
            nll[i] -= log_softmax(logits, axis=1)[np.arange(len(va)), y[va]].mean()
    best = max(range(len(ALPHA_GRID)), key=lambda i: (round(acc[i], 9), -nll[i]))
    return float(ALPHA_GRID[best])


def fit_few_shot(kind, Z, y, T, *, alpha, logit_scale, reg, max_iter, seed=None):
    """Class weights, intercepts, the alpha used and the probe's L-BFGS iterations (0 for
    prototypes), from unit embeddings ``Z``.

    Parameters
    ----------
    kind : {"prototype", "linear"}
    Z : ndarray of shape (n_samples, dim)
        L2-normalised embeddings of the labeled inputs.
    y : ndarray of shape (n_samples,)
        Class codes in ``[0, len(T))``.
    T : ndarray of shape (n_classes, dim)
        Unit text weights (the zero-shot classifier).
    alpha : float or "auto"
        Weight of the labeled-data weights; "auto": :func:`select_alpha`.
    logit_scale, reg, max_iter : float, float, int
        Cosine multiplier, pull to ``T`` and L-BFGS iterations of the linear probe.
    seed : int or None
        Seeds the CV folds of ``alpha="auto"``.
    """
    from threadpoolctl import threadpool_limits

    # The problems are tiny: BLAS threads only add synchronisation, which on a busy
    # machine costs milliseconds per L-BFGS step.
    with threadpool_limits(1):
        W, b, n_iter = _weights(kind, Z, y, T, logit_scale, reg, max_iter)
        if isinstance(alpha, str):  # "auto"
            alpha = select_alpha(kind, Z, y, T, logit_scale=logit_scale, reg=reg,
                                 max_iter=max_iter, seed=seed)
        coef, intercept = mix(kind, T, W, b, float(alpha))
    return coef, intercept, float(alpha), n_iter
