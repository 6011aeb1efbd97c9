"""Few-shot text classification by contrastive fine-tuning of the sentence encoder
(SetFit's recipe) with the zero-shot label-description prior.

A separate estimator rather than a ``FineTuneClassifier(unfreeze=...)`` word: its
training stage is not a classification loss over a head (it learns from pairs of texts,
with no head at all), its head is the convex probe fitted afterwards, and it needs
``class_names``/``templates``, which no other strategy of ``FineTuneClassifier`` has.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tlestimators.estimators._base import (
    BackboneParamsMixin,
    common_constraints,
    resolve_device,
    torch_seed,
    validate_feature_input,
    validate_fit_data,
)

__all__ = ["ContrastiveFewShotClassifier", "sample_pairs"]


def sample_pairs(y, num_iterations, rng):
    """SetFit's pair sampling: per iteration, each row gets one positive partner (same
    label, another row when there is one) and one negative partner (another label).

    Returns an int array of shape (n_pairs, 3): ``(i, j, same_label)``.
    """
    y = np.asarray(y)
    idx = np.arange(len(y))
    by_class = {c: idx[y == c] for c in np.unique(y)}
    pairs = []
    for _ in range(num_iterations):
        for i in idx:
            same = by_class[y[i]]
            if len(same) > 1:
                j = rng.choice(same[same != i])
                pairs.append((i, j, 1))
            other = idx[y != y[i]]
            if len(other):
                pairs.append((i, rng.choice(other), 0))
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    return pairs[rng.permutation(len(pairs))]


class ContrastiveFewShotClassifier(BackboneParamsMixin, ClassifierMixin, BaseEstimator):
    """Few-shot text classifier: contrastive fine-tuning of the encoder, then a probe.

    SetFit's recipe [1]_: pairs of the labeled texts (same label -> target cosine 1,
    different labels -> 0) fine-tune the sentence encoder for ``max_epochs`` with the
    cosine-similarity loss; then a logistic-regression head is fitted on the new
    embeddings. Two additions:

    - the label-description prior of :class:`ZeroShotTextClassifier`: with
      ``class_names``, each class's prompts (``templates`` filled with its names) join
      the pair pool as labeled texts, and the head is the anchored probe of the
      zero-shot classifier (logistic regression started at, and pulled towards, the
      prompt embeddings, mixed with them by a CV-chosen ``alpha``);
    - each step embeds every distinct text of its pairs once (pairs of few texts
      repeat texts), which gives the same gradient as SetFit's two-tower pass at a
      fraction of the forward/backward cost.

    Without ``class_names`` the head is :class:`~tlestimators.probe.LinearProbeCV`
    (``C`` by internal stratified CV).

    Parameters
    ----------
    backbone : str or Backbone, default="minilm"
        A text backbone.
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone`.
    class_names : dict, list or None, default=None
        Words or descriptions per label, as in :class:`ZeroShotTextClassifier`. None:
        no prior (SetFit's recipe).
    templates : list of str or None, default=None
        Prompt templates for ``class_names`` (``"{}"`` slots); None: the zero-shot
        text classifier's generic ensemble.
    num_iterations : int, default=10
        Rounds of pair sampling (each gives every text one positive and one negative
        pair).
    max_epochs : int, default=1
        Passes over the pairs.
    lr : float, default=2e-5
        AdamW learning rate of the encoder (SetFit's default body learning rate).
    weight_decay : float, default=0.01
        Weight decay of the encoder.
    warmup : float in [0, 1), default=0.1
        Fraction of the steps with a linear warm-up; then linear decay to 0.
    batch_size : int, default=16
        Pairs per step.
    few_shot_alpha : float in [0, 1] or "auto", default="auto"
        With ``class_names``: weight of the labeled-data head against the prompt
        embeddings ("auto": stratified CV).
    logit_scale : float, default=20.0
        Cosine multiplier of the anchored head (the zero-shot text default).
    reg : float, default=1e-3
        Pull of the anchored head towards the prompt embeddings.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    random_state : int, RandomState or None, default=None
        Seeds pair sampling, dropout and the head's CV folds.
    verbose : int, default=0
        ``>0`` prints the mean loss per epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    backbone_ : Backbone
        The fine-tuned encoder (eval mode, frozen).
    coef_ : ndarray of shape (n_classes, n_features)
    intercept_ : ndarray of shape (n_classes,)
        The head on the encoder's (unit) embeddings: ``logits = Z @ coef_.T + intercept_``.
    probe_ : LinearProbeCV or None
        The head without ``class_names``.
    alpha_ : float or None
        The prior mixing weight used with ``class_names``.
    loss_curve_ : list of float
        Mean contrastive loss per epoch.
    n_pairs_ : int
        Pairs per epoch.

    See Also
    --------
    ZeroShotTextClassifier : the prior alone (no encoder training), few-shot capable.
    FineTuneClassifier : cross-entropy fine-tuning (more labels).

    References
    ----------
    .. [1] Tunstall et al., "Efficient Few-Shot Learning Without Prompts", 2022
       (SetFit).

    Examples
    --------
    >>> from tlestimators.estimators.contrastive import ContrastiveFewShotClassifier
    >>> X = ["great film", "loved it", "awful plot", "boring and bad"]
    >>> clf = ContrastiveFewShotClassifier(class_names={1: "positive", 0: "negative"},
    ...                                    random_state=0)  # doctest: +SKIP
    >>> clf.fit(X, [1, 1, 0, 0]).predict(["what a great movie"])  # doctest: +SKIP
    array([1])
    """

    _parameter_constraints = {
        **common_constraints("backbone", "backbone_kwargs", "lr", "weight_decay",
                             "max_epochs", "batch_size", "device", "random_state",
                             "verbose"),
        "class_names": [dict, list, tuple, None],
        "templates": [list, tuple, None],
        "num_iterations": [Interval(Integral, 1, None, closed="left")],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "few_shot_alpha": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "logit_scale": [Interval(Real, 0, None, closed="neither")],
        "reg": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, backbone="minilm", *, backbone_kwargs=None, class_names=None,
                 templates=None, num_iterations=10, max_epochs=1, lr=2e-5, weight_decay=0.01,
                 warmup=0.1, batch_size=16, few_shot_alpha="auto", logit_scale=20.0,
                 reg=1e-3, device="auto", random_state=None, verbose=0):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.class_names = class_names
        self.templates = templates
        self.num_iterations = num_iterations
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.batch_size = batch_size
        self.few_shot_alpha = few_shot_alpha
        self.logit_scale = logit_scale
        self.reg = reg
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _prompts(self, classes):
        from tlestimators.estimators._prompts import (
            TEXT_TEMPLATES,
            build_prompts,
            check_templates,
            class_words,
        )

        templates = None if self.templates is None else list(self.templates)
        tl = check_templates(templates, lambda: list(TEXT_TEMPLATES), lambda n: [n])
        return build_prompts(templates, tl, class_words(self.class_names, classes), classes)

    def fit(self, X, y):
        """Fine-tune the encoder on pairs of ``X`` and fit the head.

        Parameters
        ----------
        X : list or array of str
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : ContrastiveFewShotClassifier
        """
        self._validate_params()
        modality, items, classes, y_enc, seed = validate_fit_data(self, X, y)
        if modality != "text":
            raise ValueError(
                f"{type(self).__name__} needs a text backbone such as 'minilm'; "
                f"backbone {self.backbone!r} has modality {modality!r}."
            )
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got "
                             f"{len(classes)}.")
        device = resolve_device(self.device)
        rng = np.random.default_rng(seed)
        texts = [str(t) for t in items]
        pool_y = list(y_enc)
        prompts = None
        if self.class_names is not None:
            prompts = self._prompts(classes)
            for c, label in enumerate(classes):
                texts += prompts[label]
                pool_y += [c] * len(prompts[label])
        pool_y = np.asarray(pool_y)
        with torch_seed(seed):
            backbone = self._make_backbone().to(device)
            pairs = sample_pairs(pool_y, self.num_iterations, rng)
            self.loss_curve_ = self._train(backbone, texts, pairs, device)
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone_ = backbone.cpu()
        self.classes_ = classes
        self.n_pairs_ = len(pairs)
        Z = self._embed(items, device)
        self.probe_, self.alpha_ = None, None
        if prompts is None:
            from tlestimators.probe import LinearProbeCV

            self.probe_ = LinearProbeCV(random_state=seed).fit(Z, y_enc)
            lin = self.probe_.to_linear()
            self.coef_ = lin.weight.detach().double().numpy()
            self.intercept_ = lin.bias.detach().double().numpy()
        else:
            from tlestimators.estimators._fewshot import fit_few_shot, normalize

            T = np.stack([normalize(self._embed(prompts[label], device).mean(0))
                          for label in classes])
            W, b, self.alpha_, _ = fit_few_shot(
                "linear", normalize(Z), y_enc, T, alpha=self.few_shot_alpha,
                logit_scale=self.logit_scale, reg=self.reg, max_iter=200, seed=seed)
            self.coef_ = self.logit_scale * W
            self.intercept_ = b
        return self

    def _train(self, backbone, texts, pairs, device):
        params = [p for p in backbone.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        steps = math.ceil(len(pairs) / self.batch_size) * self.max_epochs
        warm = max(1, round(self.warmup * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        backbone.train()
        curve = []
        for epoch in range(self.max_epochs):
            total = 0.0
            for start in range(0, len(pairs), self.batch_size):
                batch = pairs[start:start + self.batch_size]
                uniq, inv = np.unique(batch[:, :2], return_inverse=True)
                inv = torch.as_tensor(inv.reshape(-1, 2))
                feats = backbone.preprocess([texts[k] for k in uniq], train=True)
                feats = {k: v.to(device) for k, v in feats.items()}
                emb = backbone(feats)
                cos = torch.nn.functional.cosine_similarity(emb[inv[:, 0]], emb[inv[:, 1]])
                target = torch.as_tensor(batch[:, 2], dtype=cos.dtype, device=cos.device)
                loss = torch.nn.functional.mse_loss(cos, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(batch)
            curve.append(total / max(1, len(pairs)))
            if self.verbose:
                print(f"epoch {epoch + 1}: contrastive loss {curve[-1]:.4f}")
        return curve

    # ------------------------------------------------------------------ predict
    def _embed(self, items, device="cpu"):
        bb = self.backbone_
        return np.asarray(bb.encode(list(items), batch_size=64, device=device), dtype=np.float64)

    def decision_function(self, X):
        """Logits of shape (n_samples, n_classes)."""
        check_is_fitted(self)
        items = validate_feature_input(self, X, "text", reset=False)
        Z = self._embed(items)
        if self.probe_ is None:
            from tlestimators.estimators._fewshot import normalize

            Z = normalize(Z)
            return Z @ self.coef_.T + self.intercept_
        return self.probe_.decision_function(Z)

    def predict_proba(self, X):
        """Class probabilities (softmax of :meth:`decision_function`)."""
        from scipy.special import softmax

        d = self.decision_function(X)
        if d.ndim == 1:
            d = np.stack([-d, d], axis=1) / 2
        return softmax(d, axis=1)

    def predict(self, X):
        """Predicted labels."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
