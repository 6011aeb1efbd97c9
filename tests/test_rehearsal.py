"""RehearsalLearner: learning a stream, replay against forgetting, EWC, LwF, growth of
the head, reproducibility and pickling mid-stream, bad input leaving the state intact,
and the sklearn contract."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tlestimators import RehearsalLearner
from tlestimators.estimators._continual import grow_linear

MLP = {"hidden_sizes": (64,)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets (conftest)


@pytest.fixture(scope="module")
def digits_stream():
    """sklearn digits split into 3 class-incremental experiences (0-1, 2-3, 4-5)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[: int(0.7 * len(y))], idx[int(0.7 * len(y)):]
    stream = []
    for k in range(3):
        a = tr[(y[tr] // 2) == k]
        b = te[(y[te] // 2) == k]
        stream.append(((X[a], y[a]), (X[b], y[b])))
    return stream


def _learner(**kw):
    params = dict(backbone_kwargs=MLP, max_epochs=4, batch_size=32, lr=3e-3,
                  device="cpu", random_state=0)
    params.update(kw)
    return RehearsalLearner("mlp", **params)


def _run(clf, stream, upto=None):
    for (X, y), _ in stream[:upto]:
        clf.partial_fit(X, y)
    return clf


def test_replay_prevents_the_forgetting_that_naive_finetuning_shows(digits_stream):
    naive = _run(_learner(memory_size=0), digits_stream)
    replay = _run(_learner(memory_size=60, policy="class_balanced"), digits_stream)
    (_, _), (X0, y0) = digits_stream[0]
    (_, _), (X2, y2) = digits_stream[2]
    # naive fine-tuning learnt the last experience and forgot the first one
    assert naive.score(X2, y2) > 0.9
    assert naive.score(X0, y0) < 0.2
    # replay keeps it
    assert replay.score(X0, y0) > 0.8
    assert replay.score(X2, y2) > 0.8
    assert replay.classes_.tolist() == [0, 1, 2, 3, 4, 5]
    assert replay.memory_.class_counts() == {c: 10 for c in range(6)}
    assert [e["new_classes"] for e in replay.experiences_] == [[0, 1], [2, 3], [4, 5]]
    assert replay.experiences_[1]["n_replayed"] == 60 and replay.n_experiences_ == 3


def test_concatenated_replay_and_herding_also_learn(digits_stream):
    for kw in (dict(replay_ratio=None), dict(policy="herding")):
        clf = _run(_learner(memory_size=60, **kw), digits_stream)
        (_, _), (X0, y0) = digits_stream[0]
        assert clf.score(X0, y0) > 0.6, kw


def test_head_grows_keeping_old_rows_and_classes_declares_outputs(digits_stream):
    layer = torch.nn.Linear(5, 2)
    grown = grow_linear(layer, 4)
    assert torch.equal(grown.weight[:2], layer.weight) and torch.equal(grown.bias[:2], layer.bias)
    (X, y), _ = digits_stream[0]
    clf = _learner(memory_size=0).partial_fit(X, y, classes=[0, 1, 7])
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert clf.net_.module_.head[-1].out_features == 3
    (X1, y1), _ = digits_stream[1]
    clf.partial_fit(X1, y1)
    assert clf.class_order_.tolist() == [0, 1, 7, 2, 3]
    assert clf.classes_.tolist() == [0, 1, 2, 3, 7]


def test_string_labels_and_proba_columns_follow_classes(digits_stream):
    names = np.asarray(["zero", "one", "two", "three", "four", "five"])
    clf = _learner(memory_size=40)
    # the same strings as a '<U' array, then as an object array (a list, a pandas column)
    for k, ((X, y), _) in enumerate(digits_stream[:2][::-1]):  # 2-3 first, then 0-1
        clf.partial_fit(X, names[y] if k == 0 else names[y].astype(object))
    (_, _), (Xt, yt) = digits_stream[0]
    assert clf.classes_.tolist() == sorted(["zero", "one", "two", "three"])
    proba = clf.predict_proba(Xt)
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xt))
    assert np.mean(clf.predict(Xt) == names[yt]) > 0.7


def test_same_random_state_same_predictions_and_fit_resets(digits_stream):
    a = _run(_learner(memory_size=30, backbone_kwargs={"hidden_sizes": (64,), "dropout": 0.3}),
             digits_stream)
    b = _run(_learner(memory_size=30, backbone_kwargs={"hidden_sizes": (64,), "dropout": 0.3}),
             digits_stream)
    (_, _), (Xt, _) = digits_stream[1]
    assert np.array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    (X, y), _ = digits_stream[2]
    a.fit(X, y)
    assert a.n_experiences_ == 1 and a.classes_.tolist() == [4, 5]
    assert set(a.memory_.y_.tolist()) == {4, 5}


@pytest.mark.parametrize(
    "kw",
    [
        dict(policy="herding", memory_size=30, ewc_lambda=50.0, distill_weight=1.0,
             backbone_kwargs={"hidden_sizes": (64,), "dropout": 0.3}),
        dict(policy="reservoir", memory_size=30, replay_ratio=None),
    ],
)
def test_pickling_mid_stream_then_continuing_gives_the_same_predictions(digits_stream, kw):
    plain = _learner(**kw)
    pickled = _learner(**kw)
    _run(plain, digits_stream, 2)
    _run(pickled, digits_stream, 2)
    pickled = pickle.loads(pickle.dumps(pickled))
    (X, y), (Xt, _) = digits_stream[2]
    plain.partial_fit(X, y)
    pickled.partial_fit(X, y)
    assert np.array_equal(plain.predict_proba(Xt), pickled.predict_proba(Xt))
    assert np.array_equal(plain.memory_.items_, pickled.memory_.items_)
    assert pickled.backbone_ is pickled.net_.module_.backbone


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_learner_fitted_on_a_gpu_loads_and_goes_on_on_the_cpu(digits_stream):
    """A learner whose device_ is CUDA (fitted on a GPU) unpickles on a CPU-only
    machine to the CPU: it predicts and learns the next experience there."""
    clf = _run(_learner(ewc_lambda=50.0), digits_stream, 1)
    expected = clf.predict_proba(digits_stream[0][1][0])
    state = clf.__getstate__()
    state["device_"] = "cuda"
    gpu = RehearsalLearner.__new__(RehearsalLearner)
    with pytest.warns(Warning):  # skorch tells that it maps the net's CUDA state to the CPU
        gpu.__setstate__(pickle.loads(pickle.dumps(dict(state, net_=_cuda_net(clf.net_)))))
    assert gpu.device_ == "cpu" and str(gpu.net_.device) == "cpu"
    np.testing.assert_allclose(gpu.predict_proba(digits_stream[0][1][0]), expected, atol=1e-6)
    (X, y), (Xt, yt) = digits_stream[1]
    assert gpu.partial_fit(X, y).score(Xt, yt) > 0.8


def _cuda_net(net):
    """A copy of a CPU net that claims CUDA, as one pickled on a GPU machine does."""
    import copy

    net = copy.deepcopy(net)
    net.device = "cuda"
    return net


def test_ewc_anchors_important_weights(digits_stream):
    def weighted_drift(lam):
        clf = _learner(memory_size=0, ewc_lambda=lam)
        _run(clf, digits_stream, 1)
        fisher = {n: f.clone() for n, f in clf.fisher_.items()} if lam else None
        before = {n: p.detach().clone() for n, p in clf.net_.module_.named_parameters()}
        _run(clf, digits_stream[1:], 1)
        after = {n: p.detach() for n, p in clf.net_.module_.named_parameters()}
        return clf, fisher, before, after

    held, fisher, before, held_after = weighted_drift(1e5)
    _, _, _, free_after = weighted_drift(0.0)  # same seed: same model after experience 0

    def drift(after):  # sum F * (theta - theta*)^2 over the old parameters
        return sum(
            float((f * (after[n][tuple(slice(0, s) for s in f.shape)] - before[n]) ** 2).sum())
            for n, f in fisher.items()
        )

    assert drift(held_after) < 0.2 * drift(free_after)
    assert sum(float(f.sum()) for f in fisher.values()) > 0
    pen = [b["ewc_penalty"] for ep in held.net_.history for b in ep["batches"] if "ewc_penalty" in b]
    assert pen and max(pen) > 0
    # the classifier grew from 2 to 4 outputs; the accumulated Fisher follows it
    assert fisher["head.0.weight"].shape[0] == 2 and held.fisher_["head.0.weight"].shape[0] == 4


def test_fisher_is_the_mean_squared_per_example_gradient(digits_stream):
    """The stored Fisher of the linear head against its closed form: for cross-entropy,
    d loss / d bias = p - onehot(y) and d loss / d W = (p - onehot(y)) h^T, with h the
    backbone's embedding of the example."""
    from scipy.special import softmax

    (X, y), _ = digits_stream[0]
    clf = _learner(memory_size=0, ewc_lambda=1.0).partial_fit(X, y)
    g = softmax(clf._logits(X), axis=1) - np.eye(2)[y]  # classes_ == class_order_ == [0, 1]
    with torch.no_grad():
        h = clf.net_.module_.backbone(torch.as_tensor(X)).double().numpy()
    np.testing.assert_allclose(clf.fisher_["head.0.bias"].numpy(), (g**2).mean(0),
                               rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(clf.fisher_["head.0.weight"].numpy(),
                               np.einsum("nc,nd->cd", g**2, h**2) / len(X), rtol=1e-3, atol=1e-8)
    # the next experience adds its own Fisher on the old rows (online EWC)
    old_bias = clf.fisher_["head.0.bias"].clone()
    clf.partial_fit(*digits_stream[1][0])
    assert clf.fisher_["head.0.bias"].shape == (4,)
    assert bool((clf.fisher_["head.0.bias"][:2] > old_bias).all())


def test_distillation_keeps_old_outputs_closer(digits_stream):
    (X0, y0), (Xt0, _) = digits_stream[0]

    def change(weight):
        clf = _learner(memory_size=0, distill_weight=weight)
        clf.partial_fit(X0, y0)
        old = clf._logits(Xt0)[:, :2]
        (X1, y1), _ = digits_stream[1]
        clf.partial_fit(X1, y1)
        new = clf._logits(Xt0)[:, :2]
        return clf, np.abs(new - old).mean()

    plain, c_plain = change(0.0)
    lwf, c_lwf = change(10.0)
    assert c_lwf < 0.5 * c_plain
    d = [b["distill_loss"] for ep in lwf.net_.history for b in ep["batches"] if "distill_loss" in b]
    # the teacher is the model as it was before the experience: on the first batch the
    # student's old outputs are the teacher's, so the KL is 0; then the student moves
    n_batches = -(-len(digits_stream[1][0][1]) // 32)
    assert len(d) == 4 * n_batches  # every batch of experience 2 (4 epochs), none before
    assert abs(d[0]) < 1e-6 and max(d) > 1e-3
    assert lwf.teacher_ is not None and plain.teacher_ is None


def test_epochs_per_experience_is_a_deprecated_alias_and_params_are_keyword_only(
        digits_stream):
    (X, y), (Xt, _) = digits_stream[0]
    with pytest.warns(FutureWarning, match="renamed to `max_epochs`"):  # max_epochs default
        old = _learner(memory_size=0, max_epochs=5, epochs_per_experience=2).partial_fit(X, y)
    new = _learner(memory_size=0, max_epochs=2).partial_fit(X, y)
    assert len(old.net_.history) == len(new.net_.history) == 2
    assert np.array_equal(old.predict_proba(Xt), new.predict_proba(Xt))
    with pytest.raises(ValueError, match="both `max_epochs`=4 and its deprecated alias"):
        _learner(epochs_per_experience=2).partial_fit(X, y)  # which did the user mean?
    with pytest.raises(TypeError):
        RehearsalLearner("mlp", {"hidden_sizes": (8,)})  # backbone is the only positional


def test_default_adamw_is_the_old_adam_default_and_optimizer_classes_work(digits_stream):
    """With weight_decay=0 (the default) AdamW and Adam make the same updates: the
    vocabulary's default optimizer does not change results."""
    (_, _), (Xt, _) = digits_stream[1]
    a = _run(_learner(memory_size=20), digits_stream, 2)
    b = _run(_learner(memory_size=20, optimizer="adam"), digits_stream, 2)
    assert type(a.net_.optimizer_).__name__ == "AdamW"
    assert type(b.net_.optimizer_).__name__ == "Adam"
    assert np.array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    c = _run(_learner(memory_size=20, optimizer=torch.optim.SGD, lr=0.1), digits_stream, 1)
    assert type(c.net_.optimizer_) is torch.optim.SGD and c.score(*digits_stream[0][1]) > 0.9


def test_gradual_unfreezing_restarts_head_first_in_every_experience(digits_stream):
    clf = _learner(memory_size=20, backbone_kwargs={"hidden_sizes": (32, 32)},
                   unfreeze="gradual", max_epochs=3)
    _run(clf, digits_stream, 2)
    assert list(clf.net_.history[:, "unfrozen_groups"]) == [0, 1, 2, 0, 1, 2]
    assert clf.score(*digits_stream[0][1]) > 0.8
    # the shared vocabulary's old spelling: 'none' is 'head' (frozen, cached embeddings)
    with pytest.warns(FutureWarning, match="unfreeze='none' is deprecated"):
        old = _learner(memory_size=0, unfreeze="none").partial_fit(*digits_stream[0][0])
    assert old.frozen_ and old.net_.module_.backbone is None


def test_class_weight_per_experience(digits_stream):
    (X, y), _ = digits_stream[0]
    bal = _learner(memory_size=0, class_weight="balanced").partial_fit(X, y)
    # n / (n_classes * count) over what the experience trains on (here 3 zeros, 1 one)
    assert bal._class_weight(np.array([0, 0, 0, 1])).tolist() == pytest.approx([2 / 3, 2.0])
    # a dict may name labels still to come; outputs it does not name weigh 1
    d = _learner(memory_size=0, class_weight={1: 5.0, 9: 2.0}).partial_fit(X, y)
    assert d._class_weight(np.array([0, 1])).tolist() == [1.0, 5.0]
    # balanced weights lift the few replayed examples of old classes
    (X1, y1), _ = digits_stream[1]

    def old_accuracy(cw):
        clf = _learner(memory_size=6, policy="class_balanced", replay_ratio=None, class_weight=cw)
        clf.partial_fit(X, y).partial_fit(X1, y1)
        return clf.score(*digits_stream[0][1])

    assert old_accuracy("balanced") > old_accuracy(None) + 0.1


def test_task_id_reaches_every_prediction_method(digits_stream):
    clf = _learner(memory_size=0)
    for t, ((X, y), _) in enumerate(digits_stream[:2]):
        clf.partial_fit(X, y, task_id=t)
    Xt = digits_stream[0][1][0]
    logp = clf.predict_log_proba(Xt, task_id=0)
    assert np.isneginf(logp[:, 2:]).all() and np.allclose(np.exp(logp).sum(1), 1)
    z = clf.decision_function(Xt, task_id=1)
    assert np.isneginf(z[:, :2]).all()
    assert np.array_equal(clf.classes_[z.argmax(1)], clf.predict(Xt, task_id=1))


def test_domain_incremental_stream_keeps_classes_and_learns_both_domains():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 10)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    Xb = X[:, ::-1].copy() * 2.0 + 1.0  # the same task under another input distribution
    clf = _learner(memory_size=100, backbone_kwargs={"hidden_sizes": (32,)},
                   max_epochs=15, lr=1e-2)
    clf.partial_fit(X[:300], y[:300]).partial_fit(Xb[:300], y[:300])
    assert clf.classes_.tolist() == [0, 1] and clf.net_.module_.head[-1].out_features == 2
    assert clf.score(X[300:], y[300:]) > 0.8
    assert clf.score(Xb[300:], y[300:]) > 0.8
    assert clf.experiences_[1]["new_classes"] == []


def test_task_id_restricts_predictions_to_the_task(digits_stream):
    clf = _learner(memory_size=30)
    for t, ((X, y), _) in enumerate(digits_stream):
        clf.partial_fit(X, y, task_id=t)
    (_, _), (Xt, yt) = digits_stream[0]
    pred = clf.predict(Xt, task_id=0)
    assert set(pred.tolist()) <= {0, 1}
    assert np.mean(pred == yt) >= clf.score(Xt, yt) and np.mean(pred == yt) > 0.9
    assert clf.predict_proba(Xt, task_id=0)[:, 2:].max() == 0
    assert set(clf.memory_.task_ids_.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="task_id=9 was never given"):
        clf.predict(Xt, task_id=9)


def test_frozen_backbone_trains_only_the_head_and_replays_through_the_cache(digits_stream):
    clf = _learner(memory_size=30, unfreeze="head", lr=3e-2, max_epochs=10)
    (X, y), _ = digits_stream[0]
    clf.partial_fit(X, y)
    w0 = clf.backbone_.blocks[0][0].weight.detach().clone()
    _run(clf, digits_stream[1:])
    assert torch.equal(clf.backbone_.blocks[0][0].weight, w0)
    assert clf.net_.module_.backbone is None  # the head only, on cached embeddings
    (_, _), (Xt, yt) = digits_stream[0]
    assert clf.score(Xt, yt) > 0.5
    # the memory holds raw examples (64 pixels), not 64-d hidden embeddings by accident
    assert clf.memory_.items_.shape[1] == 64

    part = _learner(memory_size=0, backbone_kwargs={"hidden_sizes": (32, 32)}, unfreeze=1)
    part.partial_fit(X, y)
    bb = part.net_.module_.backbone
    assert not any(p.requires_grad for p in bb.blocks[0].parameters())
    assert all(p.requires_grad for p in bb.blocks[1].parameters())


def test_image_stream_stores_raw_images():
    from _tiny_backbones import TinyConvBackbone, make_image_blobs

    X, y = make_image_blobs(n_per_class=20, size=16, n_classes=3, seed=0)
    clf = RehearsalLearner(TinyConvBackbone(), memory_size=12, policy="class_balanced",
                           max_epochs=4, lr=1e-2, device="cpu", random_state=0)
    clf.partial_fit(X[y < 2], y[y < 2]).partial_fit(X[y == 2], y[y == 2])
    assert clf.memory_.items_.dtype == np.uint8 and clf.memory_.items_.shape == (12, 16, 16, 3)
    assert clf.score(X, y) > 0.6


def test_experiences_may_bring_images_of_different_kinds(tmp_path):
    """Arrays, then file paths and PIL images, then grey arrays of another size: before,
    item_hashes raised AttributeError ('numpy.ndarray' object has no attribute 'mode')
    and grey after RGB asked for 'images of one size'."""
    from _tiny_backbones import TinyConvBackbone, make_image_blobs
    from PIL import Image

    X, y = make_image_blobs(n_per_class=12, size=16, n_classes=3, seed=0)
    paths = []
    for i in np.flatnonzero(y == 1):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(X[i]).save(paths[-1])
    pil = [Image.fromarray(X[i]) for i in np.flatnonzero(y == 2)]
    clf = RehearsalLearner(TinyConvBackbone(), memory_size=12, policy="class_balanced",
                           max_epochs=4, lr=1e-2, device="cpu", random_state=0)
    clf.partial_fit(X[y == 0], y[y == 0])
    clf.partial_fit(paths[:6] + pil[:6], np.r_[np.ones(6, int), np.full(6, 2)])
    assert len(clf.memory_.items_) == 12 and clf.memory_.class_counts() == {0: 4, 1: 4, 2: 4}
    grey = X[y == 1].mean(axis=-1).astype(np.uint8)  # (N, 16, 16): no channel axis
    big = np.repeat(np.repeat(grey, 2, axis=1), 2, axis=2)  # 32 x 32
    clf.partial_fit(big, np.ones(len(big), int))
    assert clf.n_experiences_ == 3 and clf.classes_.tolist() == [0, 1, 2]
    frozen = RehearsalLearner(TinyConvBackbone(), unfreeze="head", memory_size=6,
                              policy="class_balanced", max_epochs=2, device="cpu", random_state=0)
    frozen.partial_fit(X[y == 0], y[y == 0]).partial_fit(grey, np.ones(len(grey), int))
    frozen.partial_fit(pil, np.full(len(pil), 2))  # the feature cache hashes every kind
    assert frozen.memory_.class_counts() == {0: 2, 1: 2, 2: 2}


def _state(clf, X):
    return (clf.predict_proba(X).tobytes(), clf.n_experiences_, clf.classes_.tolist(),
            pickle.dumps(clf.memory_), len(clf.net_.history))


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda X, y: (X[:, :10], y), "X has 10 features, but RehearsalLearner is expecting 64"),
        (lambda X, y: ([f"t{i}" for i in range(len(y))], y), "Expected a 2-D array|holds strings"),
        (lambda X, y: (X[:0], y[:0]), "empty|0 sample"),
        (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
        (lambda X, y: (X, y, [4, 5]), r"y holds labels \[6, 7\] that are not in classes"),
        (lambda X, y: (X, y, [6, 7]), r"omits labels \[0, 1, 2, 3\] seen in earlier"),
        (lambda X, y: (X, np.asarray([f"s{v}" for v in y])), "do not mix"),
        # 4 classes seen + 2 new > memory_size=5 under class_balanced
        (lambda X, y: (X, y + 100), r"memory_size=5 is smaller than the number of classes \(6\)"),
    ],
)
def test_bad_experience_raises_and_leaves_the_fitted_state_untouched(digits_stream, bad, match):
    clf = _learner(memory_size=5, policy="class_balanced")
    _run(clf, digits_stream, 2)
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    sel = np.isin(y, [6, 7])
    args = bad(X[sel], y[sel])
    Xt = digits_stream[0][1][0]
    before = _state(clf, Xt)
    with pytest.raises((ValueError, TypeError), match=match):
        if len(args) == 3:
            clf.partial_fit(args[0], args[1], classes=args[2])
        else:
            clf.partial_fit(*args)
    assert _state(clf, Xt) == before


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_failing_first_call_and_failing_fit_leave_no_or_old_state(digits_stream):
    clf = _learner(memory_size=1, policy="class_balanced")
    (X, y), (Xt, _) = digits_stream[0]
    with pytest.raises(ValueError, match="memory_size=1 is smaller than the number of classes"):
        clf.partial_fit(X, y)
    assert not hasattr(clf, "net_") and not hasattr(clf, "n_features_in_")
    clf.set_params(memory_size=4).partial_fit(X, y)
    before = _state(clf, Xt)
    with pytest.raises(ValueError, match="y contains NaN|Unknown label type"):
        clf.fit(X, np.full(len(y), np.nan))
    assert _state(clf, Xt) == before


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("policy", "fifo", "'policy' parameter of RehearsalLearner must be a str among"),
        ("replay_ratio", 1.5, r"'replay_ratio' parameter .* range \[0.0, 1.0\) or None"),
        ("memory_size", -1, r"'memory_size' parameter .* range \[0, inf\)"),
        ("ewc_lambda", -1.0, r"'ewc_lambda' parameter .* range \[0.0, inf\)"),
        ("unfreeze", "some", "'unfreeze' parameter .* among .*'gradual'"),
        ("optimizer", "lbfgs", "'optimizer' parameter .* among .*'adamw'"),
        ("max_epochs", 0, r"'max_epochs' parameter .* range \[1, inf\)"),
        ("epochs_per_experience", 0, r"'epochs_per_experience' parameter"),
        ("class_weight", "even", "'class_weight' parameter"),
        ("distill_temperature", 0.0, r"'distill_temperature' parameter .* \(0.0, inf\)"),
    ],
)
def test_bad_parameters_are_named(digits_stream, param, value, match):
    (X, y), _ = digits_stream[0]
    with pytest.raises(ValueError, match=match):
        _learner().set_params(**{param: value}).partial_fit(X, y)


