"""Unsupervised DA scorers and the source/target splitters."""

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from tlestimators import DANNAdapter
from tlestimators.metrics import (
    CircularValidationScorer,
    DeepEmbeddedValidationScorer,
    ImportanceWeightedScorer,
    PredictionEntropyScorer,
    domain_density_ratio,
    prediction_entropy,
)
from tlestimators.model_selection import SourceTargetKFold, SourceTargetShuffleSplit


class SourceOnlyLR(ClassifierMixin, BaseEstimator):
    """Logistic regression that ignores rows with y == -1 (a minimal DA-style estimator).
    ``scramble=True`` shuffles its predictions across rows: a useless model to select
    against."""

    def __init__(self, C=1.0, scramble=False):
        self.C = C
        self.scramble = scramble

    def fit(self, X, y):
        y = np.asarray(y)
        keep = y != -1
        self.lr_ = LogisticRegression(C=self.C).fit(X[keep], y[keep])
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        p = self.lr_.predict_proba(X)
        return np.random.default_rng(0).permutation(p) if self.scramble else p

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]

    def transform(self, X):
        return X


def covariate_shift(n=400, seed=0):
    rng = np.random.default_rng(seed)
    Xs = rng.normal(0, 1, size=(n, 2))
    Xt = rng.normal(1.5, 1, size=(n, 2))
    ys = (Xs[:, 0] > 0.3).astype(int)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(n, int)]
    return X, y


def test_prediction_entropy_bounds():
    assert prediction_entropy(np.full((3, 4), 0.25)) == pytest.approx(1.0)
    assert prediction_entropy(np.eye(3)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="2-D"):
        prediction_entropy(np.ones(3))


def test_entropy_scorer_prefers_confident_model():
    X, y = covariate_shift()
    confident = SourceOnlyLR(C=100.0).fit(X, y)
    timid = SourceOnlyLR(C=1e-4).fit(X, y)
    s = PredictionEntropyScorer()
    assert s(confident, X, y) > s(timid, X, y)
    assert s(confident, X, y) <= 0


def test_density_ratio_grows_toward_the_target():
    X, y = covariate_shift()
    w = domain_density_ratio(X[y != -1], X[y == -1])
    src = X[y != -1]
    # the true ratio N(1.5, 1) / N(0, 1) grows along x0 + x1
    from scipy.stats import spearmanr

    assert spearmanr(w, src.sum(1)).statistic > 0.9
    # E_source[p_t / p_s] = 1: a calibrated domain classifier's weights average near 1
    assert 0.5 < w.mean() < 2.0


def test_iwv_tracks_target_accuracy_better_than_source_accuracy():
    rng = np.random.default_rng(1)
    Xs = rng.normal(0, 1, size=(600, 2))
    Xt = rng.normal(2.0, 1, size=(600, 2))
    concept = lambda Z: (Z[:, 0] ** 2 > 1.5).astype(int)  # noqa: E731 - nonlinear concept
    X = np.vstack([Xs, Xt])
    y = np.r_[concept(Xs), -np.ones(600, int)]
    model = SourceOnlyLR().fit(X, y)  # linear model: fits source, fails on target
    target_acc = np.mean(model.predict(Xt) == concept(Xt))
    source_acc = np.mean(model.predict(Xs) == concept(Xs))
    iwv = ImportanceWeightedScorer()(model, X, y)
    assert abs(iwv - target_acc) < abs(source_acc - target_acc)
    assert -ImportanceWeightedScorer(metric="log_loss")(model, X, y) > 0


class HalfProba:
    """A domain classifier that says 0.5 everywhere: all importance weights equal 1."""

    def fit(self, X, d):
        return self

    def predict_proba(self, X):
        return np.full((X.shape[0], 2), 0.5)

    def get_params(self, deep=True):
        return {}


def test_dev_equals_source_log_loss_when_weights_are_one():
    X, y = covariate_shift()
    model = SourceOnlyLR().fit(X, y)
    src = y != -1
    p = model.predict_proba(X[src])[np.arange(src.sum()), y[src]]
    dev = DeepEmbeddedValidationScorer(domain_classifier=HalfProba())(model, X, y)
    assert dev == pytest.approx(np.mean(np.log(p)))
    bad = SourceOnlyLR(scramble=True).fit(X, y)
    assert DeepEmbeddedValidationScorer()(model, X, y) > DeepEmbeddedValidationScorer()(bad, X, y)


def test_circular_validation_separates_good_and_bad_models():
    X, y = covariate_shift()
    good = SourceOnlyLR().fit(X, y)
    bad = SourceOnlyLR(scramble=True).fit(X, y)
    s = CircularValidationScorer()
    assert s(good, X, y) > 0.8
    assert s(bad, X, y) < 0.7


