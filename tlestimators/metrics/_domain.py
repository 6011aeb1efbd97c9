"""Unsupervised model-selection scorers for domain adaptation (no target labels).

Each scorer follows sklearn's scorer signature ``scorer(estimator, X, y)`` and returns
"greater is better", so it plugs into ``GridSearchCV(scoring=...)`` and
``cross_val_score``. The scored data must hold both domains: labeled source rows and
target rows marked by ``y == -1`` (or by ``sample_domain < 0`` when given). Use
:class:`tlestimators.model_selection.SourceTargetKFold` so every fold keeps both.

- :class:`PredictionEntropyScorer`: confident target predictions (low entropy);
- :class:`ImportanceWeightedScorer`: source accuracy re-weighted by density ratios
  from a domain classifier (Sugiyama et al., 2007);
- :class:`DeepEmbeddedValidationScorer`: DEV, the importance-weighted risk with a
  control variate, in the adapted feature space (You et al., 2019);
- :class:`CircularValidationScorer`: reverse validation, training the method back from
  pseudo-labeled target to source (Zhong et al., 2010; Ganin et al., 2016).
"""

from __future__ import annotations

import numpy as np

from tlestimators.data import num_samples, parse_domains, take

__all__ = [
    "prediction_entropy",
    "PredictionEntropyScorer",
    "ImportanceWeightedScorer",
    "DeepEmbeddedValidationScorer",
    "CircularValidationScorer",
    "domain_density_ratio",
]


_NEED_SPLITTER = (
    "Each validation fold must hold target rows: a plain KFold/StratifiedKFold over "
    "source-then-target data leaves some folds without any. Use "
    "tlestimators.model_selection.SourceTargetKFold (or SourceTargetShuffleSplit) as cv=, "
    "or DomainAdaptationSearchCV, which picks it for you."
)


def _split_domains(y, sample_domain, n, who):
    """Source / target row indices of the scored data; errors name the scorer."""
    doms = parse_domains(y, sample_domain, n_samples=n, who=who, require_target=True,
                         context=_NEED_SPLITTER)
    return doms.source_index, doms.target_index


def _require_source(src, who):
    if len(src) == 0:
        raise ValueError(
            f"{who} needs labeled source samples in the scored data, but all rows are target "
            "samples. Use tlestimators.model_selection.SourceTargetKFold."
        )


def prediction_entropy(proba, normalize=True):
    """Mean Shannon entropy of predicted class distributions (rows of ``proba``).

    With ``normalize=True`` it is divided by ``log(n_classes)`` (0 = certain, 1 = uniform).
    """
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    if p.ndim != 2:
        raise ValueError(f"proba must be 2-D (n_samples, n_classes), got shape {p.shape}.")
    h = -(p * np.log(p)).sum(axis=1)
    if normalize and p.shape[1] > 1:
        h = h / np.log(p.shape[1])
    return float(h.mean())


class _DAScorer:
    """sklearn-style scorer: ``scorer(estimator, X, y, sample_domain=None)``."""

    def _name(self):
        return type(self).__name__

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{self._name()}({params})"


class PredictionEntropyScorer(_DAScorer):
    """Negative mean prediction entropy on the target rows (higher = more confident).

    Cheap and label-free, but it rewards over-confident models: use it to compare
    settings of one method, not to tell a good model from a collapsed one.

    Examples
    --------
    >>> from tlestimators.metrics import PredictionEntropyScorer
    >>> scorer = PredictionEntropyScorer()   # GridSearchCV(..., scoring=scorer)
    """

    def __call__(self, estimator, X, y=None, sample_domain=None):
        _, tgt = _split_domains(y, sample_domain, num_samples(X), self._name())
        return -prediction_entropy(estimator.predict_proba(take(X, tgt)))


def _transformer(estimator):
    """What maps ``X`` to the model's features: the estimator's own ``transform``, or
    for a pipeline ending in a classifier, every step before it (an embedder, a scaler,
    a skada adapter); None when there is neither."""
    if hasattr(estimator, "transform"):
        return estimator
    steps = getattr(estimator, "steps", None)
    if steps and len(steps) > 1:
        return estimator[:-1]
    return None


