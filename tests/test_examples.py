"""Every script in examples/ runs to the end in its fast mode (``TLE_FAST=1``), and one
that plots leaves a figure.

The examples are what users copy first; this keeps them working on every change. Each
runs in its own process, from a scratch working directory (so files an example writes
land there, not in the checkout), with the same offline settings as the test suite.
``TLE_FAST=1`` is also the size the docs gallery executes (``make docs``): each example
should stay under ~30 s on 2 CPU cores.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

# Loaded through PYTHONPATH into the example's process: at exit, the main process (not
# Dask/joblib workers) reports how many pyplot figures are open. sphinx-gallery scrapes
# exactly those; a figure only saved with Figure.savefig would leave a blank thumbnail.
_FIGURE_HOOK = """
import atexit, os, sys

_done = []
# only the example's own process reports: worker processes (multiprocessing, loky, dask)
# inherit this variable with the main process's pid and exit later than it does
os.environ.setdefault("TLE_FIGURE_MAIN_PID", str(os.getpid()))

def _tle_report_figures():
    if _done or str(os.getpid()) != os.environ.get("TLE_FIGURE_MAIN_PID"):
        return
    _done.append(True)
    n = -1
    if "matplotlib.pyplot" in sys.modules:
        n = len(sys.modules["matplotlib.pyplot"].get_fignums())
    with open(os.environ["TLE_FIGURE_REPORT"], "w") as fh:
        fh.write(str(n))

# atexit runs last-registered first, and matplotlib registers Gcf.destroy_all (which
# closes every figure) when pyplot is imported: report right before that runs.
_register = atexit.register

def _register_after(fn, *args, **kwargs):
    out = _register(fn, *args, **kwargs)
    if getattr(fn, "__name__", "") == "destroy_all":
        _register(_tle_report_figures)
    return out

atexit.register = _register_after
atexit.register(_tle_report_figures)  # no pyplot at all: report -1
"""

# The gallery the docs promise (issue: quickstart, grid search over strategies, domain
# adaptation with unsupervised model selection, continual learning with the accuracy
# matrix, zero-shot text, writing a plugin; plus scaling out on Dask).
EXPECTED = {
    "quickstart", "grid_search_strategies", "domain_adaptation", "continual_learning",
    "zero_shot_text", "write_a_plugin", "scale_out_dask", "strategy_search",
}


def test_every_promised_example_exists():
    missing = sorted(EXPECTED - {p.stem for p in EXAMPLES})
    assert not missing, f"examples/ lacks {missing}"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_docstring_has_gallery_title(script):
    """sphinx-gallery takes the page title from the docstring's first reST heading: a
    line of text underlined by '=' (without it the gallery cannot link the page and the
    -W docs build fails)."""
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False)
    assert doc, f"{script.name}: no module docstring"
    lines = doc.strip("\n").splitlines()
    title, underline = (lines + ["", ""])[:2]
    assert underline.strip() and set(underline.strip()) == {"="} and (
        len(underline.strip()) >= len(title.strip())
    ), (
        f"{script.name}: the docstring must open with a title underlined by '=' "
        f"(sphinx-gallery format), got {lines[:2]!r}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_fast_mode(script, tmp_path):
    from tle_gallery_check import example_plots

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_FIGURE_HOOK)
    report = tmp_path / "figures.txt"
    env = dict(
        os.environ,
        TLE_FAST="1",
        # one BLAS/OpenMP thread per example: the suite runs beside other jobs, and two
        # spinning torch threads on an oversubscribed 2-core machine took the slowest
        # examples past the timeout (measured: quickstart 8.4 min wall with one thread,
        # over 10 min with two, at load ~25); on an idle machine the cost is small
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MPLBACKEND="Agg",
        TLE_FIGURE_REPORT=str(report),
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(hook), str(ROOT), os.environ.get("PYTHONPATH")])
        ),
    )
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=run, env=env, capture_output=True, text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script.name} failed (exit {proc.returncode}):\n{out[-4000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    if example_plots(script.read_text()):
        n = int(report.read_text()) if report.is_file() else -1
        assert n > 0, (
            f"{script.name} plots but left no open pyplot figure (found {n}): the docs "
            "gallery would show a blank thumbnail. Draw with matplotlib.pyplot and end with "
            "plt.show() instead of only saving a Figure to a file."
        )
