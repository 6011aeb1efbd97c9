"""The skada bridge: skada's shallow adapters in sklearn pipelines under y == -1."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

skada = pytest.importorskip("skada")

from tlestimators import BackboneEmbedder  # noqa: E402
from tlestimators.metrics import ImportanceWeightedScorer  # noqa: E402
from tlestimators.model_selection import SourceTargetKFold  # noqa: E402
from tlestimators.skada_bridge import LabeledOnly, SkadaAdapter, make_skada_pipeline  # noqa: E402


def shifted(n=150, seed=0):
    """Target = source scaled by 3 and shifted by 2 (an affine shift CORAL undoes);
    the label is x0 > 0 in the source's own coordinates."""
    rng = np.random.default_rng(seed)
    Zs, Zt = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    Xs, Xt = Zs, 3.0 * Zt + 2.0
    ys, yt = (Zs[:, 0] > 0).astype(int), (Zt[:, 0] > 0).astype(int)
    X = np.vstack([Xs, Xt])
    y = np.r_[ys, -np.ones(n, int)]
    return X, y, Xt, yt


def test_plain_pipeline_with_a_skada_adapter_fails_without_the_bridge():
    X, y, _, _ = shifted()
    with pytest.raises(ValueError, match="0 sample"):
        make_pipeline(skada.CORALAdapter(), LogisticRegression()).fit(X, y)


@pytest.mark.parametrize(
    "adapter",
    [skada.CORALAdapter(), skada.SubspaceAlignmentAdapter(n_components=3),
     skada.TransferComponentAnalysisAdapter(n_components=3)],
    ids=["coral", "sa", "tca"],
)
def test_bridge_fits_with_minus_one_and_keeps_minus_one_out_of_the_classes(adapter):
    X, y, Xt, yt = shifted()
    pipe = make_skada_pipeline(adapter, LogisticRegression())
    assert isinstance(pipe[0], SkadaAdapter) and isinstance(pipe[-1], LabeledOnly)
    pipe.fit(X, y)
    assert pipe.classes_.tolist() == [0, 1]
    assert pipe.predict_proba(Xt).shape == (len(Xt), 2)
    assert clone(pipe).get_params()["skadaadapter__adapter"] is not adapter
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.predict(Xt), pipe.predict(Xt))


def test_coral_through_the_bridge_beats_source_only_on_an_affine_shift():
    X, y, Xt, yt = shifted()
    src = y != -1
    source_only = np.mean(LogisticRegression().fit(X[src], y[src]).predict(Xt) == yt)
    coral = make_skada_pipeline(skada.CORALAdapter(), LogisticRegression()).fit(X, y)
    acc = np.mean(coral.predict(Xt) == yt)
    assert acc > source_only + 0.1, (acc, source_only)
    assert acc > 0.85


def test_bridge_after_an_embedder_with_string_labels():
    X, y, Xt, yt = shifted()
    y_str = np.r_[np.where(y[y != -1] == 1, "pos", "neg").astype(object),
                  np.full((y == -1).sum(), -1, dtype=object)]
    pipe = make_skada_pipeline(
        BackboneEmbedder("mlp", backbone_kwargs={"hidden_sizes": ()}, device="cpu"),
        skada.CORALAdapter(), LogisticRegression(),
    ).fit(X.astype(np.float32), y_str)
    assert pipe.classes_.tolist() == ["neg", "pos"]
    acc = np.mean(pipe.predict(Xt.astype(np.float32)) == np.where(yt == 1, "pos", "neg"))
    assert acc > 0.85


def test_bridge_takes_sample_domain_and_explains_missing_target_rows():
    X, y, _, _ = shifted()
    sd = np.where(y == -1, -2, 1)
    ada = SkadaAdapter(skada.CORALAdapter()).fit(X, y, sample_domain=sd)
    assert ada.transform(X[:3]).shape == (3, 4)
    y_bad = np.r_[np.where(y[y != -1] == 1, "pos", "neg"), -np.ones((y == -1).sum(), int)]
    with pytest.raises(ValueError, match="string '-1'"):
        SkadaAdapter(skada.CORALAdapter()).fit(X, y_bad)
    with pytest.raises(TypeError, match="skada adapter instance"):
        SkadaAdapter(LogisticRegression()).fit(X, y)


