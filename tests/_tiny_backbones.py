"""Tiny backbones for tests: no downloads, milliseconds per batch.

``TinyConvBackbone`` is a two-stage conv net over images (with BatchNorm, so frozen
statistics can be checked) using the real :class:`tlestimators.data.ImagePreprocessor`.
"""

from __future__ import annotations

import torch
from torch import nn

from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.data import ImagePreprocessor


class TinyConvBackbone(Backbone):
    def __init__(self, img_size=16, width=8, seed=0):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
            )
            self.stage = nn.Sequential(
                nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(),
            )
            self.proj = nn.Linear(2 * width, 2 * width)
        finally:
            torch.random.set_rng_state(state)
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        self.config = BackboneConfig(
            name="tiny_conv",
            modality="image",
            num_features=2 * width,
            input_size=(3, img_size, img_size),
            mean=mean,
            std=std,
            interpolation="bilinear",
            crop_pct=1.0,
            extra={"width": width, "seed": seed},
        )
        self._pre = ImagePreprocessor(
            self.config.input_size, mean, std, interpolation="bilinear", crop_pct=1.0
        )

    def preprocess(self, items, train=False):
        return self._pre(items, train=train)

    def forward(self, batch):
        x = self.stage(self.stem(batch))
        return self.proj(x.mean(dim=(2, 3)))

    def layer_groups(self):
        return [
            list(self.stem.parameters()),
            list(self.stage.parameters()),
            list(self.proj.parameters()),
        ]


def make_image_blobs(n_per_class=30, size=16, n_classes=2, seed=0):
    """uint8 images whose class is their dominant colour channel (easy to learn)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(n_classes):
        imgs = rng.integers(0, 80, size=(n_per_class, size, size, 3))
        imgs[..., c % 3] += 150
        X.append(imgs)
        y += [c] * n_per_class
    return np.concatenate(X).astype(np.uint8), np.asarray(y)


#: A tiny open_clip model config (built offline, random weights) for the CLIP tests.
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4,
                 "layers": 2},
}
