"""Image-text backbones from open_clip: ``open_clip/<arch>``.

``forward`` is the image tower (``encode_image``), so an ``open_clip/...`` backbone works
wherever an image backbone does (frozen features, fine-tuning); the text tower is there
for zero-shot classification through :meth:`OpenCLIPBackbone.encode_text`,
:meth:`OpenCLIPBackbone.tokenize` and :attr:`OpenCLIPBackbone.logit_scale`.

No CLIP weights ship on PyPI. Weights come from

- a local checkpoint file: ``weights=<path>`` or ``pretrained=<path>`` (a state dict,
  ``.safetensors``, open_clip's own checkpoint format, an OpenAI TorchScript archive, or
  a saved :class:`OpenCLIPBackbone` ``state_dict``);
- an open_clip pretrained tag, ``pretrained="openai"``, ``"laion2b_s34b_b79k"``, ...: read
  from the local cache when it is there, otherwise downloaded by open_clip (only works
  on a machine with network access);
- ``pretrained=True`` (the registry default): the first tag of the architecture whose
  file is already in the local cache; never downloads.

A custom architecture (e.g. a tiny CLIP for tests) is built from ``model_cfg``, a dict
in open_clip's model-config format (``embed_dim``, ``vision_cfg``, ``text_cfg``).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import warnings
from pathlib import Path

import torch

from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.backbones.registry import register_backbone
from tlestimators.exceptions import BackboneNotFoundError, WeightsUnavailableError

__all__ = ["OpenCLIPBackbone", "create_open_clip", "cached_pretrained_tags"]

_HOWTO = (
    "Pass a local checkpoint: create_backbone('open_clip/{arch}', weights='/path/to/"
    "open_clip_model.safetensors') (or pretrained='/path/...'). A machine with network access "
    "can fetch it once with `python -c \"import open_clip; open_clip.create_model('{arch}', "
    "pretrained='{tag}')\"` (it then stays in the Hugging Face cache, where pretrained='{tag}' "
    "finds it offline), or pretrained=False for random weights."
)


def _import_open_clip():
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("open_clip backbones need open_clip: `pip install open_clip_torch`.") \
            from exc
    return open_clip


# --------------------------------------------------------------------------- module
class OpenCLIPBackbone(Backbone):
    """An open_clip model (CLIP, CustomTextCLIP, ...) as an image-text backbone.

    Parameters
    ----------
    model : open_clip model
        Anything with ``encode_image``, ``encode_text``, ``logit_scale`` and ``visual``.
    config : BackboneConfig
        ``modality="image-text"``; ``input_size``, ``mean``, ``std`` and
        ``interpolation`` come from open_clip's preprocess config of the model.
    tokenizer_spec : dict
        How to rebuild the tokenizer (it is not pickled: 2 MB of BPE tables that
        :meth:`tokenize` rebuilds on first use).
    normalize : bool, default=False
        Whether ``forward`` returns L2-normalised image embeddings.
    augment : bool, default=True
        Random resized crop + flip in ``preprocess(items, train=True)``.
    """

    def __init__(self, model, config, tokenizer_spec, normalize=False, augment=True):
        super().__init__()
        from tlestimators.data import ImagePreprocessor

        self.model = model
        self.config = config
        self.tokenizer_spec = dict(tokenizer_spec)
        self.normalize = bool(normalize)
        self.augment = augment
        self.preprocessor = ImagePreprocessor(
            config.input_size, config.mean, config.std, interpolation=config.interpolation,
            crop_pct=config.crop_pct, augment=augment,
        )
        self._tokenizer = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tokenizer"] = None
        return state

    # -- image tower (the backbone's forward)
    def preprocess(self, items, train=False):
        return self.preprocessor(items, train=train)

    def forward(self, batch):
        return self.model.encode_image(batch, normalize=self.normalize)

    def encode_image(self, batch, normalize=False):
        """Image embeddings ``(N, D)`` of a preprocessed batch."""
        return self.model.encode_image(batch, normalize=normalize)

    # -- text tower
    @property
    def context_length(self) -> int:
        return int(self.tokenizer_spec["context_length"])

    def _get_tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = _make_tokenizer(self.tokenizer_spec)
        return self._tokenizer

    def tokenize(self, texts) -> torch.Tensor:
        """Token ids ``(N, context_length)`` of a list of strings (truncated to fit)."""
        from tlestimators.data import check_texts

        texts = check_texts(texts, "texts")
        return self._get_tokenizer()(texts)

    def encode_text(self, tokens, normalize=False):
        """Text embeddings ``(N, D)`` of token ids from :meth:`tokenize`."""
        return self.model.encode_text(tokens, normalize=normalize)

    @property
    def logit_scale(self) -> torch.nn.Parameter:
        """The learned temperature as open_clip stores it: the *log* of the scale
        (``logits = logit_scale.exp() * cosine``)."""
        return self.model.logit_scale

    # -- structure
    def layer_groups(self):
        """Input -> output, for the image path that ``forward`` computes:

        1. the text tower with ``logit_scale`` (not used by ``forward``; first so that
           gradual unfreezing releases it last, and only together with the whole model),
        2. the patch/stem embedding,
        3. one group per transformer block (ResNet stage for ``RN*`` models),
        4. the final norm and projection.
        """
        text, stem, head, blocks = [], [], [], {}
        head_rx = re.compile(r"^(ln_post|proj|attnpool|attn_pool|head|trunk\.(norm|fc_norm|head))")
        block_rx = re.compile(
            r"^(?:transformer\.resblocks\.(\d+)\.|layer(\d+)\.|trunk\.(?:blocks|stages)\.(\d+)\.)"
        )
        for name, p in self.model.named_parameters():
            if not name.startswith("visual."):
                text.append(p)
                continue
            sub = name[len("visual."):]
            m = block_rx.match(sub)
            if m:
                idx = int(next(g for g in m.groups() if g is not None))
                blocks.setdefault(idx, []).append(p)
            elif head_rx.match(sub):
                head.append(p)
            else:
                stem.append(p)
        groups = [text, stem] + [blocks[k] for k in sorted(blocks)] + [head]
        return [g for g in groups if g]


def _make_tokenizer(spec):
    open_clip = _import_open_clip()
    ctx = spec["context_length"]
    if spec.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(spec["hf_tokenizer_name"], context_length=ctx,
                           **spec.get("tokenizer_kwargs", {}))
    if spec.get("name"):
        return open_clip.get_tokenizer(spec["name"], context_length=ctx)
    return open_clip.SimpleTokenizer(context_length=ctx, **spec.get("tokenizer_kwargs", {}))


# --------------------------------------------------------------------------- weights
def cached_pretrained_tags(arch: str, cache_dir=None) -> dict[str, str]:
    """``{tag: local file}`` for the open_clip pretrained tags of ``arch`` whose weights
    are already on this machine (Hugging Face cache or open_clip's URL cache). Looks at
    files only; never touches the network."""
    open_clip = _import_open_clip()
    out = {}
    for tag in open_clip.list_pretrained_tags_by_model(arch):
        path = _cached_tag_file(open_clip.get_pretrained_cfg(arch, tag), cache_dir)
        if path:
            out[tag] = path
    return out


def _cached_tag_file(cfg, cache_dir=None):
    if not cfg:
        return None
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            # open_clip's convention: "org/repo/" means the default file names
            repo, filename = (hub[:-1], "") if hub.endswith("/") else os.path.split(hub)
            names = [filename] if filename else ["open_clip_model.safetensors",
                                                 "open_clip_pytorch_model.bin"]
            if filename.endswith(".bin"):
                names.insert(0, filename[:-4] + ".safetensors")
            for name in names:
                try:
                    found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
                except Exception:
                    found = None
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"),
                            os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def _load_checkpoint(model, path):
    """Strict load of a local file; our own ``state_dict`` (``model.`` prefix) directly,
    anything else through open_clip's converter (OpenAI JIT archives, big_vision, ...)."""
    open_clip = _import_open_clip()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"CLIP checkpoint {str(path)!r} does not exist; pass the path of a local state dict "
            "(.safetensors, .pt, .bin) or open_clip checkpoint."
        )
    try:
        if Path(path).suffix not in (".npz", ".npy"):
            from open_clip.factory import load_state_dict

            sd = load_state_dict(path, weights_only=True)
            if sd and all(k.startswith("model.") for k in sd):
                model.load_state_dict({k[len("model."):]: v for k, v in sd.items()},
                                      strict=True)
                return
        open_clip.load_checkpoint(model, path, strict=True, weights_only=True)
    except WeightsUnavailableError:
        raise
    except Exception as exc:
        raise WeightsUnavailableError(
            f"CLIP checkpoint {str(path)!r} could not be loaded into this architecture: "
            f"{type(exc).__name__}: {str(exc)[:500]}. Check the architecture name (OpenAI "
            "weights need the '-quickgelu' variant or quick_gelu=True)."
        ) from exc


