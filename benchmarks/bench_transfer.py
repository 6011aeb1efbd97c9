"""Feature extraction vs fine-tuning: accuracy, the feature cache and embedding overhead.

Sections (``--sections``, comma separated; all by default):

- ``hymenoptera``: ants vs bees (the PyTorch transfer-learning tutorial data), frozen
  EfficientNet-Lite0 (linear head) vs fine-tuned, validation accuracy. Reference: the
  skorch tutorial fine-tunes ResNet18 to about 0.96.
- ``digits``: sklearn digits (8x8, upsampled by the backbone's preprocessing) with 10 /
  30 / all labels per class: frozen vs fine-tuned EfficientNet-Lite0 vs the same CNN
  trained from scratch vs logistic regression on the pixels; a learning-curve PNG.
- ``cache``: wall time of ``GridSearchCV(cv=5)`` over 6 head settings of
  ``FrozenFeatureClassifier`` with the feature cache on vs off, and vs the floor of one
  embedding pass plus the same head fits on precomputed embeddings, in the same run.
- ``overhead``: ``BackboneEmbedder`` embeddings/s vs a plain torch inference loop over
  the same backbone and batch size, in the same run.

Usage::

    python benchmarks/bench_transfer.py [--data-dir DIR] [--quick] [--sections ...]

Writes ``benchmarks/results/transfer.md`` and ``transfer_digits_learning_curve.png``.
Absent datasets are skipped with a message; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

BACKBONE = "efficientnet_lite0"


def log(*a):
    print(*a, flush=True)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _load_pil(paths, short_side):
    """Decode once, shrink so the short side is ``short_side`` (the preprocessing then
    only crops/resizes small images); returns a list of RGB PIL images."""
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            s = short_side / min(im.size)
            if s < 1:
                im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))),
                               Image.BICUBIC)
            out.append(im.copy())
    return out


# --------------------------------------------------------------------------- hymenoptera
def bench_hymenoptera(data_dir, quick):
    """Frozen probe vs LP-FT fine-tuning, both with their DEFAULT parameters (224 px, the
    packaged ImageNet weights), train -> val. Nothing here was chosen on val."""
    from tlestimators import FineTuneClassifier, FrozenFeatureClassifier
    from tlestimators.datasets import DatasetNotFoundError, load_hymenoptera

    try:
        ptr, ytr = load_hymenoptera("train", data_dir)
        pva, yva = load_hymenoptera("val", data_dir)
    except DatasetNotFoundError as exc:
        return f"_hymenoptera skipped: {exc}_"
    kw = {"backbone_kwargs": {"img_size": 96}} if quick else {}
    # decode once, short side 256 (the default eval preprocessing resizes and centre-crops
    # from there; train-time random resized crops see the same pixels)
    Xtr, Xva = _load_pil(ptr, 256), _load_pil(pva, 256)
    rows = []
    t = time.perf_counter()
    frozen = FrozenFeatureClassifier(BACKBONE, random_state=0, **kw).fit(Xtr, ytr)
    acc_frozen = frozen.score(Xva, yva)
    rows.append(["frozen probe: FrozenFeatureClassifier() defaults (LinearProbeCV head)",
                 _px(frozen), "convex probe, C by 5-fold CV", f"{acc_frozen:.3f}",
                 f"{time.perf_counter() - t:.0f}"])
    log("hymenoptera", rows[-1])
    ft = FineTuneClassifier(BACKBONE, random_state=0, **kw)
    if quick:
        ft.set_params(max_epochs=2)
    t = time.perf_counter()
    ft.fit(Xtr, ytr)
    acc_ft = ft.score(Xva, yva)
    p = ft.get_params()
    rows.append([
        "LP-FT: FineTuneClassifier() defaults (probe-initialised head, unfreeze='all')",
        _px(ft),
        f"{p['max_epochs']} epochs, batch {p['batch_size']}, head lr {p['lr']:g}, backbone "
        f"lr {p['lr'] / 10:g}, warm-up {p['warmup']:g} + cosine, augment"
        + (", BatchNorm statistics frozen" if p.get("freeze_norm_stats") else ""),
        f"{acc_ft:.3f}", f"{time.perf_counter() - t:.0f}"])
    log("hymenoptera", rows[-1])
    verdict = (f"LP-FT {acc_ft:.3f} vs frozen probe {acc_frozen:.3f}: target LP-FT >= probe "
               f"{'met' if acc_ft >= acc_frozen else 'NOT met'}; stretch >= 0.96 "
               f"{'met' if acc_ft >= 0.96 else 'NOT met'}.")
    return (
        f"### Hymenoptera (ants vs bees): {len(ytr)} train / {len(yva)} val images, "
        f"validation accuracy\n\nBoth estimators with their default parameters "
        f"(`random_state=0`, backbone {BACKBONE} with the packaged ImageNet weights); no "
        "setting was chosen on val. Reference: the skorch tutorial fine-tunes ResNet18 to "
        "about 0.96.\n\n"
        + table(["model", "input", "training", "val accuracy", "wall s"], rows)
        + "\n\n" + verdict
    )


def _px(est):
    """Input resolution of a fitted estimator's backbone, as 'N px'."""
    bb = getattr(est, "backbone_", None)
    if bb is None:
        bb = est.net_.module_.backbone
    return f"{bb.config.input_size[-1]} px"


