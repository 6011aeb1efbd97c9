"""Replay memories for rehearsal-based continual learning.

A memory keeps at most ``capacity`` past examples (the validated raw items, their
labels and optional task ids) and is updated once per experience with
:meth:`ReplayMemory.update`. Three selection policies:

- :class:`ReservoirMemory` (``"reservoir"``): a uniform random sample of every example
  seen so far, whatever its class (Vitter's reservoir sampling);
- :class:`ClassBalancedMemory` (``"class_balanced"``): equal slots per seen class,
  re-balanced when new classes arrive; within a class a uniform random sample;
- :class:`HerdingMemory` (``"herding"``): equal slots per class, filled with the
  examples whose running mean best approximates the class mean in feature space
  (iCaRL's herding, Rebuffi et al. 2017); shrinking a class keeps its first exemplars.

The memory stores what is needed to replay: the raw items as the estimator's input
validation returned them (rows of a float or CSR array, image arrays, paths, PIL
images or strings), so replaying works whether the backbone is frozen or trained.

Random choices use ``rng_``, a :class:`numpy.random.Generator` held by the memory, so
a pickled memory continues with exactly the draws it would have made unpickled.

Reservoir sampling is implemented with random priority keys: every example gets a key
drawn uniformly in [0, 1) when it arrives, and the memory keeps the examples with the
smallest keys. This is the same distribution as Vitter's Algorithm R (every subset of
``capacity`` examples seen so far is equally likely), vectorises, and lets the
class-balanced memory drop examples when a class's quota shrinks without biasing what
remains.
"""

from __future__ import annotations

import numbers

import numpy as np

from tlestimators import data

__all__ = [
    "ReplayMemory",
    "ReservoirMemory",
    "ClassBalancedMemory",
    "HerdingMemory",
    "POLICIES",
    "make_memory",
    "concat_items",
    "herding_selection",
    "ReplayBatchSampler",
]


def concat_items(a, b):
    """Concatenate two containers of validated items (arrays, CSR matrices or lists).

    ``None`` stands for "nothing yet". Dense and sparse feature rows are combined as
    CSR. Images of different kinds become one kind, so the result can be batched and
    hashed like any validated input: uint8 grey ``(N, H, W)`` beside RGB
    ``(N, H, W, 3)`` becomes RGB (the grey level in each channel, as preprocessing
    reads grey images anyway); arrays of different sizes or dtypes, or an array beside
    a list of PIL images or paths, become a list whose array rows are PIL images (float
    ``(N, 3, H, W)`` rows in [0, 1] are rounded to 8 bits then).
    """
    if a is None or data.num_samples(a) == 0:
        return b
    if b is None or data.num_samples(b) == 0:
        return a
    if hasattr(a, "tocsr") or hasattr(b, "tocsr"):
        from scipy import sparse

        return sparse.vstack([sparse.csr_matrix(a), sparse.csr_matrix(b)], format="csr")
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.ndim == 2 or b.ndim == 2:  # feature rows: the estimator checked the width
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(
                    f"cannot put feature rows of width {b.shape[1:]} beside stored rows of "
                    f"width {a.shape[1:]}."
                )
            return np.concatenate([a, np.asarray(b, dtype=a.dtype)])
        a, b = _rgb(a), _rgb(b)
        if a.dtype == b.dtype and a.shape[1:] == b.shape[1:]:
            return np.concatenate([a, b])
    return _as_item_list(a) + _as_item_list(b)


def _rgb(x):
    """uint8 grey images ``(N, H, W)`` -> ``(N, H, W, 3)``; anything else unchanged."""
    if x.dtype == np.uint8 and x.ndim == 3:
        return np.repeat(x[..., None], 3, axis=-1)
    return x


def _as_item_list(items):
    """A list of items; image array rows become PIL images (paths and PIL kept)."""
    if not isinstance(items, np.ndarray):
        return list(items)
    from PIL import Image

    if items.dtype.kind == "f":  # (N, 3, H, W) in [0, 1]
        items = np.rint(np.clip(items, 0.0, 1.0) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [Image.fromarray(np.ascontiguousarray(row)) for row in items]


def _check_capacity(capacity):
    if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral) or capacity < 0:
        raise ValueError(f"capacity must be an int >= 0, got {capacity!r}.")
    return int(capacity)


