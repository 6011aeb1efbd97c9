"""ContrastiveFewShotClassifier: SetFit-style pairs + label-name prior (issue 11 item 4)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from tlestimators.estimators._fewshot import ALPHA_GRID
from tlestimators.estimators.contrastive import ContrastiveFewShotClassifier, sample_pairs

TEXTS = ["great film", "loved every minute", "wonderful acting",
         "awful plot", "boring and bad", "terrible movie"]
LABELS = np.array(["pos", "pos", "pos", "neg", "neg", "neg"])
NEW = ["what a great, wonderful movie", "a boring, terrible film"]


def test_sample_pairs_is_setfit_sampling():
    y = np.array([0, 0, 1, 1, 1, 2])
    pairs = sample_pairs(y, 3, np.random.default_rng(0))
    same = y[pairs[:, 0]] == y[pairs[:, 1]]
    np.testing.assert_array_equal(same, pairs[:, 2] == 1)
    assert not np.any(pairs[:, 0] == pairs[:, 1])
    # per iteration: a positive for every row with a same-label partner, a negative for all
    assert (pairs[:, 2] == 1).sum() == 3 * 5 and (pairs[:, 2] == 0).sum() == 3 * 6


@pytest.fixture(scope="module")
def fitted():
    return ContrastiveFewShotClassifier(num_iterations=2, max_epochs=3, lr=1e-4, device="cpu",
                                        random_state=0).fit(TEXTS, LABELS)


def test_learns_and_predicts(fitted):
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    assert fitted.n_pairs_ == 2 * 2 * len(TEXTS)
    np.testing.assert_array_equal(fitted.predict(NEW), ["pos", "neg"])
    assert fitted.probe_ is not None and fitted.alpha_ is None
    assert not any(p.requires_grad for p in fitted.backbone_.parameters())


def test_pickles_and_clones(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(again.predict_proba(NEW), fitted.predict_proba(NEW), atol=1e-6)
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "backbone_")


def test_label_name_prior():
    clf = ContrastiveFewShotClassifier(class_names={"pos": "positive", "neg": "negative"},
                                       num_iterations=1, device="cpu", random_state=0)
    clf.fit(TEXTS, LABELS)
    assert clf.alpha_ in ALPHA_GRID and clf.probe_ is None
    assert clf.coef_.shape == (2, clf.backbone_.num_features)
    # the prompts joined the pair pool: 6 texts + 2 classes x the default templates
    assert clf.n_pairs_ > 2 * len(TEXTS)
    np.testing.assert_array_equal(clf.predict(NEW), ["pos", "neg"])
    proba = pickle.loads(pickle.dumps(clf)).predict_proba(NEW)
    np.testing.assert_allclose(proba, clf.predict_proba(NEW), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="num_iterations"):
        ContrastiveFewShotClassifier(num_iterations=0).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="text backbone"):
        ContrastiveFewShotClassifier("mlp", device="cpu").fit(np.ones((6, 3)), LABELS)
