import numpy as np
import pytest
import torch
from _tiny_backbones import TinyConvBackbone, make_image_blobs
from skorch.callbacks import Callback

from tlestimators import FineTuneClassifier
from tlestimators.exceptions import TrainingDivergedError


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only spin-wait on a loaded machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images():
    X, y = make_image_blobs(n_per_class=24, size=16, n_classes=2)
    return X, np.array(["ant", "bee"])[y]


def _ft(**kw):
    params = dict(lr=1e-2, max_epochs=6, batch_size=16, device="cpu", random_state=0)
    params.update(kw)
    return FineTuneClassifier(TinyConvBackbone(), **params)


def _state(clf_or_backbone):
    bb = getattr(clf_or_backbone, "net_", None)
    bb = bb.module_.backbone if bb is not None else clf_or_backbone
    return {k: v.detach().clone() for k, v in bb.state_dict().items()}


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_finetune_learns_images_and_loss_falls(images):
    X, y = images
    clf = _ft(max_epochs=8).fit(X, y)
    assert clf.score(X, y) > 0.9
    losses = clf.net_.history[:, "train_loss"]
    assert losses[-1] < 0.6 * losses[0]
    assert clf.predict(X).dtype == y.dtype
    assert clf.n_layer_groups_ == 3


@pytest.mark.parametrize(
    "unfreeze, trained",
    [("head", []), (1, ["proj"]), (2, ["stage", "proj"]), ("all", ["stem", "stage", "proj"])],
)
def test_unfreeze_trains_exactly_the_requested_groups(images, unfreeze, trained):
    X, y = images
    before = _state(TinyConvBackbone())
    clf = _ft(unfreeze=unfreeze, max_epochs=2).fit(X, y)
    after = _state(clf)
    for group in ["stem", "stage", "proj"]:
        # weights and BatchNorm running statistics alike
        assert _changed(before, after, group) == (group in trained), group
    head = clf.net_.module_.head[-1].weight
    assert head.abs().sum() > 0


def test_frozen_batchnorm_statistics_stay_frozen(images):
    X, y = images
    before = _state(TinyConvBackbone())
    clf = _ft(unfreeze=1, max_epochs=2).fit(X, y)
    after = _state(clf)
    for k in ("stem.1.running_mean", "stem.1.running_var", "stage.1.num_batches_tracked"):
        assert torch.equal(before[k], after[k]), k
    bn = clf.net_.module_.backbone.stem[1]
    clf.net_.module_.train()
    assert not bn.training  # frozen group's BN stays in eval mode in train()


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_norm_stats_keeps_pretrained_statistics_while_scale_and_shift_train(images, freeze):
    X, y = images
    before = _state(TinyConvBackbone())
    clf = _ft(unfreeze="all", max_epochs=2, freeze_norm_stats=freeze).fit(X, y)
    after = _state(clf)
    for bn in ("stem.1", "stage.1"):
        assert not torch.equal(before[bn + ".weight"], after[bn + ".weight"])  # affine trains
        for stat in ("running_mean", "running_var"):
            assert torch.equal(before[f"{bn}.{stat}"], after[f"{bn}.{stat}"]) == freeze
    clf.net_.module_.train()
    assert clf.net_.module_.backbone.stem[1].training is (not freeze)
    assert clf.score(X, y) > 0.9


def test_gradual_unfreezing_schedule(images):
    X, y = images
    before = _state(TinyConvBackbone())
    seen = []

    class Spy(Callback):
        def on_epoch_end(self, net, **kw):
            seen.append(_changed(before, _state(net.module_.backbone), "stem"))

    clf = _ft(unfreeze="gradual", unfreeze_every=2, max_epochs=7,
              callbacks=[("spy", Spy())]).fit(X, y)
    assert list(clf.net_.history[:, "unfrozen_groups"]) == [0, 0, 1, 1, 2, 2, 3]
    # the input-side group starts changing only once it is unfrozen (epoch 7)
    assert seen == [False] * 6 + [True]


