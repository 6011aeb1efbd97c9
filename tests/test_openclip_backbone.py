"""The open_clip image-text backbone, on a tiny CLIP built offline."""

import copy
import pickle

import numpy as np
import pytest
import torch
from _tiny_backbones import TINY_CFG

from tlestimators import create_backbone
from tlestimators.backbones import check_layer_groups, list_backbones
from tlestimators.exceptions import BackboneNotFoundError, WeightsUnavailableError

open_clip = pytest.importorskip("open_clip")



@pytest.fixture(scope="module")
def tiny():
    return create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


def _embed(bb, images):
    bb.eval()
    with torch.no_grad():
        return bb(bb.preprocess(bb.check_input(images)))


def test_registered_family_and_config_from_open_clip_preprocess(tiny):
    assert "open_clip/" in list_backbones()
    c = tiny.config
    assert (c.name, c.modality, c.num_features) == ("open_clip/tiny", "image-text", 64)
    assert c.input_size == (3, 32, 32)
    pp = open_clip.get_model_preprocess_cfg(tiny.model)
    assert c.mean == tuple(pp["mean"]) == open_clip.OPENAI_DATASET_MEAN
    assert c.std == tuple(pp["std"])
    assert c.interpolation == pp["interpolation"] == "bicubic"
    assert c.crop_pct == 1.0 and c.weights == "random"


def test_preprocess_matches_open_clip_transform(tiny, images):
    from PIL import Image

    ref_tf = open_clip.image_transform(32, is_train=False, mean=tiny.config.mean,
                                       std=tiny.config.std)
    ref = torch.stack([ref_tf(Image.fromarray(im)) for im in images])
    torch.testing.assert_close(tiny.preprocess(tiny.check_input(images)), ref, atol=1e-5,
                               rtol=0)


def test_forward_is_image_tower_and_text_tower_works(tiny, images):
    batch = tiny.preprocess(tiny.check_input(images))
    with torch.no_grad():
        z = tiny(batch)
        torch.testing.assert_close(z, tiny.model.encode_image(batch))
        torch.testing.assert_close(tiny.encode_image(batch, normalize=True),
                                   torch.nn.functional.normalize(z, dim=-1))
        tokens = tiny.tokenize(["a photo of a dog", "a cat"])
        assert tokens.shape == (2, 16) and tokens.dtype == torch.long
        torch.testing.assert_close(tokens, open_clip.SimpleTokenizer(context_length=16)(
            ["a photo of a dog", "a cat"]))
        t = tiny.encode_text(tokens)
    assert z.shape == (6, 64) and t.shape == (2, 64)
    assert float(tiny.logit_scale.detach().exp()) == pytest.approx(1 / 0.07, rel=1e-4)
    with pytest.raises(TypeError, match="single str"):
        tiny.tokenize("one string")


def test_check_input_takes_images_not_text(tiny):
    with pytest.raises(TypeError, match="expects images"):
        tiny.check_input(["a photo of a dog", "a cat"])


def test_layer_groups_cover_everything_image_path_last(tiny):
    groups = tiny.layer_groups()
    check_layer_groups(tiny, groups)
    names = {id(p): n for n, p in tiny.named_parameters()}
    first, last = [names[id(p)] for p in groups[0]], [names[id(p)] for p in groups[-1]]
    assert "model.logit_scale" in first and "model.token_embedding.weight" in first
    assert all(not n.startswith("model.visual.") for n in first)
    assert "model.visual.conv1.weight" in [names[id(p)] for p in groups[1]]
    assert all("resblocks.0." in names[id(p)] for p in groups[2])
    assert all("resblocks.1." in names[id(p)] for p in groups[3])
    assert set(last) == {"model.visual.proj", "model.visual.ln_post.weight",
                         "model.visual.ln_post.bias"}


def test_gradients_reach_the_image_tower(tiny, images):
    bb = copy.deepcopy(tiny).train()
    bb(bb.preprocess(bb.check_input(images), train=True)).pow(2).sum().backward()
    assert bb.model.visual.conv1.weight.grad.abs().sum() > 0
    assert bb.model.token_embedding.weight.grad is None  # text tower unused by forward


