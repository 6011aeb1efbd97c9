"""Prediction methods shared by every classifier that scores classes with logits.

:class:`LogitsClassifierMixin` needs ``classes_`` and ``_logits(X)`` (fitted check
included); logits are computed once per call, ``predict`` is their argmax,
``predict_proba`` their softmax and ``decision_function`` the logits themselves
(binary: ``logit_1 - logit_0``, as sklearn's linear models return), so the four always
agree. The zero-shot classifiers use it with their own ``_logits``.

An estimator whose prediction takes extra arguments (RehearsalLearner's ``task_id``
masks logits to one task's classes) overrides the public method with its own signature
and reuses the conversions, e.g.::

    def predict_proba(self, X, task_id=None):
        return self._proba_from_logits(self._logits(X, task_id=task_id))

Logits of ``-inf`` (masked classes) give probability 0.

:class:`NetClassifierMixin` adds ``_logits`` for a fitted skorch ``net_``: a subclass
sets ``classes_`` and ``net_`` in ``fit`` and implements ``_net_input(X)`` (validated
``X`` -> what ``net_.forward`` takes: an embedding array or a
:class:`~tlestimators.estimators._base.TransferDataset`). When the net's module has
a ``features`` backbone (or none: cached embeddings), inference runs in float64 on the
CPU so each row's output does not depend on how the rows are batched.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from tlestimators.estimators._base import check_labels_seen

__all__ = ["LogitsClassifierMixin", "NetClassifierMixin"]


class LogitsClassifierMixin:
    """``predict``, ``predict_proba``, ``predict_log_proba`` and ``decision_function``
    from ``_logits(X)`` of shape (n_samples, n_classes), columns ordered as ``classes_``,
    and a ``score`` that rejects labels unseen at fit. Put it before
    :class:`~sklearn.base.ClassifierMixin` in the bases (its ``score`` defers to it)."""

    def _logits(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # conversions, reusable by subclasses with their own predict signatures
    @staticmethod
    def _decision_from_logits(z):
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    @staticmethod
    def _proba_from_logits(z):
        from scipy.special import softmax

        return softmax(z, axis=1)

    @staticmethod
    def _log_proba_from_logits(z):
        from scipy.special import log_softmax

        return log_softmax(z, axis=1)

    def _labels_from_logits(self, z):
        return self.classes_[np.argmax(z, axis=1)]

    def decision_function(self, X):
        """Logits of the head.

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        scores : ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        return self._decision_from_logits(self._logits(X))

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits), columns ordered as ``classes_``.

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return self._proba_from_logits(self._logits(X))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return self._log_proba_from_logits(self._logits(X))

    def predict(self, X):
        """Predicted labels (of the type of the ``y`` given to ``fit``).

        Parameters
        ----------
        X : input of the backbone's modality

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self._labels_from_logits(self._logits(X))  # _logits checks fitted

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; labels never seen at fit raise a ``ValueError``.

        Parameters
        ----------
        X : input of the backbone's modality
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        check_labels_seen(self.classes_, np.asarray(y).ravel(), name="y")
        return super().score(X, y, sample_weight=sample_weight)


def _exact_module(module):
    """Whether ``module`` is cheap enough to evaluate in float64 on the CPU: its
    backbone (if any) takes 2-D features."""
    backbone = getattr(module, "backbone", None)
    if backbone is None:
        return True
    config = getattr(backbone, "config", None)
    return getattr(config, "modality", None) == "features"


class NetClassifierMixin(LogitsClassifierMixin):
    """:class:`LogitsClassifierMixin` over a fitted skorch ``net_``."""

    def _net_input(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._forward_logits(self._net_input(X))

    def _forward_logits(self, inp) -> np.ndarray:
        module = self.net_.module_
        if _exact_module(module):
            return self._forward_float64(module, inp)
        out = self.net_.forward(inp, training=False, device="cpu")
        return out.float().numpy().astype(np.float64)

    @staticmethod
    def _forward_float64(module, inp):
        # Small feature nets: float64 on the CPU makes each row's output independent
        # of the batch it is computed in (float32 BLAS results differ in the last bits
        # with the batch size), so subsets predict exactly as the whole.
        from tlestimators.estimators._base import TransferDataset

        if isinstance(inp, TransferDataset):
            items = inp.items
            if hasattr(items, "toarray"):
                items = items.toarray()
            backbone = getattr(module, "backbone", None)
            x = backbone.preprocess(items, train=False) if backbone is not None else items
        else:
            x = inp
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        m = copy.deepcopy(module).to("cpu").double().eval()
        with torch.inference_mode():
            return m(x).numpy()

