"""Zero-shot (and few-shot) classification from prompts: CLIP images, sentence embeddings.

Both estimators turn every class into a set of prompts, embed the prompts with the text
encoder, and classify an input by the cosine similarity of its embedding with each
class embedding (the mean of the L2-normalised prompt embeddings, renormalised:
*template ensembling*, Radford et al. 2021). ``fit`` only needs the labels; with
``few_shot`` set, labeled inputs refine the text-derived class weights.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from tlestimators.backbones.base import Backbone
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    check_positive_int,
    check_random_state_int,
    resolve_device,
)
from tlestimators.estimators._netclassifier import LogitsClassifierMixin

__all__ = ["ZeroShotCLIPClassifier", "ZeroShotTextClassifier", "template_set"]

_ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
_FEW_SHOT = (None, "prototype", "linear")


def template_set(name: str) -> list[str]:
    """One of open_clip's published ImageNet prompt sets, as format strings with ``{}``.

    ``"openai"``: the 80 templates of Radford et al. (2021); ``"simple"``: open_clip's
    short set of 2. Read from the installed open_clip at run time.
    """
    try:
        from open_clip import zero_shot_metadata as meta
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("template sets 'openai'/'simple' are read from open_clip: "
                          "`pip install open_clip_torch`.") from exc
    sets = {"openai": meta.OPENAI_IMAGENET_TEMPLATES, "simple": meta.SIMPLE_IMAGENET_TEMPLATES}
    if name not in sets:
        raise ValueError(f"template set must be one of {sorted(sets)}, got {name!r}.")
    # open_clip stores them as callables (lambda c: f"a photo of a {c}."); calling them
    # with "{}" gives format strings, which pickle and print.
    return [t("{}") if callable(t) else str(t) for t in sets[name]]


def _has_placeholder(t: str) -> bool:
    return "{}" in t or "{c}" in t


def _fill(template, name: str) -> str:
    if callable(template):
        return str(template(name))
    # replace, not str.format: class names and prompts may hold other braces
    return template.replace("{c}", name).replace("{}", name)


def _r(label) -> str:
    """repr of a label as the user wrote it (``'c'``, not ``np.str_('c')``)."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def _words(value, name) -> list[str]:
    """A name/description (str) or a non-empty list of them -> list of str."""
    words = [value] if isinstance(value, str) else value
    if (not isinstance(words, Sequence) or isinstance(words, bytes) or not words
            or not all(isinstance(w, str) and w.strip() for w in words)):
        raise ValueError(f"{name} must be a non-empty str or a non-empty list of str, got "
                         f"{value!r}.")
    return list(words)


