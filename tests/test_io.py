"""save/load without pickle: round trips, by-reference backbones, and refusing bad directories."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
from _tiny_backbones import TinyConvBackbone, make_image_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tlestimators as tle
from tlestimators.io import FingerprintMismatchError, UntrustedTypeError, load, save

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture
def feats():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 6).astype(np.float32)
    y = np.where(X[:, 0] + 0.3 * X[:, 1] > 0, "pos", "neg")
    return X, y


def _roundtrip(est, X, tmp_path, **kw):
    p = save(est, tmp_path / "model", **kw)
    names = set(os.listdir(p))
    assert {"config.json", "tensors.safetensors", "arrays.safetensors", "README.md"} <= names
    # nothing pickled anywhere in the directory
    for root, _, files in os.walk(p):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                assert not fh.read(2).startswith(b"\x80"), f"{f} looks like a pickle"
    loaded = load(p, **({"trusted": kw.pop("trusted")} if "trusted" in kw else {}))
    assert type(loaded) is type(est)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert np.abs(loaded.predict_proba(X) - est.predict_proba(X)).max() == 0.0
    return loaded, p


@pytest.mark.parametrize(
    "make",
    [
        lambda: tle.FrozenFeatureClassifier("mlp", max_epochs=3, random_state=0),
        lambda: tle.FrozenFeatureClassifier("mlp", head="mlp", max_epochs=3, random_state=0),
        lambda: tle.FineTuneClassifier("mlp", max_epochs=2, random_state=0),
    ],
    ids=["frozen", "frozen-mlp-head", "finetune"],
)
def test_roundtrip_feature_estimators(make, feats, tmp_path):
    X, y = feats
    est = make().fit(X, y)
    loaded, _ = _roundtrip(est, X, tmp_path)
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.get_params() == est.get_params()


def test_roundtrip_dann(feats, tmp_path):
    X, y = feats
    y_da = np.r_[(X[:40, 0] > 0).astype(int), -np.ones(20, int)]
    est = tle.DANNAdapter("mlp", max_epochs=2, random_state=0).fit(X, y_da)
    _roundtrip(est, X, tmp_path)


def test_roundtrip_pipeline_with_sklearn_parts(feats, tmp_path):
    X, y = feats
    pipe = make_pipeline(StandardScaler(), tle.FrozenFeatureClassifier("mlp", max_epochs=2,
                                                                         random_state=0))
    pipe.fit(X, y)
    _, p = _roundtrip(pipe, X, tmp_path)
    # the StandardScaler went through skops' secure format
    assert any(f.endswith(".skops") for f in os.listdir(p / "sklearn"))
    pipe2 = make_pipeline(tle.BackboneEmbedder("mlp"), LogisticRegression()).fit(X, y)
    _roundtrip(pipe2, X, tmp_path / "second")


def test_rehearsal_saved_mid_stream_resumes_exactly(tmp_path):
    rng = np.random.RandomState(1)
    X = rng.randn(120, 5).astype(np.float32)
    y = np.repeat([0, 1, 2, 3], 30)
    X += y[:, None] * 0.8
    kw = dict(memory_size=16, random_state=0)
    a = tle.RehearsalLearner("mlp", **kw)
    a.partial_fit(X[:60], y[:60])
    save(a, tmp_path / "mid")
    b = load(tmp_path / "mid")
    assert np.abs(a.predict_proba(X) - b.predict_proba(X)).max() == 0.0
    a.partial_fit(X[60:], y[60:])
    b.partial_fit(X[60:], y[60:])
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert np.abs(a.predict_proba(X) - b.predict_proba(X)).max() == 0.0


def test_zero_shot_text_roundtrip(tmp_path):
    texts = ["the cat sat on the mat", "stocks fell sharply", "dogs bark at night",
             "the market rallied"]
    est = tle.ZeroShotTextClassifier("minilm").fit(None, ["animals", "finance"])
    _roundtrip(est, texts, tmp_path)


TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4,
                 "layers": 1},
}


def test_zero_shot_clip_roundtrip(tmp_path):
    X, _ = make_image_blobs(4, 32)
    est = tle.ZeroShotCLIPClassifier("open_clip/tiny", pretrained=False,
                                     backbone_kwargs={"model_cfg": TINY_CLIP}, device="cpu")
    est.fit(None, ["red", "green"])
    _, p = _roundtrip(est, X, tmp_path)
    # built from the registry: written as name + kwargs + state dict, no open_clip objects
    assert "open_clip.model" not in (p / "config.json").read_text()


def test_user_backbone_instance_needs_trust(tmp_path):
    X, y = make_image_blobs(10, 16)
    est = tle.FrozenFeatureClassifier(TinyConvBackbone(), max_epochs=2, random_state=0)
    est.fit(X, y)
    p = save(est, tmp_path / "m")
    name = f"{TinyConvBackbone.__module__}.TinyConvBackbone"
    with pytest.raises(UntrustedTypeError, match="trusted="):
        load(p)
    loaded = load(p, trusted=[name])
    assert np.abs(loaded.predict_proba(X) - est.predict_proba(X)).max() == 0.0


def test_package_backbone_stored_by_reference(tmp_path):
    X, y = make_image_blobs(8, 32)
    est = tle.FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs={"img_size": 32},
                                      max_epochs=2, random_state=0).fit(X, y)
    p = save(est, tmp_path / "ref")
    full = save(est, tmp_path / "full", include_backbone=True)

    def size(d):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)

    assert size(p) < 200_000 < 10 * 1e6 < size(full)  # ~17 MB of weights copied only in "full"
    cfg = json.loads((p / "config.json").read_text())
    refs = [o["$backbone_ref"] for o in cfg["objects"] if o and "$backbone_ref" in o]
    assert refs and refs[0]["name"] == "efficientnet_lite0"
    for d in (p, full):
        loaded = load(d)
        assert np.abs(loaded.predict_proba(X) - est.predict_proba(X)).max() == 0.0

    # another package version (other weights) under the same name: refused
    for o in cfg["objects"]:
        if o and "$backbone_ref" in o:
            o["$backbone_ref"]["fingerprint"] = "0" * 64
    (p / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FingerprintMismatchError, match="include_backbone=True"):
        load(p)


class _Boom:
    """Pickling this writes a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_renamed_to_safetensors_is_refused(feats, tmp_path):
    X, y = feats
    p = save(tle.FrozenFeatureClassifier("mlp", max_epochs=1).fit(X, y), tmp_path / "m")
    marker = tmp_path / "executed"
    (p / "tensors.safetensors").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ValueError, match="safetensors"):
        load(p)
    assert not marker.exists()


