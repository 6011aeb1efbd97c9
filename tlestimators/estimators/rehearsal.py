"""Continual learning with a replay memory, EWC and learning-without-forgetting.

:class:`RehearsalLearner` learns a stream of experiences (tasks) one ``partial_fit``
call at a time on the shared skorch core (:mod:`tlestimators.estimators._base`). The
algorithms live below it: the replay memories and the replay batch sampler in
:mod:`tlestimators.memory`, the ER-ACE loss, the empirical Fisher, the EWC penalty and
the distillation loss in :mod:`tlestimators.losses`. This module reads the parameters,
trains one experience, and predicts.
"""

from __future__ import annotations

import copy
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_consistent_length, column_or_1d
from torch import nn

from tlestimators._validation import (
    check_random_state_int,
    renamed_param,
    resolve_device,
    torch_seed,
)
from tlestimators.callbacks import NaNLossGuard, check_unfreeze, unfreeze_callbacks
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    Collate,
    TransferDataset,
    TransferModule,
    common_constraints,
    deprecated_constraint,
    drop_last_batch,
    encode_labels,
    make_head,
    resolve_optimizer,
    unfreeze_constraint,
    validate_feature_input,
)
from tlestimators.estimators._continual import (
    ContinualNet,
    ContinualTerms,
    TransactionalFitMixin,
    grow_head,
)
from tlestimators.estimators._netclassifier import NetClassifierMixin
from tlestimators.losses import accumulate_fisher, empirical_fisher
from tlestimators.memory import POLICIES, concat_items, make_memory

__all__ = ["RehearsalLearner"]

_UNFREEZE = ("head", "all", "gradual")  # the shared words; no "lora" for a growing stream


