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
