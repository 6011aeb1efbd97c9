"""ONNX export of fitted estimators, and a small onnxruntime classifier to run them.

:func:`export_onnx` writes a directory::

    model.onnx          backbone + head + softmax; dynamic batch (and sequence length)
    preprocessing.json  what the graph expects and how to make it from raw items
    tokenizer/          text models only: the tokenizer (tokenisation stays in Python)

The graph takes

- images: ``pixel_values``, float32 ``(N, 3, H, W)`` in ``[0, 1]`` at the backbone's
  input size (resized and centre-cropped as the estimator does); the mean/std
  normalisation runs inside the graph;
- 2-D features: ``features``, float32 ``(N, n_features)``;
- text: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer
  makes them), int64 ``(N, L)``;

and returns ``probabilities`` ``(N, n_classes)`` (columns in ``classes`` order) and
``logits``. :class:`OnnxClassifier` does the Python side (decode, resize, tokenise) and
runs the graph in onnxruntime, so ``OnnxClassifier(path).predict_proba(X)`` matches the
estimator's ``predict_proba(X)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

__all__ = ["export_onnx", "OnnxClassifier"]


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "ONNX export needs onnx and onnxruntime: pip install 'tlestimators[export]'."
        ) from exc


# --------------------------------------------------------------------------- heads
def _linear_from_sklearn(head):
    """An sklearn linear classifier (optionally after a StandardScaler) as nn.Linear."""
    import torch
    from torch import nn

    scaler = None
    steps = getattr(head, "steps", None)
    if steps:
        if len(steps) == 2 and hasattr(steps[0][1], "mean_"):
            scaler, head = steps[0][1], steps[1][1]
        elif len(steps) == 1:
            head = steps[0][1]
        else:
            return None
    if hasattr(head, "to_linear"):
        lin = head.to_linear()
    elif hasattr(head, "coef_") and hasattr(head, "intercept_"):
        coef = np.atleast_2d(np.array(head.coef_, dtype=np.float64))  # a copy: SVC's is read-only
        intercept = np.array(head.intercept_, dtype=np.float64).ravel()
        if coef.shape[0] == 1:  # binary: logit of class 1 against a zero logit
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.r_[0.0, intercept]
        lin = nn.Linear(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(coef))
            lin.bias.copy_(torch.as_tensor(intercept))
    else:
        return None
    if scaler is not None:
        mean = torch.as_tensor(np.asarray(scaler.mean_, np.float64))
        scale = torch.as_tensor(np.asarray(scaler.scale_, np.float64))
        with torch.no_grad():  # W ((x - m) / s) + b == (W / s) x + (b - W m / s)
            w = lin.weight.double() / scale
            b = lin.bias.double() - w @ mean
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    return lin


def _reproduces(est, lin, n=16):
    """Whether ``lin`` gives the fitted estimator's logits up to a per-row constant
    (the same probabilities), checked on ``n`` random embeddings around the data's
    scale: the exported model must predict what the estimator predicts."""
    import copy

    import torch

    d = lin.in_features
    Z = np.random.default_rng(0).normal(size=(n, d))
    if getattr(est.head_, "n_features_in_", d) != d:
        return False
    with torch.no_grad():
        got = copy.deepcopy(lin).double()(torch.as_tensor(Z)).numpy()
    want = np.asarray(est._forward_logits(Z), dtype=np.float64)
    if got.shape != want.shape:
        return False
    got, want = got - got.mean(1, keepdims=True), want - want.mean(1, keepdims=True)
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max())))


class _CosineHead:
    """Zero-shot head: ``scale * normalize(z) @ coef.T + intercept`` as a module."""

    @staticmethod
    def build(coef, intercept, scale):
        import torch
        from torch import nn

        class CosineHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("coef", torch.as_tensor(np.asarray(coef, np.float32)))
                self.register_buffer("intercept",
                                     torch.as_tensor(np.asarray(intercept, np.float32)))
                self.scale = float(scale)

            def forward(self, z):
                z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
                return self.scale * z @ self.coef.T + self.intercept

        return CosineHead()


def _parts(est):
    """``(backbone, head_module)`` for a fitted estimator: ``head_module`` maps the
    backbone's embeddings (or, when ``backbone`` is None, the preprocessed batch) to
    logits in ``classes_`` order."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    name = type(est).__name__
    net = getattr(est, "net_", None)
    if hasattr(est, "_export_parts"):
        return est._export_parts()
    if name == "FrozenFeatureClassifier":
        if net is not None and est.head_ is net:
            return est.backbone_, net.module_
        lin = _linear_from_sklearn(est.head_)
        if lin is None or not _reproduces(est, lin):
            raise NotImplementedError(
                f"export_onnx supports linear sklearn heads whose probabilities are the "
                f"softmax of their per-class scores (coef_/intercept_: LogisticRegression, "
                f"LinearSVC, RidgeClassifier, ...), the probe and torch heads; got "
                f"head={est.head!r}, whose predictions a linear layer does not reproduce "
                "(one-vs-one coef_, calibrated or one-vs-rest probabilities, or no coef_)."
            )
        return est.backbone_, lin
    if name in ("FineTuneClassifier", "AcceleratedFineTuneClassifier"):
        module = net.module_
        return module.backbone or est.backbone_, module.head
    if name in ("ZeroShotCLIPClassifier", "ZeroShotTextClassifier"):
        return est.backbone_, _CosineHead.build(est.coef_, est.intercept_, est.logit_scale_)
    if name == "RehearsalLearner":  # the grown head's columns, reordered as classes_
        from torch import nn

        module = net.module_
        order = np.argsort(est.class_order_, kind="stable")
        return module.backbone or est.backbone_, nn.Sequential(module.head, _Columns(order))
    from tlestimators.estimators._da import BaseDomainAdapter

    if isinstance(est, BaseDomainAdapter):  # scaler -> backbone -> bottleneck -> head
        from torch import nn

        m = net.module_
        if m.backbone is None:  # frozen: the inputs of the scaler are its embeddings
            return est.backbone_, nn.Sequential(m.scaler, m.bottleneck, m.head)
        return _Chain(m.scaler, m.backbone), nn.Sequential(m.bottleneck, m.head)
    raise NotImplementedError(
        f"export_onnx does not support {name}; supported: FrozenFeatureClassifier, "
        "FineTuneClassifier, RehearsalLearner, the domain adapters, the zero-shot "
        "classifiers and estimators that define _export_parts()."
    )


