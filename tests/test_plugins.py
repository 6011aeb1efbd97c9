"""The real third-party plugin in plugins/tle-torchvision-backbones, found through its
installed entry point (``make`` installs it; so does
``pip install -e plugins/tle-torchvision-backbones``)."""

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

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


# --------------------------------------------------------------------------- the guide
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.rst"
GUIDE_FILES = ("tle-tinycnn/tle_tinycnn.py", "tle-tinycnn/pyproject.toml")


def captioned_code_blocks(rst: str) -> dict[str, list[str]]:
    """``{caption: [code, ...]}`` of the ``.. code-block::`` directives with a ``:caption:``,
    in page order, dedented."""
    lines = rst.splitlines()
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. code-block::", lines[i])
        i += 1
        if not m:
            continue
        indent, caption = len(m.group(1)), None
        while i < len(lines) and re.match(r"^\s+:(\w+):", lines[i]):  # the options
            opt = re.match(r"^\s+:caption:\s*(.+)$", lines[i])
            caption = opt.group(1).strip() if opt else caption
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        if caption:
            out.setdefault(caption, []).append(textwrap.dedent("\n".join(body)).strip() + "\n")
    return out


@pytest.fixture(scope="module")
def guide_plugin(tmp_path_factory):
    """The guide's plugin, written from its own code blocks and pip-installed into a
    temporary target (no network, no build isolation: the venv's setuptools)."""
    blocks = captioned_code_blocks(GUIDE.read_text())
    assert set(GUIDE_FILES) <= set(blocks), f"docs/plugins.rst lost a file block: {blocks}"
    root = tmp_path_factory.mktemp("guide")
    for rel in GUIDE_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n\n".join(blocks[rel]))
    site = root / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(root / "tle-tinycnn")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"pip refused the guide's plugin:\n{out.stdout}\n{out.stderr}"
    return site, blocks["using the plugin"][0]


_GUIDE_CHECK = '''
import numpy as np
from tlestimators import FrozenFeatureClassifier, backbone_info, create_backbone

assert backbone_info("tinycnn")["source"].startswith("plugin tle-tinycnn (tinycnn = ")
bb = create_backbone("tinycnn", pretrained=False)
print("FINGERPRINT", bb.fingerprint())
rng = np.random.default_rng(1)
X = rng.integers(0, 120, size=(60, 40, 40, 3), dtype=np.uint8)
y = np.repeat([0, 1], 30)
X[y == 0, :, :, 0] += 120
X[y == 1, :, :, 2] += 120
perm = rng.permutation(60)
X, y = X[perm], y[perm]
clf = FrozenFeatureClassifier("tinycnn", backbone_kwargs={"pretrained": False}, random_state=0)
print("SCORE", clf.fit(X[:40], y[:40]).score(X[40:], y[40:]))
'''


def test_the_guides_plugin_installs_from_its_code_blocks_and_works(guide_plugin, tmp_path,
                                                                      monkeypatch):
    site, usage = guide_plugin
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # the guide's own usage block first, then what a user relies on
    out = subprocess.run([sys.executable, "-c", usage + _GUIDE_CHECK], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    found = dict(line.split(" ", 1) for line in out.stdout.splitlines()
                 if line.startswith(("FINGERPRINT ", "SCORE ")))
    assert float(found["SCORE"]) >= 0.9  # red vs blue images; chance is 0.5

    # Here, in another process with another global RNG state: the same network, and
    # building it leaves the global RNG alone.
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "tle_tinycnn", raising=False)
    registry.refresh_backbones()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    bb = create_backbone("tinycnn", pretrained=False)
    assert bb.fingerprint() == found["FINGERPRINT"]
    assert torch.equal(torch.get_rng_state(), state)
    assert registry.backbone_modality("tinycnn") == "image"
    # the config's preprocessing is what the preprocessor does
    assert (bb.preprocessor.crop_pct, bb.preprocessor.interpolation) == (
        bb.config.crop_pct, bb.config.interpolation) == (1.0, "bilinear")
    # pretrained=True (the default) without weights says how to get a random init
    with pytest.raises(WeightsUnavailableError, match=r"backbone_kwargs=\{'pretrained': False\}"):
        create_backbone("tinycnn")
    torch.save(bb.state_dict(), tmp_path / "w.pth")
    again = create_backbone("tinycnn", weights=tmp_path / "w.pth", seed=7)
    assert again.config.weights.startswith("file:")
    for k, v in bb.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    import argparse

    torch.save({"x": argparse.Namespace()}, tmp_path / "unsafe.pth")
    with pytest.raises(WeightsUnavailableError, match="unsafe.pth"):
        create_backbone("tinycnn", weights=tmp_path / "unsafe.pth")
