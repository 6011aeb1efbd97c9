"""``unfreeze="lora"`` for FineTuneClassifier: adapters on, merged at the end of fit, and a
pickle that keeps only the adapters when the base weights come from a package.

The backbone layer (:mod:`tlestimators.backbones.lora`) does the peft work; this module
holds the estimator side: what ``fit`` records (``lora_``) and the ``__getstate__`` /
``__setstate__`` pair that swaps the merged backbone for a reference (registry name,
``backbone_kwargs``, the base weights' fingerprint, the adapter weights) and rebuilds it
on unpickle (refusing a package whose weights changed).
"""

from __future__ import annotations

import io
import pickle

import torch

from tlestimators.exceptions import FingerprintMismatchError

__all__ = ["start_lora", "finish_lora", "lora_getstate", "lora_setstate"]


def start_lora(est, backbone):
    """Record the base fingerprint and put adapters on ``backbone`` (in place)."""
    from tlestimators.backbones.lora import apply_lora
    from tlestimators.features import backbone_fingerprint

    base_fp = backbone_fingerprint(backbone)
    settings = apply_lora(backbone, est.lora_kwargs)
    by_reference = (isinstance(est.backbone, str)
                    and str(backbone.config.weights).startswith("package:"))
    return {"settings": settings, "base_fingerprint": base_fp, "by_reference": by_reference,
            "adapters": None}


def finish_lora(est, net):
    """Keep the trained adapter weights, then merge them into the backbone of ``net``."""
    from tlestimators.backbones.lora import lora_state_dict, merge_lora

    backbone = net.module_.backbone
    est.lora_["adapters"] = lora_state_dict(backbone)
    merge_lora(backbone)
    backbone.eval()


def _rebuild(est, ref):
    from tlestimators.backbones.lora import merge_saved_adapters
    from tlestimators.features import backbone_fingerprint

    n_features = getattr(est, "n_features_in_", None)
    backbone = est._make_backbone(n_features)
    fp = backbone_fingerprint(backbone)
    if fp != ref["base_fingerprint"]:
        raise FingerprintMismatchError(
            f"cannot unpickle this {type(est).__name__}: it stores only LoRA adapters "
            f"({ref['settings'].get('family')}) over the backbone {est.backbone!r}, whose "
            f"weights installed here have fingerprint {fp[:16]}..., but the adapters were "
            f"trained on {ref['base_fingerprint'][:16]}.... Install the package version "
            "the model was trained with."
        )
    merge_saved_adapters(backbone, ref["settings"], ref["adapters"])
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone.eval()


def lora_getstate(est, state):
    """``state`` with the fitted net pickled without its backbone (and optimizer) when the
    backbone can be rebuilt from a package; unchanged otherwise."""
    ref = state.get("lora_")
    net = state.get("net_")
    if not ref or not ref.get("by_reference") or ref.get("adapters") is None or net is None:
        return state
    module = net.module_
    backbone = module.backbone
    # The optimizer (and the lr scheduler callbacks holding it) reference the merged
    # base weights: leave them out; fit always builds a new net, so nothing needs their
    # state after fitting.
    dropped = [(net, "optimizer_", net.__dict__.get("optimizer_"))]
    for _, cb in getattr(net, "callbacks_", ()):
        for k, v in vars(cb).items():
            if isinstance(v, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
                dropped.append((cb, k, v))
    module.backbone = None
    try:
        for obj, k, _ in dropped:
            obj.__dict__[k] = None
        buf = io.BytesIO()
        pickle.dump(net, buf, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        module.backbone = backbone
        for obj, k, v in dropped:
            obj.__dict__[k] = v
    state = dict(state)
    state["net_"] = None
    state["_lora_net_bytes"] = buf.getvalue()
    return state


def lora_setstate(est):
    """Inverse of :func:`lora_getstate`, after the state is restored: rebuilds and
    re-merges the backbone."""
    blob = est.__dict__.pop("_lora_net_bytes", None)
    if blob is None:
        return
    net = pickle.loads(blob)
    net.module_.backbone = _rebuild(est, est.lora_)
    est.net_ = net
