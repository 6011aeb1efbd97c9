"""Frozen-backbone embeddings and the process-wide feature cache.

(:class:`~tlestimators.BackboneEmbedder` lives in ``tlestimators.estimators.embedder``.)

Every frozen-feature computation in tlestimators goes through
:func:`compute_embeddings`. It looks each input item up in a cache keyed by

- the backbone identity: :meth:`Backbone.fingerprint` (a hash of the weights, the
  backbone class and every preprocessing setting) plus the numeric precision the
  embeddings were computed in (float32, or autocast on CUDA), and
- a content hash of the item (:func:`tlestimators.data.item_hashes`),

and runs the backbone only on the items it has not seen. The in-memory cache is
shared by every estimator in the process, so ``GridSearchCV`` folds, grid points and
clones reuse the embeddings; it is bounded by bytes and evicts the least recently used
rows. ``cache="some/dir"`` also persists the embeddings to a directory, which several
processes may read and write at once (each write goes to a temporary file renamed into
place, so readers never see half a shard).

Because the key hashes the weights and the preprocessing configuration, changing
either (fine-tuning, reloading other weights, another ``img_size``) can never return
stale embeddings: it is a different key.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from tlestimators import data

__all__ = [
    "compute_embeddings",
    "FeatureCache",
    "feature_cache",
    "set_feature_cache_limit",
    "clear_feature_cache",
    "backbone_fingerprint",
    "frozen_backbone",
    "autocast_dtype",
    "autocast_context",
    "precision_tag",
    "inference_module",
]

_DEFAULT_MAX_BYTES = int(os.environ.get("TLE_FEATURE_CACHE_BYTES", 1 << 30))
# dict + tuple key + ndarray header per cached row, so many tiny rows are still bounded
_ROW_OVERHEAD = 200


class _DiskStore:
    """Embeddings of one backbone identity in ``<root>/<identity>/`` as shards.

    A shard is ``<id>.emb.npy`` (rows) and ``<id>.keys.npy`` (16-byte item digests).
    The keys file is renamed into place last, so a shard is visible only once both
    files are complete; shards are never modified afterwards, and concurrent writers
    use distinct ids. Duplicate rows across shards are harmless (same key, same value).
    """

    def __init__(self, root: Path, identity: str):
        self.dir = Path(root) / identity
        self._index: dict[bytes, tuple[str, int]] = {}
        self._seen: set[str] = set()

    def refresh(self) -> None:
        if not self.dir.is_dir():
            return
        for f in self.dir.glob("*.keys.npy"):
            sid = f.name[: -len(".keys.npy")]
            if sid in self._seen:
                continue
            try:
                keys = np.load(f)
            except (OSError, ValueError):  # unreadable shard: ignore, it is recomputed
                continue
            self._seen.add(sid)
            for row, k in enumerate(keys):
                self._index[k.tobytes()] = (sid, row)

    def get(self, hashes: list[bytes]) -> dict[int, np.ndarray]:
        """Rows found on disk, as ``{position in hashes: row}``."""
        if any(h not in self._index for h in hashes):
            self.refresh()
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, h in enumerate(hashes):
            loc = self._index.get(h)
            if loc is not None:
                by_shard.setdefault(loc[0], []).append((i, loc[1]))
        out: dict[int, np.ndarray] = {}
        for sid, pairs in by_shard.items():
            try:
                emb = np.load(self.dir / f"{sid}.emb.npy", mmap_mode="r")
                rows = np.asarray(emb[[r for _, r in pairs]], dtype=np.float32)
            except (OSError, ValueError, IndexError):
                continue
            for (i, _), row in zip(pairs, rows):
                out[i] = row
        return out

    def put(self, hashes: list[bytes], rows: np.ndarray, meta: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "backbone.json"
        if not meta_path.exists():
            tmp = self.dir / f".{uuid.uuid4().hex}.json.tmp"
            tmp.write_text(json.dumps(meta, indent=1, default=str))
            os.replace(tmp, meta_path)
        sid = uuid.uuid4().hex
        keys = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), -1)
        for suffix, arr in ((".emb.npy", rows), (".keys.npy", keys)):
            tmp = self.dir / f".{sid}{suffix}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr))
            os.replace(tmp, self.dir / f"{sid}{suffix}")
        self._seen.add(sid)
        for row, h in enumerate(hashes):
            self._index[h] = (sid, row)


class FeatureCache:
    """In-memory LRU of embedding rows keyed by ``(identity, item digest)``.

    Bounded by ``max_bytes`` (row bytes plus a fixed per-row overhead); the least
    recently used rows are evicted first. Thread-safe. One instance serves the whole
    process (:func:`feature_cache`); persistent directories are attached per call.

    Parameters
    ----------
    max_bytes : int, default=1 GiB (env ``TLE_FEATURE_CACHE_BYTES``)
        Memory budget. ``0`` keeps nothing in memory.

    Attributes
    ----------
    hits, misses : int
        Rows served from the cache (memory or disk) and rows computed, since creation
        or :meth:`clear`.
    """

    def __init__(self, max_bytes: int = _DEFAULT_MAX_BYTES):
        self.max_bytes = int(max_bytes)
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.RLock()
        self._disk: dict[tuple[str, str], _DiskStore] = {}
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        """Drop every in-memory row and reset the counters (directories are kept), and
        the probe fits computed on them (:func:`tlestimators.probe.clear_fit_memo`)."""
        from tlestimators.probe import clear_fit_memo

        clear_fit_memo()
        with self._lock:
            self._rows.clear()
            self._nbytes = 0
            self._disk.clear()
            self.hits = self.misses = 0

    def set_max_bytes(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or (
            max_bytes < 0
        ):
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}.")
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()

    def _evict(self) -> None:
        while self._rows and self._nbytes > self.max_bytes:
            _, row = self._rows.popitem(last=False)
            self._nbytes -= row.nbytes + _ROW_OVERHEAD

    def _disk_store(self, directory, identity) -> _DiskStore:
        key = (os.path.abspath(os.fspath(directory)), identity)
        store = self._disk.get(key)
        if store is None:
            store = self._disk[key] = _DiskStore(Path(key[0]), identity)
        return store

    def get(self, identity: str, hashes: list[bytes], directory=None) -> list:
        """Cached rows (or None) for each digest, refreshing their recency."""
        with self._lock:
            out = []
            for h in hashes:
                row = self._rows.get((identity, h))
                if row is not None:
                    self._rows.move_to_end((identity, h))
                out.append(row)
            missing = [i for i, r in enumerate(out) if r is None]
            if directory is not None and missing:
                found = self._disk_store(directory, identity).get([hashes[i] for i in missing])
                for j, row in found.items():
                    out[missing[j]] = row
                    self._store(identity, hashes[missing[j]], row)
            return out

    def _store(self, identity, h, row) -> None:
        if self.max_bytes <= 0:
            return
        key = (identity, h)
        old = self._rows.pop(key, None)
        if old is not None:
            self._nbytes -= old.nbytes + _ROW_OVERHEAD
        self._rows[key] = row
        self._nbytes += row.nbytes + _ROW_OVERHEAD
        self._evict()

    def put(self, identity: str, hashes: list[bytes], rows: np.ndarray) -> None:
        with self._lock:
            for h, row in zip(hashes, rows):
                # copy: a row view would pin the whole computed block in memory
                self._store(identity, h, np.array(row, dtype=np.float32, copy=True))

    def persist(self, identity: str, hashes: list[bytes], rows: np.ndarray, directory,
                meta=None) -> int:
        """Write the rows whose digests ``directory`` does not hold yet; returns how many."""
        with self._lock:
            store = self._disk_store(directory, identity)
            store.refresh()
            todo, seen = [], set()
            for i, h in enumerate(hashes):
                if h not in store._index and h not in seen:
                    seen.add(h)
                    todo.append(i)
            if todo:
                store.put([hashes[i] for i in todo], rows[todo], meta or {})
            return len(todo)


_CACHE = FeatureCache()


def feature_cache() -> FeatureCache:
    """The process-wide :class:`FeatureCache` used by every frozen backbone."""
    return _CACHE


def set_feature_cache_limit(max_bytes: int) -> None:
    """Bound the in-memory feature cache to ``max_bytes`` (evicting LRU rows now)."""
    _CACHE.set_max_bytes(max_bytes)


def clear_feature_cache() -> None:
    """Empty the in-memory feature cache (persistent directories are untouched) and the
    memo of probe fits on those embeddings."""
    _CACHE.clear()


# --------------------------------------------------------------------------- identity
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FP_LOCK = threading.Lock()


def _state_token(backbone):
    """Cheap token that changes whenever a weight or buffer is replaced or modified in
    place (every in-place op, optimizer step or ``load_state_dict`` bumps the tensor's
    version counter), or the preprocessing config changes."""
    try:
        return (
            backbone.config.preprocessing_key(),
            tuple(
                (n, id(t), t.data_ptr(), t._version)
                for n, t in backbone.state_dict(keep_vars=True).items()
            ),
        )
    except Exception:  # inference tensors have no version counter: always rehash
        return None


def backbone_fingerprint(backbone) -> str:
    """``backbone.fingerprint()``, memoised while the weights and config are unchanged.

    The full fingerprint hashes every weight (tens of ms for an EfficientNet); this
    reuses it until a tensor's version counter, identity or the preprocessing config
    changes, which is exactly when the hash could change.
    """
    token = _state_token(backbone)
    if token is not None:
        with _FP_LOCK:
            hit = _FINGERPRINTS.get(backbone)
        if hit is not None and hit[0] == token:
            return hit[1]
    fp = backbone.fingerprint()
    if token is not None:
        with _FP_LOCK:
            _FINGERPRINTS[backbone] = (token, fp)
    return fp


_BUILT: OrderedDict = OrderedDict()
_SEED_FREE: set = set()  # build keys whose weights do not depend on the seed
_BUILT_MAX = 4
_BUILT_LOCK = threading.Lock()


def _build_key(name, kwargs, n_features):
    parts = []
    for k, v in sorted(kwargs.items()):
        if isinstance(v, (str, os.PathLike)) and os.path.isfile(os.fspath(v)):
            st = os.stat(os.fspath(v))  # a weights file edited in place is a new key
            v = (os.path.abspath(os.fspath(v)), st.st_size, st.st_mtime_ns)
        parts.append((k, repr(v)))
    return (name, tuple(parts), n_features)


def frozen_backbone(estimator, n_features=None):
    """The backbone an estimator with ``backbone``/``backbone_kwargs`` params uses frozen.

    Backbones given by name are built once per process and shared (up to four
    distinct configurations are kept), so clones in a grid search do not each load the
    weights again. Treat the result as read-only: it is never trained. A
    :class:`~tlestimators.Backbone` instance is deep-copied as usual.
    """
    from tlestimators.backbones.base import Backbone

    if isinstance(estimator.backbone, Backbone) or not isinstance(estimator.backbone, str):
        return estimator._make_backbone(n_features)
    kwargs = estimator._check_backbone_kwargs()
    try:
        seed = getattr(estimator, "_backbone_seed", lambda: None)()
        base = _build_key(estimator.backbone.lower(), kwargs, n_features)
        hash(base)
    except TypeError:
        return estimator._make_backbone(n_features)
    with _BUILT_LOCK:
        # the seed only matters for randomly initialised weights: pretrained builds are
        # shared by every random_state (a grid over seeds must not rebuild minilm)
        key = base + ((None,) if base in _SEED_FREE else (seed,))
        bb = _BUILT.get(key)
        if bb is not None:
            _BUILT.move_to_end(key)
            return bb
    bb = estimator._make_backbone(n_features)
    bb.requires_grad_(False)
    bb.eval()
    if not str(getattr(bb.config, "weights", "random")).startswith("random"):
        key = base + (None,)
        with _BUILT_LOCK:
            _SEED_FREE.add(base)
    with _BUILT_LOCK:
        _BUILT[key] = bb
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
    return bb


def _check_cache(cache):
    if cache is None or cache is False:
        return False, None
    if cache is True:
        return True, None
    if isinstance(cache, (str, os.PathLike)):
        if not os.fspath(cache):
            raise ValueError("cache='' is not a directory; pass True, False or a directory path.")
        return True, os.fspath(cache)
    raise TypeError(
        f"cache must be True (in-memory), False (off) or a directory path, got {cache!r}."
    )


# --------------------------------------------------------------------------- precision
# ONE mixed-precision policy for the package (frozen inference here, training in
# estimators._base.TransferNet): bfloat16 autocast on CUDA devices that run it natively
# (compute capability >= 8: Ampere and later), float32 everywhere else. bfloat16 has
# float32's range, so training needs no loss scaling, and frozen embeddings computed in
# training-time precision match what a fine-tuned model sees. Older GPUs (no native
# bf16) run float32 rather than float16: float16 would need a GradScaler when training
# and would give embeddings of a third precision. The feature cache keys embeddings by
# :func:`precision_tag`, so embeddings of different precisions never mix in a cache.
def autocast_dtype(device):
    """The autocast dtype tlestimators uses on ``device``: ``torch.bfloat16`` or ``None``.

    ``None`` means float32 (no autocast): every CPU/MPS device, and CUDA devices without
    native bfloat16 (compute capability < 8).
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.bfloat16 if torch.cuda.get_device_capability(index)[0] >= 8 else None