def _features(estimator, X, space):
    if space == "transform":
        transformer = _transformer(estimator)
        if transformer is None:
            raise ValueError(
                f"space='transform' needs an estimator with transform() or a pipeline "
                f"with steps before its classifier; {type(estimator).__name__} has "
                "neither. Use space='input'."
            )
        return transformer.transform(X)
    if space == "input":
        return X
    if space == "model":
        # the model's own feature space where it has one (DEV's intent), else the input
        transformer = _transformer(estimator)
        return X if transformer is None else transformer.transform(X)
    if space == "auto":
        is_matrix = hasattr(X, "tocsr") or (
            isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "iuf"
        )
        if is_matrix:
            return X
        return _features(estimator, X, "transform")
    raise ValueError(
        f"space must be 'auto', 'input', 'model' or 'transform', got {space!r}."
    )


def domain_density_ratio(F_source, F_target, domain_classifier=None, clip=None):
    """Importance weights ``w(x) = p_target(x) / p_source(x)`` at the source rows.

    A probabilistic domain classifier (default: standardised logistic regression)
    learns target vs source; ``w = n_s / n_t * P(target | x) / P(source | x)``.

    Parameters
    ----------
    F_source, F_target : array-like or sparse matrix
        Features of the source and target rows.
    domain_classifier : classifier with predict_proba, default=None
    clip : float, default=None
        Upper bound on the weights (variance control).

    Returns
    -------
    w : ndarray of shape (n_source,)
    """
    from scipy import sparse
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    ns, nt = num_samples(F_source), num_samples(F_target)
    if sparse.issparse(F_source) or sparse.issparse(F_target):
        F = sparse.vstack([sparse.csr_matrix(F_source), sparse.csr_matrix(F_target)]).tocsr()
        scaler = MaxAbsScaler()
    else:
        F = np.vstack([np.asarray(F_source, dtype=np.float64),
                       np.asarray(F_target, dtype=np.float64)])
        scaler = StandardScaler()
    d = np.r_[np.zeros(ns, dtype=int), np.ones(nt, dtype=int)]
    clf = (make_pipeline(scaler, LogisticRegression(C=1.0, max_iter=1000))
           if domain_classifier is None else clone(domain_classifier))
    clf.fit(F, d)
    p = np.clip(clf.predict_proba(F[:ns])[:, 1], 1e-6, 1 - 1e-6)
    w = (ns / nt) * p / (1 - p)
    if clip is not None:
        w = np.minimum(w, clip)
    return w