def herding_selection(features, m):
    """Indices of ``m`` rows of ``features`` chosen by iCaRL herding, in selection order.

    Features are L2-normalised; step ``k`` picks the row that brings the mean of the
    ``k`` chosen rows closest to the class mean. Rows are chosen without replacement,
    so ``m`` is capped at ``len(features)``.

    References
    ----------
    .. [1] S.-A. Rebuffi, A. Kolesnikov, G. Sperl, C. H. Lampert, "iCaRL: Incremental
       Classifier and Representation Learning", CVPR 2017 (Algorithm 4).
    .. [2] M. Welling, "Herding dynamical weights to learn", ICML 2009.
    """
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"features must be 2-D (n_samples, n_features), got shape {F.shape}.")
    n = F.shape[0]
    m = min(int(m), n)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    F = F / np.maximum(norms, 1e-12)
    mu = F.mean(axis=0)
    chosen = []
    available = np.ones(n, dtype=bool)
    running = np.zeros_like(mu)
    for k in range(1, m + 1):
        # distance of the candidate means (running + phi(x)) / k to the class mean
        d = np.linalg.norm(mu[None, :] - (running[None, :] + F) / k, axis=1)
        d[~available] = np.inf
        i = int(np.argmin(d))
        chosen.append(i)
        available[i] = False
        running += F[i]
    return np.asarray(chosen, dtype=np.int64)


class ReplayMemory:
    """Base class of replay memories: a bounded store of past examples.

    Parameters
    ----------
    capacity : int
        Maximum number of examples kept (``0`` keeps nothing). The memory never holds
        more than ``capacity`` examples.
    random_state : int, numpy.random.Generator or None, default=None
        Seed of ``rng_``, the generator behind every random choice of the memory.

    Attributes
    ----------
    items_ : array, CSR matrix, list or None
        The stored examples (``None`` before the first update).
    y_ : ndarray of shape (n_stored,)
        Their labels (as given to :meth:`update`).
    task_ids_ : ndarray of shape (n_stored,) or None
        Their task ids, when updates carried them.
    experience_ids_ : ndarray of shape (n_stored,)
        Index of the update (experience) each stored example came from.
    n_seen_ : int
        Examples offered to the memory so far.
    n_updates_ : int
        Number of :meth:`update` calls so far.
    rng_ : numpy.random.Generator
        Random generator (its state is part of the memory's state).
    """

    policy = None
    requires_embeddings = False

    def __init__(self, capacity, random_state=None):
        self.capacity = _check_capacity(capacity)
        self.random_state = random_state
        if isinstance(random_state, np.random.Generator):
            self.rng_ = random_state
        else:
            self.rng_ = np.random.default_rng(random_state)
        self.items_ = None
        self.y_ = np.zeros(0, dtype=np.int64)
        self.task_ids_ = None
        self.experience_ids_ = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0, dtype=np.float64)
        self.n_seen_ = 0
        self.n_updates_ = 0

    def __len__(self):
        return int(self.y_.shape[0])

    def __repr__(self):
        return (
            f"{type(self).__name__}(capacity={self.capacity}, stored={len(self)}, "
            f"classes={self.class_counts()})"
        )

    @property
    def classes_(self):
        """Sorted distinct labels currently stored."""
        return np.unique(self.y_) if len(self) else self.y_[:0]

    def class_counts(self) -> dict:
        """``{label: number of stored examples}``."""
        labels, counts = np.unique(self.y_, return_counts=True)
        return {lab.item() if hasattr(lab, "item") else lab: int(c) for lab, c in zip(labels, counts)}

    def check_update(self, y, n_classes_after=None) -> None:
        """Raise if an update with labels ``y`` cannot be honoured (called before any change)."""

    def update(self, items, y, *, task_ids=None, embed=None):
        """Offer one experience's examples to the memory.

        Parameters
        ----------
        items : array, CSR matrix or list
            Validated items (``backbone.check_input(X)``), ``n`` of them.
        y : array-like of shape (n,)
            Their labels.
        task_ids : int or array-like of shape (n,), default=None
            Task id(s) stored beside the examples (task-incremental streams).
        embed : callable, default=None
            ``embed(items) -> ndarray (k, d)``: feature-space representation used by
            :class:`HerdingMemory` (ignored by the other policies).

        Returns
        -------
        self
        """
        n = data.num_samples(items)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"y must be 1-D with one label per item ({n}), got shape {y.shape}.")
        if task_ids is not None:
            task_ids = np.broadcast_to(np.asarray(task_ids), (n,)).copy()
        self.check_update(y)
        if self.capacity == 0 or n == 0:
            self.n_seen_ += n
            self.n_updates_ += 1
            return self
        keys = self.rng_.random(n)
        old_n = len(self)
        # candidate pool = stored examples followed by the new ones
        pool_y = np.concatenate([self.y_, y]) if old_n else y
        pool_keys = np.concatenate([self._keys, keys])
        pool_exp = np.concatenate(
            [self.experience_ids_, np.full(n, self.n_updates_, dtype=np.int64)]
        )
        if self.task_ids_ is not None or task_ids is not None:
            old_t = self.task_ids_ if self.task_ids_ is not None else np.full(old_n, -1)
            new_t = task_ids if task_ids is not None else np.full(n, -1)
            pool_t = np.concatenate([old_t, new_t])
        else:
            pool_t = None
        keep = self._select(pool_y, pool_keys, old_n, items, embed)
        keep = np.asarray(keep, dtype=np.int64)
        if keep.shape[0] > self.capacity:  # pragma: no cover - guarded by the policies
            raise RuntimeError("memory policy selected more examples than its capacity")
        old_keep = keep[keep < old_n]
        new_keep = keep[keep >= old_n] - old_n
        kept_old = data.take(self.items_, old_keep) if old_n else None
        kept_new = data.take(items, new_keep)
        self.items_ = concat_items(kept_old, kept_new)
        order = np.concatenate([old_keep, new_keep + old_n])
        self.y_ = pool_y[order]
        self._keys = pool_keys[order]
        self.experience_ids_ = pool_exp[order]
        self.task_ids_ = None if pool_t is None else pool_t[order]
        self.n_seen_ += n
        self.n_updates_ += 1
        return self

    def _select(self, pool_y, pool_keys, old_n, new_items, embed):  # pragma: no cover
        raise NotImplementedError


