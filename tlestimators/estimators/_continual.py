"""The skorch side of :class:`~tlestimators.RehearsalLearner`: the net that trains one
experience, a classifier head that grows with classes, and all-or-nothing fitting.

- :class:`ContinualNet`: :class:`~tlestimators.estimators._base.TransferNet` whose
  training batches mix replayed examples (:class:`~tlestimators.memory.ReplayBatchSampler`)
  and whose loss is cross-entropy or ER-ACE plus distillation and EWC, all from
  :mod:`tlestimators.losses`; what an experience adds is a :class:`ContinualTerms`.
- :func:`grow_head`: more outputs for the last ``nn.Linear`` of a head, old rows kept.
- :class:`TransactionalFitMixin`: a ``fit``/``partial_fit`` that raises leaves the
  fitted state (attributes ending in ``_``) as it was before the call.
"""

from __future__ import annotations

import copy

import torch
from skorch.utils import to_device
from torch import nn

from tlestimators.estimators._base import TransferNet, _autocast_context
from tlestimators.losses import distillation_loss, er_ace_loss, ewc_penalty
from tlestimators.memory import ReplayBatchSampler

__all__ = ["ContinualNet", "ContinualTerms", "TransactionalFitMixin", "grow_head", "grow_linear"]


class ContinualTerms:
    """What the loss of one experience adds to the cross-entropy. A plain object, so
    skorch does not register the teacher as a trainable module of the net."""

    def __init__(self):
        self.teacher = None
        self.distill_weight = 0.0
        self.temperature = 2.0
        self.ewc_lambda = 0.0
        self.anchors = {}
        self.fishers = {}
        self.current_classes = None  # bool mask over outputs: ER-ACE
        self.class_weight = None


class ContinualNet(TransferNet):
    """:class:`TransferNet` whose training batches mix replayed examples
    (:class:`~tlestimators.memory.ReplayBatchSampler`) and whose training loss is
    cross-entropy (or ER-ACE) + distillation + EWC."""

    def initialize(self):
        super().initialize()
        if not hasattr(self, "continual_"):
            self.continual_ = ContinualTerms()
        if not hasattr(self, "replay_"):
            self.replay_ = None  # (n_new, n_mem, ratio) while an experience trains
        return self

    def infer(self, x, **fit_params):
        # the batch may be a dict (tokenised text): the module takes it whole
        with _autocast_context(self.device):
            return self.module_(to_device(x, self.device))

    def get_iterator(self, dataset, training=False):
        if training and self.replay_ is not None:
            n_new, n_mem, ratio = self.replay_
            return torch.utils.data.DataLoader(
                dataset, batch_sampler=ReplayBatchSampler(n_new, n_mem, self.batch_size, ratio),
                collate_fn=self.get_params_for("iterator_train")["collate_fn"],
            )
        return super().get_iterator(dataset, training=training)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        terms = getattr(self, "continual_", None)
        if not training or terms is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        y_pred, y_true = y_pred.float(), y_true.to(y_pred.device)
        w = None if terms.class_weight is None else terms.class_weight.to(y_pred.device)
        if terms.current_classes is not None:
            loss = er_ace_loss(y_pred, y_true, terms.current_classes, weight=w)
        else:
            loss = nn.functional.cross_entropy(y_pred, y_true, weight=w)
        if terms.distill_weight > 0 and terms.teacher is not None:
            with torch.no_grad():
                t_logits = terms.teacher(to_device(X, self.device))
            d = distillation_loss(y_pred, t_logits, terms.temperature)
            self.history.record_batch("distill_loss", d.item())
            loss = loss + terms.distill_weight * d
        if terms.ewc_lambda > 0 and terms.anchors:
            params = dict(self.module_.named_parameters())
            names = list(terms.anchors)
            pen = ewc_penalty([params[n] for n in names], [terms.anchors[n] for n in names],
                              [terms.fishers[n] for n in names])
            self.history.record_batch("ewc_penalty", pen.item())
            loss = loss + terms.ewc_lambda * pen
        return loss


def grow_head(module, n_out):
    """Give the last ``nn.Linear`` of ``module.head`` ``n_out`` outputs, keeping the
    weights of the old ones."""
    found = (module, "head", module.head) if isinstance(module.head, nn.Linear) else None
    for parent in module.head.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError(
            "head must end in an nn.Linear classifier layer (it grows as classes arrive); "
            f"got {type(module.head).__name__} without one."
        )
    parent, name, layer = found
    if layer.out_features != n_out:
        setattr(parent, name, grow_linear(layer, n_out))


def grow_linear(layer: nn.Linear, n_out: int) -> nn.Linear:
    """A copy of ``layer`` with ``n_out`` outputs; the old rows keep their weights."""
    new = nn.Linear(layer.in_features, n_out, bias=layer.bias is not None)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        k = min(layer.out_features, n_out)
        new.weight[:k] = layer.weight[:k]
        if layer.bias is not None:
            new.bias[:k] = layer.bias[:k]
    return new


class TransactionalFitMixin:
    """All-or-nothing fitting: :meth:`_transaction` runs a fit and, if it raises,
    restores the fitted state (attributes ending in ``_``) to what it was before."""

    def _fitted_keys(self):
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]

    def _transaction(self, fit, *args, reset=False):
        """``fit(*args)``, after forgetting the fitted state when ``reset``; on an
        exception the state before the call comes back and the exception propagates."""
        snap = {k: copy.deepcopy(getattr(self, k)) for k in self._fitted_keys()}
        if reset:
            for k in self._fitted_keys():
                delattr(self, k)
        try:
            return fit(*args)
        except BaseException:
            for k in self._fitted_keys():
                if k not in snap:
                    delattr(self, k)
            for k, v in snap.items():
                setattr(self, k, v)
            raise
