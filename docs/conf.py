"""Sphinx configuration for the tlestimators documentation.

Build with ``make docs`` (warnings are errors, references are checked with
``nitpicky``). ``make docs`` executes the gallery at its fast sizes (``TLE_FAST=1``, each
example under ~30 s on 2 CPU cores; ``TLE_FAST=0`` for the full sizes), so every card has
a thumbnail and every example page its output and figures. ``TLE_DOCS_RUN_EXAMPLES=0``
builds the pages from the sources only, in seconds: ``make test`` does that
(tests/test_docs.py) and runs the examples separately (tests/test_examples.py).
The gallery's examples run with torch's default thread count, or one thread when the
machine is oversubscribed (``TLE_DOCS_TORCH_THREADS`` overrides; see
``_ext/tle_gallery_check.py``). ``TLE_DOCS_INTERSPHINX=1`` on a machine with network
access links to the numpy/sklearn/torch/skorch docs.

The figures and tables of the user guide and of the "Compared with" page are generated
from ``benchmarks/results/`` at every build by ``_ext/tle_benchfigs.py``.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

# Building the docs must never reach a model hub: autodoc imports the modules, and
# the gallery (when executed) loads weights only from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import tlestimators  # noqa: E402

project = "tlestimators"
author = "the tlestimators developers"
copyright = "2026, the tlestimators developers"
release = tlestimators.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "tle_benchfigs",  # user-guide and compared-page figures from benchmarks/results/
    "tle_gallery_check",  # an example that plots must leave an image
]
if os.environ.get("TLE_DOCS_INTERSPHINX") == "1":
    # Off by default: fetching the inventories needs the network, and a failed
    # fetch is a warning, which -W turns into a failed build.
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable", None),
    }

# Broken internal references (a renamed class, a deleted page) fail the build.
nitpicky = True
# Without intersphinx (offline builds), references into other projects' docs cannot
# resolve; they are still checked when TLE_DOCS_INTERSPHINX=1.
_EXTERNAL = r"(sklearn|numpy|np|scipy|torch|skorch|timm|open_clip|sentence_transformers|skada|" \
    r"matplotlib|pandas|dask|ray|accelerate|joblib|PIL|peft|onnx|skops|avalanche|setfit|" \
    r"collections|os|pathlib|typing|numbers|importlib|concurrent|tempfile|warnings|" \
    r"safetensors|transformers)(\..*)?"
nitpick_ignore_regex = [] if "sphinx.ext.intersphinx" in extensions else [
    (r"py:.*", _EXTERNAL),
    # builtins and common type words of numpydoc signatures
    (r"py:.*", r"(str|int|float|bool|list|dict|tuple|set|callable|object|None|bytes|"
               r"type|Exception|ValueError|TypeError|RuntimeError|KeyError|FileNotFoundError|"
               r"UserWarning|FutureWarning|ImportError|ModuleNotFoundError|OSError|"
               r"array-like|path-like|iterable|Path|Sequence|Mapping|Any|Callable|Iterable)"),
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"

# -- API reference: autosummary + numpydoc, as in scikit-learn ------------------
# autosummary writes a stub per listed name and never deletes one: the stub of a name
# moved or removed from api.rst would linger outside every toctree and fail -W.
for _stub in (DOCS / "gen_modules").glob("*.rst"):
    _stub.unlink()
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # numpydoc "Parameters" already give the types
autodoc_member_order = "groupwise"
# A method overridden without a docstring (``forward`` of an autograd Function, say)
# would otherwise show torch's docstring, with cross-references into torch's docs.
autodoc_inherit_docstrings = False
# Heavy optional libraries are imported lazily by the package itself; nothing to mock.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Gallery --------------------------------------------------------------------
RUN_EXAMPLES = os.environ.get("TLE_DOCS_RUN_EXAMPLES", "1") != "0"
if RUN_EXAMPLES:
    # The gallery runs the examples at their fast sizes (each under ~30 s on 2 CPU cores);
    # TLE_FAST=0 builds it at the full sizes.
    os.environ.setdefault("TLE_FAST", "1")
    os.environ.setdefault("TLE_DATA", str(ROOT.parent / "shared" / "data"))
else:
    # Nothing executed is cached there, and pages of renamed or deleted examples would
    # otherwise linger (and break the toctree) until someone cleans by hand.
    import shutil

    shutil.rmtree(DOCS / "auto_examples", ignore_errors=True)
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Every script in examples/ is a gallery entry, not only plot_*.py.
    "filename_pattern": r".*\.py$",
    "ignore_pattern": r"(__init__|_helpers?)\.py$",
    # Executing the examples takes minutes; `make test` builds the pages from the source only.
    "plot_gallery": RUN_EXAMPLES,
    "image_scrapers": ("matplotlib",),
    "capture_repr": (),  # printed output is the result; a bare expression's repr is noise
    "reset_modules": ("matplotlib", "tle_gallery_check.reset_torch"),
    "reset_modules_order": "both",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("tlestimators",),
    "backreferences_dir": "gen_modules/backreferences",
    "remove_config_comments": True,
    "abort_on_example_error": RUN_EXAMPLES,
    "min_reported_time": 1,
}

# -- HTML -----------------------------------------------------------------------
# pydata-sphinx-theme, as scikit-learn and skada use.
html_theme = "pydata_sphinx_theme"
html_title = f"tlestimators {release}"
html_static_path = []
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 7,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": {
        "auto_examples/*": ["page-toc", "sg_download_links", "sg_launcher_links"],
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# A page without a left sidebar needs no empty column.
html_sidebars = {"index": [], "install": [], "compared": [], "benchmarks": [], "plugins": []}


# -- Benchmarks page: RESULTS.md and its plots, copied in at build time ------------
def _write_benchmark_results(app):
    """Render benchmarks/RESULTS.md (written by ``make bench``) into the benchmarks page.

    The markdown is shown verbatim: it is generated by scripts, and a markdown-to-rst
    conversion of arbitrary table cells could itself raise warnings (which -W forbids).
    """
    results = ROOT / "benchmarks" / "RESULTS.md"
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    lines = []
    if results.is_file():
        lines += [
            ".. literalinclude:: ../benchmarks/RESULTS.md",
            "   :language: markdown",
            "",
        ]
        pngs = sorted((ROOT / "benchmarks" / "results").glob("*.png"))
        if pngs:
            lines += ["Plots", "-----", ""]
            for png in pngs:
                lines += [
                    f".. figure:: ../benchmarks/results/{png.name}",
                    "   :width: 80%",
                    "",
                    f"   ``{png.name}``",
                    "",
                ]
    else:
        lines += ["``benchmarks/RESULTS.md`` has not been generated yet: run ``make bench``.", ""]
    text = "\n".join(lines)
    target = out / "benchmark_results.rst"
    # Rewrite only on change so Sphinx's incremental build stays incremental.
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn generates ``set_{fit,score,...}_request`` on every estimator whose
    # methods take metadata; their docstrings point into sklearn's glossary. They are
    # documented once, in scikit-learn's metadata-routing guide.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("builder-inited", _write_benchmark_results)
    app.connect("autodoc-skip-member", _skip_member)
