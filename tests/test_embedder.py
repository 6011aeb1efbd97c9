"""BackboneEmbedder in its own module (estimators/embedder.py), on the shared core."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from tlestimators import BackboneEmbedder


def test_public_name_lives_in_the_estimators_package():
    from tlestimators.estimators.embedder import BackboneEmbedder as E

    assert E is BackboneEmbedder
    import tlestimators.features as features

    assert not hasattr(features, "BackboneEmbedder")  # features no longer imports estimators


def test_mlp_embeds_as_the_identity_unless_asked(rng):
    X = rng.normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_array_equal(BackboneEmbedder("mlp", device="cpu").fit_transform(X), X)
    Z = BackboneEmbedder("mlp", backbone_kwargs={"hidden_sizes": (3,)},
                         device="cpu").fit_transform(X)
    assert Z.shape == (6, 3)


def test_declared_parameters_name_the_culprit(rng):
    X = rng.normal(size=(6, 5))
    for params, name in [({"normalize": "yes"}, "normalize"), ({"device": 3}, "device"),
                         ({"backbone": 3}, "backbone"), ({"backbone_kwargs": [1]},
                                                         "backbone_kwargs")]:
        with pytest.raises((ValueError, TypeError), match=f"The '{name}' parameter of Backbone"):
            BackboneEmbedder(**{"backbone": "mlp", "device": "cpu", **params}).fit(X)


def test_random_state_free_and_pickles(rng):
    X = rng.normal(size=(6, 5)).astype(np.float32)
    emb = BackboneEmbedder("mlp", normalize=True, device="cpu").fit(X)
    Z = emb.transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(emb)).transform(X), Z)
    assert clone(emb).get_params() == emb.get_params()
