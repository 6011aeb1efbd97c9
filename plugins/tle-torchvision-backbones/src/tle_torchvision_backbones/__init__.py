"""torchvision classification models as tlestimators backbones (``torchvision/<name>``).

This package is a *third-party plugin*: tlestimators knows nothing about it except the
entry point it declares in ``pyproject.toml``::

    [project.entry-points."tlestimators.backbones"]
    "torchvision/" = "tle_torchvision_backbones:create_torchvision_backbone"

It uses only tlestimators' public API (``Backbone``, ``BackboneConfig``,
``tlestimators.data.ImagePreprocessor``, ``WeightsUnavailableError``).
"""

from __future__ import annotations

import difflib
import numbers
import os

import torch
from torch import nn

from tlestimators.backbones import Backbone, BackboneConfig
from tlestimators.data import ImagePreprocessor
from tlestimators.exceptions import BackboneNotFoundError, WeightsUnavailableError

__all__ = ["TorchvisionBackbone", "create_torchvision_backbone", "available_models"]
__version__ = "0.1.0"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def available_models() -> list[str]:
    """Names of torchvision's classification models."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def _read_state_dict(path) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"weights file {path!r} does not exist; pass a local torchvision state dict "
            "(.pth/.pt) or .safetensors file."
        )
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for an unsafe checkpoint, or a bad file
        raise WeightsUnavailableError(
            f"could not read weights file {path!r} as a torch state dict (loaded with "
            f"weights_only=True, which refuses arbitrary pickled objects): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} Pass a "
            "plain state dict of tensors (torch.save(model.state_dict(), path)) or a "
            ".safetensors file."
        ) from exc
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path!r} does not hold a state dict of tensors.")
    return sd


def _strip_classifier(model: nn.Module) -> int:
    """Replace the last ``nn.Linear`` (the classifier) by ``nn.Identity``; return its
    input size, which is the embedding size."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no linear classifier to remove (e.g. squeezenet "
            "classifies with a convolution); pick another torchvision model."
        )
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    in_features = parent.get_submodule(child).in_features
    setattr(parent, child, nn.Identity())
    return in_features


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _is_stack(m: nn.Module) -> bool:
    return isinstance(m, (nn.Sequential, nn.ModuleList)) and sum(
        _has_params(c) for c in m.children()) >= 3


def _stage_modules(module: nn.Module, depth: int = 0):
    """Ordered ``(module, own_only)`` pieces that make up the network, input -> output.

    Stacks of three or more parameterised blocks (``features``, ``layer``s of ViT's
    encoder, ``trunk_output``) and modules holding such a stack are opened, up to two
    levels, so each block becomes a stage; an opened module contributes its own direct
    parameters (ViT's ``pos_embedding``) as a piece with ``own_only=True``.
    """
    for child in module.children():
        if not _has_params(child):
            continue
        if depth < 2 and (_is_stack(child) or any(_is_stack(c) for c in child.children())):
            yield child, True
            yield from _stage_modules(child, depth + 1)
        else:
            yield child, False


class TorchvisionBackbone(Backbone):
    """A torchvision classification model without its classifier."""

    def __init__(self, model, config, augment=True):
        super().__init__()
        self.model = model
        self.config = config
        self.preprocessor = ImagePreprocessor(
            config.input_size, config.mean, config.std, interpolation=config.interpolation,
            crop_pct=config.crop_pct, augment=augment,
        )

    def preprocess(self, items, train=False):
        return self.preprocessor(items, train=train)

    def forward(self, batch):
        out = self.model(batch.contiguous(memory_format=torch.channels_last))
        if not isinstance(out, torch.Tensor):  # googlenet/inception named tuples
            out = out[0]
        return out.flatten(1)

    def layer_groups(self):
        """Input -> output: the stem (parameters held directly, leading leaf layers such
        as ``conv1``/``bn1``), then one group per block; adjacent leaf layers share one."""
        groups: list[list[nn.Parameter]] = [list(self.model.parameters(recurse=False))]
        prev_leaf = True
        for mod, own_only in _stage_modules(self.model):
            params = list(mod.parameters(recurse=not own_only))
            leaf = own_only or not any(True for _ in mod.children())
            if leaf and prev_leaf:
                groups[-1].extend(params)
            else:
                groups.append(params)
            prev_leaf = leaf
        return [g for g in groups if g]


def _check_img_size(img_size):
    if img_size is None:
        return 224
    if isinstance(img_size, numbers.Integral) and not isinstance(img_size, bool) and img_size >= 16:
        return int(img_size)
    raise ValueError(f"img_size must be an int >= 16, got {img_size!r}.")


def create_torchvision_backbone(model_name, pretrained=True, weights=None, *, img_size=None,
                                augment=True, **model_kwargs):
    """Any torchvision classification model (random init, local weights file, or 'download').

    Parameters
    ----------
    model_name : str
        A name from ``torchvision.models.list_models()`` (classification), e.g. ``resnet18``.
    pretrained : bool, default=True
        torchvision ships no weights offline: with ``pretrained=True`` pass ``weights``.
    weights : str or path-like, default=None
        A local torchvision state dict (``.pth``/``.pt``, read with ``weights_only=True``) or
        ``.safetensors`` file; or ``"download"`` for torchvision's default weights (network).
    img_size : int, default=224
        Input resolution.
    augment : bool, default=True
        Random resized crop + flip at train time.
    **model_kwargs
        Passed to ``torchvision.models.get_model``.
    """
    from torchvision import models

    names = available_models()
    key = str(model_name).lower()
    if key not in names:
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('torchvision/' + c for c in close)}?" if close else ""
        raise BackboneNotFoundError(
            f"torchvision has no classification model {model_name!r}.{hint}"
        )
    size = _check_img_size(img_size)
    if key.startswith("vit_") and size != 224:
        model_kwargs.setdefault("image_size", size)  # ViT position embeddings depend on it
    download = weights == "download"
    if weights is None and pretrained:
        raise WeightsUnavailableError(
            f"torchvision/{key}: no torchvision weights are installed offline. Pass "
            "weights=<local .pth or .safetensors file>, pretrained=False for a random init, "
            "or weights='download' to let torchvision fetch them (needs network access)."
        )
    model = models.get_model(key, weights="DEFAULT" if download else None, **model_kwargs)
    if weights is not None and not download:
        model.load_state_dict(_read_state_dict(weights), strict=True)
        source = f"file:{os.path.abspath(os.fspath(weights))}"
    else:
        source = f"torchvision:{key}.DEFAULT" if download else "random"
    num_features = _strip_classifier(model)
    model.eval()
    config = BackboneConfig(
        name=f"torchvision/{key}",
        modality="image",
        num_features=num_features,
        input_size=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        interpolation="bilinear",
        crop_pct=0.875,
        weights=source,
        license="bsd-3-clause (torchvision code); weights: see torchvision" if
        source != "random" else "n/a",
        extra={"arch": key, "plugin": f"tle-torchvision-backbones {__version__}",
               **({"model_kwargs": dict(sorted(model_kwargs.items()))} if model_kwargs else {})},
    )
    return TorchvisionBackbone(model, config, augment=augment)


create_torchvision_backbone.modality = "image"
