"""The real third-party plugin in plugins/tle-torchvision-backbones, found through its
installed entry point (``make`` installs it; so does
``pip install -e plugins/tle-torchvision-backbones``)."""

import importlib.metadata

import numpy as np
import pytest
import torch

from tlestimators import create_backbone, list_backbones
from tlestimators.backbones import check_layer_groups, registry
from tlestimators.exceptions import (
    BackboneNotFoundError,
    PluginLoadError,
    PluginWarning,
    WeightsUnavailableError,
)

DIST = "tle-torchvision-backbones"
INSTALL_HINT = "install it with `pip install -e plugins/tle-torchvision-backbones` (make does)"


@pytest.fixture(scope="module")
def plugin_entry_point():
    eps = [e for e in importlib.metadata.entry_points(group=registry.ENTRY_POINT_GROUP)
           if e.dist is not None and e.dist.name == DIST]
    assert eps, f"the {DIST} plugin is not installed; {INSTALL_HINT}"
    return eps[0]


@pytest.fixture(autouse=True)
def _fresh_discovery():
    registry.refresh_backbones()
    yield
    registry.refresh_backbones()


def colour_images(n_per_class=20, size=24, seed=0):
    """Two classes that differ in their dominant colour channel."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 120, size=(2 * n_per_class, size, size, 3), dtype=np.uint8)
    y = np.repeat([0, 1], n_per_class)
    X[y == 0, :, :, 0] += 120
    X[y == 1, :, :, 2] += 120
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def test_entry_point_declares_the_family(plugin_entry_point):
    assert plugin_entry_point.name == "torchvision/"
    assert plugin_entry_point.value == "tle_torchvision_backbones:create_torchvision_backbone"


def test_plugin_is_discovered_through_the_entry_point(plugin_entry_point):
    assert "torchvision/" in list_backbones()
    info = registry.backbone_info("torchvision/resnet18")
    assert info["source"] == (
        f"plugin {DIST} (torchvision/ = {plugin_entry_point.value})"
    )
    assert info["config"]["num_features"] == 512
    assert info["config"]["extra"]["plugin"].startswith(DIST)


def test_plugin_backbone_honours_the_contract(plugin_entry_point):
    bb = create_backbone("torchvision/mobilenet_v3_small", pretrained=False, img_size=32).eval()
    X, _ = colour_images(3, size=40)
    batch = bb.preprocess(bb.check_input(X))
    with torch.inference_mode():
        out = bb(batch)
        again = bb(batch)
    assert out.shape == (6, bb.num_features) and out.dtype == torch.float32
    assert torch.equal(out, again)
    groups = bb.layer_groups()
    check_layer_groups(bb, groups)
    assert len(groups) > 5


def test_plugin_loads_a_local_torchvision_state_dict(tmp_path, plugin_entry_point):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    ref = resnet18(weights=None).eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    bb = create_backbone("torchvision/resnet18", weights=tmp_path / "resnet18.pth",
                         img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    ref.fc = torch.nn.Identity()
    with torch.inference_mode():
        torch.testing.assert_close(bb(x), ref(x))
    assert bb.config.weights.startswith("file:")


def test_plugin_errors_are_specific(plugin_entry_point):
    with pytest.raises(WeightsUnavailableError, match="pretrained=False"):
        create_backbone("torchvision/resnet18")
    with pytest.raises(BackboneNotFoundError, match="torchvision/resnet18"):
        create_backbone("torchvision/resnet1", pretrained=False)


def test_plugin_end_to_end_in_an_sklearn_pipeline(plugin_entry_point):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tlestimators import BackboneEmbedder

    X, y = colour_images(30)
    pipe = make_pipeline(
        BackboneEmbedder("torchvision/resnet18",
                         backbone_kwargs={"pretrained": False, "img_size": 32}, cache=False),
        LogisticRegression(max_iter=2000),
    )
    pipe.fit(X[:40], y[:40])
    emb = pipe[0].transform(X[:2])
    assert emb.shape == (2, 512)
    assert pipe.score(X[40:], y[40:]) >= 0.9  # chance is 0.5


def test_broken_plugin_next_to_the_real_one_only_warns(monkeypatch, plugin_entry_point):
    broken = importlib.metadata.EntryPoint(
        name="broken_tv", value="tle_torchvision_backbones:no_such_factory",
        group=registry.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(registry, "_entry_points", lambda: [plugin_entry_point, broken])
    registry.refresh_backbones()
    names = list_backbones()  # names only: nothing imported, nothing failed yet
    assert "torchvision/" in names and "broken_tv" in names
    with pytest.warns(PluginWarning, match="'broken_tv'.*AttributeError"):
        with pytest.raises(PluginLoadError, match="'broken_tv' comes from plugin"):
            create_backbone("broken_tv")
    bb = create_backbone("torchvision/resnet18", pretrained=False, img_size=32)
    assert bb.num_features == 512


def test_unsafe_checkpoint_is_weights_unavailable_not_a_raw_unpickling_error(
        tmp_path, plugin_entry_point):
    import argparse

    from torchvision.models import resnet18

    sd = resnet18(weights=None).state_dict()
    sd["payload"] = argparse.Namespace(x=1)  # a global that weights_only=True refuses
    path = tmp_path / "unsafe.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsUnavailableError, match=r"unsafe\.pth.*weights_only") as exc:
        create_backbone("torchvision/resnet18", weights=path, img_size=32)
    assert "UnpicklingError" in str(exc.value)
