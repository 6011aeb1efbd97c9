"""TransferSearchCV: one call picks the backbone and the strategy within a time budget.

The candidates are whole estimators (zero-shot, frozen probe, frozen MLP head,
fine-tuning, domain adaptation), so the search space is a list of strategies rather
than a grid of one estimator's parameters. The search runs in rounds:

1. **cheap candidates run in full first**: zero-shot and heads on frozen embeddings
   cost one embedding pass (shared by every candidate and fold through the feature
   cache) plus seconds of head fitting; the LP-FT probe stage on a fold is the same
   fit for every fine-tuning candidate on that fold, which
   :class:`~tlestimators.probe.LinearProbeCV` copies instead of solving again;
2. **expensive candidates** (those with a training-length resource, ``max_epochs``) are
   then raced by successive halving: every survivor is cross-validated at a small
   number of epochs, and only the best ``1 / eta`` of them, and only those that can
   still win (their mean score within ``margin`` plus one standard error of the
   difference of the best candidate's so far: a race that stops a candidate only when
   it is measurably behind, as Hoeffding races do, Maron & Moore 1994), go on to
   ``eta`` times more epochs, up to their own ``max_epochs``. When one expensive
   candidate is left and it leads (or ties) every candidate, there is nothing left to
   race: it is chosen and refit at its ``max_epochs`` without cross-validating more
   epochs (successive halving's premise: in expectation a learning curve rises).
   **Rungs are resumed, not refitted**, for estimators that support warm starting
   (:class:`~tlestimators.FineTuneClassifier` with ``warm_start``; see ``_resume_support``): each
   fold's fitted estimator is kept and continued to the next rung's epochs on the same
   fold rows (``warm_start=True``, ``max_epochs`` = the next rung), so rungs 1, 3, 10
   cost 1 + 2 + 7 epochs per fold instead of 1 + 3 + 10, and its learning-rate schedule
   ends annealed at the rung's epochs as a fit of that length does. Fold estimators
   travel to joblib's workers and back (pickled) between rungs. Other candidates
   (LoRA, early stopping, an estimator without ``warm_start``) restart from scratch
   at each rung; the report's ``resource`` says which (``"10/10 epochs (1 -> 3 -> 10,
   resumed)"`` or ``"(1, 3, 10, each from scratch)"``). The winner's final refit is
   always a fresh fit on all rows;
3. **the budget** (seconds of wall time for the rounds) is checked before each
   candidate starts (the candidates of a rung run one after the other, each one's
   folds in parallel): a rung whose cost, projected per epoch trained from the
   candidate's previous rung (times the epochs the next rung trains: the increment
   when resumed), or for a first rung from the costliest epoch of the candidates
   already run, does not fit in what is left is not started, and the report says so.
   Only the very first expensive task has nothing to be projected from; it starts
   while any time is left.

With unlabeled target rows (``y == -1``) the candidates are the domain-adaptation
methods plus a **source-only frozen probe** (:class:`FrozenFeatureClassifier` fitted on
the labeled rows only, through :class:`~tlestimators.estimators._labeled.LabeledOnly`;
added on the candidates' backbone when the list has none), folds come from
:class:`~tlestimators.model_selection.SourceTargetKFold`, every candidate (the probe
too) is scored by the label-free scorers of
:class:`~tlestimators.model_selection.SafeDASelection`, and its rule picks the winner as
:class:`~tlestimators.model_selection.DomainAdaptationSearchCV` does (consensus of the
refit candidates' target predictions with >= 3 candidates, else the score rule and the
agreement guard), ties and doubtful cases going to the source-only probe. Nothing is
selected by source accuracy and no fold lacks target rows. Under the consensus rule the
folds' label-free scores could not change the pick (it is made from the candidates
fitted on all rows), so the search skips them: each candidate is fitted once, on all
rows, the budget checked between candidates (:class:`DomainAdaptationSearchCV`, a
``GridSearchCV``, still computes them for its ``cv_results_``).

Why not ``HalvingGridSearchCV``: it gives every candidate the same resource schedule
(``n_samples`` or one parameter shared by all), while here zero-shot and probes have no
training length at all and must run in full, and fine-tuning's resource is its epochs.
The rounds reuse scikit-learn's pieces instead: ``check_cv``, ``check_scoring``,
``clone`` and joblib's ``Parallel`` (so Dask/Ray joblib backends scale it out).
"""

from __future__ import annotations

import copy
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from tlestimators._validation import check_random_state_int
from tlestimators.estimators._base import strategy_of

__all__ = ["TransferSearchCV", "BUDGETS"]

# seconds of search rounds (on a 2-core CPU: "fast" is a probe or two per backbone)
BUDGETS = {"fast": 120.0, "default": 600.0, "thorough": 3600.0}
# the clock the budget is measured with (tests replace it with a fake one)
_clock = time.perf_counter

_DEFAULT_BACKBONES = {"image": ["efficientnet_lite0"], "text": ["minilm"],
                      "features": ["mlp"], "image-text": []}


_NOT_STARTED = "budget: not started"


@dataclass
class _Cand:
    name: str
    estimator: object
    backbone: str
    strategy: str
    resource: str | None = None  # parameter name of the training length, or None
    max_resource: int | None = None
    rung: int | None = None
    scores: list = field(default_factory=list)
    score_table: dict = field(default_factory=dict)
    fit_seconds: float = 0.0
    total_seconds: float = 0.0
    reached: int | None = None
    stopped: str = ""
    alive: bool = True
    promoted: bool = False  # chosen by the race before its max_epochs; refit at it
    schedule: list = field(default_factory=list)
    # why the fold estimators cannot be resumed at the next rung (None: they can)
    no_resume: str | None = None
    folds: list | None = None  # the fitted fold estimators kept for the next rung
    path: list = field(default_factory=list)  # (epochs, resumed) per rung run
    last_epochs: int | None = None  # epochs trained per fold at the last rung


