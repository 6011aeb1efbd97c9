"""Save and load fitted estimators without pickle.

:func:`save` writes a directory::

    model/
      config.json        class, parameters and fitted state as a JSON object graph
      tensors.safetensors   every torch tensor (weights, buffers), stored once
      arrays.safetensors    every numeric NumPy array (classes_, memories, means ...)
      sklearn/*.skops       pure scikit-learn parts, in skops' secure format
      README.md          the model card (:func:`tlestimators.io.model_card`)

The object graph is walked the way skops walks scikit-learn objects: every object is
written as its type's qualified name plus its state, and :func:`load` rebuilds it with
``cls.__new__(cls)`` and ``__setstate__``/``__dict__`` only for types on an allow-list
(tlestimators, scikit-learn, skorch, torch modules and optimizers, NumPy dtypes).
Nothing in the directory is executed: there is no pickle, a type outside the list is
refused with :class:`UntrustedTypeError` before anything is built, and functions may
only be referenced from the same list (for example skorch's default ``print`` sink).

skorch nets are written the skorch way (``save_params``-style): their constructor
parameters plus the module's weights; :func:`load` builds the net from those
parameters, ``initialize()``-s it and loads the weights, so nothing of skorch's
internal state (optimizer closures, hooks) has to be serialised. Optimizer state is not
saved: a loaded estimator predicts exactly as the saved one; a further ``partial_fit``
starts with a fresh optimizer, as ``RehearsalLearner`` does at each experience anyway.

Backbones whose weights come from an installed package (``config.weights`` starting
with ``"package:"``) and are unchanged are stored by reference: registry name, creation
arguments and weights fingerprint. :func:`load` rebuilds them from the package and
refuses a fingerprint mismatch (:class:`FingerprintMismatchError`). A LoRA-fine-tuned
backbone (``FineTuneClassifier(unfreeze="lora")``) over package weights is stored the
same way plus its adapter weights and LoRA settings; :func:`load` rebuilds the base,
checks its fingerprint, and merges the adapters again, as unpickling does. Pass
``include_backbone=True`` to copy the weights into the directory instead.
"""

from __future__ import annotations

import collections
import datetime
import functools
import importlib
import json
import platform
import shutil
import types
from pathlib import Path

import numpy as np

from tlestimators.exceptions import FingerprintMismatchError, TLEError

__all__ = [
    "save",
    "load",
    "UntrustedTypeError",
    "FingerprintMismatchError",
    "TRUSTED_MODULE_PREFIXES",
]

FORMAT = "tlestimators-model"
FORMAT_VERSION = 1

# Types (classes) from these modules may be rebuilt by ``load``.
TRUSTED_MODULE_PREFIXES = (
    "tlestimators.",
    "sklearn.",
    "skorch.",
    "torch.nn.",
    "torch.optim.",
    "torch.utils.data.",
    "numpy.",
    "scipy.sparse.",
    "collections.",
    "functools.",
)
# Plain functions that may be referenced (never called by load itself).
_TRUSTED_FUNCTIONS = {"builtins.print", "builtins.len"}
_TRUSTED_FUNCTION_PREFIXES = ("tlestimators.", "skorch.", "torch.nn.functional.", "sklearn.metrics.")
_BUILTIN_CONTAINERS = {"builtins.dict", "builtins.list", "builtins.tuple", "builtins.set",
                       "builtins.frozenset", "builtins.int", "builtins.float", "builtins.str",
                       "builtins.bool", "builtins.object", "builtins.type"}


class UntrustedTypeError(TLEError, TypeError):
    """A saved model names a type or function that :func:`load` will not build (its
    ``name`` attribute, when set, is the one to pass in ``trusted=``)."""


