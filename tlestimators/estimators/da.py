"""More deep domain-adaptation methods on the shared DA core: Deep CORAL, MMD (DAN),
CDAN(+E) and information maximisation with self-training (SHOT-style).

Each is a pure loss in :mod:`tlestimators.losses`, a criterion module of a few lines
here, and a class that lists its parameters; training, data (``y == -1`` for unlabeled
target rows, optional ``sample_domain``), freezing and prediction are
``BaseDomainAdapter`` (``tlestimators.estimators._da``), exactly as for
:class:`~tlestimators.DANNAdapter`. All of them run in ``GridSearchCV`` with a DA
scorer and a source/target splitter (see the DANNAdapter Notes), and all share
DANNAdapter's training recipe (Adam 1e-3 with the paper's lr decay and lambda ramp,
dense inputs standardised; ``_da.DEFAULT_*``), so two methods differ only in their loss
and its default weight ``lambda_max``; :data:`DA_METHODS` maps short names to the classes.
"""

from __future__ import annotations

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from tlestimators.estimators._da import (
    DEFAULT_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_STANDARDIZE,
    DEFAULT_WEIGHT_DECAY,
    AdversarialCriterion,
    AdversarialMixin,
    BaseDomainAdapter,
    cdan_map_width,
    document_da_estimator,
    make_domain_head,
)
from tlestimators.estimators.dann import DANNAdapter
from tlestimators.losses import (
    coral_loss,
    information_maximization_loss,
    mmd_loss,
    pseudo_label_loss,
)

__all__ = ["DeepCORALAdapter", "MMDAdapter", "CDANAdapter", "InfoMaxAdapter", "DA_METHODS"]

def _store(est, params):
    # __init__ only stores its arguments under their own names (sklearn's rule)
    for k, v in params.items():
        if k not in ("self", "__class__"):
            setattr(est, k, v)


# --------------------------------------------------------------------------- criteria
class AlignmentCriterion(nn.Module):
    """``weight * loss_fn(source features, target features)``, zero when a batch holds
    fewer than 2 rows of a domain."""

    def __init__(self, loss_fn, **loss_kwargs):
        super().__init__()
        self.loss_fn = loss_fn
        self.loss_kwargs = loss_kwargs

    def forward(self, feats, logits, is_target, lam):
        t = is_target.bool()
        if t.sum() < 2 or (~t).sum() < 2:
            return feats.sum() * 0.0, {}
        raw = self.loss_fn(feats[~t], feats[t], **self.loss_kwargs)
        return lam * raw, {"align_loss": raw.item()}


class InfoMaxCriterion(nn.Module):
    """Information maximisation on the target rows' predictions, plus optional
    confidence-thresholded pseudo-label cross-entropy."""

    def __init__(self, diversity_weight=1.0, pseudo_label_threshold=None):
        super().__init__()
        self.diversity_weight = diversity_weight
        self.pseudo_label_threshold = pseudo_label_threshold

    def forward(self, feats, logits, is_target, lam):
        zt = logits[is_target.bool()]
        if zt.shape[0] < 2:
            return logits.sum() * 0.0, {}
        im = information_maximization_loss(zt, self.diversity_weight)
        stats = {"im_loss": im.item()}
        loss = im
        if self.pseudo_label_threshold is not None:
            pl = pseudo_label_loss(zt, self.pseudo_label_threshold)
            stats["pseudo_label_loss"] = pl.item()
            loss = loss + pl
        return lam * loss, stats


