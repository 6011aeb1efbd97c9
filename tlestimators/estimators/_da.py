"""The shared core of the deep domain-adaptation estimators (DANN, CDAN, Deep CORAL,
MMD, information maximisation).

A method is three small layers, as in skada: a pure loss in :mod:`tlestimators.losses`,
a thin *adaptation criterion* module here (``forward(features, logits, is_target,
weight) -> (loss, stats)``), and :class:`BaseDomainAdapter`, which adds it to the task
loss: ``loss = CE(labeled rows) + adaptation``. Everything else (parameters, data,
freezing, prediction) is the estimator core of :mod:`tlestimators.estimators._base`.

Data convention (sklearn's semi-supervised one): rows with ``y == -1`` are unlabeled
target-domain samples; skada's ``sample_domain`` (source > 0, target < 0) may be given
as fit metadata for labeled target rows or several sources.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.dataset import unpack_data
from skorch.utils import to_device
from torch import nn

from tlestimators import data
from tlestimators._validation import check_random_state_int, resolve_device, torch_seed
from tlestimators.callbacks import (
    ConstantSchedule,
    DANNLambdaSchedule,
    EpochBatchAverages,
    NaNLossGuard,
    WarmupCosine,
    check_unfreeze,
    dann_lambda,
    dann_lr_factor,
    progress_lr_schedule,
    set_frozen_norm_eval,
    unfreeze_callbacks,
)
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    Collate,
    NumberedFeaturesOutMixin,
    TransferDataset,
    TransferNet,
    _autocast_context,
    common_constraints,
    default_backbone_lr,
    drop_last_batch,
    encode_labels,
    linear_probe,
    make_head,
    resolve_optimizer,
    validate_feature_input,
)
from tlestimators.estimators._netclassifier import NetClassifierMixin
from tlestimators.estimators.frozen import Standardize
from tlestimators.losses import (
    cdan_entropy_weights,
    conditional_features,
    dann_loss,
    gradient_reversal,
)
from tlestimators.probe import global_scale

__all__ = [
    "AdversarialCriterion",
    "AdversarialMixin",
    "CDAN_MAX_MAP_DIM",
    "CDAN_RANDOM_MAP_DIM",
    "cdan_map_width",
    "BaseDomainAdapter",
    "DEFAULT_LR",
    "DEFAULT_OPTIMIZER",
    "DEFAULT_STANDARDIZE",
    "DEFAULT_WEIGHT_DECAY",
    "DAModule",
    "DANet",
    "DomainBalancedSampler",
    "document_da_estimator",
    "make_domain_head",
]

_SCHEDULES = {"dann": dann_lambda, "constant": ConstantSchedule()}

#: The training recipe every deep DA estimator defaults to, kept in this one place (the
#: estimators' signatures read it; each method keeps its own ``lambda_max``): Adam at
#: ``lr=1e-3``, annealed by the paper's ``lr_schedule="dann"``, with dense inputs
#: standardised by one global scale (``standardize="auto"``). The DANN paper's SGD
#: recipe (``optimizer="sgd", lr=0.01, momentum=0.9, standardize=None``), the defaults
#: of 0.1, underfits dense embeddings of small per-column scale (results/da.md).
DEFAULT_OPTIMIZER, DEFAULT_LR, DEFAULT_STANDARDIZE = "adam", 1e-3, "auto"
#: ``weight_decay="auto"``: with dense inputs, an L2 penalty of ``AUTO_WEIGHT_DECAY``
#: (Adam's coupled ``weight_decay``) on the parameters trained from scratch (heads,
#: bottleneck, a randomly initialised backbone such as ``"mlp"``) and none on pretrained
#: backbone weights, which under Adam it would pull towards zero at the rate of the
#: learning rate and erase what transfer brings. Without it the source classifier fits
#: its rows to a loss of ~0.005 and transfers worse: on two proxies that are not benchmark
#: tables (384-d LSA embeddings of four Amazon pairs, efficientnet_lite0 embeddings of
#: sklearn's digits -> shifted digits) 0.01 lifted DANN by 1.6 and 2.6 points and its own
#: lambda 0 by 1.4 and 1.8 (0.03: +0.3 more on the first, -0.6 on the second, mean over
#: the methods). Sparse inputs (bag-of-words) get none: under Adam the coupled penalty
#: of a rarely active input's weights is divided by its small gradient second moment, so
#: it deletes rare words; on the Amazon bag-of-words DANN lost 3.8 points with it (up to 8)
#: (results/da.md).
DEFAULT_WEIGHT_DECAY, AUTO_WEIGHT_DECAY = "auto", 0.01


# --------------------------------------------------------------------------- data
class DomainBalancedSampler(torch.utils.data.Sampler):
    """Row indices alternating source, target, source, ... so every batch of even size is
    half source, half target whatever the domain sizes: the smaller domain is cycled
    (a fresh permutation each pass) instead of being drowned by the larger one.

    One epoch yields ``2 * max(n_source, n_target)`` indices. Randomness comes from
    torch's global RNG (seeded by the estimator's ``random_state``).
    """

    def __init__(self, is_target):
        self.is_target = np.asarray(is_target, dtype=bool)

    def __len__(self):
        n_t = int(self.is_target.sum())
        return 2 * max(n_t, len(self.is_target) - n_t)

    @staticmethod
    def _cycle(idx, n):
        reps = -(-n // len(idx))
        perm = [idx[torch.randperm(len(idx)).numpy()] for _ in range(reps)]
        return np.concatenate(perm)[:n]

    def __iter__(self):
        src, tgt = np.flatnonzero(~self.is_target), np.flatnonzero(self.is_target)
        n = max(len(src), len(tgt))
        out = np.empty(2 * n, dtype=np.int64)
        out[0::2], out[1::2] = self._cycle(src, n), self._cycle(tgt, n)
        return iter(out.tolist())


def input_scaler(Z, how):
    """The fixed affine map ``(x - mean) / std`` that ``standardize=how`` puts in front of
    the first trained layer, from all rows ``Z`` (source and target).

    ``"per_feature"``: each column to zero mean and unit variance. ``"global"``: the
    column means are removed and every column is divided by ONE scale, the root mean
    column variance, so the average feature has unit variance while the geometry of the
    representation (relative feature scales, distances up to a factor) is kept; it does
    not amplify near-constant columns, which in DA data are often the domain-specific
    ones (an image border that is blank in one domain only, a rare word). Sparse
    inputs are scaled but not centred (centring would densify them).
    """
    sparse = hasattr(Z, "tocsr")
    if sparse:
        from sklearn.utils.sparsefuncs import mean_variance_axis

        mean, var = mean_variance_axis(Z.tocsr().astype(np.float64), axis=0)
    else:
        Z = np.asarray(Z, dtype=np.float64)
        mean, var = Z.mean(0), Z.var(0)
    if how == "per_feature":
        std = np.sqrt(var)
    else:
        std = np.full_like(var, global_scale(mean, var))
    return Standardize(np.zeros_like(mean) if sparse else mean, std)


# --------------------------------------------------------------------------- module
class DAModule(nn.Module):
    """``features = bottleneck(backbone(scaler(x)))``, ``logits = head(features)``, and the
    method's ``criterion`` (an ``nn.Module`` holding e.g. a domain classifier).

    ``backbone`` is ``None`` when it is frozen (the inputs are then its cached
    embeddings). ``output`` selects what ``forward`` returns: ``"logits"``,
    ``"features"`` or ``"domain"`` (the criterion's ``domain_proba``).
    """

    output = "logits"

    def __init__(self, backbone, scaler, bottleneck, head, criterion):
        super().__init__()
        self.backbone = backbone
        self.scaler = scaler
        self.bottleneck = bottleneck
        self.head = head
        self.criterion = criterion

    def features(self, x):
        x = self.scaler(x)
        if self.backbone is not None:
            x = self.backbone(x)
        return self.bottleneck(x)

    def forward(self, x):
        f = self.features(x)
        if self.output == "features":
            return f
        if self.output == "domain":
            return self.criterion.domain_proba(f, self.head(f))
        return self.head(f)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone is not None:
            set_frozen_norm_eval(self.backbone)
        return self


class DANet(TransferNet):
    """skorch net whose step adds ``module.criterion(features, logits, is_target,
    lambda_)`` to the cross-entropy of the labeled rows.

    The target of each batch is ``(N, 2)``: the class index (-1 when unlabeled) and the
    domain (1 = target). ``lambda_`` is set per batch by :class:`DANNLambdaSchedule`.
    """

    lambda_ = 0.0

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        yi = to_device(yi, self.device)
        labels, is_target = yi["y"], yi["is_target"]
        with _autocast_context(self.device):
            feats = self.module_.features(to_device(Xi, self.device))
            logits = self.module_.head(feats)
        feats, logits = feats.float(), logits.float()
        labeled = labels >= 0
        if labeled.any():
            task = self.get_loss(logits[labeled], labels[labeled], X=Xi, training=True)
        else:  # unbalanced sampling can give a batch of unlabeled targets only
            task = logits.sum() * 0.0
        adapt, stats = self.module_.criterion(feats, logits, is_target, float(self.lambda_))
        loss = task + adapt
        loss.backward()
        self.history.record_batch("task_loss", task.item())
        self.history.record_batch("adapt_loss", adapt.item())
        for key, value in stats.items():
            self.history.record_batch(key, value)
        self.history.record_batch("lambda", float(self.lambda_))
        self.history.record_batch("lr", float(self.optimizer_.param_groups[-1]["lr"]))
        return {"loss": loss, "y_pred": logits}


# --------------------------------------------------------------------------- criteria
def make_domain_head(in_features, domain_head):
    """``"linear"``, ``"mlp"`` (two hidden ReLU layers, as in the DANN paper's image
    experiments) or an ``nn.Module`` (deep-copied) returning 1 logit (or 2)."""
    if isinstance(domain_head, nn.Module):
        import copy

        return copy.deepcopy(domain_head)
    if domain_head == "linear":
        return nn.Linear(in_features, 1)
    hidden = min(1024, max(64, in_features))
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, 1))


def _target_proba(z):
    if z.ndim == 2 and z.shape[1] == 2:
        return torch.softmax(z.float(), 1)[:, 1]
    return torch.sigmoid(z.float().reshape(-1))


#: CDAN's multilinear map ``f (x) g`` is used as is up to this width; wider maps use the
#: paper's randomised map of width ``CDAN_RANDOM_MAP_DIM``.
CDAN_MAX_MAP_DIM, CDAN_RANDOM_MAP_DIM = 4096, 1024


def cdan_map_width(n_features, n_classes):
    """The width of the domain classifier's input under CDAN's (randomised) map."""
    width = n_features * n_classes
    return width if width <= CDAN_MAX_MAP_DIM else CDAN_RANDOM_MAP_DIM


class AdversarialCriterion(nn.Module):
    """A domain classifier fed through a gradient-reversal layer of strength ``lambda``:
    DANN on the features, or CDAN on their multilinear map with the class
    probabilities (``conditional=True``; ``entropy_conditioning`` weights confident
    samples up, CDAN+E). Maps wider than ``CDAN_MAX_MAP_DIM`` use CDAN's randomised map
    (:func:`cdan_map_width`)."""

    def __init__(self, domain_head, conditional=False, entropy_conditioning=False,
                 n_features=None, n_classes=None):
        super().__init__()
        self.conditional = conditional
        self.entropy_conditioning = entropy_conditioning
        self.random_map = None
        if conditional and n_features * n_classes > CDAN_MAX_MAP_DIM:
            self.random_map = CDAN_RANDOM_MAP_DIM
            self.register_buffer("rf", torch.randn(n_features, CDAN_RANDOM_MAP_DIM))
            self.register_buffer("rg", torch.randn(n_classes, CDAN_RANDOM_MAP_DIM))
        self.domain_head = domain_head

    def domain_input(self, feats, logits):
        if not self.conditional:
            return feats
        rm = (self.rf, self.rg) if self.random_map else None
        return conditional_features(feats, torch.softmax(logits, 1).detach(), rm)

    def forward(self, feats, logits, is_target, lam):
        z = self.domain_head(gradient_reversal(self.domain_input(feats, logits), lam)).float()
        w = cdan_entropy_weights(logits, is_target) if self.entropy_conditioning else None
        loss = dann_loss(z, is_target, w)
        with torch.no_grad():
            acc = ((_target_proba(z) > 0.5).long() == is_target).float().mean().item()
        return loss, {"domain_loss": loss.item(), "domain_acc": acc}

    def domain_proba(self, feats, logits):
        return _target_proba(self.domain_head(self.domain_input(feats, logits)))


class AdversarialMixin:
    """What the adversarial DA estimators (a domain classifier in their criterion) add."""

    def predict_domain_proba(self, X):
        """The domain classifier's probability that each sample is from the target domain."""
        return self._module_output(X, "domain")


# --------------------------------------------------------------------------- estimator
class BaseDomainAdapter(NetClassifierMixin, ClassifierMixin, NumberedFeaturesOutMixin,
                        TransformerMixin, BackboneParamsMixin, BaseEstimator):
    """Shared parameters, ``fit``, prediction and scoring of the deep DA estimators.

    A subclass documents its parameters, lists them in ``__init__`` and implements
    ``_make_criterion(n_features, n_classes) -> nn.Module``.
    """

    _parameter_constraints: dict = {
        **common_constraints("backbone", "backbone_kwargs", "unfreeze", "head", "lr",
                             "backbone_lr", "optimizer", "weight_decay", "max_epochs",
                             "device", "random_state", "verbose", "cache"),
        "bottleneck": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "lambda_max": [Interval(Real, 0, None, closed="left")],
        "lambda_schedule": [StrOptions({"dann", "constant"}), callable],
        "lr_schedule": [StrOptions({"dann", "constant", "warmup_cosine"}), callable],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "balanced": ["boolean"],
        "standardize": [StrOptions({"auto", "global", "per_feature"}), None],
        "head_init": [StrOptions({"probe", "random"})],
        "weight_decay": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    }

    #: the method's name in reports and model cards
    _method = "domain adaptation"

    def _strategy(self):
        if self.lambda_max == 0:
            return f"{self._method} net, no adaptation (lambda_max=0)"
        return f"{self._method} (lambda_max={self.lambda_max:g})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # transform: float32 features
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_domain=None):
        """Train on labeled source rows and unlabeled target rows (``y == -1``).

        Parameters
        ----------
        X : array-like or list
            Source and target samples together, in the backbone's modality.
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` (the number) marks unlabeled target-domain samples.
        sample_domain : array-like of int of shape (n_samples,), default=None
            skada's convention: a positive id per source domain, a negative id per
            target domain. Needed only for labeled target samples or several sources;
            route it through a Pipeline or GridSearchCV with
            ``set_fit_request(sample_domain=True)`` under metadata routing.

        Returns
        -------
        self
        """
        self._validate_params()
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None: give class "
                "labels for the source rows and -1 for the unlabeled target rows."
            )
        if np.ndim(y) == 2 and np.shape(y)[1] == 1:
            from sklearn.utils.validation import column_or_1d

            y = column_or_1d(y, warn=True)
        device = resolve_device(self.device)
        seed = check_random_state_int(self.random_state)
        unfreeze = check_unfreeze(self.unfreeze)
        modality = self._backbone_modality()
        items = validate_feature_input(self, X, modality, reset=True)
        n = data.num_samples(items)
        dom = data.parse_domains(
            y, sample_domain, n_samples=n, who=name, require_target=True,
            require_source=True,
            context="Without target data, use FineTuneClassifier or FrozenFeatureClassifier.",
        )
        n_target = int(dom.is_target.sum())
        if n_target < 2:
            raise ValueError(
                f"{name} needs at least 2 target samples to adapt to; got {n_target} "
                "sample(s) of the target domain."
            )
        self.classes_, y_lab = encode_labels(np.asarray(y)[dom.labeled], name)
        y_enc = np.full(n, -1, dtype=np.int64)
        y_enc[dom.labeled] = y_lab
        self.n_source_, self.n_target_ = n - n_target, n_target
        with torch_seed(seed):
            self._fit_net(items, modality, y_enc, dom.is_target, unfreeze, device, seed)
        return self

    def _schedules(self):
        lam = self.lambda_schedule
        lam = _SCHEDULES[lam] if isinstance(lam, str) else lam
        lrs = self.lr_schedule
        if isinstance(lrs, str):
            lrs = {"dann": dann_lr_factor, "constant": ConstantSchedule()}.get(lrs, lrs)
        return lam, lrs

    def _backbone_lr(self, backbone):
        """Absolute rate of the trained backbone (``backbone_lr``, or its default)."""
        if self.backbone_lr is not None:
            return float(self.backbone_lr)
        return default_backbone_lr(self.lr, backbone)

    def _fit_net(self, items, modality, y_enc, is_target, unfreeze, device, seed):
        backbone = self._make_backbone(items.shape[1] if modality == "features" else None)
        frozen = unfreeze in ("head", 0)
        if frozen:
            from tlestimators.features import compute_embeddings

            backbone.requires_grad_(False)
            inputs = compute_embeddings(backbone, items, batch_size=max(self.batch_size, 64),
                                        device=device, cache=self.cache, verbose=self.verbose)
            self._frozen_backbone = backbone
        else:
            inputs = items
        scaler = nn.Identity()
        how = self.standardize
        if how == "auto":  # dense features and frozen embeddings: one global scale
            how = None if hasattr(inputs, "tocsr") else "global"
        if how is not None and (frozen or modality == "features"):
            scaler = input_scaler(inputs, how)
        width = self.bottleneck
        if width == "auto":
            width = 256 if frozen else None
        d = backbone.config.num_features
        bottleneck = nn.Identity()
        if width is not None:
            bottleneck, d = nn.Sequential(nn.Linear(d, int(width)), nn.ReLU()), int(width)
        n_classes = len(self.classes_)
        self.n_features_out_ = d  # the width of transform's output
        module = DAModule(None if frozen else backbone, scaler, bottleneck,
                          make_head(d, n_classes, self.head),
                          self._make_criterion(d, n_classes))
        if self.head_init == "probe" and self.head == "linear":
            self._warm_start_head(module, inputs, y_enc, device, seed)
        callbacks = [("nan_guard", NaNLossGuard())]
        if not frozen:
            callbacks += unfreeze_callbacks(module, unfreeze)[0]
        sampler = DomainBalancedSampler(is_target) if self.balanced else None
        n_rows = len(sampler) if self.balanced else len(y_enc)
        drop_last = not self.balanced and drop_last_batch(n_rows, self.batch_size)
        total = self.max_epochs * (n_rows // self.batch_size if drop_last
                                   else math.ceil(n_rows / self.batch_size))
        lam_fn, lr_fn = self._schedules()
        if lr_fn == "warmup_cosine":
            lr_fn = WarmupCosineProgress(self.warmup)
        callbacks += [
            ("lambda_schedule", DANNLambdaSchedule(total, self.lambda_max, lam_fn)),
            ("lr_schedule", progress_lr_schedule(total, lr_fn)),
            ("batch_averages", EpochBatchAverages()),
        ]
        opt = resolve_optimizer(self.optimizer)
        wd = self.weight_decay
        auto_wd = isinstance(wd, str)
        if auto_wd:  # dense inputs only (see AUTO_WEIGHT_DECAY)
            wd = 0.0 if hasattr(inputs, "tocsr") else AUTO_WEIGHT_DECAY
        opt_kw = {"optimizer__weight_decay": wd}
        if opt is torch.optim.SGD:
            opt_kw["optimizer__momentum"] = self.momentum
        if not frozen:
            group = {"lr": self._backbone_lr(backbone)}
            if auto_wd and backbone.config.weights != "random":
                group["weight_decay"] = 0.0  # pretrained weights: no pull towards zero
            opt_kw["optimizer__param_groups"] = [("backbone.*", group)]
        collate = {"iterator_train__collate_fn": Collate(train=True),
                   "iterator_valid__collate_fn": Collate(train=False)}
        net = DANet(
            module, criterion=nn.CrossEntropyLoss, optimizer=opt, lr=self.lr,
            max_epochs=self.max_epochs, batch_size=self.batch_size, train_split=None,
            device=device, verbose=self.verbose, callbacks=callbacks,
            iterator_train__shuffle=not self.balanced, iterator_train__sampler=sampler,
            iterator_train__drop_last=drop_last,
            iterator_valid__batch_size=max(self.batch_size, 64), **collate, **opt_kw,
        )
        for c in collate.values():
            c.net = net
        net.fit(TransferDataset(inputs, y_enc, is_target=is_target.astype(np.int64)), None)
        self.net_ = net
        self.domain_accuracy_ = float(net.history[-1].get("domain_acc", np.nan))

    def _warm_start_head(self, module, inputs, y_enc, device, seed):
        """Start the label head from the source-only probe: a cross-validated logistic
        regression on the initial network's features of the labeled rows, so the
        adaptation starts from a good classifier instead of a random one."""
        from tlestimators.probe import zero_unresolved_features

        rows = np.flatnonzero(y_enc >= 0)
        loader = torch.utils.data.DataLoader(
            TransferDataset(data.take(inputs, rows)), batch_size=max(self.batch_size, 64),
            collate_fn=Collate(module.backbone, train=False))
        module.eval()
        with torch.inference_mode():
            feats = np.concatenate([module.features(x).float().numpy() for x, _ in loader])
        # the network trains under this head: no weight on features it cannot resolve
        # per-feature scaling: the warm start results/da.md measured (the DA benchmarks
        # were not re-run with the probe's scaling="auto")
        probe = linear_probe(device=device, random_state=seed, cv=3, scaling="per_feature").fit(
            zero_unresolved_features(feats), y_enc[rows])
        if len(probe.classes_) == module.head[-1].out_features:
            module.head[-1].load_state_dict(probe.to_linear().state_dict())

    def _make_criterion(self, n_features, n_classes):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    @property
    def history_(self):
        """The skorch history of the fit (per epoch: ``train_loss``, ``task_loss``,
        ``adapt_loss``, ``lambda``, ``lr`` and the method's statistics)."""
        check_is_fitted(self, "net_")
        return self.net_.history

    @property
    def backbone_(self):
        """The fitted backbone (adapted, or frozen); stored once."""
        check_is_fitted(self, "net_")
        trained = self.net_.module_.backbone
        return trained if trained is not None else self._frozen_backbone

    def _net_input(self, X):
        bb = self.backbone_
        items = validate_feature_input(self, X, bb.config.modality, reset=False)
        if self.net_.module_.backbone is None:
            from tlestimators.features import compute_embeddings

            return compute_embeddings(bb, items, batch_size=max(self.batch_size, 64),
                                      device=self.net_.device, cache=self.cache)
        return TransferDataset(items)

    def _module_output(self, X, output):
        check_is_fitted(self, "net_")
        module = self.net_.module_
        module.output = output
        try:
            out = self.net_.forward(self._net_input(X), training=False, device="cpu")
        finally:
            del module.output
        return out.float().numpy()

    def transform(self, X):
        """The adapted features (input of the label head), shape (n_samples, d)."""
        return self._module_output(X, "features")

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labeled rows; rows with ``y == -1`` are left out."""
        check_is_fitted(self, "net_")
        keep = ~data.unlabeled_mask(np.asarray(y))
        if not keep.any():
            raise ValueError(
                "score needs labeled samples; every y is -1. Use an unsupervised scorer "
                "from tlestimators.metrics to score unlabeled target data."
            )
        idx = np.flatnonzero(keep)
        Xk = data.take(X, idx)
        sw = None if sample_weight is None else np.asarray(sample_weight)[idx]
        return super().score(Xk, np.asarray(y)[idx], sample_weight=sw)


class WarmupCosineProgress:
    """``p -> factor``: linear warm-up over the first ``warmup`` fraction of training,
    then cosine decay to 0 (:class:`~tlestimators.callbacks.WarmupCosine` in progress
    units; picklable)."""

    def __init__(self, warmup=0.1):
        self.warmup = warmup

    def __call__(self, p):
        return WarmupCosine(round(1000 * self.warmup), 1000)(int(round(1000 * p)))


# --------------------------------------------------------------------------- docstrings
# The parameters and attributes every deep DA estimator shares, written once and filled
# into each class docstring by ``document_da_estimator`` (DANNAdapter in dann.py, the
# others in da.py).
_COMMON_PARAMETERS = """backbone : str or Backbone, default="mlp"
        Registry name (``"mlp"``, ``"efficientnet_lite0"``, ``"minilm"``, ...) or a
        :class:`~tlestimators.Backbone` instance (deep-copied).
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone`; e.g.
        ``{"hidden_sizes": (50,), "activation": "sigmoid"}`` gives the DANN paper's
        5000-50-2 network for the ``mlp`` backbone on its 5000-d Amazon features.
    unfreeze : {"all", "head", "gradual"} or int, default="all"
        Which backbone layer groups train, with the same words and callbacks as
        :class:`~tlestimators.FineTuneClassifier`: all; ``"head"`` (frozen backbone:
        its embeddings are computed once through the feature cache and only the
        bottleneck and the heads train, which is fast); the last ``k`` groups of
        ``backbone.layer_groups()``; or ``"gradual"`` (one more group from the output
        side each epoch). The old spelling ``"none"`` means ``"head"`` and warns.
    bottleneck : "auto", int or None, default="auto"
        Width of a trainable ``Linear + ReLU`` layer between the backbone and the
        heads. ``"auto"``: 256 with a frozen backbone (something must be trainable
        for the adaptation loss to move the features), none otherwise. The
        adaptation loss acts on its output (the features the label head sees).
    head : {"linear", "mlp"} or nn.Module, default="linear"
        Label classifier on the features.%(after_head)s
    lambda_max : float, default=%(lambda_max)s
        Final weight of the adaptation loss (``0`` trains source-only with the same
        network and schedule). %(lambda_doc)s
    lambda_schedule : {"dann", "constant"} or callable, default="dann"
        ``p -> factor`` (``p`` = training progress in [0, 1]) multiplied by
        ``lambda_max``: ``"dann"`` is the DANN paper's ``2 / (1 + exp(-10 p)) - 1``.
    lr : float, default=1e-3
        Learning rate of the heads and bottleneck.
    lr_schedule : {"dann", "warmup_cosine", "constant"} or callable, default="dann"
        ``p -> lr factor``, applied every batch: ``"dann"`` is the DANN paper's
        ``1 / (1 + 10 p) ** 0.75``; ``"warmup_cosine"`` a linear warm-up over the
        first ``warmup`` fraction then a cosine decay to 0.
    warmup : float in [0, 1), default=0.1
        Warm-up fraction of ``lr_schedule="warmup_cosine"``.
    backbone_lr : float, default=None
        Absolute learning rate of the trained backbone parameters. ``None``:
        ``lr / 10`` for pretrained weights (the DANN paper's fine-tuning setting),
        ``lr`` for randomly initialised ones (the rule of every estimator that trains
        a backbone).
    optimizer : {"sgd", "adamw", "adam"} or torch.optim class, default="adam"
        The recipe shared by every deep DA estimator: Adam at ``lr=1e-3`` with the
        DANN paper's lr decay and lambda ramp, dense inputs standardised. In 0.1
        the defaults were the paper's SGD recipe, ``optimizer="sgd", lr=0.01,
        momentum=0.9, standardize=None, lambda_max=1`` (pass these to get it back);
        it underfits dense embeddings of small per-column scale
        (``benchmarks/results/da.md``).
    momentum : float in [0, 1], default=0.9
        SGD only.
    weight_decay : float or "auto", default="auto"
        L2 penalty (the optimizer's ``weight_decay``). ``"auto"``: with dense inputs,
        0.01 on the parameters trained from scratch (heads, bottleneck, a randomly
        initialised backbone such as ``"mlp"``) and none on pretrained backbone
        weights, which under Adam it would pull towards zero; with sparse inputs
        (bag-of-words) none, because under Adam it erases the weights of rare words
        (which get few gradient updates). A float applies to every trained
        parameter (``0.0`` was the previous default). Without the penalty the source
        classifier fits its rows to a loss of ~0.005 and transfers worse (see
        ``benchmarks/results/da.md``).
    max_epochs : int, default=20
        Passes over the larger of the two domains.
    batch_size : int, default=64
        Samples per step; with ``balanced=True`` half come from each domain.
    balanced : bool, default=True
        Domain-balanced batches (a sampler alternating source and target rows, the
        smaller domain cycled). With ``False`` batches are drawn from the pooled data.
    standardize : {"auto", "global", "per_feature"} or None, default="auto"
        A fixed affine map, fitted on all rows (source and target) and stored in the
        network, in front of the first trained layer (2-D features, or a frozen
        backbone's embeddings). ``"auto"``: ``"global"`` for dense inputs, ``None``
        for sparse ones (bag-of-words counts, whose scale the network's first layer
        already suits; scaling them up fitted the source faster and transferred
        worse on Amazon). ``"global"`` removes the column means and divides by
        one scale (the root mean column variance), which fixes the input scale of
        any feature type while keeping its geometry; ``"per_feature"`` z-scores each
        column (which also amplifies near-constant, often domain-specific columns);
        ``None`` leaves the input as is. Sparse inputs are scaled, not centred.
    head_init : {"probe", "random"}, default="random"
        ``"probe"``: before training, fit a source-only logistic-regression probe
        (:class:`~tlestimators.probe.LinearProbeCV`, its regularisation chosen by
        cross-validation) on the initial network's features of the labeled rows and
        start the linear head from it, so adaptation starts from a good classifier.
        ``"random"``: the head starts at random.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    random_state : int, RandomState or None, default=None
        Seeds the backbone build, the heads' initialisation and the batch order.
    verbose : int, default=0
        ``>0`` prints skorch's epoch table.
    cache : bool or path-like, default=True
        Feature cache for a frozen backbone (see
        :func:`tlestimators.features.compute_embeddings`)."""

_COMMON_ATTRIBUTES = """classes_ : ndarray
        Class labels seen in the labeled rows.
    n_features_in_ : int
        Only for the ``features`` modality.
    feature_names_in_ : ndarray of str
        Input column names, when given (``features`` modality only).
    n_features_out_ : int
        Width of :meth:`transform`'s output (the label head's input).
    backbone_ : Backbone
        The (adapted or frozen) backbone, stored once (inside ``net_`` when trained).
    net_ : skorch.NeuralNetClassifier
        The trained net; ``net_.module_`` is a ``DAModule``
        (``tlestimators.estimators._da``) whose ``criterion`` holds the method's
        adaptation loss (and the domain classifier of the adversarial methods).
    history_ : skorch.History
        Per epoch: ``train_loss`` (task + adaptation), ``task_loss``, ``adapt_loss``,
        ``lambda``, ``lr`` and the method's statistics (``domain_loss`` and
        ``domain_acc`` for the adversarial methods).
    domain_accuracy_ : float
        Accuracy of the domain classifier over the last epoch's training batches
        (near 0.5: the features no longer reveal the domain; near 1.0: adaptation
        failed). Only the adversarial methods (DANNAdapter, CDANAdapter) have a domain
        classifier; for Deep CORAL, MMD and InfoMax it is ``nan``. To check their
        alignment without one, cross-validate a classifier of the domain on
        ``transform(X)`` (near 0.5 accuracy: aligned) or follow
        ``history_[:, "adapt_loss"]`` over epochs.
    n_source_, n_target_ : int
        Source and target rows seen in ``fit``."""


def document_da_estimator(lambda_doc, after_head=""):
    """Class decorator filling ``%(common_parameters)s`` and ``%(common_attributes)s``
    in the docstring with the text above. ``lambda_doc`` says why the method's
    ``lambda_max`` default is what it is; ``after_head`` holds parameter entries
    (starting with a newline) that the method's signature has right after ``head``.
    The method's other own parameters follow ``%(common_parameters)s`` in its
    docstring."""

    def wrap(cls):
        import inspect

        lam = inspect.signature(cls.__init__).parameters["lambda_max"].default
        params = (_COMMON_PARAMETERS.replace("%(lambda_max)s", f"{lam:g}")
                  .replace("%(lambda_doc)s", lambda_doc)
                  .replace("%(after_head)s", after_head))
        cls.__doc__ = (cls.__doc__.replace("%(common_parameters)s", params)
                       .replace("%(common_attributes)s", _COMMON_ATTRIBUTES))
        return cls
    return wrap
