"""LoRA (``unfreeze="lora"``) vs full fine-tuning (``unfreeze="all"``) of
efficientnet_lite0 (packaged ImageNet weights), both LP-FT (``head_init="probe"``):
hymenoptera (ants vs bees, train -> val) and a learning curve on sklearn's digits.

Accuracy, trainable-parameter fraction, seconds per training step (median over the
steps) and peak RSS. Each (task, method) runs in its own process so peak RSS is its own;
"RSS before fit" is the same process after imports and data loading. 1 torch thread,
CPU-sized resolutions (hymenoptera 64 px; digits 32 px, and 48 px as task ``digits48``).

    python benchmarks/bench_lora.py            # all, writes benchmarks/results/lora.md
    python benchmarks/bench_lora.py --tasks digits   # re-run digits, keep the other rows
    python benchmarks/bench_lora.py --tasks digits48 # the digits curve at 48 px
    python benchmarks/bench_lora.py --one digits lora 200   # one config, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "lora.md"
EPOCHS = 3
MIN_STEPS = 60


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timer():
    from skorch.callbacks import Callback

    class StepTimer(Callback):
        def initialize(self):
            self.times_, self.trainable_, self.total_ = [], 0, 0
            return self

        def on_train_begin(self, net, **kw):
            ps = list(net.module_.parameters())
            self.trainable_ = sum(p.numel() for p in ps if p.requires_grad)
            self.total_ = sum(p.numel() for p in ps)

        def on_batch_begin(self, net, training=False, **kw):
            self._t = time.perf_counter()

        def on_batch_end(self, net, training=False, **kw):
            if training:
                self.times_.append(time.perf_counter() - self._t)

    return StepTimer()


def _fit_eval(method, Xtr, ytr, Xte, yte, img_size, seed=0, augment=True):
    from tlestimators import FineTuneClassifier

    timer = _timer()
    # at least MIN_STEPS optimizer steps: 3 epochs of 50 digits would be 6 steps
    epochs = max(EPOCHS, math.ceil(MIN_STEPS / math.ceil(len(ytr) / 32)))
    clf = FineTuneClassifier("efficientnet_lite0", backbone_kwargs={"img_size": img_size},
                             unfreeze=method, max_epochs=epochs, batch_size=32,
                             augment=augment,
                             callbacks=[("timer", timer)], device="cpu", random_state=seed)
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(Xte) == yte))
    return {"acc": acc, "fit_s": fit_s, "epochs": epochs, "s_per_step": float(np.median(timer.times_)),
            "trainable": timer.trainable_, "total": timer.total_,
            "trainable_frac": timer.trainable_ / timer.total_}


DIGITS_SIZES = (50, 200, 800)
# 8x8 digits upsampled to this many pixels per task
DIGITS_PX = {"digits": 32, "digits48": 48}


def one(task, method, n=None):
    load0 = _load_avg()
    import torch

    torch.set_num_threads(1)
    if task == "hymenoptera":
        from tlestimators.datasets import load_hymenoptera

        Xtr, ytr = load_hymenoptera("train")
        Xte, yte = load_hymenoptera("val")
        rss0 = _rss_mb()
        r = {"task": task, "n_train": len(ytr),
             **_fit_eval(method, Xtr, ytr, Xte, yte, 64)}
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X = (X.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
        Xp, Xte, yp, yte = train_test_split(X, y, test_size=500, stratify=y, random_state=0)
        rss0 = _rss_mb()
        Xtr, _, ytr, _ = train_test_split(Xp, yp, train_size=n, stratify=yp, random_state=0)
        # no augmentation: the default random crop + horizontal flip changes digits
        r = {"task": task, "n_train": n,
             **_fit_eval(method, Xtr, ytr, Xte, yte, DIGITS_PX[task], augment=False)}
    r.update(method=method, rss_before_mb=rss0, peak_rss_mb=_rss_mb(), threads=1,
             load=(load0 + _load_avg()) / 2)
    return [r]


def _load_avg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--one", nargs="+", metavar="TASK METHOD [N]")
    ap.add_argument("--tasks", nargs="+", default=["hymenoptera", "digits", "digits48"],
                    choices=["hymenoptera", *DIGITS_PX])
    a = ap.parse_args(argv)
    if a.one:
        n = int(a.one[2]) if len(a.one) > 2 else None
        print("RESULT " + json.dumps(one(a.one[0], a.one[1], n)), flush=True)
        return
    rows = []
    # one process per (task, n, method), the two methods interleaved per size so that
    # load changes on the shared machine hit both alike
    jobs = [(t, n, m) for t in a.tasks
            for n in ((None,) if t == "hymenoptera" else DIGITS_SIZES)
            for m in ("all", "lora")]
    for task, n, method in jobs:
        load = _load_avg()
        cmd = [sys.executable, __file__, "--one", task, method] + ([str(n)] if n else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(out.stderr[-3000:], file=sys.stderr)
            continue
        for r in json.loads(line[-1][7:]):
            r["load"] = (load + _load_avg()) / 2
            rows.append(r)
        print(json.dumps(rows[-1]), flush=True)
        write(rows, a.tasks)


def _kept_rows(tasks):
    """Table lines of tasks not re-run now, from the results file (measured earlier)."""
    if not RESULTS.exists():
        return []
    keep = []
    for ln in RESULTS.read_text().splitlines():
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if (ln.startswith("| ") and len(cells) > 3 and cells[0] not in tasks
                and cells[0] != "task"):
            keep.append(ln if len(cells) == 12 else ln + f" earlier run | {EPOCHS} |")
    return keep


def write(rows, tasks=()):
    kept = _kept_rows(tasks)
    lines = [
        "# LoRA vs full fine-tuning (efficientnet_lite0, LP-FT)",
        "",
        f"Produced by `python benchmarks/bench_lora.py --tasks {' '.join(tasks)}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: CPU, 1 torch thread",
        "(`torch.set_num_threads(1)`), a shared 2-core machine loaded by other jobs (load",
        "average in the table; seconds are inflated, compare the two methods within a row",
        "pair, which ran one after the other). `FineTuneClassifier('efficientnet_lite0',",
        f"unfreeze='all' | 'lora', max_epochs=max({EPOCHS}, enough for {MIN_STEPS} steps), "
        "batch_size=32, random_state=0)`, other",
        "parameters default (LP-FT probe head; BatchNorm on its pretrained running statistics,",
        "`freeze_norm_stats=True`, in both; full: head lr 1e-3, backbone 1e-4; LoRA: adapters",
        "at 1e-3, r=8, alpha=16 on the pointwise 1x1 convs). Hymenoptera: train (245) -> val",
        "(153) at 64 px; digits: sklearn's 8x8 images upsampled to 32 px (digits48: 48 px), `augment=False`",
        "(flips change digits), a stratified",
        "learning curve (n_train stratified from the pool), the same 500 held-out test digits.",
        "Trainable fraction = trainable / all parameters of backbone + head during training.",
        "Peak RSS is the process's (imports and data included); RSS before fit is the same",
        "process just before the first fit. Rows of tasks not re-run keep their earlier",
        "measurement (load column 'earlier run').",
        "",
        "| task | n_train | method | accuracy | trainable params | trainable frac | s/step "
        "| fit s | RSS before fit MB | peak RSS MB | load avg | epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += kept
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['n_train']} | {r['method']} | {r['acc']:.3f} | "
            f"{r['trainable']:,} | {r['trainable_frac']:.3f} | {r['s_per_step']:.2f} | "
            f"{r['fit_s']:.0f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r.get('load', float('nan')):.0f} | {r.get('epochs', EPOCHS)} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