# --------------------------------------------------------------------------- estimators
# Why each method's lambda_max default is what it is (quoted in its docstring).
_LAMBDA_CORAL = """The loss is divided by ``4 d^2`` (as in the paper and skada), so
        on a 256-wide feature layer ``lambda_max=1`` (the default of 0.1, and skada's
        ``reg=1``) adds a term below 1e-3 that leaves the features where they were (on
        the LSA proxy of ``benchmarks/results/da.md`` the fits at 1 and at 0 agree
        within 0.1 point on the 4-pair mean). The paper sets the weight so that the CORAL
        and classification losses are about equal at the end of training; on the proxy
        that happens at ``1e4`` (weighted CORAL 0.029 vs cross-entropy 0.032), the
        default (``1e5`` scored higher there, +0.9 vs +0.2 over ``lambda_max=0``, with
        the CORAL term at 0.6 of the cross-entropy). ``1e4`` equals a weight of ~0.04 on
        the unnormalised ``||C_s - C_t||_F^2`` of 256-d features: scale it with ``d^2``
        for much narrower or wider features."""
_LAMBDA_MMD = """0.3 as for DANNAdapter: on the LSA proxy of
        ``benchmarks/results/da.md`` 0.1 and 0.3 gained 0.2 points over ``lambda_max=0``
        on the 4-pair mean (3 of 4 pairs), 1 (skada's and the DAN paper's weight) and 3
        lost 0.3 and 0.9."""
_LAMBDA_CDAN = """0.3 as for DANNAdapter (the same gradient-reversal game; the
        CDAN paper ramps to 1): on the LSA proxy of ``benchmarks/results/da.md`` 0.1, 0.3
        and 1 all gained 0.5-0.6 points over ``lambda_max=0`` on the 4-pair mean, on
        every pair; DANN's reversal at 1 over-aligns frozen image embeddings."""
_LAMBDA_INFOMAX = """0.3, the weight of the other methods (the entropy terms are in
        nats like the cross-entropy): on the LSA proxy of ``benchmarks/results/da.md``
        0.1, 0.3 and 1 gained 0.4, 0.6 and 0.4 points over ``lambda_max=0`` on the
        4-pair mean, 0.3 on every pair. SHOT weighs them 1, without source labels."""


@document_da_estimator(_LAMBDA_CORAL)
class DeepCORALAdapter(BaseDomainAdapter):
    """Deep CORAL: align the second-order statistics (covariances) of source and
    target features.

    The loss is ``CE(labeled rows) + lambda_p * ||C_s - C_t||_F^2 / (4 d^2)`` on each
    domain-balanced batch's features (Sun and Saenko, 2016; see
    :func:`tlestimators.losses.coral_loss`). Rows with ``y == -1`` are unlabeled
    target samples.

    Parameters
    ----------
    %(common_parameters)s

    Attributes
    ----------
    %(common_attributes)s

    See Also
    --------
    DANNAdapter : adversarial alignment.
    tlestimators.skada_bridge.SkadaAdapter : skada's shallow CORAL on frozen embeddings.

    References
    ----------
    .. [1] B. Sun and K. Saenko. "Deep CORAL: Correlation Alignment for Deep Domain
       Adaptation". ECCV 2016 Workshops.

    Examples
    --------
    >>> import numpy as np
    >>> from tlestimators import DeepCORALAdapter
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(60, 5)).astype("float32"); ys = (Xs[:, 0] > 0).astype(int)
    >>> X = np.vstack([Xs, 2 * Xs + 1]); y = np.r_[ys, -np.ones(60, dtype=int)]
    >>> clf = DeepCORALAdapter(backbone_kwargs={"hidden_sizes": (16,)}, max_epochs=2,
    ...                        random_state=0).fit(X, y)
    >>> clf.predict(X[60:]).shape
    (60,)
    """

    _method = "Deep CORAL"

    def __init__(self, backbone="mlp", *, backbone_kwargs=None, unfreeze="all",
                 bottleneck="auto", head="linear", lambda_max=1e4, lambda_schedule="dann",
                 lr=DEFAULT_LR, lr_schedule="dann", warmup=0.1, backbone_lr=None,
                 optimizer=DEFAULT_OPTIMIZER, momentum=0.9,
                 weight_decay=DEFAULT_WEIGHT_DECAY,
                 max_epochs=20, batch_size=64, balanced=True,
                 standardize=DEFAULT_STANDARDIZE, head_init="random",
                 device="auto", random_state=None, verbose=0, cache=True):
        _store(self, locals())

    def _make_criterion(self, n_features, n_classes):
        return AlignmentCriterion(coral_loss)


