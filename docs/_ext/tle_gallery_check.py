"""Fail the docs build when a gallery example that plots produced no image.

sphinx-gallery shows its placeholder thumbnail, silently, when an executed example drew
nothing it could scrape: a figure saved to a file only (``Figure.savefig``) or closed
before the scraper ran. An example whose source plots must leave at least one
``images/sphx_glr_<name>_*.png``. Runs after sphinx-gallery has executed the examples
(same ``builder-inited`` event, later priority); a no-op when the gallery is not executed.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.errors import ExtensionError

# What "this example plots" means: pyplot, an Axes method, or one of our plot_* helpers.
PLOTS = re.compile(r"\b(plt\.|pyplot|matplotlib|\.imshow\(|\.plot\(|\.bar\(|\.scatter\(|"
                   r"plot_\w+\()")


def example_plots(source: str) -> bool:
    """Whether an example's source draws a figure (comments and docstrings ignored)."""
    code = re.sub(r'"""[\s\S]*?"""', "", source)
    code = "\n".join(line.split("#", 1)[0] for line in code.splitlines())
    return bool(PLOTS.search(code))


def examples_without_images(examples_dir, gallery_dir):
    """Names of the examples in ``examples_dir`` that plot but have no image in ``gallery_dir``."""
    bad = []
    for script in sorted(Path(examples_dir).glob("*.py")):
        if script.name.startswith("_") or not example_plots(script.read_text()):
            continue
        if not list((Path(gallery_dir) / "images").glob(f"sphx_glr_{script.stem}_*.png")):
            bad.append(script.stem)
    return bad


def _check(app):
    conf = app.config.sphinx_gallery_conf
    if not conf.get("plot_gallery") or conf.get("plot_gallery") == "False":
        return
    srcdir = Path(app.srcdir)
    bad = []
    for ex, gal in zip(_as_list(conf["examples_dirs"]), _as_list(conf["gallery_dirs"])):
        bad += examples_without_images(srcdir / ex, srcdir / gal)
    if bad:
        raise ExtensionError(
            f"gallery example(s) {bad} plot but produced no image: draw with matplotlib.pyplot "
            "(sphinx-gallery scrapes open pyplot figures), not only Figure.savefig."
        )


def _as_list(x):
    return [x] if isinstance(x, str) else list(x)


def setup(app):
    # sphinx-gallery generates (and executes) the gallery at builder-inited, priority 500.
    app.connect("builder-inited", _check, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


_TORCH_THREADS = []


def gallery_threads(default):
    """Torch threads for the gallery's examples: ``$TLE_DOCS_TORCH_THREADS`` when set, else
    one thread on an oversubscribed machine (load average above the core count), else
    ``default`` (torch's own). Two spinning OpenMP threads on a 2-core machine shared with
    other jobs made an example 3-5x slower than one thread (grid_search_strategies: over
    25 min in the gallery vs 4.8 min alone with one thread, at load ~25)."""
    import os

    env = os.environ.get("TLE_DOCS_TORCH_THREADS")
    if env:
        return max(1, int(env))
    try:
        loaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        loaded = False
    return 1 if loaded else default


def reset_torch(gallery_conf, fname, when=None):
    """sphinx-gallery ``reset_modules`` entry: every example starts with the same thread
    count (:func:`gallery_threads`; an example may pin ``torch.set_num_threads(1)``, and
    the gallery runs all examples in one process) and the same seed."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    if not _TORCH_THREADS:
        _TORCH_THREADS.append(torch.get_num_threads())
    n = gallery_threads(_TORCH_THREADS[0])
    torch.set_num_threads(n)
    try:  # numpy/scipy's BLAS too (LinearProbeCV's L-BFGS runs there), as OMP_NUM_THREADS would
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    torch.manual_seed(0)