def _qualname(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _is_trusted_type_name(name: str) -> bool:
    return name in _BUILTIN_CONTAINERS or name.startswith(TRUSTED_MODULE_PREFIXES)


def _resolve(name: str, *, function: bool = False, trusted=()):
    """Import ``module.qualname`` for a trusted name, else raise."""
    if function:
        ok = name in _TRUSTED_FUNCTIONS or name.startswith(_TRUSTED_FUNCTION_PREFIXES)
    else:
        ok = _is_trusted_type_name(name)
    ok = ok or name in trusted
    if not ok or "<" in name:
        kind = "function" if function else "type"
        err = UntrustedTypeError(
            f"The saved model names the {kind} {name!r}, which tlestimators.load does not "
            f"trust (allowed: {', '.join(TRUSTED_MODULE_PREFIXES)}; pass trusted=[{name!r}] to "
            "load if you know where it comes from). Nothing was executed."
        )
        err.name = name  # what to trust (the CLI names its own flag for it)
        raise err
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise UntrustedTypeError(f"The saved model names {name!r}, which cannot be found here.")


# --------------------------------------------------------------------------- writer
class _Writer:
    def __init__(self, root: Path, include_backbone: bool):
        self.root = root
        self.include_backbone = include_backbone
        self.tensors: dict = {}
        self.arrays: dict = {}
        self.memo: dict[int, int] = {}
        self.keep: list = []  # keeps memoised objects alive so ids stay unique
        self.objects: list = []
        self.estimators: list = []  # context for backbones stored by reference
        self.n_sklearn = 0

    # A node is a JSON value; containers and objects get an id in ``objects`` so that
    # shared references (one backbone seen from two places) are written once.
    def encode(self, obj):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int) and type(obj) is int:
            return obj
        if isinstance(obj, float) and type(obj) is float:
            return obj if np.isfinite(obj) else {"$float": repr(obj)}
        if id(obj) in self.memo:
            return {"$ref": self.memo[id(obj)]}
        return self._encode_new(obj)

    def _register(self, obj, node) -> dict:
        idx = len(self.objects)
        self.objects.append(None)
        self.memo[id(obj)] = idx
        self.keep.append(obj)
        self.objects[idx] = node
        return {"$ref": idx}

    def _reserve(self, obj) -> int:
        idx = len(self.objects)
        self.objects.append(None)
        self.memo[id(obj)] = idx
        self.keep.append(obj)
        return idx

    def _encode_new(self, obj):
        import torch

        if isinstance(obj, np.generic):
            return {"$npscalar": obj.dtype.str, "value": self.encode(obj.item())}
        if isinstance(obj, np.dtype):
            return {"$dtype": obj.str if obj.kind != "O" else "object"}
        if isinstance(obj, torch.dtype):
            return {"$torch_dtype": str(obj).removeprefix("torch.")}
        if isinstance(obj, torch.device):
            return {"$torch_device": str(obj)}
        if isinstance(obj, np.ndarray):
            return self._register(obj, self._array_node(obj))
        if isinstance(obj, np.random.RandomState):
            return self._register(obj, {"$np_random_state": self.encode(obj.get_state())})
        if isinstance(obj, np.random.Generator):
            bg = obj.bit_generator
            return self._register(obj, {"$np_generator": type(bg).__name__,
                                        "state": self.encode(bg.state)})
        if isinstance(obj, torch.Generator):
            return self._register(obj, {"$torch_generator": self.encode(obj.get_state()),
                                        "device": str(obj.device)})
        if isinstance(obj, torch.Tensor):
            return self._register(obj, self._tensor_node(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            idx = self._reserve(obj)
            kind = type(obj).__name__ if type(obj) in (list, tuple, set, frozenset) else None
            if kind is None:
                raise UntrustedTypeError(f"Cannot save a {type(obj).__name__} subclass.")
            items = obj if kind in ("list", "tuple") else sorted(obj, key=repr)
            self.objects[idx] = {"$" + kind: [self.encode(v) for v in items]}
            return {"$ref": idx}
        if isinstance(obj, dict):
            idx = self._reserve(obj)
            node = {"$dict": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
            if type(obj) is not dict:
                node["type"] = _qualname(type(obj))
                if isinstance(obj, collections.defaultdict):
                    node["default_factory"] = self.encode(obj.default_factory)
            self.objects[idx] = node
            return {"$ref": idx}
        if isinstance(obj, type):
            return {"$type": _qualname(obj)}
        if isinstance(obj, functools.partial):
            idx = self._reserve(obj)
            self.objects[idx] = {"$partial": self.encode(obj.func),
                                 "args": self.encode(list(obj.args)),
                                 "keywords": self.encode(dict(obj.keywords))}
            return {"$ref": idx}
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            if "<" in obj.__qualname__:
                raise TypeError(
                    f"Cannot save {obj!r}: lambdas and local functions have no importable "
                    "name; use a module-level function or a callable class."
                )
            return {"$function": _qualname(obj)}
        return self._encode_object(obj)

    def _array_node(self, a: np.ndarray) -> dict:
        if a.dtype.kind in "biufc" and a.dtype.kind != "c":
            key = f"a{len(self.arrays)}"
            self.arrays[key] = np.ascontiguousarray(a)
            return {"$ndarray": key}
        if a.dtype.kind in "US":
            return {"$ndarray_str": a.tolist(), "dtype": a.dtype.str, "shape": list(a.shape)}
        if a.dtype.kind == "O":
            return {"$ndarray_obj": [self.encode(v) for v in a.ravel().tolist()],
                    "shape": list(a.shape)}
        raise UntrustedTypeError(f"Cannot save an array of dtype {a.dtype}.")

    def _tensor_node(self, t) -> dict:
        import torch

        key = f"t{len(self.tensors)}"
        self.tensors[key] = t.detach().to("cpu").contiguous().clone()
        node = {"$tensor": key}
        if isinstance(t, torch.nn.Parameter):
            node["parameter"] = True
            node["requires_grad"] = bool(t.requires_grad)
        return node

    def _encode_object(self, obj):
        from sklearn.base import BaseEstimator

        from tlestimators.backbones.base import Backbone

        name = _qualname(type(obj))
        if isinstance(obj, Backbone):
            info = self._backbone_info(obj)
            if info is not None:
                idx = self._reserve(obj)
                self.objects[idx] = self._backbone_node(obj, info)
                return {"$ref": idx}
        if _is_skorch_net(obj):
            return self._encode_net(obj)
        if (isinstance(obj, BaseEstimator) and name.startswith("sklearn.")
                and self._pure_sklearn(obj)):
            return self._register(obj, self._skops_node(obj))
        idx = self._reserve(obj)
        is_estimator = hasattr(obj, "backbone") and hasattr(obj, "backbone_kwargs")
        if is_estimator:
            self.estimators.append(obj)
        try:
            if hasattr(obj, "_state_for_save") and not hasattr(obj, "_modules"):
                # e.g. a LoRA FineTuneClassifier: its pickle state swaps the backbone for
                # pickled bytes; here the backbone stays and is written as adapters
                state = obj._state_for_save()
            elif type(obj).__getstate__ is not object.__getstate__ and not hasattr(obj, "_modules"):
                state = obj.__getstate__()
            elif hasattr(obj, "__dict__"):
                state = dict(vars(obj))
            else:
                raise TypeError(f"Cannot save a {name} (no __dict__ or __getstate__).")
            if _is_skorch_callback(obj):
                # a fitted LRScheduler holds the optimizer, and through it every trained
                # tensor a second time: fit-time state that ``initialize()`` rebuilds
                state = {k: (None if _is_optim_state(v) else v) for k, v in state.items()}
            if hasattr(obj, "_modules"):  # nn.Module: hooks are process state, not model state
                state = {k: (type(v)() if _is_hook_dict(k) else v) for k, v in state.items()}
            self.objects[idx] = {"$object": name, "state": self.encode(state)}
        finally:
            if is_estimator:
                self.estimators.pop()
        return {"$ref": idx}

    def _encode_net(self, net):
        idx = self._reserve(net)
        params = net.get_params(deep=False)
        node = {"$skorch": _qualname(type(net)), "params": self.encode(params),
                "initialized": bool(getattr(net, "initialized_", False))}
        if node["initialized"]:
            module = net.module_
            node["module"] = self.encode(module)
            node["history"] = self.encode(list(net.history_) if hasattr(net, "history_") else [])
            for attr in _NET_FITTED_ATTRS:
                if hasattr(net, attr):
                    node[attr] = self.encode(getattr(net, attr))
        self.objects[idx] = node
        return {"$ref": idx}

    def _backbone_info(self, bb):
        """A registry-built backbone is written as its name and creation arguments plus
        either a reference to its package weights (unchanged) or its state dict, so that
        no library internals (timm, open_clip, transformers objects) are walked. ``None``
        when the backbone cannot be rebuilt from the registry (a user's instance)."""
        if not self.estimators:
            return None
        est = self.estimators[-1]
        if not isinstance(est.backbone, str):
            return None
        try:  # the estimator's own creation arguments (defaults, pretrained=... shorthands)
            kwargs = dict(est._check_backbone_kwargs())
        except Exception:
            kwargs = dict(est.backbone_kwargs or {})
        in_features = getattr(bb.config, "in_features", None)
        if bb.config.modality == "features" and in_features is not None:
            kwargs.setdefault("in_features", in_features)
        try:
            json.dumps(kwargs)
            from tlestimators.backbones.registry import create_backbone

            fresh = create_backbone(est.backbone, **kwargs)
            fresh_fp = fresh.fingerprint()
            fresh.load_state_dict(bb.state_dict(), strict=True)
        except Exception:  # not rebuildable from the registry: walk it as an object
            return None
        return {"name": est.backbone, "kwargs": kwargs, "_fresh_fp": fresh_fp,
                "trainable": [n for n, p in bb.named_parameters() if p.requires_grad],
                "training": bool(bb.training)}

    def _backbone_node(self, bb, info):
        weights = str(getattr(bb.config, "weights", ""))
        fp = bb.fingerprint()
        fresh_fp = info.pop("_fresh_fp")
        lora = self._lora_of(bb)
        if lora is not None and weights.startswith("package:") and not self.include_backbone \
                and fresh_fp == lora["base_fingerprint"]:
            # package base weights + LoRA merged in: the base by reference, the adapters
            settings = {k: v for k, v in lora["settings"].items() if k != "family"}
            return {"$backbone_lora": {
                **info, "weights": weights, "fingerprint": lora["base_fingerprint"],
                "family": lora["settings"].get("family"), "settings": self.encode(settings),
                "adapters": {k: self.encode(v) for k, v in lora["adapters"].items()},
            }}
        if weights.startswith("package:") and not self.include_backbone and fresh_fp == fp:
            return {"$backbone_ref": {**info, "fingerprint": fp, "weights": weights}}
        state = {k: self.encode(v) for k, v in bb.state_dict().items()}
        return {"$backbone_state": {**info, "state": state}}

    def _lora_of(self, bb):
        """The ``lora_`` record of the estimator being written when ``bb`` is its fitted
        (merged) backbone whose base weights come from a package; else ``None``."""
        est = self.estimators[-1]
        lora = getattr(est, "lora_", None)
        net = getattr(est, "net_", None)
        if (not isinstance(lora, dict) or not lora.get("by_reference")
                or lora.get("adapters") is None or net is None
                or getattr(getattr(net, "module_", None), "backbone", None) is not bb):
            return None
        return lora

    def _pure_sklearn(self, obj) -> bool:
        try:
            import skops.io as sio
        except ImportError:
            return False
        try:
            blob = sio.dumps(obj)
            untrusted = sio.get_untrusted_types(data=blob)
        except Exception:
            return False
        return all(t.startswith(("sklearn.", "numpy.", "scipy.", "builtins.")) for t in untrusted)

    def _skops_node(self, obj) -> dict:
        import skops.io as sio

        rel = f"sklearn/part{self.n_sklearn}.skops"
        self.n_sklearn += 1
        path = self.root / rel
        path.parent.mkdir(exist_ok=True)
        sio.dump(obj, path)
        return {"$skops": rel}


# skorch fitted attributes that ``initialize()`` does not rebuild
_NET_FITTED_ATTRS = ("classes_inferred_",)


def _is_hook_dict(key: str) -> bool:
    return key.endswith("_hooks") or key.endswith("_hooks_with_kwargs") or key.endswith(
        "_hooks_always_called") or key == "_state_dict_pre_hooks"


def _is_skorch_callback(obj) -> bool:
    try:
        from skorch.callbacks import Callback
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Callback)


def _is_optim_state(v) -> bool:
    import torch

    return isinstance(v, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler))


def _is_skorch_net(obj) -> bool:
    try:
        from skorch.net import NeuralNet
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, NeuralNet)


