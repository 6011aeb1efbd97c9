import numpy as np
import pytest
import torch

from tlestimators import create_backbone
from tlestimators.features import compute_embeddings, feature_cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    feature_cache().clear()
    feature_cache().set_max_bytes(1 << 30)
    yield
    feature_cache().clear()
    feature_cache().set_max_bytes(1 << 30)


def _mlp(**kw):
    return create_backbone("mlp", in_features=10, hidden_sizes=(16,), **kw)


def test_compute_embeddings_matches_plain_forward(rng):
    bb = _mlp()
    X = rng.normal(size=(70, 10)).astype(np.float32)
    emb = compute_embeddings(bb, X, batch_size=16, cache=False)
    with torch.no_grad():
        ref = bb(torch.from_numpy(X)).numpy()
    assert emb.shape == (70, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)


def test_cache_computes_only_missing_items(rng, monkeypatch):
    bb = _mlp()
    X = rng.normal(size=(40, 10)).astype(np.float32)
    calls = []
    orig = type(bb).forward

    def counting_forward(self, batch):
        calls.append(len(batch))
        return orig(self, batch)

    monkeypatch.setattr(type(bb), "forward", counting_forward)
    first = compute_embeddings(bb, X[:30])
    assert sum(calls) == 30
    calls.clear()
    both = compute_embeddings(bb, X)  # 30 cached + 10 new
    assert sum(calls) == 10
    np.testing.assert_array_equal(both[:30], first)
    calls.clear()
    again = compute_embeddings(bb, X[::-1])
    assert calls == []
    np.testing.assert_array_equal(again, both[::-1])
    assert feature_cache().hits == 30 + 40 and feature_cache().misses == 40
