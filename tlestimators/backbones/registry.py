"""Backbone registry: built-in factories plus plugins found through entry points.

Modelled on timm's ``_registry`` (a dict of factories keyed by name, a decorator to
register, ``list_models`` with fnmatch patterns) and on xarray/fsspec plugin loading
(entry points are read on first lookup, a plugin's module is imported on first use of
that plugin, a broken plugin is a warning naming it, the result is cached with a
function to refresh it). The registry never imports the built-in adapters: the
``tlestimators.backbones`` package imports them after it, and each registers itself
with :func:`register_backbone`, so no import cycle is needed.

Names are lowercase. A name ending in ``/`` registers a *family*: ``timm/`` builds
``timm/<any timm model>``; the part after the slash is passed to the factory as its
first argument, with its case kept (``sentence-transformers/<local dir>`` holds a path).
``/`` may appear only at the end of a name: ``<family>/<model>`` belongs to the family,
and registering it separately is a name clash like any other taken name.

Plugins declare, in their ``pyproject.toml``::

    [project.entry-points."tlestimators.backbones"]
    my_net = "my_pkg.backbones:create_my_net"

The factory is called as ``factory(pretrained=True, weights=None, **kwargs)`` (family
factories get the suffix first) and must return a :class:`~tlestimators.backbones.base.Backbone`.
A factory may carry a ``modality`` attribute so estimators know, before building it,
whether to pass ``in_features`` (``"features"`` backbones).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlestimators.exceptions import (
    BackboneNameClashError,
    BackboneNotFoundError,
    PluginError,
    PluginLoadError,
    PluginWarning,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "register_backbone",
    "create_backbone",
    "list_backbones",
    "backbone_info",
    "backbone_modality",
    "refresh_backbones",
]

ENTRY_POINT_GROUP = "tlestimators.backbones"


@dataclass
class _Entry:
    name: str
    source: str  # "built-in (module.factory)" or "plugin <dist> (<ep name> = <ep value>)"
    factory: Callable[..., Any] | None = None
    entry_point: importlib.metadata.EntryPoint | None = None
    modality: str | None = None
    description: str = ""
    error: str | None = None  # why a plugin failed to load, once it has

    @property
    def is_family(self) -> bool:
        return self.name.endswith("/")

    def load(self) -> Callable[..., Any]:
        """The factory; a plugin's module is imported here, on first use of that plugin.

        A plugin that fails to import (or is not callable) warns once, naming itself and
        the error, and raises :class:`PluginLoadError` now and on every later use.
        """
        if self.factory is not None:
            return self.factory
        if self.error is None:
            try:
                factory = self.entry_point.load()
                if not callable(factory):
                    raise PluginError(f"entry point {self.entry_point.value!r} is not callable")
            except Exception as exc:  # a broken plugin must not break the others
                self.error = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"tlestimators backbone plugin {self.entry_point.name!r} from "
                    f"{_dist_name(self.entry_point)} failed to load and is skipped: "
                    f"{self.error}",
                    PluginWarning,
                    stacklevel=3,
                )
                raise PluginLoadError(self._failure()) from exc
            doc = (factory.__doc__ or "").strip().splitlines()
            self.description = self.description or (doc[0] if doc else "")
            self.modality = self.modality or getattr(factory, "modality", None)
            self.factory = factory
            return factory
        raise PluginLoadError(self._failure())

    def _failure(self) -> str:
        return (
            f"Backbone {self.name!r} comes from {self.source}, which failed to load: "
            f"{self.error}. Fix or reinstall that plugin, or uninstall it."
        )


_BUILTINS: dict[str, _Entry] = {}
_PLUGINS: dict[str, _Entry] | None = None  # None until discovered


def _family_of(name: str, entries) -> _Entry | None:
    """The family that would build ``name`` (``"timm/"`` for ``"timm/resnet18"``)."""
    if "/" in name.rstrip("/"):
        return entries.get(name.split("/", 1)[0] + "/")
    return None


def _check_free(name: str, source: str, *registries: dict[str, _Entry]) -> None:
    """Raise the clash error if ``name`` is taken, by the same name or by a family that
    already builds it (``"timm/resnet18"`` belongs to ``"timm/"``)."""
    for entries in registries:
        other = entries.get(name) or _family_of(name, entries)
        if other is not None:
            taken = "is registered" if other.name == name else f"belongs to family {other.name!r}"
            raise BackboneNameClashError(
                f"Backbone name {name!r} {taken}: by {other.source}; also claimed by "
                f"{source}. Uninstall or rename one of them."
            )


def _check_name(name: str, slash: bool = True) -> None:
    if not isinstance(name, str) or not name or name != name.strip() or name != name.lower():
        raise ValueError(f"Backbone names must be non-empty and lowercase, got {name!r}.")
    if slash and "/" in name[:-1]:
        raise ValueError(
            f"Backbone name {name!r}: '/' may only end a name, which then registers a family "
            f"('{name.split('/', 1)[0]}/' would build '{name}'); use '-' or '_' instead."
        )


def register_backbone(
    name: str, *, modality: str | None = None, description: str | None = None
) -> Callable:
    """Decorator registering a backbone factory under ``name``.

    Parameters
    ----------
    name : str
        Lowercase registry name; end it with ``/`` to register a family whose
        factory takes the rest of the name as its first argument. A ``/`` anywhere
        else is refused: ``<family>/<model>`` names belong to their family.
    modality : str, default=None
        The modality of the backbones the factory builds, when fixed.
    description : str, default=None
        One line shown by ``list-backbones``/``info``; defaults to the docstring's first line.

    Raises
    ------
    BackboneNameClashError
        When ``name`` is taken: registered already, declared by an installed plugin, or a
        member of a registered family (``"timm/resnet18"``).
    """
    _check_name(name, slash=False)

    def decorator(factory):
        where = f"{factory.__module__}.{factory.__qualname__}"
        source = (f"built-in ({where})" if factory.__module__.startswith("tlestimators.")
                  else f"register_backbone ({where})")
        _check_free(name, source, _BUILTINS, _PLUGINS or {})
        _check_name(name)
        doc = (factory.__doc__ or "").strip().splitlines()
        _BUILTINS[name] = _Entry(
            name=name,
            source=source,
            factory=factory,
            modality=modality,
            description=description or (doc[0] if doc else ""),
        )
        factory.modality = modality
        return factory

    return decorator


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _dist_name(ep) -> str:
    return getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"


def _discover_plugins() -> dict[str, _Entry]:
    """Read the entry points (names only: no plugin module is imported here)."""
    global _PLUGINS
    if _PLUGINS is not None:
        return _PLUGINS
    found: dict[str, _Entry] = {}
    # Families and plain names first, so that a member name ("fam/x") meets its family
    # as a clash whatever order the entry points come in.
    eps = sorted(_entry_points(), key=lambda ep: "/" in ep.name.strip().rstrip("/"))
    for ep in eps:
        source = f"plugin {_dist_name(ep)} ({ep.name} = {ep.value})"
        name = ep.name.strip().lower()
        _check_free(name, source, _BUILTINS, found)
        try:
            _check_name(name)
        except ValueError as exc:
            warnings.warn(
                f"tlestimators backbone plugin {ep.name!r} from {_dist_name(ep)} is skipped: "
                f"{exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        found[name] = _Entry(name=name, source=source, entry_point=ep)
    _PLUGINS = found
    return found


def refresh_backbones() -> None:
    """Forget discovered plugins; the next lookup reads the entry points again."""
    global _PLUGINS
    _PLUGINS = None


def _all_entries() -> dict[str, _Entry]:
    plugins = _discover_plugins()
    return {**_BUILTINS, **plugins}


def _resolve(name: str, allow_family: bool = False) -> tuple[_Entry, str | None]:
    if not isinstance(name, str) or not name:
        raise TypeError(f"backbone must be a non-empty str, got {name!r}.")
    entries = _all_entries()
    key = name.lower()
    if key in entries and (allow_family or not entries[key].is_family):
        return entries[key], None
    if "/" in name:
        prefix, rest = name.split("/", 1)
        fam = entries.get(prefix.lower() + "/")
        if fam is not None:
            if not rest:
                raise BackboneNotFoundError(
                    f"Backbone family {fam.name!r} needs a model after the slash, e.g. "
                    f"'{fam.name}<model>'."
                )
            return fam, rest
    available = sorted(entries)
    close = difflib.get_close_matches(key, available, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    failed = [f"{e.source}: {e.error}" for e in entries.values() if e.error is not None]
    also = f" Plugins that failed to load: {'; '.join(failed)}." if failed else ""
    raise BackboneNotFoundError(
        f"Unknown backbone {name!r}.{hint} Available: {', '.join(available)} "
        f"(names ending in '/' take a model after the slash).{also}"
    )


def backbone_modality(name: str) -> str | None:
    """The modality a name builds, if known without building it (else None)."""
    entry, _ = _resolve(name)
    entry.load()
    return entry.modality


def create_backbone(name: str, pretrained: bool = True, weights=None, **kwargs):
    """Build a backbone by registry name.

    Parameters
    ----------
    name : str
        A name from :func:`list_backbones`, or ``<family>/<model>``.
    pretrained : bool, default=True
        Load the pretrained weights the backbone ships with (installed package or
        library cache). Never touches the network unless the user asked for a hub tag.
    weights : str or path-like, default=None
        Local weights file (safetensors or torch state dict) overriding ``pretrained``.
    **kwargs
        Passed to the factory (e.g. ``img_size`` or ``hidden_sizes``).

    Returns
    -------
    backbone : Backbone
    """
    from tlestimators.backbones.base import Backbone

    entry, rest = _resolve(name)
    factory = entry.load()
    args = (rest,) if rest is not None else ()
    model = factory(*args, pretrained=pretrained, weights=weights, **kwargs)
    if not isinstance(model, Backbone):
        raise PluginError(
            f"Factory for backbone {name!r} ({entry.source}) returned "
            f"{type(model).__name__}, expected a tlestimators Backbone."
        )
    return model


def list_backbones(pattern: str | None = None) -> list[str]:
    """Sorted registry names, optionally filtered with an fnmatch ``pattern``."""
    names = sorted(_all_entries())
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern.lower())]
    return names


def backbone_info(name: str, pretrained: bool = False) -> dict[str, Any]:
    """Where a backbone comes from and, for concrete names, its config.

    Parameters
    ----------
    name : str
        A registry name; a family name (``"timm/"``) reports only its source and
        description.
    pretrained : bool, default=False
        Build with ``pretrained=True`` to report where the pretrained weights come from
        (``config["weights"]``). When they are unavailable, ``weights_error`` says why and
        the config comes from a random-init build. The default builds with
        ``pretrained=False``, which is cheap for every built-in.
    """
    from tlestimators.exceptions import WeightsUnavailableError

    entry, rest = _resolve(name, allow_family=True)
    entry.load()
    info = {
        "name": name if rest is not None else entry.name,
        "source": entry.source,
        "description": entry.description,
        "modality": entry.modality,
    }
    if entry.is_family and rest is None:
        return info
    kwargs = {"in_features": 8} if entry.modality == "features" else {}
    try:
        try:
            model = create_backbone(name, pretrained=pretrained, **kwargs)
        except WeightsUnavailableError as exc:
            if not pretrained:
                raise
            info["weights_error"] = str(exc)
            model = create_backbone(name, pretrained=False, **kwargs)
    except Exception as exc:  # info must still say where the name comes from
        info["config_error"] = f"{type(exc).__name__}: {exc}"
        return info
    info["config"] = model.config.to_dict()
    info["modality"] = model.config.modality
    info["num_parameters"] = sum(p.numel() for p in model.parameters())
    return info