@document_da_estimator(_LAMBDA_MMD)
class MMDAdapter(BaseDomainAdapter):
    """Deep adaptation network (DAN): minimise the multi-kernel maximum mean
    discrepancy between source and target features.

    The loss is ``CE(labeled rows) + lambda_p * MMD^2`` with a sum of Gaussian kernels
    (bandwidths around the batch's median distance, or ``sigmas``), on each
    domain-balanced batch's features (Long et al., 2015; see
    :func:`tlestimators.losses.mmd_loss`).

    Parameters
    ----------
    %(common_parameters)s
    sigmas : sequence of float, default=None
        Kernel bandwidths; ``None``: the median pairwise distance times
        ``(1/4, 1/2, 1, 2, 4)``.

    Attributes
    ----------
    %(common_attributes)s

    References
    ----------
    .. [1] M. Long, Y. Cao, J. Wang and M. Jordan. "Learning Transferable Features
       with Deep Adaptation Networks". ICML 2015.
    .. [2] A. Gretton et al. "A Kernel Two-Sample Test". JMLR 13, 2012.
    """

    _parameter_constraints: dict = {
        **BaseDomainAdapter._parameter_constraints,
        "sigmas": ["array-like", None],
    }

    _method = "MMD (DAN)"

    def __init__(self, backbone="mlp", *, backbone_kwargs=None, unfreeze="all",
                 bottleneck="auto", head="linear", lambda_max=0.3, lambda_schedule="dann",
                 lr=DEFAULT_LR, lr_schedule="dann", warmup=0.1, backbone_lr=None,
                 optimizer=DEFAULT_OPTIMIZER, momentum=0.9,
                 weight_decay=DEFAULT_WEIGHT_DECAY,
                 max_epochs=20, batch_size=64, balanced=True,
                 standardize=DEFAULT_STANDARDIZE, head_init="random",
                 device="auto", random_state=None, verbose=0, cache=True, sigmas=None):
        _store(self, locals())

    def _make_criterion(self, n_features, n_classes):
        sigmas = None if self.sigmas is None else [float(s) for s in self.sigmas]
        return AlignmentCriterion(mmd_loss, sigmas=sigmas)


@document_da_estimator(_LAMBDA_CDAN)
class CDANAdapter(AdversarialMixin, BaseDomainAdapter):
    """Conditional adversarial adaptation (CDAN, CDAN+E): a domain classifier on the
    multilinear map of features and class probabilities, through gradient reversal.

    Conditioning on the predictions aligns the joint distribution of features and
    classes rather than the features alone (Long et al., 2018); with
    ``entropy_conditioning`` confident samples weigh more (CDAN+E). Large maps
    (``d * n_classes > 4096``) use the paper's randomised map of width 1024.

    Parameters
    ----------
    %(common_parameters)s
    domain_head : {"mlp", "linear"} or nn.Module, default="mlp"
        Domain classifier on the (reversed) conditional map; one logit or two.
    entropy_conditioning : bool, default=True
        CDAN+E sample weights ``1 + exp(-H(p))``.

    Attributes
    ----------
    %(common_attributes)s

    References
    ----------
    .. [1] M. Long, Z. Cao, J. Wang and M. Jordan. "Conditional Adversarial Domain
       Adaptation". NeurIPS 2018.
    """

    _parameter_constraints: dict = {
        **BaseDomainAdapter._parameter_constraints,
        "domain_head": [StrOptions({"mlp", "linear"}), nn.Module],
        "entropy_conditioning": ["boolean"],
    }

    _method = "CDAN"

    def __init__(self, backbone="mlp", *, backbone_kwargs=None, unfreeze="all",
                 bottleneck="auto", head="linear", lambda_max=0.3, lambda_schedule="dann",
                 lr=DEFAULT_LR, lr_schedule="dann", warmup=0.1, backbone_lr=None,
                 optimizer=DEFAULT_OPTIMIZER, momentum=0.9,
                 weight_decay=DEFAULT_WEIGHT_DECAY,
                 max_epochs=20, batch_size=64, balanced=True,
                 standardize=DEFAULT_STANDARDIZE, head_init="random",
                 device="auto", random_state=None, verbose=0, cache=True,
                 domain_head="mlp", entropy_conditioning=True):
        _store(self, locals())

    def _make_criterion(self, n_features, n_classes):
        return AdversarialCriterion(
            make_domain_head(cdan_map_width(n_features, n_classes), self.domain_head),
            conditional=True,
            entropy_conditioning=self.entropy_conditioning, n_features=n_features,
            n_classes=n_classes)


