"""Replay memories: exact capacity, uniformity, class balance, herding, pickling."""

import pickle

import numpy as np
import pytest
from scipy import sparse

from tlestimators.memory import (
    ClassBalancedMemory,
    HerdingMemory,
    ReservoirMemory,
    concat_items,
    herding_selection,
    make_memory,
)


def _stream(sizes, n_features=3, labels=None, seed=0):
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for k, n in enumerate(sizes):
        X = rng.normal(size=(n, n_features)).astype(np.float32)
        X[:, 0] = np.arange(start, start + n)  # column 0 identifies the example
        y = np.full(n, k if labels is None else labels[k])
        out.append((X, y))
        start += n
    return out


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced", "herding"])
def test_capacity_is_exact_and_never_exceeded(policy):
    mem = make_memory(policy, 10, random_state=0)
    seen = 0
    for X, y in _stream([4, 9, 30, 1]):
        mem.update(X, y, embed=lambda items: np.asarray(items))
        seen += len(y)
        assert len(mem) <= 10
        assert mem.items_.shape[0] == len(mem.y_) == len(mem.experience_ids_)
    # 4 classes with 10 slots: per-class policies fill 3/3/2/2 but class 3 has 1 example
    assert len(mem) == (10 if policy == "reservoir" else 3 + 3 + 2 + 1)
    # what is stored is real examples with their own labels
    ids = mem.items_[:, 0].astype(int)
    starts = np.cumsum([0, 4, 9, 30])
    assert np.array_equal(np.searchsorted(starts, ids, side="right") - 1, mem.y_)


def test_reservoir_is_uniform_over_everything_seen():
    counts = np.zeros(100)
    for seed in range(400):
        mem = ReservoirMemory(10, random_state=seed)
        for X, y in _stream([20, 30, 50]):
            mem.update(X, y)
        counts[mem.items_[:, 0].astype(int)] += 1
    # each of the 100 examples is kept with probability 10/100 -> 40 times out of 400
    assert counts.sum() == 4000
    assert abs(counts[:20].mean() - 40) < 6 and abs(counts[50:].mean() - 40) < 6
    assert counts.min() > 15 and counts.max() < 70


def test_class_balanced_rebalances_when_classes_arrive():
    mem = ClassBalancedMemory(12, random_state=0)
    X, y = _stream([40])[0]
    mem.update(X, y)
    assert mem.class_counts() == {0: 12}
    X, y = _stream([40, 40])[1]
    mem.update(X, y)
    assert mem.class_counts() == {0: 6, 1: 6}
    X, y = _stream([40, 40, 40, 40, 40], labels=[0, 1, 2, 3, 4])[2]
    mem.update(np.concatenate([X[:20], X[20:]]), np.r_[np.full(20, 2), np.full(20, 3)])
    assert mem.class_counts() == {0: 3, 1: 3, 2: 3, 3: 3}
    assert mem.quotas() == {0: 3, 1: 3, 2: 3, 3: 3}


def test_class_balanced_keeps_a_uniform_sample_within_each_class():
    counts = np.zeros(60)
    for seed in range(300):
        mem = ClassBalancedMemory(10, random_state=seed)
        for X, y in _stream([30, 30]):
            mem.update(X, y)
        counts[mem.items_[:, 0].astype(int)] += 1
    # 5 slots for 30 examples of each class: 300 * 5/30 = 50 each
    assert abs(counts[:30].mean() - 50) < 1e-9 and abs(counts[30:].mean() - 50) < 1e-9
    assert counts.min() > 25 and counts.max() < 80


@pytest.mark.parametrize("cls", [ClassBalancedMemory, HerdingMemory])
def test_per_class_memory_smaller_than_classes_raises_and_keeps_state(cls):
    mem = cls(2, random_state=0)
    X, y = _stream([5, 5])[0]
    mem.update(np.concatenate([X, X]), np.r_[np.zeros(5), np.ones(5)].astype(int),
               embed=np.asarray)
    before = pickle.dumps(mem)
    with pytest.raises(ValueError, match=r"memory_size=2 is smaller than the number of classes \(3\)"):
        mem.update(X, np.full(5, 2), embed=np.asarray)
    assert pickle.dumps(mem) == before


def test_herding_picks_the_example_closest_to_the_mean_first():
    rng = np.random.default_rng(0)
    F = rng.normal(size=(50, 4)) + 5.0
    F[17] = F.mean(axis=0) * 1.0  # the class mean itself
    order = herding_selection(F, 10)
    assert order[0] == 17
    assert len(set(order.tolist())) == 10


def test_herding_mean_beats_random_exemplars():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(200, 8)) * np.linspace(0.2, 3, 8) + 1.0
    Fn = F / np.linalg.norm(F, axis=1, keepdims=True)
    mu = Fn.mean(axis=0)
    herd = np.linalg.norm(Fn[herding_selection(F, 10)].mean(axis=0) - mu)
    rand = np.mean([
        np.linalg.norm(Fn[rng.choice(200, 10, replace=False)].mean(axis=0) - mu)
        for _ in range(200)
    ])
    assert herd < 0.3 * rand


