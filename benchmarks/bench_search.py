"""TransferSearchCV vs the exhaustive grid over the same candidates (issue 13).

For each data set, one candidate space (the frozen probe, a frozen MLP head and short
LP-FT fine-tuning of the default backbone; raw pixels on digits; zero-shot on text;
for PACS photo->art the DA methods on the frozen backbone with unlabeled art rows):

- **exhaustive**: ``GridSearchCV`` over the candidates (a one-step pipeline whose step
  is the grid's parameter), every candidate fitted at its full resource with the same
  folds; for PACS photo->art :class:`~tlestimators.model_selection.DomainAdaptationSearchCV`
  over the same candidates (label-free selection, the same folds);
- **TransferSearchCV** over the same list (cheap candidates in full, fine-tuning raced by
  successive halving).

Both share one feature cache on disk (``--cache-dir``), warmed before the timings with
the train and test embeddings, so the wall times compare the searches, not the encoder.
Reported per data set: both wall times and CPU times, both picks, each pick's held-out
test accuracy, and the best frozen probe's test accuracy. Targets: the search's pick
within 1 point of the exhaustive pick, <= 1/3 of its wall time, never below the best
frozen probe.

Usage::

    python benchmarks/bench_search.py [--datasets digits,hymenoptera,trec,sms,pacs_photo,pacs_photo_art]
        [--n-train 300] [--n-test 300] [--img-size 64] [--ft-epochs 3] [--cv 3]
        [--cache-dir /tmp/tle_cache] [--threads 1] [--out benchmarks/results/search.md]
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

    cache, seed, dev = a.cache_dir, a.seed, "cpu"
    if modality == "image":
        bb, kw = "efficientnet_lite0", {"img_size": a.img_size}
    else:
        bb, kw = "minilm", None
    if name == "pacs_photo_art":
        common = dict(backbone_kwargs=kw, unfreeze="head", standardize="global",
                      max_epochs=a.da_epochs, cache=cache, device=dev, random_state=seed)
        return [(f"dann[lambda={lam:g}]" if lam else "source-only",
                 DANNAdapter(bb, lambda_max=lam, **common)) for lam in (0.0, 0.1, 0.3, 1.0)]
    out = []
    if name == "digits":
        from tlestimators._demo import _pixel_model

        out.append(("pixels", _pixel_model(seed)))
    if modality == "text":
        from tlestimators import ZeroShotTextClassifier

        out.append(("zero-shot[minilm]", ZeroShotTextClassifier(bb, device=dev)))
    out.append((f"probe[{bb}]", FrozenFeatureClassifier(bb, backbone_kwargs=kw, cache=cache,
                                                        device=dev, random_state=seed)))
    out.append((f"mlp-head[{bb}]", FrozenFeatureClassifier(bb, backbone_kwargs=kw, head="mlp",
                                                           cache=cache, device=dev,
                                                           random_state=seed)))
    out.append((f"fine-tune[{bb}]", FineTuneClassifier(
        bb, backbone_kwargs=kw, max_epochs=a.ft_epochs, augment=name != "digits",
        cache=cache, device=dev, random_state=seed)))
    return out


def _acc(model, X, y):
    return float(np.mean(np.asarray(model.predict(X)) == np.asarray(y)))


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_one(name, a):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from tlestimators import FrozenFeatureClassifier, TransferSearchCV

    Xtr, ytr, Xte, yte, modality, Xtgt = load(name, a)
    cands = candidates(name, modality, a)
    da = Xtgt is not None
    if da:
        X_fit = list(Xtr) + list(Xtgt)
        y_fit = np.r_[ytr.astype(object), np.full(len(Xtgt), -1, dtype=object)]
    else:
        X_fit, y_fit = Xtr, ytr
    # warm the shared cache (train + test embeddings) so both searches start equal
    kw = {"img_size": a.img_size} if modality == "image" else None
    bb = "efficientnet_lite0" if modality == "image" else "minilm"
    probe = FrozenFeatureClassifier(bb, backbone_kwargs=kw, cache=a.cache_dir, device="cpu",
                                    random_state=a.seed)
    _, warm_s, _ = _timed(lambda: (probe.fit(Xtr, ytr), probe.predict(Xte)))
    probe_acc = _acc(probe, Xte, yte)
    print(f"[{name}] {len(ytr)} train / {len(yte)} test, cache warm in {warm_s:.1f} s, "
          f"probe {probe_acc:.3f}", flush=True)

    if da:
        from tlestimators.model_selection import DomainAdaptationSearchCV, SourceTargetKFold


        cv = SourceTargetKFold(a.cv, shuffle=True, random_state=a.seed)
        # the exhaustive label-free grid over the same lambdas (0 = source-only)
        grid = DomainAdaptationSearchCV(
            clone(cands[0][1]), {"lambda_max": [c.lambda_max for _, c in cands]}, cv=cv)
    else:
        cv = StratifiedKFold(a.cv, shuffle=True, random_state=a.seed)
        grid = GridSearchCV(Pipeline([("clf", cands[0][1])]),
                            {"clf": [clone(c) for _, c in cands]}, cv=cv, refit=True)
    search = TransferSearchCV([(n, clone(c)) for n, c in cands], budget=a.budget, cv=cv,
                              random_state=a.seed)
    _, s_wall, s_cpu = _timed(lambda: search.fit(X_fit, y_fit))
    s_pick, s_acc = search.best_params_["candidate"], _acc(search, Xte, yte)
    print(f"[{name}] TransferSearchCV: {s_pick} {s_acc:.3f} in {s_wall:.1f} s "
          f"(CPU {s_cpu:.1f})", flush=True)
    _, g_wall, g_cpu = _timed(lambda: grid.fit(X_fit, y_fit))
    if da:
        lam = grid.best_params_["lambda_max"]
        g_pick = f"dann[lambda={lam:g}]" if lam else "source-only"
    else:
        names = {id(c): n for n, c in zip([n for n, _ in cands], grid.param_grid["clf"])}
        g_pick = names[id(grid.best_params_["clf"])]
    g_acc = _acc(grid, Xte, yte)
    print(f"[{name}] exhaustive grid: {g_pick} {g_acc:.3f} in {g_wall:.1f} s "
          f"(CPU {g_cpu:.1f})", flush=True)
    return dict(data=name, n=f"{len(ytr)}/{len(yte)}", grid_pick=g_pick, grid_acc=g_acc,
                grid_s=g_wall, grid_cpu=g_cpu, search_pick=s_pick, search_acc=s_acc,
                search_s=s_wall, search_cpu=s_cpu, probe_acc=probe_acc,
                report=search.report_)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(ALL))
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--ft-epochs", type=int, default=3)
    p.add_argument("--da-epochs", type=int, default=10)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--budget", type=float, default=600.0)
    p.add_argument("--cache-dir", default="/tmp/tle_cache")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results" / "search.md"))
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    rows = []
    for name in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        try:
            rows.append(run_one(name, a))
        except Exception as exc:  # one data set failing must not lose the others
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
            rows.append(dict(data=name, error=f"{type(exc).__name__}: {exc}"))
        write(rows, a)


def write(rows, a):
    lines = [
        "# TransferSearchCV vs the exhaustive grid (benchmarks/bench_search.py)", "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; torch threads {a.threads}; "
        f"images efficientnet_lite0 at {a.img_size} px, text minilm; {a.cv} folds; "
        f"fine-tuning max_epochs {a.ft_epochs}; DA max_epochs {a.da_epochs}; feature cache "
        f"{a.cache_dir} warmed before both timings. Machine: 2 shared cores under load, so "
        "CPU seconds are the better guide to a quiet machine.", "",
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
    lines += ["", "Search reports:", ""]
    for r in rows:
        if "report" in r:
            cols = ["candidate", "mean_score", "fit_seconds", "resource", "stopped"]
            cols = [c for c in cols if c in r["report"].columns]
            lines += [f"## {r['data']}", "", "```",
                      r["report"][cols].to_string(index=False,
                                                  float_format=lambda v: f"{v:.3f}"),
                      "```", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