def test_mid_stream_policy_change_is_refused(digits_stream):
    clf = _run(_learner(memory_size=10), digits_stream, 1)
    (X, y), _ = digits_stream[1]
    with pytest.raises(ValueError, match="policy changed from 'reservoir' to 'herding'"):
        clf.set_params(policy="herding").partial_fit(X, y)


def test_sklearn_contract_clone_pipeline_gridsearch(digits_stream):
    (X, y), _ = digits_stream[1]
    est = _learner(memory_size=10)
    c = clone(est.set_params(backbone_kwargs__hidden_sizes=(16,)))
    assert c.get_params()["backbone_kwargs"] == {"hidden_sizes": (16,)}
    assert not hasattr(c, "net_")
    with pytest.raises(Exception, match="not fitted"):
        c.predict(X)
    pipe = make_pipeline(StandardScaler(), c).fit(X, y)
    assert pipe.score(X, y) > 0.9
    gs = GridSearchCV(_learner(max_epochs=2), {"lr": [1e-4, 1e-2]}, cv=2).fit(X, y)
    assert gs.best_params_ == {"lr": 1e-2}
    assert pickle.loads(pickle.dumps(gs.best_estimator_)).score(X, y) == gs.best_estimator_.score(X, y)


def test_ace_loss_shields_old_outputs_from_the_new_classes(digits_stream):
    (X0, y0), (Xt0, _) = digits_stream[0]
    (X1, y1), _ = digits_stream[1]

    def old_logit_drop(loss):
        clf = _learner(memory_size=0, replay_loss=loss)
        clf.partial_fit(X0, y0)
        before = clf._logits(Xt0)[:, :2].max(axis=1)
        clf.partial_fit(X1, y1)
        return (before - clf._logits(Xt0)[:, :2].max(axis=1)).mean(), clf

    drop_ce, _ = old_logit_drop("ce")
    drop_ace, ace = old_logit_drop("ace")
    assert drop_ace < 0.5 * drop_ce
    assert ace.score(*digits_stream[1][1]) > 0.7  # the new classes are still learnt
    with pytest.raises(ValueError, match="'replay_loss' parameter .* among"):
        _learner(replay_loss="x").partial_fit(X0, y0)


