"""Continual learning with a replay memory, EWC and learning-without-forgetting.

:class:`RehearsalLearner` learns a stream of experiences (tasks) one
``partial_fit`` call at a time. New classes grow the classifier while keeping the
weights of the old ones; a bounded replay memory of past examples (see
:mod:`tlestimators.memory`) is mixed into every update; optional elastic weight
consolidation (EWC) and knowledge distillation from the previous model (LwF) add
regularisers to the task loss. Training runs through a skorch net; the replay mixing
is a batch sampler, the regularisers are added in ``get_loss``.
"""

from __future__ import annotations

import copy
import numbers
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch import NeuralNet
from skorch.utils import to_device
from torch import nn

from tlestimators import data
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    Collate,
    ItemDataset,
    NaNLossGuard,
    TransferModule,
    check_positive_int,
    check_random_state_int,
    make_head,
    passthrough_collate,
    resolve_device,
    validate_feature_input,
)
from tlestimators.losses import distillation_loss, ewc_penalty
from tlestimators.memory import POLICIES, concat_items, make_memory

__all__ = ["RehearsalLearner"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class _ReplayBatchSampler:
    """Mini-batches of ``n_new_per_batch`` new examples topped up with replayed ones.

    Indices ``[0, n_new)`` are the experience's examples, ``[n_new, n_new + n_mem)`` the
    memory. One epoch is one shuffled pass over the new examples; the memory is walked
    through in shuffled order, reshuffled each time it is used up, so every stored
    example is replayed about equally often. Randomness comes from torch's global
    generator, which the estimator seeds for each experience.
    """

    def __init__(self, n_new, n_mem, batch_size, replay_ratio):
        self.n_new = int(n_new)
        self.n_mem = int(n_mem)
        n_replay = int(round(batch_size * replay_ratio)) if n_mem else 0
        self.n_replay = min(max(n_replay, 1 if n_mem and replay_ratio > 0 else 0), batch_size - 1)
        self.n_new_per_batch = batch_size - self.n_replay

    def __len__(self):
        return -(-self.n_new // self.n_new_per_batch)

    def __iter__(self):
        new = torch.randperm(self.n_new).tolist()
        need = len(self) * self.n_replay
        mem = []
        while len(mem) < need:
            mem.extend((torch.randperm(self.n_mem) + self.n_new).tolist())
        for b in range(len(self)):
            batch = new[b * self.n_new_per_batch:(b + 1) * self.n_new_per_batch]
            batch = batch + mem[b * self.n_replay:(b + 1) * self.n_replay]
            yield batch


class _ContinualTerms:
    """What ``get_loss`` adds to the cross-entropy: plain object, so skorch does not
    register the teacher as a trainable module of the net."""

    def __init__(self):
        self.teacher = None
        self.distill_weight = 0.0
        self.temperature = 2.0
        self.ewc_lambda = 0.0
        self.anchors = {}
        self.fishers = {}
        self.current_classes = None  # bool mask over outputs, for the asymmetric loss


class _ArrayDataset(torch.utils.data.Dataset):
    """Rows of a dense or CSR float array fetched a whole batch at a time.

    ``__getitems__`` lets the DataLoader slice the array once per batch instead of
    collating ``batch_size`` single rows, which is most of the per-step cost of a
    small network on feature vectors.
    """

    def __init__(self, X, y=None):
        self.X = X
        self.y = np.zeros(X.shape[0], dtype=np.int64) if y is None else np.asarray(y, np.int64)

    def __len__(self):
        return self.X.shape[0]

    def __getitem__(self, i):
        return self.__getitems__([i])

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        xb = self.X[idx]
        if hasattr(xb, "toarray"):
            xb = xb.toarray()
        return torch.from_numpy(np.asarray(xb, dtype=np.float32)), torch.from_numpy(self.y[idx])


def _make_dataset(items, y=None):
    is_array = isinstance(items, np.ndarray) and items.ndim == 2 and items.dtype.kind == "f"
    if is_array or hasattr(items, "tocsr"):
        return _ArrayDataset(items, y)
    return ItemDataset(items, y)


class _RehearsalNet(NeuralNet):
    """skorch net adding EWC and distillation terms and mixing replayed batches."""

    def initialize(self):
        super().initialize()
        if not hasattr(self, "continual_"):
            self.continual_ = _ContinualTerms()
        if not hasattr(self, "replay_"):
            self.replay_ = None  # (n_new, n_mem, ratio) while an experience trains
        if not hasattr(self, "raw_items_"):
            self.raw_items_ = False
        return self

    def infer(self, x, **fit_params):
        # the batch may be a dict (tokenised text): the module takes it whole
        return self.module_(to_device(x, self.device))

    def get_iterator(self, dataset, training=False):
        if isinstance(dataset, _ArrayDataset):
            collate = passthrough_collate
        elif self.raw_items_:
            collate = Collate(self.module_.backbone, train=training)
        else:
            collate = None
        if training and self.replay_ is not None:
            n_new, n_mem, ratio = self.replay_
            sampler = _ReplayBatchSampler(n_new, n_mem, self.batch_size, ratio)
            return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.batch_size, shuffle=training, collate_fn=collate
        )

    def get_loss(self, y_pred, y_true, X=None, training=False):
        terms = getattr(self, "continual_", None)
        if not training or terms is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        if terms.current_classes is not None:
            # ER-ACE: examples of this experience's classes compete only among those
            # classes, so they do not push the old classes' logits down; replayed
            # examples of other classes use every output.
            y_true = y_true.to(y_pred.device)
            mask = terms.current_classes.to(y_pred.device)
            own = mask[y_true]
            masked = y_pred.masked_fill(~mask, float("-inf"))
            logits = torch.where(own[:, None], masked, y_pred)
            loss = nn.functional.cross_entropy(logits, y_true)
        else:
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if terms.distill_weight > 0 and terms.teacher is not None:
            with torch.no_grad():
                t_logits = terms.teacher(to_device(X, self.device))
            d = distillation_loss(y_pred, t_logits, terms.temperature)
            self.history.record_batch("distill_loss", d.item())
            loss = loss + terms.distill_weight * d
        if terms.ewc_lambda > 0 and terms.anchors:
            names = [n for n in terms.anchors]
            params = dict(self.module_.named_parameters())
            pen = ewc_penalty(
                [params[n] for n in names],
                [terms.anchors[n] for n in names],
                [terms.fishers[n] for n in names],
            )
            self.history.record_batch("ewc_penalty", pen.item())
            loss = loss + terms.ewc_lambda * pen
        return loss


def _per_example_sq_grads(module, params, xb, yb):
    """``{name: sum over the batch of (d loss_i / d param)^2}`` for the given params."""
    from torch.func import functional_call, grad, vmap
    from torch.utils._pytree import tree_map

    detached = {n: p.detach() for n, p in params.items()}

    def loss_one(p, x, y):
        x = tree_map(lambda t: t.unsqueeze(0), x)
        out = functional_call(module, p, (x,), strict=False)
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    try:
        grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(detached, xb, yb)
        return {n: (g**2).sum(0) for n, g in grads.items()}
    except Exception:  # a module vmap cannot trace (data-dependent control flow)
        out = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(int(yb.shape[0])):
            xi = tree_map(lambda t, i=i: t[i : i + 1], xb)
            module.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(module(xi), yb[i : i + 1]).backward()
            for n, p in params.items():
                if p.grad is not None:
                    out[n] += p.grad.detach() ** 2
        return out


def _last_linear(head: nn.Module):
    """(parent, attribute name, layer) of the last ``nn.Linear`` in ``head``."""
    found = None
    for parent in head.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None and isinstance(head, nn.Linear):
        return None, None, head
    if found is None:
        raise ValueError(
            "head must end in an nn.Linear classifier layer (it grows as classes arrive); "
            f"got {type(head).__name__} without one."
        )
    return found


def _grow_linear(layer: nn.Linear, n_out: int) -> nn.Linear:
    """A copy of ``layer`` with ``n_out`` outputs; the old rows keep their weights."""
    new = nn.Linear(layer.in_features, n_out, bias=layer.bias is not None)
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        k = min(layer.out_features, n_out)
        new.weight[:k] = layer.weight[:k]
        if layer.bias is not None:
            new.bias[:k] = layer.bias[:k]
    return new


class RehearsalLearner(BackboneParamsMixin, ClassifierMixin, BaseEstimator):
    """Continual learner: one ``partial_fit`` per experience, with replay, EWC and LwF.

    Each call to :meth:`partial_fit` is one experience (task) of a stream. Classes that
    were never seen before extend the output layer while the weights of the old
    classes are kept (class-incremental learning); experiences that bring the same
    classes under a new input distribution work too (domain-incremental learning).
    Against forgetting, three tools can be combined:

    - **rehearsal**: a replay memory of at most ``memory_size`` past examples, chosen
      by ``policy``, is mixed into every mini-batch of the next experiences;
    - **EWC**: a quadratic penalty keeps parameters that were important for past
      experiences (diagonal Fisher information) close to their old values;
    - **distillation** (learning without forgetting): the outputs of the model as it
      was before the experience, on the old classes, are a soft target.

    Parameters
    ----------
    backbone : str or Backbone, default="mlp"
        Registry name or a :class:`~tlestimators.Backbone` instance.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (``"mlp"``: ``hidden_sizes``,
        ``dropout``, ...; ``in_features`` is taken from ``X``).
    unfreeze : {"all", "head"} or int, default="all"
        What is trained. ``"all"``: the backbone and the head. ``"head"``: the backbone
        is frozen; its embeddings come from :func:`~tlestimators.features.compute_embeddings`
        (cached, so replayed examples are never re-embedded) and only the head learns.
        ``k`` (int): the last ``k`` layer groups of the backbone and the head
        (``0`` is ``"head"``).
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
        ``"ce"``: plain cross-entropy on new and replayed examples alike. ``"ace"``:
        asymmetric cross-entropy (ER-ACE): an example of a class of the current
        experience is scored only against the current experience's classes, so learning
        new classes does not push the old classes' outputs down; replayed examples of
        other classes use every output. It counters the bias towards the newest classes
        in class-incremental streams and is plain cross-entropy in domain-incremental ones.
        An experience with a single class is trained with plain cross-entropy (the masked
        loss would be 0 there).
    ewc_lambda : float, default=0.0
        Weight of the EWC penalty ``0.5 * sum F (theta - theta*)^2``; 0 disables it.
    distill_weight : float, default=0.0
        Weight of the distillation loss from the previous model; 0 disables it.
    distill_temperature : float, default=2.0
        Softening temperature of the distillation.
    lr : float, default=1e-3
        Learning rate.
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
        Optimiser, re-created at the start of every experience.
    weight_decay : float, default=0.0
        Weight decay of the optimiser.
    epochs_per_experience : int, default=5
        Passes over each experience's data.
    batch_size : int, default=32
        Mini-batch size.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    random_state : int, RandomState or None, default=None
        Seeds the head initialisation, the batch order, dropout and the memory; the
        same seed gives the same predictions.
    verbose : int, default=0
        Print skorch's epoch log.
    cache : bool or path-like, default=True
        Feature cache of the frozen backbone (``unfreeze="head"``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen so far, sorted (the columns of :meth:`predict_proba`).
    class_order_ : ndarray of shape (n_classes,)
        Labels in the order they arrived: the order of the classifier's outputs.
    memory_ : ReplayMemory
        The replay memory (raw examples, labels, task ids); part of the fitted state.
    net_ : skorch.NeuralNet
        The trained net; ``net_.history`` holds every epoch of every experience.
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
    that is still being trained; with a frozen backbone the replayed examples' embeddings
    come from the feature cache. ``partial_fit`` is transactional: when it raises, the
    fitted state is the one before the call. EWC here is online EWC: the Fisher
    diagonals of all past experiences are summed and anchored at the parameters after
    the last experience; each experience's Fisher is the mean over its examples of the
    squared per-example gradient of the log-likelihood of the true label (the
    empirical Fisher). With a
    ``task_id`` at ``partial_fit`` and ``predict``, predictions are restricted to that
    task's classes (task-incremental evaluation with a shared head).

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
    >>> clf = RehearsalLearner("mlp", memory_size=40, epochs_per_experience=3,
    ...                        random_state=0)
    >>> clf = clf.partial_fit(X[y < 2], y[y < 2]).partial_fit(X[y >= 2], y[y >= 2])
    >>> clf.classes_.tolist(), len(clf.memory_)
    ([0, 1, 2, 3], 40)
    """

    def __init__(
        self,
        backbone="mlp",
        backbone_kwargs=None,
        *,
        unfreeze="all",
        head="linear",
        memory_size=200,
        policy="reservoir",
        replay_ratio=0.5,
        replay_loss="ce",
        ewc_lambda=0.0,
        distill_weight=0.0,
        distill_temperature=2.0,
        lr=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        epochs_per_experience=5,
        batch_size=32,
        device="auto",
        random_state=None,
        verbose=0,
        cache=True,
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.unfreeze = unfreeze
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
        self.epochs_per_experience = epochs_per_experience
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.cache = cache

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        check_positive_int(self.memory_size, "memory_size", minimum=0)
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {sorted(POLICIES)}, got {self.policy!r}.")
        r = self.replay_ratio
        if r is not None and (
            isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0 <= r < 1
        ):
            raise ValueError(f"replay_ratio must be None or a float in [0, 1), got {r!r}.")
        if self.replay_loss not in ("ce", "ace"):
            raise ValueError(f"replay_loss must be 'ce' or 'ace', got {self.replay_loss!r}.")
        for name in ("ewc_lambda", "distill_weight", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"{name} must be a float >= 0, got {v!r}.")
        for name in ("lr", "distill_temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a float > 0, got {v!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}."
            )
        check_positive_int(self.epochs_per_experience, "epochs_per_experience")
        check_positive_int(self.batch_size, "batch_size")
        u = self.unfreeze
        is_int = isinstance(u, numbers.Integral) and not isinstance(u, bool)
        if not (u in ("all", "head") or (is_int and u >= 0)):
            raise ValueError(f"unfreeze must be 'all', 'head' or an int >= 0, got {u!r}.")
        if not (isinstance(self.head, nn.Module) or self.head in ("linear", "mlp")):
            raise ValueError(f"head must be 'linear', 'mlp' or an nn.Module, got {self.head!r}.")

    @property
    def _frozen(self):
        return self.unfreeze == "head" or (
            not isinstance(self.unfreeze, str) and int(self.unfreeze) == 0
        )

    def _check_X(self, X, first):
        """Validated items; on later calls, the same modality and shape as before."""
        if first:
            modality = self._backbone_modality()
            items = validate_feature_input(self, X, modality, reset=True)
            n_features = items.shape[1] if modality == "features" else None
            backbone = self._make_backbone(n_features=n_features)
            return backbone, items
        backbone = self.backbone_
        items = validate_feature_input(self, X, backbone.config.modality, reset=False)
        if isinstance(items, np.ndarray) and self.item_shape_ is not None:
            if items.shape[1:] != self.item_shape_:
                raise ValueError(
                    f"X holds items of shape {items.shape[1:]}, but earlier experiences had "
                    f"{self.item_shape_}; give every experience images of one size."
                )
        return backbone, items

    def _check_y(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "partial_fit needs the labels of the experience."
            )
        y = column_or_1d(np.asarray(y), warn=True)
        check_classification_targets(y)
        if y.shape[0] != n:
            raise ValueError(f"X has {n} samples but y has {y.shape[0]}; they must match.")
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise ValueError("y contains NaN; every example needs a label.")
        return y

    def _new_classes(self, y, classes, first):
        """Labels to append to ``class_order_``, after checking ``classes`` against ``y``."""
        known = [] if first else list(self.class_order_)
        y_labels = np.unique(y)
        if classes is not None:
            classes = np.unique(column_or_1d(np.asarray(classes)))
            missing = np.setdiff1d(y_labels, classes)
            if missing.size:
                raise ValueError(
                    f"y holds labels {missing.tolist()} that are not in classes="
                    f"{classes.tolist()}; classes must list every label of y."
                )
            if known:
                gone = np.setdiff1d(np.asarray(known), classes)
                if gone.size:
                    raise ValueError(
                        f"classes={classes.tolist()} omits labels {gone.tolist()} seen in "
                        "earlier experiences; classes must include every label seen so far."
                    )
            candidates = classes
        else:
            candidates = y_labels
        if known:
            k = np.asarray(known)
            if (k.dtype.kind in "US") != (candidates.dtype.kind in "US"):
                raise ValueError(
                    f"labels of this experience ({candidates.dtype}) do not mix with the "
                    f"labels seen before ({k.dtype}); use one label type for the stream."
                )
        known_set = set(known)
        return [c for c in candidates.tolist() if c not in known_set]

    # ------------------------------------------------------------------ state
    def _fitted_keys(self):
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]

    def _snapshot(self):
        return {k: copy.deepcopy(getattr(self, k)) for k in self._fitted_keys()}

    def _restore(self, snap):
        for k in self._fitted_keys():
            if k not in snap:
                delattr(self, k)
        for k, v in snap.items():
            setattr(self, k, v)

    def __getstate__(self):
        state = self.__dict__.copy()
        if state.get("net_") is not None and not state.get("frozen_", True):
            # the trained backbone lives in net_.module_; re-linked in __setstate__
            state["backbone_"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if state.get("net_") is not None and not state.get("frozen_", True):
            self.backbone_ = self.net_.module_.backbone

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
        classes : array-like, default=None
            Labels to create outputs for now (may include labels absent from ``y``).
        task_id : hashable, default=None
            Task identifier (task-incremental streams).

        Returns
        -------
        self
        """
        snap = self._snapshot()
        for k in self._fitted_keys():
            delattr(self, k)
        try:
            return self._partial_fit(X, y, classes, task_id)
        except BaseException:
            self._restore(snap)
            raise

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
            On an empty experience, a change of modality or number of features,
            ``classes`` that contradict the labels, or a memory too small for one slot
            per class under ``policy="class_balanced"``/``"herding"``. The fitted state
            is then left as it was before the call.
        """
        snap = self._snapshot() if hasattr(self, "net_") else None
        try:
            return self._partial_fit(X, y, classes, task_id)
        except BaseException:
            if snap is None:
                for k in self._fitted_keys():
                    delattr(self, k)
            else:
                self._restore(snap)
            raise

    def _partial_fit(self, X, y, classes, task_id):
        self._check_params()
        first = not hasattr(self, "net_")
        if not first and self.policy != self.memory_.policy:
            raise ValueError(
                f"policy changed from {self.memory_.policy!r} to {self.policy!r} mid-stream; "
                "call fit to start a new stream with the new policy."
            )
        if not first and self._frozen != self.frozen_:
            raise ValueError(
                f"unfreeze changed to {self.unfreeze!r} mid-stream between a frozen and a "
                "trained backbone; call fit to start a new stream."
            )
        backbone, items = self._check_X(X, first)
        n = data.num_samples(items)
        y = self._check_y(y, n)
        new_classes = self._new_classes(y, classes, first)
        n_classes_after = (0 if first else len(self.class_order_)) + len(new_classes)
        if self.memory_size and self.policy in ("class_balanced", "herding"):
            if self.memory_size < n_classes_after:
                raise ValueError(
                    f"memory_size={self.memory_size} is smaller than the number of classes "
                    f"({n_classes_after}) under policy={self.policy!r}, which keeps at least "
                    "one example per class; raise memory_size or use policy='reservoir'."
                )
        t0 = time.perf_counter()
        if first:
            self._initialize(backbone, items)
        self.memory_.capacity = int(self.memory_size)
        seed = int(self.rng_.integers(2**31 - 1))
        devices = [torch.device(self.device_).index or 0] if self.device_.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            n_old = len(self.class_order_)
            if new_classes:
                self._grow(new_classes, first)
            y_idx = self._encode(y)
            n_replayed = self._train_experience(items, y_idx, n_old)
            if self.ewc_lambda > 0:
                self._update_fisher(items, y_idx)
            if self.distill_weight > 0:
                self.teacher_ = copy.deepcopy(self.net_.module_).cpu().eval()
                for p in self.teacher_.parameters():
                    p.requires_grad_(False)
        embed = self._embed_for_memory if self.memory_.requires_embeddings else None
        self.memory_.update(items, y, task_ids=task_id, embed=embed)
        if task_id is not None:
            prev = self.task_classes_.get(task_id, np.asarray([], dtype=y.dtype))
            self.task_classes_[task_id] = np.union1d(prev, np.unique(y))
        self.n_experiences_ += 1
        self.experiences_.append(
            {
                "n_samples": int(n),
                "new_classes": list(new_classes),
                "n_replayed": int(n_replayed),
                "fit_time": time.perf_counter() - t0,
                "task_id": task_id,
            }
        )
        return self

    def _initialize(self, backbone, items):
        self.device_ = resolve_device(self.device)
        self.rng_ = np.random.default_rng(check_random_state_int(self.random_state))
        self.frozen_ = bool(self._frozen)
        self.backbone_ = backbone
        self.item_shape_ = (
            tuple(items.shape[1:]) if isinstance(items, np.ndarray) and items.ndim > 2 else None
        )
        if not self.frozen_:
            self._set_trainable(backbone)
        self.class_order_ = np.asarray([])
        self.classes_ = np.asarray([])
        self.memory_ = make_memory(
            self.policy, int(self.memory_size), random_state=int(self.rng_.integers(2**31 - 1))
        )
        self.n_experiences_ = 0
        self.experiences_ = []
        self.task_classes_ = {}
        self.fisher_ = {}
        self.ewc_anchor_ = {}
        self.teacher_ = None
        self.net_ = None

    def _set_trainable(self, backbone):
        if self.unfreeze == "all":
            return
        groups = backbone.layer_groups()
        k = int(self.unfreeze)
        if k > len(groups):
            raise ValueError(
                f"unfreeze={k} but backbone {backbone.config.name!r} has {len(groups)} layer "
                f"groups; use an int <= {len(groups)} or 'all'."
            )
        for g in groups[: len(groups) - k]:
            for p in g:
                p.requires_grad_(False)

    def _grow(self, new_classes, first):
        order = list(self.class_order_) + list(new_classes)
        self.class_order_ = np.asarray(order)
        self.classes_ = np.sort(self.class_order_)
        self._label_index_ = {c: i for i, c in enumerate(order)}
        n_out = len(order)
        if first:
            head = make_head(self.backbone_.config.num_features, n_out, self.head)
            module = head if self.frozen_ else TransferModule(self.backbone_, head)
            net = _RehearsalNet(
                module=module,
                criterion=nn.CrossEntropyLoss,
                optimizer=_OPTIMIZERS[self.optimizer],
                lr=self.lr,
                optimizer__weight_decay=self.weight_decay,
                max_epochs=self.epochs_per_experience,
                batch_size=self.batch_size,
                train_split=None,
                device=self.device_,
                callbacks=[("nan_guard", NaNLossGuard())],
                verbose=self.verbose,
            )
            net.initialize()
            net.raw_items_ = not self.frozen_
            self.net_ = net
            head = net.module_ if self.frozen_ else net.module_.head
        else:
            head = self.net_.module_ if self.frozen_ else self.net_.module_.head
        parent, name, layer = _last_linear(head)
        if layer.out_features != n_out:
            grown = _grow_linear(layer, n_out)
            if parent is None:  # the head is a bare nn.Linear
                if self.frozen_:
                    self.net_.module_ = grown
                else:
                    self.net_.module_.head = grown
            else:
                setattr(parent, name, grown)

    def _encode(self, y):
        idx = self._label_index_
        return np.asarray([idx[c] for c in y.tolist()], dtype=np.int64)

    def _embeddings(self, items):
        from tlestimators.features import compute_embeddings

        return compute_embeddings(
            self.backbone_, items, batch_size=max(self.batch_size, 64), device=self.device_,
            cache=self.cache, verbose=0,
        )

    def _net_inputs(self, items):
        return self._embeddings(items) if self.frozen_ else items

    def _train_experience(self, items, y_idx, n_old):
        net = self.net_
        mem = self.memory_
        ratio = self.replay_ratio
        use_mem = len(mem) > 0 and (ratio is None or ratio > 0)
        n_new = data.num_samples(items)
        if use_mem:
            all_items = concat_items(items, mem.items_)
            all_y = np.concatenate([y_idx, self._encode(mem.y_)])
        else:
            all_items, all_y = items, y_idx
        dataset = _make_dataset(self._net_inputs(all_items), all_y)
        n_mem = len(all_y) - n_new
        net.replay_ = (n_new, n_mem, float(ratio)) if use_mem and ratio is not None else None
        terms = _ContinualTerms()
        terms.temperature = float(self.distill_temperature)
        if self.distill_weight > 0 and self.teacher_ is not None and n_old > 0:
            terms.teacher = copy.deepcopy(self.teacher_).to(self.device_)
            terms.distill_weight = float(self.distill_weight)
        if self.ewc_lambda > 0 and self.fisher_:
            terms.ewc_lambda = float(self.ewc_lambda)
            terms.anchors = {k: v.to(self.device_) for k, v in self.ewc_anchor_.items()}
            terms.fishers = {k: v.to(self.device_) for k, v in self.fisher_.items()}
        if self.replay_loss == "ace" and len(np.unique(y_idx)) > 1:
            # with a single class the masked loss is 0 and that class could never be
            # learnt: such an experience falls back to plain cross-entropy
            mask = torch.zeros(len(self.class_order_), dtype=torch.bool)
            mask[np.unique(y_idx)] = True
            terms.current_classes = mask
        net.continual_ = terms
        net.set_params(
            lr=self.lr, max_epochs=self.epochs_per_experience, batch_size=self.batch_size,
            verbose=self.verbose, optimizer__weight_decay=self.weight_decay,
        )
        net.initialize_optimizer()
        try:
            net.partial_fit(dataset, None)
        finally:
            # nothing device-bound or experience-specific stays on the net
            net.continual_ = _ContinualTerms()
            net.replay_ = None
        return n_mem

    def _update_fisher(self, items, y_idx):
        """Add this experience's diagonal Fisher to ``fisher_`` and re-anchor.

        The empirical Fisher is the mean over the experience's examples of the squared
        per-example gradient of the log-likelihood of the true label (computed with
        ``torch.func.vmap``). Squaring a mini-batch's mean gradient instead, as some
        libraries do, nearly vanishes once the model fits the data, and the penalty
        then holds nothing.
        """
        module = self.net_.module_
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        dataset = _make_dataset(self._net_inputs(items), y_idx)
        loader = self.net_.get_iterator(dataset, training=False)
        was_training = module.training
        module.eval()
        n_seen = 0
        try:
            for xb, yb in loader:
                xb = to_device(xb, self.device_)
                yb = yb.to(self.device_)
                for n, g2 in _per_example_sq_grads(module, params, xb, yb).items():
                    fisher[n] += g2
                n_seen += int(yb.shape[0])
        finally:
            module.zero_grad(set_to_none=True)
            module.train(was_training)
        new_fisher = {}
        for n, f in fisher.items():
            f = (f / max(n_seen, 1)).cpu()
            old = self.fisher_.get(n)
            if old is not None:
                f[tuple(slice(0, s) for s in old.shape)] += old
            new_fisher[n] = f
        self.fisher_ = new_fisher
        self.ewc_anchor_ = {n: p.detach().cpu().clone() for n, p in params.items()}

    def _embed_for_memory(self, items):
        """Feature-space representation for herding: the current backbone's embeddings."""
        if self.frozen_:
            return self._embeddings(items)
        from tlestimators.features import compute_embeddings

        return compute_embeddings(
            self.net_.module_.backbone, items, batch_size=max(self.batch_size, 64),
            device=self.device_, cache=False,
        )

    # ------------------------------------------------------------------ prediction
    def _logits(self, X, task_id=None):
        check_is_fitted(self, "net_")
        _, items = self._check_X(X, first=False)
        out = self.net_.forward(_make_dataset(self._net_inputs(items)), training=False)
        logits = out.float().cpu().numpy()
        if task_id is not None:
            if task_id not in self.task_classes_:
                raise ValueError(
                    f"task_id={task_id!r} was never given to partial_fit; known task ids: "
                    f"{sorted(self.task_classes_, key=str)}."
                )
            allowed = np.isin(self.class_order_, self.task_classes_[task_id])
            logits[:, ~allowed] = -np.inf
        return logits

    def decision_function(self, X, task_id=None):
        """Logits, one column per label of ``classes_``; for two classes, as in
        scikit-learn, the 1-D score of ``classes_[1]`` (the difference of the logits)."""
        z = self._scores(X, task_id)
        if z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    def _scores(self, X, task_id=None):
        logits = self._logits(X, task_id)
        return logits[:, self._columns()]

    def _columns(self):
        order = {c: i for i, c in enumerate(self.class_order_.tolist())}
        return np.asarray([order[c] for c in self.classes_.tolist()], dtype=np.int64)

    def predict_proba(self, X, task_id=None):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like or list
            Input.
        task_id : hashable, default=None
            Restrict to the classes of this task (probability 0 elsewhere).

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        z = self._scores(X, task_id)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X, task_id=None):
        """Predicted labels (restricted to ``task_id``'s classes when given)."""
        z = self._scores(X, task_id)
        return self.classes_[np.argmax(z, axis=1)]

    def score(self, X, y, sample_weight=None, task_id=None):
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, task_id=task_id), sample_weight=sample_weight)