@document_da_estimator(_LAMBDA_INFOMAX)
class InfoMaxAdapter(BaseDomainAdapter):
    """Target self-training by information maximisation (SHOT-style), optionally with
    confidence-thresholded pseudo-labels.

    The loss is ``CE(labeled rows) + lambda_p * (mean H(p_t) - diversity_weight *
    H(mean p_t) [+ pseudo-label CE])`` on the target rows of each batch: target
    predictions become confident and class-diverse (Liang et al., 2020, without the
    source-free setting: the source labels stay in the loss).

    Parameters
    ----------
    %(common_parameters)s
    diversity_weight : float, default=1.0
        Weight of the marginal-entropy (diversity) term.
    pseudo_label_threshold : float in [0, 1] or None, default=None
        Also train on target rows whose top probability reaches this threshold, with
        their predicted class as label (``None``: information maximisation only).

    Attributes
    ----------
    %(common_attributes)s

    References
    ----------
    .. [1] J. Liang, D. Hu and J. Feng. "Do We Really Need to Access the Source Data?
       Source Hypothesis Transfer for Unsupervised Domain Adaptation". ICML 2020.
    .. [2] W. Hu et al. "Learning Discrete Representations via Information Maximizing
       Self-Augmented Training". ICML 2017.
    """

    _parameter_constraints: dict = {
        **BaseDomainAdapter._parameter_constraints,
        "diversity_weight": [Interval(Real, 0, None, closed="left")],
        "pseudo_label_threshold": [Interval(Real, 0, 1, closed="both"), None],
    }

    _method = "information maximisation"

    def __init__(self, backbone="mlp", *, backbone_kwargs=None, unfreeze="all",
                 bottleneck="auto", head="linear", lambda_max=0.3, lambda_schedule="dann",
                 lr=DEFAULT_LR, lr_schedule="dann", warmup=0.1, backbone_lr=None,
                 optimizer=DEFAULT_OPTIMIZER, momentum=0.9,
                 weight_decay=DEFAULT_WEIGHT_DECAY,
                 max_epochs=20, batch_size=64, balanced=True,
                 standardize=DEFAULT_STANDARDIZE, head_init="random",
                 device="auto", random_state=None, verbose=0, cache=True,
                 diversity_weight=1.0, pseudo_label_threshold=None):
        _store(self, locals())

    def _make_criterion(self, n_features, n_classes):
        return InfoMaxCriterion(self.diversity_weight, self.pseudo_label_threshold)


#: The deep DA estimators by short name (for benchmarks and method searches); each
#: takes the same data and shares every parameter of the DA core (``lambda_max`` = 0
#: is source-only with the same network).
DA_METHODS = {
    "dann": DANNAdapter,
    "cdan": CDANAdapter,
    "coral": DeepCORALAdapter,
    "mmd": MMDAdapter,
    "infomax": InfoMaxAdapter,
}
