"""Machinery shared by every estimator: building the backbone from parameters,
turning raw items into batches inside a skorch ``DataLoader``, the backbone+head
module, freezing, label encoding, device resolution and divergence checks.

Estimators are ``ClassifierMixin, BaseEstimator`` classes that own a skorch net as
fitted state (``net_``); they customise skorch through callbacks, ``get_loss`` and
``train_step_single`` rather than re-writing its fit loop.
"""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from tlestimators import data
from tlestimators.backbones.base import Backbone
from tlestimators.exceptions import TrainingDivergedError

__all__ = [
    "resolve_device",
    "BackboneParamsMixin",
    "ItemDataset",
    "Collate",
    "passthrough_collate",
    "TransferModule",
    "make_head",
    "set_frozen_norm_eval",
    "layer_group_names",
    "NaNLossGuard",
    "WarmupCosine",
    "check_random_state_int",
    "check_positive_int",
    # additive helpers (see the section at the end of this module)
    "torch_seed",
    "encode_labels",
    "class_weight_tensor",
    "check_labels_seen",
    "make_valid_split",
    "validate_feature_input",
    "validate_fit_data",
    "early_stopping_split",
    "NameSet",
    "TransferNet",
]


def resolve_device(device) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; validates the rest."""
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}.")
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
    return device


def check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_random_state_int(random_state) -> int | None:
    """Seeds for torch must be ints; accept None, ints and ``np.random.RandomState``."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a RandomState, got {random_state!r}.")


class BackboneParamsMixin:
    """Builds the backbone from the ``backbone`` / ``backbone_kwargs`` parameters.

    ``backbone`` is a registry name (``"efficientnet_lite0"``, ``"timm/resnet18"``,
    ``"mlp"``) or a :class:`Backbone` instance (deep-copied, never mutated).
    ``backbone_kwargs`` goes to :func:`~tlestimators.create_backbone`; its keys can
    be set one by one with ``set_params(backbone_kwargs__img_size=96)``, so grid
    searches can vary them.
    """

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
        if kw is None:
            return {}
        if not isinstance(kw, dict):
            raise TypeError(f"backbone_kwargs must be a dict or None, got {type(kw).__name__}.")
        return dict(kw)

    def _make_backbone(self, n_features=None) -> Backbone:
        """A fresh backbone; ``n_features`` feeds ``in_features`` of 'features' backbones."""
        from tlestimators.backbones.registry import create_backbone

        kw = self._check_backbone_kwargs()
        if isinstance(self.backbone, Backbone):
            if kw:
                raise ValueError(
                    "backbone_kwargs applies to backbones given by name; got a Backbone "
                    "instance together with backbone_kwargs="
                    f"{kw!r}. Configure the instance directly."
                )
            bb = copy.deepcopy(self.backbone)
            if bb.config.modality == "features" and n_features is not None:
                if bb.config.in_features not in (None, n_features):
                    raise ValueError(
                        f"X has {n_features} features, but the backbone expects "
                        f"{bb.config.in_features}."
                    )
            return bb
        from tlestimators.backbones.registry import backbone_modality

        if backbone_modality(self.backbone) == "features" and "in_features" not in kw:
            if n_features is None:
                raise ValueError(f"backbone {self.backbone!r} needs in_features.")
            kw["in_features"] = n_features
        return create_backbone(self.backbone, **kw)

    def _validate_X(self, X, backbone=None, name="X"):
        modality = backbone.config.modality if backbone is not None else self._backbone_modality()
        return data.check_input(X, modality, name=name)

    def set_params(self, **params):
        nested = {k: v for k, v in params.items() if k.startswith("backbone_kwargs__")}
        for k in nested:
            params.pop(k)
        if nested:
            kw = dict(params.pop("backbone_kwargs", None) or self.backbone_kwargs or {})
            kw.update({k[len("backbone_kwargs__"):]: v for k, v in nested.items()})
            params["backbone_kwargs"] = kw
        return super().set_params(**params)