def _infer_modality(X) -> str:
    if hasattr(X, "tocsr"):
        return "features"
    if hasattr(X, "iloc"):  # pandas: a DataFrame of features, a Series of texts or paths
        X = X.to_numpy() if X.ndim == 2 else np.asarray(X, dtype=object)
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "US" or (X.dtype == object and X.ndim == 1 and X.size
                                    and isinstance(X.flat[0], str) and not _looks_like_path(X)):
            return "text"
        if X.ndim == 2 and X.dtype.kind in "fiu":
            return "features"
        return "image"
    items = list(X) if not isinstance(X, (str, bytes)) else [X]
    if items and all(isinstance(t, str) for t in items[:20]):
        return "image" if _looks_like_path(items) else "text"
    return "image"


def _looks_like_path(items) -> bool:
    from tlestimators.data import is_image_path

    return all(is_image_path(t) for t in list(items)[:5])


def _has_target_rows(y) -> bool:
    from tlestimators.data import unlabeled_mask

    return bool(unlabeled_mask(y).any())


def _peft_available() -> bool:
    """Whether ``unfreeze="lora"`` can run (peft, the ``[lora]`` extra, is installed)."""
    import importlib.util

    return importlib.util.find_spec("peft") is not None


def _bare_name(estimator) -> str:
    return type(estimator).__name__


def _describe(est):
    est = getattr(est, "estimator", est) if _is_source_probe(est) else est
    backbone = getattr(est, "backbone", None)
    backbone = backbone if isinstance(backbone, str) else type(backbone).__name__
    return backbone


def _is_source_probe(est) -> bool:
    """A frozen probe fitted on the labeled rows only: the DA mode's fallback."""
    from tlestimators.estimators._labeled import LabeledOnly

    return isinstance(est, LabeledOnly) and _bare_name(est.estimator) == "FrozenFeatureClassifier"


def _source_probe_like(estimators, modality, random_state):
    """``LabeledOnly(FrozenFeatureClassifier(...))`` on the backbone (and its kwargs,
    cache, device) of the first candidate that names one; ``None`` when none does and
    the data are not 2-D features."""
    from tlestimators import FrozenFeatureClassifier
    from tlestimators.estimators._labeled import LabeledOnly

    for est in estimators:
        params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
        if isinstance(params.get("backbone"), str):
            kw = {k: params[k] for k in ("backbone_kwargs", "cache", "device") if k in params}
            return LabeledOnly(FrozenFeatureClassifier(params["backbone"], **kw,
                                                       random_state=random_state))
    if modality == "features":
        return LabeledOnly(FrozenFeatureClassifier("mlp", random_state=random_state))
    return None


def _rungs(max_resource, min_resource, eta):
    """Successive-halving rungs of one candidate: ``min * eta**k`` while another factor
    ``eta`` still fits under ``max``, then ``max`` itself (10 epochs, eta 3: 1, 3, 10)."""
    out, r = [], int(min_resource)
    while r < max_resource and r * eta <= max_resource:
        out.append(r)
        r *= eta
    return out + [int(max_resource)]


def _resource_of(est):
    """The training-length parameter of an expensive candidate: ``max_epochs`` of
    fine-tuning, or what an estimator names in a ``_search_resource`` class attribute."""
    name = _bare_name(est)
    res = getattr(est, "_search_resource", None)
    if res is None and name in ("FineTuneClassifier", "AcceleratedFineTuneClassifier"):
        res = "max_epochs"
    if res is None:
        return None, None
    return res, int(est.get_params()[res])


def _resume_support(est):
    """Why the search cannot resume a fitted fold estimator of ``est`` at the next rung,
    or None when it can: the estimator has a ``warm_start`` parameter and declares (by a
    ``_warm_start_unsupported()`` method returning None, as
    :class:`~tlestimators.FineTuneClassifier` does) that ``warm_start=True`` with a
    larger resource continues the fitted model to that resource *in total*. scikit-learn
    estimators differ there (``MLPClassifier(warm_start=True)`` trains ``max_iter`` more
    iterations), so a ``warm_start`` parameter alone is not enough."""
    params = est.get_params(deep=False) if hasattr(est, "get_params") else {}
    if "warm_start" not in params:
        return "no warm_start parameter"
    check = getattr(est, "_warm_start_unsupported", None)
    if check is None:
        return "warm_start not declared to continue to the resource in total"
    return check()


def _se_of_difference(a, b):
    """Standard error of ``mean(a) - mean(b)`` from the fold-to-fold spread of two
    candidates' fold scores (unpaired: conservative; 0 for a candidate against itself
    or with a single fold)."""
    if a is b or len(a) < 2 or len(b) < 2:
        return 0.0
    return float(np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))


def _fit_score(estimator, X, y, train, test, scorers, fit_params, fresh=True, keep=False):
    """Fit on ``train`` (a clone of ``estimator`` when ``fresh``, else ``estimator``
    itself: a fitted fold estimator resumed with ``warm_start=True``), score on
    ``test``; returns ``(scores, fit seconds, fit + score seconds, the fitted estimator
    when keep else None)``."""
    from tlestimators.data import take

    t0 = _clock()
    est = clone(estimator) if fresh else estimator
    Xtr, ytr = take(X, train), np.asarray(y)[train]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        est.fit(Xtr, ytr, **fit_params)
    fit_time = _clock() - t0
    Xte, yte = take(X, test), np.asarray(y)[test]
    scores = {k: float(s(est, Xte, yte)) for k, s in scorers.items()}
    return scores, fit_time, _clock() - t0, (est if keep else None)