def test_herding_shrinks_classes_by_keeping_their_first_exemplars():
    mem = HerdingMemory(8, random_state=0)
    (X0, y0), (X1, y1) = _stream([30, 30])
    mem.update(X0, y0, embed=np.asarray)
    first = mem.items_[:, 0].copy()
    assert np.array_equal(first, X0[herding_selection(X0, 8), 0])
    mem.update(X1, y1, embed=np.asarray)
    assert mem.class_counts() == {0: 4, 1: 4}
    assert np.array_equal(mem.items_[mem.y_ == 0, 0], first[:4])


def test_herding_needs_embeddings():
    X, y = _stream([5])[0]
    with pytest.raises(ValueError, match="needs embed="):
        HerdingMemory(3).update(X, y)


def test_pickled_memory_makes_the_same_draws():
    stream = _stream([20, 20, 20])
    a = ReservoirMemory(7, random_state=3)
    a.update(*stream[0])
    b = pickle.loads(pickle.dumps(a))
    for X, y in stream[1:]:
        a.update(X, y)
        b.update(X, y)
    assert np.array_equal(a.items_, b.items_)


def test_memory_holds_any_item_container_and_task_ids():
    texts = [f"text {i}" for i in range(10)]
    mem = ReservoirMemory(4, random_state=0)
    mem.update(texts[:5], np.zeros(5, int), task_ids="a")
    mem.update(texts[5:], np.ones(5, int), task_ids="b")
    assert isinstance(mem.items_, list) and len(mem.items_) == 4
    for t, lab, task in zip(mem.items_, mem.y_, mem.task_ids_):
        assert int(t.split()[1]) // 5 == lab and task == "ab"[lab]
    csr = sparse.random(6, 5, density=0.5, format="csr", random_state=0)
    both = concat_items(csr, np.ones((2, 5), np.float32))
    assert sparse.issparse(both) and both.shape == (8, 5)
    with pytest.raises(ValueError, match="feature rows of width"):
        concat_items(np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32))


def test_images_of_different_kinds_become_one_kind(tmp_path):
    """Arrays, then paths or PIL images, or RGB then grey arrays, or two sizes: the
    memory holds one kind that the feature cache can hash and the collate can batch."""
    from PIL import Image

    from tlestimators import data

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, size=(2, 4, 4), dtype=np.uint8)
    # grey beside RGB: still one uint8 array, each grey level in the three channels
    both = concat_items(rgb, grey)
    assert both.shape == (5, 4, 4, 3) and both.dtype == np.uint8
    assert np.array_equal(both[3], np.repeat(grey[0][..., None], 3, axis=-1))
    # an array beside paths or PIL images: a list with PIL images for the array rows
    path = tmp_path / "a.png"
    Image.fromarray(rgb[0]).save(path)
    pil = Image.fromarray(grey[1])
    mixed = concat_items(rgb, [str(path), pil])
    assert [type(x).__name__ for x in mixed[:3]] == ["Image"] * 3 and mixed[3] == str(path)
    assert np.array_equal(np.asarray(mixed[0]), rgb[0])
    assert len(data.item_hashes(mixed, "image")) == 5  # raised AttributeError before
    # two sizes, and float (N, 3, H, W) beside uint8: lists of PIL images
    sizes = concat_items(rgb, np.zeros((1, 8, 8, 3), np.uint8))
    assert [im.size for im in sizes] == [(4, 4)] * 3 + [(8, 8)]
    floats = concat_items(rgb[:1], np.full((1, 3, 4, 4), 0.5, np.float32))
    assert np.asarray(floats[1]).max() == 128
    # the memory stores mixed experiences and keeps them hashable
    mem = ReservoirMemory(10, random_state=0)
    mem.update(rgb, np.zeros(3, int))
    mem.update([str(path), pil], np.ones(2, int))
    assert len(mem.items_) == 5 and len(data.item_hashes(mem.items_, "image")) == 5


def test_replay_batch_sampler_mixes_new_and_replayed_examples():
    import torch

    from tlestimators.memory import ReplayBatchSampler

    torch.manual_seed(0)
    s = ReplayBatchSampler(n_new=10, n_mem=3, batch_size=4, replay_ratio=0.5)
    batches = list(s)
    assert len(s) == len(batches) == 5  # 2 new examples per batch
    new = [i for b in batches for i in b[:2]]
    assert sorted(new) == list(range(10))  # one pass over the new examples
    replayed = [i for b in batches for i in b[2:]]
    assert len(replayed) == 10 and set(replayed) == {10, 11, 12}
    # the memory is walked through before any example repeats
    assert sorted(replayed[:3]) == [10, 11, 12] and sorted(replayed[3:6]) == [10, 11, 12]
    # at least one replayed example when there is a memory, never a batch without new ones
    assert ReplayBatchSampler(5, 2, 4, 0.01).n_replay == 1
    assert ReplayBatchSampler(5, 2, 4, 0.99).n_replay == 3
    assert ReplayBatchSampler(5, 0, 4, 0.5).n_replay == 0


def test_zero_capacity_and_bad_arguments():
    mem = ReservoirMemory(0)
    mem.update(*_stream([5])[0])
    assert len(mem) == 0 and mem.n_seen_ == 5
    with pytest.raises(ValueError, match="capacity must be an int >= 0"):
        ReservoirMemory(-1)
    with pytest.raises(ValueError, match="policy must be one of"):
        make_memory("fifo", 3)
    with pytest.raises(ValueError, match="one label per item"):
        ReservoirMemory(3).update(np.zeros((4, 2)), np.zeros(3))
