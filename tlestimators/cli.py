"""The ``tlestimators`` command: ``list-backbones``, ``info NAME``, ``demo``, ``bench``,
``search DATA``, ``predict MODEL DATA``.

Each subcommand is a ``cmd_*(args) -> int`` function and an ``_add_*(subparsers)``
function listed in :data:`SUBCOMMANDS`; :func:`main` turns the toolkit's user errors
into one line on stderr and exit code 1.

``demo`` with no arguments compares transfer-learning strategies on scikit-learn's
bundled digits with ``efficientnet_lite0`` (weights from an installed package; nothing
is downloaded) and prints a table of held-out accuracy and fit time next to a plain
logistic regression on the pixels. ``--data`` points it at your own data: a folder of
images with one sub-folder per class, or a CSV file with ``text`` and ``label`` columns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main", "build_parser"]

DEFAULT_IMAGE_BACKBONE = "efficientnet_lite0"
DEFAULT_TEXT_BACKBONE = "minilm"
STRATEGIES = ("baseline", "frozen", "finetune")
DEFAULT_STRATEGIES = ("baseline", "frozen")


# --------------------------------------------------------------------------- helpers
def _table(headers, rows) -> str:
    """A markdown table whose columns line up in a terminal too."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]

    def line(vals):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _strategies(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown strategy {', '.join(bad) or text!r}; choose from {', '.join(STRATEGIES)}"
        )
    return names


# --------------------------------------------------------------------------- list / info
def cmd_list_backbones(args) -> int:
    from tlestimators.backbones import registry
    from tlestimators.exceptions import PluginLoadError

    entries = registry._all_entries()
    names = registry.list_backbones(args.pattern)
    rows, failed = [], 0
    for name in names:
        e = entries[name]
        source = e.source.split(" (")[0] if e.source.startswith("plugin") else "built-in"
        try:
            e.load()  # describing a plugin imports it (its warning names it if it fails)
        except PluginLoadError:
            failed += 1
            rows.append([name, "?", source, f"FAILED TO LOAD: {e.error}"])
            continue
        rows.append([name, e.modality or "?", source, e.description])
    if not rows:
        print(f"no backbone matches {args.pattern!r}")
        return 1
    print(_table(["name", "modality", "source", "description"], rows))
    print("\nNames ending in '/' are families: add a model, e.g. timm/resnet18.")
    if failed:
        print(f"{failed} plugin(s) failed to load; see the warnings above.", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from tlestimators.backbones.registry import backbone_info

    info = backbone_info(args.name, pretrained=not args.random)
    # the name resolved but no backbone could be built from it: still say where it comes
    # from, but exit non-zero so scripts notice
    rc = 1 if "config_error" in info else 0
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return rc
    config = info.pop("config", None)
    for key, value in info.items():
        print(f"{key:>16}: {value}")
    if config:
        print(f"{'config':>16}:")
        for key, value in config.items():
            if value is not None and value != {}:
                print(f"{key:>20} = {value}")
    if rc:
        print(f"tlestimators info: error: {args.name!r} cannot be built: {info['config_error']}",
              file=sys.stderr)
    return rc


# --------------------------------------------------------------------------- demo
def _load_digits():
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8) grey
    return ("sklearn digits: 1797 grey 8x8 images, 10 classes", "image", images, d.target,
            d.data.astype(np.float32))


def _pixel_features(paths, size=16):
    import numpy as np
    from PIL import Image

    out = np.empty((len(paths), size * size), dtype=np.float32)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("L").resize((size, size)), dtype=np.float32).ravel()
    return out / 255.0


