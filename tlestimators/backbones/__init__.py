"""Backbone registry and contract.

The built-in adapters are imported here, after the registry, and register themselves
with :func:`register_backbone`; the registry never imports them, so there is no cycle.
Each adapter imports its heavy library (timm, open_clip, sentence-transformers) only
inside its factory, which keeps these imports cheap.
"""

from tlestimators.backbones.base import MODALITIES, Backbone, BackboneConfig, check_layer_groups
from tlestimators.backbones.registry import (
    ENTRY_POINT_GROUP,
    backbone_info,
    backbone_modality,
    create_backbone,
    list_backbones,
    refresh_backbones,
    register_backbone,
)

__all__ = [
    "MODALITIES",
    "ENTRY_POINT_GROUP",
    "Backbone",
    "BackboneConfig",
    "check_layer_groups",
    "register_backbone",
    "create_backbone",
    "list_backbones",
    "backbone_info",
    "backbone_modality",
    "refresh_backbones",
]

# After the registry: the built-ins register themselves, as plugins would be discovered.
from tlestimators.backbones import _mlp, _openclip, _sentence, _timm  # noqa: E402, F401
