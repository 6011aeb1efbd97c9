"""Metrics: unsupervised domain-adaptation scorers and continual-learning metrics."""

from tlestimators.metrics import _continual, _domain
from tlestimators.metrics._continual import *  # noqa: F401,F403
from tlestimators.metrics._domain import *  # noqa: F401,F403

__all__ = [*_domain.__all__, *_continual.__all__]
