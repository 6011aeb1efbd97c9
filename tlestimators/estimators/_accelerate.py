"""The Accelerate machinery of FineTuneClassifier: a skorch net with
:class:`skorch.hf.AccelerateMixin` and the checks of an ``accelerator``.

FineTuneClassifier imports it (lazily, when ``accelerator`` is given), and
:mod:`tlestimators.estimators.accelerated` builds the always-accelerated variant on
it; it imports neither, so the two estimator modules do not import each other.
"""

from __future__ import annotations

import torch
from skorch.hf import AccelerateMixin

from tlestimators.estimators._base import TransferNet

__all__ = ["AcceleratedTransferNet", "check_accelerator", "make_accelerated_net"]


class _UnwrappedNetView:
    """Stands in for the net inside the data-loader collate functions.

    :class:`~tlestimators.estimators._base.Collate` (given the net) preprocesses each
    batch with ``net.module_.backbone``; under several processes ``module_`` is wrapped in
    DistributedDataParallel, which hides ``backbone``. This view unwraps it.
    """

    def __init__(self, net):
        self.net = net

    @property
    def module_(self):
        return self.net.accelerator.unwrap_model(self.net.module_, keep_fp32_wrapper=False)


class AcceleratedTransferNet(AccelerateMixin, TransferNet):
    """:class:`TransferNet` trained through an :class:`accelerate.Accelerator`.

    Mixed precision comes from the accelerator (``Accelerator(mixed_precision=...)``)
    rather than :class:`TransferNet`'s own CUDA autocast, which is off here because
    the accelerator, not skorch, places the module (``device=None``).

    After training, skorch unwraps the module; this class also swaps the prepared
    optimizer and learning-rate schedule back to the plain torch objects and drops
    the accelerator's references to them, so the fitted net pickles (a prepared
    optimizer carries a patched bound ``step`` that pickle cannot serialise).
    """

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        # AccelerateMixin prepares every criterion module; under several processes that
        # wraps a parameter-free loss (CrossEntropyLoss) in DistributedDataParallel,
        # which refuses modules without trainable parameters. Such a loss only needs
        # its buffers (class weights) on the device.
        plain = {}
        for name in self._criteria:
            crit = getattr(self, name + "_", None)
            if isinstance(crit, torch.nn.Module) and not any(
                p.requires_grad for p in crit.parameters()
            ):
                plain[name] = crit
                setattr(self, name + "_", None)
        for key in ("iterator_train__collate_fn", "iterator_valid__collate_fn"):
            collate = getattr(self, key, None)
            if getattr(collate, "net", None) is self:
                collate.net = _UnwrappedNetView(self)
        try:
            super()._initialize_accelerator()
        finally:
            for name, crit in plain.items():
                setattr(self, name + "_", crit.to(self.accelerator.device))
        return self

    # Once training is over and the module is unwrapped, inference is local, as in any
    # estimator: each process predicts on all the data it is given, without sharding
    # the loader or gathering across processes (a predict called on the main process
    # only would otherwise wait forever for the others). During training, validation
    # still goes through the accelerator.
    def get_iterator(self, dataset, training=False):
        if not self._wrapped_with_accelerator:
            return TransferNet.get_iterator(self, dataset, training=training)
        return super().get_iterator(dataset, training=training)

    def evaluation_step(self, batch, training=False):
        if not self._wrapped_with_accelerator:
            return TransferNet.evaluation_step(self, batch, training=training)
        return super().evaluation_step(batch, training=training)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        if self.unwrap_after_train:
            self._release_prepared()
        return self

    def _release_prepared(self):
        from accelerate.optimizer import AcceleratedOptimizer
        from accelerate.scheduler import AcceleratedScheduler

        plain = {}
        for name in self._optimizers:
            opt = getattr(self, name + "_", None)
            if isinstance(opt, AcceleratedOptimizer):
                plain[id(opt)] = opt.optimizer
                setattr(self, name + "_", opt.optimizer)
        for _, cb in getattr(self, "callbacks_", []):
            # skorch's LRScheduler keeps the torch scheduler in ``lr_scheduler_``; it
            # still points at the prepared optimizer.
            for attr in ("lr_scheduler_", "policy_"):
                sched = getattr(cb, attr, None)
                if isinstance(sched, AcceleratedScheduler):
                    sched = sched.scheduler
                    setattr(cb, attr, sched)
                if id(getattr(sched, "optimizer", None)) in plain:
                    sched.optimizer = plain[id(sched.optimizer)]
        for attr in ("_optimizers", "_schedulers", "_models", "_dataloaders"):
            prepared = getattr(self.accelerator, attr, None)
            if isinstance(prepared, list):
                prepared.clear()
        # The unwrapped module sits on the accelerator's device; say so, so that a
        # pickled net reloads there (or falls back to the CPU) without skorch's
        # "device was not specified" warning.
        # A multi-process CPU run reports "cpu:<rank>", which torch.load cannot map.
        device = self.accelerator.device
        self.device = "cpu" if device.type == "cpu" else str(device)


def check_accelerator(accelerator, unfreeze):
    """Validate the ``accelerator`` parameter of :class:`FineTuneClassifier`."""
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise ImportError(
            "training with an accelerator needs accelerate: "
            "pip install 'tlestimators[distributed]'"
        ) from exc
    if not isinstance(accelerator, Accelerator):
        raise TypeError(
            "accelerator must be None or an accelerate.Accelerator, got "
            f"{type(accelerator).__name__}: {accelerator!r}"
        )
    if unfreeze == "gradual" and accelerator.num_processes > 1:
        # DistributedDataParallel registers the trainable parameters once, when the
        # module is prepared; groups unfrozen later would never have their gradients
        # averaged across processes.
        raise ValueError(
            "unfreeze='gradual' is not supported with several processes "
            f"(num_processes={accelerator.num_processes}); use unfreeze='all', "
            "'head' or an int"
        )
    return accelerator


def make_accelerated_net(accelerator, **net_kwargs):
    """The :class:`AcceleratedTransferNet` for the net arguments FineTuneClassifier built."""
    if accelerator.device_placement:
        # skorch refuses a device when the accelerator places modules itself.
        net_kwargs["device"] = None
    # Pinned memory is the accelerator's call too (it moves the batches).
    for key in ("iterator_train__pin_memory", "iterator_valid__pin_memory"):
        net_kwargs.pop(key, None)
    if not net_kwargs.get("verbose"):
        # skorch's PrintLog ignores verbose=0 for any sink but the builtin print,
        # and AccelerateMixin's default sink is accelerator.print.
        net_kwargs["callbacks__print_log__sink"] = print
    return AcceleratedTransferNet(accelerator=accelerator, **net_kwargs)
