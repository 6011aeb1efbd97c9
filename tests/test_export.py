"""ONNX export: the exported graph in onnxruntime matches predict_proba to 1e-4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny_backbones import TinyConvBackbone, make_image_blobs

import tlestimators as tle

pytest.importorskip("onnxruntime")
from tlestimators.export import OnnxClassifier, export_onnx  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture
def feats():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 6).astype(np.float32)
    y = np.where(X[:, 0] - 0.5 * X[:, 2] > 0, "pos", "neg")
    return X, y


def _parity(est, X, tmp_path):
    path = export_onnx(est, tmp_path / "onnx")
    spec = json.loads((path / "preprocessing.json").read_text())
    assert spec["classes"] == [str(c) if isinstance(c, str) else c for c in est.classes_.tolist()]
    runner = OnnxClassifier(path)
    p_onnx = runner.predict_proba(X)
    p_est = est.predict_proba(X)
    assert p_onnx.shape == p_est.shape
    assert np.abs(p_onnx - p_est).max() < 1e-4
    np.testing.assert_array_equal(runner.predict(X), est.predict(X))
    return path, runner


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_frozen_feature_estimator_parity_and_dynamic_batch(head, feats, tmp_path):
    X, y = feats
    est = tle.FrozenFeatureClassifier("mlp", head=head, max_epochs=3, random_state=0).fit(X, y)
    _, runner = _parity(est, X, tmp_path)
    # dynamic batch: one row and an odd batch size run through the same graph
    assert runner.predict_proba(X[:1]).shape == (1, 2)
    assert np.abs(runner.predict_proba(X[:7]) - est.predict_proba(X[:7])).max() < 1e-4


def test_domain_adapter_and_rehearsal_parity(feats, tmp_path):
    X, y = feats
    y_da = np.r_[(X[:40, 0] > 0).astype(int), -np.ones(20, int)]
    dann = tle.DANNAdapter("mlp", max_epochs=2, random_state=0).fit(X, y_da)
    _parity(dann, X, tmp_path / "dann")
    coral = tle.DeepCORALAdapter("mlp", max_epochs=2, random_state=0).fit(X, y_da)
    _parity(coral, X, tmp_path / "coral")
    # sparse rows (bag-of-words), as the estimator takes them, run through the export too
    import scipy.sparse as sp

    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    sparse = tle.DANNAdapter("mlp", max_epochs=2, random_state=0).fit(Xs, y_da)
    _parity(sparse, Xs, tmp_path / "sparse")
    learner = tle.RehearsalLearner("mlp", memory_size=10, max_epochs=2, random_state=0)
    y3 = np.r_[np.full(20, "c"), np.full(20, "a"), np.full(20, "b")]  # out of label order
    learner.partial_fit(X[:40], y3[:40]).partial_fit(X[40:], y3[40:])
    _parity(learner, X, tmp_path / "rehearsal")


def test_frozen_sklearn_head_parity(feats, tmp_path):
    from sklearn.linear_model import LogisticRegression

    X, y = feats
    est = tle.FrozenFeatureClassifier("mlp", head=LogisticRegression(C=0.5)).fit(X, y)
    _parity(est, X, tmp_path)


def test_finetuned_image_estimator_normalises_inside_the_graph(tmp_path):
    import onnx

    X, y = make_image_blobs(12, 16)
    est = tle.FineTuneClassifier(TinyConvBackbone(), max_epochs=2, random_state=0).fit(X, y)
    path, _ = _parity(est, X, tmp_path)
    graph = onnx.load(str(path / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"Sub", "Div"} <= ops  # (x - mean) / std is in the graph
    assert graph.input[0].name == "pixel_values"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_text_estimator_exports_encoder_pooling_and_head(tmp_path):
    texts = ["the cat sat on the mat", "stocks fell sharply today", "dogs bark at night",
             "the market rallied on earnings", "a kitten purrs", "bond yields rose"]
    est = tle.ZeroShotTextClassifier("minilm").fit(None, ["animals", "finance"])
    path, runner = _parity(est, texts, tmp_path)
    assert (path / "tokenizer").is_dir()  # tokenisation stays in Python, saved beside
    # dynamic sequence length: a long text runs through the same graph
    long = [" ".join(["market"] * 60)]
    assert np.abs(runner.predict_proba(long) - est.predict_proba(long)).max() < 1e-4


def test_export_errors(feats, tmp_path):
    from sklearn.exceptions import NotFittedError
    from sklearn.neighbors import KNeighborsClassifier

    X, y = feats
    with pytest.raises(NotFittedError):
        export_onnx(tle.FrozenFeatureClassifier("mlp"), tmp_path / "a")
    est = tle.FrozenFeatureClassifier("mlp", head=KNeighborsClassifier(3)).fit(X, y)
    with pytest.raises(NotImplementedError, match="linear sklearn heads"):
        export_onnx(est, tmp_path / "b")
    # a linear SVC has coef_, but one-vs-one rows and Platt probabilities: a linear
    # layer would not predict what it predicts, so it is refused rather than mis-exported
    from sklearn.svm import SVC

    three = np.where(X[:, 1] > 0.5, "mid", y)
    svc = tle.FrozenFeatureClassifier("mlp", head=SVC(kernel="linear", probability=True),
                                      random_state=0).fit(X, three)
    with pytest.raises(NotImplementedError, match="does not reproduce"):
        export_onnx(svc, tmp_path / "svc")
    good = tle.FrozenFeatureClassifier("mlp").fit(X, y)
    export_onnx(good, tmp_path / "c")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(good, tmp_path / "c")