# --------------------------------------------------------------------------- reader
class _Reader:
    def __init__(self, root: Path, objects: list, tensors: dict, arrays: dict, trusted=()):
        self.trusted = tuple(trusted)
        self.root = root
        self.objects = objects
        self.tensors = tensors
        self.arrays = arrays
        self.built: dict[int, object] = {}

    def check_types(self):
        """Refuse untrusted names anywhere in the graph before building anything."""
        def visit(node):
            if isinstance(node, dict):
                for key in ("$object", "$type", "$skorch"):
                    if key in node:
                        _resolve(node[key], trusted=self.trusted)
                if "type" in node and "$dict" in node:
                    _resolve(node["type"], trusted=self.trusted)
                if "$function" in node:
                    _resolve(node["$function"], function=True, trusted=self.trusted)
                for v in node.values():
                    visit(v)
            elif isinstance(node, list):
                for v in node:
                    visit(v)
        visit(self.objects)

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise ValueError("Corrupt model config: a bare list where a node was expected.")
        if "$ref" in node:
            return self._build(node["$ref"])
        if "$float" in node:
            return float(node["$float"])
        if "$npscalar" in node:
            return np.dtype(node["$npscalar"]).type(self.decode(node["value"]))
        if "$dtype" in node:
            return np.dtype(object if node["$dtype"] == "object" else node["$dtype"])
        if "$torch_dtype" in node:
            import torch

            dt = getattr(torch, node["$torch_dtype"], None)
            if not isinstance(dt, torch.dtype):
                raise UntrustedTypeError(f"Unknown torch dtype {node['$torch_dtype']!r}.")
            return dt
        if "$torch_device" in node:
            import torch

            return torch.device(node["$torch_device"])
        if "$type" in node:
            return _resolve(node["$type"], trusted=self.trusted)
        if "$function" in node:
            return _resolve(node["$function"], function=True, trusted=self.trusted)
        raise ValueError(f"Corrupt model config: unknown node {sorted(node)[:3]}.")

    def _build(self, idx: int):
        if idx in self.built:
            return self.built[idx]
        node = self.objects[idx]
        if "$ndarray" in node:
            out = self.arrays[node["$ndarray"]].copy()
        elif "$ndarray_str" in node:
            out = np.array(node["$ndarray_str"], dtype=node["dtype"]).reshape(node["shape"])
        elif "$ndarray_obj" in node:
            out = np.empty(len(node["$ndarray_obj"]), dtype=object)
            self.built[idx] = out
            for i, v in enumerate(node["$ndarray_obj"]):
                out[i] = self.decode(v)
            out = out.reshape(node["shape"])
        elif "$tensor" in node:
            import torch

            t = self.tensors[node["$tensor"]]
            out = torch.nn.Parameter(t, requires_grad=node["requires_grad"]) \
                if node.get("parameter") else t
        elif "$list" in node or "$set" in node or "$frozenset" in node or "$tuple" in node:
            kind = next(k for k in ("$list", "$tuple", "$set", "$frozenset") if k in node)
            if kind == "$list":
                out = []
                self.built[idx] = out
                out.extend(self.decode(v) for v in node[kind])
            else:
                out = {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[kind](
                    self.decode(v) for v in node[kind])
        elif "$dict" in node:
            cls = _resolve(node["type"], trusted=self.trusted) if "type" in node else dict
            if not (isinstance(cls, type) and issubclass(cls, dict)):
                raise UntrustedTypeError(f"{node['type']!r} is not a mapping type.")
            if issubclass(cls, collections.defaultdict):
                out = cls(self.decode(node.get("default_factory")))
            else:
                out = cls()
            self.built[idx] = out
            for k, v in node["$dict"]:
                out[self.decode(k)] = self.decode(v)
        elif "$partial" in node:
            out = functools.partial(self.decode(node["$partial"]), *self.decode(node["args"]),
                                    **self.decode(node["keywords"]))
        elif "$object" in node:
            cls = _resolve(node["$object"], trusted=self.trusted)
            out = cls.__new__(cls)
            self.built[idx] = out
            state = self.decode(node["state"])
            setstate = getattr(type(out), "__setstate__", None)
            if setstate is not None:  # nn.Module's restores its hook dicts too
                out.__setstate__(state)
            else:
                out.__dict__.update(state)
        elif "$np_random_state" in node:
            out = np.random.RandomState()
            out.set_state(self.decode(node["$np_random_state"]))
        elif "$np_generator" in node:
            bg = getattr(np.random, node["$np_generator"], None)
            if not (isinstance(bg, type) and issubclass(bg, np.random.BitGenerator)):
                raise UntrustedTypeError(f"Unknown bit generator {node['$np_generator']!r}.")
            out = np.random.Generator(bg())
            out.bit_generator.state = self.decode(node["state"])
        elif "$torch_generator" in node:
            import torch

            out = torch.Generator(device=node["device"])
            out.set_state(self.decode(node["$torch_generator"]))
        elif "$skorch" in node:
            out = self._build_net(idx, node)
        elif "$skops" in node:
            out = self._load_skops(node["$skops"])
        elif "$backbone_ref" in node:
            out = _backbone_from_reference(node["$backbone_ref"])
        elif "$backbone_lora" in node:
            info = node["$backbone_lora"]
            out = _backbone_from_lora(info, self.decode(info["settings"]),
                                      {k: self.decode(v) for k, v in info["adapters"].items()})
        elif "$backbone_state" in node:
            info = node["$backbone_state"]
            state = {k: self.decode(v) for k, v in info["state"].items()}
            out = _backbone_from_state(info, state)
        else:
            raise ValueError(f"Corrupt model config: unknown object node {sorted(node)[:3]}.")
        self.built[idx] = out
        return out

    def _build_net(self, idx, node):
        cls = _resolve(node["$skorch"], trusted=self.trusted)
        # registered before its parameters are decoded: parameters that point back at the
        # net (FineTuneClassifier's collate functions) must get this net, not a second one
        net = cls.__new__(cls)
        self.built[idx] = net
        net.__init__(**self.decode(node["params"]))
        if node["initialized"]:
            module = self.decode(node["module"])
            net.initialize()
            if net.module_ is not module:  # skorch re-instantiated: copy the weights in
                net.module_.load_state_dict(module.state_dict())
            from skorch.history import History

            net.history_ = History(self.decode(node["history"]))
            for attr in _NET_FITTED_ATTRS:
                if attr in node:
                    setattr(net, attr, self.decode(node[attr]))
        return net

    def _load_skops(self, rel):
        import skops.io as sio

        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"Corrupt model config: {rel!r} points outside the directory.")
        untrusted = sio.get_untrusted_types(file=path)
        bad = [t for t in untrusted if not _is_trusted_type_name(t) and t not in self.trusted]
        if bad:
            raise UntrustedTypeError(
                f"{rel} holds types tlestimators.load does not trust: {bad}. Nothing was executed."
            )
        return sio.load(path, trusted=untrusted)


