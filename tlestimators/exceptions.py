"""Exceptions and warnings raised by tlestimators.

Every error derives from :class:`TLEError` so callers can catch the toolkit's own
failures in one place; each also derives from the builtin that matches its meaning
(``ValueError`` for bad names, ``RuntimeError`` for missing weights) so generic
handlers keep working.
"""

__all__ = [
    "TLEError",
    "BackboneNotFoundError",
    "BackboneNameClashError",
    "PluginError",
    "PluginLoadError",
    "WeightsUnavailableError",
    "FingerprintMismatchError",
    "TrainingDivergedError",
    "PluginWarning",
]


class TLEError(Exception):
    """Base class of every error raised by tlestimators."""


class BackboneNotFoundError(TLEError, ValueError):
    """An unknown backbone name was requested."""


class PluginError(TLEError):
    """A backbone plugin is invalid (bad factory, wrong return type)."""


class BackboneNameClashError(PluginError, ValueError):
    """Two registrants (built-in or plugins) claim the same backbone name."""


class PluginLoadError(PluginError, BackboneNotFoundError):
    """A backbone's plugin failed to import; the message names the plugin and the error.

    Also a :class:`BackboneNotFoundError` (a ``ValueError``): the name cannot be built.
    """


class WeightsUnavailableError(TLEError, RuntimeError):
    """Pretrained weights are not installed and cannot be fetched offline."""


class FingerprintMismatchError(TLEError, ValueError):
    """A backbone stored by reference (a saved or pickled model that keeps only its
    name, or only LoRA adapters over it) no longer has the weights it was fitted on."""


class TrainingDivergedError(TLEError, RuntimeError):
    """Training produced a non-finite loss."""


class PluginWarning(UserWarning):
    """A plugin failed to load; the other backbones keep working."""
