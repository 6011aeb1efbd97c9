"""plot_history / plot_accuracy_matrix write real PNGs and reject bad input by name."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from tlestimators.plotting import (  # noqa: E402
    history_to_dict,
    plot_accuracy_matrix,
    plot_history,
)

HISTORY = [
    {"epoch": 1, "train_loss": 1.0, "valid_loss": 1.1, "valid_acc": 0.40, "dur": 0.1,
     "train_loss_best": True, "batches": [{"train_loss": 1.0}]},
    {"epoch": 2, "train_loss": 0.6, "valid_loss": 0.8, "valid_acc": 0.70, "dur": 0.1,
     "train_loss_best": True, "batches": []},
    {"epoch": 3, "train_loss": 0.3, "valid_acc": 0.90, "dur": 0.1, "train_loss_best": True},
]


def _png_pixels(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # decodes every chunk: a truncated file fails here
        return im.size, np.asarray(im.convert("L"))


def test_history_to_dict_keeps_curves_and_marks_missing_epochs():
    curves = history_to_dict(HISTORY)
    assert set(curves) == {"train_loss", "valid_loss", "valid_acc"}
    np.testing.assert_allclose(curves["train_loss"], [1.0, 0.6, 0.3])
    assert np.isnan(curves["valid_loss"][2])


def test_plot_history_writes_png_of_requested_size(tmp_path):
    out = plot_history(HISTORY, tmp_path / "sub" / "hist", figsize=(4, 3), dpi=50)
    assert out == tmp_path / "sub" / "hist.png"
    size, pixels = _png_pixels(out)
    assert size == (200, 150)
    assert pixels.std() > 5  # something was drawn, not a blank canvas


def test_plot_history_accepts_fitted_skorch_net_and_estimator_wrappers(tmp_path):
    import torch
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skorch import NeuralNetClassifier

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = NeuralNetClassifier(
        torch.nn.Sequential(torch.nn.Linear(4, 2)), criterion=torch.nn.CrossEntropyLoss,
        max_epochs=3, lr=0.1, verbose=0,
    )
    pipe = make_pipeline(StandardScaler(), net).fit(X, y)
    assert len(history_to_dict(pipe)["train_loss"]) == 3

    class Wrapper:  # the shape of tlestimators estimators: skorch net under `net_`
        net_ = net

    p = plot_history(Wrapper(), tmp_path / "net.png", keys=["train_loss", "valid_acc"])
    assert _png_pixels(p)[0] == (640, 400)

    class WithHistory:
        history_ = net.history

    assert history_to_dict(WithHistory())["valid_acc"].shape == (3,)


def test_plot_history_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"keys \['nope'\] not found.*train_loss"):
        plot_history(HISTORY, tmp_path / "h.png", keys=["nope"])
    with pytest.raises(TypeError, match="history_or_estimator must be"):
        plot_history(object(), tmp_path / "h.png")
    with pytest.raises(ValueError, match="no epochs"):
        plot_history([], tmp_path / "h.png")
    with pytest.raises(ValueError, match="path must name a .png"):
        plot_history(HISTORY, tmp_path / "h.jpg")
    with pytest.raises(ValueError, match="figsize"):
        plot_history(HISTORY, tmp_path / "h.png", figsize=(0, 3))
    assert not list(tmp_path.iterdir())  # nothing half-written on error


def test_plot_accuracy_matrix_writes_annotated_heatmap(tmp_path):
    R = np.array([[0.9, np.nan, np.nan], [0.6, 0.9, np.nan], [0.5, 0.7, 0.95]])
    out = plot_accuracy_matrix(R, tmp_path / "acc.png", labels=["a", "b", "c"], dpi=80)
    size, pixels = _png_pixels(out)
    assert size == (400, 360)
    assert pixels.std() > 5


def test_plot_accuracy_matrix_annotates_each_finite_cell(tmp_path, monkeypatch):
    # The text artists carry the values: one per evaluated cell, none for NaN.
    import matplotlib.figure

    seen = []
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen.extend(t.get_text() for t in fig.axes[0].texts)
        return orig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot_accuracy_matrix([[0.91, np.nan], [0.42, 0.88]], tmp_path / "m.png")
    assert sorted(seen) == ["0.42", "0.88", "0.91"]


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.ones((2, 3)), r"matrix must be a square 2-D array.*\(2, 3\)"),
        (np.ones(4), r"matrix must be a square 2-D array.*\(4,\)"),
        (np.ones((2, 2, 2)), r"matrix must be a square 2-D array.*\(2, 2, 2\)"),
        (np.zeros((0, 0)), r"matrix must be a square"),
        ([[1.0, np.inf], [0.5, 0.5]], "matrix must hold finite"),
        ([["a", "b"], ["c", "d"]], "matrix must be a square 2-D array of numbers"),
    ],
)
def test_plot_accuracy_matrix_rejects_bad_matrix(tmp_path, matrix, match):
    with pytest.raises(ValueError, match=match):
        plot_accuracy_matrix(matrix, tmp_path / "m.png")


def test_plot_accuracy_matrix_rejects_bad_labels(tmp_path):
    with pytest.raises(ValueError, match=r"labels must have one name per experience \(2\), got 3"):
        plot_accuracy_matrix(np.eye(2), tmp_path / "m.png", labels=["a", "b", "c"])


def test_import_is_lazy_and_leaves_pyplot_alone():
    code = (
        "import sys, tlestimators.plotting as p;"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly';"
        "import tempfile, os;"
        "d = tempfile.mkdtemp();"
        "p.plot_accuracy_matrix([[1.0]], os.path.join(d, 'a.png'));"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