def _load_user_data(path, args, name="--data"):
    from pathlib import Path

    from tlestimators import datasets

    p = Path(path).expanduser()
    if p.is_dir():
        paths, labels = datasets.load_image_folder(p)
        return (f"image folder {str(p)!r}: {len(paths)} images, "
                f"{len(set(labels))} classes", "image", paths, labels, None)
    if p.is_file() and p.suffix.lower() == ".csv":
        texts, labels = datasets.load_text_csv(p, args.text_column, args.label_column)
        return (f"CSV {str(p)!r}: {len(texts)} texts, {len(set(labels))} classes", "text",
                texts, labels, None)
    raise ValueError(
        f"{name} {str(path)!r} is neither a directory of images (one sub-folder per class) "
        "nor a .csv file with text and label columns."
    )


def _subsample(X, y, limit, seed):
    import numpy as np

    from tlestimators.data import take

    if limit is None or limit >= len(y):
        return X, y, None
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:limit])
    return take(X, idx), np.asarray(y)[idx], idx


def _baseline(modality, X_raw_train, X_raw_test, pix_train, pix_test, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        model = make_pipeline(TfidfVectorizer(sublinear_tf=True),
                              LogisticRegression(max_iter=2000, random_state=seed))
        return "tf-idf + logistic regression", model, X_raw_train, X_raw_test
    lr = LogisticRegression(max_iter=2000, random_state=seed)
    if pix_train is None:  # image files: decoding to 16x16 grey pixels is part of the fit time
        from sklearn.preprocessing import FunctionTransformer

        model = make_pipeline(FunctionTransformer(_pixel_features), StandardScaler(), lr)
        return "logistic regression on pixels", model, X_raw_train, X_raw_test
    return "logistic regression on pixels", make_pipeline(StandardScaler(), lr), pix_train, \
        pix_test


def _demo_models(args, modality, backbone, n_train):
    """(strategy label, estimator) pairs for the requested strategies."""
    kwargs = {"img_size": args.img_size} if modality == "image" else {}
    out = []
    if "frozen" in args.strategies:
        from tlestimators.estimators.frozen import FrozenFeatureClassifier

        out.append((f"frozen {backbone} + linear head", FrozenFeatureClassifier(
            backbone, backbone_kwargs=kwargs or None, max_epochs=args.head_epochs,
            lr=1e-2, batch_size=args.batch_size or 64, random_state=args.random_state,
            device=args.device,
        )))
    if "finetune" in args.strategies:
        try:
            from tlestimators.estimators.finetune import FineTuneClassifier
        except ImportError as exc:
            print(f"(skipping fine-tuning: FineTuneClassifier is unavailable: {exc})",
                  file=sys.stderr)
        else:
            out.append((f"fine-tune {backbone} ({args.finetune_epochs} epochs)",
                        FineTuneClassifier(
                            backbone, backbone_kwargs=kwargs or None,
                            max_epochs=args.finetune_epochs, batch_size=args.batch_size or 32,
                            # random resized crops would cut 8x8 digits apart
                            augment=args.data is not None,
                            random_state=args.random_state, device=args.device,
                        )))
    return out


def cmd_demo(args) -> int:
    import numpy as np
    from sklearn.model_selection import train_test_split

    from tlestimators.data import take

    if args.data is None and args.backbone is None and args.strategies is None:
        # the showcase: search, continual stream and domain shift on digits
        from tlestimators._demo import run_digits_showcase

        return run_digits_showcase(args, table=_table, predict=cmd_predict)
    args.strategies = args.strategies or list(DEFAULT_STRATEGIES)
    if args.data is None:
        desc, modality, X, y, pix = _load_digits()
    else:
        desc, modality, X, y, pix = _load_user_data(args.data, args)
    X, y, idx = _subsample(X, y, args.limit, args.random_state)
    if pix is not None and idx is not None:
        pix = pix[idx]
    y = np.asarray(y)
    backbone = args.backbone or (DEFAULT_TEXT_BACKBONE if modality == "text"
                                 else DEFAULT_IMAGE_BACKBONE)
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    tr, te = train_test_split(np.arange(len(y)), test_size=args.test_size,
                              random_state=args.random_state, stratify=stratify)
    X_tr, X_te, y_tr, y_te = take(X, tr), take(X, te), y[tr], y[te]
    majority = counts.max() / counts.sum()
    print(f"data: {desc}")
    print(f"split: {len(tr)} train / {len(te)} held out (majority-class accuracy "
          f"{majority:.3f})" + (f"; backbone input {args.img_size} px" if modality == "image"
                                else ""))

    rows = []

    def run(label, model, Xa, Xb, name):
        t0 = time.perf_counter()
        model.fit(Xa, y_tr)
        fit_s = time.perf_counter() - t0
        acc = float(np.mean(model.predict(Xb) == y_te))
        rows.append([label, name, f"{acc:.3f}", f"{fit_s:.1f}"])
        print(f"  done: {label}: accuracy {acc:.3f} in {fit_s:.1f} s", file=sys.stderr)

    if "baseline" in args.strategies:
        label, model, Xa, Xb = _baseline(modality, X_tr, X_te,
                                         None if pix is None else pix[tr],
                                         None if pix is None else pix[te], args.random_state)
        run(label, model, Xa, Xb, "-")
    for label, model in _demo_models(args, modality, backbone, len(tr)):
        run(label, model, X_tr, X_te, backbone)
    print()
    print(_table(["strategy", "backbone", "held-out accuracy", "fit time (s)"], rows))
    if args.data is None:
        print("\nDigits are 8x8 pen strokes, far from the photos ImageNet backbones learned "
              "from,\nso raw pixels are a strong baseline here; on natural images "
              "(--data DIR) transfer\nis what pays off. Fit times include computing the "
              "embeddings.")
    return 0


# --------------------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    import numpy as np
    import torch

    from tlestimators.backbones.registry import create_backbone
    from tlestimators.data import take
    from tlestimators.features import compute_embeddings

    kwargs = {"img_size": args.img_size} if args.img_size else {}
    if args.random:
        kwargs["pretrained"] = False
    bb = create_backbone(args.name, **kwargs)
    modality = bb.config.modality
    rng = np.random.default_rng(0)
    if modality in ("image", "image-text"):
        size = bb.config.input_size[-1]
        X = rng.integers(0, 256, size=(args.n, size, size, 3), dtype=np.uint8)
    elif modality == "text":
        words = "the a cat dog sat on mat quick brown fox jumps over lazy river".split()
        X = [" ".join(rng.choice(words, size=12)) for _ in range(args.n)]
    else:
        X = rng.normal(size=(args.n, bb.config.in_features or 8)).astype(np.float32)
    items = bb.check_input(X)
    warm = take(items, list(range(min(args.batch_size, args.n))))
    compute_embeddings(bb, warm, batch_size=args.batch_size, cache=False)
    t0 = time.perf_counter()
    emb = compute_embeddings(bb, items, batch_size=args.batch_size, cache=False)
    dt = time.perf_counter() - t0
    print(_table(["backbone", "input", "batch", "n", "embeddings/s", "threads"], [[
        args.name,
        f"{bb.config.input_size[-1]} px" if modality in ("image", "image-text") else modality,
        args.batch_size, args.n, f"{emb.shape[0] / dt:.1f}", torch.get_num_threads(),
    ]]))
    return 0


def _predict_inputs(data, text_column):
    """DATA of ``predict``: an image folder (searched recursively), image files, a CSV
    with a text column, or a .npy array of features. Returns ``(ids, items)``."""
    from pathlib import Path

    from tlestimators.data import IMAGE_SUFFIXES, is_image_path

    paths = [Path(d).expanduser() for d in data]
    if len(paths) == 1 and paths[0].is_dir():
        files = sorted(f for f in paths[0].rglob("*") if is_image_path(f))
        if not files:
            raise ValueError(f"DATA folder {str(paths[0])!r} holds no image files "
                             f"({', '.join(IMAGE_SUFFIXES)}).")
        return [str(f) for f in files], [str(f) for f in files]
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        import csv

        with open(paths[0], newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))
        if not rows or text_column not in rows[0]:
            raise ValueError(f"DATA {str(paths[0])!r} has no {text_column!r} column (set "
                             "--text-column).")
        return [str(i) for i in range(len(rows))], [r[text_column] for r in rows]
    if len(paths) == 1 and paths[0].suffix.lower() == ".npy":
        import numpy as np

        X = np.load(paths[0], allow_pickle=False)
        return [str(i) for i in range(len(X))], X
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"DATA files not found: {missing[:5]}")
    return [str(p) for p in paths], [str(p) for p in paths]


