"""The shared estimator core: one dataset, one collate, one unfreeze vocabulary, the
deprecation helpers, the constraint fragments and the prediction mixin."""

import io
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils._param_validation import InvalidParameterError

from tlestimators import FineTuneClassifier, FrozenFeatureClassifier
from tlestimators._validation import deprecated_value, renamed_param, torch_seed
from tlestimators.callbacks import (
    GradualUnfreezing,
    apply_unfreeze,
    check_unfreeze,
    frozen_param_names,
    unfreeze_callbacks,
)
from tlestimators.estimators._base import (
    Collate,
    TransferDataset,
    TransferModule,
    common_constraints,
    deprecated_constraint,
    resolve_optimizer,
)
from tlestimators.estimators._netclassifier import LogitsClassifierMixin


def _mlp(hidden=(8, 6), d=5):
    from tlestimators import create_backbone

    return create_backbone("mlp", in_features=d, hidden_sizes=hidden)


def test_dataset_gathers_batches_with_targets_and_extras():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    ds = TransferDataset(X, y=np.arange(10) % 3, is_target=np.arange(10) >= 5)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=Collate())
    xb, yb = next(iter(loader))
    assert torch.equal(xb, torch.as_tensor(X[:4]))
    assert set(yb) == {"y", "is_target"}
    assert yb["y"].tolist() == [0, 1, 2, 0]
    assert yb["is_target"].tolist() == [False] * 4
    # a Subset (skorch's ValidSplit) still gathers through __getitems__
    sub = torch.utils.data.Subset(ds, [9, 1])
    xb, yb = next(iter(torch.utils.data.DataLoader(sub, batch_size=2, collate_fn=Collate())))
    assert xb[:, 0].tolist() == [18.0, 2.0] and yb["is_target"].tolist() == [True, False]


def test_dataset_sparse_rows_no_targets_and_length_check():
    X = sp.random(7, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    bb = _mlp(hidden=())
    xb, yb = Collate(bb)(TransferDataset(X).__getitems__([2, 5]))
    np.testing.assert_array_equal(xb.numpy(), X[[2, 5]].toarray())
    assert yb.tolist() == [0, 0]
    with pytest.raises(ValueError, match="task has 3 rows but the items have 7"):
        TransferDataset(X, task=[1, 2, 3])


def test_collate_reads_the_backbone_from_the_net_and_pickles_without_it():
    class FakeNet:
        pass

    net = FakeNet()
    net.module_ = TransferModule(_mlp(hidden=()), torch.nn.Linear(5, 2))
    col = Collate(train=True)
    col.net = net
    xb, _ = col(TransferDataset(np.ones((3, 5))).__getitems__([0, 1]))
    assert xb.dtype == torch.float32 and xb.shape == (2, 5)
    # per-row samples (a DataLoader without __getitems__) are stacked too
    xb, yb = Collate(_mlp(hidden=()))([(np.ones(5), 1), (np.zeros(5), 0)])
    assert xb.shape == (2, 5) and yb.tolist() == [1, 0]
    # the collate holds no backbone of its own
    assert b"blocks" not in pickle.dumps(Collate(train=False))


def test_unfreeze_vocabulary_and_aliases():
    assert check_unfreeze("head", 3) == 0
    assert check_unfreeze("all", 3) == 3
    assert check_unfreeze(2, 3) == 2
    assert check_unfreeze("gradual", 3) == "gradual"
    with pytest.warns(FutureWarning, match="unfreeze='none' is deprecated.*'head'"):
        assert check_unfreeze("none", 3) == 0
    with pytest.raises(ValueError, match="unfreeze must be one of 'head', 'all', 'gradual'"):
        check_unfreeze("last", 3)
    with pytest.raises(ValueError, match="unfreeze=4 asks for more layer groups"):
        check_unfreeze(4, 3)
    with pytest.raises(ValueError, match="int k >= 0, got True"):
        check_unfreeze(True, 3)
    with pytest.raises(ValueError, match="'head', 'all' or an int"):
        check_unfreeze("gradual", 3, options=("head", "all"))


def test_unfreeze_callbacks_and_param_names():
    module = TransferModule(_mlp(hidden=(8, 6, 4)), torch.nn.Linear(4, 2))
    cbs, groups, k = unfreeze_callbacks(module, 1)
    assert k == 1 and len(groups) == 3
    assert [n for n, _ in cbs] == ["freezer"]
    assert cbs[0][1].patterns("backbone.blocks.0.0.weight")
    assert not cbs[0][1].patterns("backbone.blocks.2.0.weight")
    cbs, _, k = unfreeze_callbacks(module, "gradual", every=2)
    assert isinstance(cbs[0][1], GradualUnfreezing) and cbs[0][1].every == 2
    assert unfreeze_callbacks(module, "all")[0] == []
    assert frozen_param_names(module, "head") == {
        n for n, _ in module.named_parameters() if n.startswith("backbone.")
    }
    frozen = apply_unfreeze(module, 2)
    assert frozen == {"backbone.blocks.0.0.weight", "backbone.blocks.0.0.bias"}
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert "head.weight" in trainable and "backbone.blocks.1.0.weight" in trainable
    assert "backbone.blocks.0.0.weight" not in trainable


def test_renamed_param_and_deprecated_value():
    class E:
        def __init__(self, max_epochs=10, epochs_per_experience="deprecated"):
            self.max_epochs = max_epochs
            self.epochs_per_experience = epochs_per_experience

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed_param(E(), "epochs_per_experience", "max_epochs") == 10
        assert renamed_param(E(max_epochs=4), "epochs_per_experience", "max_epochs") == 4
    e = E(epochs_per_experience=3)
    with pytest.warns(FutureWarning, match="`epochs_per_experience` was renamed to `max_epochs`"):
        assert renamed_param(e, "epochs_per_experience", "max_epochs") == 3
    # both set: nothing is silently dropped
    with pytest.raises(ValueError, match="both `max_epochs`=4 and its deprecated alias "
                                         "`epochs_per_experience`=3 are set"):
        renamed_param(E(4, 3), "epochs_per_experience", "max_epochs")
    with pytest.warns(FutureWarning, match="label_descriptions"):
        assert deprecated_value("x", {"x": "y"}, "label_descriptions") == "y"
    assert deprecated_value("z", {"x": "y"}, "p") == "z"


class _Toy(ClassifierMixin, BaseEstimator):
    _parameter_constraints = {
        **common_constraints("unfreeze", "lr", "cache", "optimizer", "device"),
        "epochs_per_experience": deprecated_constraint(common_constraints("max_epochs")
                                                       ["max_epochs"]),
    }

    def __init__(self, unfreeze="head", lr=1e-3, cache=True, optimizer="adamw", device="auto",
                 epochs_per_experience="deprecated"):
        self.unfreeze = unfreeze
        self.lr = lr
        self.cache = cache
        self.optimizer = optimizer
        self.device = device
        self.epochs_per_experience = epochs_per_experience

    def fit(self, X=None, y=None):
        self._validate_params()
        return self


@pytest.mark.parametrize("params", [
    {"unfreeze": 3}, {"unfreeze": "none"}, {"cache": "/tmp/x"}, {"optimizer": torch.optim.SGD},
    {"epochs_per_experience": 4}, {"device": torch.device("cpu")},
])
def test_shared_constraints_accept(params):
    _Toy(**params).fit()


@pytest.mark.parametrize("params, name", [
    ({"unfreeze": -1}, "unfreeze"), ({"unfreeze": "lora"}, "unfreeze"), ({"lr": 0}, "lr"),
    ({"cache": 3}, "cache"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"epochs_per_experience": 0}, "epochs_per_experience"),
])
def test_shared_constraints_reject_naming_the_parameter(params, name):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of _Toy"):
        _Toy(**params).fit()