# --------------------------------------------------------------------------- digits
def _digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return imgs, d.data.astype(np.float32) / 16.0, d.target


def _subset(y, per_class, rng):
    if per_class is None:
        return np.arange(len(y))
    idx = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


def bench_digits(quick):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from tlestimators import FineTuneClassifier, FrozenFeatureClassifier

    imgs, pixels, y = _digits_images()
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y,
                                      random_state=0)
    px = 64
    sizes = [10, 30, None]
    ft_epochs, min_steps = (3, 30) if quick else (10, 150)
    idx_te = idx_te[: 300 if quick else 600]
    rng = np.random.default_rng(0)
    res = {}
    rows = []
    for per_class in sizes:
        sub = idx_tr[_subset(y[idx_tr], per_class, rng)]
        label = "all" if per_class is None else str(per_class)
        n_pc = f"{label} ({len(sub)} images)"
        kw = {"img_size": px, "augment": False}
        # a fixed budget of optimizer steps: a few epochs of 4 batches would not train
        epochs = max(ft_epochs, math.ceil(min_steps / math.ceil(len(sub) / 32)))
        methods = {
            "logistic regression on pixels": lambda: LogisticRegression(max_iter=3000),
            "frozen EfficientNet-Lite0 + linear head": lambda kw=kw: FrozenFeatureClassifier(
                BACKBONE, backbone_kwargs=kw, lr=1e-3, max_epochs=100, batch_size=32,
                random_state=0),
            "fine-tuned EfficientNet-Lite0": lambda kw=kw, epochs=epochs: FineTuneClassifier(
                BACKBONE, backbone_kwargs=kw, unfreeze="all", lr=2e-3, backbone_lr=1e-3,
                warmup=0.1, max_epochs=epochs, batch_size=32, augment=False,
                random_state=0),
            "same CNN from scratch": lambda kw=kw, epochs=epochs: FineTuneClassifier(
                BACKBONE, backbone_kwargs={**kw, "pretrained": False}, unfreeze="all",
                lr=2e-3, backbone_lr=2e-3, warmup=0.1, max_epochs=epochs, batch_size=32,
                augment=False, random_state=0),
        }
        for name, make in methods.items():
            Xtr = pixels[sub] if "pixels" in name else imgs[sub]
            Xte = pixels[idx_te] if "pixels" in name else imgs[idx_te]
            t = time.perf_counter()
            acc = make().fit(Xtr, y[sub]).score(Xte, y[idx_te])
            wall = time.perf_counter() - t
            res.setdefault(name, []).append(acc)
            ep = f"{epochs} epochs" if "EfficientNet" in name and "frozen" not in name or (
                "scratch" in name) else ""
            rows.append([n_pc, name, ep, f"{acc:.3f}", f"{wall:.0f}"])
            log("digits", rows[-1])
    png = RESULTS / "transfer_digits_learning_curve.png"
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [10, 30, int(len(idx_tr) / 10)]
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, accs in res.items():
            ax.plot(xs, accs, marker="o", label=name)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(xs, [str(v) if i < 2 else f"all (~{v})" for i, v in enumerate(xs)])
        ax.set_xlabel("labelled images per class")
        ax.set_ylabel(f"test accuracy ({len(idx_te)} images)")
        ax.set_title(f"sklearn digits, {BACKBONE} at {px} px")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        plt.close(fig)
        plot_note = f"\n\nLearning curve: `{png.relative_to(ROOT)}`."
    except ImportError:
        plot_note = "\n\n_matplotlib is not installed: no plot._"
    return (
        f"### sklearn digits: labels per class vs test accuracy\n\n8x8 digits upsampled to "
        f"{px} px by the backbone's preprocessing; fixed stratified test half "
        f"({len(idx_te)} images); fine-tuning and scratch: at least {ft_epochs} epochs and "
        f"{min_steps} optimizer steps (batch 32), no augmentation (flips change digits).\n\n"
        + table(["labels per class", "model", "training", "test accuracy", "wall s"], rows)
        + plot_note
    )


