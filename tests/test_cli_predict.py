"""``tlestimators predict MODEL DATA`` on saved and exported models."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

import tlestimators as tle
from tlestimators.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


def test_predict_features_from_saved_and_exported_model(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.randn(80, 5).astype(np.float32)
    y = np.where(X[:, 0] > 0, "up", "down")
    est = tle.FrozenFeatureClassifier("mlp", random_state=0).fit(X, y)
    tle.save(est, tmp_path / "model")
    np.save(tmp_path / "X.npy", X[:10])
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "X.npy")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["item", "prediction", "proba_down", "proba_up"]
    assert [r[1] for r in rows[1:]] == est.predict(X[:10]).tolist()
    np.testing.assert_allclose([[float(v) for v in r[2:]] for r in rows[1:]],
                               est.predict_proba(X[:10]), atol=1e-6)
    pytest.importorskip("onnxruntime")
    tle.export_onnx(est, tmp_path / "onnx")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "onnx"), str(tmp_path / "X.npy"), "-o", str(out)]) == 0
    assert [r[1] for r in _rows(out.read_text())[1:]] == est.predict(X[:10]).tolist()


def test_predict_image_folder_and_csv_errors(tmp_path, capsys):
    from _tiny_backbones import TinyConvBackbone, make_image_blobs

    X, y = make_image_blobs(10, 16)
    est = tle.FrozenFeatureClassifier(TinyConvBackbone(), random_state=0).fit(X, y)
    tle.save(est, tmp_path / "model")
    folder = tmp_path / "images" / "sub"
    folder.mkdir(parents=True)
    # every suffix read as an image elsewhere (data.IMAGE_SUFFIXES) is found in a folder
    Image.fromarray(X[0]).save(folder / "img0.png")
    Image.fromarray(X[15]).save(folder / "img15.ppm")
    trusted = "_tiny_backbones.TinyConvBackbone"
    # a user-defined backbone class is refused unless trusted: a clear one-line error
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "images")]) == 1
    err = capsys.readouterr().err
    assert "does not trust" in err and f"From the command line: --trust {trusted}" in err
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "images"),
                 "--trust", trusted]) == 0
    rows = _rows(capsys.readouterr().out)[1:]
    assert [r[0].rsplit("/", 1)[-1] for r in rows] == ["img0.png", "img15.ppm"]
    assert [int(r[1]) for r in rows] == est.predict(X[[0, 15]]).tolist()
    # data of another kind than the model's input: refused, not predicted on the paths
    (tmp_path / "texts.csv").write_text("text\nhello\n")
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "texts.csv"),
                 "--trust", trusted]) == 1
    assert "DATA holds texts but the model was fitted on image input" in capsys.readouterr().err
    feats = tle.FrozenFeatureClassifier("mlp", random_state=0).fit(
        np.random.RandomState(0).randn(20, 3), [0, 1] * 10)
    tle.save(feats, tmp_path / "feats")
    assert main(["predict", str(tmp_path / "feats"), str(tmp_path / "images")]) == 1
    assert "DATA holds images but the model was fitted on features input" in \
        capsys.readouterr().err
    (tmp_path / "t.csv").write_text("body\nhello\n")
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "t.csv")]) == 1
    assert main(["predict", str(tmp_path / "nope"), str(tmp_path / "t.csv")]) == 1
    assert "no config.json" in capsys.readouterr().err
