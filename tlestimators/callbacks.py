"""skorch callbacks, schedules and the freezing vocabulary for transfer learning.

Generic part (owned by the estimator core; DA schedules are appended below it):

- :func:`check_unfreeze`: the ONE validator of the ``unfreeze`` parameter shared by
  every estimator: ``"head"``, ``"all"``, ``"gradual"`` or an int ``k >= 0`` (the last
  ``k`` layer groups; ``0`` is ``"head"``). Old spellings (``"none"``) map to the new
  ones with a ``FutureWarning``. :data:`UNFREEZE_OPTIONS` lists the words.
- :func:`unfreeze_callbacks`: for a module with ``backbone.layer_groups()`` and an
  ``unfreeze`` value, the skorch callbacks that apply it (a :class:`~skorch.callbacks.Freezer`
  or :class:`GradualUnfreezing`) and the parameter names per layer group;
  :func:`frozen_param_names` / :func:`apply_unfreeze` do the same without skorch.
- :class:`GradualUnfreezing`: start with the backbone frozen and unfreeze one more layer
  group (from the output side) every ``every`` epochs (ULMFiT's gradual unfreezing).
- :func:`freeze_groups`: a skorch :class:`~skorch.callbacks.Freezer` for whole layer
  groups; :class:`NameSet` the picklable name matcher behind it.
- :func:`layer_decay_param_groups`: ``optimizer__param_groups`` giving each layer group
  its own learning rate (layer-wise decay from the head down) and no weight decay on
  biases and normalisation weights.
- :class:`WarmupCosine` / :func:`warmup_cosine`: linear warm-up then cosine decay, as a
  picklable ``lr_lambda`` and as a skorch ``LRScheduler`` stepped every batch.
- :class:`NaNLossGuard`: stop with :class:`~tlestimators.exceptions.TrainingDivergedError`
  when the loss is not finite.

They work on parameter *names* as skorch's ``net.get_all_learnable_params()`` gives
them (``module.named_parameters()`` without a prefix); build them with
:func:`layer_group_names`. Freezing a BatchNorm layer's parameters does not freeze its
running statistics: call :func:`set_frozen_norm_eval` from the module's ``train``
(as :class:`~tlestimators.estimators._base.TransferModule` does).

This module must not import from ``tlestimators.estimators`` (layering).
"""

from __future__ import annotations

import math
import numbers

from skorch.callbacks import Callback
from torch import nn

from tlestimators._validation import deprecated_value
from tlestimators.exceptions import TrainingDivergedError

__all__ = [
    "UNFREEZE_OPTIONS",
    "UNFREEZE_ALIASES",
    "GradualUnfreezing",
    "NaNLossGuard",
    "NameSet",
    "WarmupCosine",
    "apply_unfreeze",
    "check_unfreeze",
    "freeze_groups",
    "frozen_param_names",
    "layer_decay_param_groups",
    "layer_group_names",
    "set_frozen_norm_eval",
    "unfreeze_callbacks",
    "warmup_cosine",
]

#: The words of ``unfreeze`` (besides an int k >= 0).
UNFREEZE_OPTIONS = ("head", "all", "gradual")
#: Old spellings, accepted with a FutureWarning for one release.
UNFREEZE_ALIASES = {"none": "head"}


# --------------------------------------------------------------------------- freezing
def check_unfreeze(unfreeze, n_groups=None, *, name="unfreeze", options=UNFREEZE_OPTIONS):
    """Validate ``unfreeze`` and resolve it against the backbone's ``n_groups``.

    Parameters
    ----------
    unfreeze : {"head", "all", "gradual"} or int >= 0
        ``"head"``: backbone frozen; ``k``: the last ``k`` layer groups train; ``"all"``:
        every group; ``"gradual"``: head first, then one group more per step. Old
        spellings in ``UNFREEZE_ALIASES`` warn (``FutureWarning``) and map.
    n_groups : int, default=None
        Layer groups of the backbone. ``None`` only normalises the value.
    name : str, default="unfreeze"
        Parameter name used in messages.
    options : tuple of str, default=UNFREEZE_OPTIONS
        The words an estimator accepts (an estimator may add e.g. ``"lora"``, returned
        unchanged, or drop ``"gradual"``).

    Returns
    -------
    int or str
        With ``n_groups``: the number of trainable groups at the end of training (an
        int in ``[0, n_groups]``) or ``"gradual"`` (or another accepted non-standard
        word). Without: the normalised value (``"head"``/``"all"`` -> kept).
    """
    unfreeze = deprecated_value(unfreeze, UNFREEZE_ALIASES, name)
    choices = ", ".join(repr(o) for o in options)
    if isinstance(unfreeze, str):
        if unfreeze not in options:
            raise ValueError(
                f"{name} must be one of {choices} or an int k >= 0 (the last k layer "
                f"groups), got {unfreeze!r}."
            )
        if n_groups is None:
            return unfreeze
        return {"head": 0, "all": int(n_groups)}.get(unfreeze, unfreeze)
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, numbers.Integral) or unfreeze < 0:
        raise ValueError(f"{name} must be one of {choices} or an int k >= 0, got {unfreeze!r}.")
    if n_groups is not None and unfreeze > n_groups:
        raise ValueError(
            f"{name}={unfreeze} asks for more layer groups than the backbone has "
            f"({n_groups}); use an int in [0, {n_groups}] or 'all'."
        )
    return int(unfreeze)


