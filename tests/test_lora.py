"""LoRA through peft: per-family targets, adapters-only training, exact merge, pickling by
reference (issue 11 item 3)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback

pytest.importorskip("peft")

from tlestimators import FineTuneClassifier  # noqa: E402
from tlestimators.backbones.lora import (  # noqa: E402
    apply_lora,
    has_lora,
    lora_state_dict,
    lora_targets,
    merge_lora,
    trainable_fraction,
)
from tlestimators.backbones.registry import create_backbone  # noqa: E402


def _images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    y = np.array(["ant", "bee"] * (n // 2))
    X[y == "bee", :, :16] = 255  # learnable
    return X, y


def _perturb_adapters(backbone, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in backbone.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def test_targets_per_family_and_overrides():
    eff = create_backbone("efficientnet_lite0", pretrained=False, img_size=32)
    t = lora_targets(eff)
    assert t["family"] == "timm-convnet"
    assert t["target_modules"] and all(n.endswith(("conv_pw", "conv_pwl"))
                                       for n in t["target_modules"])
    vit = create_backbone("timm/vit_tiny_patch16_224", pretrained=False, img_size=32,
                          patch_size=8, depth=2)
    assert lora_targets(vit)["family"] == "timm-vit"
    assert lora_targets(vit)["target_modules"] == r".*\.attn\.(qkv|proj)"
    t = lora_targets(eff, {"r": 2, "target_modules": ["blocks.6.0.conv_pwl"]})
    assert t["r"] == 2 and t["target_modules"] == ["blocks.6.0.conv_pwl"]
    with pytest.raises(ValueError, match=r"lora_kwargs\['r'\]"):
        lora_targets(eff, {"r": 0})
    with pytest.raises(TypeError, match="lora_kwargs"):
        lora_targets(eff, [("r", 2)])


def test_text_backbone_is_bert_family():
    bb = create_backbone("minilm")
    t = lora_targets(bb)
    assert t["family"] == "bert"
    assert {"query", "key", "value"} <= set(t["target_modules"])


@pytest.mark.parametrize("name,kwargs", [
    ("efficientnet_lite0", {"pretrained": False, "img_size": 32}),
    ("timm/vit_tiny_patch16_224", {"pretrained": False, "img_size": 32, "patch_size": 8,
                                   "depth": 2}),
])
def test_apply_freezes_base_and_merge_is_exact(name, kwargs):
    torch.manual_seed(0)
    bb = create_backbone(name, **kwargs).eval()
    names_before = [n for n, _ in bb.named_parameters()]
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        plain = bb(x)
    apply_lora(bb)
    assert has_lora(bb)
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert 0 < trainable_fraction(bb) < 0.1
    bb.eval()
    with torch.no_grad():  # B starts at zero: the adapted backbone is the plain one
        torch.testing.assert_close(bb(x), plain, rtol=0, atol=1e-6)
    _perturb_adapters(bb)
    with torch.no_grad():
        adapted = bb(x)
    assert (adapted - plain).abs().max() > 1e-3  # the adapters act
    merge_lora(bb)
    assert not has_lora(bb)
    assert [n for n, _ in bb.named_parameters()] == names_before  # plain architecture again
    with torch.no_grad():
        assert (bb(x) - adapted).abs().max() <= 1e-5


class _GradSpy(Callback):
    def initialize(self):
        self.with_grad_ = set()
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.with_grad_ |= {n for n, p in named_parameters if p.grad is not None}


@pytest.fixture(scope="module")
def fitted():
    X, y = _images()
    spy = _GradSpy()
    clf = FineTuneClassifier("efficientnet_lite0", backbone_kwargs={"img_size": 32},
                             unfreeze="lora", max_epochs=2, batch_size=8, lr=1e-2,
                             callbacks=[("spy", spy)], device="cpu", random_state=0)
    return clf.fit(X, y), X, spy


def test_lora_trains_only_adapters_and_head(fitted):
    clf, X, spy = fitted
    assert spy.with_grad_
    assert all(n.startswith("head.") or "lora_" in n for n in spy.with_grad_)
    assert any("lora_" in n for n in spy.with_grad_)
    # after fit: plain (merged) weights; every non-target tensor (BN statistics
    # included) is bit-identical to the package's, the targets moved by exactly B A
    base = create_backbone("efficientnet_lite0", img_size=32)
    fitted_sd = clf.net_.module_.backbone.state_dict()
    base_sd = base.state_dict()
    assert set(fitted_sd) == set(base_sd)
    targets = set(clf.lora_["settings"]["target_modules"])
    changed = {k for k in base_sd if not torch.equal(fitted_sd[k], base_sd[k])}
    assert changed and all(k[len("model."):].rsplit(".", 1)[0] in targets for k in changed)
    ad = clf.lora_["adapters"]
    scale = clf.lora_["settings"]["lora_alpha"] / clf.lora_["settings"]["r"]
    key = sorted(changed)[0]
    stem = key[: -len(".weight")]
    A, B = ad[f"{stem}.lora_A.default.weight"], ad[f"{stem}.lora_B.default.weight"]
    delta = (B.flatten(1) @ A.flatten(1)).view_as(base_sd[key]) * scale
    torch.testing.assert_close(fitted_sd[key], base_sd[key] + delta, rtol=0, atol=1e-6)
    assert not has_lora(clf.net_.module_.backbone)


def test_lora_pickles_adapters_only_and_clones(fitted):
    clf, X, _ = fitted
    proba = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    full = sum(t.numel() * t.element_size()
               for t in clf.net_.module_.backbone.state_dict().values())
    assert len(blob) < 0.1 * full
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    c = clone(clf)
    assert c.get_params()["unfreeze"] == "lora" and not hasattr(c, "lora_")
    # a second pickle of the unpickled estimator is as small
    assert len(pickle.dumps(again)) < 0.1 * full
    # base weights changed since: the same error (and type) as tlestimators.load gives
    from tlestimators.exceptions import FingerprintMismatchError

    state = pickle.loads(blob).__getstate__()
    state["lora_"] = dict(state["lora_"], base_fingerprint="0" * 64)
    with pytest.raises(FingerprintMismatchError, match=r"only LoRA adapters .* over the "
                                                       r"backbone 'efficientnet_lite0'"):
        type(clf).__new__(type(clf)).__setstate__(state)


def test_lora_refused_words_and_bad_kwargs():
    X, y = _images(8)
    with pytest.raises(ValueError, match="unfreeze"):
        FineTuneClassifier("mlp", unfreeze="lorax").fit(X.reshape(8, -1)[:, :5] / 255, y)
    clf = FineTuneClassifier("mlp", unfreeze="lora", lora_kwargs={"r": -1}, max_epochs=1,
                             device="cpu")
    with pytest.raises(ValueError, match="lora_kwargs"):
        clf.fit(X.reshape(8, -1)[:, :5] / 255, y)


def test_lora_on_feature_backbone_full_pickle():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = FineTuneClassifier("mlp", backbone_kwargs={"hidden_sizes": (16,)}, unfreeze="lora",
                             max_epochs=5, lr=1e-2, device="cpu", random_state=0).fit(X, y)
    assert clf.lora_["settings"]["family"] == "generic"
    assert not clf.lora_["by_reference"]  # random weights: the full backbone is pickled
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert lora_state_dict(clf.net_.module_.backbone) == {}


def test_lora_fitted_estimator_exports_plain_weights(tmp_path):
    pytest.importorskip("onnxruntime")
    from _tiny_backbones import TinyConvBackbone, make_image_blobs

    from tlestimators.export import OnnxClassifier, export_onnx

    X, y = make_image_blobs(12, 16)
    est = FineTuneClassifier(TinyConvBackbone(), unfreeze="lora",
                             lora_kwargs={"r": 2},  # generic family: the Linear proj
                             max_epochs=2, random_state=0, device="cpu")
    est.fit(X, y)
    assert not has_lora(est.net_.module_.backbone)
    runner = OnnxClassifier(export_onnx(est, tmp_path / "onnx"))
    assert np.abs(runner.predict_proba(X) - est.predict_proba(X)).max() < 1e-4


def test_open_clip_image_tower_attention_merges_exactly():
    pytest.importorskip("open_clip")
    from test_openclip_backbone import TINY_CFG

    bb = create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG).eval()
    x = torch.rand(2, 3, 32, 32)
    settings = apply_lora(bb)
    assert settings["family"] == "open_clip"
    assert settings["target_modules"] and all(
        n.startswith("visual.") and n.endswith(".attn") for n in settings["target_modules"])
    _perturb_adapters(bb)
    bb.eval()
    with torch.no_grad():
        adapted = bb(x)
    merge_lora(bb)
    assert not has_lora(bb)
    assert isinstance(bb.model.visual.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)
    with torch.no_grad():
        assert (bb(x) - adapted).abs().max() <= 1e-5


def test_lora_on_sentence_encoder_pickles_by_reference():
    X = ["great film", "loved it", "wonderful acting", "awful plot", "boring and bad",
         "terrible movie"] * 2
    y = [1, 1, 1, 0, 0, 0] * 2
    clf = FineTuneClassifier("minilm", unfreeze="lora", max_epochs=2, batch_size=6,
                             device="cpu", random_state=0).fit(X, y)
    assert clf.lora_["settings"]["family"] == "bert" and clf.lora_["by_reference"]
    assert clf.score(X, y) == 1.0
    full = sum(t.numel() * t.element_size()
               for t in clf.net_.module_.backbone.state_dict().values())
    blob = pickle.dumps(clf)
    assert len(blob) < 0.05 * full
    np.testing.assert_array_equal(pickle.loads(blob).predict_proba(X), clf.predict_proba(X))