def test_frozen_image_backbone_with_herding_replays_raw_images():
    from _tiny_backbones import TinyConvBackbone, make_image_blobs

    X, y = make_image_blobs(n_per_class=20, size=16, n_classes=3, seed=1)
    clf = RehearsalLearner(TinyConvBackbone(), unfreeze="head", memory_size=9, policy="herding",
                           max_epochs=15, lr=3e-2, device="cpu", random_state=0)
    w = clf.backbone.stem[0].weight.detach().clone()
    clf.partial_fit(X[y < 2], y[y < 2]).partial_fit(X[y == 2], y[y == 2])
    assert torch.equal(clf.backbone_.stem[0].weight, w)
    assert clf.memory_.items_.dtype == np.uint8 and clf.memory_.class_counts() == {0: 3, 1: 3, 2: 3}
    assert clf.score(X, y) > 0.6
    again = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_an_experience_ending_on_a_single_row_trains_batchnorm_backbones():
    """batch_size + 1 rows with the backbone training: the one-row last batch is dropped
    (BatchNorm cannot train on one sample), as FineTuneClassifier and the DA
    estimators do."""
    from _tiny_backbones import TinyConvBackbone, make_image_blobs

    X, y = make_image_blobs(9, 16)  # 2 x 9 images
    clf = RehearsalLearner(TinyConvBackbone(), unfreeze="all", batch_size=17, max_epochs=2,
                           memory_size=0, device="cpu", random_state=0)
    clf.partial_fit(X[:18], y[:18])
    assert clf.net_.history[-1, "train_batch_count"] == 1
    clf.partial_fit(X[:17], y[:17])  # 17 rows: one full batch, nothing dropped
    assert clf.net_.history[-1, "train_batch_count"] == 1