@pytest.mark.parametrize(
    "scorer",
    [PredictionEntropyScorer(), ImportanceWeightedScorer(), DeepEmbeddedValidationScorer(),
     CircularValidationScorer()],
)
def test_scorers_say_when_there_is_no_target(scorer):
    X, y = covariate_shift()
    model = SourceOnlyLR().fit(X, y)
    src = y != -1
    with pytest.raises(ValueError, match="needs target-domain rows.*got none.*SourceTargetKFold"):
        scorer(model, X[src], y[src])


def test_scorers_explain_a_string_minus_one():
    X, y = covariate_shift()
    model = SourceOnlyLR().fit(X, y)
    y_str = np.r_[np.where(y[y != -1] == 1, "pos", "neg"), -np.ones((y == -1).sum(), int)]
    assert y_str.dtype.kind == "U"  # what np.r_ makes of str labels and -1
    with pytest.raises(ValueError, match="string '-1' in 400 rows"):
        PredictionEntropyScorer()(model, X, y_str)


def test_gridsearch_with_plain_kfold_names_the_cause():
    import warnings

    from sklearn.model_selection import KFold

    X, y = covariate_shift(100)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        GridSearchCV(SourceOnlyLR(), {"C": [1.0]}, cv=KFold(3),
                     scoring=PredictionEntropyScorer()).fit(X, y)
    msgs = " ".join(str(w.message) for w in rec)
    assert "Each validation fold must hold target rows" in msgs
    with pytest.raises(ValueError, match="Each validation fold must hold target rows"):
        GridSearchCV(SourceOnlyLR(), {"C": [1.0]}, cv=KFold(3), error_score="raise",
                     scoring=PredictionEntropyScorer()).fit(X, y)


def test_weighted_scorers_need_source_rows():
    X, y = covariate_shift()
    model = SourceOnlyLR().fit(X, y)
    tgt = y == -1
    with pytest.raises(ValueError, match="needs labeled source samples"):
        DeepEmbeddedValidationScorer()(model, X[tgt], y[tgt])


def test_splitter_keeps_both_domains_and_classes_in_every_fold():
    X, y = covariate_shift(100)
    for cv in (SourceTargetKFold(5, random_state=0), SourceTargetShuffleSplit(4, random_state=0)):
        folds = list(cv.split(X, y))
        assert len(folds) == cv.get_n_splits()
        for train, test in folds:
            for part in (train, test):
                assert (y[part] == -1).any() and (y[part] == 0).any() and (y[part] == 1).any()
    tests = np.concatenate([te for _, te in SourceTargetKFold(5, random_state=0).split(X, y)])
    assert np.array_equal(np.sort(tests), np.arange(len(y)))


def test_splitter_errors():
    y = np.r_[np.zeros(10, int), np.ones(10, int), -np.ones(2, int)]
    with pytest.raises(ValueError, match="target domain -1 has 2 rows, fewer than n_splits=5"):
        list(SourceTargetKFold(5).split(None, y))
    with pytest.raises(ValueError, match="needs target-domain rows"):
        list(SourceTargetKFold(2).split(None, y[:20]))
    with pytest.raises(ValueError, match="n_splits must be an int >= 2"):
        list(SourceTargetKFold(1).split(None, y))


def test_splitter_uses_routed_sample_domain_for_several_sources():
    y = np.r_[np.zeros(10, int), np.ones(10, int), -np.ones(10, int)]
    sd = np.r_[np.ones(10, int), 2 * np.ones(10, int), -np.ones(10, int)]
    X = np.random.default_rng(0).normal(size=(30, 2))
    with sklearn.config_context(enable_metadata_routing=True):
        cv = SourceTargetKFold(2, random_state=0).set_split_request(sample_domain=True)
        est = SourceOnlyLR()
        scores = cross_val_score(est, X, y, cv=cv, scoring=PredictionEntropyScorer(),
                                 params={"sample_domain": sd})
    assert len(scores) == 2 and np.all(np.isfinite(scores))
    for _, te in SourceTargetKFold(2, random_state=0).split(X, y, sample_domain=sd):
        assert set(sd[te]) == {1, 2, -1}


def test_gridsearch_selects_dann_lambda_without_target_labels():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        Xs = rng.normal(size=(200, 6)).astype(np.float32)
        Xt = (rng.normal(size=(200, 6)) * 1.5 + 2.0).astype(np.float32)
        y = np.r_[(Xs[:, 0] + Xs[:, 1] > 0).astype(int), -np.ones(200, int)]
        X = np.vstack([Xs, Xt])
        gs = GridSearchCV(
            DANNAdapter(backbone_kwargs={"hidden_sizes": (16,)}, max_epochs=4, random_state=0),
            {"lambda_max": [0.0, 1.0]},
            cv=SourceTargetKFold(2, random_state=0),
            scoring={"dev": DeepEmbeddedValidationScorer(),
                     "iwv": ImportanceWeightedScorer(),
                     "ent": PredictionEntropyScorer()},
            refit="dev",
        ).fit(X, y)
    finally:
        torch.set_num_threads(n)
    for key in ("dev", "iwv", "ent"):
        assert np.all(np.isfinite(gs.cv_results_[f"mean_test_{key}"]))
    assert gs.best_params_["lambda_max"] in (0.0, 1.0)
    assert gs.best_estimator_.n_target_ == 200