def layer_group_names(module: nn.Module, groups, prefix: str = "") -> list[list[str]]:
    """Parameter names (as ``module.named_parameters`` gives them, with ``prefix``) per group."""
    names = {id(p): n for n, p in module.named_parameters()}
    return [[prefix + names[id(p)] for p in g] for g in groups]


def set_frozen_norm_eval(module: nn.Module, *, all_norms: bool = False) -> None:
    """Keep normalisation layers whose parameters are all frozen in eval mode.

    ``requires_grad_(False)`` does not stop BatchNorm from updating its running
    statistics in train mode, so a "frozen" group would still drift. ``all_norms=True``
    puts every BatchNorm in eval mode (frozen statistics, trainable scale and shift).
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if all_norms or (ps and not any(p.requires_grad for p in ps)):
                m.eval()


class NameSet:
    """Picklable ``patterns`` callable for skorch's ``Freezer``/``Unfreezer``: matches
    exactly the given parameter names."""

    def __init__(self, names):
        self.names = frozenset(names)

    def __call__(self, name):
        return name in self.names

    def __repr__(self):
        return f"NameSet({len(self.names)} names)"


def _backbone_groups(module, backbone_attr="backbone"):
    backbone = getattr(module, backbone_attr, None)
    if backbone is None:
        return []
    return layer_group_names(module, backbone.layer_groups())


def frozen_param_names(module, unfreeze, *, backbone_attr="backbone") -> set:
    """Names (in ``module.named_parameters()``) of the parameters ``unfreeze`` freezes
    at the start of training (``"gradual"``: the whole backbone)."""
    groups = _backbone_groups(module, backbone_attr)
    k = check_unfreeze(unfreeze, len(groups))
    k = 0 if k == "gradual" else k
    return {n for g in groups[: len(groups) - k] for n in g}


def apply_unfreeze(module, unfreeze, *, backbone_attr="backbone") -> set:
    """Set ``requires_grad`` on the backbone of ``module`` as ``unfreeze`` says (for
    training loops without skorch callbacks). Parameters outside the backbone are left
    as they are.

    Parameters
    ----------
    module : nn.Module
        Holds the backbone as ``module.<backbone_attr>``.
    unfreeze : {"head", "all", "gradual"} or int
        See :func:`check_unfreeze` (``"gradual"`` freezes the whole backbone).
    backbone_attr : str, default="backbone"
        The attribute holding the backbone.

    Returns
    -------
    frozen : set of str
        The frozen parameter names (as in ``module.named_parameters()``).
    """
    frozen = frozen_param_names(module, unfreeze, backbone_attr=backbone_attr)
    backbone = getattr(module, backbone_attr, None)
    if backbone is not None:
        owned = {id(p) for p in backbone.parameters()}
        for n, p in module.named_parameters():
            if id(p) in owned:
                p.requires_grad_(n not in frozen)
        set_frozen_norm_eval(backbone)
    return frozen


def unfreeze_callbacks(module, unfreeze, *, every=1, backbone_attr="backbone"):
    """The skorch callbacks that apply ``unfreeze`` to ``module.<backbone_attr>``.

    Parameters
    ----------
    module : nn.Module
        The module skorch trains (e.g. ``TransferModule``); its ``backbone`` gives
        ``layer_groups()`` (input -> output). ``backbone=None`` means nothing to freeze.
    unfreeze : {"head", "all", "gradual"} or int
        See :func:`check_unfreeze`.
    every : int, default=1
        Epochs between two gradual-unfreezing steps.
    backbone_attr : str, default="backbone"
        The attribute of ``module`` holding the backbone.

    Returns
    -------
    callbacks : list of (str, Callback)
        ``[("freezer", Freezer)]``, ``[("unfreezing", GradualUnfreezing)]`` or ``[]``.
    groups : list of list of str
        Backbone parameter names per layer group.
    k : int or "gradual"
        The resolved value (trainable groups at the end of training).
    """
    groups = _backbone_groups(module, backbone_attr)
    k = check_unfreeze(unfreeze, len(groups))
    if k == "gradual":
        return [("unfreezing", GradualUnfreezing(groups, every=every))], groups, k
    if k < len(groups):
        return [("freezer", freeze_groups(groups[: len(groups) - k]))], groups, k
    return [], groups, k


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
    first_epoch_ : int
        History rows before this training began: epochs count from there, so each
        ``partial_fit`` of a continual learner restarts head-first. 0 when
        ``continue_schedule_`` is True (a warm-started
        :class:`~tlestimators.FineTuneClassifier` sets it): the schedule goes on from the
        net's first epoch.

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
        # epochs count from this training's start: a continual learner calling
        # partial_fit once per experience restarts head-first in each of them; a
        # warm-started fine-tuning (``continue_schedule_ = True``, set by the estimator)
        # goes on with the schedule from the net's first epoch
        self.first_epoch_ = 0 if getattr(self, "continue_schedule_", False) else len(net.history)
        self._apply(net, self.initial)

    def on_epoch_begin(self, net, **kwargs):
        # the row of this epoch already exists
        epoch = len(net.history) - getattr(self, "first_epoch_", 0)
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
        ``fnmatch``); ``TransferNet`` (estimators/_base.py) merges equal
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


# --------------------------------------------------------------------------- guards
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


# =========================================================================== DA schedules
# Domain-adaptation schedules (owned by the DA estimators): the adaptation weight of
# DANN and the other DA methods ramps up with training progress p in [0, 1], and the
# paper's learning-rate annealing. Picklable callables only (no lambdas), so fitted
# estimators pickle and clone.
__all__ += [
    "dann_lambda",
    "dann_lr_factor",
    "ConstantSchedule",
    "DANNLRDecay",
    "DANNLambdaSchedule",
    "EpochBatchAverages",
    "progress_lr_schedule",
]


def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """The DANN paper's adaptation factor ``2 / (1 + exp(-gamma p)) - 1`` for progress
    ``p`` in [0, 1].

    It rises from 0 to ~1 so the noisy early domain signal does not swamp the label
    loss (Ganin et al., 2016, Sec. 5.2.2).
    """
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr_factor(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The DANN paper's learning-rate annealing ``1 / (1 + alpha p) ** beta``."""
    return 1.0 / (1.0 + alpha * p) ** beta


