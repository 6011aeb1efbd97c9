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

    or, with the splitter and the source-only candidate added for you and the better
    ``rule="consensus"``, :class:`DomainAdaptationSearchCV`.

    Two rules (both chosen on ``benchmarks/bench_da.py``; see ``results/da.md``):

    ``rule="consensus"`` (the default; applied by :class:`DomainAdaptationSearchCV`,
    which has the fitted candidates):

    1. every candidate is refit on all the data and predicts the target rows;
    2. a candidate is *eligible* if its target predictions agree with source-only's
       on at least ``min_agreement`` of the rows (source-only always is): a model
       that rewrites most target labels has collapsed or over-aligned;
    3. the eligible candidates vote per target row (majority label, ties to the
       source-only label), and the one agreeing most with that vote wins (ties to
       source-only). The vote is a label-free estimate of target accuracy: where
       adapted models make different errors, their majority is right more often
       than any one of them (agreement-based accuracy estimation, e.g. Platanios et
       al. 2014; Jiang et al. 2022).

    On the benchmark's 19 pair-seeds of round 4 (Amazon, PACS, digits) it selected
    80.0 % on average where the score rule below selected 77.3 % and the target-label
    oracle 81.5 %; it was more than 1 point below source-only once (-1.3, Amazon E->K),
    the score rule never (23 pair-seeds since the digits candidates use the library's
    defaults on 3 seeds: 82.5 % vs 78.2 %, oracle 84.6 %, the same worst case; on
    digits alone it is 4.7 points below the oracle, still 13 above source-only). The
    guard 0.7 was chosen on the round-4 fits; chosen instead on
    two benchmarks and tested on the third (thresholds 0.6-0.9), it came out at 0.6-0.65
    with the same held-out picture. When a single point below
    source-only matters more than the mean, use ``rule="scores"``. With fewer than 3
    candidates there is no majority: the score rule decides.

    ``rule="scores"`` (also what a plain ``GridSearchCV(refit=sel)`` applies, since
    its ``refit`` callable sees scores, not models):

    1. every scorer ranks the candidates by its mean validation score; a candidate's
       ensemble rank is the mean of its ranks (DEV and IWV by default);
    2. the best ensemble rank wins, ties going to source-only;
    3. the winner replaces source-only only if it beats source-only on ``min_wins`` of
       the scorers (all of them by default); otherwise source-only is kept;
    4. (:class:`DomainAdaptationSearchCV` only) after the refit, the winner must agree
       with a source-only model on at least ``min_agreement`` of the target rows'
       predictions, else source-only is kept.

    Entropy is available (``"ent"``) but not a default: on the benchmarks it rewards
    collapsed, over-confident models more often than any other scorer.

    Parameters
    ----------
    scorers : sequence of {"dev", "iwv", "ent", "circ"} or dict, default=("dev", "iwv")
        Names of the built-in scorers (deep embedded validation, importance-weighted
        validation, negative target prediction entropy, circular validation), or a
        dict ``name -> scorer``. ``"circ"`` costs one extra fit per candidate and fold.
        With ``rule="consensus"`` they are computed and reported (``cv_results_``) and
        decide only with fewer than 3 candidates.
    source_only : dict or None, default=None
        The parameters that make a candidate the source-only model (for a skada
        pipeline: ``{"skadaadapter": "passthrough"}``). ``None``: ``{"lambda_max": 0.0}``;
        :class:`DomainAdaptationSearchCV` works it out from its estimator instead (as
        it does for its default selection). Selection raises if no candidate matches:
        source-only must always be a candidate.
    min_wins : int or "majority" or "all", default="all"
        Scorers on which the ensemble winner must beat source-only to be chosen
        (score rule).
    min_agreement : float in [0, 1], "auto" or None, default="auto"
        The agreement with source-only's target predictions a model needs: the
        eligibility threshold of the consensus rule, the guard of the score rule.
        ``"auto"``: 0.7 with ``rule="consensus"``, 0.8 with ``rule="scores"``.
        ``None`` switches the check off.
    rule : {"consensus", "scores"}, default="consensus"
        See above. A plain GridSearchCV always applies the score rule.

    Attributes
    ----------
    last_report_ : dict
        After a call: the ensemble ranks, the source-only index, the winner, the
        chosen index and ``fell_back``, whether a safety check replaced the winner
        by source-only (the score rule's guard; under the consensus rule source-only
        is chosen only by winning the vote, so read ``chosen == source_only``), and,
        after a consensus selection, each candidate's agreement with source-only and
        with the vote.
    """

    def __init__(self, scorers=("dev", "iwv"), source_only=None, min_wins="all",
                 min_agreement="auto", rule="consensus"):
        self.scorers = scorers
        self.source_only = source_only
        self.min_wins = min_wins
        self.min_agreement = min_agreement
        self.rule = rule

    def _min_agreement(self):
        """The agreement threshold in force (``"auto"`` resolved), or None."""
        t = self.min_agreement
        if isinstance(t, str) and t == "auto":
            return 0.7 if self._rule() == "consensus" else 0.8
        if t is not None and not (isinstance(t, numbers.Real) and 0 <= t <= 1):
            raise ValueError(f"min_agreement must be a float in [0, 1], 'auto' or None, got {t!r}.")
        return t

    def _rule(self):
        if self.rule not in ("consensus", "scores"):
            raise ValueError(f"rule must be 'consensus' or 'scores', got {self.rule!r}.")
        return self.rule

    def select_by_consensus(self, params, target_predictions):
        """Index of the candidate chosen by the consensus rule.

        Parameters
        ----------
        params : list of dict
            The candidates' parameters (one must be source-only).
        target_predictions : array-like of shape (n_candidates, n_target)
            Each candidate's predicted labels on the same target rows.
        """
        i0 = self._source_only_index(params)
        P = np.asarray(target_predictions)
        if P.ndim != 2 or P.shape[0] != len(params):
            raise ValueError(
                f"target_predictions must have shape (n_candidates={len(params)}, n_target); "
                f"got shape {P.shape}."
            )
        agree_so = (P == P[i0]).mean(axis=1)
        t = self._min_agreement()
        eligible = np.ones(len(params), bool) if t is None else agree_so >= t - 1e-12
        eligible[i0] = True
        # majority label per row among the eligible candidates; a tie goes to
        # source-only's label (+0.5 never outweighs one more vote)
        labels = np.unique(P[eligible])
        counts = np.stack([(P[eligible] == lab).sum(axis=0) + 0.5 * (P[i0] == lab)
                           for lab in labels])
        vote = labels[np.argmax(counts, axis=0)]
        agree_vote = np.where(eligible, (P == vote).mean(axis=1), -np.inf)
        top = np.flatnonzero(np.isclose(agree_vote, agree_vote.max()))
        chosen = i0 if i0 in top else int(top[0])
        self.last_report_ = {"rule": "consensus", "source_only": i0, "winner": chosen,
                             "chosen": chosen, "fell_back": False,
                             "agreement_with_source_only": agree_so.tolist(),
                             "agreement_with_vote": agree_vote.tolist(),
                             "eligible": eligible.tolist(), "min_agreement": t}
        return chosen

    def _source_only_index(self, params):
        so = self._source_only()
        hits = [i for i, p in enumerate(params) if _matches(p, so)]
        if not hits:
            raise ValueError(
                f"No candidate has the source-only parameters {so}: the safe selection "
                "needs source-only among the candidates (add it to the grid, pass "
                "source_only=..., or use DomainAdaptationSearchCV, which adds it)."
            )
        return hits[0]

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
        i0 = self._source_only_index(params)
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
        self.last_report_ = {"rule": "scores", "ensemble_rank": ranks.tolist(), "source_only": i0,
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
                f"min_wins={self.min_wins!r}, min_agreement={self.min_agreement!r}, "
                f"rule={self.rule!r})")


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
    :class:`SafeDASelection`: by default the consensus rule (every candidate is refit
    on all rows; among those agreeing with source-only on at least 70 % of the target
    predictions, the one agreeing most with their majority vote wins), so a search
    costs one fit per candidate more than the folds (``refit_time_``). With fewer
    than 3 candidates, or ``SafeDASelection(rule="scores")``, the label-free scorers
    decide (a rank ensemble that falls back to source-only unless every scorer sees
    the adaptation beat it and the refit model still agrees with source-only on most
    target predictions). Fit it like the estimator: ``fit(X, y)`` with ``y == -1`` for
    unlabeled target rows.

    Parameters
    ----------
    estimator : DA estimator or pipeline
    param_grid : dict or list of dicts
    selection : SafeDASelection, default=None
        ``None``: ``SafeDASelection()`` (consensus, eligibility 0.7; DEV + IWV reported) with source-only =
        ``{"lambda_max": 0.0}`` for our DA estimators, or ``{step: "passthrough"}``
        for a pipeline with a skada adapter step (:mod:`tlestimators.skada_bridge`).
    cv : int or splitter, default=3
        An int gives ``SourceTargetKFold(cv, shuffle=True, random_state=0)``.
    n_jobs, verbose, pre_dispatch :
        As in GridSearchCV.
    error_score : "raise" or float, default="raise"
        Unlike GridSearchCV, a failing fit or score raises by default, so a fold
        without target rows is an error, never a silent NaN.
    return_train_score : bool, default=False
        As in GridSearchCV.

    Attributes
    ----------
    best_estimator_, best_index_, best_params_, cv_results_, n_splits_, refit_time_
        As in GridSearchCV. There is no ``best_score_``: the winner is chosen by a
        rule over several label-free scores (GridSearchCV has none either when
        ``refit`` is a callable); ``cv_results_`` holds every score.
    selection_report_ : dict
        How the winner was chosen (``SafeDASelection.last_report_``).

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
        """The selection in force: the user's (or the default), with source-only
        worked out from the estimator when it names none (a copy: the parameter is
        not modified)."""
        if self.selection is None:
            return SafeDASelection(source_only=_default_source_only(self.estimator))
        if getattr(self.selection, "source_only", None) is not None:
            return self.selection
        import copy

        sel = copy.copy(self.selection)
        sel.source_only = _default_source_only(self.estimator)
        return sel

    def fit(self, X, y=None, **params):
        """Search with ``y == -1`` marking unlabeled target rows."""
        sel = self._selection()
        cv = self.cv
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            cv = SourceTargetKFold(cv, shuffle=True, random_state=0)
        grid = _with_source_only(self.param_grid, sel._source_only())
        from sklearn.model_selection import ParameterGrid

        consensus = sel._rule() == "consensus" and len(ParameterGrid(grid)) >= 3
        search = GridSearchCV(
            self.estimator, grid, scoring=sel.scoring, refit=False if consensus else sel,
            cv=cv, n_jobs=self.n_jobs, verbose=self.verbose, pre_dispatch=self.pre_dispatch,
            error_score=self.error_score, return_train_score=self.return_train_score,
        ).fit(X, y, **params)
        for attr in ("cv_results_", "best_index_", "best_params_", "best_estimator_",
                     "refit_time_", "scorer_", "n_splits_", "multimetric_"):
            if hasattr(search, attr):
                setattr(self, attr, getattr(search, attr))
        if consensus:
            self._consensus(sel, X, y, params)
            return self
        self.selection_report_ = dict(sel.last_report_)
        self._agreement_guard(sel, X, y, params)
        return self

    def _consensus(self, sel, X, y, params):
        """Refit every candidate on all rows, then pick by :meth:`SafeDASelection.select_by_consensus`
        on their target predictions (the score rule's pick is reported as ``score_winner``)."""
        import time

        from joblib import Parallel, delayed

        cand = list(self.cv_results_["params"])
        scores = {k: self.cv_results_[f"mean_test_{k}"] for k in sel.scoring}
        score_pick = sel.select(cand, scores)
        tgt = parse_domains(y, params.get("sample_domain"), who="DomainAdaptationSearchCV",
                            n_samples=num_samples(X)).target_index
        Xt = take(X, tgt)
        t0 = time.perf_counter()
        fits = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_one)(clone(self.estimator).set_params(**p), X, y, params) for p in cand)
        self.refit_time_ = time.perf_counter() - t0
        preds = np.stack([np.asarray(f.predict(Xt)) for f in fits])
        chosen = sel.select_by_consensus(cand, preds)
        self.selection_report_ = dict(sel.last_report_, score_winner=score_pick,
                                      agreement=sel.last_report_["agreement_with_source_only"][
                                          chosen])
        self.best_index_ = chosen
        self.best_params_ = cand[chosen]
        self.best_estimator_ = fits[chosen]

    def _agreement_guard(self, sel, X, y, params):
        """Fall back to source-only when the chosen model changes too many target
        predictions of the source-only model (a collapsed or over-aligned model)."""
        rep = self.selection_report_
        rep["agreement"] = None
        t = sel._min_agreement()
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



def _fit_one(estimator, X, y, params):
    return estimator.fit(X, y, **params)
