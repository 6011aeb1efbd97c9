"""DANN: domain-adversarial adaptation to an unlabeled target domain.

A feature extractor (the backbone, optionally followed by a bottleneck) feeds a label
head and, through a gradient-reversal layer, a domain classifier. Minimising the
label loss on labeled (source) samples while the reversed domain loss pushes the
features to fool the domain classifier gives features that predict the label and
look alike in both domains (Ganin et al., JMLR 2016).

The estimator follows sklearn's semi-supervised convention: rows with ``y == -1`` are
unlabeled target-domain samples, so Pipeline, GridSearchCV and cross-validation pass
them through untouched. skada's ``sample_domain`` (source > 0, target < 0) may be
given as fit metadata for several sources or labeled target samples.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import unpack_data
from skorch.utils import to_device
from torch import nn

from tlestimators import data
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    NaNLossGuard,
    check_positive_int,
    check_random_state_int,
    make_head,
    resolve_device,
    set_frozen_norm_eval,
    torch_seed,
)
from tlestimators.losses import dann_loss, gradient_reversal
from tlestimators.model_selection import unlabeled_mask

__all__ = [
    "DANNAdapter",
    "DANNModule",
    "DANNLambdaSchedule",
    "DANNLRDecay",
    "dann_lambda",
    "dann_lr_factor",
]


# --------------------------------------------------------------------------- schedules
def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """The paper's adaptation factor ``2 / (1 + exp(-gamma p)) - 1`` for progress ``p`` in [0, 1].

    It rises from 0 to ~1 so the noisy early domain signal does not swamp the label
    loss (Ganin et al., 2016, Sec. 5.2.2).
    """
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr_factor(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The paper's learning-rate annealing ``1 / (1 + alpha p) ** beta``."""
    return 1.0 / (1.0 + alpha * p) ** beta


class _Constant:
    def __call__(self, p):
        return 1.0


def _resolve_schedule(schedule, name, default):
    if schedule in ("dann", None) and default is not None:
        return default if schedule == "dann" else _Constant()
    if schedule == "constant" or schedule is None:
        return _Constant()
    if isinstance(schedule, str) or not callable(schedule):
        raise ValueError(
            f"{name} must be 'dann', 'constant' or a callable progress -> factor, got "
            f"{schedule!r}."
        )
    return schedule


class DANNLRDecay:
    """``lr_lambda`` for ``LambdaLR`` stepping once per batch: ``schedule(step / total_steps)``.

    Picklable (no closures), so fitted estimators pickle and clone.
    """

    def __init__(self, total_steps: int, schedule=dann_lr_factor):
        self.total_steps = max(int(total_steps), 1)
        self.schedule = schedule

    def __call__(self, step: int) -> float:
        return float(self.schedule(min(step / self.total_steps, 1.0)))


class DANNLambdaSchedule(Callback):
    """Sets the reversal strength ``net.lambda_ = lambda_max * schedule(p)`` before each
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


class _EpochDomainStats(Callback):
    """Averages the per-batch task/domain losses and domain accuracy into the epoch row,
    so ``history_[:, 'domain_loss']`` reads like skorch's ``train_loss``."""

    KEYS = ("task_loss", "domain_loss", "domain_acc", "lambda", "lr")

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1, "batches"]
        for key in self.KEYS:
            vals = [b[key] for b in batches if key in b]
            if vals:
                net.history.record(key, float(np.mean(vals)))