def _backbone_from_state(info, state):
    from tlestimators.backbones.registry import create_backbone

    kwargs = dict(info["kwargs"])
    try:  # the weights come from the directory: skip loading the package's
        bb = create_backbone(info["name"], **{**kwargs, "pretrained": False})
        bb.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError):  # pretrained builds can carry extra modules
        bb = create_backbone(info["name"], **kwargs)
        bb.load_state_dict(state, strict=True)
    _restore_mode(bb, info)
    return bb


def _restore_mode(bb, info):
    trainable = set(info.get("trainable", ()))
    for n, p in bb.named_parameters():
        p.requires_grad_(n in trainable)
    bb.train(info.get("training", False))


def _backbone_from_reference(ref):
    from tlestimators.backbones.registry import create_backbone

    bb = create_backbone(ref["name"], **ref["kwargs"])
    fp = bb.fingerprint()
    if fp != ref["fingerprint"]:
        raise FingerprintMismatchError(
            f"The backbone {ref['name']!r} ({ref['weights']}) installed here has weights "
            f"fingerprint {fp[:16]}..., but the model was saved with {ref['fingerprint'][:16]}.... "
            "Install the package version the model was trained with, or save it with "
            "include_backbone=True."
        )
    _restore_mode(bb, ref)
    return bb


