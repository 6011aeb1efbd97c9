"""Figures and tables for the docs, generated from ``benchmarks/results/*.md``.

The benchmark scripts write markdown reports (tables, the command line that produced
them and the date). This extension reads those files at ``builder-inited`` and writes,
under ``docs/_generated/``:

- ``figures/*.png``: plots drawn from the tables (never pasted numbers);
- ``measured/<page>.rst``: for each user-guide page, the figures and tables that back its
  advice, each with the command and the date that produced it;
- ``compared/<strategy>.rst``: for docs/compared.rst, our rows and the other library's
  rows from the same benchmark run, with who won.

A table that is not in the current results is reported as such in the page (with the
command that would produce it) instead of failing the build: benchmarks are re-run
independently of the docs. ``python docs/_ext/tle_benchfigs.py`` regenerates everything
without Sphinx.

The parser keys on headings and column names, not on line numbers, so that re-running a
benchmark (new numbers, new rows) needs no change here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = DOCS / "_generated"

USER_GUIDE_PAGES = (
    "choosing", "feature_extraction", "fine_tuning", "domain_adaptation",
    "continual_learning", "zero_shot", "scaling",
)

_CMD_RE = re.compile(r"`((?:python3? )?(?:benchmarks/)?bench_\w+\.py[^`]*)`")
_DATE_RE = re.compile(r"\b(20\d\d-\d\d-\d\d(?:[ T]\d\d:\d\d)?)\b")
_NUM_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")


# -- parsing -----------------------------------------------------------------------
@dataclass
class Table:
    file: str                      # results file name, e.g. "transfer.md"
    headings: list                 # heading path down to the table
    header: list
    rows: list
    command: str | None = None
    date: str | None = None
    notes: list = field(default_factory=list)

    @property
    def title(self):
        return self.headings[-1] if self.headings else self.file

    def col(self, *words):
        """Index of the first column whose header contains all ``words`` (case-insensitive)."""
        for i, h in enumerate(self.header):
            low = h.lower()
            if all(w.lower() in low for w in words):
                return i
        return None

    def has(self, *columns):
        return all(self.col(*((c,) if isinstance(c, str) else c)) is not None for c in columns)

    def in_heading(self, word):
        return any(word.lower() in h.lower() for h in self.headings)


def _split_row(line):
    cells = line.strip().strip("|").split("|")
    return [c.strip() for c in cells]


def _file_date(path):
    """The date of the commit that last wrote ``path`` (results without a date of their own)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"{out} (commit date of the results file)" if out else None


def parse_results(results_dir=RESULTS):
    """Every markdown table in ``results_dir/*.md`` with its heading path and provenance."""
    tables = []
    for path in sorted(Path(results_dir).glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        heads = []  # [(level, text)]
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"^(#{1,6})\s+(.*)$", line)
            if m:
                level = len(m.group(1))
                heads = [h for h in heads if h[0] < level] + [(level, m.group(2).strip())]
            if (line.lstrip().startswith("|") and i + 1 < len(lines)
                    and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1])):
                header = _split_row(line)
                j = i + 2
                rows = []
                while j < len(lines) and lines[j].lstrip().startswith("|"):
                    row = _split_row(lines[j])
                    rows.append((row + [""] * len(header))[: len(header)])
                    j += 1
                before = "\n".join(lines[:i])
                cmds = _CMD_RE.findall(before)
                dates = _DATE_RE.findall(before)
                after = "\n".join(lines[j: j + 12])
                tables.append(Table(
                    file=path.name, headings=[h for _, h in heads], header=header, rows=rows,
                    command=_normalise_cmd(cmds[-1]) if cmds else _guess_cmd(path),
                    date=dates[-1] if dates else _file_date(path),
                    notes=[after],
                ))
                i = j
                continue
            i += 1
    return tables


def _normalise_cmd(cmd):
    cmd = cmd.strip()
    if not cmd.startswith("python"):
        cmd = "python " + cmd
    return cmd.replace("python benchmarks/", "python benchmarks/").replace(
        "python bench_", "python benchmarks/bench_")


def _guess_cmd(path):
    stem = path.stem.split("_")[0]
    script = ROOT / "benchmarks" / f"bench_{stem}.py"
    return f"python benchmarks/{script.name}" if script.is_file() else None


def num(cell):
    """First number of a cell (``'**82.2**'`` -> 82.2, ``'0.611 ± 0.036'`` -> 0.611)."""
    m = _NUM_RE.search(cell.replace("**", ""))
    return float(m.group()) if m else None


def num_sd(cell):
    """``(mean, sd)`` from ``'0.611 ± 0.036 (5 draws)'``; sd is 0 when absent."""
    c = cell.replace("**", "")
    m = re.search(r"([-+]?\d+(?:\.\d+)?)\s*(?:±|\+-)\s*(\d+(?:\.\d+)?)", c)
    if m:
        return float(m.group(1)), float(m.group(2))
    v = num(c)
    return (v, 0.0) if v is not None else (None, None)