_KIND_OF = {"image": "images", "image-text": "images", "text": "texts",
            "features": "features"}


def _data_kind(data, items):
    """What ``tlestimators predict`` was given: images (a folder or image files), texts
    (a CSV) or features (.npy); None when it cannot tell."""
    from tlestimators.data import is_image_path

    if isinstance(items, list) and items and all(is_image_path(p) for p in items):
        return "images"
    first = str(data[0]).lower() if len(data) == 1 else ""
    return {".csv": "texts", ".npy": "features"}.get(first[first.rfind("."):])


def _model_modality(model):
    """The input modality of a loaded model (its backbone's), or None when it has none
    to tell (an ONNX export, a pipeline of other steps)."""
    for m in (model, getattr(model, "estimator_", None)):  # LabeledOnly holds the fit
        config = getattr(getattr(m, "backbone_", None), "config", None)
        if config is not None:
            return config.modality
    return getattr(model, "spec", {}).get("modality")  # OnnxClassifier


def cmd_predict(args) -> int:
    """Predict with a model saved by tlestimators.save (or exported by export_onnx)."""
    import csv
    from pathlib import Path

    import numpy as np

    model_dir = Path(args.model).expanduser()
    if (model_dir / "preprocessing.json").is_file() and (model_dir / "model.onnx").is_file():
        from tlestimators.export import OnnxClassifier

        model = OnnxClassifier(model_dir)
    else:
        from tlestimators.io import UntrustedTypeError, load

        try:
            model = load(model_dir, trusted=args.trust)
        except UntrustedTypeError as exc:
            if getattr(exc, "name", None) is None:
                raise
            raise UntrustedTypeError(f"{exc} From the command line: --trust {exc.name}") from exc
    ids, items = _predict_inputs(args.data, args.text_column)
    kind = _data_kind(args.data, items)
    expected = _model_modality(model)
    if kind is not None and expected is not None and kind != _KIND_OF.get(expected, expected):
        raise ValueError(f"DATA holds {kind} but the model was fitted on {expected} input.")
    proba = np.asarray(model.predict_proba(items))
    classes = np.asarray(model.classes_)
    pred = classes[np.argmax(proba, axis=1)]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        w = csv.writer(out)
        w.writerow(["item", "prediction"] + [f"proba_{c}" for c in classes.tolist()])
        for i, p, row in zip(ids, pred.tolist(), proba):
            w.writerow([i, p] + [f"{v:.6f}" for v in row])
    finally:
        if args.output:
            out.close()
            print(f"wrote {len(ids)} predictions to {args.output}", file=sys.stderr)
    return 0


