"""The digits showcase of ``tlestimators demo`` (no arguments): each strategy family
against its naive baseline, measured in the run, then save + predict."""

import numpy as np
import pytest

from tlestimators import _demo
from tlestimators.cli import main


def _rows(out):
    """The showcase table's rows: family -> (baseline acc, strategy label, strategy acc)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[2].replace(".", "").isdigit():
            rows[cells[0]] = (float(cells[2]), cells[3], float(cells[4]))
    return rows


@pytest.fixture(scope="module")
def showcase(request):
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["demo", "--limit", "400", "--img-size", "32"])
    return rc, buf.getvalue()


def test_showcase_table_shows_each_family_paying_off(showcase):
    rc, out = showcase
    assert rc == 0, out
    rows = _rows(out)
    assert len(rows) == 3, out
    search = next(v for k, v in rows.items() if k.startswith("strategy search"))
    stream = next(v for k, v in rows.items() if k.startswith("continual stream"))
    shift = next(v for k, v in rows.items() if k.startswith("domain shift"))
    # the search's pick is at least as good as the fixed frozen probe, and on digits
    # it is the raw pixels (and the demo says so)
    assert search[2] >= search[0] - 1e-9
    assert "pixels" in search[1] and "picked raw pixels" in out
    # replay beats naive fine-tuning by a wide margin (naive forgets the old classes)
    assert stream[2] >= stream[0] + 0.3, stream
    assert stream[0] < 0.5
    # label-free adaptation never goes below source-only
    assert shift[2] >= shift[0] - 1e-9, shift


def test_showcase_saves_the_pick_and_predicts_held_out_digits(showcase):
    rc, out = showcase
    assert "saved the search's pick with tlestimators.save" in out
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("item,prediction,proba_0"))
    preds = lines[head + 1:head + 6]
    assert len(preds) == 5 and all(p.count(",") == 11 for p in preds)
    assert "s CPU" in out.splitlines()[-1]


def test_shift_digits_lowers_contrast_and_stays_in_range():
    X = np.tile(np.array([0.0, 16.0], dtype=np.float32), (200, 1))
    Xt = _demo.shift_digits(X, seed=0)
    assert Xt.min() >= 0.0 and Xt.max() <= 16.0
    assert abs(Xt[:, 0].mean() - 5.0) < 0.3 and abs(Xt[:, 1].mean() - 13.0) < 0.3


def test_flatten_pixels_scales_uint8_images():
    X = np.full((3, 8, 8), 255, dtype=np.uint8)
    F = _demo.flatten_pixels(X)
    assert F.shape == (3, 64) and F.dtype == np.float32 and np.allclose(F, 1.0)


def test_demo_with_explicit_strategies_keeps_the_classic_table(capsys):
    rc = main(["demo", "--limit", "120", "--strategies", "baseline"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "logistic regression on pixels" in out and "continual stream" not in out
