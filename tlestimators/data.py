"""Input validation and conversion per modality, and image preprocessing.

Accepted input (``X``):

- ``image``: a uint8 array ``(N, H, W, 3)`` or ``(N, H, W)`` (grey), a float array
  ``(N, 3, H, W)`` of RGB values in [0, 1] (what ``torchvision.transforms.ToTensor``
  gives; values outside [0, 1], such as 0..255 floats or an already normalised batch,
  raise a ``ValueError`` rather than being rescaled by guess), a list of PIL images, or a list/array of image file paths. Grey, palette
  and RGBA images are converted to RGB, and EXIF orientation is applied.
- ``text``: a list/array/Series of ``str``.
- ``features``: a 2-D float array (dense or scipy sparse).

Bad input raises ``TypeError``/``ValueError`` naming the argument, the offending index
and what was expected. Nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "check_input",
    "check_images",
    "check_texts",
    "check_features",
    "decode_image",
    "load_image",
    "ImagePreprocessor",
    "item_hashes",
    "num_samples",
    "take",
    "unlabeled_mask",
    "IMAGE_SUFFIXES",
    "is_image_path",
    "parse_domains",
    "Domains",
]


def num_samples(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def take(X, indices):
    """Rows ``indices`` (positions) of an array, sparse matrix, list or tuple, or of a
    pandas DataFrame or Series (by position, whatever its index)."""
    if isinstance(X, (list, tuple)):
        return [X[i] for i in indices]
    if hasattr(X, "iloc"):
        return X.iloc[np.asarray(indices)]
    return X[np.asarray(indices)]


def _describe(X) -> str:
    if hasattr(X, "shape") and hasattr(X, "dtype"):
        return f"{type(X).__name__} of shape {X.shape} and dtype {X.dtype}"
    return type(X).__name__


def _check_not_empty(X, name):
    if num_samples(X) == 0:
        raise ValueError(f"{name} is empty: expected at least one sample.")


# --------------------------------------------------------------------------- features
def check_features(X, name="X"):
    """A 2-D float32 array (or CSR matrix) with finite values."""
    from scipy import sparse
    from sklearn.utils.validation import check_array

    if X is None:
        raise ValueError(f"{name} is None: expected a 2-D float array of features.")
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], str):
        raise TypeError(
            f"{name} holds strings, but this backbone expects a 2-D float array of "
            "features; use a text backbone such as 'minilm' for text."
        )
    if not sparse.issparse(X):
        try:
            arr = np.asarray(X)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(
                f"{name} is ragged: expected a 2-D float array with rows of equal length."
            ) from exc
        if arr.ndim == 1 or arr.ndim > 2:
            raise ValueError(
                f"{name} must be a 2-D array (n_samples, n_features) for a 'features' "
                f"backbone, got {arr.ndim}-D input of shape {arr.shape}."
            )
    X = check_array(
        X,
        accept_sparse="csr",
        dtype=np.float32,
        ensure_all_finite=True,
        input_name=name,
        ensure_min_samples=1,
    )
    return X


# --------------------------------------------------------------------------- text
def check_texts(X, name="X") -> list[str]:
    """A list of ``str``; anything else raises naming the first bad index."""
    if X is None:
        raise ValueError(f"{name} is None: expected a sequence of strings.")
    if isinstance(X, str):
        raise TypeError(
            f"{name} is a single str; expected a sequence of strings (wrap it in a list)."
        )
    if hasattr(X, "ndim") and X.ndim != 1:
        hint = ""
        if getattr(X, "shape", (0, 0))[1:] == (1,) and hasattr(X, "columns"):
            col = X.columns[0]
            hint = (f" Pass the column itself, X[{col!r}] (in a ColumnTransformer, name "
                    f"the column as {col!r}, not [{col!r}]).")
        raise ValueError(
            f"{name} must be a 1-D sequence of strings for a text backbone, got "
            f"{_describe(X)}.{hint}"
        )
    try:
        items = list(X)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of strings, got {_describe(X)}.") from exc
    _check_not_empty(items, name)
    for i, t in enumerate(items):
        if isinstance(t, np.str_):
            items[i] = str(t)
        elif not isinstance(t, str):
            raise TypeError(
                f"{name}[{i}] is {type(t).__name__} ({t!r:.50}); a text backbone expects "
                "every item to be a str."
            )
    return items


# --------------------------------------------------------------------------- images
#: File suffixes read as images (lower case), wherever a path's type is decided: the
#: input checks, the search's modality, image folders and the CLI.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def is_image_path(path) -> bool:
    """Whether ``path`` names an image file by its suffix (:data:`IMAGE_SUFFIXES`)."""
    return Path(str(path)).suffix.lower() in IMAGE_SUFFIXES


def check_images(X, name="X"):
    """Validate image input; returns a uint8/float ndarray or a list of PIL/paths."""
    from PIL import Image

    if X is None:
        raise ValueError(f"{name} is None: expected images.")
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"{name} is a single path; expected a sequence of image paths (wrap it in a list)."
        )
    if isinstance(X, np.ndarray) and X.dtype.kind in "uif":
        _check_not_empty(X, name)
        if X.dtype == np.uint8:
            if X.ndim == 3 or (X.ndim == 4 and X.shape[-1] == 3):
                return X
            raise ValueError(
                f"{name} is a uint8 array of shape {X.shape}; expected (N, H, W, 3) RGB or "
                "(N, H, W) grey images."
            )
        if X.dtype.kind == "f":
            if X.ndim != 4 or X.shape[1] != 3:
                raise ValueError(
                    f"{name} is a float array of shape {X.shape}; expected (N, 3, H, W) RGB "
                    "images with values in [0, 1]. For 2-D feature vectors use the 'mlp' "
                    "backbone."
                )
            bad = ~np.isfinite(X).reshape(len(X), -1).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"{name}[{int(np.flatnonzero(bad)[0])}] contains NaN or infinity; "
                    "images must be finite."
                )
            _check_unit_range(X, name)
            return X.astype(np.float32, copy=False)
        raise TypeError(
            f"{name} is an array of dtype {X.dtype}; image arrays must be uint8 "
            "(N, H, W[, 3]) or float (N, 3, H, W) in [0, 1]."
        )
    if isinstance(X, np.ndarray) and X.dtype.kind not in "OUS":
        raise TypeError(f"{name} has dtype {X.dtype}; expected images.")
    try:
        items = list(X)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of images, got {_describe(X)}.") from exc
    _check_not_empty(items, name)
    for i, it in enumerate(items):
        if isinstance(it, Image.Image):
            continue
        if isinstance(it, (str, os.PathLike)):
            p = Path(os.fspath(it))
            if not p.is_file():
                raise ValueError(f"{name}[{i}]: image file {str(p)!r} does not exist.")
            try:
                with Image.open(p) as im:
                    im.size  # noqa: B018 - reads the header only
            except Exception as exc:
                raise ValueError(
                    f"{name}[{i}]: {str(p)!r} is not a readable image ({exc})."
                ) from exc
            items[i] = str(p)
            continue
        if isinstance(it, np.ndarray):
            raise TypeError(
                f"{name}[{i}] is an array inside a list; pass images as one stacked uint8 "
                "array (N, H, W, 3) (all the same size) or as PIL images."
            )
        raise TypeError(
            f"{name}[{i}] is {type(it).__name__}; expected a PIL image or an image file path."
        )
    return items


# Float images are taken as ToTensor's [0, 1] scale. Values outside it (0..255 floats,
# or an already mean/std-normalised batch) would be normalised again and give silently
# wrong embeddings; guessing a rescale is ambiguous (is 1.2 a 0..255 image?), so raise.
_UNIT_RANGE_TOL = 1e-3


def _check_unit_range(X, name):
    lo, hi = float(X.min()), float(X.max())
    if lo >= -_UNIT_RANGE_TOL and hi <= 1 + _UNIT_RANGE_TOL:
        return
    flat = X.reshape(len(X), -1)
    first = int(np.flatnonzero((flat.min(axis=1) < -_UNIT_RANGE_TOL)
                               | (flat.max(axis=1) > 1 + _UNIT_RANGE_TOL))[0])
    hint = (
        "it looks like 0..255 pixel values: pass X / 255, or the uint8 array (N, H, W, 3)"
        if lo >= -_UNIT_RANGE_TOL and hi <= 255 + _UNIT_RANGE_TOL
        else "it looks already normalised: pass the unnormalised [0, 1] values; the "
        "backbone applies its own mean/std"
    )
    raise ValueError(
        f"{name} is a float image array with values in [{lo:.4g}, {hi:.4g}] (first "
        f"offending image: {name}[{first}]); float images (N, 3, H, W) must hold RGB "
        f"values in [0, 1]; {hint}."
    )


#: Decode large JPEG files in draft mode (see ``decode_image``). A switch for
#: comparisons: cached embeddings are not keyed by it (clear the feature cache after
#: changing it).
JPEG_DRAFT = True
#: Draft decoding stops at a scale at least this many times the resize target, so the
#: antialiased resize after it still does the last >= 8x of the reduction. Decoding at
#: DCT scale 1/k amounts to a k x k block average before the resize (its errors match
#: Pillow's ``Image.reduce(k)`` + resize), and only a large remaining reduction hides that
#: prefilter. Pillow's own rule (``reducing_gap=2`` in ``Image.thumbnail``; ``>= 3``
#: "indistinguishable in most cases" for viewing) is too coarse for frozen features:
#: measured at 64 px on hymenoptera's 398 files against a full decode, gap 2 moved the
#: resized crops by up to 51 levels (embedding cosine 0.975 to the plain timm loop),
#: 3 by 27 (0.994), 4 by 11 (0.995), 6 by 1 (0.9990), 8 by 1 (0.9994, as without
#: draft: torch vs PIL resize rounding). The price: at 224 px (256 px resize) only
#: JPEGs with a short side >= 4096 px are draft-decoded.
DRAFT_REDUCING_GAP = 8.0


def _draft_request(size, min_size):
    """The smallest ``(w, h)`` whose short side is ``min_size``, same aspect as ``size``."""
    w, h = size
    r = min_size / min(w, h)
    # Pillow takes the DCT scale 1/k with side // k >= request on both sides: the short
    # side decides; the long one is rounded down so that it never vetoes that scale
    # (5461 x 4096 for 2048: a request of 2731 x 2048 would rule out 1/2)
    return (math.ceil(w * r) if w <= h else int(w * r),
            math.ceil(h * r) if h <= w else int(h * r))


def _rgb_array(im) -> np.ndarray:
    """A decoded PIL image as a uint8 ``(H, W, 3)`` RGB array (alpha over white)."""
    from PIL import Image

    if im.mode in ("P", "LA", "RGBA", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.split()[-1])
        im = bg
    elif im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # writable (torch.from_numpy needs that)


def decode_image(path, min_size=None) -> np.ndarray:
    """Decode an image file to a uint8 ``(H, W, 3)`` RGB array, EXIF orientation applied.

    Parameters
    ----------
    path : str
        An image file.
    min_size : int, default=None
        The short side the caller will resize the image to. A JPEG large enough is
        decoded in draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8,
        :meth:`PIL.Image.Image.draft`) at the smallest scale whose short side is still
        ``>= DRAFT_REDUCING_GAP * min_size``, which is several times cheaper than a full
        decode followed by a large downscale. Draft mode never goes below that size, and
        other formats are decoded in full. The array is then smaller than the file's
        image: resize it with the geometry of the full image (``_decode`` returns its
        size), not with its own aspect ratio, which DCT scaling rounds.
    """
    return _decode(path, min_size)[0]


def _decode(path, min_size=None):
    """``(decode_image(path, min_size), (H, W) of the full-resolution oriented image)``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            full = im.size
            if JPEG_DRAFT and min_size is not None and im.format == "JPEG":
                target = DRAFT_REDUCING_GAP * min_size
                if min(im.size) >= 2 * target:  # else no DCT scale (1/2 ...) fits
                    im.draft("RGB", _draft_request(im.size, target))
            decoded = im.size
            ImageOps.exif_transpose(im, in_place=True)
            arr = _rgb_array(im)
    except Exception as exc:
        raise ValueError(f"image file {str(path)!r} could not be decoded: {exc}") from exc
    turned = (arr.shape[1], arr.shape[0]) != decoded  # EXIF rotated it by 90 degrees
    return arr, ((full[0], full[1]) if turned else (full[1], full[0]))


