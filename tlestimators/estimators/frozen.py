"""Feature extraction: a frozen pretrained backbone and a head trained with skorch."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from tlestimators.estimators._base import (
    BackboneParamsMixin,
    NaNLossGuard,
    TransferNet,
    class_weight_tensor,
    common_constraints,
    early_stopping_split,
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
    """Frozen pretrained backbone + a linear or MLP head trained with skorch.

    The backbone turns each input into an embedding once (through the shared feature
    cache, so cross-validation folds, grid points and clones reuse it); only the small
    head is trained, on the cached embeddings.

    Parameters
    ----------
    backbone : str or Backbone, default="efficientnet_lite0"
        Registry name or backbone instance.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone`; nested keys can be set with
        ``set_params(backbone_kwargs__img_size=96)``. For ``backbone="mlp"`` the
        default is the identity (``hidden_sizes=()``): a frozen, randomly initialised
        layer only loses information; pass ``{"hidden_sizes": (...)}`` to get one.
    head : {"linear", "mlp"} or nn.Module, default="linear"
        ``"linear"``: logistic regression on the embeddings; ``"mlp"``: one hidden
        layer of ``max(64, D // 2)`` ReLU units. A module maps ``(N, D)`` to
        ``(N, n_classes)``.
    head_dropout : float, default=0.0
        Dropout before the last linear layer.
    standardize : bool, default=True
        Standardise embeddings with the training mean/std (folded into the head).
    lr : float, default=1e-3
        Learning rate of the head.
    optimizer : {"adamw", "adam", "sgd"} or torch.optim class, default="adamw"
        Optimizer of the head.
    weight_decay : float, default=1e-4
        Weight decay of the head.
    max_epochs : int, default=50
        Passes over the training embeddings.
    batch_size : int, default=64
        Batch size for embedding and for training the head.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` (stratified) and stop when the validation loss
        has not improved for ``patience`` epochs, restoring the best head.
    validation_fraction : float, default=0.1
        Held-out fraction when ``early_stopping=True``.
    patience : int, default=5
        Epochs without improvement before stopping.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy loss, as in sklearn.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    cache : bool or path-like, default=True
        Feature cache: ``True`` in memory (shared in the process), ``False`` off, a
        directory to also persist embeddings across processes.
    random_state : int, RandomState or None, default=None
        Seeds the backbone build (random-init weights, so embeddings are identical in
        every process), the head initialisation, shuffling and validation split.
    verbose : int, default=0
        ``>0`` prints skorch's epoch table and shows embedding progress.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    backbone_ : Backbone
        The frozen backbone (shared read-only with other estimators using the same
        name and kwargs).
    net_ : skorch.NeuralNetClassifier
        The fitted head; ``net_.history`` holds the losses per epoch.
    n_features_in_ : int
        Number of input features (``features`` backbones only).
    feature_names_in_ : ndarray of str
        Input column names, when given (``features`` backbones only).

    See Also
    --------
    BackboneEmbedder : the frozen embeddings as a transformer for any sklearn model.
    FineTuneClassifier : also updates the backbone.

    Notes
    -----
    Linear probing of frozen features is the standard evaluation of representation
    transfer [1]_ [2]_; it is the cheap strategy to try first, and the one that wins
    with very few labels.

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
    >>> clf = FrozenFeatureClassifier("mlp", lr=1e-2, random_state=0, device="cpu").fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = {
        **common_constraints(
            "backbone", "backbone_kwargs", "head", "head_dropout", "lr", "optimizer",
            "weight_decay", "max_epochs", "batch_size", "early_stopping",
            "validation_fraction", "patience", "class_weight", "device", "cache",
            "random_state", "verbose",
        ),
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

        Z = compute_embeddings(
            self.backbone_, items, batch_size=self.batch_size, device=device,
            cache=self.cache, verbose=self.verbose,
        )
        if not np.isfinite(Z).all():
            raise ValueError(
                f"The backbone {self.backbone_.config.name!r} produced NaN or infinite "
                "embeddings for finite input; check its weights and input scale."
            )
        return Z

    def fit(self, X, y):
        """Embed ``X`` with the frozen backbone (cached) and train the head.

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
        train_split, es = early_stopping_split(self, len(y_enc), len(classes), seed)
        callbacks = [("nan_guard", NaNLossGuard())]
        if es is not None:
            callbacks.append(("early_stopping", es))
        self.backbone_ = frozen_backbone(self, items.shape[1] if modality == "features" else None)
        Z = self._embed(items, device)
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
        self.net_ = net
        return self

    def _net_input(self, X):
        items = validate_feature_input(self, X, self.backbone_.config.modality, reset=False)
        return self._embed(items, resolve_device(self.device))
