"""Loaders for the real datasets the tests, examples and benchmarks use.

The data is never shipped with the package: it is read from a directory given by the
``TLE_DATA`` environment variable (default ``../shared/data`` next to the project
checkout), laid out as in each folder's PROVENANCE.md. A missing dataset raises
:class:`DatasetNotFoundError` (a ``FileNotFoundError``) that names the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tlestimators.data import is_image_path

__all__ = [
    "DatasetNotFoundError",
    "data_home",
    "load_image_folder",
    "load_text_csv",
    "load_hymenoptera",
    "load_pacs",
    "load_amazon",
    "load_mnist_usps",
    "load_trec",
    "load_sms_spam",
    "AMAZON_DOMAINS",
]

AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is absent; set TLE_DATA to the shared data directory."""


def data_home(data_dir=None) -> Path:
    """``data_dir``, else ``$TLE_DATA``, else ``../shared/data`` beside the checkout."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("TLE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _folder(name, data_dir=None) -> Path:
    p = data_home(data_dir) / name
    if not p.is_dir():
        raise DatasetNotFoundError(
            f"dataset folder {str(p)!r} is absent; set TLE_DATA (or pass data_dir) to the "
            "directory that holds it."
        )
    return p


def load_image_folder(root, classes=None):
    """Image file paths and labels from ``root/<class>/<image>`` (torchvision's ImageFolder
    layout). Returns ``(paths, labels)`` with labels as class-folder names (str).

    Files whose suffix is not an image are reported, not silently skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {str(root)!r} does not exist.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if classes is not None:
        class_dirs = [root / c for c in classes]
    if not class_dirs:
        raise ValueError(f"{str(root)!r} has no class sub-folders (expected root/<class>/*.jpg).")
    paths, labels, other = [], [], []
    for d in class_dirs:
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            if is_image_path(f):
                paths.append(str(f))
                labels.append(d.name)
            else:
                other.append(str(f))
    if other:
        raise ValueError(
            f"{str(root)!r} holds files that are not images: {other[:5]}; move them out."
        )
    return paths, np.asarray(labels)


def load_text_csv(path, text_column="text", label_column="label"):
    """``(texts, labels)`` from a CSV with a header naming the text and label columns."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {text_column, label_column} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{str(path)!r} lacks column(s) {sorted(missing)}; its header is {reader.fieldnames}."
            )
        rows = list(reader)
    # a blank label would become a class of its own (''), a short row a None text:
    # name the lines instead (line 1 is the header)
    for column, bad in ((label_column, lambda v: v is None or not v.strip()),
                        (text_column, lambda v: v is None)):
        lines = [i + 2 for i, r in enumerate(rows) if bad(r[column])]
        if lines:
            raise ValueError(
                f"{str(path)!r}: the {column!r} column is empty on {len(lines)} line(s) "
                f"(first: {lines[:5]}); fill or drop them."
            )
    return [r[text_column] for r in rows], np.asarray([r[label_column] for r in rows])


def load_hymenoptera(split="train", data_dir=None):
    """Ants vs bees: ``(paths, labels)`` of ``train`` (245) or ``val`` (153)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    return load_image_folder(_folder("hymenoptera", data_dir) / "hymenoptera_data" / split)


def load_pacs(domain="photo", data_dir=None):
    """PACS ``photo`` or ``art_painting``: ``(paths, labels)``, 7 classes."""
    if domain not in ("photo", "art_painting"):
        raise ValueError(f"domain must be 'photo' or 'art_painting', got {domain!r}.")
    return load_image_folder(_folder("pacs_photo_art", data_dir) / "PACS" / domain)


def load_amazon(domain, split="train", data_dir=None, dense=False):
    """Amazon reviews (DANN paper files): ``(X, y)`` with 5000 count features and y in {0, 1}.

    ``X`` is CSR (``dense=True`` for a float32 array).
    """
    from sklearn.datasets import load_svmlight_file

    if domain not in AMAZON_DOMAINS:
        raise ValueError(f"domain must be one of {AMAZON_DOMAINS}, got {domain!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    f = _folder("amazon_sentiment_dann_svmlight", data_dir) / f"{domain}_{split}.svmlight"
    X, y = load_svmlight_file(str(f), n_features=5000, dtype=np.float32)
    y = ((y + 1) // 2).astype(np.int64)
    return (X.toarray() if dense else X), y


def load_mnist_usps(name="MNIST", data_dir=None, images=False):
    """The JDA 16x16 subset: ``name`` in {"MNIST", "USPS"}; ``(X, y)`` with digits 0..9.

    ``X`` is (N, 256) float in [0, 1], or with ``images=True`` uint8 (N, 16, 16).
    """
    import scipy.io as sio

    if name not in ("MNIST", "USPS"):
        raise ValueError(f"name must be 'MNIST' or 'USPS', got {name!r}.")
    m = sio.loadmat(str(_folder("mnist_usps_jda", data_dir) / f"{name}.mat"))
    X = m["fts"].astype(np.float32)
    y = m["labels"].ravel().astype(np.int64) - 1
    if images:
        X = np.clip(np.rint(X.reshape(-1, 16, 16) * 255), 0, 255).astype(np.uint8)
    return X, y


def load_trec(split="train", fine=False, data_dir=None):
    """TREC question classification: ``(questions, labels)``; 6 coarse labels (or 50 fine)."""
    files = {"train": "train_5500.label", "test": "TREC_10.label"}
    if split not in files:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    p = _folder("trec_question_classification", data_dir) / files[split]
    rows = [ln.rstrip("\n").split(" ", 1) for ln in open(p, encoding="latin-1") if ln.strip()]
    labels = [lab if fine else lab.split(":")[0] for lab, _ in rows]
    return [q for _, q in rows], np.asarray(labels)


def load_sms_spam(data_dir=None):
    """SMS Spam Collection: ``(texts, labels)`` with labels "ham"/"spam"."""
    p = _folder("sms_spam_collection", data_dir) / "SMSSpamCollection"
    rows = [ln.rstrip("\n").split("\t", 1) for ln in open(p, encoding="utf-8")]
    return [t for _, t in rows], np.asarray([lab for lab, _ in rows])
