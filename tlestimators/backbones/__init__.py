"""Backbone registry and contract; adapters register themselves on import."""

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
