import numpy as np
import pytest
import torch
from _tiny_backbones import TinyConvBackbone, make_image_blobs
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from tlestimators import FrozenFeatureClassifier
from tlestimators.exceptions import TrainingDivergedError
from tlestimators.features import feature_cache
from tlestimators.probe import LinearProbeCV

MLP = {"hidden_sizes": (32,)}


@pytest.fixture(autouse=True)
def _setup():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only spin-wait on a loaded machine
    feature_cache().clear()
    yield
    torch.set_num_threads(n)


def _clf(**kw):
    params = dict(backbone_kwargs=MLP, lr=1e-2, max_epochs=30, batch_size=32, device="cpu",
                  random_state=0)
    params.update(kw)
    return FrozenFeatureClassifier("mlp", **params)


def test_learns_on_images_with_string_labels():
    X, y = make_image_blobs(n_per_class=25, size=16, n_classes=3)
    labels = np.array(["ant", "bee", "wasp"])[y]
    clf = FrozenFeatureClassifier(TinyConvBackbone(), lr=1e-2, max_epochs=40, device="cpu",
                                  random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["ant", "bee", "wasp"]
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype and np.mean(pred == labels) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)
    assert clf.decision_function(X).shape == (75, 3)
    assert isinstance(clf.head_, LinearProbeCV) and not hasattr(clf, "net_")
    mlp = FrozenFeatureClassifier(TinyConvBackbone(), head="mlp", lr=1e-2, max_epochs=40,
                                  device="cpu", random_state=0).fit(X, labels)
    losses = mlp.net_.history[:, "train_loss"]
    assert losses[-1] < 0.5 * losses[0] and mlp.head_ is mlp.net_
    assert np.mean(mlp.predict(X) == labels) > 0.9


def test_binary_decision_function_matches_proba(blobs):
    X, y = blobs
    mask = y < 2
    clf = _clf().fit(X[mask], y[mask])
    d = clf.decision_function(X[mask])
    assert d.shape == (mask.sum(),)
    np.testing.assert_array_equal(d > 0, clf.predict_proba(X[mask])[:, 1] > 0.5)


def test_head_mlp_and_random_state_reproducible(blobs):
    X, y = blobs
    a = _clf(head="mlp", head_dropout=0.2).fit(X, y).predict_proba(X)
    b = _clf(head="mlp", head_dropout=0.2).fit(X, y).predict_proba(X)
    c = _clf(head="mlp", head_dropout=0.2, random_state=1).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert (a.argmax(1) == y).mean() > 0.9


def test_class_weight_shifts_decisions_to_the_weighted_class():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (180, 4)), rng.normal(1.0, 1, (20, 4))].astype(np.float32)
    y = np.r_[np.zeros(180, int), np.ones(20, int)]
    plain = _clf(max_epochs=40).fit(X, y)
    balanced = _clf(max_epochs=40, class_weight="balanced").fit(X, y)
    recall = lambda m: (m.predict(X)[y == 1] == 1).mean()  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.2
    heavy = _clf(max_epochs=40, class_weight={0: 1.0, 1: 50.0}).fit(X, y)
    rate = lambda m: (m.predict(X) == 1).mean()  # noqa: E731
    # (converged probes: 0.06 of the rows predicted as class 1 unweighted, 0.16 at 50:1)
    assert rate(heavy) > 2 * rate(plain)
    with pytest.raises(ValueError, match=r"class_weight has labels \[7\]"):
        _clf(class_weight={0: 1.0, 7: 2.0}).fit(X, y)


