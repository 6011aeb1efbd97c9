"""Continual-learning metrics on hand-computed matrices, and evaluate_stream."""

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from tlestimators import RehearsalLearner
from tlestimators.metrics import (
    accuracy_matrix,
    average_accuracy,
    average_forgetting,
    backward_transfer,
    continual_summary,
    evaluate_stream,
    forward_transfer,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (conftest)


# R[i, j]: accuracy on experience j after learning 0..i
R = np.array(
    [
        [0.9, 0.1, 0.0],
        [0.6, 0.8, 0.2],
        [0.5, 0.7, 0.95],
    ]
)


def test_metrics_match_their_definitions():
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)
    assert average_accuracy(R, after=1) == pytest.approx((0.6 + 0.8) / 2)
    # forgetting: exp 0 best 0.9 -> 0.5, exp 1 best 0.8 -> 0.7
    assert average_forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert forward_transfer(R) == pytest.approx((0.1 + 0.2) / 2)
    assert forward_transfer(R, baseline=[0.5, 0.1, 0.1]) == pytest.approx((0.0 + 0.1) / 2)
    s = continual_summary(R)
    assert set(s) == {"average_accuracy", "average_forgetting", "backward_transfer",
                      "forward_transfer"}


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    M = np.array([[0.5, np.nan, np.nan], [0.9, 0.8, np.nan], [0.6, 0.8, 0.7]])
    assert average_forgetting(M) == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    # BWT compares with the accuracy right after learning
    assert backward_transfer(M) == pytest.approx(((0.6 - 0.5) + 0.0) / 2)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        average_forgetting([[0.9]])
    with pytest.raises(ValueError, match="diagonal and the last row"):
        backward_transfer([[0.9, 0.1], [np.nan, 0.8]])
    with pytest.raises(ValueError, match="R\\[j-1, j\\]"):
        forward_transfer([[0.9, np.nan], [0.5, 0.8]])
    with pytest.raises(ValueError, match="one value per experience"):
        forward_transfer(R, baseline=[0.1, 0.2])
    assert np.isnan(continual_summary([[0.7]])["average_forgetting"])


def _stream():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6)).astype(np.float32)
    y = np.arange(600) % 4
    X[np.arange(600), y] += 3.0
    train = [(X[:400][np.isin(y[:400], c)], y[:400][np.isin(y[:400], c)]) for c in ([0, 1], [2, 3])]
    test = [(X[400:][np.isin(y[400:], c)], y[400:][np.isin(y[400:], c)]) for c in ([0, 1], [2, 3])]
    return train, test


def test_evaluate_stream_scores_every_test_set_after_every_experience():
    train, test = _stream()
    est = RehearsalLearner("mlp", backbone_kwargs={"hidden_sizes": (32,)}, memory_size=0,
                           max_epochs=5, lr=1e-2, device="cpu", random_state=0)
    ev = evaluate_stream(est, train, test)
    M = ev.matrix
    assert M.shape == (2, 2) and not np.isnan(M).any()
    assert M[0, 0] > 0.9 and M[1, 1] > 0.9
    assert M[0, 1] == 0.0  # classes 2, 3 cannot be predicted before they are learnt
    assert M[1, 0] < 0.5  # naive fine-tuning forgets
    assert ev.average_forgetting == pytest.approx(M[0, 0] - M[1, 0])
    assert ev.fit_times.shape == (2,) and (ev.fit_times > 0).all()
    assert not hasattr(est, "net_")  # worked on a clone
    assert ev.summary()["fit_time"] == pytest.approx(ev.fit_times.sum())
    # replay on the same stream forgets less
    replay = evaluate_stream(est.set_params(memory_size=40), train, test)
    assert replay.average_forgetting < ev.average_forgetting - 0.3


def test_evaluate_stream_with_task_ids_and_plain_sklearn_estimators():
    train, test = _stream()
    est = RehearsalLearner("mlp", backbone_kwargs={"hidden_sizes": (32,)}, memory_size=0,
                           max_epochs=5, lr=1e-2, device="cpu", random_state=0)
    ev = evaluate_stream(est, train, test, task_ids=True)
    assert np.isnan(ev.matrix[0, 1])
    assert ev.matrix[1, 0] > 0.8  # within-task prediction survives naive training
    M = accuracy_matrix(SGDClassifier(random_state=0), train, test,
                        partial_fit_params={"classes": [0, 1, 2, 3]})
    assert M.shape == (2, 2) and M[1, 1] > 0.8
    with pytest.raises(TypeError, match="has no partial_fit"):
        evaluate_stream(object(), train)
    with pytest.raises(ValueError, match="one test set per experience"):
        evaluate_stream(SGDClassifier(), train, test[:1])