def test_resolve_optimizer():
    assert resolve_optimizer("sgd") is torch.optim.SGD
    assert resolve_optimizer(torch.optim.Adam) is torch.optim.Adam


def test_torch_seed_is_local():
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    with torch_seed(5):
        a = torch.rand(1)
    assert torch.equal(torch.rand(1), expected)  # caller's RNG untouched
    with torch_seed(5):
        assert torch.equal(torch.rand(1), a)


def test_logits_mixin_hooks_for_masked_logits():
    class Masked(LogitsClassifierMixin):
        classes_ = np.array(["a", "b", "c"])

        def _logits(self, X, task_id=None):
            z = np.asarray(X, dtype=float)
            if task_id == 1:
                z = z.copy()
                z[:, 0] = -np.inf
            return z

        def predict_proba(self, X, task_id=None):
            return self._proba_from_logits(self._logits(X, task_id=task_id))

        def predict(self, X, task_id=None):
            return self._labels_from_logits(self._logits(X, task_id=task_id))

    m = Masked()
    X = [[3.0, 1.0, 0.0]]
    assert m.predict(X).tolist() == ["a"]
    assert m.predict(X, task_id=1).tolist() == ["b"]
    p = m.predict_proba(X, task_id=1)
    assert p[0, 0] == 0.0 and np.isclose(p.sum(), 1.0)
    np.testing.assert_allclose(np.exp(m.predict_log_proba(X)), m.predict_proba(X))
    assert m.decision_function(X).shape == (1, 3)


@pytest.mark.parametrize("make", [
    lambda: FineTuneClassifier(backbone="mlp", head_init="random", max_epochs=2, random_state=0),
    lambda: FrozenFeatureClassifier(backbone="mlp", head="mlp", max_epochs=2, random_state=0),
])
def test_a_pickled_net_stores_module_and_optimizer_once(make):
    """skorch keeps ``module_``/``optimizer_`` in one blob; neither the ``module`` init
    parameter nor an LR scheduler's optimizer may add a second copy to the pickle."""
    rng = np.random.RandomState(0)
    X = rng.randn(120, 32).astype("float32")
    y = (X[:, 0] > 0).astype(int)
    est = make().fit(X, y)
    net = est.net_
    blob = io.BytesIO()
    torch.save({"m": net.module_.state_dict(), "o": net.optimizer_.state_dict()}, blob)
    restored = pickle.loads(pickle.dumps(est))
    assert len(pickle.dumps(est)) <= 1.25 * blob.tell()
    np.testing.assert_allclose(restored.predict_proba(X), est.predict_proba(X), atol=1e-6)
    assert restored.net_.module is restored.net_.module_
    # the LR scheduler is rebuilt at train begin: refitting the restored estimator
    # trains exactly like a fresh clone
    fresh = clone(est).fit(X, y)
    restored.fit(X, y)
    np.testing.assert_allclose(restored.predict_proba(X), fresh.predict_proba(X), atol=1e-5)


def test_version_is_the_installed_distributions():
    """__version__ and pyproject's version move together (the deprecation messages
    name releases relative to it)."""
    import importlib.metadata

    import tlestimators

    assert tlestimators.__version__ == importlib.metadata.version("tlestimators")