def _Columns(order):
    """A module picking logit columns in ``order`` (an ONNX Gather)."""
    import torch
    from torch import nn

    class Columns(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("order", torch.as_tensor(np.asarray(order), dtype=torch.long))

        def forward(self, z):
            return z.index_select(1, self.order)

    return Columns()


def _Chain(pre, backbone):
    """``backbone(pre(x))`` keeping the backbone's ``config`` (input scaling of DA)."""
    from torch import nn

    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre, self.backbone = pre, backbone
            self.config = backbone.config

        def forward(self, x):
            return self.backbone(self.pre(x))

        def preprocess(self, items, train=False):
            return self.backbone.preprocess(items, train=train)

    return Chain()


# --------------------------------------------------------------------------- export
def _input_spec(backbone):
    cfg = backbone.config
    spec = {"modality": cfg.modality}
    if cfg.modality in ("image", "image-text"):
        pre = _image_preprocessor(backbone)
        spec.update(input="pixel_values", input_size=list(cfg.input_size),
                    mean=list(cfg.mean), std=list(cfg.std),
                    interpolation=getattr(pre, "interpolation", cfg.interpolation),
                    crop_pct=float(getattr(pre, "crop_pct", cfg.crop_pct)))
    elif cfg.modality == "features":
        spec.update(input="features", n_features=int(cfg.in_features or 0))
    elif cfg.modality == "text":
        spec.update(input="input_ids", max_seq_length=getattr(cfg, "max_seq_length", None))
    return spec


def _image_preprocessor(backbone):
    for attr in ("_pre", "preprocessor", "_preprocessor"):
        pre = getattr(backbone, attr, None)
        if pre is not None and hasattr(pre, "crop_pct"):
            return pre
    return None


def _wrapper(backbone, head, spec):
    import torch
    from torch import nn

    modality = spec["modality"]

    class ImageGraph(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head
            self.register_buffer("mean", torch.tensor(spec["mean"]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(spec["std"]).view(1, 3, 1, 1))

        def forward(self, pixel_values):
            x = (pixel_values - self.mean) / self.std
            z = self.backbone.encode_image(x) if modality == "image-text" else self.backbone(x)
            logits = self.head(z)
            return torch.softmax(logits, dim=1), logits

    class FeatureGraph(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, features):
            logits = self.head(self.backbone(features))
            return torch.softmax(logits, dim=1), logits

    class TextGraph(nn.Module):
        def __init__(self, keys):
            super().__init__()
            self.backbone, self.head, self.keys = backbone, head, keys

        def forward(self, *tensors):
            logits = self.head(self.backbone(dict(zip(self.keys, tensors))))
            return torch.softmax(logits, dim=1), logits

    if modality in ("image", "image-text"):
        return ImageGraph()
    if modality == "features":
        return FeatureGraph()
    example = backbone.preprocess(["an example sentence", "two"], train=False)
    return TextGraph(list(example))


def export_onnx(estimator, path, *, opset=17, overwrite=False):
    """Export a fitted estimator to ONNX (see the module docstring for the layout).

    Parameters
    ----------
    estimator : fitted estimator
        FrozenFeatureClassifier, FineTuneClassifier, RehearsalLearner, DANNAdapter and
        the other domain adapters, ZeroShotCLIPClassifier, ZeroShotTextClassifier, or any
        estimator defining ``_export_parts()``.
    path : str or path-like
        Directory to create.
    opset : int, default=17
        ONNX opset version.
    overwrite : bool, default=False
        Replace an existing export directory.

    Returns
    -------
    path : pathlib.Path
    """
    import copy
    import warnings

    import torch

    _require_onnx()
    root = Path(path)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f"path {str(root)!r} exists; pass overwrite=True to replace it.")
        if not (root / "preprocessing.json").is_file():
            raise FileExistsError(f"path {str(root)!r} exists and is not an ONNX export.")
        shutil.rmtree(root)
    backbone, head = _parts(estimator)
    spec = _input_spec(backbone)
    graph = _wrapper(copy.deepcopy(backbone).float().eval(), copy.deepcopy(head).float().eval(),
                     spec).eval()
    batch = 2
    if spec["modality"] in ("image", "image-text"):
        args = (torch.rand(batch, *spec["input_size"]),)
        names = ["pixel_values"]
        axes = {"pixel_values": {0: "batch"}}
    elif spec["modality"] == "features":
        n = spec["n_features"] or int(getattr(estimator, "n_features_in_", 0))
        spec["n_features"] = n
        args = (torch.randn(batch, n),)
        names = ["features"]
        axes = {"features": {0: "batch"}}
    else:
        example = backbone.preprocess(["an example sentence", "two"], train=False)
        names = list(example)
        args = tuple(example[k] for k in names)
        axes = {k: {0: "batch", 1: "sequence"} for k in names}
        spec["inputs"] = names
    axes.update(probabilities={0: "batch"}, logits={0: "batch"})
    root.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(root / "model.onnx"), input_names=names,
                          output_names=["probabilities", "logits"], dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    classes = [c.item() if isinstance(c, np.generic) else c
               for c in np.asarray(estimator.classes_).tolist()]
    spec.update(classes=classes, estimator=type(estimator).__name__,
                backbone=getattr(backbone.config, "name", None))
    if spec["modality"] == "text":
        tok = getattr(getattr(backbone, "model", None), "tokenizer", None)
        if tok is None:
            raise NotImplementedError("text export needs a backbone with model.tokenizer.")
        tok.save_pretrained(str(root / "tokenizer"))
    (root / "preprocessing.json").write_text(json.dumps(spec, indent=1))
    return root


# --------------------------------------------------------------------------- runtime
class OnnxClassifier:
    """Run a directory written by :func:`export_onnx` in onnxruntime.

    Parameters
    ----------
    path : str or path-like
        Export directory.
    providers : list of str, default=None
        onnxruntime execution providers (default: CPU).
    """

    def __init__(self, path, providers=None):
        import onnxruntime as ort

        self.path = Path(path)
        self.spec = json.loads((self.path / "preprocessing.json").read_text())
        self.classes_ = np.asarray(self.spec["classes"])
        opts = ort.SessionOptions()
        self.session = ort.InferenceSession(str(self.path / "model.onnx"), opts,
                                            providers=providers or ["CPUExecutionProvider"])
        self._tokenizer = None
        self._pre = None

    def inputs(self, X) -> dict:
        """Raw items -> the graph's input arrays."""
        modality = self.spec["modality"]
        if modality == "features":  # sparse rows (bag-of-words) as the estimator takes them
            X = X.toarray() if hasattr(X, "toarray") else X
            return {"features": np.asarray(X, dtype=np.float32)}
        if modality == "text":
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.path / "tokenizer"))
            enc = self._tokenizer([str(t) for t in X], padding=True, truncation=True,
                                  max_length=self.spec.get("max_seq_length") or 512,
                                  return_tensors="np")
            return {k: np.asarray(enc[k], dtype=np.int64) for k in self.spec["inputs"]}
        if self._pre is None:
            from tlestimators.data import ImagePreprocessor

            self._pre = ImagePreprocessor(self.spec["input_size"], (0.0, 0.0, 0.0),
                                          (1.0, 1.0, 1.0), self.spec["interpolation"],
                                          self.spec["crop_pct"])
        from tlestimators.data import check_images

        x = self._pre(check_images(X), train=False)
        return {"pixel_values": np.ascontiguousarray(x.numpy(), dtype=np.float32)}

    def predict_proba(self, X):
        return self.session.run(["probabilities"], self.inputs(X))[0]

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
