"""ContrastiveFewShotClassifier: SetFit-style pairs + label-name prior (issue 11 item 4)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from tlestimators.estimators._fewshot import ALPHA_GRID
from tlestimators.estimators.contrastive import (
    ContrastiveFewShotClassifier,
    all_pairs_loss,
    balanced_batches,
    sample_pairs,
)

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


def test_balanced_batches():
    y = np.array([0] * 3 + [1] * 10 + [2])
    for b in balanced_batches(y, 8, 5, np.random.default_rng(0)):
        assert len(b) == len(set(b.tolist())) == 8
        # shares as equal as the class sizes allow: the singleton class, then 3 + 4
        assert sorted(np.bincount(y[b], minlength=3).tolist()) == [1, 3, 4]
    (b,) = balanced_batches(y, 32, 1, np.random.default_rng(0))
    assert sorted(b.tolist()) == list(range(len(y)))  # batch_size > n: every row once


def test_all_pairs_loss_by_hand():
    # unit vectors at 0, 90 and 0 degrees; labels a, a, b
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    # same-label pairs (self pairs included): (0,0) cos 1, (1,1) 1, (2,2) 1, (0,1) 0
    pos = (0 + 0 + 0 + 1) / 4
    # different-label pairs: (0,2) cos 1, (1,2) cos 0
    neg = (1 + 0) / 2
    assert float(all_pairs_loss(emb, y)) == pytest.approx(0.5 * pos + 0.5 * neg)


@pytest.fixture(scope="module")
def fitted():
    return ContrastiveFewShotClassifier(max_epochs=4, device="cpu",
                                        random_state=0).fit(TEXTS, LABELS)


def test_learns_and_predicts(fitted):
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    # one batch of all 6 texts per epoch: 21 pairs (self pairs included) per step
    assert fitted.n_steps_ == 4 and fitted.n_pairs_ == 4 * 21
    np.testing.assert_array_equal(fitted.predict(NEW), ["pos", "neg"])
    assert fitted.probe_ is not None and fitted.alpha_ is None
    assert fitted.probe_.scaling_ == "per_feature"  # the head results/fewshot.md measured
    assert not any(p.requires_grad for p in fitted.backbone_.parameters())


def test_pickles_and_clones(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(again.predict_proba(NEW), fitted.predict_proba(NEW), atol=1e-6)
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "backbone_")


def test_prediction_api_is_the_other_classifiers(fitted):
    """Binary: decision_function is the positive-class margin, probabilities are its
    softmax pair, log-probabilities match, and score rejects unseen labels."""
    d = fitted.decision_function(NEW)
    proba = fitted.predict_proba(NEW)
    assert d.shape == (2,) and proba.shape == (2, 2)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-d)), rtol=1e-10)
    np.testing.assert_allclose(fitted.predict_log_proba(NEW), np.log(proba), rtol=1e-10)
    # the probe's own decision function on the same embeddings
    np.testing.assert_allclose(d, fitted.probe_.decision_function(fitted._embed(NEW)),
                               rtol=1e-10, atol=1e-12)
    assert fitted.score(NEW, ["pos", "neg"]) == 1.0
    with pytest.raises(ValueError, match="not seen"):
        fitted.score(NEW, ["pos", "meh"])


def test_sampled_pairs_learn_too():
    clf = ContrastiveFewShotClassifier(pairs="sampled", num_iterations=2, max_epochs=3,
                                       lr=1e-4, device="cpu", random_state=0).fit(TEXTS, LABELS)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.n_pairs_ == 3 * 2 * 2 * len(TEXTS) and clf.n_steps_ == 3 * 2
    np.testing.assert_array_equal(clf.predict(NEW), ["pos", "neg"])


def test_label_name_prior():
    clf = ContrastiveFewShotClassifier(class_names={"pos": "positive", "neg": "negative"},
                                       max_epochs=1, device="cpu", random_state=0)
    clf.fit(TEXTS, LABELS)
    assert clf.alpha_ in ALPHA_GRID and clf.probe_ is None
    assert clf.coef_.shape == (2, clf.backbone_.num_features)
    # the prompts joined the pool: 6 texts + 2 classes x the default templates, one batch
    n = len(TEXTS) + 2 * 5
    assert clf.n_steps_ == 1 and clf.n_pairs_ == n * (n + 1) // 2
    np.testing.assert_array_equal(clf.predict(NEW), ["pos", "neg"])
    assert clf.decision_function(NEW).shape == (2,)  # as without class names
    proba = pickle.loads(pickle.dumps(clf)).predict_proba(NEW)
    np.testing.assert_allclose(proba, clf.predict_proba(NEW), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="num_iterations"):
        ContrastiveFewShotClassifier(num_iterations=0).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="pairs"):
        ContrastiveFewShotClassifier(pairs="all").fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="batch_size"):
        ContrastiveFewShotClassifier(batch_size=1).fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="text backbone"):
        ContrastiveFewShotClassifier("mlp", device="cpu").fit(np.ones((6, 3)), LABELS)