def _normalize(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(n, 1e-12)


def _check_real(value, name, low=None, high=None, low_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        raise ValueError(f"{name} must be a finite number {' and '.join(filter(None, (lo, hi)))}"
                         f", got {value!r}.")
    return float(value)


class _PromptClassifier(LogitsClassifierMixin, BackboneParamsMixin, ClassifierMixin,
                        BaseEstimator):
    """Shared machinery: classes, prompts, class embeddings, few-shot refinement and the
    prediction methods. Subclasses set ``_modality_name`` and implement
    ``_check_backbone``, ``_default_templates``, ``_class_words``, ``_encode_prompts``
    and ``_default_logit_scale``."""

    # ------------------------------------------------------------------ parameters
    def _check_backbone_kwargs(self) -> dict:
        kw = super()._check_backbone_kwargs()
        pretrained, weights = getattr(self, "pretrained", None), getattr(self, "weights", None)
        if isinstance(self.backbone, Backbone):
            if pretrained is not None or weights is not None:
                raise ValueError(
                    "pretrained/weights apply to backbones given by name; got a Backbone "
                    f"instance with pretrained={pretrained!r}, weights={weights!r}."
                )
            return kw
        for key, value in (("pretrained", pretrained), ("weights", weights)):
            if value is not None:
                if key in kw and kw[key] != value:
                    raise ValueError(f"{key} is given both as a parameter ({value!r}) and in "
                                     f"backbone_kwargs ({kw[key]!r}); pass it once.")
                kw[key] = value
        return kw

    def _check_common(self):
        from tlestimators.features import _check_cache

        check_positive_int(self.batch_size, "batch_size")
        _check_cache(self.cache)
        check_random_state_int(self.random_state)
        if self.few_shot not in _FEW_SHOT:
            raise ValueError(
                f"few_shot must be None, 'prototype' or 'linear', got {self.few_shot!r}."
            )
        if not (isinstance(self.few_shot_alpha, str) and self.few_shot_alpha == "auto"):
            _check_real(self.few_shot_alpha, "few_shot_alpha", 0.0, 1.0)
        check_positive_int(self.max_iter, "max_iter")
        _check_real(self.reg, "reg", 0.0)
        if self.logit_scale is not None:
            _check_real(self.logit_scale, "logit_scale", 0.0, low_open=True)
        return resolve_device(self.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = self._modality_name == "text"
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ classes/prompts
    def _check_y(self, y):
        from sklearn.utils.multiclass import check_classification_targets

        if y is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs y: the labels (or just the list of class "
                "labels, with X=None for pure zero-shot)."
            )
        y_arr = np.asarray(y)
        if y_arr.ndim != 1:
            raise ValueError(f"y must be 1-D (n_samples,), got an array of shape {y_arr.shape}.")
        if y_arr.size == 0:
            raise ValueError(
                "y is empty: the label set is empty; pass the labels (or the class labels "
                "themselves) so the classifier knows which classes to predict."
            )
        check_classification_targets(y_arr)
        classes, y_enc = np.unique(y_arr, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"y holds a single class ({_r(classes[0])}); zero-shot classification needs at "
                "least 2 classes to choose between."
            )
        return classes, y_enc.astype(np.int64)

    def _lookup(self, mapping, label, param):
        """``mapping[label]``, also finding ``np.int64(3)`` under ``3`` and ``"3"``."""
        for key in (label, label.item() if hasattr(label, "item") else label, str(label)):
            try:
                if key in mapping:
                    return mapping[key]
            except TypeError:
                continue
        raise ValueError(
            f"{param} has no entry for label {_r(label)}, which is in y; {param} must cover "
            f"every class (its keys: {list(mapping)[:10]})."
        )

    def _templates_list(self):
        """``templates`` as a list of templates (str with a placeholder, or callables),
        or None when it is a per-class mapping."""
        t = self.templates
        if t is None:
            return self._default_templates()
        if isinstance(t, str):
            if t in ("openai", "simple"):
                return self._named_templates(t)
            t = [t]
        if isinstance(t, Mapping):
            return None
        if not isinstance(t, Sequence) or isinstance(t, (bytes, str)) or len(t) == 0:
            raise ValueError(
                "templates must be 'openai', 'simple', a non-empty list of format strings "
                "with a '{}' or '{c}' placeholder, or a dict {label: list of prompts}; got "
                f"{t!r}."
            )
        for i, tmpl in enumerate(t):
            if callable(tmpl):
                continue
            if not isinstance(tmpl, str):
                raise TypeError(f"templates[{i}] is {type(tmpl).__name__}; expected a str.")
            if not _has_placeholder(tmpl):
                raise ValueError(
                    f"templates[{i}] = {tmpl!r} has no placeholder: write '{{}}' or '{{c}}' "
                    "where the class name goes, e.g. 'a photo of a {}.'."
                )
        return list(t)

    def _named_templates(self, name):
        return template_set(name)

    def _build_prompts(self, classes):
        """``{label: [prompt, ...]}`` for every class, in ``classes`` order."""
        templates = self._templates_list()
        words = self._class_words(classes)  # label -> list of words/descriptions
        prompts = {}
        for label in classes:
            if templates is None:  # per-class prompt lists (CuPL-style)
                given = self._lookup(self.templates, label, "templates")
                if isinstance(given, str):
                    given = [given]
                if not isinstance(given, Sequence) or len(given) == 0 or not all(
                        isinstance(p, str) and p.strip() for p in given):
                    raise ValueError(
                        f"templates[{_r(label)}] must be a non-empty list of non-empty prompt "
                        f"strings, got {given!r}."
                    )
                ps = [p for w in words[label] for p in (
                    [_fill(g, w) for g in given] if any(_has_placeholder(g) for g in given)
                    else given)]
                ps = list(dict.fromkeys(ps))  # same prompt twice would weigh double
            else:
                ps = [_fill(tmpl, w) for w in words[label] for tmpl in templates]
            prompts[label] = ps
        return prompts

    def _class_embeddings(self, prompts, classes, device):
        """Mean of the L2-normalised prompt embeddings per class, renormalised."""
        flat = [p for label in classes for p in prompts[label]]
        emb = _normalize(np.asarray(self._encode_prompts(flat, device), dtype=np.float64))
        out, start = [], 0
        for label in classes:
            n = len(prompts[label])
            out.append(emb[start:start + n].mean(axis=0))
            start += n
        return _normalize(np.stack(out))

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Learn the classes from ``y``, embed their prompts, and (with ``few_shot``)
        refine the class weights with the labeled inputs ``X``.

        Parameters
        ----------
        X : input of the backbone's modality, or None
            Labeled examples, used only when ``few_shot`` is set (else only counted
            against ``y``). ``None`` for pure zero-shot.
        y : array-like of shape (n_samples,)
            Labels of ``X``, or with ``X=None`` simply the class labels.

        Returns
        -------
        self
        """
        device = self._check_common()
        classes, y_enc = self._check_y(y)
        if self.few_shot is not None and X is None:
            raise ValueError(
                f"few_shot={self.few_shot!r} needs labeled examples: pass X with y (or "
                "few_shot=None for pure zero-shot)."
            )
        backbone = self._get_backbone()
        items = None
        if X is not None:
            items = backbone.check_input(X, "X")
            from tlestimators.data import num_samples

            if num_samples(items) != len(y_enc):
                raise ValueError(
                    f"X has {num_samples(items)} samples but y has {len(y_enc)}; with X given, "
                    "y must label each sample of X."
                )
        prompts = self._build_prompts(classes)
        self.backbone_ = backbone
        self.classes_ = classes
        self.prompts_ = prompts
        self.class_embeddings_ = self._class_embeddings(prompts, classes, device).astype(
            np.float32)
        self.logit_scale_ = float(self.logit_scale if self.logit_scale is not None
                                  else self._default_logit_scale(backbone))
        coef, intercept, alpha = self.class_embeddings_.astype(np.float64), np.zeros(
            len(classes)), 0.0
        if self.few_shot is not None:
            Z = _normalize(self._embed(items, device).astype(np.float64))
            coef, intercept, alpha = self._few_shot(Z, y_enc, len(classes))
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        self.few_shot_alpha_ = alpha
        return self

    def _get_backbone(self):
        from tlestimators.features import frozen_backbone

        bb = frozen_backbone(self)
        self._check_backbone(bb)
        return bb

    def _embed(self, items, device):
        from tlestimators.features import compute_embeddings

        Z = compute_embeddings(self.backbone_, items, batch_size=self.batch_size,
                               device=device, cache=self.cache, verbose=self.verbose)
        if not np.isfinite(Z).all():
            raise ValueError(
                f"backbone {self.backbone_.config.name!r} produced NaN or infinite embeddings."
            )
        return Z

    # ------------------------------------------------------------------ few-shot
    def _fit_weights(self, Z, y, n_classes):
        """Few-shot class weights (alpha = 1) from normalised embeddings ``Z``."""
        T = self.class_embeddings_.astype(np.float64)
        if self.few_shot == "prototype":
            P = T.copy()
            for c in range(n_classes):
                if np.any(y == c):
                    P[c] = _normalize(Z[y == c].mean(axis=0))
            return P, np.zeros(n_classes)
        return self._linear_probe(Z, y, T)

    def _linear_probe(self, Z, y, T):
        """Multinomial logistic regression on ``logit_scale * Z @ W.T + b``, started at
        ``W = T`` with an L2 pull ``reg * ||W - T||^2`` back towards the text weights.

        The problem is convex and small (n_classes x embed_dim), so it is solved full
        batch with L-BFGS, as CLIP's own linear probes are: deterministic, no learning
        rate to tune.
        """
        from scipy.optimize import minimize
        from scipy.special import log_softmax

        C, D = T.shape
        s, reg = self.logit_scale_, float(self.reg)
        onehot = np.eye(C)[y]
        n = len(y)

        def objective(theta):
            W, b = theta[:C * D].reshape(C, D), theta[C * D:]
            logp = log_softmax(s * Z @ W.T + b, axis=1)
            diff = W - T
            loss = -np.sum(logp * onehot) / n + reg * np.sum(diff * diff)
            G = (np.exp(logp) - onehot) / n
            grad_w = s * G.T @ Z + 2.0 * reg * diff
            return loss, np.concatenate([grad_w.ravel(), G.sum(axis=0)])

        theta0 = np.concatenate([T.ravel(), np.zeros(C)])
        res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        if not np.all(np.isfinite(res.x)):
            from tlestimators.exceptions import TrainingDivergedError

            raise TrainingDivergedError("the few-shot linear probe diverged (non-finite "
                                        "weights); increase reg.")
        return res.x[:C * D].reshape(C, D), res.x[C * D:]

    def _mix(self, W, b, alpha):
        T = self.class_embeddings_.astype(np.float64)
        if self.few_shot == "prototype":
            return _normalize((1 - alpha) * T + alpha * W), np.zeros(len(T))
        return (1 - alpha) * T + alpha * W, alpha * b

    def _few_shot(self, Z, y, n_classes):
        from threadpoolctl import threadpool_limits

        # The few-shot problems are tiny (n_classes x embed_dim): BLAS threads only add
        # synchronisation, which on a busy machine costs ms per L-BFGS step (200x slower).
        with threadpool_limits(1):
            return self._few_shot_single_thread(Z, y, n_classes)

    def _few_shot_single_thread(self, Z, y, n_classes):
        W, b = self._fit_weights(Z, y, n_classes)
        if self.few_shot_alpha != "auto":
            alpha = float(self.few_shot_alpha)
            return (*self._mix(W, b, alpha), alpha)
        alpha = self._select_alpha(Z, y, n_classes)
        return (*self._mix(W, b, alpha), alpha)

    def _select_alpha(self, Z, y, n_classes):
        """The mixing coefficient with the best stratified-CV accuracy (ties: lower CV
        log-loss) over ``(0, .25, .5, .75, 1)``; 0.5 when a class has a single shot."""
        from scipy.special import log_softmax
        from sklearn.model_selection import StratifiedKFold

        counts = np.bincount(y, minlength=n_classes)
        k = int(min(5, counts[counts > 0].min()))
        if k < 2:
            return 0.5
        seed = check_random_state_int(self.random_state)
        folds = StratifiedKFold(k, shuffle=True, random_state=0 if seed is None else seed)
        acc = np.zeros(len(_ALPHA_GRID))
        nll = np.zeros(len(_ALPHA_GRID))
        for tr, va in folds.split(Z, y):
            W, b = self._fit_weights(Z[tr], y[tr], n_classes)
            for i, a in enumerate(_ALPHA_GRID):
                Wa, ba = self._mix(W, b, a)
                logits = self.logit_scale_ * Z[va] @ Wa.T + ba
                acc[i] += np.mean(logits.argmax(1) == y[va])
                nll[i] -= log_softmax(logits, axis=1)[np.arange(len(va)), y[va]].mean()
        best = max(range(len(_ALPHA_GRID)), key=lambda i: (round(acc[i], 9), -nll[i]))
        return float(_ALPHA_GRID[best])

    # ------------------------------------------------------------------ predict
    def _logits(self, X):
        """``logit_scale_ * cosine(embedding, class weights) + intercept_``: what
        ``decision_function`` returns, and ``predict_proba`` softmaxes."""
        check_is_fitted(self)
        items = self.backbone_.check_input(X, "X")
        Z = _normalize(self._embed(items, resolve_device(self.device)).astype(np.float64))
        return self.logit_scale_ * Z @ self.coef_.astype(np.float64).T + self.intercept_


class ZeroShotCLIPClassifier(_PromptClassifier):
    """Zero-shot image classification with a CLIP image-text backbone.

    Every class becomes prompts (``class_names`` slotted into ``templates``); the text
    tower embeds them once at ``fit``; an image is assigned the class whose averaged
    prompt embedding is most similar to its image embedding. ``fit`` only needs the
    labels, so ``fit(None, ["dog", "cat"])`` is a complete zero-shot classifier. With
    ``few_shot`` set, labeled images refine the text weights.

    Parameters
    ----------
    backbone : str or Backbone, default="open_clip/ViT-B-32"
        Any image-text backbone of the registry (``open_clip/<arch>``, plugins), i.e. one
        with ``encode_text``, ``tokenize`` and ``logit_scale``.
    pretrained : bool or str, default=None
        Passed to :func:`~tlestimators.create_backbone` when not None: for ``open_clip``
        a local checkpoint path or an open_clip pretrained tag (``"openai"``, ...).
    weights : str or path-like, default=None
        A local checkpoint file, passed to :func:`~tlestimators.create_backbone`.
    class_names : dict, list or None, default=None
        The words used for each label in the prompts: a dict ``{label: name}`` (or
        ``{label: [synonyms]}``, whose prompts are ensembled), or a list aligned with the
        sorted labels. Default: the label itself with underscores turned into spaces.
    templates : {"openai", "simple"}, list of str, dict or None, default="openai"
        ``"openai"``: the 80 ImageNet templates of Radford et al. (2021); ``"simple"``:
        open_clip's short set (both read from open_clip at run time); a list of format
        strings with ``{}`` or ``{c}``; or a dict ``{label: [full prompts]}`` (CuPL-style
        class descriptions; a ``{}`` in them is replaced by the class name).
    few_shot : {None, "prototype", "linear"}, default=None
        ``None``: pure zero-shot (``X`` is not used). ``"prototype"``: class weights
        mix the text embedding with the mean normalised image embedding of the class's
        labeled images. ``"linear"``: a linear probe on normalised image embeddings,
        initialised from the text weights and pulled back to them with ``reg``, mixed
        with them (WiSE-FT-style weight interpolation).
    few_shot_alpha : float in [0, 1] or "auto", default="auto"
        Weight of the image-derived weights in the mix (0: zero-shot, 1: only the labeled
        images). ``"auto"`` picks it from (0, .25, .5, .75, 1) by stratified
        cross-validation on the labeled images.
    max_iter : int, default=200
        L-BFGS iterations of the ``"linear"`` probe (full batch, as CLIP's probes).
    reg : float, default=1e-3
        Strength of the squared-distance pull of the probe's weights to the text weights.
    logit_scale : float, default=None
        Multiplier of the cosine similarities; None uses the backbone's learned one
        (``exp(logit_scale)``, 100 for OpenAI CLIP). Changes probabilities, not
        zero-shot predictions.
    backbone_kwargs : dict, default=None
        Other :func:`~tlestimators.create_backbone` arguments (``model_cfg``, ...).
    batch_size : int, default=64
        Images per forward pass.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    cache : bool or path-like, default=True
        Feature cache for the image embeddings (shared across clones and CV folds).
    random_state : int, RandomState or None, default=None
        Seeds the CV folds of ``few_shot_alpha="auto"``.
    verbose : int, default=0
        Progress bars while embedding.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted.
    prompts_ : dict
        ``{label: [prompt, ...]}``: what was embedded.
    class_embeddings_ : ndarray of shape (n_classes, embed_dim)
        The zero-shot class weights (unit norm): the text-derived classifier.
    coef_ : ndarray of shape (n_classes, embed_dim)
        The class weights used for prediction (``class_embeddings_`` without
        ``few_shot``).
    intercept_ : ndarray of shape (n_classes,)
        Per-class bias (non-zero only for the ``"linear"`` few-shot probe).
    logit_scale_ : float
        The cosine multiplier in use.
    few_shot_alpha_ : float
        The mixing coefficient in use (0.0 without ``few_shot``).
    backbone_ : Backbone
        The frozen image-text backbone.

    See Also
    --------
    ZeroShotTextClassifier : the same for text with a sentence-embedding backbone.
    FrozenFeatureClassifier : a linear probe on the image embeddings, from labels only.

    Notes
    -----
    ``decision_function`` is ``logit_scale_ * cos(image, class) + intercept_``; with the
    default prompts and no few-shot it equals open_clip's own
    ``build_zero_shot_classifier`` + ``encode_image`` logits. Text embeddings are
    computed once per fit; image embeddings go through the shared feature cache.
    Prompt ensembling is worth ~1.5 % ImageNet accuracy over a single template [1]_;
    class descriptions generated per class (CuPL) help further [2]_. Few-shot class
    prototypes follow Tip-Adapter's cache idea [3]_ in its simplest form; the
    ``"linear"`` probe initialised from text weights and interpolated with them follows
    WiSE-FT [4]_.

    References
    ----------
    .. [1] Radford et al., "Learning Transferable Visual Models From Natural Language
       Supervision", ICML 2021.
    .. [2] Pratt et al., "What does a platypus look like? Generating customized prompts
       for zero-shot image classification" (CuPL), ICCV 2023.
    .. [3] Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot
       Classification", ECCV 2022.
    .. [4] Wortsman et al., "Robust fine-tuning of zero-shot models" (WiSE-FT), CVPR 2022.

    Examples
    --------
    >>> from tlestimators import ZeroShotCLIPClassifier
    >>> clf = ZeroShotCLIPClassifier("open_clip/ViT-B-32", pretrained="openai",
    ...                              templates="simple")       # doctest: +SKIP
    >>> clf.fit(None, ["dog", "cat", "guitar"])                # doctest: +SKIP
    >>> clf.predict(images)                                    # doctest: +SKIP
    """

    _modality_name = "image"

    def __init__(
        self,
        backbone="open_clip/ViT-B-32",
        *,
        pretrained=None,
        weights=None,
        class_names=None,
        templates="openai",
        few_shot=None,
        few_shot_alpha="auto",
        max_iter=200,
        reg=1e-3,
        logit_scale=None,
        backbone_kwargs=None,
        batch_size=64,
        device="auto",
        cache=True,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.pretrained = pretrained
        self.weights = weights
        self.class_names = class_names
        self.templates = templates
        self.few_shot = few_shot
        self.few_shot_alpha = few_shot_alpha
        self.max_iter = max_iter
        self.reg = reg
        self.logit_scale = logit_scale
        self.backbone_kwargs = backbone_kwargs
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.random_state = random_state
        self.verbose = verbose

    def _check_backbone(self, bb):
        missing = [a for a in ("encode_text", "tokenize", "logit_scale") if not hasattr(bb, a)]
        if bb.config.modality != "image-text" or missing:
            raise ValueError(
                f"backbone {bb.config.name!r} (modality {bb.config.modality!r}) has no text "
                f"tower{' (missing ' + ', '.join(missing) + ')' if missing else ''}; "
                "ZeroShotCLIPClassifier needs an image-text backbone such as "
                "'open_clip/ViT-B-32'. For an image-only backbone use FrozenFeatureClassifier."
            )

    def _default_templates(self):
        return ["{}"]

    def _default_logit_scale(self, bb):
        with torch.no_grad():
            return float(torch.as_tensor(bb.logit_scale).detach().float().exp().cpu())

    def _class_words(self, classes):
        names = self.class_names
        if names is None:
            return {c: [str(c).replace("_", " ")] for c in classes}
        if isinstance(names, Mapping):
            out = {}
            for c in classes:
                v = self._lookup(names, c, "class_names")
                out[c] = _words(v, f"class_names[{_r(c)}]")
            return out
        if isinstance(names, Sequence) and not isinstance(names, str):
            if len(names) != len(classes):
                raise ValueError(
                    f"class_names has {len(names)} entries but y has {len(classes)} classes "
                    f"({classes.tolist()[:10]}); a list must give one name per sorted label, "
                    "or pass a dict {label: name}."
                )
            return {c: [str(n)] for c, n in zip(classes, names)}
        raise TypeError(f"class_names must be None, a dict or a list, got {names!r}.")

    def _encode_prompts(self, prompts, device):
        from tlestimators.features import _RUN_LOCK

        bb = self.backbone_
        out = []
        with _RUN_LOCK:  # the frozen backbone may be shared with other estimators
            try:
                prev = next(bb.parameters()).device
            except StopIteration:
                prev = None
            was_training = bb.training
            bb.eval()
            try:
                if prev is not None and prev != torch.device(device):
                    bb.to(device)
                with torch.inference_mode():
                    for s in range(0, len(prompts), self.batch_size):
                        tokens = bb.tokenize(prompts[s:s + self.batch_size]).to(device)
                        out.append(bb.encode_text(tokens).float().cpu())
            finally:
                if prev is not None and prev != torch.device(device):
                    bb.to(prev)
                bb.train(was_training)
        return torch.cat(out).numpy()


class ZeroShotTextClassifier(_PromptClassifier):
    """Zero-shot text classification with a sentence-embedding backbone.

    Each label is described in words (``label_descriptions``, optionally slotted into
    ``templates``); a text gets the label whose averaged description embedding is most
    similar (cosine) to its own embedding. ``fit`` only needs the labels; with
    ``few_shot`` set, a few labeled texts refine the class weights.

    Parameters
    ----------
    backbone : str or Backbone, default="minilm"
        A text backbone (``minilm``, ``sentence-transformers/<dir>``, plugins).
    label_descriptions : dict or None, default=None
        ``{label: description}`` or ``{label: [descriptions]}`` (ensembled), e.g.
        ``{"LOC": "a question about a place or location"}``. Default: the label itself
        with underscores turned into spaces.
    templates : list of str, dict or None, default=None
        Format strings with ``{}`` applied to every description (e.g.
        ``["This question asks for {}."]``), or a dict ``{label: [full prompts]}``.
        None: the descriptions as they are.
    few_shot : {None, "prototype", "linear"}, default=None
        As in :class:`ZeroShotCLIPClassifier`, on sentence embeddings.
    few_shot_alpha : float in [0, 1] or "auto", default="auto"
        Weight of the labeled-example weights in the mix; ``"auto"``: by stratified CV.
    max_iter : int, default=200
        L-BFGS iterations of the ``"linear"`` probe.
    reg : float, default=1e-3
        Pull of the probe's weights towards the description weights.
    logit_scale : float, default=None
        Cosine multiplier; None: 20, the scale sentence-transformers trains its
        embeddings with (``MultipleNegativesRankingLoss``).
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (e.g. ``max_seq_length``).
    batch_size : int, default=64
        Texts per forward pass.
    device : str, default="auto"
    cache : bool or path-like, default=True
        Feature cache for the sentence embeddings (texts and descriptions).
    random_state : int, RandomState or None, default=None
    verbose : int, default=0

    Attributes
    ----------
    classes_, prompts_, class_embeddings_, coef_, intercept_, logit_scale_,
    few_shot_alpha_, backbone_
        As in :class:`ZeroShotCLIPClassifier`.

    See Also
    --------
    ZeroShotCLIPClassifier : the image version.
    FrozenFeatureClassifier : a classifier trained on all labels.

    Notes
    -----
    Classifying by similarity to label descriptions is the "embedding" approach to
    zero-shot text classification [1]_; with a few labels per class, class prototypes
    or a probe initialised from the description weights usually beat both pure
    zero-shot and a probe from scratch (compare SetFit [2]_, which also fine-tunes the
    encoder).

    References
    ----------
    .. [1] Yin, Hay and Roth, "Benchmarking Zero-shot Text Classification: Datasets,
       Evaluation and Entailment Approach", EMNLP 2019.
    .. [2] Tunstall et al., "Efficient Few-Shot Learning Without Prompts" (SetFit), 2022.

    Examples
    --------
    >>> from tlestimators import ZeroShotTextClassifier
    >>> clf = ZeroShotTextClassifier(label_descriptions={
    ...     "sport": "sports and games", "food": "cooking and eating"}, device="cpu")
    >>> clf.fit(None, ["sport", "food"]).predict(["He scored a goal", "Bake the bread"])
    array(['sport', 'food'], dtype='<U5')
    """

    _modality_name = "text"

    def __init__(
        self,
        backbone="minilm",
        *,
        label_descriptions=None,
        templates=None,
        few_shot=None,
        few_shot_alpha="auto",
        max_iter=200,
        reg=1e-3,
        logit_scale=None,
        backbone_kwargs=None,
        batch_size=64,
        device="auto",
        cache=True,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.label_descriptions = label_descriptions
        self.templates = templates
        self.few_shot = few_shot
        self.few_shot_alpha = few_shot_alpha
        self.max_iter = max_iter
        self.reg = reg
        self.logit_scale = logit_scale
        self.backbone_kwargs = backbone_kwargs
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.random_state = random_state
        self.verbose = verbose

    def _check_backbone(self, bb):
        if bb.config.modality != "text":
            raise ValueError(
                f"backbone {bb.config.name!r} has modality {bb.config.modality!r}; "
                "ZeroShotTextClassifier needs a text backbone such as 'minilm' (for images "
                "use ZeroShotCLIPClassifier)."
            )

    def _default_templates(self):
        return ["{}"]

    def _named_templates(self, name):
        raise ValueError(
            f"templates={name!r} are CLIP's image prompt sets; for text pass a list such as "
            "['This text is about {}.'] or None to use the label descriptions as they are."
        )

    def _default_logit_scale(self, bb):
        return 20.0

    def _class_words(self, classes):
        d = self.label_descriptions
        if d is None:
            return {c: [str(c).replace("_", " ")] for c in classes}
        if not isinstance(d, Mapping):
            raise TypeError(
                f"label_descriptions must be a dict {{label: description(s)}}, got {d!r}."
            )
        out = {}
        for c in classes:
            v = self._lookup(d, c, "label_descriptions")
            out[c] = _words(v, f"label_descriptions[{_r(c)}]")
        return out

    def _encode_prompts(self, prompts, device):
        from tlestimators.features import compute_embeddings

        return compute_embeddings(self.backbone_, self.backbone_.check_input(prompts, "prompts"),
                                  batch_size=self.batch_size, device=device, cache=self.cache)
