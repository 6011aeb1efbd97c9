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
    linear_probe,
    resolve_device,
    torch_seed,
    validate_feature_input,
    validate_fit_data,
)
from tlestimators.estimators._netclassifier import LogitsClassifierMixin

#: Learning rate of ``pairs="batch"`` (see the class docstring).
LR_BATCH = 8e-5

__all__ = ["ContrastiveFewShotClassifier", "sample_pairs", "balanced_batches",
           "all_pairs_loss"]


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


def balanced_batches(y, batch_size, n_steps, rng):
    """Class-balanced batches of row indices: ``min(batch_size, n_rows)`` distinct rows
    per batch, shared among the classes as equally as their sizes allow (so every batch
    holds positive pairs whatever the class imbalance), each class's share drawn at
    random without replacement.
    """
    y = np.asarray(y)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    sizes = np.array([len(r) for r in by_class])
    size = min(batch_size, len(y))
    batches = []
    for _ in range(n_steps):
        quota = np.zeros(len(by_class), dtype=int)
        order = rng.permutation(len(by_class))
        while quota.sum() < size:
            for c in order:
                if quota.sum() < size and quota[c] < sizes[c]:
                    quota[c] += 1
        batch = np.concatenate([rng.choice(rows, q, replace=False)
                                for rows, q in zip(by_class, quota)])
        batches.append(batch.astype(np.int64))
    return batches


def all_pairs_loss(emb, y):
    """SetFit's cosine-similarity loss over *every* pair of a batch: the mean of
    ``(cos - 1)^2`` over same-label pairs and of ``cos^2`` over different-label pairs,
    weighted one half each (SetFit's default "oversampling" draws as many positive as
    negative pairs, so this is its loss in expectation, without the sampling noise).
    Pairs of a row with itself count, as in SetFit's pair set.
    """
    emb = torch.nn.functional.normalize(emb, dim=1)
    cos = emb @ emb.T
    iu = torch.triu_indices(len(y), len(y), 0, device=emb.device)
    cos = cos[iu[0], iu[1]]
    same = (y[:, None] == y[None, :])[iu[0], iu[1]]
    pos = ((cos[same] - 1) ** 2).mean()
    if (~same).any():
        return 0.5 * pos + 0.5 * (cos[~same] ** 2).mean()
    return pos