def find(tables, *, file=None, heading=None, columns=(), first=True):
    """Tables whose file name starts with ``file``, whose headings mention ``heading`` and
    that have all ``columns`` (each a str or a tuple of words of one header)."""
    hits = [
        t for t in tables
        if (file is None or t.file.startswith(file))
        and (heading is None or t.in_heading(heading))
        and t.has(*columns)
    ]
    if first:
        return hits[0] if hits else None
    return hits


# -- reST output ------------------------------------------------------------------------
def rst_cell(text):
    """Markdown cell -> reST inline text: bold and code kept, everything else escaped."""
    parts = re.split(r"(\*\*[^*]+\*\*|`[^`]+`)", text)
    out = []
    for p in parts:
        if p.startswith("**") and p.endswith("**") and len(p) > 4:
            out.append("**" + _escape(p[2:-2]) + "**")
        elif p.startswith("`") and p.endswith("`") and len(p) > 2:
            out.append("``" + p[1:-1] + "``")
        else:
            out.append(_escape(p))
    s = "".join(out).strip()
    return s if s else ".."  # an empty list-table cell needs content


def _escape(s):
    return re.sub(r"([\\*_`|<>\[\]])", r"\\\1", s)


def list_table(table, rows=None, columns=None, caption=None):
    cols = list(range(len(table.header))) if columns is None else columns
    rows = table.rows if rows is None else rows
    lines = [f".. list-table:: {rst_cell(caption or table.title)}", "   :header-rows: 1", ""]
    for r in [table.header] + list(rows):
        cells = [rst_cell(r[c]) if r[c] else "" for c in cols]
        lines.append(f"   * - {cells[0] or '..'}")
        lines += [f"     - {c}" if c else "     -" for c in cells[1:]]
    return lines + [""]


def provenance(*tables):
    seen, lines = set(), []
    for t in tables:
        key = (t.file, t.command, t.date)
        if key in seen:
            continue
        seen.add(key)
        cmd = f"``{t.command}``" if t.command else "(command not recorded)"
        lines.append(
            f"*Measured by* {cmd} *on {t.date or 'an unrecorded date'}; numbers read from*"
            f" ``benchmarks/results/{t.file}`` *when the docs were built.*"
        )
        lines.append("")
    return lines


def missing(what, command):
    return [
        ".. note::", "",
        f"   {what} is not in the current ``benchmarks/results/``: run ``{command}`` and",
        "   rebuild the docs to show it here.", "",
    ]


def figure(name, caption, alt=None, width="90%"):
    return [
        f".. figure:: /_generated/figures/{name}",
        f"   :width: {width}",
        f"   :alt: {alt or caption}",
        "",
        f"   {caption}",
        "",
    ]


# -- plots --------------------------------------------------------------------------------
def _fig(w=6.4, h=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, name, out):
    path = out / "figures" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    return name


def plot_learning_curve(t, out):
    """Digits: test accuracy against labelled images, one line per model."""
    im, mc, ac = t.col("labels per class"), t.col("model"), t.col("accuracy")
    series = {}
    for r in t.rows:
        m = re.search(r"\((\d+) images\)", r[im])
        x = float(m.group(1)) if m else num(r[im])
        y = num(r[ac])
        if x is None or y is None:
            continue
        series.setdefault(r[mc], []).append((x, y))
    fig = _fig()
    ax = fig.subplots()
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images (log scale)")
    ax.set_ylabel(t.header[ac])
    ax.set_title(t.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, "digits_learning_curve.png", out)


def plot_hbar(t, out, name, label_col, value_col, title=None, sd=False):
    labels, vals, errs = [], [], []
    for r in t.rows:
        v, e = num_sd(r[value_col]) if sd else (num(r[value_col]), 0.0)
        if v is None:
            continue
        labels.append(r[label_col].replace("**", ""))
        vals.append(v)
        errs.append(e)
    fig = _fig(6.4, 0.35 * len(labels) + 1.2)
    ax = fig.subplots()
    y = range(len(labels))
    ax.barh(list(y), vals, xerr=errs if any(errs) else None, color="C0", alpha=0.8)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(t.header[value_col])
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:g}", va="center", fontsize=7)
    ax.set_title(title or t.title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, name, out)


