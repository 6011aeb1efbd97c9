import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _tiny_backbones import TinyConvBackbone, make_image_blobs
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tlestimators import BackboneEmbedder, create_backbone, features
from tlestimators.backbones.base import Backbone, BackboneConfig
from tlestimators.features import (
    backbone_fingerprint,
    compute_embeddings,
    feature_cache,
    set_feature_cache_limit,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only spin-wait on a loaded machine
    feature_cache().clear()
    set_feature_cache_limit(1 << 30)
    yield
    feature_cache().clear()
    set_feature_cache_limit(1 << 30)
    torch.set_num_threads(n)


def _mlp(**kw):
    return create_backbone("mlp", in_features=10, hidden_sizes=(16,), **kw)


class _CountingForward:
    """Counts rows the backbone really computes."""

    def __init__(self, monkeypatch, cls):
        self.rows = 0
        orig = cls.forward
        # BatchNorm folding checks its folded copy on two extra rows once per backbone;
        # these tests count the cache's work only.
        monkeypatch.setattr(features, "FOLD_BATCHNORM", False)

        def forward(module, batch):
            self.rows += len(batch)
            return orig(module, batch)

        monkeypatch.setattr(cls, "forward", forward)


def test_compute_embeddings_matches_plain_forward(rng):
    bb = _mlp()
    X = rng.normal(size=(70, 10)).astype(np.float32)
    emb = compute_embeddings(bb, X, batch_size=16, cache=False)
    with torch.no_grad():
        ref = bb(torch.from_numpy(X)).numpy()
    assert emb.shape == (70, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cache", [False, True])
def test_non_finite_embeddings_raise_for_every_caller(rng, cache):
    """compute_embeddings is where finiteness is checked: every estimator embedding
    through it (the frozen classifier, the embedder, a frozen DA net) gets the error."""
    import tlestimators as tle

    bb = _mlp()
    with torch.no_grad():
        bb.blocks[0][0].weight[0, 0] = float("inf")
    X = rng.normal(size=(20, 10)).astype(np.float32)  # rows with x0 > 0 go to +inf
    match = r"backbone 'mlp' produced NaN or infinite embeddings for \d+ of 20 finite input"
    with pytest.raises(ValueError, match=match):
        compute_embeddings(bb, X, cache=cache)
    with pytest.raises(ValueError, match=match):
        BackboneEmbedder(bb, cache=cache).fit_transform(X)
    with pytest.raises(ValueError, match=match):
        tle.DANNAdapter(bb, unfreeze="head", cache=cache, max_epochs=1).fit(
            X, np.r_[np.arange(10) % 2, -np.ones(10, int)])


@pytest.mark.parametrize("cache", [False, True])
def test_compute_embeddings_validates_raw_items_with_and_without_cache(rng, cache, monkeypatch):
    bb = TinyConvBackbone()
    arrays = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    # a list of arrays: the estimators' error, not an AttributeError from the cache key
    with pytest.raises(TypeError, match=r"items\[0\] is an array inside a list; pass images "
                                        r"as one stacked uint8 array"):
        compute_embeddings(bb, arrays, cache=cache)
    assert compute_embeddings(bb, np.stack(arrays), cache=cache).shape == (3, 16)
    with pytest.raises(TypeError, match="items holds strings that are not image files"):
        compute_embeddings(bb, ["a text", "another"], cache=cache)
    with pytest.raises(TypeError, match=r"items\[1\] is int \(3\); a text backbone"):
        compute_embeddings(create_backbone("minilm"), ["a text", 3], cache=cache)
    with pytest.raises(ValueError, match="items has 4 features, but the backbone .mlp. expects 10"):
        compute_embeddings(_mlp(), np.zeros((2, 4), np.float32), cache=cache)


def test_compute_embeddings_does_not_reopen_validated_image_files(tmp_path, monkeypatch):
    from PIL import Image

    from tlestimators import data

    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(p)
        paths.append(str(p))
    items = TinyConvBackbone().check_input(paths)
    monkeypatch.setattr(data, "check_images", lambda *a, **k: pytest.fail("re-validated"))
    assert compute_embeddings(TinyConvBackbone(), items, cache=False).shape == (2, 16)


def test_cache_computes_only_missing_items(rng, monkeypatch):
    bb = _mlp()
    X = rng.normal(size=(40, 10)).astype(np.float32)
    count = _CountingForward(monkeypatch, type(bb))
    first = compute_embeddings(bb, X[:30])
    assert count.rows == 30
    both = compute_embeddings(bb, X)  # 30 cached + 10 new
    assert count.rows == 40
    np.testing.assert_array_equal(both[:30], first)
    again = compute_embeddings(bb, X[::-1])
    assert count.rows == 40
    np.testing.assert_array_equal(again, both[::-1])
    assert feature_cache().hits == 30 + 40 and feature_cache().misses == 40
    dup = compute_embeddings(_mlp(seed=5), np.vstack([X[:3], X[:3]]))
    assert count.rows == 43  # repeated items inside one call are computed once
    np.testing.assert_array_equal(dup[:3], dup[3:])


def test_cache_is_never_stale_after_weights_or_preprocessing_change(rng):
    bb = _mlp()
    X = rng.normal(size=(20, 10)).astype(np.float32)
    before = compute_embeddings(bb, X)
    fp = backbone_fingerprint(bb)
    with torch.no_grad():  # in-place update, as an optimizer step does
        bb.blocks[0][0].weight.mul_(2.0)
    assert backbone_fingerprint(bb) != fp
    after = compute_embeddings(bb, X)
    with torch.no_grad():
        ref = bb(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(after, before)
    # reloading the original weights gives the original embeddings back (from cache)
    bb.load_state_dict(_mlp().state_dict())
    np.testing.assert_array_equal(compute_embeddings(bb, X), before)

    # preprocessing change: another input size is another key
    imgs, _ = make_image_blobs(n_per_class=4, size=20)
    e16 = compute_embeddings(TinyConvBackbone(img_size=16), imgs)
    e12 = compute_embeddings(TinyConvBackbone(img_size=12), imgs)
    with torch.no_grad():
        bb12 = TinyConvBackbone(img_size=12).eval()
        ref12 = bb12(bb12.preprocess(imgs)).numpy()
    np.testing.assert_allclose(e12, ref12, rtol=1e-4, atol=1e-5)
    assert not np.allclose(e16, e12)


def test_memory_cache_is_bounded_lru(rng):
    bb = _mlp()
    X = rng.normal(size=(200, 10)).astype(np.float32)
    row_cost = 16 * 4 + 200
    set_feature_cache_limit(50 * row_cost)
    compute_embeddings(bb, X)
    cache = feature_cache()
    assert len(cache) == 50 and cache.nbytes <= 50 * row_cost
    # the most recent rows are the ones kept
    compute_embeddings(bb, X[-50:])
    assert cache.hits == 50
    with pytest.raises(ValueError, match="max_bytes"):
        set_feature_cache_limit(-1)


def test_image_file_items_are_keyed_by_content_version(tmp_path, monkeypatch):
    from PIL import Image

    imgs, _ = make_image_blobs(n_per_class=3, size=16)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        Image.fromarray(im).save(p)
        paths.append(str(p))
    bb = TinyConvBackbone()
    items = bb.check_input(paths)
    count = _CountingForward(monkeypatch, TinyConvBackbone)
    first = compute_embeddings(bb, items)
    compute_embeddings(bb, items)
    assert count.rows == 6
    np.testing.assert_allclose(first, compute_embeddings(bb, imgs, cache=False), atol=1e-5)
    Image.fromarray(255 - imgs[0]).save(paths[0])  # edit one file
    os.utime(paths[0], ns=(1, 10**18))
    assert count.rows == 12
    changed = compute_embeddings(bb, bb.check_input(paths))
    assert count.rows == 13
    assert not np.allclose(changed[0], first[0])
    np.testing.assert_array_equal(changed[1:], first[1:])


_CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from tlestimators import create_backbone
    from tlestimators.features import compute_embeddings, feature_cache
    bb = create_backbone("mlp", in_features=10, hidden_sizes=(16,))
    X = np.random.default_rng(int(sys.argv[2])).normal(size=(int(sys.argv[3]), 10))
    e = compute_embeddings(bb, X.astype(np.float32), cache=sys.argv[1])
    np.save(sys.argv[4], e)
    print(feature_cache().misses)
    """
)


def test_persistent_directory_survives_processes_and_concurrent_writers(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # two processes write overlapping item sets (the first 60 rows agree) at once
    sizes = [60, 80]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(d), "0", str(n), str(tmp_path / f"{k}.npy")],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        for k, n in enumerate(sizes)
    ]
    misses = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        misses.append(int(out))
    # the later writer may already find some of the earlier one's shards
    assert 80 <= sum(misses) <= 140
    assert not list(d.rglob("*.tmp"))  # every write was renamed into place
    bb = _mlp()
    count = _CountingForward(monkeypatch, type(bb))
    for k, n in enumerate(sizes):
        X = np.random.default_rng(0).normal(size=(n, 10)).astype(np.float32)
        got = compute_embeddings(bb, X, cache=d)
        np.testing.assert_allclose(got, np.load(tmp_path / f"{k}.npy"))
        np.testing.assert_allclose(got, compute_embeddings(bb, X, cache=False), atol=1e-6)
    assert feature_cache().misses == 0  # everything came from the directory
    assert count.rows == 140  # only the cache=False passes ran the backbone
    # a changed backbone never reads those files
    other = _mlp(seed=1)
    X = np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32)
    np.testing.assert_allclose(
        compute_embeddings(other, X, cache=d), compute_embeddings(other, X, cache=False),
        atol=1e-6,
    )


def test_embedder_clones_share_the_cache(rng):
    X = rng.normal(size=(50, 10)).astype(np.float32)
    emb = BackboneEmbedder("mlp", backbone_kwargs={"hidden_sizes": (16,)}, device="cpu")
    Z = emb.fit_transform(X)
    misses = feature_cache().misses
    Z2 = clone(emb).fit(X).transform(X)
    assert feature_cache().misses == misses == 50
    np.testing.assert_array_equal(Z, Z2)
    names = emb.get_feature_names_out()
    assert names.shape == (16,) and names[0] == "backboneembedder0"


def test_embedder_images_in_pipeline_and_normalize():
    X, y = make_image_blobs(n_per_class=20, size=16, n_classes=3)
    emb = BackboneEmbedder(TinyConvBackbone(), device="cpu", batch_size=8)
    pipe = make_pipeline(emb, LogisticRegression(max_iter=2000)).fit(X, y)
    assert pipe.score(X, y) > 0.9
    Z = clone(emb).set_params(normalize=True).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)


def test_embedder_bad_input():
    emb = BackboneEmbedder("mlp", backbone_kwargs={"hidden_sizes": (4,)}, device="cpu")
    with pytest.raises(NotFittedError):
        emb.transform(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="X holds strings"):
        emb.fit(["a text", "another"])
    emb.fit(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="X has 4 features, but BackboneEmbedder is expecting 5"):
        emb.transform(np.zeros((2, 4)))
    img = BackboneEmbedder(TinyConvBackbone(), device="cpu")
    with pytest.raises(TypeError, match="not image files"):
        img.fit(["hello", "world"])
    with pytest.raises(ValueError, match="The 'batch_size' parameter of BackboneEmbedder"):
        clone(emb).set_params(batch_size=0).fit(np.zeros((3, 5)))
    with pytest.raises(TypeError, match="The 'cache' parameter of BackboneEmbedder"):
        clone(emb).set_params(cache=3).fit(np.zeros((3, 5)))


def test_verbose_shows_progress(rng, capsys):
    X = rng.normal(size=(40, 10)).astype(np.float32)
    compute_embeddings(_mlp(), X, batch_size=8, verbose=1)
    assert "embedding" in capsys.readouterr().err


class _PaddedTextBackbone(Backbone):
    """A text backbone whose batch is padded to its longest text, like a tokenizer's.

    Each embedding depends only on its own text, so any mix-up of the order in which
    batches were formed shows up as a wrong row."""

    def __init__(self):
        super().__init__()
        self.config = BackboneConfig(name="padded-text", modality="text", num_features=2)
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.batch_widths = []

    def preprocess(self, items, train=False):
        width = max(len(t) for t in items)
        self.batch_widths.append(width)
        codes = torch.zeros(len(items), width)
        for i, t in enumerate(items):
            codes[i, : len(t)] = torch.tensor([float(ord(c)) for c in t])
        return codes

    def forward(self, batch):
        return torch.stack([batch.sum(1), (batch > 0).sum(1).float()], 1) * self.scale


def test_text_batches_are_formed_by_length_and_rows_come_back_in_input_order():
    bb = _PaddedTextBackbone()
    texts = ["a" * n for n in (1, 30, 2, 29, 3, 28)] + ["xyz", "q"]
    out = compute_embeddings(bb, texts, batch_size=2, cache=False)
    expected = np.array([[sum(map(ord, t)), len(t)] for t in texts], dtype=np.float32)
    np.testing.assert_allclose(out, expected)
    # sorted by length, the padding a batch carries is small: 30+28, 3+3, 2+1 not 30+29+28
    assert sum(bb.batch_widths) < sum(max(len(a), len(b)) for a, b in zip(texts[::2], texts[1::2]))


# ------------------------------------------------------------------ hot loop (issue 15)
def _image_files(tmp_path, n, size=24, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("prefetch, bound", [(1, 2), (0, 1)])
def test_prepared_batches_and_decoded_images_alive_at_once_are_bounded(
        tmp_path, monkeypatch, prefetch, bound):
    import time
    import weakref

    from tlestimators import data

    monkeypatch.setattr(features, "PREFETCH", prefetch)
    batches, decoded = [], []
    orig_decode = data._decode

    def decode(path, min_size=None):
        arr, full = orig_decode(path, min_size)
        decoded.append(weakref.ref(arr))
        return arr, full

    monkeypatch.setattr(data, "_decode", decode)

    class Slow(TinyConvBackbone):
        max_batches = max_images = 0

        def preprocess(self, items, train=False):
            out = super().preprocess(items, train)
            batches.append(weakref.ref(out))
            return out

        def forward(self, batch):
            time.sleep(0.01)  # a slow forward: the producer is always ahead of it
            alive = [r() for r in batches if r() is not None]
            Slow.max_batches = max(Slow.max_batches, len(alive))
            Slow.max_images = max(Slow.max_images, sum(len(b) for b in alive)
                                  + sum(r() is not None for r in decoded))
            return super().forward(batch)

    bb = Slow()
    paths = _image_files(tmp_path, 40)
    out = compute_embeddings(bb, bb.check_input(paths), batch_size=4, cache=False)
    assert out.shape == (40, 16) and len(batches) == 10
    assert Slow.max_batches <= bound
    # decoded pixels alive: the prepared batches plus at most one image being decoded
    assert Slow.max_images <= bound * 4 + 1
    monkeypatch.setattr(features, "PREFETCH", 1 - prefetch)
    np.testing.assert_allclose(
        compute_embeddings(bb, bb.check_input(paths), batch_size=4, cache=False), out,
        rtol=1e-5, atol=1e-6)


def test_inputs_are_prepared_outside_the_forward_loop_thread():
    import threading

    class Recording(_PaddedTextBackbone):
        def __init__(self):
            super().__init__()
            self.prep_threads, self.fwd_threads = set(), set()

        def preprocess(self, items, train=False):
            self.prep_threads.add(threading.get_ident())  # tokenising happens here
            return super().preprocess(items, train)

        def forward(self, batch):
            self.fwd_threads.add(threading.get_ident())
            return super().forward(batch)

    bb = Recording()
    texts = [f"text number {i}" * (i % 5 + 1) for i in range(30)]
    out = compute_embeddings(bb, texts, batch_size=4, cache=False)
    assert out.shape == (30, 2)
    assert bb.fwd_threads == {threading.get_ident()}
    assert bb.prep_threads and not (bb.prep_threads & bb.fwd_threads)


class _ConvUsedTwice(TinyConvBackbone):
    """The stem conv's output feeds its BatchNorm AND a skip connection: folding the
    BatchNorm into the conv would change the skip path, so it must be refused."""

    def forward(self, batch):
        conv, bn, act = self.stem
        y = conv(batch)
        x = act(bn(y)) + y
        return self.proj(self.stage(x).mean(dim=(2, 3)))


def test_batchnorm_is_folded_for_frozen_inference_only_when_exact(rng):
    X = make_image_blobs(n_per_class=6)[0]
    for cls, folds in ((TinyConvBackbone, True), (_ConvUsedTwice, False)):
        bb = cls().eval()
        with torch.no_grad():  # non-trivial running statistics, so folding matters
            for m in bb.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-1, 1)
                    m.running_var.uniform_(0.5, 2)
        items = bb.check_input(X)
        batch = bb.preprocess(items)
        module = features.inference_module(bb, batch)
        assert (module is not bb) == folds
        left = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert (not left) == folds
        with torch.no_grad():
            ref = bb(batch).numpy()
        emb = compute_embeddings(bb, items, batch_size=5, cache=False)
        np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-5)
        # the backbone itself is untouched
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    # weights changed in place -> a new folded copy, never a stale one
    bb = TinyConvBackbone().eval()
    items = bb.check_input(X)
    first = compute_embeddings(bb, items, cache=False)
    with torch.no_grad():
        bb.stem[0].weight.mul_(2)
        expected = bb(bb.preprocess(items)).numpy()
    second = compute_embeddings(bb, items, cache=False)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, expected, rtol=1e-4, atol=1e-5)


def test_one_autocast_policy_and_the_precision_tag_names_it(monkeypatch):
    assert features.autocast_dtype("cpu") is None and features.precision_tag("cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for capability, dtype, tag in (((7, 5), None, "fp32"), ((8, 0), torch.bfloat16,
                                                              "amp-bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i, c=capability: c)
        assert features.autocast_dtype("cuda") is dtype
        assert features.precision_tag("cuda:0") == tag
    # the tag follows the dtype actually used: fp16 embeddings are never "amp-bf16"
    monkeypatch.setattr(features, "autocast_dtype", lambda device: torch.float16)
    assert features.precision_tag("cuda") == "amp-fp16"


def test_features_and_data_import_nothing_from_estimators():
    code = textwrap.dedent("""
        import sys
        import tlestimators.features, tlestimators.data
        bad = sorted(m for m in sys.modules if m.startswith("tlestimators.estimators"))
        assert not bad, bad
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_pretrained_frozen_backbone_is_shared_across_random_states():
    # random_state seeds random-init builds; pretrained weights do not depend on it, so a
    # grid over seeds must reuse one build (and its embeddings) instead of rebuilding
    from tlestimators import FrozenFeatureClassifier
    from tlestimators.features import frozen_backbone

    kw = {"img_size": 32}
    a = frozen_backbone(FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=kw,
                                                random_state=0))
    b = frozen_backbone(FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=kw,
                                                random_state=1))
    assert a is b
    rand = {"pretrained": False, "img_size": 32}
    c = frozen_backbone(FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=rand,
                                                random_state=0))
    d = frozen_backbone(FrozenFeatureClassifier("efficientnet_lite0", backbone_kwargs=rand,
                                                random_state=1))
    assert c is not d and c.fingerprint() != d.fingerprint()


