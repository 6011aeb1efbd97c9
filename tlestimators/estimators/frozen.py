"""Feature extraction: a frozen pretrained backbone and a head trained with skorch."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import HasMethods, StrOptions
from torch import nn

from tlestimators.estimators._base import (
    BackboneParamsMixin,
    NaNLossGuard,
    TransferNet,
    class_weight_tensor,
    common_constraints,
    early_stopping_split,
    linear_probe,
    make_head,
    resolve_device,
    resolve_optimizer,
    torch_seed,
    validate_feature_input,
    validate_fit_data,
)
from tlestimators.estimators._netclassifier import NetClassifierMixin

__all__ = ["FrozenFeatureClassifier", "Standardize"]


class Standardize(nn.Module):
    """``(x - mean) / std`` with fitted buffers (constant features keep std 1)."""

    def __init__(self, mean, std):
        super().__init__()
        std = np.where(np.asarray(std) > 1e-6, std, 1.0)
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std


class FrozenFeatureClassifier(NetClassifierMixin, BackboneParamsMixin, ClassifierMixin,
                              BaseEstimator):
    """Frozen pretrained backbone + a head fitted on its cached embeddings.

    The backbone turns each input into an embedding once (through the shared feature
    cache, so cross-validation folds, grid points and clones reuse it); only the head
    is fitted, on the cached embeddings. The default head is the convex linear probe:
    a multinomial logistic regression on the scaled embeddings, solved full batch,
    with the scaling (per feature, or one global scale) and its regularisation
    strength chosen by internal stratified CV
    (:class:`~tlestimators.probe.LinearProbeCV`, like ``LogisticRegressionCV``).

    Parameters
    ----------
    backbone : str or Backbone, default="efficientnet_lite0"
        Registry name or backbone instance.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone`; nested keys can be set with
        ``set_params(backbone_kwargs__img_size=96)``. For ``backbone="mlp"`` the
        default is the identity (``hidden_sizes=()``): a frozen, randomly initialised
        layer only loses information; pass ``{"hidden_sizes": (...)}`` to get one.
    head : "linear", "mlp", nn.Module or sklearn classifier, default="linear"
        ``"linear"``: the convex linear probe (:class:`~tlestimators.probe.LinearProbeCV`,
        the scaling and ``C`` by 5-fold stratified CV over ``np.logspace(-4, 4, 10)``;
        it scales the embeddings itself). For the previous default, a fixed
        per-feature standardisation, pass ``head=LinearProbeCV(scaling="per_feature")``.
        ``"mlp"``: one hidden layer of ``max(64, D // 2)`` ReLU units trained with
        skorch; an ``nn.Module`` mapping ``(N, D)`` to ``(N, n_classes)`` is trained the
        same way. Any scikit-learn classifier is cloned and fitted on the embeddings
        (after a ``StandardScaler`` when ``standardize=True``, except a
        ``LinearProbeCV``, which scales by its own ``scaling``); one without
        ``predict_proba`` (``SVC()``, ``LinearSVC``) gets the softmax of its
        ``decision_function`` as ``predict_proba``: a ranking of the classes, not
        calibrated probabilities.
    head_dropout : float, default=0.0
        Dropout before the last linear layer (``"mlp"`` head).
    standardize : bool, default=True
        Standardise the embeddings with the training mean/std before the ``"mlp"``,
        module or scikit-learn head (the linear probe scales by its own CV).
    lr : float, default=1e-3
        Learning rate of a skorch head (``"mlp"`` or module).
    optimizer : {"adamw", "adam", "sgd"} or torch.optim class, default="adamw"
        Optimizer of a skorch head.
    weight_decay : float, default=1e-4
        Weight decay of a skorch head.
    max_epochs : int, default=50
        Passes over the training embeddings (skorch heads).
    batch_size : int, default=64
        Batch size for embedding and for training a skorch head.
    early_stopping : bool, default=False
        Skorch heads: hold out ``validation_fraction`` (stratified) and stop when the
        validation loss has not improved for ``patience`` epochs, restoring the best
        head.
    validation_fraction : float, default=0.1
        Held-out fraction when ``early_stopping=True``.
    patience : int, default=5
        Epochs without improvement before stopping.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in sklearn (the linear probe and the
        skorch heads; a scikit-learn ``head`` keeps its own setting).
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``; the
        backbone, the probe's solver and skorch heads run there.
    cache : bool or path-like, default=True
        Feature cache: ``True`` in memory (shared in the process), ``False`` off, a
        directory to also persist embeddings across processes.
    random_state : int, RandomState or None, default=None
        Seeds the backbone build (random-init weights, so embeddings are identical in
        every process), the probe's CV folds, a skorch head's initialisation,
        shuffling and validation split.
    verbose : int, default=0
        ``>0`` prints skorch's epoch table and shows embedding progress.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    backbone_ : Backbone
        The frozen backbone (shared read-only with other estimators using the same
        name and kwargs).
    head_ : LinearProbeCV, sklearn classifier or skorch net
        The fitted head, trained on encoded labels ``0 .. n_classes - 1``. For
        ``head="linear"``, ``head_.C_`` is the chosen regularisation and
        ``head_.to_linear()`` the probe as a ``torch.nn.Linear`` on raw embeddings.
    net_ : skorch.NeuralNetClassifier
        Skorch heads only (``"mlp"`` or a module): the same object as ``head_``;
        ``net_.history`` holds the losses per epoch.
    n_features_in_ : int
        Number of input features (``features`` backbones only).
    feature_names_in_ : ndarray of str
        Input column names, when given (``features`` backbones only).

    See Also
    --------
    BackboneEmbedder : the frozen embeddings as a transformer for any sklearn model.
    FineTuneClassifier : also updates the backbone (starting from this probe).
    tlestimators.probe.LinearProbeCV : the default head on its own.

    Notes
    -----
    Linear probing of frozen features is the standard evaluation of representation
    transfer [1]_ [2]_; it is the cheap strategy to try first, and the one that wins
    with very few labels. A convex probe with its regularisation chosen by CV is what
    a hand-written ``make_pipeline(StandardScaler(), LogisticRegressionCV())`` on the
    embeddings gives; the default probe's CV also tries one global scale, which keeps
    the embedding's geometry as a ``LogisticRegression`` on the raw embeddings does
    (better on image embeddings with few labels; ``results/defaults.md``). SGD-trained
    heads (``"mlp"``) need their ``lr``/``max_epochs`` tuned.

    References
    ----------
    .. [1] Kornblith, Shlens and Le, "Do Better ImageNet Models Transfer Better?",
       CVPR 2019.
    .. [2] Yosinski et al., "How transferable are features in deep neural networks?",
       NeurIPS 2014.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from tlestimators import FrozenFeatureClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = FrozenFeatureClassifier("mlp", random_state=0, device="cpu").fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    >>> clf.head_.C_ > 0
    True
    """

    _parameter_constraints = {
        **common_constraints(
            "backbone", "backbone_kwargs", "head_dropout", "lr", "optimizer",
            "weight_decay", "max_epochs", "batch_size", "early_stopping",
            "validation_fraction", "patience", "class_weight", "device", "cache",
            "random_state", "verbose",
        ),
        "head": [StrOptions({"linear", "mlp"}), nn.Module, HasMethods(["fit", "predict"])],
        "standardize": ["boolean"],
    }

    # a frozen random layer in front of the head is never wanted: "mlp" is the identity
    _default_backbone_kwargs = {"mlp": {"hidden_sizes": ()}}

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        backbone_kwargs=None,
        head="linear",
        head_dropout=0.0,
        standardize=True,
        lr=1e-3,
        optimizer="adamw",
        weight_decay=1e-4,
        max_epochs=50,
        batch_size=64,
        early_stopping=False,
        validation_fraction=0.1,
        patience=5,
        class_weight=None,
        device="auto",
        cache=True,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.head = head
        self.head_dropout = head_dropout
        self.standardize = standardize
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.class_weight = class_weight
        self.device = device
        self.cache = cache
        self.random_state = random_state
        self.verbose = verbose

    def _embed(self, items, device):
        from tlestimators.features import compute_embeddings

        return compute_embeddings(
            self.backbone_, items, batch_size=self.batch_size, device=device,
            cache=self.cache, verbose=self.verbose,
        )

    def _skorch_head(self):
        return isinstance(self.head, nn.Module) or (
            isinstance(self.head, str) and self.head == "mlp"
        )

    def _strategy(self):
        head = self.head if isinstance(self.head, str) else type(self.head).__name__
        return "frozen probe" if head == "linear" else f"frozen + {head} head"

    def fit(self, X, y):
        """Embed ``X`` with the frozen backbone (cached) and fit the head.

        Parameters
        ----------
        X : images, texts or 2-D features
            Input of the backbone's modality.
        y : array-like of shape (n_samples,)
            Labels (any sklearn-valid type).

        Returns
        -------
        self : FrozenFeatureClassifier
        """
        from tlestimators.features import frozen_backbone

        self._validate_params()
        device = resolve_device(self.device)
        modality, items, classes, y_enc, seed = validate_fit_data(self, X, y)
        skorch_head = self._skorch_head()
        if skorch_head:  # reports a bad validation_fraction before any embedding
            train_split, es = early_stopping_split(self, len(y_enc), len(classes), seed)
        self.backbone_ = frozen_backbone(self, items.shape[1] if modality == "features" else None)
        Z = self._embed(items, device)
        if not skorch_head:
            self.head_ = self._fit_sklearn_head(Z, y_enc, classes, device, seed)
            self.classes_ = classes
            return self
        callbacks = [("nan_guard", NaNLossGuard())]
        if es is not None:
            callbacks.append(("early_stopping", es))
        with torch_seed(seed):
            layers = []
            if self.standardize:
                layers.append(Standardize(Z.mean(axis=0), Z.std(axis=0)))
            layers.append(make_head(Z.shape[1], len(classes), self.head, self.head_dropout))
            net = TransferNet(
                module=nn.Sequential(*layers),
                criterion=nn.CrossEntropyLoss,
                criterion__weight=class_weight_tensor(self.class_weight, classes, y_enc),
                optimizer=resolve_optimizer(self.optimizer),
                optimizer__weight_decay=self.weight_decay,
                lr=self.lr,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                train_split=train_split,
                callbacks=callbacks,
                iterator_train__shuffle=True,
                device=device,
                verbose=self.verbose,
            )
            net.fit(Z, y_enc)
        self.classes_ = classes
        self.head_ = self.net_ = net
        return self

    def _fit_sklearn_head(self, Z, y_enc, classes, device, seed):
        from sklearn.base import clone

        if isinstance(self.head, str):  # "linear": the convex probe
            head = linear_probe(device=device, random_state=seed, class_weight=self.class_weight,
                                classes=classes, y_enc=y_enc)
        else:
            from tlestimators.probe import LinearProbeCV

            head = clone(self.head)
            # a LinearProbeCV scales the embeddings by its own ``scaling``: a scaler in
            # front would turn its "global" scale into the per-feature one
            if self.standardize and not isinstance(head, LinearProbeCV):
                from sklearn.pipeline import make_pipeline
                from sklearn.preprocessing import StandardScaler

                head = make_pipeline(StandardScaler(), head)
        head.fit(Z, y_enc)
        if not (hasattr(head, "predict_proba") or hasattr(head, "decision_function")):
            raise TypeError(
                f"head={self.head!r} has neither predict_proba nor decision_function; "
                "FrozenFeatureClassifier needs one of them to score the classes."
            )
        return head

    def _forward_logits(self, Z):
        if getattr(self, "net_", None) is not None and self.head_ is self.net_:
            return super()._forward_logits(Z)
        head = self.head_
        if not hasattr(head, "to_linear"):  # the probe's logits are its decision_function
            # log-probabilities are logits: their softmax is the head's predict_proba
            # (floored at log(1e-300): a probability that underflowed to 0 gives a finite
            # logit, and sklearn's log(predict_proba) warns about it no more)
            if hasattr(head, "predict_log_proba"):
                with np.errstate(divide="ignore"):
                    z = np.asarray(head.predict_log_proba(Z), dtype=np.float64)
                return np.maximum(z, np.log(1e-300))
            if hasattr(head, "predict_proba"):
                return np.log(np.clip(np.asarray(head.predict_proba(Z), np.float64), 1e-300, None))
        d = np.asarray(head.decision_function(Z), dtype=np.float64)
        if d.ndim == 1:  # binary: logit of classes_[1]
            return np.column_stack([np.zeros_like(d), d])
        return d

    def _net_input(self, X):
        items = validate_feature_input(self, X, self.backbone_.config.modality, reset=False)
        return self._embed(items, resolve_device(self.device))
