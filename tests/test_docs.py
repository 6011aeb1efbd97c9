"""The documentation builds with warnings as errors and covers the public API.

The build does not execute the gallery's examples (``plot_gallery=False`` in
docs/conf.py); tests/test_examples.py runs them in fast mode instead.
"""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Submodules whose public names (``__all__``) the API reference must list. Upper-case
# constants are data, not API pages.
DOCUMENTED_MODULES = [
    "tlestimators",
    "tlestimators.features",
    "tlestimators.memory",
    "tlestimators.losses",
    "tlestimators.metrics",
    "tlestimators.model_selection",
    "tlestimators.callbacks",
    "tlestimators.datasets",
    "tlestimators.plotting",
    "tlestimators.distributed",
    "tlestimators.exceptions",
]

USER_GUIDE = [
    "choosing", "feature_extraction", "fine_tuning", "domain_adaptation",
    "continual_learning", "zero_shot", "scaling",
]


def _api_names():
    text = (DOCS / "api.rst").read_text()
    return set(re.findall(r"^   ([A-Za-z_][A-Za-z0-9_]*)\s*$", text, flags=re.M))


@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_api_reference_lists_every_public_name(module):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            pytest.skip(f"{module} does not exist (yet)")
        raise
    public = {
        n for n in getattr(mod, "__all__", [])
        if not n.startswith("_") and not n.isupper() and n != "__version__"
    }
    missing = sorted(public - _api_names())
    assert not missing, f"docs/api.rst does not list {module}: {missing}"


def test_user_guide_and_gallery_are_in_the_toctrees():
    index = (DOCS / "user_guide" / "index.rst").read_text()
    for page in USER_GUIDE:
        assert re.search(rf"^   {page}$", index, flags=re.M), f"{page} not in the user-guide toctree"
    top = (DOCS / "index.rst").read_text()
    for entry in ("install", "user_guide/index", "auto_examples/index", "api", "plugins"):
        assert re.search(rf"^   {re.escape(entry)}$", top, flags=re.M), entry


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="the `docs` extra is not installed (pip install -e .[docs])")
    pytest.importorskip("numpydoc", reason="the `docs` extra is not installed")
    pytest.importorskip("sphinx_gallery", reason="the `docs` extra is not installed")
    out = tmp_path / "html"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    env.pop("TLE_DOCS_RUN_EXAMPLES", None)  # never execute the gallery here
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    # The API pages were generated from the docstrings, with numpydoc sections rendered.
    page = (out / "gen_modules" / "tlestimators.plotting.plot_accuracy_matrix.html").read_text()
    assert "Parameters" in page and "labels" in page and "Lopez-Paz" in page
    for name in ("FrozenFeatureClassifier", "FineTuneClassifier"):
        if (DOCS / "api.rst").read_text().count(name):
            assert (out / "gen_modules" / f"tlestimators.{name}.html").is_file()
    for page in USER_GUIDE:
        assert (out / "user_guide" / f"{page}.html").is_file()
    # One gallery page per example script, rendered without running it.
    gallery = out / "auto_examples"
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert (gallery / f"{script.stem}.html").is_file(), f"no gallery page for {script.name}"


@pytest.mark.parametrize(
    "module",
    ["tlestimators.plotting", "tlestimators.distributed", "tlestimators.estimators.accelerated"],
)
def test_docstring_examples_run(module):
    """The Examples sections shown in the API reference are real doctests."""
    import doctest

    if module.endswith("accelerated"):
        pytest.importorskip("accelerate", reason="the `distributed` extra is not installed")
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module} has no doctest examples"
    assert result.failed == 0
