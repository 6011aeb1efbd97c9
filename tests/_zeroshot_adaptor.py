"""Test adaptor that lets scikit-learn's estimator checks run on the zero-shot classifiers.

Why an adaptor: ``ZeroShotTextClassifier`` takes text and ``ZeroShotCLIPClassifier``
takes images, and both must keep refusing a plain 2-D float array from a real text or
image-text backbone (a user passing numbers to a text model made a mistake). sklearn's
checks, though, only generate numeric arrays. So the checks run on the *unchanged*
estimator classes through two test-only pieces:

- :class:`ArrayPromptBackbone`, a backbone of modality "text" or "image-text" that
  accepts numeric rows as its raw input (embedding a row ``x`` of any width as
  ``[x @ R, 1]``, with ``R`` a fixed random projection; the constant coordinate keeps
  a linear classifier on the L2-normalised embedding as expressive as one on ``x``),
  and prompts as strings (a fixed pseudo-random vector per prompt);
- :class:`ArrayZeroShotText` / :class:`ArrayZeroShotCLIP`, subclasses whose only change
  is the input tags (2-D arrays instead of text/images), so that sklearn generates the
  array checks.

Like a lazily initialised layer, the backbone fixes its input width at the first rows
it embeds and refuses another width afterwards (a real backbone's input format is
fixed too). The estimators keep no ``n_features_in_``: their inputs are texts or images,
so the two checks about that attribute are listed as expected failures.

Every line of ``fit``/``predict``/parameter validation that runs is the estimator's own.
The instances use ``few_shot="linear"`` so that they learn from ``X`` (pure zero-shot
ignores ``X``, and the checks require that a classifier fits its training data).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from sklearn.utils import check_array
from torch import nn

from tlestimators import ZeroShotCLIPClassifier, ZeroShotTextClassifier
from tlestimators.backbones.base import Backbone, BackboneConfig


class ArrayPromptBackbone(Backbone):
    """Numeric rows in, prompts as strings; see the module docstring."""

    def __init__(self, modality="text", dim=16, seed=0):
        super().__init__()
        self.config = BackboneConfig(name=f"array_prompt_{modality}", modality=modality,
                                     num_features=dim + 1, extra={"dim": dim, "seed": seed})
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(256, dim, generator=g, dtype=torch.float64))
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(20.0)))  # image-text contract

    @staticmethod
    def _is_text(X):
        return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)

    def check_input(self, X, name="X"):
        if self._is_text(X):
            return list(X)
        return check_array(X, dtype=np.float64, input_name=name)

    def tokenize(self, texts):
        d = self.config.num_features
        return torch.stack([torch.randn(d, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                            for t in texts])

    def encode_text(self, tokens, normalize=False):
        return tokens

    def preprocess(self, items, train=False):
        if self._is_text(items):
            return self.tokenize(items)
        A = torch.as_tensor(np.asarray(items, dtype=np.float64))
        width = getattr(self, "width_", None)
        if width is None:
            if A.shape[1] > self.proj.shape[0]:
                raise ValueError(f"ArrayPromptBackbone takes at most {self.proj.shape[0]} columns.")
            self.width_ = width = A.shape[1]
        if A.shape[1] != width:
            raise ValueError(f"X has {A.shape[1]} features, but this backbone embeds rows of "
                             f"{width} features.")
        return torch.cat([A @ self.proj[:A.shape[1]], torch.ones(len(A), 1, dtype=A.dtype)], 1)

    def forward(self, batch):
        return batch * self.scale

    def layer_groups(self):
        return [[self.scale]]


class _ArrayInputTags:
    """Input tags for 2-D numeric arrays; nothing else changes."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = False
        return tags


class ArrayZeroShotText(_ArrayInputTags, ZeroShotTextClassifier):
    """ZeroShotTextClassifier, tagged for array input (test adaptor)."""


class ArrayZeroShotCLIP(_ArrayInputTags, ZeroShotCLIPClassifier):
    """ZeroShotCLIPClassifier, tagged for array input (test adaptor)."""


#: Checks that cannot apply to estimators whose input is text or images, with the reason.
EXPECTED_FAILED = {
    "check_n_features_in": "inputs are texts/images: no n_features_in_",
    "check_n_features_in_after_fitting": "inputs are texts/images: no n_features_in_",
    # the backbone parameter is a module instance here; joblib.hash of any torch module
    # differs from the hash of its deepcopy (even nn.Linear), so the check cannot compare
    # it. The estimators deep-copy an instance before use and never mutate it.
    "check_estimators_overwrite_params": "joblib.hash(module) != joblib.hash(deepcopy(module))",
}


def zero_shot_check_instances():
    """The two zero-shot classifiers, ready for ``parametrize_with_checks``."""
    # alpha fixed to keep the checks fast ("auto" runs a 5-fold CV per fit)
    common = dict(few_shot="linear", few_shot_alpha=0.75, max_iter=50, cache=False, device="cpu",
                  random_state=0)
    return [
        ArrayZeroShotText(ArrayPromptBackbone("text"), **common),
        ArrayZeroShotCLIP(ArrayPromptBackbone("image-text"), templates=["{}"], **common),
    ]
