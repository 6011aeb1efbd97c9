"""Input validation and conversion (tlestimators.data)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from scipy import sparse

from tlestimators import data

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def prep(size=16, augment=True):
    return data.ImagePreprocessor((3, size, size), crop_pct=1.0, augment=augment, **IMAGENET)


# ----------------------------------------------------------------------------- images
def test_uint8_rgb_and_grey_arrays_are_accepted_and_become_rgb_batches(rng):
    rgb = rng.integers(0, 256, (4, 20, 24, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (4, 20, 24), dtype=np.uint8)
    for X in (rgb, grey):
        items = data.check_input(X, "image")
        batch = prep()(items)
        assert batch.shape == (4, 3, 16, 16) and batch.dtype == torch.float32
    # grey replicated to three identical channels
    g = prep()(data.check_images(grey))
    assert torch.allclose((g[:, 0] * 0.229 + 0.485), (g[:, 1] * 0.224 + 0.456), atol=1e-5)


def test_batched_eval_path_equals_per_item_path(rng):
    X = rng.integers(0, 256, (3, 30, 30, 3), dtype=np.uint8)
    p = prep(augment=False)
    batched = p(X, train=False)
    per_item = p(list(X), train=False)  # list of arrays goes item by item
    assert torch.allclose(batched, per_item, atol=1e-5)


def test_float_nchw_in_unit_range_is_normalised(rng):
    X = np.full((2, 3, 16, 16), 0.5, dtype=np.float32)
    out = prep(augment=False)(data.check_images(X))
    expected = (0.5 - IMAGENET["mean"][0]) / IMAGENET["std"][0]
    assert torch.allclose(out[:, 0], torch.full((2, 16, 16), expected), atol=1e-4)


def test_train_augmentation_is_random_and_eval_is_deterministic(rng):
    X = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    p = prep()
    assert torch.equal(p(X, train=False), p(X, train=False))
    torch.manual_seed(0)
    a = p(X, train=True)
    b = p(X, train=True)
    assert a.shape == (2, 3, 16, 16) and not torch.allclose(a, b)
    assert torch.equal(prep(augment=False)(X, train=True), p(X, train=False))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
        (np.zeros((2, 8, 8, 4), np.uint8), r"\(N, H, W, 3\)"),
        (np.zeros((2, 8, 8), np.float32), r"\(N, 3, H, W\)"),
        (np.zeros((2, 8), np.float64), r"\(N, 3, H, W\)"),
        ([], "empty"),
    ],
)
def test_bad_image_arrays_raise_value_error_naming_x(X, match):
    with pytest.raises(ValueError, match=match) as exc:
        data.check_images(X)
    assert "X" in str(exc.value)


def test_nan_image_names_the_offending_index():
    X = np.zeros((3, 3, 4, 4), np.float32)
    X[2, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"X\[2\] contains NaN"):
        data.check_images(X)


def test_bool_array_and_non_image_items_raise_type_error():
    with pytest.raises(TypeError, match="dtype bool"):
        data.check_images(np.zeros((2, 3, 4, 4), bool))
    with pytest.raises(TypeError, match=r"X\[1\] is int"):
        data.check_images([Image.new("RGB", (4, 4)), 3])
    with pytest.raises(TypeError, match="single path"):
        data.check_images("some.jpg")


def test_files_palette_grey_rgba_and_exif_rotation(tmp_path):
    pal = Image.new("P", (10, 6))
    pal.putpalette([255, 0, 0] * 256)
    pal.save(tmp_path / "pal.gif")
    Image.new("L", (10, 6), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (10, 6), (0, 0, 255, 255)).save(tmp_path / "rgba.png")
    # A 10x6 image whose EXIF says "rotate 90": loaded upright it is 6 wide, 10 high.
    im = Image.new("RGB", (10, 6), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.jpg", exif=exif)
    paths = [str(tmp_path / n) for n in ("pal.gif", "grey.png", "rgba.png", "rot.jpg")]
    items = data.check_input(paths, "image")
    loaded = [data.load_image(p) for p in items]
    assert all(t.shape[0] == 3 and t.dtype == torch.uint8 for t in loaded)
    assert loaded[0][:, 0, 0].tolist() == [255, 0, 0]
    assert loaded[1][:, 0, 0].tolist() == [128, 128, 128]
    assert loaded[2][:, 0, 0].tolist() == [0, 0, 255]
    assert tuple(loaded[3].shape[1:]) == (10, 6)
    assert prep()(items).shape == (4, 3, 16, 16)


def test_missing_and_unreadable_files_name_the_index(tmp_path):
    good = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=r"X\[1\].*does not exist"):
        data.check_images([str(good), str(tmp_path / "nope.png")])
    with pytest.raises(ValueError, match=r"X\[1\].*not a readable image"):
        data.check_images([str(good), str(bad)])


def test_text_given_to_an_image_backbone_is_a_type_error():
    with pytest.raises(TypeError, match="text backbone"):
        data.check_input(["a cat", "a dog"], "image")


# ----------------------------------------------------------------------------- text
def test_a_one_column_dataframe_of_texts_says_to_pass_the_column():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"review": ["good", "bad"]})
    with pytest.raises(ValueError, match=r"Pass the column itself, X\['review'\] \(in a "
                                         r"ColumnTransformer, name the column as 'review', "
                                         r"not \['review'\]\)"):
        data.check_texts(df)
    assert data.check_texts(df["review"]) == ["good", "bad"]


def test_texts_accepted_from_list_and_array():
    assert data.check_texts(np.array(["a", "b"])) == ["a", "b"]
    assert data.check_texts(("x",)) == ["x"]


@pytest.mark.parametrize(
    "X, exc, match",
    [
        ("one string", TypeError, "single str"),
        ([], ValueError, "empty"),
        (["ok", None], TypeError, r"X\[1\] is NoneType"),
        (["ok", float("nan")], TypeError, r"X\[1\] is float"),
        (np.array([["a", "b"]]), ValueError, "1-D"),
        (None, ValueError, "None"),
    ],
)
def test_bad_text_input(X, exc, match):
    with pytest.raises(exc, match=match):
        data.check_texts(X)


# ----------------------------------------------------------------------------- features
def test_features_accept_dense_and_sparse():
    assert data.check_features([[1, 2], [3, 4]]).dtype == np.float32
    Xs = data.check_features(sparse.random(5, 7, density=0.3, format="csr"))
    assert sparse.issparse(Xs) and Xs.shape == (5, 7)


@pytest.mark.parametrize(
    "X, exc, match",
    [
        ([[1.0, 2.0], [3.0]], ValueError, "ragged"),
        ([[1.0, np.nan]], ValueError, "NaN"),
        ([[1.0, np.inf]], ValueError, "infinity"),
        ([1.0, 2.0], ValueError, "2-D"),
        (np.zeros((2, 3, 4)), ValueError, "2-D"),
        (["a", "b"], TypeError, "text"),
        (np.zeros((0, 3)), ValueError, "minimum of 1"),
    ],
)
def test_bad_features(X, exc, match):
    with pytest.raises(exc, match=match):
        data.check_features(X)


# ----------------------------------------------------------------------------- hashes
def test_item_hashes_follow_content(tmp_path):
    a = np.zeros((2, 4), np.float32)
    b = a.copy()
    b[1, 0] = 1
    ha, hb = data.item_hashes(a, "features"), data.item_hashes(b, "features")
    assert ha[0] == hb[0] and ha[1] != hb[1] and ha[0] == ha[1]
    # same text is the same key whatever the container; texts are never read as paths
    p = tmp_path / "f.png"
    Image.new("RGB", (4, 4)).save(p)
    assert data.item_hashes([str(p)], "text") == data.item_hashes(np.array([str(p)]), "text")
    h1 = data.item_hashes([str(p)], "image")
    Image.new("RGB", (5, 4)).save(p)  # edited file -> new key
    assert data.item_hashes([str(p)], "image") != h1


# ----------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 3),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    rgb=st.booleans(),
)
def test_any_uint8_image_array_preprocesses_to_the_target_size(n, h, w, rgb):
    shape = (n, h, w, 3) if rgb else (n, h, w)
    X = np.random.default_rng(n * h * w).integers(0, 256, shape, dtype=np.uint8)
    out = prep(12)(data.check_input(X, "image"))
    assert out.shape == (n, 3, 12, 12) and torch.isfinite(out).all()


@settings(max_examples=30, deadline=None)
@given(
    X=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4),
        elements=st.floats(-5, 5, allow_nan=False, width=32),
    )
)
def test_features_accept_exactly_the_finite_2d_arrays(X):
    if X.ndim == 2:
        out = data.check_features(X)
        assert out.dtype == np.float32 and out.shape == X.shape
        np.testing.assert_allclose(out, X.astype(np.float32))
    else:
        with pytest.raises(ValueError, match="2-D"):
            data.check_features(X)


@settings(max_examples=30, deadline=None)
@given(
    X=hnp.arrays(
        dtype=np.float32,
        shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=1, max_side=5),
        elements=st.floats(0, 1, width=32),
    )
)
def test_float_image_arrays_accepted_only_as_n_3_h_w(X):
    if X.ndim == 4 and X.shape[1] == 3:
        assert data.check_images(X).shape == X.shape
    else:
        with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
            data.check_images(X)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none()), min_size=1, max_size=6))
def test_texts_reject_exactly_the_non_strings(items):
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        with pytest.raises(TypeError, match=rf"X\[{bad[0]}\]"):
            data.check_texts(items)
    else:
        assert data.check_texts(items) == items


# ----------------------------------------------------------------------------- issue 10/15
@pytest.mark.parametrize(
    "scale, hint",
    [(255.0, "0..255 pixel values"), (None, "already normalised")],
)
def test_float_images_outside_unit_range_raise_naming_x_and_the_range(rng, scale, hint):
    X = rng.random((3, 3, 8, 8), dtype=np.float32)
    if scale is not None:
        X = X * scale  # what np.asarray(img, float32) gives: 0..255 floats
    else:
        X = (X - 0.45) / 0.225  # a batch someone already normalised with ImageNet stats
    X[0] = 0.5  # image 0 is fine: the message names the first bad one
    with pytest.raises(ValueError, match=r"X.*\[0, 1\]") as exc:
        data.check_images(X)
    assert hint in str(exc.value) and "X[1]" in str(exc.value)
    # through a backbone's check_input too
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.check_input(X, "image")
    # exact [0, 1] and float rounding just past the ends are fine
    ok = np.clip(rng.random((2, 3, 4, 4), dtype=np.float32), 0, 1)
    ok[0, 0, 0, 0], ok[1, 0, 0, 0] = 1.0 + 1e-6, -1e-6
    assert data.check_images(ok).shape == ok.shape


def _jpeg(path, w, h, seed=0):
    rng = np.random.default_rng(seed)
    # smooth content, so every decode scale is a faithful picture of it
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                    np.full((h, w), rng.integers(0, 256))], -1).astype(np.uint8)
    Image.fromarray(img).save(path, quality=95)
    return str(path)


@pytest.mark.parametrize(
    "size, min_size, decoded",
    [
        # the smallest DCT scale whose short side is >= DRAFT_REDUCING_GAP (2) x min_size
        ((2048, 1536), 256, (1024, 768)),  # 1/2 (1/4 would give 384 < 512)
        ((1536, 1024), 100, (384, 256)),  # 1/4 (1/8 would give 128 < 200)
        ((1024, 1024), 64, (128, 128)),  # 1/8
        ((1024, 768), 256, (1024, 768)),  # 1/2 would give 384 < 512: full decode
        ((300, 300), 256, (300, 300)),  # smaller than the target: never drafted
        ((600, 400), None, (600, 400)),  # no target given
    ],
)
def test_large_jpegs_are_draft_decoded_never_below_the_target(tmp_path, size, min_size,
                                                               decoded, monkeypatch):
    # the mechanism at gap 2 (the default gap, 8, is tested in test_features.py)
    monkeypatch.setattr(data, "DRAFT_REDUCING_GAP", 2.0)
    p = _jpeg(tmp_path / "a.jpg", *size)
    arr = data.decode_image(p, min_size)
    assert arr.dtype == np.uint8 and arr.shape == (decoded[1], decoded[0], 3)
    if min_size is not None:
        assert min(arr.shape[:2]) >= min(data.DRAFT_REDUCING_GAP * min_size, min(size))
    # the draft picture is the same picture (smooth gradients, small JPEG error)
    small = np.asarray(Image.open(p).convert("RGB").resize(decoded, Image.BILINEAR), float)
    assert np.abs(arr.astype(float) - small).mean() < 3


def test_draft_decoding_is_used_by_the_eval_preprocessing_and_switchable(tmp_path,
                                                                         monkeypatch):
    p = _jpeg(tmp_path / "big.jpg", 1024, 1024)
    png = tmp_path / "big.png"
    Image.open(p).save(png)
    from PIL import JpegImagePlugin

    calls = []
    orig = JpegImagePlugin.JpegImageFile.draft

    def spy(im, mode, size):
        calls.append((im.format, size))
        return orig(im, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    pre = data.ImagePreprocessor((3, 32, 32), crop_pct=1.0, augment=False, **IMAGENET)
    out = pre([p, str(png)])
    assert out.shape == (2, 3, 32, 32)
    assert [c[0] for c in calls] == ["JPEG"]  # the PNG is decoded in full
    monkeypatch.setattr(data, "JPEG_DRAFT", False)
    calls.clear()
    pre([p])
    assert calls == []


def test_eval_batch_is_channels_last_and_matches_the_per_image_reference(rng, tmp_path):
    X = rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    pre = data.ImagePreprocessor((3, 24, 24), interpolation="bicubic", crop_pct=0.875,
                                 augment=False, **IMAGENET)
    out = pre(X)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # reference: torchvision's per-image uint8 -> float pipeline
    from torchvision.transforms import InterpolationMode, v2

    ref = v2.Compose([
        v2.Resize(27, interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(24), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET["mean"], IMAGENET["std"]),
    ])
    expected = torch.stack([ref(torch.from_numpy(x).permute(2, 0, 1).contiguous()) for x in X])
    assert torch.allclose(out, expected, atol=1e-4)
    # files take the same path (PNG: lossless) and give the same batch
    paths = []
    for i, x in enumerate(X):
        Image.fromarray(x).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    assert torch.allclose(pre(paths), out, atol=1e-5)


def test_text_csv_without_the_columns_names_the_file_as_a_plain_path(tmp_path):
    from tlestimators.datasets import load_text_csv

    path = tmp_path / "reviews.csv"
    path.write_text("review,y\ngood,pos\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^'[^']*reviews\.csv' lacks column\(s\) "
                                         r"\['label', 'text'\]; its header is \['review', 'y'\]"):
        load_text_csv(path)