@pytest.mark.parametrize("bad", ["os.system", "subprocess.Popen", "builtins.eval",
                                 f"{__name__}._Boom"])
def test_config_naming_arbitrary_class_is_refused(bad, feats, tmp_path):
    X, y = feats
    p = save(tle.FrozenFeatureClassifier("mlp", max_epochs=1).fit(X, y), tmp_path / "m")
    cfg = json.loads((p / "config.json").read_text())
    cfg["objects"].append({"$object": bad, "state": {"$ref": 0}})
    cfg["root"] = {"$ref": len(cfg["objects"]) - 1}
    (p / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UntrustedTypeError, match="does not trust"):
        load(p)
    # also as a function reference hidden in a parameter
    cfg["objects"][-1] = {"$list": [{"$function": bad}]}
    (p / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UntrustedTypeError, match="does not trust"):
        load(p)


def test_skops_part_with_untrusted_type_is_refused(feats, tmp_path):
    import skops.io as sio

    X, y = feats
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    p = save(pipe, tmp_path / "m")
    part = next((p / "sklearn").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sio.dump({"x": _Boom(str(tmp_path / "marker"))}, part)
    with pytest.raises(UntrustedTypeError):
        load(p)
    assert not (tmp_path / "marker").exists()


def test_save_errors(feats, tmp_path):
    X, y = feats
    est = tle.FrozenFeatureClassifier("mlp", max_epochs=1).fit(X, y)
    save(est, tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(est, tmp_path / "m")
    save(est, tmp_path / "m", overwrite=True)
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved tlestimators model"):
        save(est, tmp_path / "not_a_model", overwrite=True)
    (tmp_path / "empty").mkdir()  # an empty folder made for the model is used as is
    assert (save(est, tmp_path / "empty") / "config.json").is_file()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load(tmp_path / "not_a_model")


def test_model_card_content(feats, tmp_path):
    X, y = feats
    est = tle.FrozenFeatureClassifier("mlp", max_epochs=1).fit(X, y)
    p = save(est, tmp_path / "m", scores={"accuracy (held-out)": 0.91},
             data_summary={"training samples": 60, "class balance": "30/30"})
    card = (p / "README.md").read_text()
    assert card.startswith("---") and "library_name: tlestimators" in card
    for needle in ("FrozenFeatureClassifier", "neg, pos", "accuracy (held-out)", "0.9100",
                   "training samples", "Intended use", "torch", "| max_epochs |"):
        assert needle in card, needle
    assert "- Strategy: frozen probe" in card


@pytest.mark.parametrize("make, strategy", [
    (lambda: tle.FrozenFeatureClassifier("mlp", head="mlp", max_epochs=1), "frozen + mlp head"),
    (lambda: tle.CDANAdapter("mlp", max_epochs=1), "CDAN (lambda_max=0.3)"),
    (lambda: tle.DANNAdapter("mlp", lambda_max=0.0, max_epochs=1),
     "DANN net, no adaptation (lambda_max=0)"),
])
def test_model_card_names_the_strategy_as_the_search_report_does(feats, tmp_path, make, strategy):
    """One vocabulary (estimators._base.strategy_of) for the card and the search's
    report: the card no longer calls an MLP head a linear probe."""
    from tlestimators.estimators._base import strategy_of

    X, y = feats
    est = make()
    y_fit = y.astype(object)
    if "lambda" in strategy:  # the DA estimators: the last 20 rows are unlabeled target
        y_fit[40:] = -1
    est.fit(X, y_fit)
    assert strategy_of(est) == strategy
    card = (save(est, tmp_path / "m") / "README.md").read_text()
    assert f"- Strategy: {strategy}" in card


def test_lora_finetune_saved_as_adapters_over_package_reference(tmp_path):
    """A LoRA fine-tune over package weights: only the adapters (+ head) are written,
    load rebuilds base + adapters and predicts exactly; other base weights are refused."""
    pytest.importorskip("peft")
    X, y = make_image_blobs(8, 32)
    est = tle.FineTuneClassifier("efficientnet_lite0", backbone_kwargs={"img_size": 32},
                                 unfreeze="lora", max_epochs=1, batch_size=8, lr=1e-2,
                                 device="cpu", random_state=0).fit(X, y)
    p = save(est, tmp_path / "lora")
    full = save(est, tmp_path / "full", include_backbone=True)

    def size(d):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)

    n_weights = sum(t.numel() * t.element_size()
                    for t in est.net_.module_.backbone.state_dict().values())
    n_adapters = sum(t.numel() * t.element_size() for t in est.lora_["adapters"].values())
    # adapters + head + config, not the 13 MB of merged weights (the pickle holds the same)
    assert size(p) < n_adapters + 300_000 < 0.1 * n_weights < size(full)
    cfg = json.loads((p / "config.json").read_text())
    nodes = [o["$backbone_lora"] for o in cfg["objects"] if o and "$backbone_lora" in o]
    assert len(nodes) == 1 and nodes[0]["name"] == "efficientnet_lite0"
    assert nodes[0]["fingerprint"] == est.lora_["base_fingerprint"]
    for d in (p, full):
        loaded = load(d)
        assert np.abs(loaded.predict_proba(X) - est.predict_proba(X)).max() == 0.0
    loaded = load(p)
    assert loaded.lora_["by_reference"] and set(loaded.lora_["adapters"]) == set(
        est.lora_["adapters"])
    assert len(pickle.dumps(loaded)) < 0.1 * n_weights  # still pickles by reference

    card = (p / "README.md").read_text()
    assert "LoRA" in card and est.lora_["base_fingerprint"] in card

    nodes[0]["fingerprint"] = "0" * 64  # adapters trained on other base weights
    (p / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FingerprintMismatchError, match=r"LoRA adapters.*'efficientnet_lite0'"):
        load(p)