def test_cpu_images_are_prepared_and_run_one_forward_piece_at_a_time(tmp_path, monkeypatch):
    # memory: on CPU a batch of images is never held whole (decoded or as activations)
    sizes = []

    class Recording(TinyConvBackbone):
        def preprocess(self, items, train=False):
            sizes.append(len(items))
            return super().preprocess(items, train)

        def forward(self, batch):
            sizes.append(-len(batch))
            return super().forward(batch)

    bb = Recording()
    paths = _image_files(tmp_path, 11)
    whole = compute_embeddings(bb, bb.check_input(paths), batch_size=64, cache=False)
    assert sizes[0] == 11  # a piece of 4 * 224^2 pixels holds all 11 16-px images
    monkeypatch.setattr(features, "CPU_FORWARD_PIXELS", 3 * 16 * 16)
    sizes.clear()
    out = compute_embeddings(bb, bb.check_input(paths), batch_size=64, cache=False)
    prepared = [s for s in sizes if s > 0]
    assert prepared == [3, 3, 3, 2] and max(-s for s in sizes if s < 0) == 3
    np.testing.assert_allclose(out, whole, rtol=1e-5, atol=1e-6)


def _photo_jpeg(path, w, h, seed=0):
    """A JPEG with detail at every scale (what makes draft decoding differ)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for k in range(1, 8):  # octaves of noise, upsampled: texture at all frequencies
        small = rng.random((max(2, h >> k), max(2, w >> k), 3)).astype(np.float32)
        t = torch.from_numpy(small).permute(2, 0, 1)[None]
        img += torch.nn.functional.interpolate(t, (h, w), mode="bilinear")[0].permute(
            1, 2, 0).numpy() / 7
    Image.fromarray((img * 255).clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return str(path)


@pytest.mark.parametrize("size, short, drafted", [
    (224, 2048, False),  # 1/2 would leave 1024 < 8 x 256: decoded in full
    (224, 4096, True),   # 1/2 leaves 2048 = 8 x 256
    (64, 1168, True),    # 1/2 leaves 584 = 8 x 73
    (64, 1000, False),   # 1/2 would leave 500 < 584
])
def test_draft_decoding_is_used_for_large_jpegs_only_above_the_gap(
        tmp_path, monkeypatch, size, short, drafted):
    from tlestimators import data

    p = str(tmp_path / "a.jpg")
    from PIL import Image

    Image.new("RGB", (short + short // 3, short), (10, 200, 30)).save(p)
    resize = data.ImagePreprocessor((3, size, size), (0.5,) * 3, (0.5,) * 3,
                                    augment=False).resize_size
    arr, full = data._decode(p, resize)
    assert full == (short, short + short // 3)
    assert (min(arr.shape[:2]) < short) == drafted
    assert min(arr.shape[:2]) >= min(short, data.DRAFT_REDUCING_GAP * resize)
    monkeypatch.setattr(data, "JPEG_DRAFT", False)
    assert data._decode(p, resize)[0].shape[:2] == full


def test_draft_decoded_crops_match_the_full_decode(tmp_path, monkeypatch):
    """The default gap keeps a draft-decoded crop within rounding of the full decode's,
    and the resize uses the full image's geometry (DCT scaling rounds the sides up:
    337 x 500 at 1/2 is 169 x 250, whose own aspect gives a long side one pixel short
    and so a centre crop one pixel off)."""
    from tlestimators import data

    pre = data.ImagePreprocessor((3, 64, 64), (0.5,) * 3, (0.5,) * 3, augment=False)

    def crops(path):
        monkeypatch.setattr(data, "JPEG_DRAFT", False)
        full = pre([path])
        monkeypatch.setattr(data, "JPEG_DRAFT", True)
        return full, pre([path])

    big = _photo_jpeg(tmp_path / "big.jpg", 1560, 1170)  # 1/2 at the default gap
    assert data._decode(big, pre.resize_size)[0].shape[:2] == (585, 780)
    full, draft = crops(big)
    assert (full - draft).abs().max() * 0.5 * 255 <= 1.01  # one uint8 level
    # geometry, at a gap where the DCT scale rounds the aspect ratio
    monkeypatch.setattr(data, "DRAFT_REDUCING_GAP", 2.0)
    odd = _photo_jpeg(tmp_path / "odd.jpg", 337, 500, seed=1)
    assert data._decode(odd, pre.resize_size)[0].shape[:2] == (250, 169)
    full, draft = crops(odd)
    shifted = full.roll(1, dims=-2)  # what a crop one pixel off looks like
    assert (full - draft).abs().mean() < 0.5 * (full - shifted).abs().mean()