def plot_zero_few_shot(t, out):
    """Accuracy against labels per class; zero-shot rows as horizontal lines."""
    mc, kc, ac = t.col("method"), t.col("labels per class"), t.col("accuracy")
    fig = _fig()
    ax = fig.subplots()
    series, flat = {}, []
    for r in t.rows:
        k = r[kc].strip()
        mean, sd = num_sd(r[ac])
        if mean is None:
            continue
        if k.startswith("0"):
            flat.append((r[mc], mean))
        elif k[:1].isdigit():
            series.setdefault(r[mc], []).append((float(num(k)), mean, sd))
        else:
            flat.append((f"{r[mc]} ({k})", mean))
    for i, (name, pts) in enumerate(series.items()):
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    marker="o", capsize=3, label=name, color=f"C{i}")
    for j, (name, v) in enumerate(flat):
        ax.axhline(v, ls="--" if "zero-shot" in name else ":", lw=1,
                   color=f"C{len(series) + j}", label=f"{name}: {v:g}")
    ax.set_xlabel("labelled examples per class")
    ax.set_ylabel(t.header[ac])
    ks = sorted({p[0] for pts in series.values() for p in pts})
    if ks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.set_title(t.title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.set_size_inches(6.4, 6.0)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=1)
    return _save(fig, "zero_few_shot_curve.png", out)


def plot_grouped(t, out, name, label_col, value_cols, title=None, ylabel=None, skip=()):
    import numpy as np

    rows = [r for r in t.rows if not any(s in r[label_col] for s in skip)]
    x = np.arange(len(rows))
    width = 0.8 / len(value_cols)
    fig = _fig(7.2, 3.4)
    ax = fig.subplots()
    lo = []
    for k, c in enumerate(value_cols):
        vals = [num(r[c]) if num(r[c]) is not None else np.nan for r in rows]
        lo += [v for v in vals if v == v]
        ax.bar(x + (k - (len(value_cols) - 1) / 2) * width, vals, width,
               label=t.header[c].replace("**", ""))
    ax.set_xticks(x, [r[label_col].replace("**", "") for r in rows], fontsize=7)
    if lo:
        span = 5 if max(lo) > 1.5 else 0.05  # percents or fractions
        ax.set_ylim(max(0, min(lo) - span), min(max(lo) + span * 0.6, 100 if span == 5 else 1.0))
    ax.set_ylabel(ylabel or "")
    ax.set_title(title or t.title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(value_cols))
    return _save(fig, name, out)


def plot_da_selection(t, out, lam_col, acc_col, score_cols):
    """A selection curve: the (hidden) target accuracy against lambda on top, each
    label-free scorer below (rescaled to [0, 1], as scorers live on different scales),
    each scorer's pick starred in both panels."""
    import numpy as np

    rows = sorted((r for r in t.rows if num(r[lam_col]) is not None), key=lambda r: num(r[lam_col]))
    lam = np.array([num(r[lam_col]) for r in rows])
    acc = np.array([num_sd(r[acc_col]) for r in rows], dtype=float)
    fig = _fig(6.4, 5.2)
    ax_acc, ax_sc = fig.subplots(2, 1, sharex=True)
    ax_acc.errorbar(lam, acc[:, 0], yerr=acc[:, 1], fmt="k-o", capsize=3,
                    label=t.header[acc_col])
    ax_acc.set_ylabel(t.header[acc_col] + "\n(target labels: plot only)", fontsize=8)
    for i, c in enumerate(score_cols):
        v = np.array([num(r[c]) if num(r[c]) is not None else np.nan for r in rows])
        if np.all(np.isnan(v)):
            continue
        span = np.nanmax(v) - np.nanmin(v)
        scaled = (v - np.nanmin(v)) / span if span > 0 else np.ones_like(v)
        pick = int(np.nanargmax(v))
        name = t.header[c].replace(" score", "")
        ax_sc.plot(lam, scaled, "--s", color=f"C{i}", label=name)
        ax_sc.plot(lam[pick], 1.0, "*", ms=13, color=f"C{i}")
        ax_acc.plot(lam[pick], acc[pick, 0], "*", ms=13, color=f"C{i}",
                    label=f"{name} picks {lam[pick]:g}")
    for ax in (ax_acc, ax_sc):
        ax.set_xscale("symlog", linthresh=max(min((x for x in lam if x > 0), default=0.1), 1e-3))
        ax.grid(alpha=0.3)
    ax_sc.set_xticks(lam, [f"{x:g}" for x in lam], fontsize=7)
    ax_sc.set_xlabel(t.header[lam_col] + " (0 = source-only; symlog scale)")
    ax_sc.set_ylabel("scorer value, rescaled\n(star: the scorer's pick)", fontsize=8)
    ax_acc.legend(fontsize=7)
    ax_sc.legend(fontsize=7)
    ax_acc.set_title(t.title, fontsize=9)
    return _save(fig, "da_selection_curve.png", out)