# --------------------------------------------------------------------------- data
class _DomainPairDataset(torch.utils.data.Dataset):
    """Index ``i`` -> one source and one target sample (``balanced=True``), so every
    batch is half source, half target whatever the domain sizes: a small target is
    cycled through instead of being drowned by a large source.

    ``__getitems__`` gathers a whole batch at once (one CSR slice instead of one per
    row), which torch's DataLoader uses when it is defined.
    """

    def __init__(self, items, y, is_target, balanced=True):
        self.items = items
        self.y = np.asarray(y, dtype=np.int64)
        self.is_target = np.asarray(is_target, dtype=bool)
        self.balanced = balanced
        self.src = np.flatnonzero(~self.is_target)
        self.tgt = np.flatnonzero(self.is_target)

    def __len__(self):
        if self.balanced:
            return max(len(self.src), len(self.tgt))
        return len(self.y)

    def indices(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        if not self.balanced:
            return idx
        return np.concatenate([self.src[idx % len(self.src)], self.tgt[idx % len(self.tgt)]])

    def __getitems__(self, idx):
        rows = self.indices(idx)
        items = data.take(self.items, rows)
        if hasattr(items, "toarray"):
            items = np.asarray(items.toarray())
        target = np.stack([self.y[rows], self.is_target[rows].astype(np.int64)], axis=1)
        return items, target

    def __getitem__(self, i):
        return self.__getitems__([i])


class _EvalDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return data.num_samples(self.items)

    def __getitems__(self, idx):
        items = data.take(self.items, np.asarray(idx, dtype=np.int64))
        if hasattr(items, "toarray"):
            items = np.asarray(items.toarray())
        return items, np.zeros((len(idx), 2), dtype=np.int64)

    def __getitem__(self, i):
        return self.__getitems__([i])


class _FeaturePreprocess:
    """``preprocess`` for cached embeddings (frozen-backbone mode)."""

    def preprocess(self, items, train=False):
        return torch.as_tensor(np.asarray(items), dtype=torch.float32)


class _BatchCollate:
    """``collate_fn`` for the pre-gathered batches of the datasets above."""

    def __init__(self, preprocessor, train):
        self.preprocessor = preprocessor
        self.train = train

    def __call__(self, batch):
        items, target = batch
        return self.preprocessor.preprocess(items, train=self.train), torch.as_tensor(target)


# --------------------------------------------------------------------------- module
class DANNModule(nn.Module):
    """``features = bottleneck(backbone(x))``; ``head(features)`` gives class logits and
    ``domain_head(gradient_reversal(features))`` one domain logit (target vs source).

    ``backbone`` is ``None`` in frozen-backbone mode (the inputs are cached embeddings).
    """

    def __init__(self, backbone, bottleneck, head, domain_head):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = bottleneck
        self.head = head
        self.domain_head = domain_head

    def features(self, x):
        if self.backbone is not None:
            x = self.backbone(x)
        return self.bottleneck(x)

    def forward(self, x):
        return self.head(self.features(x))

    def domain_logits(self, features, coeff=1.0):
        return self.domain_head(gradient_reversal(features, coeff))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone is not None:
            set_frozen_norm_eval(self.backbone)
        return self


def _make_domain_head(in_features, domain_head):
    if isinstance(domain_head, nn.Module):
        import copy

        return copy.deepcopy(domain_head)
    if domain_head == "linear":
        return nn.Linear(in_features, 1)
    if domain_head == "mlp":
        hidden = min(1024, max(64, in_features))
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )
    raise ValueError(
        "domain_head must be 'linear', 'mlp' or an nn.Module returning 1 logit (or 2), got "
        f"{domain_head!r}."
    )


