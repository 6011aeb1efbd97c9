"""Prediction methods shared by classifiers that score classes with logits.

:class:`LogitsClassifierMixin` needs ``classes_`` and ``_logits(X)`` (fitted check
included); logits are computed once per call, ``predict`` is their argmax,
``predict_proba`` their softmax and ``decision_function`` the logits themselves
(binary: ``logit_1 - logit_0``, as sklearn's linear models return), so the three always
agree. The zero-shot classifiers use it with their own ``_logits``.

:class:`NetClassifierMixin` adds ``_logits`` for a fitted skorch ``net_``: a subclass
sets ``classes_`` and ``net_`` in ``fit`` and implements ``_net_input(X)`` (validated
``X`` -> what ``net_.forward`` takes: an embedding array or an
:class:`~tlestimators.estimators._base.ItemDataset`).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from tlestimators.estimators._base import check_labels_seen

__all__ = ["LogitsClassifierMixin", "NetClassifierMixin"]


class LogitsClassifierMixin:
    """``predict``, ``predict_proba``, ``predict_log_proba`` and ``decision_function``
    from ``_logits(X)`` of shape (n_samples, n_classes)."""

    def _logits(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X):
        """Logits of the head.

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        scores : ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns ordered as ``classes_``.

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        from scipy.special import softmax

        return softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably."""
        from scipy.special import log_softmax

        return log_softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Predicted labels (of the type of the ``y`` given to ``fit``).

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        z = self._logits(X)  # first: it checks the estimator is fitted
        return self.classes_[np.argmax(z, axis=1)]


class NetClassifierMixin(LogitsClassifierMixin):
    """:class:`LogitsClassifierMixin` over a fitted skorch ``net_``, with a ``score``
    that rejects labels unseen at fit."""

    def _net_input(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._forward_logits(self._net_input(X))

    def _forward_logits(self, inp) -> np.ndarray:
        out = self.net_.forward(inp, training=False, device="cpu")
        return out.float().numpy().astype(np.float64)

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; labels never seen at fit raise a ``ValueError``."""
        check_is_fitted(self)
        check_labels_seen(self.classes_, np.asarray(y).ravel(), name="y")
        return super().score(X, y, sample_weight=sample_weight)