class ReservoirMemory(ReplayMemory):
    """A uniform random sample of all examples seen, regardless of class.

    After ``n_seen_`` examples, every subset of ``min(capacity, n_seen_)`` of them is
    equally likely to be stored (reservoir sampling). Classes seen often dominate the
    memory, and a rare class may vanish from it.

    References
    ----------
    .. [1] J. S. Vitter, "Random sampling with a reservoir", ACM TOMS 1985.
    .. [2] A. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
    """

    policy = "reservoir"

    def _select(self, pool_y, pool_keys, old_n, new_items, embed):
        k = min(self.capacity, pool_keys.shape[0])
        return np.sort(np.argsort(pool_keys, kind="stable")[:k])


def _quotas(labels_in_order, capacity):
    """Equal slots per class; the remainder goes to the classes seen first."""
    n_cls = len(labels_in_order)
    base, extra = divmod(capacity, n_cls)
    return {lab: base + (1 if i < extra else 0) for i, lab in enumerate(labels_in_order)}


class _PerClassMemory(ReplayMemory):
    """Shared logic of the per-class policies: quotas and the class-count check."""

    def __init__(self, capacity, random_state=None):
        super().__init__(capacity, random_state)
        self.class_order_ = []

    def check_update(self, y, n_classes_after=None):
        if self.capacity == 0:
            return
        if n_classes_after is None:
            known = set(self.class_order_)
            n_classes_after = len(known) + sum(1 for c in np.unique(y) if c not in known)
        if self.capacity < n_classes_after:
            raise ValueError(
                f"memory_size={self.capacity} is smaller than the number of classes "
                f"({n_classes_after}) under policy={self.policy!r}, which keeps at least one "
                "example per class; raise memory_size or use policy='reservoir'."
            )

    def _order_after(self, pool_y):
        order = list(self.class_order_)
        seen = set(order)
        for lab in pool_y[len(self):]:
            if lab not in seen:
                seen.add(lab)
                order.append(lab)
        return order

    def update(self, items, y, *, task_ids=None, embed=None):
        super().update(items, y, task_ids=task_ids, embed=embed)
        # class order is updated after a successful update only
        for lab in np.asarray(y):
            lab = lab.item() if hasattr(lab, "item") else lab
            if lab not in self.class_order_:
                self.class_order_.append(lab)
        return self

    def quotas(self) -> dict:
        """``{label: slots}`` for the classes seen so far."""
        if not self.class_order_:
            return {}
        return _quotas(self.class_order_, self.capacity)


class ClassBalancedMemory(_PerClassMemory):
    """Equal slots per seen class, re-balanced as classes arrive.

    With ``c`` classes seen, each class gets ``capacity // c`` slots (the first
    ``capacity % c`` classes one more); a class with fewer examples leaves its unused
    slots empty rather than over-filling another class, which is what Avalanche's
    ``ClassBalancedBuffer`` does too. Within a class the stored examples are a uniform
    random sample of that class's examples.

    References
    ----------
    .. [1] A. Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019.
    .. [2] A. Prabhu, P. Torr, P. Dokania, "GDumb", ECCV 2020.
    """

    policy = "class_balanced"

    def _select(self, pool_y, pool_keys, old_n, new_items, embed):
        order = self._order_after(pool_y)
        quotas = _quotas(order, self.capacity)
        keep = []
        for lab in order:
            idx = np.flatnonzero(pool_y == lab)
            best = idx[np.argsort(pool_keys[idx], kind="stable")[: quotas[lab]]]
            keep.append(best)
        return np.sort(np.concatenate(keep))