def _resource_text(c):
    """The report's ``resource``: ``"full"``, ``"none"`` (never started) or epochs
    reached of the max,
    with the rungs when there were several: ``"10/10 epochs (1 -> 3 -> 10, resumed)"``
    when each rung continued the previous one's fold models, ``"(1, 3, 10, each from
    scratch)"`` when they were refitted."""
    if c.stopped.startswith(_NOT_STARTED):
        return "none"
    if c.resource is None:
        return "full"
    if not c.reached:
        return "none"
    text = f"{c.reached}/{c.max_resource} epochs"
    if len(c.path) > 1:
        rungs = [str(r) for r, _ in c.path]
        if all(resumed for _, resumed in c.path[1:]):
            text += f" ({' -> '.join(rungs)}, resumed)"
        elif not any(resumed for _, resumed in c.path[1:]):
            text += f" ({', '.join(rungs)}, each from scratch)"
        else:
            text += " (" + ", ".join(f"{r}{' resumed' if res else ''}"
                                     for r, res in c.path) + ")"
    return text


class TransferSearchCV(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Pick the backbone and the transfer strategy by cross-validation within a budget.

    Parameters
    ----------
    candidates : "auto" or list, default="auto"
        ``"auto"`` builds them from the data's modality and ``backbones``: zero-shot
        (text backbones; image-text backbones when ``class_names`` is given), the frozen
        probe and a frozen MLP head for every backbone, LP-FT fine-tuning for image and
        text backbones, with all weights trained (``unfreeze="all"``) and with LoRA
        adapters (``unfreeze="lora"``, when peft, the ``[lora]`` extra, is installed),
        and, when ``y`` holds ``-1`` rows, the domain-adaptation methods
        (DANN, Deep CORAL, MMD, CDAN, InfoMax; on an image or text backbone they train
        on its frozen, cached embeddings, ``unfreeze="head"``) with the source-only
        frozen probe. A list
        holds estimators or ``(name, estimator)`` pairs; with ``y == -1`` rows a
        source-only frozen probe is added to it unless it holds one
        (``LabeledOnly(FrozenFeatureClassifier(...))``), on the backbone of its first
        candidate that names one.
    backbones : list of str, default=None
        Backbones for ``"auto"`` (default: ``efficientnet_lite0`` for images, ``minilm``
        for text, the identity ``mlp`` for 2-D features).
    class_names : dict or list, default=None
        Words for the zero-shot candidates, passed to them as given: a dict
        ``label -> words``, or a list with one entry per sorted label (as in
        :class:`~tlestimators.ZeroShotTextClassifier`).
    budget : float or {"fast", "default", "thorough"}, default="default"
        Seconds of wall time for the search rounds (120, 600, 3600 for the presets).
        The final refit of the winner comes on top, like ``GridSearchCV``'s; for a
        fine-tuning pick that is ``max_epochs`` on all rows, which can take longer
        than the rounds (2,000 TREC questions on one CPU thread, ``"fast"``: 88 s of
        rounds, 323 s of refit).
    cv : int or splitter, default=3
        Folds (stratified; source/target-aware with ``y == -1`` rows).
    scoring : str or callable, default=None
        Labeled data: accuracy unless given. Ignored with ``y == -1`` rows, where the
        label-free ``selection`` decides.
    selection : SafeDASelection, default=None
        The label-free selection with ``y == -1`` rows (its ``source_only`` is set to
        the source-only probe's name). ``None``: ``SafeDASelection()``, the consensus
        rule: with >= 3 candidates (and ``refit=True``) every candidate is fitted once
        on all rows, no folds, and the consensus of their target predictions decides;
        ``report_``'s ``mean_score`` is then each candidate's agreement with the
        eligible candidates' majority vote (a label-free accuracy estimate), with no
        std. ``SafeDASelection(rule="scores")`` cross-validates the candidates with its
        label-free scorers on :class:`~tlestimators.model_selection.SourceTargetKFold`
        folds instead. Ignored without ``-1`` rows.
    eta : int, default=3
        Successive-halving factor for the expensive candidates: their rungs are
        ``min_resource * eta**k`` epochs while a further factor ``eta`` fits under their
        ``max_epochs``, then ``max_epochs`` (10 epochs: 1, 3, 10). A candidate whose
        estimator supports warm starting (:class:`~tlestimators.FineTuneClassifier`, except with LoRA,
        early stopping or an accelerator) continues each fold's model from one rung to
        the next (1 + 2 + 7 epochs per fold); others are refitted at each rung. An
        estimator of your own opts in with a ``warm_start`` parameter and a
        ``_warm_start_unsupported()`` method returning None, promising that
        ``warm_start=True`` with a larger resource trains up to it *in total*.
    min_resource : int, default=1
        Epochs at the first rung of the expensive candidates. With few rows per fold
        one epoch is a handful of optimizer steps (100 rows, batch 32: 4), and
        candidates that start slowly are ranked on their start: LoRA's adapters
        start at zero, so after one epoch it can trail full fine-tuning that it
        overtakes later (TREC, 150 rows: 0.65 vs 0.73 after 1 epoch, 0.74 vs 0.72
        after 3, 0.81 vs 0.79 after 10; ``benchmarks/results/search.md``).
        ``min_resource=3`` ranks them at 3 epochs, at about 1.5 times the search's
        time there.
    margin : float, default=0.02
        An expensive candidate continues only while its mean score is within ``margin``
        plus one standard error (from the fold-to-fold spread of the two candidates'
        scores) of the best score seen so far. The standard error keeps a slow starter
        on small data (a first rung of a few optimizer steps) in the race.
    refit : bool, default=True
        Refit the winner on all the data (``best_estimator_``).
    n_jobs : int, default=None
        Parallel (candidate, fold) fits through joblib. A resumed rung sends each fold's
        fitted estimator to a worker and back (pickled).
    random_state : int, RandomState instance or None, default=0
        Seeds the folds and the candidates built by ``"auto"`` (and the source-only
        probe added for domain adaptation). A RandomState is drawn from once per fit;
        ``None`` leaves both unseeded.
    verbose : int, default=0
        ``1`` prints a progress bar over rounds and the report table.

    Attributes
    ----------
    report_ : pandas.DataFrame
        One row per candidate: candidate, backbone, strategy, mean and std score, fit
        seconds, resource reached and why it stopped; sorted best first.
    cv_results_ : dict of arrays
        As in ``GridSearchCV`` (``params``, ``mean_test_score``, ``std_test_score``,
        ``rank_test_score``, ``mean_fit_time``, ``split<k>_test_score``).
    selection_report_ : dict
        With ``y == -1`` rows: what :class:`~tlestimators.model_selection.SafeDASelection` decided (rule, source-only
        and chosen indices into ``cv_results_``, agreements, whether it fell back).
    fallback_ : str or None
        The name of the source-only frozen probe with ``y == -1`` rows.
    best_index_, best_params_, best_score_, best_estimator_, classes_, n_splits_,
    search_seconds_, refit_time_

    See Also
    --------
    sklearn.model_selection.GridSearchCV : an exhaustive search over one estimator's grid.
    tlestimators.model_selection.DomainAdaptationSearchCV : label-free selection of one
        adaptation method's parameters.
    tlestimators.FrozenFeatureClassifier : the frozen-probe candidate.
    tlestimators.FineTuneClassifier : the fine-tuning candidate.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from tlestimators import TransferSearchCV
    >>> X, y = make_classification(200, 10, random_state=0)
    >>> search = TransferSearchCV(budget=60).fit(X.astype("float32"), y)
    >>> search.report_.columns.tolist()[:4]
    ['candidate', 'backbone', 'strategy', 'mean_score']
    """

    _parameter_constraints: dict = {
        "candidates": [StrOptions({"auto"}), list],
        "backbones": [None, list],
        "class_names": [None, dict, list],
        "budget": [Interval(numbers.Real, 0, None, closed="neither"),
                   StrOptions(set(BUDGETS))],
        "cv": ["cv_object"],
        "scoring": [None, str, callable],
        "selection": [None, HasMethods(["select", "select_by_consensus"])],
        "eta": [Interval(numbers.Integral, 2, None, closed="left")],
        "min_resource": [Interval(numbers.Integral, 1, None, closed="left")],
        "margin": [Interval(numbers.Real, 0, None, closed="left")],
        "refit": ["boolean"],
        "n_jobs": [None, numbers.Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, candidates="auto", *, backbones=None, class_names=None,
                 budget="default", cv=3, scoring=None, selection=None, eta=3,
                 min_resource=1, margin=0.02, refit=True, n_jobs=None, random_state=0,
                 verbose=0):
        self.candidates = candidates
        self.backbones = backbones
        self.class_names = class_names
        self.budget = budget
        self.cv = cv
        self.scoring = scoring
        self.selection = selection
        self.eta = eta
        self.min_resource = min_resource
        self.margin = margin
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ candidates
    def _auto_candidates(self, modality, da, labels, seed):
        from tlestimators import (
            DANNAdapter,
            FineTuneClassifier,
            FrozenFeatureClassifier,
            ZeroShotTextClassifier,
        )

        backbones = self.backbones or _DEFAULT_BACKBONES.get(modality, [])
        out = []
        for i, bb in enumerate(backbones):
            if da:
                from tlestimators.estimators import da as da_methods
                from tlestimators.estimators._labeled import LabeledOnly

                # the fallback of the label-free selection: the frozen probe fitted on
                # the labeled (source) rows only, one per backbone
                out.append(("source-only" if i == 0 else f"source-only[{bb}]",
                            LabeledOnly(FrozenFeatureClassifier(bb, random_state=seed))))
                # a pretrained backbone stays frozen: the adaptation nets train on its
                # cached embeddings, shared with the source-only probe (the setting of
                # results/da.md); the random-init mlp over features trains
                unfreeze = "head" if modality in ("image", "text") else "all"
                out.append((f"dann[{bb}]", DANNAdapter(bb, unfreeze=unfreeze, random_state=seed)))
                for cls in (da_methods.DeepCORALAdapter, da_methods.MMDAdapter,
                            da_methods.CDANAdapter, da_methods.InfoMaxAdapter):
                    out.append((f"{cls.__name__.removesuffix('Adapter').lower()}[{bb}]",
                                cls(bb, unfreeze=unfreeze, random_state=seed)))
                continue
            text_words = self.class_names is not None or all(isinstance(c, str)
                                                             for c in labels)
            if modality == "text" and text_words:
                out.append((f"zero-shot[{bb}]",
                            ZeroShotTextClassifier(bb, class_names=self.class_names)))
            out.append((f"probe[{bb}]", FrozenFeatureClassifier(bb, random_state=seed)))
            out.append((f"mlp-head[{bb}]",
                        FrozenFeatureClassifier(bb, head="mlp", random_state=seed)))
            if modality in ("image", "text"):
                out.append((f"fine-tune[{bb}]", FineTuneClassifier(bb, random_state=seed)))
                if _peft_available():
                    out.append((f"lora[{bb}]", FineTuneClassifier(bb, unfreeze="lora",
                                                                  random_state=seed)))
        if modality == "image-text" or any(b.startswith("open_clip/") for b in backbones):
            from tlestimators import ZeroShotCLIPClassifier

            for bb in backbones:
                if bb.startswith("open_clip/") and self.class_names is not None:
                    out.append((f"zero-shot[{bb}]",
                                ZeroShotCLIPClassifier(bb, class_names=self.class_names)))
        if not out:
            raise ValueError(f"No candidates for {modality} data with backbones={backbones!r}.")
        return out

    def _build_candidates(self, X, y, seed=0):
        modality = _infer_modality(X)
        da = _has_target_rows(y)
        # the labels as given (not as strings): zero-shot only when they are words
        labels = list(dict.fromkeys(c for c in np.asarray(y).tolist()
                                    if not (isinstance(c, numbers.Integral) and c == -1)))
        if isinstance(self.candidates, str):
            pairs = self._auto_candidates(modality, da, labels, seed)
        else:
            pairs = []
            for i, c in enumerate(self.candidates):
                name, est = c if isinstance(c, tuple) else (f"{i}:{_bare_name(c)}", c)
                if not hasattr(est, "fit"):
                    raise TypeError(f"candidates[{i}] is not an estimator: {est!r}.")
                pairs.append((name, est))
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique, got {names}.")
        self.fallback_ = None
        if da:
            # the label-free selection falls back to a source-only frozen probe: the first
            # candidate that is one, else one added on the candidates' backbone
            probes = [n for n, e in pairs if _is_source_probe(e)]
            if probes:
                self.fallback_ = probes[0]
            else:
                probe = _source_probe_like([e for _, e in pairs], modality, seed)
                if probe is None:
                    raise ValueError(
                        "With unlabeled target rows (y == -1) the candidates must include "
                        "a source-only model, and none of them names a backbone to build "
                        "the source-only frozen probe from: add "
                        "LabeledOnly(FrozenFeatureClassifier(...)) to candidates."
                    )
                name = "source-only" if "source-only" not in names else "source-only probe"
                pairs.insert(0, (name, probe))
                self.fallback_ = name
        cands = []
        for name, est in pairs:
            res, max_r = _resource_of(est)
            strategy = strategy_of(est)
            cands.append(_Cand(name, est, _describe(est), strategy, res, max_r))
        return cands, modality, da

    # ------------------------------------------------------------------ rounds
    def _budget_seconds(self):
        return float(BUDGETS[self.budget]) if isinstance(self.budget, str) else float(
            self.budget)

    @staticmethod
    def _over_budget(c, r_c, epochs, resume, expensive, left):
        """Why candidate ``c`` must not start its rung of ``r_c`` epochs (``epochs``
        trained, the increment when resumed) with ``left`` seconds left, or "".

        The rung's cost is projected per epoch trained: from the candidate's own last
        rung, or for a first rung from the costliest epoch of the candidates already
        run (none run yet: it starts while any time is left)."""
        what = f"{epochs} more epochs (resumed to {r_c})" if resume else f"{r_c} epochs"
        if c.last_epochs:
            per_epoch, source = c.total_seconds / c.last_epochs, ""
        else:
            per_epoch = max((d.total_seconds / d.last_epochs for d in expensive
                             if d.last_epochs), default=None)
            source = " (projected from the candidates run before it)"
            if per_epoch is None:
                return "" if left > 0 else "budget: none left before its first rung"
        if per_epoch * epochs > left:
            return (f"budget: needs ~{per_epoch * epochs:.0f} s for {what}{source}, "
                    f"{max(left, 0):.0f} s left")
        return ""

    def _run(self, est, X, y, splits, scorers, fit_params, keep=False):
        """Cross-validate one candidate's ``est`` on every split, the folds in parallel.

        ``est`` is one unfitted estimator (cloned for each fold) or a list of one
        fitted estimator per fold, each continued on its own fold's rows (a resumed
        rung). With ``keep`` the fitted fold estimators come back in ``["fitted"]``
        (from joblib's workers, pickled, when ``n_jobs`` runs them in other
        processes)."""
        out = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_score)(est[k] if isinstance(est, list) else est, X, y,
                                train, test, scorers, fit_params,
                                fresh=not isinstance(est, list), keep=keep)
            for k, (train, test) in enumerate(splits))
        return {"scores": [o[0] for o in out], "fit": sum(o[1] for o in out),
                "total": sum(o[2] for o in out), "fitted": [o[3] for o in out]}

    def _record(self, cand, res, main_key):
        cand.score_table = {k: [s[k] for s in res["scores"]] for k in res["scores"][0]}
        cand.scores = cand.score_table[main_key]
        cand.fit_seconds += res["fit"]
        cand.total_seconds = res["total"]

    def _progress(self, k, n, label):
        if self.verbose:
            done = int(20 * k / max(n, 1))
            print(f"[{'#' * done}{'.' * (20 - done)}] round {k}/{n}: {label}", flush=True)

    def fit(self, X, y, **fit_params):
        """Run the search; ``y == -1`` marks unlabeled target rows (domain adaptation).

        Parameters
        ----------
        X : images, texts or 2-D features
        y : array-like of shape (n_samples,)
        **fit_params : passed to every candidate's ``fit``.

        Returns
        -------
        self : TransferSearchCV
        """
        from sklearn.metrics import check_scoring
        from sklearn.model_selection import check_cv

        from tlestimators.data import num_samples
        from tlestimators.model_selection import SafeDASelection, SourceTargetKFold

        self._validate_params()
        start = _clock()
        budget = self._budget_seconds()
        # one seed for the candidates built here and the folds (a RandomState is drawn
        # from once, as sklearn does)
        seed = check_random_state_int(self.random_state)
        cands, modality, da = self._build_candidates(X, y, seed)
        y_arr = np.asarray(y)
        if num_samples(X) != len(y_arr):
            raise ValueError(f"X has {num_samples(X)} samples but y has {len(y_arr)}.")
        if da:
            cv = SourceTargetKFold(self.cv, shuffle=True, random_state=seed) \
                if isinstance(self.cv, numbers.Integral) else self.cv
            # the user's selection (or the default) with source-only = the fallback probe;
            # a copy, so the parameter is not modified
            selection = copy.copy(self.selection if self.selection is not None
                                  else SafeDASelection())
            selection.source_only = {"candidate": self.fallback_}
            if self.refit and selection._rule() == "consensus" and len(cands) >= 3:
                return self._fit_consensus(cands, selection, X, y_arr, start, budget,
                                           fit_params)
            scorers = selection.scoring
            main_key = next(iter(scorers))
        else:
            cv = check_cv(self.cv, y_arr, classifier=True)
            if isinstance(self.cv, numbers.Integral) and hasattr(cv, "shuffle"):
                cv.shuffle, cv.random_state = True, seed
            scorers = {"score": check_scoring(cands[0].estimator, scoring=self.scoring)}
            main_key, selection = "score", None
        splits = list(cv.split(np.zeros(len(y_arr)), y_arr))
        self.n_splits_ = len(splits)

        def remaining():
            return budget - (_clock() - start)

        # round 0: the cheap candidates, in full
        cheap = [c for c in cands if c.resource is None]
        expensive = [c for c in cands if c.resource is not None]
        n_rounds = 1 + max((len(_rungs(c.max_resource, self.min_resource, self.eta))
                            for c in expensive), default=0)
        self._progress(0, n_rounds, f"{len(cheap)} cheap candidates in full")
        # one candidate at a time (its folds in parallel), so the budget is checked
        # between them; source-only and zero-shot come first (they decide the fallback)
        cheap.sort(key=lambda c: (c.name != self.fallback_ and not c.strategy.startswith("zero-shot"),))
        for c in cheap:
            if remaining() <= 0 and any(d.scores for d in cheap):
                c.alive, c.stopped = False, f"{_NOT_STARTED}, none left"
                continue
            self._record(c, self._run(c.estimator, X, y_arr, splits, scorers, fit_params),
                         main_key)
            c.stopped = "completed"
        # successive halving of the expensive candidates on their epochs: each has its
        # own rungs (min_resource * eta**k, then its max_resource); after every rung only
        # the best 1/eta go on, and none that is already more than `margin` below the
        # best candidate so far (labeled data: it can no longer win)
        # A candidate whose estimator supports warm starting (FineTuneClassifier) keeps
        # each fold's fitted estimator between rungs and continues it to the next rung's
        # epochs on the same fold rows (warm_start=True): 1 + 2 + 7 epochs per fold for
        # rungs 1, 3, 10 instead of 1 + 3 + 10. Others restart from scratch at each rung.
        for c in expensive:
            c.schedule = _rungs(c.max_resource, self.min_resource, self.eta)
            c.no_resume = _resume_support(c.estimator)
        rung = 0
        alive = list(expensive)
        while alive:
            tasks = [(c, c.schedule[rung]) for c in alive]
            rung += 1
            label = ", ".join(sorted({str(r_c) for _, r_c in tasks}))
            self._progress(rung, n_rounds, f"{len(tasks)} candidates at {label} epochs")
            # one candidate at a time (its folds in parallel), so the budget is checked
            # right before each starts
            ran = []
            for c, r_c in tasks:
                resume = c.folds is not None
                epochs = r_c - c.reached if resume else r_c
                stop = self._over_budget(c, r_c, epochs, resume, expensive, remaining())
                if stop:
                    c.alive, c.stopped, c.folds = False, stop, None
                    continue
                if resume:
                    est = [f.set_params(**{c.resource: r_c, "warm_start": True})
                           for f in c.folds]
                else:
                    est = clone(c.estimator).set_params(**{c.resource: r_c})
                # the fold estimators of a candidate that can be resumed at its next rung
                keep_folds = c.no_resume is None and r_c < c.max_resource
                res = self._run(est, X, y_arr, splits, scorers, fit_params, keep=keep_folds)
                self._record(c, res, main_key)
                c.path.append((r_c, resume))
                c.folds = res["fitted"] if keep_folds else None
                c.reached, c.rung, c.last_epochs = r_c, rung, epochs
                ran.append(c)
            if not ran:
                break
            scored = [c for c in cands if c.scores]
            leader = max(scored, key=lambda c: float(np.mean(c.scores)))
            best = float(np.mean(leader.scores))
            ranked = sorted(ran, key=lambda c: -np.mean(c.scores))
            keep = max(1, math.ceil(len(ranked) / self.eta))
            alive = []
            for i, c in enumerate(ranked):
                m = float(np.mean(c.scores))
                se = _se_of_difference(c.scores, leader.scores)
                if c.reached >= c.max_resource:
                    c.stopped = "completed"
                elif i >= keep:
                    c.stopped = f"halving: rank {i + 1} of {len(ranked)} at {c.reached} epochs"
                elif not da and m < best - self.margin - se:
                    c.stopped = (f"cannot win: {m:.3f} < best {best:.3f} - margin - "
                                 f"{se:.3f} (1 s.e.) at {c.reached} epochs")
                else:
                    alive.append(c)
            for c in ranked:  # out of the race: its fold models are not needed
                if all(c is not a for a in alive):
                    c.folds = None
            # nothing left to race: the one survivor leads (or ties) every candidate at
            # fewer epochs than its max; learning curves rise with training in
            # expectation (successive halving's premise), so more cross-validated epochs
            # would not change the pick: chosen, refit at its max_epochs
            if not da and len(alive) == 1 and float(np.mean(alive[0].scores)) >= best - 1e-12:
                c = alive.pop()
                c.promoted = True
                c.stopped = (f"leads at {c.reached} epochs with nothing left to race: "
                             f"refit at {c.max_resource} epochs")
        for c in expensive:  # no fold model outlives the race (nor is pickled with it)
            c.folds = None
        self.search_seconds_ = _clock() - start
        if not any(c.scores for c in cands):
            raise RuntimeError(
                f"The budget ({self._budget_seconds():.0f} s) ran out before any candidate "
                "was cross-validated; raise budget=."
            )
        fitted, best_index = None, None
        if da:
            best_index, fitted = self._select_da(cands, selection, X, y_arr, fit_params)
        else:  # the race's pick wins a tie with a candidate at its full resource
            best_index = next((i for i, c in enumerate(cands) if c.promoted), None)
        self._finish(cands, selection, main_key, best_index)
        if self.verbose:
            self._progress(n_rounds, n_rounds, f"done in {self.search_seconds_:.1f} s")
            print(self.report_.to_string(index=False))
        best = self._cands[self.best_index_]
        if fitted is not None:
            self.best_estimator_ = fitted
            self.classes_ = fitted.classes_
        elif self.refit:
            t0 = _clock()
            est = clone(best.estimator)
            if best.resource is not None and best.reached is not None:
                est.set_params(**{best.resource: best.max_resource if best.promoted
                                  else best.reached})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.best_estimator_ = est.fit(X, y, **fit_params)
            self.refit_time_ = _clock() - t0
            self.classes_ = self.best_estimator_.classes_
        return self

    def _fit_consensus(self, cands, selection, X, y, start, budget, fit_params):
        """Domain adaptation under the consensus rule: every candidate fitted once on all
        rows (source-only first; the budget checked between batches of ``n_jobs``
        candidates), then :meth:`~tlestimators.model_selection.SafeDASelection.select_by_consensus`
        on their target predictions. No folds: the rule decides from these fits alone."""
        from joblib import effective_n_jobs

        from tlestimators.data import take, unlabeled_mask

        self.n_splits_ = 0
        order = sorted(range(len(cands)), key=lambda i: cands[i].name != self.fallback_)
        width = max(1, effective_n_jobs(self.n_jobs))
        fits = {}
        self._progress(0, 1, f"{len(cands)} candidates fitted once on all rows")

        def timed(cand):
            t0 = _clock()
            est = self._fit_full(cand, X, y, fit_params)
            return est, _clock() - t0

        for b in range(0, len(order), width):
            batch = order[b:b + width]
            if fits and _clock() - start >= budget:
                for i in batch:
                    cands[i].alive, cands[i].stopped = False, f"{_NOT_STARTED}, none left"
                continue
            out = Parallel(n_jobs=self.n_jobs)(delayed(timed)(cands[i]) for i in batch)
            for i, (est, sec) in zip(batch, out):
                fits[i] = est
                cands[i].fit_seconds = cands[i].total_seconds = sec
                cands[i].reached = cands[i].max_resource
        self.search_seconds_ = _clock() - start
        done = sorted(fits)
        params = [{"candidate": cands[i].name} for i in done]
        Xt = take(X, np.flatnonzero(unlabeled_mask(y)))
        preds = np.stack([np.asarray(fits[i].predict(Xt)) for i in done])
        chosen = int(selection.select_by_consensus(params, preds))
        rep = dict(selection.last_report_)
        vote = np.asarray(rep["agreement_with_vote"], float)
        agree_so = np.asarray(rep["agreement_with_source_only"], float)
        t = rep["min_agreement"]
        for j, i in enumerate(done):
            c = cands[i]
            eligible = rep["eligible"][j]
            # the score of a fitted candidate: its agreement with the eligible ones' vote
            c.scores = [float(vote[j]) if eligible else float("nan")]
            c.stopped = ("completed" if eligible else
                         f"not eligible: agrees with source-only on {agree_so[j]:.2f} "
                         f"< {t:.2f} of target rows")
        for k in ("source_only", "winner", "chosen"):
            rep[k] = done[rep[k]]
        rep["scored"] = [cands[i].name for i in done]
        self.selection_report_ = rep
        self.refit_time_ = 0.0
        self._finish(cands, selection, "score", done[chosen])
        agree = np.full(len(cands), np.nan)
        agree[done] = agree_so
        self.cv_results_["agreement_with_source_only"] = agree
        best = fits[done[chosen]]
        self.best_estimator_, self.classes_ = best, best.classes_
        if self.verbose:
            self._progress(1, 1, f"done in {self.search_seconds_:.1f} s")
            print(self.report_.to_string(index=False))
        return self

    def _fit_full(self, cand, X, y, fit_params):
        est = clone(cand.estimator)
        if cand.resource is not None and cand.reached is not None:
            est.set_params(**{cand.resource: cand.reached})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return est.fit(X, y, **fit_params)

    def _select_da(self, cands, selection, X, y, fit_params):
        """The score rule of :class:`~tlestimators.model_selection.SafeDASelection` on the
        cross-validated label-free scores (``rule="scores"``, fewer than 3 candidates or
        ``refit=False``; the consensus rule goes through :meth:`_fit_consensus`), then
        with ``refit`` the agreement guard against the source-only model. Returns
        ``(index into cands, fitted winner or None)``."""
        from tlestimators.data import take, unlabeled_mask

        scored = [i for i, c in enumerate(cands) if c.scores]
        params = [{"candidate": cands[i].name} for i in scored]
        table = {k: np.array([float(np.mean(cands[i].score_table[k])) for i in scored])
                 for k in selection.scoring}
        chosen = int(selection.select(params, table))
        i0 = selection.last_report_["source_only"]
        Xt = take(X, np.flatnonzero(unlabeled_mask(y)))
        t0 = _clock()
        rep, fitted = dict(selection.last_report_), None
        t = selection._min_agreement()
        rep["agreement"] = None
        if self.refit and t is not None and chosen != i0:
            fitted = self._fit_full(cands[scored[chosen]], X, y, fit_params)
            so = self._fit_full(cands[scored[i0]], X, y, fit_params)
            agree = float(np.mean(np.asarray(fitted.predict(Xt))
                                  == np.asarray(so.predict(Xt))))
            rep["agreement"] = agree
            if agree < t:
                chosen, fitted = i0, so
                rep.update(chosen=i0, fell_back=True)
        if fitted is not None:
            self.refit_time_ = _clock() - t0
        # indices into cv_results_ (every candidate), not into the scored ones
        for k in ("source_only", "winner", "chosen"):
            if isinstance(rep.get(k), numbers.Integral):
                rep[k] = scored[rep[k]]
        rep["scored"] = [cands[i].name for i in scored]
        self.selection_report_ = rep
        return scored[chosen], fitted

    def _finish(self, cands, selection, main_key, best_index=None):
        self._cands = cands
        means = np.array([float(np.mean(c.scores)) if c.scores else np.nan for c in cands])
        if best_index is not None:
            self.best_index_ = int(best_index)
        else:
            self.best_index_ = int(np.nanargmax(means))
        rank = np.empty(len(cands), dtype=int)
        order = np.argsort(-np.where(np.isfinite(means), means, -np.inf), kind="stable")
        rank[order] = np.arange(1, len(cands) + 1)
        self.cv_results_ = {
            "params": [{"candidate": c.name} for c in cands],
            "param_candidate": np.array([c.name for c in cands], dtype=object),
            "mean_test_score": means,
            "std_test_score": np.array([float(np.std(c.scores)) if c.scores else np.nan
                                        for c in cands]),
            "rank_test_score": rank,
            "mean_fit_time": np.array([c.fit_seconds / max(len(c.scores), 1) for c in cands]),
            "resource": np.array([c.reached if c.reached is not None else -1 for c in cands]),
        }
        for k in range(self.n_splits_):
            self.cv_results_[f"split{k}_test_score"] = np.array(
                [c.scores[k] if c.scores else np.nan for c in cands])
        best = cands[self.best_index_]
        self.best_params_ = {"candidate": best.name}
        self.best_score_ = float(means[self.best_index_])

    @property
    def report_(self):
        """The report (see the class docstring), best first: a new DataFrame per access,
        built from the candidates and ``cv_results_`` (no DataFrame is stored, so the
        fitted search saves with tlestimators.save like any estimator)."""
        if "_cands" not in self.__dict__:
            raise AttributeError("report_ exists once the search is fitted.")
        import pandas as pd

        res = self.cv_results_
        rows = [{"candidate": c.name, "backbone": c.backbone, "strategy": c.strategy,
                 "mean_score": float(res["mean_test_score"][i]),
                 "std_score": float(res["std_test_score"][i]),
                 "fit_seconds": round(float(c.fit_seconds), 2), "resource": _resource_text(c),
                 "stopped": c.stopped, "chosen": i == self.best_index_}
                for i, c in enumerate(self._cands)]
        return pd.DataFrame(rows).sort_values(
            ["chosen", "mean_score"], ascending=[False, False], na_position="last"
        ).reset_index(drop=True)

    # ------------------------------------------------------------------ delegation
    def _best_has(attr):
        """Fitted: whether ``best_estimator_`` has ``attr``. Not fitted: the method is
        there and raises ``NotFittedError`` (GridSearchCV's behaviour; which candidate
        wins, and so what it offers, is not known before ``fit``)."""
        def check(self):
            if "best_estimator_" not in self.__dict__:
                return True
            return hasattr(self.best_estimator_, attr)
        return check

    @available_if(_best_has("predict"))
    def predict(self, X):
        """Predictions of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X):
        """Decision function of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``best_estimator_`` on labeled data."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.score(X, y, sample_weight=sample_weight)

    def plot_report(self, path=None, ax=None):
        """Score against cost (fit seconds per fold, log scale), the chosen point marked.

        Parameters
        ----------
        path : str or path-like, default=None
            Also save the figure there (PNG).
        ax : matplotlib Axes, default=None

        Returns
        -------
        fig : matplotlib Figure
        """
        check_is_fitted(self, "report_")
        if ax is None:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6.4, 4.2))
        else:
            fig = ax.figure
        rep = self.report_.dropna(subset=["mean_score"])
        cost = np.maximum(rep["fit_seconds"].to_numpy(float) / max(self.n_splits_, 1), 1e-3)
        ax.errorbar(cost, rep["mean_score"], yerr=rep["std_score"], fmt="o", color="tab:blue",
                    ecolor="0.7", capsize=2)
        for x, yv, name in zip(cost, rep["mean_score"], rep["candidate"]):
            ax.annotate(name, (x, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
        chosen = rep[rep["chosen"]]
        if len(chosen):
            i = chosen.index[0]
            ax.plot(cost[list(rep.index).index(i)], chosen["mean_score"].iloc[0], marker="*",
                    markersize=16, color="tab:red", label=f"chosen: {chosen['candidate'].iloc[0]}",
                    linestyle="none")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xlabel("fit seconds per fold (log)")
        ax.set_ylabel("mean CV score")
        ax.set_title("TransferSearchCV: score against cost")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig
