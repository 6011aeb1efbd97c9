"""TransferSearchCV: a budgeted search over strategies, sklearn-compatible."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV

import tlestimators as tle
from tlestimators.estimators import search as search_mod
from tlestimators.model_selection import SafeDASelection

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # tiny heads: BLAS threads spin-waiting on a busy machine cost more than the solves
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _lr_probe(**kw):
    """A frozen probe with a fixed logistic-regression head (the default head
    cross-validates C, which costs seconds per fit)."""
    from sklearn.linear_model import LogisticRegression

    return tle.FrozenFeatureClassifier("mlp", head=LogisticRegression(), random_state=0, **kw)


@pytest.fixture
def feats():
    rng = np.random.RandomState(0)
    X = rng.randn(120, 6).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def test_search_picks_reports_and_predicts(feats, tmp_path):
    X, y = feats
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "predict_proba", "decision_function", "score"):
        with pytest.raises(NotFittedError):  # as GridSearchCV, not an AttributeError
            getattr(tle.TransferSearchCV(), method)(X, *([y] if method == "score" else []))
    cands = [("probe", _lr_probe()),
             ("mlp-head", tle.FrozenFeatureClassifier("mlp", head="mlp", max_epochs=5,
                                                      random_state=0)),
             ("fine-tune", tle.FineTuneClassifier("mlp", max_epochs=3, head_init="random",
                                                  random_state=0))]
    s = tle.TransferSearchCV(cands, budget=600, cv=3, eta=3).fit(X, y)
    rep = s.report_
    assert list(rep.columns) == ["candidate", "backbone", "strategy", "mean_score", "std_score",
                                 "fit_seconds", "resource", "stopped", "chosen"]
    assert rep["chosen"].sum() == 1 and rep.iloc[0]["chosen"]
    assert set(rep["candidate"]) == {"probe", "mlp-head", "fine-tune"}
    assert rep.set_index("candidate").loc["probe", "strategy"] == "frozen + LogisticRegression head"
    # a linear problem: the winner is far above chance and scores on new data
    assert s.best_score_ > 0.85 and s.score(X, y) > 0.85
    assert s.best_params_["candidate"] == s.cv_results_["params"][s.best_index_]["candidate"]
    for k in ("mean_test_score", "std_test_score", "rank_test_score", "split2_test_score"):
        assert len(s.cv_results_[k]) == 3
    assert s.predict_proba(X).shape == (len(X), 2)
    # successive halving reached the fine-tune candidate's rungs: 1 then 3 epochs
    ft = rep.set_index("candidate").loc["fine-tune"]
    assert ft["resource"] in ("3/3 epochs (1 -> 3, resumed)", "1/3 epochs")
    png = tmp_path / "report.png"
    s.plot_report(png)
    assert png.stat().st_size > 5000
    # clone / pickle / nesting in GridSearchCV
    assert clone(s).get_params()["candidates"][0][0] == "probe"
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.predict(X), s.predict(X))
    # tlestimators.save / load (no pickle) round-trips the fitted search, report included
    tle.save(s, tmp_path / "search")
    s3 = tle.load(tmp_path / "search")
    np.testing.assert_array_equal(s3.predict_proba(X), s.predict_proba(X))
    assert s3.report_.equals(s.report_) and s3.best_params_ == s.best_params_
    outer = GridSearchCV(tle.TransferSearchCV(cands[:1], budget=600, cv=2),
                         {"margin": [0.0, 0.1]}, cv=2).fit(X, y)
    assert outer.best_score_ > 0.8


class _FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


CLOCK = _FakeClock()


class _Costly(ClassifierMixin, BaseEstimator):
    """Predicts the majority class; each fit 'takes' cost + per_epoch * max_epochs fake s."""

    _search_resource = "max_epochs"

    def __init__(self, cost=1.0, per_epoch=1.0, max_epochs=27, quality=0.5):
        self.cost = cost
        self.per_epoch = per_epoch
        self.max_epochs = max_epochs
        self.quality = quality

    def fit(self, X, y):
        CLOCK.t += self.cost + self.per_epoch * self.max_epochs
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def score(self, X, y, sample_weight=None):
        return self.quality + 0.01 * np.log1p(self.max_epochs)


class _Cheap(_Costly):
    _search_resource = None


def test_budget_is_respected_with_a_fake_clock(feats, monkeypatch):
    X, y = feats
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    CLOCK.t = 0.0
    # score = quality + 0.01 * log1p(epochs): "cheap" 0.9333; "a" 0.912 at 1 epoch,
    # 0.928 at 9, 0.938 at 27: behind the cheap one (within the margin) until 27 epochs
    cands = [("cheap", _Cheap(cost=5, per_epoch=0, quality=0.9)),
             ("a", _Costly(per_epoch=2.0, quality=0.905)),
             ("b", _Costly(per_epoch=2.0, quality=0.89)),
             ("c", _Costly(per_epoch=2.0, quality=0.5))]
    s = tle.TransferSearchCV(cands, budget=200, cv=3, eta=3, margin=0.05, refit=False)
    s.fit(X, y)
    assert s.search_seconds_ <= 1.1 * 200
    rep = s.report_.set_index("candidate")
    # cheap: 3 fits x 5 s; rung 1 epoch: 9 fits x 3 s; then only the best of 3 (eta=3)
    # goes on: 3 epochs (3 x 7 s), 9 epochs (3 x 19 s) -> 120 s used; 27 epochs would
    # need ~171 s more, so it is not started
    assert rep.loc["b", "stopped"].startswith("halving")
    assert rep.loc["c", "stopped"].startswith("halving")
    assert rep.loc["a", "stopped"].startswith("budget")
    # _Costly has no warm_start: every rung refits from scratch, and says so
    assert rep.loc["a", "resource"] == "9/27 epochs (1, 3, 9, each from scratch)"
    assert s.best_params_ == {"candidate": "cheap"}
    # with a large budget the same search runs the survivor to its full 27 epochs
    CLOCK.t = 0.0
    s.set_params(budget=10_000).fit(X, y)
    assert s.report_.set_index("candidate").loc["a", "resource"].startswith("27/27 epochs")
    assert s.best_params_ == {"candidate": "a"}


def test_a_first_rung_is_projected_from_the_candidates_run_before_it(feats, monkeypatch):
    X, y = feats
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    # cheap: 3 x 1 s; "a" rung 1: 3 folds x (10 s + 10 s per epoch) = 60 s -> 63 s used.
    # "b" has no rung of its own yet: projected from a's 60 s per epoch, it needs 60 s
    # and 37 s are left, so it is not started (it used to start and end at 123 s)
    CLOCK.t = 0.0
    cands = [("cheap", _Cheap(cost=1, per_epoch=0, quality=0.95)),
             ("a", _Costly(cost=10, per_epoch=10.0, quality=0.9, max_epochs=3)),
             ("b", _Costly(cost=10, per_epoch=10.0, quality=0.9, max_epochs=3))]
    s = tle.TransferSearchCV(cands, budget=100, cv=3, eta=3, margin=0.5,
                             refit=False).fit(X, y)
    rep = s.report_.set_index("candidate")
    assert s.search_seconds_ == pytest.approx(63) and s.search_seconds_ <= 100
    assert rep.loc["b", "stopped"] == ("budget: needs ~60 s for 1 epochs (projected from "
                                       "the candidates run before it), 37 s left")
    assert np.isnan(rep.loc["b", "mean_score"]) and rep.loc["b", "resource"] == "none"
    # with room for both, both run their first rung, and halving keeps one
    CLOCK.t = 0.0
    rep = s.set_params(budget=1000).fit(X, y).report_.set_index("candidate")
    assert rep.loc["b", "resource"] == "1/3 epochs"
    assert rep.loc["b", "stopped"].startswith("halving") and s.search_seconds_ > 123


class _Noisy(_Costly):
    """Fold scores spread by +-spread around the mean (fold k of every fit gets
    offsets[k]), so the race sees a standard error."""

    calls = [0]

    def __init__(self, cost=1.0, per_epoch=1.0, max_epochs=27, quality=0.5, spread=0.0):
        super().__init__(cost=cost, per_epoch=per_epoch, max_epochs=max_epochs,
                         quality=quality)
        self.spread = spread

    def score(self, X, y, sample_weight=None):
        k = _Noisy.calls[0] % 3
        _Noisy.calls[0] += 1
        return super().score(X, y) + self.spread * (k - 1)


def test_race_keeps_a_noisy_slow_starter_and_promotes_a_sole_leader(feats, monkeypatch):
    X, y = feats
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    CLOCK.t = 0.0
    # "slow" is 0.06 behind the cheap candidate at 1 epoch (more than the 0.02 margin)
    # and gains 0.04 per rung: the fold spread (s.e. ~0.07) keeps it in the race, and at
    # 9 epochs it leads with nothing left to race: chosen, refit at its max_epochs
    class _Slow(_Noisy):
        def score(self, X, y, sample_weight=None):
            return super().score(X, y) + 0.04 * np.log(self.max_epochs) / np.log(3)

    class _NoisyCheap(_Noisy):
        _search_resource = None

    cands = [("cheap", _NoisyCheap(cost=1, per_epoch=0, quality=0.8, spread=0.1)),
             ("slow", _Slow(per_epoch=1.0, quality=0.74, spread=0.1))]
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3, eta=3, margin=0.02).fit(X, y)
    rep = s.report_.set_index("candidate")
    assert rep.loc["slow", "resource"].startswith("9/27 epochs")
    assert rep.loc["slow", "stopped"].startswith("leads at 9 epochs")
    assert s.best_params_ == {"candidate": "slow"}
    assert s.best_estimator_.max_epochs == 27  # the refit trains it in full
    # without fold spread the same candidate is measurably behind at 1 epoch: stopped
    cands = [("cheap", _NoisyCheap(cost=1, per_epoch=0, quality=0.8)),
             ("slow", _Slow(per_epoch=1.0, quality=0.74))]
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3, eta=3, margin=0.02).fit(X, y)
    rep = s.report_.set_index("candidate")
    assert rep.loc["slow", "stopped"].startswith("cannot win")
    assert rep.loc["slow", "resource"] == "1/27 epochs"
    assert s.best_params_ == {"candidate": "cheap"}
    # a tie at 3 epochs is enough: the rising learning curve breaks it
    q = 0.8 + 0.01 * (np.log1p(27) - np.log1p(3))
    cands = [("cheap", _Cheap(cost=1, per_epoch=0, quality=0.8)),
             ("ties", _Costly(per_epoch=1.0, quality=q))]
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3, eta=3, margin=0.02).fit(X, y)
    assert s.report_.set_index("candidate").loc["ties", "resource"].startswith("3/27 epochs")
    assert s.best_params_ == {"candidate": "ties"}


def _fast_probe():
    """A source-only frozen probe with a fixed logistic-regression head (fast)."""
    from tlestimators.estimators._labeled import LabeledOnly

    return LabeledOnly(_lr_probe())


class _Adapted(ClassifierMixin, BaseEstimator):
    """A stand-in adaptation method: the fast source-only probe inside, ``flip=True``
    swaps its class probabilities (worse than source-only on the source rows),
    ``flip=False`` copies it exactly (a tie with source-only)."""

    def __init__(self, flip=True):
        self.flip = flip

    def fit(self, X, y):
        self.inner_ = _fast_probe().fit(X, y)
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, X):
        p = self.inner_.predict_proba(X)
        return p[:, ::-1] if self.flip else p

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]

    def transform(self, X):
        return self.inner_.transform(X)


def test_domain_adaptation_search_is_label_free_and_keeps_target_rows(feats):
    X, y = feats
    y_da = y.copy()
    y_da[80:] = -1
    X = X.copy()
    X[80:] += 0.5  # a shifted target domain

    seen = []

    class Recording(tle.DANNAdapter):
        def fit(self, X, y, **kw):
            seen.append(int(np.sum(np.asarray(y) == -1)))
            return super().fit(X, y, **kw)

    cands = [("dann[lambda=0]", Recording("mlp", lambda_max=0.0, max_epochs=3, random_state=0)),
             ("dann", Recording("mlp", max_epochs=3, random_state=0))]
    # the score rule cross-validates the candidates with the label-free scorers
    s = tle.TransferSearchCV(cands, budget=600, cv=2,
                             selection=SafeDASelection(rule="scores")).fit(X, y_da)
    assert s.n_splits_ == 2 and s.selection_report_["rule"] == "scores"
    assert len(seen) == 2 * 2 + (s.best_params_ != {"candidate": "source-only"})
    assert min(seen) > 0  # every training fold held target rows
    names = [p["candidate"] for p in s.cv_results_["params"]]
    # the source-only frozen probe was added (on the candidates' backbone) and scored by
    # the same label-free scorers; selection falls back to it
    assert set(names) == {"source-only", "dann[lambda=0]", "dann"}
    rep = s.report_.set_index("candidate")
    assert rep.loc["source-only", "strategy"] == "source-only (frozen probe)"
    assert rep.loc["source-only", "backbone"] == "mlp"
    assert s.fallback_ == "source-only"
    assert names[s.selection_report_["source_only"]] == "source-only"
    assert np.isfinite(s.cv_results_["mean_test_score"]).all()  # no all-NaN folds


def test_a_fitted_da_search_saves_and_loads(feats, tmp_path):
    X, y = feats
    y_da = y.copy()
    y_da[80:] = -1
    cands = [("dann", tle.DANNAdapter("mlp", max_epochs=2, random_state=0))]
    s = tle.TransferSearchCV(cands, budget=600, cv=2,
                             selection=SafeDASelection(rule="scores")).fit(X, y_da)
    tle.save(s, tmp_path / "da")
    again = tle.load(tmp_path / "da")
    np.testing.assert_array_equal(again.predict_proba(X), s.predict_proba(X))
    assert again.selection_report_ == s.selection_report_
    assert again.report_.equals(s.report_)


def test_source_only_probe_wins_over_worse_and_tied_adaptation(feats):
    X, y = feats
    X = X.copy()
    y_da = y.copy()
    y_da[80:] = -1
    X[80:, :2] = X[80:, :2] @ np.array([[0.9, 0.3], [-0.3, 0.9]], np.float32)  # rotated target
    probe = _fast_probe()
    # worse: an adaptation that flips the labels ranks last on every label-free scorer
    s = tle.TransferSearchCV([("flipped", _Adapted(flip=True)), ("probe", probe)],
                             budget=600, cv=3, refit=True).fit(X, y_da)
    assert s.fallback_ == "probe"  # a user's labeled-only probe is the fallback, not added
    assert len(s.cv_results_["params"]) == 2
    assert s.best_params_ == {"candidate": "probe"}
    assert s.score(X[80:], y[80:]) > 0.7  # it predicts the target, trained on the source
    # tied: the rules send ties to source-only even when the other candidate comes first
    sel = s.selection_report_
    assert sel["chosen"] == sel["source_only"]
    s2 = tle.TransferSearchCV([("same", _Adapted(flip=False)),
                               ("flipped", _Adapted(flip=True)), ("source-only", probe)],
                              budget=600, cv=3).fit(X, y_da)
    # 3 candidates: the consensus rule (refit all, vote on the target rows); "same"
    # agrees with source-only everywhere, "flipped" nowhere (not eligible): a tie
    assert s2.selection_report_["rule"] == "consensus"
    assert s2.selection_report_["eligible"] == [True, False, True]
    assert s2.best_params_ == {"candidate": "source-only"}
    np.testing.assert_array_equal(s2.predict(X[80:]), s.predict(X[80:]))
    # texts whose candidates name no backbone: no probe can be built, a clear error
    texts = np.array(["a b", "c d"] * 20, dtype=object)
    with pytest.raises(ValueError, match="source-only"):
        tle.TransferSearchCV([("flipped", _Adapted())], budget=600).fit(
            texts, np.r_[np.tile([0, 1], 10), -np.ones(20, int)])


class _AdaptedTimed(_Adapted):
    """Also 'takes' ``cost`` fake seconds per fit and counts its fits."""

    fits = []

    def __init__(self, flip=True, cost=0.0):
        super().__init__(flip=flip)
        self.cost = cost

    def fit(self, X, y):
        CLOCK.t += self.cost
        type(self).fits.append(len(y))
        return super().fit(X, y)


def test_consensus_search_fits_each_candidate_once_within_the_budget(feats, monkeypatch):
    X, y = feats
    X = X.copy()
    y_da = y.copy()
    y_da[80:] = -1
    X[80:] += 0.3
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    CLOCK.t = 0.0
    _AdaptedTimed.fits = []
    cands = [("same", _AdaptedTimed(flip=False, cost=100)),
             ("same2", _AdaptedTimed(flip=False, cost=100)),
             ("flipped", _AdaptedTimed(flip=True, cost=100))]
    # the consensus rule decides from fits on all rows: no folds, one fit per candidate
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3).fit(X, y_da)
    assert s.n_splits_ == 0 and _AdaptedTimed.fits == [120, 120, 120]
    assert s.fallback_ == "source-only"  # added on the data's identity backbone
    names = [p["candidate"] for p in s.cv_results_["params"]]
    rep = s.selection_report_
    assert rep["rule"] == "consensus" and names[rep["source_only"]] == "source-only"
    assert s.cv_results_["agreement_with_source_only"][names.index("flipped")] < 0.3
    table = s.report_.set_index("candidate")
    assert table.loc["flipped", "stopped"].startswith("not eligible")
    assert np.isnan(table.loc["flipped", "mean_score"])
    assert table.loc["same", "mean_score"] == 1.0  # agrees with the vote on every row
    assert s.best_params_ == {"candidate": "source-only"}  # ties go to source-only
    assert s.best_estimator_ is not None and s.score(X[80:], y[80:]) > 0.7
    # fake clock: source-only (0 s) first, then "same" (100 s), "same2" (200 s); the
    # budget of 150 s is spent before "flipped" is started
    CLOCK.t = 0.0
    _AdaptedTimed.fits = []
    s = tle.TransferSearchCV(cands, budget=150, cv=3).fit(X, y_da)
    assert len(_AdaptedTimed.fits) == 2
    flipped = s.report_.set_index("candidate").loc["flipped"]
    # a candidate the budget never started reached no resource (it said "full")
    assert flipped["stopped"].startswith("budget: not started") and flipped["resource"] == "none"
    assert s.report_.set_index("candidate").loc["source-only", "resource"] == "full"
    assert s.search_seconds_ <= 250


def test_halving_rungs_are_geometric_and_end_at_max():
    assert search_mod._rungs(10, 1, 3) == [1, 3, 10]
    assert search_mod._rungs(27, 1, 3) == [1, 3, 9, 27]
    assert search_mod._rungs(3, 1, 3) == [1, 3]
    assert search_mod._rungs(2, 5, 3) == [2]


def test_search_embeds_each_item_once(feats):
    from tlestimators.features import feature_cache

    X, y = feats
    cands = [("probe", _lr_probe()),
             ("mlp-head", tle.FrozenFeatureClassifier("mlp", head="mlp", max_epochs=3,
                                                      random_state=0))]
    feature_cache().clear()
    tle.TransferSearchCV(cands, budget=600, cv=3).fit(X, y)
    # 2 candidates x 3 folds + the refit: one embedding pass over the 120 rows
    assert feature_cache().misses == len(X)
    assert feature_cache().hits >= 2 * len(X)


def test_paths_are_images_by_the_one_suffix_list():
    """The search reads a path as an image by the same suffixes as the input checks
    and the CLI (``.ppm`` was once text here and an image there)."""
    from tlestimators.data import IMAGE_SUFFIXES
    from tlestimators.estimators.search import _infer_modality

    for suffix in IMAGE_SUFFIXES:
        assert _infer_modality([f"a{suffix}", f"B{suffix.upper()}"]) == "image"
    assert _infer_modality(["a cat.", "a dog"]) == "text"


def test_a_random_state_instance_seeds_folds_and_candidates_alike(feats, monkeypatch):
    """random_state=RandomState: drawn from once per fit, and that one seed goes to the
    folds and to every candidate built for the search (the folds got None and the
    candidates 0 before)."""
    from tlestimators._validation import check_random_state_int

    X, y = feats
    seen = {}
    real = tle.TransferSearchCV._build_candidates

    def record(self, X, y, seed=0):
        seen["candidates"] = seed
        return real(self, X, y, seed)

    monkeypatch.setattr(tle.TransferSearchCV, "_build_candidates", record)
    s = tle.TransferSearchCV([("probe", _lr_probe())], cv=3,
                             random_state=np.random.RandomState(7)).fit(X, y)
    expected = check_random_state_int(np.random.RandomState(7))
    assert seen["candidates"] == expected
    # the same folds as an int seed of that value
    again = tle.TransferSearchCV([("probe", _lr_probe())], cv=3, random_state=expected).fit(X, y)
    np.testing.assert_array_equal(s.cv_results_["split0_test_score"],
                                  again.cv_results_["split0_test_score"])
    assert tle.TransferSearchCV(random_state=None)._build_candidates(X, y, None)[0][0]\
        .estimator.random_state is None


def test_auto_candidates_follow_the_modality(feats, monkeypatch):
    X, y = feats
    s = tle.TransferSearchCV(budget=600, cv=2)
    cands, modality, da = s._build_candidates(X, y)
    assert modality == "features" and not da
    # pandas: a DataFrame holds features, a Series texts (not images, as their
    # column names or index once made them)
    pd = pytest.importorskip("pandas")
    assert s._build_candidates(pd.DataFrame(X), y)[1] == "features"
    assert s._build_candidates(pd.Series(["a cat", "where is it"] * 5, index=range(5, 15)),
                               ["animal", "place"] * 5)[1] == "text"
    assert [c.strategy for c in cands] == ["frozen probe", "frozen + mlp head"]
    texts = ["a question about cats", "where is paris"] * 5
    cands, modality, _ = s._build_candidates(texts, ["animal", "place"] * 5)
    assert modality == "text"
    assert [c.strategy for c in cands] == ["zero-shot", "frozen probe", "frozen + mlp head",
                                           "fine-tune (all)", "fine-tune (lora)"]
    assert [c.resource for c in cands[-2:]] == ["max_epochs"] * 2
    # integer labels are no words to prompt with: no zero-shot candidate without
    # class_names (it was added with prompts "0", "1" and could win a short budget)
    for labels in ([0, 1] * 5, np.array([3, 7] * 5), pytest.importorskip("pandas").Series([0, 1] * 5)):
        assert "zero-shot" not in [c.strategy for c in s._build_candidates(texts, labels)[0]]
    # class_names reach the zero-shot candidate as given: a dict, or a list with one
    # entry per sorted label (as ZeroShotTextClassifier takes it)
    for names in ({"animal": "an animal", "place": "a place"}, ["an animal", "a place"]):
        s_names = tle.TransferSearchCV(class_names=names)
        s_names._validate_params()  # what fit checks first
        zs, _, _ = s_names._build_candidates(texts, ["animal", "place"] * 5)
        assert zs[0].estimator.class_names == names
    with pytest.raises(ValueError, match="'class_names' parameter of TransferSearchCV"):
        tle.TransferSearchCV(class_names="animal").fit(texts, ["animal", "place"] * 5)
    # LoRA restarts at each rung (its adapters are merged at the end of a fit)
    from tlestimators.estimators.search import _resume_support

    assert _resume_support(cands[-2].estimator) is None
    assert "lora" in _resume_support(cands[-1].estimator)
    # without peft (the [lora] extra) there is no LoRA candidate, and nothing fails
    monkeypatch.setattr("tlestimators.estimators.search._peft_available", lambda: False)
    cands, _, _ = s._build_candidates(texts, ["animal", "place"] * 5)
    assert [c.strategy for c in cands][-1] == "fine-tune (all)"
    y_da = np.r_[y[:80], -np.ones(40, int)]
    cands, _, da = s._build_candidates(X, y_da)
    assert da and cands[0].name == "source-only" and len(cands) >= 3
    assert cands[0].strategy == "source-only (frozen probe)" and s.fallback_ == "source-only"
    adapters = [c.estimator for c in cands if hasattr(c.estimator, "lambda_max")]
    assert len(adapters) == 5 and {a.unfreeze for a in adapters} == {"all"}  # the mlp trains
    # images and text: the adaptation nets train on the frozen backbone's embeddings
    y_text = np.array(["animal", "place"] * 5 + [-1] * 10, dtype=object)
    cands, _, _ = s._build_candidates(texts + texts, y_text)
    adapters = [c.estimator for c in cands if hasattr(c.estimator, "lambda_max")]
    assert len(adapters) == 5 and {a.unfreeze for a in adapters} == {"head"}


# ------------------------------------------------------------------ resumed rungs
class _Resumable(_Costly):
    """A _Costly that continues with warm_start=True: a fit of a fitted estimator
    'trains' (and is charged for) only the epochs from n_epochs_ to max_epochs."""

    log: list = []

    def __init__(self, cost=1.0, per_epoch=1.0, max_epochs=27, quality=0.5,
                 warm_start=False):
        super().__init__(cost=cost, per_epoch=per_epoch, max_epochs=max_epochs,
                         quality=quality)
        self.warm_start = warm_start

    def _warm_start_unsupported(self):
        return None

    def fit(self, X, y):
        done = getattr(self, "n_epochs_", 0) if self.warm_start else 0
        more = self.max_epochs - done
        CLOCK.t += (self.cost if done == 0 else 0.0) + self.per_epoch * more
        _Resumable.log.append((id(self), done, more, len(X)))
        self.n_epochs_ = self.max_epochs
        self.classes_ = np.unique(y)
        return self


class _NotResumable(_Resumable):
    def _warm_start_unsupported(self):
        return "unfreeze='lora' is not supported"


def test_rungs_resume_each_folds_model_instead_of_refitting(feats, monkeypatch):
    X, y = feats
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    CLOCK.t, _Resumable.log = 0.0, []
    # "a" trails the cheap candidate within the margin at every rung: raced to 27
    cands = [("cheap", _Cheap(cost=1, per_epoch=0, quality=0.95)),
             ("a", _Resumable(per_epoch=1.0, quality=0.9))]
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3, eta=3, margin=0.5,
                             refit=False).fit(X, y)
    rep = s.report_.set_index("candidate")
    assert rep.loc["a", "resource"] == "27/27 epochs (1 -> 3 -> 9 -> 27, resumed)"
    assert rep.loc["a", "stopped"] == "completed"
    # per fold: one fresh fit of 1 epoch, then the same fold object trained 2, 6, 18
    # more epochs on its own fold's rows (not 3, 9, 27 from scratch)
    per_obj = {}
    for obj, done, more, n in _Resumable.log:
        per_obj.setdefault(obj, []).append((done, more, n))
    assert len(per_obj) == 3
    for fits in per_obj.values():
        assert [(d, m) for d, m, _ in fits] == [(0, 1), (1, 2), (3, 6), (9, 18)]
        assert len({n for _, _, n in fits}) == 1
    # fit seconds accumulate over the rungs: 3 folds x (1 s + 27 epochs)
    assert rep.loc["a", "fit_seconds"] == pytest.approx(3 * 28)
    assert s.cv_results_["mean_fit_time"][1] == pytest.approx(28)
    # no fold model is kept once the race is over (the search pickles small)
    assert all(c.folds is None for c in s._cands)
    # a candidate whose warm start is unsupported (or absent) restarts at each rung
    CLOCK.t, _Resumable.log = 0.0, []
    cands = [("cheap", _Cheap(cost=1, per_epoch=0, quality=0.95)),
             ("lora", _NotResumable(per_epoch=1.0, quality=0.9, max_epochs=3))]
    s = tle.TransferSearchCV(cands, budget=10_000, cv=3, eta=3, margin=0.5,
                             refit=False).fit(X, y)
    assert s.report_.set_index("candidate").loc["lora", "resource"] == (
        "3/3 epochs (1, 3, each from scratch)")
    assert [(d, m) for _, d, m, _ in _Resumable.log] == [(0, 1)] * 3 + [(0, 3)] * 3
    assert search_mod._resume_support(_Costly()) == "no warm_start parameter"
    assert search_mod._resume_support(tle.FineTuneClassifier("mlp")) is None
    assert "lora" in search_mod._resume_support(tle.FineTuneClassifier("mlp", unfreeze="lora"))


def test_budget_projects_the_increment_of_a_resumed_rung(feats, monkeypatch):
    X, y = feats
    monkeypatch.setattr(search_mod, "_clock", CLOCK)
    # cheap: 3 x 1 s; rung 1: 3 folds x (10 s + 1 epoch x 10 s) = 60 s -> 63 s used.
    # Rung 3 is projected per epoch of rung 1: from scratch 60 s x 3 epochs = 180 s,
    # resumed 60 s x 2 more epochs = 120 s. Budget 200 (137 s left): only the resumed
    # rung fits; budget 150 (87 s left): neither.
    for budget, resumable, started in [(200, True, True), (200, False, False),
                                       (150, True, False)]:
        CLOCK.t = 0.0
        cls = _Resumable if resumable else _NotResumable
        cands = [("cheap", _Cheap(cost=1, per_epoch=0, quality=0.95)),
                 ("a", cls(cost=10, per_epoch=10.0, quality=0.9, max_epochs=3))]
        s = tle.TransferSearchCV(cands, budget=budget, cv=3, eta=3, margin=0.5,
                                 refit=False).fit(X, y)
        rep = s.report_.set_index("candidate")
        if started:
            assert rep.loc["a", "resource"] == "3/3 epochs (1 -> 3, resumed)"
            assert s.search_seconds_ == pytest.approx(63 + 3 * 20)  # <= budget
        else:
            assert rep.loc["a", "resource"] == "1/3 epochs"
            want = ("~120 s for 2 more epochs (resumed to 3)" if resumable
                    else "~180 s for 3 epochs")
            assert rep.loc["a", "stopped"].startswith(f"budget: needs {want}")
        assert s.search_seconds_ <= budget


def test_fine_tune_candidate_trains_the_increment_per_fold(feats):
    from skorch.callbacks import Callback

    class Count(Callback):
        epochs = [0]

        def on_epoch_end(self, net, **kw):
            Count.epochs[0] += 1

    X, y = feats
    ft = tle.FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (8,)}, max_epochs=3,
                                batch_size=32, lr=1e-2, callbacks=[("count", Count())],
                                device="cpu", random_state=0)
    # a cheap candidate that always leads keeps the fine-tuning in the race to 3 epochs
    cands = [("cheap", _Cheap(cost=0, per_epoch=0, quality=2.0)), ("ft", ft)]
    s = tle.TransferSearchCV(cands, budget=600, cv=3, eta=3, margin=5.0,
                             refit=False).fit(X, y)
    assert s.report_.set_index("candidate").loc["ft", "resource"] == (
        "3/3 epochs (1 -> 3, resumed)")
    assert Count.epochs[0] == 3 * (1 + 2)  # not 3 * (1 + 3): rung 3 resumed rung 1