class HerdingMemory(_PerClassMemory):
    """iCaRL exemplar selection: equal slots per class chosen by herding in feature space.

    When a class first appears, its exemplars are its examples ordered by herding
    (:func:`herding_selection`) on ``embed(items)``, the model's features after it
    learnt the experience. When the quota of a class shrinks, its last exemplars are
    dropped, keeping the prefix that best approximates the class mean. A class that
    shows up again (domain-incremental streams) is re-herded over its stored exemplars
    and its new examples together.

    ``update`` needs ``embed``; :class:`~tlestimators.RehearsalLearner` passes the
    backbone's embeddings.

    References
    ----------
    .. [1] S.-A. Rebuffi, A. Kolesnikov, G. Sperl, C. H. Lampert, "iCaRL: Incremental
       Classifier and Representation Learning", CVPR 2017.
    """

    policy = "herding"
    requires_embeddings = True

    def _select(self, pool_y, pool_keys, old_n, new_items, embed):
        if embed is None:
            raise ValueError(
                "HerdingMemory.update needs embed=callable(items) -> features to choose "
                "exemplars in feature space."
            )
        order = self._order_after(pool_y)
        quotas = _quotas(order, self.capacity)
        new_labels = set(np.unique(pool_y[old_n:]).tolist())
        keep = []
        new_feats = None
        old_feats = None
        for lab in order:
            idx = np.flatnonzero(pool_y == lab)
            if lab not in new_labels:
                # stored in herding order: the prefix is the best smaller exemplar set
                keep.append(idx[: quotas[lab]])
                continue
            if new_feats is None:
                new_feats = np.asarray(embed(new_items), dtype=np.float64)
                if old_n:
                    old_feats = np.asarray(embed(self.items_), dtype=np.float64)
            feats = np.concatenate([old_feats, new_feats]) if old_n else new_feats
            sel = herding_selection(feats[idx], quotas[lab])
            keep.append(idx[sel])
        # keep herding order inside each class (no sorting), classes in arrival order
        return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


POLICIES = {
    "reservoir": ReservoirMemory,
    "class_balanced": ClassBalancedMemory,
    "herding": HerdingMemory,
}


def make_memory(policy, capacity, random_state=None) -> ReplayMemory:
    """A memory for ``policy`` in ``{"reservoir", "class_balanced", "herding"}``."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {sorted(POLICIES)}, got {policy!r}.")
    return POLICIES[policy](capacity, random_state=random_state)


class ReplayBatchSampler:
    """Mini-batches of ``n_new_per_batch`` new examples topped up with replayed ones.

    A ``batch_sampler`` for a dataset whose indices ``[0, n_new)`` are the experience's
    examples and ``[n_new, n_new + n_mem)`` the memory's. Every batch holds
    ``batch_size * replay_ratio`` replayed examples (at least 1 when there is a memory
    and a positive ratio, at most ``batch_size - 1``) and new ones for the rest; one
    epoch is one shuffled pass over the new examples. The memory is walked through in
    shuffled order, reshuffled each time it is used up, so every stored example is
    replayed about equally often. Randomness comes from torch's global generator (seed
    it, e.g. with ``torch.random.fork_rng``, for reproducible batches).

    Parameters
    ----------
    n_new, n_mem : int
        Examples of the experience and of the memory.
    batch_size : int
        Examples per batch.
    replay_ratio : float in [0, 1)
        Share of every batch taken from the memory.
    """

    def __init__(self, n_new, n_mem, batch_size, replay_ratio):
        self.n_new = int(n_new)
        self.n_mem = int(n_mem)
        n_replay = int(round(batch_size * replay_ratio)) if n_mem else 0
        self.n_replay = min(max(n_replay, 1 if n_mem and replay_ratio > 0 else 0), batch_size - 1)
        self.n_new_per_batch = batch_size - self.n_replay

    def __len__(self):
        return -(-self.n_new // self.n_new_per_batch)

    def __iter__(self):
        import torch

        new = torch.randperm(self.n_new).tolist()
        need = len(self) * self.n_replay
        mem = []
        while len(mem) < need:
            mem.extend((torch.randperm(self.n_mem) + self.n_new).tolist())
        for b in range(len(self)):
            batch = new[b * self.n_new_per_batch:(b + 1) * self.n_new_per_batch]
            yield batch + mem[b * self.n_replay:(b + 1) * self.n_replay]