def _unlabeled_target(path, modality, text_column):
    """Items of ``--target``: an image folder (any layout, searched recursively) or a
    CSV with a text column; they join the training data with label -1."""
    ids, items = _predict_inputs([path], text_column)
    kind = "text" if str(path).lower().endswith(".csv") else "image"
    if kind != modality:
        raise ValueError(f"--target {str(path)!r} holds {kind} data but DATA holds {modality} data.")
    return items


def cmd_search(args) -> int:
    """Pick backbone and strategy with TransferSearchCV; print the report; save the pick."""
    from pathlib import Path

    import numpy as np

    import tlestimators as tle
    from tlestimators.estimators.search import BUDGETS

    if args.save:  # save's own check, before the search rather than after it
        from tlestimators.io import _check_save_path

        _check_save_path(Path(args.save).expanduser(), args.overwrite,
                        overwrite_flag="--overwrite")
    desc, modality, X, y, _ = _load_user_data(args.data, args, name="DATA")
    y = np.asarray(y).astype(object)
    print(desc)
    if args.target:
        Xt = _unlabeled_target(args.target, modality, args.text_column)
        X = list(X) + list(Xt)
        y = np.r_[y, np.full(len(Xt), -1, dtype=object)]
        print(f"unlabeled target {args.target!r}: {len(Xt)} items (domain-adaptation candidates)")
    budget = args.budget
    budget = budget if budget in BUDGETS else float(budget)
    search = tle.TransferSearchCV(backbones=args.backbone or None, budget=budget, cv=args.cv,
                                  random_state=args.random_state, verbose=args.verbose)
    search.fit(X, y)
    cols = ["candidate", "strategy", "mean_score", "std_score", "fit_seconds", "resource",
            "stopped", "chosen"]
    print(search.report_[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"chosen: {search.best_params_['candidate']} (search {search.search_seconds_:.1f} s)")
    if args.save:
        path = tle.save(search.best_estimator_, args.save, overwrite=args.overwrite,
                        scores={"cross-validated score (search)": search.best_score_})
        print(f"saved the chosen model to {path} (tlestimators predict {path} DATA)")
    if args.plot:
        search.plot_report(args.plot)
        print(f"wrote {args.plot}")
    return 0


# --------------------------------------------------------------------------- parser
# One function per subcommand adds its parser and sets ``func``; a new subcommand is a
# ``cmd_*`` function, an ``_add_*`` function, and one entry in SUBCOMMANDS.
def _add_list_backbones(sub) -> None:
    p = sub.add_parser("list-backbones", help="list registered backbones (built-in and plugins)")
    p.add_argument("pattern", nargs="?", default=None,
                   help="fnmatch pattern, e.g. 'timm*' (default: all)")
    p.set_defaults(func=cmd_list_backbones)


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="where a backbone comes from and its config",
                       description="Exits 1 when the name cannot be built (config_error).")
    p.add_argument("name", help="backbone name, e.g. efficientnet_lite0 or timm/resnet18")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--random", action="store_true",
                   help="describe the random-init build (skips loading pretrained weights)")
    p.set_defaults(func=cmd_info)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="compare strategies on sklearn digits, an image folder or a text CSV",
        description="Fit each strategy on a training split and print held-out accuracy and "
                    "fit time. Default data: sklearn's bundled digits with efficientnet_lite0.",
    )
    p.add_argument("--data", default=None,
                   help="image folder (one sub-folder per class) or CSV with text,label columns")
    p.add_argument("--backbone", default=None,
                   help=f"backbone name (default {DEFAULT_IMAGE_BACKBONE} for images, "
                        f"{DEFAULT_TEXT_BACKBONE} for text)")
    p.add_argument("--strategies", type=_strategies, default=None,
                   help="comma-separated subset of: " + ", ".join(STRATEGIES) + " (default "
                        + ",".join(DEFAULT_STRATEGIES) + "; fine-tuning trains the whole "
                        "network and takes minutes on a CPU). Without --data, --backbone "
                        "and --strategies the demo is the digits showcase: strategy "
                        "search, continual stream and domain shift, each against its "
                        "naive baseline")
    p.add_argument("--img-size", type=_positive_int, default=64,
                   help="backbone input resolution in pixels (default 64: fast on CPU)")
    p.add_argument("--test-size", type=_fraction, default=0.25,
                   help="held-out fraction (default 0.25)")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="use at most this many samples (random subset)")
    p.add_argument("--head-epochs", type=_positive_int, default=20,
                   help="epochs of the frozen strategy's head (default 20)")
    p.add_argument("--finetune-epochs", type=_positive_int, default=2,
                   help="epochs of fine-tuning (default 2)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="mini-batch size (default 64 for the frozen head, 32 for fine-tuning)")
    p.add_argument("--text-column", default="text", help="CSV text column (default 'text')")
    p.add_argument("--label-column", default="label", help="CSV label column (default 'label')")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default auto)")
    p.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    p.set_defaults(func=cmd_demo)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="embeddings per second of one backbone (cache off)")
    p.add_argument("name", nargs="?", default=DEFAULT_IMAGE_BACKBONE)
    p.add_argument("--img-size", type=_positive_int, default=None)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("-n", type=_positive_int, default=256, help="number of inputs (default 256)")
    p.add_argument("--random", action="store_true", help="random init (no pretrained weights)")
    p.set_defaults(func=cmd_bench)


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict with a saved model (tlestimators.save or export_onnx)",
        description="Print (or write) one CSV row per item: the predicted class and the "
                    "probability of each class.",
    )
    p.add_argument("model", help="directory written by tlestimators.save or export_onnx")
    p.add_argument("data", nargs="+",
                   help="an image folder, image files, a CSV with a text column, or a .npy "
                        "array of features")
    p.add_argument("--text-column", default="text", help="CSV text column (default 'text')")
    p.add_argument("-o", "--output", default=None, help="CSV file to write (default stdout)")
    p.add_argument("--trust", action="append", default=[], metavar="TYPE",
                   help="also allow this fully qualified type when loading (e.g. your own "
                        "Backbone class); repeatable")
    p.set_defaults(func=cmd_predict)