def _backbone_from_lora(info, settings, adapters):
    """Rebuild the package backbone, check its base fingerprint, put the saved LoRA
    adapters on and merge them (what fit did at its end)."""
    from tlestimators.backbones.lora import merge_saved_adapters
    from tlestimators.backbones.registry import create_backbone
    from tlestimators.features import backbone_fingerprint

    bb = create_backbone(info["name"], **info["kwargs"])
    fp = backbone_fingerprint(bb)
    if fp != info["fingerprint"]:
        raise FingerprintMismatchError(
            f"The model stores only LoRA adapters ({info.get('family')}) over the backbone "
            f"{info['name']!r} ({info['weights']}), whose weights installed here have "
            f"fingerprint {fp[:16]}..., but the adapters were trained on "
            f"{info['fingerprint'][:16]}.... Install the package version the model was "
            "trained with, or save it with include_backbone=True."
        )
    merge_saved_adapters(bb, settings, adapters)
    _restore_mode(bb, info)
    return bb


# --------------------------------------------------------------------------- public API
def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("tlestimators", "torch", "scikit-learn", "skorch", "numpy", "timm",
                 "sentence-transformers", "open_clip_torch", "safetensors", "skops"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _describe_backbone(est) -> dict | None:
    bb = getattr(est, "backbone_", None)
    if bb is None:
        return None
    cfg = getattr(bb, "config", None)
    return {"name": getattr(cfg, "name", None), "weights": getattr(cfg, "weights", None),
            "modality": getattr(cfg, "modality", None), "fingerprint": bb.fingerprint()}


def _check_save_path(path, overwrite=False, *, overwrite_flag="overwrite=True") -> Path:
    """``path`` as a Path if :func:`save` may write there, else the ``FileExistsError``
    ``save`` would raise: a missing path or an empty directory is used; a saved model is
    replaced only with ``overwrite``; anything else is never replaced. Nothing is
    written (the CLI checks ``--save`` before a search; ``overwrite_flag`` is how the
    caller's users spell the option)."""
    root = Path(path)
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return root
    if not overwrite:
        raise FileExistsError(f"path {str(root)!r} exists; pass {overwrite_flag} to replace it.")
    if not (root / "config.json").is_file():
        raise FileExistsError(
            f"path {str(root)!r} exists and is not a saved tlestimators model; refusing to "
            "overwrite it."
        )
    return root


def save(estimator, path, *, include_backbone=False, overwrite=False, card=True, scores=None,
         data_summary=None):
    """Write a fitted (or unfitted) estimator to the directory ``path`` without pickle.

    Parameters
    ----------
    estimator : estimator
        A tlestimators estimator, a scikit-learn ``Pipeline`` of them, or
        ``TransferSearchCV.best_estimator_``.
    path : str or path-like
        Directory to create.
    include_backbone : bool, default=False
        Copy the weights of package-provided backbones into the directory instead of
        storing them by reference (registry name + weights fingerprint).
    overwrite : bool, default=False
        Replace a model saved at ``path`` before. An empty directory is used without
        it; a directory that holds anything but a saved model is never replaced.
    card : bool, default=True
        Write a model card (``README.md``).
    scores : dict, default=None
        Scores to record in the model card, e.g. ``{"accuracy (held-out)": 0.93}``.
    data_summary : dict, default=None
        Training data facts for the card (sizes, class balance, domains).

    Returns
    -------
    path : pathlib.Path
    """
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_pt

    root = _check_save_path(path, overwrite)
    if root.exists():  # an empty folder made for it, or a saved model to replace
        shutil.rmtree(root)
    root.mkdir(parents=True)
    writer = _Writer(root, include_backbone)
    top = writer.encode(estimator)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": _qualname(type(estimator)),
        "params": _json_params(estimator),
        "classes": _json_classes(estimator),
        "backbone": _describe_backbone(estimator),
        "versions": _versions(),
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "root": top,
        "objects": writer.objects,
    }
    with open(root / "config.json", "w") as f:
        json.dump(config, f, indent=1, default=_json_default)
    save_pt(writer.tensors, str(root / "tensors.safetensors"))
    save_np(writer.arrays, str(root / "arrays.safetensors"))
    if card:
        from tlestimators._card import model_card

        (root / "README.md").write_text(
            model_card(estimator, config, scores=scores, data_summary=data_summary)
        )
    return root


