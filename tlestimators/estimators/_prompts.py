"""Prompts of the zero-shot classifiers: class words x templates -> ``{label: [prompt]}``.

Kept apart from the estimators so that they read as parameters, fit and predict; the
rules here (placeholders, per-class prompt lists, label look-up) are shared by the CLIP
and the text classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["template_set", "class_words", "check_templates", "build_prompts",
           "class_prompt_embeddings", "TEXT_TEMPLATES"]

#: The default prompts of :class:`~tlestimators.ZeroShotTextClassifier`: generic,
#: domain-free templates whose embeddings are averaged per class (chosen on TREC and
#: SMS spam with bare class names; see ``benchmarks/results/zeroshot.md``).
TEXT_TEMPLATES = ("{}", "This text is about {}.", "A text about {}.", "It is about {}.",
                  "This is an example of {}.")


def template_set(name: str) -> list[str]:
    """One of open_clip's published ImageNet prompt sets, as format strings with ``{}``.

    ``"openai"``: the 80 templates of Radford et al. (2021); ``"simple"``: open_clip's
    short set of 2. Read from the installed open_clip at run time.
    """
    try:
        from open_clip import zero_shot_metadata as meta
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("template sets 'openai'/'simple' are read from open_clip: "
                          "`pip install open_clip_torch`.") from exc
    sets = {"openai": meta.OPENAI_IMAGENET_TEMPLATES, "simple": meta.SIMPLE_IMAGENET_TEMPLATES}
    if name not in sets:
        raise ValueError(f"template set must be one of {sorted(sets)}, got {name!r}.")
    # open_clip stores them as callables (lambda c: f"a photo of a {c}."); calling them
    # with "{}" gives format strings, which pickle and print.
    return [t("{}") if callable(t) else str(t) for t in sets[name]]


def _has_placeholder(t: str) -> bool:
    return "{}" in t or "{c}" in t


def _fill(template, name: str) -> str:
    if callable(template):
        return str(template(name))
    # replace, not str.format: class names and prompts may hold other braces
    return template.replace("{c}", name).replace("{}", name)


def _r(label) -> str:
    """repr of a label as the user wrote it (``'c'``, not ``np.str_('c')``)."""
    return repr(label.item() if isinstance(label, np.generic) else label)


def _words(value, name) -> list[str]:
    """A name/description (str) or a non-empty list of them -> list of str."""
    words = [value] if isinstance(value, str) else value
    if (not isinstance(words, Sequence) or isinstance(words, bytes) or not words
            or not all(isinstance(w, str) and w.strip() for w in words)):
        raise ValueError(f"{name} must be a non-empty str or a non-empty list of str, got "
                         f"{value!r}.")
    return list(words)


def _lookup(mapping, label, param):
    """``mapping[label]``, also finding ``np.int64(3)`` under ``3`` and ``"3"``."""
    for key in (label, label.item() if hasattr(label, "item") else label, str(label)):
        try:
            if key in mapping:
                return mapping[key]
        except TypeError:
            continue
    raise ValueError(
        f"{param} has no entry for label {_r(label)}, which is in y; {param} must cover "
        f"every class (its keys: {list(mapping)[:10]})."
    )


def class_words(names, classes) -> dict:
    """``{label: [name or description, ...]}`` from a ``class_names`` parameter."""
    if names is None:
        return {c: [str(c).replace("_", " ")] for c in classes}
    if isinstance(names, Mapping):
        return {c: _words(_lookup(names, c, "class_names"), f"class_names[{_r(c)}]")
                for c in classes}
    if len(names) != len(classes):
        raise ValueError(
            f"class_names has {len(names)} entries but y has {len(classes)} classes "
            f"({classes.tolist()[:10]}); a list must give one name per sorted label, "
            "or pass a dict {label: name}."
        )
    return {c: _words(n, f"class_names[{i}]") for i, (c, n) in enumerate(zip(classes, names))}


def check_templates(templates, default, named):
    """A ``templates`` parameter as a list of templates (str with a placeholder, or
    callables), or None when it is a per-class mapping. ``default()`` gives the list for
    None; ``named(name)`` the list for "openai"/"simple"."""
    t = templates
    if t is None:
        return default()
    if isinstance(t, Mapping):
        return None
    if isinstance(t, str):
        if t in ("openai", "simple"):
            return named(t)
        t = [t]
    if len(t) == 0:
        raise ValueError("templates is empty: give at least one format string with a '{}'.")
    for i, tmpl in enumerate(t):
        if callable(tmpl):
            continue
        if not isinstance(tmpl, str):
            raise TypeError(f"templates[{i}] is {type(tmpl).__name__}; expected a str.")
        if not _has_placeholder(tmpl):
            raise ValueError(
                f"templates[{i}] = {tmpl!r} has no placeholder: write '{{}}' or '{{c}}' "
                "where the class name goes, e.g. 'a photo of a {}.'."
            )
    return list(t)


def build_prompts(templates, template_list, words, classes) -> dict:
    """``{label: [prompt, ...]}`` for every class, in ``classes`` order.

    ``template_list`` is :func:`check_templates`' result; None means ``templates`` is a
    per-class mapping of full prompts (CuPL-style), where a placeholder is filled with
    each class word. The same prompt twice would weigh double, so duplicates go.
    """
    prompts = {}
    for label in classes:
        if template_list is None:
            given = _lookup(templates, label, "templates")
            given = [given] if isinstance(given, str) else given
            if not isinstance(given, Sequence) or len(given) == 0 or not all(
                    isinstance(p, str) and p.strip() for p in given):
                raise ValueError(
                    f"templates[{_r(label)}] must be a non-empty list of non-empty prompt "
                    f"strings, got {given!r}."
                )
            if any(_has_placeholder(g) for g in given):
                given = [_fill(g, w) for w in words[label] for g in given]
        else:
            given = [_fill(t, w) for w in words[label] for t in template_list]
        prompts[label] = list(dict.fromkeys(given))
    return prompts


def class_prompt_embeddings(embed, prompts, classes):
    """One unit vector per class from its prompts: the mean of the L2-normalised prompt
    embeddings, renormalised (float64; CLIP's zero-shot recipe). The class weights of
    the zero-shot classifiers and the label-name prior of the contrastive few-shot
    head. ``embed`` maps a list of prompts to their embeddings (one call for all)."""
    from tlestimators.estimators._fewshot import normalize

    flat = [p for label in classes for p in prompts[label]]
    emb = normalize(np.asarray(embed(flat), dtype=np.float64))
    bounds = np.cumsum([0] + [len(prompts[label]) for label in classes])
    return normalize(np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds, bounds[1:])]))
