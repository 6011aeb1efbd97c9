"""``mlp``: a small multilayer perceptron over 2-D float feature arrays.

It lets every estimator run on precomputed embeddings or tabular features (and on
scikit-learn's estimator checks). Weights are initialised from ``seed`` so two builds
with the same arguments are identical, which keeps the feature cache's identity stable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.backbones.registry import register_backbone

__all__ = ["MLPBackbone", "create_mlp"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLPBackbone(Backbone):
    """``in_features -> hidden_sizes[0] -> ... -> hidden_sizes[-1]`` with activations.

    With ``hidden_sizes=()`` the backbone is the identity and ``num_features`` equals
    ``in_features`` (a head on top is then a plain linear/logistic model).
    """

    def __init__(self, in_features, hidden_sizes=(256,), activation="relu", dropout=0.0, seed=0):
        super().__init__()
        if not isinstance(in_features, int) or in_features <= 0:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}.")
        hidden_sizes = tuple(hidden_sizes)
        if any(not isinstance(h, int) or h <= 0 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive ints, got {hidden_sizes!r}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            blocks, d = [], in_features
            for h in hidden_sizes:
                layers = [nn.Linear(d, h), _ACTIVATIONS[activation]()]
                if dropout:
                    layers.append(nn.Dropout(dropout))
                blocks.append(nn.Sequential(*layers))
                d = h
        finally:
            torch.random.set_rng_state(gen_state)
        self.blocks = nn.ModuleList(blocks)
        self.config = BackboneConfig(
            name="mlp",
            modality="features",
            num_features=d,
            in_features=in_features,
            weights="random",
            license="n/a",
            extra={
                "hidden_sizes": list(hidden_sizes),
                "activation": activation,
                "dropout": float(dropout),
                "seed": seed,
            },
        )

    def preprocess(self, items, train=False):
        if isinstance(items, np.ndarray) and not items.flags.writeable:
            # a read-only view (pandas .values, np.load mmap): torch would warn that
            # it shares memory it may not write; the batch is small, copy it
            items = np.array(items, dtype=np.float32)
        return torch.as_tensor(items, dtype=torch.float32)

    def forward(self, batch):
        x = batch
        for block in self.blocks:
            x = block(x)
        return x

    def layer_groups(self):
        return [list(b.parameters()) for b in self.blocks]


@register_backbone("mlp", modality="features")
def create_mlp(
    pretrained=True,
    weights=None,
    *,
    in_features,
    hidden_sizes=(256,),
    activation="relu",
    dropout=0.0,
    seed=0,
):
    """Multilayer perceptron over 2-D float features (random init; no pretrained weights)."""
    model = MLPBackbone(in_features, hidden_sizes, activation, dropout, seed)
    if weights is not None:
        from tlestimators.backbones._weights import load_state_dict_file

        load_state_dict_file(model, weights)
        model.config = _with_weights(model.config, f"file:{weights}")
    return model


def _with_weights(config, source):
    import dataclasses

    return dataclasses.replace(config, weights=source)