def autocast_context(device):
    """``torch.autocast`` under :func:`autocast_dtype`'s policy (a no-op context for float32)."""
    import contextlib

    import torch

    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def precision_tag(device) -> str:
    """``"fp32"``, or ``"amp-bf16"``/``"amp-fp16"``: the precision embeddings computed on
    ``device`` have (part of the feature-cache key), derived from the dtype actually used."""
    import torch

    dtype = autocast_dtype(device)
    if dtype is None:
        return "fp32"
    return "amp-" + {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# --------------------------------------------------------------------------- hot loop
def _to_device(batch, device, non_blocking):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, non_blocking) for v in batch)
    return batch


def _pin(batch):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pin(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pin(v) for v in batch)
    return batch


#: Batches prepared ahead of the forward pass, in one background thread (0: none).
#: Decoding, resizing and tokenising release the GIL, so with one batch ahead the input
#: side of batch k+1 runs while batch k is in the backbone; at most ``PREFETCH + 1``
#: prepared batches are alive at once, which bounds memory whatever the number of items.
PREFETCH = 1


def _prepared_batches(backbone, items, starts, batch_size, pin, prefetch):
    """Yield ``backbone.preprocess`` of each chunk, ``prefetch`` chunks ahead in a thread."""
    import torch

    n = data.num_samples(items)

    def prepare(s):
        chunk = data.take(items, range(s, min(s + batch_size, n)))
        if hasattr(chunk, "toarray"):  # sparse features: preprocess expects dense rows
            chunk = np.asarray(chunk.toarray())
        with torch.inference_mode():
            batch = backbone.preprocess(chunk, train=False)
        return _pin(batch) if pin else batch

    if prefetch <= 0:
        for s in starts:
            yield prepare(s)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    it = iter(starts)
    with ThreadPoolExecutor(1, thread_name_prefix="tle-prefetch") as pool:
        pending = deque(pool.submit(prepare, s) for _, s in zip(range(prefetch), it))
        try:
            while pending:
                batch = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, nxt))
                yield batch
                del batch  # the consumer's reference is the only one left
        finally:
            for f in pending:
                f.cancel()