# --------------------------------------------------------------------------- factory
def _builtin_config(open_clip, arch):
    if arch.startswith("local-dir:"):
        cfg_path = Path(arch[len("local-dir:"):]) / "open_clip_config.json"
        if not cfg_path.is_file():
            raise WeightsUnavailableError(
                f"'open_clip/{arch}': {str(cfg_path)!r} does not exist; a local-dir: model "
                "needs the open_clip_config.json written by open_clip's save/push helpers."
            )
        with open(cfg_path, encoding="utf-8") as f:
            return json.load(f)["model_cfg"]
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('open_clip/' + c for c in close)}?" if close else ""
        raise BackboneNotFoundError(
            f"open_clip has no architecture {arch!r}.{hint} See open_clip.list_models(), or "
            "pass model_cfg={...} (open_clip's model-config format) for a custom one."
        )
    return cfg


def _instantiate(open_clip, cfg, *, preprocess_cfg=None):
    """Build an open_clip model from a model-config dict, the way create_model does."""
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = copy.deepcopy(cfg)
    is_hf_text = "hf_model_name" in cfg.get("text_cfg", {})
    if is_hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False  # never fetch base text weights
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or is_hf_text
    if custom_text:
        cls = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        cls = open_clip.CLIP
    model = cls(**cfg)
    pp = merge_preprocess_dict(dict(PreprocessCfg().__dict__), preprocess_cfg or {})
    size = getattr(model.visual, "image_size", None)
    if size is not None:
        pp["size"] = size
    open_clip.set_model_preprocess_cfg(model, pp)
    return model


