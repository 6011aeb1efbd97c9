"""Domain-aware cross-validation splitters.

Unsupervised domain-adaptation scorers need source *and* target rows in every
validation fold, and an adaptation method needs both in every training fold. These
splitters stratify on the domain (target rows: ``y == -1`` or ``sample_domain < 0``)
and, where every class is large enough, on the class too.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, StratifiedShuffleSplit
from sklearn.model_selection._split import BaseCrossValidator

# unlabeled_mask lives in data (the one (y, sample_domain) parser); re-exported here,
# where it was first public
from tlestimators.data import num_samples, parse_domains, take, unlabeled_mask

__all__ = [
    "SourceTargetKFold",
    "SourceTargetShuffleSplit",
    "SafeDASelection",
    "DomainAdaptationSearchCV",
    "domain_strata",
    "unlabeled_mask",
]


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


# --------------------------------------------------------------------------- selection
_SCORER_NAMES = ("dev", "iwv", "ent", "circ")


def _make_scorer(name):
    from tlestimators.metrics import (
        CircularValidationScorer,
        DeepEmbeddedValidationScorer,
        ImportanceWeightedScorer,
        PredictionEntropyScorer,
    )

    return {"dev": lambda: DeepEmbeddedValidationScorer(space="model"),
            "iwv": lambda: ImportanceWeightedScorer(),
            "ent": lambda: PredictionEntropyScorer(),
            "circ": lambda: CircularValidationScorer()}[name]()


def _matches(params, source_only):
    return all(k in params and params[k] == v for k, v in source_only.items())


class SafeDASelection:
    """Label-free selection for domain adaptation that falls back to source-only.

    One object gives :class:`~sklearn.model_selection.GridSearchCV` both its
    ``scoring`` (several unsupervised DA scorers) and its ``refit`` rule::

        sel = SafeDASelection(source_only={"lambda_max": 0.0})
        GridSearchCV(DANNAdapter(), {"lambda_max": [0.0, 0.1, 0.3, 1.0]},
                     scoring=sel.scoring, refit=sel, cv=SourceTargetKFold(3))

    or, with the splitter and the source-only candidate added for you,
    :class:`DomainAdaptationSearchCV`.

    The rule (chosen on ``benchmarks/bench_da.py``, see the domain-adaptation guide):

    1. every scorer ranks the candidates by its mean validation score; a candidate's
       ensemble rank is the mean of its ranks (DEV and IWV by default);
    2. the best ensemble rank wins, ties going to source-only;
    3. the winner replaces source-only only if it beats source-only on ``min_wins`` of
       the scorers (all of them by default); otherwise source-only is kept;
    4. (:class:`DomainAdaptationSearchCV` only) after the refit, the winner must agree
       with a source-only model on at least ``min_agreement`` of the target rows'
       predictions, else source-only is kept: a model that rewrites most target
       labels has collapsed or over-aligned, whatever the scorers say.

    Entropy is available (``"ent"``) but not a default: on the benchmarks it rewards
    collapsed, over-confident models more often than any other scorer.

    Parameters
    ----------
    scorers : sequence of {"dev", "iwv", "ent", "circ"} or dict, default=("dev", "iwv")
        Names of the built-in scorers (deep embedded validation, importance-weighted
        validation, negative target prediction entropy, circular validation), or a
        dict ``name -> scorer``. ``"circ"`` costs one extra fit per candidate and fold.
    source_only : dict, default={"lambda_max": 0.0}
        The parameters that make a candidate the source-only model (for a skada
        pipeline: ``{"skadaadapter": "passthrough"}``). Selection raises if no
        candidate matches: source-only must always be a candidate.
    min_wins : int or "majority" or "all", default="all"
        Scorers on which the ensemble winner must beat source-only to be chosen.
    min_agreement : float or None, default=0.8
        Used by :class:`DomainAdaptationSearchCV` after the refit: if the chosen model
        agrees with a source-only model (refit on the same data) on fewer than this
        fraction of the target rows' predictions, source-only is kept (one extra fit).
        A plain GridSearchCV cannot apply it (its ``refit`` callable sees scores, not
        models).

    Attributes
    ----------
    last_report_ : dict
        After a call: the ensemble ranks, the source-only index, the winner and
        whether the safety rule fell back to source-only.
    """

    def __init__(self, scorers=("dev", "iwv"), source_only=None, min_wins="all",
                 min_agreement=0.8):
        self.scorers = scorers
        self.source_only = source_only
        self.min_wins = min_wins
        self.min_agreement = min_agreement

    @property
    def scoring(self) -> dict:
        """``name -> scorer`` for ``GridSearchCV(scoring=...)``."""
        if isinstance(self.scorers, dict):
            return dict(self.scorers)
        bad = [s for s in self.scorers if s not in _SCORER_NAMES]
        if bad or not self.scorers:
            raise ValueError(
                f"scorers must name some of {list(_SCORER_NAMES)} or be a dict of "
                f"scorers, got {self.scorers!r}."
            )
        return {name: _make_scorer(name) for name in self.scorers}

    def _source_only(self):
        return {"lambda_max": 0.0} if self.source_only is None else dict(self.source_only)

    def _needed_wins(self, m):
        w = self.min_wins
        if w == "majority":
            return m // 2 + 1
        if w == "all":
            return m
        if isinstance(w, numbers.Integral) and not isinstance(w, bool) and 0 <= w <= m:
            return int(w)
        raise ValueError(f"min_wins must be 'majority', 'all' or an int in [0, {m}], got {w!r}.")

    def select(self, params, scores):
        """Index of the chosen candidate.

        Parameters
        ----------
        params : list of dict
            The candidates' parameters (``cv_results_["params"]``).
        scores : dict of name -> array of shape (n_candidates,)
            Mean validation score per scorer (greater is better; NaN = failed).
        """
        so = self._source_only()
        hits = [i for i, p in enumerate(params) if _matches(p, so)]
        if not hits:
            raise ValueError(
                f"No candidate has the source-only parameters {so}: the safe selection "
                "needs source-only among the candidates (add it to the grid, pass "
                "source_only=..., or use DomainAdaptationSearchCV, which adds it)."
            )
        i0 = hits[0]
        names = list(scores)
        S = np.array([np.asarray(scores[k], dtype=float) for k in names])  # (m, n)
        S = np.where(np.isfinite(S), S, -np.inf)  # a failed candidate ranks last
        from scipy.stats import rankdata

        ranks = np.array([rankdata(-s, method="average") for s in S]).mean(axis=0)
        best = ranks.min()
        tied = np.flatnonzero(np.isclose(ranks, best))
        win = i0 if i0 in tied else int(tied[0])
        wins = int(np.sum(S[:, win] > S[:, i0])) if win != i0 else 0
        need = self._needed_wins(len(names))
        chosen = win if win == i0 or wins >= need else i0
        self.last_report_ = {"ensemble_rank": ranks.tolist(), "source_only": i0,
                             "winner": win, "wins_over_source_only": wins,
                             "needed": need, "chosen": chosen,
                             "fell_back": chosen != win}
        return chosen

    def __call__(self, cv_results):
        """``refit=`` callable: ``cv_results_ -> best_index_``."""
        names = list(self.scoring)
        scores = {k: cv_results[f"mean_test_{k}"] for k in names}
        return self.select(list(cv_results["params"]), scores)

    def __repr__(self):
        return (f"SafeDASelection(scorers={self.scorers!r}, source_only={self.source_only!r}, "
                f"min_wins={self.min_wins!r}, min_agreement={self.min_agreement!r})")


def _with_source_only(param_grid, source_only):
    grids = [param_grid] if isinstance(param_grid, dict) else list(param_grid)
    grids = [dict(g) for g in grids]
    has = any(all(k in g and v in list(g[k]) for k, v in source_only.items()) for g in grids)
    if not has:
        grids.append({k: [v] for k, v in source_only.items()})
    return grids


def _default_source_only(estimator):
    """``{"lambda_max": 0.0}`` for our DA estimators; ``{step: "passthrough"}`` for a
    pipeline whose adaptation is a skada adapter step (tlestimators.skada_bridge)."""
    params = estimator.get_params(deep=False)
    if "lambda_max" in params:
        return {"lambda_max": 0.0}
    for name, step in getattr(estimator, "steps", []):
        if type(step).__name__ == "SkadaAdapter":
            return {name: "passthrough"}
    if any(k.endswith("__lambda_max") for k in estimator.get_params(deep=True)):
        key = next(k for k in estimator.get_params(deep=True) if k.endswith("__lambda_max"))
        return {key: 0.0}
    raise ValueError(
        f"Cannot tell which {type(estimator).__name__} is the source-only model: pass "
        "selection=SafeDASelection(source_only={...}) with the parameters that switch "
        "the adaptation off."
    )


class DomainAdaptationSearchCV(GridSearchCV):
    """Grid search for domain adaptation without target labels, safe by construction.

    A :class:`~sklearn.model_selection.GridSearchCV` whose splitter keeps source and
    target rows in every fold (:class:`SourceTargetKFold` unless ``cv`` is given),
    whose candidates always include the source-only model (``selection.source_only``
    is added to the grid if missing), and whose winner is chosen by
    :class:`SafeDASelection` (a rank ensemble of label-free scorers that falls back to
    source-only unless every scorer sees the adaptation beat it, and unless the adapted
    model still agrees with source-only on most target predictions). Fit it like the
    estimator: ``fit(X, y)`` with ``y == -1`` for unlabeled target rows.

    Parameters
    ----------
    estimator : DA estimator or pipeline
    param_grid : dict or list of dicts
    selection : SafeDASelection, default=None
        ``None``: ``SafeDASelection()`` (DEV + IWV, agreement guard 0.8) with source-only =
        ``{"lambda_max": 0.0}`` for our DA estimators, or ``{step: "passthrough"}``
        for a pipeline with a skada adapter step (:mod:`tlestimators.skada_bridge`).
    cv : int or splitter, default=3
        An int gives ``SourceTargetKFold(cv, shuffle=True, random_state=0)``.
    n_jobs, verbose, pre_dispatch, return_train_score :
        As in GridSearchCV.
    error_score : "raise" or float, default="raise"
        Unlike GridSearchCV, a failing fit or score raises by default, so a fold
        without target rows is an error, never a silent NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import DANNAdapter
    >>> from tlestimators.model_selection import DomainAdaptationSearchCV
    >>> search = DomainAdaptationSearchCV(
    ...     DANNAdapter(max_epochs=2), {"lambda_max": [0.3, 1.0]})   # 0.0 is added
    """

    _parameter_constraints: dict = {
        **GridSearchCV._parameter_constraints,
        "selection": [None, SafeDASelection],
    }
    _parameter_constraints.pop("scoring", None)
    _parameter_constraints.pop("refit", None)

    def __init__(self, estimator, param_grid, *, selection=None, cv=3, n_jobs=None,
                 verbose=0, pre_dispatch="2*n_jobs", error_score="raise",
                 return_train_score=False):
        self.selection = selection
        super().__init__(estimator, param_grid, scoring=None, n_jobs=n_jobs, refit=True,
                         cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
                         error_score=error_score, return_train_score=return_train_score)

    def _selection(self):
        if self.selection is not None:
            return self.selection
        return SafeDASelection(source_only=_default_source_only(self.estimator))

    def fit(self, X, y=None, **params):
        """Search with ``y == -1`` marking unlabeled target rows."""
        sel = self._selection()
        cv = self.cv
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            cv = SourceTargetKFold(cv, shuffle=True, random_state=0)
        search = GridSearchCV(
            self.estimator, _with_source_only(self.param_grid, sel._source_only()),
            scoring=sel.scoring, refit=sel, cv=cv, n_jobs=self.n_jobs,
            verbose=self.verbose, pre_dispatch=self.pre_dispatch,
            error_score=self.error_score, return_train_score=self.return_train_score,
        ).fit(X, y, **params)
        for attr in ("cv_results_", "best_index_", "best_params_", "best_estimator_",
                     "refit_time_", "scorer_", "n_splits_", "multimetric_"):
            if hasattr(search, attr):
                setattr(self, attr, getattr(search, attr))
        self.selection_report_ = dict(sel.last_report_)
        self._agreement_guard(sel, X, y, params)
        return self

    def _agreement_guard(self, sel, X, y, params):
        """Fall back to source-only when the chosen model changes too many target
        predictions of the source-only model (a collapsed or over-aligned model)."""
        rep = self.selection_report_
        rep["agreement"] = None
        t = sel.min_agreement
        if t is None or rep["chosen"] == rep["source_only"] or not hasattr(self, "best_estimator_"):
            return
        i0 = rep["source_only"]
        so_params = self.cv_results_["params"][i0]
        so = clone(self.estimator).set_params(**so_params).fit(X, y, **params)
        tgt = parse_domains(y, params.get("sample_domain"), who="DomainAdaptationSearchCV",
                            n_samples=num_samples(X)).target_index
        Xt = take(X, tgt)
        agree = float(np.mean(np.asarray(self.best_estimator_.predict(Xt))
                              == np.asarray(so.predict(Xt))))
        rep["agreement"] = agree
        if agree < t:
            self.best_estimator_, self.best_index_ = so, i0
            self.best_params_ = so_params
            rep.update(chosen=i0, fell_back=True)