def test_default_backbone_lr_follows_where_the_weights_come_from(images):
    """backbone_lr=None: lr / 10 for pretrained weights, lr for a backbone that starts
    from scratch (the DA estimators' rule too)."""
    import dataclasses

    X, y = images

    def backbone_lr(bb):
        clf = FineTuneClassifier(bb, unfreeze="all", lr=1e-2, max_epochs=1, batch_size=16,
                                 device="cpu", random_state=0).fit(X, y)
        module, opt = clf.net_.module_, clf.net_.optimizer_
        group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
        assert group_of[id(module.head[-1].weight)]["initial_lr"] == pytest.approx(1e-2)
        return group_of[id(module.backbone.proj.weight)]["initial_lr"]

    assert backbone_lr(TinyConvBackbone()) == pytest.approx(1e-2)  # random init
    pretrained = TinyConvBackbone()
    pretrained.config = dataclasses.replace(pretrained.config, weights="file:tiny.pt")
    assert backbone_lr(pretrained) == pytest.approx(1e-3)


def test_layer_decay_and_warmup_cosine_schedule(images):
    X, y = images
    clf = _ft(unfreeze="all", lr=1e-2, backbone_lr=1e-3, layer_decay=0.5, warmup=0.25,
              max_epochs=4, batch_size=8).fit(X, y)
    opt = clf.net_.optimizer_
    module = clf.net_.module_
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    init = lambda p: group_of[id(p)]["initial_lr"]  # noqa: E731
    assert init(module.head[-1].weight) == pytest.approx(1e-2)
    assert init(module.backbone.proj.weight) == pytest.approx(1e-3)
    assert init(module.backbone.stage[0].weight) == pytest.approx(5e-4)
    assert init(module.backbone.stem[0].weight) == pytest.approx(2.5e-4)
    assert group_of[id(module.backbone.stem[0].bias)]["weight_decay"] == 0.0
    assert group_of[id(module.backbone.stem[0].weight)]["weight_decay"] == 0.01
    assert len(opt.param_groups) <= 8  # per-name groups were merged
    lrs = np.asarray([b["event_lr"] for h in clf.net_.history for b in h["batches"]])
    steps = len(lrs)
    assert steps == 4 * 6  # 48 samples / 8
    peak = int(np.argmax(lrs))
    assert peak == round(0.25 * steps) - 1 or peak == round(0.25 * steps)
    assert np.all(np.diff(lrs[: peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) <= 1e-12)
    assert lrs[-1] < 0.05 * lrs[peak]


def test_augment_flag_reaches_preprocess(images, monkeypatch):
    X, y = images
    calls = []
    orig = TinyConvBackbone.preprocess

    def spy(self, items, train=False):
        calls.append(train)
        return orig(self, items, train=train)

    monkeypatch.setattr(TinyConvBackbone, "preprocess", spy)
    _ft(max_epochs=1).fit(X, y)
    assert True in calls
    calls.clear()
    clf = _ft(max_epochs=1, augment=False).fit(X, y)
    assert calls and not any(calls)
    calls.clear()
    clf.predict(X)
    assert calls and not any(calls)


def test_random_state_reproducible_and_label_smoothing(images):
    X, y = images
    a = _ft(max_epochs=2).fit(X, y).predict_proba(X)
    b = _ft(max_epochs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    smooth = _ft(max_epochs=2, label_smoothing=0.3).fit(X, y)
    assert smooth.net_.criterion_.label_smoothing == pytest.approx(0.3)
    assert not np.allclose(smooth.predict_proba(X), a)


def test_mlp_features_gradual_and_early_stopping(blobs):
    X, y = blobs
    clf = FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (32, 16)},
                             unfreeze="gradual", early_stopping=True, patience=3,
                             max_epochs=30, lr=2e-2, device="auto", random_state=0).fit(X, y)
    assert clf.net_.device == "cpu"
    assert "valid_loss" in clf.net_.history[-1]
    assert clf.score(X, y) > 0.9