# -- the user-guide blocks -------------------------------------------------------------
def _block_learning_curve(tables, out, page):
    t = find(tables, file="transfer", heading="digits", columns=("labels per class", "model",
                                                                   "accuracy"))
    if t is None:
        return missing("The digits learning curve",
                       "python benchmarks/bench_transfer.py --sections digits"), []
    caption = ("Test accuracy against the number of labelled images (sklearn digits upsampled "
               "to 64 px): frozen EfficientNet-Lite0 features, fine-tuning, the same CNN from "
               "scratch, and logistic regression on the raw pixels.")
    if page == "fine_tuning":
        caption += (" Fine-tuning overtakes the frozen probe from a few tens of labels per "
                    "class on; on this tiny, far-from-ImageNet domain the pixels stay strong.")
    lines = figure(plot_learning_curve(t, out), caption) + list_table(t) + provenance(t)
    return lines, [t]


def _block_hymenoptera(tables, out):
    t = find(tables, file="transfer", heading="hymenoptera", columns=("model", "accuracy"))
    if t is None:
        return missing("The ants-vs-bees comparison",
                       "python benchmarks/bench_transfer.py --sections hymenoptera"), []
    name = plot_hbar(t, out, "hymenoptera.png", t.col("model"), t.col("accuracy"))
    lines = figure(name, "Ants vs bees (245 training images): frozen features against "
                   "fine-tuning, validation accuracy.", width="80%")
    return lines + list_table(t) + provenance(t), [t]


def _block_cache(tables, out):
    t = find(tables, file="transfer", heading="cache", columns=("run", "wall"))
    if t is None:
        return missing("The feature-cache timing", "python benchmarks/bench_transfer.py --sections cache"), []
    name = plot_hbar(t, out, "feature_cache.png", t.col("run"), t.col("wall"),
                     title="GridSearchCV(cv=5) over 6 frozen heads: wall time")
    return (figure(name, "A grid search over frozen heads with the feature cache off and on, "
                   "and the floor (one embedding pass plus the head fits).", width="80%")
            + list_table(t) + provenance(t)), [t]


def _block_defaults(tables, out):
    t = find(tables, file="defaults", columns=("data", "ours acc", "pipeline acc"))
    if t is None:
        return missing("The defaults-vs-pipeline table", "python benchmarks/bench_defaults.py"), []
    name = plot_grouped(t, out, "frozen_defaults.png", t.col("data"),
                        [t.col("ours acc"), t.col("pipeline acc")],
                        title="FrozenFeatureClassifier() vs embeddings + LogisticRegressionCV",
                        ylabel="test accuracy")
    lines = figure(name, "The default head (a convex probe with its regularisation chosen by "
                   "internal CV) against the hand-written scikit-learn pipeline on the same "
                   "cached embeddings.", width="85%")
    return lines + list_table(t) + provenance(t), [t]


def _block_throughput(tables, out):
    t = find(tables, file="backbones", columns=("backbone", ("baseline", "/s")))
    if t is None:
        return missing("The embedding-throughput table", "python benchmarks/bench_backbones.py"), []
    return list_table(t) + provenance(t), [t]


def _block_zero_shot(tables, out):
    t = find(tables, file="zeroshot", columns=("method", "labels per class", "accuracy"))
    if t is None:
        return missing("The zero-/few-shot TREC table", "python benchmarks/bench_zeroshot.py"), []
    name = plot_zero_few_shot(t, out)
    lines = figure(name, "TREC questions (6 classes, 500 test questions): zero-shot prompts "
                   "(dashed), few-shot methods against labelled questions per class (mean and "
                   "standard deviation over draws), and the all-label references (dotted).")
    return lines + list_table(t) + provenance(t), [t]


def _block_da(tables, out):
    lines, used = [], []
    sel = (find(tables, file="da_curve", columns=("lambda", ("target", "accuracy")))
           or find(tables, file="da", columns=("lambda", ("target", "accuracy"))))
    if sel is not None:
        lam = sel.col("lambda")
        acc = sel.col("target", "accuracy")
        scores = [i for i, h in enumerate(sel.header)
                  if i not in (lam, acc) and any(w in h.lower() for w in ("dev", "iwv", "entropy",
                                                                            "score"))]
        if scores:
            lines += figure(plot_da_selection(sel, out, lam, acc, scores),
                            "Label-free selection: the target test accuracy (top; no scorer "
                            "sees it) and each scorer's value (bottom) against the adaptation "
                            "strength; a star marks the lambda each scorer would pick.")
            lines += list_table(sel)
            picks = find(tables, file=sel.file, columns=("scorer", "pick"))
            if picks is not None:
                lines += list_table(picks)
            lines += provenance(sel)
            used.append(sel)
    if not used:
        lines += missing("A selection curve (scorer value and target accuracy against lambda)",
                         "python benchmarks/bench_da_curve.py")
    rules = find(tables, file="da", heading="selection rules", columns=("rule", "worst gap"))
    if rules is not None:
        lines += list_table(rules) + provenance(rules)
        used.append(rules)
    for t in find(tables, file="da.md", columns=("pair", "source-only", "selected (all"),
                  first=False):
        lines += list_table(t) + provenance(t)
        used.append(t)
    amazon = find(tables, columns=("pair", "source-only", "ours"))
    if amazon is not None:
        cols = [amazon.col("source-only"), amazon.col("ours")]
        if amazon.col("skada", "working") is not None:
            cols.append(amazon.col("skada", "working"))
        name = plot_grouped(amazon, out, "da_amazon.png", amazon.col("pair"), cols,
                            title="Amazon reviews, 12 domain pairs: target test accuracy",
                            ylabel="target accuracy (%)")
        lines += figure(name, "DANN against a source-only model and skada's DANN on the same "
                        "network, per source->target pair (B books, D dvd, E electronics, K kitchen).")
        lines += list_table(amazon) + provenance(amazon)
        used.append(amazon)
    for t in find(tables, heading="PACS", columns=("method", "art accuracy"), first=False):
        lines += list_table(t) + provenance(t)
        used.append(t)
    return lines, used