# --------------------------------------------------------------------------- cache
def bench_cache(data_dir, quick):
    from sklearn.model_selection import GridSearchCV

    from tlestimators import FrozenFeatureClassifier, create_backbone
    from tlestimators.datasets import DatasetNotFoundError, load_hymenoptera
    from tlestimators.features import clear_feature_cache, compute_embeddings

    try:
        paths, y = load_hymenoptera("train", data_dir)
        what = f"hymenoptera train ({len(y)} images)"
        X = _load_pil(paths, 160)
    except DatasetNotFoundError:
        imgs, _, y = _digits_images()
        X, y, what = imgs[:600], y[:600], "sklearn digits (600 images)"
    px = 64 if quick else 224
    grid = {"head": ["linear", "mlp"], "lr": [1e-3, 3e-3, 1e-2]}
    base = dict(backbone_kwargs={"img_size": px}, max_epochs=10, batch_size=32,
                random_state=0, device="cpu")

    def search(cache):
        from tlestimators import probe

        clear_feature_cache()  # and the probe fits on the cached embeddings
        size = probe.FIT_MEMO_SIZE
        probe.FIT_MEMO_SIZE = size if cache else 0  # "off": every probe fit solved too
        try:
            t = time.perf_counter()
            GridSearchCV(FrozenFeatureClassifier(BACKBONE, cache=cache, **base), grid,
                         cv=5).fit(X, y)
            return time.perf_counter() - t
        finally:
            probe.FIT_MEMO_SIZE = size

    create_backbone(BACKBONE, img_size=px)  # warm imports and weight loading for all
    t_on = search(True)
    log("cache on", t_on)
    t_off = search(False)
    log("cache off", t_off)
    # floor: one embedding pass, then the same 6 x 5 head fits on the embeddings
    t = time.perf_counter()
    bb = create_backbone(BACKBONE, img_size=px)
    Z = compute_embeddings(bb, bb.check_input(X), batch_size=32, cache=False)
    t_embed = time.perf_counter() - t
    t = time.perf_counter()
    heads_only = FrozenFeatureClassifier(
        "mlp", cache=False, **{**base, "backbone_kwargs": {"hidden_sizes": ()}})
    GridSearchCV(heads_only, grid, cv=5).fit(Z, y)
    t_heads = time.perf_counter() - t
    floor = t_embed + t_heads
    rows = [
        ["cache off", f"{t_off:.1f}", "1.00"],
        ["cache on", f"{t_on:.1f}", f"{t_off / t_on:.1f}x faster"],
        ["floor: one embedding pass + the head fits", f"{floor:.1f} "
         f"({t_embed:.1f} + {t_heads:.1f})", f"cache on / floor = {t_on / floor:.2f}"],
    ]
    verdict = (f"speed-up {t_off / t_on:.1f}x (target >= 10x): "
               f"{'met' if t_off / t_on >= 10 else 'NOT met'}; cache on / floor "
               f"{t_on / floor:.2f} (target <= 1.5): "
               f"{'met' if t_on / floor <= 1.5 else 'NOT met'}.")
    return (
        f"### Feature cache: GridSearchCV(cv=5) over 6 head settings of "
        f"FrozenFeatureClassifier\n\n{what}, {BACKBONE} at {px} px, heads: "
        f"{grid}, 10 epochs each (31 fits).\n\n"
        + table(["run", "wall s", "ratio"], rows) + "\n\n" + verdict
    )