@pytest.mark.parametrize(
    "module",
    ["tlestimators.estimators.dann", "tlestimators.model_selection",
     "tlestimators.metrics._domain"],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_unlabeled_mask_reads_minus_one_in_every_label_dtype():
    from tlestimators.data import unlabeled_mask
    from tlestimators.model_selection import unlabeled_mask as reexported

    assert reexported is unlabeled_mask

    assert unlabeled_mask([0, -1, 2, -1]).tolist() == [False, True, False, True]
    assert unlabeled_mask(np.array([1.0, -1.0])).tolist() == [False, True]
    assert unlabeled_mask(np.array(["cat", -1, "-1"], dtype=object)).tolist() == [
        False, True, False
    ]
    assert not unlabeled_mask(np.array(["-1", "dog"])).any()  # str labels never unlabeled


def test_parse_domains_checks_and_combines_y_and_sample_domain():
    from tlestimators.data import parse_domains

    y = np.array([0, 1, -1, -1, 2])
    d = parse_domains(y)
    assert d.labeled.tolist() == [True, True, False, False, True]
    assert d.is_target.tolist() == [False, False, True, True, False]
    assert d.domain.tolist() == [1, 1, -1, -1, 1]
    # labeled target rows (y != -1, sample_domain < 0) are target but labeled
    d = parse_domains(y, [1, 2, -1, -1, -1])
    assert d.is_target.tolist() == [False, False, True, True, True]
    assert d.labeled[4] and d.target_index.tolist() == [2, 3, 4]
    with pytest.raises(ValueError, match=r"sample_domain\[1\] is 0"):
        parse_domains(y, [1, 0, -1, -1, 1])
    with pytest.raises(ValueError, match="sample 2 is unlabeled"):
        parse_domains(y, [1, 1, 1, -1, 1])
    with pytest.raises(ValueError, match="X has 4 samples but y has 5"):
        parse_domains(y, n_samples=4)
    with pytest.raises(ValueError, match="must hold integers"):
        parse_domains(y, [1.5, 1, -1, -1, 1])
    with pytest.raises(ValueError, match="every row is a target row"):
        parse_domains([-1, -1], require_source=True)


class MeanShiftLR(SourceOnlyLR):
    """A toy DA estimator: ``lambda_max`` times the source-to-target mean shift is added
    to the source rows before the logistic regression (0 = source-only)."""

    def __init__(self, lambda_max=0.0, C=1.0):
        self.lambda_max = lambda_max
        self.C = C
        self.scramble = False

    def fit(self, X, y):
        y = np.asarray(y)
        src = y != -1
        self.shift_ = X[~src].mean(axis=0) - X[src].mean(axis=0)
        self.lr_ = LogisticRegression(C=self.C).fit(X[src] + self.lambda_max * self.shift_,
                                                    y[src])
        self.classes_ = self.lr_.classes_
        return self


def mean_shifted(n=300, seed=0, shift=2.0):
    rng = np.random.default_rng(seed)
    Zs, Zt = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    X = np.vstack([Zs, Zt + shift])
    y = np.r_[(Zs[:, 0] > 0).astype(int), -np.ones(n, int)]
    return X, y, Zt + shift, (Zt[:, 0] > 0).astype(int)


def test_search_cv_adds_source_only_and_refits_the_selected_candidate():
    from tlestimators.model_selection import DomainAdaptationSearchCV

    X, y, Xt, yt = mean_shifted()
    search = DomainAdaptationSearchCV(MeanShiftLR(), {"lambda_max": [0.5, 1.0]}, cv=2).fit(X, y)
    lams = [p["lambda_max"] for p in search.cv_results_["params"]]
    assert sorted(lams) == [0.0, 0.5, 1.0]  # source-only was added to the grid
    rep = search.selection_report_
    assert search.best_index_ == rep["chosen"] and lams[rep["source_only"]] == 0.0
    assert search.best_estimator_.lambda_max == lams[rep["chosen"]]
    for k in ("dev", "iwv"):
        assert np.all(np.isfinite(search.cv_results_[f"mean_test_{k}"]))
    np.testing.assert_array_equal(search.predict(Xt), search.best_estimator_.predict(Xt))


def test_safe_selection_falls_back_to_source_only_when_scorers_disagree():
    from tlestimators.model_selection import SafeDASelection

    sel = SafeDASelection(source_only={"lambda_max": 0.0})
    params = [{"lambda_max": 0.0}, {"lambda_max": 1.0}, {"lambda_max": 3.0}]
    # entropy alone loves lambda 3 (a collapsed, confident model); DEV and IWV do not
    scores = {"dev": [-0.3, -0.35, -0.9], "iwv": [0.80, 0.78, 0.5], "ent": [-0.5, -0.3, -0.01]}
    assert sel.select(params, scores) == 0
    # all three agree lambda 1 is better: it is chosen
    scores = {"dev": [-0.3, -0.2, -0.9], "iwv": [0.80, 0.85, 0.5], "ent": [-0.5, -0.3, -0.01]}
    assert sel.select(params, scores) == 1
    # exact tie on the ensemble rank goes to source-only
    assert SafeDASelection(min_wins=0).select(
        params[:2], {"dev": [0.0, 1.0], "iwv": [1.0, 0.0]}) == 0
    with pytest.raises(ValueError, match="No candidate has the source-only parameters"):
        sel.select(params[1:], {k: v[1:] for k, v in scores.items()})
    with pytest.raises(ValueError, match="min_wins must be"):
        SafeDASelection(min_wins=5).select(params, scores)


def test_safe_selection_plugs_into_gridsearchcv():
    from tlestimators.model_selection import SafeDASelection

    X, y, Xt, yt = mean_shifted(seed=1)
    sel = SafeDASelection()
    gs = GridSearchCV(MeanShiftLR(), {"lambda_max": [0.0, 1.0]}, scoring=sel.scoring,
                      refit=sel, cv=SourceTargetKFold(2, random_state=0)).fit(X, y)
    assert gs.best_index_ == sel.last_report_["chosen"]
    assert set(sel.scoring) == {"dev", "iwv"}


def test_search_cv_raises_on_a_plain_kfold_instead_of_nan_scores():
    from sklearn.model_selection import KFold

    from tlestimators.model_selection import DomainAdaptationSearchCV

    X, y, _, _ = mean_shifted(100)
    with pytest.raises(ValueError, match="Each validation fold must hold target rows"):
        DomainAdaptationSearchCV(MeanShiftLR(), {"lambda_max": [1.0]}, cv=KFold(3)).fit(X, y)
    s = DomainAdaptationSearchCV(MeanShiftLR(), {"lambda_max": [1.0]})
    assert clone(s).get_params()["param_grid"] == {"lambda_max": [1.0]}


def test_search_cv_agreement_guard_refuses_a_model_that_rewrites_the_target_labels():
    from tlestimators.model_selection import DomainAdaptationSearchCV, SafeDASelection

    X, y, Xt, yt = mean_shifted()
    likes_big_lambda = {"lam": lambda est, X, y: est.lambda_max}  # a scorer fooled by lambda
    grid = {"lambda_max": [30.0]}  # shifts the boundary past every target row
    guarded = DomainAdaptationSearchCV(
        MeanShiftLR(), grid, cv=2, selection=SafeDASelection(scorers=likes_big_lambda)).fit(X, y)
    rep = guarded.selection_report_
    assert rep["winner"] != rep["source_only"]  # the scorer picked lambda 30 ...
    assert rep["agreement"] < 0.8 and rep["fell_back"]  # ... the guard refused it
    assert guarded.best_params_ == {"lambda_max": 0.0}
    assert guarded.best_estimator_.lambda_max == 0.0
    unguarded = DomainAdaptationSearchCV(
        MeanShiftLR(), grid, cv=2,
        selection=SafeDASelection(scorers=likes_big_lambda, min_agreement=None)).fit(X, y)
    assert unguarded.best_params_ == {"lambda_max": 30.0}


def test_search_cv_takes_pandas_rows_by_position_whatever_their_index():
    pd = pytest.importorskip("pandas")
    from tlestimators.model_selection import DomainAdaptationSearchCV

    X, y, Xt, _ = mean_shifted()
    index = np.random.default_rng(0).permutation(len(y)) + 1000  # labels, not positions
    grid = {"lambda_max": [0.5, 1.0]}
    a = DomainAdaptationSearchCV(MeanShiftLR(), grid, cv=2).fit(X, y)
    b = DomainAdaptationSearchCV(MeanShiftLR(), grid, cv=2).fit(
        pd.DataFrame(X, index=index), pd.Series(y, index=index))
    assert a.selection_report_["rule"] == "consensus"  # the path that takes target rows
    assert a.best_params_ == b.best_params_
    np.testing.assert_allclose(a.selection_report_["agreement_with_vote"],
                               b.selection_report_["agreement_with_vote"])
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