def _json_default(o):
    raise TypeError(f"Cannot write {type(o).__name__} to config.json")


def _json_params(est) -> dict:
    out = {}
    for k, v in est.get_params(deep=False).items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = repr(v)
    return out


def _json_classes(est):
    classes = getattr(est, "classes_", None)
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]


def read_config(path) -> dict:
    """The ``config.json`` of a saved model, checked for format and version."""
    root = Path(path)
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{str(root)!r} is not a saved tlestimators model (no config.json).")
    try:
        config = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a tlestimators model config.")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format version {config.get('format_version')}; this tlestimators "
            f"reads version {FORMAT_VERSION}."
        )
    return config


def load(path, *, trusted=None):
    """Rebuild an estimator written by :func:`save`.

    Only allow-listed types are built (see the module docstring); nothing in the
    directory is executed. A backbone stored by reference is rebuilt from its package
    and must have the saved weights fingerprint.

    Parameters
    ----------
    path : str or path-like
        Directory written by :func:`save`.
    trusted : list of str, default=None
        Further fully qualified type or function names to allow, e.g. your own
        :class:`~tlestimators.Backbone` subclass (as skops' ``trusted=``).

    Raises
    ------
    UntrustedTypeError
        The directory names a type or function outside the allow-list.
    FingerprintMismatchError
        A backbone stored by reference has other weights here.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_np
    from safetensors.torch import load_file as load_pt

    root = Path(path)
    config = read_config(root)
    reader = _Reader(root, config["objects"], {}, {}, trusted=trusted or ())
    reader.check_types()
    _resolve(config["class"], trusted=reader.trusted)
    try:
        reader.tensors = load_pt(str(root / "tensors.safetensors"))
        reader.arrays = load_np(str(root / "arrays.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{root} does not hold valid safetensors files ({type(exc).__name__}: {exc}); "
            "refusing to load it."
        ) from exc
    return reader.decode(config["root"])