def _block_continual(tables, out):
    t = find(tables, file="continual", columns=("method", "final avg acc", "forgetting"))
    if t is None:
        return missing("The continual-learning table", "python benchmarks/bench_continual.py"), []
    name = plot_hbar(t, out, "continual_methods.png", t.col("method"), t.col("final avg acc"),
                     sd=True)
    lines = figure(name, "Final average accuracy after the last experience (mean and standard "
                   "deviation over seeds): naive fine-tuning forgets everything, a replay memory "
                   "of a few hundred examples gets close to joint training.")
    lines += list_table(t) + provenance(t)
    for png in sorted(RESULTS.glob("continual_*.png")):
        dst = out / "figures" / png.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dst)
        lines += figure(png.name, f"Accuracy matrix written by the benchmark: ``{png.name}``.",
                        width="48%")
    return lines, [t]


def plot_fewshot(t, out):
    """Few-shot text: accuracy of each method, grouped by (data set, labels per class)."""
    import numpy as np

    dc, kc, mc, ac = t.col("dataset"), t.col("labels"), t.col("method"), t.col("accuracy")
    groups, methods = {}, []
    for r in t.rows:
        mean, sd = num_sd(r[ac])
        if mean is None:
            continue
        groups.setdefault(f"{r[dc]}, {r[kc]}/class", {})[r[mc]] = (mean, sd)
        if r[mc] not in methods:
            methods.append(r[mc])
    fig = _fig(7.2, 3.6)
    ax = fig.subplots()
    x = np.arange(len(groups))
    width = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        vals = [g.get(m, (np.nan, 0.0)) for g in groups.values()]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, [v[0] for v in vals], width,
               yerr=[v[1] for v in vals] if any(v[1] for v in vals) else None,
               label=m, color="k" if m.lower() == "setfit" else f"C{k}")
    ax.set_xticks(x, list(groups), fontsize=8)
    ax.set_ylabel(t.header[ac])
    ax.set_ylim(0, 1)
    ax.set_title(t.title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.set_size_inches(7.2, 4.4)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=4)
    return _save(fig, "fewshot_setfit.png", out)


def _block_fewshot(tables, out):
    t = find(tables, file="fewshot", columns=("dataset", "labels", "method", "accuracy"))
    if t is None:
        return missing("The few-shot comparison (ours, SetFit, logistic regression)",
                       "python benchmarks/bench_fewshot.py"), []
    lines = figure(plot_fewshot(t, out), "Few labelled texts per class: our few-shot paths, "
                   "SetFit (black) and a logistic regression on the same frozen embeddings, "
                   "test accuracy (mean and standard deviation over the seeds run).")
    return lines + list_table(t) + provenance(t), [t]


def _block_lora(tables, out):
    t = find(tables, file="lora", columns=("method", "accuracy", "trainable"))
    if t is None:
        return missing("The LoRA vs full fine-tuning table", "python benchmarks/bench_lora.py"), []
    return list_table(t) + provenance(t), [t]


def _block_search(tables, out):
    t = find(tables, file="search", columns=("exhaustive pick", "search pick"))
    if t is None:
        return missing("The TransferSearchCV vs exhaustive-grid table",
                       "python benchmarks/bench_search.py"), []
    return list_table(t) + provenance(t), [t]


def _block_export(tables, out):
    used, lines = [], []
    for t in find(tables, file="export", columns=("model",), first=False):
        lines += list_table(t) + provenance(t)
        used.append(t)
    return lines, used


def _header(page):
    return [
        f".. This file is generated by docs/_ext/tle_benchfigs.py from benchmarks/results/"
        f" at every docs build ({page}); edit the generator, not this file.",
        "",
    ]


