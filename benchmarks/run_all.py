"""Run every ``benchmarks/bench_*.py`` and gather their results into ``benchmarks/RESULTS.md``.

This is what ``make bench`` runs. Each script runs in its own subprocess with
``--data-dir`` (and ``--quick`` when asked), prints markdown tables and writes
``benchmarks/results/<area>.md`` plus PNG plots next to it. This driver:

- says which datasets were found under the data directory and which are absent;
- keeps going past a script that fails or times out, and reports it (exit code,
  last lines of its output) instead of hiding it;
- marks a results file that the current run did not rewrite as *stale*;
- writes the full log of each script to ``benchmarks/out/<area>.log``.

Usage::

    python benchmarks/run_all.py [--data-dir DIR] [--quick] [--only PATTERN ...]
                                 [--timeout SECONDS] [--output benchmarks/RESULTS.md]

The exit status is 1 when any script failed, so CI notices.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The shared data folders (see the data directory's README.md) and what they feed.
DATASETS = {
    "hymenoptera": "ants vs bees images: frozen vs fine-tuned",
    "pacs_photo_art": "PACS photo/art_painting: image domain adaptation, zero-shot",
    "amazon_sentiment_dann_svmlight": "Amazon reviews 4 domains: DANN protocol, domain-incremental",
    "mnist_usps_jda": "MNIST/USPS 16x16: digit adaptation, split-digit continual learning",
    "sms_spam_collection": "SMS spam: sentence-embedding text classification",
    "trec_question_classification": "TREC questions: zero-shot / few-shot text",
}


def default_data_dir() -> Path | None:
    """``$TLE_DATA``, else ``../shared/data`` beside the checkout when it exists."""
    env = os.environ.get("TLE_DATA")
    if env:
        return Path(env)
    candidate = ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def discover(bench_dir: Path, only=None) -> list[Path]:
    scripts = sorted(p for p in bench_dir.glob("bench_*.py") if p.is_file())
    if only:
        scripts = [
            s for s in scripts
            if any(fnmatch.fnmatch(s.name, pat) or fnmatch.fnmatch(s.stem, pat) for pat in only)
        ]
    return scripts


def area_of(script: Path) -> str:
    return script.stem[len("bench_"):]


def dataset_status(data_dir: Path | None) -> list[tuple[str, bool, str]]:
    rows = []
    for name, what in DATASETS.items():
        found = data_dir is not None and (data_dir / name).is_dir()
        rows.append((name, found, what))
    return rows


def _skip_lines(output: str) -> list[str]:
    """Lines where a script says it skipped something (absent dataset, missing extra)."""
    lines = []
    for line in output.splitlines():
        low = line.lower()
        if "skip" in low or "absent" in low or "not installed" in low:
            text = line.strip().lstrip("-*# ").strip()
            if text and text not in lines:
                lines.append(text)
    return lines


def run_script(script: Path, *, data_dir, quick, timeout, log_dir: Path) -> dict:
    cmd = [sys.executable, str(script)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    if data_dir is not None:
        env["TLE_DATA"] = str(data_dir)
    # The scripts import the package from this checkout even without an editable install.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    print(f"\n=== {script.name}: {' '.join(cmd[1:])}", flush=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{area_of(script)}.log"
    start = time.perf_counter()
    chunks = []
    status = "ok"
    returncode = 0
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1,
        )
        # A timer, not a check between lines: a script that hangs silently is killed too.
        killed = threading.Event()

        def _kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill) if timeout else None
        if timer is not None:
            timer.start()
        try:
            for line in proc.stdout:
                # Stream so a long benchmark shows progress; keep a copy for the report.
                sys.stdout.write(line)
                log.write(line)
                chunks.append(line)
            returncode = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
        if killed.is_set():
            status = f"timed out after {timeout:.0f} s"
            returncode = None
    wall = time.perf_counter() - start
    if returncode not in (0, None):
        status = f"FAILED (exit {returncode})"
    output = "".join(chunks)
    return {
        "script": script,
        "area": area_of(script),
        "status": status,
        "wall_s": wall,
        "started": start,
        "output": output,
        "tail": output.strip().splitlines()[-15:],
        "skipped": _skip_lines(output),
        "log": log_path,
    }


def _not_run(result) -> bool:
    return result["status"].startswith("not run")


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _environment_line() -> str:
    parts = [f"Python {platform.python_version()}", platform.machine()]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        parts.append(
            f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only"
        )
        parts.append(f"{torch.get_num_threads()} torch threads")
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        parts.append(f"torch not importable ({exc})")
    parts.append(f"{os.cpu_count()} logical CPUs")
    return ", ".join(parts)


def _result_section(md: Path, result, run_start: float) -> list[str]:
    lines = []
    stamp = _dt.datetime.fromtimestamp(md.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    if result is None or _not_run(result):
        lines += [f"_From `results/{md.name}` as written on {stamp} (not re-run now)._", ""]
    elif md.stat().st_mtime < run_start:
        lines += [
            f"_Stale: `results/{md.name}` was not rewritten by this run "
            f"({result['status']}); it is from {stamp}._",
            "",
        ]
    body = md.read_text(encoding="utf-8").strip()
    # Demote the script's own headings under this section's "###".
    body = "\n".join("###" + ln if ln.startswith("#") else ln for ln in body.splitlines())
    return lines + [body, ""]


def write_report(results, *, data_dir, quick, output: Path, results_dir: Path, run_start: float):
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# tlestimators benchmarks",
        "",
        (f"Gathered on {now} by `benchmarks/run_all.py --collect-only` from the results each "
         "script last wrote (every section says when; no script was run for this file)."
         if results and all(_not_run(r) for r in results) else
         f"Generated by `make bench` (`benchmarks/run_all.py{' --quick' if quick else ''}`) "
         f"on {now}."),
        f"Machine: {_environment_line()}.",
        "Every row compares against its baseline measured in the same run; absolute seconds on "
        "shared machines mean little, ratios do.",
        "",
        "## Datasets",
        "",
        f"Data directory: `{data_dir}`" if data_dir is not None
        else "Data directory: none (set `TLE_DATA` or pass `--data-dir`); every real dataset "
        "is absent.",
        "",
        "| dataset | status | used for |",
        "|---|---|---|",
    ]
    for name, found, what in dataset_status(data_dir):
        lines.append(f"| {name} | {'found' if found else '**absent: skipped**'} | {what} |")

    lines += ["", "## Scripts", "", "| script | status | wall time |", "|---|---|---|"]
    for r in results:
        wall = "-" if _not_run(r) else f"{r['wall_s']:.0f} s"
        lines.append(f"| {r['script'].name} | {r['status']} | {wall} |")
    if not results:
        lines.append("| (no benchmarks/bench_*.py found) | | |")

    failed = [r for r in results if r["status"] != "ok" and not _not_run(r)]
    if failed:
        lines += ["", "### Failures", ""]
        for r in failed:
            lines += [
                f"`{r['script'].name}` {r['status']}; last lines of its output "
                f"(full log: `{_rel(r['log'], output.parent)}`):",
                "",
                "```",
                *r["tail"],
                "```",
                "",
            ]

    skipped = [(r, line) for r in results for line in r["skipped"]]
    if skipped:
        lines += ["", "## Skipped", ""]
        for r, line in skipped:
            lines.append(f"- `{r['script'].name}`: {line}")

    lines += ["", "## Results", ""]
    claimed = set()
    for r in results:
        # A script writes results/<area>.md and possibly results/<area>_<part>.md.
        mds = [results_dir / f"{r['area']}.md", *sorted(results_dir.glob(f"{r['area']}_*.md"))]
        mds = [m for m in mds if m.is_file()]
        claimed.update(mds)
        lines.append(f"### {r['area']}")
        lines.append("")
        if not mds:
            lines.append(f"_No `results/{r['area']}.md` written ({r['status']})._")
            lines.append("")
            continue
        for md in mds:
            lines += _result_section(md, r, run_start)
        pngs = sorted(results_dir.glob(f"{r['area']}*.png"))
        for png in pngs:
            lines.append(f"![{png.stem}]({_rel(png, output.parent)})")
        if pngs:
            lines.append("")
    others = sorted(set(results_dir.glob("*.md")) - claimed)
    if others:
        lines += ["### other results", "",
                  "_Files in `results/` that no `bench_*.py` of this run claims:_", ""]
        for md in others:
            lines += [f"`results/{md.name}`:", ""]
            lines += _result_section(md, None, run_start)

    output.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="real data directory (default: $TLE_DATA, else ../shared/data)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", nargs="+", metavar="PATTERN",
                        help="run only scripts matching these globs (e.g. 'bench_frozen*')")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed per script (default 3600; 0 = no limit)")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: rebuild RESULTS.md from the existing results/*.md")
    parser.add_argument("--bench-dir", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=None,
                        help="report path (default: <bench-dir>/RESULTS.md)")
    args = parser.parse_args(argv)

    bench_dir = args.bench_dir.resolve()
    output = (args.output or bench_dir / "RESULTS.md").resolve()
    results_dir = bench_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    if data_dir is not None:
        data_dir = data_dir.resolve()
        if not data_dir.is_dir():
            print(f"data directory {data_dir} does not exist: every real dataset is skipped")

    for name, found, _ in dataset_status(data_dir):
        print(f"dataset {name}: {'found' if found else 'ABSENT, benchmarks using it skip it'}")

    scripts = discover(bench_dir, args.only)
    if not scripts:
        print(f"no bench_*.py scripts found in {bench_dir}"
              + (f" matching {args.only}" if args.only else ""))
    run_start = time.time()
    results = []
    for script in scripts:
        if args.collect_only:
            results.append({
                "script": script, "area": area_of(script), "status": "not run (--collect-only)",
                "wall_s": 0.0, "output": "", "tail": [], "skipped": [],
                "log": bench_dir / "out" / f"{area_of(script)}.log",
            })
            continue
        r = run_script(
            script, data_dir=data_dir, quick=args.quick,
            timeout=args.timeout or None, log_dir=bench_dir / "out",
        )
        results.append(r)
        print(f"=== {script.name}: {r['status']} in {r['wall_s']:.0f} s", flush=True)

    report = write_report(
        results, data_dir=data_dir, quick=args.quick, output=output,
        results_dir=results_dir, run_start=run_start,
    )
    failed = [r for r in results if r["status"] != "ok" and not _not_run(r)]
    ran = [r for r in results if not _not_run(r)]
    print(f"\nwrote {report}: {len(ran) - len(failed)} ok, {len(failed)} failed, "
          f"{len(results) - len(ran)} not run"
          + (f" ({', '.join(r['script'].name for r in failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
