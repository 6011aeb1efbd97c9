"""LoRA adapters (Hu et al., 2022) on any backbone, through Hugging Face ``peft``.

- :func:`lora_targets`: rank, alpha, dropout and target modules for a backbone, chosen
  from its family (read from the module tree and ``backbone.config``), with the user's
  overrides applied on top;
- :func:`apply_lora`: inject the adapters into the backbone's inner model in place
  (``peft.inject_adapter_in_model``, so parameter names, ``layer_groups()`` and the
  backbone API stay as they were) and freeze everything else;
- :func:`lora_state_dict` / :func:`load_lora_state_dict`: only the adapter weights;
- :func:`merge_lora`: fold ``W + (alpha / r) B A`` into the base weights and put the
  plain layers back, so prediction and ONNX export see an ordinary backbone.

Defaults per family (``r`` / ``lora_alpha`` / ``lora_dropout`` / targets):

============================  ==========  ==========================================
family                        r/alpha/p   targets
============================  ==========  ==========================================
timm convnets (EfficientNet,  8/16/0.0    the pointwise 1x1 convolutions (``conv_pw``,
MobileNet, ResNet, ...)                   ``conv_pwl``; else every 1x1 conv, groups=1)
timm ViTs                     8/16/0.1    attention ``qkv`` and ``proj``
sentence-transformers (BERT)  8/16/0.1    ``query``, ``key``, ``value``, ``dense``
open_clip image tower         8/16/0.0    the visual ``nn.MultiheadAttention`` (in/out
                                          projections)
anything else                 8/16/0.0    every ``nn.Linear``
============================  ==========  ==========================================

Pointwise convolutions carry most of a mobile convnet's weights and mix channels, the
role ``q/k/v`` play in a transformer; depthwise convolutions (few weights, groups > 1)
are left alone, as the LoRA-for-convnets literature does.

This module imports only torch, peft and :mod:`tlestimators.backbones.base` (layering).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from tlestimators.backbones.base import Backbone

__all__ = ["LORA_KEYS", "apply_lora", "has_lora", "load_lora_state_dict", "lora_family",
           "lora_state_dict", "lora_targets", "merge_lora", "merge_saved_adapters",
           "trainable_fraction"]

#: ``lora_kwargs`` keys with a documented meaning (other ``peft.LoraConfig`` fields are
#: passed through).
LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules")
_MARK = "lora_"


def _import_peft():
    try:
        import peft
    except ImportError as exc:
        raise ImportError(
            "unfreeze='lora' needs peft: `pip install 'tlestimators[lora]'` (or `pip install "
            "peft`)."
        ) from exc
    return peft


def _inner(backbone: nn.Module) -> nn.Module:
    """The wrapped library model (``backbone.model``) or the backbone itself."""
    inner = getattr(backbone, "model", None)
    return inner if isinstance(inner, nn.Module) else backbone


def _is_pointwise(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and m.groups == 1)


def lora_family(backbone: nn.Module) -> str:
    """``"timm-convnet"``, ``"timm-vit"``, ``"bert"``, ``"open_clip"`` or ``"generic"``."""
    inner = _inner(backbone)
    config = getattr(backbone, "config", None)
    modality = getattr(config, "modality", None)
    names = [n for n, _ in inner.named_modules()]
    if modality == "image-text" or hasattr(inner, "visual") and hasattr(inner, "encode_image"):
        return "open_clip"
    if any(re.search(r"(^|\.)attn\.qkv$", n) for n in names):
        return "timm-vit"
    if any(re.search(r"(^|\.)attention\.self\.query$", n) for n in names):
        return "bert"
    if any(_is_pointwise(m) for m in inner.modules()):
        return "timm-convnet"
    return "generic"


def _default_targets(family: str, inner: nn.Module):
    if family == "timm-vit":
        return r".*\.attn\.(qkv|proj)"
    if family == "bert":
        return ["query", "key", "value", "dense"]
    if family == "open_clip":
        names = [n for n, m in inner.named_modules()
                 if isinstance(m, nn.MultiheadAttention) and n.startswith("visual.")]
        if names:
            return names
        return [n for n, m in inner.named_modules()
                if isinstance(m, nn.Linear) and n.startswith("visual.")]
    if family == "timm-convnet":
        pw = [n for n, m in inner.named_modules()
              if _is_pointwise(m) and re.search(r"(^|\.)(conv_pw|conv_pwl)$", n)]
        if pw:
            return pw
        return [n for n, m in inner.named_modules() if _is_pointwise(m)]
    return [n for n, m in inner.named_modules()
            if isinstance(m, nn.Linear) and not re.search(r"(head|classifier|fc)$", n)]


_FAMILY_DEFAULTS = {
    "timm-convnet": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
    "timm-vit": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
    "bert": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
    "open_clip": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
    "generic": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
}


def lora_targets(backbone: nn.Module, lora_kwargs: dict | None = None,
                 *, name: str = "lora_kwargs") -> dict:
    """The LoRA settings for ``backbone``: its family's defaults, then ``lora_kwargs``.

    Parameters
    ----------
    backbone : Backbone
        The (not yet adapted) backbone.
    lora_kwargs : dict, default=None
        Overrides: ``r`` (int >= 1), ``lora_alpha`` (> 0), ``lora_dropout`` (in
        [0, 1)), ``target_modules`` (list of module names/suffixes or one regex, as in
        ``peft.LoraConfig``), or any other ``peft.LoraConfig`` field.
    name : str, default="lora_kwargs"
        Parameter name used in messages.

    Returns
    -------
    dict
        Keyword arguments of ``peft.LoraConfig`` (plus ``"family"``).
    """
    if lora_kwargs is not None and not isinstance(lora_kwargs, dict):
        raise TypeError(f"{name} must be a dict or None, got {type(lora_kwargs).__name__}.")
    family = lora_family(backbone)
    out = dict(_FAMILY_DEFAULTS[family])
    out.update(lora_kwargs or {})
    if "target_modules" not in (lora_kwargs or {}):
        out["target_modules"] = _default_targets(family, _inner(backbone))
    r = out["r"]
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"{name}['r'] must be an int >= 1, got {r!r}.")
    if not isinstance(out["lora_alpha"], (int, float)) or out["lora_alpha"] <= 0:
        raise ValueError(f"{name}['lora_alpha'] must be > 0, got {out['lora_alpha']!r}.")
    p = out["lora_dropout"]
    if not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name}['lora_dropout'] must be in [0, 1), got {p!r}.")
    if not out["target_modules"]:
        raise ValueError(
            f"no LoRA target modules found in backbone {getattr(backbone.config, 'name', '?')!r} "
            f"(family {family!r}); pass {name}={{'target_modules': [...]}} with module names."
        )
    out["family"] = family
    return out


def apply_lora(backbone: Backbone, lora_kwargs: dict | None = None, *,
               name: str = "lora_kwargs") -> dict:
    """Inject LoRA adapters into ``backbone`` in place and freeze all its other weights.

    The adapters' ``B`` matrices start at zero, so the adapted backbone computes exactly
    what it did before. Returns the settings used (see :func:`lora_targets`).
    """
    peft = _import_peft()
    settings = lora_targets(backbone, lora_kwargs, name=name)
    cfg_kwargs = {k: v for k, v in settings.items() if k != "family"}
    try:
        config = peft.LoraConfig(**cfg_kwargs)
    except TypeError as exc:
        raise ValueError(f"{name} has a key peft.LoraConfig does not know: {exc}") from exc
    inner = _inner(backbone)
    try:
        peft.inject_adapter_in_model(config, inner)
    except ValueError as exc:
        raise ValueError(
            f"peft could not adapt backbone {getattr(backbone.config, 'name', '?')!r} with "
            f"target_modules={settings['target_modules']!r}: {exc} Set {name}['target_modules']."
        ) from exc
    for n, p in backbone.named_parameters():
        p.requires_grad_(_MARK in n)
    if not any(p.requires_grad for p in backbone.parameters()):
        raise ValueError(f"{name}: the target modules matched no layer of the backbone.")
    return settings


def has_lora(backbone: nn.Module) -> bool:
    """Whether ``backbone`` holds (unmerged) LoRA adapters."""
    return any(_MARK in n for n, _ in backbone.named_parameters())


def lora_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights only (names as in ``backbone.state_dict()``), detached copies
    on the CPU."""
    return {n: t.detach().cpu().clone() for n, t in backbone.state_dict().items() if _MARK in n}


