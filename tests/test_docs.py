"""The documentation builds with warnings as errors, broken internal references fail it,
it covers the public API, and its measured figures come from the benchmark results.

The build here does not execute the gallery's examples (``TLE_DOCS_RUN_EXAMPLES=0``;
``make docs`` does); tests/test_examples.py runs them in fast mode instead, and checks
that an example that plots leaves a figure.
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
sys.path.insert(0, str(DOCS / "_ext"))

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
    "tlestimators.io",
    "tlestimators.export",
    "tlestimators.probe",
    "tlestimators.skada_bridge",
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
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
               TLE_DOCS_RUN_EXAMPLES="0")  # never execute the gallery here
    env.pop("TLE_DOCS_INTERSPHINX", None)  # offline: external references are not checked
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
    # The theme is the field's, and the compared page and the measured figures are in.
    assert "pydata-sphinx-theme" in (out / "index.html").read_text() or (
        out / "_static" / "styles" / "pydata-sphinx-theme.css").is_file()
    compared = (out / "compared.html").read_text()
    assert "skada" in compared and "Avalanche" in compared and "Measured by" in compared
    for page in USER_GUIDE:
        html = (out / "user_guide" / f"{page}.html").read_text()
        assert "Measured by" in html, f"{page}: no measured table"
        assert re.search(r'<img [^>]*src="\.\./_images/[^"]+\.png"', html), f"{page}: no figure"


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


# -- the docs build checks itself ------------------------------------------------------
def test_build_fails_on_broken_internal_references():
    """``nitpicky`` makes an unresolved :class:/:func:/:mod: reference a warning, which
    ``-W`` turns into a failed build; only other projects' names are exempt offline."""
    text = (DOCS / "conf.py").read_text()
    assert re.search(r"^nitpicky = True$", text, flags=re.M)
    conf = {}
    env = dict(os.environ)
    try:
        os.environ["TLE_DOCS_RUN_EXAMPLES"] = "0"
        exec(compile(text, str(DOCS / "conf.py"), "exec"), {"__file__": str(DOCS / "conf.py")}, conf)
    finally:
        os.environ.clear()
        os.environ.update(env)
    pattern = re.compile(conf["nitpick_ignore_regex"][0][1])
    assert pattern.fullmatch("sklearn.pipeline.Pipeline")
    assert not pattern.fullmatch("tlestimators.FineTuneClassifier")
    assert not any(re.fullmatch(t, "tlestimators.Nope") for _, t in conf["nitpick_ignore_regex"])
    assert "tle_gallery_check" in conf["extensions"]


def test_gallery_check_finds_an_example_that_plots_without_an_image(tmp_path):
    from tle_gallery_check import example_plots, examples_without_images

    ex, gal = tmp_path / "examples", tmp_path / "auto_examples"
    (gal / "images").mkdir(parents=True)
    ex.mkdir()
    (ex / "draws.py").write_text('"""T\n=\n"""\nimport matplotlib.pyplot as plt\nplt.plot([1])\n')
    (ex / "saves_only.py").write_text("fig = make()\nfig.savefig('x.png')  # plt. in a comment\n")
    (ex / "prints.py").write_text('"""uses plt.plot in prose only"""\nprint(1)\n')
    assert example_plots((ex / "draws.py").read_text())
    assert not example_plots((ex / "prints.py").read_text())
    assert examples_without_images(ex, gal) == ["draws"]
    (gal / "images" / "sphx_glr_draws_001.png").write_bytes(b"png")
    assert examples_without_images(ex, gal) == []


@pytest.mark.parametrize("name", ["quickstart", "continual_learning", "domain_adaptation",
                                  "zero_shot_text", "grid_search_strategies", "strategy_search"])
def test_the_promised_gallery_figures_are_drawn(name):
    """These examples back the issue's figures (learning curve, accuracy matrices, DA
    selection curve, zero/few-shot curve, score against cost): each must plot."""
    from tle_gallery_check import example_plots

    assert example_plots((ROOT / "examples" / f"{name}.py").read_text())