@register_backbone("open_clip/", modality="image-text")
def create_open_clip(arch, pretrained=True, weights=None, *, model_cfg=None, img_size=None,
                     context_length=None, quick_gelu=None, normalize=False, augment=True,
                     cache_dir=None, seed=0):
    """CLIP image and text towers from open_clip (``forward`` = image embeddings).

    Parameters
    ----------
    arch : str
        An open_clip architecture (``ViT-B-32``, ``ViT-B-32-quickgelu``, ``RN50``, ...;
        see ``open_clip.list_models()``), ``local-dir:<folder>``, or any label when
        ``model_cfg`` is given.
    pretrained : bool or str, default=True
        ``True``: an open_clip pretrained tag of ``arch`` whose weights are already in the
        local cache (``"openai"`` first), else an error saying how to get weights;
        ``False``: random weights from ``seed``; a path: a local checkpoint; any other
        string: an open_clip pretrained tag (read from the cache, or downloaded by
        open_clip where the network is reachable).
    weights : str or path-like, default=None
        A local checkpoint (overrides ``pretrained``): state dict, ``.safetensors``,
        open_clip checkpoint, OpenAI ``.pt`` archive, or a saved backbone ``state_dict``.
    model_cfg : dict, default=None
        A custom architecture in open_clip's model-config format (``embed_dim``,
        ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``).
    img_size : int, default=None
        Override the image tower's input size (position embeddings are resized when
        weights of another size are loaded).
    context_length : int, default=None
        Override the text context length.
    quick_gelu : bool, default=None
        Force QuickGELU activations (what OpenAI's weights were trained with). None: as
        the architecture says, or as the pretrained tag requires.
    normalize : bool, default=False
        L2-normalise the image embeddings ``forward`` returns.
    augment : bool, default=True
        Train-time random resized crop and flip.
    cache_dir : str, default=None
        Where open_clip/Hugging Face keep downloaded weights (their defaults if None).
    seed : int, default=0
        Seed of the random initialisation (so two random builds are identical).
    """
    open_clip = _import_open_clip()
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be a path to a local checkpoint or None, got {type(weights).__name__}."
        )
    if not isinstance(pretrained, (bool, str, os.PathLike)):
        raise TypeError(
            f"pretrained must be a bool, an open_clip pretrained tag or a checkpoint path, got "
            f"{pretrained!r}."
        )
    if model_cfg is not None and not isinstance(model_cfg, dict):
        raise TypeError(f"model_cfg must be a dict in open_clip's format, got {model_cfg!r}.")
    if model_cfg is not None:
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(model_cfg)
        if missing:
            raise ValueError(f"model_cfg is missing {sorted(missing)}; open_clip needs "
                             "embed_dim, vision_cfg and text_cfg.")
        cfg = copy.deepcopy(model_cfg)
    else:
        cfg = copy.deepcopy(_builtin_config(open_clip, arch))

    # Resolve where the weights come from before building anything.
    checkpoint, tag, tag_cfg = None, None, None
    if weights is not None:
        checkpoint = os.fspath(weights)
    elif isinstance(pretrained, os.PathLike) or (
            isinstance(pretrained, str) and os.path.isfile(os.path.expanduser(pretrained))):
        checkpoint = os.path.expanduser(os.fspath(pretrained))
    elif isinstance(pretrained, str):
        if model_cfg is not None or arch.startswith("local-dir:"):
            raise WeightsUnavailableError(
                f"pretrained={pretrained!r} is neither a file nor usable as a tag for a custom "
                "architecture; pass weights=<local checkpoint path>."
            )
        tag = pretrained
        tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise WeightsUnavailableError(
                f"pretrained={pretrained!r} is not a file and not an open_clip pretrained tag "
                f"of {arch!r} (tags: {', '.join(tags) or 'none'}). "
                + _HOWTO.format(arch=arch, tag=tags[0] if tags else "openai")
            )
        checkpoint = _cached_tag_file(tag_cfg, cache_dir)
        if checkpoint is None:
            try:
                from open_clip.pretrained import download_pretrained

                checkpoint = download_pretrained(tag_cfg, cache_dir=cache_dir) or None
            except Exception as exc:
                offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
                hint = (" HF_HUB_OFFLINE is set in this process, so the Hugging Face hub was "
                        "not contacted; start Python without it to download." if offline else "")
                raise WeightsUnavailableError(
                    f"the weights of open_clip/{arch} pretrained={tag!r} are not in the local "
                    f"cache and could not be downloaded ({type(exc).__name__}: "
                    f"{str(exc)[:300]}).{hint} " + _HOWTO.format(arch=arch, tag=tag)
                ) from exc
    elif pretrained:
        found = {} if (model_cfg is not None or arch.startswith("local-dir:")) else (
            cached_pretrained_tags(arch, cache_dir))
        if arch.startswith("local-dir:"):
            from open_clip.factory import _find_checkpoint_in_dir

            checkpoint = _find_checkpoint_in_dir(Path(arch[len("local-dir:"):]))
        if checkpoint is None and not found:
            tags = [] if model_cfg is not None else open_clip.list_pretrained_tags_by_model(arch)
            raise WeightsUnavailableError(
                f"no CLIP weights for open_clip/{arch} are available offline (no weights ship "
                "on PyPI, and none of its pretrained tags is in the local cache). "
                + _HOWTO.format(arch=arch, tag=tags[0] if tags else "openai")
            )
        if checkpoint is None:
            tag = "openai" if "openai" in found else next(iter(found))
            tag_cfg, checkpoint = open_clip.get_pretrained_cfg(arch, tag), found[tag]

    if quick_gelu is None and tag_cfg:
        quick_gelu = tag_cfg.get("quick_gelu", None)
    if quick_gelu is not None:
        cfg["quick_gelu"] = bool(quick_gelu)
    if img_size is not None:
        cfg["vision_cfg"]["image_size"] = img_size
    if context_length is not None:
        cfg["text_cfg"]["context_length"] = int(context_length)
    preprocess_cfg = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                      if tag_cfg and k in tag_cfg}

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = _instantiate(open_clip, cfg, preprocess_cfg=preprocess_cfg)
    except TypeError as exc:
        raise TypeError(f"open_clip/{arch}: invalid model configuration: {exc}") from exc
    finally:
        torch.random.set_rng_state(state)
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
        source = f"hub:{tag}" if tag else f"file:{os.path.abspath(checkpoint)}"
    else:
        source = "random"
    model.eval()

    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if pp.get("resize_mode", "shortest") != "shortest":
        warnings.warn(
            f"open_clip/{arch} was trained with resize_mode={pp['resize_mode']!r}; tlestimators "
            "resizes the shortest side and centre-crops, which may cost some accuracy.",
            stacklevel=2,
        )
    text_cfg = cfg.get("text_cfg", {})
    tokenizer_spec = {
        "name": None if (model_cfg is not None) else arch,
        "context_length": int(getattr(model, "context_length", None)
                              or text_cfg.get("context_length", 77)),
        "hf_tokenizer_name": text_cfg.get("hf_tokenizer_name") if model_cfg is not None else None,
        "tokenizer_kwargs": dict(text_cfg.get("tokenizer_kwargs", {})) if model_cfg else {},
    }
    extra = {"arch": arch, "normalize": bool(normalize)}
    if model_cfg is not None:
        extra["model_cfg"] = cfg
    if quick_gelu is not None:
        extra["quick_gelu"] = bool(quick_gelu)
    config = BackboneConfig(
        name=f"open_clip/{arch}",
        modality="image-text",
        num_features=int(cfg.get("embed_dim") or model.text_projection.shape[-1]),
        input_size=(3, *size),
        mean=tuple(float(m) for m in pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(float(s) for s in pp.get("std", open_clip.OPENAI_DATASET_STD)),
        interpolation=pp.get("interpolation", "bicubic") or "bicubic",
        crop_pct=1.0,  # open_clip: resize the shortest side to `size`, centre-crop `size`
        weights=source,
        license=None,
        extra=extra,
    )
    return OpenCLIPBackbone(model, config, tokenizer_spec, normalize=normalize, augment=augment)
