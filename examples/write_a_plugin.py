"""Write a backbone plugin
========================

A third-party package that adds backbones to tlestimators.

A plugin is an ordinary Python distribution that declares one entry point in the group
``tlestimators.backbones``; tlestimators finds it on the first registry lookup, with no
import or registration call in user code. This script builds such a distribution in a
temporary folder (package + ``.dist-info`` metadata, exactly what ``pip install`` would
leave in site-packages), puts it on ``sys.path``, and then uses the new backbone through
the registry and an estimator like any built-in.

For a real package, put the same entry point in its ``pyproject.toml``::

    [project.entry-points."tlestimators.backbones"]
    tinycnn = "tle_tinycnn:create_tinycnn"

and ``pip install`` it (see ``plugins/tle-torchvision-backbones`` and ``docs/plugins.rst``).

Run: ``python examples/write_a_plugin.py`` (``TLE_FAST=1``, as the docs gallery and the
tests run it, for a quicker run: a few seconds).
"""

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

FAST = os.environ.get("TLE_FAST") == "1"

# The plugin's code: a Backbone subclass and a factory. It uses only the public API.
PLUGIN_MODULE = textwrap.dedent(
    '''
    """tle_tinycnn: a two-block CNN as a tlestimators backbone (random init or a local file)."""
    import torch
    from torch import nn

    from tlestimators.backbones import Backbone, BackboneConfig
    from tlestimators.data import ImagePreprocessor


    class TinyCNN(Backbone):
        def __init__(self, width, img_size, seed):
            super().__init__()
            g = torch.Generator().manual_seed(seed)  # same build -> same weights -> cache hits
            def block(i, o):
                conv = nn.Conv2d(i, o, 3, padding=1, bias=False)
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / (9 * i)) ** .5)
                return nn.Sequential(conv, nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
            self.stem = block(3, width)
            self.block = block(width, 2 * width)
            self.config = BackboneConfig(
                name="tinycnn", modality="image", num_features=2 * width,
                input_size=(3, img_size, img_size), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                weights="random", license="n/a", extra={"width": width, "seed": seed},
            )
            self.preprocessor = ImagePreprocessor(self.config.input_size, self.config.mean,
                                                  self.config.std, interpolation="bilinear",
                                                  crop_pct=1.0)

        def preprocess(self, items, train=False):       # raw items -> batch
            return self.preprocessor(items, train=train)

        def forward(self, batch):                       # batch -> (N, num_features)
            return self.block(self.stem(batch)).mean(dim=(2, 3))

        def layer_groups(self):                         # input -> output, every param once
            return [list(self.stem.parameters()), list(self.block.parameters())]


    def create_tinycnn(pretrained=True, weights=None, *, width=16, img_size=32, seed=0):
        """A two-block CNN (random init from seed, or weights=<local state dict>)."""
        model = TinyCNN(width, img_size, seed)
        if weights is not None:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model


    create_tinycnn.modality = "image"   # lets estimators know the modality before building
    '''
)


def install_fake_distribution(root: Path) -> None:
    """What pip would install: the module plus ``.dist-info`` with the entry point."""
    (root / "tle_tinycnn.py").write_text(PLUGIN_MODULE)
    info = root / "tle_tinycnn-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tle-tinycnn\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[tlestimators.backbones]\ntinycnn = tle_tinycnn:create_tinycnn\n"
    )
    sys.path.insert(0, str(root))


def colour_images(n, rng):
    """Two classes: reddish vs bluish noisy 32x32 images."""
    X = rng.integers(0, 110, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 2, size=n)
    X[y == 0, ..., 0] += 140
    X[y == 1, ..., 2] += 140
    return X, np.where(y == 0, "red", "blue")


def main():
    import tlestimators
    from tlestimators.backbones import check_layer_groups, refresh_backbones

    with tempfile.TemporaryDirectory() as tmp:
        install_fake_distribution(Path(tmp))
        refresh_backbones()  # re-read entry points (only needed because we installed mid-run)

        print("registered:", tlestimators.list_backbones())
        info = tlestimators.backbone_info("tinycnn")
        print("tinycnn comes from:", info["source"])

        bb = tlestimators.create_backbone("tinycnn", width=8)
        check_layer_groups(bb, bb.layer_groups())  # the check every plugin should pass
        print("config:", bb.config.num_features, "features,", bb.config.input_size)

        rng = np.random.default_rng(0)
        X, y = colour_images(80 if FAST else 300, rng)
        n_train = len(y) * 3 // 4
        clf = tlestimators.FrozenFeatureClassifier(
            "tinycnn", backbone_kwargs={"width": 8}, max_epochs=20, lr=1e-2, random_state=0,
            device="cpu",
        )
        t0 = time.perf_counter()
        clf.fit(X[:n_train], y[:n_train])
        acc = clf.score(X[n_train:], y[n_train:])
        print(f"FrozenFeatureClassifier on the plugin backbone: held-out accuracy {acc:.2f} "
              f"(chance 0.5), fit {time.perf_counter() - t0:.1f} s")

        # What the plugin-backed estimator sees and says: held-out images, predictions.
        import matplotlib.pyplot as plt

        X_show, y_show = X[n_train:n_train + 8], y[n_train:n_train + 8]
        pred = clf.predict(X_show)
        fig, axes = plt.subplots(1, 8, figsize=(9, 1.8), layout="constrained")
        for ax, img, p, t in zip(axes, X_show, pred, y_show):
            ax.imshow(img)
            ax.set_title(f"{p}" + ("" if p == t else f" (is {t})"), fontsize=8,
                         color="black" if p == t else "red")
            ax.axis("off")
        fig.suptitle(f"tinycnn plugin + FrozenFeatureClassifier: held-out accuracy {acc:.2f}")
        plt.show()
        sys.path.remove(tmp)
        refresh_backbones()


if __name__ == "__main__":
    main()
