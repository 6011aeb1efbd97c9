"""DANN: domain-adversarial adaptation to an unlabeled target domain.

A feature extractor (the backbone, optionally followed by a bottleneck) feeds a label
head and, through a gradient-reversal layer, a domain classifier. Minimising the
label loss on labeled (source) samples while the reversed domain loss pushes the
features to fool the domain classifier gives features that predict the label and
look alike in both domains (Ganin et al., JMLR 2016).

The estimator follows sklearn's semi-supervised convention: rows with ``y == -1`` are
unlabeled target-domain samples, so Pipeline, GridSearchCV and cross-validation pass
them through untouched. skada's ``sample_domain`` (source > 0, target < 0) may be
given as fit metadata for several sources or labeled target samples. The training
loop, data, freezing and prediction are the shared DA core
(:mod:`tlestimators.estimators._da`); this module adds the domain classifier.
"""

from __future__ import annotations

import warnings
from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from tlestimators._validation import DEPRECATED
from tlestimators.callbacks import (  # noqa: F401  (re-exported for compatibility)
    DANNLambdaSchedule,
    DANNLRDecay,
    dann_lambda,
    dann_lr_factor,
)
from tlestimators.estimators._base import deprecated_constraint
from tlestimators.estimators._da import (
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_STANDARDIZE,
    DEFAULT_WEIGHT_DECAY,
    AdversarialCriterion,
    AdversarialMixin,
    BaseDomainAdapter,
    DAModule,
    document_da_estimator,
    make_domain_head,
)

__all__ = ["DANNAdapter", "DAModule", "DANNLambdaSchedule", "DANNLRDecay", "dann_lambda",
           "dann_lr_factor"]


_DOMAIN_HEAD = """
    domain_head : {"mlp", "linear"} or nn.Module, default="mlp"
        Domain classifier on the reversed features; it must return one logit per
        sample (binary cross-entropy with logits; positive = target) or two
        (softmax cross-entropy). ``"mlp"`` has two hidden ReLU layers (as in the
        paper's image experiments); ``"linear"`` is the paper's shallow regressor."""
_LAMBDA_DANN = """Here the strength of the reversed domain gradient. The paper's
        image experiments ramp to 1; 0.3 is the default because on frozen image
        embeddings (PACS photo->art) and digits 1 over-aligns while 0.3 gains (see
        Notes)."""


@document_da_estimator(_LAMBDA_DANN, after_head=_DOMAIN_HEAD)
class DANNAdapter(AdversarialMixin, BaseDomainAdapter):
    """Domain-adversarial neural network (DANN) adapting a backbone to an unlabeled
    target domain.

    ``fit(X, y)`` takes source and target samples together: rows with ``y == -1``
    are unlabeled target-domain samples (sklearn's semi-supervised convention). A
    feature extractor is trained so that a label head predicts the source labels
    while a domain classifier, fed through a gradient-reversal layer, cannot tell
    source from target.

    Parameters
    ----------
    %(common_parameters)s
    backbone_lr_mult : float or "auto", default="deprecated"
        Deprecated (FutureWarning): a factor of ``lr``; pass ``backbone_lr=lr * mult``.

    Attributes
    ----------
    %(common_attributes)s

    See Also
    --------
    FineTuneClassifier : supervised fine-tuning, when there is no target data.
    tlestimators.metrics.DeepEmbeddedValidationScorer : choose ``lambda_max``
        without target labels.
    tlestimators.model_selection.SourceTargetKFold : CV folds keeping both domains.

    Notes
    -----
    **Model selection needs a DA scorer and a DA splitter.** ``score`` is source
    accuracy, so ``GridSearchCV`` without ``scoring=`` would select by how well the
    source is fitted, not by the target. Pass an unsupervised DA scorer (e.g.
    ``scoring=DeepEmbeddedValidationScorer()`` from :mod:`tlestimators.metrics`) and a
    source/target splitter (``cv=SourceTargetKFold(...)`` or
    ``SourceTargetShuffleSplit`` from :mod:`tlestimators.model_selection`), so every
    fold keeps target rows; a plain ``KFold`` can leave a fold without them, and the
    DA scorers then raise.

    **Defaults and input scale.** Adam at ``lr=1e-3`` annealed as the paper's
    ``1 / (1 + 10 p) ** 0.75``, the reversal strength ramped as in the paper to
    ``lambda_max=0.3``, dense inputs standardised by one global scale. The paper's
    SGD recipe (``optimizer="sgd", lr=0.01, lambda_max=1, standardize=None``, the
    defaults of 0.1) underfits dense embeddings of tiny per-column scale: on
    L2-normalised 384-d LSA embeddings of the Amazon reviews (a stand-in for
    sentence embeddings) its source loss only fell from 0.69 to 0.66 (B->D) and 0.61
    (K->E) in 20 epochs, 8 and 5 points below a logistic regression; Adam reaches
    0.2 and 0.14 there, and on the paper's bag-of-words B->D it scores 82.2 where
    SGD scored 80.6. The benchmark (``benchmarks/results/da.md``) compares the
    defaults with their own ``lambda_max=0`` fit on every pair. Any of these
    settings can be chosen without target labels by
    :class:`~tlestimators.model_selection.DomainAdaptationSearchCV`.

    ``fit`` refuses data without unlabeled target rows, so scikit-learn's
    ``check_estimator`` (which fits on plain supervised data) runs through a test
    adaptor that appends the rows of ``X`` once more as target rows
    (``tests/test_dann.py``); the one check that cannot pass uses ``-1`` as a class.

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

    _parameter_constraints: dict = {
        **BaseDomainAdapter._parameter_constraints,
        "domain_head": [StrOptions({"mlp", "linear"}), nn.Module],
        "backbone_lr_mult": deprecated_constraint(
            [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")]),
    }

    _method = "DANN"

    def __init__(
        self,
        backbone="mlp",
        *,
        backbone_kwargs=None,
        unfreeze="all",
        bottleneck="auto",
        head="linear",
        domain_head="mlp",
        lambda_max=0.3,
        lambda_schedule="dann",
        lr=DEFAULT_LR,
        lr_schedule="dann",
        warmup=0.1,
        backbone_lr=None,
        optimizer=DEFAULT_OPTIMIZER,
        momentum=0.9,
        weight_decay=DEFAULT_WEIGHT_DECAY,
        max_epochs=20,
        batch_size=64,
        balanced=True,
        standardize=DEFAULT_STANDARDIZE,
        head_init="random",
        device="auto",
        random_state=None,
        verbose=0,
        cache=True,
        backbone_lr_mult=DEPRECATED,
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
        self.warmup = warmup
        self.backbone_lr = backbone_lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.balanced = balanced
        self.standardize = standardize
        self.head_init = head_init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.cache = cache
        self.backbone_lr_mult = backbone_lr_mult

    def _backbone_lr(self, backbone):
        mult = self.backbone_lr_mult  # the relative rate of 0.2, before backbone_lr
        if not (isinstance(mult, str) and mult == DEPRECATED):
            warnings.warn(
                f"{type(self).__name__}: backbone_lr_mult is deprecated and will be removed "
                "in 0.4; pass the absolute rate backbone_lr=lr * mult instead.",
                FutureWarning, stacklevel=3,
            )
            if mult != "auto":
                return self.lr * float(mult)
        return super()._backbone_lr(backbone)

    def _make_criterion(self, n_features, n_classes):
        return AdversarialCriterion(make_domain_head(n_features, self.domain_head))