def test_last_batch_of_one_does_not_break_batchnorm(images):
    X, y = images
    idx = np.r_[0:9, 24:32]  # 17 samples, batch 16: a last batch of 1 is dropped
    clf = _ft(max_epochs=2).fit(X[idx], y[idx])
    assert [b["train_batch_size"] for b in clf.net_.history[-1, "batches"]] == [16]


def test_bad_input_errors(images, blobs):
    X, y = images
    with pytest.raises(ValueError, match="The 'unfreeze' parameter of FineTuneClassifier"):
        _ft(unfreeze="last").fit(X, y)
    with pytest.raises(ValueError, match="unfreeze=5 asks for more layer groups than the "
                                         "backbone has \\(3\\)"):
        _ft(unfreeze=5).fit(X, y)
    with pytest.raises(ValueError, match="The 'layer_decay' parameter .* range \\(0.0, 1.0\\]"):
        _ft(layer_decay=1.5).fit(X, y)
    with pytest.raises(ValueError, match="The 'warmup' parameter"):
        _ft(warmup=1.0).fit(X, y)
    with pytest.raises(ValueError, match="only one class"):
        _ft().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="validation_fraction=0.5 of 3 samples gives 2 "
                                         "validation and 1 training samples"):
        _ft(early_stopping=True, validation_fraction=0.5).fit(X[[0, 1, 30]], y[[0, 1, 30]])
    with pytest.raises(TypeError, match="not image files"):
        _ft().fit(["some text", "more text"], ["a", "b"])
    with pytest.raises(TypeError, match="The 'callbacks' parameter"):
        _ft(callbacks="print").fit(X, y)
    Xf, yf = blobs
    with pytest.raises(TrainingDivergedError, match="Training diverged"):
        FineTuneClassifier("mlp", lr=1e30, backbone_lr=1e30, warmup=0.0, max_epochs=5,
                           device="cpu").fit(Xf * 1e3, yf)


def test_minus_one_labels_warn_and_point_to_dann(blobs):
    X, y = blobs
    y_da = np.where(np.arange(len(y)) % 4 == 0, -1, y)
    with pytest.warns(UserWarning, match="FineTuneClassifier learns -1 as a class.*DANNAdapter"):
        FineTuneClassifier("mlp", max_epochs=1, device="cpu").fit(X, y_da)



class _HeadAtStart(Callback):
    def on_train_begin(self, net, **kwargs):
        lin = net.module_.head[-1]
        self.weight_, self.bias_ = lin.weight.detach().clone(), lin.bias.detach().clone()


def test_lp_ft_head_starts_from_the_probe(blobs):
    from tlestimators.probe import LinearProbeCV

    X, y = blobs
    rec = _HeadAtStart()
    clf = FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (16,)}, max_epochs=3,
                             callbacks=[("rec", rec)], device="cpu", random_state=0).fit(X, y)
    assert isinstance(clf.probe_, LinearProbeCV)
    lin = clf.probe_.to_linear()
    torch.testing.assert_close(rec.weight_, lin.weight)
    torch.testing.assert_close(rec.bias_, lin.bias)
    # the probe was fitted on the PRETRAINED (here: seeded initial) backbone's embeddings
    from tlestimators import create_backbone

    bb = create_backbone("mlp", in_features=X.shape[1], hidden_sizes=(16,))
    with torch.no_grad():
        Z = bb(torch.as_tensor(X)).numpy()
    # LP-FT's probe keeps the per-feature scaling (what results/transfer.md measured)
    ref = LinearProbeCV(device="cpu", random_state=0, scaling="per_feature").fit(Z, y)
    assert clf.probe_.scaling_ == "per_feature" and ref.C_ == clf.probe_.C_
    np.testing.assert_allclose(ref.coef_, clf.probe_.coef_, rtol=1e-4, atol=1e-5)
    # the starting head already classifies: the probe's accuracy on its embeddings
    assert ref.score(Z, y) > 0.9
    # then fine-tuning moved the head away from it
    assert not torch.equal(clf.net_.module_.head[-1].weight.detach(), lin.weight)