class RehearsalLearner(TransactionalFitMixin, NetClassifierMixin, BackboneParamsMixin,
                       ClassifierMixin, BaseEstimator):
    """Continual learner: one ``partial_fit`` per experience, with replay, EWC and LwF.

    Each call to :meth:`partial_fit` is one experience (task) of a stream. Classes that
    were never seen before extend the output layer while the weights of the old
    classes are kept (class-incremental learning); experiences that bring the same
    classes under a new input distribution work too (domain-incremental learning).
    Against forgetting, three tools can be combined:

    - **rehearsal**: a replay memory of at most ``memory_size`` past examples, chosen
      by ``policy``, is mixed into every mini-batch of the next experiences;
    - **EWC**: a quadratic penalty keeps parameters that were important for past
      experiences (diagonal empirical Fisher information) close to their old values;
    - **distillation** (learning without forgetting): the outputs of the model as it
      was before the experience, on the old classes, are a soft target.

    Parameters
    ----------
    backbone : str or Backbone, default="mlp"
        Registry name or a :class:`~tlestimators.Backbone` instance.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (``"mlp"``: ``hidden_sizes``,
        ``dropout``, ...; ``in_features`` is taken from ``X``).
    unfreeze : {"all", "head", "gradual"} or int, default="all"
        What is trained, in the words every estimator uses. ``"all"``: the backbone
        and the head. ``"head"`` (or ``0``): the backbone is frozen; its embeddings come
        from :func:`~tlestimators.features.compute_embeddings` (cached, so replayed
        examples are never re-embedded) and only the head learns. ``k``: the last ``k``
        layer groups of the backbone and the head. ``"gradual"``: every experience
        starts with the head only and unfreezes one more group (from the output side)
        every ``unfreeze_every`` epochs, so the fresh rows of new classes do not send
        large gradients into the backbone.
    unfreeze_every : int, default=1
        Epochs between two steps of ``unfreeze="gradual"``.
    head : {"linear", "mlp"} or nn.Module, default="linear"
        Classifier on top of the embeddings; its last ``nn.Linear`` grows with classes.
    memory_size : int, default=200
        Capacity of the replay memory (number of examples); ``0`` disables replay.
    policy : {"reservoir", "class_balanced", "herding"}, default="reservoir"
        How the memory chooses what to keep; see :mod:`tlestimators.memory`.
    replay_ratio : float in [0, 1) or None, default=0.5
        Share of every mini-batch taken from the memory: each batch is
        ``batch_size * (1 - replay_ratio)`` new examples plus the rest replayed, and an
        epoch is one pass over the new examples. ``None`` concatenates the memory with
        the experience's data and shuffles them together (Avalanche's ``Replay``).
    replay_loss : {"ce", "ace"}, default="ce"
        ``"ce"``: cross-entropy on new and replayed examples alike. ``"ace"``: the
        asymmetric cross-entropy of ER-ACE (:func:`~tlestimators.losses.er_ace_loss`):
        an example of a class of the current experience is scored only against the
        current experience's classes. An experience with a single class is trained
        with plain cross-entropy (the masked loss would be 0 there).
    ewc_lambda : float, default=0.0
        Weight of the EWC penalty ``0.5 * sum F (theta - theta*)^2``; 0 disables it.
    distill_weight : float, default=0.0
        Weight of the distillation loss from the previous model; 0 disables it.
    distill_temperature : float, default=2.0
        Softening temperature of the distillation.
    lr : float, default=1e-3
        Learning rate.
    optimizer : {"adamw", "adam", "sgd"} or torch.optim class, default="adamw"
        Optimiser, re-created at the start of every experience.
    weight_decay : float, default=0.0
        Weight decay. The default is 0, not the 0.01 of :class:`~tlestimators.FineTuneClassifier`:
        decoupled decay shrinks the output rows of classes absent from the current
        experience at every step, which is forgetting by itself. (With 0, ``"adamw"``
        and ``"adam"`` are the same update.)
    max_epochs : int, default=5
        Passes over each experience's data.
    batch_size : int, default=32
        Mini-batch size.
    class_weight : dict, "balanced" or None, default=None
        Class weights in the loss. ``"balanced"`` is computed per experience over what
        it trains on (new and replayed examples), which up-weights the few replayed
        examples of old classes; a dict maps labels (seen or still to come) to weights,
        1 for the others.
    cache : bool or path-like, default=True
        Feature cache of the frozen backbone (``unfreeze="head"``).
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    random_state : int, RandomState or None, default=None
        Seeds the head initialisation, the batch order, dropout and the memory; the
        same seed gives the same predictions.
    verbose : int, default=0
        Print skorch's epoch log.
    epochs_per_experience : int, default="deprecated"
        Deprecated alias of ``max_epochs`` (FutureWarning); removed in 0.4. Setting
        it together with a non-default ``max_epochs`` raises.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen so far, sorted (the columns of :meth:`predict_proba`).
    class_order_ : ndarray of shape (n_classes,)
        Labels in the order they arrived: the order of the classifier's outputs.
    memory_ : ReplayMemory
        The replay memory (raw examples, labels, task ids); part of the fitted state.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is a ``TransferModule`` (its backbone is
        ``None`` when frozen: the inputs are cached embeddings) and ``net_.history``
        holds every epoch of every experience.
    backbone_ : Backbone
        The backbone (frozen, or the trained one inside ``net_.module_``).
    n_experiences_ : int
        Number of experiences learnt.
    experiences_ : list of dict
        Per experience: ``n_samples``, ``new_classes``, ``n_replayed``,
        ``fit_time`` (seconds) and ``task_id``.
    task_classes_ : dict
        ``{task_id: labels}`` for experiences given a ``task_id``.
    fisher_ : dict of str to Tensor
        Accumulated diagonal Fisher information (``ewc_lambda > 0``).
    n_features_in_ : int
        Number of features (feature backbones only).

    See Also
    --------
    FineTuneClassifier : One-shot fine-tuning, no continual learning.
    tlestimators.metrics.evaluate_stream : Accuracy matrix over a stream.
    tlestimators.memory : The replay memories.

    Notes
    -----
    The memory holds raw examples, not embeddings, so it can replay through a backbone
    that is still being trained; with a frozen backbone the replayed examples'
    embeddings come from the feature cache. Experiences may bring images of different
    kinds (arrays, then paths or PIL images; RGB then grey): the memory converts them
    to one kind (:func:`~tlestimators.memory.concat_items`). ``partial_fit`` is
    transactional: when it raises, the fitted state is the one before the call. EWC is
    online EWC: the Fisher diagonals of all past experiences are summed and anchored
    at the parameters after the last experience (:func:`~tlestimators.losses.empirical_fisher`).
    With a ``task_id`` at ``partial_fit`` and ``predict``, predictions are restricted to
    that task's classes (task-incremental evaluation with a shared head). ``score``
    counts labels not seen yet as errors (the accuracy matrix of a stream scores every
    model on every experience) instead of raising.

    References
    ----------
    .. [1] S.-A. Rebuffi et al., "iCaRL: Incremental Classifier and Representation
       Learning", CVPR 2017.
    .. [2] J. Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
       networks", PNAS 2017.
    .. [3] Z. Li and D. Hoiem, "Learning without Forgetting", ECCV 2016.
    .. [4] A. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
    .. [5] J. Schwarz et al., "Progress & Compress", ICML 2018 (online EWC).
    .. [6] L. Caccia et al., "New Insights on Reducing Abrupt Representation Change in
       Online Continual Learning", ICLR 2022 (ER-ACE).

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import RehearsalLearner
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 8)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    >>> clf = RehearsalLearner("mlp", memory_size=40, max_epochs=3, random_state=0)
    >>> clf = clf.partial_fit(X[y < 2], y[y < 2]).partial_fit(X[y >= 2], y[y >= 2])
    >>> clf.classes_.tolist(), len(clf.memory_)
    ([0, 1, 2, 3], 40)
    """

    _parameter_constraints = {
        **common_constraints(
            "backbone", "backbone_kwargs", "unfreeze_every", "head", "lr",
            "optimizer", "weight_decay", "max_epochs", "batch_size", "class_weight", "cache",
            "device", "random_state", "verbose",
        ),
        "unfreeze": unfreeze_constraint(_UNFREEZE),
        "memory_size": [Interval(Integral, 0, None, closed="left")],
        "policy": [StrOptions(set(POLICIES))],
        "replay_ratio": [Interval(Real, 0, 1, closed="left"), None],
        "replay_loss": [StrOptions({"ce", "ace"})],
        "ewc_lambda": [Interval(Real, 0, None, closed="left")],
        "distill_weight": [Interval(Real, 0, None, closed="left")],
        "distill_temperature": [Interval(Real, 0, None, closed="neither")],
        "epochs_per_experience": deprecated_constraint([Interval(Integral, 1, None,
                                                                 closed="left")]),
    }

    def __init__(
        self,
        backbone="mlp",
        *,
        backbone_kwargs=None,
        unfreeze="all",
        unfreeze_every=1,
        head="linear",
        memory_size=200,
        policy="reservoir",
        replay_ratio=0.5,
        replay_loss="ce",
        ewc_lambda=0.0,
        distill_weight=0.0,
        distill_temperature=2.0,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=0.0,
        max_epochs=5,
        batch_size=32,
        class_weight=None,
        cache=True,
        device="auto",
        random_state=None,
        verbose=0,
        epochs_per_experience="deprecated",
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.unfreeze = unfreeze
        self.unfreeze_every = unfreeze_every
        self.head = head
        self.memory_size = memory_size
        self.policy = policy
        self.replay_ratio = replay_ratio
        self.replay_loss = replay_loss
        self.ewc_lambda = ewc_lambda
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.cache = cache
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.epochs_per_experience = epochs_per_experience

    def _strategy(self):
        return f"continual learning (rehearsal, memory {self.memory_size})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, classes=None, task_id=None):
        """Forget everything, then learn ``(X, y)`` as the first experience.

        Parameters
        ----------
        X : array-like or list
            Input for the backbone's modality.
        y : array-like of shape (n_samples,)
            Labels.
        classes, task_id
            As in :meth:`partial_fit`.

        Returns
        -------
        self
        """
        return self._transaction(self._partial_fit, X, y, classes, task_id, reset=True)

    def partial_fit(self, X, y, classes=None, task_id=None):
        """Learn one experience: grow the head for new classes, train with replay, EWC
        and distillation, then update the memory.

        Parameters
        ----------
        X : array-like or list
            The experience's input, same modality (and number of features) as before.
        y : array-like of shape (n_samples,)
            Its labels. Labels never seen get new outputs.
        classes : array-like, default=None
            Labels to add outputs for now, even if absent from ``y``; must include
            every label of ``y`` and every label seen before.
        task_id : hashable, default=None
            Identifier of the task; ``predict(X, task_id=...)`` then restricts the
            prediction to that task's classes.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On bad parameters, an empty experience, a change of modality or number of
            features, ``classes`` that contradict the labels, or a memory too small for
            one slot per class under ``policy="class_balanced"``/``"herding"``. The
            fitted state is then left as it was before the call.
        """
        return self._transaction(self._partial_fit, X, y, classes, task_id)

    def _partial_fit(self, X, y, classes, task_id):
        self._validate_params()
        max_epochs = renamed_param(self, "epochs_per_experience", "max_epochs")
        unfreeze = check_unfreeze(self.unfreeze, options=_UNFREEZE)  # old spellings warn here
        frozen = unfreeze in ("head", 0)
        first = not hasattr(self, "net_")
        if not first and self.policy != self.memory_.policy:
            raise ValueError(
                f"policy changed from {self.memory_.policy!r} to {self.policy!r} mid-stream; "
                "call fit to start a new stream with the new policy."
            )
        if not first and frozen != self.frozen_:
            raise ValueError(
                f"unfreeze changed to {self.unfreeze!r} mid-stream between a frozen and a "
                "trained backbone; call fit to start a new stream."
            )
        backbone, items = self._check_X(X, first)
        labels, codes = encode_labels(y, type(self).__name__, min_classes=1)
        y = labels[codes]
        check_consistent_length(items, y)
        new_classes = self._new_classes(y, classes, first)
        t0 = time.perf_counter()
        if first:
            self._initialize(backbone, frozen)
        self.memory_.capacity = int(self.memory_size)
        self.memory_.check_update(y, len(self.class_order_) + len(new_classes))
        with torch_seed(int(self.rng_.integers(2**31 - 1))):  # one seed per experience
            n_old = len(self.class_order_)
            if new_classes:
                self._grow(new_classes, first, max_epochs, unfreeze)
            y_idx = np.asarray([self._label_index_[c] for c in y.tolist()], dtype=np.int64)
            n_replayed = self._train_experience(items, y_idx, n_old, max_epochs)
            if self.ewc_lambda > 0:
                self._update_fisher(items, y_idx)
            if self.distill_weight > 0:
                self.teacher_ = copy.deepcopy(self.net_.module_).cpu().eval()
                self.teacher_.requires_grad_(False)
        embed = self._embed_for_memory if self.memory_.requires_embeddings else None
        self.memory_.update(items, y, task_ids=task_id, embed=embed)
        if task_id is not None:
            prev = self.task_classes_.get(task_id, np.asarray([], dtype=y.dtype))
            self.task_classes_[task_id] = np.union1d(prev, np.unique(y))
        self.n_experiences_ += 1
        self.experiences_.append({"n_samples": len(y), "new_classes": list(new_classes),
                                  "n_replayed": int(n_replayed), "task_id": task_id,
                                  "fit_time": time.perf_counter() - t0})
        return self

    def _check_X(self, X, first):
        """The backbone and the validated items (same modality and width as before)."""
        if not first:
            return self.backbone_, validate_feature_input(
                self, X, self.backbone_.config.modality, reset=False)
        modality = self._backbone_modality()
        items = validate_feature_input(self, X, modality, reset=True)
        return self._make_backbone(items.shape[1] if modality == "features" else None), items

    def _new_classes(self, y, classes, first):
        """Labels to append to ``class_order_``, after checking ``classes`` against ``y``."""
        known = [] if first else list(self.class_order_)
        candidates = np.unique(y)
        if classes is not None:
            classes = np.unique(column_or_1d(np.asarray(classes)))
            missing = np.setdiff1d(candidates, classes)
            if missing.size:
                raise ValueError(
                    f"y holds labels {missing.tolist()} that are not in classes="
                    f"{classes.tolist()}; classes must list every label of y."
                )
            gone = np.setdiff1d(np.asarray(known), classes) if known else []
            if len(gone):
                raise ValueError(
                    f"classes={classes.tolist()} omits labels {gone.tolist()} seen in "
                    "earlier experiences; classes must include every label seen so far."
                )
            candidates = classes
        def words(labels):  # by the labels themselves: str and object arrays of str mix
            return all(isinstance(c, (str, bytes)) for c in np.asarray(labels).tolist())

        if known and words(known) != words(candidates):
            raise ValueError(
                f"labels of this experience ({candidates.dtype}) do not mix with the "
                f"labels seen before ({np.asarray(known).dtype}); use one label type for "
                "the stream."
            )
        return [c for c in candidates.tolist() if c not in set(known)]

    def _initialize(self, backbone, frozen):
        self.device_ = resolve_device(self.device)
        self.rng_ = np.random.default_rng(check_random_state_int(self.random_state))
        self.frozen_ = frozen
        self.backbone_ = backbone
        self.class_order_ = self.classes_ = np.asarray([])
        self.memory_ = make_memory(
            self.policy, int(self.memory_size), random_state=int(self.rng_.integers(2**31 - 1))
        )
        self.n_experiences_ = 0
        self.experiences_, self.task_classes_ = [], {}
        self.fisher_, self.ewc_anchor_ = {}, {}
        self.teacher_ = self.net_ = None

    def _grow(self, new_classes, first, max_epochs, unfreeze):
        self.class_order_ = np.asarray(list(self.class_order_) + list(new_classes))
        self.classes_ = np.sort(self.class_order_)
        self._label_index_ = {c: i for i, c in enumerate(self.class_order_.tolist())}
        if not first:
            return grow_head(self.net_.module_, len(self.class_order_))
        head = make_head(self.backbone_.config.num_features, len(self.class_order_), self.head)
        module = TransferModule(None if self.frozen_ else self.backbone_, head)
        freezing, _, _ = unfreeze_callbacks(module, unfreeze, every=self.unfreeze_every)
        collate_train, collate_valid = Collate(train=True), Collate(train=False)
        self.net_ = ContinualNet(
            module=module, criterion=nn.CrossEntropyLoss,
            optimizer=resolve_optimizer(self.optimizer), lr=self.lr,
            optimizer__weight_decay=self.weight_decay, max_epochs=max_epochs,
            batch_size=self.batch_size, train_split=None, device=self.device_,
            callbacks=[("nan_guard", NaNLossGuard()), *freezing],
            iterator_train__shuffle=True, iterator_train__collate_fn=collate_train,
            iterator_valid__collate_fn=collate_valid, verbose=self.verbose,
        )
        collate_train.net = collate_valid.net = self.net_
        self.net_.initialize()
        grow_head(self.net_.module_, len(self.class_order_))  # a user head of other width

    def _net_inputs(self, items):
        """What the net takes: the items, or their cached embeddings when frozen."""
        if not self.frozen_:
            return items
        from tlestimators.features import compute_embeddings

        return compute_embeddings(self.backbone_, items, batch_size=max(self.batch_size, 64),
                                  device=self.device_, cache=self.cache, verbose=0)

    def _train_experience(self, items, y_idx, n_old, max_epochs):
        net, mem, ratio = self.net_, self.memory_, self.replay_ratio
        use_mem = len(mem) > 0 and (ratio is None or ratio > 0)
        all_items, all_y = items, y_idx
        if use_mem:
            all_items = concat_items(items, mem.items_)
            all_y = np.concatenate([y_idx, [self._label_index_[c] for c in mem.y_.tolist()]])
        n_mem = len(all_y) - len(y_idx)
        net.replay_ = (len(y_idx), n_mem, float(ratio)) if use_mem and ratio is not None else None
        terms = ContinualTerms()
        terms.temperature = float(self.distill_temperature)
        terms.class_weight = self._class_weight(all_y)
        if self.distill_weight > 0 and self.teacher_ is not None and n_old > 0:
            terms.teacher = copy.deepcopy(self.teacher_).to(self.device_)
            terms.distill_weight = float(self.distill_weight)
        if self.ewc_lambda > 0 and self.fisher_:
            terms.ewc_lambda = float(self.ewc_lambda)
            terms.anchors = {k: v.to(self.device_) for k, v in self.ewc_anchor_.items()}
            terms.fishers = {k: v.to(self.device_) for k, v in self.fisher_.items()}
        if self.replay_loss == "ace" and len(np.unique(y_idx)) > 1:
            terms.current_classes = torch.zeros(len(self.class_order_), dtype=torch.bool)
            terms.current_classes[np.unique(y_idx)] = True
        net.continual_ = terms
        net.set_params(lr=self.lr, max_epochs=max_epochs, batch_size=self.batch_size,
                       verbose=self.verbose, optimizer__weight_decay=self.weight_decay)
        net.initialize_optimizer()
        # replayed batches always mix in memory rows; a plain epoch may end on one row
        net.iterator_train__drop_last = net.replay_ is None and drop_last_batch(
            len(all_y), self.batch_size)
        try:
            net.partial_fit(TransferDataset(self._net_inputs(all_items), all_y), None)
        finally:  # nothing device-bound or experience-specific stays on the net
            net.continual_, net.replay_ = ContinualTerms(), None
        return n_mem

    def _class_weight(self, y_idx):
        """Per-output loss weights of one experience (``None``: unweighted)."""
        if self.class_weight is None:
            return None
        w = torch.ones(len(self.class_order_))
        if isinstance(self.class_weight, str):  # "balanced", over what this experience trains on
            present, counts = np.unique(y_idx, return_counts=True)
            w[present] = torch.as_tensor(len(y_idx) / (len(present) * counts), dtype=w.dtype)
        else:
            for label, weight in self.class_weight.items():
                if label in self._label_index_:
                    w[self._label_index_[label]] = float(weight)
        return w

    def _update_fisher(self, items, y_idx):
        """Add this experience's empirical Fisher to ``fisher_`` and re-anchor EWC."""
        module = self.net_.module_
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        loader = self.net_.get_iterator(TransferDataset(self._net_inputs(items), y_idx))
        self.fisher_ = accumulate_fisher(
            self.fisher_, empirical_fisher(module, loader, params, device=self.device_))
        self.ewc_anchor_ = {n: p.detach().cpu().clone() for n, p in params.items()}

    def _embed_for_memory(self, items):
        """Feature-space representation for herding: the current backbone's embeddings."""
        if self.frozen_:
            return self._net_inputs(items)
        from tlestimators.features import compute_embeddings

        return compute_embeddings(self.net_.module_.backbone, items,
                                  batch_size=max(self.batch_size, 64), device=self.device_,
                                  cache=False)

    # ------------------------------------------------------------------ state
    def __getstate__(self):
        state = self.__dict__.copy()
        if state.get("net_") is not None and not state.get("frozen_", True):
            state["backbone_"] = None  # it lives in net_.module_; re-linked on unpickling
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if state.get("net_") is not None and not state.get("frozen_", True):
            self.backbone_ = self.net_.module_.backbone
        if str(state.get("device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            # fitted on a GPU, loaded where there is none: embed, predict and go on
            # learning on the CPU (skorch maps the net's state there too)
            self.device_ = "cpu"
            if state.get("net_") is not None:
                self.net_.device = "cpu"

    # ------------------------------------------------------------------ prediction
    def _net_input(self, X):
        _, items = self._check_X(X, first=False)
        return TransferDataset(self._net_inputs(items))

    def _logits(self, X, task_id=None):
        """Logits with columns ordered as ``classes_``; ``-inf`` outside ``task_id``'s
        classes."""
        z = super()._logits(X)  # fitted check; outputs in class_order_
        if task_id is not None:
            if task_id not in self.task_classes_:
                raise ValueError(
                    f"task_id={task_id!r} was never given to partial_fit; known task ids: "
                    f"{sorted(self.task_classes_, key=str)}."
                )
            z[:, ~np.isin(self.class_order_, self.task_classes_[task_id])] = -np.inf
        return z[:, np.argsort(self.class_order_, kind="stable")]

    def decision_function(self, X, task_id=None):
        """Logits, one column per label of ``classes_`` (two classes: the 1-D score of
        ``classes_[1]``); ``task_id`` restricts them to that task's classes."""
        return self._decision_from_logits(self._logits(X, task_id))

    def predict_proba(self, X, task_id=None):
        """Class probabilities, columns in the order of ``classes_``; with ``task_id``,
        0 outside that task's classes."""
        return self._proba_from_logits(self._logits(X, task_id))

    def predict_log_proba(self, X, task_id=None):
        """Log of :meth:`predict_proba`, computed stably."""
        return self._log_proba_from_logits(self._logits(X, task_id))

    def predict(self, X, task_id=None):
        """Predicted labels (restricted to ``task_id``'s classes when given)."""
        return self._labels_from_logits(self._logits(X, task_id))

    def score(self, X, y, sample_weight=None, task_id=None):
        """Accuracy of :meth:`predict` on ``(X, y)``; labels not seen yet count as errors."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, task_id=task_id), sample_weight=sample_weight)