def test_gridsearch_chooses_between_passthrough_and_coral_without_target_labels():
    X, y, Xt, yt = shifted(200)
    pipe = make_skada_pipeline(skada.CORALAdapter(), LogisticRegression())
    gs = GridSearchCV(
        pipe, {"skadaadapter": ["passthrough", SkadaAdapter(skada.CORALAdapter())]},
        cv=SourceTargetKFold(2, random_state=0),
        scoring=ImportanceWeightedScorer(space="input"), error_score="raise",
    ).fit(X, y)
    scores = gs.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and len(scores) == 2
    assert gs.best_estimator_.classes_.tolist() == [0, 1]


def test_skada_default_dann_domain_classifier_is_dead():
    """What the guide reports: skada 0.6's DomainClassifier ends in a softmax over ONE
    output, so it returns the constant 1.0 and no gradient reaches the features."""
    import torch
    from skada.deep.modules import DomainClassifier

    torch.manual_seed(0)
    disc = DomainClassifier(num_features=4)
    x = torch.randn(8, 4, requires_grad=True)
    out = disc(x)
    assert torch.equal(out, torch.ones(8))
    torch.nn.BCELoss()(out, torch.cat([torch.zeros(4), torch.ones(4)])).backward()
    assert x.grad is not None and float(x.grad.abs().max()) == 0.0


def test_search_cv_uses_passthrough_as_the_source_only_skada_candidate():
    from tlestimators.model_selection import DomainAdaptationSearchCV

    X, y, Xt, yt = shifted(200)
    pipe = make_skada_pipeline(skada.CORALAdapter(), LogisticRegression())
    search = DomainAdaptationSearchCV(
        pipe, {"skadaadapter": [SkadaAdapter(skada.CORALAdapter())]}, cv=2).fit(X, y)
    steps = [p["skadaadapter"] for p in search.cv_results_["params"]]
    assert "passthrough" in steps and len(steps) == 2
    rep = search.selection_report_
    assert steps[rep["source_only"]] == "passthrough"
    assert search.predict(Xt).shape == (len(Xt),)
    # a selection of the user's that names no source-only gets the same one
    from tlestimators.model_selection import SafeDASelection

    sel = SafeDASelection(rule="scores")
    search = DomainAdaptationSearchCV(
        pipe, {"skadaadapter": [SkadaAdapter(skada.CORALAdapter())]}, selection=sel,
        cv=2).fit(X, y)
    steps = [p["skadaadapter"] for p in search.cv_results_["params"]]
    assert "passthrough" in steps and sel.source_only is None  # the parameter is untouched
    assert search.predict(Xt).shape == (len(Xt),)


def _parse(rows):
    """Strings of numbers -> a 2-D array: a stand-in for an embedder over raw items."""
    return np.array([[float(v) for v in r.split()] for r in rows])


def test_label_free_scores_use_the_pipeline_features_of_raw_items():
    """DEV and IWV score a pipeline over raw items (paths, texts) on the output of its
    steps before the classifier: with raw strings as X they failed ('could not convert
    string to float') and the search silently picked passthrough."""
    from sklearn.preprocessing import FunctionTransformer

    from tlestimators.model_selection import DomainAdaptationSearchCV, SafeDASelection

    X, y, Xt, _ = shifted(120)
    raw = [" ".join(f"{v:.5f}" for v in row) for row in X]
    pipe = make_skada_pipeline(FunctionTransformer(_parse), skada.CORALAdapter(),
                               LogisticRegression())
    search = DomainAdaptationSearchCV(
        pipe, {"skadaadapter": [SkadaAdapter(skada.CORALAdapter())]},
        selection=SafeDASelection(rule="scores"), cv=2).fit(raw, y)
    for key in ("mean_test_dev", "mean_test_iwv"):
        assert np.isfinite(search.cv_results_[key]).all(), key