class ConstantSchedule:
    """``p -> 1.0`` (picklable)."""

    def __call__(self, p):
        return 1.0

    def __repr__(self):
        return "ConstantSchedule()"


class DANNLRDecay:
    """``lr_lambda`` for ``LambdaLR`` stepping once per batch: ``schedule(step / total_steps)``
    (the same picklable pattern as :class:`WarmupCosine`)."""

    def __init__(self, total_steps: int, schedule=dann_lr_factor):
        self.total_steps = max(int(total_steps), 1)
        self.schedule = schedule

    def __call__(self, step: int) -> float:
        return float(self.schedule(min(step / self.total_steps, 1.0)))


def progress_lr_schedule(total_steps, schedule=dann_lr_factor):
    """skorch ``LRScheduler`` multiplying every group's rate by ``schedule(p)`` each batch."""
    import torch
    from skorch.callbacks import LRScheduler

    return LRScheduler(
        policy=torch.optim.lr_scheduler.LambdaLR,
        lr_lambda=DANNLRDecay(total_steps, schedule),
        step_every="batch",
    )


class DANNLambdaSchedule(Callback):
    """Sets the adaptation weight ``net.lambda_ = lambda_max * schedule(p)`` before each
    training batch, ``p`` being the training progress in [0, 1].

    Parameters
    ----------
    total_steps : int
        Training batches over the whole fit (``max_epochs * batches per epoch``).
    lambda_max : float, default=1.0
        Value the schedule reaches at the end of training.
    schedule : callable, default=dann_lambda
        ``p -> factor`` in [0, 1].
    """

    def __init__(self, total_steps, lambda_max=1.0, schedule=dann_lambda):
        self.total_steps = total_steps
        self.lambda_max = lambda_max
        self.schedule = schedule

    def initialize(self):
        self.step_ = 0
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        p = min(self.step_ / max(int(self.total_steps), 1), 1.0)
        net.lambda_ = float(self.lambda_max) * float(self.schedule(p))
        self.step_ += 1


class EpochBatchAverages(Callback):
    """Averages per-batch records (``net.history.record_batch(key, ...)``) into the epoch
    row, so ``history[:, 'domain_loss']`` reads like skorch's ``train_loss``.

    ``keys=None`` averages every batch key except skorch's own (losses and batch sizes,
    which skorch already summarises)."""

    _SKORCH_KEYS = ("train_loss", "valid_loss", "train_batch_size", "valid_batch_size")

    def __init__(self, keys=None):
        self.keys = keys

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1, "batches"]
        keys = self.keys
        if keys is None:
            keys = dict.fromkeys(k for b in batches for k in b if k not in self._SKORCH_KEYS)
        for key in keys:
            vals = [b[key] for b in batches if key in b]
            if vals:
                net.history.record(key, float(sum(vals) / len(vals)))
