"""TransferSearchCV vs the exhaustive grid over the same candidates (issue 13).

For each data set, one candidate space, the one ``candidates="auto"`` builds (the frozen
probe, a frozen MLP head and LP-FT fine-tuning of the default backbone, with all weights
trained and with LoRA adapters, at its default training length, ``max_epochs=10``;
raw pixels on digits; zero-shot on text; for PACS photo->art the source-only frozen
probe (fitted on the labeled photos only) and DANN heads at four lambdas on the frozen
backbone, with the unlabeled art rows):

- **exhaustive**: what a user writes today: ``GridSearchCV`` over the candidates (a
  one-step pipeline whose step is the grid's parameter), every candidate fitted at its
  full resource on the same folds; for PACS photo->art the same ``GridSearchCV`` with
  the label-free recipe (``SafeDASelection`` as scoring and refit, ``SourceTargetKFold``,
  source-only = the frozen probe);
- **TransferSearchCV** over the same list (cheap candidates in full, fine-tuning raced by
  successive halving: eta 3, rungs 1, 3, 10 epochs, a candidate more than ``margin``
  below the best so far is stopped).

Both use the estimators' default feature cache (in memory, shared by every candidate and
fold of one process): the in-memory cache is emptied before each timing, so each side
pays one embedding pass of the data, as a user's search does. The two timings alternate
order between data sets, so the machine's load hits both alike. Reported per data set:
both wall times and CPU times, both picks, each pick's held-out test accuracy, and the
best frozen probe's test accuracy (fitted after both timings). Targets: the search's
pick within 1 point of the exhaustive pick, <= 1/3 of its wall time, never below the
best frozen probe. Nothing is tuned on the test split.

Usage::

    python benchmarks/bench_search.py [--datasets digits,hymenoptera,trec,sms,pacs_photo,pacs_photo_art]
        [--n-train 150] [--n-test 500] [--img-size 64] [--ft-epochs 10] [--cv 3]
        [--threads 1] [--out benchmarks/results/search.md]

One process per data set can run in parallel, each writing ``--out`` (a ``.json`` row
goes next to it); ``--merge`` rebuilds the markdown table from those rows.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ALL = ("digits", "hymenoptera", "trec", "sms", "pacs_photo", "pacs_photo_art")


def _subset(X, y, n, seed, stratify=True):
    from sklearn.model_selection import train_test_split

    from tlestimators.data import take

    y = np.asarray(y)
    if n >= len(y):
        return X, y
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed,
                              stratify=y if stratify else None)
    idx = np.sort(idx)
    return take(X, idx), y[idx]


def load(name, a):
    """``(X_train, y_train, X_test, y_test, modality, X_target_unlabeled or None)``."""
    from sklearn.model_selection import train_test_split

    from tlestimators import datasets
    from tlestimators.data import take

    seed = a.seed
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
        y = d.target
        modality = "image"
    elif name == "hymenoptera":
        Xtr, ytr = datasets.load_hymenoptera("train")
        Xte, yte = datasets.load_hymenoptera("val")
        Xtr, ytr = _subset(Xtr, ytr, a.n_train, seed)
        Xte, yte = _subset(Xte, yte, a.n_test, seed)
        return Xtr, ytr, Xte, yte, "image", None
    elif name == "trec":
        Xtr, ytr = datasets.load_trec("train")
        Xte, yte = datasets.load_trec("test")
        Xtr, ytr = _subset(Xtr, ytr, a.n_train, seed)
        Xte, yte = _subset(Xte, yte, a.n_test, seed)
        return Xtr, ytr, Xte, yte, "text", None
    elif name == "sms":
        X, y = datasets.load_sms_spam()
        modality = "text"
    elif name == "pacs_photo":
        X, y = datasets.load_pacs("photo")
        modality = "image"
    elif name == "pacs_photo_art":
        Xs, ys = datasets.load_pacs("photo")
        Xt, yt = datasets.load_pacs("art_painting")
        Xs, ys = _subset(Xs, ys, a.n_train, seed)
        Xt, yt = _subset(Xt, yt, a.n_test, seed)
        # transductive: the art rows are the unlabeled target and the test set
        return Xs, ys, Xt, yt, "image", Xt
    else:
        raise ValueError(f"unknown data set {name!r}; choose from {ALL}")
    y = np.asarray(y)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, train_size=min(a.n_train, len(y) // 2),
                              test_size=min(a.n_test, len(y) // 2), random_state=seed,
                              stratify=y)
    return take(X, tr), y[tr], take(X, te), y[te], modality, None


def candidates(name, modality, a):
    from tlestimators import DANNAdapter, FineTuneClassifier, FrozenFeatureClassifier
    from tlestimators.estimators._labeled import LabeledOnly

    seed, dev = a.seed, "cpu"
    if modality == "image":
        bb, kw = "efficientnet_lite0", {"img_size": a.img_size}
    else:
        bb, kw = "minilm", None
    if name == "pacs_photo_art":
        da_kw = {} if a.da_epochs is None else {"max_epochs": a.da_epochs}
        common = dict(backbone_kwargs=kw, unfreeze="head", standardize="global", device=dev,
                      random_state=seed, **da_kw)
        out = [("source-only", LabeledOnly(FrozenFeatureClassifier(
            bb, backbone_kwargs=kw, device=dev, random_state=seed)))]
        return out + [(f"dann[lambda={lam:g}]", DANNAdapter(bb, lambda_max=lam, **common))
                      for lam in (0.0, 0.1, 0.3, 1.0)]
    out = []
    if name == "digits":
        from tlestimators._demo import _pixel_model

        out.append(("pixels", _pixel_model(seed)))
    if modality == "text":
        from tlestimators import ZeroShotTextClassifier

        out.append(("zero-shot[minilm]", ZeroShotTextClassifier(bb, device=dev)))
    out.append((f"probe[{bb}]", FrozenFeatureClassifier(bb, backbone_kwargs=kw, device=dev,
                                                        random_state=seed)))
    out.append((f"mlp-head[{bb}]", FrozenFeatureClassifier(bb, backbone_kwargs=kw, head="mlp",
                                                           device=dev, random_state=seed)))
    ft_kw = {} if a.ft_epochs is None else {"max_epochs": a.ft_epochs}
    ft_kw.update(backbone_kwargs=kw, augment=name != "digits", device=dev, random_state=seed)
    out.append((f"fine-tune[{bb}]", FineTuneClassifier(bb, **ft_kw)))
    if not a.no_lora:  # candidates="auto" has it whenever peft is installed
        out.append((f"lora[{bb}]", FineTuneClassifier(bb, unfreeze="lora", **ft_kw)))
    return out


def _acc(model, X, y):
    return float(np.mean(np.asarray(model.predict(X)) == np.asarray(y)))


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def pickle_cost(name, a):
    """What a resumed rung adds under joblib's process backends: each fold's fitted
    fine-tuning estimator goes to a worker and back between rungs. Fits the data set's
    fine-tuning candidate for one epoch on 2/3 of its training rows (one fold's share),
    then times one pickle round trip (dumps + loads) and its size."""
    import pickle

    from tlestimators.data import take

    Xtr, ytr, _, _, modality, _ = load(name, a)
    est = [c for n, c in candidates(name, modality, a) if n.startswith("fine-tune")][0]
    idx = np.arange(len(ytr))[: 2 * len(ytr) // 3]
    est.set_params(max_epochs=1)
    _, fit_s, _ = _timed(lambda: est.fit(take(Xtr, idx), ytr[idx]))
    blob, dump_s, _ = _timed(lambda: pickle.dumps(est))
    back, load_s, _ = _timed(lambda: pickle.loads(blob))
    _, more_s, _ = _timed(lambda: back.set_params(max_epochs=2, warm_start=True).fit(
        take(Xtr, idx), ytr[idx]))
    print(f"[{name}] pickle round trip of a 1-epoch fold estimator: {len(blob) / 2**20:.1f} "
          f"MiB, dumps {dump_s:.2f} s + loads {load_s:.2f} s; its 1-epoch fit {fit_s:.1f} s "
          f"(probe included), one resumed epoch {more_s:.1f} s", flush=True)


def ab_resume(name, a):
    """The search alone, twice on the same folds: rungs resumed (the default) and every
    rung refitted from scratch (resuming switched off, the behaviour before it), so the
    two differ only there; prints both times, picks and reports."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from tlestimators import TransferSearchCV
    from tlestimators.estimators import search as search_mod
    from tlestimators.features import feature_cache

    Xtr, ytr, Xte, yte, modality, _ = load(name, a)
    cands = candidates(name, modality, a)
    cv = StratifiedKFold(a.cv, shuffle=True, random_state=a.seed)
    support = search_mod._resume_support
    for mode in ("resumed", "restarted"):
        search = TransferSearchCV([(n, clone(c)) for n, c in cands], budget=a.budget, cv=cv,
                                  random_state=a.seed, min_resource=a.min_resource)
        if mode == "restarted":
            search_mod._resume_support = lambda est: "resuming switched off"
        feature_cache().clear()
        try:
            _, wall, cpu = _timed(lambda s=search: s.fit(Xtr, ytr))
        finally:
            search_mod._resume_support = support
        cols = ["candidate", "mean_score", "fit_seconds", "resource", "stopped"]
        print(f"[{name}] search, rungs {mode}: {search.best_params_['candidate']} "
              f"{_acc(search, Xte, yte):.3f} in {wall:.1f} s (CPU {cpu:.1f}), refit "
              f"{search.refit_time_:.1f} s\n{search.report_[cols].to_string(index=False)}",
              flush=True)


def run_one(name, a, order=0):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from tlestimators import FrozenFeatureClassifier, TransferSearchCV
    from tlestimators.features import feature_cache

    Xtr, ytr, Xte, yte, modality, Xtgt = load(name, a)
    cands = candidates(name, modality, a)
    da = Xtgt is not None
    if da:
        X_fit = list(Xtr) + list(Xtgt)
        y_fit = np.r_[ytr.astype(object), np.full(len(Xtgt), -1, dtype=object)]
    else:
        X_fit, y_fit = Xtr, ytr
    print(f"[{name}] {len(ytr)} train / {len(yte)} test, candidates "
          f"{[n for n, _ in cands]}", flush=True)
    if da:
        from tlestimators.model_selection import SafeDASelection, SourceTargetKFold

        cv = SourceTargetKFold(a.cv, shuffle=True, random_state=a.seed)
        grid_list = [clone(c) for _, c in cands]
        sel = SafeDASelection(source_only={"clf": grid_list[0]})
        grid = GridSearchCV(Pipeline([("clf", grid_list[0])]), {"clf": grid_list},
                            scoring=sel.scoring, refit=sel, cv=cv)
    else:
        cv = StratifiedKFold(a.cv, shuffle=True, random_state=a.seed)
        grid = GridSearchCV(Pipeline([("clf", cands[0][1])]),
                            {"clf": [clone(c) for _, c in cands]}, cv=cv, refit=True)
    search = TransferSearchCV([(n, clone(c)) for n, c in cands], budget=a.budget, cv=cv,
                              random_state=a.seed, min_resource=a.min_resource)
    res = {}

    def run_search():
        feature_cache().clear()
        _, wall, cpu = _timed(lambda: search.fit(X_fit, y_fit))
        res["search"] = (search.best_params_["candidate"], _acc(search, Xte, yte), wall, cpu,
                         feature_cache().misses)
        print(f"[{name}] TransferSearchCV: {res['search'][0]} {res['search'][1]:.3f} in "
              f"{wall:.1f} s (CPU {cpu:.1f}), rows embedded {res['search'][4]}", flush=True)

    def run_grid():
        feature_cache().clear()
        _, wall, cpu = _timed(lambda: grid.fit(X_fit, y_fit))
        names = {id(c): n for n, c in zip([n for n, _ in cands], grid.param_grid["clf"])}
        pick = names[id(grid.best_params_["clf"])]
        res["grid"] = (pick, _acc(grid, Xte, yte), wall, cpu, feature_cache().misses)
        print(f"[{name}] exhaustive grid: {pick} {res['grid'][1]:.3f} in {wall:.1f} s "
              f"(CPU {cpu:.1f}), rows embedded {res['grid'][4]}", flush=True)

    for step in ((run_search, run_grid) if order % 2 == 0 else (run_grid, run_search)):
        step()
    # the best frozen probe (after both timings: it must not warm their cache)
    probe = FrozenFeatureClassifier("efficientnet_lite0" if modality == "image" else "minilm",
                                    backbone_kwargs={"img_size": a.img_size}
                                    if modality == "image" else None, device="cpu",
                                    random_state=a.seed).fit(Xtr, ytr)
    probe_acc = _acc(probe, Xte, yte)
    if name == "digits":  # the pixel model is the frozen probe of the identity backbone
        pix = clone(cands[0][1]).fit(Xtr, ytr)
        probe_acc = max(probe_acc, _acc(pix, Xte, yte))
    print(f"[{name}] best frozen probe {probe_acc:.3f}", flush=True)
    g, t = res["grid"], res["search"]
    return dict(data=name, n=f"{len(ytr)}/{len(yte)}", grid_pick=g[0], grid_acc=g[1],
                grid_s=g[2], grid_cpu=g[3], search_pick=t[0], search_acc=t[1],
                search_s=t[2], search_cpu=t[3], probe_acc=probe_acc,
                order="search first" if order % 2 == 0 else "grid first",
                report=search.report_)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(ALL))
    p.add_argument("--n-train", type=int, default=150)
    # test rows: 500 where the data set has them (hymenoptera's val has 153, TREC's
    # test 500), so that one row is 0.2 points and the 1-point target is measurable
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--ft-epochs", type=int, default=None,
                   help="fine-tuning max_epochs (default: FineTuneClassifier's, 10)")
    p.add_argument("--da-epochs", type=int, default=None,
                   help="DANN max_epochs (default: DANNAdapter's, 20)")
    p.add_argument("--no-lora", action="store_true",
                   help="leave out the LoRA fine-tuning candidate (the space before round 6)")
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--min-resource", type=int, default=1,
                   help="TransferSearchCV's min_resource (epochs at the first rung)")
    p.add_argument("--budget", type=float, default=7200.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", choices=("alternate", "search", "grid"), default="alternate",
                   help="which side is timed first (alternate: by the data set's index)")
    p.add_argument("--rows-dir", default="/tmp/tle_search_rows",
                   help="one JSON row per data set (parallel runs merge from here)")
    p.add_argument("--merge", action="store_true",
                   help="only rebuild --out from the rows in --rows-dir")
    p.add_argument("--out", default=str(HERE / "results" / "search.md"))
    p.add_argument("--ab-resume", action="store_true",
                   help="only time the search on --datasets with rungs resumed and with "
                        "every rung refitted from scratch")
    p.add_argument("--pickle-cost", action="store_true",
                   help="only time the pickle round trip of one fold's fine-tuning "
                        "estimator (what a resumed rung adds with joblib's process "
                        "backends) on --datasets")
    a = p.parse_args(argv)
    import json

    rows_dir = Path(a.rows_dir)
    rows_dir.mkdir(parents=True, exist_ok=True)
    names = [d.strip() for d in a.datasets.split(",") if d.strip()]
    if a.pickle_cost or a.ab_resume or not a.merge:  # something is measured
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(a.threads)
        # BLAS too: the heads' solvers with several OpenBLAS threads spin-wait on a busy
        # machine and cost far more CPU than the solves
        threadpool_limits(limits=a.threads, user_api="blas")
        warnings.filterwarnings("ignore", category=FutureWarning)
    if a.pickle_cost or a.ab_resume:
        for name in names:
            (pickle_cost if a.pickle_cost else ab_resume)(name, a)
        return
    if not a.merge:
        for name in names:
            load0 = os.getloadavg()[0]
            try:
                order = {"search": 0, "grid": 1}.get(a.order, ALL.index(name) if name in ALL
                                                      else 0)
                row = run_one(name, a, order=order)
                row["report"] = row["report"].to_dict(orient="list")
            except Exception as exc:  # one data set failing must not lose the others
                import traceback

                traceback.print_exc()
                row = dict(data=name, error=f"{type(exc).__name__}: {exc}")
            row.update(load=(load0, os.getloadavg()[0]), threads=a.threads,
                       when=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                       settings=dict(blas_threads=a.threads, n_train=a.n_train, n_test=a.n_test, img_size=a.img_size,
                                     ft_epochs=a.ft_epochs, da_epochs=a.da_epochs, cv=a.cv,
                                     min_resource=a.min_resource,
                                     lora=not a.no_lora))
            (rows_dir / f"{name}.json").write_text(json.dumps(row, default=float))
    rows = [json.loads((rows_dir / f"{n}.json").read_text()) for n in ALL
            if (rows_dir / f"{n}.json").exists()]
    write(rows, a)


