"""Fine-tuning: a pretrained backbone and a new head trained end to end with skorch."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from tlestimators.estimators._base import (
    BackboneParamsMixin,
    Collate,
    NaNLossGuard,
    TransferDataset,
    TransferModule,
    TransferNet,
    check_random_state_int,
    class_weight_tensor,
    common_constraints,
    default_backbone_lr,
    drop_last_batch,
    early_stopping_split,
    linear_probe,
    make_head,
    resolve_device,
    resolve_optimizer,
    torch_seed,
    unfreeze_constraint,
    validate_feature_input,
    validate_fit_data,
)
from tlestimators.estimators._netclassifier import NetClassifierMixin

__all__ = ["FineTuneClassifier"]

# the parameters a warm start may change: the training length and the printing
_WARM_START_FREE = frozenset({"max_epochs", "warm_start", "verbose"})


def _same_param(a, b):
    """Whether parameter values ``a`` and ``b`` are the same (identity, or equality for
    values that compare to a plain bool)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # arrays, modules: only identity counts
        return False


class FineTuneClassifier(NetClassifierMixin, BackboneParamsMixin, ClassifierMixin,
                         BaseEstimator):
    """Fine-tune a pretrained backbone with a new classification head (skorch).

    Which backbone layer groups train is a hyper-parameter (``unfreeze``): none (head
    only), the last ``k`` groups, all of them, or gradually more during training.
    Learning rates can decrease layer by layer towards the input (layer-wise decay),
    follow linear warm-up then cosine decay, and BatchNorm statistics of frozen
    groups stay frozen. Images are augmented at train time.

    Parameters
    ----------
    backbone : str or Backbone, default="efficientnet_lite0"
        Registry name or backbone instance (deep-copied; never modified).
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (e.g. ``{"img_size": 160}``).
    head : {"linear", "mlp"} or nn.Module, default="linear"
        The new head on the pooled embedding.
    head_init : {"probe", "random"}, default="probe"
        ``"probe"`` (LP-FT [4]_): before fine-tuning, fit the convex linear probe
        (:class:`~tlestimators.probe.LinearProbeCV` with ``scaling="per_feature"``,
        ``C`` by internal CV) on the pretrained backbone's embeddings of the training
        rows (cached, see ``cache``) and start the ``"linear"`` head from it, so the
        first gradient steps do not distort the pretrained features with a random
        head. ``"random"``: the usual random head. Only a ``"linear"`` head can start
        from the probe; ``"mlp"`` and module heads always start random.
    head_dropout : float, default=0.0
        Dropout in the head.
    freeze_norm_stats : bool, default=True
        Keep every BatchNorm of the backbone in inference mode while fine-tuning: it
        normalises with its pretrained running statistics (which are not updated) and
        its scale and shift still train, as Keras' transfer-learning guide and
        Detectron's ``FrozenBatchNorm2d`` do. With few labels, small batches or inputs
        far from the pretraining data, batch statistics differ from the stored ones
        and change the features the probe head was fitted on before the first step
        (measured on 8x8 digits at 48 px, 10 labels/class: LP-FT 0.69 with frozen
        statistics, 0.16 with batch statistics; frozen probe 0.69). ``False``:
        PyTorch's train mode (batch statistics, running statistics updated).
        Backbones without BatchNorm (ViTs, sentence transformers) are unaffected.
    unfreeze : {"all", "head", "gradual", "lora"} or int, default="all"
        ``"head"``: train the head only; ``k``: also the last ``k`` layer groups of the
        backbone (``backbone.layer_groups()``, ordered input -> output); ``"all"``:
        everything; ``"gradual"``: head only first, then one group more (from the
        output side) every ``unfreeze_every`` epochs; ``"lora"``: the head and LoRA
        adapters [5]_ (through ``peft``, see ``lora_kwargs``) train, every backbone
        weight stays frozen; the adapters are merged into the weights at the end of
        ``fit``, so prediction and ONNX export see a plain backbone.
    unfreeze_every : int, default=1
        Epochs between two steps of gradual unfreezing.
    lora_kwargs : dict, default=None
        With ``unfreeze="lora"``: overrides of the per-family defaults of
        ``tlestimators.backbones.lora.lora_targets`` (``r``, ``lora_alpha``,
        ``lora_dropout``, ``target_modules`` or any ``peft.LoraConfig`` field).
    lr : float, default=1e-3
        Learning rate of the head.
    backbone_lr : float, default=None
        Learning rate (absolute) of the last backbone group. ``None``: ``lr / 10`` for
        pretrained weights, ``lr`` for weights that start from scratch (a randomly
        initialised backbone such as ``"mlp"``, or the LoRA adapters, which start at
        zero), as in the domain-adaptation estimators.
    layer_decay : float in (0, 1], default=None
        Group ``i`` from the output gets ``backbone_lr * layer_decay ** i``; ``None``
        means no decay.
    warmup : float in [0, 1), default=0.1
        Fraction of the training steps with a linear warm-up; the learning rate then
        follows a cosine decay to 0 at ``max_epochs``.
    optimizer : {"adamw", "adam", "sgd"} or torch.optim class, default="adamw"
        The optimizer (decoupled weight decay by default).
    weight_decay : float, default=0.01
        Weight decay (not applied to biases and normalisation weights).
    label_smoothing : float in [0, 1), default=0.0
        Label smoothing of the cross-entropy loss.
    augment : bool, default=True
        Train-time augmentation through ``backbone.preprocess(items, train=True)``
        (images: random resized crop + horizontal flip).
    max_epochs : int, default=10
        Training epochs (in total, counting those of earlier fits, when warm started).
    batch_size : int, default=32
        Batch size.
    warm_start : bool, default=False
        When True and the estimator is already fitted, ``fit`` continues training the
        fitted network (same module, same optimizer and its state, no new probe stage)
        from the ``n_epochs_`` epochs it has done up to ``max_epochs`` epochs in total, as
        ``HistGradientBoostingClassifier(warm_start=True)`` does with a larger
        ``max_iter``. The warm-up + cosine schedule then spans the new ``max_epochs``
        and goes on from the optimizer step reached: a model fitted for 1 epoch and
        warm-started to 3 trains its epochs 2 and 3 at exactly the learning rates of
        epochs 2 and 3 of a 3-epoch fit (ending annealed to 0 like it), so the rate
        jumps back up where training resumes. Gradual unfreezing goes on from the
        epochs done. ``y`` must hold the same classes, and only ``max_epochs`` and
        ``verbose`` may change between the fits (anything else raises a ValueError:
        set ``warm_start=False`` to start over). ``max_epochs`` equal to ``n_epochs_``
        trains nothing; smaller raises a ValueError. Not supported (ValueError) with
        ``unfreeze="lora"`` (the adapters are merged into the weights at the end of
        ``fit``), ``early_stopping=True`` (the best epoch's weights are restored at the
        end, so the network is not where its optimizer and history stopped) or an
        accelerator (its prepared objects are released after training). Different
        rows may be passed (same classes and features); a search continues each fold
        on its own rows.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop when the validation loss
        has not improved for ``patience`` epochs, restoring the best weights.
    validation_fraction : float, default=0.1
        Held-out fraction when ``early_stopping=True``.
    patience : int, default=5
        Epochs without improvement before stopping.
    class_weight : dict, "balanced" or None, default=None
        Class weights in the loss, as in sklearn.
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Extra skorch callbacks (checkpointing, logging, ...).
    num_workers : int, default=0
        DataLoader worker processes that decode and preprocess batches.
    cache : bool or path-like, default=True
        Feature cache for the frozen pretrained embeddings (the linear-probe stage):
        ``True`` in memory (shared in the process), ``False`` off, a directory to
        also persist them across processes.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``. On
        CUDA training uses bfloat16 autocast (when supported) and pinned memory.
    random_state : int, RandomState or None, default=None
        Seeds the backbone build (random-init weights), the head initialisation,
        shuffling, augmentation and validation split.
    verbose : int, default=0
        ``>0`` prints skorch's epoch table.
    accelerator : accelerate.Accelerator, default=None
        Train through Hugging Face Accelerate (skorch's ``AccelerateMixin``): mixed
        precision, gradient accumulation, and data-parallel training over several
        devices when the script runs under ``accelerate launch``. The accelerator then
        places the model and ``device`` is ignored; ``batch_size`` is per process.
        ``unfreeze="gradual"`` is refused with several processes (groups unfrozen after
        the model is prepared would never be synchronised). ``None`` trains on
        ``device`` without Accelerate.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    net_ : skorch.NeuralNetClassifier
        The fitted net; ``net_.module_`` is ``TransferModule(backbone, head)`` and
        ``net_.history`` holds losses, learning rates and ``unfrozen_groups`` per epoch.
    n_layer_groups_ : int
        Layer groups of the backbone.
    n_epochs_ : int
        Epochs trained in total by this fit and the warm-started fits before it
        (``len(net_.history)``: one history row per epoch; with ``early_stopping`` the
        weights are those of the best epoch).
    probe_ : LinearProbeCV or None
        The probe the head started from (``head_init="probe"`` with a linear head),
        fitted on the pretrained embeddings (features whose spread is below their
        float resolution zeroed: :func:`~tlestimators.probe.zero_unresolved_features`);
        ``probe_.C_`` is its regularisation.
    lora_ : dict or None
        With ``unfreeze="lora"``: the LoRA settings, the base weights' fingerprint and
        the trained adapter weights (``"adapters"``). When the base weights come from
        an installed package, pickling keeps only these (plus the head) and rebuilds
        the backbone from the package on unpickle.
    n_features_in_ : int
        Number of input features (``features`` backbones only).
    feature_names_in_ : ndarray of str
        Input column names, when given (``features`` backbones only).

    See Also
    --------
    FrozenFeatureClassifier : much cheaper, and often as good with few labels.

    Notes
    -----
    Gradual unfreezing, discriminative (layer-wise) learning rates and warm-up follow
    ULMFiT [1]_; layer-wise decay as used for BEiT/ViT fine-tuning [2]_. Fine-tuning
    outperforms fixed features once there are enough labels [3]_.

    Which schedule wins: LP-FT (the default) is the safe choice; it matches or beats
    plain fine-tuning in distribution and clearly beats it out of distribution, at the
    cost of one extra pass of frozen embeddings [4]_. ``head_init="random"`` with
    ``unfreeze="gradual"`` (ULMFiT) is the classical alternative when the probe is
    poor (features far from the task). With very few labels, prefer
    :class:`FrozenFeatureClassifier` (the probe alone). The probe start only holds while
    the network computes the features the probe was fitted on, which is why BatchNorm
    statistics stay frozen by default (``freeze_norm_stats``): in PyTorch's train mode
    BatchNorm normalises with batch statistics, and on inputs far from the pretraining
    data (8x8 digits upsampled to 48 px) these differ so much from the stored ones that
    the probe-initialised head starts at a training loss of about 70 and ends near
    chance. Measured with the defaults, ``random_state=0``, nothing chosen on the
    evaluation data:

    =========================================  ============  ================  ============
    data                                       frozen stats  batch statistics  frozen probe
    =========================================  ============  ================  ============
    hymenoptera, 224 px, val                   0.941         0.928             0.922
    digits at 48 px, 10 labels/class (test)    0.687         0.160             0.693
    digits at 48 px, 50 labels/class (test)    0.923         0.280
    =========================================  ============  ================  ============

    (hymenoptera: ``benchmarks/results/transfer.md``; digits: 300 test images, ad-hoc runs
    with ``augment=False``, since flips change digits.)

    References
    ----------
    .. [1] Howard and Ruder, "Universal Language Model Fine-tuning for Text
       Classification", ACL 2018.
    .. [2] Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022.
    .. [3] Kornblith, Shlens and Le, "Do Better ImageNet Models Transfer Better?",
       CVPR 2019.
    .. [4] Kumar, Raghunathan, Jones, Ma and Liang, "Fine-Tuning can Distort Pretrained
       Features and Underperform Out-of-Distribution", ICLR 2022.
    .. [5] Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from tlestimators import FineTuneClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (32,)},
    ...                          unfreeze="gradual", lr=1e-2, max_epochs=30,
    ...                          random_state=0, device="cpu").fit(X, y)
    >>> clf.net_.history[-1, "unfrozen_groups"]
    1
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        **common_constraints(
            "backbone", "backbone_kwargs", "head", "head_dropout", "unfreeze",
            "unfreeze_every", "lr", "backbone_lr", "optimizer", "weight_decay",
            "max_epochs", "batch_size", "early_stopping", "validation_fraction",
            "patience", "class_weight", "num_workers", "cache", "device", "random_state",
            "verbose",
        ),
        "unfreeze": unfreeze_constraint(("head", "all", "gradual", "lora")),
        "lora_kwargs": [dict, None],
        "layer_decay": [Interval(Real, 0, 1, closed="right"), None],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "augment": ["boolean"],
        "head_init": [StrOptions({"probe", "random"})],
        "freeze_norm_stats": ["boolean"],
        "warm_start": ["boolean"],
        "callbacks": [list, tuple, None],
        # checked by check_accelerator, whose message also says how to install it
        "accelerator": "no_validation",
    }

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        backbone_kwargs=None,
        head="linear",
        head_init="probe",
        head_dropout=0.0,
        freeze_norm_stats=True,
        unfreeze="all",
        unfreeze_every=1,
        lora_kwargs=None,
        lr=1e-3,
        backbone_lr=None,
        layer_decay=None,
        warmup=0.1,
        optimizer="adamw",
        weight_decay=0.01,
        label_smoothing=0.0,
        augment=True,
        max_epochs=10,
        batch_size=32,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        patience=5,
        class_weight=None,
        callbacks=None,
        num_workers=0,
        cache=True,
        device="auto",
        random_state=None,
        verbose=0,
        accelerator=None,
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.head = head
        self.head_init = head_init
        self.head_dropout = head_dropout
        self.freeze_norm_stats = freeze_norm_stats
        self.unfreeze = unfreeze
        self.unfreeze_every = unfreeze_every
        self.lora_kwargs = lora_kwargs
        self.lr = lr
        self.backbone_lr = backbone_lr
        self.layer_decay = layer_decay
        self.warmup = warmup
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.augment = augment
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.callbacks = callbacks
        self.num_workers = num_workers
        self.cache = cache
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.accelerator = accelerator

    def _strategy(self):
        return f"fine-tune ({self.unfreeze})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    def _build_callbacks(self, module, n_train, early_stopping_cb):
        from tlestimators.callbacks import unfreeze_callbacks, warmup_cosine

        cbs = [("nan_guard", NaNLossGuard())]
        if self.unfreeze == "lora":  # apply_lora already froze all but the adapters
            from tlestimators.callbacks import layer_group_names

            freezing, groups = [], layer_group_names(module, module.backbone.layer_groups())
        else:
            freezing, groups, _ = unfreeze_callbacks(module, self.unfreeze,
                                                     every=self.unfreeze_every)
        cbs.extend(freezing)
        steps = self._steps_per_epoch(n_train) * self.max_epochs
        cbs.append(("lr_schedule", warmup_cosine(round(self.warmup * steps), steps)))
        if early_stopping_cb is not None:
            cbs.append(("early_stopping", early_stopping_cb))
        cbs.extend(self.callbacks or ())
        return cbs, groups

    def _drop_last(self, n_train):
        return drop_last_batch(n_train, self.batch_size)

    def _steps_per_epoch(self, n_train):
        if self._drop_last(n_train):
            return n_train // self.batch_size
        return math.ceil(n_train / self.batch_size)

    def fit(self, X, y):
        """Fine-tune the backbone and train the head.

        Parameters
        ----------
        X : images, texts or 2-D features
            Input of the backbone's modality.
        y : array-like of shape (n_samples,)
            Labels (any sklearn-valid type).

        Returns
        -------
        self : FineTuneClassifier
        """
        from tlestimators.callbacks import layer_decay_param_groups

        self._validate_params()
        if self.warm_start and hasattr(self, "net_"):
            return self._fit_warm(X, y)
        device = resolve_device(self.device)
        self.accelerator_ = self._check_accelerator()
        modality, items, classes, y_enc, seed = validate_fit_data(self, X, y)
        n = len(y_enc)
        if seed is None and self.early_stopping:
            # one concrete split, so the probe sees exactly the rows skorch trains on
            seed = int(np.random.randint(0, 2**31 - 1))
        train_split, es = early_stopping_split(self, n, len(classes), seed)
        n_train = n - math.ceil(self.validation_fraction * n) if es is not None else n
        if n_train < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 training samples, got {n_train} "
                f"(n_samples = {n})."
            )
        with torch_seed(seed):
            backbone = self._make_backbone(items.shape[1] if modality == "features" else None)
            head = make_head(backbone.config.num_features, len(classes), self.head,
                             self.head_dropout)
            self.probe_ = None
            if self.head_init == "probe" and isinstance(self.head, str) and self.head == "linear":
                train_idx = np.arange(n)
                if train_split is not None:
                    train_idx = np.asarray(
                        train_split(TransferDataset(items, y_enc), y_enc)[0].indices
                    )
                self.probe_ = self._fit_probe(backbone, items, y_enc, classes, train_idx,
                                              device, seed)
                with torch.no_grad():
                    lin = self.probe_.to_linear()
                    head[-1].weight.copy_(lin.weight)
                    head[-1].bias.copy_(lin.bias)
            self.lora_ = None
            if self.unfreeze == "lora":
                from tlestimators.estimators._lora import start_lora

                self.lora_ = start_lora(self, backbone)
            module = TransferModule(backbone, head, freeze_norm_stats=self.freeze_norm_stats)
            callbacks, groups = self._build_callbacks(module, n_train, es)
            backbone_lr = self.backbone_lr
            if backbone_lr is None:
                backbone_lr = default_backbone_lr(self.lr, backbone, lora=self.lora_ is not None)
            cuda = str(device).startswith("cuda")
            # the collates read the backbone from the net, so it is pickled once
            collate_train = Collate(train=bool(self.augment))
            collate_valid = Collate(train=False)
            net = self._make_net(
                module=module,
                criterion=nn.CrossEntropyLoss,
                criterion__weight=class_weight_tensor(self.class_weight, classes, y_enc),
                criterion__label_smoothing=float(self.label_smoothing),
                optimizer=resolve_optimizer(self.optimizer),
                optimizer__param_groups=layer_decay_param_groups(
                    module.named_parameters(), groups, lr=self.lr, backbone_lr=backbone_lr,
                    layer_decay=self.layer_decay, weight_decay=self.weight_decay,
                ),
                lr=self.lr,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                train_split=train_split,
                callbacks=callbacks,
                iterator_train__shuffle=True,
                iterator_train__drop_last=self._drop_last(n_train),
                iterator_train__collate_fn=collate_train,
                iterator_valid__collate_fn=collate_valid,
                iterator_train__num_workers=self.num_workers,
                iterator_valid__num_workers=self.num_workers,
                iterator_train__pin_memory=cuda,
                iterator_valid__pin_memory=cuda,
                device=device,
                verbose=self.verbose,
            )
            collate_train.net = collate_valid.net = net
            net.fit(TransferDataset(items, y_enc), y_enc)
            if self.lora_ is not None:
                from tlestimators.estimators._lora import finish_lora

                finish_lora(self, net)
        self.classes_ = classes
        self.n_layer_groups_ = len(groups)
        self.net_ = net
        self.n_epochs_ = len(net.history)
        # what a warm start may not change: everything the network and optimizer were
        # built from (references, not copies)
        self._fitted_params = {k: v for k, v in self.get_params(deep=False).items()
                               if k not in _WARM_START_FREE}
        return self

    def _warm_start_unsupported(self):
        """Why ``warm_start=True`` cannot continue a fit of this configuration, or None.

        :class:`~tlestimators.TransferSearchCV` asks this before resuming a fold's
        estimator at the next rung (and restarts it from scratch when there is a
        reason)."""
        if self.unfreeze == "lora":
            return ("unfreeze='lora' is not supported: the LoRA adapters are merged into "
                    "the backbone weights at the end of fit, so there are no adapters left "
                    "to train")
        if self.early_stopping:
            return ("early_stopping=True is not supported: fit ends by restoring the best "
                    "epoch's weights, so the network is not where its optimizer state and "
                    "history stopped")
        if self.accelerator is not None or (
                type(self)._check_accelerator is not FineTuneClassifier._check_accelerator):
            return ("training through an accelerator is not supported: its prepared "
                    "module and optimizer are released after training")
        return None

    def _fit_warm(self, X, y):
        """``warm_start=True`` on a fitted estimator: ``net_.partial_fit`` for the epochs
        from ``n_epochs_`` to ``max_epochs``, the schedule stretched to the new total."""
        from sklearn.utils.validation import check_consistent_length

        from tlestimators.callbacks import WarmupCosine
        from tlestimators.estimators._base import encode_labels, warn_unlabeled

        name = type(self).__name__
        reason = self._warm_start_unsupported()
        if reason is not None:
            raise ValueError(f"warm_start=True cannot continue {name}: {reason}. Set "
                             "warm_start=False to fit from scratch.")
        net = self.net_
        done = getattr(self, "n_epochs_", len(net.history))
        before = getattr(self, "_fitted_params", {})
        now = self.get_params(deep=False)
        changed = [k for k, v in before.items() if not _same_param(v, now.get(k))]
        if changed:
            k = changed[0]
            raise ValueError(
                f"warm_start=True continues the fitted network, which was built with "
                f"{k}={before[k]!r}; got {k}={now[k]!r} (changed: {changed}). Only "
                f"max_epochs and verbose may change between warm-started fits; set "
                f"warm_start=False to fit from scratch with the new parameters."
            )
        if self.max_epochs < done:
            raise ValueError(
                f"max_epochs={self.max_epochs} must be >= the {done} epochs already trained "
                f"(n_epochs_) when warm_start=True: max_epochs counts every epoch, those "
                f"of earlier fits included. Set max_epochs >= {done}, or warm_start=False "
                "to fit from scratch."
            )
        items = validate_feature_input(self, X, self._backbone_modality(), reset=False)
        warn_unlabeled(y, name)
        classes, y_enc = encode_labels(y, name)
        check_consistent_length(items, y_enc)
        if not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"y has classes {classes.tolist()}, but this {name} was fitted on "
                f"{self.classes_.tolist()}; warm_start=True continues the same network "
                "and head, so y must hold the same classes. Set warm_start=False to fit "
                "from scratch."
            )
        more = self.max_epochs - done
        if more == 0:
            return self
        n = len(y_enc)
        if n < 2:
            raise ValueError(f"{name} needs at least 2 training samples, got {n}.")
        callbacks = dict(net.callbacks_)
        # skorch rebuilds the LambdaLR in on_train_begin with last_epoch = the number of
        # epochs in the history (it counts epochs, while this schedule steps per batch):
        # name the optimizer step reached instead, and stretch the schedule to the new
        # total, so training goes on where a fit at max_epochs would be
        steps_done = int(sum(net.history[:, "train_batch_count"]))
        total = steps_done + self._steps_per_epoch(n) * more
        sched = callbacks["lr_schedule"]
        sched.lr_lambda = WarmupCosine(round(self.warmup * total), total)
        sched.last_epoch = steps_done - 1
        if "unfreezing" in callbacks:
            callbacks["unfreezing"].continue_schedule_ = True
        net.set_params(max_epochs=self.max_epochs, verbose=self.verbose)
        # an attribute skorch reads at each get_iterator (its set_params refuses iterator
        # arguments once the net is initialized)
        net.iterator_train__drop_last = self._drop_last(n)
        seed = check_random_state_int(self.random_state)
        # new shuffles and augmentations for the new epochs, reproducibly
        with torch_seed(None if seed is None else seed + done):
            net.partial_fit(TransferDataset(items, y_enc), y_enc, epochs=more)
        self.n_epochs_ = len(net.history)
        return self

    def _fit_probe(self, backbone, items, y_enc, classes, train_idx, device, seed):
        """LinearProbeCV on the pretrained backbone's embeddings of the training rows."""
        from tlestimators.data import take
        from tlestimators.features import compute_embeddings
        from tlestimators.probe import zero_unresolved_features

        Z = compute_embeddings(backbone, take(items, train_idx), batch_size=self.batch_size,
                               device=device, cache=self.cache, verbose=self.verbose)
        # the backbone trains under this head: no weight on features below the float
        # resolution of the embeddings (they would get ~1e31 weights and move by far more
        # than their spread on the first step)
        Z = zero_unresolved_features(Z)
        y_train = y_enc[train_idx]
        # per-feature scaling, not the frozen probe's CV-chosen one: on hymenoptera at
        # 224 px (results/transfer.md, random_state=0) LP-FT from the per-feature probe
        # reached 0.941, from the CV-chosen probe 0.928; one split, but the only
        # measurement of the choice for a head the backbone then trains under
        probe = linear_probe(device=device, random_state=seed, class_weight=self.class_weight,
                             classes=classes, y_enc=y_enc, scaling="per_feature")
        if len(np.unique(y_train)) < len(classes):  # a class only in validation rows
            return None
        return probe.fit(Z, y_train)

    def __getstate__(self):
        from tlestimators.estimators._lora import lora_getstate

        return lora_getstate(self, self._state_for_save())

    def _state_for_save(self):
        """The state with the fitted (merged) backbone in place: :func:`tlestimators.save`
        writes a LoRA backbone as its base's reference plus ``lora_["adapters"]`` itself."""
        return super().__getstate__()

    def __setstate__(self, state):
        from tlestimators.estimators._lora import lora_setstate

        super().__setstate__(state)
        lora_setstate(self)

    def _check_accelerator(self):
        """The accelerator to train with (validated), or None for plain skorch."""
        if self.accelerator is None:
            return None
        from tlestimators.estimators._accelerate import check_accelerator

        return check_accelerator(self.accelerator, self.unfreeze)

    def _make_net(self, **net_kwargs):
        """The skorch net ``fit`` trains: :class:`TransferNet`, or its Accelerate
        variant when an accelerator is in use."""
        if self.accelerator_ is None:
            return TransferNet(**net_kwargs)
        from tlestimators.estimators._accelerate import make_accelerated_net

        return make_accelerated_net(self.accelerator_, **net_kwargs)

    def _net_input(self, X):
        items = validate_feature_input(
            self, X, self.net_.module_.backbone.config.modality, reset=False
        )
        return TransferDataset(items)