#: On CPU, images go through the backbone in pieces of at most this many pixels (4
#: images at 224 px), and are prepared (decoded, resized, normalised) a piece at a time:
#: what is alive at once is the activations of one piece and at most ``PREFETCH + 1``
#: prepared pieces. Whole 64-image batches at 224 px would hold about 0.4 GB of
#: activations and two 38 MB float batches; pieces of 2 to 8 images also run as fast or
#: faster per image on CPU (the activations of a piece stay in cache; 16 images ran
#: about 30% slower per image). Every image is computed on its own in eval mode, so the
#: pieces only bound memory. On GPU the batch goes in whole (``batch_size`` items).
CPU_FORWARD_PIXELS = 4 * 224 * 224


def _pieces(batch, cuda):
    import torch

    if cuda or not isinstance(batch, torch.Tensor) or batch.ndim != 4:
        return (batch,)
    step = max(1, CPU_FORWARD_PIXELS // (batch.shape[-1] * batch.shape[-2]))
    return batch.split(step) if len(batch) > step else (batch,)


def _prepare_step(backbone, batch_size, cuda):
    """Items prepared at once: ``batch_size``, or on CPU for an image backbone with a
    known input size, one forward piece (``CPU_FORWARD_PIXELS``) if that is fewer."""
    size = backbone.config.input_size
    if cuda or backbone.config.modality != "image" or not size:
        return batch_size
    return max(1, min(batch_size, CPU_FORWARD_PIXELS // (size[-1] * size[-2])))


def _prefetch_for(backbone):
    # 2-D features need no preparation worth a thread
    return 0 if backbone.config.modality == "features" else PREFETCH


def _run_backbone(backbone, items, batch_size, device, verbose):
    """Eval-mode, inference-mode, batched forward passes over validated ``items``.

    The loop body is only the forward pass and the copy out: inputs are prepared
    (decoded, resized, normalised, tokenised; pinned on CUDA) ahead in a background
    thread (``PREFETCH``), and BatchNorm is folded into the convolutions
    (:func:`inference_module`).
    """
    import torch

    n = data.num_samples(items)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    outs = []
    step = _prepare_step(backbone, batch_size, cuda)
    starts = range(0, n, step)
    if verbose:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=(n + step - 1) // step, desc="embedding", leave=False)
    # Texts are padded to the longest in their batch: batching them by length (as
    # SentenceTransformer.encode does) wastes far less compute on padding.
    order = None
    if backbone.config.modality == "text" and n > batch_size:
        order = np.argsort([-len(t) for t in items], kind="stable")
        items = [items[i] for i in order]
    module = None
    batches = _prepared_batches(backbone, items, starts, step, cuda,
                                _prefetch_for(backbone))
    with torch.inference_mode(), autocast_context(dev):
        for batch in batches:
            batch = _to_device(batch, dev, cuda)
            for piece in _pieces(batch, cuda):
                if module is None:
                    module, z = _first_forward(backbone, piece)
                else:
                    z = module(piece)
                outs.append(z.float().cpu())
                del piece, z
            del batch
    if not outs:
        return np.zeros((0, backbone.config.num_features), dtype=np.float32)
    out = torch.cat(outs).numpy().astype(np.float32, copy=False)
    if order is not None:
        restored = np.empty_like(out)
        restored[order] = out
        out = restored
    return out


# --------------------------------------------------------------------------- BN folding
#: Fold eval-mode BatchNorm into the convolution before it for frozen inference.
FOLD_BATCHNORM = True
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FOLD_LOCK = threading.Lock()


class _ConvBNPairs:
    """Hooks that record ``(conv name, bn name)`` for each BatchNorm2d whose input is
    exactly the output of the Conv2d that ran just before it, during one forward pass."""

    def __init__(self, backbone):
        from torch import nn

        self.names = {m: name for name, m in backbone.named_modules()}
        self.pairs = []
        self._last = None
        self._hooks = []
        for m in backbone.modules():
            if type(m) is nn.Conv2d:
                self._hooks.append(m.register_forward_hook(self._after_conv))
            elif isinstance(m, nn.BatchNorm2d):
                self._hooks.append(m.register_forward_pre_hook(self._before_bn))

    def _after_conv(self, m, args, out):
        self._last = (m, out)

    def _before_bn(self, m, args):
        if self._last is not None and args and args[0] is self._last[1]:
            self.pairs.append((self.names[self._last[0]], self.names[m]))
        self._last = None

    def remove(self):
        for h in self._hooks:
            h.remove()
        self._last = None


def _bn_replacement(bn):
    """What is left of ``bn`` once its affine transform is folded into the conv: nothing
    for a plain BatchNorm2d; timm's ``BatchNormAct2d`` keeps its dropout and activation."""
    from torch import nn

    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act") and hasattr(bn, "drop"):
        return nn.Sequential(bn.drop, bn.act)
    return None


def _fold(backbone, pairs):
    """A copy of ``backbone`` with each ``(conv, bn)`` pair folded (None if none can be)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    # The copy shares every parameter and buffer with ``backbone`` (deepcopy's memo):
    # fuse_conv_bn_eval gives each folded conv new tensors, and the others (pretrained
    # heads, squeeze-excite convs, ...) are used as they are, so no weight is held twice.
    memo = {id(t): t for t in (*backbone.parameters(), *backbone.buffers())}
    folded, done = copy.deepcopy(backbone, memo), 0
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        rest = _bn_replacement(bn)
        if rest is None or not bn.track_running_stats or bn.running_mean is None:
            continue
        folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        folded.set_submodule(bn_name, rest)
        done += 1
    return folded.eval() if done else None


def _fold_key(backbone):
    token = _state_token(backbone)
    if token is None:
        return None
    first = next(backbone.parameters(), None)
    return (token, str(first.device) if first is not None else "")


def _first_forward(backbone, batch):
    """Forward the first batch; return ``(module for the other batches, its output)``.

    The module is :func:`inference_module`'s BatchNorm-folded copy when it applies. The
    conv -> BatchNorm pairs are found by hooks during this (real) forward pass, so
    folding costs one extra pass over two items, to check the copy.
    """
    import torch

    if not _foldable(backbone):
        return backbone, backbone(batch)
    key = _fold_key(backbone)
    with _FOLD_LOCK:
        hit = _FOLDED.get(backbone)
    if hit is not None and hit[0] == key:
        module = hit[1] or backbone
        return module, module(batch)
    hooks = _ConvBNPairs(backbone)
    try:
        z = backbone(batch)
    finally:
        hooks.remove()
    folded = None
    try:
        if hooks.pairs:
            folded = _fold(backbone, hooks.pairs)
        if folded is not None:
            # A conv output used elsewhere too (or an unusual BN subclass) would make the
            # fold wrong: keep the copy only if it reproduces this batch's first rows.
            a = z[:2].float()
            b = folded(_slice_batch(batch, 2)).float()
            err = torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(a).clamp_min(1e-12)
            tol = 1e-4 if z.dtype == torch.float32 else 3e-2  # bf16 autocast: coarser
            if not bool(err <= tol):
                folded = None
    except Exception:  # an exotic module graph: plain eager inference is always correct
        folded = None
    if key is not None:
        with _FOLD_LOCK:
            _FOLDED[backbone] = (key, folded)
    return folded or backbone, z


def _foldable(backbone):
    import torch

    return (FOLD_BATCHNORM and not backbone.training
            and any(type(m) is torch.nn.BatchNorm2d or type(m).__name__ == "BatchNormAct2d"
                    for m in backbone.modules()))


def inference_module(backbone, batch):
    """The module frozen embeddings run through: ``backbone``, or a copy of it with every
    eval-mode ``BatchNorm2d`` folded into the ``Conv2d`` that feeds it.

    Folding removes one full pass over each activation per BatchNorm (about half the
    CPU time of an EfficientNet at 224 px) and changes the embeddings only by float
    rounding: the copy is used only if it reproduces the backbone on the first items of
    ``batch`` (relative error <= 1e-4 in float32). The copy is kept (one per backbone,
    dropped with it) until a weight, buffer or preprocessing setting of the backbone
    changes or the backbone is used on another device. Disable with
    ``tlestimators.features.FOLD_BATCHNORM = False``.
    """
    import torch

    with torch.inference_mode():
        return _first_forward(backbone, batch)[0]


def _slice_batch(batch, k):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch[:k]
    if isinstance(batch, dict):
        return {key: _slice_batch(v, k) for key, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice_batch(v, k) for v in batch)
    return batch


def compute_embeddings(backbone, items, *, batch_size=64, device="cpu", cache=True, verbose=0,
                       fingerprint=None):
    """Embeddings of ``items`` from a frozen ``backbone``, through the feature cache.

    Parameters
    ----------
    backbone : Backbone
        Used as is (not trained). It is switched to eval mode and moved to ``device``
        for the call; its previous mode and device are restored afterwards.
    items : array-like or list
        Input for the backbone's modality, validated by ``backbone.check_input``
        (bad input raises naming ``items``; what ``check_input`` already returned
        passes unchanged, and a list of image paths or PIL images is not
        re-opened).
    batch_size : int, default=64
        Items per forward pass.
    device : str, default="cpu"
        ``"cpu"``, ``"cuda[:N]"``, ``"mps"`` or ``"auto"``. On CUDA the passes run
        under :func:`autocast_context` (bfloat16 on GPUs with native support, float32
        otherwise) with pinned memory and non-blocking copies.
    cache : bool or path-like, default=True
        ``True``: the process-wide in-memory cache; ``False``: compute everything;
        a directory: the in-memory cache backed by embeddings persisted there.
    verbose : int, default=0
        Show a progress bar over the batches still to compute.
    fingerprint : str, default=None
        ``backbone.fingerprint()`` when the caller already has it. By default it is
        computed once per call through :func:`backbone_fingerprint` (memoised while
        the weights are unmodified). Only pass a fingerprint of this very backbone in
        its current state.

    Returns
    -------
    embeddings : ndarray of shape (n_items, num_features), dtype float32
        Always finite: a backbone that turns (checked, finite) input into NaN or
        infinite embeddings raises a ``ValueError`` naming it.

    Notes
    -----
    The forward loop does nothing but forward passes: batch ``k + 1`` is prepared
    (decoded, resized, normalised or tokenised) in a background thread while batch
    ``k`` runs (``PREFETCH``), so at most two prepared batches are in memory
    whatever the number of items, and eval-mode BatchNorm layers are folded into
    their convolutions (:func:`inference_module`). On CPU an image "batch" here is
    one forward piece of at most ``CPU_FORWARD_PIXELS`` pixels (4 images at 224 px),
    which bounds the decoded images, the float inputs and the activations alive at
    once (``batch_size`` is the unit on GPU).
    """
    from tlestimators._validation import check_positive_int, resolve_device

    batch_size = check_positive_int(batch_size, "batch_size")
    device = resolve_device(device)
    use_cache, directory = _check_cache(cache)
    items = _checked_items(backbone, items)
    with _RUN_LOCK:  # a shared frozen backbone is moved/evaluated by one thread at a time
        if not use_cache:
            Z = _forward(backbone, items, batch_size, device, verbose)
        else:
            Z = _cached(backbone, items, batch_size, device, directory, verbose, fingerprint)
    if not np.isfinite(Z).all():  # the input was checked finite: the backbone is at fault
        bad = int((~np.isfinite(Z).all(axis=1)).sum())
        raise ValueError(
            f"The backbone {backbone.config.name!r} produced NaN or infinite embeddings "
            f"for {bad} of {len(Z)} finite input rows; check its weights and input scale."
        )
    return Z


_RUN_LOCK = threading.RLock()


def _checked_items(backbone, items):
    """``items`` validated for ``backbone`` (its ``check_input``), except a list of
    existing files and PIL images, the form the estimators pass after their own
    validation, whose files would otherwise be opened a second time."""
    if backbone.config.modality in ("image", "image-text") and isinstance(items, list):
        from PIL import Image

        if items and all(isinstance(it, Image.Image)
                         or (isinstance(it, str) and os.path.isfile(it)) for it in items):
            return items
    return backbone.check_input(items, "items")


def _cached(backbone, items, batch_size, device, directory, verbose, fingerprint):
    n = data.num_samples(items)
    identity = (fingerprint or backbone_fingerprint(backbone)) + "-" + precision_tag(device)
    hashes = data.item_hashes(items, backbone.config.modality)
    found = _CACHE.get(identity, hashes, directory)
    out = np.empty((n, backbone.config.num_features), dtype=np.float32)
    missing, first_of, dup_of = [], {}, {}
    for i, row in enumerate(found):
        if row is not None:
            out[i] = row
        elif hashes[i] in first_of:  # a repeated item inside this call: compute once
            dup_of[i] = first_of[hashes[i]]
        else:
            first_of[hashes[i]] = i
            missing.append(i)
    _CACHE.hits += n - len(missing)
    _CACHE.misses += len(missing)
    if missing:
        sub = items if len(missing) == n else data.take(items, missing)
        rows = _forward(backbone, sub, batch_size, device, verbose)
        out[missing] = rows
        _CACHE.put(identity, [hashes[i] for i in missing], rows)
    for i, j in dup_of.items():
        out[i] = out[j]
    if directory is not None:
        # rows served from memory may not be in this directory yet
        meta = {"config": backbone.config.to_dict(), "class": type(backbone).__qualname__}
        _CACHE.persist(identity, hashes, out, directory, meta)
    return out


def _forward(backbone, items, batch_size, device, verbose):
    """Run the backbone in eval mode on ``device``; restore its mode and device after."""
    import torch

    was_training = backbone.training
    first = next(backbone.parameters(), None)
    prev = first.device if first is not None else None
    target = torch.device(device)
    move = prev is not None and (
        prev.type != target.type or (target.index is not None and prev.index != target.index)
    )
    backbone.eval()
    try:
        if move:
            backbone.to(target)
        return _run_backbone(backbone, items, batch_size, device, verbose)
    finally:
        if move:
            backbone.to(prev)
            with _FOLD_LOCK:  # a folded copy on the other device would hold its memory
                _FOLDED.pop(backbone, None)
        backbone.train(was_training)