def test_lp_ft_head_puts_no_weight_on_a_feature_below_float_resolution(blobs):
    # the identity backbone passes a dead column (~1e-33 on every row, like a dimension
    # of all-MiniLM-L6-v2's embeddings) through: the plain probe would weigh it ~1e31
    X, y = blobs
    X = X.astype(np.float32).copy()
    X[:, 1] = (1e-33 * (1 + np.random.RandomState(0).rand(len(X)))).astype(np.float32)
    rec = _HeadAtStart()
    clf = FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": ()}, max_epochs=2,
                             callbacks=[("rec", rec)], device="cpu", random_state=0).fit(X, y)
    assert (clf.probe_.coef_[:, 1] == 0).all()
    assert rec.weight_.abs().max() < 1e3
    losses = [b["train_loss"] for e in clf.net_.history for b in e["batches"]]
    assert np.isfinite(losses).all() and max(losses) < 10


def test_head_init_random_and_non_linear_heads_skip_the_probe(blobs):
    X, y = blobs
    rec = _HeadAtStart()
    clf = FineTuneClassifier("mlp", head_init="random", max_epochs=1, device="cpu",
                             callbacks=[("rec", rec)], random_state=0).fit(X, y)
    assert clf.probe_ is None
    torch.manual_seed(0)
    mlp = FineTuneClassifier("mlp", head="mlp", max_epochs=1, device="cpu").fit(X, y)
    assert mlp.probe_ is None
    with pytest.raises(ValueError, match="The 'head_init' parameter"):
        FineTuneClassifier("mlp", head_init="lp").fit(X, y)


def test_lp_ft_probe_sees_only_the_training_rows(blobs, monkeypatch):
    from tlestimators.probe import LinearProbeCV

    seen = []
    fit = LinearProbeCV.fit

    def recording_fit(self, X, y, *args, **kw):
        seen.append(len(X))
        return fit(self, X, y, *args, **kw)

    monkeypatch.setattr(LinearProbeCV, "fit", recording_fit)
    X, y = blobs
    clf = FineTuneClassifier("mlp", early_stopping=True, validation_fraction=0.2,
                             max_epochs=1, device="cpu").fit(X, y)
    n_train = len(X) - int(np.ceil(0.2 * len(X)))
    trained = sum(b["train_batch_size"] for b in clf.net_.history[0, "batches"]
                  if "train_batch_size" in b)
    assert seen[0] == n_train == trained  # the validation rows stay unseen


# --------------------------------------------------------------------------- warm start
def _mlp_ft(**kw):
    params = dict(backbone_kwargs={"hidden_sizes": (16,)}, lr=1e-2, batch_size=16,
                  max_epochs=1, device="cpu", random_state=0)
    params.update(kw)
    return FineTuneClassifier("mlp", **params)


def _batch_lrs(clf):
    return np.array([b["event_lr"] for h in clf.net_.history for b in h["batches"]])


def test_warm_start_trains_only_the_missing_epochs_on_the_same_network(blobs):
    X, y = blobs
    clf = _mlp_ft(warm_start=True).fit(X, y)
    assert clf.n_epochs_ == 1
    net, module, opt, probe = clf.net_, clf.net_.module_, clf.net_.optimizer_, clf.probe_
    before = _state(clf)
    head_before = module.head[-1].weight.detach().clone()
    adam_steps = {id(p): int(s["step"]) for p, s in opt.state.items()}
    clf.set_params(max_epochs=3).fit(X, y)
    # exactly 2 more epochs, on the same net, module and optimizer, the probe not refit
    assert clf.n_epochs_ == 3 and len(clf.net_.history) == 3
    assert clf.net_ is net and clf.net_.module_ is module and clf.net_.optimizer_ is opt
    assert clf.probe_ is probe
    assert [h["epoch"] for h in clf.net_.history] == [1, 2, 3]
    # the optimizer state went on (AdamW's step counts grew by the new batches)
    steps_per_epoch = len(clf.net_.history[0, "batches"])
    assert {int(opt.state[p]["step"]) for p in opt.state if id(p) in adam_steps} == {
        3 * steps_per_epoch}
    assert _changed(before, _state(clf), "")
    assert not torch.equal(head_before, module.head[-1].weight)
    # max_epochs equal to the epochs done: nothing to train
    after = _state(clf)
    assert clf.fit(X, y) is clf and clf.n_epochs_ == 3
    assert not _changed(after, _state(clf), "")
    assert clf.score(X, y) > 0.9


