"""Fine-tuning on several GPUs (or TPUs, or with mixed precision) through Accelerate.

:class:`AcceleratedFineTuneClassifier` is :class:`~tlestimators.FineTuneClassifier`
whose skorch net mixes in :class:`skorch.hf.AccelerateMixin`: the module, optimizer,
learning-rate schedule and data loaders are prepared by an
:class:`accelerate.Accelerator`, so ``accelerate launch --num_processes N script.py``
trains one model data-parallel on N devices, and the same script without the launcher
trains on the one visible device.
"""

from __future__ import annotations

from tlestimators.estimators._accelerate import (
    AcceleratedTransferNet,
    check_accelerator,
    make_accelerated_net,
)
from tlestimators.estimators.finetune import FineTuneClassifier

__all__ = [
    "AcceleratedFineTuneClassifier",
    "AcceleratedTransferNet",
    "check_accelerator",
    "make_accelerated_net",
]


class AcceleratedFineTuneClassifier(FineTuneClassifier):
    """:class:`~tlestimators.FineTuneClassifier` that always trains through Accelerate.

    Same parameters and fitted attributes as ``FineTuneClassifier``; the one difference
    is that ``accelerator=None`` builds ``Accelerator()`` at fit time, which picks up the
    configuration of ``accelerate launch`` / ``accelerate config``. That is handy in a
    training script meant to run both with and without the launcher. With an explicit
    accelerator the two classes behave identically.

    Run the training script under ``accelerate launch`` to train one model on several
    GPUs: each process sees every sample, the prepared data loaders give each one a
    disjoint slice of every epoch, and gradients are averaged across processes.
    ``batch_size`` is per process: the global batch is ``batch_size * num_processes``.

    Attributes
    ----------
    net_ : AcceleratedTransferNet
        The fitted skorch net. After training its module is unwrapped from the
        distributed wrapper, so the estimator predicts and pickles like any other.
    accelerator_ : accelerate.Accelerator
        The accelerator used (``accelerator`` or the one built at fit time); use
        ``accelerator_.is_main_process`` to save or log from one process only.

    See Also
    --------
    tlestimators.FineTuneClassifier : the same, with Accelerate only when ``accelerator`` is given.
    tlestimators.distributed.parallel_backend : many models at once on a cluster.

    Notes
    -----
    Multi-process runs: launch with ``accelerate launch --multi_gpu --num_processes N
    train.py`` (or ``torchrun``). Every process runs the whole script; save the fitted
    model from the main process only. After training, inference is local to each
    process (no sharding or gathering), so predicting on one process alone is safe.
    ``unfreeze="gradual"`` is refused with several processes: DistributedDataParallel
    would never synchronise groups unfrozen after the model was prepared. Do not put
    this estimator inside a joblib-parallel grid search: each candidate would start its
    own distributed run.

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> from sklearn.datasets import load_iris
    >>> from tlestimators.distributed import AcceleratedFineTuneClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = AcceleratedFineTuneClassifier(
    ...     "mlp", accelerator=Accelerator(cpu=True), backbone_kwargs={"hidden_sizes": (32,)},
    ...     lr=1e-2, max_epochs=30, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def _check_accelerator(self):
        if self.accelerator is None:
            try:
                from accelerate import Accelerator
            except ImportError as exc:
                raise ImportError(
                    "AcceleratedFineTuneClassifier needs accelerate: "
                    "pip install 'tlestimators[distributed]'"
                ) from exc
            return check_accelerator(Accelerator(), self.unfreeze)
        return check_accelerator(self.accelerator, self.unfreeze)
