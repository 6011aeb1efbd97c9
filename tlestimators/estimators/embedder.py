"""BackboneEmbedder: a frozen pretrained backbone as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from tlestimators.estimators._base import (
    BackboneParamsMixin,
    NumberedFeaturesOutMixin,
    common_constraints,
    resolve_device,
    validate_feature_input,
)
from tlestimators.features import compute_embeddings, frozen_backbone

__all__ = ["BackboneEmbedder"]


class BackboneEmbedder(NumberedFeaturesOutMixin, BackboneParamsMixin, TransformerMixin,
                       BaseEstimator):
    """Embed raw inputs with a frozen pretrained backbone: ``X -> (n_samples, D)``.

    A scikit-learn transformer usable in front of any estimator. Embeddings go
    through the process-wide feature cache, so each distinct input is computed once
    per backbone across fits, clones, folds and grid points.

    Parameters
    ----------
    backbone : str or Backbone, default="efficientnet_lite0"
        Registry name (see :func:`~tlestimators.list_backbones`) or a backbone instance.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (e.g. ``{"img_size": 160}``);
        keys can be set one by one: ``set_params(backbone_kwargs__img_size=96)``.
        For ``backbone="mlp"`` the default is the identity (``hidden_sizes=()``).
    batch_size : int, default=64
        Items per forward pass.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    cache : bool or path-like, default=True
        ``True``: shared in-memory cache; ``False``: recompute every time; a directory:
        also persist embeddings there (survives processes; safe for several writers).
    normalize : bool, default=False
        L2-normalise each embedding (common before cosine-similarity models).
    verbose : int, default=0
        Show a progress bar while embedding.

    Attributes
    ----------
    backbone_ : Backbone
        The frozen backbone (shared with other estimators using the same name and
        kwargs; treat it as read-only).
    n_features_in_ : int
        Number of input features (``features`` backbones such as ``mlp`` only).
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had them (``features`` backbones only).
    n_features_out_ : int
        Embedding size ``D``.

    See Also
    --------
    FrozenFeatureClassifier : the embedder plus a trained head in one estimator.
    tlestimators.features.compute_embeddings : the function behind :meth:`transform`.

    Notes
    -----
    The cache key is the backbone fingerprint (weights, backbone class and every
    preprocessing setting) plus a content hash of each item, so a different
    ``img_size``, other weights or fine-tuned weights never reuse old embeddings.

    References
    ----------
    .. [1] Yosinski et al., "How transferable are features in deep neural networks?",
       NeurIPS 2014.
    .. [2] Kornblith, Shlens and Le, "Do Better ImageNet Models Transfer Better?",
       CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import BackboneEmbedder
    >>> X = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    >>> emb = BackboneEmbedder("mlp", backbone_kwargs={"hidden_sizes": (4,)}, device="cpu")
    >>> emb.fit_transform(X).shape
    (8, 4)
    >>> emb.get_feature_names_out()[:2]
    array(['backboneembedder0', 'backboneembedder1'], dtype=object)
    """

    _parameter_constraints = {
        **common_constraints("backbone", "backbone_kwargs", "batch_size", "device", "cache",
                             "verbose"),
        "normalize": ["boolean"],
    }

    # a frozen random layer is never wanted: "mlp" embeds as the identity by default
    _default_backbone_kwargs = {"mlp": {"hidden_sizes": ()}}

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        backbone_kwargs=None,
        batch_size=64,
        device="auto",
        cache=True,
        normalize=False,
        verbose=0,
    ):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.normalize = normalize
        self.verbose = verbose

    def _strategy(self):
        return "frozen embeddings for a downstream model"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32
        return tags

    def fit(self, X, y=None):
        """Build (or reuse) the backbone and validate ``X``; no training happens.

        Parameters
        ----------
        X : images, texts or 2-D features
            Input of the backbone's modality.
        y : None
            Ignored.

        Returns
        -------
        self : BackboneEmbedder
        """
        self._validate_params()
        resolve_device(self.device)
        modality = self._backbone_modality()
        items = validate_feature_input(self, X, modality, reset=True)
        n_features = items.shape[1] if modality == "features" else None
        self.backbone_ = frozen_backbone(self, n_features)
        self.n_features_out_ = int(self.backbone_.config.num_features)
        return self

    def transform(self, X):
        """Embeddings of ``X``.

        Parameters
        ----------
        X : images, texts or 2-D features
            Input of the backbone's modality.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features_out), dtype float32
        """
        check_is_fitted(self)
        device = resolve_device(self.device)
        items = validate_feature_input(self, X, self.backbone_.config.modality, reset=False)
        Z = compute_embeddings(
            self.backbone_,
            items,
            batch_size=self.batch_size,
            device=device,
            cache=self.cache,
            verbose=self.verbose,
        )
        if self.normalize:
            Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        return Z