def test_warm_start_continues_the_schedule_of_a_fit_at_the_new_max_epochs(blobs):
    X, y = blobs
    full = _mlp_ft(max_epochs=3, warmup=0.3).fit(X, y)
    warm = _mlp_ft(max_epochs=1, warmup=0.3, warm_start=True).fit(X, y)
    one = _batch_lrs(warm).copy()
    warm.set_params(max_epochs=3).fit(X, y)
    lrs, ref = _batch_lrs(warm), _batch_lrs(full)
    n1 = len(one)
    assert len(lrs) == len(ref) == 3 * n1
    # the first epoch annealed to ~0 on its own 1-epoch horizon ...
    assert one[-1] < 0.1 * one.max()
    # ... then epochs 2-3 see exactly the 3-epoch fit's rates: a bump where it resumes,
    # annealed to 0 at 3 epochs (skorch alone would restart the warm-up: it rebuilds
    # the scheduler with last_epoch = epochs done, not batches)
    np.testing.assert_allclose(lrs[n1:], ref[n1:], rtol=1e-6)
    assert lrs[n1] > 5 * one[-1]
    # what the optimizer holds is the schedule's rate (head group: lr * lambda)
    for g in warm.net_.optimizer_.param_groups:
        assert g["lr"] == pytest.approx(0.0, abs=1e-12)
    # the rates the optimizer saw in epoch 2: recorded per batch for the first group
    first = warm.net_.optimizer_.param_groups[0]["initial_lr"]
    lam = warm.net_.callbacks_[[n for n, _ in warm.net_.callbacks_].index(
        "lr_schedule")][1].lr_lambda
    np.testing.assert_allclose(lrs[n1:], [first * lam(s) for s in range(n1, 3 * n1)],
                               rtol=1e-6)


class _OptimizerLR(Callback):
    """The head group's learning rate in the optimizer when each training batch starts
    (the rate its step uses)."""

    def initialize(self):
        self.seen_ = []
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.seen_.append(max(g["lr"] for g in net.optimizer_.param_groups))


def test_warm_start_optimizer_rates_are_those_of_a_fit_at_max_epochs(blobs):
    X, y = blobs
    spy_full, spy_warm = _OptimizerLR(), _OptimizerLR()
    _mlp_ft(max_epochs=3, warmup=0.3, callbacks=[("spy", spy_full)]).fit(X, y)
    warm = _mlp_ft(max_epochs=1, warmup=0.3, warm_start=True,
                   callbacks=[("spy", spy_warm)]).fit(X, y)
    n1 = len(spy_warm.seen_)
    warm.set_params(max_epochs=3).fit(X, y)
    full, got = np.array(spy_full.seen_), np.array(spy_warm.seen_)
    assert len(got) == len(full) == 3 * n1
    np.testing.assert_allclose(got[n1:], full[n1:], rtol=1e-6)  # epochs 2-3
    assert full.max() == pytest.approx(1e-2, rel=0.05)  # the head's lr at the peak


def test_warm_start_survives_pickling_and_matches_an_unpickled_run(blobs):
    import pickle

    X, y = blobs
    a = _mlp_ft(warm_start=True).fit(X, y)
    b = pickle.loads(pickle.dumps(a))
    a.set_params(max_epochs=3).fit(X, y)
    b.set_params(max_epochs=3).fit(X, y)
    np.testing.assert_allclose(_batch_lrs(a), _batch_lrs(b))
    for (k, va), vb in zip(a.net_.module_.state_dict().items(),
                           b.net_.module_.state_dict().values()):
        assert torch.equal(va, vb), k
    # clone drops the fit: a warm_start=True clone fits from scratch
    from sklearn.base import clone

    c = clone(a)
    assert c.get_params()["warm_start"] is True and not hasattr(c, "net_")
    assert c.fit(X, y).n_epochs_ == 3