# -- figures and tables generated from benchmarks/results/ -------------------------------
def test_every_user_guide_page_gets_a_measured_figure_from_the_results(tmp_path):
    pytest.importorskip("matplotlib")
    import tle_benchfigs

    figures = tle_benchfigs.generate(out=tmp_path)
    for page in USER_GUIDE:
        rst = (tmp_path / "measured" / f"{page}.rst").read_text()
        assert figures[page], f"{page}: no figure generated from benchmarks/results/"
        for name in figures[page]:
            png = tmp_path / "figures" / name
            assert png.stat().st_size > 5000, f"{page}: {name} is empty"
        # every table says what produced it and when
        assert "*Measured by* ``python benchmarks/bench_" in rst, page
        assert re.search(r"on 20\d\d-\d\d-\d\d", rst), page
        # and the page really includes it (the figures live at the page's end)
        src = (DOCS / "user_guide" / f"{page}.rst").read_text()
        assert f"_generated/measured/{page}.rst" in src, f"{page} does not include its figures"
    for name in ("da", "continual", "setfit", "sklearn", "embedding", "open_clip"):
        assert (tmp_path / "compared" / f"{name}.rst").is_file()
        assert f"_generated/compared/{name}.rst" in (DOCS / "compared.rst").read_text()


def test_results_parser_reads_tables_commands_and_dates(tmp_path):
    import tle_benchfigs as bf

    (tmp_path / "transfer.md").write_text(
        "## Transfer\n\n### sklearn digits: labels per class vs test accuracy\n\n"
        "_`python benchmarks/bench_transfer.py --sections digits` on x86_64. 2031-01-02 03:04._\n\n"
        "| labels per class | model | training | test accuracy | wall s |\n|---|---|---|---|---|\n"
        "| 10 (100 images) | frozen | | 0.70 | 1 |\n| 10 (100 images) | fine-tuned | 3 | 0.75 | 9 |\n"
        "| all (898 images) | frozen | | 0.89 | 1 |\n| all (898 images) | fine-tuned | 3 | **0.94** | 9 |\n"
    )
    (t,) = bf.parse_results(tmp_path)
    assert t.command == "python benchmarks/bench_transfer.py --sections digits"
    assert t.date == "2031-01-02 03:04"
    assert t.in_heading("digits") and t.col("test", "accuracy") == 3
    assert bf.num(t.rows[3][3]) == 0.94 and bf.num_sd("0.611 ± 0.036 (5 draws)") == (0.611, 0.036)
    out = tmp_path / "out"
    figures = bf.generate(results_dir=tmp_path, out=out)
    assert figures["fine_tuning"] == ["digits_learning_curve.png"]
    # a table that is not there yet: the page says which command produces it, no crash
    da = (out / "measured" / "domain_adaptation.rst").read_text()
    assert ".. note::" in da and "bench_" in da
    # markdown cells become safe reST: escapes, bold kept
    assert bf.rst_cell("**82.2**") == "**82.2**"
    assert bf.rst_cell("a_b_ | c*") == "a\\_b\\_ \\| c\\*"


def test_comparison_verdicts_count_losses_and_ties():
    from tle_benchfigs import Versus

    assert Versus("t", "ours", 80.0, "skada", 78.0, "%").verdict() == "**ours**"
    assert Versus("t", "ours", 0.896, "sklearn", 0.914, "").verdict() == "**theirs**"
    assert Versus("t", "ours", 2.0, "them", 1.0, "s", higher_is_better=False).verdict() == "**theirs**"
    assert Versus("t", "ours", 96.3, "them", 96.2, "%", sd=0.4).verdict() == "tie"
    assert Versus("t", "ours", None, "them", 1.0, "").verdict() == "not measured"