def user_guide_blocks(tables, out):
    """page -> (reST lines, tables used)."""
    blocks = {}

    def join(*parts):
        lines, used = [], []
        for ls, us in parts:
            lines += ls
            used += us
        return lines, used

    blocks["feature_extraction"] = join(_block_learning_curve(tables, out, "feature_extraction"),
                                        _block_defaults(tables, out),
                                        _block_hymenoptera(tables, out), _block_cache(tables, out))
    blocks["fine_tuning"] = join(_block_learning_curve(tables, out, "fine_tuning"),
                                 _block_hymenoptera(tables, out), _block_lora(tables, out))
    blocks["domain_adaptation"] = _block_da(tables, out)
    blocks["continual_learning"] = _block_continual(tables, out)
    blocks["zero_shot"] = join(_block_zero_shot(tables, out), _block_fewshot(tables, out))
    blocks["scaling"] = join(_block_cache(tables, out), _block_throughput(tables, out),
                             _block_export(tables, out))
    blocks["choosing"] = join(_block_learning_curve(tables, out, "choosing"),
                              _block_zero_shot(tables, out), _block_search(tables, out))
    return blocks


# -- compared.rst ------------------------------------------------------------------------
@dataclass
class Versus:
    """One row of a comparison: our number and theirs on the same data, same run."""

    task: str
    ours_name: str
    ours: float | None
    theirs_name: str
    theirs: float | None
    unit: str
    higher_is_better: bool = True
    sd: float = 0.0  # the larger standard deviation over seeds of the two, when reported

    def verdict(self):
        if self.ours is None or self.theirs is None:
            return "not measured"
        if abs(self.ours - self.theirs) <= max(self.sd, 1e-9):
            return "tie"
        better = (self.ours > self.theirs) == self.higher_is_better
        return "**ours**" if better else "**theirs**"


def _versus_table(rows, library, losses=None):
    if losses is not None:
        losses += [(library, v) for v in rows if v.verdict() == "**theirs**"]
    lines = [f".. list-table:: tlestimators against {library}", "   :header-rows: 1", "",
             "   * - task", "     - tlestimators", "     - value", f"     - {library}",
             "     - value", "     - better"]
    def fmt(x, unit):
        return "--" if x is None else f"{x:g} {unit}".strip()

    for v in rows:
        lines += [f"   * - {rst_cell(v.task)}", f"     - {rst_cell(v.ours_name)}",
                  f"     - {fmt(v.ours, v.unit)}", f"     - {rst_cell(v.theirs_name)}",
                  f"     - {fmt(v.theirs, v.unit)}", f"     - {v.verdict()}"]
    lines.append("")
    won = sum(v.verdict() == "**ours**" for v in rows)
    lost = sum(v.verdict() == "**theirs**" for v in rows)
    lines += [f"Ours better on {won} of {len(rows)} rows, theirs on {lost}.", ""]
    return lines


def _row(t, pattern, col):
    for r in t.rows:
        if re.search(pattern, r[0], flags=re.I):
            return r, num(r[col])
    return None, None


def _sd(*cells):
    return max((num_sd(c)[1] or 0.0) for c in cells)