def write(rows, a):
    import pandas as pd

    loads = [x for r in rows for x in r.get("load", [])]
    when = sorted(r["when"] for r in rows if "when" in r)
    lines = [
        "# TransferSearchCV vs the exhaustive grid (benchmarks/bench_search.py)", "",
        f"Run {when[0] if when else '?'} to {when[-1] if when else '?'}; torch threads "
        f"{a.threads} (pinned) and BLAS threads {a.threads}; on 2 CPU cores shared with "
        f"other jobs: load average {min(loads, default=0):.1f}-"
        f"{max(loads, default=0):.1f} (1 min, at the start and end of each data set; the "
        "row's own load is in its report below), so wall seconds vary with the load and "
        "the CPU seconds in brackets are the steadier guide. Images: efficientnet_lite0 at "
        f"{a.img_size} px; text: minilm; {a.cv} folds; the search's first rung at "
        f"{a.min_resource} epoch{'s' if a.min_resource > 1 else ''}; fine-tuning (LP-FT"
        f"{'' if a.no_lora else ', all weights and LoRA adapters'}) at "
        f"max_epochs {a.ft_epochs or 'default (10)'}; DANN heads at max_epochs "
        f"{a.da_epochs or 'default (20)'}. Both sides use the default in-memory feature "
        "cache, emptied before each timing (each pays one embedding pass); the two "
        "timings alternate order between data sets. The exhaustive grid is "
        "`GridSearchCV` over the same candidate list (with `SafeDASelection` and "
        "`SourceTargetKFold` for PACS photo->art, source-only = the frozen probe fitted "
        "on the photos). Nothing was tuned on the test rows. Test rows per data set: "
        "the train/test column; one test row is 100 / n points of accuracy (0.2 at "
        "500, 0.67 at 150).", "",
        "| data | train/test | exhaustive pick | test acc | wall s (CPU) | search pick | "
        "test acc | wall s (CPU) | time ratio | best frozen probe | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | failed: {r['error']} |||||||||| |")
            continue
        ok_acc = r["search_acc"] >= r["grid_acc"] - 0.01
        ok_time = r["search_s"] <= r["grid_s"] / 3
        ok_probe = r["search_acc"] >= r["probe_acc"] - 1e-9
        ratio = r["search_s"] / max(r["grid_s"], 1e-9)
        lines.append(
            f"| {r['data']} | {r['n']} | {r['grid_pick']} | {r['grid_acc']:.3f} | "
            f"{r['grid_s']:.0f} ({r['grid_cpu']:.0f}) | {r['search_pick']} | "
            f"{r['search_acc']:.3f} | {r['search_s']:.0f} ({r['search_cpu']:.0f}) | "
            f"{ratio:.2f} | {r['probe_acc']:.3f} | "
            f"acc {'ok' if ok_acc else 'MISS'}, time {'ok' if ok_time else 'MISS'}, "
            f"probe {'ok' if ok_probe else 'MISS'} |")
    missing = [n for n in ALL if n not in {r["data"] for r in rows}]
    if missing:
        lines += ["", f"**Not run**: {', '.join(missing)}."]
    unpinned = [r["data"] for r in rows if "blas_threads" not in r.get("settings", {})]
    if unpinned:
        lines += ["", f"BLAS threads were not pinned in the runs of {', '.join(unpinned)} "
                  "(the bench pins them to --threads since): their CPU seconds include "
                  "OpenBLAS threads spin-waiting in the heads' solvers, on both sides."]
    lines += ["", "Search reports:", ""]
    for r in rows:
        if "report" in r:
            rep = pd.DataFrame(r["report"])
            cols = ["candidate", "mean_score", "fit_seconds", "resource", "stopped"]
            cols = [c for c in cols if c in rep.columns]
            lines += [f"## {r['data']}", "",
                      f"{r.get('order', '')}; load {r['load'][0]:.1f} -> {r['load'][1]:.1f}",
                      "", "```",
                      rep[cols].to_string(index=False,
                                                  float_format=lambda v: f"{v:.3f}"),
                      "```", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