def load_lora_state_dict(backbone: nn.Module, state: dict) -> None:
    """Load adapter weights saved by :func:`lora_state_dict` into an adapted backbone
    (every adapter tensor must be given, and nothing else)."""
    own = {n for n in backbone.state_dict() if _MARK in n}
    missing, unexpected = own - set(state), set(state) - own
    if missing or unexpected:
        raise ValueError(
            f"adapter weights do not fit this backbone: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}."
        )
    backbone.load_state_dict(state, strict=False)


def merge_lora(backbone: nn.Module) -> nn.Module:
    """Fold every adapter into its base weights and restore the plain layers, in place.

    After merging the backbone has exactly the architecture (and parameter names) it
    had before :func:`apply_lora`; its outputs equal the adapted ones up to float
    rounding. Parameters are left trainable-flag unchanged for the base weights
    (``requires_grad=False``).

    Parameters
    ----------
    backbone : nn.Module
        A backbone adapted by :func:`apply_lora`.

    Returns
    -------
    backbone : nn.Module
        The same object, merged.
    """
    _import_peft()
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = _inner(backbone)
    targets = [(n, m) for n, m in inner.named_modules() if isinstance(m, BaseTunerLayer)]
    # outermost only: peft's MultiheadAttention layer holds tuner layers of its own,
    # which its unload handles
    outer = [(n, m) for n, m in targets
             if not any(n.startswith(o + ".") for o, _ in targets if o != n)]
    for name, module in outer:
        parent_name, _, child = name.rpartition(".")
        parent = inner.get_submodule(parent_name) if parent_name else inner
        if hasattr(module, "unload_and_optionally_merge_module"):  # nn.MultiheadAttention
            plain = module.unload_and_optionally_merge_module(merge=True, safe_merge=True,
                                                              adapter_names=None)
        else:
            module.merge(safe_merge=True)
            plain = module.get_base_layer()
        setattr(parent, child, plain)
    if hasattr(inner, "peft_config"):
        del inner.peft_config
    return backbone


def merge_saved_adapters(backbone: Backbone, settings: dict, adapters: dict) -> Backbone:
    """Put saved adapters back on a fresh base and merge them, as ``fit`` left its
    backbone: :func:`apply_lora` with the recorded ``settings`` (its ``"family"`` entry
    is a record, not a setting), :func:`load_lora_state_dict`, :func:`merge_lora`.
    Checking that the base is the one the adapters were trained on is the caller's."""
    apply_lora(backbone, {k: v for k, v in settings.items() if k != "family"})
    load_lora_state_dict(backbone, adapters)
    merge_lora(backbone)
    return backbone


def trainable_fraction(module: nn.Module) -> float:
    """Trainable parameters / all parameters of ``module``."""
    total = sum(p.numel() for p in module.parameters())
    train = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return train / max(total, 1)
