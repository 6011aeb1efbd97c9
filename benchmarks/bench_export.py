"""Shipping a fitted model: onnxruntime vs torch eager, and save/load vs pickle.

- Latency and throughput on the CPU of the exported ONNX graph in onnxruntime
  (:class:`tlestimators.export.OnnxClassifier`) against the estimator's own
  ``predict_proba`` (torch eager, feature cache off so every call runs the network),
  for ``FrozenFeatureClassifier("efficientnet_lite0")`` at 224 px on hymenoptera images
  and ``FrozenFeatureClassifier("minilm")`` on TREC questions, at batch 1 and 32. Both
  sides start from the same raw items (decoded uint8 images / strings) and do their own
  preprocessing, so the times are what a caller sees. Median of interleaved rounds.
- On-disk size and load time of :func:`tlestimators.save` (package weights by reference)
  against ``pickle``.

Both runtimes are pinned to ONE thread (torch.set_num_threads(1) and onnxruntime's
intra/inter-op threads), since the 2-core shared machines make multi-threaded timings
noise; the table says so.

Usage::

    python benchmarks/bench_export.py [--data-dir DIR] [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "export.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TLE_DATA"),
                   help="folder holding hymenoptera/ and trec_question_classification/")
    p.add_argument("--quick", action="store_true", help="3 rounds, fewer items")
    p.add_argument("--rounds", type=int, default=5)
    return p.parse_args(argv)


def _dir_size(path) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _images(data_dir, n):
    from PIL import Image

    from tlestimators.datasets import load_hymenoptera

    paths, labels = load_hymenoptera("train", data_dir=data_dir)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(paths))[: 2 * n]
    X, y = [], []
    for i in idx:
        try:
            with Image.open(paths[i]) as im:
                X.append(np.asarray(im.convert("RGB").resize((256, 256))))
                y.append(labels[i])
        except OSError:
            continue
    return np.stack(X), np.asarray(y)


def _texts(data_dir, n):
    from tlestimators.datasets import load_trec

    X, y = load_trec("train", data_dir=data_dir)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))[: 2 * n]
    return [X[i] for i in idx], np.asarray(y)[idx]


def _time(fn, X, batch, n_batches):
    t = time.perf_counter()
    for b in range(n_batches):
        fn(X[b * batch: (b + 1) * batch])
    return (time.perf_counter() - t) / n_batches


def measure(name, est, X, rounds, n_items):
    import onnxruntime as ort

    from tlestimators.export import OnnxClassifier, export_onnx

    tmp = Path(tempfile.mkdtemp())
    try:
        export_onnx(est, tmp / "onnx")
        runner = OnnxClassifier(tmp / "onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        runner.session = ort.InferenceSession(str(tmp / "onnx" / "model.onnx"), opts,
                                              providers=["CPUExecutionProvider"])
        diff = float(np.abs(runner.predict_proba(X[:32]) - est.predict_proba(X[:32])).max())
        rows = []
        for batch in (1, 32):
            n_batches = max(1, min(n_items // batch, 16 if batch == 1 else 4))
            eager, onnx_t = [], []
            _time(est.predict_proba, X, batch, 1)  # warm-up
            _time(runner.predict_proba, X, batch, 1)
            for _ in range(rounds):  # interleaved rounds
                eager.append(_time(est.predict_proba, X, batch, n_batches))
                onnx_t.append(_time(runner.predict_proba, X, batch, n_batches))
            e, o = statistics.median(eager), statistics.median(onnx_t)
            rows.append((name, batch, 1e3 * e, batch / e, 1e3 * o, batch / o, e / o))
        # save/load vs pickle
        t = time.perf_counter()
        blob = pickle.dumps(est)
        t_pickle_save = time.perf_counter() - t
        t = time.perf_counter()
        pickle.loads(blob)
        t_pickle_load = time.perf_counter() - t
        import tlestimators as tle

        t = time.perf_counter()
        tle.save(est, tmp / "saved")
        t_save = time.perf_counter() - t
        t = time.perf_counter()
        loaded = tle.load(tmp / "saved")
        t_load = time.perf_counter() - t
        same = float(np.abs(loaded.predict_proba(X[:32]) - est.predict_proba(X[:32])).max())
        io_row = (name, len(blob), t_pickle_save, t_pickle_load, _dir_size(tmp / "saved"),
                  t_save, t_load, same, _dir_size(tmp / "onnx"))
        return rows, io_row, diff
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    import torch

    import tlestimators as tle

    args = parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    n_items = 64 if args.quick else 128
    torch.set_num_threads(1)
    data_dir = args.data_dir
    setups = []
    Xi, yi = _images(data_dir, n_items)
    setups.append(("efficientnet_lite0 224 px",
                   tle.FrozenFeatureClassifier("efficientnet_lite0", cache=False,
                                               random_state=0), Xi, yi))
    Xt, yt = _texts(data_dir, n_items)
    setups.append(("minilm (TREC)", tle.FrozenFeatureClassifier("minilm", cache=False,
                                                                random_state=0), Xt, yt))
    speed, io_rows, diffs = [], [], {}
    for name, est, X, y in setups:
        est.fit(X[n_items:], y[n_items:])
        Xq = X[:n_items] if isinstance(X, np.ndarray) else X[:n_items]
        rows, io_row, diff = measure(name, est, Xq, rounds, n_items)
        speed += rows
        io_rows.append(io_row)
        diffs[name] = diff
        print(name, "done", flush=True)
    lines = [
        "# Export: onnxruntime vs torch eager, save/load vs pickle",
        "",
        f"`python benchmarks/bench_export.py{' --quick' if args.quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, 1 thread for torch and onnxruntime, median of {rounds} "
        "interleaved rounds; both sides start from raw items (uint8 images / strings) and do "
        "their own preprocessing. Load average at start: "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        "| model | batch | torch eager ms/batch | eager items/s | onnxruntime ms/batch | "
        "onnxruntime items/s | onnxruntime speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {b} | {e:.1f} | {ei:.1f} | {o:.1f} | {oi:.1f} | {r:.2f}x |"
              for n, b, e, ei, o, oi, r in speed]
    lines += ["", "Max |onnxruntime - predict_proba| on 32 items: "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()), ""]
    lines += [
        "| model | pickle bytes | pickle save s | pickle load s | tlestimators.save bytes | "
        "save s | load s | max diff after load | ONNX dir bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {pb:,} | {ps:.2f} | {pl:.2f} | {sb:,} | {ss:.2f} | {sl:.2f} | {d:.1e} | "
              f"{ob:,} |" for n, pb, ps, pl, sb, ss, sl, d, ob in io_rows]
    lines += ["", "tlestimators.save stores package-provided weights by reference (name + "
              "fingerprint), so its size is the head and the config; load rebuilds the backbone "
              "from the installed package and checks its fingerprint, which is what its load "
              "time pays for."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