class _DANNNet(NeuralNet):
    """skorch net whose training step adds the reversed domain loss to the task loss.

    The target tensor of each batch is ``(N, 2)``: the class index (-1 when unlabeled)
    and the domain (1 = target).
    """

    lambda_ = 0.0

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        yi = to_device(yi, self.device)
        labels, is_target = yi[:, 0], yi[:, 1]
        feats = self.module_.features(to_device(Xi, self.device))
        logits = self.module_.head(feats)
        labeled = labels >= 0
        if labeled.any():
            task = self.criterion_(logits[labeled], labels[labeled])
        else:  # a batch of unlabeled targets only (unbalanced sampling): no label signal
            task = logits.sum() * 0.0
        # The domain classifier always learns at full strength; the reversal scales
        # only what reaches the features (the schedule in the GRL, as in Ganin's code).
        dom_logits = self.module_.domain_logits(feats, self.lambda_)
        dom = dann_loss(dom_logits, is_target)
        loss = task + dom
        loss.backward()
        with torch.no_grad():
            if dom_logits.ndim == 2 and dom_logits.shape[1] == 2:
                pred_t = dom_logits.argmax(1)
            else:
                pred_t = (dom_logits.reshape(-1) > 0).long()
            acc = (pred_t == is_target).float().mean().item()
        self.history.record_batch("task_loss", task.item())
        self.history.record_batch("domain_loss", dom.item())
        self.history.record_batch("domain_acc", acc)
        self.history.record_batch("lambda", float(self.lambda_))
        self.history.record_batch("lr", float(self.optimizer_.param_groups[0]["lr"]))
        return {"loss": loss, "y_pred": logits}


_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