def test_warm_start_false_refits_from_scratch(blobs):
    X, y = blobs
    clf = _mlp_ft().fit(X, y)
    net = clf.net_
    clf.set_params(max_epochs=2).fit(X, y)
    assert clf.net_ is not net and clf.n_epochs_ == 2
    ref = _mlp_ft(max_epochs=2).fit(X, y)
    np.testing.assert_allclose(_batch_lrs(clf), _batch_lrs(ref))
    # warm_start=True on an unfitted estimator is a plain fit
    fresh = _mlp_ft(max_epochs=2, warm_start=True).fit(X, y)
    np.testing.assert_allclose(fresh.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_warm_start_continues_gradual_unfreezing(blobs):
    X, y = blobs
    kw = dict(backbone_kwargs={"hidden_sizes": (16, 16)}, unfreeze="gradual")
    full = _mlp_ft(max_epochs=4, **kw).fit(X, y)
    warm = _mlp_ft(max_epochs=2, warm_start=True, **kw).fit(X, y)
    warm.set_params(max_epochs=4).fit(X, y)
    assert list(warm.net_.history[:, "unfrozen_groups"]) == list(
        full.net_.history[:, "unfrozen_groups"])


def test_warm_start_errors_name_the_argument(blobs):
    X, y = blobs
    clf = _mlp_ft(max_epochs=3, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match=r"max_epochs=2 must be >= the 3 epochs"):
        clf.set_params(max_epochs=2).fit(X, y)
    clf.set_params(max_epochs=4)
    with pytest.raises(ValueError, match=r"y has classes \[0, 1\].*fitted on \[0, 1, 2\]"):
        clf.fit(X[y < 2], y[y < 2])
    with pytest.raises(ValueError, match="n_features|features"):
        clf.fit(X[:, :5], y)
    with pytest.raises(ValueError, match=r"built with lr=0.01; got lr=0.1"):
        clf.set_params(lr=0.1).fit(X, y)
    clf.set_params(lr=1e-2)
    assert clf.fit(X, y).n_epochs_ == 4  # the errors left it untouched
    for kw, what in [({"unfreeze": "lora"}, "unfreeze='lora'"),
                     ({"early_stopping": True}, "early_stopping=True")]:
        est = _mlp_ft(max_epochs=1, **kw)
        assert what in est._warm_start_unsupported()
    es = _mlp_ft(max_epochs=2, early_stopping=True, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match=r"early_stopping=True is not supported"):
        es.set_params(max_epochs=3).fit(X, y)
    assert _mlp_ft()._warm_start_unsupported() is None


def test_warm_start_refuses_an_accelerator_clearly(blobs):
    pytest.importorskip("accelerate")
    from accelerate import Accelerator

    from tlestimators.distributed import AcceleratedFineTuneClassifier

    X, y = blobs
    assert "accelerator" in _mlp_ft(accelerator=Accelerator(cpu=True))._warm_start_unsupported()
    clf = AcceleratedFineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (16,)},
                                        max_epochs=1, batch_size=16, lr=1e-2,
                                        warm_start=True, random_state=0).fit(X, y)
    assert clf.n_epochs_ == 1
    with pytest.raises(ValueError, match="accelerator is not supported"):
        clf.set_params(max_epochs=2).fit(X, y)


def test_a_pandas_frame_of_features_fits_without_torch_warnings():
    """pandas hands out read-only float32 views; the mlp backbone copies such a batch
    instead of letting torch warn about non-writable memory on every batch."""
    import warnings

    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(40, 3).astype(np.float32), columns=["a", "b", "c"])
    y = pd.Series((X["a"] > 0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = FineTuneClassifier("mlp", max_epochs=2, device="cpu", random_state=0).fit(X, y)
        clf.predict(X)
    assert list(clf.feature_names_in_) == ["a", "b", "c"]
