"""LabeledOnly: fit any classifier on the labeled rows of a domain-adaptation ``y``.

It lives in the estimators layer so that :class:`~tlestimators.TransferSearchCV` can
build its source-only frozen probe from it; :mod:`tlestimators.skada_bridge` (a higher
layer) re-exports it for its pipelines.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from tlestimators.data import parse_domains, take, unlabeled_mask

__all__ = ["LabeledOnly"]


def _final_has(attr):
    return lambda self: hasattr(self.estimator, attr)


def _has_features(self):
    return hasattr(self.estimator, "transform") or hasattr(self.estimator, "_net_input")


class LabeledOnly(ClassifierMixin, BaseEstimator):
    """Fit a classifier on the labeled rows only (``y != -1``), for the last step of a
    domain-adaptation pipeline or a source-only candidate: the unlabeled target rows
    shape the adapter, never the class set.

    Parameters
    ----------
    estimator : sklearn classifier

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone.
    classes_ : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from tlestimators.estimators._labeled import LabeledOnly
    >>> X = np.array([[0.0], [1.0], [0.2], [0.9]])
    >>> LabeledOnly(LogisticRegression()).fit(X, [0, 1, -1, -1]).classes_.tolist()
    [0, 1]
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y, sample_domain=None, **fit_params):
        y = np.asarray(y)
        keep = ~unlabeled_mask(y)
        if sample_domain is not None:
            keep &= parse_domains(y, sample_domain, who="LabeledOnly").labeled
        if not keep.any():
            raise ValueError(
                "LabeledOnly got no labeled rows (every y == -1): a domain-adaptation "
                "pipeline needs labeled source rows."
                + (" y holds the string '-1'?" if y.dtype.kind in "UO" else "")
            )
        idx = np.flatnonzero(keep)
        Xk = take(X, idx)
        yk = y[idx]
        if yk.dtype == object:
            try:
                yk = yk.astype(np.asarray(list(yk)).dtype)
            except (TypeError, ValueError):
                pass
        self.estimator_ = clone(self.estimator).fit(Xk, yk, **fit_params)
        self.classes_ = self.estimator_.classes_
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_final_has("predict_log_proba"))
    def predict_log_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    @available_if(_has_features)
    def transform(self, X):
        """The wrapped model's own features (a frozen classifier's embeddings), so the
        label-free DA scorers (DEV, IWV) see the same kind of space as for an adapter."""
        check_is_fitted(self)
        if hasattr(self.estimator_, "transform"):
            return self.estimator_.transform(X)
        return self.estimator_._net_input(X)

    def _strategy(self):
        from tlestimators.estimators._base import strategy_of

        return f"source-only ({strategy_of(self.estimator)})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags = clone(self.estimator).__sklearn_tags__().input_tags
        return tags
