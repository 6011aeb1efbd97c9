"""``tlestimators search DATA``: report printed, chosen model saved and usable."""

from __future__ import annotations

import pytest

import tlestimators as tle
from tlestimators.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

TEXTS = {
    "sports": ["the team won the final match", "a late goal decided the game",
               "the striker scored twice", "the coach praised the defence",
               "fans cheered the winning run", "the tennis champion served an ace"],
    "cooking": ["simmer the sauce for ten minutes", "bake the bread until golden",
                "chop the onions and garlic", "whisk the eggs with sugar",
                "season the soup with salt", "roast the vegetables in the oven"],
}


def test_search_cli_prints_report_and_saves_the_pick(tmp_path, capsys):
    csv = tmp_path / "train.csv"
    rows = [(t, lab) for lab, ts in TEXTS.items() for t in ts]
    csv.write_text("text,label\n" + "\n".join(f'"{t}",{lab}' for t, lab in rows) + "\n")
    out = tmp_path / "model"
    png = tmp_path / "report.png"
    assert main(["search", str(csv), "--budget", "5", "--cv", "2", "--verbose", "0",
                 "--save", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "CSV" in text and "candidate" in text and "chosen:" in text
    assert "zero-shot[minilm]" in text  # the cheapest candidate always runs first
    # the fine-tuning candidate is listed with why it stopped (a 5 s budget, halving, or
    # it led the race and was refit in full)
    ft_row = next(line for line in text.splitlines() if "fine-tune[minilm]" in line)
    assert any(w in ft_row for w in ("budget", "cannot win", "halving", "completed", "leads"))
    assert png.stat().st_size > 5000
    model = tle.load(out)
    pred = model.predict(["the goalkeeper saved a penalty", "fry the fish in butter"])
    assert set(pred) <= {"sports", "cooking"}
    assert (out / "README.md").read_text().count("cross-validated score (search)") == 1


def test_search_cli_rejects_bad_budget_and_data(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["search", str(tmp_path), "--budget", "-3"])
    assert "budget must be seconds" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "missing.txt")]) == 1
    err = capsys.readouterr().err
    assert "error: DATA " in err and "neither a directory" in err  # the positional's name


def test_search_cli_refuses_before_searching(tmp_path, capsys, monkeypatch):
    """Errors the CLI can see up front come before any fit: an existing --save
    directory (with the CLI's own --overwrite hint) and a CSV with blank labels."""
    csv = tmp_path / "train.csv"
    csv.write_text("text,label\n\"a goal\",sports\n\"bake it\",\n\"a match\",sports\n")
    fits = []
    monkeypatch.setattr(tle.TransferSearchCV, "fit", lambda self, *a, **k: fits.append(1))
    assert main(["search", str(csv)]) == 1
    err = capsys.readouterr().err
    assert "the 'label' column is empty on 1 line(s) (first: [3])" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")  # a model saved before
    assert main(["search", str(csv), "--save", str(tmp_path / "taken")]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a model")
    assert main(["search", str(csv), "--save", str(tmp_path / "mine"), "--overwrite"]) == 1
    assert "not a saved tlestimators model" in capsys.readouterr().err
    assert not fits