def load_image(item, min_size=None) -> torch.Tensor:
    """One item -> uint8 tensor ``(3, H, W)`` (float arrays -> float tensor in [0, 1]).

    The tensor is a channels-last view of the decoded ``(H, W, 3)`` pixels (no copy).
    ``min_size`` allows draft decoding of large JPEG files (see ``decode_image``).
    """
    return _load(item, min_size)[0]


def _load(item, min_size=None):
    """``(load_image(item, min_size), (H, W) of the full-resolution image)``."""
    from PIL import ImageOps

    if isinstance(item, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(item))
        if t.dtype == torch.uint8:
            if t.ndim == 2:
                t = t.unsqueeze(0).expand(3, -1, -1)
            else:
                t = t.permute(2, 0, 1)
        return t, tuple(t.shape[-2:])
    if isinstance(item, str):
        arr, full = _decode(item, min_size)
    else:
        arr = _rgb_array(ImageOps.exif_transpose(item))
        full = arr.shape[:2]
    return torch.from_numpy(arr).permute(2, 0, 1), tuple(full)


class ImagePreprocessor:
    """Turn validated image items into a normalised float batch ``(N, 3, H, W)``.

    Eval: resize the short side to ``size / crop_pct``, centre crop ``size`` (timm's
    eval transform). Train (``augment=True``): random resized crop with scale
    ``(0.35, 1)`` and horizontal flip. Built on ``torchvision.transforms.v2``, so
    it runs on uint8 tensors without a PIL round trip.

    The eval path is the frozen-feature hot loop, so it does the least work per image:
    JPEG files are decoded in draft mode when much larger than the resize target
    (``decode_image``), resizing and cropping run on uint8 pixels (torch's
    vectorised channels-last uint8 kernels; a stacked uint8 array is resized as one
    batch), each crop is written into one preallocated uint8 ``(N, H, W, 3)`` buffer, and
    the conversion to float and the mean/std normalisation run once per batch. The eval
    batch is returned in ``torch.channels_last`` memory format (what the convolutions
    of image backbones run fastest on); its shape is ``(N, 3, H, W)`` as always.
    """

    def __init__(self, input_size, mean, std, interpolation="bicubic", crop_pct=0.875,
                 augment=True):
        self.input_size = tuple(input_size)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.interpolation = interpolation
        self.crop_pct = float(crop_pct)
        self.augment = augment
        self._built = None

    @property
    def resize_size(self) -> int:
        """Short side the eval path resizes to before the centre crop."""
        return min(int(round(s / self.crop_pct)) for s in self.input_size[-2:])

    def _build(self):
        from torchvision.transforms import InterpolationMode, v2

        interp = InterpolationMode(self.interpolation)
        size = self.input_size[-2:]
        tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        geom = v2.Compose([v2.Resize(self.resize_size, interpolation=interp, antialias=True),
                           v2.CenterCrop(size)])
        tr = v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
            *tail,
        ])
        # uint8 -> float: (x / 255 - mean) / std == (x - 255 mean) / (255 std)
        shift = torch.tensor([255.0 * m for m in self.mean]).view(1, 3, 1, 1)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(1, 3, 1, 1)
        self._built = (geom, tr, v2.Compose(tail), shift, scale)
        return self._built

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_built"] = None  # rebuilt lazily; keeps pickles small and version-proof
        return d

    def _normalise_uint8(self, batch_nhwc):
        """uint8 ``(N, H, W, 3)`` -> normalised float ``(N, 3, H, W)``, channels-last."""
        _, _, _, shift, scale = self._built or self._build()
        x = batch_nhwc.permute(0, 3, 1, 2).to(torch.float32)  # keeps NHWC memory
        return x.sub_(shift).mul_(scale)

    def _eval_geometry(self, geom, img, full_hw):
        """Resize + centre crop ``img``, with the geometry of the full-resolution image.

        A draft-decoded JPEG (``decode_image``) is smaller than its file's image and DCT
        scaling rounds its sides up, so its own aspect ratio can give a resized long side
        one pixel off, which shifts the centre crop by a pixel (cosine 0.93 at 64 px). It
        is resized to the size the full image would get (torchvision's rule), instead."""
        if tuple(img.shape[-2:]) == tuple(full_hw):
            return geom(img)
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        (h, w), s = full_hw, self.resize_size
        size = [s, int(s * w / h)] if h <= w else [int(s * h / w), s]
        img = F.resize(img, size, interpolation=InterpolationMode(self.interpolation),
                       antialias=True)
        return F.center_crop(img, list(self.input_size[-2:]))

    def __call__(self, items, train=False) -> torch.Tensor:
        geom, tr, tail, _, _ = self._built or self._build()
        if train and self.augment:
            return torch.stack([tr(load_image(it)) for it in items])
        if isinstance(items, np.ndarray):  # one stacked array: resize it as one batch
            t = torch.from_numpy(np.ascontiguousarray(items))
            if t.dtype != torch.uint8:  # float (N, 3, H, W) in [0, 1]
                return tail(geom(t)).contiguous(memory_format=torch.channels_last)
            t = t.unsqueeze(-1).expand(-1, -1, -1, 3) if t.ndim == 3 else t
            return self._normalise_uint8(geom(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        h, w = self.input_size[-2:]
        out = None
        floats = []
        for i, it in enumerate(items):
            crop = self._eval_geometry(geom, *_load(it, self.resize_size))
            if crop.dtype != torch.uint8:  # a float (3, H, W) array inside a list
                floats.append((i, crop))
                continue
            if out is None:
                out = torch.empty((len(items), h, w, 3), dtype=torch.uint8)
            out[i].copy_(crop.permute(1, 2, 0))
        if not floats:
            return self._normalise_uint8(out)
        batch = torch.empty((len(items), 3, h, w), dtype=torch.float32).contiguous(
            memory_format=torch.channels_last)
        if out is not None:
            batch.copy_(self._normalise_uint8(out))
        for i, crop in floats:
            batch[i] = tail(crop)
        return batch


# --------------------------------------------------------------------------- dispatch
def check_input(X, modality: str, name: str = "X"):
    """Validate ``X`` for a backbone of ``modality``; returns the items to preprocess."""
    if modality == "features":
        return check_features(X, name)
    if modality == "text":
        return check_texts(X, name)
    if modality in ("image", "image-text"):
        if isinstance(X, (list, tuple)) and X and isinstance(X[0], str) and not any(
            is_image_path(x) or Path(x).is_file() for x in X[:5]
        ):
            raise TypeError(
                f"{name} holds strings that are not image files, but this backbone expects "
                "images; use a text backbone such as 'minilm' for text."
            )
        return check_images(X, name)
    raise ValueError(f"unknown modality {modality!r}")


def item_hashes(X, modality: str) -> list[bytes]:
    """A content digest per validated item, for the feature cache.

    Image files are keyed by absolute path, size and modification time (so an edited
    file is recomputed); everything else by its bytes."""
    from scipy import sparse

    def h(b: bytes) -> bytes:
        return hashlib.blake2b(b, digest_size=16).digest()

    if modality == "text":
        return [h(b"text:" + str(t).encode("utf-8", "surrogatepass")) for t in X]
    if sparse.issparse(X):
        X = X.tocsr()
        return [h(X[i].toarray().tobytes()) for i in range(X.shape[0])]
    if isinstance(X, np.ndarray):
        X = np.ascontiguousarray(X)
        tag = f"{X.dtype}{X.shape[1:]}".encode()
        return [h(tag + row.tobytes()) for row in X]
    out = []
    for it in X:
        if isinstance(it, str):
            st = os.stat(it)
            out.append(h(f"file:{os.path.abspath(it)}:{st.st_size}:{st.st_mtime_ns}".encode()))
        else:  # PIL image
            out.append(h(f"pil:{it.mode}:{it.size}".encode() + it.tobytes()))
    return out


# --------------------------------------------------------------------------- domains
# (y, sample_domain) -> which rows are labeled source and which are target. The one
# parser used by the DA estimators, the DA scorers and the domain-aware splitters.


def unlabeled_mask(y) -> np.ndarray:
    """Rows of ``y`` marked unlabeled (target-domain) by sklearn's ``-1`` convention.

    Numeric labels compare with ``-1``; in object arrays only numeric ``-1`` entries
    count (a string label never does, not even ``'-1'``).

    Examples
    --------
    >>> from tlestimators.data import unlabeled_mask
    >>> unlabeled_mask([3, -1, 0]).tolist()
    [False, True, False]
    """
    y = np.asarray(y)
    if y.dtype.kind in "iuf":
        return y == -1
    if y.dtype.kind == "O":
        import numbers

        return np.array([isinstance(v, numbers.Number) and not isinstance(v, bool) and v == -1
                         for v in y.ravel()], dtype=bool).reshape(y.shape)
    return np.zeros(y.shape, dtype=bool)


def _string_minus_one_hint(y) -> str:
    """Why no target row was found when ``y`` holds the *string* '-1'."""
    if y is None:
        return ""
    yy = np.asarray(y)
    if yy.dtype.kind not in "UO":
        return ""
    n = int(sum(isinstance(v, str) and v.strip() == "-1" for v in yy.ravel()))
    if n == 0:
        return ""
    return (
        f" y holds the string '-1' in {n} rows: only the number -1 marks a target row. "
        "np.r_[y_source_str, -np.ones(n, int)] turns -1 into the string '-1'; build y as "
        "np.r_[y_source.astype(object), np.full(n, -1, dtype=object)] instead, or pass "
        "sample_domain."
    )


class Domains(tuple):
    """``(labeled, is_target, domain)`` boolean/int arrays, one entry per row.

    ``labeled``: rows whose ``y`` is a class label (not ``-1``); ``is_target``: target
    rows (``sample_domain < 0``, else ``y == -1``); ``domain``: skada's
    ``sample_domain`` (given, or ``1`` for source / ``-1`` for target).
    """

    __slots__ = ()

    def __new__(cls, labeled, is_target, domain):
        return super().__new__(cls, (labeled, is_target, domain))

    labeled = property(lambda self: self[0])
    is_target = property(lambda self: self[1])
    domain = property(lambda self: self[2])

    @property
    def source_index(self):
        return np.flatnonzero(~self[1])

    @property
    def target_index(self):
        return np.flatnonzero(self[1])


def parse_domains(y=None, sample_domain=None, *, n_samples=None, who="This estimator",
                  require_target=False, require_source=False, context=""):
    """Parse DA labels: ``y`` with ``-1`` for unlabeled target rows and/or skada's
    ``sample_domain`` (positive ids: source domains, negative ids: target domains).

    Parameters
    ----------
    y : array-like of shape (n_samples,), default=None
    sample_domain : array-like of int of shape (n_samples,), default=None
    n_samples : int, default=None
        Number of rows of ``X``; ``y`` and ``sample_domain`` must match it.
    who : str
        Names the caller in error messages.
    require_target, require_source : bool, default=False
        Raise a ValueError (with the cause, e.g. a string ``'-1'`` in ``y``) when
        there is no target row / no source row.
    context : str, default=""
        Appended to the "no target rows" message (e.g. which splitter to use).

    Returns
    -------
    Domains
        ``(labeled, is_target, domain)``.
    """
    if y is None and sample_domain is None:
        raise ValueError(
            f"{who} needs y (with -1 marking unlabeled target rows) or sample_domain "
            "(< 0 for target rows) to know which rows are target samples."
        )
    if y is not None:
        yy = np.asarray(y)
        if yy.ndim != 1:
            raise ValueError(f"{who}: y must be 1-D, got an array of shape {yy.shape}.")
        if n_samples is not None and len(yy) != n_samples:
            raise ValueError(f"{who}: X has {n_samples} samples but y has {len(yy)}.")
        n_samples = len(yy)
        unlabeled = unlabeled_mask(yy)
    if sample_domain is None:
        is_target = unlabeled
        domain = np.where(is_target, -1, 1)
    else:
        sd = np.asarray(sample_domain)
        if sd.ndim != 1 or (n_samples is not None and len(sd) != n_samples):
            raise ValueError(
                f"{who}: sample_domain must be a 1-D array with one entry per sample "
                f"({n_samples}), got shape {sd.shape}."
            )
        if sd.dtype.kind not in "iu" and not (
            sd.dtype.kind == "f" and np.all(np.isfinite(sd)) and np.all(sd == np.round(sd))
        ):
            raise ValueError(
                f"{who}: sample_domain must hold integers (source > 0, target < 0), got "
                f"dtype {sd.dtype}."
            )
        if np.any(sd == 0):
            i = int(np.flatnonzero(sd == 0)[0])
            raise ValueError(
                f"{who}: sample_domain[{i}] is 0; use positive ids for source domains and "
                "negative ids for target domains (skada's convention)."
            )
        domain = sd.astype(int)
        is_target = domain < 0
        if y is None:
            unlabeled = is_target
        else:
            bad = unlabeled & ~is_target
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{who}: sample {i} is unlabeled (y == -1) but sample_domain[{i}] = "
                    f"{sd[i]} marks it as source; source samples must be labeled (y != -1) "
                    "and unlabeled samples must have sample_domain < 0."
                )
    if require_target and not is_target.any():
        raise ValueError(
            f"{who} needs target-domain rows (y == -1 or sample_domain < 0) but got none."
            + _string_minus_one_hint(y) + (f" {context}" if context else "")
        )
    if require_source and is_target.all():
        raise ValueError(
            f"{who} needs labeled source rows, but every row is a target row (y == -1 / "
            "sample_domain < 0). In a cross-validation, split with "
            "tlestimators.model_selection.SourceTargetKFold so that every training fold "
            "holds source rows."
        )
    return Domains(~unlabeled, is_target, domain)
