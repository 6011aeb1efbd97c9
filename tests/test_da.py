"""Deep CORAL, MMD (DAN), CDAN and information maximisation on the shared DA core:
each method's loss acts, what it aligns gets aligned, and the sklearn contract holds
(clone, pickle, GridSearchCV with a DA splitter and scorer, y == -1 and sample_domain)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from tlestimators import CDANAdapter, DeepCORALAdapter, InfoMaxAdapter, MMDAdapter
from tlestimators.losses import coral_loss, mmd_loss

MLP = {"hidden_sizes": (16,)}
METHODS = [DeepCORALAdapter, MMDAdapter, CDANAdapter, InfoMaxAdapter]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (conftest)


def shifted(n=120, seed=0, scale=1.5, shift=1.0):
    rng = np.random.default_rng(seed)
    Xs = rng.normal(size=(n, 6)).astype(np.float32)
    ys = (Xs[:, 0] + Xs[:, 1] > 0).astype(int)
    Xt = rng.normal(size=(n, 6)).astype(np.float32)
    yt = (Xt[:, 0] + Xt[:, 1] > 0).astype(int)
    Xt = Xt * scale + shift
    return np.vstack([Xs, Xt]), np.r_[ys, -np.ones(n, int)], Xt, yt


@pytest.fixture(scope="module")
def data():
    return shifted()


@pytest.mark.parametrize("cls", METHODS)
def test_fit_predict_clone_pickle(cls, data):
    X, y, Xt, yt = data
    est = cls(backbone_kwargs=MLP, max_epochs=3, random_state=0).fit(X, y)
    assert est.n_target_ == 120 and est.n_source_ == 120
    proba = est.predict_proba(Xt)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    # the method's loss was in the objective once lambda ramped up
    assert est.history_[-1, "lambda"] > 0.9 * est.lambda_max
    assert abs(est.history_[-1, "adapt_loss"]) > 0
    # only the adversarial method has a domain classifier; the others say nan (documented)
    assert np.isnan(est.domain_accuracy_) == (cls is not CDANAdapter)
    if cls is CDANAdapter:
        assert 0.0 <= est.domain_accuracy_ <= 1.0
    assert "domain_accuracy_" in cls.__doc__ and "nan" in cls.__doc__
    c = clone(est)
    assert not hasattr(c, "net_") and c.get_params() == est.get_params()
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(restored.predict_proba(Xt), proba, atol=1e-6)
    # same seed, no adaptation weight: a different model
    src = clone(est).set_params(lambda_max=0.0).fit(X, y)
    if cls is not CDANAdapter:  # an adversarial domain classifier trains even at lambda 0
        assert src.history_[-1, "adapt_loss"] == 0.0
    assert np.abs(src.predict_proba(Xt) - proba).max() > 1e-5


@pytest.mark.parametrize("cls", METHODS)
def test_gridsearch_with_da_splitter_and_scorer(cls, data):
    from tlestimators.metrics import PredictionEntropyScorer
    from tlestimators.model_selection import SourceTargetKFold

    X, y, _, _ = data
    gs = GridSearchCV(cls(backbone_kwargs=MLP, max_epochs=2, random_state=0),
                      {"lambda_max": [0.0, 1.0]}, cv=SourceTargetKFold(2, random_state=0),
                      scoring=PredictionEntropyScorer())
    gs.fit(X, y)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert gs.best_estimator_.n_target_ == 120


@pytest.mark.parametrize("cls", METHODS)
def test_labeled_targets_through_sample_domain_and_bad_params(cls, data):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y, _, yt = data
    yy = y.copy()
    yy[120:125] = yt[:5]  # 5 labeled target rows
    sd = np.r_[np.ones(120, int), -np.ones(120, int)]
    est = cls(backbone_kwargs=MLP, max_epochs=1, random_state=0).fit(X, yy, sample_domain=sd)
    assert est.n_target_ == 120 and est.n_source_ == 120
    with pytest.raises(InvalidParameterError, match=f"'lambda_max' parameter of {cls.__name__}"):
        cls(lambda_max=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="needs target-domain rows"):
        cls(backbone_kwargs=MLP, max_epochs=1).fit(X[:120], y[:120])


# the DANN paper's SGD recipe, every DA estimator's defaults before 0.3
OLD_RECIPE = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "standardize": None,
              "lambda_max": 1.0}


@pytest.mark.parametrize("cls", METHODS)
def test_default_recipe_fits_small_scale_inputs_the_old_one_did_not(cls):
    """Dense inputs of small per-column scale (0.02, like sentence embeddings): the shared
    recipe (Adam 1e-3, one global input scale) fits the source in 20 epochs, the old SGD
    recipe on raw inputs stays at chance."""
    from tlestimators.estimators.frozen import Standardize

    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(300, 4))
    ys = (Xs[:, 0] + Xs[:, 1] > 0).astype(int)
    Xt = rng.normal(size=(300, 4)) * 1.5 + 1.0
    X = (0.02 * np.vstack([Xs, Xt])).astype(np.float32)
    y = np.r_[ys, -np.ones(300, int)]
    new = cls(backbone_kwargs=MLP, random_state=0).fit(X, y)
    old = cls(backbone_kwargs=MLP, random_state=0, **OLD_RECIPE).fit(X, y)
    assert type(new.net_.optimizer_) is torch.optim.Adam and new.net_.lr == 1e-3
    assert isinstance(new.net_.module_.scaler, Standardize)  # dense: "auto" -> "global"
    assert type(old.net_.optimizer_) is torch.optim.SGD
    assert isinstance(old.net_.module_.scaler, torch.nn.Identity)
    assert new.score(X[:300], ys) > 0.8 > 0.6 > old.score(X[:300], ys)


@pytest.mark.parametrize("cls", METHODS)
def test_defaults_are_dann_recipe_sparse_inputs_stay_unscaled(cls, data):
    from scipy import sparse

    from tlestimators import DANNAdapter

    mine, dann = cls().get_params(), DANNAdapter().get_params()
    for p in ("optimizer", "lr", "lr_schedule", "lambda_schedule", "standardize", "momentum",
              "max_epochs", "batch_size", "balanced", "head_init"):
        assert mine[p] == dann[p], p
    # the docstring states the method's own lambda_max default
    assert f"lambda_max : float, default={mine['lambda_max']:g}" in cls.__doc__
    X, y, _, _ = data
    est = cls(backbone_kwargs=MLP, max_epochs=1, random_state=0).fit(
        sparse.csr_matrix(np.maximum(X, 0)), y)
    assert isinstance(est.net_.module_.scaler, torch.nn.Identity)  # "auto": no scaling


def _gap(est, X, y, fn):
    Z = torch.as_tensor(est.transform(X))
    t = torch.as_tensor(y == -1)
    return fn(Z[~t], Z[t]).item()


def test_coral_aligns_feature_covariances():
    # a pure covariance shift (no mean shift): what CORAL is for
    X, y, _, _ = shifted(scale=3.0, shift=0.0)
    kw = dict(backbone_kwargs={"hidden_sizes": (8,)}, max_epochs=15, lr=0.01, random_state=0)
    src = DeepCORALAdapter(lambda_max=0.0, **kw).fit(X, y)
    coral = DeepCORALAdapter(lambda_max=20.0, **kw).fit(X, y)
    assert _gap(coral, X, y, coral_loss) < 0.6 * _gap(src, X, y, coral_loss)


def test_mmd_reduces_the_discrepancy():
    X, y, _, _ = shifted(shift=2.0)
    kw = dict(backbone_kwargs={"hidden_sizes": (8,)}, max_epochs=15, lr=0.01, random_state=0)
    src = MMDAdapter(lambda_max=0.0, **kw).fit(X, y)
    mmd = MMDAdapter(lambda_max=1.0, **kw).fit(X, y)
    assert _gap(mmd, X, y, mmd_loss) < 0.4 * _gap(src, X, y, mmd_loss)


def test_infomax_makes_target_predictions_confident(data):
    X, y, Xt, _ = data
    kw = dict(backbone_kwargs=MLP, max_epochs=15, optimizer="adamw", lr=0.01,
              lr_schedule="warmup_cosine", standardize="global", head_init="probe",
              random_state=0)

    def mean_entropy(est):
        p = est.predict_proba(Xt)
        return float(-(p * np.log(p + 1e-12)).sum(1).mean())

    src = InfoMaxAdapter(lambda_max=0.0, **kw).fit(X, y)
    im = InfoMaxAdapter(lambda_max=1.0, pseudo_label_threshold=0.9, **kw).fit(X, y)
    assert mean_entropy(im) < 0.7 * mean_entropy(src)
    # diversity: both classes still predicted on the target
    assert len(set(im.predict(Xt))) == 2
    assert "pseudo_label_loss" in im.history_[-1]


def test_cdan_conditions_on_predictions_and_uses_random_map_when_wide(data):
    X, y, _, _ = data
    est = CDANAdapter(backbone_kwargs=MLP, max_epochs=2, random_state=0).fit(X, y)
    crit = est.net_.module_.criterion
    assert crit.conditional and crit.random_map is None
    assert crit.domain_head[0].in_features == 16 * 2  # features (x) 2 class probabilities
    wide = CDANAdapter(backbone_kwargs={"hidden_sizes": (2100,)}, domain_head="linear",
                       max_epochs=1, random_state=0).fit(X, y)
    assert wide.net_.module_.criterion.random_map == 1024
    p = wide.predict_domain_proba(X)
    assert p.shape == (240,) and np.std(p) > 0


def test_input_scaler_global_keeps_geometry_per_feature_zscores():
    from scipy import sparse

    from tlestimators.estimators._da import input_scaler

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(500, 3)) * [1.0, 10.0, 0.01] + [5.0, -2.0, 0.0]
    out = input_scaler(Z, "global")(torch.as_tensor(Z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.var(0).mean(), 1.0, rtol=1e-3)
    sd = out.std(0)
    np.testing.assert_allclose(sd / sd[0], Z.std(0) / Z.std(0)[0], rtol=1e-3)  # ratios kept
    per = input_scaler(Z, "per_feature")(torch.as_tensor(Z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(per.std(0), 1.0, rtol=1e-3)
    S = sparse.csr_matrix(np.maximum(Z, 0))
    sc = input_scaler(S, "global")
    assert torch.count_nonzero(sc.mean) == 0  # sparse input: scaled, not centred
    assert sc.std.unique().numel() == 1


# ----------------------------------------------------------------- consensus selection
def test_consensus_selection_hand_computed():
    from tlestimators.model_selection import SafeDASelection

    params = [{"lambda_max": 0.0}, {"lambda_max": 0.3}, {"lambda_max": 1.0},
              {"lambda_max": 3.0}]
    so = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    a = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]  # agrees with so on 8/10
    b = [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]  # 7/10
    c = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # collapsed: 5/10, not eligible at 0.7
    sel = SafeDASelection()
    # vote over {so, a, b}: rows 3, 4 -> 1 (a, b), row 9 -> 1 (so, a); so = a except
    # rows 3, 4 -> a agrees with the vote on 10/10, b on 9/10, so on 8/10
    assert sel.select_by_consensus(params, [so, a, b, c]) == 1
    rep = sel.last_report_
    assert rep["eligible"] == [True, True, True, False]
    np.testing.assert_allclose(rep["agreement_with_source_only"], [1.0, 0.8, 0.7, 0.5])
    np.testing.assert_allclose(rep["agreement_with_vote"][:3], [0.8, 1.0, 0.9])
    # without the guard the collapsed model joins the vote and wins it
    assert SafeDASelection(min_agreement=None).select_by_consensus(
        params, [so, a, b, c]) in (1, 3)
    # a tie between source-only and an adapted model goes to source-only
    assert sel.select_by_consensus(params[:3], [so, so, so]) == 0
    with pytest.raises(ValueError, match="target_predictions must have shape"):
        sel.select_by_consensus(params, [so, a])
    with pytest.raises(ValueError, match="rule must be"):
        SafeDASelection(rule="vote").select_by_consensus(params, [so, a, b, c])
    with pytest.raises(ValueError, match="min_agreement must be"):
        SafeDASelection(min_agreement=2.0).select_by_consensus(params, [so, a, b, c])


def test_search_cv_consensus_picks_an_adapted_model_that_beats_source_only():
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression

    from tlestimators.model_selection import DomainAdaptationSearchCV

    class ShiftLR(ClassifierMixin, BaseEstimator):
        def __init__(self, lambda_max=0.0):
            self.lambda_max = lambda_max

        def fit(self, X, y):
            src = np.asarray(y) != -1
            self.shift_ = X[~src].mean(0) - X[src].mean(0)
            self.lr_ = LogisticRegression().fit(X[src] + self.lambda_max * self.shift_,
                                                np.asarray(y)[src])
            self.classes_ = self.lr_.classes_
            return self

        def predict(self, X):
            return self.lr_.predict(X)

        def predict_proba(self, X):
            return self.lr_.predict_proba(X)

        def transform(self, X):
            return X

    rng = np.random.default_rng(0)
    Zs, Zt = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    X = np.vstack([Zs, Zt + [0.6, 0.0]])  # moves 23 % of the target rows across
    y = np.r_[(Zs[:, 0] > 0).astype(int), -np.ones(300, int)]
    Xt, yt = Zt + [0.6, 0.0], (Zt[:, 0] > 0).astype(int)
    # most candidates correct most of the shift: their majority is near the truth
    search = DomainAdaptationSearchCV(
        ShiftLR(), {"lambda_max": [0.2, 0.9, 1.0, 1.1, 30.0]}, cv=2).fit(X, y)
    rep = search.selection_report_
    lams = [p["lambda_max"] for p in search.cv_results_["params"]]
    assert rep["rule"] == "consensus" and lams[rep["source_only"]] == 0.0
    assert not rep["eligible"][lams.index(30.0)]  # rewrites most target labels
    assert search.best_params_["lambda_max"] in (0.9, 1.0, 1.1)
    acc = np.mean(search.predict(Xt) == yt)
    assert acc > np.mean(ShiftLR().fit(X, y).predict(Xt) == yt) + 0.1
    np.testing.assert_array_equal(search.best_estimator_.predict(Xt), search.predict(Xt))
    assert np.isfinite(search.cv_results_["mean_test_dev"]).all()
