"""Zero-shot (and few-shot) classification from prompts: CLIP images, sentence embeddings.

Both estimators turn every class into a set of prompts, embed the prompts with the text
encoder, and classify an input by the cosine similarity of its embedding with each
class embedding (the mean of the L2-normalised prompt embeddings, renormalised:
*template ensembling*, Radford et al. 2021). ``fit`` only needs the labels; with
``few_shot`` set, labeled inputs refine the text-derived class weights (the recipes live
in :mod:`tlestimators.estimators._fewshot`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tlestimators._validation import (
    DEPRECATED,
    check_random_state_int,
    renamed_param,
    resolve_device,
)
from tlestimators.backbones.base import Backbone
from tlestimators.estimators._base import (
    BackboneParamsMixin,
    common_constraints,
    deprecated_constraint,
)
from tlestimators.estimators._fewshot import fit_few_shot, normalize
from tlestimators.estimators._netclassifier import LogitsClassifierMixin
from tlestimators.estimators._prompts import (
    TEXT_TEMPLATES,
    _r,
    build_prompts,
    check_templates,
    class_prompt_embeddings,
    class_words,
    template_set,
)

__all__ = ["ZeroShotCLIPClassifier", "ZeroShotTextClassifier", "template_set",
           "TEXT_TEMPLATES"]

_PROMPT_CONSTRAINTS = {
    **common_constraints("backbone", "backbone_kwargs", "batch_size", "device", "cache",
                         "random_state", "verbose"),
    "class_names": [Mapping, "array-like", None],
    "templates": [str, "array-like", Mapping, None],
    "few_shot": [StrOptions({"prototype", "linear"}), None],
    "few_shot_alpha": [Interval(numbers.Real, 0, 1, closed="both"), StrOptions({"auto"})],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "reg": [Interval(numbers.Real, 0, None, closed="left")],
    "logit_scale": [Interval(numbers.Real, 0, None, closed="neither"), None],
}


class _PromptClassifier(LogitsClassifierMixin, BackboneParamsMixin, ClassifierMixin,
                        BaseEstimator):
    """Shared machinery: classes, prompts, class embeddings, few-shot refinement, logits.
    Subclasses set ``_modality_name`` and implement ``_check_backbone``,
    ``_default_templates``, ``_encode_prompts`` and ``_default_logit_scale``."""

    def _strategy(self):
        return "zero-shot" if self.few_shot is None else f"zero-shot + few-shot ({self.few_shot})"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = self._modality_name == "text"
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
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
        device = resolve_device(self.device)
        classes, y_enc = self._check_y(y)
        if self.few_shot is not None and X is None:
            raise ValueError(
                f"few_shot={self.few_shot!r} needs labeled examples: pass X with y (or "
                "few_shot=None for pure zero-shot)."
            )
        backbone = self._get_backbone()
        items = None
        if X is not None:
            from tlestimators.data import num_samples

            items = backbone.check_input(X, "X")
            if num_samples(items) != len(y_enc):
                raise ValueError(
                    f"X has {num_samples(items)} samples but y has {len(y_enc)}; with X given, "
                    "y must label each sample of X."
                )
        self.backbone_ = backbone
        self.classes_ = classes
        self.prompts_ = self._build_prompts(classes)
        T = self._class_embeddings(self.prompts_, classes, device)
        self.class_embeddings_ = T.astype(np.float32)
        self.logit_scale_ = float(self.logit_scale if self.logit_scale is not None
                                  else self._default_logit_scale(backbone))
        coef, intercept, alpha, self.n_iter_ = T, np.zeros(len(classes)), 0.0, 0
        if self.few_shot is not None:
            Z = normalize(self._embed(items, device).astype(np.float64))
            coef, intercept, alpha, self.n_iter_ = fit_few_shot(
                self.few_shot, Z, y_enc, T, alpha=self.few_shot_alpha,
                logit_scale=self.logit_scale_, reg=float(self.reg), max_iter=self.max_iter,
                seed=check_random_state_int(self.random_state))
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        self.few_shot_alpha_ = alpha
        return self

    def _check_y(self, y):
        from sklearn.utils.multiclass import check_classification_targets

        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "pass the labels (or just the list of class labels, with X=None for pure "
                "zero-shot)."
            )
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            from sklearn.utils.validation import column_or_1d

            y_arr = column_or_1d(y_arr, warn=True)
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
                f"y holds only one class ({_r(classes[0])}); zero-shot classification needs at "
                "least 2 classes to choose between."
            )
        return classes, y_enc.astype(np.int64)

    def _get_backbone(self):
        from tlestimators.features import frozen_backbone

        bb = frozen_backbone(self)
        self._check_backbone(bb)
        return bb

    # ------------------------------------------------------------------ prompts
    def _class_names(self):
        return self.class_names

    def _named_templates(self, name):
        return template_set(name)

    def _build_prompts(self, classes):
        template_list = check_templates(self.templates, self._default_templates,
                                        self._named_templates)
        words = class_words(self._class_names(), classes)
        return build_prompts(self.templates, template_list, words, classes)

    def _class_embeddings(self, prompts, classes, device):
        return class_prompt_embeddings(lambda texts: self._encode_prompts(texts, device),
                                       prompts, classes)

    # ------------------------------------------------------------------ predict
    def _embed(self, items, device):
        from tlestimators.features import compute_embeddings

        return compute_embeddings(self.backbone_, items, batch_size=self.batch_size,
                                  device=device, cache=self.cache, verbose=self.verbose)

    def _logits(self, X):
        """``logit_scale_ * cosine(embedding, class weights) + intercept_``: what
        ``decision_function`` returns, and ``predict_proba`` softmaxes."""
        check_is_fitted(self)
        items = self.backbone_.check_input(X, "X")
        Z = normalize(self._embed(items, resolve_device(self.device)).astype(np.float64))
        return self.logit_scale_ * Z @ self.coef_.astype(np.float64).T + self.intercept_


_FEW_SHOT_DOC = """\
    few_shot : {None, "prototype", "linear"}, default=None
        ``None``: pure zero-shot (``X`` is not used). ``"prototype"``: class weights
        mix the text embedding with the mean normalised embedding of the class's
        labeled inputs. ``"linear"``: a linear probe on normalised embeddings,
        initialised from the text weights and pulled back to them with ``reg``, mixed
        with them (WiSE-FT-style weight interpolation).
    few_shot_alpha : float in [0, 1] or "auto", default="auto"
        Weight of the labeled-data weights in the mix (0: zero-shot, 1: only the labeled
        inputs). ``"auto"`` picks it from (0, .25, .5, .75, 1) by stratified
        cross-validation on the labeled inputs.
    max_iter : int, default=200
        L-BFGS iterations of the ``"linear"`` probe (full batch, as CLIP's probes).
    reg : float, default=1e-3
        Strength of the squared-distance pull of the probe's weights to the text weights."""


class ZeroShotCLIPClassifier(_PromptClassifier):
    __doc__ = """Zero-shot image classification with a CLIP image-text backbone.

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
""" + _FEW_SHOT_DOC + """
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
    n_iter_ : int
        L-BFGS iterations of the ``"linear"`` few-shot probe (0 otherwise).
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
    _parameter_constraints = {
        **_PROMPT_CONSTRAINTS,
        "pretrained": ["boolean", str, os.PathLike, None],
        "weights": [str, os.PathLike, None],
    }

    def __init__(self, backbone="open_clip/ViT-B-32", *, pretrained=None, weights=None,
                 class_names=None, templates="openai", few_shot=None, few_shot_alpha="auto",
                 max_iter=200, reg=1e-3, logit_scale=None, backbone_kwargs=None, batch_size=64,
                 device="auto", cache=True, random_state=None, verbose=0):
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

    def _check_backbone_kwargs(self) -> dict:
        # pretrained/weights are shorthands for the backbone_kwargs of the same names
        kw = super()._check_backbone_kwargs()
        if isinstance(self.backbone, Backbone):
            if self.pretrained is not None or self.weights is not None:
                raise ValueError(
                    "pretrained/weights apply to backbones given by name; got a Backbone "
                    f"instance with pretrained={self.pretrained!r}, weights={self.weights!r}."
                )
            return kw
        for key, value in (("pretrained", self.pretrained), ("weights", self.weights)):
            if value is not None:
                if key in kw and kw[key] != value:
                    raise ValueError(f"{key} is given both as a parameter ({value!r}) and in "
                                     f"backbone_kwargs ({kw[key]!r}); pass it once.")
                kw[key] = value
        return kw

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

    def _encode_prompts(self, prompts, device):
        from tlestimators.features import _RUN_LOCK

        bb = self.backbone_
        out = []
        with _RUN_LOCK:  # the frozen backbone may be shared with other estimators
            prev = next(bb.parameters(), torch.empty(0)).device
            was_training = bb.training
            bb.eval()
            moved = prev != torch.device(device)
            try:
                if moved:
                    bb.to(device)
                with torch.inference_mode():
                    for s in range(0, len(prompts), self.batch_size):
                        tokens = bb.tokenize(prompts[s:s + self.batch_size]).to(device)
                        out.append(bb.encode_text(tokens).float().cpu())
            finally:
                if moved:
                    bb.to(prev)
                bb.train(was_training)
        return torch.cat(out).numpy()


class ZeroShotTextClassifier(_PromptClassifier):
    __doc__ = """Zero-shot text classification with a sentence-embedding backbone.

    Each label is put in words (``class_names``, slotted into ``templates``); a text gets
    the label whose averaged prompt embedding is most similar (cosine) to its own
    embedding. ``fit`` only needs the labels; with ``few_shot`` set, a few labeled texts
    refine the class weights.

    Parameters
    ----------
    backbone : str or Backbone, default="minilm"
        A text backbone (``minilm``, ``sentence-transformers/<dir>``, plugins).
    class_names : dict, list or None, default=None
        The words for each label: ``{label: name or description}`` or
        ``{label: [several]}`` (ensembled), e.g. ``{"LOC": "a place or location"}``; or
        a list aligned with the sorted labels. Default: the label itself with
        underscores turned into spaces.
    templates : list of str, dict or None, default=None
        Format strings with ``{}`` applied to every class name (e.g.
        ``["This question asks for {}."]``; ``["{}"]`` uses the names as they are), or a
        dict ``{label: [full prompts]}``. None: ``TEXT_TEMPLATES``, a generic
        ensemble that needs no domain words (the bare name, ``"This text is about {}."``,
        ``"A text about {}."``, ``"It is about {}."``, ``"This is an example of {}."``),
        chosen on TREC and SMS spam (``benchmarks/results/zeroshot_templates.md``).
""" + _FEW_SHOT_DOC + """
    logit_scale : float, default=None
        Cosine multiplier; None: 20, the scale sentence-transformers trains its
        embeddings with (``MultipleNegativesRankingLoss``).
    backbone_kwargs : dict, default=None
        Passed to :func:`~tlestimators.create_backbone` (e.g. ``max_seq_length``).
    batch_size : int, default=64
        Texts per forward pass.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    cache : bool or path-like, default=True
        Feature cache for the sentence embeddings (texts and prompts).
    random_state : int, RandomState or None, default=None
        Seeds the CV folds of ``few_shot_alpha="auto"``.
    verbose : int, default=0
        Progress bars while embedding.
    label_descriptions : dict or None, default="deprecated"
        Deprecated since 0.2, removed in 0.4: use ``class_names`` (same meaning).
        Setting both raises.

    Attributes
    ----------
    classes_, prompts_, class_embeddings_, coef_, intercept_, logit_scale_, \
few_shot_alpha_, n_iter_, backbone_
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
    >>> clf = ZeroShotTextClassifier(class_names={
    ...     "sport": "sports and games", "food": "cooking and eating"}, device="cpu")
    >>> clf.fit(None, ["sport", "food"]).predict(["He scored a goal", "Bake the bread"])
    array(['sport', 'food'], dtype='<U5')
    """

    _modality_name = "text"
    _parameter_constraints = {
        **_PROMPT_CONSTRAINTS,
        "label_descriptions": deprecated_constraint([Mapping, None]),
    }

    def __init__(self, backbone="minilm", *, class_names=None, templates=None, few_shot=None,
                 few_shot_alpha="auto", max_iter=200, reg=1e-3, logit_scale=None,
                 backbone_kwargs=None, batch_size=64, device="auto", cache=True,
                 random_state=None, verbose=0, label_descriptions=DEPRECATED):
        self.backbone = backbone
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
        self.label_descriptions = label_descriptions

    def _class_names(self):
        return renamed_param(self, "label_descriptions", "class_names")

    def _check_backbone(self, bb):
        if bb.config.modality != "text":
            raise ValueError(
                f"backbone {bb.config.name!r} has modality {bb.config.modality!r}; "
                "ZeroShotTextClassifier needs a text backbone such as 'minilm' (for images "
                "use ZeroShotCLIPClassifier)."
            )

    def _default_templates(self):
        return list(TEXT_TEMPLATES)

    def _named_templates(self, name):
        raise ValueError(
            f"templates={name!r} are CLIP's image prompt sets; for text pass a list such as "
            "['This text is about {}.'], or None for the generic default ensemble."
        )

    def _default_logit_scale(self, bb):
        return 20.0

    def _encode_prompts(self, prompts, device):
        from tlestimators.features import compute_embeddings

        return compute_embeddings(self.backbone_, self.backbone_.check_input(prompts, "prompts"),
                                  batch_size=self.batch_size, device=device, cache=self.cache)