class ContrastiveFewShotClassifier(LogitsClassifierMixin, BackboneParamsMixin, ClassifierMixin,
                                   BaseEstimator):
    """Few-shot text classifier: contrastive fine-tuning of the encoder, then a probe.

    SetFit's recipe [1]_: pairs of the labeled texts (same label -> target cosine 1,
    different labels -> 0) fine-tune the sentence encoder with the cosine-similarity
    loss; then a logistic-regression head is fitted on the new embeddings. Three
    changes:

    - ``pairs="batch"`` (default): each step takes a class-balanced batch of
      ``batch_size`` texts and the loss covers *every* pair among them, same-label and
      different-label pairs weighted one half each. That is SetFit's loss in
      expectation (its default "oversampling" draws equally many positive and negative
      pairs), computed exactly over ~``batch_size**2 / 2`` pairs per step instead of
      estimated from 16 sampled pairs, for the cost of embedding ``batch_size`` texts.
      With the sampling noise gone, a larger learning rate over fewer steps reaches
      what SetFit's 2e-5 reaches after all its steps, whose number grows with the
      square of the labeled texts (TREC, 8 labels per class: SetFit 120 steps of 16
      pairs; here 32 steps of 32 texts; see ``benchmarks/results/fewshot.md``).
      ``pairs="sampled"`` is SetFit's pair sampling (``num_iterations``). Why the
      previous default (``"sampled"``, 10 iterations, lr 2e-5) lost to SetFit on TREC:
      it took 60 steps where SetFit's oversampling takes 120, and on an 8-shot draw of
      TREC's *training* questions, scored on 400 other training questions, accuracy
      goes 0.72 (60 sampled steps) -> 0.82 (SetFit's 120) -> 0.84 (30 all-pair steps
      of 32 texts at 8e-5); on SMS spam's training split 0.92 (SetFit's pairs) -> 0.97;
    - the label-description prior of :class:`ZeroShotTextClassifier`: with
      ``class_names``, each class's prompts (``templates`` filled with its names) join
      the pair pool as labeled texts, and the head is the anchored probe of the
      zero-shot classifier (logistic regression started at, and pulled towards, the
      prompt embeddings, mixed with them by a CV-chosen ``alpha``);
    - each step embeds every distinct text of its batch once (pairs of few texts
      repeat texts), which gives the same gradient as SetFit's two-tower pass at a
      fraction of the forward/backward cost, in length-sorted chunks of 8 texts (less
      padding).

    Without ``class_names`` the head is :class:`~tlestimators.probe.LinearProbeCV`
    (``scaling="per_feature"``, ``C`` by internal stratified CV).

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
    pairs : {"batch", "sampled"}, default="batch"
        ``"batch"``: all pairs of class-balanced batches of texts; ``"sampled"``:
        SetFit's sampled pairs.
    num_iterations : int, default=10
        ``pairs="sampled"`` only: rounds of pair sampling (each gives every text one
        positive and one negative pair).
    max_epochs : int or None, default=None
        Passes over the texts (``pairs="batch"``: ``ceil(n_texts / batch_size)``
        steps each) or over the pairs (``"sampled"``). None: 16 for ``"batch"``, 1 for
        ``"sampled"`` (SetFit's).
    lr : float or None, default=None
        AdamW learning rate of the encoder. None: 8e-5 (``LR_BATCH``) for ``"batch"``
        (chosen on 8-shot draws of TREC-train and of SMS spam's training split, scored
        on held-out training texts), 2e-5 (SetFit's body learning rate) for
        ``"sampled"``.
    weight_decay : float, default=0.01
        Weight decay of the encoder.
    warmup : float in [0, 1), default=0.1
        Fraction of the steps with a linear warm-up; then linear decay to 0.
    batch_size : int or None, default=None
        Texts per step (``"batch"``, default 32) or pairs per step (``"sampled"``,
        default 16, SetFit's).
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
        Pairs the loss saw over the whole training (with repeats).
    n_steps_ : int
        Optimizer steps.

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
        **common_constraints("backbone", "backbone_kwargs", "weight_decay", "device",
                             "random_state", "verbose"),
        "pairs": [StrOptions({"batch", "sampled"})],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 2, None, closed="left"), None],
        "class_names": [dict, list, tuple, None],
        "templates": [list, tuple, None],
        "num_iterations": [Interval(Integral, 1, None, closed="left")],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "few_shot_alpha": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "logit_scale": [Interval(Real, 0, None, closed="neither")],
        "reg": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, backbone="minilm", *, backbone_kwargs=None, class_names=None,
                 templates=None, pairs="batch", num_iterations=10, max_epochs=None,
                 lr=None, weight_decay=0.01, warmup=0.1, batch_size=None,
                 few_shot_alpha="auto", logit_scale=20.0, reg=1e-3, device="auto",
                 random_state=None, verbose=0):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.class_names = class_names
        self.templates = templates
        self.pairs = pairs
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
        device = resolve_device(self.device)
        rng = np.random.default_rng(seed)
        texts = list(items)  # a copy: the prompts are appended
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
            if self.pairs == "batch":
                size = min(self.batch_size or 32, len(pool_y))
                epochs = self.max_epochs or 16
                # an epoch: as many balanced batches as it takes to cover n texts once
                steps = [balanced_batches(pool_y, size, math.ceil(len(pool_y) / size), rng)
                         for _ in range(epochs)]
                self.n_pairs_ = sum(len(b) * (len(b) + 1) // 2 for e in steps for b in e)
            else:
                pairs = sample_pairs(pool_y, self.num_iterations, rng)
                size = self.batch_size or 16
                batches = [pairs[i:i + size] for i in range(0, len(pairs), size)]
                steps = [batches] * (self.max_epochs or 1)
                self.n_pairs_ = len(pairs) * len(steps)
            self.loss_curve_ = self._train(backbone, texts, pool_y, steps, device)
            self.n_steps_ = sum(len(e) for e in steps)
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone_ = backbone.cpu()
        self.classes_ = classes
        Z = self._embed(items, device)
        self.probe_, self.alpha_ = None, None
        if prompts is None:
            # per-feature scaling: the head results/fewshot.md measured against SetFit
            # (the frozen probe's CV-chosen scaling was not measured on fine-tuned
            # sentence embeddings)
            self.probe_ = linear_probe(device=device, random_state=seed,
                                       scaling="per_feature").fit(Z, y_enc)
            lin = self.probe_.to_linear(torch.float64)
            self.coef_ = lin.weight.detach().double().numpy()
            self.intercept_ = lin.bias.detach().double().numpy()
        else:
            from tlestimators.estimators._fewshot import fit_few_shot, normalize
            from tlestimators.estimators._prompts import class_prompt_embeddings

            T = class_prompt_embeddings(lambda texts: self._embed(texts, device), prompts,
                                        classes)
            W, b, self.alpha_, _ = fit_few_shot(
                "linear", normalize(Z), y_enc, T, alpha=self.few_shot_alpha,
                logit_scale=self.logit_scale, reg=self.reg, max_iter=200, seed=seed)
            self.coef_ = self.logit_scale * W
            self.intercept_ = b
        return self

    def _train(self, backbone, texts, y, epochs, device):
        """Steps through ``epochs`` (per epoch a list of row-index batches for
        ``pairs="batch"``, of ``(i, j, same)`` pair batches for ``"sampled"``); returns
        the mean loss per epoch."""
        lr = self.lr if self.lr is not None else (LR_BATCH if self.pairs == "batch" else 2e-5)
        params = [p for p in backbone.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        total_steps = sum(len(e) for e in epochs)
        warm = max(1, round(self.warmup * total_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm,
                               max(0.0, (total_steps - s) / max(1, total_steps - warm))))
        backbone.train()
        y_t = torch.as_tensor(np.asarray(y), device=device)
        curve = []
        for epoch, steps in enumerate(epochs):
            total = 0.0
            for batch in steps:
                if self.pairs == "batch":
                    emb = self._forward(backbone, texts, batch, device)
                    loss = all_pairs_loss(emb, y_t[torch.as_tensor(batch, device=device)])
                else:
                    uniq, inv = np.unique(batch[:, :2], return_inverse=True)
                    inv = torch.as_tensor(inv.reshape(-1, 2), device=device)
                    emb = self._forward(backbone, texts, uniq, device)
                    cos = torch.nn.functional.cosine_similarity(emb[inv[:, 0]], emb[inv[:, 1]])
                    target = torch.as_tensor(batch[:, 2], dtype=cos.dtype, device=cos.device)
                    loss = torch.nn.functional.mse_loss(cos, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            curve.append(total / max(1, len(steps)))
            if self.verbose:
                print(f"epoch {epoch + 1}: contrastive loss {curve[-1]:.4f}")
        return curve

    @staticmethod
    def _forward(backbone, texts, rows, device, chunk=8):
        """Embeddings of ``texts[rows]`` in ``rows`` order, computed in length-sorted
        chunks: each chunk pads only to its own longest text, so a batch of texts of
        mixed lengths (SMS) costs far fewer padded tokens; the loss and gradient are the
        same as one padded batch's."""
        rows = list(rows)
        order = sorted(range(len(rows)), key=lambda i: len(texts[rows[i]]))
        parts = []
        for start in range(0, len(order), chunk):
            feats = backbone.preprocess([texts[rows[i]] for i in order[start:start + chunk]],
                                        train=True)
            parts.append(backbone({k: v.to(device) for k, v in feats.items()}))
        emb = torch.cat(parts)
        back = torch.empty(len(order), dtype=torch.long, device=emb.device)
        back[torch.as_tensor(order, device=emb.device)] = torch.arange(len(order),
                                                                      device=emb.device)
        return emb[back]

    # ------------------------------------------------------------------ predict
    def _embed(self, items, device="cpu"):
        bb = self.backbone_
        return np.asarray(bb.encode(list(items), batch_size=64, device=device), dtype=np.float64)

    def _logits(self, X):
        check_is_fitted(self)
        items = validate_feature_input(self, X, "text", reset=False)
        Z = self._embed(items)
        if self.probe_ is None:  # the anchored head scores unit-norm embeddings
            from tlestimators.estimators._fewshot import normalize

            Z = normalize(Z)
        return Z @ self.coef_.T + self.intercept_

    def _strategy(self):
        return "contrastive few-shot (SetFit's pairs)"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