def _budget(text):
    from tlestimators.estimators.search import BUDGETS

    if text in BUDGETS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"budget must be seconds > 0 or one of {sorted(BUDGETS)}, got {text!r}")
    return text


def _add_search(sub) -> None:
    p = sub.add_parser(
        "search", help="pick backbone and strategy within a time budget (TransferSearchCV)",
        description="Cross-validates zero-shot, frozen probes, fine-tuning and (with --target) "
                    "domain adaptation, prints the report and saves the chosen model.",
    )
    p.add_argument("data", help="image folder (one sub-folder per class) or CSV with "
                                "text,label columns")
    p.add_argument("--target", default=None,
                   help="unlabeled target data (image folder or text CSV): adds the "
                        "domain-adaptation candidates, selected without target labels")
    p.add_argument("--budget", type=_budget, default="fast",
                   help="seconds of search rounds, or fast (120) / default (600) / thorough "
                        "(3600); default fast. A candidate started before it runs out "
                        "finishes, and the chosen model's refit on all rows comes on top "
                        "(for fine-tuning: its full epochs)")
    p.add_argument("--backbone", action="append", default=[],
                   help="candidate backbone (repeatable; default per modality)")
    p.add_argument("--cv", type=_positive_int, default=3, help="folds (default 3)")
    p.add_argument("--save", default=None, help="directory to save the chosen model to")
    p.add_argument("--overwrite", action="store_true", help="replace --save if it exists")
    p.add_argument("--plot", default=None, help="PNG of score against cost")
    p.add_argument("--text-column", default="text", help="CSV text column (default 'text')")
    p.add_argument("--label-column", default="label", help="CSV label column (default 'label')")
    p.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    p.add_argument("--verbose", type=int, default=1, help="0 quiet, 1 progress (default)")
    p.set_defaults(func=cmd_search)


SUBCOMMANDS = [_add_list_backbones, _add_info, _add_demo, _add_bench, _add_search, _add_predict]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlestimators",
        description="scikit-learn estimators for transfer learning with pretrained backbones.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__import__('tlestimators').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    # Weights come from installed packages or local files; a hub lookup would only
    # stall (about 46 s) on machines without network, so stay offline unless told.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from tlestimators.exceptions import TLEError

    try:
        return args.func(args)
    except (TLEError, ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        # user errors (bad name, bad data): one clear line, not a traceback
        if os.environ.get("TLE_DEBUG"):
            raise
        print(f"tlestimators {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