def test_saved_state_dict_reloads_identically_through_the_registry(tiny, images, tmp_path):
    ref = _embed(tiny, images)
    # open_clip's own layout (what create_model/save produce), .pt and .safetensors
    torch.save(tiny.model.state_dict(), tmp_path / "tiny.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()},
              str(tmp_path / "tiny.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in tiny.model.state_dict().items()}},
               tmp_path / "wrapped.pt")
    torch.save(tiny.state_dict(), tmp_path / "backbone.pt")  # a saved backbone
    for f in ("tiny.pt", "tiny.safetensors", "wrapped.pt", "backbone.pt"):
        # seed=1 would give other random weights: equality proves the file was loaded
        bb = create_backbone("open_clip/tiny", weights=str(tmp_path / f), model_cfg=TINY_CFG,
                             seed=1)
        torch.testing.assert_close(_embed(bb, images), ref, atol=0, rtol=0)
        assert bb.config.weights == f"file:{tmp_path / f}"
    bb = create_backbone("open_clip/tiny", pretrained=str(tmp_path / "tiny.pt"),
                         model_cfg=TINY_CFG, seed=1)
    torch.testing.assert_close(_embed(bb, images), ref, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode_text(bb.tokenize(["x y"])),
                                   tiny.encode_text(tiny.tokenize(["x y"])))


def test_pickle_and_deepcopy(tiny, images):
    ref = _embed(tiny, images)
    tiny.tokenize(["build the tokenizer"])
    blob = pickle.dumps(tiny)
    assert len(blob) < 20_000_000  # weights only: the 2 MB tokenizer is rebuilt lazily
    for clone in (pickle.loads(blob), copy.deepcopy(tiny)):
        torch.testing.assert_close(_embed(clone, images), ref)
        assert clone.fingerprint() == tiny.fingerprint()
        torch.testing.assert_close(clone.tokenize(["a cat"]), tiny.tokenize(["a cat"]))


def test_random_init_is_seeded():
    a = create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG)
    b = create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG)
    c = create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG, seed=3)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_options_change_the_config():
    bb = create_backbone("open_clip/tiny", pretrained=False, model_cfg=TINY_CFG, img_size=48,
                         context_length=8, normalize=True)
    assert bb.config.input_size == (3, 48, 48)
    assert bb.tokenize(["a b c"]).shape == (1, 8)
    z = _embed(bb, np.zeros((2, 48, 48, 3), dtype=np.uint8))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


def test_offline_pretrained_errors_say_how_to_pass_a_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"weights='/path/to/.*pretrained=False"):
        create_backbone("open_clip/ViT-B-32", cache_dir=str(tmp_path))
    with pytest.raises(WeightsUnavailableError,
                       match=r"not in the local cache.*HF_HUB_OFFLINE is set.*weights="):
        create_backbone("open_clip/ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="not an open_clip pretrained tag"):
        create_backbone("open_clip/ViT-B-32", pretrained="no_such_tag")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_backbone("open_clip/tiny", weights=str(tmp_path / "missing.pt"),
                        model_cfg=TINY_CFG)
    with pytest.raises(WeightsUnavailableError, match="no CLIP weights"):
        create_backbone("open_clip/tiny", model_cfg=TINY_CFG)
    with pytest.raises(BackboneNotFoundError, match="open_clip/ViT-B-32"):
        create_backbone("open_clip/ViT-B-33", pretrained=False)
    with pytest.raises(ValueError, match="model_cfg is missing"):
        create_backbone("open_clip/tiny", pretrained=False, model_cfg={"embed_dim": 8})


def test_wrong_architecture_checkpoint_is_a_clear_error(tiny, tmp_path):
    torch.save(tiny.model.state_dict(), tmp_path / "tiny.pt")
    other = dict(TINY_CFG, embed_dim=32)
    with pytest.raises(WeightsUnavailableError, match="could not be loaded into this arch"):
        create_backbone("open_clip/other", weights=str(tmp_path / "tiny.pt"), model_cfg=other)


def test_cached_tag_is_found_without_network(tiny, tmp_path):
    """A tag's file in the Hugging Face cache layout is found by ``pretrained=True``."""
    from tlestimators.backbones._openclip import cached_pretrained_tags

    assert cached_pretrained_tags("ViT-B-32", cache_dir=str(tmp_path)) == {}
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    torch.save(tiny.model.state_dict(), snap / "open_clip_pytorch_model.bin")
    found = cached_pretrained_tags("ViT-B-32", cache_dir=str(tmp_path))
    assert list(found) == ["openai"]
    # the file is picked up (and, being a tiny model, rejected by ViT-B-32 with a clear error)
    with pytest.raises(WeightsUnavailableError, match="open_clip_pytorch_model.bin"):
        create_backbone("open_clip/ViT-B-32", cache_dir=str(tmp_path))