def test_early_stopping_restores_best_and_stops(rng):
    # random labels: the validation loss soon rises while the training loss falls
    X = rng.normal(size=(200, 10)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    clf = _clf(early_stopping=True, patience=3, max_epochs=300, lr=5e-2,
               head="mlp").fit(X, y)
    hist = clf.net_.history
    valid = np.asarray(hist[:, "valid_loss"])
    best = int(np.argmin(valid))
    assert len(hist) < 300 and len(hist) == best + 1 + 3
    # the restored head is the best epoch's: its validation loss is the minimum again
    ds = clf.net_.get_split_datasets(clf._embed(X, "cpu"), y)[1]
    loss = clf.net_.get_loss(clf.net_.forward(ds), torch.as_tensor(y[ds.indices]))
    assert float(loss) == pytest.approx(valid[best], rel=1e-4)


def test_verbose_prints_progress(blobs, capsys):
    X, y = blobs
    _clf(max_epochs=2, verbose=1, head="mlp").fit(X, y)
    out = capsys.readouterr().out
    assert "train_loss" in out and "epoch" in out


def test_grid_search_reuses_cached_embeddings(blobs):
    X, y = blobs
    gs = GridSearchCV(_clf(max_epochs=5), {"head": ["linear", "mlp"], "lr": [1e-2, 3e-2]},
                      cv=3).fit(X, y)
    assert gs.best_score_ > 0.9
    # 4 grid points x 3 folds x (fit + score) + refit, yet each sample embedded once
    assert feature_cache().misses == len(X)
    assert feature_cache().hits >= 12 * len(X)


def test_bad_input_errors(blobs):
    X, y = blobs
    with pytest.raises(NotFittedError):
        _clf().predict(X)
    with pytest.raises(NotFittedError):
        _clf().predict_proba(X)
    with pytest.raises(ValueError, match="only one class"):
        _clf().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        _clf().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(TypeError, match="X holds strings"):
        _clf().fit(["a", "b", "c"], [0, 1, 0])
    img = FrozenFeatureClassifier(TinyConvBackbone(), device="cpu")
    with pytest.raises(ValueError, match="expected \\(N, 3, H, W\\) RGB images"):
        img.fit(X, y)  # 2-D feature vectors given to an image backbone
    clf = _clf(max_epochs=2).fit(X, y)
    with pytest.raises(ValueError, match=r"y contains labels not seen at fit: \[5\]"):
        clf.score(X[:3], [0, 1, 5])
    with pytest.raises(ValueError, match="X has 3 features, but FrozenFeatureClassifier"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="validation_fraction=0.1 of 12 samples"):
        _clf(early_stopping=True, head="mlp").fit(X[:12], y[:12])
    for param, value, msg in [
        ("head", "svm", "The 'head' parameter of FrozenFeatureClassifier must be"),
        ("lr", 0, "The 'lr' parameter .* range \\(0.0, inf\\)"),
        ("max_epochs", 0, "The 'max_epochs' parameter .* range \\[1, inf\\)"),
        ("batch_size", 1.5, "The 'batch_size' parameter"),
        ("validation_fraction", 1.5, "The 'validation_fraction' parameter"),
        ("device", "tpu", "device='tpu' is not a valid torch device"),
    ]:
        est = _clf(**{param: value})
        if param == "validation_fraction":
            est.set_params(early_stopping=True)
        with pytest.raises(ValueError, match=msg):
            est.fit(X, y)


def test_nan_loss_stops_with_an_error(blobs):
    X, y = blobs
    with pytest.raises(TrainingDivergedError, match="loss is (nan|inf)"):
        _clf(lr=1e30, max_epochs=20, standardize=False, head="mlp").fit(X * 1e3, y)


def test_clone_of_fitted_is_unfitted(blobs):
    X, y = blobs
    clf = _clf(max_epochs=2).fit(X, y)
    with pytest.raises(NotFittedError):
        clone(clf).predict(X)


# --------------------------------------------------------------------------- defects (issue 10)
_RANDOM_TIMM = {"pretrained": False, "img_size": 32}
_SEEDED_SCRIPT = """
import sys
import numpy as np, torch
torch.set_num_threads(1)
from tlestimators import FrozenFeatureClassifier
X = np.random.default_rng(0).integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8)
clf = FrozenFeatureClassifier("timm/resnet10t", backbone_kwargs=KWARGS, device="cpu",
                              random_state=0).fit(X, np.arange(12) % 2)
np.save(sys.argv[1], clf.predict_proba(X))
""".replace("KWARGS", repr(_RANDOM_TIMM))


def _timm_images():
    pytest.importorskip("timm")
    X = np.random.default_rng(0).integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8)
    return X, np.arange(12) % 2


def test_random_state_seeds_a_random_init_backbone_across_processes(tmp_path):
    import os
    import subprocess
    import sys

    X, y = _timm_images()
    script = tmp_path / "fit.py"
    script.write_text(_SEEDED_SCRIPT)
    out = tmp_path / "other_process.npy"
    subprocess.run([sys.executable, str(script), str(out)], check=True, env=os.environ)
    here = FrozenFeatureClassifier("timm/resnet10t", backbone_kwargs=_RANDOM_TIMM, device="cpu",
                                   random_state=0).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(np.load(out), here)


def test_grid_search_n_jobs_1_and_2_agree_on_a_random_init_backbone():
    X, y = _timm_images()
    est = FrozenFeatureClassifier("timm/resnet10t", backbone_kwargs=_RANDOM_TIMM,
                                  device="cpu", random_state=0)
    results = [
        GridSearchCV(est, {"class_weight": [None, "balanced"]}, cv=2, n_jobs=n_jobs,
                     scoring="neg_log_loss").fit(X, y).cv_results_
        for n_jobs in (1, 2)
    ]
    # Unseeded, the two searches used differently initialised backbones (log-losses
    # apart by far more than this); seeded, only float32 convolution results that
    # depend on which rows share a batch can differ, in the last bits.
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-5)