# --------------------------------------------------------------------------- estimator
class DANNAdapter(ClassifierMixin, BackboneParamsMixin, BaseEstimator):
    """Domain-adversarial neural network (DANN) adapting a backbone to an unlabeled
    target domain.

    ``fit(X, y)`` takes source and target samples together: rows with ``y == -1``
    are unlabeled target-domain samples (sklearn's semi-supervised convention). A
    feature extractor is trained so that a label head predicts the source labels
    while a domain classifier, fed through a gradient-reversal layer, cannot tell
    source from target.

    Parameters
    ----------
    backbone : str or Backbone, default="mlp"
        Registry name (``"mlp"``, ``"efficientnet_lite0"``, ``"minilm"``, ...) or a
        :class:`~tlestimators.Backbone` instance (deep-copied).
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone`; e.g.
        ``{"hidden_sizes": (50,), "activation": "sigmoid"}`` gives the paper's
        5000-50-2 network for the ``mlp`` backbone.
    unfreeze : {"all", "head", "gradual"} or int, default="all"
        Which backbone layer groups are trained, as in FineTuneClassifier: all;
        ``"head"`` (frozen backbone, alias ``"none"``: its embeddings are computed
        once through the feature cache and only the bottleneck and the heads are
        trained, which is fast); the last ``k`` groups of ``backbone.layer_groups()``;
        or ``"gradual"`` (one more group from the output side each epoch, through
        :class:`tlestimators.callbacks.GradualUnfreezing`).
    bottleneck : "auto", int or None, default="auto"
        Width of a trainable ``Linear + ReLU`` layer between the backbone and the
        heads. ``"auto"``: 256 with a frozen backbone (something must be trainable
        for the adversarial game to move the features), none otherwise.
    head : {"linear", "mlp"} or nn.Module, default="linear"
        Label classifier on the features.
    domain_head : {"mlp", "linear"} or nn.Module, default="mlp"
        Domain classifier on the reversed features; it must return one logit per
        sample (binary cross-entropy with logits; positive = target) or two
        (softmax cross-entropy). ``"mlp"`` has two hidden ReLU layers (as in the
        paper's image experiments); ``"linear"`` is the paper's shallow regressor.
    lambda_max : float, default=1.0
        Final strength of the reversed domain gradient.
    lambda_schedule : {"dann", "constant"} or callable, default="dann"
        ``p -> factor`` (``p`` = training progress in [0, 1]) multiplied by
        ``lambda_max``: ``"dann"`` is the paper's ``2 / (1 + exp(-10 p)) - 1``.
    lr : float, default=0.01
        Initial learning rate.
    lr_schedule : {"dann", "constant"} or callable, default="dann"
        ``p -> lr factor``: ``"dann"`` is the paper's ``1 / (1 + 10 p) ** 0.75``,
        applied every batch through skorch's :class:`~skorch.callbacks.LRScheduler`.
    backbone_lr_mult : float or "auto", default="auto"
        Learning-rate factor of the trained backbone parameters (skorch
        ``optimizer__param_groups``). ``"auto"``: 0.1 for pretrained weights (the
        paper's fine-tuning setting), 1.0 for randomly initialised ones.
    optimizer : {"sgd", "adam", "adamw"}, default="sgd"
        SGD uses ``momentum``.
    momentum : float, default=0.9
    weight_decay : float, default=0.0
    max_epochs : int, default=20
        Passes over the larger of the two domains.
    batch_size : int, default=64
        Samples per step; with ``balanced=True`` half come from each domain.
    balanced : bool, default=True
        Domain-balanced batches (each step pairs source and target samples). With
        ``False`` batches are drawn from the pooled data.
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds the heads' initialisation and the batch order.
    verbose : int, default=0
    cache : bool or path-like, default=True
        Feature cache for a frozen backbone (see
        :func:`tlestimators.features.compute_embeddings`).

    Attributes
    ----------
    classes_ : ndarray
        Class labels seen in the labeled rows.
    n_features_in_ : int
        Only for the ``features`` modality.
    backbone_ : Backbone
        The (adapted or frozen) backbone.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is a :class:`DANNModule`.
    history_ : skorch.History
        Per epoch: ``train_loss`` (task + domain), ``task_loss``, ``domain_loss``,
        ``domain_acc`` (domain-classifier accuracy on the training batches),
        ``lambda`` and ``lr``.
    domain_accuracy_ : float
        Domain-classifier accuracy over the last epoch. Near 0.5 means the
        features no longer reveal the domain; near 1.0 means adaptation failed.
    n_source_, n_target_ : int
        Source and target rows seen in ``fit``.

    See Also
    --------
    FineTuneClassifier : supervised fine-tuning, when there is no target data.
    tlestimators.metrics.DeepEmbeddedValidationScorer : choose ``lambda_max``
        without target labels.
    tlestimators.model_selection.SourceTargetKFold : CV folds keeping both domains.

    Notes
    -----
    The loss is ``L_task(source) + L_domain`` where the domain classifier sees the
    features through a gradient-reversal layer of strength ``lambda_p``: the
    classifier learns at full rate while the features receive ``-lambda_p`` times its
    gradient (the schedule lives in the reversal layer, as in the authors' code).
    Several sources (``sample_domain`` > 0 with different values) are pooled as one
    "source" class for the domain classifier.

    References
    ----------
    .. [1] Y. Ganin, E. Ustinova, H. Ajakan, P. Germain, H. Larochelle, F. Laviolette,
       M. Marchand and V. Lempitsky. "Domain-Adversarial Training of Neural
       Networks". JMLR 17(59), 2016.
    .. [2] Y. Ganin and V. Lempitsky. "Unsupervised Domain Adaptation by
       Backpropagation". ICML 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import DANNAdapter
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(60, 5)).astype("float32"); ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + 1.0                                      # shifted target, no labels
    >>> X = np.vstack([Xs, Xt]); y = np.r_[ys, -np.ones(60, dtype=int)]
    >>> clf = DANNAdapter(backbone_kwargs={"hidden_sizes": (16,)}, max_epochs=5,
    ...                   random_state=0).fit(X, y)
    >>> clf.predict(Xt).shape
    (60,)
    """

    def __init__(
        self,
        backbone="mlp",
        backbone_kwargs=None,
        unfreeze="all",
        bottleneck="auto",
        head="linear",
        domain_head="mlp",
        lambda_max=1.0,
        lambda_schedule="dann",
        lr=0.01,
        lr_schedule="dann",
        backbone_lr_mult="auto",
        optimizer="sgd",
        momentum=0.9,
        weight_decay=0.0,
        max_epochs=20,
        batch_size=64,
        balanced=True,
        device="auto",
        random_state=None,
        verbose=0,
        cache=True,
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.unfreeze = unfreeze
        self.bottleneck = bottleneck
        self.head = head
        self.domain_head = domain_head
        self.lambda_max = lambda_max
        self.lambda_schedule = lambda_schedule
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.backbone_lr_mult = backbone_lr_mult
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.balanced = balanced
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.cache = cache

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        check_positive_int(self.max_epochs, "max_epochs")
        check_positive_int(self.batch_size, "batch_size", minimum=2)
        for name in ("lambda_max", "lr", "weight_decay", "momentum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite float, got {v!r}.")
        if self.lambda_max < 0:
            raise ValueError(f"lambda_max must be >= 0, got {self.lambda_max!r}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}.")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}."
            )
        u = self.unfreeze
        if not (u in ("all", "head", "none", "gradual") or (
                isinstance(u, numbers.Integral) and not isinstance(u, bool) and u >= 0)):
            raise ValueError(
                "unfreeze must be 'all', 'head' (frozen backbone), 'gradual' or an int k >= 0 "
                f"(the last k layer groups), got {u!r}."
            )
        b = self.bottleneck
        if not (b is None or b == "auto" or (isinstance(b, numbers.Integral)
                                             and not isinstance(b, bool) and b > 0)):
            raise ValueError(f"bottleneck must be 'auto', None or an int > 0, got {b!r}.")
        m = self.backbone_lr_mult
        if not (m == "auto" or (isinstance(m, numbers.Real) and not isinstance(m, bool)
                                and m >= 0)):
            raise ValueError(f"backbone_lr_mult must be 'auto' or a float >= 0, got {m!r}.")
        if not isinstance(self.balanced, bool):
            raise ValueError(f"balanced must be True or False, got {self.balanced!r}.")
        lam = _resolve_schedule(self.lambda_schedule, "lambda_schedule", dann_lambda)
        lrs = _resolve_schedule(self.lr_schedule, "lr_schedule", dann_lr_factor)
        return lam, lrs

    @staticmethod
    def _domains(y, sample_domain, n):
        """-> (labeled mask, is_target mask) from ``y == -1`` and ``sample_domain``."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got an array of shape {y.shape}.")
        if len(y) != n:
            raise ValueError(f"X has {n} samples but y has {len(y)}.")
        unlabeled = unlabeled_mask(y)
        if sample_domain is None:
            return ~unlabeled, unlabeled
        sd = np.asarray(sample_domain)
        if sd.ndim != 1 or len(sd) != n:
            raise ValueError(
                f"sample_domain must be a 1-D array with one entry per sample ({n}), got "
                f"shape {sd.shape}."
            )
        if sd.dtype.kind not in "iu" and not (
            sd.dtype.kind == "f" and np.all(np.isfinite(sd)) and np.all(sd == np.round(sd))
        ):
            raise ValueError(
                f"sample_domain must hold integers (source > 0, target < 0), got dtype {sd.dtype}."
            )
        if np.any(sd == 0):
            i = int(np.flatnonzero(sd == 0)[0])
            raise ValueError(
                f"sample_domain[{i}] is 0; use positive ids for source domains and negative "
                "ids for target domains (skada's convention)."
            )
        bad = unlabeled & (sd > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"sample {i} is unlabeled (y == -1) but sample_domain[{i}] = {sd[i]} marks it "
                "as source; source samples must be labeled (y != -1) and unlabeled samples "
                "must have sample_domain < 0."
            )
        return ~unlabeled, sd < 0

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_domain=None):
        """Train on labeled source rows and unlabeled target rows (``y == -1``).

        Parameters
        ----------
        X : array-like or list
            Source and target samples together, in the backbone's modality.
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` marks unlabeled target-domain samples.
        sample_domain : array-like of int of shape (n_samples,), default=None
            skada's convention: a positive id per source domain, a negative id per
            target domain. Needed only for labeled target samples or several
            sources; pass it through a Pipeline or GridSearchCV with
            ``set_fit_request(sample_domain=True)`` under metadata routing.

        Returns
        -------
        self : DANNAdapter
        """
        lam_fn, lr_fn = self._check_params()
        seed = check_random_state_int(self.random_state)
        device = resolve_device(self.device)
        if y is None:
            raise ValueError(
                "DANNAdapter.fit needs y: class labels for source rows and -1 for the "
                "unlabeled target rows."
            )
        modality = self._backbone_modality()
        items = data.check_input(X, modality, name="X")
        n = data.num_samples(items)
        labeled, is_target = self._domains(y, sample_domain, n)
        n_target = int(is_target.sum())
        if n_target == 0:
            raise ValueError(
                "DANNAdapter needs unlabeled target-domain data: mark target rows with "
                "y == -1 (or sample_domain < 0); got none. Without target data, use "
                "FineTuneClassifier or FrozenFeatureClassifier."
            )
        if n_target == n:
            raise ValueError(
                "DANNAdapter got only target samples (every y == -1 / sample_domain < 0); it "
                "needs labeled source samples too."
            )
        if n_target < 2:
            raise ValueError(
                f"DANNAdapter needs at least 2 target samples to learn the domain "
                f"classifier, got {n_target}."
            )
        y_lab = np.asarray(y)[labeled]
        self._label_encoder = LabelEncoder().fit(y_lab)
        self.classes_ = self._label_encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"The labeled (source) samples hold a single class ({self.classes_[0]!r}); "
                "DANNAdapter needs at least 2 classes."
            )
        y_enc = np.full(n, -1, dtype=np.int64)
        y_enc[labeled] = self._label_encoder.transform(y_lab)
        if modality == "features":
            self.n_features_in_ = int(items.shape[1])
        self.n_source_ = int(n - n_target)
        self.n_target_ = n_target

        with torch_seed(seed):
            self._fit_seeded(items, modality, y_enc, is_target, lam_fn, lr_fn, device)
        self.domain_accuracy_ = float(self.net_.history[-1, "domain_acc"])
        return self

    def _fit_seeded(self, items, modality, y_enc, is_target, lam_fn, lr_fn, device):
        backbone = self._make_backbone(
            n_features=items.shape[1] if modality == "features" else None
        )
        frozen = self.unfreeze in ("head", "none") or self.unfreeze == 0
        extra_callbacks = []
        if frozen:
            from tlestimators.features import compute_embeddings

            backbone.requires_grad_(False)
            inputs = compute_embeddings(
                backbone, items, batch_size=self.batch_size, device=device, cache=self.cache,
                verbose=self.verbose,
            )
            self._preprocessor = _FeaturePreprocess()
            trunk = None
        else:
            groups = backbone.layer_groups()
            if self.unfreeze == "gradual":
                from tlestimators.callbacks import GradualUnfreezing
                from tlestimators.estimators._base import layer_group_names

                extra_callbacks.append(("gradual_unfreezing", GradualUnfreezing(
                    layer_group_names(backbone, groups, prefix="backbone."))))
            elif self.unfreeze != "all":
                k = min(int(self.unfreeze), len(groups))
                for g in groups[: len(groups) - k]:
                    for p in g:
                        p.requires_grad_(False)
            inputs = items
            self._preprocessor = backbone
            trunk = backbone
        self.backbone_ = backbone
        width = self.bottleneck
        if width == "auto":
            width = 256 if frozen else None
        d = backbone.num_features
        if width is None:
            bottleneck = nn.Identity()
        else:
            bottleneck = nn.Sequential(nn.Linear(d, int(width)), nn.ReLU())
            d = int(width)
        module = DANNModule(
            trunk, bottleneck, make_head(d, len(self.classes_), self.head),
            _make_domain_head(d, self.domain_head),
        )

        dataset = _DomainPairDataset(inputs, y_enc, is_target, balanced=self.balanced)
        step_batch = max(1, self.batch_size // 2) if self.balanced else self.batch_size
        total_steps = self.max_epochs * math.ceil(len(dataset) / step_batch)
        opt = getattr(torch.optim, _OPTIMIZERS[self.optimizer])
        opt_kw = {"optimizer__weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            opt_kw["optimizer__momentum"] = self.momentum
        mult = self.backbone_lr_mult
        if mult == "auto":
            mult = 1.0 if backbone.config.weights == "random" else 0.1
        if trunk is not None and mult != 1.0:
            opt_kw["optimizer__param_groups"] = [("backbone.*", {"lr": self.lr * mult})]
        self.net_ = _DANNNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=opt,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=step_batch,
            train_split=None,
            device=device,
            verbose=self.verbose,
            iterator_train__shuffle=True,
            iterator_train__collate_fn=_BatchCollate(self._preprocessor, True),
            iterator_valid__collate_fn=_BatchCollate(self._preprocessor, False),
            iterator_valid__batch_size=max(self.batch_size, 64),
            callbacks=[
                ("lambda_schedule", DANNLambdaSchedule(total_steps, self.lambda_max, lam_fn)),
                ("lr_schedule", LRScheduler(
                    policy=torch.optim.lr_scheduler.LambdaLR,
                    lr_lambda=DANNLRDecay(total_steps, lr_fn),
                    step_every="batch",
                )),
                ("domain_stats", _EpochDomainStats()),
                ("nan_guard", NaNLossGuard()),
                *extra_callbacks,
            ],
            **opt_kw,
        )
        self.net_.fit(dataset, None)

    @property
    def history_(self):
        check_is_fitted(self, "net_")
        return self.net_.history

    # ------------------------------------------------------------------ inference
    def _inputs(self, X):
        if hasattr(self, "n_features_in_"):
            items = data.check_input(X, "features", name="X")
            if items.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {items.shape[1]} features, but DANNAdapter was fitted with "
                    f"{self.n_features_in_}."
                )
        else:
            items = self.backbone_.check_input(X, name="X")
        if isinstance(self._preprocessor, _FeaturePreprocess):
            from tlestimators.features import compute_embeddings

            return compute_embeddings(
                self.backbone_, items, batch_size=self.batch_size,
                device=self.net_.device, cache=self.cache,
            )
        return items

    def _infer(self, X, what):
        net = self.net_
        it = net.get_iterator(_EvalDataset(self._inputs(X)), training=False)
        module = net.module_
        module.eval()
        out = []
        with torch.inference_mode():
            for xb, _ in it:
                f = module.features(to_device(xb, net.device))
                if what == "proba":
                    f = torch.softmax(module.head(f), dim=1)
                elif what == "domain":
                    z = module.domain_head(f)
                    f = torch.softmax(z, 1)[:, 1] if z.ndim == 2 and z.shape[1] == 2 else (
                        torch.sigmoid(z.reshape(-1)))
                out.append(f.float().cpu().numpy())
        return np.concatenate(out)

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``."""
        check_is_fitted(self, "net_")
        return self._infer(X, "proba")

    def predict(self, X):
        """Predicted class labels."""
        check_is_fitted(self, "net_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def transform(self, X):
        """The adapted features (input of the label and domain heads)."""
        check_is_fitted(self, "net_")
        return self._infer(X, "features")

    def predict_domain_proba(self, X):
        """The domain classifier's probability that each sample is from the target domain."""
        check_is_fitted(self, "net_")
        return self._infer(X, "domain")

    def score(self, X, y, sample_weight=None):
        """Accuracy on the labeled rows (rows with ``y == -1`` are left out)."""
        check_is_fitted(self, "net_")
        y = np.asarray(y)
        keep, _ = self._domains(y, None, data.num_samples(X) if hasattr(X, "shape") else len(X))
        if not keep.any():
            raise ValueError(
                "score needs labeled samples; every y is -1. Use an unsupervised scorer "
                "from tlestimators.metrics to score unlabeled target data."
            )
        from sklearn.metrics import accuracy_score

        idx = np.flatnonzero(keep)
        Xk = data.take(X if not isinstance(X, tuple) else list(X), idx)
        sw = None if sample_weight is None else np.asarray(sample_weight)[idx]
        return accuracy_score(y[idx], self.predict(Xk), sample_weight=sw)

