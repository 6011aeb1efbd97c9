"""The shared skorch core of every estimator.

Estimators are ``ClassifierMixin, BaseEstimator`` classes that own a skorch net as
fitted state (``net_``); they customise skorch through callbacks, ``get_loss`` and
``train_step_single`` rather than re-writing its fit loop. What they share:

Parameters and validation
    :data:`PARAM_CONSTRAINTS` holds the constraint fragments of the common vocabulary
    (``backbone``, ``backbone_kwargs``, ``device``, ``random_state``, ``cache``,
    ``unfreeze``, ``lr``, ``backbone_lr``, ``optimizer``, ``weight_decay``,
    ``max_epochs``, ``batch_size``, ``class_weight``, ``early_stopping``,
    ``validation_fraction``, ``patience``, ``verbose``). An estimator declares::

        _parameter_constraints = {
            **common_constraints("backbone", "backbone_kwargs", "lr", ...),
            "momentum": [Interval(Real, 0, 1, closed="left")],
        }

    and validates them first thing in ``fit``/``partial_fit``: by calling
    ``self._validate_params()`` (sklearn's ``BaseEstimator``) or through sklearn's
    ``@_fit_context`` decorator, which calls it. A renamed parameter keeps its old
    keyword for one release with default ``"deprecated"`` (constraint:
    :func:`deprecated_constraint`) and is
    read with :func:`~tlestimators._validation.renamed_param` (``FutureWarning``
    naming the new one). Old spellings of a value go through
    :func:`~tlestimators._validation.deprecated_value`. ``unfreeze`` is validated and
    resolved by :func:`tlestimators.callbacks.check_unfreeze` and applied by
    :func:`tlestimators.callbacks.unfreeze_callbacks` (skorch ``Freezer`` /
    ``GradualUnfreezing``) or :func:`tlestimators.callbacks.apply_unfreeze`.
    :func:`resolve_optimizer` turns ``optimizer`` ({"adamw", "adam", "sgd"} or a
    ``torch.optim`` class) into the class.

Backbone
    :class:`BackboneParamsMixin` builds the backbone from ``backbone`` /
    ``backbone_kwargs`` (seeded by an int ``random_state``, so random-init backbones
    are identical across processes), gives the input tags from its modality and lets
    ``set_params(backbone_kwargs__x=...)`` set one key.

Data
    ONE dataset, :class:`TransferDataset`: validated raw items, cached embeddings or
    2-D (dense or CSR) features, optional int targets
    and optional per-row extra arrays (``is_target=...`` for DA, ``task=...`` /
    ``replay=...`` for continual learning). It gathers a whole batch at once
    (``__getitems__``: one slice per batch). ONE collate, :class:`Collate`: runs
    ``backbone.preprocess(items, train)`` on the batch (the backbone given directly, or
    ``net.module_.backbone`` of a skorch net so a pickled net stores it once; no
    backbone: a float32 tensor of the rows) and returns ``(batch, y)`` where ``y`` is
    a LongTensor, or a dict ``{"y": ..., <extra>: ...}`` when extras were given.

Module and net
    :func:`make_head`, :class:`TransferModule` (backbone + head, frozen norm layers kept
    in eval), :class:`TransferNet` (``NeuralNetClassifier`` with CUDA autocast and
    merged param groups).

Labels and input
    :func:`encode_labels` (sklearn target checks -> ``classes_``, codes),
    :func:`warn_unlabeled` (``-1`` in ``y`` of a non-DA estimator), :func:`class_weight_tensor`,
    :func:`check_labels_seen`, :func:`validate_feature_input` (modality check plus
    ``n_features_in_`` / ``feature_names_in_``), :func:`validate_fit_data`,
    :func:`early_stopping_split`.

Prediction
    :class:`~tlestimators.estimators._netclassifier.LogitsClassifierMixin` /
    ``NetClassifierMixin`` (in ``_netclassifier.py``): ``predict``, ``predict_proba``,
    ``predict_log_proba``, ``decision_function`` from ``_logits(X)``; an estimator with
    extra predict arguments (Rehearsal's ``task_id``) overrides the public method and
    calls ``self._labels_from_logits(z)`` / ``_proba_from_logits`` /
    ``_log_proba_from_logits`` / ``_decision_from_logits`` on its own logits.

Generic checks (devices, seeds, ints) live in :mod:`tlestimators._validation` and
callbacks (``NaNLossGuard``, ``WarmupCosine``, freezing) in :mod:`tlestimators.callbacks`;
they are re-exported here for compatibility.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from skorch import NeuralNetClassifier
from torch import nn

from tlestimators import data
from tlestimators._validation import (
    DEPRECATED,
    check_positive_int,
    check_random_state_int,
    resolve_device,
    torch_seed,
)
from tlestimators.backbones.base import Backbone
from tlestimators.callbacks import (
    UNFREEZE_ALIASES,
    UNFREEZE_OPTIONS,
    NameSet,
    NaNLossGuard,
    WarmupCosine,
    layer_group_names,
    set_frozen_norm_eval,
)

__all__ = [
    # parameters
    "PARAM_CONSTRAINTS",
    "common_constraints",
    "deprecated_constraint",
    "unfreeze_constraint",
    "resolve_optimizer",
    "OPTIMIZERS",
    # backbone
    "BackboneParamsMixin",
    # data
    "TransferDataset",
    "Batch",
    "Collate",
    # module / net
    "make_head",
    "TransferModule",
    "TransferNet",
    # labels / input
    "encode_labels",
    "warn_unlabeled",
    "class_weight_tensor",
    "check_labels_seen",
    "make_valid_split",
    "validate_feature_input",
    "validate_fit_data",
    "early_stopping_split",
    # re-exported from _validation / callbacks (compatibility)
    "resolve_device",
    "check_positive_int",
    "check_random_state_int",
    "torch_seed",
    "NaNLossGuard",
    "WarmupCosine",
    "NameSet",
    "layer_group_names",
    "set_frozen_norm_eval",
]


# --------------------------------------------------------------------------- parameters
OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}


def unfreeze_constraint(options=UNFREEZE_OPTIONS, aliases=tuple(UNFREEZE_ALIASES)):
    """Constraint of ``unfreeze``: the words in ``options``, an int k >= 0, and the old
    spellings ``aliases`` (hidden from messages; they warn at fit)."""
    out = [StrOptions(set(options)), Interval(Integral, 0, None, closed="left")]
    if aliases:
        out.append(Hidden(StrOptions(set(aliases))))
    return out


def deprecated_constraint(constraints):
    """``constraints`` plus the hidden ``"deprecated"`` default of a renamed keyword."""
    return [*constraints, Hidden(StrOptions({DEPRECATED}))]


#: Constraint fragments of the shared vocabulary (sklearn ``_param_validation``).
PARAM_CONSTRAINTS = {
    "backbone": [str, Backbone],
    "backbone_kwargs": [dict, None],
    "head": [StrOptions({"linear", "mlp"}), nn.Module],
    "head_dropout": [Interval(Real, 0, 1, closed="left")],
    "device": [str, torch.device, None],
    "random_state": ["random_state"],
    "cache": ["boolean", str, os.PathLike],
    "unfreeze": unfreeze_constraint(),
    "unfreeze_every": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "backbone_lr": [Interval(Real, 0, None, closed="left"), None],
    "optimizer": [StrOptions(set(OPTIMIZERS)), type],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "class_weight": [dict, StrOptions({"balanced"}), None],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "patience": [Interval(Integral, 1, None, closed="left")],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "verbose": ["verbose"],
}


def common_constraints(*names):
    """The :data:`PARAM_CONSTRAINTS` entries for ``names`` (a fresh dict of lists)."""
    unknown = [n for n in names if n not in PARAM_CONSTRAINTS]
    if unknown:
        raise KeyError(f"no shared constraint for {unknown}; known: {sorted(PARAM_CONSTRAINTS)}")
    return {n: list(PARAM_CONSTRAINTS[n]) for n in names}


def resolve_optimizer(optimizer):
    """``"adamw"``/``"adam"``/``"sgd"`` -> the ``torch.optim`` class; a class is returned
    as is."""
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZERS)} or a torch.optim class, "
                f"got {optimizer!r}."
            )
        return getattr(torch.optim, OPTIMIZERS[optimizer])
    return optimizer


# --------------------------------------------------------------------------- backbone
class BackboneParamsMixin:
    """Builds the backbone from the ``backbone`` / ``backbone_kwargs`` parameters.

    ``backbone`` is a registry name (``"efficientnet_lite0"``, ``"timm/resnet18"``,
    ``"mlp"``) or a :class:`Backbone` instance (deep-copied, never mutated).
    ``backbone_kwargs`` goes to :func:`~tlestimators.create_backbone`; its keys can
    be set one by one with ``set_params(backbone_kwargs__img_size=96)``, so grid
    searches can vary them. An int ``random_state`` seeds the build (random-init
    weights are then the same in every process).

    Subclasses may set ``_default_backbone_kwargs`` (``{name: {key: value}}``):
    defaults for a backbone name that the user's ``backbone_kwargs`` override (the
    frozen estimators use it to make ``"mlp"`` the identity).
    """

    _default_backbone_kwargs: dict = {}

    def _backbone_modality(self) -> str:
        from tlestimators.backbones.registry import backbone_modality

        if isinstance(self.backbone, Backbone):
            return self.backbone.config.modality
        if not isinstance(self.backbone, str):
            raise TypeError(
                "backbone must be a registry name (str) or a tlestimators Backbone, got "
                f"{type(self.backbone).__name__}."
            )
        mod = backbone_modality(self.backbone)
        if mod is None:  # factory did not declare it: build once to find out
            mod = self._make_backbone(n_features=None).config.modality
        return mod

    def __sklearn_tags__(self):
        # Input tags follow the backbone's modality: 2-D (dense or sparse) arrays for
        # 'features' backbones, images or strings otherwise.
        tags = super().__sklearn_tags__()
        try:
            modality = self._backbone_modality()
        except Exception:  # tags must not fail on bad params; fit reports them
            modality = None
        if modality != "features":
            tags.input_tags.two_d_array = False
            tags.input_tags.string = modality == "text"
        else:
            tags.input_tags.sparse = True
        return tags

    def _check_backbone_kwargs(self) -> dict:
        kw = self.backbone_kwargs
        if kw is not None and not isinstance(kw, dict):
            raise TypeError(f"backbone_kwargs must be a dict or None, got {type(kw).__name__}.")
        out = {}
        if isinstance(self.backbone, str):
            out.update(self._default_backbone_kwargs.get(self.backbone.lower(), {}))
        out.update(kw or {})
        return out

    def _backbone_seed(self):
        """Seed of the backbone build: an int ``random_state``, else None (a
        ``RandomState`` instance is not drawn from here; the build is then unseeded)."""
        rs = getattr(self, "random_state", None)
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            return int(rs)
        return None

    def _make_backbone(self, n_features=None) -> Backbone:
        """A fresh backbone; ``n_features`` feeds ``in_features`` of 'features' backbones."""
        from tlestimators.backbones.registry import backbone_modality, create_backbone

        kw = self._check_backbone_kwargs()
        if isinstance(self.backbone, Backbone):
            if self.backbone_kwargs:
                raise ValueError(
                    "backbone_kwargs applies to backbones given by name; got a Backbone "
                    "instance together with backbone_kwargs="
                    f"{self.backbone_kwargs!r}. Configure the instance directly."
                )
            bb = copy.deepcopy(self.backbone)
            if bb.config.modality == "features" and n_features is not None:
                if bb.config.in_features not in (None, n_features):
                    raise ValueError(
                        f"X has {n_features} features, but the backbone expects "
                        f"{bb.config.in_features}."
                    )
            return bb
        if backbone_modality(self.backbone) == "features" and "in_features" not in kw:
            if n_features is None:
                raise ValueError(f"backbone {self.backbone!r} needs in_features.")
            kw["in_features"] = n_features
        with torch_seed(self._backbone_seed()):
            return create_backbone(self.backbone, **kw)

    def set_params(self, **params):
        nested = {k: v for k, v in params.items() if k.startswith("backbone_kwargs__")}
        for k in nested:
            params.pop(k)
        if nested:
            kw = dict(params.pop("backbone_kwargs", None) or self.backbone_kwargs or {})
            kw.update({k[len("backbone_kwargs__"):]: v for k, v in nested.items()})
            params["backbone_kwargs"] = kw
        return super().set_params(**params)


# --------------------------------------------------------------------------- data
class Batch(tuple):
    """``(items, y, extras)`` of one batch, as :meth:`TransferDataset.__getitems__`
    gathers it: rows of the items (CSR rows densified), ``y`` int64 or None, extras a
    dict of arrays (maybe empty)."""

    __slots__ = ()

    def __new__(cls, items, y, extras):
        return super().__new__(cls, (items, y, extras))


class TransferDataset(torch.utils.data.Dataset):
    """Rows for a skorch ``DataLoader``: items, optional targets, optional extra arrays.

    Parameters
    ----------
    items : validated input
        What :func:`tlestimators.data.check_input` returned (array of images, list of
        PIL images/paths/texts, 2-D dense or CSR features) or cached embeddings.
    y : array-like of int, default=None
        Encoded targets (``-1`` allowed, e.g. unlabeled rows). ``None`` at predict.
    **extras : array-like of length n_samples
        Per-row arrays carried to the loss as ``y[name]`` (e.g. ``is_target`` for
        DANN, ``task``/``replay`` for rehearsal).

    Notes
    -----
    ``__getitems__`` gathers a whole batch at once (one CSR/array slice instead of one
    per row), which torch's DataLoader uses; :class:`Collate` then preprocesses it.
    """

    def __init__(self, items, y=None, **extras):
        self.items = items
        n = data.num_samples(items)
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.extras = {k: np.asarray(v) for k, v in extras.items()}
        for name, arr in [("y", self.y), *self.extras.items()]:
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} rows but the items have {n}.")

    def __len__(self):
        return data.num_samples(self.items)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        items = data.take(self.items, idx)
        if hasattr(items, "toarray"):  # CSR rows: preprocess expects dense rows
            items = np.asarray(items.toarray())
        y = None if self.y is None else self.y[idx]
        return Batch(items, y, {k: v[idx] for k, v in self.extras.items()})

    def __getitem__(self, i):
        return self.__getitems__([i])


def _stack_samples(samples):
    """A list of per-row samples (``Batch`` of one row, or ``(item, y)`` pairs, as a
    DataLoader without ``__getitems__`` gives them) -> one :class:`Batch`."""
    if isinstance(samples[0], Batch):
        items = [s[0] for s in samples]
        if isinstance(items[0], np.ndarray):
            items = np.concatenate(items)
        else:
            items = [it for chunk in items for it in chunk]
        ys = [s[1] for s in samples]
        y = None if ys[0] is None else np.concatenate(ys)
        extras = {k: np.concatenate([s[2][k] for s in samples]) for k in samples[0][2]}
        return Batch(items, y, extras)
    items = [s[0] for s in samples]
    if isinstance(items[0], np.ndarray):
        items = np.stack(items)
    return Batch(items, np.asarray([s[1] for s in samples], dtype=np.int64), {})


class Collate:
    """``collate_fn`` preprocessing a whole batch: ``(batch, y)``.

    Parameters
    ----------
    backbone : Backbone or object with ``preprocess``, default=None
        Preprocesses the items (``backbone.preprocess(items, train=train)``).
    train : bool, default=False
        Train-time preprocessing (augmentation).
    net : skorch net, default=None
        Take the backbone from ``net.module_.backbone`` at call time instead: a pickled
        net then stores the backbone once (skorch saves ``module_`` separately). Set it
        after building the net (``collate.net = net``).

    Notes
    -----
    With neither (or a ``None`` backbone) the rows are returned as a float32 tensor
    (cached embeddings, 2-D features). ``y`` is a LongTensor (zeros when the dataset
    has no targets), or ``{"y": LongTensor, <extra>: tensor}`` when it has extras.
    """

    def __init__(self, backbone=None, train=False, net=None):
        self.backbone = backbone
        self.train = train
        self.net = net

    def _preprocessor(self):
        if self.net is not None:
            return getattr(self.net.module_, "backbone", None)
        return self.backbone

    def __call__(self, batch):
        if not isinstance(batch, Batch):
            batch = _stack_samples(batch)
        items, y, extras = batch
        pre = self._preprocessor()
        if pre is None:
            x = torch.as_tensor(np.asarray(items), dtype=torch.float32)
        else:
            x = pre.preprocess(items, train=self.train)
        n = data.num_samples(items)
        yt = torch.zeros(n, dtype=torch.long) if y is None else torch.as_tensor(y)
        if extras:
            return x, {"y": yt, **{k: torch.as_tensor(v) for k, v in extras.items()}}
        return x, yt


# --------------------------------------------------------------------------- module
def make_head(in_features: int, n_outputs: int, head="linear", dropout=0.0) -> nn.Module:
    """``"linear"`` or ``"mlp"`` (one hidden layer of ``max(64, in_features // 2)``), or an
    ``nn.Module`` given by the user (deep-copied)."""
    if isinstance(head, nn.Module):
        return copy.deepcopy(head)
    if head == "linear":
        layers = [nn.Dropout(dropout)] if dropout else []
        return nn.Sequential(*layers, nn.Linear(in_features, n_outputs))
    if head == "mlp":
        hidden = max(64, in_features // 2)
        return nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )
    raise ValueError(f"head must be 'linear', 'mlp' or an nn.Module, got {head!r}.")


class TransferModule(nn.Module):
    """``backbone`` followed by ``head``; ``forward`` returns logits.

    ``backbone=None`` means the inputs are already embeddings. In training mode,
    normalisation layers whose parameters are all frozen stay in eval mode; with
    ``freeze_norm_stats=True`` every BatchNorm of the backbone does (it normalises with
    its pretrained running statistics, while its affine parameters still train).
    """

    #: class default, so modules saved before the attribute existed load unchanged
    freeze_norm_stats = False

    def __init__(self, backbone: Backbone | None, head: nn.Module, *,
                 freeze_norm_stats: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_norm_stats = bool(freeze_norm_stats)

    def embed(self, batch):
        return batch if self.backbone is None else self.backbone(batch)

    def forward(self, batch):
        return self.head(self.embed(batch))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone is not None:
            set_frozen_norm_eval(self.backbone, all_norms=self.freeze_norm_stats)
        return self


def _autocast_context(device):
    # The package's one mixed-precision policy (bf16 on GPUs with native support, else
    # float32), shared with frozen inference in features.py. device=None: Accelerate
    # places the module and owns mixed precision.
    if device is None:
        return contextlib.nullcontext()
    from tlestimators.features import autocast_context

    return autocast_context(device)


#: placeholder pickled instead of a net's ``module`` parameter when it is ``module_``
SAME_AS_MODULE = "<the trained module_>"


class TransferNet(NeuralNetClassifier):
    """``NeuralNetClassifier`` with mixed precision on CUDA and merged param groups.

    - Forward passes run under ``torch.autocast`` on CUDA GPUs that support bfloat16
      (which needs no gradient scaling; others train in float32); the loss is computed
      in float32.
    - ``optimizer__param_groups`` may list one pattern per parameter (exact names from
      :func:`layer_group_names`); groups with identical options are merged afterwards
      so the optimizer keeps its fused multi-tensor paths.
    """

    # skorch pickles module_/optimizer_ in a separate blob, so the init parameter
    # ``module`` (usually the very same instance) would be pickled a second time:
    # store the trained module once.
    # An LR-scheduler callback's ``lr_scheduler_`` holds the optimizer, which would be
    # pickled a second time (with its state) outside skorch's module/optimizer blob and
    # come back as a stale copy; skorch rebuilds it at every ``on_train_begin``.
    def __getstate__(self):
        state = super().__getstate__()
        if state.get("module") is not None and state.get("module") is self.__dict__.get("module_"):
            state["module"] = SAME_AS_MODULE
        copies: dict = {}

        def without_scheduler(cb):
            if getattr(cb, "lr_scheduler_", None) is None:
                return cb
            if id(cb) not in copies:
                copies[id(cb)] = copy.copy(cb)
                copies[id(cb)].lr_scheduler_ = None
            return copies[id(cb)]

        for key in ("callbacks", "callbacks_"):
            cbs = state.get(key)
            if isinstance(cbs, list):
                state[key] = [
                    (item[0], without_scheduler(item[1]))
                    if isinstance(item, tuple) and len(item) == 2 else without_scheduler(item)
                    for item in cbs
                ]
        return state

    def __setstate__(self, state):
        same = isinstance(state.get("module"), str) and state["module"] == SAME_AS_MODULE
        super().__setstate__(state)
        if same:
            self.module = self.module_

    def get_params_for_optimizer(self, prefix, named_parameters):
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        merged: dict = {}
        for group in args[0]:
            opts = {k: v for k, v in group.items() if k != "params"}
            key = tuple(sorted(opts.items()))
            if key in merged:
                merged[key]["params"].extend(group["params"])
            else:
                merged[key] = {"params": list(group["params"]), **opts}
        return (list(merged.values()),), kwargs

    def infer(self, x, **fit_params):
        with _autocast_context(self.device):
            if isinstance(x, dict):
                # a tokenised text batch is ONE input of the backbone; skorch would
                # spread a dict over the module's keyword arguments
                from skorch.utils import to_tensor

                return self.module_(to_tensor(x, device=self.device), **fit_params)
            return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        if y_pred.dtype != torch.float32:
            y_pred = y_pred.float()
        return super().get_loss(y_pred, y_true, *args, **kwargs)


# --------------------------------------------------------------------------- labels
def encode_labels(y, estimator_name="estimator", *, min_classes=2):
    """Validate classification targets; returns ``(classes, y_encoded int64)``.

    ``min_classes=1`` accepts a single class (one experience of a continual stream).
    """
    from sklearn.exceptions import DataConversionWarning
    from sklearn.utils.multiclass import check_classification_targets

    if y is None:
        raise ValueError(
            f"{estimator_name} requires y to be passed, but the target y is None."
        )
    y_arr = np.asarray(y)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change "
            "the shape of y to (n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=3,
        )
        y_arr = y_arr.ravel()
    if y_arr.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got an array of shape {y_arr.shape}.")
    check_classification_targets(y_arr)
    classes, y_enc = np.unique(y_arr, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"y contains only one class ({classes.tolist()[0]!r}); {estimator_name} needs "
            "at least 2 classes to fit a classifier."
        )
    return classes, y_enc.astype(np.int64)


def warn_unlabeled(y, estimator_name="estimator"):
    """Warn when ``y`` holds ``-1`` (the domain-adaptation mark of an unlabeled target
    row) in an estimator that would learn it as a class."""
    try:
        from tlestimators.data import unlabeled_mask

        n = int(np.count_nonzero(unlabeled_mask(np.asarray(y).ravel())))
    except Exception:  # odd label types: encode_labels reports them
        return
    if n:
        warnings.warn(
            f"y holds -1 in {n} rows; {estimator_name} learns -1 as a class like any "
            "other label. If -1 marks unlabeled target-domain rows (the domain-adaptation "
            "convention), use DANNAdapter (or another DA estimator) instead.",
            UserWarning,
            stacklevel=3,
        )


def class_weight_tensor(class_weight, classes, y_enc):
    """``criterion__weight`` for ``class_weight`` (None -> None)."""
    if class_weight is None:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    if isinstance(class_weight, dict):
        unknown = [k for k in class_weight if k not in set(classes.tolist())]
        if unknown:
            raise ValueError(
                f"class_weight has labels {unknown} that are not in y; the classes are "
                f"{classes.tolist()}."
            )
    elif class_weight != "balanced":
        raise ValueError(
            f"class_weight must be None, 'balanced' or a dict label -> weight, got "
            f"{class_weight!r}."
        )
    w = compute_class_weight(class_weight, classes=classes, y=classes[y_enc])
    return torch.as_tensor(w, dtype=torch.float32)


class NumberedFeaturesOutMixin(ClassNamePrefixFeaturesOutMixin):
    """``get_feature_names_out`` (hence ``set_output``) for a transformer whose outputs
    are no input columns: ``<classname>0 ... <classname>{D-1}`` for ``D =
    n_features_out_``, scikit-learn's own naming (``ClassNamePrefixFeaturesOutMixin``,
    which also checks ``input_features`` against the fitted column names)."""

    @property
    def _n_features_out(self):
        return self.n_features_out_


def drop_last_batch(n_rows, batch_size):
    """Whether training drops an epoch's last batch: only when it would hold a single
    row (BatchNorm cannot normalise one sample in train mode), and never when that
    would leave no batch at all."""
    return n_rows > batch_size and n_rows % batch_size == 1


def strategy_of(estimator) -> str:
    """How ``estimator`` transfers, in one line: the words of TransferSearchCV's report
    and of the model card :func:`tlestimators.save` writes. Each estimator says it with
    a ``_strategy()`` method; anything else is named by its class."""
    describe = getattr(estimator, "_strategy", None)
    return describe() if callable(describe) else type(estimator).__name__


def default_backbone_lr(lr, backbone, lora=False):
    """What ``backbone_lr=None`` means in every estimator that trains a backbone:
    ``lr`` for weights that start from scratch (a randomly initialised backbone, LoRA
    adapters, which start at zero), ``lr / 10`` for pretrained weights (the usual
    fine-tuning discount: they should move less than a new head)."""
    if lora or backbone.config.weights == "random":
        return lr
    return lr / 10


def linear_probe(*, device, random_state, class_weight=None, classes=None, y_enc=None,
                 **kwargs):
    """The :class:`~tlestimators.probe.LinearProbeCV` an estimator's linear head comes
    from (the frozen head, LP-FT's head, a DA head's warm start, the few-shot head):
    on the estimator's ``device``, its folds shuffled by the estimator's seed, and a
    ``class_weight`` given by original label (checked against ``classes``) mapped to
    the encoded labels ``y_enc`` the probe is fitted on."""
    from tlestimators.probe import LinearProbeCV

    if class_weight is not None:
        class_weight_tensor(class_weight, classes, y_enc)  # unknown labels raise
    if isinstance(class_weight, dict):
        index = {c: i for i, c in enumerate(classes.tolist())}
        class_weight = {index[k]: v for k, v in class_weight.items()}
    return LinearProbeCV(class_weight=class_weight, device=device, random_state=random_state,
                         **kwargs)


def check_labels_seen(classes, y, name="y"):
    """Raise if ``y`` holds labels that were not seen at fit."""
    y = np.asarray(y)
    unseen = np.setdiff1d(np.unique(y), classes)
    if unseen.size:
        raise ValueError(
            f"{name} contains labels not seen at fit: {unseen.tolist()[:10]}; the fitted "
            f"classes are {classes.tolist()}."
        )


# --------------------------------------------------------------------------- input
def make_valid_split(validation_fraction, n_samples, n_classes, random_state=None):
    """skorch ``ValidSplit`` holding out ``validation_fraction`` (stratified)."""
    from skorch.dataset import ValidSplit

    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, numbers.Real
    ) or not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be a float in (0, 1), got {validation_fraction!r}."
        )
    n_valid = math.ceil(validation_fraction * n_samples)
    if n_valid < n_classes or n_samples - n_valid < n_classes:
        raise ValueError(
            f"validation_fraction={validation_fraction} of {n_samples} samples gives "
            f"{n_valid} validation and {n_samples - n_valid} training samples, but both "
            f"need at least one sample per class ({n_classes} classes). Pass more samples, "
            "change validation_fraction, or set early_stopping=False."
        )
    return ValidSplit(validation_fraction, stratified=True, random_state=random_state)


def _is_numeric_1d(X):
    try:
        arr = np.asarray(X)
    except Exception:  # ragged or exotic input: data.check_input reports it
        return False
    return arr.ndim == 1 and arr.dtype.kind in "biufc"


def validate_feature_input(estimator, X, modality, reset, name="X"):
    """``data.check_input`` plus sklearn's feature-count/name checks for 2-D features."""
    from sklearn.utils.validation import _check_feature_names, _check_n_features

    if modality == "features" and not hasattr(X, "tocsr") and _is_numeric_1d(X):
        raise ValueError(
            f"Expected a 2-D array for {name}, got a 1-D array instead: {name}.shape="
            f"{np.asarray(X).shape}. Reshape your data either using array.reshape(-1, 1) if your "
            "data has a single feature or array.reshape(1, -1) if it contains a single sample."
        )
    items = data.check_input(X, modality, name=name)
    if modality == "features":
        _check_feature_names(estimator, X, reset=reset)
        _check_n_features(estimator, items, reset=reset)
    return items


def validate_fit_data(estimator, X, y):
    """The common start of a supervised ``fit``: validated items (recording
    ``n_features_in_`` for 'features' backbones), encoded labels and the torch seed.

    Returns ``(modality, items, classes, y_encoded, seed)``.
    """
    from sklearn.utils.validation import check_consistent_length

    modality = estimator._backbone_modality()
    items = validate_feature_input(estimator, X, modality, reset=True)
    warn_unlabeled(y, type(estimator).__name__)
    classes, y_enc = encode_labels(y, type(estimator).__name__)
    check_consistent_length(items, y_enc)
    return modality, items, classes, y_enc, check_random_state_int(estimator.random_state)


def early_stopping_split(estimator, n_samples, n_classes, seed):
    """``(train_split, EarlyStopping callback)`` from the estimator's ``early_stopping``,
    ``validation_fraction`` and ``patience``; ``(None, None)`` when it is off."""
    if not estimator.early_stopping:
        return None, None
    from skorch.callbacks import EarlyStopping

    split = make_valid_split(estimator.validation_fraction, n_samples, n_classes, seed)
    return split, EarlyStopping(monitor="valid_loss", patience=estimator.patience, load_best=True)
