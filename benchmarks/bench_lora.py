"""LoRA (``unfreeze="lora"``) vs full fine-tuning (``unfreeze="all"``) of
efficientnet_lite0 (packaged ImageNet weights), both LP-FT (``head_init="probe"``):
hymenoptera (ants vs bees, train -> val) and a learning curve on sklearn's digits.

Accuracy, trainable-parameter fraction, seconds per training step (median over the
steps) and peak RSS. Each (task, method) runs in its own process so peak RSS is its own;
"RSS before fit" is the same process after imports and data loading. 1 torch thread,
CPU-sized resolutions (hymenoptera 64 px, digits 32 px).

    python benchmarks/bench_lora.py            # all, writes benchmarks/results/lora.md
    python benchmarks/bench_lora.py --one hymenoptera lora   # one config, JSON on stdout
"""

from __future__ import annotations

import argparse
import json
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


def _fit_eval(method, Xtr, ytr, Xte, yte, img_size, seed=0):
    from tlestimators import FineTuneClassifier

    timer = _timer()
    clf = FineTuneClassifier("efficientnet_lite0", backbone_kwargs={"img_size": img_size},
                             unfreeze=method, max_epochs=EPOCHS, batch_size=32,
                             callbacks=[("timer", timer)], device="cpu", random_state=seed)
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    acc = float(np.mean(clf.predict(Xte) == yte))
    return {"acc": acc, "fit_s": fit_s, "s_per_step": float(np.median(timer.times_)),
            "trainable": timer.trainable_, "total": timer.total_,
            "trainable_frac": timer.trainable_ / timer.total_}


def one(task, method):
    import torch

    torch.set_num_threads(1)
    rows = []
    if task == "hymenoptera":
        from tlestimators.datasets import load_hymenoptera

        Xtr, ytr = load_hymenoptera("train")
        Xte, yte = load_hymenoptera("val")
        rss0 = _rss_mb()
        r = _fit_eval(method, Xtr, ytr, Xte, yte, 64)
        rows.append({"task": task, "n_train": len(ytr), **r})
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X = (X.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
        Xp, Xte, yp, yte = train_test_split(X, y, test_size=500, stratify=y, random_state=0)
        rss0 = _rss_mb()
        for n in (50, 200, 800):
            Xtr, _, ytr, _ = train_test_split(Xp, yp, train_size=n, stratify=yp, random_state=0)
            r = _fit_eval(method, Xtr, ytr, Xte, yte, 32)
            rows.append({"task": task, "n_train": n, **r})
    for r in rows:
        r.update(method=method, rss_before_mb=rss0, peak_rss_mb=_rss_mb(), threads=1)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--one", nargs=2, metavar=("TASK", "METHOD"))
    ap.add_argument("--tasks", nargs="+", default=["hymenoptera", "digits"])
    a = ap.parse_args(argv)
    if a.one:
        print("RESULT " + json.dumps(one(*a.one)), flush=True)
        return
    rows = []
    for task in a.tasks:
        for method in ("all", "lora"):
            out = subprocess.run([sys.executable, __file__, "--one", task, method],
                                 capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(out.stderr[-3000:], file=sys.stderr)
                continue
            rows += json.loads(line[-1][7:])
            print(json.dumps(rows[-1]), flush=True)
            write(rows)


def write(rows):
    lines = [
        "# LoRA vs full fine-tuning (efficientnet_lite0, LP-FT)",
        "",
        f"Produced by `python benchmarks/bench_lora.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: CPU, 1 torch thread, a shared",
        "2-core machine under heavy load from other jobs (seconds are inflated; compare the",
        "two methods within a row group). `FineTuneClassifier('efficientnet_lite0',",
        f"unfreeze='all' | 'lora', max_epochs={EPOCHS}, batch_size=32, random_state=0)`, other",
        "parameters default (LP-FT probe head; full: head lr 1e-3, backbone 1e-4; LoRA: adapters",
        "at 1e-3, r=8, alpha=16 on the pointwise 1x1 convs). Hymenoptera: train (245) -> val",
        "(153) at 64 px; digits: 8x8 images upsampled to 32 px, 500 held-out test digits.",
        "Trainable fraction = trainable / all parameters of backbone + head during training.",
        "Peak RSS is the process's (imports and data included); RSS before fit is the same",
        "process just before the first fit.",
        "",
        "| task | n_train | method | accuracy | trainable params | trainable frac | s/step "
        "| fit s | RSS before fit MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['n_train']} | {r['method']} | {r['acc']:.3f} | "
            f"{r['trainable']:,} | {r['trainable_frac']:.3f} | {r['s_per_step']:.2f} | "
            f"{r['fit_s']:.0f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
