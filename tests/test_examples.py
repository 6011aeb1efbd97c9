"""Every script in examples/ runs to the end in its fast mode (``TLE_FAST=1``).

The examples are what users copy first; this keeps them working on every change. Each
runs in its own process, from a scratch working directory (so files an example writes
land there, not in the checkout), with the same offline settings as the test suite.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# The gallery the docs promise (issue: quickstart, grid search over strategies, domain
# adaptation with unsupervised model selection, continual learning with the accuracy
# matrix, zero-shot text, writing a plugin; plus scaling out on Dask).
EXPECTED = {
    "quickstart", "grid_search_strategies", "domain_adaptation", "continual_learning",
    "zero_shot_text", "write_a_plugin", "scale_out_dask",
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
    env = dict(
        os.environ,
        TLE_FAST="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script.name} failed (exit {proc.returncode}):\n{out[-4000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