def compared_blocks(tables, out):
    blocks = {}
    losses = []  # (library, Versus) of every row the other library wins

    # Domain adaptation: skada.
    rows, used = [], []
    amazon = find(tables, columns=("pair", "source-only", "ours", "skada"))
    if amazon is not None:
        ours, sw, sd = amazon.col("ours"), amazon.col("skada", "working"), amazon.col("skada", "default")
        for r in amazon.rows:
            pair = r[amazon.col("pair")].replace("**", "")
            if sw is not None:
                rows.append(Versus(f"Amazon {pair}", "DANNAdapter", num(r[ours]),
                                   "skada.deep.DANN (working)", num(r[sw]), "%"))
            if sd is not None and pair == "mean":
                rows.append(Versus(f"Amazon {pair}", "DANNAdapter", num(r[ours]),
                                   "skada.deep.DANN (defaults)", num(r[sd]), "%"))
        used.append(amazon)
    digits = find(tables, columns=("task", "ours", "skada working"))
    if digits is not None:
        ours, sw = digits.col("ours"), digits.col("skada working")
        for r in digits.rows:
            rows.append(Versus(f"{r[0]} (MNIST/USPS)", "DANNAdapter", num(r[ours]),
                               "skada.deep.DANN (working)", num(r[sw]), "%"))
        st = digits.col("s/epoch")
        if st is not None:
            for r in digits.rows:
                m = re.findall(r"\d+(?:\.\d+)?", r[st])
                if len(m) == 2:
                    rows.append(Versus(f"{r[0]} seconds per epoch", "DANNAdapter", float(m[0]),
                                       "skada.deep.DANN", float(m[1]), "s", higher_is_better=False))
        used.append(digits)
    # bench_da.py: the library's label-free selection (SafeDASelection over every method
    # and lambda) against skada's adapters run in the same process on the same split
    for t in find(tables, file="da.md", columns=("pair", "selected (all"), first=False):
        sel = t.col("selected (all")
        skada_cols = [i for i, h in enumerate(t.header) if "skada" in h.lower()]
        data = t.title.split("(")[0].strip()
        for r in t.rows:
            pair = r[t.col("pair")].replace("**", "")
            if pair.startswith("mean") and len(t.rows) <= 2:
                continue  # the mean of one pair repeats that pair
            for c in skada_cols:
                rows.append(Versus(f"{data} {pair}", "DA estimators, label-free selection",
                                   num(r[sel]), t.header[c], num(r[c]), "%"))
        if skada_cols:
            used.append(t)
    blocks["da"] = (_versus_table(rows, "skada", losses) + provenance(*used) if rows
                    else missing("A skada comparison", "python benchmarks/bench_dann.py"))

    # Continual learning: Avalanche.
    av = find(tables, file="continual", heading="avalanche", columns=("method", "final avg acc"))
    if av is not None:
        acc, tc = av.col("final avg acc"), av.col("time")
        pairs = [("Naive", r"^Avalanche Naive", r"^tlestimators naive"),
                 ("Replay, memory 200", r"^Avalanche Replay", r"^tlestimators replay 200, Avalanche"),
                 ("Joint training", r"^Avalanche Joint", r"^tlestimators joint")]
        rows = []
        for task, theirs_p, ours_p in pairs:
            ro, o = _row(av, ours_p, acc)
            rt, th = _row(av, theirs_p, acc)
            if ro is None or rt is None:
                continue
            rows.append(Versus(f"split digits, {task}: final accuracy", ro[0], o, rt[0], th, "%",
                               sd=_sd(ro[acc], rt[acc])))
            if tc is not None:
                rows.append(Versus(f"split digits, {task}: training time", ro[0], num(ro[tc]),
                                   rt[0], num(rt[tc]), "s", higher_is_better=False,
                                   sd=_sd(ro[tc], rt[tc])))
        blocks["continual"] = _versus_table(rows, "Avalanche", losses) + provenance(av)
    else:
        blocks["continual"] = missing("The Avalanche side-by-side", "python benchmarks/bench_continual.py")

    # Few-shot text: SetFit.
    fs = find(tables, file="fewshot", columns=("dataset", "labels", "method", "accuracy"))
    sf = [t for t in find(tables, columns=("method",), first=False)
          if any("setfit" in r[0].lower() for r in t.rows)]
    if fs is not None and any(r[fs.col("method")].strip().lower() == "setfit" for r in fs.rows):
        dc, kc, mc, ac = fs.col("dataset"), fs.col("labels"), fs.col("method"), fs.col("accuracy")
        tc = fs.col("fit s")
        groups = {}
        for r in fs.rows:
            groups.setdefault((r[dc], r[kc]), {})[r[mc].strip()] = r
        rows = []
        for (data, k), by in groups.items():
            theirs = by.get("setfit")
            if theirs is None:
                continue
            for ours_key in ("ours", "zeroshot_linear"):
                ours = by.get(ours_key)
                if ours is None:
                    continue
                name = {"ours": "ContrastiveFewShotClassifier()",
                        "zeroshot_linear": "ZeroShotTextClassifier(few_shot='linear')"}[ours_key]
                rows.append(Versus(f"{data}, {k} labels/class: accuracy", name,
                                   num_sd(ours[ac])[0], "SetFit (defaults)", num_sd(theirs[ac])[0],
                                   "", sd=_sd(ours[ac], theirs[ac])))
                if tc is not None:
                    rows.append(Versus(f"{data}, {k} labels/class: fit seconds", name,
                                       num(ours[tc]), "SetFit (defaults)", num(theirs[tc]), "s",
                                       higher_is_better=False))
        blocks["setfit"] = (_versus_table(rows, "SetFit", losses)
                            + list_table(fs, caption="Every method of the run") + provenance(fs))
    elif sf:
        t = sf[0]
        blocks["setfit"] = list_table(t, rows=[r for r in t.rows if re.search(
            r"setfit|few-shot|zero-shot", r[0], flags=re.I)]) + provenance(t)
    else:
        blocks["setfit"] = missing("A SetFit row", "python benchmarks/bench_zeroshot.py")

    # Frozen features: a scikit-learn pipeline on the embeddings.
    rows, used = [], []
    dflt = find(tables, file="defaults", columns=("data", "ours acc", "pipeline acc"))
    zs = None if dflt is not None else find(tables, file="zeroshot", columns=("method", "accuracy"))
    if dflt is not None:
        oa, pa = dflt.col("ours acc"), dflt.col("pipeline acc")
        of, pf = dflt.col("ours fit"), dflt.col("pipeline fit")
        for r in dflt.rows:
            rows.append(Versus(f"{r[0]}: accuracy", "FrozenFeatureClassifier()", num(r[oa]),
                               "StandardScaler + LogisticRegressionCV", num(r[pa]), ""))
            if of is not None and pf is not None:
                rows.append(Versus(f"{r[0]}: fit seconds", "FrozenFeatureClassifier()",
                                   num(r[of]), "StandardScaler + LogisticRegressionCV",
                                   num(r[pf]), "s", higher_is_better=False))
        used.append(dflt)
    if zs is not None:
        acc = zs.col("accuracy")
        ro, o = _row(zs, r"^FrozenFeatureClassifier, all labels", acc)
        rt, th = _row(zs, r"LogisticRegression on the embeddings", acc)
        if ro is not None and rt is not None:
            rows.append(Versus("TREC, all labels, minilm embeddings", ro[0], o, rt[0], th, ""))
            fc = zs.col("fit s")
            if fc is not None:
                rows.append(Versus("TREC, all labels: fit seconds", ro[0], num(ro[fc]), rt[0],
                                   num(rt[fc]), "s", higher_is_better=False))
            used.append(zs)
    heads = find(tables, file="defaults", columns=("probe acc", "LRCV acc"))
    blocks["sklearn"] = (_versus_table(rows, "scikit-learn", losses) if rows else []) + (
        list_table(heads, caption="The heads alone, on the same embeddings") if heads else []
    ) + provenance(*used, *([heads] if heads else []))
    if not used:
        blocks["sklearn"] = missing("The scikit-learn pipeline comparison",
                                    "python benchmarks/bench_zeroshot.py")

    # Embedding: the plain loops of timm and sentence-transformers.
    bb = find(tables, file="backbones", columns=("backbone", ("baseline", "/s")))
    if bb is not None:
        rows = []
        oc, bc = bb.col("tlestimators", "/s"), bb.col("baseline", "/s")
        bn = next(i for i, h in enumerate(bb.header) if h.strip().lower() == "baseline") \
            if any(h.strip().lower() == "baseline" for h in bb.header) else bc
        unit = bb.header[oc].split()[-1] if oc is not None else "/s"
        current, ours_name, ours_v, ablation = None, "compute_embeddings", None, False
        for r in bb.rows:
            if r[0]:
                current = f"{r[0]}, {r[1]}"
            if r[oc]:
                # "8.7 (ours, no prefetch)": an ablation row of the benchmark, not a comparison
                ablation = "(" in r[oc]
                ours_v = num(r[oc])
            if ablation:
                continue
            rows.append(Versus(current, ours_name, ours_v, r[bn], num(r[bc]), unit))
        blocks["embedding"] = _versus_table(rows, "the plain loop", losses) + provenance(bb)
    else:
        blocks["embedding"] = missing("The throughput table", "python benchmarks/bench_backbones.py")

    # Zero-shot images: open_clip.
    clip = [t for t in tables if t.file.startswith("zeroshot") and t.in_heading("PACS")]
    if clip:
        blocks["open_clip"] = list_table(clip[0]) + provenance(clip[0])
    else:
        blocks["open_clip"] = [
            "Not measured: no CLIP weights are installable on the machines that produced "
            "these results, so ``benchmarks/bench_zeroshot.py`` skips its PACS CLIP check "
            "(``--clip-weights FILE`` runs it). Until then there is no number to compare.", ""]
    # Where we lose: every row above that the other library wins, in one place.
    if losses:
        lines = [".. list-table:: Rows where the other library is better", "   :header-rows: 1", "",
                 "   * - against", "     - task", "     - tlestimators", "     - theirs"]
        for lib, v in losses:
            def fmt(x, unit=v.unit):
                return "--" if x is None else f"{x:g} {unit}".strip()
            lines += [f"   * - {rst_cell(lib)}", f"     - {rst_cell(v.task)}",
                      f"     - {rst_cell(v.ours_name)}: {fmt(v.ours)}",
                      f"     - {rst_cell(v.theirs_name)}: {fmt(v.theirs)}"]
        blocks["losses"] = lines + [""]
    else:
        blocks["losses"] = ["No measured row where the other library is better.", ""]
    return blocks


# -- driver -------------------------------------------------------------------------------
def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text() != text:  # keep Sphinx's rebuilds incremental
        path.write_text(text)


def generate(results_dir=RESULTS, out=OUT):
    """Write every include and figure; return ``{page: [figure names]}`` for the user guide."""
    out = Path(out)
    tables = parse_results(results_dir)
    figures = {}
    for page, (lines, _used) in user_guide_blocks(tables, out).items():
        _write(out / "measured" / f"{page}.rst", _header(page) + lines)
        figures[page] = [ln.split("/")[-1] for ln in lines if ln.startswith(".. figure::")]
    for name, lines in compared_blocks(tables, out).items():
        _write(out / "compared" / f"{name}.rst", _header(f"compared: {name}") + lines)
    return figures


def _builder_inited(app):
    generate()


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    for page, figs in generate().items():
        print(f"{page}: {', '.join(figs) or 'no figure'}")
