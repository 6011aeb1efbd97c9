"""tlestimators: scikit-learn estimators for transfer learning with pretrained backbones.

Public names are imported lazily (PEP 562) so ``import tlestimators`` stays cheap;
torch, timm, open_clip and sentence-transformers load only when used.
"""

from importlib import import_module

__version__ = "0.2.0.dev0"

_LAZY = {
    # backbones
    "Backbone": "tlestimators.backbones.base",
    "BackboneConfig": "tlestimators.backbones.base",
    "register_backbone": "tlestimators.backbones.registry",
    "create_backbone": "tlestimators.backbones.registry",
    "list_backbones": "tlestimators.backbones.registry",
    "backbone_info": "tlestimators.backbones.registry",
    "refresh_backbones": "tlestimators.backbones.registry",
    # estimators
    "BackboneEmbedder": "tlestimators.estimators.embedder",
    "FrozenFeatureClassifier": "tlestimators.estimators.frozen",
    "FineTuneClassifier": "tlestimators.estimators.finetune",
    "DANNAdapter": "tlestimators.estimators.dann",
    "CDANAdapter": "tlestimators.estimators.da",
    "DeepCORALAdapter": "tlestimators.estimators.da",
    "InfoMaxAdapter": "tlestimators.estimators.da",
    "MMDAdapter": "tlestimators.estimators.da",
    "RehearsalLearner": "tlestimators.estimators.rehearsal",
    "ZeroShotCLIPClassifier": "tlestimators.estimators.zeroshot",
    "ZeroShotTextClassifier": "tlestimators.estimators.zeroshot",
    "ContrastiveFewShotClassifier": "tlestimators.estimators.contrastive",
    "TransferSearchCV": "tlestimators.estimators.search",
    # shipping a fitted model
    "save": "tlestimators.io",
    "load": "tlestimators.io",
    "export_onnx": "tlestimators.export",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tlestimators' has no attribute {name!r}")


def __dir__():
    return __all__
