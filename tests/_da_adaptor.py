"""Adaptor for running scikit-learn's estimator checks on the domain-adaptation
estimators.

Their ``fit`` needs unlabeled target rows, which sklearn's checks never pass. Mixed in
before the estimator class, :class:`DuplicateAsTarget` appends the rows of X once more as
unlabeled target rows (``y == -1``) and fits on that; everything else (parameters,
validation, prediction, transform, pickling) is the estimator's own.
"""

import numpy as np
from scipy import sparse


class DuplicateAsTarget:
    def fit(self, X, y, sample_domain=None):
        if y is None:
            return super().fit(X, y)
        if hasattr(X, "iloc"):
            import pandas as pd

            X2 = pd.concat([X, X], ignore_index=True)
        elif sparse.issparse(X):
            X2 = sparse.vstack([X, X]).tocsr()
        else:
            X2 = np.concatenate([np.asarray(X), np.asarray(X)])
        y = np.asarray(y)
        if y.ndim == 2:  # a column vector: the estimator warns and ravels it
            return super().fit(X2, np.concatenate([y, -np.ones_like(y)]))
        if y.dtype.kind in "OUS":
            y2 = np.concatenate([y.astype(object), np.full(len(y), -1, dtype=object)])
        else:
            y2 = np.r_[y, -np.ones(len(y), dtype=y.dtype)]
        return super().fit(X2, y2)
