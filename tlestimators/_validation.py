"""Small checks shared by every layer, where sklearn's ``_parameter_constraints`` do not fit.

- :func:`resolve_device`: ``"auto"`` -> ``"cuda"``/``"cpu"``; validates the rest.
- :func:`check_positive_int`: an int ``>= minimum`` (bools refused), naming the argument.
- :func:`check_random_state_int` and :func:`torch_seed`: ``random_state`` -> torch seed,
  and a context manager that seeds torch in a forked RNG (the caller's RNG is untouched).
- :func:`renamed_param` and :func:`deprecated_value`: the deprecation pattern for the
  vocabulary of issue 10 (an old keyword defaults to ``"deprecated"``; when set it
  warns with a ``FutureWarning`` naming the new parameter and its value is used).

This module imports nothing from tlestimators, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np

__all__ = [
    "DEPRECATED",
    "check_positive_int",
    "check_random_state_int",
    "deprecated_value",
    "renamed_param",
    "resolve_device",
    "torch_seed",
]

#: Default of a renamed (deprecated) keyword: "not given".
DEPRECATED = "deprecated"


def resolve_device(device) -> str:
    """``"auto"``/``None`` -> ``"cuda"`` when available, else ``"cpu"``; validates the rest."""
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}.")
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here.")
    return device


def check_positive_int(value, name, minimum=1):
    """``int(value)`` if it is an integer ``>= minimum`` (not a bool), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_random_state_int(random_state) -> int | None:
    """A torch seed from ``random_state``: None, an int, or a ``np.random.RandomState``
    (which is drawn from, as sklearn does)."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a RandomState, got {random_state!r}.")


@contextlib.contextmanager
def torch_seed(seed):
    """Seed torch (CPU and every CUDA device) inside a forked RNG; no-op for ``None``.

    ``seed`` is an int or anything :func:`check_random_state_int` accepts.
    """
    seed = check_random_state_int(seed)
    if seed is None:
        yield
        return
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def renamed_param(estimator, old, new, *, version="0.2", removed="0.4"):
    """The value of parameter ``new``, or of the deprecated ``old`` one when it was set.

    The sklearn pattern for a renamed parameter: ``old`` stays a keyword for one
    release with default ``"deprecated"``; when the user sets it, a ``FutureWarning``
    names the new parameter and the old value is used. Setting both (``new`` away from
    its default in the estimator's signature) raises a ``ValueError``.

    >>> class E:
    ...     def __init__(self, max_epochs=10, epochs_per_experience="deprecated"):
    ...         self.max_epochs, self.epochs_per_experience = max_epochs, epochs_per_experience
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     renamed_param(E(epochs_per_experience=3), "epochs_per_experience", "max_epochs")
    3
    >>> "max_epochs" in str(w[0].message)
    True
    """
    import inspect

    old_value = getattr(estimator, old)
    if isinstance(old_value, str) and old_value == DEPRECATED:
        return getattr(estimator, new)
    name = type(estimator).__name__
    default = inspect.signature(type(estimator)).parameters[new].default
    new_value = getattr(estimator, new)
    if new_value is not default and new_value != default:
        raise ValueError(
            f"{name}: both `{new}`={new_value!r} and its deprecated alias "
            f"`{old}`={old_value!r} are set; pass `{new}` only."
        )
    warnings.warn(
        f"{name}: `{old}` was renamed to `{new}` in {version} and will "
        f"be removed in {removed}; pass {new}={old_value!r} instead.",
        FutureWarning,
        stacklevel=3,
    )
    return old_value


def deprecated_value(value, aliases, name, *, version="0.2", removed="0.4"):
    """Map an old spelling of a parameter value to the new one with a ``FutureWarning``.

    ``aliases`` is ``{old_value: new_value}``; other values are returned unchanged.
    """
    if isinstance(value, str) and value in aliases:
        new = aliases[value]
        warnings.warn(
            f"{name}={value!r} is deprecated since {version} and will be removed in "
            f"{removed}; use {name}={new!r} (same meaning).",
            FutureWarning,
            stacklevel=3,
        )
        return new
    return value
