"""The backbone contract every built-in adapter and every plugin honours.

A backbone is an :class:`torch.nn.Module` that turns a batch of raw items (images,
texts, feature vectors) into pooled embeddings of shape ``(N, num_features)``:

- :meth:`Backbone.preprocess` converts a list of validated raw items into a batch
  (a tensor, or a dict of tensors for text models);
- :meth:`Backbone.forward` maps that batch to ``(N, num_features)`` embeddings;
- :meth:`Backbone.layer_groups` lists the parameters in groups ordered from the
  input to the output, for gradual unfreezing and layer-wise learning-rate decay;
- :meth:`Backbone.check_input` validates user input for the backbone's modality
  (see :mod:`tlestimators.data`) and returns a list/array of items.

Image-text backbones (CLIP) add ``encode_image``, ``encode_text``, ``tokenize`` and
``logit_scale``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["MODALITIES", "BackboneConfig", "Backbone", "check_layer_groups"]

MODALITIES = ("image", "text", "image-text", "features")


@dataclass(frozen=True)
class BackboneConfig:
    """Metadata of a backbone, in the spirit of timm's ``PretrainedCfg``.

    Parameters
    ----------
    name : str
        Registry name the backbone was created under (e.g. ``"efficientnet_lite0"``).
    modality : {"image", "text", "image-text", "features"}
        What raw input the backbone accepts.
    num_features : int
        Size of the pooled embedding returned by ``forward``.
    input_size : tuple of int, default=None
        ``(C, H, W)`` the image preprocessing produces (image backbones).
    mean, std : tuple of float, default=None
        Per-channel normalisation applied after scaling pixels to [0, 1].
    interpolation : str, default="bicubic"
        Resize interpolation for images.
    crop_pct : float, default=0.875
        Eval-time centre crop fraction (resize to ``size / crop_pct`` then crop).
    max_seq_length : int, default=None
        Token limit for text backbones.
    in_features : int, default=None
        Input dimension of ``features`` backbones.
    weights : str, default="random"
        Where the weights came from: ``"random"``, ``"package:<dist>"``,
        ``"file:<path>"`` or ``"hub:<tag>"``.
    license : str, default=None
        Licence of the weights, when known.
    extra : dict, default={}
        Adapter-specific settings that change the embeddings (part of the cache key).
    """

    name: str
    modality: str
    num_features: int
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    max_seq_length: int | None = None
    in_features: int | None = None
    weights: str = "random"
    license: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(
                f"BackboneConfig.modality must be one of {MODALITIES}, got {self.modality!r}."
            )
        if int(self.num_features) <= 0:
            raise ValueError(
                f"BackboneConfig.num_features must be a positive int, got {self.num_features!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def preprocessing_key(self) -> str:
        """A stable string of every setting that changes what ``preprocess`` does.

        ``weights`` (where the weights came from) is left out: the fingerprint hashes the
        tensors themselves, so the same weights read from a file or from a package share
        cache entries."""
        d = self.to_dict()
        for k in ("license", "num_features", "weights"):
            d.pop(k)
        return json.dumps(d, sort_keys=True, default=str)


def check_layer_groups(module: nn.Module, groups: list[list[nn.Parameter]]) -> None:
    """Raise if ``groups`` does not cover every parameter of ``module`` exactly once."""
    seen: dict[int, int] = {}
    for gi, group in enumerate(groups):
        for p in group:
            if id(p) in seen:
                raise ValueError(
                    f"Parameter appears in layer groups {seen[id(p)]} and {gi}; "
                    "each parameter must be in exactly one group."
                )
            seen[id(p)] = gi
    names = [n for n, p in module.named_parameters() if id(p) not in seen]
    if names:
        raise ValueError(f"layer_groups() misses parameters: {names[:5]}...")
    if len(seen) != len(list(module.parameters())):
        raise ValueError("layer_groups() holds parameters that are not the module's.")


class Backbone(nn.Module):
    """Base class of backbones. Subclasses set ``self.config`` and implement
    ``forward``, :meth:`preprocess` and :meth:`layer_groups`."""

    config: BackboneConfig

    @property
    def num_features(self) -> int:
        return self.config.num_features

    @property
    def modality(self) -> str:
        return self.config.modality

    def forward(self, batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def preprocess(self, items, train: bool = False):  # pragma: no cover - abstract
        """Turn a list of validated raw items into a batch ``forward`` accepts."""
        raise NotImplementedError

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters grouped input -> output. Default: one group of everything."""
        return [list(self.parameters())]

    def check_input(self, X, name: str = "X"):
        """Validate raw input for this backbone's modality (see tlestimators.data)."""
        from tlestimators import data

        items = data.check_input(X, self.config.modality, name=name)
        expected = self.config.in_features
        if self.config.modality == "features" and expected and items.shape[1] != expected:
            raise ValueError(
                f"{name} has {items.shape[1]} features, but the backbone "
                f"{self.config.name!r} expects {expected}."
            )
        return items

    def fingerprint(self) -> str:
        """Hash of the weights and the preprocessing config.

        Used as the backbone identity in the feature cache, so fine-tuned or reloaded
        weights never return stale embeddings.
        """
        h = hashlib.sha256(self.config.preprocessing_key().encode())
        h.update(type(self).__qualname__.encode())
        for name, t in self.state_dict().items():
            h.update(name.encode())
            t = t.detach()
            if t.dtype == torch.bfloat16:
                t = t.float()
            h.update(t.cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:32]

    def extra_repr(self) -> str:
        c = self.config
        return f"name={c.name!r}, modality={c.modality!r}, num_features={c.num_features}"
