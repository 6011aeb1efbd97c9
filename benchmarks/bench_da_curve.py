"""The domain-adaptation selection curve: label-free scorer values and target accuracy
against ``lambda_max``.

One source -> target pair of the DANN paper's Amazon review files (default books ->
kitchen), ``DANNAdapter(backbone="mlp")`` with the paper's 5000-50-2 sigmoid net. For
each ``lambda_max`` of a log grid (0 = the source-only net, always included) and each
seed:

- one split of the training data that keeps both domains
  (:class:`~tlestimators.model_selection.SourceTargetShuffleSplit`, 80/20,
  ``random_state=seed``); the net is fit on the 80 % part (labelled source rows and
  unlabelled target rows);
- the label-free scorers tlestimators offers are computed on the 20 % part, which has
  source labels and unlabelled target rows only: deep embedded validation (DEV),
  importance-weighted validation (IWV), negative prediction entropy and circular
  (reverse) validation -- the scorers of
  :class:`~tlestimators.model_selection.SafeDASelection`;
- the target accuracy on the target domain's *test* file, which no scorer sees: it is
  there for the plot (what each scorer's choice was worth), not for selection.

Usage::

    python benchmarks/bench_da_curve.py                          # books -> kitchen, 2 seeds
    python benchmarks/bench_da_curve.py --pair dvd->electronics --seeds 0 --epochs 10

Writes ``benchmarks/results/da_curve.md``: the curve (one row per ``lambda_max``, mean
and standard deviation over seeds) and each scorer's pick. The docs draw the figure of
the domain-adaptation user guide from it (``docs/_ext/tle_benchfigs.py``). One torch
thread (said in the output), so the timings do not depend on the machine's load of the
moment more than they must.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "da_curve.md"
# column header -> SafeDASelection scorer name; the docs generator keys on "DEV", "IWV",
# "entropy" and "score" in these headers
SCORERS = {"DEV score": "dev", "IWV score": "iwv", "entropy score": "ent",
           "circular score": "circ"}


def log(msg):
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {msg}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", default="books->kitchen",
                   help="source->target Amazon domains (books, dvd, electronics, kitchen)")
    p.add_argument("--lambdas", default="0,0.03,0.1,0.3,1,3",
                   help="comma-separated lambda_max grid; 0 (source-only) is always added")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--data-dir", default=None, help="default: $TLE_DATA")
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def _fmt(values, digits):
    v = np.asarray(values, dtype=float)
    if len(v) == 1 or np.all(np.isnan(v)):
        return f"{np.nanmean(v):.{digits}f}"
    return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v, ddof=1):.{digits}f}"


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    from scipy import sparse

    from tlestimators import DANNAdapter
    from tlestimators.datasets import load_amazon
    from tlestimators.model_selection import SafeDASelection, SourceTargetShuffleSplit

    src_name, tgt_name = (s.strip() for s in args.pair.split("->"))
    lambdas = sorted({0.0} | {float(x) for x in args.lambdas.split(",") if x.strip()})
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    common = dict(
        backbone="mlp", backbone_kwargs={"hidden_sizes": (50,), "activation": "sigmoid"},
        bottleneck=None, domain_head="mlp", optimizer="adam", lr=1e-3,
        max_epochs=args.epochs, batch_size=64, device="cpu", lambda_schedule="dann",
        lr_schedule="dann", standardize=None,  # the paper's log counts as they are
    )
    have = DANNAdapter().get_params()
    common = {k: v for k, v in common.items() if k in have}
    scoring = SafeDASelection(scorers=tuple(SCORERS.values())).scoring

    Xs, ys = load_amazon(src_name, data_dir=args.data_dir)
    Xt, _ = load_amazon(tgt_name, data_dir=args.data_dir)
    Xte, yte = load_amazon(tgt_name, "test", data_dir=args.data_dir)
    X = sparse.vstack([Xs, Xt]).tocsr().log1p().astype(np.float32)
    Xte = Xte.log1p().astype(np.float32)
    y = np.r_[ys, -np.ones(Xt.shape[0], dtype=int)]  # -1: unlabelled target rows
    log(f"{args.pair}: {Xs.shape[0]} source rows, {Xt.shape[0]} unlabelled target rows, "
        f"{Xte.shape[0]} target test rows; lambdas {lambdas}; seeds {seeds}; "
        f"torch threads {torch.get_num_threads()}")

    t_start = time.time()
    rec = {lam: {"acc": [], "fit_s": [], **{c: [] for c in SCORERS}} for lam in lambdas}
    for seed in seeds:
        tr, va = next(SourceTargetShuffleSplit(1, test_size=0.2, random_state=seed).split(X, y))
        for lam in lambdas:
            est = DANNAdapter(**common, lambda_max=lam, random_state=seed)
            t0 = time.time()
            est.fit(X[tr], y[tr])
            rec[lam]["fit_s"].append(time.time() - t0)
            for col, key in SCORERS.items():
                try:
                    rec[lam][col].append(float(scoring[key](est, X[va], y[va])))
                except Exception as exc:  # recorded as missing, never silently dropped
                    log(f"  scorer {key} failed at lambda {lam:g}, seed {seed}: {exc}")
                    rec[lam][col].append(float("nan"))
            rec[lam]["acc"].append(100 * float(np.mean(est.predict(Xte) == yte)))
            log(f"seed {seed} lambda_max {lam:g}: target acc {rec[lam]['acc'][-1]:.1f}, "
                + ", ".join(f"{c} {rec[lam][c][-1]:.4f}" for c in SCORERS)
                + f" ({rec[lam]['fit_s'][-1]:.1f} s fit)")
    total_s = time.time() - t_start

    # each scorer's pick, per seed, and what it was worth on the target test file
    picks = []
    oracle = []
    for i in range(len(seeds)):
        accs = [rec[lam]["acc"][i] for lam in lambdas]
        oracle.append((lambdas[int(np.argmax(accs))], max(accs)))
    for col in SCORERS:
        chosen = []
        for i in range(len(seeds)):
            vals = np.array([rec[lam][col][i] for lam in lambdas], dtype=float)
            if np.all(np.isnan(vals)):
                continue
            j = int(np.nanargmax(vals))
            chosen.append((lambdas[j], rec[lambdas[j]]["acc"][i]))
        picks.append((col.replace(" score", ""), chosen))
    picks.append(("oracle (target test labels)", oracle))
    source_only = rec[0.0]["acc"]

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    now = datetime.now(timezone.utc)
    cmd = "python benchmarks/bench_da_curve.py " + " ".join(
        a for a in (sys.argv[1:] if argv is None else argv))
    lines = [
        "# Domain adaptation: the selection curve",
        "",
        f"Command: `{cmd.strip()}`",
        f"Date: {now:%Y-%m-%d %H:%M} UTC. Load average at the end (1/5/15 min): {load} on "
        f"{os.cpu_count()} CPU cores; torch threads: {torch.get_num_threads()}; "
        f"{total_s / 60:.1f} min in all.",
        "",
        f"## Amazon {src_name} -> {tgt_name}: scorer value and target accuracy against lambda",
        "",
        f"`DANNAdapter(backbone=\"mlp\")`, the paper's 5000-50-2 sigmoid net, Adam 1e-3, "
        f"{args.epochs} epochs, batches of 64, DANN lambda and lr schedules; seeds {seeds}. "
        "Fit on 80 % of (source train + unlabelled target train); the scorers see the other "
        "20 % (source labels, unlabelled target rows); *target accuracy* is on the target "
        "test file, which no scorer sees (shown to judge the scorers, not to select). "
        "Scores are greater-is-better: DEV = minus the deep-embedded-validation risk, "
        "IWV = importance-weighted source accuracy, entropy = minus the mean target "
        "prediction entropy, circular = reverse-validation source accuracy. "
        "Mean ± standard deviation over seeds.",
        "",
        "| lambda_max | target accuracy (%) | " + " | ".join(SCORERS) + " | fit s |",
        "|---:|---:|" + "---:|" * len(SCORERS) + "---:|",
    ]
    for lam in lambdas:
        r = rec[lam]
        lines.append(f"| {lam:g} | {_fmt(r['acc'], 1)} | "
                     + " | ".join(_fmt(r[c], 4) for c in SCORERS)
                     + f" | {_fmt(r['fit_s'], 1)} |")
    lines += [
        "",
        "## Each scorer's pick",
        "",
        f"Per seed, the `lambda_max` with the best mean score, and its target test accuracy; "
        f"source-only (lambda 0) gets {_fmt(source_only, 1)} %.",
        "",
        "| scorer | picked lambda_max per seed | accuracy at the pick (%) | vs. source-only |",
        "|---|---|---:|---:|",
    ]
    for name, chosen in picks:
        if not chosen:
            lines.append(f"| {name} | failed | -- | -- |")
            continue
        accs = [a for _, a in chosen]
        gap = np.mean(accs) - np.mean(source_only[: len(accs)])
        lines.append(f"| {name} | {', '.join(f'{lam:g}' for lam, _ in chosen)} | "
                     f"{_fmt(accs, 1)} | {gap:+.1f} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    log(f"wrote {args.out} ({total_s / 60:.1f} min)")


if __name__ == "__main__":
    main()