# --------------------------------------------------------------------------- overhead
def bench_overhead(data_dir, quick):
    import torch

    from tlestimators import BackboneEmbedder, create_backbone
    from tlestimators.features import clear_feature_cache

    imgs, _, _ = _digits_images()
    n = 512 if quick else 1536
    X = np.ascontiguousarray(imgs[np.arange(n) % len(imgs)])
    # distinct items so the cache cannot short-cut repeats
    X = X.copy()
    X[:, 0, 0] = np.arange(n) % 251
    px, bs = 64, 64
    bb = create_backbone(BACKBONE, img_size=px).eval()

    def plain():
        t, c = time.perf_counter(), time.process_time()
        outs = []
        with torch.inference_mode():
            for s in range(0, n, bs):
                outs.append(bb(bb.preprocess(X[s:s + bs], train=False)))
        torch.cat(outs).numpy()
        return n / (time.perf_counter() - t), n / (time.process_time() - c)

    def embedder(cache):
        clear_feature_cache()
        emb = BackboneEmbedder(BACKBONE, backbone_kwargs={"img_size": px}, batch_size=bs,
                               device="cpu", cache=cache).fit(X[:2])
        t, c = time.perf_counter(), time.process_time()
        emb.transform(X)
        return n / (time.perf_counter() - t), n / (time.process_time() - c)

    plain()  # warm-up
    embedder(False)
    reps = 2 if quick else 3
    runs = {"plain": [], "off": [], "on": []}
    for _ in range(reps):  # interleaved, so load changes hit every variant
        runs["plain"].append(plain())
        runs["off"].append(embedder(False))
        runs["on"].append(embedder(True))
    med = {k: float(np.median([r[0] for r in v])) for k, v in runs.items()}
    cpu = {k: float(np.median([r[1] for r in v])) for k, v in runs.items()}
    names = {
        "plain": "plain torch loop (preprocess + forward, inference_mode)",
        "off": "BackboneEmbedder, cache=False",
        "on": "BackboneEmbedder, cache=True (cold: hashing + storing)",
    }
    rows = [[names[k], f"{med[k]:.0f}", f"{med[k] / med['plain']:.2f}", f"{cpu[k]:.0f}",
             f"{cpu[k] / cpu['plain']:.2f}"] for k in names]
    ok = min(med["off"], med["on"]) / med["plain"] >= 0.95
    ok_cpu = min(cpu["off"], cpu["on"]) / cpu["plain"] >= 0.95
    return (
        f"### Embedding overhead: {BACKBONE} at {px} px, batch {bs}, {n} digit images "
        f"(uint8), CPU, median of {reps} interleaved runs\n\n"
        + table(["loop", "embeddings/s (wall)", "ratio", "embeddings per CPU-s",
                 "ratio (CPU time)"], rows)
        + f"\n\nTarget ratio >= 0.95: wall {'met' if ok else 'NOT met'}, CPU time "
        f"{'met' if ok_cpu else 'NOT met'}. CPU time is the steadier measure on a shared "
        "machine (other jobs stretch wall time)."
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("TLE_DATA"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="hymenoptera,digits,cache,overhead")
    ap.add_argument("--output", default=str(RESULTS / "transfer.md"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice); on a machine "
                         "loaded by other jobs, 1 avoids threads spin-waiting for each other")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    parts = []
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    for sec in wanted:
        t = time.perf_counter()
        if sec == "hymenoptera":
            parts.append(bench_hymenoptera(args.data_dir, args.quick))
        elif sec == "digits":
            parts.append(bench_digits(args.quick))
        elif sec == "cache":
            parts.append(bench_cache(args.data_dir, args.quick))
        elif sec == "overhead":
            parts.append(bench_overhead(args.data_dir, args.quick))
        else:
            raise SystemExit(f"unknown section {sec!r}; choose from hymenoptera, digits, "
                             "cache, overhead")
        log(f"[{sec}] {time.perf_counter() - t:.0f} s")
        print(parts[-1], flush=True)
        _write(args, parts, torch)  # after every section: a killed run keeps its results


def _write(args, parts, torch):
    header = (
        "## Transfer: feature extraction vs fine-tuning, feature cache, overhead\n\n"
        f"`python benchmarks/bench_transfer.py {' '.join(args.argv)}` on "
        f"{platform.machine()} with {os.cpu_count()} CPUs (shared), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CUDA' if torch.cuda.is_available() else 'no GPU'}. "
        f"{time.strftime('%Y-%m-%d %H:%M')}.\n"
    )
    text = header + "\n" + "\n\n".join(parts) + "\n"
    out = Path(args.output)
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