def test_mlp_backbone_is_the_identity_unless_asked(blobs):
    X, y = blobs
    clf = FrozenFeatureClassifier("mlp", device="cpu", max_epochs=2, random_state=0).fit(X, y)
    assert clf.backbone_.config.num_features == X.shape[1]
    assert sum(p.numel() for p in clf.backbone_.parameters()) == 0  # no frozen random layer
    asked = _clf(backbone_kwargs={"hidden_sizes": (7,)}, max_epochs=2).fit(X, y)
    assert asked.backbone_.config.num_features == 7


def test_minus_one_labels_warn_and_point_to_dann(blobs):
    X, y = blobs
    y_da = np.where(np.arange(len(y)) % 4 == 0, -1, y)
    with pytest.warns(UserWarning, match="learns -1 as a class.*DANNAdapter"):
        clf = _clf(max_epochs=2).fit(X, y_da)
    assert -1 in clf.classes_
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _clf(max_epochs=2).fit(X, y)  # no -1: no warning


# --------------------------------------------------------------------------- heads (issue 11)
def test_default_head_is_the_convex_probe_on_the_embeddings(blobs):
    X, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    clf = FrozenFeatureClassifier("mlp", device="cpu", random_state=0).fit(X, labels)
    probe = LinearProbeCV(device="cpu", random_state=0).fit(X, y)  # mlp is the identity
    assert clf.head_.C_ == probe.C_
    np.testing.assert_allclose(clf.predict_proba(X), probe.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(clf.decision_function(X), probe.decision_function(X),
                               atol=1e-8)
    assert (clf.predict(X) == labels).mean() > 0.95
    # binary: decision_function is the probe's logit of classes_[1]
    m = y < 2
    b = FrozenFeatureClassifier("mlp", device="cpu", random_state=0).fit(X[m], labels[m])
    pb = LinearProbeCV(device="cpu", random_state=0).fit(X[m], y[m])
    np.testing.assert_allclose(b.decision_function(X[m]), pb.decision_function(X[m]),
                               atol=1e-8)
    np.testing.assert_allclose(b.predict_proba(X[m]), pb.predict_proba(X[m]), atol=1e-10)


def test_any_sklearn_classifier_as_head(blobs):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    X, y = blobs
    knn = KNeighborsClassifier(n_neighbors=3)
    clf = FrozenFeatureClassifier("mlp", head=knn, device="cpu").fit(X, y)
    assert not hasattr(knn, "classes_")  # cloned, not fitted in place
    scaled = (X - X.mean(0)) / X.std(0)
    ref = KNeighborsClassifier(n_neighbors=3).fit(scaled, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(scaled), atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), ref.predict(scaled))
    svc = FrozenFeatureClassifier("mlp", head=LinearSVC(), standardize=False,
                                  device="cpu").fit(X, y)  # decision_function only
    ref = LinearSVC().fit(X, y)
    np.testing.assert_allclose(svc.decision_function(X), ref.decision_function(X), atol=1e-6)
    assert svc.score(X, y) > 0.9



def test_a_head_whose_probabilities_underflow_gives_finite_logits_silently():
    """sklearn's predict_log_proba is log(predict_proba): a probability that underflows
    to 0 warned 'divide by zero' (once per demo run) and gave -inf logits."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(30, 2) - 4000, rng.randn(30, 2) + 4000].astype(np.float32)
    y = np.r_[[0] * 30, [1] * 30]
    clf = FrozenFeatureClassifier("mlp", head=LogisticRegression(C=1e6), standardize=False,
                                  device="cpu", random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        log_proba = clf.predict_log_proba(X)
    assert np.isfinite(log_proba).all() and clf.score(X, y) == 1.0


def test_a_linear_probe_head_keeps_its_own_scaling():
    # the embeddings of the identity "mlp" backbone: 3 informative, loud features among
    # quiet ones; a StandardScaler in front of a global-scale probe would undo its scale
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    X = np.c_[10 * (rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[y]), 0.01 * rng.normal(size=(90, 60))]
    X = X.astype(np.float32)
    clf = FrozenFeatureClassifier("mlp", head=LinearProbeCV(scaling="global", Cs=[0.01]), device="cpu").fit(X, y)
    assert isinstance(clf.head_, LinearProbeCV) and clf.head_.scaling_ == "global"
    assert np.unique(clf.head_.scale_).size == 1
    # the same head is what the default "linear" head fits with that scaling
    ref = LinearProbeCV(scaling="global", Cs=[0.01], device="cpu").fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    default = FrozenFeatureClassifier("mlp", device="cpu", random_state=0).fit(X, y)
    assert set(default.head_.cv_scores_by_scaling_) == {"per_feature", "global"}
