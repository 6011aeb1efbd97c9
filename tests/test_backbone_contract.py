"""The backbone contract (DESIGN.md), checked on every built-in backbone and the plugin.

Each case builds the smallest configuration of a registered name. Names that are not
registered in this checkout (an adapter not written yet, the plugin not installed) are
skipped with the reason; a registered name that fails to build fails the test.
"""

import pickle

import numpy as np
import pytest
import torch

from tlestimators.backbones import MODALITIES, Backbone, check_layer_groups, list_backbones
from tlestimators.backbones.registry import create_backbone

TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "layers": 2, "width": 64,
                 "heads": 4},
}

# (id, name, kwargs); every registered name of this checkout's built-ins should appear.
CASES = [
    ("efficientnet_lite0", "efficientnet_lite0", {"img_size": 32}),
    ("timm-resnet", "timm/test_resnet", {"pretrained": False, "img_size": 32}),
    ("timm-vit", "timm/test_vit", {"pretrained": False, "img_size": 32}),
    ("mlp", "mlp", {"in_features": 6, "hidden_sizes": (8, 5)}),
    ("minilm", "minilm", {"max_seq_length": 32}),
    ("open_clip-tiny", "open_clip/tiny", {"pretrained": False, "model_cfg": TINY_CLIP}),
    ("torchvision-plugin", "torchvision/resnet18", {"pretrained": False, "img_size": 32}),
]


def _registered(name):
    names = list_backbones()
    return name in names or ("/" in name and name.split("/", 1)[0] + "/" in names)


def _raw_items(modality, n=3, in_features=6):
    rng = np.random.default_rng(0)
    if modality in ("image", "image-text"):
        return rng.integers(0, 256, size=(n, 37, 45, 3), dtype=np.uint8)
    if modality == "text":
        return ["a short sentence", "another, slightly longer sentence about cats", "dogs"][:n]
    return rng.normal(size=(n, in_features)).astype(np.float32)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def built(request):
    _, name, kwargs = request.param
    if not _registered(name):
        pytest.skip(f"backbone {name!r} is not registered in this checkout")
    torch.manual_seed(0)
    bb = create_backbone(name, **kwargs)
    items = bb.check_input(_raw_items(bb.config.modality, in_features=kwargs.get("in_features", 6)))
    return bb, items


def test_is_a_backbone_with_a_valid_config(built):
    bb, _ = built
    assert isinstance(bb, Backbone) and isinstance(bb, torch.nn.Module)
    c = bb.config
    assert c.modality in MODALITIES and c.num_features > 0
    assert bb.num_features == c.num_features and bb.modality == c.modality
    if c.modality in ("image", "image-text"):
        assert len(c.input_size) == 3 and len(c.mean) == len(c.std) == 3
    assert isinstance(c.weights, str) and c.weights
    assert c.to_dict()["name"] == c.name


def test_forward_shape_dtype_determinism_and_batch_independence(built):
    bb, items = built
    bb.eval()
    with torch.inference_mode():
        a = bb(bb.preprocess(items, train=False))
        b = bb(bb.preprocess(items, train=False))
        single = bb(bb.preprocess(items[:1], train=False))
    assert a.shape == (len(items), bb.num_features)
    assert a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # eval mode: no dropout, no batch statistics
    torch.testing.assert_close(single[0], a[0], rtol=1e-4, atol=1e-4)


def test_train_preprocessing_keeps_the_batch_shape(built):
    bb, items = built
    ev, tr = bb.preprocess(items, train=False), bb.preprocess(items, train=True)
    if isinstance(ev, torch.Tensor):
        assert tr.shape == ev.shape and tr.dtype == ev.dtype
    else:  # text: dict of tensors
        assert set(tr) == set(ev)


def test_layer_groups_cover_every_parameter_exactly_once(built):
    bb, _ = built
    groups = bb.layer_groups()
    assert isinstance(groups, list) and groups and all(len(g) for g in groups)
    check_layer_groups(bb, groups)


def test_gradients_flow_from_the_embedding_to_the_input_side(built):
    bb, items = built
    bb.train()
    bb.zero_grad(set_to_none=True)
    try:
        out = bb(bb.preprocess(items, train=True))
        out.float().pow(2).mean().backward()
        groups = bb.layer_groups()
        if bb.config.modality == "image-text":  # forward is the image tower only
            with_grad = [p for g in groups for p in g if p.grad is not None]
            assert with_grad and any(p.grad.abs().sum() > 0 for p in with_grad)
        else:
            first = [p for p in groups[0] if p.grad is not None]
            assert first and any(p.grad.abs().sum() > 0 for p in first)
    finally:
        bb.zero_grad(set_to_none=True)
        bb.eval()


def test_fingerprint_is_stable_and_tracks_the_weights(built):
    bb, _ = built
    fp = bb.fingerprint()
    assert fp == bb.fingerprint()
    p = bb.layer_groups()[-1][0]
    with torch.no_grad():
        p.add_(1.0)
    try:
        assert bb.fingerprint() != fp
    finally:
        with torch.no_grad():
            p.sub_(1.0)


def test_pickles_with_identical_outputs(built):
    bb, items = built
    bb.eval()
    clone = pickle.loads(pickle.dumps(bb))
    with torch.inference_mode():
        torch.testing.assert_close(clone(clone.preprocess(items)), bb(bb.preprocess(items)))


def test_image_text_backbones_expose_both_towers(built):
    bb, _ = built
    if bb.config.modality != "image-text":
        pytest.skip("only for image-text backbones")
    with torch.inference_mode():
        t = bb.encode_text(bb.tokenize(["a photo of a cat", "a dog"]))
    assert t.shape == (2, bb.num_features)
    assert not torch.allclose(t[0], t[1])  # the text tower reads the prompt
    # A random-init CLIP starts at the paper's temperature: logit_scale = log(1/0.07)
    # (Radford et al. 2021), and it is one of the backbone's trainable parameters.
    assert bb.config.weights == "random"
    np.testing.assert_allclose(float(bb.logit_scale.detach().exp()), 1 / 0.07, rtol=1e-5)
    assert any(p is bb.logit_scale for p in bb.parameters())


def test_every_registered_builtin_has_a_contract_case():
    covered = {c[1].split("/", 1)[0] + "/" if "/" in c[1] else c[1] for c in CASES}
    from tlestimators.backbones.registry import _BUILTINS

    missing = sorted(set(_BUILTINS) - covered - {"sentence-transformers/"})
    assert not missing, f"add a contract case for {missing}"
