"""Domain-aware cross-validation splitters.

Unsupervised domain-adaptation scorers need source *and* target rows in every
validation fold, and an adaptation method needs both in every training fold. These
splitters stratify on the domain (target rows: ``y == -1`` or ``sample_domain < 0``)
and, where every class is large enough, on the class too.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.model_selection._split import BaseCrossValidator

# unlabeled_mask lives in data (the one (y, sample_domain) parser); re-exported here,
# where it was first public
from tlestimators.data import parse_domains, unlabeled_mask

__all__ = ["SourceTargetKFold", "SourceTargetShuffleSplit", "domain_strata", "unlabeled_mask"]


def domain_strata(y=None, sample_domain=None, n_splits=2):
    """Stratum label per row: the domain (and the class of source rows when every
    (domain, class) cell holds at least ``n_splits`` rows).

    Raises if a domain has fewer than ``n_splits`` rows or no target rows exist.
    """
    if y is None and sample_domain is None:
        raise ValueError(
            "A source/target splitter needs y (with -1 marking target rows) or sample_domain."
        )
    dom_info = parse_domains(
        y, sample_domain, who="A source/target splitter", require_target=True,
        require_source=True,
        context="It puts unlabeled target samples in every fold, so it needs some.",
    )
    is_target, dom = dom_info.is_target, dom_info.domain
    dom_s = np.asarray([str(d) for d in dom], dtype=object)
    for d in np.unique(dom_s):
        c = int(np.sum(dom_s == d))
        if c < n_splits:
            kind = "target" if int(d) < 0 else "source"
            raise ValueError(
                f"The {kind} domain {d} has {c} rows, fewer than n_splits={n_splits}; every "
                "fold needs at least one row of each domain."
            )
    if y is None:
        return dom_s
    yy = np.asarray(y)
    fine = np.asarray(
        [d if t else f"{d}|{lab}" for d, t, lab in zip(dom_s, is_target, yy)], dtype=object
    )
    _, counts = np.unique(fine, return_counts=True)
    return fine if counts.min() >= n_splits else dom_s


class SourceTargetKFold(BaseCrossValidator):
    """K-fold keeping source and target rows (and the class balance) in every fold.

    Target rows are those with ``y == -1`` or, when ``sample_domain`` is routed to
    ``split`` (``set_split_request(sample_domain=True)`` under metadata routing),
    ``sample_domain < 0``.

    Parameters
    ----------
    n_splits : int, default=5
    shuffle : bool, default=True
    random_state : int or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators.model_selection import SourceTargetKFold
    >>> y = np.r_[np.zeros(6, int), np.ones(6, int), -np.ones(6, int)]
    >>> [int((y[te] == -1).sum()) for _, te in SourceTargetKFold(3, random_state=0).split(y, y)]
    [2, 2, 2]
    """

    def __init__(self, n_splits=5, shuffle=True, random_state=None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def split(self, X, y=None, groups=None, sample_domain=None):
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, numbers.Integral) \
                or self.n_splits < 2:
            raise ValueError(f"n_splits must be an int >= 2, got {self.n_splits!r}.")
        strata = domain_strata(y, sample_domain, self.n_splits)
        n = len(strata)
        if X is not None and (X.shape[0] if hasattr(X, "shape") else len(X)) != n:
            raise ValueError(f"X and y/sample_domain have different lengths ({n}).")
        cv = StratifiedKFold(
            self.n_splits, shuffle=self.shuffle,
            random_state=self.random_state if self.shuffle else None,
        )
        yield from cv.split(np.zeros(n), strata)

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover
        for _, test in self.split(X, y, groups):
            yield test


class SourceTargetShuffleSplit(BaseCrossValidator):
    """Random train/test splits, stratified on the domain (and class), so both sides
    always hold source and target rows.

    Parameters
    ----------
    n_splits : int, default=5
    test_size : float, default=0.2
    random_state : int or None, default=None
    """

    def __init__(self, n_splits=5, test_size=0.2, random_state=None):
        self.n_splits = n_splits
        self.test_size = test_size
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_splits

    def split(self, X, y=None, groups=None, sample_domain=None):
        strata = domain_strata(y, sample_domain, 2)
        cv = StratifiedShuffleSplit(
            self.n_splits, test_size=self.test_size, random_state=self.random_state
        )
        yield from cv.split(np.zeros(len(strata)), strata)

    def _iter_test_indices(self, X=None, y=None, groups=None):  # pragma: no cover
        for _, test in self.split(X, y, groups):
            yield test