def _source_log_loss(estimator, X_src, y_src, who):
    proba = np.asarray(estimator.predict_proba(X_src), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    y_src = np.asarray(y_src)
    pos = np.searchsorted(classes, y_src)
    pos = np.clip(pos, 0, len(classes) - 1)
    unknown = classes[pos] != y_src
    if unknown.any():
        raise ValueError(
            f"{who}: source label {y_src[unknown][0]!r} is not among the estimator's classes "
            f"{classes.tolist()}."
        )
    p_true = np.clip(proba[np.arange(len(pos)), pos], 1e-12, 1.0)
    correct = proba.argmax(axis=1) == pos
    return -np.log(p_true), correct


class ImportanceWeightedScorer(_DAScorer):
    """Importance-weighted validation (IWV): source accuracy (or log-loss) weighted by
    ``p_target(x) / p_source(x)`` estimated by a domain classifier.

    Parameters
    ----------
    domain_classifier : sklearn classifier, default=None
        Probabilistic source-vs-target classifier; default: standardised logistic
        regression.
    space : {"auto", "input", "transform"}, default="auto"
        Where the density ratio is estimated: the raw input (2-D numeric ``X``), the
        estimator's ``transform`` output (for a pipeline: the output of the steps
        before its classifier), or ``"auto"`` (input when ``X`` is a numeric matrix,
        else ``transform``).
    metric : {"accuracy", "log_loss"}, default="accuracy"
        Weighted accuracy, or the negative weighted mean log-loss.
    clip : float, default=None
        Upper bound on the weights.

    References
    ----------
    .. [1] M. Sugiyama, M. Krauledat and K.-R. Mueller. "Covariate Shift Adaptation by
       Importance Weighted Cross Validation". JMLR 8, 2007.
    """

    def __init__(self, domain_classifier=None, space="auto", metric="accuracy", clip=None):
        self.domain_classifier = domain_classifier
        self.space = space
        self.metric = metric
        self.clip = clip

    def __call__(self, estimator, X, y=None, sample_domain=None):
        who = self._name()
        if self.metric not in ("accuracy", "log_loss"):
            raise ValueError(f"metric must be 'accuracy' or 'log_loss', got {self.metric!r}.")
        src, tgt = _split_domains(y, sample_domain, num_samples(X), who)
        _require_source(src, who)
        F = _features(estimator, X, self.space)
        w = domain_density_ratio(take(F, src), take(F, tgt), self.domain_classifier, self.clip)
        X_src = take(X, src)
        loss, correct = _source_log_loss(estimator, X_src, np.asarray(y)[src], who)
        if self.metric == "accuracy":
            return float(np.sum(w * correct) / np.sum(w))
        return -float(np.mean(w * loss))


class DeepEmbeddedValidationScorer(_DAScorer):
    """Deep embedded validation (DEV): the importance-weighted source risk with a
    control variate that cancels the weights' variance, estimated in the adapted
    feature space. Returns ``-DEV`` (greater is better).

    Parameters
    ----------
    domain_classifier : sklearn classifier, default=None
        Source-vs-target classifier for the density ratio (default: standardised
        logistic regression on the features).
    space : {"transform", "input", "model", "auto"}, default="transform"
        Features for the density ratio; DEV uses the model's own features.
        ``"model"``: ``transform`` where the estimator has one (for a pipeline: the
        steps before its classifier), else the input.
    clip : float, default=None

    References
    ----------
    .. [1] K. You, X. Wang, M. Long and M. Jordan. "Towards Accurate Model Selection
       in Deep Unsupervised Domain Adaptation". ICML 2019.
    """

    def __init__(self, domain_classifier=None, space="transform", clip=None):
        self.domain_classifier = domain_classifier
        self.space = space
        self.clip = clip

    def __call__(self, estimator, X, y=None, sample_domain=None):
        who = self._name()
        src, tgt = _split_domains(y, sample_domain, num_samples(X), who)
        _require_source(src, who)
        F = _features(estimator, X, self.space)
        w = domain_density_ratio(take(F, src), take(F, tgt), self.domain_classifier, self.clip)
        loss, _ = _source_log_loss(estimator, take(X, src), np.asarray(y)[src], who)
        weighted = w * loss
        var_w = np.var(w, ddof=1) if len(w) > 1 else 0.0
        eta = 0.0 if var_w <= 1e-12 else -np.cov(weighted, w)[0, 1] / var_w
        dev = weighted.mean() + eta * w.mean() - eta
        return -float(dev)


class CircularValidationScorer(_DAScorer):
    """Reverse (circular) validation: pseudo-label the target rows with the fitted
    estimator, train a clone backwards (pseudo-labeled target as source, source rows
    as unlabeled target), and score that clone's accuracy on the true source labels.

    A model whose target labels are wrong cannot be trained back to the source, so
    the reverse accuracy tracks the forward target accuracy (Ganin et al. chose
    DANN's hyper-parameters this way). Costs one extra fit per call.

    Parameters
    ----------
    estimator_params : dict, default=None
        ``set_params`` applied to the reverse clone (e.g. fewer epochs).

    References
    ----------
    .. [1] E. Zhong, W. Fan, Q. Yang, O. Verscheure and J. Ren. "Cross Validation
       Framework to Choose amongst Models and Datasets for Transfer Learning".
       ECML-PKDD 2010.
    .. [2] Y. Ganin et al. "Domain-Adversarial Training of Neural Networks". JMLR 2016.
    """

    def __init__(self, estimator_params=None):
        self.estimator_params = estimator_params

    def __call__(self, estimator, X, y=None, sample_domain=None):
        from sklearn.base import clone

        who = self._name()
        n = num_samples(X)
        src, tgt = _split_domains(y, sample_domain, n, who)
        _require_source(src, who)
        y = np.asarray(y)
        pseudo = estimator.predict(take(X, tgt))
        y_src = y[src]
        if len(np.unique(pseudo)) < 2:
            # the reverse model could only learn one class: score that constant guess
            return float(np.mean(y_src == pseudo[0]))
        y_rev = np.empty(n, dtype=np.result_type(y.dtype, np.asarray(pseudo).dtype))
        y_rev[tgt] = pseudo
        y_rev[src] = -1
        rev = clone(estimator)
        if self.estimator_params:
            rev.set_params(**self.estimator_params)
        if sample_domain is not None:
            rev.fit(X, y_rev, sample_domain=-np.asarray(sample_domain))
        else:
            rev.fit(X, y_rev)
        return float(np.mean(rev.predict(take(X, src)) == y_src))
