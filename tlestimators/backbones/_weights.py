"""Loading local weight files (safetensors or torch state dicts), timm-style reporting."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from tlestimators.exceptions import WeightsUnavailableError

__all__ = ["read_state_dict", "load_state_dict_file"]


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a torch checkpoint with ``weights_only=True``.

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``)
    are unwrapped; a ``module.`` prefix left by DataParallel is stripped.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {str(path)!r} does not exist; pass the path of a local "
            ".safetensors or .pt/.pth state dict."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"could not read weights file {str(path)!r} as a torch state dict "
                f"(loaded with weights_only=True): {exc}"
            ) from exc
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{str(path)!r} does not hold a state dict of tensors.")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict_file(model: torch.nn.Module, path, strict: bool = True, drop=()):
    """Load ``path`` into ``model``; keys starting with any prefix in ``drop`` (a
    classifier that does not match) are removed first. With ``strict=False`` missing
    and unexpected keys are reported in a warning rather than hidden."""
    sd = read_state_dict(path)
    if drop:
        sd = {k: v for k, v in sd.items() if not k.startswith(tuple(drop))}
    result = model.load_state_dict(sd, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        warnings.warn(
            f"Loading {os.fspath(path)!r}: missing keys {result.missing_keys[:10]}, "
            f"unexpected keys {result.unexpected_keys[:10]}.",
            stacklevel=2,
        )
    return result