class ItemDataset(torch.utils.data.Dataset):
    """Raw validated items (+ optional integer targets) for a skorch DataLoader.

    ``__getitem__`` returns one raw item; :class:`Collate` preprocesses a whole batch
    at once (batched tokenisation, batched image resizing of uint8 arrays).
    """

    def __init__(self, items, y=None):
        self.items = items
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self._sparse = hasattr(items, "tocsr")

    def __len__(self):
        return data.num_samples(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        if self._sparse:
            item = np.asarray(item.toarray()).ravel()
        y = self.y[i] if self.y is not None else 0
        return item, y


class Collate:
    """``collate_fn`` calling ``backbone.preprocess(items, train)`` on a whole batch."""

    def __init__(self, backbone: Backbone, train: bool):
        self.backbone = backbone
        self.train = train

    def __call__(self, samples):
        items = [s[0] for s in samples]
        if isinstance(items[0], np.ndarray):
            items = np.stack(items)
        batch = self.backbone.preprocess(items, train=self.train)
        y = torch.as_tensor(np.asarray([s[1] for s in samples]), dtype=torch.long)
        return batch, y


def passthrough_collate(batch):
    return batch


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
    """``backbone`` followed by ``head``; ``forward`` returns logits."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, batch):
        return self.head(self.backbone(batch))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            set_frozen_norm_eval(self.backbone)
        return self


def set_frozen_norm_eval(module: nn.Module) -> None:
    """Keep normalisation layers whose parameters are all frozen in eval mode.

    ``requires_grad_(False)`` does not stop BatchNorm from updating its running
    statistics in train mode, so a "frozen" group would still drift.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def layer_group_names(module: nn.Module, groups, prefix: str = "") -> list[list[str]]:
    """Parameter names (as ``module.named_parameters`` gives them, with ``prefix``) per group."""
    names = {id(p): n for n, p in module.named_parameters()}
    return [[prefix + names[id(p)] for p in g] for g in groups]


class NaNLossGuard(Callback):
    """Stop training with an error when the loss becomes NaN or infinite."""

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        loss = net.history[-1, "batches", -1].get("train_loss" if training else "valid_loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDivergedError(
                f"Training diverged: the {'train' if training else 'valid'} loss is {loss} at "
                f"epoch {len(net.history)}. Lower lr, check the inputs for extreme values, "
                "or add gradient clipping."
            )


class WarmupCosine:
    """Linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``
    (a picklable ``lr_lambda`` for ``torch.optim.lr_scheduler.LambdaLR``)."""

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------
# Added by the core-estimators work (frozen/fine-tune); additive helpers that any
# estimator training a classifier through skorch can reuse:
#
# - ``torch_seed(random_state)``: context manager seeding torch (CPU + CUDA) inside a
#   forked RNG, so ``random_state`` makes fits reproducible without touching the
#   caller's global RNG.
# - ``encode_labels(y, estimator_name)``: sklearn-style target checks (None, 2-D column
#   warning, regression targets, a single class) -> ``(classes_, y_encoded)``.
# - ``class_weight_tensor(class_weight, classes, y_enc)``: None / "balanced" / dict
#   -> float tensor for ``criterion__weight`` (unknown dict keys raise).
# - ``check_labels_seen(classes, y, name)``: ValueError listing labels unseen at fit.
# - ``make_valid_split(...)``: skorch ``ValidSplit`` for early stopping, with clear
#   errors when the validation fraction cannot hold every class.
# - ``validate_feature_input(estimator, X, modality, reset, name)``: the modality check
#   plus, for ``features`` backbones, sklearn's ``n_features_in_`` /
#   ``feature_names_in_`` bookkeeping.
# - ``TransferNet``: ``NeuralNetClassifier`` with autocast on CUDA (bf16 when
#   supported), and optimizer param groups with identical options merged (so
#   per-parameter ``optimizer__param_groups`` built from ``layer_group_names`` stay a
#   handful of groups).
# - ``NameSet``: picklable pattern callable for skorch ``Freezer``/``Unfreezer``
#   matching an explicit set of parameter names.
# ---------------------------------------------------------------------------
import contextlib  # noqa: E402

from skorch import NeuralNetClassifier  # noqa: E402


@contextlib.contextmanager
def torch_seed(random_state):
    """Seed torch inside a forked RNG state (no-op for ``None``)."""
    seed = check_random_state_int(random_state)
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def encode_labels(y, estimator_name="estimator"):
    """Validate classification targets; returns ``(classes, y_encoded int64)``."""
    import warnings

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
    if len(classes) < 2:
        raise ValueError(
            f"y contains only one class ({classes.tolist()[0]!r}); {estimator_name} needs "
            "at least 2 classes to fit a classifier."
        )
    return classes, y_enc.astype(np.int64)


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


def check_labels_seen(classes, y, name="y"):
    """Raise if ``y`` holds labels that were not seen at fit."""
    y = np.asarray(y)
    unseen = np.setdiff1d(np.unique(y), classes)
    if unseen.size:
        raise ValueError(
            f"{name} contains labels not seen at fit: {unseen.tolist()[:10]}; the fitted "
            f"classes are {classes.tolist()}."
        )


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


class NameSet:
    """Picklable ``patterns`` callable for skorch's ``Freezer``/``Unfreezer``: matches
    exactly the given parameter names."""

    def __init__(self, names):
        self.names = frozenset(names)

    def __call__(self, name):
        return name in self.names

    def __repr__(self):
        return f"NameSet({len(self.names)} names)"


def _autocast_context(device):
    # bfloat16 needs no loss scaling; GPUs without it train in float32
    if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TransferNet(NeuralNetClassifier):
    """``NeuralNetClassifier`` with mixed precision on CUDA and merged param groups.

    - Forward passes run under ``torch.autocast`` on CUDA GPUs that support bfloat16
      (which needs no gradient scaling; others train in float32); the loss is computed
      in float32.
    - ``optimizer__param_groups`` may list one pattern per parameter (exact names from
      :func:`layer_group_names`); groups with identical options are merged afterwards
      so the optimizer keeps its fused multi-tensor paths.
    """

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
            return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        if y_pred.dtype != torch.float32:
            y_pred = y_pred.float()
        return super().get_loss(y_pred, y_true, *args, **kwargs)
