"""skorch callbacks and optimizer helpers for transfer learning.

- :class:`GradualUnfreezing`: start with the backbone frozen and unfreeze one more layer
  group (from the output side) every ``every`` epochs (ULMFiT's gradual unfreezing).
- :func:`freeze_groups`: a skorch :class:`~skorch.callbacks.Freezer` for whole layer
  groups.
- :func:`layer_decay_param_groups`: ``optimizer__param_groups`` giving each layer group
  its own learning rate (layer-wise decay from the head down) and no weight decay on
  biases and normalisation weights.
- :func:`warmup_cosine`: skorch :class:`~skorch.callbacks.LRScheduler` with linear
  warm-up then cosine decay, stepped every batch.

They work on parameter *names* as skorch's ``net.get_all_learnable_params()`` gives
them (``module.named_parameters()`` without a prefix); build them with
:func:`tlestimators.estimators._base.layer_group_names`. Freezing a BatchNorm layer's
parameters does not freeze its running statistics: use
:class:`~tlestimators.estimators._base.TransferModule` (which keeps the norm layers of
frozen groups in eval mode) or call
:func:`~tlestimators.estimators._base.set_frozen_norm_eval` yourself.
"""

from __future__ import annotations

import numbers

from skorch.callbacks import Callback

from tlestimators.estimators._base import NameSet, WarmupCosine

__all__ = [
    "GradualUnfreezing",
    "freeze_groups",
    "layer_decay_param_groups",
    "warmup_cosine",
]


class GradualUnfreezing(Callback):
    """Unfreeze layer groups from the output side on a schedule.

    At the start of training every parameter named in ``groups`` is frozen except
    the last ``initial`` groups; at the start of epoch ``e`` (1-based) the last
    ``initial + (e - 1) // every`` groups are trainable. Parameters not named in
    ``groups`` (the head) are never touched. The number of trainable groups is
    recorded in the history as ``unfrozen_groups``.

    Parameters
    ----------
    groups : list of list of str
        Parameter names per layer group, ordered input -> output.
    every : int, default=1
        Epochs between two unfreezing steps.
    initial : int, default=0
        Groups trainable from the first epoch.

    Attributes
    ----------
    n_unfrozen_ : int
        Groups currently trainable.

    References
    ----------
    .. [1] Howard and Ruder, "Universal Language Model Fine-tuning for Text
       Classification", ACL 2018.
    """

    def __init__(self, groups, every=1, initial=0):
        self.groups = groups
        self.every = every
        self.initial = initial

    def initialize(self):
        if isinstance(self.every, bool) or not isinstance(self.every, numbers.Integral) or (
            self.every < 1
        ):
            raise ValueError(f"every must be an int >= 1, got {self.every!r}.")
        if isinstance(self.initial, bool) or not isinstance(self.initial, numbers.Integral) or (
            self.initial < 0
        ):
            raise ValueError(f"initial must be an int >= 0, got {self.initial!r}.")
        self.n_unfrozen_ = None
        return self

    def _apply(self, net, k):
        n = len(self.groups)
        k = min(int(k), n)
        trainable = {name for g in self.groups[n - k:] for name in g}
        controlled = {name for g in self.groups for name in g}
        for name, p in net.get_all_learnable_params():
            if name in controlled:
                p.requires_grad_(name in trainable)
        self.n_unfrozen_ = k

    def on_train_begin(self, net, **kwargs):
        self._apply(net, self.initial)

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history)  # the row of this epoch already exists
        k = self.initial + (epoch - 1) // self.every
        if k != self.n_unfrozen_:
            self._apply(net, k)
        net.history.record("unfrozen_groups", self.n_unfrozen_)


def freeze_groups(groups, at=1):
    """A skorch ``Freezer`` freezing every parameter named in ``groups`` at epoch ``at``."""
    from skorch.callbacks import Freezer

    return Freezer(NameSet(name for g in groups for name in g), at=at)


def layer_decay_param_groups(named_parameters, groups, *, lr, backbone_lr=None,
                             layer_decay=None, weight_decay=0.0, no_decay_1d=True):
    """``optimizer__param_groups`` with discriminative learning rates per layer group.

    Parameters
    ----------
    named_parameters : iterable of (str, Parameter)
        ``module.named_parameters()`` of the whole module (backbone and head).
    groups : list of list of str
        Backbone parameter names per layer group, input -> output. Parameters not in
        any group (the head) get ``lr``.
    lr : float
        Learning rate of the head.
    backbone_lr : float, default=None
        Learning rate of the last backbone group; defaults to ``lr``.
    layer_decay : float in (0, 1], default=None
        Group ``i`` counted from the output (0 = last group) gets
        ``backbone_lr * layer_decay ** i``. ``None`` means 1 (same rate everywhere).
    weight_decay : float, default=0.0
        Weight decay of matrices/kernels.
    no_decay_1d : bool, default=True
        Biases and normalisation weights (1-D parameters) get no weight decay.

    Returns
    -------
    param_groups : list of (str, dict)
        One ``(exact name, options)`` pair per parameter (skorch matches names with
        ``fnmatch``); :class:`~tlestimators.estimators._base.TransferNet` merges equal
        options back into a few optimizer groups.
    """
    backbone_lr = lr if backbone_lr is None else backbone_lr
    decay = 1.0 if layer_decay is None else float(layer_decay)
    rate = {}
    n = len(groups)
    for gi, names in enumerate(groups):
        for name in names:
            rate[name] = backbone_lr * decay ** (n - 1 - gi)
    out = []
    for name, p in named_parameters:
        wd = 0.0 if (no_decay_1d and p.ndim <= 1) else weight_decay
        out.append((name, {"lr": rate.get(name, lr), "weight_decay": wd}))
    return out


def warmup_cosine(warmup_steps, total_steps):
    """skorch ``LRScheduler``: linear warm-up for ``warmup_steps`` batches, then cosine
    decay to 0 at ``total_steps`` (per-group rates keep their ratios)."""
    import torch
    from skorch.callbacks import LRScheduler

    return LRScheduler(
        policy=torch.optim.lr_scheduler.LambdaLR,
        lr_lambda=WarmupCosine(warmup_steps, total_steps),
        step_every="batch",
    )
