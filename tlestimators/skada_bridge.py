"""Bridge to skada's shallow domain adapters (CORAL, subspace alignment, TCA, OT, ...).

`skada <https://scikit-adaptation.github.io>`_ is the field's scikit-learn library
for domain adaptation. Its adapters fit on source *and* target rows told apart by a
``sample_domain`` array (positive: source, negative: target); given no
``sample_domain``, a skada adapter treats every row as target, so a plain
``Pipeline(embedder, skada.CORALAdapter(), LogisticRegression())`` fit on our
``y == -1`` convention fails ("Found array with 0 sample(s)"), and a plain
``LogisticRegression`` after it would learn ``-1`` as a class. This module makes them
meet without re-implementing any adapter:

- :class:`SkadaAdapter` wraps one skada adapter as an ordinary sklearn transformer:
  it reads ``y == -1`` (or an explicit ``sample_domain``) with
  :func:`tlestimators.data.parse_domains`, hands skada its ``sample_domain`` and
  integer labels, maps the training rows (source rows into the target's space) and
  treats new rows at ``transform`` time as target rows;
- :class:`LabeledOnly` fits any classifier on the labeled rows only;
- :func:`make_skada_pipeline` builds the sklearn ``Pipeline`` with both applied, so
  ``make_skada_pipeline(BackboneEmbedder("efficientnet_lite0"), CORALAdapter(),
  LogisticRegression())`` is fit with ``y == -1`` for target rows, cloned, pickled
  and searched (``GridSearchCV``) like any pipeline.

skada is an optional dependency: ``pip install "tlestimators[da]"`` (pinned to 0.6).
It is imported on first use, never at package import.
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone, is_classifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from tlestimators.data import parse_domains

# LabeledOnly lives in the estimators layer (TransferSearchCV's source-only probe uses
# it); re-exported here, where it was first public
from tlestimators.estimators._labeled import LabeledOnly

__all__ = ["SkadaAdapter", "LabeledOnly", "make_skada_pipeline", "is_skada_adapter"]

SKADA_VERSION = "0.6"


def _import_skada():
    try:
        import skada
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The skada bridge needs skada: pip install 'tlestimators[da]' "
            f"(skada {SKADA_VERSION}.x)."
        ) from exc
    return skada


def is_skada_adapter(obj) -> bool:
    """True for a skada adapter instance (``skada.base.BaseAdapter``), False otherwise
    (and when skada is not installed)."""
    try:
        from skada.base import BaseAdapter
    except ImportError:
        return False
    return isinstance(obj, BaseAdapter)


def _skada_labels(y, labeled):
    """skada wants numeric labels with -1 for masked target rows: encode classes as
    0..K-1 (string labels included)."""
    y = np.asarray(y)
    out = np.full(len(y), -1, dtype=np.int64)
    if labeled.any():
        _, codes = np.unique(y[labeled].astype(str) if y.dtype.kind == "O" else y[labeled],
                             return_inverse=True)
        out[labeled] = codes
    return out


class SkadaAdapter(TransformerMixin, BaseEstimator):
    """One skada adapter as a plain sklearn transformer under the ``y == -1`` convention.

    Parameters
    ----------
    adapter : skada adapter
        An unfitted skada mapping or subspace adapter, e.g. ``skada.CORALAdapter()``,
        ``skada.SubspaceAlignmentAdapter(n_components=64)``,
        ``skada.TransferComponentAnalysisAdapter(n_components=64)``,
        ``skada.LinearOTMappingAdapter()``. Re-weighting adapters (KMM, density
        re-weighting) return sample weights, not features, and are not supported here:
        use skada's own pipeline for them.

    Attributes
    ----------
    adapter_ : skada adapter
        The fitted clone.
    n_features_in_ : int

    Notes
    -----
    ``fit_transform`` (what a ``Pipeline`` calls during ``fit``) maps each training
    row as what it is: source rows into the target domain, target rows as target.
    ``transform`` on new data treats every row as a target row (what ``predict`` is
    for); route ``sample_domain`` to it (``set_transform_request(sample_domain=True)``
    under metadata routing) to map source rows as source rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skada import CORALAdapter
    >>> from sklearn.linear_model import LogisticRegression
    >>> from tlestimators.skada_bridge import make_skada_pipeline
    >>> rng = np.random.default_rng(0)
    >>> Xs, Xt = rng.normal(size=(40, 3)), 2 + 3 * rng.normal(size=(40, 3))
    >>> y = np.r_[(Xs[:, 0] > 0).astype(int), -np.ones(40, int)]
    >>> pipe = make_skada_pipeline(CORALAdapter(), LogisticRegression())
    >>> pipe.fit(np.vstack([Xs, Xt]), y).classes_.tolist()
    [0, 1]
    """

    def __init__(self, adapter):
        self.adapter = adapter

    def _check_adapter(self):
        _import_skada()
        if not is_skada_adapter(self.adapter):
            raise TypeError(
                "adapter must be a skada adapter instance (e.g. skada.CORALAdapter()), got "
                f"{type(self.adapter).__name__}. skada's CORAL(...)/SubspaceAlignment(...) "
                "factories return whole pipelines: pass the *Adapter class instead."
            )

    def _prepare(self, X, y, sample_domain):
        self._check_adapter()
        X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D feature matrix, got shape {X.shape}.")
        doms = parse_domains(y, sample_domain, n_samples=X.shape[0], who="SkadaAdapter",
                             require_target=True, require_source=True,
                             context="skada adapters learn the shift from both domains.")
        y_sk = (_skada_labels(y, doms.labeled) if y is not None
                else np.where(doms.is_target, -1, 0))
        return X, y_sk, doms.domain

    def fit(self, X, y=None, sample_domain=None):
        """Fit the adapter on source rows (labeled) and target rows (``y == -1`` or
        ``sample_domain < 0``)."""
        self.fit_transform(X, y, sample_domain=sample_domain)
        return self

    def fit_transform(self, X, y=None, sample_domain=None):
        """Fit, then map the training rows (source rows into the target domain)."""
        X, y_sk, sd = self._prepare(X, y, sample_domain)
        self.adapter_ = clone(self.adapter)
        out = self.adapter_.fit_transform(X, y_sk, sample_domain=sd)
        self.n_features_in_ = X.shape[1]
        return self._as_array(out)

    def transform(self, X, sample_domain=None):
        """Map new rows; without ``sample_domain`` they are target rows."""
        check_is_fitted(self)
        X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {X.shape}; SkadaAdapter was fitted on {self.n_features_in_} "
                "features."
            )
        if sample_domain is None:
            sd = -np.ones(X.shape[0], dtype=int)
        else:
            sd = parse_domains(None, sample_domain, n_samples=X.shape[0],
                               who="SkadaAdapter.transform").domain
        return self._as_array(self.adapter_.transform(X, sample_domain=sd, allow_source=True))

    def _as_array(self, out):
        X = getattr(out, "X", out)  # skada's AdaptationOutput
        if not isinstance(X, np.ndarray):
            raise TypeError(
                f"{type(self.adapter).__name__} does not return adapted features (it returns "
                f"{type(out).__name__}); re-weighting adapters are not supported by "
                "SkadaAdapter."
            )
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def make_skada_pipeline(*steps, memory=None, verbose=False) -> Pipeline:
    """``sklearn.pipeline.make_pipeline`` for domain adaptation with skada adapters.

    Each skada adapter among ``steps`` is wrapped in :class:`SkadaAdapter` and a final
    classifier in :class:`LabeledOnly`, so the pipeline is fit with ``y == -1`` for
    unlabeled target rows (or with ``sample_domain``). Other steps (e.g.
    ``BackboneEmbedder``, ``StandardScaler``) are kept as they are: they see every
    row, source and target, as a transductive embedder should.

    Examples
    --------
    >>> from skada import SubspaceAlignmentAdapter
    >>> from sklearn.linear_model import LogisticRegression
    >>> from tlestimators.skada_bridge import make_skada_pipeline
    >>> make_skada_pipeline(SubspaceAlignmentAdapter(n_components=2), LogisticRegression())
    Pipeline(steps=[('skadaadapter',
                     SkadaAdapter(adapter=SubspaceAlignmentAdapter(n_components=2))),
                    ('labeledonly', LabeledOnly(estimator=LogisticRegression()))])
    """
    if not steps:
        raise ValueError("make_skada_pipeline needs at least one step.")
    wrapped = [SkadaAdapter(s) if is_skada_adapter(s) else s for s in steps]
    last = wrapped[-1]
    # a DA estimator (DANNAdapter, ...) reads y == -1 itself: its fit takes sample_domain
    takes_domain = "sample_domain" in inspect.signature(last.fit).parameters
    if is_classifier(last) and not isinstance(last, (LabeledOnly, Pipeline)) \
            and not takes_domain:
        wrapped[-1] = LabeledOnly(last)
    return make_pipeline(*wrapped, memory=memory, verbose=verbose)
